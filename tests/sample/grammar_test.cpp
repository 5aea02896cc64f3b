// GBNF grammars: parsing (errors name line and column; left recursion and oversized grammars
// are refused) and matching texts character by character, with UTF-8 split anywhere.
#include <gtest/gtest.h>

#include <random>

#include "sample/grammar.h"
#include "util/error.h"

namespace {

bool matches(const std::string& grammar, const std::string& text) {
  tf::GrammarMatcher m(tf::Grammar::parse(grammar));
  return m.accept(text) && m.complete();
}

std::string error_of(const std::string& grammar) {
  try {
    tf::Grammar::parse(grammar);
  } catch (const tf::Error& e) {
    return e.what();
  }
  return "";
}

const char* kJson = R"(
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws
string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
)";

TEST(Grammar, JsonObjects) {
  EXPECT_TRUE(matches(kJson, R"({"a": 1, "b": [true, null, "x\u00e9y"], "c": {}})"));
  EXPECT_TRUE(matches(kJson, "{}"));
  EXPECT_TRUE(matches(kJson, "{\"k\": -0.5e3}"));
  EXPECT_TRUE(matches(kJson, "{\"\xC3\xA9t\xC3\xA9\": \"\xE6\x97\xA5\xE6\x9C\xAC\"}"));  // UTF-8
  EXPECT_FALSE(matches(kJson, R"({"a": 1,})"));
  EXPECT_FALSE(matches(kJson, R"({"a" 1})"));
  EXPECT_FALSE(matches(kJson, R"([1, 2])"));  // root is an object
  EXPECT_FALSE(matches(kJson, R"({"a": tru})"));
  EXPECT_FALSE(matches(kJson, "{\"a\": \"\x01\"}"));  // control character in a string
}

TEST(Grammar, CompleteOnlyAtTheEndOfASentence) {
  tf::GrammarMatcher m(tf::Grammar::parse(kJson));
  EXPECT_FALSE(m.complete());
  ASSERT_TRUE(m.accept("{\"a\": [1"));
  EXPECT_FALSE(m.complete());
  EXPECT_FALSE(m.can_accept("}"));
  EXPECT_TRUE(m.can_accept("]}"));
  EXPECT_FALSE(m.accept("x"));  // refused, state unchanged
  ASSERT_TRUE(m.accept("]}"));
  EXPECT_TRUE(m.complete());
  EXPECT_FALSE(m.dead());  // trailing whitespace may still follow
}

TEST(Grammar, RepetitionsClassesAndAny) {
  const std::string g = "root ::= [a-c]{2,3} \"-\" [^0-9x]+ . \"!\"?";
  EXPECT_TRUE(matches(g, "ab-zz#"));
  EXPECT_TRUE(matches(g, "abc-y\xE2\x82\xAC!"));  // '.' takes a 3-byte character
  EXPECT_FALSE(matches(g, "a-zz#"));               // one letter: too few
  EXPECT_FALSE(matches(g, "abca-zz#"));            // four: too many
  EXPECT_FALSE(matches(g, "ab-x#"));               // x is excluded
  EXPECT_FALSE(matches(g, "ab-z"));                // '.' missing
  EXPECT_TRUE(matches("root ::= \"a\"{3}", "aaa"));
  EXPECT_FALSE(matches("root ::= \"a\"{3}", "aaaa"));
  EXPECT_TRUE(matches("root ::= (\"ab\" | \"c\")* \"d\"", "abcabd"));
  EXPECT_TRUE(matches("root ::= x x ::= \"q\"", "q"));  // two rules on one line
  tf::GrammarMatcher fin(tf::Grammar::parse("root ::= \"ok\""));
  ASSERT_TRUE(fin.accept("ok"));
  EXPECT_TRUE(fin.dead());
}

TEST(Grammar, Utf8SplitAcrossCalls) {
  tf::GrammarMatcher m(tf::Grammar::parse("root ::= [\\u00e0-\\u00ff] \"\\u65e5\""));
  EXPECT_TRUE(m.can_accept("\xC3"));    // could become U+00C0..U+00FF
  EXPECT_FALSE(m.can_accept("\xC4"));   // U+0100.. is outside the class
  EXPECT_FALSE(m.can_accept("\xFF"));   // never UTF-8
  ASSERT_TRUE(m.accept("\xC3"));
  ASSERT_TRUE(m.accept("\xA9\xE6"));
  EXPECT_FALSE(m.complete());
  ASSERT_TRUE(m.accept("\x97\xA5"));
  EXPECT_TRUE(m.complete());
}

TEST(Grammar, ErrorsNameTheirPlace) {
  EXPECT_NE(error_of("root ::= foo").find("'foo' is used but not defined"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nx ::= [b").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"abc").find("unterminated literal"), std::string::npos);
  EXPECT_NE(error_of("root ::= a\na ::= a \"x\" | \"y\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= e a\ne ::= \"\" | \"z\"\na ::= e root").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{3,1}").find("n < m"), std::string::npos);
  EXPECT_NE(error_of("root ::= * \"a\"").find("repeats nothing"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(error_of("root ::= [z-a]").find("out of order"), std::string::npos);
  EXPECT_NE(error_of("x ::= \"a\"").find("no rule 'root'"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(error_of("root ::= " + std::string(200, '(') + "\"a\"" + std::string(200, ')'))
                .find("nested too deep"),
            std::string::npos);
  // Repetitions copy their item: a long literal a thousand times is over the size limit.
  EXPECT_NE(error_of("root ::= \"" + std::string(2000, 'x') + "\"{1000}").find("too large"),
            std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{99999}").find("repetition count"), std::string::npos);
}

TEST(Grammar, RandomInputNeverCrashes) {
  std::mt19937 rng(1);
  const std::string alphabet = "root::=\"ab|()[]^-*+?{},.\\x0 \n#az";
  for (int i = 0; i < 3000; ++i) {
    std::string g = "root ::= ";
    const int n = int(rng() % 24);
    for (int k = 0; k < n; ++k) g += alphabet[rng() % alphabet.size()];
    try {
      auto gr = tf::Grammar::parse(g);
      tf::GrammarMatcher m(gr);
      std::string text;
      for (int k = 0; k < 8; ++k) text += char(rng() % 256);
      m.accept(text);
      m.complete();
    } catch (const tf::Error&) {
    }
  }
}

}  // namespace
