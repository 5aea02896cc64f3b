// Which output format a chat template implies. The tool syntax is recognized by strings only
// that family's templates contain (the marker a template renders past calls with, or tells the
// model to use), tested most specific first: several families share a header style, e.g.
// Functionary v3.1 and firefunction are Llama 3 templates with their own call syntax.
#include <array>
#include <utility>

#include "chat/chat_template.h"
#include "chat/output_scan.h"
#include "chat/tool_calls.h"

namespace tf::chat {
namespace {

constexpr std::array<std::pair<ToolFormat, const char*>, 17> kNames = {{
    {ToolFormat::kGeneric, "generic"},
    {ToolFormat::kHermes, "hermes"},
    {ToolFormat::kLlama3, "llama3"},
    {ToolFormat::kMistralNemo, "mistral-nemo"},
    {ToolFormat::kMistral, "mistral"},
    {ToolFormat::kFunctionaryV31, "functionary-v3.1"},
    {ToolFormat::kFunctionaryV32, "functionary-v3.2"},
    {ToolFormat::kDeepSeekR1, "deepseek-r1"},
    {ToolFormat::kDeepSeekV31, "deepseek-v3.1"},
    {ToolFormat::kCommandR7B, "command-r7b"},
    {ToolFormat::kCommandRPlus, "command-r-plus"},
    {ToolFormat::kFirefunctionV2, "firefunction-v2"},
    {ToolFormat::kGranite, "granite"},
    {ToolFormat::kKimiK2, "kimi-k2"},
    {ToolFormat::kNemotron, "nemotron"},
    {ToolFormat::kSeedOss, "seed-oss"},
    {ToolFormat::kGptOss, "gpt-oss"},
}};

ToolFormat detect_tools(const std::string& s) {
  auto has = [&](const char* x) { return s.find(x) != std::string::npos; };
  using F = ToolFormat;
  if (has("<|channel|>") && has("<|message|>")) return F::kGptOss;
  if (has("<｜tool▁calls▁begin｜>"))  // R1 fences the arguments; V3.1 writes them bare
    return has("```json") ? F::kDeepSeekR1 : F::kDeepSeekV31;
  if (has("<|START_ACTION|>")) return F::kCommandR7B;
  if (has(">>>all")) return F::kFunctionaryV32;
  if (has("functools[")) return F::kFirefunctionV2;
  if (has("<seed:tool_call>")) return F::kSeedOss;
  if (has("<|tool_calls_section_begin|>")) return F::kKimiK2;
  if (has("<TOOLCALL>")) return F::kNemotron;
  if (has("<|tool_call|>")) return F::kGranite;
  if (has("<tool_call>")) return F::kHermes;
  if (has("<function=") && has("<|start_header_id|>")) return F::kFunctionaryV31;
  if (has("[TOOL_CALLS]")) return has("[ARGS]") ? F::kMistral : F::kMistralNemo;
  if (has("<|start_header_id|>ipython<|end_header_id|>") || has("<|python_tag|>"))
    return F::kLlama3;
  if (has("directly-answer") && has("Action:")) return F::kCommandRPlus;
  return F::kGeneric;
}

void detect_thinking(const std::string& s, OutputFormat& f) {
  auto has = [&](const char* x) { return s.find(x) != std::string::npos; };
  if (f.tools == ToolFormat::kGptOss) {
    f.think_open = "<|channel|>analysis<|message|>";
    f.think_close = "<|end|>";
  } else if (has("<seed:think>")) {
    f.think_open = "<seed:think>";
    f.think_close = "</seed:think>";
  } else if (has("<|START_THINKING|>")) {
    f.think_open = "<|START_THINKING|>";
    f.think_close = "<|END_THINKING|>";
  } else if (has("<think>") || has("</think>")) {
    f.think_open = "<think>";
    f.think_close = "</think>";
  }
}

}  // namespace

const char* tool_format_name(ToolFormat f) {
  for (const auto& [k, name] : kNames)
    if (k == f) return name;
  return "unknown";
}

std::optional<ToolFormat> tool_format_from_name(std::string_view name) {
  for (const auto& [k, n] : kNames)
    if (name == n) return k;
  return std::nullopt;
}

OutputFormat for_prompt(OutputFormat f, std::string_view prompt) {
  const std::string_view p = detail::trim_ws(prompt);
  auto ends_with = [&](const std::string& m) {
    return !m.empty() && p.size() >= m.size() && p.substr(p.size() - m.size()) == m;
  };
  f.starts_in_reasoning = !f.think_close.empty() && ends_with(f.think_open);
  // A prompt that ends with a closed (empty) think block has thinking off (Qwen3's
  // enable_thinking false): no reasoning to read, and none for a tool grammar to allow.
  if (ends_with(f.think_close)) {
    f.think_open.clear();
    f.think_close.clear();
  }
  return f;
}

OutputFormat detect_output_format(const std::string& source) {
  OutputFormat f;
  f.tools = detect_tools(source);
  detect_thinking(source, f);
  if (f.think_open.empty()) return f;
  // Whether the generation prompt opens the think block, with the template's defaults.
  try {
    const ChatTemplate tmpl(source, "", "");
    ChatInputs in;
    in.messages = jinja::Json::array({{{"role", "user"}, {"content", "Hello"}}});
    f.starts_in_reasoning = for_prompt(f, tmpl.apply(in)).starts_in_reasoning;
  } catch (const std::exception&) {  // a template that cannot render this: assume not
  }
  return f;
}

}  // namespace tf::chat
