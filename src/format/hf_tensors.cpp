// Hugging Face tensor names -> GGUF tensors, and reading their rows (with Llama's Q/K
// permutation) as floats.
#include <cstring>

#include "format/hf_internal.h"
#include "tensor/fp16.h"
#include "util/error.h"

namespace tf::hf {

namespace {

// The element a GGUF index reads after the permutation llama.cpp's converter applies to Llama
// Q/K: Hugging Face keeps each head's rotary pairs as (first half, second half) ("rotate
// half"), GGUF llama as adjacent pairs. Within a head of d rows, GGUF row 2j + i is HF row
// i * d/2 + j.
int64_t unpermute(int64_t r, int64_t n, int64_t heads) {
  const int64_t d = n / heads, h = r / d, k = r % d;
  return h * d + (k % 2) * (d / 2) + k / 2;
}

float load(const uint8_t* p, DType t) {
  uint16_t h;
  switch (t) {
    case DType::F16:
      std::memcpy(&h, p, 2);
      return fp16_to_f32(h);
    case DType::BF16:
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    default: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
  }
}

}  // namespace

int64_t TensorPlan::n_rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < dims.size(); ++i) r *= dims[i];
  return r;
}

void TensorPlan::read_row(int64_t row, float* out) const {
  const int64_t n = dims[0];
  if (!parts.empty()) {  // stacked experts: part e holds rows [e * per, (e + 1) * per)
    const int64_t per = n_rows() / int64_t(parts.size());
    TensorPlan one;
    one.dims = {n, per};
    one.src = parts[size_t(row / per)];
    one.read_row(row % per, out);
    return;
  }
  if (!src) {
    std::memcpy(out, values.data() + size_t(row * n), size_t(n) * sizeof(float));
    return;
  }
  const size_t es = src->type == DType::F32 ? 4 : 2;
  if (permute_heads > 0 && dims.size() == 1) {  // a bias: its elements are the "rows"
    for (int64_t k = 0; k < n; ++k)
      out[k] = load(src->data + size_t(unpermute(k, n, permute_heads)) * es, src->type);
    return;
  }
  const int64_t sr = permute_heads > 0 ? unpermute(row, n_rows(), permute_heads) : row;
  const uint8_t* p = src->data + size_t(sr) * size_t(n) * es;
  if (src->type == DType::F32) {
    std::memcpy(out, p, size_t(n) * 4);
    return;
  }
  for (int64_t k = 0; k < n; ++k) out[k] = load(p + size_t(k) * es, src->type);
}

namespace detail {

// One entry of the per-layer name table.
struct LayerTensor {
  const char* hf;    // after "model.layers.N."
  const char* gguf;  // after "blk.N."
};
constexpr LayerTensor kLayerTensors[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    // Mixtures of experts: the router, and qwen2moe's shared expert with its gate.
    {"mlp.gate.weight", "ffn_gate_inp.weight"},
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
    {"mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
    {"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"},
};

// Expert E's matrices, "<prefix>E.<suffix>": each is slice E of a stacked GGUF tensor.
struct ExpertTensor {
  const char* prefix;
  const char* suffix;
  const char* gguf;
};
constexpr ExpertTensor kExpertTensors[] = {
    {"mlp.experts.", "gate_proj.weight", "ffn_gate_exps.weight"},
    {"mlp.experts.", "up_proj.weight", "ffn_up_exps.weight"},
    {"mlp.experts.", "down_proj.weight", "ffn_down_exps.weight"},
    {"block_sparse_moe.experts.", "w1.weight", "ffn_gate_exps.weight"},  // Mixtral
    {"block_sparse_moe.experts.", "w3.weight", "ffn_up_exps.weight"},
    {"block_sparse_moe.experts.", "w2.weight", "ffn_down_exps.weight"},
};

// The number at the start of s (at most 6 digits) and the position after it, or -1.
std::pair<int64_t, size_t> leading_number(const std::string& s, size_t pos) {
  size_t end = pos;
  while (end < s.size() && end - pos < 6 && s[end] >= '0' && s[end] <= '9') ++end;
  if (end == pos) return {-1, pos};
  return {std::stoll(s.substr(pos, end - pos)), end};
}

// The GGUF name of a Hugging Face tensor, "" for one the model does not use (llama.cpp drops
// rotary caches the same way), or throws for a name it does not know.
std::string gguf_name(const std::string& name, int64_t n_layer, const std::string& what,
                      int64_t* expert) {
  *expert = -1;
  if (name == "model.embed_tokens.weight") return "token_embd.weight";
  if (name == "model.norm.weight") return "output_norm.weight";
  if (name == "lm_head.weight") return "output.weight";
  auto ends_with = [&](const char* s) {
    const size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  if (ends_with(".rotary_emb.inv_freq") || ends_with(".attention.masked_bias")) return "";
  const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) == 0) {
    size_t pos = prefix.size(), end = pos;
    while (end < name.size() && end - pos < 6 && name[end] >= '0' && name[end] <= '9') ++end;
    if (end > pos && end < name.size() && name[end] == '.') {
      const int64_t layer = std::stoll(name.substr(pos, end - pos));
      if (layer >= n_layer)
        throw Error(what + ": tensor '" + name + "' is for layer " + std::to_string(layer) +
                    " but config.json has " + std::to_string(n_layer) + " layers");
      const std::string rest = name.substr(end + 1);
      for (const LayerTensor& t : kLayerTensors)
        if (rest == t.hf) return "blk." + std::to_string(layer) + "." + t.gguf;
      for (const ExpertTensor& t : kExpertTensors) {
        const size_t pl = std::strlen(t.prefix);
        if (rest.compare(0, pl, t.prefix) != 0) continue;
        const auto [e, after] = leading_number(rest, pl);
        if (e >= 0 && after < rest.size() && rest[after] == '.' &&
            rest.compare(after + 1, std::string::npos, t.suffix) == 0) {
          *expert = e;
          return "blk." + std::to_string(layer) + "." + t.gguf;
        }
      }
    }
  }
  throw Error(what + ": tensor '" + name + "' is not one this architecture uses");
}

}  // namespace detail
}  // namespace tf::hf
