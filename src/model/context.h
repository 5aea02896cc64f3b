// Inference state for a model: KV cache, scratch buffers and threads, plus the forward pass.
// A batch may hold tokens of several sequences (slots of the KV cache) at any positions, so the
// same forward pass serves prompt processing, single-token decoding and batched serving.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/thread_pool.h"
#include "model/kv_cache.h"
#include "model/model.h"

namespace tf {

using TokenId = int32_t;

struct Batch {
  std::vector<TokenId> tokens;
  std::vector<int32_t> pos;
  std::vector<int32_t> seq;
  std::vector<uint8_t> want_logits;

  void add(TokenId t, int32_t p, int32_t s, bool logits) {
    tokens.push_back(t);
    pos.push_back(p);
    seq.push_back(s);
    want_logits.push_back(logits);
  }
  void clear() {
    tokens.clear();
    pos.clear();
    seq.clear();
    want_logits.clear();
  }
  size_t size() const { return tokens.size(); }
};

struct ContextParams {
  int64_t n_ctx = 0;  // positions per sequence; 0 = the model's training context
  int64_t n_seq = 1;  // sequence slots in the KV cache
  // Tokens per forward step (bigger batches are split). The scratch for activations grows
  // with it; 128 tokens already make the matrix products compute-bound, so 512 prompt tokens
  // run as fast as in one step (reference Q4_0 model: 1030 vs 1008 t/s) with 38 MB less memory.
  int64_t n_batch = 128;
  int n_threads = 1;
  DType kv_type = DType::F16;  // or Q8_0: see KvCache
  int64_t kv_blocks = 0;       // KV pool size in blocks; 0 = n_seq sequences of n_ctx each
};

class Context {
 public:
  Context(const Model& model, const ContextParams& params);

  // Runs the model on a batch. Each token's K/V are stored at (seq, pos); a token at position
  // p attends to positions 0..p of its sequence, which must already be filled (by earlier
  // batches or earlier tokens of this one). Throws tf::Error, changing nothing, on invalid ids
  // or positions, or when the KV cache has too few free blocks for the batch.
  void decode(const Batch& batch);
  // Free KV blocks decode(batch) would take (new blocks and copies of shared ones); entries
  // with an invalid sequence are skipped (decode refuses them).
  int64_t kv_blocks_needed(const Batch& batch) const;

  // Logits of the i-th token of the last batch that asked for them (in batch order). The
  // buffer holds every requested row, so callers scoring long texts ask in slices.
  const float* logits(int64_t i) const { return logits_.data() + size_t(i) * size_t(n_vocab_); }
  int64_t n_outputs() const { return n_out_; }
  int64_t n_vocab() const { return n_vocab_; }

  const Model& model() const { return model_; }
  KvCache& kv() { return kv_; }
  const KvCache& kv() const { return kv_; }
  int64_t n_ctx() const { return kv_.n_ctx(); }
  ThreadPool& pool() { return pool_; }

 private:
  void forward(const TokenId* tokens, const int32_t* pos, const int32_t* seq, const uint8_t* want,
               int64_t n);
  void attention(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n);
  void attention_q8(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n);
  // Runs job over [0, jobs) on the pool, or on this thread when the work is small.
  void run_attention_jobs(int64_t jobs, int64_t work, const ThreadPool::Body& job);
  struct AttnShape;
  void attention_tiled(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n,
                       int64_t n_kv, const AttnShape& shape);
  // What a layer's scores are: q.k * scale, soft-capped when softcap > 0, over the last
  // `window` positions of the sequence (0: all of them).
  struct AttnShape {
    float scale = 1.f, softcap = 0.f;
    int64_t window = 0;
    // The first position a token at pos sees.
    int64_t first(int32_t pos) const {
      return window > 0 ? std::max<int64_t>(0, int64_t(pos) + 1 - window) : 0;
    }
  };
  AttnShape attn_shape(int64_t layer) const;
  void add_block_output(const std::vector<float>& post_norm, int64_t rows);
  // The mixture-of-experts feed-forward block: xb2_ = experts(xb_) for `rows` tokens.
  void moe_ffn(const LayerWeights& L, int64_t rows);
  // deepseek2's multi-head latent attention for a batch: att_ = the heads' values of
  // xb_ (normalized inputs); caches each token's latent row first. See context.cpp.
  void mla_attention(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n,
                     const RopeParams& rope);
  // The expert choice of one token (scores `p`, router logits on entry): appends
  // (expert, weight) to expert_tokens_.
  void route_token(const LayerWeights& L, float* p, int64_t t);

  const Model& model_;
  const ModelConfig& cfg_;
  int64_t n_batch_, n_vocab_;
  ThreadPool pool_;
  KvCache kv_;
  // Scratch, sized for n_batch tokens at construction.
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, att_, hb_, hb2_, scores_;
  std::vector<uint16_t> qh_;  // the batch's queries in fp16
  std::vector<uint8_t> qq_;   // ... or in Q8_0 (for a Q8_0 cache)
  // attention_tiled: the token ranges, and per thread the scores and fp16 weights of a tile
  struct TileScratch {
    std::vector<float> s;
    std::vector<uint16_t> p;  // the softmax weights in fp16
  };
  struct Tile {
    int64_t t0, t1, cells;  // tokens [t0, t1) of one sequence; the cache cells they see
    int64_t b0;             // ... from this one on (a block start: 0 without a window)
  };
  std::vector<Tile> tiles_;
  std::vector<TileScratch> tile_scratch_;
  // attention_tiled: per sequence of the batch and KV head, its values transposed (head_dim
  // rows of `cells` fp16 positions), for the value products as matrix products.
  struct ValuesT {
    int32_t seq;
    int64_t cells;
    size_t offset;  // into values_t_, of KV head 0 (the heads follow, head_dim * cells apart)
  };
  std::vector<ValuesT> vt_index_;
  std::vector<uint16_t> values_t_;
  std::vector<uint8_t> act_;
  // moe_ffn: router probabilities, each expert's tokens and weights, and its gathered rows.
  std::vector<float> router_, moe_x_, moe_g_, moe_u_, moe_o_;
  std::vector<std::vector<std::pair<int64_t, float>>> expert_tokens_;
  std::vector<int64_t> route_order_;
  std::vector<float> route_sel_, route_group_;
  // mla_attention: q's low-rank latent, the kv latent rows, the absorbed queries (per token and
  // head kv_lora + rope values, in float and fp16), the heads' output latents, per-thread rows.
  std::vector<float> mla_qa_, mla_kv_, mla_q_, mla_o_;
  std::vector<uint16_t> mla_qh_;
  std::vector<float> mla_in_, mla_out_;  // one head's inputs and outputs for all tokens
  std::vector<float> logits_;            // grows to the most outputs one batch asked for
  std::vector<int32_t> seq_fill_, seq_from_;
  int64_t n_out_ = 0;
  bool serial_attention_ = false;  // see kSmallModelBytes in context.cpp
};

}  // namespace tf
