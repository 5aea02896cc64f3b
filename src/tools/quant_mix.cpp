// The rules are llama.cpp's (llama_tensor_get_type in src/llama-quant.cpp) for the file types
// we can produce, restated from their behaviour. Mixture types exist because a few tensors
// hurt quality much more than the rest when squeezed: the output matrix, attn_v (small, and
// every head group reads it) and ffn_down in the first, last and every third layer.
#include "tools/quant_mix.h"

#include <cctype>
#include <cstdio>

#include "util/error.h"

namespace tf::tools {
namespace {

// llama_ftype values (llama.h); they end up in general.file_type.
enum FileType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
  kQ4_K_S = 14,
  kQ4_K_M = 15,
  kQ5_K_S = 16,
  kQ5_K_M = 17,
  kQ6_K = 18,
  kBF16 = 32,
};

const QuantMix kMixes[] = {
    {"f32", kF32, DType::F32},        {"f16", kF16, DType::F16},
    {"bf16", kBF16, DType::BF16},     {"q8_0", kQ8_0, DType::Q8_0},
    {"q4_0", kQ4_0, DType::Q4_0},     {"q4_1", kQ4_1, DType::Q4_1},
    {"q5_0", kQ5_0, DType::Q5_0},     {"q5_1", kQ5_1, DType::Q5_1},
    {"q4_k_s", kQ4_K_S, DType::Q4_K}, {"q4_k_m", kQ4_K_M, DType::Q4_K},
    {"q5_k_s", kQ5_K_S, DType::Q5_K}, {"q5_k_m", kQ5_K_M, DType::Q5_K},
    {"q6_k", kQ6_K, DType::Q6_K},
};

bool is_float_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

bool contains(const std::string& s, const char* part) {
  return s.find(part) != std::string::npos;
}

// Layer index from "blk.N....", or -1.
int layer_of(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

// The first and last eighth of the layers, and every third one in between.
bool use_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

DType mixed_type(const QuantMix& mix, const std::string& name, int64_t nx,
                 const ModelShape& shape) {
  DType t = mix.base;
  const uint32_t ft = mix.file_type;
  const int layer = layer_of(name);
  // A tied token_embd is also the output matrix, so it gets the output's treatment.
  if (name == "output.weight" || (!shape.has_output && name == "token_embd.weight")) {
    if (nx % dtype_info(t).block_size != 0) return DType::Q8_0;
    return t == DType::Q8_0 ? t : DType::Q6_K;
  }
  if (name == "token_embd.weight") return t;
  if (contains(name, "attn_v.weight")) {
    if ((ft == kQ4_K_M || ft == kQ5_K_M) && layer >= 0 && use_more_bits(layer, shape.n_attn_v))
      return DType::Q6_K;
    if (ft == kQ4_K_S && layer >= 0 && layer < 4) return DType::Q5_K;
  } else if (contains(name, "ffn_down")) {
    if ((ft == kQ4_K_M || ft == kQ5_K_M) && layer >= 0 && use_more_bits(layer, shape.n_layer))
      return DType::Q6_K;
    if (ft == kQ4_K_S && layer >= 0 && layer < shape.n_layer / 8) return DType::Q5_K;
  } else if (contains(name, "attn_qkv.weight")) {
    if (ft == kQ4_K_M) return DType::Q5_K;
    if (ft == kQ5_K_M) return DType::Q6_K;
  }
  return t;
}

}  // namespace

const QuantMix& parse_mix(const std::string& name) {
  std::string lower;
  for (char c : name) lower += char(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "q4_k") lower = "q4_k_s";  // llama.cpp's "Q4_K" alias
  if (lower == "q5_k") lower = "q5_k_s";
  for (const QuantMix& m : kMixes)
    if (lower == m.name) return m;
  throw Error("unknown quantization type '" + name + "' (valid: " + mix_names() + ")");
}

std::string mix_names() {
  std::string s;
  for (const QuantMix& m : kMixes) s += std::string(s.empty() ? "" : ", ") + m.name;
  return s + ", q4_k (= q4_k_s), q5_k (= q5_k_s)";
}

bool is_quantizable(const std::string& name, const std::vector<int64_t>& dims) {
  const bool ends_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
  return ends_weight && dims.size() >= 2 && !contains(name, "_norm.weight") &&
         !contains(name, "ffn_gate_inp.weight");
}

TypeChoice choose_type(const QuantMix& mix, const std::string& name,
                       const std::vector<int64_t>& dims, const ModelShape& shape, bool pure) {
  const int64_t nx = dims.empty() ? 0 : dims[0];
  TypeChoice c{mix.base, ""};
  if (!pure && !is_float_type(mix.base)) c.type = mixed_type(mix, name, nx, shape);
  const DType wanted = c.type;
  if (nx % dtype_info(wanted).block_size == 0) return c;
  // Rows must hold whole blocks. llama.cpp's substitutes for the K types keep the bits per
  // weight close; where it gives up (legacy types), F16 still holds any row.
  switch (wanted) {
    case DType::Q4_K:
      c.type = DType::Q5_0;
      break;
    case DType::Q5_K:
      c.type = DType::Q5_1;
      break;
    case DType::Q6_K:
      c.type = DType::Q8_0;
      break;
    default:
      c.type = DType::F16;
      break;
  }
  if (nx % dtype_info(c.type).block_size != 0) c.type = DType::F16;
  c.fallback = "rows of " + std::to_string(nx) + " are not a multiple of " + dtype_name(wanted) +
               "'s block size " + std::to_string(dtype_info(wanted).block_size) + ": using " +
               dtype_name(c.type);
  return c;
}

}  // namespace tf::tools
