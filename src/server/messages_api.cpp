#include "server/messages_api.h"

#include <algorithm>
#include <map>

#include "server/api_util.h"

namespace tf::server {

using api::bad;
using api::field;
using api::path_of;
using api::string_field;

namespace {

[[noreturn]] void unsupported(const std::string& param, const std::string& message) {
  bad(param, message, "unsupported_value");
}

[[noreturn]] void not_text(const std::string& p, const std::string& type) {
  unsupported(p + ".type", "content blocks of type '" + type +
                               "' are not supported: this server runs text-only models");
}

bool is_media(const std::string& type) {
  return type == "image" || type == "document" || type == "search_result";
}

// A string, or text blocks joined by newlines (system prompts, tool results).
std::string text_of(const Json& content, const std::string& p) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(p, "'" + p + "' must be a string or an array of text blocks");
  std::string out;
  for (size_t k = 0; k < content.size(); ++k) {
    const std::string pk = path_of(p, k);
    const Json& block = api::object_at(content, k, pk);
    const std::string type = string_field(block, "type", pk, true);
    if (is_media(type)) not_text(pk, type);
    if (type != "text") bad(pk + ".type", "'" + pk + "' must be a text block");
    if (k) out += "\n";
    out += string_field(block, "text", pk, true);
  }
  return out;
}

// Anthropic messages to chat messages. A user message's tool_result blocks become tool messages,
// placed before the rest of its text (the results answer the assistant turn just before; the text
// is what the user adds after them). An assistant message's thinking becomes reasoning_content.
struct MessageConverter {
  Json messages = Json::array();
  std::map<std::string, std::string> tool_names;  // tool_use id -> name

  void user(const Json& content, const std::string& p) {
    if (content.is_string()) {
      messages.push_back({{"role", "user"}, {"content", content}});
      return;
    }
    std::vector<std::string> texts;
    for (size_t k = 0; k < content.size(); ++k) {
      const std::string pk = path_of(p, k);
      const Json& block = api::object_at(content, k, pk);
      const std::string type = string_field(block, "type", pk, true);
      if (type == "text") {
        texts.push_back(string_field(block, "text", pk, true));
      } else if (type == "tool_result") {
        const std::string id = string_field(block, "tool_use_id", pk, true);
        const Json* c = field(block, "content");
        std::string text = c ? text_of(*c, pk + ".content") : "";
        // Chat templates have no error flag; say it in the text so the model can tell.
        if (const Json* e = field(block, "is_error")) {
          if (!e->is_boolean()) bad(pk + ".is_error", "'" + pk + ".is_error' must be a boolean");
          if (*e == true) text = "Error: " + text;
        }
        Json m = {{"role", "tool"}, {"tool_call_id", id}};
        if (auto it = tool_names.find(id); it != tool_names.end()) m["name"] = it->second;
        m["content"] = text;
        messages.push_back(std::move(m));
      } else if (is_media(type)) {
        not_text(pk, type);
      } else {
        unsupported(pk + ".type",
                    "content blocks of type '" + type + "' are not supported in user messages");
      }
    }
    if (!texts.empty() || content.empty()) {
      std::string joined;
      for (size_t i = 0; i < texts.size(); ++i) joined += (i ? "\n" : "") + texts[i];
      messages.push_back({{"role", "user"}, {"content", joined}});
    }
  }

  void assistant(const Json& content, const std::string& p) {
    Json m = {{"role", "assistant"}, {"content", ""}};
    if (content.is_string()) {
      m["content"] = content;
      messages.push_back(std::move(m));
      return;
    }
    std::string text, thinking;
    bool has_text = false;
    Json calls = Json::array();
    for (size_t k = 0; k < content.size(); ++k) {
      const std::string pk = path_of(p, k);
      const Json& block = api::object_at(content, k, pk);
      const std::string type = string_field(block, "type", pk, true);
      if (type == "text") {
        if (has_text) text += "\n";
        text += string_field(block, "text", pk, true);
        has_text = true;
      } else if (type == "thinking") {
        if (!thinking.empty()) thinking += "\n\n";
        thinking += string_field(block, "thinking", pk, true);
      } else if (type == "redacted_thinking") {
        // Encrypted for Anthropic's models; nothing a local model can read.
      } else if (type == "tool_use") {
        const std::string id = string_field(block, "id", pk, true);
        const std::string name = string_field(block, "name", pk, true);
        const Json* input = field(block, "input");
        if (!input) bad(pk + ".input", "'" + pk + ".input' is required");
        calls.push_back(api::chat_tool_call(id, name, input->dump()));
        tool_names[id] = name;
      } else if (is_media(type)) {
        not_text(pk, type);
      } else {
        unsupported(pk + ".type", "content blocks of type '" + type +
                                      "' are not supported in assistant messages");
      }
    }
    m["content"] = has_text || calls.empty() ? Json(text) : Json();
    if (!thinking.empty()) m["reasoning_content"] = thinking;
    if (!calls.empty()) m["tool_calls"] = std::move(calls);
    messages.push_back(std::move(m));
  }
};

Json chat_tools(const Json& tools) {
  if (!tools.is_array()) bad("tools", "'tools' must be an array");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = path_of("tools", i);
    const Json& t = api::object_at(tools, i, p);
    const std::string type = string_field(t, "type", p, false);
    if (!type.empty() && type != "custom")
      unsupported(p + ".type", "tools of type '" + type +
                                   "' (Anthropic's own tools) are not supported: this server runs "
                                   "only tools defined by name, description and input_schema");
    Json fn = Json::object();
    fn["name"] = string_field(t, "name", p, true);
    if (fn["name"] == "") bad(p + ".name", "'" + p + ".name' must not be empty");
    if (const Json* d = field(t, "description")) {
      if (!d->is_string()) bad(p + ".description", "'" + p + ".description' must be a string");
      fn["description"] = *d;
    }
    const Json* schema = field(t, "input_schema");
    if (!schema) bad(p + ".input_schema", "'" + p + ".input_schema' is required");
    if (!schema->is_object())
      bad(p + ".input_schema", "'" + p + ".input_schema' must be a JSON schema object");
    fn["parameters"] = *schema;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

// tool_choice -> chat tool_choice (and parallel_tool_calls into `chat`).
void tool_choice(const Json& tc, const Json& tools, Json& chat) {
  if (!tc.is_object()) bad("tool_choice", "'tool_choice' must be an object");
  const std::string type = string_field(tc, "type", "tool_choice", true);
  if ((type == "any" || type == "tool") && tools.empty())
    bad("tool_choice", "'tool_choice' of type '" + type + "' needs 'tools'");
  if (type == "auto" || type == "none") {
    chat["tool_choice"] = type;
  } else if (type == "any") {
    chat["tool_choice"] = "required";
  } else if (type == "tool") {
    const std::string name = string_field(tc, "name", "tool_choice", true);
    const bool known = std::any_of(tools.begin(), tools.end(),
                                   [&](const Json& t) { return t["function"]["name"] == name; });
    if (!known)
      bad("tool_choice.name",
          "'tool_choice' names the tool '" + name + "', which is not in 'tools'");
    chat["tool_choice"] = {{"type", "function"}, {"function", {{"name", name}}}};
  } else {
    bad("tool_choice.type", "'tool_choice.type' must be 'auto', 'any', 'tool' or 'none'");
  }
  if (const Json* d = field(tc, "disable_parallel_tool_use")) {
    if (!d->is_boolean())
      bad("tool_choice.disable_parallel_tool_use",
          "'tool_choice.disable_parallel_tool_use' must be a boolean");
    chat["parallel_tool_calls"] = !d->get<bool>();
  }
}

Json convert(const Json& b, bool count_only) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  Json chat = Json::object();
  if (const Json* m = field(b, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    chat["model"] = *m;
  }
  if (!count_only) {
    const Json* mt = field(b, "max_tokens");
    if (!mt) bad("max_tokens", "'max_tokens' is required");
    chat["max_tokens"] = api::positive_integer(*mt, "max_tokens");
  }

  MessageConverter conv;
  if (const Json* sys = field(b, "system")) {
    const std::string text = text_of(*sys, "system");
    if (!text.empty()) conv.messages.push_back({{"role", "system"}, {"content", text}});
  }
  const Json* msgs = field(b, "messages");
  if (!msgs) bad("messages", "'messages' is required");
  if (!msgs->is_array()) bad("messages", "'messages' must be an array");
  if (msgs->empty()) bad("messages", "'messages' must not be empty");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const std::string p = path_of("messages", i);
    const Json& m = api::object_at(*msgs, i, p);
    const std::string role = string_field(m, "role", p, true);
    const Json* content = field(m, "content");
    if (!content) bad(p + ".content", "'" + p + ".content' is required");
    if (!content->is_string() && !content->is_array())
      bad(p + ".content", "'" + p + ".content' must be a string or an array of content blocks");
    if (role == "user") {
      conv.user(*content, p + ".content");
    } else if (role == "assistant") {
      conv.assistant(*content, p + ".content");
    } else if (role == "system") {
      conv.messages.push_back({{"role", "system"}, {"content", text_of(*content, p + ".content")}});
    } else {
      bad(p + ".role", "'" + p + ".role' must be 'user' or 'assistant'");
    }
  }
  chat["messages"] = api::merge_consecutive_system(conv.messages);

  Json tools = Json::array();
  if (const Json* t = field(b, "tools")) tools = chat_tools(*t);
  if (!tools.empty()) chat["tools"] = tools;
  if (const Json* tc = field(b, "tool_choice")) tool_choice(*tc, tools, chat);

  if (const Json* ss = field(b, "stop_sequences")) {
    if (!ss->is_array()) bad("stop_sequences", "'stop_sequences' must be an array of strings");
    for (const Json& s : *ss)
      if (!s.is_string() || s.get<std::string>().empty())
        bad("stop_sequences", "'stop_sequences' must hold non-empty strings");
    if (!ss->empty()) chat["stop"] = *ss;
  }
  // Same names as chat completions: parse_chat checks them.
  for (const char* k : {"temperature", "top_p", "top_k"})
    if (const Json* v = field(b, k)) chat[k] = *v;

  if (const Json* th = field(b, "thinking")) {
    if (!th->is_object()) bad("thinking", "'thinking' must be an object");
    const std::string type = string_field(*th, "type", "thinking", true);
    if (const Json* budget = field(*th, "budget_tokens"))
      api::positive_integer(*budget, "thinking.budget_tokens");  // checked; no budget is enforced
    // "adaptive" leaves it to the model, which here means the template's own default.
    if (type == "enabled" || type == "between_tools") {
      chat["chat_template_kwargs"] = {{"enable_thinking", true}};
    } else if (type == "disabled") {
      chat["chat_template_kwargs"] = {{"enable_thinking", false}};
    } else if (type != "adaptive") {
      bad("thinking.type", "'thinking.type' must be 'enabled', 'disabled' or 'adaptive'");
    }
  }
  if (const Json* oc = field(b, "output_config")) {
    if (!oc->is_object()) bad("output_config", "'output_config' must be an object");
    if (const Json* f = field(*oc, "format")) {
      if (!f->is_object()) bad("output_config.format", "'output_config.format' must be an object");
      if (string_field(*f, "type", "output_config.format", true) != "json_schema")
        bad("output_config.format.type", "'output_config.format.type' must be 'json_schema'");
      const Json* schema = field(*f, "schema");
      if (!schema || !schema->is_object())
        bad("output_config.format.schema", "'output_config.format.schema' must be an object");
      chat["response_format"] = {
          {"type", "json_schema"},
          {"json_schema", {{"name", "output"}, {"schema", *schema}, {"strict", true}}}};
    }
  }
  if (const Json* s = field(b, "stream"); s && !count_only) {
    if (!s->is_boolean()) bad("stream", "'stream' must be a boolean");
    chat["stream"] = *s;
    if (*s == true) chat["stream_options"] = {{"include_usage", true}};  // message_delta's usage
  }
  chat["reasoning_format"] = "parsed";  // reasoning comes back as a thinking block
  return chat;
}

// ---- response --------------------------------------------------------------------------------

std::string stop_reason(const AssistantTurn& t) {
  if (t.finish_reason == "length") return "max_tokens";
  if (!t.tool_calls.empty() || t.finish_reason == "tool_calls") return "tool_use";
  if (!t.matched_stop.empty()) return "stop_sequence";
  return "end_turn";
}

// A call's input object. Arguments that are not a JSON object (a model's malformed call) give {},
// which the client's own schema check then reports back to the model as a tool error.
Json tool_input(const std::string& arguments) {
  Json v = Json::parse(arguments, nullptr, false);
  return !v.is_discarded() && v.is_object() ? v : Json::object();
}

Json usage_json(const TurnUsage& u) {
  const int64_t cached = std::min(u.cached_tokens, u.prompt_tokens);
  Json j = {{"input_tokens", u.prompt_tokens - cached},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", cached},
          {"cache_creation", {{"ephemeral_5m_input_tokens", 0}, {"ephemeral_1h_input_tokens", 0}}},
          {"output_tokens", u.completion_tokens},
          {"output_tokens_details", {{"thinking_tokens", u.reasoning_tokens}}},
          {"server_tool_use", nullptr},
          {"service_tier", "standard"},
          {"inference_geo", nullptr},
          {"speed", nullptr}};
  if (!u.meter.is_null()) j["tokenfab"] = u.meter;
  return j;
}

Json message_shell(const std::string& id, const std::string& model, const TurnUsage& usage) {
  return {{"id", id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", model},
          {"content", Json::array()},
          {"stop_reason", nullptr},
          {"stop_sequence", nullptr},
          {"stop_details", nullptr},
          {"container", nullptr},
          {"diagnostics", nullptr},
          {"usage", usage_json(usage)}};
}

Json thinking_block(const std::string& text) {
  return {{"type", "thinking"}, {"thinking", text}, {"signature", ""}};
}
Json text_block(const std::string& text) {
  return {{"type", "text"}, {"text", text}, {"citations", nullptr}};
}
Json tool_use_block(const std::string& id, const std::string& name, Json input) {
  return {{"type", "tool_use"},
          {"id", id},
          {"name", name},
          {"input", std::move(input)},
          {"caller", {{"type", "direct"}}}};
}

SseEvent ev(const std::string& type, Json data) {
  Json d = Json::object();
  d["type"] = type;
  for (const auto& kv : data.items()) d[kv.key()] = kv.value();
  return {type, std::move(d)};
}

}  // namespace

Json messages_to_chat(const Json& body) {
  return convert(body, false);
}
Json count_tokens_request_to_chat(const Json& body) {
  return convert(body, true);
}

Json messages_object(const AssistantTurn& t, const std::string& id, const std::string& model) {
  Json m = message_shell(id, model, t.usage);
  if (!t.reasoning.empty()) m["content"].push_back(thinking_block(t.reasoning));
  if (!t.content.empty()) m["content"].push_back(text_block(t.content));
  for (const ToolCallOut& c : t.tool_calls)
    m["content"].push_back(tool_use_block(c.id, c.name, tool_input(c.arguments)));
  const std::string reason = stop_reason(t);
  m["stop_reason"] = reason;
  m["stop_sequence"] = reason == "stop_sequence" ? Json(t.matched_stop) : Json();
  return m;
}

Json anthropic_error(int status, const std::string& message) {
  const char* type = status == 401                    ? "authentication_error"
                     : status == 402                  ? "billing_error"
                     : status == 403                  ? "permission_error"
                     : status == 404                  ? "not_found_error"
                     : status == 413                  ? "request_too_large"
                     : status == 429                  ? "rate_limit_error"
                     : status == 503 || status == 529 ? "overloaded_error"
                     : status == 504                  ? "timeout_error"
                     : status >= 500                  ? "api_error"
                                                      : "invalid_request_error";
  return {{"type", "error"},
          {"error", {{"type", type}, {"message", message}}},
          {"request_id", nullptr}};
}

// ---- stream ----------------------------------------------------------------------------------

MessagesStream::MessagesStream(std::string id, std::string model)
    : id_(std::move(id)), model_(std::move(model)) {}

SseEvent MessagesStream::error_event(const std::string& type, const std::string& message) {
  return ev("error", {{"error", {{"type", type}, {"message", message}}}});
}

SseEvent MessagesStream::ping() {
  return ev("ping", Json::object());
}

std::vector<SseEvent> MessagesStream::start(const TurnUsage& usage) {
  if (started_) return {};
  started_ = true;
  return {ev("message_start", {{"message", message_shell(id_, model_, usage)}})};
}

void MessagesStream::close(std::vector<SseEvent>& out) {
  if (open_ < 0) return;
  out.push_back(ev("content_block_stop", {{"index", open_}}));
  open_ = -1;
}

void MessagesStream::open(Kind kind, std::vector<SseEvent>& out, const ToolCallDeltaOut* call) {
  close(out);
  open_ = blocks_++;
  open_kind_ = kind;
  open_call_ = call ? call->index : -1;
  const Json block = kind == Kind::thinking ? thinking_block("")
                     : kind == Kind::text   ? text_block("")
                                            : tool_use_block(call->id, call->name, Json::object());
  out.push_back(ev("content_block_start", {{"index", open_}, {"content_block", block}}));
}

std::vector<SseEvent> MessagesStream::push(const TurnDelta& d) {
  if (ended_) return {};
  std::vector<SseEvent> out = start();
  if (!d.reasoning.empty()) {
    if (open_ < 0 || open_kind_ != Kind::thinking) open(Kind::thinking, out);
    thinking_ += d.reasoning;
    out.push_back(
        ev("content_block_delta",
           {{"index", open_}, {"delta", {{"type", "thinking_delta"}, {"thinking", d.reasoning}}}}));
  }
  if (!d.content.empty()) {
    if (open_ < 0 || open_kind_ != Kind::text) open(Kind::text, out);
    text_ += d.content;
    out.push_back(ev("content_block_delta",
                     {{"index", open_}, {"delta", {{"type", "text_delta"}, {"text", d.content}}}}));
  }
  for (const ToolCallDeltaOut& c : d.tool_calls) {
    if (c.index < 0 || c.index > 65535) continue;  // not a call index; never from the parser
    const size_t i = size_t(c.index);
    if (call_started_.size() <= i) {
      call_started_.resize(i + 1, false);
      args_.resize(i + 1);
    }
    if (!call_started_[i]) {
      open(Kind::tool, out, &c);
      call_started_[i] = true;
    } else if (open_ < 0 || open_kind_ != Kind::tool || open_call_ != c.index) {
      continue;  // its block is closed already: calls stream one after another
    }
    if (c.arguments.empty()) continue;
    args_[i] += c.arguments;
    out.push_back(ev("content_block_delta",
                     {{"index", open_},
                      {"delta", {{"type", "input_json_delta"}, {"partial_json", c.arguments}}}}));
  }
  return out;
}

std::vector<SseEvent> MessagesStream::finish(const AssistantTurn& t) {
  if (ended_) return {};
  std::vector<SseEvent> out = start(t.usage);
  TurnDelta tail;
  tail.reasoning = api::tail_after(t.reasoning, thinking_);
  tail.content = api::tail_after(t.content, text_);
  for (size_t i = 0; i < t.tool_calls.size(); ++i) {
    const ToolCallOut& c = t.tool_calls[i];
    if (i >= call_started_.size() || !call_started_[i])
      tail.tool_calls.push_back({int(i), c.id, c.name, c.arguments});
    else if (std::string more = api::tail_after(c.arguments, args_[i]); !more.empty())
      tail.tool_calls.push_back({int(i), "", "", more});
  }
  for (SseEvent& e : push(tail)) out.push_back(std::move(e));
  close(out);

  const Json final_message = messages_object(t, id_, model_);
  Json usage = final_message["usage"];
  // Cumulative totals, which the SDKs copy over message_start's.
  Json delta_usage = {{"input_tokens", usage["input_tokens"]},
                      {"cache_creation_input_tokens", usage["cache_creation_input_tokens"]},
                      {"cache_read_input_tokens", usage["cache_read_input_tokens"]},
                      {"output_tokens", usage["output_tokens"]},
                      {"output_tokens_details", usage["output_tokens_details"]},
                      {"server_tool_use", nullptr}};
  if (usage.contains("tokenfab")) delta_usage["tokenfab"] = usage["tokenfab"];
  out.push_back(ev("message_delta", {{"delta",
                                      {{"stop_reason", final_message["stop_reason"]},
                                       {"stop_sequence", final_message["stop_sequence"]},
                                       {"stop_details", nullptr},
                                       {"container", nullptr}}},
                                     {"usage", std::move(delta_usage)}}));
  out.push_back(ev("message_stop", Json::object()));
  ended_ = true;
  return out;
}

}  // namespace tf::server
