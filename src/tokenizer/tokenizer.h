// Text <-> token ids, built from a GGUF file's tokenizer.ggml.* metadata.
//
// Supported vocab types: "llama" (SentencePiece-style BPE driven by scores, with byte
// fallback), "gpt2" (byte-level BPE driven by merges, with a pre-tokenizer regex chosen by
// tokenizer.ggml.pre) and "bert" (WordPiece). The results equal llama.cpp's token for token
// (checked against llama.cpp's test vectors and golden outputs in shared/).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tf {
namespace gguf {
class File;
}

using TokenId = int32_t;

// tokenizer.ggml.token_type values.
enum class TokenAttr : int32_t {
  UNDEFINED = 0,
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
};

// The tokenizer.ggml.* metadata in plain form: what from_gguf reads, and what tests or
// converters can fill in directly. Nothing here is trusted: from_vocab validates it.
struct VocabData {
  std::string model;  // tokenizer.ggml.model: "llama" (SPM), "gpt2" (byte-level BPE), "bert"
  std::string pre;    // tokenizer.ggml.pre; "" = "default"
  std::string name;   // general.name (a few models get per-token fixes by name, as in llama.cpp)
  std::vector<std::string> tokens;
  std::vector<float> scores;        // empty, or one per token
  std::vector<int32_t> types;       // empty, or one per token (TokenAttr values)
  std::vector<std::string> merges;  // "left right"; the rank is the index
  // Special token ids as stored (nullopt: key absent). Ids outside the vocabulary are
  // ignored, as llama.cpp does (e.g. 0xFFFFFFFF for "none").
  std::optional<int64_t> bos_id, eos_id, eot_id, eom_id, unk_id, sep_id, pad_id, mask_id;
  std::optional<int64_t> fim_pre_id, fim_suf_id, fim_mid_id, fim_pad_id, fim_rep_id, fim_sep_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from the file. Throws tf::Error for a missing or inconsistent
  // vocabulary, an unsupported model or pre-tokenizer type.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);
  // Reads only the metadata into plain form (no validation beyond value types).
  static VocabData read_gguf(const gguf::File& file);
  // Builds a tokenizer from plain metadata. Throws tf::Error as from_gguf does.
  static std::unique_ptr<Tokenizer> from_vocab(VocabData data);
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS (and append EOS) as the vocab's add_bos/add_eos flags say
  // ("bert" vocabs always get [CLS] ... [SEP]).
  // parse_special: text spelling a control / user-defined token becomes that token;
  // otherwise such text is tokenized as plain text (user-defined tokens are still matched,
  // as llama.cpp does).
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;

  // The bytes a token stands for. Control tokens give "" unless render_special.
  // May be an incomplete UTF-8 sequence (byte tokens); see StreamDecoder.
  virtual std::string token_to_piece(TokenId id, bool render_special = false) const = 0;

  // The raw vocabulary string of a token (e.g. "▁the", "<0x0A>", "Ġthe").
  virtual const std::string& token_text(TokenId id) const = 0;
  virtual TokenAttr token_attr(TokenId id) const = 0;

  virtual int32_t n_vocab() const = 0;
  virtual TokenId bos() const = 0;  // -1 if none
  virtual TokenId eos() const = 0;  // -1 if none
  virtual bool add_bos() const = 0;
  virtual bool add_eos() const = 0;
  // End of generation: EOS, EOT (tokenizer.ggml.eot_token_id) and other known end tokens.
  virtual bool is_eog(TokenId id) const = 0;

  virtual TokenId eot() const = 0;  // -1 if none (given or detected by text, as llama.cpp)
  virtual TokenId unk() const = 0;  // -1 if none
  virtual TokenId sep() const = 0;  // -1 if none
  virtual TokenId pad() const = 0;  // -1 if none
  virtual float token_score(TokenId id) const = 0;  // 0 for ids out of range
  // "llama" / "gpt2" / "bert", and the pre-tokenizer name ("default" when absent).
  virtual const std::string& model_type() const = 0;
  virtual const std::string& pre_type() const = 0;

  // Whole-sequence detokenization as llama.cpp's llama_detokenize: pieces concatenated, the
  // space an SPM vocab prefixed to the first word removed, and (for vocabs that ask for it)
  // spaces before punctuation / contractions cleaned up. remove_special drops a leading BOS
  // and trailing EOS that add_special would have added; render_special renders control
  // tokens' text.
  virtual std::string detokenize(const std::vector<TokenId>& ids, bool remove_special = false,
                                 bool render_special = false) const = 0;
};

// Turns a stream of token ids into text without ever emitting half a UTF-8 character:
// bytes of an incomplete sequence are held back until the sequence completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false)
      : tok_(tok), render_special_(render_special) {}
  // Returns the text that became complete with this token (possibly "").
  std::string push(TokenId id);
  // Whatever is still held back, with invalid / incomplete bytes replaced by U+FFFD.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool render_special_;
  std::string pending_;
};

}  // namespace tf
