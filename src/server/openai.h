// The OpenAI API's request and response shapes: parameters validated into engine requests
// (a wrong type or an out-of-range value is a 400 that names the field; unknown fields are
// ignored), and results written back as chat.completion / text_completion objects and their
// streamed chunks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "chat/tool_calls.h"
#include "engine/scheduler.h"

namespace tf::server {

using Json = nlohmann::ordered_json;

// An error with its HTTP status, in OpenAI's error shape.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" = null
  std::string code;   // "" = null
  std::string allow;  // 405: the methods the route takes (the Allow header)
  int64_t retry_after = 0;  // 429 / 503: seconds for the Retry-After header (0 = 1)
};
Json error_body(const ApiError& e);

struct ApiRequest {
  bool chat = true;
  // Chat: how to read the output (tool calls, reasoning), decided per request; `parse` false
  // leaves the text as generated.
  chat::OutputFormat format;
  chat::ParseOptions parse_options;
  bool parse = false;
  bool parallel_tool_calls = true;  // false: calls after the first are dropped
  std::string model;
  bool stream = false, include_usage = false;
  int n = 1;
  bool logprobs = false;    // chat: logprobs true; completions: logprobs >= 0
  int top_logprobs = 0;
  // One engine request per choice (and per prompt of a completions batch).
  std::vector<GenRequest> gens;
  std::vector<int> prompt_of;  // completions: which prompt each gen answers
};

// Validates a /v1/chat/completions body and renders its messages through the template.
// Throws ApiError.
// `format` is the template's (chat::detect_output_format). clamp_max_tokens: a max_tokens past
// the context is cut to what fits (the Responses and Messages APIs) instead of a 400.
ApiRequest parse_chat(const Json& body, const chat::ChatTemplate& tmpl,
                      const chat::OutputFormat& format, const Tokenizer& tok, int64_t n_ctx,
                      bool clamp_max_tokens = false);
// Validates a /v1/completions body. Throws ApiError.
ApiRequest parse_completion(const Json& body, const Tokenizer& tok, int64_t n_ctx);

// One choice's outcome.
struct ChoiceResult {
  std::string text;
  chat::ParsedOutput parsed;  // when the request parses its output
  std::string stop_string;    // the stop string that ended it, if one did
  std::string finish_reason;
  std::vector<GenToken> tokens;
  GenUsage usage;
};

Json usage_json(const std::vector<ChoiceResult>& choices, int n_prompts);
// The meter's figures for usage.tokenfab: joules, dollars, and the step share, for the prompt
// ("input") and the generated tokens ("output"), and where the energy figure came from.
Json meter_json(const GenUsage& u);
// The same over several generations (n choices, several prompts: their sum).
GenUsage sum_usage(const std::vector<ChoiceResult>& choices, int n_prompts);
Json logprobs_json(const ApiRequest& r, const Tokenizer& tok, const std::vector<GenToken>& toks,
                   size_t text_offset);
Json full_response(const ApiRequest& r, const Tokenizer& tok, const std::string& id,
                   int64_t created, const std::vector<ChoiceResult>& choices);
// A streamed chunk for choice `index` (delta text, reasoning and tool calls, tokens,
// finish_reason when final).
Json chunk_json(const ApiRequest& r, const Tokenizer& tok, const std::string& id, int64_t created,
                int index, const chat::OutputDelta& delta, const std::vector<GenToken>& toks,
                const std::string& finish_reason, bool first, size_t text_offset);
// The OpenAI tool_calls array of a message.
Json tool_calls_json(const std::vector<chat::ToolCall>& calls);

}  // namespace tf::server
