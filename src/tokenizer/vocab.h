// The validated, indexed vocabulary every tokenizer algorithm works on (internal).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace tf::tok {

enum class VocabType { kSpm, kBpe, kWpm };

struct TokenInfo {
  std::string text;
  float score = 0.0f;
  TokenAttr attr = TokenAttr::NORMAL;
  bool lstrip = false;  // special-token matching eats whitespace before it
  bool rstrip = false;  // ... and after it
};

// Open-addressing hash index from a key's hash to an entry number; the caller owns the
// keys and supplies the equality test. One flat array instead of a node per entry keeps
// building the maps of a 150k-token / 280k-merge vocabulary fast.
class HashIndex {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, 0);
    mask_ = cap - 1;
  }
  // Entry number of the first key with this hash that eq() accepts, or -1.
  template <typename Eq>
  int64_t find(size_t hash, Eq&& eq) const {
    if (slots_.empty()) return -1;
    const uint32_t tag = static_cast<uint32_t>(hash >> 32) | 1;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const uint64_t s = slots_[i];
      if (s == 0) return -1;
      if (static_cast<uint32_t>(s >> 32) == tag && eq(static_cast<uint32_t>(s) - 1))
        return static_cast<uint32_t>(s) - 1;
    }
  }
  // The caller checks for duplicates first; at most reserve()'s n entries.
  void insert(size_t hash, uint32_t entry) {
    const uint32_t tag = static_cast<uint32_t>(hash >> 32) | 1;
    size_t i = hash & mask_;
    while (slots_[i] != 0) i = (i + 1) & mask_;
    slots_[i] = (static_cast<uint64_t>(tag) << 32) | (entry + 1);
  }

 private:
  std::vector<uint64_t> slots_;  // (tag << 32) | (entry + 1); 0 = empty
  size_t mask_ = 0;
};

inline size_t hash_text(std::string_view s) {
  return std::hash<std::string_view>{}(s);
}
inline size_t hash_pair(std::string_view a, std::string_view b) {
  const size_t ha = hash_text(a), hb = hash_text(b);
  return ha ^ (hb + 0x9e3779b97f4a7c15ULL + (ha << 6) + (ha >> 2));
}

// Built in place and never moved: the maps hold views into `tokens` and `merge_text`.
struct Vocab {
  Vocab() = default;
  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  // Validates and indexes the metadata. Throws tf::Error.
  void build(VocabData&& data);

  VocabType type = VocabType::kSpm;
  std::string model_name;  // tokenizer.ggml.model
  std::string pre_name;    // tokenizer.ggml.pre, "default" when absent
  PreTypeInfo pre;
  std::unique_ptr<PreTokenizer> pretokenizer;  // BPE only

  std::vector<TokenInfo> tokens;
  HashIndex ids;                        // token text -> id
  std::vector<std::string> merge_text;  // "left right" lines, storage for merge_parts
  std::vector<std::pair<std::string_view, std::string_view>> merge_parts;  // usable merges
  std::vector<int> merge_rank_of;  // rank (line number) of each merge_parts entry
  HashIndex merges;                // (left, right) -> merge_parts entry

  TokenId bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1, mask = -1;
  TokenId fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  bool ignore_merges = false, clean_spaces = false;
  size_t max_token_len = 0;

  std::array<TokenId, 256> byte_tokens{};  // SPM byte fallback, -1 if the vocab lacks it
  std::vector<TokenId> special_tokens;     // control / user-defined / unknown, longest first
  std::vector<TokenId> eog;                // sorted
  std::vector<std::string> pieces;         // token_to_piece with render_special

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  bool valid(TokenId id) const { return id >= 0 && id < size(); }
  TokenId find(std::string_view text) const {
    return static_cast<TokenId>(
        ids.find(hash_text(text), [&](uint32_t id) { return tokens[id].text == text; }));
  }
  int merge_rank(std::string_view left, std::string_view right) const {
    const int64_t e = merges.find(hash_pair(left, right), [&](uint32_t i) {
      return merge_parts[i].first == left && merge_parts[i].second == right;
    });
    return e < 0 ? -1 : merge_rank_of[e];
  }
};

// Text fragments and special tokens, in order (special.cpp).
struct Fragment {
  TokenId token;  // >= 0: a special token; -1: raw text [offset, offset + length)
  size_t offset;
  size_t length;
};
std::vector<Fragment> split_special(const Vocab& v, std::string_view text, bool parse_special);

// The algorithms; each appends to `out`.
void spm_tokenize(const Vocab& v, std::string_view text, std::vector<TokenId>& out);
void bpe_tokenize(const Vocab& v, std::string_view text, std::vector<TokenId>& out);
void wpm_tokenize(const Vocab& v, std::string_view text, std::vector<TokenId>& out);

}  // namespace tf::tok
