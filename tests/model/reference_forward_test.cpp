// The forward pass of each supported architecture against the double-precision reference of
// reference_model.h, on random models. Also: batching must not change results.
#include <cmath>
#include <cstdio>

#include "backend/kernels/kernels.h"
#include "format/gguf.h"
#include "model/context.h"
#include "model/model.h"
#include "reference_model.h"
#include "test_util.h"
#include "tiny_model.h"

namespace {

using namespace tf::test::ref;
using tf::test::TensorMap;
using tf::test::TinySpec;

TEST(ReferenceForward, Llama) {
  check_against_reference({}, 2e-2);
}

// Mixtures of experts: 8 experts, 2 (or 3) per token, renormalized (Qwen3-MoE, Mixtral) or not.
TinySpec moe_spec(const std::string& arch) {
  TinySpec s;
  s.arch = arch;
  s.n_expert = 8;
  s.n_expert_used = 2;
  s.n_ff_exp = 32;
  s.n_ff = 32;
  return s;
}
TEST(ReferenceForward, Qwen3MoE) {
  check_against_reference(moe_spec("qwen3moe"), 2e-2);
}
TEST(ReferenceForward, LlamaWithExperts) {
  TinySpec s = moe_spec("llama");
  s.n_expert_used = 3;
  check_against_reference(s, 2e-2);
}
TEST(ReferenceForward, ExpertsWithoutRenormalization) {
  TinySpec s = moe_spec("qwen3moe");
  s.expert_norm = false;
  check_against_reference(s, 2e-2);
}
TEST(ReferenceForward, Q4_0Experts) {
  TinySpec s = moe_spec("qwen3moe");
  s.wtype = tf::DType::Q4_0;
  check_against_reference(s, 6e-2);
}
// Qwen2-MoE: biases, 4 experts of 8 per token not renormalized, and a gated shared expert.
TEST(ReferenceForward, Qwen2MoeSharedExpert) {
  TinySpec s = moe_spec("qwen2moe");
  s.n_expert_used = 4;
  s.expert_norm = false;
  s.n_ff_shexp = 48;
  s.rope_base = 1e6f;
  check_against_reference(s, 2e-2);
  EXPECT_GT(check_against_reference(s, 2e-2, tf::DType::F16, Mutation::kNoSharedExpert), 0.1);
}
// The comparison is sensitive to the routing: a reference that forgets to renormalize, or
// drops the second expert, is far off.
TEST(ReferenceForward, BrokenRoutingIsCaught) {
  const TinySpec s = moe_spec("qwen3moe");
  EXPECT_GT(check_against_reference(s, 2e-2, tf::DType::F16, Mutation::kNoRenorm), 0.1);
  EXPECT_GT(check_against_reference(s, 2e-2, tf::DType::F16, Mutation::kSecondBestDropped), 0.1);
}
// A MoE model reports the bytes a token reads (the router and 2 of 8 experts), not all of them:
// F32 weights, n_embd 32, 4 heads of 8 (2 KV heads), vocab 40.
TEST(ModelLoad, ExpertsCountActiveBytes) {
  const TinySpec s = moe_spec("qwen3moe");
  Loaded moe = load(s, nullptr);
  const auto& c = moe.model->config();
  EXPECT_EQ(c.n_expert, 8);
  EXPECT_EQ(c.n_expert_used, 2);
  EXPECT_TRUE(c.expert_weights_norm);
  const size_t E = 32, KV = 16, Fx = 32, X = 8;
  const size_t attn = E * E + 2 * E * KV + E * E, router = E * X, experts = 3 * Fx * E * X;
  const size_t per_layer = (attn + router + experts * 2 / X) * 4;
  EXPECT_EQ(moe.model->weight_bytes(), 40 * E * 4 + 2 * per_layer);
  EXPECT_EQ(moe.model->matmul_params(), int64_t((40 * E * 4 + 2 * per_layer) / 4));
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
void check_tiles_at_load(const TinySpec& s, tf::DType t, double ref_tol, int64_t want_tiled = 0) {
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
  EXPECT_EQ(tiled->tiled_matrices(), want_tiled ? want_tiled : 7 * s.n_layer + 1);
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
      // (Only where tile kernels run: lower levels untile and use the row kernels, whose single
      // and batched products add in different orders.)
      if (tf::kernels::preferred_layout(t, 64, s.n_embd) != tf::kernels::Layout::kRows)
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

TEST(ReferenceForward, Q6_KTilesAtLoadMatchRows) {
  TinySpec s;
  s.wtype = tf::DType::Q6_K;
  s.n_embd = 256;
  s.n_ff = 256;
  check_tiles_at_load(s, tf::DType::Q6_K, 1e-1);
}

TEST(ReferenceForward, Q4_0ExpertsTiledAtLoad) {
  TinySpec s = moe_spec("qwen3moe");
  s.wtype = tf::DType::Q4_0;
  s.n_embd = 64;
  // Per layer q, k, v, o and 3 matrices of each of the 8 experts; and the output.
  check_tiles_at_load(s, tf::DType::Q4_0, 0.3, 2 * (4 + 3 * 8) + 1);  // 8-bit activations: 0.16
}
