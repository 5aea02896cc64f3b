// The output parser, format by format: complete outputs against expected content, reasoning
// and calls; and every one of them streamed in every way it can be split (tool_calls_util.h),
// with each combination of parse_tools / parse_reasoning, against the unsplit parse.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "chat/tool_calls.h"
#include "tool_calls_util.h"

namespace tf::chat::test {
namespace {

using F = ToolFormat;

OutputFormat fmt(F tools, std::string open = "", std::string close = "", bool starts = false) {
  OutputFormat f;
  f.tools = tools;
  f.think_open = std::move(open);
  f.think_close = std::move(close);
  f.starts_in_reasoning = starts;
  return f;
}
OutputFormat think(F tools, bool starts = false) {
  return fmt(tools, "<think>", "</think>", starts);
}

struct Call {
  std::string name, arguments, id = "";  // id "" = generated
};

struct Case {
  std::string label;
  OutputFormat format;
  std::string text;
  std::string content, reasoning;
  std::vector<Call> calls;
  bool warns = false;  // a malformed call was kept as content
};

// The 9-character ids the Mistral templates insist on, else call_ + 24.
void expect_generated_id(const OutputFormat& f, const std::string& id) {
  auto alnum = [](const std::string& s) {
    for (char c : s)
      if (!std::isalnum(static_cast<unsigned char>(c))) return false;
    return !s.empty();
  };
  if (f.tools == F::kMistral || f.tools == F::kMistralNemo) {
    EXPECT_EQ(id.size(), 9u) << id;
    EXPECT_TRUE(alnum(id)) << id;
  } else {
    ASSERT_EQ(id.size(), 29u) << id;
    EXPECT_EQ(id.substr(0, 5), "call_");
    EXPECT_TRUE(alnum(id.substr(5))) << id;
  }
}

const std::string kWeather = R"({"name": "get_weather", "arguments": {"city": "Paris"}})";
const std::string kNested =  // nested structure, escaped quotes, Unicode (raw and escaped)
    R"({"q": "say \"hi\" \\ back", "deep": {"a": [1, 2.5, {"b": null, "c": true}]}, )"
    R"("u": "日本語 \u00e9 😀", "e": "\ud83d\ude00\n"})";
const std::string kNestedCompact =
    R"({"q":"say \"hi\" \\ back","deep":{"a":[1,2.5,{"b":null,"c":true}]},)"
    R"("u":"日本語 é 😀","e":"😀\n"})";

std::vector<Case> cases() {
  const OutputFormat hermes = fmt(F::kHermes), qwen3 = think(F::kHermes);
  const OutputFormat llama = fmt(F::kLlama3), nemo = fmt(F::kMistralNemo);
  const OutputFormat mistral = fmt(F::kMistral), f31 = fmt(F::kFunctionaryV31);
  const OutputFormat f32 = fmt(F::kFunctionaryV32), r1 = think(F::kDeepSeekR1, true);
  const OutputFormat v31 = think(F::kDeepSeekV31);
  const OutputFormat r7b = fmt(F::kCommandR7B, "<|START_THINKING|>", "<|END_THINKING|>");
  const OutputFormat rplus = fmt(F::kCommandRPlus), fire = fmt(F::kFirefunctionV2);
  const OutputFormat granite = think(F::kGranite), kimi = fmt(F::kKimiK2);
  const OutputFormat nemotron = think(F::kNemotron, true);
  const OutputFormat seed = fmt(F::kSeedOss, "<seed:think>", "</seed:think>");
  const OutputFormat harmony = fmt(F::kGptOss, "<|channel|>analysis<|message|>", "<|end|>");
  const OutputFormat generic = fmt(F::kGeneric);
  const std::string w = R"({"city":"Paris"})";
  const std::string tc = "<tool_call>\n", etc = "\n</tool_call>";
  const std::string dsb = "<｜tool▁calls▁begin｜>", dse = "<｜tool▁calls▁end｜>";
  const std::string dcb = "<｜tool▁call▁begin｜>", dce = "<｜tool▁call▁end｜>";
  const std::string sep = "<｜tool▁sep｜>";
  // clang-format off: one case per entry reads better than one field per line
  return {
      // ---- Hermes / Qwen ----
      {"hermes_one", hermes, tc + kWeather + etc, "", "", {{"get_weather", w}}},
      {"hermes_text_around",
       hermes,
       "Let me check.\n" + tc + kWeather + etc + "\nDone.",
       "Let me check.\nDone.",
       "",
       {{"get_weather", w}}},
      {"hermes_parallel",
       hermes,
       tc + kWeather + etc + "\n" + tc + R"({"name": "get_time", "arguments": {}})" + etc,
       "",
       "",
       {{"get_weather", w}, {"get_time", "{}"}}},
      {"hermes_nested",
       hermes,
       tc + R"({"name": "search", "arguments": )" + kNested + "}" + etc,
       "",
       "",
       {{"search", kNestedCompact}}},
      {"hermes_string_args",
       hermes,
       R"(<tool_call>{"name": "f", "arguments": "{\"a\": [1, \"x\"]}"}</tool_call>)",
       "",
       "",
       {{"f", R"({"a":[1,"x"]})"}}},
      {"hermes_no_args",
       hermes,
       R"(<tool_call>{"name": "now"}</tool_call>)",
       "",
       "",
       {{"now", "{}"}}},
      {"hermes_no_close_at_end",
       hermes,
       R"(<tool_call>{"name":"f","arguments":{"a":1}})",
       "",
       "",
       {{"f", R"({"a":1})"}}},
      {"hermes_bad_json",
       hermes,
       R"(<tool_call>{"name": "f", "arguments": {"a": 1,}}</tool_call>)",
       R"(<tool_call>{"name": "f", "arguments": {"a": 1,}}</tool_call>)",
       "",
       {},
       true},
      {"hermes_unterminated",
       hermes,
       "Sure.\n" + tc + R"({"name": "f", "argu)",
       "Sure.\n" + tc + R"({"name": "f", "argu)",
       "",
       {},
       true},
      {"hermes_unknown_structure",
       hermes,
       R"(<tool_call>{"tool": "f"}</tool_call>)",
       R"(<tool_call>{"tool": "f"}</tool_call>)",
       "",
       {},
       true},
      {"hermes_args_not_object",
       hermes,
       R"(<tool_call>{"name": "f", "arguments": [1]}</tool_call> ok)",
       R"(<tool_call>{"name": "f", "arguments": [1]}</tool_call> ok)",
       "",
       {},
       true},
      {"hermes_bad_then_good",
       hermes,
       "<tool_call>oops</tool_call>\n" + tc + kWeather + etc,
       "<tool_call>oops</tool_call>",
       "",
       {{"get_weather", w}},
       true},
      {"hermes_lookalike_text",
       hermes,
       "Use <tool> or <tool_cal> tags < >",
       "Use <tool> or <tool_cal> tags < >",
       "",
       {}},
      {"qwen3_think_call",
       qwen3,
       "<think>\nThe user wants weather.\n</think>\n\n" + tc + kWeather + etc,
       "",
       "The user wants weather.",
       {{"get_weather", w}}},
      {"qwen3_call_in_think_is_reasoning",
       qwen3,
       "<think>maybe " + tc + kWeather + etc + "</think>\n\nAnswer.",
       "Answer.",
       "maybe " + tc + kWeather + etc,
       {}},
      {"qwen3_empty_think", qwen3, "<think>\n\n</think>\n\nHi!", "Hi!", "", {}},
      {"qwen3_unclosed_think", qwen3, "<think>\nStill thinking", "", "Still thinking", {}},
      {"qwen3_late_think_is_content", qwen3, "Hi <think>x</think>", "Hi <think>x</think>", "", {}},
      // ---- Llama 3.x ----
      {"llama_one",
       llama,
       R"({"name": "get_weather", "parameters": {"city": "Paris"}})",
       "",
       "",
       {{"get_weather", w}}},
      {"llama_type_function",
       llama,
       "\n"
       R"({"type": "function", "name": "f", "parameters": {"x": [1]}})",
       "",
       "",
       {{"f", R"({"x":[1]})"}}},
      {"llama_arguments_key",
       llama,
       R"({"name": "f", "arguments": {"u": "ü"}})",
       "",
       "",
       {{"f", R"({"u":"ü"})"}}},
      {"llama_parallel",
       llama,
       R"({"name": "a", "parameters": {}}; {"name": "b", "parameters": {"k": 2}})"
       "\n"
       R"({"name": "c", "parameters": {}})",
       "",
       "",
       {{"a", "{}"}, {"b", R"({"k":2})"}, {"c", "{}"}}},
      {"llama_nested",
       llama,
       R"({"name": "search", "parameters": )" + kNested + "}",
       "",
       "",
       {{"search", kNestedCompact}}},
      {"llama_text_after",
       llama,
       R"({"name": "f", "parameters": {}})"
       "\nLet me know.",
       "Let me know.",
       "",
       {{"f", "{}"}}},
      {"llama_json_answer_is_content",
       llama,
       R"({"answer": 42, "name": "x"})",
       R"({"answer": 42, "name": "x"})",
       "",
       {}},
      {"llama_text_first_is_content",
       llama,
       R"(Sure: {"name": "f", "parameters": {}})",
       R"(Sure: {"name": "f", "parameters": {}})",
       "",
       {}},
      {"llama_name_without_parameters",
       llama,
       R"({"name": "Bob", "age": 3})",
       R"({"name": "Bob", "age": 3})",
       "",
       {},
       true},
      {"llama_bad_json",
       llama,
       R"({"name": "f", "parameters": {"x": }})",
       R"({"name": "f", "parameters": {"x": }})",
       "",
       {},
       true},
      {"llama_builtin",
       llama,
       R"(<|python_tag|>brave_search.call(query="weather in Paris"))",
       "",
       "",
       {{"brave_search", R"({"query":"weather in Paris"})"}}},
      {"llama_builtin_args",
       llama,
       R"(<|python_tag|>wolfram_alpha.call(query='2+2', n=3, exact=true))",
       "",
       "",
       {{"wolfram_alpha", R"({"query":"2+2","n":3,"exact":true})"}}},
      {"llama_python_tag_json",
       llama,
       R"(<|python_tag|>{"name": "f", "parameters": {"x": 1}})",
       "",
       "",
       {{"f", R"({"x":1})"}}},
      {"llama_python_tag_code",
       llama,
       "<|python_tag|>import math\nprint(math.pi)",
       "",
       "",
       {{"python", R"js({"code":"import math\nprint(math.pi)"})js"}}},
      // ---- Mistral ----
      {"nemo_one",
       nemo,
       R"([TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, )"
       R"("id": "abcDEF123"}])",
       "",
       "",
       {{"get_weather", w, "abcDEF123"}}},
      {"nemo_parallel_text_before",
       nemo,
       R"(I'll look both up.[TOOL_CALLS] [{"name": "a", "arguments": {}}, )"
       R"({"name": "b", "arguments": )" +
           kNested + R"(, "id": "bad id"}])",
       "I'll look both up.",
       "",
       {{"a", "{}"}, {"b", kNestedCompact}}},
      {"nemo_unterminated",
       nemo,
       R"([TOOL_CALLS][{"name": "f", "arguments": {"a": 1})",
       R"([TOOL_CALLS][{"name": "f", "arguments": {"a": 1})",
       "",
       {},
       true},
      {"mistral_one",
       mistral,
       R"([TOOL_CALLS]get_weather[ARGS]{"city": "Paris"})",
       "",
       "",
       {{"get_weather", w}}},
      {"mistral_call_id",
       mistral,
       R"([TOOL_CALLS]f[CALL_ID]a1b2c3d4e[ARGS]{})",
       "",
       "",
       {{"f", "{}", "a1b2c3d4e"}}},
      {"mistral_parallel",
       mistral,
       "Checking.\n"
       R"([TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b[ARGS])" +
           kNested,
       "Checking.",
       "",
       {{"a", "{}"}, {"b", kNestedCompact}}},
      {"mistral_bad_json",
       mistral,
       R"([TOOL_CALLS]f[ARGS]{"x": tru})",
       R"([TOOL_CALLS]f[ARGS]{"x": tru})",
       "",
       {},
       true},
      {"mistral_no_args_marker", mistral, "[TOOL_CALLS]f{}", "[TOOL_CALLS]f{}", "", {}, true},
      // ---- Functionary ----
      {"f31_one",
       f31,
       R"(<function=get_weather>{"city": "Paris"}</function>)",
       "",
       "",
       {{"get_weather", w}}},
      {"f31_parallel_text",
       f31,
       R"(Checking both.<function=a>{}</function>)"
       "\n"
       R"(<function=b>)" +
           kNested + "</function>",
       "Checking both.",
       "",
       {{"a", "{}"}, {"b", kNestedCompact}}},
      {"f31_python",
       f31,
       "<|python_tag|>print(\"hi\")",
       "",
       "",
       {{"python", R"js({"code":"print(\"hi\")"})js"}}},
      {"f31_bad",
       f31,
       R"(<function=f>{"a": 1</function>)",
       R"(<function=f>{"a": 1</function>)",
       "",
       {},
       true},
      {"f32_one",
       f32,
       "get_weather\n"
       R"({"city": "Paris"})",
       "",
       "",
       {{"get_weather", w}}},
      {"f32_all_then_calls",
       f32,
       "all\nLet me check.>>>get_weather\n"
       R"({"city": "Paris"})"
       ">>>search\n" +
           kNested,
       "Let me check.",
       "",
       {{"get_weather", w}, {"search", kNestedCompact}}},
      {"f32_answer", f32, "all\nHello there!", "Hello there!", "", {}},
      {"f32_python",
       f32,
       "python\nprint('hi')\n>>>all\nDone.",
       "Done.",
       "",
       {{"python", R"({"code":"print('hi')\n"})"}}},
      {"f32_no_recipient", f32, "Hello, world", "Hello, world", "", {}},
      {"f32_bad",
       f32,
       "get_weather\n"
       R"({"city":)",
       "get_weather\n"
       R"({"city":)",
       "",
       {},
       true},
      // ---- DeepSeek ----
      {"r1_call",
       r1,
       "Okay, the weather.\n</think>\n\n" + dsb + dcb + "function" + sep +
           "get_weather\n```json\n" + R"({"city": "Paris"})" + "\n```" + dce + dse,
       "",
       "Okay, the weather.",
       {{"get_weather", w}}},
      {"r1_parallel_nested",
       r1,
       "x</think>" + dsb + dcb + "function" + sep + "a\n```json\n{}\n```" + dce + "\n" + dcb +
           "function" + sep + "b\n```json\n" + kNested + "\n```" + dce + dse,
       "",
       "x",
       {{"a", "{}"}, {"b", kNestedCompact}}},
      {"r1_answer", r1, "Simple.\n</think>\n\nThe answer is 4.", "The answer is 4.", "Simple.", {}},
      {"r1_reopened_think", r1, "<think>\nHmm.\n</think>\nOk.", "Ok.", "Hmm.", {}},
      {"r1_unclosed", r1, "Still going and", "", "Still going and", {}},
      {"r1_variant_begin",
       r1,
       "</think><｜tool_calls_begin｜>" + dcb + "function" + sep + "f\n```json\n{\"a\": 1}\n```" +
           dce,
       "",
       "",
       {{"f", R"({"a":1})"}}},
      {"r1_bad",
       r1,
       "</think>" + dsb + dcb + "function" + sep + "f\n```json\n{\"a\" 1}\n```" + dce,
       dcb + "function" + sep + "f\n```json\n{\"a\" 1}\n```" + dce,
       "",
       {},
       true},
      {"v31_call",
       v31,
       "Sure." + dsb + dcb + "get_weather" + sep + R"({"city": "Paris"})" + dce + dcb + "t" + sep +
           kNested + dce + dse,
       "Sure.",
       "",
       {{"get_weather", w}, {"t", kNestedCompact}}},
      {"v31_bad",
       v31,
       dsb + dcb + "f" + sep + "{oops}" + dce + dse,
       dcb + "f" + sep + "{oops}" + dce,
       "",
       {},
       true},
      // ---- Cohere ----
      {"r7b_plan_call",
       r7b,
       "<|START_THINKING|>I will search.<|END_THINKING|><|START_ACTION|>[\n"
       R"(    {"tool_call_id": "0", "tool_name": "search", "parameters": {"q": "x"}},)"
       "\n"
       R"(    {"tool_call_id": "1", "tool_name": "get_weather", )"
       R"("parameters": {"city": "Paris"}})"
       "\n]<|END_ACTION|>",
       "",
       "I will search.",
       {{"search", R"({"q":"x"})"}, {"get_weather", w}}},
      {"r7b_nested",
       r7b,
       "<|START_ACTION|>[{\"tool_call_id\": \"0\", \"tool_name\": \"s\", \"parameters\": " +
           kNested + "}]<|END_ACTION|>",
       "",
       "",
       {{"s", kNestedCompact}}},
      {"r7b_response", r7b, "<|START_RESPONSE|>Hello!<|END_RESPONSE|>", "Hello!", "", {}},
      {"r7b_bad",
       r7b,
       "<|START_ACTION|>[{\"tool_name\": 3}]<|END_ACTION|>",
       "<|START_ACTION|>[{\"tool_name\": 3}]<|END_ACTION|>",
       "",
       {},
       true},
      {"rplus_action",
       rplus,
       "Action:\n```json\n[\n    {\n        \"tool_name\": \"internet_search\",\n        "
       "\"parameters\": {\"query\": \"x\"}\n    }\n]\n```",
       "",
       "",
       {{"internet_search", R"({"query":"x"})"}}},
      {"rplus_parallel_nested",
       rplus,
       "Action: ```json\n[{\"tool_name\": \"a\", \"parameters\": {}}, {\"tool_name\": \"b\", "
       "\"parameters\": " +
           kNested + "}]\n```",
       "",
       "",
       {{"a", "{}"}, {"b", kNestedCompact}}},
      {"rplus_bad",
       rplus,
       "Action:\n```json\n[{\"tool_name\": \"a\"]\n```",
       "Action:\n```json\n[{\"tool_name\": \"a\"]\n```",
       "",
       {},
       true},
      {"rplus_prose", rplus, "Action: none needed.", "Action: none needed.", "", {}},
      // ---- firefunction, Granite, Kimi, Nemotron, Seed-OSS ----
      {"fire_parallel",
       fire,
       R"( functools[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": )" + kNested +
           "}]",
       "",
       "",
       {{"f", R"({"a":1})"}, {"g", kNestedCompact}}},
      {"fire_prose",
       fire,
       "I used functools.partial here.",
       "I used functools.partial here.",
       "",
       {}},
      {"fire_bad",
       fire,
       R"(functools[{"name": "f", "arguments": 1}])",
       R"(functools[{"name": "f", "arguments": 1}])",
       "",
       {},
       true},
      {"granite_call",
       granite,
       R"(<|tool_call|>[{"name": "f", "arguments": {}}])",
       "",
       "",
       {{"f", "{}"}}},
      {"granite_parallel",
       granite,
       R"(<|tool_call|>[{"name": "f", "arguments": {}}, {"name": "g", "arguments": )" + kNested +
           "}]",
       "",
       "",
       {{"f", "{}"}, {"g", kNestedCompact}}},
      {"granite_bad",
       granite,
       R"(<|tool_call|>[{"name": "f", "arguments": {}},])",
       R"(<|tool_call|>[{"name": "f", "arguments": {}},])",
       "",
       {},
       true},
      {"granite_think_response",
       granite,
       "<think>hmm</think><response>Hello</response>",
       "Hello",
       "hmm",
       {}},
      {"kimi_parallel",
       kimi,
       "Looking.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
       R"(<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>)"
       "<|tool_call_begin|>functions.search:1<|tool_call_argument_begin|>" +
           kNested + "<|tool_call_end|><|tool_calls_section_end|>",
       "Looking.",
       "",
       {{"get_weather", w}, {"search", kNestedCompact}}},
      {"kimi_bad",
       kimi,
       "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{",
       "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{",
       "",
       {},
       true},
      {"nemotron_call",
       nemotron,
       "Plan.\n</think>\n"
       R"(<TOOLCALL>[{"name": "f", "arguments": {"a": "b"}}]</TOOLCALL>)",
       "",
       "Plan.",
       {{"f", R"({"a":"b"})"}}},
      {"nemotron_parallel",
       think(F::kNemotron),
       R"(<TOOLCALL>[{"name": "f", "arguments": {}}, {"name": "g", "arguments": )" + kNested +
           "}]</TOOLCALL>",
       "",
       "",
       {{"f", "{}"}, {"g", kNestedCompact}}},
      {"nemotron_bad",
       think(F::kNemotron),
       R"(<TOOLCALL>[{"name": "f"}</TOOLCALL>)",
       R"(<TOOLCALL>[{"name": "f"}</TOOLCALL>)",
       "",
       {},
       true},
      {"seed_parallel",
       seed,
       "<seed:tool_call><function=a></function></seed:tool_call>\n<seed:tool_call>\n"
       "<function=b>\n<parameter=list>[1, {\"k\": \"日本\"}]</parameter>\n</function>\n"
       "</seed:tool_call>",
       "",
       "",
       {{"a", "{}"}, {"b", R"({"list":[1,{"k":"日本"}]})"}}},
      {"seed_call",
       seed,
       "<seed:think>hmm</seed:think>\n<seed:tool_call>\n<function=get_weather>\n"
       "<parameter=city>Paris</parameter>\n<parameter=days>3</parameter>\n"
       "<parameter=note>\n\"quoted\" ü\n</parameter>\n</function>\n</seed:tool_call>",
       "",
       "hmm",
       {{"get_weather", R"({"city":"Paris","days":3,"note":"\"quoted\" ü"})"}}},
      {"seed_bad",
       seed,
       "<seed:tool_call><function=f><parameter=a>1</function>",
       "<seed:tool_call><function=f><parameter=a>1</function>",
       "",
       {},
       true},
      // ---- gpt-oss (harmony) ----
      {"harmony_call",
       harmony,
       "<|channel|>analysis<|message|>User wants weather.<|end|><|start|>assistant<|channel|>"
       R"(commentary to=functions.get_weather <|constrain|>json<|message|>)"
       R"({"city": "Paris"}<|call|>)",
       "",
       "User wants weather.",
       {{"get_weather", w}}},
      {"harmony_final",
       harmony,
       "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final"
       "<|message|>Hello!<|return|>",
       "Hello!",
       "Simple.",
       {}},
      {"harmony_recipient_first",
       harmony,
       "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>" + kNested,
       "",
       "",
       {{"f", kNestedCompact}}},
      {"harmony_bad",
       harmony,
       "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\":",
       "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\":",
       "",
       {},
       true},
      // ---- generic ----
      {"generic_calls",
       generic,
       R"({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c1"}, )"
       R"({"name": "s", "arguments": )" +
           kNested + "}]}",
       "",
       "",
       {{"get_weather", w, "c1"}, {"s", kNestedCompact}}},
      {"generic_one",
       generic,
       R"({"tool_call": {"name": "f", "arguments": {}}})",
       "",
       "",
       {{"f", "{}"}}},
      {"generic_fenced",
       generic,
       "```json\n"
       R"({"tool_calls": [{"name": "f", "arguments": {"a": 1}}]})"
       "\n```",
       "",
       "",
       {{"f", R"({"a":1})"}}},
      {"generic_answer", generic, "Hello! How can I help?", "Hello! How can I help?", "", {}},
      {"generic_json_answer", generic, R"({"response": "hi"})", R"({"response": "hi"})", "", {}},
      {"generic_code_fence",
       generic,
       "```python\nprint(1)\n```",
       "```python\nprint(1)\n```",
       "",
       {}},
      {"generic_bad",
       generic,
       R"({"tool_calls": [{"arguments": {}}]})",
       R"({"tool_calls": [{"arguments": {}}]})",
       "",
       {},
       true},
  };
  // clang-format on
}

class ToolCallsTest : public ::testing::TestWithParam<Case> {};

TEST_P(ToolCallsTest, Parses) {
  const Case& c = GetParam();
  ParseOptions opt;
  opt.log_warnings = false;
  const ParsedOutput out = parse_output(c.format, c.text, opt);
  EXPECT_EQ(out.content, c.content);
  EXPECT_EQ(out.reasoning, c.reasoning);
  ASSERT_EQ(out.tool_calls.size(), c.calls.size());
  for (size_t i = 0; i < c.calls.size(); ++i) {
    EXPECT_EQ(out.tool_calls[i].name, c.calls[i].name) << i;
    EXPECT_EQ(out.tool_calls[i].arguments, c.calls[i].arguments) << i;
    if (c.calls[i].id.empty()) {
      expect_generated_id(c.format, out.tool_calls[i].id);
    } else {
      EXPECT_EQ(out.tool_calls[i].id, c.calls[i].id);
    }
  }
  EXPECT_EQ(!out.warnings.empty(), c.warns) << (out.warnings.empty() ? "" : out.warnings[0]);
}

TEST_P(ToolCallsTest, StreamsLikeWhole) {
  const Case& c = GetParam();
  for (int flags = 0; flags < 4; ++flags) {
    SCOPED_TRACE("parse_tools " + std::to_string(flags & 1) + ", parse_reasoning " +
                 std::to_string(flags >> 1));
    ParseOptions opt;
    opt.parse_tools = flags & 1;
    opt.parse_reasoning = flags & 2;
    expect_stream_equal(c.format, c.text, opt);
    if (HasFatalFailure()) return;
  }
}

TEST_P(ToolCallsTest, UnparsedToolsStayInContent) {
  const Case& c = GetParam();
  ParseOptions opt;
  opt.parse_tools = false;
  opt.log_warnings = false;
  const ParsedOutput out = parse_output(c.format, c.text, opt);
  EXPECT_TRUE(out.tool_calls.empty());
  EXPECT_TRUE(out.warnings.empty());
  EXPECT_EQ(out.reasoning, c.reasoning);  // reasoning does not depend on tool parsing
  // Nothing of the text is lost but reasoning, markers and whitespace.
  if (c.format.think_open.empty() && c.format.tools != F::kCommandR7B &&
      c.format.tools != F::kGranite) {
    EXPECT_EQ(out.content, c.text);
  }
}

// Text before and after a call stays content (formats whose calls carry a marker of their own:
// not bare JSON answers, not Functionary v3.2, whose output starts with a recipient).
bool wrappable(const Case& c) {
  if (!c.content.empty() || !c.reasoning.empty() || c.calls.empty() || c.warns ||
      c.format.starts_in_reasoning)
    return false;
  if (c.format.tools == F::kGeneric || c.format.tools == F::kCommandRPlus ||
      c.format.tools == F::kFunctionaryV32)
    return false;
  if (c.format.tools == F::kLlama3 && c.text.rfind("<|python_tag|>", 0) != 0) return false;
  for (const Call& call : c.calls)
    if (call.name == "python") return false;  // code runs to the end of the output
  return c.label.find("no_close") == std::string::npos;
}

std::vector<Case> wrappable_cases() {
  std::vector<Case> v;
  for (const Case& c : cases())
    if (wrappable(c)) v.push_back(c);
  return v;
}

class ToolTextAroundTest : public ::testing::TestWithParam<Case> {};

TEST_P(ToolTextAroundTest, StaysContent) {
  const Case& c = GetParam();
  ParseOptions opt;
  opt.log_warnings = false;
  const std::string text = "Before, \"quoted\" ü.\n" + c.text + "\n\nAfter.";
  const ParsedOutput out = parse_output(c.format, text, opt);
  EXPECT_EQ(out.content, "Before, \"quoted\" ü.\n\nAfter.");
  ASSERT_EQ(out.tool_calls.size(), c.calls.size());
  for (size_t i = 0; i < c.calls.size(); ++i) {
    EXPECT_EQ(out.tool_calls[i].name, c.calls[i].name);
    EXPECT_EQ(out.tool_calls[i].arguments, c.calls[i].arguments);
  }
  EXPECT_TRUE(out.warnings.empty());
  expect_stream_equal(c.format, text, opt, 5);
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.label;
}

INSTANTIATE_TEST_SUITE_P(ToolFormats, ToolCallsTest, ::testing::ValuesIn(cases()), case_name);
INSTANTIATE_TEST_SUITE_P(ToolFormats, ToolTextAroundTest, ::testing::ValuesIn(wrappable_cases()),
                         case_name);

TEST(ToolCallsTest, IdsAreUniqueAndSeeded) {
  const OutputFormat f = fmt(F::kHermes);
  std::string text;
  for (int i = 0; i < 50; ++i) text += "<tool_call>" + kWeather + "</tool_call>";
  ParseOptions opt;
  const ParsedOutput a = parse_output(f, text, opt), b = parse_output(f, text, opt);
  std::set<std::string> ids;
  for (const auto& c : a.tool_calls) ids.insert(c.id);
  for (const auto& c : b.tool_calls) ids.insert(c.id);
  EXPECT_EQ(ids.size(), 100u);
  opt.id_seed = 7;
  EXPECT_EQ(parse_output(f, text, opt), parse_output(f, text, opt));
}

TEST(ToolCallsTest, DeltasOfACall) {
  StreamingOutputParser p(fmt(F::kHermes), true, true);
  OutputDelta d = p.push("Hi\n<tool_call>\n{\"name\": \"f\", ");
  EXPECT_EQ(d.content, "Hi");
  EXPECT_TRUE(d.tool_calls.empty());  // held until the call is complete
  d = p.push("\"arguments\": {\"a\": 1}}\n</tool_call>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[0].name, "f");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"a":1})");
  EXPECT_FALSE(d.tool_calls[0].id.empty());
  d = p.push("\n<tool_call>{\"name\": \"g\"}</tool_call>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].index, 1);
  d = p.finish();
  EXPECT_TRUE(d.empty());
  EXPECT_TRUE(p.push("more").empty());  // after finish: ignored
  EXPECT_EQ(p.result().tool_calls.size(), 2u);
  EXPECT_EQ(p.result().content, "Hi");
}

TEST(ToolCallsTest, ContentIsReleasedEarly) {
  StreamingOutputParser p(fmt(F::kHermes), true, true);
  EXPECT_EQ(p.push("Hello wor").content, "Hello wor");
  EXPECT_EQ(p.push("ld <tool").content, "ld");  // " ": may be trailing; "<tool": <tool_call>?
  EXPECT_EQ(p.push("s> are").content, " <tools> are");
  EXPECT_EQ(p.finish().content, "");
}

TEST(ToolCallsTest, WarningsGoToStderr) {
  testing::internal::CaptureStderr();
  const ParsedOutput out = parse_output(fmt(F::kHermes), "<tool_call>{\"name\": 1}", true, true);
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(out.warnings.size(), 1u);
  EXPECT_NE(err.find(out.warnings[0]), std::string::npos) << err;
  EXPECT_NE(err.find("hermes"), std::string::npos) << err;
  ParseOptions quiet;
  quiet.log_warnings = false;
  testing::internal::CaptureStderr();
  parse_output(fmt(F::kHermes), "<tool_call>{\"name\": 1}", quiet);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(ToolCallsTest, BothFlagsOffIsVerbatim) {
  const std::string text = "  <think>x</think>\n<tool_call>{\"name\": \"f\"}</tool_call>\n";
  EXPECT_EQ(parse_output(think(F::kHermes), text, false, false).content, text);
}

}  // namespace
}  // namespace tf::chat::test
