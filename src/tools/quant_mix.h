// Which type each tensor of a model gets when it is quantized to a given "file type", following
// the conventions of llama.cpp's llama-quantize, so that `tokenfab quantize m.gguf out q4_k_m`
// gives the same tensor types as `llama-quantize m.gguf out Q4_K_M` (where both can quantize).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace tf::tools {

// A target of `quantize` / `synth`: a base type plus the rules that give some tensors more bits.
struct QuantMix {
  const char* name;    // as typed on the command line: "q4_k_m"
  uint32_t file_type;  // llama_ftype, stored as general.file_type (e.g. 15 = MOSTLY_Q4_K_M)
  DType base;          // type of the tensors no rule singles out
};

// Parses a target name (case-insensitive): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1,
// q4_k (= q4_k_s), q4_k_m, q5_k (= q5_k_s), q5_k_m, q6_k. Throws tf::Error listing the
// valid names for anything else.
const QuantMix& parse_mix(const std::string& name);
std::string mix_names();  // "f32, f16, ..." for help texts and errors

// What the rules need to know about the model as a whole.
struct ModelShape {
  int64_t n_layer = 0;      // block_count
  int64_t n_attn_v = 0;     // number of attn_v tensors (llama.cpp counts these separately)
  bool has_output = false;  // false: token_embd doubles as the output matrix (tied)
};

// Whether llama.cpp would quantize this tensor at all: 2-D (or higher) weights, except norms
// and a few special matrices; 1-D tensors (norms, biases) keep their type.
bool is_quantizable(const std::string& name, const std::vector<int64_t>& dims);

struct TypeChoice {
  DType type;
  std::string fallback;  // non-empty when the row length forced another type: the reason
};

// The type of one quantizable tensor under `mix`. `pure` disables the mixing rules (every
// tensor gets the base type, as llama-quantize --pure); the row-length fallback still applies.
TypeChoice choose_type(const QuantMix& mix, const std::string& name,
                       const std::vector<int64_t>& dims, const ModelShape& shape, bool pure);

}  // namespace tf::tools
