// What the Responses and Messages translators (responses_api.h, messages_api.h) read from the
// engine: one assistant turn, whole or as it streams, already split into content, reasoning and
// tool calls the way a chat-completions response is. Both translators turn these into their
// own API's objects and server-sent events.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tf::server {

using Json = nlohmann::ordered_json;  // the same alias as openai.h

struct ToolCallOut {
  std::string id, name, arguments;  // arguments: JSON text
};

// A piece of tool call `index` (0-based within the turn). The first piece of a call carries its
// id and name; later pieces only more argument text. Calls stream one after another, as in
// chat-completions chunks: once call i+1 has started, call i gets no more pieces.
struct ToolCallDeltaOut {
  int index = 0;
  std::string id, name, arguments;
};

// What one engine step added to the turn (any part may be empty).
struct TurnDelta {
  std::string content, reasoning;
  std::vector<ToolCallDeltaOut> tool_calls;
};

struct TurnUsage {
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0, reasoning_tokens = 0;
  Json meter;  // usage.tokenfab (the meter's figures, see openai.h meter_json), or null
};

struct AssistantTurn {
  std::string content, reasoning;
  std::vector<ToolCallOut> tool_calls;
  std::string finish_reason;  // chat-completions reasons: "stop", "length", "tool_calls"
  std::string matched_stop;   // the stop sequence that ended it, if any (Anthropic stop_sequence)
  TurnUsage usage;
};

// One server-sent event: written as "event: <event>\ndata: <data.dump()>\n\n". Both APIs name
// every event (the Anthropic SDK skips events without an `event:` line) and repeat the name in
// data.type.
struct SseEvent {
  std::string event;
  Json data;
};

}  // namespace tf::server
