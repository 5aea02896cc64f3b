// The chat layer: OpenAI-style messages and tool definitions in, the model's prompt text out,
// rendered by the model's own Jinja chat template (see jinja.h).
//
// Where the template comes from: --chat-template FILE, else the GGUF's
// tokenizer.chat_template (or a named variant such as tokenizer.chat_template.tool_use), else
// the default, ChatML.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/jinja.h"

namespace tf {
namespace gguf {
class File;
}
class Tokenizer;
using TokenId = int32_t;
}  // namespace tf

namespace tf::chat {

// ChatML, used when a model carries no template of its own.
const std::string& default_template();

// What a template is rendered with.
struct ChatInputs {
  jinja::Json messages = jinja::Json::array();  // OpenAI chat messages
  jinja::Json tools;                  // null, or an array of OpenAI tool definitions
  bool add_generation_prompt = true;
  jinja::Json extra = jinja::Json::object();  // further variables: enable_thinking, ...
};

class ChatTemplate {
 public:
  // Parses the template (throws tf::Error naming line and column on a syntax error).
  // bos/eos are the texts of the model's BOS and EOS tokens ("" if it has none).
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token);

  // The template of a model file: `variant` selects tokenizer.chat_template.<variant> when
  // non-empty and present; else tokenizer.chat_template; else the default. bos/eos texts come
  // from the tokenizer.
  static ChatTemplate from_model(const gguf::File& file, const Tokenizer& tok,
                                 const std::string& variant = "");

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

  // True if the template handles OpenAI content parts (a list of {"type":"text",...}) itself;
  // otherwise normalize() joins the text parts into one string.
  bool takes_content_parts() const { return takes_parts_; }

  // OpenAI messages -> the messages the template sees, as vLLM and llama.cpp hand them over:
  // tool-call `function.arguments` given as a JSON string become the object it spells;
  // content parts are joined with "\n" (text parts only) unless takes_content_parts(); a
  // missing content stays missing, null stays null. Throws tf::Error on a malformed message
  // (not an object, no role, content of a wrong type), naming the message index.
  jinja::Json normalize(const jinja::Json& messages) const;

  // The variables of a render: messages (normalized), tools (null when absent),
  // add_generation_prompt, bos_token, eos_token, documents (null), and the extras.
  jinja::Json variables(const ChatInputs& in) const;

  // normalize + render. Throws tf::Error for template errors (raise_exception included).
  std::string apply(const ChatInputs& in, const jinja::Limits& limits = {}) const;

 private:
  std::string source_, bos_, eos_;
  jinja::Template tmpl_;
  bool takes_parts_ = false;
};

// The prompt's token ids: special tokens that the text spells become those tokens, and BOS is
// prepended as the vocabulary asks unless the rendered text already starts with it.
std::vector<TokenId> tokenize_prompt(const Tokenizer& tok, const std::string& prompt);

}  // namespace tf::chat
