// Hostile templates end with a clear error (naming line and column) within the limits:
// no crash, no hang, no runaway memory.
#include <gtest/gtest.h>

#include <string>

#include "chat/jinja.h"
#include "util/error.h"

namespace {

using tf::jinja::Json;
using tf::jinja::Template;

// Renders and returns the error message ("" when it rendered).
std::string error_of(const std::string& src, const tf::jinja::Limits& limits = {}) {
  try {
    Template t(src);
    t.render(Json::object(), limits);
  } catch (const tf::Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& src, const std::string& needle) {
  const std::string err = error_of(src);
  EXPECT_NE(err.find(needle), std::string::npos) << "template: " << src.substr(0, 80)
                                                 << "\nerror: " << err;
  EXPECT_EQ(err.rfind("template line ", 0), 0u) << err;
}

TEST(JinjaLimits, HugeRangeIsRefusedLikeTheSandbox) {
  expect_error("{% for x in range(10**9) %}{% endfor %}", "MAX_RANGE");
}

TEST(JinjaLimits, NestedLoopsRunOutOfSteps) {
  tf::jinja::Limits l;
  l.max_steps = 100000;
  const std::string err =
      error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", l);
  EXPECT_NE(err.find("too much work"), std::string::npos) << err;
}

TEST(JinjaLimits, StringMultiplicationIsBounded) {
  expect_error("{{ 'a' * 10**12 }}", "output too large");
  expect_error("{% set ns = namespace(s='xy') %}{% for i in range(80) %}{% set ns.s = ns.s ~ ns.s %}"
               "{% endfor %}{{ ns.s | length }}",
               "output too large");
  expect_error("{{ [1, 2] * 10**12 }}", "too much work");
  expect_error("{{ 'x' | indent(10**15) }}", "output too large");
}

TEST(JinjaLimits, RecursionIsBounded) {
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion too deep");
}

TEST(JinjaLimits, DeepNestingIsAParseError) {
  expect_error("{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}",
               "nested too deeply");
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  expect_error(ifs, "nested too deeply");
  expect_error("{{ " + std::string(10000, '[') + std::string(10000, ']') + " }}", "nested too deeply");
  std::string nots = "{{ ";
  for (int i = 0; i < 10000; ++i) nots += "not ";
  expect_error(nots + "x }}", "nested too deeply");
}

TEST(JinjaLimits, IntegerOverflowIsAnError) {
  expect_error("{{ 9223372036854775807 + 1 }}", "integer overflow");
  expect_error("{{ 2 ** 64 }}", "integer overflow");
  expect_error("{{ (-9223372036854775807 - 1) // -1 }}", "integer overflow");
  expect_error("{{ 99999999999999999999 }}", "out of range");
}

TEST(JinjaLimits, ErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("a\nb {{ x.y }}"), "template line 2, column 6: 'x' is undefined");
  EXPECT_EQ(error_of("{% for %}").rfind("template line 1, column 8: ", 0), 0u);
  EXPECT_NE(error_of("line1\n{% if true %}unclosed").find("'endif'"), std::string::npos);
  EXPECT_NE(error_of("{{ 'abc").find("unexpected end of string"), std::string::npos);
  EXPECT_NE(error_of("{# never closed").find("comment"), std::string::npos);
  EXPECT_NE(error_of("{{ x | no_such_filter }}").find("no filter named 'no_such_filter'"),
            std::string::npos);
  EXPECT_EQ(error_of("\n\n  {{ raise_exception('Roles must alternate') }}"),
            "template line 3, column 6: Roles must alternate");
}

TEST(JinjaLimits, UnknownFilterInsideIfFailsOnlyWhenReached) {
  // As in Jinja: a filter named inside an if may be guarded by the test, so it is an error
  // only when evaluated.
  EXPECT_EQ(error_of("{% if false %}{{ x | nope }}{% endif %}ok"), "");
  EXPECT_NE(error_of("{% if true %}{{ x | nope }}{% endif %}").find("nope"), std::string::npos);
  EXPECT_NE(error_of("{% for i in [1] %}{{ x | nope }}{% endfor %}").find("nope"),
            std::string::npos);
}

}  // namespace
