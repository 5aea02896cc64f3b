// Byte-level BPE driven by merge ranks (GPT-2 style, llama.cpp's "BPE" tokenizer).
//
// The pre-tokenizer cuts the text into words already mapped into the byte-level alphabet.
// Each word starts as one symbol per character; the adjacent pair with the lowest merge
// rank is merged until no listed merge applies (ties: leftmost). A min-heap keeps this
// O(n log n) per word; stale entries are recognised by their length and skipped.
#include <queue>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace tf::tok {

namespace {

struct Symbol {
  int prev;
  int next;
  size_t offset;
  size_t len;
};

struct Candidate {
  int rank;
  int left;
  int right;
  size_t len;
};

struct Greater {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  }
};

}  // namespace

void bpe_tokenize(const Vocab& v, std::string_view text, std::vector<TokenId>& out) {
  std::vector<Symbol> syms;
  std::priority_queue<Candidate, std::vector<Candidate>, Greater> heap;

  for (const std::string& word : v.pretokenizer->split(text)) {
    if (v.ignore_merges) {
      const TokenId id = v.find(word);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    syms.clear();
    for (size_t off = 0; off < word.size();) {
      const size_t len =
          std::min(unicode::utf8_len(static_cast<uint8_t>(word[off])), word.size() - off);
      const int idx = static_cast<int>(syms.size());
      syms.push_back({idx - 1, off + len == word.size() ? -1 : idx + 1, off, len});
      off += len;
    }
    const std::string_view w = word;
    auto consider = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const int rank = v.merge_rank(w.substr(syms[left].offset, syms[left].len),
                                    w.substr(syms[right].offset, syms[right].len));
      if (rank < 0) return;
      heap.push({rank, left, right, syms[left].len + syms[right].len});
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
      const std::string_view piece = w.substr(syms[i].offset, syms[i].len);
      const TokenId id = v.find(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // A merge produced something that is not a token (or a character is missing): emit
      // whatever single bytes of it are tokens, as llama.cpp does.
      for (char b : piece) {
        const TokenId bid = v.find(std::string_view(&b, 1));
        if (bid >= 0) out.push_back(bid);
      }
    }
  }
}

}  // namespace tf::tok
