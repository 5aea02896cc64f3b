#include "chat/chat_template.h"

#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace tf::chat {

const std::string& default_template() {
  // ChatML, as Qwen and many fine-tunes use it. Content that is not a string (null next to
  // tool calls) prints as nothing; tool calls are written the Hermes way.
  static const std::string t =
      "{%- for message in messages %}"
      "{{- '<|im_start|>' + message['role'] + '\\n' }}"
      "{%- if message['content'] is string %}{{- message['content'] }}{%- endif %}"
      "{%- if message['tool_calls'] is defined and message['tool_calls'] %}"
      "{%- for call in message['tool_calls'] %}"
      "{%- set fn = call['function'] if call['function'] is defined else call %}"
      "{{- '\\n<tool_call>\\n' + {'name': fn['name'], 'arguments': fn['arguments']} | tojson + "
      "'\\n</tool_call>' }}"
      "{%- endfor %}"
      "{%- endif %}"
      "{{- '<|im_end|>\\n' }}"
      "{%- endfor %}"
      "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  return t;
}

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token)
    : source_(std::move(source)), bos_(std::move(bos_token)), eos_(std::move(eos_token)),
      tmpl_(source_) {
  takes_parts_ = tmpl_.inspects_field("content");
}

ChatTemplate ChatTemplate::from_model(const gguf::File& file, const Tokenizer& tok,
                                      const std::string& variant) {
  std::string src;
  if (!variant.empty()) src = file.get_string_or("tokenizer.chat_template." + variant, "");
  if (src.empty()) src = file.get_string_or("tokenizer.chat_template", "");
  if (src.empty()) src = default_template();
  const std::string bos = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
  return ChatTemplate(std::move(src), bos, eos);
}

namespace {
std::string where(size_t i) { return "messages[" + std::to_string(i) + "]"; }
}  // namespace

jinja::Json ChatTemplate::normalize(const jinja::Json& messages) const {
  if (!messages.is_array()) throw Error("messages must be an array");
  jinja::Json out = jinja::Json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const jinja::Json& m = messages[i];
    if (!m.is_object()) throw Error(where(i) + " must be an object");
    if (!m.contains("role") || !m["role"].is_string())
      throw Error(where(i) + ".role must be a string");
    jinja::Json n = m;
    if (m.contains("content")) {
      const jinja::Json& c = m["content"];
      if (c.is_array()) {
        std::string joined;
        for (size_t k = 0; k < c.size(); ++k) {
          const jinja::Json& part = c[k];
          const std::string at = where(i) + ".content[" + std::to_string(k) + "]";
          if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
            throw Error(at + " must be an object with a string 'type'");
          if (part["type"] != "text")
            throw Error(at + ": content parts of type '" + part["type"].get<std::string>() +
                        "' are not supported (only 'text')");
          if (!part.contains("text") || !part["text"].is_string())
            throw Error(at + ".text must be a string");
          if (k) joined += "\n";
          joined += part["text"].get<std::string>();
        }
        if (!takes_parts_) n["content"] = joined;
      } else if (!c.is_string() && !c.is_null()) {
        throw Error(where(i) + ".content must be a string, an array of parts or null");
      }
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      const jinja::Json& calls = m["tool_calls"];
      if (!calls.is_array()) throw Error(where(i) + ".tool_calls must be an array");
      for (size_t k = 0; k < calls.size(); ++k) {
        const std::string at = where(i) + ".tool_calls[" + std::to_string(k) + "]";
        if (!calls[k].is_object()) throw Error(at + " must be an object");
        if (!calls[k].contains("function")) continue;
        const jinja::Json& fn = calls[k]["function"];
        if (!fn.is_object()) throw Error(at + ".function must be an object");
        if (fn.contains("name") && !fn["name"].is_string())
          throw Error(at + ".function.name must be a string");
        // OpenAI clients send arguments as a JSON string; templates expect the object.
        if (fn.contains("arguments") && fn["arguments"].is_string()) {
          jinja::Json parsed = jinja::Json::parse(fn["arguments"].get<std::string>(), nullptr, false);
          if (!parsed.is_discarded() && parsed.is_object())
            n["tool_calls"][k]["function"]["arguments"] = std::move(parsed);
        }
      }
    }
    out.push_back(std::move(n));
  }
  return out;
}

jinja::Json ChatTemplate::variables(const ChatInputs& in) const {
  jinja::Json v = jinja::Json::object();
  v["messages"] = normalize(in.messages);
  v["tools"] = in.tools.is_null() ? jinja::Json() : in.tools;
  v["documents"] = nullptr;
  v["add_generation_prompt"] = in.add_generation_prompt;
  v["bos_token"] = bos_;
  v["eos_token"] = eos_;
  if (!in.extra.is_null()) {
    if (!in.extra.is_object()) throw Error("extra template variables must be an object");
    for (auto it = in.extra.begin(); it != in.extra.end(); ++it) v[it.key()] = it.value();
  }
  return v;
}

std::string ChatTemplate::apply(const ChatInputs& in, const jinja::Limits& limits) const {
  return tmpl_.render(variables(in), limits);
}

std::vector<TokenId> tokenize_prompt(const Tokenizer& tok, const std::string& prompt) {
  std::vector<TokenId> ids = tok.encode(prompt, true, true);
  const TokenId bos = tok.bos();
  // The template wrote BOS itself: keep one.
  if (tok.add_bos() && bos >= 0 && ids.size() >= 2 && ids[0] == bos && ids[1] == bos)
    ids.erase(ids.begin());
  // A vocabulary that appends EOS to every text must not end a prompt with it.
  if (tok.add_eos() && tok.eos() >= 0 && !ids.empty() && ids.back() == tok.eos()) ids.pop_back();
  return ids;
}

}  // namespace tf::chat
