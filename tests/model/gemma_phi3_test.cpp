// Gemma (1, 2, 3) and Phi-3 against the double-precision reference of reference_model.h:
// GeGLU, embedding scaling, post-norms, soft-capping, sliding windows (skipping whole cache
// blocks), gemma3's local RoPE, phi3's fused products and longrope. Each feature also has a
// mutation: the reference without it must be far from the engine.
#include <gtest/gtest.h>

#include <cstdio>

#include "format/gguf.h"
#include "model/config.h"
#include "reference_model.h"
#include "tiny_model.h"
#include "util/error.h"

namespace {

using namespace tf::test::ref;
using tf::test::TensorMap;
using tf::test::TinySpec;

// 100 tokens: longer than two 64-position cache blocks, so that a window of 20 skips whole
// blocks in both the prompt (tiled) and the per-token attention paths.
CheckOptions long_prompt(tf::DType kv = tf::DType::F16) {
  CheckOptions o;
  o.tokens.clear();
  for (int t = 0; t < 100; ++t) o.tokens.push_back((t * 7 + 3 + t / 9) % 40);
  o.n_ctx = 128;
  o.kv_type = kv;
  o.incremental_tol = 2e-3;  // 100 positions of fp16 rounding, in other orders
  return o;
}

TinySpec gemma_spec(const std::string& arch) {
  TinySpec s;
  s.arch = arch;
  s.tied = true;    // gemma's files have no output.weight
  s.head_dim = 16;  // n_head * head_dim != n_embd, as in the real models
  s.n_swa = 20;
  if (arch == "gemma2") {
    s.attn_softcap = 1.5f;  // low enough to bend the tiny model's scores and logits
    s.final_softcap = 3.0f;
  }
  if (arch == "gemma3") {
    s.n_layer = 6;  // 5 sliding layers, then a global one
    s.rope_base = 1e6f;
    s.rope_linear = 8.f;
  }
  return s;
}

TEST(Gemma, Gemma1) {
  check_against_reference(gemma_spec("gemma"), 2e-2);
  EXPECT_GT(check_against_reference(gemma_spec("gemma"), 2e-2, tf::DType::F16, Mutation::kSilu),
            0.1);
  EXPECT_GT(
      check_against_reference(gemma_spec("gemma"), 2e-2, tf::DType::F16, Mutation::kNoEmbdScale),
      0.1);
}

TEST(Gemma, Gemma2SoftcapsPostNormsWindow) {
  const TinySpec s = gemma_spec("gemma2");
  check_against_reference(s, 2e-2, long_prompt());
  for (Mutation m : {Mutation::kNoSoftcap, Mutation::kNoWindow, Mutation::kNoPostNorm,
                     Mutation::kSilu, Mutation::kNoEmbdScale})
    EXPECT_GT(check_against_reference(s, 2e-2, long_prompt(), m), 0.1)
        << "mutation " << int(m) << " went unnoticed";
}

TEST(Gemma, Gemma3LocalRopeQkNormWindow) {
  const TinySpec s = gemma_spec("gemma3");
  check_against_reference(s, 2e-2, long_prompt());
  for (Mutation m : {Mutation::kGlobalRope, Mutation::kNoWindow, Mutation::kNoPostNorm})
    EXPECT_GT(check_against_reference(s, 2e-2, long_prompt(), m), 0.1)
        << "mutation " << int(m) << " went unnoticed";
}

// The window over a Q8_0 cache: heads of whole blocks (32) score in integers. Two layers, both
// sliding: the cache's 8-bit error grows with depth.
TEST(Gemma, Gemma3WindowOverQ8_0Cache) {
  TinySpec s = gemma_spec("gemma3");
  s.head_dim = 32;
  s.n_layer = 2;
  check_against_reference(s, 0.15, long_prompt(tf::DType::Q8_0));
  const double off =
      check_against_reference(s, 0.15, long_prompt(tf::DType::Q8_0), Mutation::kNoWindow);
  std::printf("gemma3 over a q8_0 cache, reference without the window: %.3f off\n", off);
  EXPECT_GT(off, 0.5);
}

TEST(Gemma, Gemma2Q4_0Weights) {
  TinySpec s = gemma_spec("gemma2");
  s.wtype = tf::DType::Q4_0;
  s.n_ff = 64;
  // 8-bit activations: a rounding flipped by the attention paths' fp16 orders moves a logit.
  CheckOptions o = long_prompt();
  o.incremental_tol = 0.1;  // seen: one position of 100 at 0.066, both within 0.14 of the reference
  check_against_reference(s, 0.2, o);
}

// Defaults when the file says nothing: Gemma 2's window of 4096 and caps of 50 and 30, Gemma
// 3's window of 1024 and local RoPE base 10000; and the sliding layers.
TEST(Gemma, ConfigDefaultsAndPattern) {
  TinySpec s = gemma_spec("gemma2");
  s.n_swa = 0;
  s.attn_softcap = s.final_softcap = 0;
  Loaded g2 = load(s, nullptr);
  const tf::ModelConfig& c2 = g2.model->config();
  EXPECT_EQ(c2.n_swa, 4096);
  EXPECT_FLOAT_EQ(c2.attn_softcap, 50.f);
  EXPECT_FLOAT_EQ(c2.final_softcap, 30.f);
  EXPECT_TRUE(c2.is_swa_layer(0));
  EXPECT_FALSE(c2.is_swa_layer(1));
  EXPECT_TRUE(c2.post_norms);
  EXPECT_FLOAT_EQ(c2.attn_scale, 0.25f);  // 1/sqrt(head_dim 16)
  TinySpec s3 = gemma_spec("gemma3");
  s3.n_swa = 0;
  Loaded g3 = load(s3, nullptr);
  const tf::ModelConfig& c3 = g3.model->config();
  EXPECT_EQ(c3.n_swa, 1024);
  EXPECT_FLOAT_EQ(c3.rope_freq_base_swa, 10000.f);
  EXPECT_FLOAT_EQ(c3.rope_freq_scale, 0.125f);
  for (int l = 0; l < 6; ++l) EXPECT_EQ(c3.is_swa_layer(l), l != 5) << l;
  EXPECT_FLOAT_EQ(c3.attn_softcap, 0.f);
}

// Two sequences interleaved in one batch, past the window, give what each gives alone.
TEST(Gemma, WindowWithInterleavedSequences) {
  const TinySpec s = gemma_spec("gemma2");
  Loaded l = load(s, nullptr);
  tf::ContextParams cp;
  cp.n_ctx = 128;
  cp.n_seq = 2;
  const CheckOptions o = long_prompt();
  tf::Context solo(*l.model, cp), both(*l.model, cp);
  tf::Batch b;
  for (size_t i = 0; i < 90; ++i) b.add(o.tokens[i], int32_t(i), 1, i == 89);
  solo.decode(b);
  const std::vector<float> want(solo.logits(0), solo.logits(0) + s.n_vocab);
  b.clear();
  for (size_t i = 0; i < 90; ++i) {
    b.add(o.tokens[99 - i], int32_t(i), 0, false);
    b.add(o.tokens[i], int32_t(i), 1, i == 89);
  }
  both.decode(b);
  const std::vector<float> got(both.logits(0), both.logits(0) + s.n_vocab);
  for (int i = 0; i < s.n_vocab; ++i) EXPECT_NEAR(got[size_t(i)], want[size_t(i)], 1e-4) << i;
}

TEST(Gemma, RejectsBadWindowsAndCaps) {
  for (const char* key : {"gemma2.attention.sliding_window", "gemma2.attn_logit_softcapping"}) {
    TinySpec s = gemma_spec("gemma2");
    const std::string k = key;
    s.edit = [k](tf::gguf::Writer& w) {
      if (k.find("window") != std::string::npos)
        w.set_u32(k, 0);
      else
        w.set_f32(k, -1.f);
    };
    try {
      load(s, nullptr);
      ADD_FAILURE() << key << ": accepted";
    } catch (const tf::Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

TinySpec phi3_spec() {
  TinySpec s;
  s.arch = "phi3";
  s.n_swa = 20;
  s.rope_orig_ctx = 32;
  s.rope_attn_factor = 1.25f;
  return s;
}

// Fused QKV and gate/up, a window on every layer, longrope: at a context of 128 (> the
// original 32) the long factors and the magnitude factor.
TEST(Phi3, FusedLongropeWindow) {
  const TinySpec s = phi3_spec();
  check_against_reference(s, 2e-2, long_prompt());
  for (Mutation m : {Mutation::kShortFactors, Mutation::kNoAttnFactor, Mutation::kNoWindow})
    EXPECT_GT(check_against_reference(s, 2e-2, long_prompt(), m), 0.1)
        << "mutation " << int(m) << " went unnoticed";
}

// At a context within the original one: the short factors.
TEST(Phi3, ShortContextUsesShortFactors) {
  const TinySpec s = phi3_spec();
  CheckOptions o;
  o.n_ctx = 32;
  check_against_reference(s, 2e-2, o);
}

// Row slices of the fused tensors are tiled one by one at load (Q4_0 with 16-row tiles: q 64
// rows, k and v 32 each, gate and up 96 each) and still match the reference and the rows.
TEST(Phi3, FusedSlicesTiledAtLoad) {
  TinySpec s = phi3_spec();
  s.wtype = tf::DType::Q4_0;
  s.n_embd = 64;
  s.n_ff = 96;
  TensorMap T;
  Loaded rows = load(s, &T);
  const std::string path = ::testing::TempDir() + "phi3_tiles.gguf";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(rows.bytes.data(), 1, rows.bytes.size(), f), rows.bytes.size());
    std::fclose(f);
  }
  auto tiled = tf::Model::load(path);
  if (tf::kernels::preferred_layout(tf::DType::Q4_0, 64, 64) != tf::kernels::Layout::kRows)
    EXPECT_EQ(tiled->tiled_matrices(), 2 * 7 + 1);  // q k v o gate up down, per layer
  const CheckOptions o = long_prompt();
  const auto want = reference(s, T, o.tokens, Mutation::kNone, o.n_ctx);
  tf::ContextParams cp;
  cp.n_ctx = o.n_ctx;
  tf::Context a(*rows.model, cp), b(*tiled, cp);
  tf::Batch bt;
  for (size_t i = 0; i < o.tokens.size(); ++i) bt.add(o.tokens[i], int32_t(i), 0, true);
  a.decode(bt);
  b.decode(bt);
  double worst_ref = 0, worst_rows = 0;
  for (size_t t = 0; t < o.tokens.size(); ++t)
    for (int i = 0; i < s.n_vocab; ++i) {
      worst_ref = std::max(worst_ref, std::fabs(b.logits(int64_t(t))[i] - want[t][size_t(i)]));
      worst_rows = std::max(worst_rows,
                            double(std::fabs(b.logits(int64_t(t))[i] - a.logits(int64_t(t))[i])));
    }
  EXPECT_LT(worst_ref, 0.3);
  EXPECT_LT(worst_rows, 1e-3);
}

}  // namespace
