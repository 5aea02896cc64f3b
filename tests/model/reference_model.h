// A plain double-precision forward pass, written independently of src/model (full causal
// attention recomputed for every position, RoPE angles from pow()), for the random models of
// tiny_model.h, and the check of the engine against it: a prompt in one batch, then token by
// token. Deliberate mistakes (Mutation) show which differences the check would catch.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "model/context.h"
#include "model/model.h"
#include "tiny_model.h"

namespace tf::test::ref {

using Vec = std::vector<double>;

// y = W x with W stored as rows of `cols` floats, from row r0 on.
inline Vec matvec(const std::vector<float>& W, const Vec& x, size_t rows, size_t r0 = 0) {
  const size_t cols = x.size();
  Vec y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) y[r] += double(W[(r0 + r) * cols + c]) * x[c];
  return y;
}

inline Vec rmsnorm(const Vec& x, const std::vector<float>& w, size_t off = 0, size_t n = 0) {
  if (n == 0) n = x.size();
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double k = 1.0 / std::sqrt(ss / double(n) + 1e-5);
  Vec y(n);
  for (size_t i = 0; i < n; ++i) y[i] = x[off + i] * k * w[i];
  return y;
}

// Pair i of each head turns by pos * scale * base^(-2i/hd) / ff[i].
inline void rope(Vec& v, size_t n_heads, size_t hd, int pos, bool neox, double base,
                 const std::vector<float>* ff, double scale = 1.0) {
  for (size_t h = 0; h < n_heads; ++h)
    for (size_t i = 0; i < hd / 2; ++i) {
      double theta = pos * scale * std::pow(base, -2.0 * double(i) / double(hd));
      if (ff) theta /= (*ff)[i];
      const size_t a = h * hd + (neox ? i : 2 * i), b = h * hd + (neox ? i + hd / 2 : 2 * i + 1);
      const double x0 = v[a], x1 = v[b];
      v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
      v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
    }
}

inline double silu(double x) {
  return x / (1.0 + std::exp(-x));
}
inline double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// Deliberate mistakes the reference can make, to show the tests would catch them in the engine.
enum class Mutation {
  kNone,
  kNoRenorm,
  kSecondBestDropped,
  kNoSharedExpert,
  kNoSoftcap,     // gemma2: neither scores nor logits capped
  kNoWindow,      // sliding layers attend to everything
  kNoPostNorm,    // gemma2/3: block outputs added unnormalized
  kSilu,          // gemma: SwiGLU instead of GeGLU
  kNoEmbdScale,   // gemma: embeddings not scaled by sqrt(n_embd)
  kGlobalRope,    // gemma3: the sliding layers use the global layers' RoPE
  kShortFactors,  // phi3: the short factors at a long context
  kNoAttnFactor,  // phi3: longrope's magnitude factor forgotten
};

// The experts a token goes to and their weights: softmax over all, the n_expert_used most
// probable, renormalized over those when the model says so.
inline std::vector<std::pair<int, double>> route(const TinySpec& s,
                                                 const std::vector<float>& router, const Vec& xn,
                                                 Mutation mutation) {
  Vec r = matvec(router, xn, size_t(s.n_expert));
  double mx = -1e300, sum = 0;
  for (double v : r) mx = std::max(mx, v);
  for (double& v : r) sum += (v = std::exp(v - mx));
  for (double& v : r) v /= sum;
  std::vector<int> idx(r.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int(i);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int a, int b) { return r[size_t(a)] > r[size_t(b)]; });
  std::vector<std::pair<int, double>> out;
  double chosen = 0;
  for (int k = 0; k < s.n_expert_used; ++k) {
    if (mutation == Mutation::kSecondBestDropped && k == 1) continue;
    out.push_back({idx[size_t(k)], r[size_t(idx[size_t(k)])]});
    chosen += out.back().second;
  }
  if (s.expert_norm && mutation != Mutation::kNoRenorm)
    for (auto& [e, w] : out) w /= chosen;
  return out;
}

// Whether layer l slides, and over how many positions (gemma's defaults when the file says
// nothing: 4096 for gemma2, 1024 for gemma3; phi3 none).
inline int window(const TinySpec& s, int l) {
  if (s.arch == "gemma2") return l % 2 == 0 ? (s.n_swa ? s.n_swa : 4096) : 0;
  if (s.arch == "gemma3") return l % 6 < 5 ? (s.n_swa ? s.n_swa : 1024) : 0;
  if (s.arch == "phi3") return s.n_swa;
  return 0;
}

// Logits at every position of `tokens`, for a context of n_ctx positions (phi3's longrope
// picks its factors by it).
inline std::vector<Vec> reference(const TinySpec& s, TensorMap& T, const std::vector<int>& tokens,
                                  Mutation mutation = Mutation::kNone, int n_ctx = 64) {
  const size_t E = size_t(s.n_embd), H = size_t(s.n_head), HKV = size_t(s.n_head_kv);
  const size_t hd = s.head_dim ? size_t(s.head_dim) : E / H, F = size_t(s.n_ff);
  const bool neox = s.arch != "llama", gemma = is_gemma(s.arch);
  const bool post_norms =
      (s.arch == "gemma2" || s.arch == "gemma3") && mutation != Mutation::kNoPostNorm;
  const bool qk_norm = s.arch == "qwen3" || s.arch == "qwen3moe" || s.arch == "gemma3";
  const bool softcap = s.arch == "gemma2" && mutation != Mutation::kNoSoftcap;
  const double attn_cap = s.attn_softcap > 0 ? s.attn_softcap : 50.0;
  const double final_cap = s.final_softcap > 0 ? s.final_softcap : 30.0;
  const std::vector<float>* ff = s.rope_freqs ? &T["rope_freqs.weight"] : nullptr;
  double score_scale = 1.0 / std::sqrt(double(hd));
  if (s.rope_orig_ctx) {
    const bool use_long = n_ctx > s.rope_orig_ctx && mutation != Mutation::kShortFactors;
    ff = &T[use_long ? "rope_factors_long.weight" : "rope_factors_short.weight"];
    if (mutation != Mutation::kNoAttnFactor)
      score_scale *= double(s.rope_attn_factor) * s.rope_attn_factor;
  }
  std::vector<Vec> x(tokens.size(), Vec(E));
  const double embd_scale = gemma && mutation != Mutation::kNoEmbdScale ? std::sqrt(double(E)) : 1;
  for (size_t t = 0; t < tokens.size(); ++t)
    for (size_t i = 0; i < E; ++i)
      x[t][i] = T["token_embd.weight"][size_t(tokens[t]) * E + i] * embd_scale;
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const int W = mutation == Mutation::kNoWindow ? 0 : window(s, l);
    double base = s.rope_base, rscale = s.rope_linear > 0 ? 1.0 / s.rope_linear : 1.0;
    if (s.arch == "gemma3" && l % 6 < 5 && mutation != Mutation::kGlobalRope) {
      base = 10000.0;  // local layers
      rscale = 1.0;
    }
    std::vector<Vec> q(tokens.size()), k(tokens.size()), v(tokens.size());
    for (size_t t = 0; t < tokens.size(); ++t) {
      Vec xn = rmsnorm(x[t], T[p + "attn_norm.weight"]);
      if (s.arch == "phi3") {
        const auto& qkv = T[p + "attn_qkv.weight"];
        q[t] = matvec(qkv, xn, H * hd);
        k[t] = matvec(qkv, xn, HKV * hd, H * hd);
        v[t] = matvec(qkv, xn, HKV * hd, (H + HKV) * hd);
      } else {
        q[t] = matvec(T[p + "attn_q.weight"], xn, H * hd);
        k[t] = matvec(T[p + "attn_k.weight"], xn, HKV * hd);
        v[t] = matvec(T[p + "attn_v.weight"], xn, HKV * hd);
      }
      if (s.arch == "qwen2" || s.arch == "qwen2moe") {
        for (size_t i = 0; i < q[t].size(); ++i) q[t][i] += T[p + "attn_q.bias"][i];
        for (size_t i = 0; i < k[t].size(); ++i) k[t][i] += T[p + "attn_k.bias"][i];
        for (size_t i = 0; i < v[t].size(); ++i) v[t][i] += T[p + "attn_v.bias"][i];
      }
      if (qk_norm) {
        for (size_t h = 0; h < H; ++h) {
          Vec n = rmsnorm(q[t], T[p + "attn_q_norm.weight"], h * hd, hd);
          std::copy(n.begin(), n.end(), q[t].begin() + long(h * hd));
        }
        for (size_t h = 0; h < HKV; ++h) {
          Vec n = rmsnorm(k[t], T[p + "attn_k_norm.weight"], h * hd, hd);
          std::copy(n.begin(), n.end(), k[t].begin() + long(h * hd));
        }
      }
      rope(q[t], H, hd, int(t), neox, base, ff, rscale);
      rope(k[t], HKV, hd, int(t), neox, base, ff, rscale);
    }
    for (size_t t = 0; t < tokens.size(); ++t) {
      Vec att(H * hd, 0.0);
      const size_t lo = W > 0 && t + 1 > size_t(W) ? t + 1 - size_t(W) : 0;
      for (size_t h = 0; h < H; ++h) {
        const size_t kh = h / (H / HKV);
        Vec sc(t + 1, 0.0);
        double mx = -1e300;
        for (size_t j = lo; j <= t; ++j) {
          double d = 0;
          for (size_t i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][kh * hd + i];
          sc[j] = d * score_scale;
          if (softcap) sc[j] = attn_cap * std::tanh(sc[j] / attn_cap);
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (size_t j = lo; j <= t; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        for (size_t j = lo; j <= t; ++j)
          for (size_t i = 0; i < hd; ++i) att[h * hd + i] += sc[j] / sum * v[j][kh * hd + i];
      }
      Vec o = matvec(T[p + "attn_output.weight"], att, E);
      if (post_norms) o = rmsnorm(o, T[p + "post_attention_norm.weight"]);
      for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
      Vec xn = rmsnorm(x[t], T[p + "ffn_norm.weight"]);
      if (s.n_expert) {
        for (const auto& [e, w] : route(s, T[p + "ffn_gate_inp.weight"], xn, mutation)) {
          const size_t Fx = size_t(s.n_ff_exp), X = size_t(e);
          auto slice = [&](const char* name, size_t rows, size_t cols) {
            const auto& all = T[p + name];
            return std::vector<float>(all.begin() + long(X * rows * cols),
                                      all.begin() + long((X + 1) * rows * cols));
          };
          Vec g = matvec(slice("ffn_gate_exps.weight", Fx, E), xn, Fx);
          Vec u = matvec(slice("ffn_up_exps.weight", Fx, E), xn, Fx);
          for (size_t i = 0; i < Fx; ++i) g[i] = silu(g[i]) * u[i];
          Vec d = matvec(slice("ffn_down_exps.weight", E, Fx), g, E);
          for (size_t i = 0; i < E; ++i) x[t][i] += w * d[i];
        }
        if (s.n_ff_shexp && mutation != Mutation::kNoSharedExpert) {
          const size_t S = size_t(s.n_ff_shexp);
          Vec g = matvec(T[p + "ffn_gate_shexp.weight"], xn, S);
          Vec u = matvec(T[p + "ffn_up_shexp.weight"], xn, S);
          for (size_t i = 0; i < S; ++i) g[i] = silu(g[i]) * u[i];
          Vec d = matvec(T[p + "ffn_down_shexp.weight"], g, E);
          double gate = 0;
          for (size_t i = 0; i < E; ++i)
            gate += double(T[p + "ffn_gate_inp_shexp.weight"][i]) * xn[i];
          gate = 1.0 / (1.0 + std::exp(-gate));
          for (size_t i = 0; i < E; ++i) x[t][i] += gate * d[i];
        }
        continue;
      }
      Vec g, u;
      if (s.arch == "phi3") {  // gate rows, then up rows, in one tensor
        g = matvec(T[p + "ffn_up.weight"], xn, F);
        u = matvec(T[p + "ffn_up.weight"], xn, F, F);
      } else {
        g = matvec(T[p + "ffn_gate.weight"], xn, F);
        u = matvec(T[p + "ffn_up.weight"], xn, F);
      }
      const bool geglu = gemma && mutation != Mutation::kSilu;
      for (size_t i = 0; i < F; ++i) g[i] = (geglu ? gelu_tanh(g[i]) : silu(g[i])) * u[i];
      Vec d = matvec(T[p + "ffn_down.weight"], g, E);
      if (post_norms) d = rmsnorm(d, T[p + "post_ffw_norm.weight"]);
      for (size_t i = 0; i < E; ++i) x[t][i] += d[i];
    }
  }
  std::vector<Vec> logits;
  const auto& out = s.tied ? T["token_embd.weight"] : T["output.weight"];
  for (size_t t = 0; t < tokens.size(); ++t) {
    logits.push_back(matvec(out, rmsnorm(x[t], T["output_norm.weight"]), size_t(s.n_vocab)));
    if (softcap)
      for (double& z : logits.back()) z = final_cap * std::tanh(z / final_cap);
  }
  return logits;
}

struct Loaded {
  std::vector<uint8_t> bytes;
  std::unique_ptr<tf::Model> model;
};
inline Loaded load(const TinySpec& s, TensorMap* values) {
  Loaded l;
  l.bytes = build_tiny_model(s, values);
  l.model = tf::Model::from_gguf(
      tf::gguf::File::from_memory(l.bytes.data(), l.bytes.size(), "tiny.gguf"));
  return l;
}

inline const std::vector<int> kTokens = {3, 17, 5, 39, 0, 22, 8, 8, 31, 12};

// Where a check runs: the tokens (ids < 40), the context size and the cache's type.
struct CheckOptions {
  std::vector<int> tokens = kTokens;
  int n_ctx = 64;
  tf::DType kv_type = tf::DType::F16;
  double incremental_tol = 1e-4;  // token by token vs the batch, relative to 1 + |logit|
};

// Prompt in one batch (all logits), then the same tokens one at a time. Returns the worst
// difference from the reference; with a mutation only that (of the batch) is computed.
inline double check_against_reference(const TinySpec& s, double tol, const CheckOptions& o,
                                      Mutation mutation = Mutation::kNone) {
  TensorMap T;
  Loaded l = load(s, &T);
  const auto want = reference(s, T, o.tokens, mutation, o.n_ctx);
  tf::ContextParams cp;
  cp.n_ctx = o.n_ctx;
  cp.kv_type = o.kv_type;
  tf::Context ctx(*l.model, cp);
  tf::Batch b;
  for (size_t i = 0; i < o.tokens.size(); ++i) b.add(o.tokens[i], int32_t(i), 0, true);
  ctx.decode(b);
  double worst = 0;
  std::vector<std::vector<float>> batched;
  for (size_t t = 0; t < o.tokens.size(); ++t) {
    batched.emplace_back(ctx.logits(int64_t(t)), ctx.logits(int64_t(t)) + s.n_vocab);
    for (int i = 0; i < s.n_vocab; ++i)
      worst = std::max(worst, std::fabs(batched[t][size_t(i)] - want[t][size_t(i)]));
  }
  if (mutation != Mutation::kNone) return worst;
  EXPECT_LT(worst, tol) << s.arch << ": max |logit - reference|";

  // Token by token through the KV cache: the same values as the batch, up to rounding. Not
  // the same bits: like llama.cpp, products with a single activation row add their terms in
  // another order than batched ones for F32/F16 (tf::DotKernel), attention's included.
  tf::Context ctx2(*l.model, cp);
  for (size_t t = 0; t < o.tokens.size(); ++t) {
    b.clear();
    b.add(o.tokens[t], int32_t(t), 0, true);
    ctx2.decode(b);
    for (int i = 0; i < s.n_vocab; ++i) {
      const float one = ctx2.logits(0)[i], all = batched[t][size_t(i)];
      EXPECT_NEAR(one, all, o.incremental_tol * (1 + std::fabs(all)))
          << s.arch << ": incremental differs from batch at position " << t << ", logit " << i;
    }
  }
  return worst;
}

inline double check_against_reference(const TinySpec& s, double tol,
                                      tf::DType kv_type = tf::DType::F16,
                                      Mutation mutation = Mutation::kNone) {
  CheckOptions o;
  o.kv_type = kv_type;
  return check_against_reference(s, tol, o, mutation);
}

}  // namespace tf::test::ref
