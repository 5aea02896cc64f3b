// Incremental detokenization that only ever emits whole UTF-8 characters.
//
// Byte tokens can split a character over several tokens, so the bytes of an unfinished
// sequence wait in pending_. Bytes that can never become valid UTF-8 (a stray continuation
// byte, an invalid lead byte, a lead byte followed by a non-continuation) are replaced by
// U+FFFD right away, so the output is always valid UTF-8.
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace tf {

namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";

}  // namespace

std::string StreamDecoder::push(TokenId id) {
  pending_ += tok_.token_to_piece(id, render_special_);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int len = unicode::utf8_check(std::string_view(pending_).substr(i));
    if (len > 0) {
      out.append(pending_, i, len);
      i += len;
    } else if (len == 0) {
      break;  // incomplete: wait for more bytes
    } else {
      out += kReplacement;
      i += 1;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  // Whatever is left is an unfinished sequence: one replacement character for it (then
  // any bytes after a bad lead are looked at again on their own).
  size_t i = 0;
  while (i < pending_.size()) {
    const int len = unicode::utf8_check(std::string_view(pending_).substr(i));
    if (len > 0) {
      out.append(pending_, i, len);
      i += len;
      continue;
    }
    out += kReplacement;
    if (len == 0) break;  // a truncated sequence counts once
    i += 1;
  }
  pending_.clear();
  return out;
}

}  // namespace tf
