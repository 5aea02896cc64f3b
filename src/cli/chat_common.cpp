#include "cli/chat_common.h"

#include <fstream>
#include <sstream>

#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

namespace tf::cli {

std::string read_file_bytes(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open " + what + " file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": cannot read " + what + " file");
  return ss.str();
}

jinja::Json read_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_file_bytes(path, what);
  try {
    return jinja::Json::parse(text);
  } catch (const jinja::Json::exception& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 3: ...".
    std::string msg = e.what();
    if (const size_t p = msg.find("] "); msg.rfind("[json.exception.", 0) == 0 && p != msg.npos)
      msg = msg.substr(p + 2);
    throw Error(path + ": invalid JSON in " + what + " file: " + msg);
  }
}

std::string read_template_file(const std::string& path, const std::string& variant) {
  const bool is_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  if (!is_json) return read_file_bytes(path, "chat template");
  const jinja::Json j = read_json_file(path, "chat template");
  if (!j.is_object() || !j.contains("chat_template"))
    throw Error(path + ": a .json chat template file must be an object with \"chat_template\"");
  const jinja::Json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  // transformers' list form: [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
  if (t.is_array() && !t.empty()) {
    std::string names;
    const jinja::Json* pick = nullptr;
    const std::string want = variant.empty() ? "default" : variant;
    for (const jinja::Json& e : t) {
      if (!e.is_object() || !e.contains("name") || !e["name"].is_string() ||
          !e.contains("template") || !e["template"].is_string())
        throw Error(path + ": each \"chat_template\" entry must have a string name and template");
      names += (names.empty() ? "" : ", ") + e["name"].get<std::string>();
      if (!pick && e["name"] == want) pick = &e;
    }
    if (!pick && variant.empty()) pick = &t[0];
    if (!pick) throw Error(path + ": no chat template named '" + variant + "' (has " + names + ")");
    return (*pick)["template"].get<std::string>();
  }
  throw Error(path + ": \"chat_template\" must be a string or a list of named templates");
}

ChosenTemplate choose_template(const TemplateChoice& c, const gguf::File* model,
                               const Tokenizer* tok) {
  std::string bos = "<s>", eos = "</s>";
  if (tok) {
    bos = tok->bos() >= 0 ? tok->token_text(tok->bos()) : "";
    eos = tok->eos() >= 0 ? tok->token_text(tok->eos()) : "";
  }
  if (c.bos) bos = *c.bos;
  if (c.eos) eos = *c.eos;
  if (!c.file.empty()) {
    std::string src = read_template_file(c.file, c.variant);
    return with_source(c.file, [&] {
      return ChosenTemplate{chat::ChatTemplate(std::move(src), bos, eos), c.file};
    });
  }
  if (!model || !tok) throw Error("give a model (-m) or a chat template file (--chat-template)");
  // The key ChatTemplate::from_model reads, to name it in errors.
  std::string key;
  if (!c.variant.empty() &&
      !model->get_string_or("tokenizer.chat_template." + c.variant, "").empty())
    key = "tokenizer.chat_template." + c.variant;
  else if (!model->get_string_or("tokenizer.chat_template", "").empty())
    key = "tokenizer.chat_template";
  const std::string origin =
      key.empty() ? "the default ChatML template" : model->path() + " (" + key + ")";
  return with_source(origin, [&] {
    chat::ChatTemplate t = chat::ChatTemplate::from_model(*model, *tok, c.variant);
    if (c.bos || c.eos) t = chat::ChatTemplate(t.source(), bos, eos);
    return ChosenTemplate{std::move(t), origin};
  });
}

std::string render(const ChosenTemplate& t, const chat::ChatInputs& in,
                   const std::string& messages_origin) {
  // Malformed messages are the messages' fault, not the template's: checked first.
  with_source(messages_origin, [&] { return t.tmpl.normalize(in.messages); });
  return with_source(t.origin, [&] { return t.tmpl.apply(in); });
}

}  // namespace tf::cli
