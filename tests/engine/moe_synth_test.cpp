// A synthetic Qwen3-MoE model made by `synth` loads, generates, and reports the bytes a token
// reads (the router and its experts), far below the file's size; bench's batched decode runs
// on it.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <string>

#include "model/model.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"
#include "tools/synth.h"

TEST(Experts, SynthQwen3MoeLoadsGeneratesAndReadsOnlyActiveExperts) {
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-llama-spm.gguf");
  const auto path =
      std::filesystem::temp_directory_path() / ("tf_moe_" + std::to_string(::getpid()) + ".gguf");
  tf::tools::SynthOptions so;
  so.out_path = path.string();
  so.vocab_path = tf::test::shared_path("models/vocab/ggml-vocab-llama-spm.gguf");
  so.arch = "qwen3moe";
  so.dim = 256;
  so.ffn = 128;
  so.layers = 2;
  so.heads = 4;
  so.kv_heads = 2;
  so.experts = 16;
  so.experts_used = 2;
  so.expert_ffn = 128;
  so.type = "q4_0";
  so.progress = false;
  const tf::tools::SynthResult made = tf::tools::synth_model(so);

  tf::LoadOptions lo;
  lo.n_ctx = 64;
  lo.n_threads = 2;
  auto engine = tf::Engine::load(path.string(), lo);
  const tf::ModelConfig& c = engine->model().config();
  EXPECT_EQ(c.arch, tf::Arch::QWEN3MOE);
  EXPECT_EQ(c.n_expert, 16);
  EXPECT_EQ(c.n_expert_used, 2);
  EXPECT_EQ(c.n_ff_exp, 128);
  // Per layer 3 x 16 experts of 128 x 256 Q4_0 (18 bytes per 32): a token reads 2 of them,
  // 14 x 3 x 2 layers fewer than the same model with all 16 used per token.
  so.experts_used = 16;
  so.out_path = path.string() + ".all";
  tf::tools::synth_model(so);
  const auto all = tf::Model::load(so.out_path);
  const size_t expert = 128 * 256 / 32 * 18;
  EXPECT_EQ(all->weight_bytes() - engine->model().weight_bytes(), 14 * 3 * 2 * expert);
  EXPECT_LT(engine->model().weight_bytes(), made.file_bytes);
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
  std::filesystem::remove(path);
}
