// The Anthropic Messages API (POST /v1/messages, POST /v1/messages/count_tokens) over the
// chat-completions path: a request body becomes a chat-completions body (which then goes through
// parse_chat like any other), and the engine's AssistantTurn becomes a `message` object or its
// stream of events.
//
// Text only: image, document and search-result blocks are refused with a 400, as are Anthropic's
// own tools (web_search_20250305, bash_20250124, text_editor_*, ...), whose schemas the server
// does not know. cache_control and citations are ignored; thinking signatures are empty.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server/api_types.h"

namespace tf::server {

// Throws ApiError (400, naming the field) for what it cannot translate; `max_tokens` is required,
// as Anthropic requires it.
Json messages_to_chat(const Json& body);
// The same body for /v1/messages/count_tokens: no max_tokens needed, `stream` dropped.
Json count_tokens_request_to_chat(const Json& body);

// {id, type: "message", role: "assistant", model, content, stop_reason, stop_sequence, usage}.
// Content: a thinking block, a text block, then one tool_use block per call (each only if
// present). usage.input_tokens excludes cache reads, as Anthropic counts them.
Json messages_object(const AssistantTurn& turn, const std::string& id, const std::string& model);

// Anthropic's error body for an HTTP status: {type: "error", error: {type, message}}.
Json anthropic_error(int status, const std::string& message);

// Writes one streamed message: message_start, then content blocks one at a time
// (content_block_start, its deltas, content_block_stop), then message_delta and message_stop.
// A new block closes the one before; should text or thinking come again after that, it gets a
// block of its own (tool calls stream one after another, see ToolCallDeltaOut). Calls after the
// stream has ended return nothing; push and finish send start() first if it was not called.
class MessagesStream {
 public:
  MessagesStream(std::string id, std::string model);

  // message_start; `usage` is what is known before generation (the prompt's tokens).
  std::vector<SseEvent> start(const TurnUsage& usage = {});
  std::vector<SseEvent> push(const TurnDelta& delta);
  // `turn` is the whole turn. What it has beyond the pushed deltas (say, tool calls parsed only
  // at the end) is streamed first, so the events add up to messages_object(turn).
  std::vector<SseEvent> finish(const AssistantTurn& turn);
  // An `error` event, for a failure after the 200 has been sent (type as in anthropic_error).
  static SseEvent error_event(const std::string& type, const std::string& message);
  static SseEvent ping();  // keep-alive

 private:
  enum class Kind { thinking, text, tool };
  void open(Kind kind, std::vector<SseEvent>& out, const ToolCallDeltaOut* call = nullptr);
  void close(std::vector<SseEvent>& out);

  std::string id_, model_;
  bool started_ = false, ended_ = false;
  int blocks_ = 0;  // blocks started so far
  int open_ = -1;   // the open block's index, -1 = none
  Kind open_kind_ = Kind::text;
  int open_call_ = -1;             // the call index of an open tool_use block
  std::string thinking_, text_;    // everything streamed, over all blocks of the kind
  std::vector<std::string> args_;  // per call index: the arguments streamed
  std::vector<bool> call_started_;
};

}  // namespace tf::server
