// Reading tokenizer.ggml.* metadata from a GGUF file into VocabData.
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace tf {

namespace {

// An integer key, or nullopt when absent. Values that do not fit int64 come back as -1 so
// that they are ignored like any other out-of-range id.
std::optional<int64_t> opt_int(const gguf::File& f, std::string_view key) {
  const gguf::Value* v = f.find(key);
  if (!v) return std::nullopt;
  if (!v->is_integer())
    throw Error(f.path() + ": " + std::string(key) + ": expected an integer token id, got " +
                gguf::value_type_name(v->type));
  try {
    return v->as_i64();
  } catch (const Error&) {
    return -1;
  }
}

std::optional<bool> opt_bool(const gguf::File& f, std::string_view key) {
  if (!f.has(key)) return std::nullopt;
  return f.get_bool_or(key, false);
}

}  // namespace

VocabData Tokenizer::read_gguf(const gguf::File& f) {
  VocabData d;
  d.model = f.get_string_or("tokenizer.ggml.model", "");
  d.pre = f.get_string_or("tokenizer.ggml.pre", "");
  d.name = f.get_string_or("general.name", "");
  if (d.model.empty())
    throw Error(f.path() + ": no tokenizer.ggml.model: the file has no vocabulary");
  if (!f.has("tokenizer.ggml.tokens"))
    throw Error(f.path() + ": no tokenizer.ggml.tokens: the file has no vocabulary");
  d.tokens = f.get_string_array("tokenizer.ggml.tokens");
  d.scores = f.get_float_array("tokenizer.ggml.scores");
  for (int64_t t : f.get_int_array("tokenizer.ggml.token_type"))
    d.types.push_back(t >= 0 && t <= 6 ? static_cast<int32_t>(t) : 0);
  d.merges = f.get_string_array("tokenizer.ggml.merges");

  d.bos_id = opt_int(f, "tokenizer.ggml.bos_token_id");
  d.eos_id = opt_int(f, "tokenizer.ggml.eos_token_id");
  d.eot_id = opt_int(f, "tokenizer.ggml.eot_token_id");
  d.eom_id = opt_int(f, "tokenizer.ggml.eom_token_id");
  d.unk_id = opt_int(f, "tokenizer.ggml.unknown_token_id");
  d.sep_id = opt_int(f, "tokenizer.ggml.seperator_token_id");  // sic, the GGUF key
  d.pad_id = opt_int(f, "tokenizer.ggml.padding_token_id");
  d.mask_id = opt_int(f, "tokenizer.ggml.mask_token_id");
  d.fim_pre_id = opt_int(f, "tokenizer.ggml.fim_pre_token_id");
  d.fim_suf_id = opt_int(f, "tokenizer.ggml.fim_suf_token_id");
  d.fim_mid_id = opt_int(f, "tokenizer.ggml.fim_mid_token_id");
  d.fim_pad_id = opt_int(f, "tokenizer.ggml.fim_pad_token_id");
  d.fim_rep_id = opt_int(f, "tokenizer.ggml.fim_rep_token_id");
  d.fim_sep_id = opt_int(f, "tokenizer.ggml.fim_sep_token_id");
  // Older files name the FIM ids differently; like llama.cpp, these override when present
  // with a usable value.
  auto deprecated = [&](std::optional<int64_t>& slot, std::string_view key) {
    auto v = opt_int(f, key);
    if (v && *v >= 0 && *v < static_cast<int64_t>(d.tokens.size())) slot = v;
  };
  deprecated(d.fim_pre_id, "tokenizer.ggml.prefix_token_id");
  deprecated(d.fim_suf_id, "tokenizer.ggml.suffix_token_id");
  deprecated(d.fim_mid_id, "tokenizer.ggml.middle_token_id");

  d.add_bos = opt_bool(f, "tokenizer.ggml.add_bos_token");
  d.add_eos = opt_bool(f, "tokenizer.ggml.add_eos_token");
  d.add_space_prefix = opt_bool(f, "tokenizer.ggml.add_space_prefix");
  return d;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& file) {
  VocabData d = read_gguf(file);
  try {
    return from_vocab(std::move(d));
  } catch (const Error& e) {
    throw Error(file.path() + ": " + e.what());
  }
}

}  // namespace tf
