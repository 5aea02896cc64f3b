// Hugging Face model directories (config.json, *.safetensors, tokenizer.json, ...) seen as the
// GGUF file llama.cpp's convert_hf_to_gguf.py would write from them: the same metadata keys
// and tensor names, Llama's Q/K rows permuted into GGUF's RoPE order, the tokenizer as
// tokenizer.ggml.* keys. The result is a plan, not bytes: metadata plus, for every tensor, where
// its rows come from. tools/model_source.h writes it to a file (`tokenfab convert`) or into
// memory (`-m DIR`), converting each row to its output type as it goes, so every GGUF check
// and kernel applies to imported models unchanged.
//
// Supported: LlamaForCausalLM / MistralForCausalLM (arch llama), Qwen2ForCausalLM (qwen2),
// Qwen3ForCausalLM (qwen3); F32, F16 and BF16 weights; tokenizers that are byte-level BPE with
// a known pre-tokenizer (Llama 3, Qwen 2/3, GPT-2) or Llama-style BPE with byte fallback.
// Anything else is a tf::Error naming what is not supported.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "format/gguf.h"
#include "format/safetensors.h"

namespace tf::hf {

using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

// Output type of the matrices. 1-D tensors (norms, biases) are always F32, as llama.cpp's
// converter writes them. kAuto keeps each matrix's source type (lossless).
enum class OutType { kAuto, kF32, kF16, kBF16 };

// One GGUF tensor and where its values come from.
struct TensorPlan {
  std::string name;           // GGUF name, e.g. "blk.0.attn_q.weight"
  std::vector<int64_t> dims;  // GGUF order: dims[0] is the row (innermost)
  DType type = DType::F32;    // float type under the requested OutType
  std::string source;         // Hugging Face name ("" for generated tensors)
  const safetensors::Tensor* src = nullptr;
  std::vector<float> values;  // generated tensors (rope_freqs.weight)
  // Stacked experts: the experts' tensors in order (src is the first), each a slice of rows.
  std::vector<const safetensors::Tensor*> parts;
  // > 0: the rows (or, for a 1-D bias, the elements) are permuted from Hugging Face's
  // rotate-half RoPE layout to the interleaved pairs GGUF llama uses, in this many heads.
  int64_t permute_heads = 0;

  int64_t n_rows() const;
  // Row `row` (dims[0] floats). Thread-safe: reads only.
  void read_row(int64_t row, float* out) const;
};

struct Import {
  std::string dir;
  std::string arch;  // "llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe"
  Metadata metadata;
  std::vector<TensorPlan> tensors;
  safetensors::ShardSet weights;  // owns the bytes the plans point into
};

// Reads and validates a model directory. Throws tf::Error.
std::unique_ptr<Import> import_dir(const std::string& dir, OutType out = OutType::kAuto);

// The tokenizer.ggml.* keys (and tokenizer.chat_template) from dir/tokenizer.json and, when
// present, tokenizer_config.json, special_tokens_map.json, generation_config.json. `config`
// is config.json's object (vocab_size, special token ids); null when there is none. `arch`
// is the GGUF architecture (llama reads add_prefix_space). Throws tf::Error.
Metadata import_tokenizer(const std::string& dir, const nlohmann::json& config,
                          const std::string& arch);

// Whether `path` is a directory holding config.json (what -m DIR expects).
bool is_model_dir(const std::string& path);

}  // namespace tf::hf
