// The OpenAI Responses API (POST /v1/responses) over the chat-completions path: a request body
// becomes a chat-completions body (which then goes through parse_chat like any other), and the
// engine's AssistantTurn becomes a `response` object or its stream of semantic events.
//
// The server is stateless: previous_response_id, conversation, background and stored prompts are
// refused with a 400, `store` is ignored (nothing is ever stored), and the whole conversation has
// to come in `input`. Only function tools exist; built-in tools (web_search, file_search,
// computer_use, ...) are refused naming the type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server/api_types.h"

namespace tf::server {

// Throws ApiError (400, naming the field) for what it cannot translate.
Json responses_to_chat(const Json& body);

// The complete `response` object. `request_body` supplies the fields a response echoes back
// (instructions, tools, tool_choice, temperature, text, ...).
Json responses_object(const AssistantTurn& turn, const std::string& id, const std::string& model,
                      int64_t created, const Json& request_body);

// Writes one streamed response. Every event has data.type == event and a sequence_number counting
// from 0. Output items get their output_index in the order they start; each item stays open until
// finish(), which sends all the .done events and then the full response again, with the same item
// ids. A max-tokens cut ends with response.incomplete instead of response.completed, as OpenAI's
// own streams do. Calls after the stream has ended return nothing; push, finish and fail send
// start()'s events first if start() was not called.
class ResponsesStream {
 public:
  ResponsesStream(std::string id, std::string model, int64_t created, const Json& request_body);

  std::vector<SseEvent> start();  // response.created, response.in_progress
  std::vector<SseEvent> push(const TurnDelta& delta);
  // `turn` is the whole turn. What it has beyond the pushed deltas (say, tool calls parsed only
  // at the end) is streamed first, so the events always add up to the final response.
  std::vector<SseEvent> finish(const AssistantTurn& turn);
  // response.failed with response.error {code, message}; code "context_length_exceeded" for a
  // prompt that does not fit (Codex CLI looks for it).
  std::vector<SseEvent> fail(const std::string& code, const std::string& message);

 private:
  enum class Kind { reasoning, message, call };
  struct Item {
    Kind kind;
    std::string id;
    std::string text;  // reasoning or message text, or a call's arguments
    std::string call_id, name;
  };
  SseEvent event(const std::string& type, Json data);  // adds type and sequence_number
  // Announces a new item (and its empty content part); returns its output_index.
  size_t open(Kind kind, std::vector<SseEvent>& out, const ToolCallDeltaOut* call = nullptr);
  Json item_json(const Item& it, const std::string& status, bool done) const;
  Json response(const std::string& status) const;  // the echo fields, no output yet

  std::string id_, model_;
  int64_t created_;
  Json echo_;
  int64_t seq_ = 0;
  bool started_ = false, ended_ = false;
  std::vector<Item> items_;  // in output_index order
  int reasoning_ = -1, message_ = -1;
  std::vector<int> calls_;  // call index -> output_index, -1 = not started
};

}  // namespace tf::server
