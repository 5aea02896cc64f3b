// Tokenizer over a Vocab: special-token splitting, BOS/EOS, the per-type algorithm, and
// llama.cpp-compatible detokenization.
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "tokenizer/vocab.h"
#include "util/error.h"

namespace tf {

namespace {

using tok::Vocab;
using tok::VocabType;

class VocabTokenizer final : public Tokenizer {
 public:
  Vocab v;

  std::vector<TokenId> encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string token_to_piece(TokenId id, bool render_special) const override {
    if (!v.valid(id)) return {};
    const TokenAttr a = v.tokens[id].attr;
    if (!render_special && (a == TokenAttr::CONTROL || a == TokenAttr::UNKNOWN)) return {};
    return v.pieces[id];
  }
  const std::string& token_text(TokenId id) const override {
    static const std::string kEmpty;
    return v.valid(id) ? v.tokens[id].text : kEmpty;
  }
  TokenAttr token_attr(TokenId id) const override {
    return v.valid(id) ? v.tokens[id].attr : TokenAttr::UNDEFINED;
  }
  float token_score(TokenId id) const override { return v.valid(id) ? v.tokens[id].score : 0.0f; }
  int32_t n_vocab() const override { return v.size(); }
  TokenId bos() const override { return v.bos; }
  TokenId eos() const override { return v.eos; }
  TokenId eot() const override { return v.eot; }
  TokenId unk() const override { return v.unk; }
  TokenId sep() const override { return v.sep; }
  TokenId pad() const override { return v.pad; }
  bool add_bos() const override { return v.add_bos; }
  bool add_eos() const override { return v.add_eos; }
  bool is_eog(TokenId id) const override {
    return std::binary_search(v.eog.begin(), v.eog.end(), id);
  }
  const std::string& model_type() const override { return v.model_name; }
  const std::string& pre_type() const override { return v.pre_name; }
  std::string detokenize(const std::vector<TokenId>& ids, bool remove_special,
                         bool render_special) const override;
};

// U+2581 for every space: SentencePiece vocabularies spell spaces that way.
std::string escape_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 2);
  for (char c : s) {
    if (c == ' ')
      out += "\xE2\x96\x81";
    else
      out += c;
  }
  return out;
}

std::vector<TokenId> VocabTokenizer::encode(std::string_view text, bool add_special,
                                            bool parse_special) const {
  std::vector<TokenId> out;
  const std::vector<tok::Fragment> frags = tok::split_special(v, text, parse_special);
  switch (v.type) {
    case VocabType::kSpm: {
      if (add_special && v.add_bos && v.bos >= 0) out.push_back(v.bos);
      // The space prefix goes before the first text and before text following a special
      // token, as llama.cpp does.
      bool after_special = true;
      for (const tok::Fragment& f : frags) {
        if (f.token >= 0) {
          out.push_back(f.token);
          after_special = true;
          continue;
        }
        std::string s = (v.add_space_prefix && after_special) ? " " : "";
        s.append(text.substr(f.offset, f.length));
        tok::spm_tokenize(v, escape_spaces(s), out);
        after_special = false;
      }
      if (add_special && v.add_eos && v.eos >= 0) out.push_back(v.eos);
      break;
    }
    case VocabType::kBpe:
      if (add_special && v.add_bos && v.bos >= 0) out.push_back(v.bos);
      for (const tok::Fragment& f : frags) {
        if (f.token >= 0)
          out.push_back(f.token);
        else
          tok::bpe_tokenize(v, text.substr(f.offset, f.length), out);
      }
      if (add_special && v.add_eos && v.eos >= 0) out.push_back(v.eos);
      break;
    case VocabType::kWpm:
      // BERT always wraps the input in [CLS] ... [SEP] when asked for special tokens.
      if (add_special && v.bos >= 0) out.push_back(v.bos);
      for (const tok::Fragment& f : frags) {
        if (f.token >= 0)
          out.push_back(f.token);
        else
          tok::wpm_tokenize(v, text.substr(f.offset, f.length), out);
      }
      if (add_special && v.sep >= 0) out.push_back(v.sep);
      break;
  }
  return out;
}

// llama.cpp's clean_up_tokenization_spaces: " ?" " !" " ." " ," lose the space, a lone
// " ' " loses both spaces, and " 's" " 'm" " 're" " 've" lose the space.
std::string clean_spaces(std::string s) {
  auto pass = [&](auto&& keep_prev_space) {
    if (s.size() < 2) return;
    std::string out(1, s[0]);
    for (size_t i = 1; i < s.size(); ++i) {
      if (s[i - 1] == ' ' && !keep_prev_space(i)) out.pop_back();
      out += s[i];
    }
    s.swap(out);
  };
  pass([&](size_t i) {
    const char x = s[i];
    return !(x == '?' || x == '!' || x == '.' || x == ',');
  });
  // " ' " -> "'": the following space is dropped too.
  if (s.size() >= 2) {
    std::string out(1, s[0]);
    for (size_t i = 1; i < s.size(); ++i) {
      const char x = s[i];
      if (x == '\'' && i + 1 < s.size() && s[i - 1] == ' ' && s[i + 1] == ' ') {
        out.pop_back();
        s[++i] = '\0';  // so the next position no longer counts as a space
        out += x;
        continue;
      }
      out += x;
    }
    s.swap(out);
  }
  pass([&](size_t i) {
    if (s[i] != '\'' || i + 1 >= s.size()) return true;
    const char a = s[i + 1];
    if (a == 's' || a == 'm') return false;
    if (a == 't' || a == 'd' || i + 2 >= s.size()) return true;
    const char b = s[i + 2];
    return !((a == 'r' && b == 'e') || (a == 'v' && b == 'e'));
  });
  return s;
}

std::string VocabTokenizer::detokenize(const std::vector<TokenId>& ids, bool remove_special,
                                       bool render_special) const {
  size_t begin = 0, end = ids.size();
  bool strip_space = v.add_space_prefix;
  if (remove_special && v.add_bos && end > begin && ids[begin] == v.bos) {
    strip_space = false;
    ++begin;
  }
  if (remove_special && v.add_eos && end > begin && ids[end - 1] == v.eos) --end;
  std::string out;
  for (size_t i = begin; i < end; ++i) {
    std::string piece = token_to_piece(ids[i], render_special);
    // Only the very first piece loses the prefix space, whatever it renders as.
    if (strip_space && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    strip_space = false;
    out += piece;
  }
  return v.clean_spaces ? clean_spaces(std::move(out)) : out;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(VocabData data) {
  auto t = std::make_unique<VocabTokenizer>();
  t->v.build(std::move(data));
  return t;
}

}  // namespace tf
