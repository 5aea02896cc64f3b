// Hyper-parameters of a decoder-only transformer, read and checked from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

namespace tf {
namespace gguf {
class File;
}

enum class Arch { LLAMA, QWEN2, QWEN3, QWEN2MOE, QWEN3MOE, GEMMA, GEMMA2, GEMMA3, PHI3, DEEPSEEK2 };

// The feed-forward activation: SwiGLU (silu(gate) * up) or GeGLU with the tanh approximation
// of GELU (gemma).
enum class FfnAct { SILU, GELU };

struct ModelConfig {
  Arch arch = Arch::LLAMA;
  std::string arch_name;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;  // per head, for Q and K and V
  int64_t n_ff = 0;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  // RoPE
  int n_rot = 0;
  bool rope_neox = false;
  float rope_freq_base = 10000.f;
  float rope_freq_scale = 1.f;
  // YaRN (rope.scaling.type = yarn): ext_factor 1 mixes interpolated and extrapolated angles
  // between the correction dimensions of n_ctx_orig (beta_fast, beta_slow); the rotation is
  // scaled by rope_attn_factor * (1 + 0.1 ln(1 / freq_scale)), as ggml's rope does.
  float rope_ext_factor = 0.f;
  float rope_attn_factor = 1.f;
  int64_t rope_n_ctx_orig = 0;  // rope.scaling.original_context_length (default: training)
  float yarn_beta_fast = 32.f, yarn_beta_slow = 1.f;
  float yarn_log_mul = 0.f;  // deepseek2: rope.scaling.yarn_log_multiplier
  // Architecture features
  bool qkv_bias = false;  // qwen2
  bool qk_norm = false;   // qwen3
  // Mixture of experts (qwen3moe; llama with experts, as Mixtral): the feed-forward block is
  // n_expert experts of width n_ff_exp, of which each token uses the n_expert_used with the
  // highest router probabilities (softmax over all), weighted by those probabilities,
  // renormalized over the chosen ones when expert_weights_norm. n_expert == 0: dense.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;
  bool expert_weights_norm = false;
  // qwen2moe: a shared expert of this width that every token uses, scaled by a sigmoid gate
  // (0: none).
  int64_t n_ff_shexp = 0;
  // Gemma: token embeddings times sqrt(n_embd); GeGLU; gemma2/3 normalize each block's output
  // too (attn_post_norm, ffn_post_norm) before adding it to the residual stream.
  bool embd_scale = false;
  FfnAct ffn_act = FfnAct::SILU;
  bool post_norms = false;
  // Attention scores are q.k * attn_scale (1/sqrt(head_dim) unless the model says otherwise),
  // then, with soft-capping (gemma2), cap * tanh(score / cap); the logits likewise with
  // final_softcap. 0: no cap.
  float attn_scale = 0.f;
  float attn_softcap = 0.f;
  float final_softcap = 0.f;
  // Sliding-window attention: a token on a sliding layer sees only the last n_swa positions
  // (itself included). swa_pattern 1: every layer slides (phi3); p > 1: layer i slides unless
  // i % p == p - 1 (gemma2: 2, gemma3: 6, whose global layers come last in each group).
  int64_t n_swa = 0;
  int swa_pattern = 0;
  // RoPE of the sliding layers, where it differs (gemma3: base 10000, unscaled).
  float rope_freq_base_swa = 0.f;
  float rope_freq_scale_swa = 1.f;
  // Phi-3 "longrope": per-pair frequency divisors for contexts up to rope_n_ctx_orig
  // (rope_factors_short) and beyond (rope_factors_long), with rope_attn_factor scaling the
  // rotation (so q and k alike, the scores by its square).

  bool is_swa_layer(int64_t il) const {
    if (n_swa <= 0 || swa_pattern <= 0) return false;
    return swa_pattern == 1 || il % swa_pattern < swa_pattern - 1;
  }
  // deepseek2 routing: sigmoid gating (else softmax), the routed weights' scale, and group-
  // limited selection (n_expert_group groups, the best n_group_used kept; 1/1 = off).
  bool expert_gating_sigmoid = false;
  float expert_weights_scale = 1.f;
  int64_t n_expert_group = 1, n_group_used = 1;
  int64_t n_lead_dense = 0;  // deepseek2: the first layers have a dense feed-forward block

  // deepseek2 multi-head latent attention: head_dim = qk_nope + qk_rope (n_rot) for Q and K,
  // v_head_dim for V; K and V come from a latent of kv_lora_rank per position (plus the shared
  // roped key of n_rot), which is all the KV cache holds. q_lora_rank 0: a plain attn_q.
  int64_t q_lora_rank = 0, kv_lora_rank = 0, v_head_dim = 0;
  bool mla() const { return kv_lora_rank > 0; }
  int64_t qk_nope() const { return head_dim - n_rot; }
  // The KV cache's row per position and layer, and whether it holds values besides keys.
  int64_t kv_row_dim() const { return mla() ? kv_lora_rank + n_rot : kv_dim(); }
  bool kv_keys_only() const { return mla(); }
  int64_t attn_out_dim() const { return n_head * (mla() ? v_head_dim : head_dim); }

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }

  // Throws tf::Error naming the key for a missing / absurd value or unsupported architecture.
  static ModelConfig from_gguf(const gguf::File& f);
};

const char* arch_name(Arch a);

}  // namespace tf
