// The forward pass against a plain double-precision reference written independently here
// (full causal attention recomputed for every position, RoPE angles from pow()), on random
// models of each supported architecture. Also: batching must not change results.
#include <cmath>
#include <cstdio>

#include "backend/kernels/kernels.h"
#include "format/gguf.h"
#include "model/context.h"
#include "model/model.h"
#include "test_util.h"
#include "tiny_model.h"

namespace {

using tf::test::TensorMap;
using tf::test::TinySpec;
using Vec = std::vector<double>;

// y = W x with W stored as rows of `cols` floats.
Vec matvec(const std::vector<float>& W, const Vec& x, size_t rows) {
  const size_t cols = x.size();
  Vec y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) y[r] += double(W[r * cols + c]) * x[c];
  return y;
}

Vec rmsnorm(const Vec& x, const std::vector<float>& w, size_t off = 0, size_t n = 0) {
  if (n == 0) n = x.size();
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double k = 1.0 / std::sqrt(ss / double(n) + 1e-5);
  Vec y(n);
  for (size_t i = 0; i < n; ++i) y[i] = x[off + i] * k * w[i];
  return y;
}

void rope(Vec& v, size_t n_heads, size_t hd, int pos, bool neox, double base,
          const std::vector<float>* ff) {
  for (size_t h = 0; h < n_heads; ++h)
    for (size_t i = 0; i < hd / 2; ++i) {
      double theta = pos * std::pow(base, -2.0 * double(i) / double(hd));
      if (ff) theta /= (*ff)[i];
      const size_t a = h * hd + (neox ? i : 2 * i), b = h * hd + (neox ? i + hd / 2 : 2 * i + 1);
      const double x0 = v[a], x1 = v[b];
      v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
      v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
    }
}

// Logits at every position of `tokens`.
std::vector<Vec> reference(const TinySpec& s, TensorMap& T, const std::vector<int>& tokens) {
  const size_t E = size_t(s.n_embd), H = size_t(s.n_head), HKV = size_t(s.n_head_kv);
  const size_t hd = s.head_dim ? size_t(s.head_dim) : E / H, F = size_t(s.n_ff);
  const bool neox = s.arch != "llama";
  const std::vector<float>* ff = s.rope_freqs ? &T["rope_freqs.weight"] : nullptr;
  std::vector<Vec> x(tokens.size(), Vec(E));
  for (size_t t = 0; t < tokens.size(); ++t)
    for (size_t i = 0; i < E; ++i) x[t][i] = T["token_embd.weight"][size_t(tokens[t]) * E + i];
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    std::vector<Vec> q(tokens.size()), k(tokens.size()), v(tokens.size());
    for (size_t t = 0; t < tokens.size(); ++t) {
      Vec xn = rmsnorm(x[t], T[p + "attn_norm.weight"]);
      q[t] = matvec(T[p + "attn_q.weight"], xn, H * hd);
      k[t] = matvec(T[p + "attn_k.weight"], xn, HKV * hd);
      v[t] = matvec(T[p + "attn_v.weight"], xn, HKV * hd);
      if (s.arch == "qwen2") {
        for (size_t i = 0; i < q[t].size(); ++i) q[t][i] += T[p + "attn_q.bias"][i];
        for (size_t i = 0; i < k[t].size(); ++i) k[t][i] += T[p + "attn_k.bias"][i];
        for (size_t i = 0; i < v[t].size(); ++i) v[t][i] += T[p + "attn_v.bias"][i];
      }
      if (s.arch == "qwen3") {
        for (size_t h = 0; h < H; ++h) {
          Vec n = rmsnorm(q[t], T[p + "attn_q_norm.weight"], h * hd, hd);
          std::copy(n.begin(), n.end(), q[t].begin() + long(h * hd));
        }
        for (size_t h = 0; h < HKV; ++h) {
          Vec n = rmsnorm(k[t], T[p + "attn_k_norm.weight"], h * hd, hd);
          std::copy(n.begin(), n.end(), k[t].begin() + long(h * hd));
        }
      }
      rope(q[t], H, hd, int(t), neox, s.rope_base, ff);
      rope(k[t], HKV, hd, int(t), neox, s.rope_base, ff);
    }
    for (size_t t = 0; t < tokens.size(); ++t) {
      Vec att(H * hd, 0.0);
      for (size_t h = 0; h < H; ++h) {
        const size_t kh = h / (H / HKV);
        Vec sc(t + 1);
        double mx = -1e300;
        for (size_t j = 0; j <= t; ++j) {
          double d = 0;
          for (size_t i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][kh * hd + i];
          sc[j] = d / std::sqrt(double(hd));
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (double& e : sc) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j <= t; ++j)
          for (size_t i = 0; i < hd; ++i) att[h * hd + i] += sc[j] / sum * v[j][kh * hd + i];
      }
      Vec o = matvec(T[p + "attn_output.weight"], att, E);
      for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
      Vec xn = rmsnorm(x[t], T[p + "ffn_norm.weight"]);
      Vec g = matvec(T[p + "ffn_gate.weight"], xn, F), u = matvec(T[p + "ffn_up.weight"], xn, F);
      for (size_t i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      Vec d = matvec(T[p + "ffn_down.weight"], g, E);
      for (size_t i = 0; i < E; ++i) x[t][i] += d[i];
    }
  }
  std::vector<Vec> logits;
  const auto& out = s.tied ? T["token_embd.weight"] : T["output.weight"];
  for (size_t t = 0; t < tokens.size(); ++t)
    logits.push_back(matvec(out, rmsnorm(x[t], T["output_norm.weight"]), size_t(s.n_vocab)));
  return logits;
}

struct Loaded {
  std::vector<uint8_t> bytes;
  std::unique_ptr<tf::Model> model;
};
Loaded load(const TinySpec& s, TensorMap* values) {
  Loaded l;
  l.bytes = tf::test::build_tiny_model(s, values);
  l.model = tf::Model::from_gguf(
      tf::gguf::File::from_memory(l.bytes.data(), l.bytes.size(), "tiny.gguf"));
  return l;
}

const std::vector<int> kTokens = {3, 17, 5, 39, 0, 22, 8, 8, 31, 12};

// Prompt in one batch (all logits), then the same tokens one at a time.
void check_against_reference(const TinySpec& s, double tol, tf::DType kv_type = tf::DType::F16) {
  TensorMap T;
  Loaded l = load(s, &T);
  const auto want = reference(s, T, kTokens);
  tf::ContextParams cp;
  cp.n_ctx = 64;
  cp.kv_type = kv_type;
  tf::Context ctx(*l.model, cp);
  tf::Batch b;
  for (size_t i = 0; i < kTokens.size(); ++i) b.add(kTokens[i], int32_t(i), 0, true);
  ctx.decode(b);
  double worst = 0;
  std::vector<std::vector<float>> batched;
  for (size_t t = 0; t < kTokens.size(); ++t) {
    batched.emplace_back(ctx.logits(int64_t(t)), ctx.logits(int64_t(t)) + s.n_vocab);
    for (int i = 0; i < s.n_vocab; ++i)
      worst = std::max(worst, std::fabs(batched[t][size_t(i)] - want[t][size_t(i)]));
  }
  EXPECT_LT(worst, tol) << s.arch << ": max |logit - reference|";

  // Token by token through the KV cache: the same values as the batch, up to rounding. Not
  // the same bits: like llama.cpp, products with a single activation row add their terms in
  // another order than batched ones for F32/F16 (tf::DotKernel), attention's included.
  tf::Context ctx2(*l.model, cp);
  for (size_t t = 0; t < kTokens.size(); ++t) {
    b.clear();
    b.add(kTokens[t], int32_t(t), 0, true);
    ctx2.decode(b);
    for (int i = 0; i < s.n_vocab; ++i) {
      const float one = ctx2.logits(0)[i], all = batched[t][size_t(i)];
      ASSERT_NEAR(one, all, 1e-4 * (1 + std::fabs(all)))
          << s.arch << ": incremental differs from batch at position " << t << ", logit " << i;
    }
  }
}

TEST(ReferenceForward, Llama) {
  check_against_reference({}, 2e-2);
}
TEST(ReferenceForward, LlamaTiedWithRopeFreqs) {
  TinySpec s;
  s.tied = true;
  s.rope_freqs = true;
  check_against_reference(s, 2e-2);
}
TEST(ReferenceForward, Qwen2Biases) {
  TinySpec s;
  s.arch = "qwen2";
  s.rope_base = 1e6f;
  check_against_reference(s, 2e-2);
}
TEST(ReferenceForward, Qwen3QkNormWideHeads) {
  TinySpec s;
  s.arch = "qwen3";
  s.head_dim = 16;  // n_head * head_dim != n_embd, as in real Qwen3 models
  check_against_reference(s, 2e-2);
}
TEST(ReferenceForward, Q8_0Weights) {
  TinySpec s;
  s.wtype = tf::DType::Q8_0;
  s.n_ff = 64;  // every row length a multiple of the 32-element block
  // The reference sees the dequantized weights; we also quantize activations to 8 bits.
  check_against_reference(s, 6e-2);
}

// A Q8_0 KV cache: heads narrower than a block (16 of 32: key slices dequantized) and heads
// of whole blocks (32: integer block dots with q quantized), against the float reference.
TEST(ReferenceForward, Q8_0KvCacheNarrowHeads) {
  TinySpec s;
  s.n_embd = 64;  // 4 heads of 16, 2 KV heads: 32 values per position
  s.n_ff = 96;
  check_against_reference(s, 6e-2, tf::DType::Q8_0);
}
TEST(ReferenceForward, Q8_0KvCacheWholeBlockHeads) {
  TinySpec s;
  s.arch = "qwen3";
  s.head_dim = 32;
  check_against_reference(s, 6e-2, tf::DType::Q8_0);
}

TEST(KvCache, Q8_0HalvesMemoryAndNeedsWholeBlocks) {
  tf::KvCache f16(2, 1, 64, 64, tf::DType::F16), q8(2, 1, 64, 64, tf::DType::Q8_0);
  EXPECT_EQ(f16.bytes(), size_t(2 * 64 * 64 * 2 * 2));
  EXPECT_EQ(q8.bytes(), size_t(2 * 64 * 2 * 34 * 2));  // two 34-byte blocks per row
  try {
    tf::KvCache bad(2, 1, 64, 48, tf::DType::Q8_0);
    ADD_FAILURE() << "kv_dim 48 accepted for q8_0";
  } catch (const tf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tf::KvCache(2, 1, 64, 64, tf::DType::Q4_0), tf::Error);
  EXPECT_EQ(tf::parse_kv_type("q8_0"), tf::DType::Q8_0);
  EXPECT_EQ(tf::parse_kv_type("f16"), tf::DType::F16);
  EXPECT_THROW(tf::parse_kv_type("q4"), tf::Error);
}

// Two sequences interleaved in one batch give exactly what each gives alone.
TEST(ReferenceForward, MultiSequenceBatch) {
  Loaded l = load({}, nullptr);
  tf::ContextParams cp;
  cp.n_ctx = 32;
  cp.n_seq = 2;
  const std::vector<int> a = {1, 2, 3, 4}, c = {9, 8, 7};
  tf::Context solo(*l.model, cp), both(*l.model, cp);
  tf::Batch b;
  for (size_t i = 0; i < c.size(); ++i) b.add(c[i], int32_t(i), 1, i + 1 == c.size());
  solo.decode(b);
  std::vector<float> want(solo.logits(0), solo.logits(0) + 40);
  b.clear();
  for (size_t i = 0; i < 4; ++i) {
    b.add(a[i], int32_t(i), 0, false);
    if (i < c.size()) b.add(c[i], int32_t(i), 1, i + 1 == c.size());
  }
  both.decode(b);
  std::vector<float> got(both.logits(0), both.logits(0) + 40);
  EXPECT_EQ(got, want);
}

TEST(Context, RejectsBadBatches) {
  Loaded l = load({}, nullptr);
  tf::ContextParams cp;
  cp.n_ctx = 8;
  tf::Context ctx(*l.model, cp);
  tf::Batch b;
  b.add(40, 0, 0, true);  // id == n_vocab
  EXPECT_THROW(ctx.decode(b), tf::Error);
  b.clear();
  b.add(1, 8, 0, true);  // position == n_ctx
  EXPECT_THROW(ctx.decode(b), tf::Error);
  b.clear();
  b.add(1, 3, 0, true);  // gap: positions 0..2 never filled
  EXPECT_THROW(ctx.decode(b), tf::Error);
  b.clear();
  b.add(1, 0, 1, true);  // only one sequence slot
  EXPECT_THROW(ctx.decode(b), tf::Error);
}

TEST(ModelLoad, RejectsWrongShapesAndArchitectures) {
  TinySpec s;
  auto bytes = tf::test::build_tiny_model(s, nullptr);
  // An architecture we do not know.
  {
    tf::gguf::Writer w;
    w.set_string("general.architecture", "mamba");
    auto b = w.to_bytes();
    try {
      tf::Model::from_gguf(tf::gguf::File::from_memory(b.data(), b.size(), "m.gguf"));
      FAIL() << "expected an error";
    } catch (const tf::Error& e) {
      EXPECT_NE(std::string(e.what()).find("unsupported architecture 'mamba'"), std::string::npos)
          << e.what();
    }
  }
  // Metadata that contradicts the tensor shapes.
  {
    auto f = tf::gguf::File::from_memory(bytes.data(), bytes.size(), "t.gguf");
    tf::gguf::Writer w;
    for (const auto& [k, v] : f->metadata()) w.set(k, v);
    w.set_u32("llama.feed_forward_length", 64);
    for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.dims, t.data, t.nbytes);
    auto b = w.to_bytes();
    EXPECT_THROW(tf::Model::from_gguf(tf::gguf::File::from_memory(b.data(), b.size(), "t.gguf")),
                 tf::Error);
  }
}

}  // namespace

// Matrices rewritten into tiles at load (Model::load on a copied file) against the rows read
// in place (from_memory) and the reference forward, for a batch and for single tokens, at every
// kernel level (lower levels untile each tile first). The two layouts add in different float
// orders, and a last-bit difference can flip an 8-bit activation code downstream, so they agree
// only to quantization noise; but a token's result through the tiles is the same whether it is
// decoded alone or in a batch (their kernels add in the same order for 1 or 16 tokens). The
// output matrix (40 rows) has two tiles and 8 plain rows.
void check_tiles_at_load(const TinySpec& s, tf::DType t, double ref_tol) {
  TensorMap T;
  Loaded rows = load(s, &T);
  const std::string path = ::testing::TempDir() + "tiles_" + tf::dtype_name(t) + ".gguf";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(rows.bytes.data(), 1, rows.bytes.size(), f), rows.bytes.size());
    std::fclose(f);
  }
  auto tiled = tf::Model::load(path);
  EXPECT_EQ(rows.model->tiled_matrices(), 0);
  if (tf::kernels::preferred_layout(t, 64, s.n_embd) == tf::kernels::Layout::kRows) {
    EXPECT_EQ(tiled->tiled_matrices(), 0);
    GTEST_SKIP() << "no tile kernels at this CPU's level: nothing is tiled";
  }
  EXPECT_EQ(tiled->tiled_matrices(), 7 * s.n_layer + 1);
  EXPECT_EQ(tf::Model::load(path, /*use_mmap=*/true)->tiled_matrices(), 0);  // mapped: rows
  const auto want = reference(s, T, kTokens);
  const tf::kernels::Isa saved = tf::kernels::active();
  for (tf::kernels::Isa isa :
       {tf::kernels::Isa::kAvx512, tf::kernels::Isa::kAvx2, tf::kernels::Isa::kScalar}) {
    tf::kernels::set_active(isa);
    SCOPED_TRACE(tf::kernels::isa_name(tf::kernels::active()));
    tf::ContextParams cp;
    cp.n_ctx = 64;
    std::vector<std::vector<float>> batched;  // tiled, whole prompt in one batch
    for (bool batch : {true, false}) {
      tf::Context a(*rows.model, cp), b(*tiled, cp);
      double worst_rows = 0, worst_ref = 0, worst_batch = 0;
      for (size_t p = 0; p < kTokens.size(); ++p) {
        tf::Batch bt;
        if (batch) {
          if (p > 0) break;
          for (size_t i = 0; i < kTokens.size(); ++i) bt.add(kTokens[i], int32_t(i), 0, true);
        } else {
          bt.add(kTokens[p], int32_t(p), 0, true);
        }
        a.decode(bt);
        b.decode(bt);
        for (size_t k = 0; k < bt.size(); ++k) {
          const size_t pos = batch ? k : p;
          const float* y = b.logits(int64_t(k));
          if (batch) batched.emplace_back(y, y + s.n_vocab);
          for (int i = 0; i < s.n_vocab; ++i) {
            const float x = a.logits(int64_t(k))[i];
            worst_rows = std::max(worst_rows, double(std::fabs(x - y[i])));
            worst_ref = std::max(worst_ref, std::fabs(y[i] - want[pos][size_t(i)]));
            worst_batch = std::max(worst_batch, double(std::fabs(y[i] - batched[pos][size_t(i)])) /
                                                    (1 + std::fabs(y[i])));
          }
        }
      }
      const char* what = batch ? "batch" : "single tokens";
      EXPECT_LT(worst_rows, ref_tol) << what << ": tiles vs rows";
      EXPECT_LT(worst_ref, ref_tol) << what << ": tiles vs reference";
      EXPECT_LT(worst_batch, 1e-4) << what << ": tiles, alone vs batched";
    }
  }
  tf::kernels::set_active(saved);
  std::remove(path.c_str());
}

TEST(ReferenceForward, Q4_0TilesAtLoadMatchRows) {
  TinySpec s;
  s.wtype = tf::DType::Q4_0;
  s.n_embd = 64;
  s.n_ff = 96;
  check_tiles_at_load(s, tf::DType::Q4_0, 1e-1);
}

TEST(ReferenceForward, Q4_KTilesAtLoadMatchRows) {
  TinySpec s;
  s.wtype = tf::DType::Q4_K;
  s.n_embd = 256;  // every row length a multiple of the 256-element super-block
  s.n_ff = 256;
  check_tiles_at_load(s, tf::DType::Q4_K, 1e-1);
}
