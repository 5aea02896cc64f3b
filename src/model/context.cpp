#include "model/context.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "backend/kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "util/error.h"

namespace tf {

namespace {
// Attention work (cached positions x heads x head size, summed over the batch) below which it
// runs on the calling thread: ~50 us here.
constexpr int64_t kAttnParallelMinWork = int64_t(1) << 18;
// Models this small (the weights: see auto_threads) keep attention on one thread whatever the
// context: their whole step takes microseconds, and on this shared VM a second thread made
// their prompts up to 2x slower as often as 2x faster (stories260K pp128 at 2 threads: 11-61k
// t/s against 22-25k at 1; serial: 20-25k).
constexpr size_t kSmallModelBytes = size_t(16) << 20;

// The rows of positions from b0 on (a multiple of the block length).
kernels::PagedRows from_block(kernels::PagedRows rows, int64_t b0) {
  rows.blocks += b0 >> rows.block_shift;
  return rows;
}

// MLA attention jobs score at most this many heads of a token together (the scratch holds a
// score row of the context per head and thread).
constexpr int64_t kMlaHeadsPerJob = 16;

// The KV cache type, checked against the model: deepseek2's latent cache is f16 only.
DType checked_kv_type(const ModelConfig& c, DType t) {
  if (c.mla() && t != DType::F16)
    throw Error(std::string("KV cache type ") + dtype_name(t) + " is not supported for " +
                c.arch_name + " (its latent cache is f16 only): use f16");
  return t;
}

}  // namespace

Context::Context(const Model& model, const ContextParams& params)
    : model_(model),
      cfg_(model.config()),
      n_batch_(std::max<int64_t>(1, params.n_batch)),
      n_vocab_(cfg_.n_vocab),
      pool_(params.n_threads),
      kv_(cfg_.n_layer, params.n_seq, params.n_ctx > 0 ? params.n_ctx : cfg_.n_ctx_train,
          cfg_.kv_row_dim(), checked_kv_type(cfg_, params.kv_type), params.kv_blocks,
          cfg_.mla() ? cfg_.kv_row_dim() : cfg_.head_dim, cfg_.kv_keys_only()) {
  const size_t nb = size_t(n_batch_);
  x_.resize(nb * cfg_.n_embd);
  xb_.resize(nb * std::max(cfg_.n_embd, cfg_.q_dim()));
  xb2_.resize(nb * cfg_.n_embd);
  q_.resize(nb * cfg_.q_dim());
  k_.resize(cfg_.mla() ? 0 : nb * cfg_.kv_dim());  // MLA: its own buffers (see below)
  v_.resize(cfg_.mla() ? 0 : nb * cfg_.kv_dim());
  att_.resize(nb * std::max(cfg_.q_dim(), cfg_.attn_out_dim()));
  hb_.resize(nb * cfg_.n_ff);
  hb2_.resize(nb * cfg_.n_ff);
  scores_.resize(size_t(pool_.size()) * size_t(cfg_.n_head / cfg_.n_head_kv) * size_t(kv_.n_ctx()));
  serial_attention_ = model.weight_bytes() < kSmallModelBytes;
  if (cfg_.mla()) {
    const int64_t R = cfg_.kv_row_dim(), H = cfg_.n_head;
    mla_qa_.resize(nb * size_t(cfg_.q_lora_rank));
    mla_kv_.resize(nb * size_t(R));
    mla_q_.resize(nb * size_t(H * R));
    mla_qh_.resize(nb * size_t(H * R));
    mla_o_.resize(nb * size_t(H * cfg_.kv_lora_rank));
    scores_.resize(size_t(pool_.size()) * size_t(std::min<int64_t>(H, kMlaHeadsPerJob)) *
                   size_t(kv_.n_ctx()));
  }
}

void Context::decode(const Batch& b) {
  const int64_t n = int64_t(b.size());
  if (b.pos.size() != b.tokens.size() || b.seq.size() != b.tokens.size() ||
      b.want_logits.size() != b.tokens.size())
    throw Error("decode: batch arrays differ in length");
  // Validate everything first, tracking how far each sequence will be filled, so a bad batch
  // changes nothing.
  std::vector<int32_t>& len = seq_fill_;
  std::vector<int32_t>& from = seq_from_;  // each sequence's lowest position in the batch
  len.resize(size_t(kv_.n_seq()));
  from.assign(size_t(kv_.n_seq()), INT32_MAX);
  for (int64_t s = 0; s < kv_.n_seq(); ++s) len[size_t(s)] = kv_.seq_len(s);
  int64_t n_out = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= n_vocab_)
      throw Error("decode: token id " + std::to_string(b.tokens[i]) + " out of range");
    if (b.seq[i] < 0 || b.seq[i] >= kv_.n_seq())
      throw Error("decode: sequence " + std::to_string(b.seq[i]) + " out of range");
    if (b.pos[i] < 0 || b.pos[i] >= kv_.n_ctx())
      throw Error("decode: position " + std::to_string(b.pos[i]) + " exceeds the context size " +
                  std::to_string(kv_.n_ctx()));
    int32_t& l = len[size_t(b.seq[i])];
    if (b.pos[i] > l)
      throw Error("decode: position " + std::to_string(b.pos[i]) + " leaves a gap in sequence " +
                  std::to_string(b.seq[i]));
    l = std::max(l, b.pos[i] + 1);
    from[size_t(b.seq[i])] = std::min(from[size_t(b.seq[i])], b.pos[i]);
    n_out += b.want_logits[i] ? 1 : 0;
  }
  // The blocks the batch writes into: all free ones needed, checked before any is taken.
  const int64_t need = kv_blocks_needed(b);
  if (need > kv_.free_blocks())
    throw Error("decode: the KV cache is full (" + std::to_string(need) + " blocks needed, " +
                std::to_string(kv_.free_blocks()) + " free)");
  for (int64_t s = 0; s < kv_.n_seq(); ++s)
    if (from[size_t(s)] != INT32_MAX) kv_.reserve(s, from[size_t(s)], len[size_t(s)]);
  if (logits_.size() < size_t(n_out) * size_t(n_vocab_))
    logits_.resize(size_t(n_out) * size_t(n_vocab_));
  n_out_ = 0;
  for (int64_t i = 0; i < n; i += n_batch_) {
    const int64_t m = std::min(n_batch_, n - i);
    forward(&b.tokens[i], &b.pos[i], &b.seq[i], &b.want_logits[i], m);
  }
}

int64_t Context::kv_blocks_needed(const Batch& b) const {
  std::vector<int32_t> from(size_t(kv_.n_seq()), INT32_MAX), to(size_t(kv_.n_seq()), 0);
  for (size_t i = 0; i < b.size(); ++i) {
    const int32_t s = b.seq[i];
    if (s < 0 || s >= kv_.n_seq() || b.pos[i] < 0) continue;
    from[size_t(s)] = std::min(from[size_t(s)], b.pos[i]);
    to[size_t(s)] = std::max(to[size_t(s)], b.pos[i] + 1);
  }
  int64_t need = 0;
  for (int64_t s = 0; s < kv_.n_seq(); ++s)
    if (from[size_t(s)] != INT32_MAX)
      need += kv_.blocks_to_reserve(s, from[size_t(s)],
                                    std::max<int64_t>(to[size_t(s)], kv_.seq_len(s)));
  return need;
}

void Context::forward(const TokenId* tokens, const int32_t* pos, const int32_t* seq,
                      const uint8_t* want, int64_t n) {
  const ModelConfig& c = cfg_;
  const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, D = c.head_dim;
  RopeParams rope_global;
  rope_global.n_rot = c.n_rot;
  rope_global.neox = c.rope_neox;
  rope_global.freq_base = c.rope_freq_base;
  rope_global.freq_scale = c.rope_freq_scale;
  const std::vector<float>& factors =
      !model_.rope_freqs().empty() ? model_.rope_freqs() : model_.rope_factors(kv_.n_ctx());
  rope_global.freq_factors = factors.empty() ? nullptr : factors.data();
  rope_global.ext_factor = c.rope_ext_factor;
  rope_global.attn_factor = c.rope_attn_factor;
  rope_global.n_ctx_orig = int(c.rope_n_ctx_orig);
  rope_global.beta_fast = c.yarn_beta_fast;
  rope_global.beta_slow = c.yarn_beta_slow;
  RopeParams rope_local = rope_global;  // the sliding layers' (gemma3: their own base)
  if (c.rope_freq_base_swa > 0.f) {
    rope_local.freq_base = c.rope_freq_base_swa;
    rope_local.freq_scale = c.rope_freq_scale_swa;
  }

  for (int64_t t = 0; t < n; ++t) get_row(model_.tok_embd(), tokens[t], &x_[t * E]);
  if (c.embd_scale) {  // gemma
    const float k = std::sqrt(float(E));
    for (int64_t i = 0; i < n * E; ++i) x_[size_t(i)] *= k;
  }

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model_.layer(l);
    const RopeParams& rope = c.is_swa_layer(l) ? rope_local : rope_global;
    // Attention block.
    for (int64_t t = 0; t < n; ++t)
      rms_norm(&x_[t * E], L.attn_norm.data(), &xb_[t * E], E, c.rms_eps);
    if (c.mla()) {
      mla_attention(l, pos, seq, n, rope);
    } else {
      {
        const WeightView* ws[] = {&L.wq, &L.wk, &L.wv};
        float* ys[] = {q_.data(), k_.data(), v_.data()};
        matmul_multi(pool_, ws, ys, 3, xb_.data(), n, act_);
      }
      for (int64_t t = 0; t < n; ++t) {
        float* q = &q_[t * Q];
        float* k = &k_[t * KV];
        if (!L.bq.empty()) {
          add_inplace(q, L.bq.data(), Q);
          add_inplace(k, L.bk.data(), KV);
          add_inplace(&v_[t * KV], L.bv.data(), KV);
        }
        if (!L.q_norm.empty()) {
          for (int64_t h = 0; h < c.n_head; ++h)
            rms_norm(q + h * D, L.q_norm.data(), q + h * D, D, c.rms_eps);
          for (int64_t h = 0; h < c.n_head_kv; ++h)
            rms_norm(k + h * D, L.k_norm.data(), k + h * D, D, c.rms_eps);
        }
        rope_inplace(q, int(c.n_head), int(D), pos[t], rope);
        rope_inplace(k, int(c.n_head_kv), int(D), pos[t], rope);
        if (kv_.type() == DType::Q8_0) {
          kernels::quantize_act(DType::Q8_0, k, kv_.k_at(l, seq[t], pos[t]), KV);
          kernels::quantize_act(DType::Q8_0, &v_[t * KV], kv_.v_at(l, seq[t], pos[t]), KV);
        } else {
          for (int64_t h = 0; h < c.n_head_kv; ++h) {
            kernels::f32_to_f16_row(k + h * D,
                                    reinterpret_cast<uint16_t*>(kv_.k_at(l, seq[t], pos[t], h)), D);
            kernels::f32_to_f16_row(&v_[t * KV + h * D],
                                    reinterpret_cast<uint16_t*>(kv_.v_at(l, seq[t], pos[t], h)), D);
          }
        }
      }
      attention(l, pos, seq, n);
    }
    matmul(pool_, L.wo, att_.data(), n, xb2_.data(), act_);
    add_block_output(L.attn_post_norm, n);

    // After the last layer's attention only the tokens that want logits matter: keep just
    // their rows (in order), as llama.cpp does. Besides saving work, this makes the row count
    // of the last feed-forward products llama.cpp's, which decides their kernel's rounding.
    int64_t rows = n;
    if (l == c.n_layer - 1) {
      rows = 0;
      for (int64_t t = 0; t < n; ++t) {
        if (!want[t]) continue;
        if (rows != t) std::copy_n(&x_[t * E], E, &x_[rows * E]);
        ++rows;
      }
    }

    // Feed-forward block (SwiGLU, or GeGLU for gemma).
    for (int64_t t = 0; t < rows; ++t)
      rms_norm(&x_[t * E], L.ffn_norm.data(), &xb_[t * E], E, c.rms_eps);
    if (!L.exp_gate.empty()) {
      moe_ffn(L, rows);
    } else {
      const WeightView* ws[] = {&L.w_gate, &L.w_up};
      float* ys[] = {hb_.data(), hb2_.data()};
      matmul_multi(pool_, ws, ys, 2, xb_.data(), rows, act_);
      for (int64_t t = 0; t < rows; ++t) {
        if (c.ffn_act == FfnAct::GELU)
          gelu_mul_inplace(&hb_[t * F], &hb2_[t * F], F);
        else
          silu_mul_inplace(&hb_[t * F], &hb2_[t * F], F);
      }
      matmul(pool_, L.w_down, hb_.data(), rows, xb2_.data(), act_);
    }
    add_block_output(L.ffn_post_norm, rows);
  }

  for (int64_t t = 0; t < n; ++t) {
    const int32_t p = pos[t];
    if (p + 1 > kv_.seq_len(seq[t])) kv_.set_seq_len(seq[t], p + 1);
  }

  // Final norm and output projection; x_ now holds just the rows that want logits.
  int64_t m = 0;
  for (int64_t t = 0; t < n; ++t) m += want[t] ? 1 : 0;
  for (int64_t t = 0; t < m; ++t)
    rms_norm(&x_[t * E], model_.output_norm().data(), &xb_[t * E], E, c.rms_eps);
  if (m > 0) {
    float* out = logits_.data() + size_t(n_out_) * size_t(n_vocab_);
    matmul(pool_, model_.output(), xb_.data(), m, out, act_);
    if (c.final_softcap > 0.f) softcap_inplace(out, m * n_vocab_, c.final_softcap);
    n_out_ += m;
  }
}

// x_ += xb2_ for `rows` tokens: a block's output joins the residual stream, normalized first
// when the model has a post-norm for it (gemma2/3).
void Context::add_block_output(const std::vector<float>& post_norm, int64_t rows) {
  const int64_t E = cfg_.n_embd;
  for (int64_t t = 0; t < rows; ++t) {
    float* y = &xb2_[size_t(t * E)];
    if (!post_norm.empty()) rms_norm(y, post_norm.data(), y, E, cfg_.rms_eps);
    add_inplace(&x_[size_t(t * E)], y, E);
  }
}

Context::AttnShape Context::attn_shape(int64_t layer) const {
  const ModelConfig& c = cfg_;
  AttnShape a;
  // (A RoPE magnitude factor, phi3's longrope or YaRN's, is in the rotated q and k.)
  a.scale = c.attn_scale > 0.f ? c.attn_scale : 1.0f / std::sqrt(float(c.head_dim));
  a.softcap = c.attn_softcap;
  a.window = c.is_swa_layer(layer) ? c.n_swa : 0;
  return a;
}

// Scaled dot-product attention of each (token, head) over its sequence's cached positions,
// read block by block through the sequence's block table. Scores round like llama.cpp's CPU
// path without flash attention: q is rounded to fp16 for the products with the fp16 keys
// (kq = K q), with the kernel llama.cpp would pick for them (llama_dot_kernel); each score is
// one dot product, so blocks do not change it. The softmax weights, rounded to fp16 as
// llama.cpp rounds them, then sum the fp16 value rows in float, position by position (flash
// attention's form: llama.cpp's transposed-value products would need each position's values
// of one dimension side by side, across blocks). The products are llama.cpp's, exact in
// float; only the order of their additions differs.
void Context::attention(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n) {
  if (kv_.type() == DType::Q8_0) return attention_q8(layer, pos, seq, n);
  const ModelConfig& c = cfg_;
  const int64_t D = c.head_dim, Q = c.q_dim(), group = c.n_head / c.n_head_kv;
  const AttnShape shape = attn_shape(layer);
  const float scale = shape.scale;
  const int64_t n_ctx = kv_.n_ctx();
  constexpr int64_t B = KvCache::kBlockLen;
  // llama.cpp attends over the first n_kv cells of its cache, the used length rounded up to a
  // multiple of 32; for a single token n_kv decides which products ggml_vec_dot_f16 adds in
  // float SIMD lanes and which in double.
  int32_t max_pos = 0;
  for (int64_t t = 0; t < n; ++t) max_pos = std::max(max_pos, pos[t]);
  const int64_t n_kv = std::min<int64_t>(n_ctx, (int64_t(max_pos) + 32) / 32 * 32);
  const DotKernel kq_kernel = llama_dot_kernel(DType::F16, n_kv, D, n);
  if (qh_.size() < size_t(n * Q)) qh_.resize(size_t(n * Q));
  kernels::f32_to_f16_row(q_.data(), qh_.data(), n * Q);
  // Matrix products pay off for tiles of several tokens of one sequence. A batch of single
  // tokens of different sequences (batched decoding) takes the per-token path: its fp16 score
  // dots with DotKernel::Sgemm add as the matrix kernel does when D % 16 == 0 (see
  // kernels::gemm), and its value sums are those of a token decoded alone.
  bool single_tokens = D % 16 == 0;
  for (int64_t t = 1; t < n && single_tokens; ++t) single_tokens = seq[t] != seq[t - 1];
  if (kq_kernel == DotKernel::Sgemm && kernels::has_gemm(DType::F16) && !single_tokens) {
    attention_tiled(layer, pos, seq, n, n_kv, shape);
    return;
  }
  // Small attention jobs (short contexts, tiny models) run on this thread alone: waking the
  // pool would cost more than the work.
  int64_t work = 0;
  for (int64_t t = 0; t < n; ++t)
    work += (int64_t(pos[t]) + 1 - shape.first(pos[t])) * c.n_head * D;
  // A job scores hg query heads of one KV head together (each cached key converted from fp16
  // once for all of them): as many of the group as leaves 2 jobs per thread. Measured at depth
  // 1024, 2 threads (32 heads, groups of 8): attention 1.16-1.35 ms per token one head per
  // job, 1.0 with 4 heads, 0.88-0.93 with 8.
  int64_t hg = group;
  while (hg % 2 == 0 && n * c.n_head / hg < 2 * pool_.size()) hg /= 2;
  auto job = [&](int64_t b, int64_t e, int tid) {
    float* sc = &scores_[size_t(tid) * size_t(group) * size_t(n_ctx)];
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / (c.n_head / hg), h0 = job % (c.n_head / hg) * hg, kvh = h0 / group;
      // Positions [lo, len) are seen; whole blocks before lo are skipped (a sliding window).
      const int64_t len = int64_t(pos[t]) + 1, lo = shape.first(pos[t]), b0 = lo / B * B;
      const kernels::PagedRows keys = kv_.keys(layer, seq[t], kvh);
      for (int64_t j0 = b0; j0 < len; j0 += B)
        kernels::dot_f16_rows_group(reinterpret_cast<const uint16_t*>(keys.row(j0)), size_t(D),
                                    std::min(B, len - j0), &qh_[size_t(t * Q + h0 * D)], size_t(D),
                                    hg, D, kq_kernel, scale, sc + j0, size_t(n_ctx));
      for (int64_t h = 0; h < hg; ++h) {
        float* s = sc + size_t(h) * size_t(n_ctx);
        if (shape.softcap > 0.f) softcap_inplace(s + lo, len - lo, shape.softcap);
        softmax_window_inplace(s, lo, len);
        kernels::round_to_f16(s + lo, len - lo);
        std::fill(s + b0, s + lo, 0.0f);
      }
      // The group's outputs are consecutive in att_ (D apart).
      kernels::f16_weighted_sum(from_block(kv_.values(layer, seq[t], kvh), b0), len - b0, 0, D,
                                sc + b0, size_t(n_ctx), hg, &att_[size_t(t * Q + h0 * D)],
                                size_t(D));
    }
  };
  run_attention_jobs(n * c.n_head / hg, work, job);
}

// Attention over a Q8_0 cache. Scores: when each head covers whole blocks (head_dim % 32 ==
// 0), q is quantized to Q8_0 and each score is an integer block dot product, as llama.cpp
// computes them with a quantized key cache; otherwise each key slice is dequantized. Outputs:
// the softmax-weighted sum of the dequantized value rows, in float. Not llama.cpp's rounding
// (it needs flash attention for a quantized value cache), so tested against the f16 cache.
void Context::attention_q8(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n) {
  const ModelConfig& c = cfg_;
  const int64_t D = c.head_dim, Q = c.q_dim(), group = c.n_head / c.n_head_kv;
  const AttnShape shape = attn_shape(layer);
  const float scale = shape.scale;
  constexpr int64_t B = KvCache::kBlockLen;
  const bool whole_blocks = D % 32 == 0;
  const size_t q_row = whole_blocks ? row_bytes(DType::Q8_0, Q) : 0;
  const size_t head_bytes = whole_blocks ? row_bytes(DType::Q8_0, D) : 0;
  if (whole_blocks) {
    if (qq_.size() < q_row * size_t(n)) qq_.resize(q_row * size_t(n));
    for (int64_t t = 0; t < n; ++t)
      kernels::quantize_act(DType::Q8_0, &q_[size_t(t * Q)], &qq_[q_row * size_t(t)], Q);
  }
  int64_t work = 0;
  for (int64_t t = 0; t < n; ++t) work += (int64_t(pos[t]) + 1) * c.n_head * D;
  auto job = [&](int64_t b, int64_t e, int tid) {
    float* sc = &scores_[size_t(tid) * size_t(kv_.n_ctx())];
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / c.n_head, h = job % c.n_head, kvh = h / group;
      const int64_t len = int64_t(pos[t]) + 1, lo = shape.first(pos[t]), b0 = lo / B * B;
      const kernels::PagedRows keys = kv_.keys(layer, seq[t]);
      for (int64_t j0 = b0; j0 < len; j0 += B) {
        const int64_t rows = std::min(B, len - j0);
        if (whole_blocks)
          kernels::dot_rows(DType::Q8_0, keys.row(j0) + size_t(kvh) * head_bytes, kv_.row_bytes(),
                            rows, &qq_[q_row * size_t(t) + size_t(h) * head_bytes], D, sc + j0);
        else
          kernels::q8_0_scores_sliced(keys.row(j0), kv_.row_bytes(), rows, kvh * D, D,
                                      &q_[size_t(t * Q + h * D)], scale, sc + j0);
      }
      if (whole_blocks)
        for (int64_t j = lo; j < len; ++j) sc[j] *= scale;
      if (shape.softcap > 0.f) softcap_inplace(sc + lo, len - lo, shape.softcap);
      softmax_window_inplace(sc, lo, len);
      std::fill(sc + b0, sc + lo, 0.0f);
      kernels::q8_0_weighted_sum(from_block(kv_.values(layer, seq[t]), b0), len - b0, kvh * D, D,
                                 sc + b0, &att_[size_t(t * Q + h * D)]);
    }
  };
  run_attention_jobs(n * c.n_head, work, job);
}

// Attention of several tokens as matrix products (prompt processing, when llama.cpp uses its
// sgemm kernel for them): per head and tile of up to kTile consecutive tokens of one
// sequence, S = K Q^T over the cells the tile can see, block by block, then softmax per row,
// then V^T P with the values transposed and the weights in fp16, as llama.cpp computes it.
// The matrix kernel adds in the same order as the per-token dots with DotKernel::Sgemm (see
// kernels::gemm). A tile stops at its own last position (rounded up to 32) instead of n_kv:
// the causal half of the work is skipped.
void Context::attention_tiled(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n,
                              int64_t n_kv, const AttnShape& shape) {
  constexpr int64_t kTile = 64;
  constexpr int64_t B = KvCache::kBlockLen;
  const ModelConfig& c = cfg_;
  const int64_t D = c.head_dim, Q = c.q_dim(), group = c.n_head / c.n_head_kv;
  // Tiles: runs of at most kTile consecutive tokens of the same sequence, with the cells they
  // can see (their last position, rounded up to 32: within the blocks reserved for it).
  tiles_.clear();
  int64_t work = 0;  // multiply-adds, roughly
  for (int64_t t = 0; t < n;) {
    int64_t e = t + 1;
    while (e < n && e - t < kTile && seq[e] == seq[t]) ++e;
    int32_t last = 0;
    for (int64_t k = t; k < e; ++k) last = std::max(last, pos[k]);
    // A sliding window skips the whole blocks before the first position any token sees.
    int64_t lo = INT64_MAX;
    for (int64_t k = t; k < e; ++k) lo = std::min(lo, shape.first(pos[k]));
    const int64_t b0 = lo / B * B;
    tiles_.push_back({t, e, std::min(n_kv, (int64_t(last) + 32) / 32 * 32), b0});
    work += (e - t) * (int64_t(last) + 1 - b0) * c.n_head * D;
    t = e;
  }
  if (tile_scratch_.size() < size_t(pool_.size())) tile_scratch_.resize(size_t(pool_.size()));
  // The values of each sequence, transposed once for all its tiles and heads: matrix
  // products over positions then stream them (llama.cpp's layout for this product). Positions
  // past what the batch fills are zeros (their weights are 0; stale cells could hold anything).
  vt_index_.clear();
  size_t vt_size = 0;
  for (const Tile& tl : tiles_) {
    bool found = false;
    for (ValuesT& vt : vt_index_)
      if (vt.seq == seq[tl.t0]) {
        vt.cells = std::max(vt.cells, tl.cells);
        found = true;
      }
    if (!found) vt_index_.push_back({seq[tl.t0], tl.cells, 0});
  }
  for (ValuesT& vt : vt_index_) {
    vt.offset = vt_size;
    vt_size += size_t(c.n_head_kv * D) * size_t(vt.cells);
  }
  if (values_t_.size() < vt_size) values_t_.resize(vt_size);
  for (const ValuesT& vt : vt_index_) {
    int32_t filled = kv_.seq_len(vt.seq);
    for (int64_t t = 0; t < n; ++t)
      if (seq[t] == vt.seq) filled = std::max(filled, pos[t] + 1);
    for (int64_t kvh = 0; kvh < c.n_head_kv; ++kvh) {
      const kernels::PagedRows rows = kv_.values(layer, vt.seq, kvh);
      uint16_t* dst = &values_t_[vt.offset + size_t(kvh * D) * size_t(vt.cells)];
      const int64_t valid = std::min<int64_t>(filled, vt.cells);
      for (int64_t j = 0; j < valid; ++j) {
        const auto* r = reinterpret_cast<const uint16_t*>(rows.row(j));
        for (int64_t d = 0; d < D; ++d) dst[size_t(d) * size_t(vt.cells) + size_t(j)] = r[d];
      }
      for (int64_t d = 0; d < D; ++d)
        std::fill_n(dst + size_t(d) * size_t(vt.cells) + size_t(valid), size_t(vt.cells - valid),
                    uint16_t(0));
    }
  }
  auto job = [&](int64_t b, int64_t e, int tid) {
    TileScratch& ts = tile_scratch_[size_t(tid)];
    for (int64_t jb = b; jb < e; ++jb) {
      const auto [t0, t1, cells, b0] = tiles_[size_t(jb / c.n_head)];
      const int64_t h = jb % c.n_head, kvh = h / group, m = t1 - t0;
      if (ts.s.size() < size_t(m * cells)) ts.s.resize(size_t(m * cells));
      const kernels::PagedRows keys = kv_.keys(layer, seq[t0], kvh);
      for (int64_t j0 = b0; j0 < cells; j0 += B)
        kernels::gemm(DType::F16, keys.row(j0), size_t(D) * 2, std::min(B, cells - j0),
                      &qh_[size_t(t0 * Q + h * D)], size_t(Q) * 2, m, D, ts.s.data() + j0, cells);
      if (ts.p.size() < size_t(m * cells)) ts.p.resize(size_t(m * cells));
      for (int64_t t = t0; t < t1; ++t) {
        float* sc = &ts.s[size_t((t - t0) * cells)];
        uint16_t* p16 = &ts.p[size_t((t - t0) * cells)];
        const int64_t len = int64_t(pos[t]) + 1, lo = shape.first(pos[t]);
        for (int64_t j = lo; j < len; ++j) sc[j] *= shape.scale;
        if (shape.softcap > 0.f) softcap_inplace(sc + lo, len - lo, shape.softcap);
        softmax_window_inplace(sc, lo, len);
        kernels::f32_to_f16_row(sc + lo, p16 + lo, len - lo);
        std::fill(p16 + b0, p16 + lo, uint16_t(0));      // before the window
        std::fill(p16 + len, p16 + cells, uint16_t(0));  // cells the token does not see
      }
      const ValuesT* vt = &vt_index_[0];
      while (vt->seq != seq[t0]) ++vt;
      const uint16_t* v = &values_t_[vt->offset + size_t(kvh * D) * size_t(vt->cells)];
      kernels::gemm(DType::F16, v + b0, size_t(vt->cells) * 2, D, ts.p.data() + b0,
                    size_t(cells) * 2, m, cells - b0, &att_[size_t(t0 * Q + h * D)], Q);
    }
  };
  run_attention_jobs(int64_t(tiles_.size()) * c.n_head, work, job);
}

void Context::moe_ffn(const LayerWeights& L, int64_t rows) {
  const ModelConfig& c = cfg_;
  const int64_t E = c.n_embd, F = c.n_ff_exp, X = c.n_expert;
  if (router_.size() < size_t(rows * X)) router_.resize(size_t(rows * X));
  matmul(pool_, L.gate_inp, xb_.data(), rows, router_.data(), act_);
  expert_tokens_.resize(size_t(X));
  for (auto& v : expert_tokens_) v.clear();
  for (int64_t t = 0; t < rows; ++t) route_token(L, &router_[size_t(t * X)], t);
  // Each chosen expert once, on all of its tokens together: its weights are read once per
  // step whatever the number of tokens that chose it, and unchosen experts not at all.
  std::fill_n(xb2_.begin(), size_t(rows * E), 0.0f);
  for (int64_t e = 0; e < X; ++e) {
    const auto& toks = expert_tokens_[size_t(e)];
    const int64_t m = int64_t(toks.size());
    if (m == 0) continue;
    if (moe_x_.size() < size_t(m * E)) {
      moe_x_.resize(size_t(m * E));
      moe_o_.resize(size_t(m * E));
    }
    if (moe_g_.size() < size_t(m * F)) {
      moe_g_.resize(size_t(m * F));
      moe_u_.resize(size_t(m * F));
    }
    for (int64_t i = 0; i < m; ++i)
      std::copy_n(&xb_[size_t(toks[size_t(i)].first * E)], E, &moe_x_[size_t(i * E)]);
    const WeightView* ws[] = {&L.exp_gate[size_t(e)], &L.exp_up[size_t(e)]};
    float* ys[] = {moe_g_.data(), moe_u_.data()};
    matmul_multi(pool_, ws, ys, 2, moe_x_.data(), m, act_);
    for (int64_t i = 0; i < m; ++i)
      silu_mul_inplace(&moe_g_[size_t(i * F)], &moe_u_[size_t(i * F)], F);
    matmul(pool_, L.exp_down[size_t(e)], moe_g_.data(), m, moe_o_.data(), act_);
    for (int64_t i = 0; i < m; ++i) {
      float* dst = &xb2_[size_t(toks[size_t(i)].first * E)];
      const float w = toks[size_t(i)].second, *src = &moe_o_[size_t(i * E)];
      for (int64_t j = 0; j < E; ++j) dst[j] += w * src[j];
    }
  }
  if (L.sh_gate.empty()) return;
  // The shared expert, on every token, scaled by sigmoid(gate . x) (deepseek2: not gated).
  const int64_t S = c.n_ff_shexp;
  if (moe_g_.size() < size_t(rows * S)) {
    moe_g_.resize(size_t(rows * S));
    moe_u_.resize(size_t(rows * S));
  }
  if (moe_o_.size() < size_t(rows * E)) moe_o_.resize(size_t(rows * E));
  const WeightView* ws[] = {&L.sh_gate, &L.sh_up};
  float* ys[] = {moe_g_.data(), moe_u_.data()};
  matmul_multi(pool_, ws, ys, 2, xb_.data(), rows, act_);
  for (int64_t t = 0; t < rows; ++t)
    silu_mul_inplace(&moe_g_[size_t(t * S)], &moe_u_[size_t(t * S)], S);
  matmul(pool_, L.sh_down, moe_g_.data(), rows, moe_o_.data(), act_);
  for (int64_t t = 0; t < rows; ++t) {
    const float* x = &xb_[size_t(t * E)];
    double dot = 0;
    for (int64_t j = 0; j < E && !L.sh_gate_inp.empty(); ++j)
      dot += double(L.sh_gate_inp[size_t(j)]) * x[j];
    const float g = L.sh_gate_inp.empty() ? 1.0f : float(1.0 / (1.0 + std::exp(-dot)));
    float* dst = &xb2_[size_t(t * E)];
    const float* src = &moe_o_[size_t(t * E)];
    for (int64_t j = 0; j < E; ++j) dst[j] += g * src[j];
  }
}

// Routing of one token: gating (softmax over all experts, or deepseek2's sigmoid per expert)
// turns the router logits into scores; selection ranks the scores plus exp_probs_b where the
// model has it, among the experts of the n_group_used best groups when the experts are
// grouped (a group's rank: its best selection score with softmax gating, as DeepSeek-V2's
// group_limited_greedy; the sum of its best two with sigmoid gating, as DeepSeek-V3); the K
// best (ties: the lower index) are weighted by their unbiased scores, renormalized over the K
// when the model asks, times expert_weights_scale.
void Context::route_token(const LayerWeights& L, float* p, int64_t t) {
  const ModelConfig& c = cfg_;
  const int64_t X = c.n_expert, K = c.n_expert_used;
  std::vector<int64_t>& order = route_order_;
  order.resize(size_t(X));
  if (c.expert_gating_sigmoid) {
    for (int64_t e = 0; e < X; ++e) p[e] = 1.0f / (1.0f + std::exp(-p[e]));
  } else {
    softmax_inplace(p, X);
  }
  const float* sel = p;
  const bool grouped = c.n_group_used < c.n_expert_group;
  if (!L.exp_probs_b.empty() || grouped) {
    route_sel_.assign(p, p + X);
    for (size_t e = 0; e < L.exp_probs_b.size(); ++e) route_sel_[e] += L.exp_probs_b[e];
    if (grouped) {
      const int64_t G = c.n_expert_group, per = X / G;
      route_group_.resize(size_t(G));
      for (int64_t g = 0; g < G; ++g) {
        const float* v = &route_sel_[size_t(g * per)];
        float best = -INFINITY, second = -INFINITY;
        for (int64_t e = 0; e < per; ++e) {
          if (v[e] > best) {
            second = best;
            best = v[e];
          } else if (v[e] > second) {
            second = v[e];
          }
        }
        route_group_[size_t(g)] = c.expert_gating_sigmoid ? best + second : best;
      }
      for (int64_t g = 0; g < G; ++g) order[size_t(g)] = g;
      const float* gs = route_group_.data();
      std::partial_sort(
          order.begin(), order.begin() + c.n_group_used, order.begin() + G,
          [&](int64_t a, int64_t b) { return gs[a] > gs[b] || (gs[a] == gs[b] && a < b); });
      for (int64_t k = c.n_group_used; k < G; ++k)
        std::fill_n(&route_sel_[size_t(order[size_t(k)] * per)], per, -INFINITY);
    }
    sel = route_sel_.data();
  }
  for (int64_t e = 0; e < X; ++e) order[size_t(e)] = e;
  std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t b) {
    return sel[a] > sel[b] || (sel[a] == sel[b] && a < b);
  });
  float sum = 0;
  for (int64_t k = 0; k < K; ++k) sum += p[order[size_t(k)]];
  for (int64_t k = 0; k < K; ++k) {
    const int64_t e = order[size_t(k)];
    const float w = (c.expert_weights_norm ? p[e] / sum : p[e]) * c.expert_weights_scale;
    expert_tokens_[size_t(e)].push_back({t, w});
  }
}

// deepseek2's multi-head latent attention, in the absorbed form. Per token the cache holds
// one row of kv_lora + rope fp16 values: the normalized latent c and the roped shared key
// part k_pe. A head's key for position j would be [W_k c_j, k_pe_j] and its value W_v c_j
// (W_k, W_v: the head's rows of attn_kv_b); instead its query is absorbed, q_abs = [W_k^T
// q_nope, q_pe], so the score is one dot product with the cached row, and its output latent
// o = sum_j p_j c_j becomes the value W_v o. W_k and W_v are read as rows of attn_kv_b in the
// file's type (dequantized one row at a time, for all the batch's tokens): no copy of them is
// kept. Scores are scaled by mscale^2 / sqrt(key_length), mscale = 1 + yarn_log_multiplier
// ln(1 / freq_scale), as llama.cpp does.
void Context::mla_attention(int64_t layer, const int32_t* pos, const int32_t* seq, int64_t n,
                            const RopeParams& rope_in) {
  const ModelConfig& c = cfg_;
  const LayerWeights& L = model_.layer(layer);
  const int64_t H = c.n_head, Dk = c.head_dim, N = c.qk_nope(), P = c.n_rot;
  const int64_t C = c.kv_lora_rank, V = c.v_head_dim, R = C + P, Q = c.q_dim(), QL = c.q_lora_rank;
  const int64_t n_ctx = kv_.n_ctx();
  constexpr int64_t B = KvCache::kBlockLen;
  {
    const WeightView* ws[] = {L.wq_a.empty() ? &L.wq : &L.wq_a, &L.wkv_a};
    float* ys[] = {L.wq_a.empty() ? q_.data() : mla_qa_.data(), mla_kv_.data()};
    matmul_multi(pool_, ws, ys, 2, xb_.data(), n, act_);
  }
  if (!L.wq_a.empty()) {
    for (int64_t t = 0; t < n; ++t)
      rms_norm(&mla_qa_[size_t(t * QL)], L.q_a_norm.data(), &mla_qa_[size_t(t * QL)], QL,
               c.rms_eps);
    matmul(pool_, L.wq_b, mla_qa_.data(), n, q_.data(), act_);
  }
  RopeParams rope = rope_in;
  rope.n_rot = int(P);
  for (int64_t t = 0; t < n; ++t) {
    float* kv = &mla_kv_[size_t(t * R)];
    rms_norm(kv, L.kv_a_norm.data(), kv, C, c.rms_eps);
    rope_inplace(kv + C, 1, int(P), pos[t], rope);
    rope_inplace(&q_[size_t(t * Q + N)], int(H), int(Dk), pos[t], rope);
    kernels::f32_to_f16_row(kv, reinterpret_cast<uint16_t*>(kv_.k_at(layer, seq[t], pos[t])), R);
  }
  // Absorbed queries: [W_k^T q_nope, q_pe] per token and head, W_k^T q_nope as a matrix
  // product with the transposed copy made at load.
  if (mla_in_.size() < size_t(n * std::max(N, C))) mla_in_.resize(size_t(n * std::max(N, C)));
  if (mla_out_.size() < size_t(n * std::max(C, V))) mla_out_.resize(size_t(n * std::max(C, V)));
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t t = 0; t < n; ++t)
      std::copy_n(&q_[size_t(t * Q + h * Dk)], N, &mla_in_[size_t(t * N)]);
    matmul(pool_, L.wk_t[size_t(h)], mla_in_.data(), n, mla_out_.data(), act_);
    for (int64_t t = 0; t < n; ++t) {
      float* dst = &mla_q_[size_t((t * H + h) * R)];
      std::copy_n(&mla_out_[size_t(t * C)], C, dst);
      std::copy_n(&q_[size_t(t * Q + h * Dk + N)], P, dst + C);
    }
  }
  kernels::f32_to_f16_row(mla_q_.data(), mla_qh_.data(), n * H * R);
  const float mscale = 1.0f + c.yarn_log_mul * std::log(1.0f / c.rope_freq_scale);
  const float scale = mscale * mscale / std::sqrt(float(Dk));
  // Scores and output latents: a job takes hg heads of one token (each cached row converted
  // from fp16 once for all of them).
  int64_t work = 0;
  for (int64_t t = 0; t < n; ++t) work += (int64_t(pos[t]) + 1) * H * R;
  int64_t hg = H;  // a divisor of H, at most kMlaHeadsPerJob
  while (hg > kMlaHeadsPerJob)
    for (--hg; H % hg != 0;) --hg;
  while (hg % 2 == 0 && n * H / hg < 2 * pool_.size()) hg /= 2;
  run_attention_jobs(n * H / hg, work, [&](int64_t b, int64_t e, int tid) {
    float* sc =
        &scores_[size_t(tid) * size_t(std::min<int64_t>(H, kMlaHeadsPerJob)) * size_t(n_ctx)];
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / (H / hg), h0 = job % (H / hg) * hg;
      const int64_t len = int64_t(pos[t]) + 1;
      const kernels::PagedRows rows = kv_.keys(layer, seq[t]);
      for (int64_t j0 = 0; j0 < len; j0 += B)
        kernels::dot_f16_rows_group(reinterpret_cast<const uint16_t*>(rows.row(j0)), size_t(R),
                                    std::min(B, len - j0), &mla_qh_[size_t((t * H + h0) * R)],
                                    size_t(R), hg, R, DotKernel::VecDot, scale, sc + j0,
                                    size_t(n_ctx));
      for (int64_t h = 0; h < hg; ++h) softmax_inplace(sc + size_t(h) * size_t(n_ctx), len);
      kernels::f16_weighted_sum(kv_.values(layer, seq[t]), len, 0, C, sc, size_t(n_ctx), hg,
                                &mla_o_[size_t((t * H + h0) * C)], size_t(C));
    }
  });
  // Values: W_v o per token and head, into att_ (n x n_head x v_dim).
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t t = 0; t < n; ++t)
      std::copy_n(&mla_o_[size_t((t * H + h) * C)], C, &mla_in_[size_t(t * C)]);
    matmul(pool_, L.wv_head[size_t(h)], mla_in_.data(), n, mla_out_.data(), act_);
    for (int64_t t = 0; t < n; ++t)
      std::copy_n(&mla_out_[size_t(t * V)], V, &att_[size_t(t * H * V + h * V)]);
  }
}

void Context::run_attention_jobs(int64_t jobs, int64_t work, const ThreadPool::Body& job) {
  if (work < kAttnParallelMinWork || serial_attention_) {
    job(0, jobs, 0);
  } else {
    pool_.parallel_for(jobs, job);
  }
}

}  // namespace tf
