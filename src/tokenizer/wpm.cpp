// WordPiece (BERT) as llama.cpp does it: GGUF stores word-initial pieces with a leading
// U+2581 and continuation pieces bare (the converter drops "##"), so each word is matched
// greedily, longest piece first, after prefixing U+2581. A word that cannot be covered
// becomes the unknown token.
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace tf::tok {

namespace {

bool is_cjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) ||
         (cp >= 0x2B920 && cp <= 0x2CEAF) ||  // sic: HF's BERT uses 0x2B920, not 0x2B820
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// Accents reduced to their base letter (first codepoint of NFD), lowercased, split at
// whitespace; punctuation, ASCII symbols and CJK ideographs become one-character words;
// NUL, U+FFFD and control characters are dropped.
std::vector<std::string> wpm_words(std::string_view text) {
  std::vector<std::string> words(1);
  for (uint32_t cp : unicode::decode_utf8(text)) {
    cp = unicode::nfd_first(cp);
    const uint16_t f = unicode::flags(cp);
    if (f & unicode::kWhitespace) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    if (cp == 0 || cp == unicode::kReplacementChar || (f & unicode::kControl)) continue;
    const std::string s = unicode::to_utf8(unicode::to_lower(cp));
    if ((f & unicode::kPunctuation) || (cp < 0x7F && (f & unicode::kSymbol)) || is_cjk(cp)) {
      if (!words.back().empty()) words.emplace_back();
      words.back() = s;
      words.emplace_back();
    } else {
      words.back() += s;
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace

void wpm_tokenize(const Vocab& v, std::string_view text, std::vector<TokenId>& out) {
  for (const std::string& word : wpm_words(text)) {
    if (word.empty()) continue;
    const std::string w = "\xE2\x96\x81" + word;
    const size_t n = w.size();
    const size_t start_size = out.size();
    for (size_t i = 0; i < n; ++i) {
      bool matched = false;
      for (size_t j = std::min(n, i + v.max_token_len + 1); j > i; --j) {
        const TokenId id = v.find(std::string_view(w).substr(i, j - i));
        if (id >= 0) {
          out.push_back(id);
          matched = true;
          i = j - 1;
          break;
        }
      }
      if (!matched) {
        out.resize(start_size);  // discard the partial word
        break;
      }
    }
    if (out.size() == start_size && v.unk >= 0) out.push_back(v.unk);
  }
}

}  // namespace tf::tok
