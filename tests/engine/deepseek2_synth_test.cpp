// A synthetic deepseek2 model made by `synth` (V3-like: q latent, sigmoid gating with the
// selection bias, expert groups, shared experts, a dense first layer) loads, generates
// deterministically, caches only the latent, reports the bytes a token reads (below the
// file's size), and runs under bench and the scheduler (several sequences batched).
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <string>

#include "model/model.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"
#include "tools/synth.h"

TEST(Deepseek2Synth, LoadsGeneratesCachesTheLatentAndReadsOnlyActiveExperts) {
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-llama-spm.gguf");
  const auto path =
      std::filesystem::temp_directory_path() / ("tf_ds2_" + std::to_string(::getpid()) + ".gguf");
  tf::tools::SynthOptions so;
  so.out_path = path.string();
  so.vocab_path = tf::test::shared_path("models/vocab/ggml-vocab-llama-spm.gguf");
  so.arch = "deepseek2";
  so.dim = 256;
  so.ffn = 256;
  so.layers = 3;
  so.heads = 4;
  so.q_lora = 64;
  so.kv_lora = 64;
  so.rope_dim = 32;
  so.nope_dim = 32;
  so.v_dim = 32;
  so.experts = 8;
  so.experts_used = 2;
  so.expert_ffn = 64;
  so.shared_experts = 2;
  so.expert_groups = 4;
  so.expert_groups_used = 2;
  so.gating = "sigmoid";
  so.dense_lead = 1;
  so.type = "q4_0";
  so.progress = false;
  const tf::tools::SynthResult made = tf::tools::synth_model(so);

  tf::LoadOptions lo;
  lo.n_ctx = 64;
  lo.n_threads = 2;
  auto engine = tf::Engine::load(path.string(), lo);
  const tf::ModelConfig& c = engine->model().config();
  EXPECT_EQ(c.arch, tf::Arch::DEEPSEEK2);
  EXPECT_EQ(c.q_lora_rank, 64);
  EXPECT_EQ(c.kv_lora_rank, 64);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 32);
  EXPECT_EQ(c.n_ff_shexp, 128);
  EXPECT_TRUE(c.expert_gating_sigmoid);
  EXPECT_EQ(c.n_expert_group, 4);
  EXPECT_FALSE(engine->model().layer(1).exp_probs_b.empty());
  // The cache: one row of kv_lora + rope fp16 values per position and layer.
  EXPECT_EQ(engine->kv_cache_bytes(), size_t(64 * 3 * (64 + 32) * 2));
  EXPECT_LT(engine->model().weight_bytes(), made.file_bytes);
  // All 8 experts per token instead of 2: 6 x 3 experts of 64 x 256 Q4_0 more in each of the 2
  // MoE layers.
  so.experts_used = 8;
  so.expert_groups_used = 4;
  so.out_path = path.string() + ".all";
  tf::tools::synth_model(so);
  const auto all = tf::Model::load(so.out_path);
  EXPECT_EQ(all->weight_bytes() - engine->model().weight_bytes(),
            size_t(6 * 3 * 2 * 64 * 256 / 32 * 18));
  std::filesystem::remove(so.out_path);

  tf::GenerateOptions go;
  go.n_predict = 6;
  go.sampling.temperature = 0;
  go.ignore_eos = true;
  const auto a = engine->generate("Once upon a time", go);
  const auto b = engine->generate("Once upon a time", go);
  EXPECT_EQ(a.tokens.size(), 6u);
  EXPECT_EQ(a.tokens, b.tokens);

  tf::BenchParams bp;
  bp.n_prompt = 16;
  bp.n_gen = 4;
  bp.n_seq = 4;
  bp.reps = 1;
  bp.n_threads = 2;
  bp.measure_bandwidth = false;
  const tf::BenchResult r = tf::run_bench(engine->model(), bp);
  EXPECT_GT(r.tg.mean, 0);
  // A Q8_0 KV cache is refused with an error, not a crash.
  tf::LoadOptions q8 = lo;
  q8.kv_type = tf::DType::Q8_0;
  EXPECT_THROW(tf::Engine::load(path.string(), q8), tf::Error);
  std::filesystem::remove(path);
}
