// A loaded model: its configuration and views of its weights inside the mapped GGUF file.
// Large matrices stay in the file's type and are read in place; small vectors (norms, biases,
// rope factors) are converted to float once at load.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu_ops.h"
#include "model/config.h"

namespace tf {
namespace gguf {
class File;
}

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  std::vector<float> attn_post_norm, ffn_post_norm;  // gemma2/3 only
  std::vector<float> bq, bk, bv;                     // qwen2 only
  std::vector<float> q_norm, k_norm;                 // qwen3 only (per-head, head_dim long)
  WeightView wq, wk, wv, wo;
  WeightView w_gate, w_up, w_down;  // dense feed-forward
  // Mixture of experts: the router (n_embd x n_expert) and each expert's matrices, views of
  // one slice of the stacked ffn_{gate,up,down}_exps tensors.
  WeightView gate_inp;
  std::vector<WeightView> exp_gate, exp_up, exp_down;
  // qwen2moe's shared expert and its gate (a vector: sigmoid(gate . x) scales its output).
  WeightView sh_gate, sh_up, sh_down;
  std::vector<float> sh_gate_inp;  // (deepseek2: none, the shared experts are ungated)
  std::vector<float> exp_probs_b;  // deepseek2 (V3): a bias added to the scores for selection
  // deepseek2 multi-head latent attention. q: wq (plain), or wq_a, q_a_norm, wq_b (q_lora).
  // wkv_a: n_embd -> kv_lora + rope (the latent, then the shared key's rope part); kv_a_norm
  // normalizes the latent. wkv_b: kv_lora -> n_head x (nope + v_dim), per head W_k (nope rows)
  // then W_v (v_dim rows); kept as rows in the file's type (never tiled): attention reads W_k
  // by rows (absorbed into q) and W_v per head.
  WeightView wq_a, wq_b, wkv_a, wkv_b;
  std::vector<float> q_a_norm, kv_a_norm;
  // Per head, for the absorbed products as matrix products: wv_head[h] is W_v (v_dim rows of
  // wkv_b), wk_t[h] is W_k transposed (kv_lora rows of nope), a copy made at load into
  // wk_t_data, in F32 for float weights (exact) and Q8_0 for quantized ones (whole blocks).
  std::vector<WeightView> wv_head, wk_t;
  std::vector<uint8_t> wk_t_data;
};

class Model {
 public:
  // Opens and validates a GGUF model, copied into memory of its own (the default; see
  // gguf::Residency) or mapped. A copied model's matrices are then rewritten in place into the
  // tile layout the CPU's kernels read fastest, where there is one (kernels::Layout; Q4_0
  // today); the environment variable TF_TILES=0 keeps them as rows. Throws tf::Error with a
  // clear message.
  static std::unique_ptr<Model> load(const std::string& path, bool use_mmap = false,
                                     const std::function<void(uint64_t, uint64_t)>& progress = {});
  // The same over a file held in memory of its own (kCopied, or File::adopt_anonymous): its
  // matrices are tiled in place as load() does.
  static std::unique_ptr<Model> from_owned_file(std::unique_ptr<gguf::File> file);
  // Builds a model over an already opened file (which must outlive it).
  static std::unique_ptr<Model> from_gguf(std::shared_ptr<const gguf::File> file);

  const ModelConfig& config() const { return cfg_; }
  const gguf::File& file() const { return *file_; }
  std::shared_ptr<const gguf::File> file_ptr() const { return file_; }

  const WeightView& tok_embd() const { return tok_embd_; }
  const WeightView& output() const { return output_; }  // == tok_embd when tied
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<float>& rope_freqs() const { return rope_freqs_; }  // empty if none
  // Phi-3 longrope: the factors for a context of n_ctx positions per sequence (empty if none).
  const std::vector<float>& rope_factors(int64_t n_ctx) const {
    return n_ctx > cfg_.rope_n_ctx_orig && !rope_long_.empty() ? rope_long_ : rope_short_;
  }
  const LayerWeights& layer(int64_t i) const { return layers_[size_t(i)]; }

  // Bytes of the matrices read per token (for reporting): with experts, the router plus the
  // share n_expert_used / n_expert of the experts (what a token reads, not what is stored).
  size_t weight_bytes() const;
  int64_t tiled_matrices() const;  // matrices held in a tile layout (for reporting)
  int64_t matmul_params() const;   // weights multiplied per token (output included; active experts)

 private:
  Model() = default;
  void bind();
  void tile_weights(gguf::File& f);

  std::shared_ptr<const gguf::File> file_;
  ModelConfig cfg_;
  WeightView tok_embd_, output_;
  std::vector<float> output_norm_, rope_freqs_, rope_long_, rope_short_;
  std::vector<LayerWeights> layers_;
};

}  // namespace tf
