// The Responses and Messages translators (server/responses_api.h, server/messages_api.h):
// requests to chat-completions bodies (every mapping, and 400s that name the field), results to
// each API's objects, and streams whose events add up to those objects, replayed the way the
// openai and @anthropic-ai/sdk packages accumulate them. The required fields checked are the
// non-optional ones of the SDKs' .d.ts types (openai 5.23.2 resources/responses/responses.d.ts,
// @anthropic-ai/sdk 1.16.0 resources/messages/messages.d.ts).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "server/messages_api.h"
#include "server/openai.h"
#include "server/responses_api.h"
#include "tokenizer/tokenizer.h"

namespace tf::server {
namespace {

Json J(const char* text) {
  return Json::parse(text);
}
// For comparing content whatever the key order.
nlohmann::json P(const Json& j) {
  return nlohmann::json::parse(j.dump());
}
nlohmann::json P(const char* text) {
  return nlohmann::json::parse(text);
}

ApiError error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return {};
}
ApiError responses_error(const char* body) {
  return error_of([&] { responses_to_chat(J(body)); });
}
ApiError messages_error(const char* body) {
  return error_of([&] { messages_to_chat(J(body)); });
}

void expect_keys(const Json& j, const std::vector<std::string>& keys, const std::string& what) {
  ASSERT_TRUE(j.is_object()) << what << ": " << j.dump();
  for (const auto& k : keys)
    EXPECT_TRUE(j.contains(k)) << what << " lacks '" << k << "': " << j.dump();
}

// ---- Responses: request -------------------------------------------------------------------------

TEST(ResponsesRequest, StringInputAndScalars) {
  const Json chat = responses_to_chat(J(R"({
      "model": "m", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 64,
      "temperature": 0.5, "top_p": 0.9, "stream": true, "store": true, "metadata": {"a": "b"},
      "reasoning": {"effort": "high"}, "truncation": "disabled", "include": ["reasoning.encrypted_content"]})"));
  EXPECT_EQ(P(chat), P(R"({
      "model": "m",
      "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
      "max_tokens": 64, "temperature": 0.5, "top_p": 0.9,
      "stream": true, "stream_options": {"include_usage": true},
      "reasoning_format": "parsed"})"));
  // Not streaming: no stream_options; max_output_tokens may be written 64.0.
  const Json plain =
      responses_to_chat(J(R"({"input": "Hi", "stream": false, "max_output_tokens": 64.0})"));
  EXPECT_FALSE(plain.contains("stream_options"));
  EXPECT_EQ(plain["max_tokens"], 64);
  EXPECT_FALSE(plain.contains("model"));
}

TEST(ResponsesRequest, MessageItemsRolesAndParts) {
  const Json chat = responses_to_chat(J(R"({"instructions": "Sys.", "input": [
      {"role": "developer", "content": "Dev."},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                     {"type": "input_text", "text": "b"}]},
      {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
       "content": [{"type": "output_text", "text": "c", "annotations": []}, {"type": "refusal", "refusal": "no"}]},
      {"role": "system", "content": "Later system."},
      {"role": "user", "content": "d"}]})"));
  // instructions and the developer message are one system message: many templates take one.
  EXPECT_EQ(P(chat["messages"]), P(R"([
      {"role": "system", "content": "Sys.\n\nDev."},
      {"role": "user", "content": "a\nb"},
      {"role": "assistant", "content": "c\nno"},
      {"role": "system", "content": "Later system."},
      {"role": "user", "content": "d"}])"));
}

TEST(ResponsesRequest, FunctionCallsMergeIntoOneAssistantMessage) {
  const Json chat = responses_to_chat(J(R"({"input": [
      {"role": "user", "content": "weather?"},
      {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}]},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
      {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get", "arguments": "{\"city\":\"Oslo\"}"},
      {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}", "status": "completed"},
      {"type": "function_call_output", "call_id": "c1", "output": "rain"},
      {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
      {"type": "function_call", "call_id": "c3", "name": "get", "arguments": "{}"},
      {"type": "function_call_output", "call_id": "c3", "output": "sun"},
      {"type": "function_call_output", "call_id": "unknown", "output": "?"}]})"));
  EXPECT_EQ(P(chat["messages"]), P(R"([
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": "Checking.", "reasoning_content": "think", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Oslo\"}"}},
        {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "name": "get", "content": "rain"},
      {"role": "tool", "tool_call_id": "c2", "name": "time", "content": "noon"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c3", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c3", "name": "get", "content": "sun"},
      {"role": "tool", "tool_call_id": "unknown", "content": "?"}])"));
}

TEST(ResponsesRequest, ReasoningItems) {
  // Summaries stand in for missing reasoning text; reasoning before a user message is dropped.
  const Json chat = responses_to_chat(J(R"({"input": [
      {"type": "reasoning", "id": "rs_0", "summary": [{"type": "summary_text", "text": "old"}]},
      {"role": "user", "content": "q"},
      {"type": "reasoning", "id": "rs_1", "encrypted_content": "xyz", "summary": [
          {"type": "summary_text", "text": "s1"}, {"type": "summary_text", "text": "s2"}]},
      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
      {"type": "reasoning", "id": "rs_2", "summary": []}]})"));
  EXPECT_EQ(P(chat["messages"]), P(R"([
      {"role": "user", "content": "q"},
      {"role": "assistant", "content": null, "reasoning_content": "s1\n\ns2", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}])"));
}

TEST(ResponsesRequest, ToolsToolChoiceParallelAndFormat) {
  const Json chat = responses_to_chat(J(R"({"input": "x",
      "tools": [{"type": "function", "name": "get", "description": "Get it.", "strict": true,
                 "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
                {"type": "function", "name": "bare", "parameters": null, "strict": null}],
      "tool_choice": {"type": "function", "name": "bare"}, "parallel_tool_calls": false,
      "text": {"format": {"type": "json_schema", "name": "out", "strict": true,
                          "schema": {"type": "object"}}, "verbosity": "low"}})"));
  EXPECT_EQ(P(chat["tools"]), P(R"([
      {"type": "function", "function": {"name": "get", "description": "Get it.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "strict": true}},
      {"type": "function", "function": {"name": "bare", "parameters": {"type": "object", "properties": {}}}}])"));
  EXPECT_EQ(P(chat["tool_choice"]), P(R"({"type": "function", "function": {"name": "bare"}})"));
  EXPECT_EQ(chat["parallel_tool_calls"], false);
  EXPECT_EQ(
      P(chat["response_format"]),
      P(R"({"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}})"));

  for (const char* choice : {"auto", "none", "required"}) {
    Json body =
        J(R"({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": {}}]})");
    body["tool_choice"] = choice;
    EXPECT_EQ(responses_to_chat(body)["tool_choice"], choice);
  }
  EXPECT_EQ(
      P(responses_to_chat(
          J(R"({"input": "x", "text": {"format": {"type": "json_object"}}})"))["response_format"]),
      P(R"({"type": "json_object"})"));
  EXPECT_EQ(P(responses_to_chat(
                J(R"({"input": "x", "text": {"format": {"type": "text"}}})"))["response_format"]),
            P(R"({"type": "text"})"));
  EXPECT_FALSE(responses_to_chat(J(R"({"input": "x", "text": {}, "tools": []})"))
                   .contains("response_format"));
  EXPECT_FALSE(responses_to_chat(J(R"({"input": "x", "tools": []})")).contains("tools"));
}

TEST(ResponsesRequest, StatefulFeaturesAreRefused) {
  for (const char* body :
       {R"({"input": "x", "previous_response_id": "resp_1"})",
        R"({"input": "x", "conversation": "conv_1"})", R"({"input": "x", "background": true})",
        R"({"input": "x", "prompt": {"id": "pmpt_1"}})"}) {
    const ApiError e = responses_error(body);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "unsupported_parameter") << body;
    EXPECT_FALSE(e.param.empty());
    EXPECT_NE(e.message.find(e.param), std::string::npos) << e.message;
  }
  EXPECT_NE(
      responses_error(R"({"input": "x", "previous_response_id": "r"})").message.find("'input'"),
      std::string::npos);
  // Explicitly null or false means not given.
  EXPECT_NO_THROW(
      responses_to_chat(J(R"({"input": "x", "previous_response_id": null, "background": false})")));
}

TEST(ResponsesRequest, BuiltInToolsAreRefusedByType) {
  for (const char* type :
       {"web_search", "web_search_preview", "file_search", "computer_use_preview",
        "code_interpreter", "image_generation", "mcp", "local_shell", "custom"}) {
    Json body =
        J(R"({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": {}}]})");
    body["tools"].push_back({{"type", type}});
    ApiError e;
    try {
      responses_to_chat(body);
      ADD_FAILURE() << type << " accepted";
    } catch (const ApiError& err) {
      e = err;
    }
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "tools[1].type");
    EXPECT_NE(e.message.find(std::string("'") + type + "'"), std::string::npos) << e.message;
  }
}

TEST(ResponsesRequest, BadShapesNameTheField) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"([1])", ""},
      {R"({})", "input"},
      {R"({"input": []})", "input"},
      {R"({"input": 3})", "input"},
      {R"({"input": [{"type": "reasoning", "summary": []}]})", "input"},
      {R"({"input": [7]})", "input[0]"},
      {R"({"input": [{"content": "x"}]})", "input[0].type"},
      {R"({"input": [{"role": "tool", "content": "x"}]})", "input[0].role"},
      {R"({"input": [{"role": "user"}]})", "input[0].content"},
      {R"({"input": [{"role": "user", "content": 5}]})", "input[0].content"},
      {R"({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                                  {"type": "input_image", "image_url": "u"}]}]})",
       "input[0].content[1].type"},
      {R"({"input": [{"role": "user", "content": [{"type": "input_text"}]}]})",
       "input[0].content[0].text"},
      {R"({"input": [{"role": "user", "content": [{"type": "weird"}]}]})",
       "input[0].content[0].type"},
      {R"({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]})",
       "input[0].call_id"},
      {R"({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]})",
       "input[0].arguments"},
      {R"({"input": [{"type": "function_call_output", "call_id": "c"}]})", "input[0].output"},
      {R"({"input": [{"type": "item_reference", "id": "msg_1"}]})", "input[0].type"},
      {R"({"input": [{"type": "local_shell_call", "id": "x"}]})", "input[0].type"},
      {R"({"input": "x", "model": 3})", "model"},
      {R"({"input": "x", "instructions": ["a"]})", "instructions"},
      {R"({"input": "x", "tools": {}})", "tools"},
      {R"({"input": "x", "tools": [{"type": "function"}]})", "tools[0].name"},
      {R"({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "{}"}]})",
       "tools[0].parameters"},
      {R"({"input": "x", "tool_choice": "sometimes"})", "tool_choice"},
      {R"({"input": "x", "tool_choice": "required"})", "tool_choice"},
      {R"({"input": "x", "tools": [{"type": "function", "name": "f"}],
           "tool_choice": {"type": "function", "name": "g"}})",
       "tool_choice.name"},
      {R"({"input": "x", "tools": [{"type": "function", "name": "f"}],
           "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}})",
       "tool_choice.type"},
      {R"({"input": "x", "parallel_tool_calls": "yes"})", "parallel_tool_calls"},
      {R"({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}})",
       "text.format.name"},
      {R"({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}})",
       "text.format.schema"},
      {R"({"input": "x", "text": {"format": {"type": "yaml"}}})", "text.format.type"},
      {R"({"input": "x", "text": "json"})", "text"},
      {R"({"input": "x", "max_output_tokens": 0})", "max_output_tokens"},
      {R"({"input": "x", "max_output_tokens": 1.5})", "max_output_tokens"},
      {R"({"input": "x", "max_output_tokens": "9"})", "max_output_tokens"},
      {R"({"input": "x", "stream": "yes"})", "stream"},
      {R"({"input": "x", "reasoning": "high"})", "reasoning"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = responses_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << " -> " << e.message;
    EXPECT_FALSE(e.message.empty());
  }
}

// ---- Responses: response object -----------------------------------------------------------------

AssistantTurn full_turn() {
  AssistantTurn t;
  t.reasoning = "Let me think.";
  t.content = "Calling tools.";
  t.tool_calls = {{"call_a", "get", R"({"city":"Oslo"})"}, {"call_b", "time", "{}"}};
  t.finish_reason = "tool_calls";
  t.usage = {20, 8, 12, 4};
  return t;
}

TEST(ResponsesObject, ItemsUsageAndEchoes) {
  const Json req =
      J(R"({"model": "alias", "instructions": "Be brief.", "input": "x", "temperature": 0.2,
      "max_output_tokens": 99, "parallel_tool_calls": false, "tool_choice": "required",
      "tools": [{"type": "function", "name": "get", "parameters": {}, "strict": true}],
      "text": {"format": {"type": "json_object"}}, "reasoning": {"effort": "low"}, "metadata": {"k": "v"}})");
  const Json r = responses_object(full_turn(), "resp_abc", "model-x", 1700000000, req);
  // Response's non-optional fields (output_text is the SDK's own convenience).
  expect_keys(
      r,
      {"id", "created_at", "error", "incomplete_details", "instructions", "metadata", "model",
       "object", "output", "parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p"},
      "response");
  EXPECT_EQ(r["id"], "resp_abc");
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["created_at"], 1700000000);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["model"], "model-x");
  EXPECT_TRUE(r["error"].is_null());
  EXPECT_TRUE(r["incomplete_details"].is_null());
  EXPECT_FALSE(r.contains("output_text"));
  EXPECT_EQ(P(r["output"]), P(R"([
      {"type": "reasoning", "id": "rs_abc", "summary": [],
       "content": [{"type": "reasoning_text", "text": "Let me think."}]},
      {"type": "message", "id": "msg_abc", "status": "completed", "role": "assistant",
       "content": [{"type": "output_text", "text": "Calling tools.", "annotations": []}]},
      {"type": "function_call", "id": "fc_abc_0", "call_id": "call_a", "name": "get",
       "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
      {"type": "function_call", "id": "fc_abc_1", "call_id": "call_b", "name": "time",
       "arguments": "{}", "status": "completed"}])"));
  EXPECT_EQ(P(r["usage"]), P(R"({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 8},
      "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 32})"));
  EXPECT_EQ(r["instructions"], "Be brief.");
  EXPECT_EQ(r["temperature"], 0.2);
  EXPECT_EQ(r["top_p"], 1.0);
  EXPECT_EQ(r["max_output_tokens"], 99);
  EXPECT_EQ(r["parallel_tool_calls"], false);
  EXPECT_EQ(r["tool_choice"], "required");
  EXPECT_EQ(r["tools"], req["tools"]);
  EXPECT_EQ(P(r["text"]), P(R"({"format": {"type": "json_object"}})"));
  EXPECT_EQ(P(r["reasoning"]), P(R"({"effort": "low", "summary": null})"));
  EXPECT_EQ(P(r["metadata"]), P(R"({"k": "v"})"));
  EXPECT_EQ(r["store"], false);
  EXPECT_TRUE(r["previous_response_id"].is_null());

  // Defaults when the request gave nothing.
  const Json d = responses_object(full_turn(), "resp_abc", "m", 1, J(R"({"input": "x"})"));
  EXPECT_TRUE(d["instructions"].is_null());
  EXPECT_EQ(d["tools"], Json::array());
  EXPECT_EQ(d["tool_choice"], "auto");
  EXPECT_EQ(d["parallel_tool_calls"], true);
  EXPECT_EQ(d["temperature"], 1.0);
  EXPECT_EQ(P(d["text"]), P(R"({"format": {"type": "text"}})"));
  EXPECT_EQ(d["metadata"], Json::object());
}

TEST(ResponsesObject, OnlyWhatTheTurnHasAndIncomplete) {
  AssistantTurn t;
  t.content = "Once upon";
  t.finish_reason = "length";
  t.usage = {5, 0, 3, 0};
  const Json r = responses_object(t, "resp_1", "m", 1, J("{}"));
  EXPECT_EQ(r["status"], "incomplete");
  EXPECT_EQ(P(r["incomplete_details"]), P(R"({"reason": "max_output_tokens"})"));
  ASSERT_EQ(r["output"].size(), 1u);
  EXPECT_EQ(r["output"][0]["type"], "message");
  EXPECT_EQ(r["output"][0]["status"], "incomplete");
  // Tool calls alone: no message item.
  AssistantTurn calls;
  calls.tool_calls = {{"c", "f", "{}"}};
  calls.finish_reason = "tool_calls";
  const Json rc = responses_object(calls, "resp_1", "m", 1, J("{}"));
  ASSERT_EQ(rc["output"].size(), 1u);
  EXPECT_EQ(rc["output"][0]["type"], "function_call");
  EXPECT_EQ(responses_object(AssistantTurn{}, "resp_1", "m", 1, J("{}"))["output"], Json::array());
}

// ---- Responses: stream --------------------------------------------------------------------------

// The non-optional fields of each event type.
const std::map<std::string, std::vector<std::string>>& responses_event_keys() {
  static const std::map<std::string, std::vector<std::string>> keys = {
      {"response.created", {"response"}},
      {"response.in_progress", {"response"}},
      {"response.completed", {"response"}},
      {"response.incomplete", {"response"}},
      {"response.failed", {"response"}},
      {"response.output_item.added", {"item", "output_index"}},
      {"response.output_item.done", {"item", "output_index"}},
      {"response.content_part.added", {"content_index", "item_id", "output_index", "part"}},
      {"response.content_part.done", {"content_index", "item_id", "output_index", "part"}},
      {"response.output_text.delta",
       {"content_index", "delta", "item_id", "logprobs", "output_index"}},
      {"response.output_text.done",
       {"content_index", "item_id", "logprobs", "output_index", "text"}},
      {"response.reasoning_text.delta", {"content_index", "delta", "item_id", "output_index"}},
      {"response.reasoning_text.done", {"content_index", "item_id", "output_index", "text"}},
      {"response.function_call_arguments.delta", {"delta", "item_id", "output_index"}},
      {"response.function_call_arguments.done", {"arguments", "item_id", "output_index"}},
  };
  return keys;
}

// Replays events as the openai SDK's ResponseStream does (a snapshot from response.created,
// items pushed by output_item.added, parts by content_part.added, deltas appended by
// output_index and content_index), checking each event's shape and order on the way.
struct ResponsesReplay {
  Json snapshot;
  std::map<int, Json> done_items;
  Json final_response;
  std::string terminal;
  std::vector<std::string> types;
  int64_t next_seq = 0;

  void add(const std::vector<SseEvent>& events) {
    for (const SseEvent& e : events) add(e);
  }
  void add(const SseEvent& e) {
    const Json& d = e.data;
    types.push_back(e.event);
    EXPECT_TRUE(terminal.empty()) << e.event << " after " << terminal;
    EXPECT_EQ(d["type"], e.event);
    EXPECT_EQ(d["sequence_number"], next_seq++) << e.event;
    auto k = responses_event_keys().find(e.event);
    ASSERT_NE(k, responses_event_keys().end()) << "unexpected event " << e.event;
    expect_keys(d, k->second, e.event);
    if (e.event == "response.created") {
      EXPECT_TRUE(snapshot.is_null());
      snapshot = d["response"];
      EXPECT_EQ(snapshot["status"], "in_progress");
      return;
    }
    ASSERT_FALSE(snapshot.is_null()) << e.event << " before response.created";
    Json& output = snapshot["output"];
    const size_t oi = d.value("output_index", size_t(0));
    if (e.event == "response.output_item.added") {
      EXPECT_EQ(oi, output.size());
      output.push_back(d["item"]);
      return;
    }
    if (e.event.rfind("response.output", 0) == 0 || e.event.rfind("response.content", 0) == 0 ||
        e.event.rfind("response.reasoning", 0) == 0 || e.event.rfind("response.function", 0) == 0) {
      ASSERT_LT(oi, output.size()) << e.event;
      if (d.contains("item_id")) {
        EXPECT_EQ(d["item_id"], output[oi]["id"]) << e.event;
      }
    }
    if (e.event == "response.content_part.added") {
      output[oi]["content"].push_back(d["part"]);
    } else if (e.event == "response.output_text.delta" ||
               e.event == "response.reasoning_text.delta") {
      Json& part = output[oi]["content"].at(d["content_index"].get<size_t>());
      EXPECT_EQ(part["type"],
                e.event == "response.output_text.delta" ? "output_text" : "reasoning_text");
      part["text"] = part["text"].get<std::string>() + d["delta"].get<std::string>();
    } else if (e.event == "response.function_call_arguments.delta") {
      output[oi]["arguments"] =
          output[oi]["arguments"].get<std::string>() + d["delta"].get<std::string>();
    } else if (e.event == "response.output_item.done") {
      done_items[int(oi)] = d["item"];
    } else if (e.event == "response.completed" || e.event == "response.incomplete" ||
               e.event == "response.failed") {
      final_response = d["response"];
      terminal = e.event;
    }
  }

  // The deltas add up to the final items, and each output_item.done is the final item.
  void expect_consistent() const {
    ASSERT_FALSE(final_response.is_null());
    const Json& out = final_response["output"];
    ASSERT_EQ(out.size(), snapshot["output"].size());
    for (size_t i = 0; i < out.size(); ++i) {
      Json s = snapshot["output"][i];
      if (s.contains("status")) s["status"] = out[i]["status"];
      EXPECT_EQ(s, out[i]) << "streamed item " << i;
      if (terminal != "response.failed") {
        ASSERT_TRUE(done_items.count(int(i))) << "no output_item.done for " << i;
        EXPECT_EQ(done_items.at(int(i)), out[i]);
      }
    }
  }
};

std::vector<TurnDelta> pieces_of(const AssistantTurn& t) {
  std::vector<TurnDelta> out;
  for (size_t i = 0; i < t.reasoning.size(); i += 4)
    out.push_back({"", t.reasoning.substr(i, 4), {}});
  for (size_t i = 0; i < t.content.size(); i += 3) out.push_back({t.content.substr(i, 3), "", {}});
  for (size_t c = 0; c < t.tool_calls.size(); ++c) {
    const ToolCallOut& call = t.tool_calls[c];
    out.push_back({"", "", {{int(c), call.id, call.name, ""}}});
    for (size_t i = 0; i < call.arguments.size(); i += 5)
      out.push_back({"", "", {{int(c), "", "", call.arguments.substr(i, 5)}}});
  }
  return out;
}

TEST(ResponsesStream, EventsAddUpToTheResponse) {
  const Json req =
      J(R"({"input": "x", "instructions": "I.", "tools": [{"type": "function", "name": "get"}]})");
  const AssistantTurn t = full_turn();
  ResponsesStream s("resp_abc", "model-x", 1700000000, req);
  ResponsesReplay replay;
  replay.add(s.start());
  EXPECT_EQ(replay.types, (std::vector<std::string>{"response.created", "response.in_progress"}));
  for (const TurnDelta& d : pieces_of(t)) replay.add(s.push(d));
  replay.add(s.finish(t));
  EXPECT_EQ(replay.terminal, "response.completed");
  replay.expect_consistent();
  EXPECT_EQ(replay.final_response, responses_object(t, "resp_abc", "model-x", 1700000000, req));
  // The created response already echoes the request.
  EXPECT_EQ(replay.snapshot["instructions"], "I.");
  // Reasoning, message, calls: indexes in the order they started.
  EXPECT_EQ(replay.final_response["output"][0]["type"], "reasoning");
  EXPECT_EQ(replay.final_response["output"][1]["type"], "message");
  EXPECT_EQ(replay.final_response["output"][3]["call_id"], "call_b");
  // Items stay open until finish: every .done comes after the last delta.
  size_t last_delta = 0, first_done = replay.types.size();
  for (size_t i = 0; i < replay.types.size(); ++i) {
    if (replay.types[i].find(".delta") != std::string::npos) last_delta = i;
    if (replay.types[i].find(".done") != std::string::npos) first_done = std::min(first_done, i);
  }
  EXPECT_LT(last_delta, first_done);
  // After the end nothing more is written.
  EXPECT_TRUE(s.push({"more", "", {}}).empty());
  EXPECT_TRUE(s.finish(t).empty());
  EXPECT_TRUE(s.fail("server_error", "late").empty());
}

TEST(ResponsesStream, FinishStreamsWhatTheDeltasLacked) {
  const AssistantTurn t = full_turn();
  ResponsesStream s("resp_abc", "m", 1, J("{}"));
  ResponsesReplay replay;
  // No start(): the first push sends it. Part of the text, none of the reasoning or calls.
  replay.add(s.push({"Call", "", {}}));
  replay.add(s.push({"", "", {{0, "call_a", "get", R"({"ci)"}}}));
  replay.add(s.finish(t));
  replay.expect_consistent();
  EXPECT_EQ(replay.types.front(), "response.created");
  const Json& out = replay.final_response["output"];
  // Started order this time: message, call a, then reasoning and call b from finish().
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0]["content"][0]["text"], t.content);
  EXPECT_EQ(out[1]["arguments"], t.tool_calls[0].arguments);
  EXPECT_EQ(out[2]["type"], "reasoning");
  EXPECT_EQ(out[2]["content"][0]["text"], t.reasoning);
  EXPECT_EQ(out[3]["call_id"], "call_b");
  EXPECT_EQ(out[3]["id"], "fc_abc_1");
  EXPECT_EQ(replay.final_response["usage"]["total_tokens"], 32);
}

TEST(ResponsesStream, MaxTokensEndsIncomplete) {
  AssistantTurn t;
  t.content = "Once upon a";
  t.finish_reason = "length";
  t.usage = {5, 0, 3, 0};
  ResponsesStream s("resp_1", "m", 1, J("{}"));
  ResponsesReplay replay;
  replay.add(s.start());
  for (const TurnDelta& d : pieces_of(t)) replay.add(s.push(d));
  replay.add(s.finish(t));
  EXPECT_EQ(replay.terminal, "response.completed");
  replay.expect_consistent();
  EXPECT_EQ(replay.final_response, responses_object(t, "resp_1", "m", 1, J("{}")));
  EXPECT_EQ(replay.final_response["incomplete_details"]["reason"], "max_output_tokens");
}

TEST(ResponsesStream, Failures) {
  ResponsesStream s("resp_1", "m", 1, J("{}"));
  ResponsesReplay replay;
  replay.add(s.start());
  replay.add(s.push({"partial", "", {}}));
  replay.add(s.fail("server_error", "the engine stopped"));
  EXPECT_EQ(replay.terminal, "response.failed");
  replay.expect_consistent();
  const Json& r = replay.final_response;
  EXPECT_EQ(r["status"], "failed");
  EXPECT_EQ(P(r["error"]), P(R"({"code": "server_error", "message": "the engine stopped"})"));
  EXPECT_EQ(r["output"][0]["status"], "incomplete");
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "partial");
  EXPECT_TRUE(s.finish(AssistantTurn{}).empty());

  // Failing before anything was sent still makes a stream the SDK accepts.
  ResponsesStream early("resp_2", "m", 1, J("{}"));
  ResponsesReplay r2;
  r2.add(early.fail("context_length_exceeded", "too long"));
  EXPECT_EQ(r2.types, (std::vector<std::string>{"response.created", "response.in_progress",
                                                "response.failed"}));
  EXPECT_EQ(r2.final_response["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(r2.final_response["output"], Json::array());
}

// ---- Messages: request --------------------------------------------------------------------------

TEST(MessagesRequest, ScalarsSystemAndText) {
  const Json chat = messages_to_chat(J(R"({"model": "claude-x", "max_tokens": 100,
      "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}],
      "stop_sequences": ["END", "\n\n"], "temperature": 0.3, "top_p": 0.8, "top_k": 5,
      "stream": true, "metadata": {"user_id": "u"}, "service_tier": "auto"})"));
  EXPECT_EQ(P(chat), P(R"({"model": "claude-x", "max_tokens": 100,
      "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
      "stop": ["END", "\n\n"], "temperature": 0.3, "top_p": 0.8, "top_k": 5,
      "stream": true, "stream_options": {"include_usage": true}, "reasoning_format": "parsed"})"));
  // System as text blocks (cache_control ignored), and a system-role message right after it.
  const Json blocks = messages_to_chat(J(R"({"max_tokens": 1,
      "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}],
      "messages": [{"role": "system", "content": "C"},
                   {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]})"));
  EXPECT_EQ(
      P(blocks["messages"]),
      P(R"([{"role": "system", "content": "A\nB\n\nC"}, {"role": "user", "content": "x\ny"}])"));
  EXPECT_FALSE(blocks.contains("stream"));
}

TEST(MessagesRequest, ToolUseAndToolResults) {
  const Json chat = messages_to_chat(J(R"({"max_tokens": 50, "messages": [
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "need tools", "signature": "sig"},
        {"type": "redacted_thinking", "data": "xx"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Oslo"}, "caller": {"type": "direct"}},
        {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}}]},
      {"role": "user", "content": [
        {"type": "text", "text": "and hurry"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain", "cache_control": {"type": "ephemeral"}},
        {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
         "content": [{"type": "text", "text": "no"}, {"type": "text", "text": "clock"}]}]},
      {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "get", "input": {"city": "Rome"}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]}]})"));
  EXPECT_EQ(P(chat["messages"]), P(R"([
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": "Checking.", "reasoning_content": "need tools", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Oslo\"}"}},
        {"id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "toolu_1", "name": "get", "content": "rain"},
      {"role": "tool", "tool_call_id": "toolu_2", "name": "time", "content": "Error: no\nclock"},
      {"role": "user", "content": "and hurry"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "toolu_3", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Rome\"}"}}]},
      {"role": "tool", "tool_call_id": "toolu_3", "name": "get", "content": ""}])"));
}

TEST(MessagesRequest, ToolsToolChoiceThinkingAndFormat) {
  const char* tools =
      R"([{"name": "get", "description": "Get it.", "input_schema": {"type": "object"}},
                          {"type": "custom", "name": "put", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}])";
  Json body = J(R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})");
  body["tools"] = J(tools);
  const Json chat = messages_to_chat(body);
  EXPECT_EQ(P(chat["tools"]), P(R"([
      {"type": "function", "function": {"name": "get", "description": "Get it.", "parameters": {"type": "object"}}},
      {"type": "function", "function": {"name": "put", "parameters": {"type": "object"}}}])"));
  EXPECT_FALSE(chat.contains("tool_choice"));
  EXPECT_FALSE(chat.contains("parallel_tool_calls"));
  EXPECT_FALSE(chat.contains("chat_template_kwargs"));

  const std::vector<std::pair<const char*, const char*>> choices = {
      {R"({"type": "auto"})", R"("auto")"},
      {R"({"type": "any"})", R"("required")"},
      {R"({"type": "none"})", R"("none")"},
      {R"({"type": "tool", "name": "put"})",
       R"({"type": "function", "function": {"name": "put"}})"},
  };
  for (const auto& [in, out] : choices) {
    body["tool_choice"] = J(in);
    const Json c = messages_to_chat(body);
    EXPECT_EQ(P(c["tool_choice"]), P(out)) << in;
    EXPECT_FALSE(c.contains("parallel_tool_calls"));
  }
  body["tool_choice"] = J(R"({"type": "auto", "disable_parallel_tool_use": true})");
  EXPECT_EQ(messages_to_chat(body)["parallel_tool_calls"], false);
  body["tool_choice"] = J(R"({"type": "any", "disable_parallel_tool_use": false})");
  EXPECT_EQ(messages_to_chat(body)["parallel_tool_calls"], true);
  body.erase("tool_choice");

  body["thinking"] = J(R"({"type": "enabled", "budget_tokens": 2048})");
  EXPECT_EQ(P(messages_to_chat(body)["chat_template_kwargs"]), P(R"({"enable_thinking": true})"));
  body["thinking"] = J(R"({"type": "disabled"})");
  EXPECT_EQ(P(messages_to_chat(body)["chat_template_kwargs"]), P(R"({"enable_thinking": false})"));
  body["thinking"] = J(R"({"type": "adaptive"})");
  EXPECT_FALSE(messages_to_chat(body).contains("chat_template_kwargs"));
  body.erase("thinking");

  body["output_config"] =
      J(R"({"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}})");
  EXPECT_EQ(
      P(messages_to_chat(body)["response_format"]),
      P(R"({"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": true}})"));
}

TEST(MessagesRequest, BadShapesNameTheField) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"("x")", ""},
      {R"({"messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {R"({"max_tokens": 0, "messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {R"({"max_tokens": "5", "messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {R"({"max_tokens": 5})", "messages"},
      {R"({"max_tokens": 5, "messages": []})", "messages"},
      {R"({"max_tokens": 5, "messages": {}})", "messages"},
      {R"({"max_tokens": 5, "messages": ["x"]})", "messages[0]"},
      {R"({"max_tokens": 5, "messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]})", "messages[0].role"},
      {R"({"max_tokens": 5, "messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": 3}]})", "messages[0].content"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
           {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}]}]})",
       "messages[0].content[1].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]})",
       "messages[0].content[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result",
           "tool_use_id": "t", "content": [{"type": "image"}]}]}]})",
       "messages[0].content[0].content[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]})",
       "messages[0].content[0].tool_use_id"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result",
           "tool_use_id": "t", "is_error": "yes"}]}]})",
       "messages[0].content[0].is_error"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}]})",
       "messages[0].content[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]})",
       "messages[0].content[0].input"},
      {R"({"max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "server_tool_use",
           "id": "t", "name": "web_search", "input": {}}]}]})",
       "messages[0].content[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "system": 4})",
       "system"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "system": [{"type": "image"}]})",
       "system[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
           "tools": [{"type": "web_search_20250305", "name": "web_search"}]})",
       "tools[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
           "tools": [{"type": "bash_20250124", "name": "bash"}]})",
       "tools[0].type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f"}]})",
       "tools[0].input_schema"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"input_schema": {}}]})",
       "tools[0].name"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"})",
       "tool_choice"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "any"}})",
       "tool_choice"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "input_schema": {}}],
           "tool_choice": {"type": "tool", "name": "g"}})",
       "tool_choice.name"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "input_schema": {}}],
           "tool_choice": {"type": "sometimes"}})",
       "tool_choice.type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"})",
       "stop_sequences"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": [""]})",
       "stop_sequences"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "maybe"}})",
       "thinking.type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
           "thinking": {"type": "enabled", "budget_tokens": -1}})",
       "thinking.budget_tokens"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "xml"}}})",
       "output_config.format.type"},
      {R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": 1})",
       "stream"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = messages_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << " -> " << e.message;
    EXPECT_FALSE(e.message.empty());
  }
  EXPECT_NE(messages_error(R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]})")
                .message.find("'web_search_20250305'"),
            std::string::npos);
}

TEST(MessagesRequest, CountTokensNeedsNoMaxTokens) {
  const Json chat = count_tokens_request_to_chat(J(R"({"model": "m", "stream": true, "system": "S",
      "messages": [{"role": "user", "content": "Hi"}], "tools": [{"name": "f", "input_schema": {}}]})"));
  EXPECT_EQ(P(chat), P(R"({"model": "m",
      "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
      "reasoning_format": "parsed"})"));
  EXPECT_EQ(error_of([] { count_tokens_request_to_chat(J(R"({"messages": []})")); }).param,
            "messages");
}

// ---- Messages: message object and errors --------------------------------------------------------

TEST(MessagesObject, BlocksStopReasonAndUsage) {
  const Json m = messages_object(full_turn(), "msg_1", "model-x");
  // Message's non-optional fields, and each block's.
  expect_keys(m,
              {"id", "container", "content", "diagnostics", "model", "role", "stop_details",
               "stop_reason", "stop_sequence", "type", "usage"},
              "message");
  expect_keys(m["usage"],
              {"cache_creation", "cache_creation_input_tokens", "cache_read_input_tokens",
               "inference_geo", "input_tokens", "output_tokens", "output_tokens_details",
               "server_tool_use", "service_tier", "speed"},
              "usage");
  EXPECT_EQ(m["id"], "msg_1");
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "model-x");
  EXPECT_EQ(P(m["content"]), P(R"([
      {"type": "thinking", "thinking": "Let me think.", "signature": ""},
      {"type": "text", "text": "Calling tools.", "citations": null},
      {"type": "tool_use", "id": "call_a", "name": "get", "input": {"city": "Oslo"}, "caller": {"type": "direct"}},
      {"type": "tool_use", "id": "call_b", "name": "time", "input": {}, "caller": {"type": "direct"}}])"));
  EXPECT_EQ(m["stop_reason"], "tool_use");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  // Anthropic's input_tokens leaves out cache reads.
  EXPECT_EQ(m["usage"]["input_tokens"], 12);
  EXPECT_EQ(m["usage"]["cache_read_input_tokens"], 8);
  EXPECT_EQ(m["usage"]["cache_creation_input_tokens"], 0);
  EXPECT_EQ(m["usage"]["output_tokens"], 12);
}

TEST(MessagesObject, StopReasons) {
  AssistantTurn t;
  t.content = "hi";
  t.finish_reason = "stop";
  EXPECT_EQ(messages_object(t, "m", "x")["stop_reason"], "end_turn");
  t.matched_stop = "END";
  Json m = messages_object(t, "m", "x");
  EXPECT_EQ(m["stop_reason"], "stop_sequence");
  EXPECT_EQ(m["stop_sequence"], "END");
  t.finish_reason = "length";
  m = messages_object(t, "m", "x");
  EXPECT_EQ(m["stop_reason"], "max_tokens");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  // An empty turn still has a (empty) content list; malformed arguments give an empty input.
  AssistantTurn bad_args;
  bad_args.tool_calls = {{"c", "f", "{not json"}, {"d", "g", "[1]"}, {"e", "h", ""}};
  bad_args.finish_reason = "tool_calls";
  m = messages_object(bad_args, "m", "x");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(m["content"][i]["input"], Json::object());
  EXPECT_EQ(messages_object(AssistantTurn{}, "m", "x")["content"], Json::array());
}

TEST(MessagesObject, ErrorTypesByStatus) {
  const std::vector<std::pair<int, const char*>> cases = {
      {400, "invalid_request_error"}, {401, "authentication_error"},
      {403, "permission_error"},      {404, "not_found_error"},
      {405, "invalid_request_error"}, {413, "request_too_large"},
      {429, "rate_limit_error"},      {500, "api_error"},
      {503, "overloaded_error"},      {529, "overloaded_error"}};
  for (const auto& [status, type] : cases) {
    const Json e = anthropic_error(status, "why");
    EXPECT_EQ(e["type"], "error");
    EXPECT_EQ(e["error"]["type"], type) << status;
    EXPECT_EQ(e["error"]["message"], "why");
    EXPECT_TRUE(e.contains("request_id"));
  }
}

// ---- Messages: stream ---------------------------------------------------------------------------

// Replays events as @anthropic-ai/sdk's MessageStream does (message_start's message, blocks
// pushed by content_block_start, deltas appended by index, input_json_delta text parsed into
// the input at content_block_stop, message_delta's stop and usage copied over), checking that
// blocks are sequential.
struct MessagesReplay {
  Json message;
  std::map<int, std::string> json;
  int open = -1;
  bool stopped = false;
  std::vector<std::string> types;

  void add(const std::vector<SseEvent>& events) {
    for (const SseEvent& e : events) add(e);
  }
  void add(const SseEvent& e) {
    const Json& d = e.data;
    types.push_back(e.event);
    EXPECT_FALSE(stopped) << e.event << " after message_stop";
    EXPECT_EQ(d["type"], e.event);
    if (e.event == "message_start") {
      expect_keys(d, {"message"}, e.event);
      EXPECT_TRUE(message.is_null());
      message = d["message"];
      EXPECT_EQ(message["content"], Json::array());
      return;
    }
    ASSERT_FALSE(message.is_null()) << e.event << " before message_start";
    if (e.event == "content_block_start") {
      expect_keys(d, {"content_block", "index"}, e.event);
      EXPECT_EQ(open, -1) << "a block started before the previous one stopped";
      EXPECT_EQ(d["index"], message["content"].size());
      open = d["index"].get<int>();
      message["content"].push_back(d["content_block"]);
    } else if (e.event == "content_block_delta") {
      expect_keys(d, {"delta", "index"}, e.event);
      EXPECT_EQ(d["index"], open);
      Json& block = message["content"].at(d["index"].get<size_t>());
      const Json& delta = d["delta"];
      if (delta["type"] == "text_delta") {
        EXPECT_EQ(block["type"], "text");
        block["text"] = block["text"].get<std::string>() + delta["text"].get<std::string>();
      } else if (delta["type"] == "thinking_delta") {
        EXPECT_EQ(block["type"], "thinking");
        block["thinking"] =
            block["thinking"].get<std::string>() + delta["thinking"].get<std::string>();
      } else if (delta["type"] == "input_json_delta") {
        EXPECT_EQ(block["type"], "tool_use");
        json[open] += delta["partial_json"].get<std::string>();
      } else {
        ADD_FAILURE() << "unexpected delta " << delta.dump();
      }
    } else if (e.event == "content_block_stop") {
      expect_keys(d, {"index"}, e.event);
      EXPECT_EQ(d["index"], open);
      if (!json[open].empty()) message["content"][size_t(open)]["input"] = Json::parse(json[open]);
      open = -1;
    } else if (e.event == "message_delta") {
      expect_keys(d, {"delta", "usage"}, e.event);
      expect_keys(d["delta"], {"container", "stop_details", "stop_reason", "stop_sequence"},
                  "delta");
      expect_keys(d["usage"],
                  {"cache_creation_input_tokens", "cache_read_input_tokens", "input_tokens",
                   "output_tokens", "output_tokens_details", "server_tool_use"},
                  "delta usage");
      EXPECT_EQ(open, -1);
      message["stop_reason"] = d["delta"]["stop_reason"];
      message["stop_sequence"] = d["delta"]["stop_sequence"];
      message["stop_details"] = d["delta"]["stop_details"];
      for (const auto& kv : d["usage"].items())
        if (!kv.value().is_null()) message["usage"][kv.key()] = kv.value();
    } else if (e.event == "message_stop") {
      stopped = true;
    } else {
      ADD_FAILURE() << "unexpected event " << e.event;
    }
  }
};

TEST(MessagesStream, EventsAddUpToTheMessage) {
  const AssistantTurn t = full_turn();
  MessagesStream s("msg_1", "model-x");
  MessagesReplay replay;
  replay.add(s.start({20, 0, 0, 0}));
  EXPECT_EQ(replay.message["usage"]["input_tokens"], 20);
  for (const TurnDelta& d : pieces_of(t)) replay.add(s.push(d));
  replay.add(s.finish(t));
  EXPECT_TRUE(replay.stopped);
  EXPECT_EQ(replay.message, messages_object(t, "msg_1", "model-x"));
  EXPECT_EQ(replay.types.front(), "message_start");
  EXPECT_EQ(replay.types.back(), "message_stop");
  EXPECT_EQ(replay.types[replay.types.size() - 2], "message_delta");
  EXPECT_TRUE(s.push({"more", "", {}}).empty());
  EXPECT_TRUE(s.finish(t).empty());
}

TEST(MessagesStream, FinishStreamsWhatTheDeltasLacked) {
  AssistantTurn t;
  t.content = "Sure.";
  t.tool_calls = {{"toolu_1", "get", R"({"city": "Oslo"})"}, {"toolu_2", "time", ""}};
  t.finish_reason = "tool_calls";
  t.usage = {9, 0, 7, 0};
  MessagesStream s("msg_1", "m");
  MessagesReplay replay;
  // No start(): push sends message_start itself. The text whole (a text piece after the tool
  // block had started would open a second text block), part of the first call.
  replay.add(s.push({"Sure.", "", {}}));
  replay.add(s.push({"", "", {{0, "toolu_1", "get", R"({"ci)"}}}));
  replay.add(s.finish(t));
  EXPECT_EQ(replay.message, messages_object(t, "msg_1", "m"));
  EXPECT_EQ(replay.message["stop_reason"], "tool_use");
}

TEST(MessagesStream, BlocksAreSequential) {
  // Text after a tool call gets a block of its own; a late piece of a closed call is dropped.
  MessagesStream s("msg_1", "m");
  MessagesReplay replay;
  replay.add(s.start());
  replay.add(s.push({"", "hmm", {}}));
  replay.add(s.push({"a", "", {{0, "t0", "f", "{}"}}}));
  replay.add(s.push({"b", "", {{0, "", "", "ignored"}}}));
  AssistantTurn t;
  t.reasoning = "hmm";
  t.content = "ab";
  t.tool_calls = {{"t0", "f", "{}"}};
  t.finish_reason = "tool_calls";
  replay.add(s.finish(t));
  const Json& c = replay.message["content"];
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0]["thinking"], "hmm");
  EXPECT_EQ(c[1]["text"], "a");
  EXPECT_EQ(c[2]["input"], Json::object());
  EXPECT_EQ(c[3]["text"], "b");
}

TEST(MessagesStream, EndReasonsUsageErrorsAndPing) {
  AssistantTurn t;
  t.content = "The end";
  t.finish_reason = "stop";
  t.matched_stop = "END";
  t.usage = {30, 10, 2, 0};
  MessagesStream s("msg_1", "m");
  MessagesReplay replay;
  replay.add(s.start({30, 0, 0, 0}));
  for (const TurnDelta& d : pieces_of(t)) replay.add(s.push(d));
  replay.add(s.finish(t));
  // The final usage (with the cache split known only at the end) overrides message_start's.
  EXPECT_EQ(replay.message, messages_object(t, "msg_1", "m"));
  EXPECT_EQ(replay.message["usage"]["input_tokens"], 20);
  EXPECT_EQ(replay.message["usage"]["cache_read_input_tokens"], 10);
  EXPECT_EQ(replay.message["stop_sequence"], "END");

  const SseEvent err = MessagesStream::error_event("overloaded_error", "busy");
  EXPECT_EQ(err.event, "error");
  EXPECT_EQ(P(err.data),
            P(R"({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})"));
  const SseEvent ping = MessagesStream::ping();
  EXPECT_EQ(ping.event, "ping");
  EXPECT_EQ(P(ping.data), P(R"({"type": "ping"})"));
}

// ---- Through the chat layer ---------------------------------------------------------------------

// A tokenizer of the 256 byte tokens alone (every text encodes, byte by byte).
std::unique_ptr<Tokenizer> byte_tokenizer() {
  VocabData d;
  d.model = "llama";
  d.tokens = {"<unk>", "<s>", "</s>"};
  d.types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    d.tokens.push_back(name);
    d.types.push_back(6);
  }
  d.scores.assign(d.tokens.size(), 0.0f);
  d.unk_id = 0;
  d.bos_id = 1;
  d.eos_id = 2;
  d.add_space_prefix = false;
  return Tokenizer::from_vocab(std::move(d));
}

std::string rendered(const Json& chat) {
  chat::ChatTemplate tmpl(chat::default_template(), "<s>", "</s>");
  chat::ChatInputs in;
  in.messages = chat["messages"];
  if (chat.contains("tools")) in.tools = chat["tools"];
  return tmpl.apply(in);
}

TEST(ThroughChatLayer, TranslatedConversationsRender) {
  const auto tok = byte_tokenizer();
  const chat::ChatTemplate tmpl(chat::default_template(), "<s>", "</s>");
  const Json responses = responses_to_chat(J(R"({"instructions": "Sys.", "input": [
      {"role": "developer", "content": "Dev."},
      {"role": "user", "content": "weather?"},
      {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"city\":\"Oslo\"}"},
      {"type": "function_call_output", "call_id": "c1", "output": "rain"}],
      "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}]})"));
  const Json messages =
      messages_to_chat(J(R"({"max_tokens": 8, "system": "Sys.\n\nDev.", "messages": [
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "get", "input": {"city": "Oslo"}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "rain"}]}],
      "tools": [{"name": "get", "input_schema": {"type": "object"}}]})"));
  const std::string expect =
      "<|im_start|>system\nSys.\n\nDev.<|im_end|>\n"
      "<|im_start|>user\nweather?<|im_end|>\n"
      "<|im_start|>assistant\n\n<tool_call>\n"
      "{\"name\": \"get\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n"
      "<|im_start|>tool\nrain<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(rendered(responses), expect);
  EXPECT_EQ(rendered(messages), expect);
  // And parse_chat takes both bodies as they are.
  for (const Json& body : {responses, messages}) {
    const ApiRequest r =
        parse_chat(body, tmpl, chat::detect_output_format(chat::default_template()), *tok, 1 << 16);
    ASSERT_EQ(r.gens.size(), 1u);
    EXPECT_EQ(r.gens[0].prompt, chat::tokenize_prompt(*tok, expect));
  }
}

}  // namespace
}  // namespace tf::server
