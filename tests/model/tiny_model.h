// Builds small random-weight models as in-memory GGUF files, for tests of the forward pass on
// features the real test models lack (qwen2 biases, qwen3 QK-norm, NeoX RoPE, rope_freqs...).
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "tensor/quants.h"

namespace tf::test {

struct TinySpec {
  std::string arch = "llama";
  int n_embd = 32, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 48, n_vocab = 40;
  int head_dim = 0;  // 0: n_embd / n_head
  bool tied = false;
  bool rope_freqs = false;
  DType wtype = DType::F32;
  float rope_base = 10000.f;
  uint32_t seed = 1;
  // Mixture of experts (qwen3moe, or llama with experts): 0 = dense.
  int n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
  int n_ff_shexp = 0;  // qwen2moe's shared expert (0: none)
  bool expert_norm = true;
  // gemma2/3 and phi3: the sliding window (0: the file says nothing; gemma's default applies),
  // soft-caps (gemma2), linear RoPE scaling (rope.scaling.factor; 0: none).
  int n_swa = 0;
  float attn_softcap = 0.f, final_softcap = 0.f;
  float rope_linear = 0.f;
  // phi3 longrope: rope_factors_long/short with rope.scaling.original_context_length (0: none)
  // and rope.scaling.attn_factor.
  int rope_orig_ctx = 0;
  float rope_attn_factor = 1.f;
  // Last changes to the metadata (tests of bad values).
  std::function<void(gguf::Writer&)> edit;
};

inline bool is_gemma(const std::string& arch) {
  return arch.rfind("gemma", 0) == 0;
}

// Float values of every tensor, by name, as the test reference sees them (after the
// quantize/dequantize round trip when wtype is quantized).
using TensorMap = std::map<std::string, std::vector<float>>;

inline std::vector<uint8_t> build_tiny_model(const TinySpec& s, TensorMap* values) {
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int hd = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
  gguf::Writer w;
  const std::string a = s.arch + ".";
  w.set_string("general.architecture", s.arch);
  w.set_u32(a + "embedding_length", s.n_embd);
  w.set_u32(a + "block_count", s.n_layer);
  w.set_u32(a + "feed_forward_length", s.n_ff);
  w.set_u32(a + "attention.head_count", s.n_head);
  w.set_u32(a + "attention.head_count_kv", s.n_head_kv);
  w.set_u32(a + "context_length", 256);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32(a + "rope.freq_base", s.rope_base);
  if (s.n_expert) {
    w.set_u32(a + "expert_count", s.n_expert);
    w.set_u32(a + "expert_used_count", s.n_expert_used);
    w.set_u32(a + "expert_feed_forward_length", s.n_ff_exp);
    w.set_bool(a + "expert_weights_norm", s.expert_norm);
    if (s.n_ff_shexp) w.set_u32(a + "expert_shared_feed_forward_length", s.n_ff_shexp);
  }
  if (s.n_swa) w.set_u32(a + "attention.sliding_window", s.n_swa);
  if (s.attn_softcap > 0) w.set_f32(a + "attn_logit_softcapping", s.attn_softcap);
  if (s.final_softcap > 0) w.set_f32(a + "final_logit_softcapping", s.final_softcap);
  if (s.rope_linear > 0) {
    w.set_string(a + "rope.scaling.type", "linear");
    w.set_f32(a + "rope.scaling.factor", s.rope_linear);
  }
  if (s.rope_orig_ctx) {
    w.set_u32(a + "rope.scaling.original_context_length", s.rope_orig_ctx);
    w.set_f32(a + "rope.scaling.attn_factor", s.rope_attn_factor);
  }
  if (s.head_dim) {
    w.set_u32(a + "attention.key_length", hd);
    w.set_u32(a + "attention.value_length", hd);
  }
  if (s.edit) s.edit(w);
  auto add = [&](const std::string& name, std::vector<int64_t> dims, float scale, float offset,
                 bool matrix) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = offset + scale * nd(rng);
    const DType t = matrix ? s.wtype : DType::F32;
    std::vector<uint8_t> bytes(row_bytes(t, dims[0]) * size_t(n / dims[0]));
    for (int64_t r = 0; r < n / dims[0]; ++r)
      quantize_row(t, v.data() + r * dims[0], bytes.data() + r * row_bytes(t, dims[0]), dims[0]);
    for (int64_t r = 0; r < n / dims[0]; ++r)  // the reference sees what the file holds
      dequantize_row(t, bytes.data() + r * row_bytes(t, dims[0]), v.data() + r * dims[0], dims[0]);
    w.add_tensor(name, t, dims, bytes.data(), bytes.size());
    if (values) (*values)[name] = v;
  };
  const float ws = 1.0f / std::sqrt(float(s.n_embd));
  add("token_embd.weight", {s.n_embd, s.n_vocab}, 1.0f, 0.f, true);
  add("output_norm.weight", {s.n_embd}, 0.1f, 1.f, false);
  if (!s.tied) add("output.weight", {s.n_embd, s.n_vocab}, ws, 0.f, true);
  if (s.rope_freqs) {
    std::vector<float> f(size_t(hd / 2));
    for (size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + float(i % 3);
    w.add_tensor("rope_freqs.weight", DType::F32, {hd / 2}, f.data(), f.size() * 4);
    if (values) (*values)["rope_freqs.weight"] = f;
  }
  if (s.rope_orig_ctx) {  // phi3's two sets of per-pair divisors
    for (const char* name : {"rope_factors_long.weight", "rope_factors_short.weight"}) {
      std::vector<float> f(size_t(hd / 2));
      for (size_t i = 0; i < f.size(); ++i)
        f[i] = name[13] == 'l' ? 1.0f + 0.5f * float(i) : 1.0f + 0.25f * float(i % 2);
      w.add_tensor(name, DType::F32, {hd / 2}, f.data(), f.size() * 4);
      if (values) (*values)[name] = f;
    }
  }
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.n_embd}, 0.1f, 1.f, false);
    if (s.arch == "phi3") {  // one fused product: Q rows, then K, then V
      add(p + "attn_qkv.weight", {s.n_embd, (s.n_head + 2 * s.n_head_kv) * hd}, ws, 0.f, true);
    } else {
      add(p + "attn_q.weight", {s.n_embd, s.n_head * hd}, ws, 0.f, true);
      add(p + "attn_k.weight", {s.n_embd, s.n_head_kv * hd}, ws, 0.f, true);
      add(p + "attn_v.weight", {s.n_embd, s.n_head_kv * hd}, ws, 0.f, true);
    }
    add(p + "attn_output.weight", {s.n_head * hd, s.n_embd}, ws, 0.f, true);
    if (s.arch == "gemma2" || s.arch == "gemma3") {
      add(p + "post_attention_norm.weight", {s.n_embd}, 0.1f, 1.f, false);
      add(p + "post_ffw_norm.weight", {s.n_embd}, 0.1f, 1.f, false);
    }
    if (s.arch == "qwen2" || s.arch == "qwen2moe") {
      add(p + "attn_q.bias", {s.n_head * hd}, 0.1f, 0.f, false);
      add(p + "attn_k.bias", {s.n_head_kv * hd}, 0.1f, 0.f, false);
      add(p + "attn_v.bias", {s.n_head_kv * hd}, 0.1f, 0.f, false);
    }
    if (s.arch == "qwen3" || s.arch == "qwen3moe" || s.arch == "gemma3") {
      add(p + "attn_q_norm.weight", {hd}, 0.1f, 1.f, false);
      add(p + "attn_k_norm.weight", {hd}, 0.1f, 1.f, false);
    }
    add(p + "ffn_norm.weight", {s.n_embd}, 0.1f, 1.f, false);
    if (s.n_expert) {
      // A router spread wide enough that no two experts tie for the last place.
      add(p + "ffn_gate_inp.weight", {s.n_embd, s.n_expert}, 4 * ws, 0.f, false);
      add(p + "ffn_gate_exps.weight", {s.n_embd, s.n_ff_exp, s.n_expert}, ws, 0.f, true);
      add(p + "ffn_up_exps.weight", {s.n_embd, s.n_ff_exp, s.n_expert}, ws, 0.f, true);
      add(p + "ffn_down_exps.weight", {s.n_ff_exp, s.n_embd, s.n_expert},
          1.0f / std::sqrt(float(s.n_ff_exp)), 0.f, true);
      if (s.n_ff_shexp) {
        add(p + "ffn_gate_inp_shexp.weight", {s.n_embd}, 4 * ws, 0.f, false);
        add(p + "ffn_gate_shexp.weight", {s.n_embd, s.n_ff_shexp}, ws, 0.f, true);
        add(p + "ffn_up_shexp.weight", {s.n_embd, s.n_ff_shexp}, ws, 0.f, true);
        add(p + "ffn_down_shexp.weight", {s.n_ff_shexp, s.n_embd},
            1.0f / std::sqrt(float(s.n_ff_shexp)), 0.f, true);
      }
      continue;
    }
    if (s.arch == "phi3") {  // gate rows, then up rows
      add(p + "ffn_up.weight", {s.n_embd, 2 * s.n_ff}, ws, 0.f, true);
    } else {
      add(p + "ffn_gate.weight", {s.n_embd, s.n_ff}, ws, 0.f, true);
      add(p + "ffn_up.weight", {s.n_embd, s.n_ff}, ws, 0.f, true);
    }
    add(p + "ffn_down.weight", {s.n_ff, s.n_embd}, 1.0f / std::sqrt(float(s.n_ff)), 0.f, true);
  }
  return w.to_bytes();
}

}  // namespace tf::test
