// Text <-> token ids, built from a GGUF file's tokenizer.ggml.* metadata.
//
// Supported vocab types: "llama" (SentencePiece-style BPE driven by scores, with byte
// fallback) and "gpt2" (byte-level BPE driven by merges, with a pre-tokenizer regex chosen by
// tokenizer.ggml.pre). The results must equal llama.cpp's token for token.
#pragma once

#include <cstdint>
#include <memory>
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

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from the file. Throws tf::Error for a missing or inconsistent
  // vocabulary, an unsupported model or pre-tokenizer type.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS (and append EOS) as the vocab's add_bos/add_eos flags say.
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
