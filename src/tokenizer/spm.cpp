// SentencePiece-style BPE driven by token scores (llama.cpp's "SPM" tokenizer).
//
// The text (spaces already escaped to U+2581) starts as one symbol per UTF-8 character.
// Repeatedly, the adjacent pair whose concatenation is a token with the highest score is
// merged (ties: the leftmost pair). A max-heap of candidate pairs makes this O(n log n);
// entries made stale by an earlier merge are recognised by their length and skipped.
// Symbols that end up not being tokens fall back to byte tokens <0xXX>.
#include <queue>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace tf::tok {

namespace {

struct Symbol {
  int prev;
  int next;
  size_t offset;
  size_t len;  // 0 once merged into its left neighbour
};

struct Candidate {
  float score;
  int left;
  int right;
  size_t len;  // combined length when the candidate was made
};

struct Lower {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

}  // namespace

void spm_tokenize(const Vocab& v, std::string_view text, std::vector<TokenId>& out) {
  std::vector<Symbol> syms;
  syms.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const size_t len =
        std::min(unicode::utf8_len(static_cast<uint8_t>(text[off])), text.size() - off);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, off, len});
    off += len;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, Lower> heap;
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t len = syms[left].len + syms[right].len;
    const TokenId id = v.find(text.substr(syms[left].offset, len));
    if (id < 0) return;
    heap.push({v.tokens[id].score, left, right, len});
  };
  for (int i = 1; i < static_cast<int>(syms.size()); ++i) consider(i - 1, i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = syms[c.left];
    Symbol& r = syms[c.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }

  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
    const std::string_view piece = text.substr(syms[i].offset, syms[i].len);
    const TokenId id = v.find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // Byte fallback. A vocabulary without byte tokens (llama.cpp aborts there) gets one
    // unknown token for the whole character instead.
    bool all_bytes = true;
    for (unsigned char b : piece) all_bytes &= v.byte_tokens[b] >= 0;
    if (all_bytes) {
      for (unsigned char b : piece) out.push_back(v.byte_tokens[b]);
    } else if (v.unk >= 0) {
      out.push_back(v.unk);
    }
  }
}

}  // namespace tf::tok
