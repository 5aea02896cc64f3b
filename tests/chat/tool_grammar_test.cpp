// tool_call_grammar: for every format the grammar parses, accepts the calls the
// format writes (which the output parser then reads back as the same calls),
// and rejects a call to another function, arguments of the wrong type, a second
// call when not parallel, and text before the calls (except a reasoning model's
// think block).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "chat/tool_calls.h"
#include "sample/grammar.h"
#include "util/error.h"

namespace tf::chat::test {
namespace {

using F = ToolFormat;
using OJson = nlohmann::ordered_json;

OJson tools() {
  return OJson::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"},
        "days": {"type": "integer"}}, "required": ["city", "days"]}}},
    {"type": "function", "function": {"name": "search",
      "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
        "required": ["query"]}}}
  ])");
}

struct Sample {
  std::string name, args;
};

// The calls as format f writes them (written out here, independently of the
// grammar code).
std::string calls_text(F f, const std::vector<Sample>& calls) {
  std::string s;
  auto join = [&](const std::string& sep, auto item) {
    std::string r;
    for (size_t i = 0; i < calls.size(); ++i) r += (i ? sep : "") + item(calls[i], i);
    return r;
  };
  switch (f) {
    case F::kGeneric:
      return "{\"tool_calls\": [" +
             join(", ",
                  [](const Sample& c, size_t) {
                    return "{\"name\": \"" + c.name + "\", \"arguments\": " + c.args + "}";
                  }) +
             "]}";
    case F::kHermes:
      return join("\n", [](const Sample& c, size_t) {
        return "<tool_call>\n{\"name\": \"" + c.name + "\", \"arguments\": " + c.args +
               "}\n</tool_call>";
      });
    case F::kLlama3:
      return join("\n", [](const Sample& c, size_t) {
        return "{\"name\": \"" + c.name + "\", \"parameters\": " + c.args + "}";
      });
    case F::kMistralNemo:
      return "[TOOL_CALLS][" +
             join(", ",
                  [](const Sample& c, size_t) {
                    return "{\"name\": \"" + c.name + "\", \"arguments\": " + c.args +
                           ", \"id\": \"abcDEF123\"}";
                  }) +
             "]";
    case F::kMistral:
      return join("", [](const Sample& c, size_t i) {
        return "[TOOL_CALLS]" + c.name + (i ? "[CALL_ID]a1b2c3d4e" : "") + "[ARGS]" + c.args;
      });
    case F::kFunctionaryV31:
      return join("", [](const Sample& c, size_t) {
        return "<function=" + c.name + ">" + c.args + "</function>";
      });
    case F::kFunctionaryV32:
      return join(
          "", [](const Sample& c, size_t i) { return (i ? ">>>" : "") + c.name + "\n" + c.args; });
    case F::kDeepSeekR1:
      return "<｜tool▁calls▁begin｜>" +
             join("\n",
                  [](const Sample& c, size_t) {
                    return "<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + c.name + "\n```json\n" +
                           c.args + "\n```<｜tool▁call▁end｜>";
                  }) +
             "<｜tool▁calls▁end｜>";
    case F::kDeepSeekV31:
      return "<｜tool▁calls▁begin｜>" +
             join("",
                  [](const Sample& c, size_t) {
                    return "<｜tool▁call▁begin｜>" + c.name + "<｜tool▁sep｜>" + c.args +
                           "<｜tool▁call▁end｜>";
                  }) +
             "<｜tool▁calls▁end｜>";
    case F::kCommandR7B:
      return "<|START_ACTION|>[\n    " +
             join(",\n    ",
                  [](const Sample& c, size_t i) {
                    return "{\"tool_call_id\": \"" + std::to_string(i) + "\", \"tool_name\": \"" +
                           c.name + "\", \"parameters\": " + c.args + "}";
                  }) +
             "\n]<|END_ACTION|>";
    case F::kCommandRPlus:
      return "Action:\n```json\n[\n    " +
             join(",\n    ",
                  [](const Sample& c, size_t) {
                    return "{\"tool_name\": \"" + c.name + "\", \"parameters\": " + c.args + "}";
                  }) +
             "\n]\n```";
    case F::kFirefunctionV2:
    case F::kGranite:
    case F::kNemotron: {
      const std::string items = join(", ", [](const Sample& c, size_t) {
        return "{\"name\": \"" + c.name + "\", \"arguments\": " + c.args + "}";
      });
      if (f == F::kFirefunctionV2) return " functools[" + items + "]";
      if (f == F::kGranite) return "<|tool_call|>[" + items + "]";
      return "<TOOLCALL>[" + items + "]</TOOLCALL>";
    }
    case F::kKimiK2:
      return "<|tool_calls_section_begin|>" +
             join("",
                  [](const Sample& c, size_t i) {
                    return "<|tool_call_begin|>functions." + c.name + ":" + std::to_string(i) +
                           "<|tool_call_argument_begin|>" + c.args + "<|tool_call_end|>";
                  }) +
             "<|tool_calls_section_end|>";
    case F::kGptOss:
      return join("", [](const Sample& c, size_t) {
        return "<|channel|>commentary to=functions." + c.name + " <|constrain|>json<|message|>" +
               c.args + "<|call|>";
      });
    case F::kSeedOss:
      break;
  }
  return s;
}

bool accepts(const std::string& grammar, const std::string& text) {
  GrammarMatcher m(Grammar::parse(grammar));
  return m.accept(text) && m.complete();
}

const Sample kWeather{"get_weather", R"({"city": "Paris", "days": 3})"};
const Sample kSearch{"search", R"({"query": "news \"today\" ü"})"};

std::vector<F> grammar_formats() {
  std::vector<F> v;
  for (int i = 0; i <= int(F::kGptOss); ++i)
    if (F(i) != F::kSeedOss) v.push_back(F(i));
  return v;
}

class ToolGrammarTest : public ::testing::TestWithParam<F> {};

TEST_P(ToolGrammarTest, AcceptsTheFormatsCalls) {
  OutputFormat f;
  f.tools = GetParam();
  const std::string g = tool_call_grammar(f, tools(), "", true);
  ASSERT_NO_THROW(Grammar::parse(g)) << g;
  const bool single = f.tools == F::kGptOss;  // harmony: one call per message, then <|call|>
  const std::vector<Sample> calls =
      single ? std::vector<Sample>{kWeather} : std::vector<Sample>{kWeather, kSearch};
  const std::string text = calls_text(f.tools, calls);
  EXPECT_TRUE(accepts(g, text)) << text << "\n" << g;
  EXPECT_TRUE(accepts(g, calls_text(f.tools, {kSearch}))) << g;

  // What the grammar lets through, the parser reads back.
  ParseOptions opt;
  opt.log_warnings = false;
  const ParsedOutput out = parse_output(f, text, opt);
  ASSERT_EQ(out.tool_calls.size(), calls.size()) << text;
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(out.tool_calls[i].name, calls[i].name);
    EXPECT_EQ(OJson::parse(out.tool_calls[i].arguments), OJson::parse(calls[i].args));
  }
  EXPECT_EQ(out.content, "");
}

TEST_P(ToolGrammarTest, Rejects) {
  OutputFormat f;
  f.tools = GetParam();
  const std::string g = tool_call_grammar(f, tools(), "", false);
  EXPECT_TRUE(accepts(g, calls_text(f.tools, {kWeather})));
  // A function that is not a tool.
  EXPECT_FALSE(accepts(g, calls_text(f.tools, {{"get_wether", kWeather.args}})));
  // Arguments against the schema: a string where an integer must be, a missing
  // property.
  EXPECT_FALSE(
      accepts(g, calls_text(f.tools, {{"get_weather", R"({"city": "Paris", "days": "3"})"}})));
  EXPECT_FALSE(accepts(g, calls_text(f.tools, {{"get_weather", R"({"city": 5, "days": 3})"}})));
  EXPECT_FALSE(accepts(g, calls_text(f.tools, {{"search", "{}"}})));
  // Not parallel: one call only.
  if (f.tools != F::kGptOss) {
    EXPECT_FALSE(accepts(g, calls_text(f.tools, {kWeather, kSearch})));
  }
  // Nothing before the calls.
  EXPECT_FALSE(accepts(g, "Sure! " + calls_text(f.tools, {kWeather})));
  // Only the named function.
  const std::string only = tool_call_grammar(f, tools(), "search", true);
  EXPECT_TRUE(accepts(only, calls_text(f.tools, {kSearch})));
  EXPECT_FALSE(accepts(only, calls_text(f.tools, {kWeather})));
}

TEST_P(ToolGrammarTest, ThinkBlockFirst) {
  OutputFormat f;
  f.tools = GetParam();
  const bool harmony = f.tools == F::kGptOss;
  f.think_open = harmony ? "<|channel|>analysis<|message|>" : "<think>";
  f.think_close = harmony ? "<|end|>" : "</think>";
  const std::string after = harmony ? "<|start|>assistant" : "\n\n";
  const std::string calls = calls_text(f.tools, {kWeather});
  const std::string g = tool_call_grammar(f, tools(), "", false);
  EXPECT_TRUE(accepts(g, calls));
  EXPECT_TRUE(
      accepts(g, f.think_open + "Let me </thin> <end> think." + f.think_close + after + calls));
  EXPECT_FALSE(
      accepts(g, f.think_open + "a" + f.think_close + "b" + f.think_close + after + calls));
  f.starts_in_reasoning = true;
  const std::string g2 = tool_call_grammar(f, tools(), "", false);
  EXPECT_TRUE(accepts(g2, "Thinking <b>.\n" + f.think_close + after + calls));
  EXPECT_FALSE(accepts(g2, calls));
}

std::string format_name(const ::testing::TestParamInfo<F>& info) {
  std::string s = tool_format_name(info.param);
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(ToolGrammar, ToolGrammarTest, ::testing::ValuesIn(grammar_formats()),
                         format_name);

TEST(ToolGrammar, Errors) {
  OutputFormat f;
  f.tools = F::kHermes;
  EXPECT_THROW(tool_call_grammar(f, tools(), "nope", false), tf::Error);
  EXPECT_THROW(tool_call_grammar(f, OJson::object(), "", false), tf::Error);
  EXPECT_THROW(tool_call_grammar(f, OJson::array(), "", false), tf::Error);
  EXPECT_THROW(
      tool_call_grammar(f, OJson::parse(R"([{"type": "function", "function": {}}])"), "", false),
      tf::Error);
  f.tools = F::kSeedOss;
  EXPECT_THROW(tool_call_grammar(f, tools(), "", false), tf::Error);
}

TEST(ToolGrammar, ToolWithoutParametersTakesAnyObject) {
  OutputFormat f;
  f.tools = F::kHermes;
  const std::string g = tool_call_grammar(
      f, OJson::parse(R"([{"type": "function", "function": {"name": "now"}}])"), "", false);
  EXPECT_TRUE(accepts(g, "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
}

TEST(ToolGrammar, GenericSystemPrompt) {
  const std::string p = generic_tool_system_prompt(tools());
  EXPECT_NE(p.find("\"tool_calls\""), std::string::npos);
  EXPECT_NE(p.find("get_weather"), std::string::npos);
  EXPECT_NE(p.find("\"required\":[\"query\"]"), std::string::npos);
  // The shape it asks for is what the parser reads.
  OutputFormat f;
  ParseOptions opt;
  opt.log_warnings = false;
  const ParsedOutput out =
      parse_output(f, R"({"tool_calls": [{"name": "search", "arguments": {"query": "x"}}]})", opt);
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].arguments, R"({"query":"x"})");
}

}  // namespace
}  // namespace tf::chat::test
