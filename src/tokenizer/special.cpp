// Splitting text at special tokens before the vocabulary's own algorithm runs.
//
// As in llama.cpp, the special tokens are taken one at a time, longest first, and each one
// is cut out of every remaining text fragment wherever it occurs. So a longer token wins
// over a shorter one it contains, and a token never matches across a token cut out earlier.
#include <algorithm>

#include "tokenizer/vocab.h"

namespace tf::tok {

namespace {

// C isspace in the "C" locale.
bool is_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

}  // namespace

std::vector<Fragment> split_special(const Vocab& v, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});

  std::vector<Fragment> next;
  for (TokenId id : v.special_tokens) {
    const TokenInfo& tok = v.tokens[id];
    // Without parse_special only user-defined tokens are matched (HF tokenizers do the same
    // with added tokens that are not "special").
    if (!parse_special && tok.attr != TokenAttr::USER_DEFINED) continue;
    const std::string_view word = tok.text;
    if (text.find(word) == std::string_view::npos) continue;  // common case: absent

    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t cur = f.offset;
      const size_t end = f.offset + f.length;
      while (true) {
        const size_t hit = text.find(word, cur);
        if (hit == std::string_view::npos || hit + word.size() > end) break;
        size_t left_end = hit;
        if (tok.lstrip)
          while (left_end > cur && is_space(text[left_end - 1])) --left_end;
        if (left_end > cur) next.push_back({-1, cur, left_end - cur});
        next.push_back({id, 0, 0});
        cur = hit + word.size();
        if (tok.rstrip)
          while (cur < end && is_space(text[cur])) ++cur;
      }
      if (cur < end) next.push_back({-1, cur, end - cur});
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace tf::tok
