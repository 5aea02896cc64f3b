// The Jinja language, table-driven: every case of jinja_cases.json (a template, its variables,
// and what jinja2 renders or that it raises) against tf::jinja::Template. The expectations come
// from jinja2 in the environment of HF apply_chat_template (make_jinja_cases.py fills them in
// through reference_render.py); ExpectationsAreJinja2s re-checks them against jinja2 whenever
// it is installed, so the table cannot drift from Python.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/jinja.h"
#include "reference.h"
#include "test_util.h"
#include "util/error.h"

namespace tf::chat::test {
namespace {

struct Case {
  std::string name, source;
  json vars;
  bool error = false;
  std::string expect;         // when !error
  std::string error_message;  // jinja2's, for reading only
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    std::vector<Case> out;
    const json j = json::parse(tf::test::read_file(chat_dir() + "/jinja_cases.json"));
    for (const json& c : j) {
      Case k;
      k.name = c.at("name").get<std::string>();
      k.source = c.at("template").get<std::string>();
      k.vars = c.value("vars", json::object());
      k.error = c.value("error", false);
      if (k.error) {
        k.error_message = c.value("error_message", std::string());
      } else {
        k.expect = c.at("expect").get<std::string>();
      }
      out.push_back(std::move(k));
    }
    return out;
  }();
  return all;
}

// What our interpreter does with a case.
struct Outcome {
  bool ok = false;
  std::string text;          // rendered text, or the error message
  bool foreign = false;      // threw something other than tf::Error
  bool parse_error = false;  // threw while parsing
};

Outcome run_case(const Case& c) {
  Outcome o;
  try {
    const tf::jinja::Template t(c.source);
    try {
      o.text = t.render(c.vars);
      o.ok = true;
    } catch (const tf::Error& e) {
      o.text = e.what();
    }
  } catch (const tf::Error& e) {
    o.text = e.what();
    o.parse_error = true;
  } catch (const std::exception& e) {
    o.text = std::string("non-tf::Error exception: ") + e.what();
    o.foreign = true;
  }
  return o;
}

std::string category(const std::string& name) {
  return name.substr(0, name.find('/'));
}

TEST(JinjaLang, TableHasEnoughCases) {
  EXPECT_GE(cases().size(), 200u);
  std::map<std::string, int> seen;
  for (const Case& c : cases()) EXPECT_EQ(++seen[c.name], 1) << "duplicate case " << c.name;
}

TEST(JinjaLang, CasesRenderAsJinja2) {
  int passed = 0;
  std::map<std::string, int> failed_by_category;
  for (const Case& c : cases()) {
    Outcome o;
    try {
      o = run_case(c);
    } catch (const std::exception& e) {  // render() threw outside tf::Error inside the try
      o.text = std::string("non-tf::Error exception: ") + e.what();
      o.foreign = true;
    }
    const bool good = !o.foreign && (c.error ? !o.ok : (o.ok && o.text == c.expect));
    if (good) {
      ++passed;
      continue;
    }
    ++failed_by_category[category(c.name)];
    std::ostringstream msg;
    msg << "case " << c.name << "\n  template: " << escaped(c.source);
    if (!c.vars.empty()) msg << "\n  vars:     " << c.vars.dump();
    if (c.error) {
      msg << "\n  expected: an error (jinja2: " << c.error_message << ")";
    } else {
      msg << "\n  expected: \"" << escaped(c.expect) << "\"";
    }
    if (o.ok) {
      msg << "\n  actual:   \"" << escaped(o.text) << "\"";
      if (!c.error) msg << "\n  " << first_difference(c.expect, o.text);
    } else {
      msg << "\n  actual:   " << (o.parse_error ? "parse error: " : "error: ") << o.text;
    }
    ADD_FAILURE() << msg.str();
  }
  std::cout << "[ jinja    ] " << passed << "/" << cases().size() << " language cases pass";
  if (!failed_by_category.empty()) {
    std::cout << "; failing by category:";
    for (const auto& [cat, n] : failed_by_category) std::cout << " " << cat << " " << n;
  }
  std::cout << "\n";
}

// The contract of jinja.h: an error names its line and column.
TEST(JinjaLang, ErrorsNameLineAndColumn) {
  int checked = 0;
  for (const Case& c : cases()) {
    if (!c.error) continue;
    const Outcome o = run_case(c);
    if (o.ok || o.foreign) continue;  // reported by CasesRenderAsJinja2
    ++checked;
    EXPECT_TRUE(has_position_prefix(o.text))
        << "case " << c.name << ": error message lacks \"template line L, column C: \": " << o.text;
  }
  EXPECT_GT(checked, 0);
}

// The stored expectations are still what jinja2 says (the cases file cannot drift).
TEST(JinjaLang, ExpectationsAreJinja2s) {
  if (!reference_available()) GTEST_SKIP() << kNoReference;
  json jobs = json::array();
  for (const Case& c : cases()) jobs.push_back({{"template", c.source}, {"vars", c.vars}});
  std::vector<RefResult> ref;
  const std::string err = run_reference(jobs, ref);
  ASSERT_EQ(err, "");
  for (size_t i = 0; i < cases().size(); ++i) {
    const Case& c = cases()[i];
    if (c.error) {
      EXPECT_FALSE(ref[i].ok) << "case " << c.name << ": stored as an error, jinja2 renders \""
                              << escaped(ref[i].text) << "\"";
    } else if (!ref[i].ok) {
      ADD_FAILURE() << "case " << c.name << ": stored as \"" << escaped(c.expect)
                    << "\", jinja2 raises " << ref[i].text;
    } else {
      EXPECT_EQ(ref[i].text, c.expect) << "case " << c.name << ": stored expectation differs "
                                       << "from jinja2 (regenerate with make_jinja_cases.py)";
    }
  }
}

}  // namespace
}  // namespace tf::chat::test
