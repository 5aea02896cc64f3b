#include "server/responses_api.h"

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

// ---- request ---------------------------------------------------------------------------------

// A message's text: a string, or content parts joined by newlines (as the chat layer joins them).
std::string content_text(const Json& content, const std::string& p) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(p, "'" + p + "' must be a string or an array of content parts");
  std::string out;
  for (size_t k = 0; k < content.size(); ++k) {
    const std::string pk = path_of(p, k);
    const Json& part = api::object_at(content, k, pk);
    const std::string type = string_field(part, "type", pk, true);
    std::string text;
    if (type == "input_text" || type == "output_text") {
      text = string_field(part, "text", pk, true);
    } else if (type == "refusal") {
      text = string_field(part, "refusal", pk, true);
    } else if (type == "input_image" || type == "input_file" || type == "input_audio") {
      unsupported(pk + ".type", "content parts of type '" + type +
                                    "' are not supported: this server runs text-only models");
    } else {
      bad(pk + ".type", "unknown content part type '" + type + "'");
    }
    if (k) out += "\n";
    out += text;
  }
  return out;
}

// A reasoning item's text: its reasoning_text content, else its summaries. Read leniently, since
// it only ever becomes context (an encrypted_content alone gives nothing).
std::string reasoning_text(const Json& item) {
  std::string out;
  auto collect = [&](const char* list, const char* type, const char* sep) {
    const Json* parts = field(item, list);
    if (!parts || !parts->is_array()) return;
    for (const Json& part : *parts) {
      if (!part.is_object() || part.value("type", "") != type) continue;
      const Json* t = field(part, "text");
      if (!t || !t->is_string()) continue;
      if (!out.empty()) out += sep;
      out += t->get<std::string>();
    }
  };
  collect("content", "reasoning_text", "");
  if (out.empty()) collect("summary", "summary_text", "\n\n");
  return out;
}

// Input items to chat messages. function_call items join the assistant message just before them
// (an assistant turn is its text and its calls); a reasoning item becomes reasoning_content of
// the assistant message that follows it, and is dropped if a user or system message comes first.
struct InputConverter {
  Json messages = Json::array();
  std::string pending_reasoning;
  std::map<std::string, std::string> call_names;  // call_id -> function name

  void attach_reasoning(Json& m) {
    if (pending_reasoning.empty()) return;
    const std::string had = m.value("reasoning_content", "");
    m["reasoning_content"] = had.empty() ? pending_reasoning : had + "\n\n" + pending_reasoning;
    pending_reasoning.clear();
  }

  Json& assistant(bool continue_last) {
    if (!continue_last || messages.empty() || messages.back()["role"] != "assistant")
      messages.push_back({{"role", "assistant"}, {"content", nullptr}});
    attach_reasoning(messages.back());
    return messages.back();
  }

  void add(const Json& item, const std::string& p) {
    std::string type = string_field(item, "type", p, false);
    if (type.empty()) {
      if (!field(item, "role")) bad(p + ".type", "'" + p + ".type' is required");
      type = "message";
    }
    if (type == "message") {
      const std::string role = string_field(item, "role", p, true);
      const Json* content = field(item, "content");
      if (!content) bad(p + ".content", "'" + p + ".content' is required");
      const std::string text = content_text(*content, p + ".content");
      if (role == "assistant") {
        assistant(false)["content"] = text;
      } else if (role == "user" || role == "system" || role == "developer") {
        pending_reasoning.clear();
        messages.push_back({{"role", role == "user" ? "user" : "system"}, {"content", text}});
      } else {
        bad(p + ".role", "'" + p + ".role' must be one of user, assistant, system, developer");
      }
    } else if (type == "function_call") {
      const std::string call_id = string_field(item, "call_id", p, true);
      const std::string name = string_field(item, "name", p, true);
      const std::string args = string_field(item, "arguments", p, true);
      Json& m = assistant(true);
      if (!m.contains("tool_calls")) m["tool_calls"] = Json::array();
      m["tool_calls"].push_back(api::chat_tool_call(call_id, name, args));
      call_names[call_id] = name;
    } else if (type == "function_call_output") {
      const std::string call_id = string_field(item, "call_id", p, true);
      const Json* output = field(item, "output");
      if (!output) bad(p + ".output", "'" + p + ".output' is required");
      Json m = {{"role", "tool"}, {"tool_call_id", call_id}};
      // Some templates print the function's name with its result.
      if (auto it = call_names.find(call_id); it != call_names.end()) m["name"] = it->second;
      m["content"] = content_text(*output, p + ".output");
      messages.push_back(std::move(m));
    } else if (type == "reasoning") {
      const std::string text = reasoning_text(item);
      if (!text.empty()) pending_reasoning += pending_reasoning.empty() ? text : "\n\n" + text;
    } else if (type == "item_reference") {
      unsupported(p + ".type",
                  "item references are not supported: this server stores no responses or items; "
                  "send the item itself");
    } else {
      unsupported(p + ".type", "input items of type '" + type +
                                   "' are not supported (this server runs only function tools)");
    }
  }
};

Json chat_tools(const Json& tools) {
  if (!tools.is_array()) bad("tools", "'tools' must be an array");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = path_of("tools", i);
    const Json& t = api::object_at(tools, i, p);
    const std::string type = string_field(t, "type", p, true);
    if (type != "function")
      unsupported(p + ".type", "tools of type '" + type +
                                   "' are not supported: this server runs only function tools");
    Json fn = Json::object();
    fn["name"] = string_field(t, "name", p, true);
    if (fn["name"] == "") bad(p + ".name", "'" + p + ".name' must not be empty");
    if (const Json* d = field(t, "description")) {
      if (!d->is_string()) bad(p + ".description", "'" + p + ".description' must be a string");
      fn["description"] = *d;
    }
    const Json* params = field(t, "parameters");
    if (params && !params->is_object())
      bad(p + ".parameters", "'" + p + ".parameters' must be a JSON schema object");
    fn["parameters"] = params ? *params : Json{{"type", "object"}, {"properties", Json::object()}};
    if (const Json* s = field(t, "strict")) {
      if (!s->is_boolean()) bad(p + ".strict", "'" + p + ".strict' must be a boolean");
      fn["strict"] = *s;
    }
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

Json chat_tool_choice(const Json& tc, const Json& tools) {
  if (tc.is_string()) {
    const std::string s = tc.get<std::string>();
    if (s == "required" && tools.empty())
      bad("tool_choice", "'tool_choice' is 'required' but no 'tools' are given");
    if (s == "auto" || s == "none" || s == "required") return s;
    bad("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a function");
  }
  if (!tc.is_object()) bad("tool_choice", "'tool_choice' must be a string or an object");
  const std::string type = string_field(tc, "type", "tool_choice", true);
  if (type != "function")
    unsupported("tool_choice.type", "tool_choice of type '" + type +
                                        "' is not supported (use 'auto', 'none', 'required' "
                                        "or {\"type\": \"function\", \"name\": ...})");
  const std::string name = string_field(tc, "name", "tool_choice", true);
  for (const Json& t : tools)
    if (t["function"]["name"] == name)
      return {{"type", "function"}, {"function", {{"name", name}}}};
  bad("tool_choice.name",
      "'tool_choice' names the function '" + name + "', which is not in 'tools'");
}

// text.format -> response_format; null when not given.
Json chat_response_format(const Json& text) {
  if (!text.is_object()) bad("text", "'text' must be an object");
  const Json* f = field(text, "format");
  if (!f) return nullptr;
  if (!f->is_object()) bad("text.format", "'text.format' must be an object");
  const std::string type = string_field(*f, "type", "text.format", true);
  if (type == "text" || type == "json_object") return {{"type", type}};
  if (type != "json_schema")
    bad("text.format.type", "'text.format.type' must be 'text', 'json_object' or 'json_schema'");
  Json js = Json::object();
  js["name"] = string_field(*f, "name", "text.format", true);
  const Json* schema = field(*f, "schema");
  if (!schema) bad("text.format.schema", "'text.format.schema' is required");
  if (!schema->is_object()) bad("text.format.schema", "'text.format.schema' must be an object");
  js["schema"] = *schema;
  if (const Json* d = field(*f, "description")) {
    if (!d->is_string())
      bad("text.format.description", "'text.format.description' must be a string");
    js["description"] = *d;
  }
  if (const Json* s = field(*f, "strict")) {
    if (!s->is_boolean()) bad("text.format.strict", "'text.format.strict' must be a boolean");
    js["strict"] = *s;
  }
  return {{"type", "json_schema"}, {"json_schema", std::move(js)}};
}

// ---- response --------------------------------------------------------------------------------

// Item ids derive from the response id, so a stream and its final object agree without state.
std::string id_suffix(const std::string& response_id) {
  return response_id.rfind("resp_", 0) == 0 ? response_id.substr(5) : response_id;
}
std::string call_item_id(const std::string& response_id, size_t call_index) {
  return "fc_" + id_suffix(response_id) + "_" + std::to_string(call_index);
}

Json output_text_part(const std::string& text) {
  return {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}};
}
Json reasoning_part(const std::string& text) {
  return {{"type", "reasoning_text"}, {"text", text}};
}

// `done`: with its content part (a streamed item is announced without it, the part follows).
Json reasoning_item(const std::string& id, const std::string& text, bool done) {
  return {{"type", "reasoning"},
          {"id", id},
          {"summary", Json::array()},
          {"content", done ? Json::array({reasoning_part(text)}) : Json::array()}};
}
Json message_item(const std::string& id, const std::string& text, const std::string& status,
                  bool done) {
  return {{"type", "message"},
          {"id", id},
          {"status", status},
          {"role", "assistant"},
          {"content", done ? Json::array({output_text_part(text)}) : Json::array()}};
}
Json call_item(const std::string& id, const std::string& call_id, const std::string& name,
               const std::string& arguments, const std::string& status) {
  return {{"type", "function_call"}, {"id", id},        {"call_id", call_id}, {"name", name},
          {"arguments", arguments},  {"status", status}};
}

// A max-tokens cut leaves the response and its unfinished items "incomplete".
std::string item_status(const std::string& finish_reason) {
  return finish_reason == "length" ? "incomplete" : "completed";
}

// What a response repeats from its request, with the API's defaults for what was not given.
Json echo_fields(const Json& b) {
  auto given = [&](const char* k, Json def) -> Json {
    const Json* f = b.is_object() ? field(b, k) : nullptr;
    return f ? *f : def;
  };
  Json e = Json::object();
  e["instructions"] = given("instructions", nullptr);
  e["max_output_tokens"] = given("max_output_tokens", nullptr);
  e["metadata"] = given("metadata", Json::object());
  e["parallel_tool_calls"] = given("parallel_tool_calls", true);
  e["previous_response_id"] = nullptr;
  Json reasoning = {{"effort", nullptr}, {"summary", nullptr}};
  if (const Json r = given("reasoning", nullptr); r.is_object()) {
    if (r.contains("effort")) reasoning["effort"] = r["effort"];
    if (r.contains("summary")) reasoning["summary"] = r["summary"];
  }
  e["reasoning"] = std::move(reasoning);
  e["store"] = false;  // never stored, whatever was asked
  e["temperature"] = given("temperature", 1.0);
  Json text = {{"format", {{"type", "text"}}}};
  if (const Json t = given("text", nullptr); t.is_object()) {
    if (field(t, "format")) text["format"] = t["format"];
    if (field(t, "verbosity")) text["verbosity"] = t["verbosity"];
  }
  e["text"] = std::move(text);
  e["tool_choice"] = given("tool_choice", "auto");
  e["tools"] = given("tools", Json::array());
  e["top_p"] = given("top_p", 1.0);
  e["truncation"] = given("truncation", "disabled");
  if (const Json u = given("user", nullptr); u.is_string()) e["user"] = u;
  return e;
}

Json response_shell(const std::string& id, const std::string& model, int64_t created,
                    const Json& echo, const std::string& status) {
  Json r = Json::object();
  r["id"] = id;
  r["object"] = "response";
  r["created_at"] = created;
  r["status"] = status;
  r["background"] = false;
  r["error"] = nullptr;
  r["incomplete_details"] = nullptr;
  r["model"] = model;
  r["output"] = Json::array();
  for (const auto& kv : echo.items()) r[kv.key()] = kv.value();
  r["service_tier"] = "default";
  r["usage"] = nullptr;
  return r;
}

void complete(Json& r, const std::string& finish_reason, const TurnUsage& u) {
  const bool cut = finish_reason == "length";
  r["status"] = cut ? "incomplete" : "completed";
  if (cut) r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  r["usage"] = {{"input_tokens", u.prompt_tokens},
                {"input_tokens_details", {{"cached_tokens", u.cached_tokens}}},
                {"output_tokens", u.completion_tokens},
                {"output_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}},
                {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  if (!u.meter.is_null()) r["usage"]["tokenfab"] = u.meter;
}

}  // namespace

Json responses_to_chat(const Json& b) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  // Stateless: nothing to continue from, and nothing runs after the connection closes.
  for (const char* k : {"previous_response_id", "conversation"})
    if (field(b, k))
      bad(k,
          std::string("'") + k +
              "' is not supported: this server stores no responses or conversations; send "
              "the whole conversation in 'input'",
          "unsupported_parameter");
  if (const Json* bg = field(b, "background"); bg && *bg != false)
    bad("background", "'background' is not supported: responses are not stored",
        "unsupported_parameter");
  if (field(b, "prompt"))
    bad("prompt", "'prompt' (stored prompt templates) is not supported", "unsupported_parameter");

  Json chat = Json::object();
  if (const Json* m = field(b, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    chat["model"] = *m;
  }
  InputConverter in;
  if (const Json* ins = field(b, "instructions")) {
    if (!ins->is_string()) bad("instructions", "'instructions' must be a string");
    if (!ins->get<std::string>().empty())
      in.messages.push_back({{"role", "system"}, {"content", *ins}});
  }
  const Json* input = field(b, "input");
  if (!input) bad("input", "'input' is required");
  if (input->is_string()) {
    in.messages.push_back({{"role", "user"}, {"content", *input}});
  } else if (input->is_array()) {
    if (input->empty()) bad("input", "'input' must not be empty");
    for (size_t i = 0; i < input->size(); ++i) {
      const std::string p = path_of("input", i);
      in.add(api::object_at(*input, i, p), p);
    }
  } else {
    bad("input", "'input' must be a string or an array of input items");
  }
  if (in.messages.empty()) bad("input", "'input' holds no messages");
  chat["messages"] = api::merge_consecutive_system(in.messages);

  Json tools = Json::array();
  if (const Json* t = field(b, "tools")) tools = chat_tools(*t);
  if (!tools.empty()) chat["tools"] = tools;
  if (const Json* tc = field(b, "tool_choice")) chat["tool_choice"] = chat_tool_choice(*tc, tools);
  if (const Json* ptc = field(b, "parallel_tool_calls")) {
    if (!ptc->is_boolean()) bad("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    chat["parallel_tool_calls"] = *ptc;
  }
  if (const Json* text = field(b, "text"))
    if (Json rf = chat_response_format(*text); !rf.is_null()) chat["response_format"] = rf;
  if (const Json* mo = field(b, "max_output_tokens"))
    chat["max_tokens"] = api::positive_integer(*mo, "max_output_tokens");
  // Same names and ranges as chat completions: parse_chat checks them.
  for (const char* k : {"temperature", "top_p"})
    if (const Json* v = field(b, k)) chat[k] = *v;
  if (const Json* r = field(b, "reasoning"); r && !r->is_object())
    bad("reasoning", "'reasoning' must be an object");  // its effort is accepted, not acted on
  if (const Json* s = field(b, "stream")) {
    if (!s->is_boolean()) bad("stream", "'stream' must be a boolean");
    chat["stream"] = *s;
    // The final response.completed carries usage.
    if (*s == true) chat["stream_options"] = {{"include_usage", true}};
  }
  chat["reasoning_format"] = "parsed";  // reasoning comes back as its own output item
  return chat;
}

Json responses_object(const AssistantTurn& t, const std::string& id, const std::string& model,
                      int64_t created, const Json& request_body) {
  Json r = response_shell(id, model, created, echo_fields(request_body), "completed");
  const std::string status = item_status(t.finish_reason);
  if (!t.reasoning.empty())
    r["output"].push_back(reasoning_item("rs_" + id_suffix(id), t.reasoning, true));
  if (!t.content.empty())
    r["output"].push_back(message_item("msg_" + id_suffix(id), t.content, status, true));
  for (size_t i = 0; i < t.tool_calls.size(); ++i) {
    const ToolCallOut& c = t.tool_calls[i];
    r["output"].push_back(call_item(call_item_id(id, i), c.id, c.name, c.arguments, status));
  }
  complete(r, t.finish_reason, t.usage);
  return r;
}

// ---- stream ----------------------------------------------------------------------------------

ResponsesStream::ResponsesStream(std::string id, std::string model, int64_t created,
                                 const Json& request_body)
    : id_(std::move(id)),
      model_(std::move(model)),
      created_(created),
      echo_(echo_fields(request_body)) {}

SseEvent ResponsesStream::event(const std::string& type, Json data) {
  Json d = Json::object();
  d["type"] = type;
  d["sequence_number"] = seq_++;
  for (const auto& kv : data.items()) d[kv.key()] = kv.value();
  return {type, std::move(d)};
}

Json ResponsesStream::response(const std::string& status) const {
  return response_shell(id_, model_, created_, echo_, status);
}

Json ResponsesStream::item_json(const Item& it, const std::string& status, bool done) const {
  switch (it.kind) {
    case Kind::reasoning:
      return reasoning_item(it.id, it.text, done);
    case Kind::message:
      return message_item(it.id, it.text, status, done);
    case Kind::call:
      return call_item(it.id, it.call_id, it.name, it.text, status);
  }
  return nullptr;
}

size_t ResponsesStream::open(Kind kind, std::vector<SseEvent>& out, const ToolCallDeltaOut* call) {
  Item it{kind, "", "", "", ""};
  if (kind == Kind::reasoning) it.id = "rs_" + id_suffix(id_);
  if (kind == Kind::message) it.id = "msg_" + id_suffix(id_);
  if (kind == Kind::call) {
    it.id = call_item_id(id_, size_t(call->index));
    it.call_id = call->id;
    it.name = call->name;
  }
  const size_t index = items_.size();
  out.push_back(event("response.output_item.added",
                      {{"output_index", index}, {"item", item_json(it, "in_progress", false)}}));
  if (kind != Kind::call) {
    const Json part = kind == Kind::message ? output_text_part("") : reasoning_part("");
    out.push_back(
        event("response.content_part.added",
              {{"item_id", it.id}, {"output_index", index}, {"content_index", 0}, {"part", part}}));
  }
  items_.push_back(std::move(it));
  return index;
}

std::vector<SseEvent> ResponsesStream::start() {
  if (started_) return {};
  started_ = true;
  std::vector<SseEvent> out;
  out.push_back(event("response.created", {{"response", response("in_progress")}}));
  out.push_back(event("response.in_progress", {{"response", response("in_progress")}}));
  return out;
}

std::vector<SseEvent> ResponsesStream::push(const TurnDelta& d) {
  if (ended_) return {};
  std::vector<SseEvent> out = start();
  if (!d.reasoning.empty()) {
    if (reasoning_ < 0) reasoning_ = int(open(Kind::reasoning, out));
    items_[reasoning_].text += d.reasoning;
    out.push_back(event("response.reasoning_text.delta", {{"item_id", items_[reasoning_].id},
                                                          {"output_index", reasoning_},
                                                          {"content_index", 0},
                                                          {"delta", d.reasoning}}));
  }
  if (!d.content.empty()) {
    if (message_ < 0) message_ = int(open(Kind::message, out));
    items_[message_].text += d.content;
    out.push_back(event("response.output_text.delta", {{"item_id", items_[message_].id},
                                                       {"output_index", message_},
                                                       {"content_index", 0},
                                                       {"delta", d.content},
                                                       {"logprobs", Json::array()}}));
  }
  for (const ToolCallDeltaOut& c : d.tool_calls) {
    if (c.index < 0 || c.index > 65535) continue;  // not a call index; never from the parser
    if (calls_.size() <= size_t(c.index)) calls_.resize(size_t(c.index) + 1, -1);
    if (calls_[c.index] < 0) calls_[c.index] = int(open(Kind::call, out, &c));
    if (c.arguments.empty()) continue;
    const int index = calls_[c.index];
    items_[index].text += c.arguments;
    out.push_back(
        event("response.function_call_arguments.delta",
              {{"item_id", items_[index].id}, {"output_index", index}, {"delta", c.arguments}}));
  }
  return out;
}

std::vector<SseEvent> ResponsesStream::finish(const AssistantTurn& t) {
  if (ended_) return {};
  std::vector<SseEvent> out = start();
  // Stream what the final turn has beyond the deltas, so that deltas add up to the final texts.
  TurnDelta tail;
  tail.reasoning =
      reasoning_ < 0 ? t.reasoning : api::tail_after(t.reasoning, items_[reasoning_].text);
  tail.content = message_ < 0 ? t.content : api::tail_after(t.content, items_[message_].text);
  for (size_t i = 0; i < t.tool_calls.size(); ++i) {
    const ToolCallOut& c = t.tool_calls[i];
    if (i >= calls_.size() || calls_[i] < 0) {
      tail.tool_calls.push_back({int(i), c.id, c.name, c.arguments});
      continue;
    }
    Item& it = items_[calls_[i]];
    if (it.call_id.empty()) it.call_id = c.id;
    if (it.name.empty()) it.name = c.name;
    if (std::string more = api::tail_after(c.arguments, it.text); !more.empty())
      tail.tool_calls.push_back({int(i), "", "", more});
  }
  for (SseEvent& e : push(tail)) out.push_back(std::move(e));

  const std::string status = item_status(t.finish_reason);
  Json output = Json::array();
  for (size_t i = 0; i < items_.size(); ++i) {
    const Item& it = items_[i];
    if (it.kind == Kind::reasoning) {
      out.push_back(event(
          "response.reasoning_text.done",
          {{"item_id", it.id}, {"output_index", i}, {"content_index", 0}, {"text", it.text}}));
      out.push_back(event("response.content_part.done", {{"item_id", it.id},
                                                         {"output_index", i},
                                                         {"content_index", 0},
                                                         {"part", reasoning_part(it.text)}}));
    } else if (it.kind == Kind::message) {
      out.push_back(event("response.output_text.done", {{"item_id", it.id},
                                                        {"output_index", i},
                                                        {"content_index", 0},
                                                        {"text", it.text},
                                                        {"logprobs", Json::array()}}));
      out.push_back(event("response.content_part.done", {{"item_id", it.id},
                                                         {"output_index", i},
                                                         {"content_index", 0},
                                                         {"part", output_text_part(it.text)}}));
    } else {
      out.push_back(event("response.function_call_arguments.done",
                          {{"item_id", it.id}, {"output_index", i}, {"arguments", it.text}}));
    }
    Json item = item_json(it, status, true);
    out.push_back(event("response.output_item.done", {{"output_index", i}, {"item", item}}));
    output.push_back(std::move(item));
  }
  Json r = response("completed");
  r["output"] = std::move(output);
  complete(r, t.finish_reason, t.usage);
  // A cut response ends with response.completed too (its status says "incomplete"): Codex CLI
  // and the openai SDK's finalResponse() only take the final response from that event.
  out.push_back(event("response.completed", {{"response", r}}));
  ended_ = true;
  return out;
}

std::vector<SseEvent> ResponsesStream::fail(const std::string& code, const std::string& message) {
  if (ended_) return {};
  std::vector<SseEvent> out = start();
  Json r = response("failed");
  for (const Item& it : items_) r["output"].push_back(item_json(it, "incomplete", true));
  r["error"] = {{"code", code}, {"message", message}};
  out.push_back(event("response.failed", {{"response", r}}));
  ended_ = true;
  return out;
}

}  // namespace tf::server
