// The tool-call formats as the output parser reads them: one region parser per call syntax.
// Each starts right after its trigger marker (or at it, for bare JSON answers), reads through a
// Cursor, and appends the calls it found; on a read that fails or needs more text it just
// returns, and the Cursor's state says which. Parsers are lenient where models are sloppy
// (whitespace, a close marker left out at the very end, "parameters" for "arguments") and strict
// where leniency would turn ordinary text into a call.
#include "chat/tool_formats.h"

#include <algorithm>

namespace tf::chat::detail {
namespace {

constexpr size_t kMaxHeader = 256;             // a function name, an id, a harmony header
constexpr size_t kMaxValue = size_t(1) << 30;  // a Seed-OSS parameter value

const Keys kName = {"name"};
const Keys kArgs = {"arguments", "parameters"};

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// <tool_call>{"name": "f", "arguments": {...}}</tool_call>
void hermes(Cursor& c, Region& r) {
  c.commit();
  c.ws();
  std::string_view raw;
  if (!c.json(&raw) || !c.calls_from_json(raw, false, kName, kArgs, "", &r.calls)) return;
  c.ws();
  c.closer("</tool_call>");
}

// A JSON object whose first key is `a` or `b` (a bare-JSON call): the cursor is committed and
// back at its '{'. False otherwise (failed when the object has another first key).
bool object_keyed(Cursor& c, const char* a, const char* b) {
  const size_t start = c.pos();
  if (!c.lit("{")) return false;
  c.ws();
  int k = c.opt(a);
  if (k == 0) k = c.opt(b);
  if (k <= 0) {
    if (k == 0) c.fail("not a call");
    return false;
  }
  c.seek(start);
  c.commit();
  return true;
}

// Llama 3.x answers a call with just {"name": "f", "parameters": {...}} (optionally with
// "type": "function" first), several separated by ";" or whitespace. Only a JSON object whose
// first key is "name" or "type" is taken for a call; any other JSON answer stays content.
void llama_json(Cursor& c, Region& r) {
  if (!object_keyed(c, "\"name\"", "\"type\"")) return;
  std::string_view raw;
  if (!c.json(&raw) || !c.calls_from_json(raw, false, kName, kArgs, "", &r.calls, true)) return;
  c.opt(";");
}

// "python" with the code as its one argument: how Llama 3.1 and Functionary run code.
void code_call(std::string_view code, Region& r) {
  Json args = Json::object();
  args["code"] = std::string(code);
  r.calls.push_back({"", "python", dump_json(args)});
}

// <|python_tag|> then a JSON call, a builtin tool call name.call(key="value", ...), or code.
void llama_python_tag(Cursor& c, Region& r) {
  c.commit();
  c.ws();
  if (c.next_is('{')) {
    std::string_view raw;
    if (c.json(&raw) && c.calls_from_json(raw, false, kName, kArgs, "", &r.calls)) c.opt(";");
    return;
  }
  if (c.state() != Cursor::kOk) return;
  const size_t start = c.pos();
  std::string_view name;
  if (c.ident(&name) && name.size() > 5 && name.substr(name.size() - 5) == ".call" &&
      c.opt("(") == 1) {
    Json args = Json::object();
    c.ws();
    if (c.opt(")") == 0) {
      for (;;) {
        std::string_view key, raw;
        if (!c.ident(&key)) return;
        c.ws();
        if (!c.lit("=")) return;
        c.ws();
        if (c.opt("'") == 1) {  // a Python single-quoted string (no escapes)
          if (!c.until("'", kMaxValue, &raw)) return;
          args[std::string(key)] = std::string(raw);
        } else {
          Json v;
          if (!c.json(&raw)) return;
          if (!parse_json(raw, &v)) {
            c.fail("malformed argument");
            return;
          }
          args[std::string(key)] = std::move(v);
        }
        c.ws();
        const int comma = c.opt(",");
        if (comma < 0) return;
        if (comma == 1) {
          c.ws();
          continue;
        }
        if (!c.lit(")")) return;
        break;
      }
    }
    if (c.state() != Cursor::kOk) return;
    r.calls.push_back({"", std::string(name.substr(0, name.size() - 5)), dump_json(args)});
    return;
  }
  // Not a call expression: the rest of the output is code.
  std::string_view code;
  if (c.retry(start) && c.rest(&code)) code_call(code, r);
}

// <|python_tag|> in Functionary v3.1: the rest of the output is code.
void python_code(Cursor& c, Region& r) {
  c.commit();
  std::string_view code;
  if (c.rest(&code)) code_call(code, r);
}

// [TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "abcdefghi"}, ...] (Nemo), or
// [TOOL_CALLS]f[CALL_ID]abcdefghi[ARGS]{...} (Small 3.2 / Devstral, [CALL_ID] optional).
void mistral(Cursor& c, Region& r) {
  c.commit();
  c.ws();
  std::string_view raw;
  if (c.next_is('[')) {
    if (c.json(&raw)) c.calls_from_json(raw, true, kName, kArgs, "id", &r.calls);
    return;
  }
  RawCall call;
  std::string_view name, id;
  if (!c.ident(&name)) return;
  call.name = name;
  const int has_id = c.opt("[CALL_ID]");
  if (has_id < 0 || (has_id == 1 && !c.ident(&id))) return;
  call.id = id;
  if (!c.lit("[ARGS]")) return;
  c.ws();
  if (c.json(&raw) && c.arguments(raw, &call.arguments)) r.calls.push_back(std::move(call));
}

// <function=f>{...}</function>
void functionary31(Cursor& c, Region& r) {
  RawCall call;
  std::string_view name, raw;
  if (!c.ident(&name) || !c.lit(">")) return;
  c.commit();
  call.name = name;
  c.ws();
  if (!c.json(&raw) || !c.arguments(raw, &call.arguments)) return;
  c.ws();
  if (c.closer("</function>")) r.calls.push_back(std::move(call));
}

// >>>f\n{...}, or >>>all\n then answer text; the output itself starts after a ">>>" (the
// prompt's). The python tool takes raw code up to the next ">>>".
void functionary32(Cursor& c, Region& r) {
  std::string_view name, raw;
  if (!c.ident(&name) || !c.lit("\n")) return;
  if (name == "all") return;  // what follows is the answer
  c.commit();
  RawCall call;
  call.name = name;
  if (name == "python") {
    if (!c.until_or_end(">>>", &raw)) return;
    Json args;
    if (parse_json(trim_ws(raw), &args) && args.is_object()) {
      r.calls.push_back({"", "python", dump_json(args)});
    } else {
      code_call(raw, r);
    }
    return;
  }
  c.ws();
  if (c.json(&raw) && c.arguments(raw, &call.arguments)) r.calls.push_back(std::move(call));
}

// After <｜tool▁call▁begin｜>: R1's "function<｜tool▁sep｜>f\n```json\n{...}\n```" or V3.1's
// "f<｜tool▁sep｜>{...}", then <｜tool▁call▁end｜>. (The <｜tool▁calls▁begin｜> / end wrappers
// around a group of calls are dropped markers.)
void deepseek(Cursor& c, Region& r) {
  c.commit();
  std::string_view head, raw;
  if (!c.until("<｜tool▁sep｜>", kMaxHeader, &head)) return;
  head = trim_ws(head);
  RawCall call;
  if (head.empty() || head == "function") {
    std::string_view name;
    if (!c.until("\n", kMaxHeader, &name)) return;
    call.name = trim_ws(name);
    c.ws();
    int fence = c.opt("```json");
    if (fence == 0) fence = c.opt("```");
    if (fence < 0) return;
    c.ws();
    if (!c.json(&raw) || !c.arguments(raw, &call.arguments)) return;
    c.ws();
    if (fence == 1 && c.opt("```") < 0) return;
  } else {
    call.name = head;
    c.ws();
    if (!c.json(&raw) || !c.arguments(raw, &call.arguments)) return;
  }
  c.ws();
  if (!c.closer("<｜tool▁call▁end｜>")) return;
  if (call.name.empty()) {
    c.fail("a call without a name");
    return;
  }
  r.calls.push_back(std::move(call));
}

// <|START_ACTION|>[{"tool_call_id": "0", "tool_name": "f", "parameters": {...}}]<|END_ACTION|>
// (the ids are per-turn indexes, not ids: ours are generated).
void command_r7b(Cursor& c, Region& r) {
  c.commit();
  c.ws();
  std::string_view raw;
  if (!c.json(&raw) || !c.calls_from_json(raw, true, {"tool_name", "name"},
                                          {"parameters", "arguments"}, "", &r.calls))
    return;
  c.ws();
  c.closer("<|END_ACTION|>");
}

// Action:\n```json\n[{"tool_name": "f", "parameters": {...}}]\n``` at the start of the answer.
void command_r_plus(Cursor& c, Region& r) {
  if (!c.lit("Action:")) return;  // (a bare trigger: the region starts at it)
  c.ws();
  int fence = c.opt("```json");
  if (fence == 0) fence = c.opt("```");
  if (fence < 0) return;
  c.ws();
  if (!c.next_is('[')) {
    c.fail("not a call");
    return;
  }
  c.commit();
  std::string_view raw;
  if (!c.json(&raw) || !c.calls_from_json(raw, true, {"tool_name", "name"},
                                          {"parameters", "arguments"}, "", &r.calls))
    return;
  if (fence == 1) {
    c.ws();
    c.closer("```");
  }
}

// functools[{"name": "f", "arguments": {...}}, ...]
void firefunction(Cursor& c, Region& r) {
  if (!c.next_is('[')) {
    c.fail("not a call");
    return;
  }
  c.commit();
  std::string_view raw;
  if (c.json(&raw)) c.calls_from_json(raw, true, kName, kArgs, "", &r.calls);
}

// A JSON list of {"name", "arguments"} after a marker, then an optional close marker:
// Granite's <|tool_call|>[...], Nemotron's <TOOLCALL>[...]</TOOLCALL>.
void json_list(Cursor& c, Region& r, std::string_view close) {
  c.commit();
  c.ws();
  std::string_view raw;
  if (!c.json(&raw) || !c.calls_from_json(raw, true, kName, kArgs, "", &r.calls)) return;
  if (!close.empty()) {
    c.ws();
    c.closer(close);
  }
}
void granite(Cursor& c, Region& r) {
  json_list(c, r, "");
}
void nemotron(Cursor& c, Region& r) {
  json_list(c, r, "</TOOLCALL>");
}

// <|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{...}<|tool_call_end|>
void kimi(Cursor& c, Region& r) {
  c.commit();
  std::string_view id, raw;
  if (!c.until("<|tool_call_argument_begin|>", kMaxHeader, &id)) return;
  std::string_view name = trim_ws(id);
  if (starts_with(name, "functions.")) name.remove_prefix(10);
  if (const size_t colon = name.rfind(':'); colon != std::string_view::npos) {
    const std::string_view index = name.substr(colon + 1);
    if (!index.empty() &&
        std::all_of(index.begin(), index.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      name = name.substr(0, colon);
  }
  RawCall call;
  call.name = name;
  c.ws();
  if (!c.json(&raw) || !c.arguments(raw, &call.arguments)) return;
  c.ws();
  if (!c.closer("<|tool_call_end|>")) return;
  if (call.name.empty()) {
    c.fail("a call without a name");
    return;
  }
  r.calls.push_back(std::move(call));
}

// A Seed-OSS parameter value is plain text; without the schema at hand, text that is a JSON
// number, boolean, null, object or array is taken as that (so "42" is a number, not a string).
Json parameter_value(std::string_view v) {
  if (starts_with(v, "\n")) v.remove_prefix(1);
  if (!v.empty() && v.back() == '\n') v.remove_suffix(1);
  Json j;
  if (parse_json(v, &j) && !j.is_string()) return j;
  return std::string(v);
}

// <seed:tool_call><function=f><parameter=k>v</parameter>...</function></seed:tool_call>
void seed_oss(Cursor& c, Region& r) {
  c.commit();
  c.ws();
  std::string_view name;
  if (!c.lit("<function=") || !c.until(">", kMaxHeader, &name)) return;
  Json args = Json::object();
  for (;;) {
    c.ws();
    const int more = c.opt("<parameter=");
    if (more < 0) return;
    if (more == 0) break;
    std::string_view key, value;
    if (!c.until(">", kMaxHeader, &key) || !c.until("</parameter>", kMaxValue, &value)) return;
    args[std::string(trim_ws(key))] = parameter_value(value);
  }
  if (!c.lit("</function>")) return;
  c.ws();
  if (!c.closer("</seed:tool_call>")) return;
  if (trim_ws(name).empty()) {
    c.fail("a call without a name");
    return;
  }
  r.calls.push_back({"", std::string(trim_ws(name)), dump_json(args)});
}

// Harmony (gpt-oss): a message header up to <|message|>, after <|start|> ("assistant", maybe
// " to=functions.f", then <|channel|>...) or after <|channel|> itself (the prompt ends with
// "<|start|>assistant"). A recipient makes the message a call whose body is the arguments;
// the analysis channel is reasoning (the first one is the think block; later ones come here);
// final and commentary are the answer, which follows as content.
void harmony(Cursor& c, Region& r, bool after_start) {
  std::string_view head, raw;
  if (!c.until("<|message|>", kMaxHeader, &head)) return;
  if (after_start) {
    if (!starts_with(head, "assistant")) {
      c.fail("not an assistant message");
      return;
    }
    const size_t ch = head.find("<|channel|>");
    if (ch == std::string_view::npos) {
      c.fail("no channel");
      return;
    }
  }
  auto word_after = [&](std::string_view key) -> std::string_view {
    const size_t at = head.find(key);
    if (at == std::string_view::npos) return {};
    std::string_view w = head.substr(at + key.size());
    const size_t e = w.find_first_of(" <");
    return w.substr(0, e);
  };
  const std::string_view recipient = word_after("to=");
  const std::string_view channel = after_start ? word_after("<|channel|>") : word_after("");
  if (!recipient.empty()) {
    c.commit();
    RawCall call;
    call.name = starts_with(recipient, "functions.") ? recipient.substr(10) : recipient;
    c.ws();
    if (!c.json(&raw) || !c.arguments(raw, &call.arguments)) return;
    const size_t end = c.pos();
    c.ws();
    const int closed = c.opt("<|call|>");
    if (closed < 0 || call.name.empty()) return;
    if (closed == 0) c.seek(end);  // whitespace after the call is the content's
    r.calls.push_back(std::move(call));
  } else if (channel == "analysis") {
    if (!c.parse_reasoning()) {
      c.fail("reasoning left as generated");
      return;
    }
    if (!c.until_or_end("<|end|>", &raw)) return;
    r.reasoning = trim_ws(raw);
  }
}
void harmony_start(Cursor& c, Region& r) {
  harmony(c, r, true);
}
void harmony_channel(Cursor& c, Region& r) {
  harmony(c, r, false);
}

// The generic JSON answer (kGeneric): {"tool_calls": [{"name", "arguments", "id"?}, ...]} or
// {"tool_call": {...}}, maybe in a ```json fence, as the whole answer.
void generic(Cursor& c, Region& r) {
  int fence = c.opt("```json");
  if (fence == 0) fence = c.opt("```");
  if (fence < 0) return;
  c.ws();
  if (!object_keyed(c, "\"tool_calls\"", "\"tool_call\"")) return;
  std::string_view raw;
  Json j;
  if (!c.json(&raw)) return;
  if (!parse_json(raw, &j) || !j.is_object()) {
    c.fail("malformed JSON");
    return;
  }
  if (auto it = j.find("tool_calls"); it != j.end()) {
    if (!c.calls_from_value(*it, true, kName, kArgs, "id", &r.calls)) return;
  } else if (!c.calls_from_value(j["tool_call"], false, kName, kArgs, "id", &r.calls)) {
    return;
  }
  if (fence == 1) {
    c.ws();
    c.closer("```");
  }
}

FormatSpec make_spec(ToolFormat f) {
  using F = ToolFormat;
  FormatSpec s;
  switch (f) {
    case F::kGeneric:
      s.triggers = {{"{", generic, true}, {"```", generic, true}};
      break;
    case F::kHermes:
      s.triggers = {{"<tool_call>", hermes}};
      break;
    case F::kLlama3:
      s.triggers = {{"{", llama_json, true}, {"<|python_tag|>", llama_python_tag}};
      break;
    case F::kMistralNemo:
    case F::kMistral:
      s.triggers = {{"[TOOL_CALLS]", mistral}};
      s.id_len = 9;
      break;
    case F::kFunctionaryV31:
      s.triggers = {{"<function=", functionary31}, {"<|python_tag|>", python_code}};
      break;
    case F::kFunctionaryV32:
      s.triggers = {{">>>", functionary32}};
      s.start = functionary32;
      break;
    case F::kDeepSeekR1:
    case F::kDeepSeekV31:
      s.triggers = {{"<｜tool▁call▁begin｜>", deepseek}};
      // The R1 distills are unsure of their group marker: the variants seen in the wild.
      s.drops = {"<｜tool▁calls▁begin｜>", "<｜tool_calls_begin｜>", "<｜tool calls begin｜>",
                 "<｜tool\\_calls\\_begin｜>", "<｜tool▁calls▁end｜>"};
      break;
    case F::kCommandR7B:
      s.triggers = {{"<|START_ACTION|>", command_r7b}};
      s.answer = {"<|START_RESPONSE|>", "<|END_RESPONSE|>"};
      break;
    case F::kCommandRPlus:
      s.triggers = {{"Action:", command_r_plus, true}};
      break;
    case F::kFirefunctionV2:
      s.triggers = {{"functools", firefunction}};
      break;
    case F::kGranite:
      s.triggers = {{"<|tool_call|>", granite}};
      s.answer = {"<response>", "</response>"};
      break;
    case F::kKimiK2:
      s.triggers = {{"<|tool_call_begin|>", kimi}};
      s.drops = {"<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"};
      break;
    case F::kNemotron:
      s.triggers = {{"<TOOLCALL>", nemotron}};
      break;
    case F::kSeedOss:
      s.triggers = {{"<seed:tool_call>", seed_oss}};
      break;
    case F::kGptOss:
      s.triggers = {{"<|start|>", harmony_start}, {"<|channel|>", harmony_channel}};
      s.drops = {"<|end|>", "<|return|>", "<|call|>"};
      break;
  }
  return s;
}

}  // namespace

const FormatSpec& format_spec(ToolFormat f) {
  static const std::vector<FormatSpec> specs = [] {
    std::vector<FormatSpec> v;
    for (int i = 0; i <= int(ToolFormat::kGptOss); ++i) v.push_back(make_spec(ToolFormat(i)));
    return v;
  }();
  const size_t i = size_t(f);
  return i < specs.size() ? specs[i] : specs[0];
}

}  // namespace tf::chat::detail
