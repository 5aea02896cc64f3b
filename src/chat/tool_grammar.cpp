// Grammars that force tool calls (tool_choice "required" or a named function), and the system
// prompt for templates without tool syntax. Each call is written the way the family's template
// renders past calls, which is what the model was trained on; only the arguments vary, as the
// tool's JSON Schema allows (GbnfBuilder::add_schema).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>

#include "chat/output_scan.h"
#include "chat/tool_calls.h"
#include "sample/json_schema.h"
#include "util/error.h"

namespace tf::chat {
namespace {

using OJson = nlohmann::ordered_json;

struct Tool {
  std::string name;
  OJson parameters;
};

// The OpenAI tools array ({"type": "function", "function": {name, description, parameters}};
// a bare function object is accepted too).
std::vector<Tool> select_tools(const OJson& tools, const std::string& only) {
  if (!tools.is_array()) throw Error("tools: expected an array of tool definitions");
  std::vector<Tool> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const OJson& t = tools[i];
    const OJson& fn = t.is_object() && t.contains("function") ? t["function"] : t;
    if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string() ||
        fn["name"].get<std::string>().empty())
      throw Error("tools[" + std::to_string(i) + "]: a function needs a name");
    Tool tool{fn["name"].get<std::string>(), OJson{{"type", "object"}}};
    if (fn.contains("parameters") && !fn["parameters"].is_null())
      tool.parameters = fn["parameters"];
    if (only.empty() || tool.name == only) out.push_back(std::move(tool));
  }
  if (!only.empty() && out.empty())
    throw Error("tool_choice names the function '" + only + "', which is not in tools");
  if (out.empty()) throw Error("tool_choice requires a tool call, but there are no tools");
  return out;
}

std::string lit(const std::string& s) {
  return GbnfBuilder::literal(s);
}
std::string jstr(const std::string& s) {
  return nlohmann::json(s).dump();
}

// A rule-name fragment: letters, digits and '-' only.
std::string rule_part(const std::string& s) {
  std::string r;
  for (char c : s) r += (std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
  return r.empty() ? "f" : r;
}

// Code points of UTF-8 text (markers: valid UTF-8).
std::vector<uint32_t> code_points(const std::string& s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = cp << 6 | (s[i + k] & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

std::string class_char(uint32_t cp) {
  char buf[16];
  if (cp < 0x80) {
    std::snprintf(buf, sizeof buf, "\\x%02X", unsigned(cp));
  } else {
    std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(cp));
  }
  return buf;
}

// A rule for any text that does not contain `marker`: the marker's KMP automaton, one rule per
// state (how much of the marker the text ends with); reaching the whole marker is not allowed.
std::string text_without(GbnfBuilder& b, const std::string& marker, const std::string& name) {
  const std::vector<uint32_t> m = code_points(marker);
  const size_t k = m.size();
  std::vector<size_t> fail(k + 1, 0);  // longest proper border of m[0..i)
  for (size_t i = 1; i < k; ++i) {
    size_t j = fail[i];
    while (j > 0 && m[i] != m[j]) j = fail[j];
    fail[i + 1] = m[i] == m[j] ? j + 1 : 0;
  }
  std::vector<uint32_t> alphabet;
  for (uint32_t c : m)
    if (std::find(alphabet.begin(), alphabet.end(), c) == alphabet.end()) alphabet.push_back(c);
  auto next = [&](size_t state, uint32_t c) {
    while (state > 0 && m[state] != c) state = fail[state];
    return m[state] == c ? state + 1 : 0;
  };
  auto state_rule = [&](size_t i) { return name + "-" + std::to_string(i); };
  std::string others = "[^";
  for (uint32_t c : alphabet) others += class_char(c);
  others += "]";
  for (size_t i = 0; i < k; ++i) {
    std::string body = "( " + others + " " + state_rule(0);
    for (uint32_t c : alphabet) {
      const size_t to = next(i, c);
      if (to == k) continue;
      std::string ch;
      if (c < 0x80) {
        ch = lit(std::string(1, char(c)));
      } else {
        ch = "[";  // (appended piecewise: GCC 12 warns falsely about "[" + s + "]")
        ch += class_char(c);
        ch += "]";
      }
      body += " | " + ch + " " + state_rule(to);
    }
    b.add_rule(state_rule(i), body + " )?");
  }
  return state_rule(0);
}

// How a format writes calls: open, then calls joined by sep, then close; item(tool, args) is
// one call. FunctionaryV3.2 writes its first call without the ">>>" (the prompt has it).
struct Layout {
  std::string open, sep, close;
  std::function<std::string(const std::string& name, const std::string& args)> item;
  bool single = false;  // the format has one call per turn
};

Layout layout(ToolFormat f) {
  using F = ToolFormat;
  const std::string id9 = "[a-zA-Z0-9]{9}";
  switch (f) {
    case F::kGeneric:
      return {lit("{\"tool_calls\": ["), lit(", "), lit("]}"), [](auto& n, auto& a) {
                return lit("{\"name\": " + jstr(n) + ", \"arguments\": ") + " " + a + " " +
                       lit("}");
              }};
    case F::kHermes:
      return {"", lit("\n"), "", [](auto& n, auto& a) {
                return lit("<tool_call>\n{\"name\": " + jstr(n) + ", \"arguments\": ") + " " + a +
                       " " + lit("}\n</tool_call>");
              }};
    case F::kLlama3:
      return {"", lit("\n"), "", [](auto& n, auto& a) {
                return lit("{\"name\": " + jstr(n) + ", \"parameters\": ") + " " + a + " " +
                       lit("}");
              }};
    case F::kMistralNemo:
      return {lit("[TOOL_CALLS]["), lit(", "), lit("]"), [id9](auto& n, auto& a) {
                return lit("{\"name\": " + jstr(n) + ", \"arguments\": ") + " " + a + " " +
                       lit(", \"id\": \"") + " " + id9 + " " + lit("\"}");
              }};
    case F::kMistral:
      return {"", "", "", [id9](auto& n, auto& a) {
                return lit("[TOOL_CALLS]" + n) + " (" + lit("[CALL_ID]") + " " + id9 + ")? " +
                       lit("[ARGS]") + " " + a;
              }};
    case F::kFunctionaryV31:
      return {"", "", "", [](auto& n, auto& a) {
                return lit("<function=" + n + ">") + " " + a + " " + lit("</function>");
              }};
    case F::kFunctionaryV32:
      return {"", "", "", [](auto& n, auto& a) { return lit(">>>" + n + "\n") + " " + a; }};
    case F::kDeepSeekR1:
      return {lit("<｜tool▁calls▁begin｜>"), lit("\n"), lit("<｜tool▁calls▁end｜>"),
              [](auto& n, auto& a) {
                return lit("<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + n + "\n```json\n") +
                       " " + a + " " + lit("\n```<｜tool▁call▁end｜>");
              }};
    case F::kDeepSeekV31:
      return {lit("<｜tool▁calls▁begin｜>"), "", lit("<｜tool▁calls▁end｜>"), [](auto& n, auto& a) {
                return lit("<｜tool▁call▁begin｜>" + n + "<｜tool▁sep｜>") + " " + a + " " +
                       lit("<｜tool▁call▁end｜>");
              }};
    case F::kCommandR7B:
      return {lit("<|START_ACTION|>[\n    "), lit(",\n    "), lit("\n]<|END_ACTION|>"),
              [](auto& n, auto& a) {
                return lit("{\"tool_call_id\": \"") + " [0-9]{1,3} " +
                       lit("\", \"tool_name\": " + jstr(n) + ", \"parameters\": ") + " " + a + " " +
                       lit("}");
              }};
    case F::kCommandRPlus:
      return {lit("Action:\n```json\n[\n    "), lit(",\n    "), lit("\n]\n```"),
              [](auto& n, auto& a) {
                return lit("{\"tool_name\": " + jstr(n) + ", \"parameters\": ") + " " + a + " " +
                       lit("}");
              }};
    case F::kFirefunctionV2:
    case F::kGranite:
    case F::kNemotron: {
      const char* open = f == F::kFirefunctionV2 ? " functools["
                         : f == F::kGranite      ? "<|tool_call|>["
                                                 : "<TOOLCALL>[";
      const char* close = f == F::kNemotron ? "]</TOOLCALL>" : "]";
      return {lit(open), lit(", "), lit(close), [](auto& n, auto& a) {
                return lit("{\"name\": " + jstr(n) + ", \"arguments\": ") + " " + a + " " +
                       lit("}");
              }};
    }
    case F::kKimiK2:
      return {lit("<|tool_calls_section_begin|>"), "", lit("<|tool_calls_section_end|>"),
              [](auto& n, auto& a) {
                return lit("<|tool_call_begin|>functions." + n + ":") + " [0-9]{1,3} " +
                       lit("<|tool_call_argument_begin|>") + " " + a + " " +
                       lit("<|tool_call_end|>");
              }};
    case F::kGptOss:
      return {"", "", "",
              [](auto& n, auto& a) {
                return lit("<|channel|>commentary to=functions." + n +
                           " <|constrain|>json<|message|>") +
                       " " + a + " " + lit("<|call|>");
              },
              true};
    case F::kSeedOss:
      break;
  }
  throw Error(std::string("tool_choice: no grammar for the ") + tool_format_name(f) +
              " tool-call format (its arguments are not JSON)");
}

}  // namespace

std::string tool_call_grammar(const OutputFormat& f, const OJson& tools,
                              const std::string& only_function, bool parallel) {
  const Layout l = layout(f.tools);
  const std::vector<Tool> chosen = select_tools(tools, only_function);
  GbnfBuilder b;
  std::vector<std::string> calls, firsts;
  for (size_t i = 0; i < chosen.size(); ++i) {
    const Tool& t = chosen[i];
    const std::string part = "tc" + std::to_string(i) + "-" + rule_part(t.name);
    const std::string args = b.add_schema(t.parameters, part + "-args");
    calls.push_back(b.add_rule(part + "-call", l.item(t.name, args)));
    if (f.tools == ToolFormat::kFunctionaryV32)  // the prompt ends with the first ">>>"
      firsts.push_back(b.add_rule(part + "-first", lit(t.name + "\n") + " " + args));
  }
  auto alternatives = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& r : v) s += (s.empty() ? "" : " | ") + r;
    return s;
  };
  const std::string call = b.add_rule("tc-call", alternatives(calls));
  const std::string first = firsts.empty() ? call : b.add_rule("tc-first", alternatives(firsts));
  std::string body = (l.open.empty() ? "" : l.open + " ") + first;
  if (parallel && !l.single) body += " (" + (l.sep.empty() ? "" : l.sep + " ") + call + ")*";
  if (!l.close.empty()) body += " " + l.close;

  // A reasoning model thinks first: the think block (or its rest) may precede the calls.
  std::string think;
  if (!f.think_open.empty() && !f.think_close.empty()) {
    const std::string text = text_without(b, f.think_close, "tc-think");
    const std::string ws = b.add_rule("tc-ws", "[ \\t\\n]{0,4}");
    std::string after = ws;
    if (f.tools == ToolFormat::kGptOss) after = lit("<|start|>assistant");  // next message
    if (f.starts_in_reasoning) {
      think = text + " " + lit(f.think_close) + " " + after + " ";
    } else {
      think = "(" + lit(f.think_open) + " " + text + " " + lit(f.think_close) + " " + after + ")? ";
    }
  }
  b.add_rule("root", think + body);
  return b.str();
}

std::string generic_tool_system_prompt(const OJson& tools) {
  std::string s =
      "You can call tools (functions) to answer. To call one or more of them, reply with only "
      "this JSON object and nothing else:\n"
      "{\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<the arguments, as the "
      "tool's parameters schema says>}}]}\n"
      "Put every call you need now in \"tool_calls\". If no tool is needed, answer normally in "
      "plain text.\n\nThe tools:\n";
  if (tools.is_array()) {
    for (const OJson& t : tools) {
      const OJson& fn = t.is_object() && t.contains("function") ? t["function"] : t;
      if (!fn.is_object()) continue;
      OJson d = OJson::object();
      for (const char* k : {"name", "description", "parameters"})
        if (fn.contains(k)) d[k] = fn[k];
      s += detail::dump_json(d) + "\n";
    }
  }
  return s;
}

}  // namespace tf::chat
