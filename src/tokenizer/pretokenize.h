// Pre-tokenizers for byte-level BPE vocabularies: split text into words before merging.
//
// Each tokenizer.ggml.pre type names a list of regexes that are applied in turn, every one
// splitting the pieces the previous one produced (matches and the gaps between them both
// become pieces). To give llama.cpp's results, this reproduces how llama.cpp evaluates them:
//  * the GPT-2 and Llama-3 patterns use hand-written scanners (whose corner cases differ
//    slightly from a real regex engine, e.g. how a trailing space is split off);
//  * a pattern using \p{L} \p{N} \p{P} \p{S} \p{M} runs on a "collapsed" copy of the text in
//    which every non-ASCII codepoint is one byte naming its category (whitespace becomes \v),
//    with each \p{..} rewritten to that byte plus llama.cpp's ASCII members of the class;
//  * any other pattern runs on the codepoints with non-ASCII whitespace replaced by \v.
// The last two use PCRE2 (compiled once, JIT when available) with ECMAScript-like options:
// ASCII-only \s and a $ that matches only at the very end.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tf::tok {

// Regex sets (llama.cpp's LLAMA_VOCAB_PRE_TYPE_* that differ in their patterns).
enum class PreSet {
  kDefault,
  kLlama3,
  kDeepseekLlm,
  kDeepseek3,
  kDeepseekCoder,
  kFalcon,
  kStarcoder,
  kGpt2,
  kQwen2,
  kPoro,
  kViking,
  kTekken,
  kChameleon,
};

// What a tokenizer.ggml.pre name implies besides its regexes.
struct PreTypeInfo {
  PreSet set = PreSet::kDefault;
  bool ignore_merges = false;  // a word that is already a token is not merged
  bool add_bos = false;        // default for tokenizer.ggml.add_bos_token
  bool clean_spaces = true;    // detokenize removes spaces before punctuation
  bool no_bos = false;         // no default BOS id
};

// nullopt for a name llama.cpp does not know. An empty name means "default".
std::optional<PreTypeInfo> lookup_pre_type(std::string_view name);

class PreTokenizer {
 public:
  explicit PreTokenizer(PreSet set);  // throws tf::Error if a pattern fails to compile
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // The words of `text` as UTF-8 (invalid input bytes have become U+FFFD).
  std::vector<std::string> split_utf8(std::string_view text) const;
  // The same words mapped byte by byte into the GPT-2 byte-level alphabet, ready for BPE.
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Step;
  // Piece lengths, in codepoints, that partition cpts.
  std::vector<size_t> split_lengths(const std::vector<uint32_t>& cpts) const;
  std::vector<Step> steps_;
};

}  // namespace tf::tok
