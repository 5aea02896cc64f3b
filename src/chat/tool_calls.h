// The model's side of tool calling: which syntax a model family writes its tool calls in (found
// from the chat template's text), turning a generated output into content, reasoning and tool
// calls (whole, or streamed piece by piece), and the grammar that forces a call when the request
// says tool_choice "required" or names a function.
//
// Output text is untrusted: parsing never throws, does bounded work (linear in the text but for
// a constant), and anything that is not a well-formed call stays content, with a warning.
//
// Content rules, the same for every format (when anything is parsed at all):
//  - a tool call is removed from the content; text before and after it stays. A call that is
//    a bare JSON answer (Llama 3's {"name": ...}, the generic {"tool_calls": ...}, Command R+'s
//    "Action:") counts only before any other content: elsewhere it is text;
//  - a malformed call is content, from its marker to where it went wrong (reading resumes
//    there: a good call after a bad one is still found); an unfinished one at the end of the
//    output is content to the end. A call whose close marker alone is missing at the very end
//    counts (models stop right after the call);
//  - whitespace at the start and the end of the content, and right before a tool call, is
//    dropped (models write "text\n<tool_call>..." and "</think>\n\n");
//  - reasoning (text between the think markers) goes to `reasoning`, its leading and trailing
//    whitespace dropped. The think block is recognized only at the start of the output. If the
//    close marker never comes, everything after the open marker is reasoning (a model cut off
//    while thinking has given no answer yet).
//  - parse_reasoning false (reasoning_format "none"): the think block stays in the content as
//    generated, markers included; with starts_in_reasoning no open marker is added (it is in
//    the prompt, not the output). Tool calls inside a think block are never parsed: models
//    draft calls while thinking.
//  - parse_tools false: tool-call syntax stays in the content as generated.
//  - both false (or parse_tools false and no think markers): the content is the text exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tf::chat {

// The tool-call syntaxes (what a model writes; see tool_formats.cpp for each one's details).
enum class ToolFormat {
  kGeneric,         // no tool syntax in the template: {"tool_calls": [{"name", "arguments"}]}
  kHermes,          // <tool_call>{"name", "arguments"}</tool_call>: Hermes 2 Pro/3, Qwen2.5/3, QwQ
  kLlama3,          // {"name", "parameters"} as the whole answer; <|python_tag|> builtin calls
  kMistralNemo,     // [TOOL_CALLS][{"name", "arguments", "id"}, ...]
  kMistral,         // [TOOL_CALLS]name[CALL_ID]id[ARGS]{...}: Mistral Small 3.2, Devstral
  kFunctionaryV31,  // <function=name>{...}</function>; <|python_tag|>code
  kFunctionaryV32,  // >>>name\n{...} (the prompt ends with ">>>"); >>>all\n text
  kDeepSeekR1,  // <｜tool▁call▁begin｜>function<｜tool▁sep｜>name\n```json\n{...}\n```...
  kDeepSeekV31,   // <｜tool▁call▁begin｜>name<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
  kCommandR7B,    // <|START_ACTION|>[{"tool_call_id", "tool_name", "parameters"}]<|END_ACTION|>
  kCommandRPlus,  // Action: ```json [{"tool_name", "parameters"}] ```
  kFirefunctionV2,  // functools[{"name", "arguments"}, ...]
  kGranite,         // <|tool_call|>[{"name", "arguments"}, ...]
  kKimiK2,          // <|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{...}...
  kNemotron,        // <TOOLCALL>[{"name", "arguments"}, ...]</TOOLCALL>: Nemotron Nano v2
  kSeedOss,         // <seed:tool_call><function=name><parameter=k>v</parameter>...
  kGptOss,          // harmony channels: <|channel|>commentary to=functions.name ...<|message|>{...}
};

const char* tool_format_name(ToolFormat f);
std::optional<ToolFormat> tool_format_from_name(std::string_view name);  // inverse of the above

// How to read a model's output.
struct OutputFormat {
  ToolFormat tools = ToolFormat::kGeneric;
  // Reasoning markers ("" = the model does not reason in its output): <think> </think>,
  // <|START_THINKING|> <|END_THINKING|>, <seed:think> </seed:think>, harmony's analysis channel.
  std::string think_open, think_close;
  // The generation prompt already opened the think block (QwQ, the DeepSeek R1 distills and
  // Nemotron end it with "<think>\n"): the output begins inside the reasoning.
  bool starts_in_reasoning = false;
};

// From the template's text (tool syntax and think markers), and by rendering it once for a
// one-message conversation to see whether the generation prompt opens the think block. Never
// throws; a template without tool syntax gives kGeneric.
OutputFormat detect_output_format(const std::string& template_source);

// `f` with starts_in_reasoning decided by the prompt actually rendered (variables such as
// enable_thinking / thinking change it): true iff the prompt ends with think_open (trailing
// whitespace aside); a prompt ending with think_close has thinking off, and the think markers
// are cleared. Call it once per request, after rendering.
OutputFormat for_prompt(OutputFormat f, std::string_view rendered_prompt);

struct ToolCall {
  std::string id;  // the model's own id when the format has one, else generated
  std::string name;
  std::string arguments;  // a JSON object, compact (no whitespace), non-ASCII kept as UTF-8
  bool operator==(const ToolCall&) const = default;
};

struct ParsedOutput {
  std::string content, reasoning;
  std::vector<ToolCall> tool_calls;
  std::vector<std::string> warnings;  // one per malformed call kept as content
  bool operator==(const ParsedOutput&) const = default;
};

struct ParseOptions {
  bool parse_tools = true;
  bool parse_reasoning = true;
  bool log_warnings = true;  // also print each warning on stderr
  // Ids of calls the format gives none: "call_" + 24 letters/digits (9 for the Mistral
  // formats, whose templates require that), random when 0, else a fixed sequence (tests).
  uint64_t id_seed = 0;
};

ParsedOutput parse_output(const OutputFormat& f, std::string_view text, const ParseOptions& opt);
ParsedOutput parse_output(const OutputFormat& f, std::string_view text, bool parse_tools,
                          bool parse_reasoning);

// A piece of a streamed tool call. The first delta of call `index` (0, 1, ... in order) carries
// its id and name; later ones with that index carry more of the arguments (appended).
struct ToolCallDelta {
  int index = 0;
  std::string id, name, arguments;
  bool operator==(const ToolCallDelta&) const = default;
};

struct OutputDelta {
  std::string content, reasoning;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }
};

// The output as it is generated. Text is released as soon as no later text can change what it
// is: content and reasoning at once, except a possible start of a marker and whitespace that
// may turn out to be trailing; a tool call when it is complete (until then it may still turn out
// malformed, and so be content), as one delta with its whole arguments. So the concatenated
// deltas always equal parse_output() of the whole text, however the text was split.
class StreamingOutputParser {
 public:
  StreamingOutputParser(const OutputFormat& f, const ParseOptions& opt);
  StreamingOutputParser(const OutputFormat& f, bool parse_tools, bool parse_reasoning);
  ~StreamingOutputParser();
  StreamingOutputParser(StreamingOutputParser&&) noexcept;
  StreamingOutputParser& operator=(StreamingOutputParser&&) noexcept;

  // More output (any split; the engine gives whole UTF-8 characters). Ignored after finish().
  OutputDelta push(std::string_view piece);
  // The end of the output: what was held back is resolved (an unfinished call is content).
  OutputDelta finish();
  // Everything released so far; after finish(), parse_output() of the whole text.
  const ParsedOutput& result() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A GBNF grammar (root rule "root") that makes the output tool calls in format f: any of
// `tools` (an OpenAI tools array), or only `only_function` when it is not empty; one call, or
// one or more when `parallel`. Each call's arguments follow the tool's "parameters" JSON
// Schema. Nothing may precede the calls except, for a reasoning model, its think block (the
// rest of it when starts_in_reasoning, else an optional whole one): constraining the
// reasoning away would change the model's answers. Throws tf::Error for an unknown
// only_function, a tool without a name, a schema the JSON Schema converter rejects, or a
// format that has no grammar (kSeedOss: its arguments are not JSON).
std::string tool_call_grammar(const OutputFormat& f, const nlohmann::ordered_json& tools,
                              const std::string& only_function, bool parallel);

// For kGeneric: a system-message text listing the tools and the JSON answer that calls them,
//   {"tool_calls": [{"name": "<name>", "arguments": {...}}]}
// which the parser reads (also {"tool_call": {...}}, and either inside a ```json fence).
std::string generic_tool_system_prompt(const nlohmann::ordered_json& tools);

}  // namespace tf::chat
