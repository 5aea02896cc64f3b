// What `tokenfab template` and `tokenfab chat` share: reading files, picking the chat template
// (a file given on the command line, or the model's), and naming the source in errors.
#pragma once

#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "util/error.h"

namespace tf {
namespace gguf {
class File;
}
class Tokenizer;
}  // namespace tf

namespace tf::cli {

// The whole file, byte for byte. Throws tf::Error "PATH: cannot open WHAT file".
std::string read_file_bytes(const std::string& path, const std::string& what);

// A JSON file (object keys kept in order, as templates print them). Throws tf::Error naming the
// file and the line and column of a syntax error.
jinja::Json read_json_file(const std::string& path, const std::string& what);

// The source of a --chat-template file: a plain template, or (a name ending in .json) a
// tokenizer_config.json-style object whose "chat_template" is a string or a list of
// {"name", "template"} (variant picks one by name; else "default", else the first).
std::string read_template_file(const std::string& path, const std::string& variant);

struct TemplateChoice {
  std::string file;                     // --chat-template FILE, or "" for the model's
  std::string variant;                  // --template-variant NAME
  std::optional<std::string> bos, eos;  // --bos / --eos: override the token texts
};

struct ChosenTemplate {
  chat::ChatTemplate tmpl;
  std::string origin;  // where it came from, for errors: the file, or the model's key
};

// The chat template to render with: the file's if one is given, else the model's (see
// ChatTemplate::from_model), else ChatML. bos/eos texts come from the tokenizer when there is
// one, else "<s>" / "</s>", unless overridden. Errors (a syntax error in the template
// included) are tf::Error naming where the template came from.
ChosenTemplate choose_template(const TemplateChoice& c, const gguf::File* model,
                               const Tokenizer* tok);

// ChatTemplate::apply, with errors naming the messages' origin (malformed messages) or the
// template's (syntax and runtime errors, raise_exception included).
std::string render(const ChosenTemplate& t, const chat::ChatInputs& in,
                   const std::string& messages_origin);

// Runs f, prefixing the message of a tf::Error it throws with "SOURCE: ".
template <class F>
auto with_source(const std::string& source, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
}

}  // namespace tf::cli
