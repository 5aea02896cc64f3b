// tokenfab template: the prompt a chat template renders for a conversation, byte for byte
// (nothing added, not even a newline). Reads only a model's metadata and tokenizer.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/chat_common.h"
#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
struct TemplateArgs {
  std::string model, messages, tools;
  TemplateChoice choice;
  std::string bos, eos;
  CLI::Option* bos_opt = nullptr;
  CLI::Option* eos_opt = nullptr;
  std::vector<std::string> vars;
  bool no_generation_prompt = false;
};

// The messages file: an array of messages, or {"messages": [...], "tools": [...],
// "extra": {...}, "add_generation_prompt": bool} (tools, extra and the flag optional).
chat::ChatInputs read_conversation(const std::string& path) {
  const jinja::Json j = read_json_file(path, "messages");
  chat::ChatInputs in;
  if (j.is_array()) {
    in.messages = j;
    return in;
  }
  if (!j.is_object() || !j.contains("messages"))
    throw Error(path + ": expected an array of messages or an object with \"messages\"");
  in.messages = j["messages"];
  if (j.contains("tools")) in.tools = j["tools"];
  if (!in.tools.is_null() && !in.tools.is_array())
    throw Error(path + ": \"tools\" must be an array");
  if (j.contains("extra")) {
    if (!j["extra"].is_object()) throw Error(path + ": \"extra\" must be an object");
    in.extra = j["extra"];
  }
  if (j.contains("add_generation_prompt")) {
    if (!j["add_generation_prompt"].is_boolean())
      throw Error(path + ": \"add_generation_prompt\" must be true or false");
    in.add_generation_prompt = j["add_generation_prompt"].get<bool>();
  }
  return in;
}

// --tools FILE: an array of tool definitions (or an object holding one as "tools").
jinja::Json read_tools(const std::string& path) {
  jinja::Json j = read_json_file(path, "tools");
  if (j.is_object() && j.contains("tools")) j = j["tools"];
  if (!j.is_array() && !j.is_null()) throw Error(path + ": expected an array of tool definitions");
  return j;
}

// --var NAME=JSON
void set_var(const std::string& spec, jinja::Json& extra) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("--var wants NAME=JSON (e.g. --var enable_thinking=false), got '" + spec + "'");
  const std::string name = spec.substr(0, eq), value = spec.substr(eq + 1);
  jinja::Json v = jinja::Json::parse(value, nullptr, false);
  if (v.is_discarded())
    throw Error("--var " + name + ": '" + value + "' is not JSON (a string needs quotes: --var " +
                name + "='\"text\"')");
  extra[name] = std::move(v);
}

int render_template(TemplateArgs& a) {
  if (a.model.empty() && a.choice.file.empty())
    throw Error("template: give a model (-m MODEL) or a template file (--chat-template FILE)");
  if (a.bos_opt->count()) a.choice.bos = a.bos;
  if (a.eos_opt->count()) a.choice.eos = a.eos;
  std::shared_ptr<const gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
  if (!a.model.empty()) {
    tools::ModelSourceOptions src;  // mapped, or the metadata only: the weights are never touched
    src.use_mmap = true;
    src.metadata_only = true;
    file = tools::open_model(a.model, src);
    tok = Tokenizer::from_gguf(*file);
  }
  const ChosenTemplate t = choose_template(a.choice, file.get(), tok.get());
  chat::ChatInputs in = read_conversation(a.messages);
  if (!a.tools.empty()) in.tools = read_tools(a.tools);
  if (a.no_generation_prompt) in.add_generation_prompt = false;
  for (const std::string& v : a.vars) set_var(v, in.extra);
  const std::string prompt = render(t, in, a.messages);
  if (std::fwrite(prompt.data(), 1, prompt.size(), stdout) != prompt.size() ||
      std::fflush(stdout) != 0)
    throw Error("template: cannot write to stdout");
  return 0;
}
}  // namespace

Runner add_template(CLI::App& app) {
  auto a = std::make_shared<TemplateArgs>();
  CLI::App* c =
      app.add_subcommand("template", "print the prompt a chat template renders for messages");
  c->add_option("-m,--model", a->model,
                "GGUF file or Hugging Face directory whose template and BOS/EOS texts to use");
  c->add_option("--chat-template", a->choice.file,
                "template file (plain Jinja, or .json with \"chat_template\")");
  c->add_option("--messages", a->messages,
                "JSON file: an array of messages, or {\"messages\", \"tools\", \"extra\"}")
      ->required();
  c->add_option("--tools", a->tools, "JSON file with an array of tool definitions");
  c->add_flag("--no-generation-prompt", a->no_generation_prompt,
              "render without the assistant turn's opening");
  c->add_option("--var", a->vars, "extra template variable NAME=JSON (repeatable)")
      ->allow_extra_args(false);
  a->bos_opt = c->add_option("--bos", a->bos, "BOS token text (default: the model's, or <s>)");
  a->eos_opt = c->add_option("--eos", a->eos, "EOS token text (default: the model's, or </s>)");
  c->add_option("--template-variant", a->choice.variant,
                "named template, e.g. tool_use (tokenizer.chat_template.NAME)");
  return [a] { return render_template(*a); };
}

}  // namespace tf::cli
