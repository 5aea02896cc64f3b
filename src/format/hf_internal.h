// Helpers shared by the Hugging Face importer's files (internal).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "format/gguf.h"
#include "format/hf_import.h"

namespace tf::hf::detail {

using nlohmann::json;

// dir/name parsed strictly (format/json_strict.h); nullopt when the file does not exist.
// Files over 64 MiB are refused (tokenizer.json of a 256k vocabulary is ~20 MiB).
std::optional<json> read_json(const std::string& dir, const std::string& name);

// config values, type- and range-checked; errors name the file and key.
std::optional<int64_t> get_int(const json& obj, const std::string& key, const std::string& what,
                               int64_t lo, int64_t hi);
std::optional<double> get_number(const json& obj, const std::string& key, const std::string& what);
bool get_bool(const json& obj, const std::string& key, const std::string& what, bool def);

// gguf::Value builders, typed as gguf-py writes each key.
gguf::Value u32(uint32_t v);
gguf::Value i32(int32_t v);
gguf::Value f32(float v);
gguf::Value boolean(bool v);
gguf::Value str(const std::string& s);
gguf::Value str_array(const std::vector<std::string>& v);
gguf::Value f32_array(const std::vector<float>& v);
gguf::Value i32_array(const std::vector<int32_t>& v);

// config.json -> the architecture's hyper-parameter keys (hf_config.cpp).
struct Hparams {
  std::string arch;  // GGUF architecture
  int64_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t n_vocab = 0;
  bool tied = false;
  bool permute_qk = false;        // llama: HF rotate-half rows -> GGUF interleaved pairs
  bool qkv_bias = false;          // qwen2 always; llama with attention_bias
  bool qk_norm = false;           // qwen3
  std::vector<float> rope_freqs;  // llama3 rope scaling factors (rope_freqs.weight), or empty
  // Mixture of experts (Qwen3-MoE, Qwen2-MoE, Mixtral): experts per layer (0: dense), their
  // feed-forward width, and qwen2moe's shared expert width (0: none).
  int64_t n_expert = 0, n_ff_exp = 0, n_ff_shexp = 0;
};
Hparams read_hparams(const json& config, const std::string& what, Metadata& kv);

}  // namespace tf::hf::detail
