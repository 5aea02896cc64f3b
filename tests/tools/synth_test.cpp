// `synth`: random models of every type and architecture load, run with finite logits and
// generate; the file is deterministic; the tokenizer is copied whole; bad options fail cleanly.
#include <gtest/gtest.h>

#include "tools/quant_mix.h"
#include "tools/synth.h"
#include "tools_test_util.h"

namespace tf {
namespace {

using tools::SynthOptions;

// A small shape whose rows (256) hold whole K-quant blocks, with the in-memory vocabulary.
SynthOptions small(const std::string& out, const std::string& vocab) {
  SynthOptions o;
  o.out_path = out;
  o.vocab_path = vocab;
  o.dim = 256;
  o.ffn = 512;
  o.layers = 2;
  o.heads = 4;
  o.kv_heads = 2;
  o.ctx = 256;
  o.threads = 2;
  o.progress = false;
  return o;
}

class SynthType : public ::testing::TestWithParam<std::string> {};

TEST_P(SynthType, LoadsRunsAndHasTheMixTypes) {
  test::TmpFile vocab("vocab.gguf"), out("synth_" + GetParam() + ".gguf");
  test::write_small_vocab(vocab.path);
  SynthOptions o = small(out.path, vocab.path);
  o.type = GetParam();
  const tools::SynthResult r = tools::synth_model(o);
  EXPECT_EQ(r.n_vocab, 300);
  EXPECT_EQ(r.file_bytes, std::filesystem::file_size(out.path));

  auto m = Model::load(out.path);
  const tools::QuantMix& mix = tools::parse_mix(GetParam());
  EXPECT_EQ(m->file().get_int_or("general.file_type", -1), int64_t(mix.file_type));
  EXPECT_EQ(m->file().get_int_or("general.quantization_version", -1), 2);
  const tools::ModelShape shape{2, 2, true};
  for (const gguf::TensorInfo& t : m->file().tensors()) {
    if (t.dims.size() == 1) {
      EXPECT_EQ(t.type, DType::F32) << t.name;
      continue;
    }
    const tools::TypeChoice c = tools::choose_type(mix, t.name, t.dims, shape, false);
    EXPECT_EQ(t.type, c.type) << t.name;
    EXPECT_TRUE(c.fallback.empty()) << t.name;
  }
  const std::vector<float> logits = test::logits_after(*m, {1, 300 - 1, 5, 42});
  EXPECT_TRUE(test::all_finite(logits));
  EXPECT_EQ(test::greedy(out.path, "hi", 8).size(), 8u);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, SynthType,
                         ::testing::Values("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
                                           "q5_1", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"),
                         [](const auto& info) { return info.param; });

TEST(Synth, QwenShapesTiedAndHeadDim) {
  test::TmpFile vocab("vocab.gguf"), out("synth_qwen.gguf");
  test::write_small_vocab(vocab.path);
  for (const char* arch : {"qwen2", "qwen3"}) {
    SynthOptions o = small(out.path, vocab.path);
    o.arch = arch;
    o.type = "q4_k_m";
    o.tied = true;
    o.head_dim = 128;  // q_dim 512 != dim 256, as in Qwen3
    tools::synth_model(o);
    auto m = Model::load(out.path);
    EXPECT_EQ(m->config().arch_name, arch);
    EXPECT_EQ(m->config().head_dim, 128);
    EXPECT_EQ(m->file().find_tensor("output.weight"), nullptr);
    // Tied: token_embd is the output matrix and gets its type.
    EXPECT_EQ(m->file().find_tensor("token_embd.weight")->type, DType::Q6_K);
    EXPECT_EQ(m->config().qkv_bias, std::string(arch) == "qwen2");
    EXPECT_EQ(m->config().qk_norm, std::string(arch) == "qwen3");
    EXPECT_TRUE(test::all_finite(test::logits_after(*m, {1, 7, 9})));
  }
}

TEST(Synth, SameSeedSameBytesWhateverTheThreads) {
  test::TmpFile vocab("vocab.gguf"), a("synth_a.gguf"), b("synth_b.gguf");
  test::write_small_vocab(vocab.path);
  SynthOptions o = small(a.path, vocab.path);
  o.type = "q4_k_m";
  o.threads = 1;
  tools::synth_model(o);
  o.out_path = b.path;
  o.threads = 3;
  tools::synth_model(o);
  EXPECT_EQ(test::read_file(a.path), test::read_file(b.path));
  o.seed = 2;
  tools::synth_model(o);
  EXPECT_NE(test::read_file(a.path), test::read_file(b.path));
}

TEST(Synth, WeightScales) {
  test::TmpFile vocab("vocab.gguf"), out("synth_f32.gguf");
  test::write_small_vocab(vocab.path);
  SynthOptions o = small(out.path, vocab.path);
  o.type = "f32";
  tools::synth_model(o);
  auto f = gguf::File::open(out.path);
  auto stats = [&](const char* name) {
    const std::vector<float> v = test::tensor_values(*f->find_tensor(name));
    double s = 0, s2 = 0;
    for (float x : v) {
      s += x;
      s2 += double(x) * x;
    }
    const double mean = s / double(v.size());
    return std::make_pair(mean, std::sqrt(s2 / double(v.size()) - mean * mean));
  };
  auto [mq, sq] = stats("blk.0.attn_q.weight");  // fan-in 256: std 1/16
  EXPECT_NEAR(mq, 0, 0.002);
  EXPECT_NEAR(sq, 1.0 / 16, 0.002);
  auto [md, sd] = stats("blk.1.ffn_down.weight");  // fan-in 512
  EXPECT_NEAR(sd, 1.0 / std::sqrt(512.0), 0.002);
  auto [mn, sn] = stats("output_norm.weight");
  EXPECT_EQ(mn, 1.0);
  EXPECT_EQ(sn, 0.0);
}

TEST(Synth, SharedVocabularyIsCopiedWhole) {
  const char* kVocab = "models/vocab/ggml-vocab-llama-spm.gguf";
  TF_REQUIRE_SHARED(kVocab);
  test::TmpFile out("synth_spm.gguf");
  SynthOptions o = small(out.path, test::shared_path(kVocab));
  o.dim = 64;
  o.ffn = 128;
  o.type = "q4_0";
  const tools::SynthResult r = tools::synth_model(o);
  EXPECT_EQ(r.n_vocab, 32000);
  auto vocab = gguf::File::open(test::shared_path(kVocab));
  auto f = gguf::File::open(out.path);
  int n_tok_keys = 0;
  for (const auto& [key, value] : vocab->metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    ++n_tok_keys;
    const gguf::Value* got = f->find(key);
    ASSERT_NE(got, nullptr) << key;
    EXPECT_EQ(got->to_string(1u << 20), value.to_string(1u << 20)) << key;
  }
  EXPECT_GE(n_tok_keys, 8);
  EXPECT_EQ(f->get_int_or("llama.vocab_size", 0), 32000);
  const std::vector<TokenId> gen = test::greedy(out.path, "Hello world", 8);
  EXPECT_EQ(gen.size(), 8u);
}

TEST(Synth, BadOptionsThrow) {
  test::TmpFile vocab("vocab.gguf"), out("synth_bad.gguf");
  test::write_small_vocab(vocab.path);
  auto expect_throw = [&](auto change) {
    SynthOptions o = small(out.path, vocab.path);
    change(o);
    EXPECT_THROW(tools::synth_model(o), Error);
    EXPECT_FALSE(std::filesystem::exists(out.path));
    EXPECT_FALSE(std::filesystem::exists(out.path + ".tmp"));
  };
  expect_throw([](SynthOptions& o) { o.arch = "gpt2"; });
  expect_throw([](SynthOptions& o) { o.type = "q3_k"; });
  expect_throw([](SynthOptions& o) { o.kv_heads = 3; });
  expect_throw([](SynthOptions& o) { o.dim = 250; });  // not a multiple of the heads
  expect_throw([](SynthOptions& o) { o.head_dim = 3; });
  expect_throw([](SynthOptions& o) { o.layers = 0; });
  expect_throw([](SynthOptions& o) { o.vocab_path = "/nonexistent/vocab.gguf"; });
  expect_throw([&](SynthOptions& o) {
    // A GGUF without a tokenizer.
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    w.write(vocab.path);
  });
}

TEST(Synth, RowsThatDoNotFitTheBlocksFallBack) {
  test::TmpFile vocab("vocab.gguf"), out("synth_fallback.gguf");
  test::write_small_vocab(vocab.path);
  SynthOptions o = small(out.path, vocab.path);
  o.dim = 96;  // a multiple of 32 but not of 256
  o.heads = 3;
  o.kv_heads = 1;
  o.ffn = 200;  // not even a multiple of 32
  o.type = "q4_k_m";
  tools::synth_model(o);
  auto m = Model::load(out.path);
  EXPECT_EQ(m->file().find_tensor("blk.0.attn_q.weight")->type, DType::Q5_0);
  EXPECT_EQ(m->file().find_tensor("blk.0.ffn_down.weight")->type, DType::F16);
  EXPECT_EQ(m->file().find_tensor("output.weight")->type, DType::Q8_0);
  EXPECT_TRUE(test::all_finite(test::logits_after(*m, {1, 2, 3})));
}

TEST(SynthCli, WritesAModelAndFailsCleanly) {
  test::TmpFile vocab("vocab.gguf"), out("synth_cli.gguf");
  test::write_small_vocab(vocab.path);
  test::CliResult r = test::run_cli({"synth", "-o", out.path, "--vocab", vocab.path, "--dim", "64",
                                     "--ffn", "96", "--layers", "2", "--heads", "4", "--kv-heads",
                                     "2", "--type", "q8_0", "--seed", "7"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("synth:"), std::string::npos) << r.err;
  EXPECT_NO_THROW(Model::load(out.path));
  r = test::run_cli({"run", "-m", out.path, "-p", "hi", "-n", "4", "--temp", "0"});
  EXPECT_EQ(r.code, 0) << r.err;

  r = test::run_cli({"synth", "-o", out.path, "--vocab", vocab.path, "--type", "q9_9"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("error: unknown quantization type 'q9_9'"), std::string::npos) << r.err;
  r = test::run_cli({"synth", "-o", out.path, "--vocab", "/nonexistent.gguf"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent.gguf"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tf
