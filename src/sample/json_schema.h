// JSON Schema -> GBNF grammar (see grammar.h), so that constrained decoding can make a model's
// output a JSON document valid against the schema: response_format json_schema / json_object,
// and the arguments of a tool call.
//
// Supported keywords: type (string, number, integer, boolean, null, object, array, or a list
// of them; without `type`, the type its keywords imply), properties, required,
// additionalProperties (bool or schema), items, prefixItems (and the older items-array /
// additionalItems), enum, const, anyOf, oneOf (as anyOf; sibling keywords are merged into each
// alternative), allOf (merged: properties, required, type, enum, the tighter bounds; other
// keywords only when equal), $ref to "#", "#/$defs/..." and "#/definitions/..." (any local
// JSON pointer, recursion included; a $ref back to itself before any character is an error),
// $defs/definitions, minItems/maxItems, minLength/maxLength (in characters), pattern (the
// regex subset listed in json_schema.cpp), minimum/maximum/exclusiveMinimum/exclusiveMaximum
// (also draft 4's boolean exclusive*: exact for integers, any bound; for numbers only
// integer-valued bounds, exact, e.g. minimum 0 or exclusiveMinimum 0 for no minus sign),
// format (date, time, date-time, uuid, ipv4; for strings), uniqueItems only when false.
// Annotations (title, description, examples, default, $schema, $id, $anchor, $comment,
// deprecated, readOnly, writeOnly, discriminator) are ignored. Any other keyword is an error
// that names it and where it is: never silently ignored. So are: remote or anchor $refs,
// `false` schemas, non-integer bounds for numbers, lookaround / backreferences / \b in
// patterns, formats other than the ones above, enum/const beside keywords other than type,
// two of minLength/maxLength, pattern and format on one string, minLength/minItems over 1000.
//
// The grammar describes a subset of the valid documents, chosen for generation (details in
// json_schema.cpp): properties come in the schema's order, additional ones after them (with
// keys other than the schema's); when `properties` is given and `additionalProperties` is not,
// no other properties (llama.cpp's choice), and likewise a `prefixItems` tuple is whole and
// closed unless minItems / items say otherwise; whitespace is at most one space or one newline
// with up to 20 spaces/tabs between tokens; enum/const values are written as their compact
// serialization, with that whitespace allowed between the tokens of arrays and objects;
// numbers have at most 20 integer and about 20 fraction digits (and 3 exponent digits; no
// exponent when bounded, except for a lone minimum/exclusiveMinimum of 0); maxLength / maxItems
// over 1000 and bounds beyond +-1e18 act as 1000 and +-1e18; a pattern's classes and `.`
// produce no \u escapes nor control characters other than \t \n \r \b \f. Sizes are
// bounded: schema depth 64, about 200000 schema nodes of work, 12000 grammar rules, 512 KiB of
// grammar text.
//
// The schema is an nlohmann::ordered_json: a plain nlohmann::json sorts object keys, and the
// property order of the schema would be lost.
#pragma once

#include <nlohmann/json.hpp>
#include <map>
#include <string>
#include <vector>

namespace tf {

// Collects GBNF rules; shared rules (value, string, ws, ...) are emitted once. Grammars that
// wrap JSON in other text (tool-call formats) add their own rules around add_schema's.
class GbnfBuilder {
 public:
  // Adds the rules for `schema` (schema texts are untrusted: sizes and depth are bounded) and
  // returns the name of the rule that matches a JSON value valid against it, without
  // surrounding whitespace (the rule `ws` is what goes between tokens). `name` is a hint for
  // the rule names (letters, digits, '-'). Throws tf::Error:
  // "json schema: unsupported keyword 'x' at /properties/a" (or another clear message); the
  // builder is then as it was before the call.
  std::string add_schema(const nlohmann::ordered_json& schema, const std::string& name);
  // Adds (or replaces) a rule `name ::= body`; returns name.
  std::string add_rule(const std::string& name, const std::string& body);
  // A GBNF literal for text: "..." with escapes. Throws tf::Error on invalid UTF-8.
  static std::string literal(const std::string& text);
  // All rules, one per line; `root` must have been added (tf::Error otherwise).
  std::string str() const;

 private:
  class Converter;  // one add_schema call (json_schema.cpp)

  std::map<std::string, std::string> rules_;
  std::vector<std::string> order_;              // rule names in the order they were added
  std::map<std::string, std::string> by_body_;  // body -> name: identical rules are shared
  std::map<std::string, size_t> next_suffix_;   // name hint -> next number to try after it
  size_t parser_rules_ = 0;  // estimated rules the GBNF parser makes (groups, repetitions)
  size_t parser_elems_ = 0;  // and elements
  size_t bytes_ = 0;
};

// A whole grammar (root rule "root") for a JSON value valid against the schema, with nothing
// before or after it (so a matcher is done right after the value's last character).
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema);

}  // namespace tf
