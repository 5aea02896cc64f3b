#include "server/openai.h"

#include <cmath>
#include <random>
#include <sstream>

#include "sample/json_schema.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace tf::server {

Json error_body(const ApiError& e) {
  Json err = Json::object();
  err["message"] = e.message;
  err["type"] = e.type;
  err["param"] = e.param.empty() ? Json() : Json(e.param);
  err["code"] = e.code.empty() ? Json() : Json(e.code);
  Json out = Json::object();
  out["error"] = std::move(err);
  return out;
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg,
                      const std::string& code = "") {
  ApiError e;
  e.status = 400;
  e.param = param;
  e.message = msg;
  e.code = code.empty() ? "invalid_value" : code;
  throw e;
}

// A field, or null when absent or JSON null (both mean "not given" in the OpenAI API).
const Json* field(const Json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string num_text(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

double number(const Json& body, const char* name, double lo, double hi, double def) {
  const Json* f = field(body, name);
  if (!f) return def;
  if (!f->is_number()) bad(name, std::string("'") + name + "' must be a number");
  const double v = f->get<double>();
  if (!(v >= lo && v <= hi))
    bad(name,
        std::string("'") + name + "' must be between " + num_text(lo) + " and " + num_text(hi));
  return v;
}

int64_t integer(const Json& body, const char* name, int64_t lo, int64_t hi, int64_t def) {
  const Json* f = field(body, name);
  if (!f) return def;
  if (!f->is_number_integer() &&
      !(f->is_number_float() && std::floor(f->get<double>()) == f->get<double>() &&
        std::fabs(f->get<double>()) < 9e18))
    bad(name, std::string("'") + name + "' must be an integer");
  const int64_t v = f->is_number_unsigned() && f->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX
                    : f->is_number_float() ? int64_t(f->get<double>())
                                           : f->get<int64_t>();
  if (v < lo || v > hi)
    bad(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " +
                  std::to_string(hi));
  return v;
}

bool boolean(const Json& body, const char* name, bool def) {
  const Json* f = field(body, name);
  if (!f) return def;
  if (!f->is_boolean()) bad(name, std::string("'") + name + "' must be a boolean");
  return f->get<bool>();
}

// Structured output: `grammar` (GBNF text, as llama.cpp's server takes it), `json_schema` (a
// bare schema, ditto) or OpenAI's `response_format` (json_schema / json_object / text). The
// grammar is compiled here, so that a bad one is a 400 naming its field before anything runs.
void constraint(const Json& b, GenRequest& g) {
  const Json* gr = field(b, "grammar");
  const Json* js = field(b, "json_schema");
  const Json* rf = field(b, "response_format");
  if (int(gr != nullptr) + int(js != nullptr) + int(rf != nullptr) > 1)
    bad(gr ? "grammar" : "json_schema",
        "give only one of 'grammar', 'json_schema' and 'response_format'");
  std::string text, param;
  try {
    if (gr) {
      param = "grammar";
      if (!gr->is_string()) bad(param, "'grammar' must be a string (GBNF)");
      text = gr->get<std::string>();
    } else if (js) {
      param = "json_schema";
      text = json_schema_to_gbnf(*js);
    } else if (rf) {
      param = "response_format";
      if (!rf->is_object()) bad(param, "'response_format' must be an object");
      const Json* type = field(*rf, "type");
      if (!type || !type->is_string())
        bad(param, "'response_format.type' must be one of 'text', 'json_object', 'json_schema'");
      const std::string t = type->get<std::string>();
      if (t == "text") return;
      if (t == "json_object") {
        // A schema may come along (llama.cpp's server takes one here too).
        const Json* sc = field(*rf, "schema");
        text = json_schema_to_gbnf(sc ? *sc : Json{{"type", "object"}});
      } else if (t == "json_schema") {
        const Json* spec = field(*rf, "json_schema");
        if (!spec || !spec->is_object())
          bad(param, "'response_format.json_schema' must be an object");
        const Json* sc = field(*spec, "schema");
        // No schema: any JSON object, as OpenAI's json_object mode.
        text = json_schema_to_gbnf(sc ? *sc : Json{{"type", "object"}});
      } else {
        bad(param, "'response_format.type' must be one of 'text', 'json_object', 'json_schema'");
      }
    } else {
      return;
    }
    g.grammar = Grammar::parse(text);
  } catch (const Error& e) {
    bad(param, e.what());
  }
}

// Fields shared by both endpoints: sampling, limits, stop strings, n, stream.
void common(const Json& b, ApiRequest& r, GenRequest& g, int64_t n_ctx) {
  if (const Json* m = field(b, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    r.model = m->get<std::string>();
  }
  SamplingParams& s = g.sampling;
  s.temperature = float(number(b, "temperature", 0, 2, 1.0));
  s.top_p = float(number(b, "top_p", 0, 1, 1.0));
  s.top_k = int32_t(integer(b, "top_k", -1, 1 << 20, 0));
  s.min_p = float(number(b, "min_p", 0, 1, 0.0));
  s.presence_penalty = float(number(b, "presence_penalty", -2, 2, 0));
  s.frequency_penalty = float(number(b, "frequency_penalty", -2, 2, 0));
  s.repeat_penalty = float(number(b, "repetition_penalty", 0.01, 10, 1.0));
  s.penalty_last_n = -1;  // OpenAI's penalties count every generated token
  const int64_t seed = integer(b, "seed", INT64_MIN, INT64_MAX, -1);
  const bool has_seed = field(b, "seed") != nullptr;
  s.seed =
      has_seed ? uint64_t(seed) : uint64_t(std::random_device{}()) << 32 | std::random_device{}();
  int64_t max_tokens = integer(b, "max_tokens", 1, INT32_MAX, -1);
  max_tokens = integer(b, "max_completion_tokens", 1, INT32_MAX, max_tokens);
  g.max_tokens = int32_t(max_tokens);
  if (const Json* st = field(b, "stop")) {
    if (st->is_string()) {
      g.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > 16) bad("stop", "'stop' takes at most 16 strings");
      for (const auto& x : *st) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or an array of strings");
    }
    for (const auto& x : g.stop)
      if (x.empty()) bad("stop", "stop strings must not be empty");
  }
  g.ignore_eos = boolean(b, "ignore_eos", false);
  r.n = int(integer(b, "n", 1, 16, 1));
  r.stream = boolean(b, "stream", false);
  if (const Json* so = field(b, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  constraint(b, g);
  (void)n_ctx;
}

// prompt + max_tokens must fit; never truncated.
void check_fit(const GenRequest& g, int64_t n_ctx) {
  const int64_t p = int64_t(g.prompt.size());
  if (p >= n_ctx)
    bad("messages",
        "this model's context is " + std::to_string(n_ctx) + " tokens; the prompt has " +
            std::to_string(p) + " (leave room for at least one generated token)",
        "context_length_exceeded");
  if (g.max_tokens > 0 && p + g.max_tokens > n_ctx)
    bad("max_tokens",
        "this model's context is " + std::to_string(n_ctx) + " tokens; the prompt has " +
            std::to_string(p) + " and max_tokens asks for " + std::to_string(g.max_tokens) +
            " more",
        "context_length_exceeded");
}

// n choices of one prompt: seeds differ per choice (so that they differ) but stay
// reproducible from the request's seed.
void fan_out(ApiRequest& r, const GenRequest& g, int prompt_index) {
  for (int i = 0; i < r.n; ++i) {
    GenRequest c = g;
    c.sampling.seed = g.sampling.seed + uint64_t(i);
    r.gens.push_back(std::move(c));
    r.prompt_of.push_back(prompt_index);
  }
}

}  // namespace

namespace {

// OpenAI function tools: [{type: "function", function: {name, description?, parameters?}}].
void check_tools(const Json& tools) {
  if (!tools.is_array()) bad("tools", "'tools' must be an array");
  if (tools.size() > 256) bad("tools", "at most 256 tools per request");
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = "tools[" + std::to_string(i) + "]";
    const Json& t = tools[i];
    if (!t.is_object()) bad(p, "'" + p + "' must be an object");
    const Json* type = field(t, "type");
    if (!type || *type != "function")
      bad(p + ".type", "only tools of type 'function' are supported");
    const Json* fn = field(t, "function");
    if (!fn || !fn->is_object()) bad(p + ".function", "'" + p + ".function' must be an object");
    const Json* name = field(*fn, "name");
    if (!name || !name->is_string() || name->get<std::string>().empty())
      bad(p + ".function.name", "'" + p + ".function.name' must be a non-empty string");
    const Json* params = field(*fn, "parameters");
    if (params && !params->is_object())
      bad(p + ".function.parameters",
          "'" + p + ".function.parameters' must be a JSON Schema object");
  }
}

// tool_choice: "auto" | "none" | "required" | {type: "function", function: {name}}. Returns
// the mode and sets `named` for the last form.
std::string tool_choice(const Json& b, const Json* tools, std::string& named) {
  const Json* tc = field(b, "tool_choice");
  if (!tc) return "auto";
  std::string mode;
  if (tc->is_string()) {
    mode = tc->get<std::string>();
    if (mode != "auto" && mode != "none" && mode != "required")
      bad("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a function");
  } else if (tc->is_object()) {
    const Json* fn = field(*tc, "function");
    const Json* name = fn && fn->is_object() ? field(*fn, "name") : nullptr;
    if (!name || !name->is_string())
      bad("tool_choice",
          "'tool_choice' as an object must be {\"type\": \"function\", \"function\": {\"name\": "
          "...}}");
    named = name->get<std::string>();
    mode = "function";
    bool found = false;
    if (tools)
      for (const auto& t : *tools) found |= t["function"]["name"] == named;
    if (!found)
      bad("tool_choice",
          "'tool_choice' names the function '" + named + "', which is not in 'tools'");
  } else {
    bad("tool_choice", "'tool_choice' must be a string or an object");
  }
  if ((mode == "required" || mode == "function") && (!tools || tools->empty()))
    bad("tool_choice", "'tool_choice' " + mode + " needs 'tools'");
  return mode;
}

// The system message for models whose template knows no tools: prepended to the first system
// message, or a new one.
Json with_system_text(Json messages, const std::string& text) {
  if (!messages.empty() && messages[0].is_object() && messages[0].value("role", "") == "system" &&
      messages[0].contains("content") && messages[0]["content"].is_string()) {
    messages[0]["content"] = text + "\n\n" + messages[0]["content"].get<std::string>();
  } else {
    messages.insert(messages.begin(), Json{{"role", "system"}, {"content", text}});
  }
  return messages;
}

}  // namespace

ApiRequest parse_chat(const Json& b, const chat::ChatTemplate& tmpl,
                      const chat::OutputFormat& format, const Tokenizer& tok, int64_t n_ctx,
                      bool clamp_max_tokens) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  ApiRequest r;
  r.chat = true;
  GenRequest g;
  common(b, r, g, n_ctx);
  r.logprobs = boolean(b, "logprobs", false);
  r.top_logprobs = int(integer(b, "top_logprobs", 0, 20, 0));
  if (field(b, "top_logprobs") && !r.logprobs)
    bad("top_logprobs", "'top_logprobs' needs 'logprobs' to be true");
  g.top_logprobs = r.logprobs ? r.top_logprobs : -1;
  const Json* msgs = field(b, "messages");
  if (!msgs) bad("messages", "'messages' is required");
  if (!msgs->is_array()) bad("messages", "'messages' must be an array");
  if (msgs->empty()) bad("messages", "'messages' must not be empty");
  chat::ChatInputs in;
  in.messages = *msgs;
  const Json* tools = field(b, "tools");
  if (tools) check_tools(*tools);
  std::string named;
  const std::string choice = tool_choice(b, tools, named);
  r.parallel_tool_calls = boolean(b, "parallel_tool_calls", true);
  // tool_choice "none": the template still sees the tools (some require them, and the prompt
  // stays the same for every choice, which the prefix cache likes), but nothing is parsed as a
  // call.
  const bool use_tools = tools && !tools->empty() && choice != "none";
  if (tools && !tools->empty()) in.tools = *tools;
  if (use_tools && format.tools == chat::ToolFormat::kGeneric)
    in.messages = with_system_text(in.messages, chat::generic_tool_system_prompt(*tools));
  std::string reasoning = "parsed";
  if (const Json* rf = field(b, "reasoning_format")) {
    if (!rf->is_string()) bad("reasoning_format", "'reasoning_format' must be 'parsed' or 'none'");
    reasoning = rf->get<std::string>();
    if (reasoning == "auto" || reasoning == "deepseek") reasoning = "parsed";  // llama.cpp's names
    if (reasoning != "parsed" && reasoning != "none")
      bad("reasoning_format", "'reasoning_format' must be 'parsed' or 'none'");
  }
  if (const Json* kw = field(b, "chat_template_kwargs")) {
    if (!kw->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    in.extra = *kw;
  }
  in.add_generation_prompt = true;
  std::string prompt;
  try {
    prompt = tmpl.apply(in);
  } catch (const Error& e) {
    // OpenAI clients send content null next to tool calls; some templates only take strings
    // (they test `'x' in content`): the same messages with "" there.
    bool retried = false;
    for (auto& m : in.messages)
      if (m.is_object() && m.contains("content") && m["content"].is_null()) {
        m["content"] = "";
        retried = true;
      }
    try {
      if (!retried) throw;
      prompt = tmpl.apply(in);
    } catch (const Error&) {
      bad("messages", std::string("the chat template failed on these messages: ") + e.what(),
          "template_error");
    }
  }
  r.format = chat::for_prompt(format, prompt);
  r.parse_options.parse_tools = use_tools;
  r.parse_options.parse_reasoning = reasoning == "parsed" && !r.format.think_open.empty();
  r.parse = r.parse_options.parse_tools || r.parse_options.parse_reasoning;
  // Markers may be control tokens: the parser (and a grammar) must see them.
  g.render_special = r.parse;
  if (use_tools && choice != "auto") {
    if (g.grammar)
      bad("tool_choice",
          "tool_choice '" + choice + "' cannot be combined with 'grammar' or 'response_format'");
    try {
      g.grammar =
          Grammar::parse(chat::tool_call_grammar(r.format, *tools, named, r.parallel_tool_calls));
    } catch (const Error& e) {
      bad("tools", std::string("cannot constrain the output to these tools: ") + e.what());
    }
  }
  g.prompt = chat::tokenize_prompt(tok, prompt);
  // Agent clients ask for more than any local context holds (Claude Code: 32000): a limit,
  // not a demand. The prompt itself must still fit.
  if (clamp_max_tokens && g.max_tokens > 0 && int64_t(g.prompt.size()) < n_ctx)
    g.max_tokens = int32_t(std::min<int64_t>(g.max_tokens, n_ctx - int64_t(g.prompt.size())));
  check_fit(g, n_ctx);
  fan_out(r, g, 0);
  return r;
}

ApiRequest parse_completion(const Json& b, const Tokenizer& tok, int64_t n_ctx) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  ApiRequest r;
  r.chat = false;
  GenRequest g;
  common(b, r, g, n_ctx);
  const int64_t lp = integer(b, "logprobs", 0, 20, -1);
  r.logprobs = lp >= 0;
  r.top_logprobs = int(std::max<int64_t>(lp, 0));
  g.top_logprobs = int32_t(lp);
  if (boolean(b, "echo", false)) bad("echo", "'echo' is not supported");
  if (g.max_tokens < 0)
    g.max_tokens = int32_t(integer(b, "max_tokens", 1, INT32_MAX, 16));  // OpenAI's default
  const Json* p = field(b, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  std::vector<std::vector<TokenId>> prompts;
  auto ids_of = [&](const Json& arr) {
    std::vector<TokenId> ids;
    for (const auto& x : arr) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= tok.n_vocab())
        bad("prompt",
            "token ids in 'prompt' must be integers in 0.." + std::to_string(tok.n_vocab() - 1));
      ids.push_back(TokenId(x.get<int64_t>()));
    }
    return ids;
  };
  if (p->is_string()) {
    prompts.push_back(tok.encode(p->get<std::string>(), true, true));
  } else if (p->is_array() && !p->empty() && p->at(0).is_number()) {
    prompts.push_back(ids_of(*p));
  } else if (p->is_array() && !p->empty()) {
    if (p->size() > 16) bad("prompt", "at most 16 prompts per request");
    for (const auto& x : *p) {
      if (x.is_string())
        prompts.push_back(tok.encode(x.get<std::string>(), true, true));
      else if (x.is_array())
        prompts.push_back(ids_of(x));
      else
        bad("prompt", "'prompt' must be a string, an array of strings, or token ids");
    }
  } else {
    bad("prompt", "'prompt' must be a non-empty string, an array of strings, or token ids");
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) bad("prompt", "the prompt is empty");
    g.prompt = prompts[i];
    check_fit(g, n_ctx);
    fan_out(r, g, int(i));
  }
  return r;
}

// ---- responses -------------------------------------------------------------------------

namespace {
Json bytes_of(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}
}  // namespace

GenUsage sum_usage(const std::vector<ChoiceResult>& choices, int n_prompts) {
  GenUsage s;
  std::vector<bool> seen(size_t(std::max(n_prompts, 1)), false);
  const size_t per = choices.size() / size_t(std::max(n_prompts, 1));
  for (size_t i = 0; i < choices.size(); ++i) {
    const GenUsage& u = choices[i].usage;
    s.completion_tokens += u.completion_tokens;
    // n choices of one prompt: the prompt counts once (its tokens were processed once per
    // choice, and each choice's share of those steps is charged below).
    const size_t p = per ? i / per : 0;
    if (p < seen.size() && !seen[p]) {
      seen[p] = true;
      s.prompt_tokens += u.prompt_tokens;
      s.cached_tokens += u.cached_tokens;
    }
    s.input += u.input;
    s.output += u.output;
    s.energy_source = u.energy_source;
    s.queue_ms = std::max(s.queue_ms, u.queue_ms);
    s.prompt_ms = std::max(s.prompt_ms, u.prompt_ms);
    s.decode_ms = std::max(s.decode_ms, u.decode_ms);
  }
  return s;
}

Json meter_json(const GenUsage& u) {
  auto part = [](const Charge& c, int64_t n) {
    return Json{{"joules", c.joules},
                {"cost_usd", c.usd},
                {"usd_per_mtok", c.usd_per_mtok(n)},
                {"compute_seconds", c.seconds},
                {"step_share", c.steps}};
  };
  return {{"energy_source", u.energy_source},
          {"joules", u.input.joules + u.output.joules},
          {"cost_usd", u.input.usd + u.output.usd},
          {"step_share", u.input.steps + u.output.steps},
          {"input", part(u.input, u.prompt_tokens)},
          {"output", part(u.output, u.completion_tokens)},
          {"queue_ms", u.queue_ms},
          {"prompt_ms", u.prompt_ms},
          {"decode_ms", u.decode_ms}};
}

Json usage_json(const std::vector<ChoiceResult>& choices, int n_prompts) {
  const GenUsage s = sum_usage(choices, n_prompts);
  Json u = Json::object();
  u["prompt_tokens"] = s.prompt_tokens;
  u["completion_tokens"] = s.completion_tokens;
  u["total_tokens"] = s.prompt_tokens + s.completion_tokens;
  u["prompt_tokens_details"] = {{"cached_tokens", s.cached_tokens}};
  u["tokenfab"] = meter_json(s);
  return u;
}

Json logprobs_json(const ApiRequest& r, const Tokenizer& tok, const std::vector<GenToken>& toks,
                   size_t text_offset) {
  if (r.chat) {
    Json content = Json::array();
    for (const auto& t : toks) {
      Json e = Json::object();
      e["token"] = t.piece;
      e["logprob"] = t.logprob;
      e["bytes"] = bytes_of(t.piece);
      Json top = Json::array();
      for (const auto& c : t.top) {
        const std::string piece = tok.token_to_piece(c.id);
        top.push_back({{"token", piece}, {"logprob", c.logprob}, {"bytes", bytes_of(piece)}});
      }
      e["top_logprobs"] = std::move(top);
      content.push_back(std::move(e));
    }
    return {{"content", std::move(content)}};
  }
  Json tokens = Json::array(), lps = Json::array(), tops = Json::array(), offs = Json::array();
  size_t off = text_offset;
  for (const auto& t : toks) {
    tokens.push_back(t.piece);
    lps.push_back(t.logprob);
    Json top = Json::object();
    for (const auto& c : t.top) top[tok.token_to_piece(c.id)] = c.logprob;
    tops.push_back(std::move(top));
    offs.push_back(off);
    off += t.piece.size();
  }
  return {
      {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

Json full_response(const ApiRequest& r, const Tokenizer& tok, const std::string& id,
                   int64_t created, const std::vector<ChoiceResult>& choices) {
  Json out = Json::object();
  out["id"] = id;
  out["object"] = r.chat ? "chat.completion" : "text_completion";
  out["created"] = created;
  out["model"] = r.model;
  out["system_fingerprint"] = "tokenfab";
  Json cs = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    Json ch = Json::object();
    ch["index"] = i;
    if (r.chat && r.parse) {
      const chat::ParsedOutput& po = c.parsed;
      Json m = {{"role", "assistant"}};
      // OpenAI sends content null next to tool calls when there is no text.
      m["content"] = po.content.empty() && !po.tool_calls.empty() ? Json() : Json(po.content);
      if (!po.reasoning.empty()) m["reasoning_content"] = po.reasoning;
      if (!po.tool_calls.empty()) m["tool_calls"] = tool_calls_json(po.tool_calls);
      ch["message"] = std::move(m);
    } else if (r.chat) {
      ch["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      ch["text"] = c.text;
    }
    ch["logprobs"] = r.logprobs ? logprobs_json(r, tok, c.tokens, 0) : Json();
    ch["finish_reason"] = c.finish_reason;
    cs.push_back(std::move(ch));
  }
  out["choices"] = std::move(cs);
  int n_prompts = 1;
  if (!r.prompt_of.empty()) n_prompts = r.prompt_of.back() + 1;
  out["usage"] = usage_json(choices, n_prompts);
  return out;
}

Json tool_calls_json(const std::vector<chat::ToolCall>& calls) {
  Json out = Json::array();
  for (const auto& c : calls)
    out.push_back({{"id", c.id},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return out;
}

Json chunk_json(const ApiRequest& r, const Tokenizer& tok, const std::string& id, int64_t created,
                int index, const chat::OutputDelta& d, const std::vector<GenToken>& toks,
                const std::string& finish_reason, bool first, size_t text_offset) {
  Json out = Json::object();
  out["id"] = id;
  out["object"] = r.chat ? "chat.completion.chunk" : "text_completion";
  out["created"] = created;
  out["model"] = r.model;
  out["system_fingerprint"] = "tokenfab";
  Json ch = Json::object();
  ch["index"] = index;
  if (r.chat) {
    Json delta = Json::object();
    if (first) delta["role"] = "assistant";
    if (first || !d.content.empty()) delta["content"] = d.content;
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.tool_calls.empty()) {
      Json calls = Json::array();
      for (const auto& c : d.tool_calls) {
        Json e = {{"index", c.index}};
        if (!c.id.empty()) {  // a call's first delta: its id, type and name
          e["id"] = c.id;
          e["type"] = "function";
          e["function"] = {{"name", c.name}, {"arguments", c.arguments}};
        } else {
          e["function"] = {{"arguments", c.arguments}};
        }
        calls.push_back(std::move(e));
      }
      delta["tool_calls"] = std::move(calls);
    }
    ch["delta"] = std::move(delta);
  } else {
    ch["text"] = d.content;
  }
  ch["logprobs"] = r.logprobs && !toks.empty() ? logprobs_json(r, tok, toks, text_offset) : Json();
  ch["finish_reason"] = finish_reason.empty() ? Json() : Json(finish_reason);
  out["choices"] = Json::array({std::move(ch)});
  if (r.include_usage) out["usage"] = nullptr;
  return out;
}

}  // namespace tf::server
