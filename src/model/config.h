// Hyper-parameters of a decoder-only transformer, read and checked from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

namespace tf {
namespace gguf {
class File;
}

enum class Arch { LLAMA, QWEN2, QWEN3, QWEN2MOE, QWEN3MOE };

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

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }

  // Throws tf::Error naming the key for a missing / absurd value or unsupported architecture.
  static ModelConfig from_gguf(const gguf::File& f);
};

const char* arch_name(Arch a);

}  // namespace tf
