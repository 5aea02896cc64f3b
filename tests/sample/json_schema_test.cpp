// JSON Schema -> GBNF: each schema's grammar (parsed and matched by the real tf::Grammar /
// tf::GrammarMatcher) accepts the valid instances (as written, compact and pretty-printed)
// and rejects invalid ones; unsupported schemas and oversized ones are refused with a message
// naming the keyword and where it is.
#include "sample/json_schema.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "sample/grammar.h"
#include "util/error.h"

namespace {

using Json = nlohmann::ordered_json;

bool matches(const std::shared_ptr<const tf::Grammar>& g, const std::string& text) {
  tf::GrammarMatcher m(g);
  return m.accept(text) && m.complete();
}

std::string error_of(const std::string& schema) {
  try {
    tf::json_schema_to_gbnf(Json::parse(schema));
  } catch (const tf::Error& e) {
    return e.what();
  }
  return "";
}

struct Case {
  const char* name;
  const char* schema;
  std::vector<std::string> accept;  // JSON texts; their dump() and dump(2) must match too
  std::vector<std::string> reject;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> k = {
      // ---- Primitives ----
      {"string",
       R"({"type": "string"})",
       {R"("hello")", R"("")", R"("a\"b\\c\n\u00e9\/")", "\"\xE6\x97\xA5\xE6\x9C\xAC\""},
       {"hello", "\"a\nb\"", R"("abc)", "1", R"("\x")", R"("\u12")"}},
      {"number",
       R"({"type": "number"})",
       {"0", "-1.5", "1e10", "3.14159", "2E-3", "-0.001", "12345678901234567890"},
       {"01", "1.", ".5", "+1", R"("1")", "1e", "--1", "NaN"}},
      {"integer",
       R"({"type": "integer"})",
       {"0", "-7", "123456"},
       {"1.0", "01", "-", "1e3", "\"1\""}},
      {"boolean", R"({"type": "boolean"})", {"true", "false"}, {"True", "1", "null"}},
      {"null", R"({"type": "null"})", {"null"}, {"nul", "0", "\"null\""}},
      {"any value (empty schema)",
       R"({})",
       {R"({"a": [1, {"b": null}], "c": "d"})", R"("str")", "1", "true", "[]", "{}"},
       {"{", "[1,]", R"({"a" 1})", "tru"}},
      {"any value (true)", "true", {R"([1, "x", {"k": false}])", "-2.5e3"}, {"[1 2]", ""}},
      {"type list",
       R"({"type": ["string", "null"], "maxLength": 2})",
       {R"("ab")", "null"},
       {"1", R"("abc")", "false"}},
      {"annotations are ignored",
       R"({"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "title": "T",
           "description": "d", "examples": [1], "default": 2, "$comment": "c", "deprecated": false,
           "readOnly": false, "writeOnly": false, "type": "integer"})",
       {"2"},
       {"\"2\""}},

      // ---- enum / const ----
      {"enum with quotes, unicode and non-strings",
       R"({"enum": ["a\"b", "caf\u00e9", "\u65e5\u672c", "back\\slash", 1, 2.5, null, true,
                    {"k": [1, "x"]}, [1, 2]]})",
       {R"("a\"b")", "\"caf\xC3\xA9\"", "\"\xE6\x97\xA5\xE6\x9C\xAC\"", R"("back\\slash")", "1",
        "2.5", "null", "true", R"({"k":[1,"x"]})", "[1,2]"},
       {R"("ab")", R"("a"b")", "2", R"("cafe")", "false", R"({"k":[1]})"}},
      {"const", R"({"const": "fixed"})", {R"("fixed")"}, {R"("other")", R"("fixed ")"}},
      {"const object", R"({"const": {"a": 1}})", {R"({"a":1})"}, {R"({"a":2})", "{}"}},
      {"enum filtered by type",
       R"({"type": "string", "enum": ["a", 1, "b"]})",
       {R"("a")", R"("b")"},
       {"1", R"("c")"}},

      // ---- Objects ----
      {"object, all required, in order",
       R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
           "required": ["a", "b"]})",
       {R"({"a": 1, "b": "x"})", R"({"a":-5,"b":""})"},
       {R"({"b": "x", "a": 1})", R"({"a": 1})", R"({"a": 1, "b": "x", "c": 1})", "{}",
        R"({"a": 1, "b": 2})", R"({"a": 1 "b": "x"})", R"({"a": 1, "b": "x",})"}},
      {"object, optional properties: any subset, in order",
       R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
           "c": {"type": "integer"}, "d": {"type": "integer"}}})",
       {"{}", R"({"a": 1})", R"({"b": 2})", R"({"d": 4})", R"({"a": 1, "c": 3})",
        R"({"b": 2, "d": 4})", R"({"a": 1, "b": 2, "c": 3, "d": 4})", R"({"a":1,"d":4})"},
       {R"({"c": 3, "a": 1})", R"({"a": 1, "a": 1})", R"({"e": 1})", R"({"a": 1,})",
        R"({, "a": 1})", R"({"a": "x"})"}},
      {"object, required between optional ones",
       R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
           "c": {"type": "integer"}}, "required": ["b"]})",
       {R"({"b": 2})", R"({"a": 1, "b": 2})", R"({"b": 2, "c": 3})", R"({"a": 1, "b": 2, "c": 3})"},
       {"{}", R"({"a": 1})", R"({"a": 1, "c": 3})", R"({"c": 3})"}},
      {"nested objects",
       R"({"type": "object", "properties": {"user": {"type": "object", "properties": {
             "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
             "address": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}},
           "required": ["name"]}}, "required": ["user"]})",
       {R"({"user": {"name": "x"}})", R"({"user": {"name": "x", "age": 3}})",
        R"({"user": {"name": "x", "age": 30, "address": {"city": "Paris"}}})"},
       {R"({"user": {"age": 3}})", R"({"user": {"name": "x", "age": -1}})", "{}",
        R"({"user": {"name": "x", "address": {}}})"}},
      {"additionalProperties true after the properties",
       R"({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": true})",
       {R"({"a": 1, "b": "x", "c": [1, {"d": null}]})", R"({"x": [1]})", "{}", R"({"a": 1})"},
       {R"({"a": "x"})", R"({"a": 1, "a": 2})", R"({"b": 1, "a": 1})"}},
      {"additionalProperties schema, keys not the known ones",
       R"({"type": "object", "properties": {"ab": {"type": "integer"}},
           "additionalProperties": {"type": "string"}})",
       {R"({"ab": 1, "a": "x"})", R"({"ab": 1, "abc": "x", "b": "y"})", R"({"abd": "y"})",
        R"({"": "empty key"})", R"({"a\"b": "q"})"},
       {R"({"ab": 1, "ab": "x"})", R"({"ab": "x"})", R"({"ab": 1, "c": 2})"}},
      {"additionalProperties schema alone",
       R"({"type": "object", "additionalProperties": {"type": "number"}})",
       {R"({"x": 1, "y": 2.5})", "{}"},
       {R"({"x": "s"})", "[]"}},
      {"additionalProperties false",
       R"({"type": "object", "additionalProperties": false})",
       {"{}"},
       {R"({"a": 1})"}},
      {"any object", R"({"type": "object"})", {R"({"a": {"b": [1, 2]}})", "{}"}, {"[]", R"("x")"}},
      {"no properties at all", R"({"type": "object", "properties": {}})", {"{}"}, {R"({"a": 1})"}},
      {"required without properties",
       R"({"type": "object", "required": ["id"]})",
       {R"({"id": 5})", R"({"id": "x", "more": 1})"},
       {"{}", R"({"more": 1})", R"({"more": 1, "id": 5})"}},
      {"keys that need escapes",
       R"({"type": "object", "properties": {"a\"b": {"type": "integer"},
           "\u65e5\u672c": {"type": "boolean"}, "new\nline": {"type": "null"}},
           "required": ["a\"b"]})",
       {R"({"a\"b": 1})", "{\"a\\\"b\": 1, \"\xE6\x97\xA5\xE6\x9C\xAC\": true}",
        R"({"a\"b": 1, "new\nline": null})"},
       {R"({"ab": 1})", R"({"a"b": 1})"}},
      {"OpenAI tool: get_weather",
       R"({"type": "object", "properties": {
             "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
             "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
           "required": ["location"], "additionalProperties": false})",
       {R"({"location": "Paris, France"})", R"({"location": "Tokyo", "unit": "celsius"})",
        R"({"location":"X","unit":"fahrenheit"})"},
       {R"({"unit": "celsius"})", R"({"location": "Paris", "unit": "kelvin"})",
        R"({"location": 1})", R"({"location": "Paris", "extra": 1})", "{}"}},

      // ---- Arrays ----
      {"array of integers",
       R"({"type": "array", "items": {"type": "integer"}})",
       {"[]", "[1]", "[1, 2, 3]"},
       {R"([1, "a"])", "[1,]", "[", "[,1]", "{}"}},
      {"any array", R"({"type": "array"})", {R"([1, "x", [null]])", "[]"}, {"[1 2]"}},
      {"minItems / maxItems",
       R"({"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3})",
       {R"(["a"])", R"(["a", "b", "c"])"},
       {"[]", R"(["a", "b", "c", "d"])"}},
      {"exactly two items",
       R"({"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 2})",
       {"[true, false]"},
       {"[true]", "[true, false, true]"}},
      {"prefixItems tuple",
       R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]})",
       {R"(["a", 1])"},
       {R"(["a"])", R"(["a", 1, 2])", R"([1, "a"])", "[]"}},
      {"prefixItems with items and minItems",
       R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}],
           "items": {"type": "integer"}, "minItems": 1, "maxItems": 4})",
       {R"(["a"])", R"(["a", 1.5])", R"(["a", 1.5, 2, 3])"},
       {"[]", "[1]", R"(["a", 1.5, 2, 3, 4])", R"(["a", 1.5, 2.5])"}},
      {"items array with additionalItems false",
       R"({"type": "array", "items": [{"type": "boolean"}, {"type": "null"}],
           "additionalItems": false, "minItems": 1})",
       {"[true]", "[true, null]"},
       {"[]", "[true, null, 1]", "[null]"}},
      {"uniqueItems false is allowed",
       R"({"type": "array", "items": {"type": "integer"}, "uniqueItems": false})",
       {"[1, 1]"},
       {"[1.5]"}},

      // ---- Strings ----
      {"minLength / maxLength in characters",
       R"({"type": "string", "minLength": 2, "maxLength": 4})",
       {R"("ab")", R"("abcd")", R"("\u00e9\n")", "\"\xC3\xA9\xE6\x97\xA5\""},
       {R"("a")", R"("abcde")", R"("")"}},
      {"pattern: email-like",
       R"({"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"})",
       {R"("bob@example.com")"},
       {R"("bob@example.org")", R"("Bob@x.com")", R"("bob@x.com ")", R"("bob@xcom")",
        R"("@x.com")"}},
      {"pattern: digits",
       R"({"type": "string", "pattern": "^\\d{3}-\\d{4}$"})",
       {R"("555-1234")"},
       {R"("5555-123")", R"("555-12345")", R"("abc-defg")"}},
      {"pattern: repeated group of alternatives",
       R"({"type": "string", "pattern": "^(ab|cd)+$"})",
       {R"("ab")", R"("abcdab")", R"("cdcd")"},
       {R"("")", R"("abc")", R"("ba")"}},
      {"pattern: quote and backslash come out escaped",
       R"({"type": "string", "pattern": "^a\"b\\\\c[\"]$"})",
       {R"("a\"b\\c\"")"},
       {R"("a"b\c"")", R"("ab\\c\"")"}},
      {"pattern without anchors matches anywhere",
       R"({"type": "string", "pattern": "[0-9]"})",
       {R"("abc1def")", R"("1")", R"("x9")"},
       {R"("abc")", R"("")"}},
      {"pattern: negated class and counted repetition",
       R"({"type": "string", "pattern": "^[^a-z]{2}$"})",
       {R"("AB")", R"("1\"")", R"("\\\t")"},
       {R"("ab")", R"("A")", R"("ABC")"}},
      {"pattern: \\w \\s \\S",
       R"({"type": "string", "pattern": "^\\w+\\s\\S$"})",
       {R"("ab_1 x")", R"("a\tb")"},
       {R"("a  b")", R"("a-b c")"}},
      {"pattern: dot, optional, non-capturing group, {m,}",
       R"({"type": "string", "pattern": "^a.?c(?:xy){2,}$"})",
       {R"("acxyxy")", R"("abcxyxyxy")", R"("a\"cxyxy")"},
       {R"("abbcxyxy")", R"("acxy")", R"("a\ncxyxy")"}},
      {"pattern: alternatives with their own anchors",
       R"({"type": "string", "pattern": "^yes$|^no$"})",
       {R"("yes")", R"("no")"},
       {R"("yesno")", R"("maybe")"}},
      {"format date",
       R"({"type": "string", "format": "date"})",
       {R"("2024-02-29")", R"("1999-12-31")"},
       {R"("2024-13-01")", R"("24-01-01")", R"("2024-01-32")", R"("2024-1-01")"}},
      {"format time",
       R"({"type": "string", "format": "time"})",
       {R"("12:34:56Z")", R"("23:59:59.123+02:00")"},
       {R"("24:00:00Z")", R"("12:34:56")", R"("12:60:00Z")"}},
      {"format date-time",
       R"({"type": "string", "format": "date-time"})",
       {R"("2024-01-02T03:04:05Z")", R"("2024-01-02T03:04:05.5-05:30")"},
       {R"("2024-01-02 03:04:05Z")", R"("2024-01-02")"}},
      {"format uuid",
       R"({"type": "string", "format": "uuid"})",
       {R"("123e4567-e89b-12d3-a456-426614174000")"},
       {R"("123e4567-e89b-12d3-a456-42661417400")", R"("123e4567e89b12d3a456426614174000")"}},
      {"format ipv4",
       R"({"type": "string", "format": "ipv4"})",
       {R"("192.168.0.255")", R"("0.0.0.0")"},
       {R"("256.1.1.1")", R"("01.1.1.1")", R"("1.2.3")"}},

      // ---- Numbers ----
      {"integer 0..255",
       R"({"type": "integer", "minimum": 0, "maximum": 255})",
       {"0", "9", "10", "99", "100", "199", "200", "249", "250", "255"},
       {"256", "-1", "300", "1000", "01", "2550"}},
      {"integer -10..10",
       R"({"type": "integer", "minimum": -10, "maximum": 10})",
       {"-10", "-9", "-1", "0", "1", "10"},
       {"-11", "11", "-0", "100", "-100"}},
      {"integer 1..12",
       R"({"type": "integer", "minimum": 1, "maximum": 12})",
       {"1", "9", "10", "11", "12"},
       {"0", "13", "20", "-1"}},
      {"integer minimum only",
       R"({"type": "integer", "minimum": 5})",
       {"5", "9", "10", "12345678"},
       {"4", "0", "-1", "-12345678"}},
      {"integer maximum only",
       R"({"type": "integer", "maximum": 100})",
       {"100", "99", "0", "-5", "-123456"},
       {"101", "1000", "200"}},
      {"integer exclusive bounds",
       R"({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 1000})",
       {"1", "999", "500"},
       {"0", "1000", "-1"}},
      {"integer draft-4 exclusiveMinimum",
       R"({"type": "integer", "minimum": 0, "exclusiveMinimum": true})",
       {"1", "20"},
       {"0", "-1"}},
      {"integer with 64-bit bounds (taken as +-1e18)",
       R"({"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807})",
       {"0", "-5", "123", "999999999999999999", "-1000000000000000000"},
       {"1.5", "10000000000000000000"}},
      {"integer negative range",
       R"({"type": "integer", "minimum": -100, "maximum": -5})",
       {"-5", "-100", "-50", "-99"},
       {"-4", "-101", "0", "5", "-1000"}},
      {"number minimum 0",
       R"({"type": "number", "minimum": 0})",
       {"0", "0.5", "12", "1e5", "3.25E-2"},
       {"-1", "-0.5", "-0"}},
      {"number exclusiveMinimum 0",
       R"({"type": "number", "exclusiveMinimum": 0})",
       {"0.001", "5", "1e-3", "0.10"},
       {"0", "0.0", "-1", "0e5", "0.000"}},
      {"number 1..10",
       R"({"type": "number", "minimum": 1, "maximum": 10})",
       {"1", "1.5", "9.99", "10", "10.0"},
       {"0.99", "10.01", "11", "10.5", "-1"}},
      {"number between -1 and 1, exclusive",
       R"({"type": "number", "exclusiveMinimum": -1, "exclusiveMaximum": 1})",
       {"-0.5", "0", "0.999", "-0.999"},
       {"-1", "1", "1.0", "-1.0", "2"}},

      // ---- Combinations and references ----
      {"anyOf",
       R"({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]})",
       {R"("x")", "5"},
       {"true", "-5"}},
      {"oneOf objects (as anyOf)",
       R"({"oneOf": [
             {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}},
              "required": ["kind", "lives"]},
             {"type": "object", "properties": {"kind": {"const": "dog"}, "good": {"type": "boolean"}},
              "required": ["kind"]}]})",
       {R"({"kind": "cat", "lives": 9})", R"({"kind": "dog"})", R"({"kind": "dog", "good": true})"},
       {R"({"kind": "cat"})", R"({"kind": "dog", "lives": 9})", R"({"kind": "cow"})"}},
      {"anyOf with sibling keywords",
       R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
           "anyOf": [{"required": ["a"]}, {"required": ["b"]}]})",
       {R"({"a": 1})", R"({"b": 1})", R"({"a": 1, "b": 2})"},
       {"{}", R"({"c": 1})"}},
      {"allOf merges objects",
       R"({"allOf": [
             {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
             {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
             {"properties": {"a": {"maxLength": 2}}}]})",
       {R"({"a": "x", "b": 1})", R"({"a": "xy", "b": 1})"},
       {R"({"a": "x"})", R"({"b": 1})", R"({"a": "xyz", "b": 1})", R"({"a": 1, "b": 1})"}},
      {"allOf with a $ref and bounds",
       R"({"$defs": {"base": {"type": "integer", "minimum": 0, "maximum": 100}},
           "allOf": [{"$ref": "#/$defs/base"}, {"minimum": 10}]})",
       {"10", "100", "55"},
       {"9", "101", "-1"}},
      {"$ref to $defs and definitions",
       R"({"$defs": {"pos": {"type": "integer", "minimum": 1}},
           "definitions": {"flag": {"type": "boolean"}},
           "type": "object", "properties": {"p": {"$ref": "#/$defs/pos"},
             "q": {"$ref": "#/definitions/flag"}, "r": {"$ref": "#/$defs/pos"}},
           "required": ["p", "q"]})",
       {R"({"p": 1, "q": true})", R"({"p": 7, "q": false, "r": 3})"},
       {R"({"p": 0, "q": true})", R"({"p": 1, "q": 1})"}},
      {"$ref with sibling keywords",
       R"({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "maxLength": 3,
           "description": "ignored"})",
       {R"("abc")"},
       {R"("abcd")", "1"}},
      {"$ref pointer escapes",
       R"({"$defs": {"a/b": {"type": "string"}, "c~d": {"type": "integer"}, "e f": {"type": "null"}},
           "type": "array",
           "prefixItems": [{"$ref": "#/$defs/a~1b"}, {"$ref": "#/$defs/c~0d"}, {"$ref": "#/$defs/e%20f"}]})",
       {R"(["x", 1, null])"},
       {R"([1, "x", null])"}},
      {"recursive tree",
       R"({"$defs": {"node": {"type": "object", "properties": {
             "value": {"type": "integer"},
             "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
           "required": ["value"]}},
           "$ref": "#/$defs/node"})",
       {R"({"value": 1})",
        R"({"value": 1, "children": [{"value": 2, "children": []},
            {"value": 3, "children": [{"value": 4, "children": [{"value": 5}]}]}]})"},
       {R"({"value": 1, "children": [{}]})", R"({"children": []})",
        R"({"value": 1, "children": [{"value": "x"}]})"}},
      {"recursive list through \"#\"",
       R"({"type": "object", "properties": {"v": {"type": "integer"},
             "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["v", "next"]})",
       {R"({"v": 1, "next": null})",
        R"({"v": 1, "next": {"v": 2, "next": {"v": 3, "next": null}}})"},
       {R"({"v": 1})", R"({"v": 1, "next": {"v": 2}})"}},
  };
  return k;
}

TEST(JsonSchema, Cases) {
  ASSERT_GE(cases().size(), 40u);
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::string gbnf;
    try {
      gbnf = tf::json_schema_to_gbnf(Json::parse(c.schema));
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": " << e.what();
      continue;
    }
    std::shared_ptr<const tf::Grammar> g;
    try {
      g = tf::Grammar::parse(gbnf);
    } catch (const tf::Error& e) {
      ADD_FAILURE() << c.name << ": " << e.what() << "\n" << gbnf;
      continue;
    }
    for (const std::string& text : c.accept) {
      EXPECT_TRUE(matches(g, text)) << c.name << ": should accept " << text << "\n" << gbnf;
      const Json j = Json::parse(text);
      EXPECT_TRUE(matches(g, j.dump())) << c.name << ": should accept " << j.dump() << "\n" << gbnf;
      EXPECT_TRUE(matches(g, j.dump(2))) << c.name << ": should accept " << j.dump(2) << "\n"
                                         << gbnf;
    }
    for (const std::string& text : c.reject)
      EXPECT_FALSE(matches(g, text)) << c.name << ": should reject " << text << "\n" << gbnf;
  }
}

// Integer bounds against brute force: every value near the bounds is accepted exactly when it
// is within them.
TEST(JsonSchema, IntegerRangesAreExact) {
  const std::vector<std::pair<std::optional<int64_t>, std::optional<int64_t>>> ranges = {
      {0, 255},
      {-10, 10},
      {1, 12},
      {5, std::nullopt},
      {std::nullopt, 100},
      {-100, -5},
      {0, 0},
      {7, 7},
      {-1, 1},
      {19, 21},
      {100, 999},
      {99, 1000},
      {-999, -99},
      {123, 4567},
      {-12, std::nullopt},
      {std::nullopt, -37},
      {0, 9},
      {10, 99}};
  for (const auto& [lo, hi] : ranges) {
    Json s = {{"type", "integer"}};
    if (lo) s["minimum"] = *lo;
    if (hi) s["maximum"] = *hi;
    SCOPED_TRACE(s.dump());
    const auto g = tf::Grammar::parse(tf::json_schema_to_gbnf(s));
    std::vector<int64_t> values;
    for (int64_t v = -1100; v <= 1100; ++v) values.push_back(v);
    for (int64_t v : {4567, 4568, 4566, 5000, 10000, -10000, 123456789, -123456789})
      values.push_back(v);
    for (int64_t v : values) {
      const bool in = (!lo || v >= *lo) && (!hi || v <= *hi);
      ASSERT_EQ(matches(g, std::to_string(v)), in) << v;
    }
  }
}

// Number bounds (integer-valued, inclusive or exclusive) against brute force on quarters.
TEST(JsonSchema, NumberRangesAreExact) {
  struct R {
    std::optional<int64_t> lo;
    bool lox;
    std::optional<int64_t> hi;
    bool hix;
  };
  const std::vector<R> ranges = {{0, false, std::nullopt, false}, {0, true, std::nullopt, false},
                                 {1, false, 10, false},           {-1, true, 1, true},
                                 {-5, false, -2, true},           {std::nullopt, false, 3, false},
                                 {std::nullopt, false, 0, true},  {2, true, 3, false},
                                 {-20, false, 15, true}};
  for (const R& r : ranges) {
    Json s = {{"type", "number"}};
    if (r.lo) s[r.lox ? "exclusiveMinimum" : "minimum"] = *r.lo;
    if (r.hi) s[r.hix ? "exclusiveMaximum" : "maximum"] = *r.hi;
    SCOPED_TRACE(s.dump());
    const auto g = tf::Grammar::parse(tf::json_schema_to_gbnf(s));
    for (int q = -100; q <= 100; ++q) {
      const double v = q / 4.0;
      const bool in = (!r.lo || (r.lox ? v > double(*r.lo) : v >= double(*r.lo))) &&
                      (!r.hi || (r.hix ? v < double(*r.hi) : v <= double(*r.hi)));
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", v);
      ASSERT_EQ(matches(g, buf), in) << buf;
      if (q % 4 == 0 && q != 0) {
        ASSERT_EQ(matches(g, std::to_string(q / 4)), in) << q / 4;
      }
    }
  }
}

TEST(JsonSchema, ErrorsNameTheKeywordAndThePath) {
  struct E {
    const char* schema;
    std::vector<const char*> parts;  // in the message
  };
  const std::vector<E> errors = {
      {R"({"type": "object", "properties": {"a": {"patternProperties": {"x": {}}}}})",
       {"json schema: unsupported keyword 'patternProperties' at /properties/a"}},
      {R"({"type": "array", "items": {"type": "integer", "multipleOf": 3}})",
       {"'multipleOf'", "/items"}},
      {R"({"properties": {"a~b/c": {"not": {}}}})", {"'not'", "/properties/a~0b~1c"}},
      {R"({"minProperties": 1})", {"'minProperties'", "the root"}},
      {R"({"type": "array", "contains": {}})", {"'contains'"}},
      {R"({"type": "string", "format": "email"})", {"format 'email'"}},
      {R"({"type": "string", "pattern": "^(?=a)b$"})", {"lookaround", "'pattern'"}},
      {R"({"type": "string", "pattern": "^(a)\\1$"})", {"backreference"}},
      {R"({"type": "string", "pattern": "\\bword"})", {"word boundary"}},
      {R"({"type": "string", "pattern": "(a*)*"})", {"can match nothing"}},
      {R"({"type": "string", "pattern": "a{1001}"})", {"over 1000"}},
      {R"({"type": "string", "pattern": "(ab"})", {"unterminated group"}},
      {R"({"type": "string", "pattern": "a^b"})", {"'^'"}},
      {R"({"type": "string", "pattern": "\\p{L}"})", {"Unicode property"}},
      {R"({"type": "string", "pattern": "^a$", "minLength": 2})", {"only one of"}},
      {"false", {"'false'"}},
      {R"({"type": "object", "properties": {"a": false}})", {"'false'", "/properties/a"}},
      {R"({"$ref": "http://example.com/schema.json"})", {"$ref 'http://example.com/schema.json'"}},
      {R"({"$ref": "#/$defs/missing"})", {"points to nothing"}},
      {R"({"$ref": "#anchor"})", {"anchor"}},
      {R"({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"})",
       {"left recursion"}},
      {R"({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})",
       {"left recursion"}},
      {R"({"$defs": {"a": {"$ref": "#/$defs/a", "minimum": 1}}, "$ref": "#/$defs/a", "maximum": 2})",
       {"deeper than 64"}},
      {R"({"type": "number", "minimum": 0.5})", {"non-integer minimum/maximum", "not supported"}},
      {R"({"type": "integer", "minimum": 5, "maximum": 4})", {"no integer"}},
      {R"({"type": "integer", "minimum": 1e30})", {"beyond 1e18"}},
      {R"({"type": "number", "exclusiveMinimum": 3, "maximum": 3})", {"no number"}},
      {R"({"type": "array", "minItems": 3, "maxItems": 2})", {"minItems is greater than maxItems"}},
      {R"({"type": "array", "prefixItems": [{}], "minItems": 2})", {"tuple"}},
      {R"({"type": "string", "minLength": 5000})", {"minLength over 1000"}},
      {R"({"type": "string", "minLength": -1})", {"'minLength' must be a non-negative integer"}},
      {R"({"allOf": [{"type": "string"}, {"type": "integer"}]})", {"no value in common"}},
      {R"({"allOf": [{"pattern": "a"}, {"pattern": "b"}]})", {"'pattern'"}},
      {R"({"anyOf": []})", {"'anyOf' must be a non-empty array"}},
      {R"({"type": "array", "uniqueItems": true})", {"'uniqueItems'"}},
      {R"({"type": "strng"})", {"unknown type 'strng'"}},
      {R"({"enum": []})", {"'enum'"}},
      {R"({"enum": ["a"], "minLength": 1})", {"'minLength' together with 'enum'"}},
      {R"({"type": "object", "additionalProperties": false, "required": ["x"]})",
       {"required property 'x'"}},
      {"[1, 2]", {"must be an object or a boolean"}},
  };
  for (const E& e : errors) {
    const std::string msg = error_of(e.schema);
    EXPECT_FALSE(msg.empty()) << e.schema;
    EXPECT_EQ(msg.rfind("json schema: ", 0), 0u) << msg;
    for (const char* p : e.parts)
      EXPECT_NE(msg.find(p), std::string::npos) << e.schema << " -> " << msg;
  }
}

// Untrusted schemas: deep, wide and exponential ones are refused (or converted) quickly.
TEST(JsonSchema, LimitsAreEnforcedQuickly) {
  auto quick = [](const Json& schema, const char* expect) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string msg;
    try {
      const std::string g = tf::json_schema_to_gbnf(schema);
      tf::Grammar::parse(g);  // what is accepted stays within the parser's limits
    } catch (const tf::Error& e) {
      msg = e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 2.0) << schema.dump().substr(0, 200);
    if (expect) {
      EXPECT_NE(msg.find(expect), std::string::npos) << msg;
    }
    std::printf("[ json_schema ] refused or converted in %.1f ms: %s\n", s * 1000, msg.c_str());
    return msg;
  };
  Json deep = {{"type", "integer"}};
  for (int i = 0; i < 10000; ++i) deep = Json{{"type", "array"}, {"items", std::move(deep)}};
  quick(deep, "deeper than 64");

  Json deep_any = Json::object();
  for (int i = 0; i < 200; ++i) deep_any = Json{{"anyOf", Json::array({std::move(deep_any)})}};
  quick(deep_any, "deeper than 64");

  Json wide = {{"type", "object"}, {"properties", Json::object()}};
  auto& props = wide["properties"].get_ref<Json::object_t&>();  // (operator[] would be quadratic)
  for (int i = 0; i < 50000; ++i) {
    std::string name = "p";
    name += std::to_string(i);
    props.emplace_back(name, Json{{"type", "string"}});
  }
  quick(wide, "too large");

  Json big_enum = {{"enum", Json::array()}};
  for (int i = 0; i < 20000; ++i)
    big_enum["enum"].push_back(std::string(100, 'a') + std::to_string(i));
  quick(big_enum, "too large");

  Json lengths = {{"type", "array"}, {"prefixItems", Json::array()}};
  for (int i = 0; i < 60; ++i)
    lengths["prefixItems"].push_back({{"type", "string"}, {"maxLength", 900 + i}});
  quick(lengths, "too large");

  // Each definition uses the previous one twice: shared rules keep this linear, while allOf
  // (merged, so expanded) hits the work bound.
  Json shared = {{"$defs", Json::object()}};
  shared["$defs"]["d0"] = {{"type", "string"}};
  Json merged = shared;
  for (int i = 1; i <= 25; ++i) {
    const Json ref = {{"$ref", "#/$defs/d" + std::to_string(i - 1)}};
    shared["$defs"]["d" + std::to_string(i)] = {{"type", "array"}, {"prefixItems", {ref, ref}}};
    merged["$defs"]["d" + std::to_string(i)] = {{"allOf", {ref, ref}}};
  }
  shared["$ref"] = "#/$defs/d25";
  merged["$ref"] = "#/$defs/d25";
  EXPECT_EQ(quick(shared, nullptr), "");
  quick(merged, nullptr);  // refused or converted, but quickly

  Json long_pattern = {{"type", "string"}, {"pattern", std::string(5000, 'a')}};
  quick(long_pattern, "longer than 4096");
  Json nested_pattern = {{"type", "string"},
                         {"pattern", std::string(100, '(') + std::string(100, ')')}};
  quick(nested_pattern, "too deep");
  Json counted_pattern = {{"type", "string"}, {"pattern", "^((a{1000}){1000}){1000}$"}};
  quick(counted_pattern, nullptr);
}

TEST(JsonSchema, BuilderSharesRulesAndRollsBackOnError) {
  tf::GbnfBuilder b;
  const std::string a = b.add_schema(Json::parse(R"({"type": "object", "properties": {
      "x": {"type": "string"}}, "required": ["x"]})"),
                                     "tool-a");
  const std::string c =
      b.add_schema(Json::parse(R"({"type": "array", "items": {"type": "string"}})"), "tool-b");
  EXPECT_NE(a, c);
  const std::string before = (b.add_rule("root", a + " | " + c), b.str());
  EXPECT_THROW(
      b.add_schema(Json::parse(R"({"properties": {"y": {"type": "string", "format": "nope"}}})"),
                   "tool-c"),
      tf::Error);
  EXPECT_EQ(b.str(), before);  // as it was
  // One `string` rule and one `ws` for both schemas.
  size_t strings = 0, wss = 0;
  const std::string lines = "\n" + before;
  for (size_t p = 0; (p = lines.find("\nstring ::=", p)) != std::string::npos; ++p) ++strings;
  for (size_t p = 0; (p = lines.find("\nws ::=", p)) != std::string::npos; ++p) ++wss;
  EXPECT_EQ(strings, 1u) << before;
  EXPECT_EQ(wss, 1u) << before;
  const auto g = tf::Grammar::parse(before);
  EXPECT_TRUE(matches(g, R"({"x": "1"})"));
  EXPECT_TRUE(matches(g, R"(["1", "2"])"));
  EXPECT_FALSE(matches(g, R"({"y": "1"})"));

  // A tool grammar puts its own rules around the schema's, with ws between tokens.
  tf::GbnfBuilder t;
  const std::string args = t.add_schema(Json::parse(R"({"type": "integer"})"), "args");
  t.add_rule("root", tf::GbnfBuilder::literal("<call>") + " ws " + args + " ws " +
                         tf::GbnfBuilder::literal("</call>"));
  const auto tg = tf::Grammar::parse(t.str());
  EXPECT_TRUE(matches(tg, "<call> 42 </call>"));
  EXPECT_FALSE(matches(tg, "<call>4.2</call>"));

  tf::GbnfBuilder empty;
  empty.add_schema(Json::parse("{}"), "x");
  EXPECT_THROW(empty.str(), tf::Error);  // no root
}

TEST(JsonSchema, Literal) {
  EXPECT_EQ(tf::GbnfBuilder::literal("a\"b\\c\n\t\r"), R"("a\"b\\c\n\t\r")");
  EXPECT_EQ(tf::GbnfBuilder::literal("\x01\x7F"), R"("\x01\x7F")");
  EXPECT_EQ(tf::GbnfBuilder::literal("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
  EXPECT_THROW(tf::GbnfBuilder::literal("\xC3"), tf::Error);
  EXPECT_THROW(tf::GbnfBuilder::literal("\xED\xA0\x80"), tf::Error);  // a surrogate
  const auto g = tf::Grammar::parse("root ::= " + tf::GbnfBuilder::literal("\"\\\n\x01 x"));
  EXPECT_TRUE(matches(g, "\"\\\n\x01 x"));
}

TEST(JsonSchema, RootHasNoSurroundingWhitespace) {
  const auto g = tf::Grammar::parse(tf::json_schema_to_gbnf(Json::parse(R"({"type": "object"})")));
  EXPECT_TRUE(matches(g, "{ }"));
  EXPECT_FALSE(matches(g, " {}"));
  EXPECT_FALSE(matches(g, "{} "));
  tf::GrammarMatcher m(g);
  ASSERT_TRUE(m.accept("{\"a\": 1}"));
  EXPECT_TRUE(m.dead());  // nothing can follow the value
  // Whitespace is bounded: no endless newlines or spaces.
  EXPECT_FALSE(matches(g, "{  }"));
  EXPECT_FALSE(matches(g, "{\n\n}"));
  EXPECT_FALSE(matches(g, "{\n" + std::string(21, ' ') + "}"));
  EXPECT_TRUE(matches(g, "{\n" + std::string(20, ' ') + "}"));
}

TEST(JsonSchema, ToolSchemaConversionTime) {
  const Json tool = Json::parse(R"({"type": "object", "properties": {
      "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"], "additionalProperties": false})");
  std::string g = tf::json_schema_to_gbnf(tool);  // warm up
  const int n = 200;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) g = tf::json_schema_to_gbnf(tool);
  const double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
  std::printf("[ json_schema ] get_weather schema -> GBNF: %.1f us per conversion (%zu bytes)\n",
              us, g.size());
  const auto parsed = tf::Grammar::parse(g);
  EXPECT_TRUE(matches(parsed, R"({"location": "Paris", "unit": "celsius"})"));
}

}  // namespace
