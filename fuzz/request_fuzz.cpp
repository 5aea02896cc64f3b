// libFuzzer target for the request parsers: any bytes as a /v1/chat/completions,
// /v1/completions, /v1/responses or /v1/messages body must give a parsed request or an ApiError
// (a 4xx), never a crash or another exception. The first byte picks the endpoint (low 2 bits)
// and the tool-call format the chat path reads outputs in (the rest: tools, tool_choice and
// response_format compile grammars); the tokenizer is a small in-memory SentencePiece
// vocabulary with byte fallback, so that any text tokenizes.
#include <cstdint>
#include <cstdio>
#include <string>

#include "chat/chat_template.h"
#include "chat/tool_calls.h"
#include "server/messages_api.h"
#include "server/openai.h"
#include "server/responses_api.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

const tf::Tokenizer& tokenizer() {
  static const std::unique_ptr<tf::Tokenizer> tok = [] {
    tf::VocabData d;
    d.model = "llama";
    d.tokens = {"<unk>", "<s>", "</s>"};
    d.types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      d.tokens.push_back(name);
      d.types.push_back(6);
    }
    for (const char* piece : {"\xe2\x96\x81" "the", "\xe2\x96\x81" "a", "er", "in", "<|im_start|>", "<|im_end|>"}) {
      d.tokens.push_back(piece);
      d.types.push_back(piece[0] == '<' ? 3 : 1);
    }
    d.scores.assign(d.tokens.size(), 0.0f);
    d.bos_id = 1;
    d.eos_id = 2;
    return tf::Tokenizer::from_vocab(d);
  }();
  return *tok;
}

const tf::chat::ChatTemplate& chat_template() {
  static const tf::chat::ChatTemplate t(tf::chat::default_template(), "<s>", "</s>");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int endpoint = data[0] & 3;  // 0 completions, 1 chat, 2 responses, 3 messages
  tf::chat::OutputFormat fmt;
  fmt.tools = tf::chat::ToolFormat((data[0] >> 2) % 17);
  if (data[0] & 0x80) {
    fmt.think_open = "<think>";
    fmt.think_close = "</think>";
  }
  tf::server::Json body;
  try {
    body = tf::server::Json::parse(reinterpret_cast<const char*>(data) + 1,
                                   reinterpret_cast<const char*>(data) + size);
  } catch (const tf::server::Json::exception&) {
    return 0;  // the server answers 400 for bodies that are not JSON
  }
  try {
    tf::server::Json chat_body;
    if (endpoint == 2) chat_body = tf::server::responses_to_chat(body);
    if (endpoint == 3) chat_body = tf::server::messages_to_chat(body);
    const tf::server::ApiRequest r =
        endpoint == 0 ? tf::server::parse_completion(body, tokenizer(), 256)
                      : tf::server::parse_chat(endpoint == 1 ? body : chat_body, chat_template(), fmt,
                                               tokenizer(), 256);
    for (const auto& g : r.gens)
      if (g.prompt.empty() || int64_t(g.prompt.size()) >= 256) std::abort();  // never truncated, never empty
  } catch (const tf::server::ApiError& e) {
    if (e.status < 400 || e.status >= 500) std::abort();
  }
  return 0;
}
