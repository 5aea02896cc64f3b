// `quantize` on the real test models and on synthetic F32 models: tensor types follow the
// llama.cpp mixture rules, values stay within each format's error, q8_0 generates the same
// greedy tokens as the original, metadata is carried over, and bad input fails cleanly.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "tools/quant_mix.h"
#include "tools/quantize.h"
#include "tools/synth.h"
#include "tools/weight_quant.h"
#include "tools_test_util.h"

namespace tf {
namespace {

const char* kStories = "models/gguf/stories260K.gguf";           // F32, dim 64, ffn 172
const char* kTiny = "models/gguf/TinyStories-656K.f16.gguf";     // F16, dim 128, tied
const char* kTinyQ8 = "models/gguf/tinystories-656k-q8_0.gguf";  // Q8_0

tools::QuantizeResult quantize(const std::string& in, const std::string& out,
                               const std::string& type, bool pure = false) {
  tools::QuantizeOptions o;
  o.in_path = in;
  o.out_path = out;
  o.type = type;
  o.pure = pure;
  o.threads = 2;
  o.progress = false;
  return tools::quantize_model(o);
}

// Relative RMS error a format may add to a tensor of real (bell-shaped) weights: about one
// quantization step / sqrt(12) for its bits, with room to spare.
double error_bound(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1e-3;
    case DType::BF16:
      return 5e-3;
    case DType::Q8_0:
      return 0.01;
    case DType::Q6_K:
      return 0.03;
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q5_K:
      return 0.06;
    default:
      return 0.13;  // 4-bit types
  }
}

// Checks an output file against its input: same metadata apart from the two quantization
// keys, same tensors and shapes, types as `want` says, values within the formats' bounds.
void check_output(const std::string& in_path, const std::string& out_path, uint32_t file_type,
                  const std::function<DType(const gguf::TensorInfo&)>& want) {
  auto in = gguf::File::open(in_path);
  auto out = gguf::File::open(out_path);
  EXPECT_EQ(out->get_int_or("general.file_type", -1), int64_t(file_type));
  EXPECT_EQ(out->get_int_or("general.quantization_version", -1), 2);
  for (const auto& [key, value] : in->metadata()) {
    if (key == "general.file_type" || key == "general.quantization_version") continue;
    const gguf::Value* v = out->find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->to_string(1u << 20), value.to_string(1u << 20)) << key;
  }
  ASSERT_EQ(out->tensors().size(), in->tensors().size());
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    const gguf::TensorInfo& a = in->tensors()[i];
    const gguf::TensorInfo& b = out->tensors()[i];
    ASSERT_EQ(a.name, b.name);
    EXPECT_EQ(a.dims, b.dims) << a.name;
    EXPECT_EQ(b.type, want(a)) << a.name;
    if (a.dims.size() == 1) {
      EXPECT_EQ(b.type, a.type) << a.name;  // norms stay as they were
      continue;
    }
    const double err = test::relative_rmse(test::tensor_values(a), test::tensor_values(b));
    EXPECT_LE(err, error_bound(b.type)) << a.name << " as " << dtype_name(b.type);
  }
}

// ---- the real models, every type ----

struct Case {
  const char* model;
  const char* type;
};

class QuantizeReal : public ::testing::TestWithParam<Case> {};

TEST_P(QuantizeReal, TypesErrorsAndLoading) {
  const Case c = GetParam();
  TF_REQUIRE_SHARED(c.model);
  const std::string in = test::shared_path(c.model);
  test::TmpFile out(std::string("q_") + c.type + ".gguf");
  const tools::QuantizeResult r = quantize(in, out.path, c.type);
  const tools::QuantMix& mix = tools::parse_mix(c.type);
  auto f = gguf::File::open(in);
  tools::ModelShape shape{f->get_int_or("llama.block_count", 0), 0,
                          f->find_tensor("output.weight") != nullptr};
  for (const auto& t : f->tensors())
    shape.n_attn_v += t.name.find("attn_v.weight") != std::string::npos;
  check_output(in, out.path, mix.file_type, [&](const gguf::TensorInfo& t) {
    if (!tools::is_quantizable(t.name, t.dims)) return t.type;
    return tools::choose_type(mix, t.name, t.dims, shape, false).type;
  });
  // Every tensor the rules gave a K type whose rows do not fit says so.
  for (const tools::TensorReport& t : r.tensors) {
    if (t.fallback.empty()) continue;
    EXPECT_NE(t.fallback.find("not a multiple"), std::string::npos) << t.fallback;
  }
  auto m = Model::load(out.path);
  EXPECT_TRUE(test::all_finite(test::logits_after(*m, {1, 50, 60, 70})));
  EXPECT_LT(r.bytes_out, r.bytes_in + 1);
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (const char* model : {kStories, kTiny})
    for (const char* type : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q4_k_m", "q5_k_m",
                             "q6_k", "f16", "bf16"})
      v.push_back({model, type});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Models, QuantizeReal, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           std::string s =
                               std::string(info.param.model).substr(12) + "_" + info.param.type;
                           for (char& ch : s)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

// stories260K: dim 64 and ffn 172 fit no K block, and 172 fits no block of 32 either.
TEST(Quantize, FallbacksForRowsThatDoNotFit) {
  TF_REQUIRE_SHARED(kStories);
  test::TmpFile out("q_fallback.gguf");
  const tools::QuantizeResult r = quantize(test::shared_path(kStories), out.path, "q4_k_m");
  std::map<std::string, const tools::TensorReport*> by_name;
  for (const auto& t : r.tensors) by_name[t.name] = &t;
  const tools::TensorReport& q = *by_name.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.to, DType::Q5_0);  // llama.cpp's substitute for Q4_K
  EXPECT_EQ(q.fallback, "rows of 64 are not a multiple of q4_K's block size 256: using q5_0");
  EXPECT_EQ(by_name.at("blk.0.ffn_down.weight")->to, DType::F16);
  EXPECT_EQ(by_name.at("blk.2.attn_v.weight")->to, DType::Q8_0);  // Q6_K -> Q8_0
  // output.weight: rows of 64 do not fit the K block, so llama.cpp picks Q8_0 outright.
  EXPECT_EQ(by_name.at("output.weight")->to, DType::Q8_0);
  EXPECT_TRUE(by_name.at("output.weight")->fallback.empty());
  EXPECT_EQ(r.n_fallback, 36);  // 7 matrices x 5 layers + token_embd
  EXPECT_FALSE(by_name.at("blk.0.attn_norm.weight")->converted);

  // Legacy types: rows of 172 -> F16 (llama.cpp gives up here; we keep going).
  const tools::QuantizeResult r8 = quantize(test::shared_path(kStories), out.path, "q8_0");
  for (const auto& t : r8.tensors)
    if (t.name.find("ffn_down") != std::string::npos) {
      EXPECT_EQ(t.to, DType::F16);
      EXPECT_FALSE(t.fallback.empty());
    }
}

// ---- greedy tokens from q8_0 match the original ----

TEST(Quantize, Q8GreedyMatchesOriginal) {
  // Tokens must agree until the original meets a near tie (top-2 logits closer than
  // kTie): there, the rounding of any 8-bit format may legitimately tip the choice.
  constexpr float kTie = 0.1f;
  for (const char* model : {kStories, kTiny}) {
    if (test::shared_dir().empty() || !std::filesystem::exists(test::shared_path(model)))
      GTEST_SKIP() << "missing " << model;
    test::TmpFile out("q_greedy.gguf");
    quantize(test::shared_path(model), out.path, "q8_0");
    for (const char* prompt : {"Once upon a time", "Lily and Tom", "One day"}) {
      const auto want = test::greedy_steps(test::shared_path(model), prompt, 24);
      const auto got = test::greedy_steps(out.path, prompt, 24);
      size_t i = 0;
      for (; i < want.size() && want[i].gap >= kTie; ++i)
        ASSERT_EQ(got[i].id, want[i].id) << model << ": \"" << prompt << "\" step " << i;
      EXPECT_GE(i, 5u) << model << ": \"" << prompt << "\": near tie at step " << i
                       << "; pick a prompt that tests more";
    }
  }
}

// ---- mixture rules on a synthetic F32 model with K-sized rows and 8 layers ----

class QuantizeMix : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    vocab_ = new test::TmpFile("mix_vocab.gguf");
    model_ = new test::TmpFile("mix_f32.gguf");
    tied_ = new test::TmpFile("mix_tied.gguf");
    test::write_small_vocab(vocab_->path);
    tools::SynthOptions o;
    o.vocab_path = vocab_->path;
    o.out_path = model_->path;
    o.dim = 256;
    o.ffn = 512;
    o.layers = 8;
    o.heads = 4;
    o.kv_heads = 2;
    o.type = "f32";
    o.progress = false;
    tools::synth_model(o);
    o.out_path = tied_->path;
    o.tied = true;
    o.layers = 2;
    tools::synth_model(o);
  }
  static void TearDownTestSuite() {
    delete vocab_;
    delete model_;
    delete tied_;
  }

  // Quantizes the 8-layer model and returns name -> type.
  static std::map<std::string, DType> types(const std::string& type, bool pure = false,
                                            const std::string& in = "") {
    test::TmpFile out("mix_out.gguf");
    const std::string src = in.empty() ? model_->path : in;
    quantize(src, out.path, type, pure);
    const tools::QuantMix& mix = tools::parse_mix(type);
    std::map<std::string, DType> m;
    auto f = gguf::File::open(out.path);
    for (const auto& t : f->tensors()) m[t.name] = t.type;
    check_output(src, out.path, mix.file_type,
                 [&](const gguf::TensorInfo& t) { return m[t.name]; });
    return m;
  }

  static test::TmpFile *vocab_, *model_, *tied_;
};
test::TmpFile* QuantizeMix::vocab_ = nullptr;
test::TmpFile* QuantizeMix::model_ = nullptr;
test::TmpFile* QuantizeMix::tied_ = nullptr;

// Written out by hand from llama.cpp's rules, independently of quant_mix.cpp.
void expect_mix(const std::map<std::string, DType>& got, DType base, DType output, DType embd,
                const std::set<int>& v_more, DType v_type, const std::set<int>& down_more,
                DType down_type) {
  for (const auto& [name, type] : got) {
    if (name.find("norm") != std::string::npos) {
      EXPECT_EQ(type, DType::F32) << name;
    } else if (name == "output.weight") {
      EXPECT_EQ(type, output) << name;
    } else if (name == "token_embd.weight") {
      EXPECT_EQ(type, embd) << name;
    } else {
      const int layer = std::stoi(name.substr(4));
      DType want = base;
      if (name.find("attn_v") != std::string::npos && v_more.count(layer)) want = v_type;
      if (name.find("ffn_down") != std::string::npos && down_more.count(layer)) want = down_type;
      EXPECT_EQ(type, want) << name;
    }
  }
}

TEST_F(QuantizeMix, Q4_K_M) {
  // use_more_bits for 8 layers: the first and last eighth (0, 7) and every third from 1 (3, 6).
  expect_mix(types("q4_k_m"), DType::Q4_K, DType::Q6_K, DType::Q4_K, {0, 3, 6, 7}, DType::Q6_K,
             {0, 3, 6, 7}, DType::Q6_K);
}

TEST_F(QuantizeMix, Q5_K_M) {
  expect_mix(types("q5_k_m"), DType::Q5_K, DType::Q6_K, DType::Q5_K, {0, 3, 6, 7}, DType::Q6_K,
             {0, 3, 6, 7}, DType::Q6_K);
}

TEST_F(QuantizeMix, Q4_K_S) {
  // attn_v of the first four layers and ffn_down of the first eighth get Q5_K.
  expect_mix(types("q4_k"), DType::Q4_K, DType::Q6_K, DType::Q4_K, {0, 1, 2, 3}, DType::Q5_K, {0},
             DType::Q5_K);
}

TEST_F(QuantizeMix, PlainTypes) {
  expect_mix(types("q6_k"), DType::Q6_K, DType::Q6_K, DType::Q6_K, {}, DType::Q6_K, {},
             DType::Q6_K);
  expect_mix(types("q8_0"), DType::Q8_0, DType::Q8_0, DType::Q8_0, {}, DType::Q8_0, {},
             DType::Q8_0);
  // Legacy 4/5-bit types still give the output matrix Q6_K, as llama.cpp does.
  expect_mix(types("q4_0"), DType::Q4_0, DType::Q6_K, DType::Q4_0, {}, DType::Q4_0, {},
             DType::Q4_0);
  expect_mix(types("q5_1"), DType::Q5_1, DType::Q6_K, DType::Q5_1, {}, DType::Q5_1, {},
             DType::Q5_1);
  expect_mix(types("f16"), DType::F16, DType::F16, DType::F16, {}, DType::F16, {}, DType::F16);
  expect_mix(types("bf16"), DType::BF16, DType::BF16, DType::BF16, {}, DType::BF16, {},
             DType::BF16);
}

TEST_F(QuantizeMix, PureGivesEveryMatrixTheBaseType) {
  expect_mix(types("q4_k_m", true), DType::Q4_K, DType::Q4_K, DType::Q4_K, {}, DType::Q4_K, {},
             DType::Q4_K);
}

TEST_F(QuantizeMix, TiedEmbeddingIsTreatedAsTheOutput) {
  const auto m = types("q4_k_m", false, tied_->path);
  EXPECT_EQ(m.count("output.weight"), 0u);
  EXPECT_EQ(m.at("token_embd.weight"), DType::Q6_K);
}

TEST_F(QuantizeMix, KQuantsBeatTheDirectScales) {
  // The searched K-quant scales must do at least as well as the tensor layer's min/max ones.
  auto f = gguf::File::open(model_->path);
  const gguf::TensorInfo& t = *f->find_tensor("blk.0.ffn_up.weight");
  const std::vector<float> x = test::tensor_values(t);
  for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> a(row_bytes(type, int64_t(x.size()))), b(a.size());
    std::vector<float> ya(x.size()), yb(x.size());
    tools::quantize_weights(type, x.data(), a.data(), int64_t(x.size()));
    quantize_row(type, x.data(), b.data(), int64_t(x.size()));
    dequantize_row(type, a.data(), ya.data(), int64_t(x.size()));
    dequantize_row(type, b.data(), yb.data(), int64_t(x.size()));
    const double searched = test::relative_rmse(x, ya), direct = test::relative_rmse(x, yb);
    EXPECT_LT(searched, direct * 0.99) << dtype_name(type);
  }
}

// ---- already quantized input, same-type copies ----

TEST(Quantize, RequantizesWithAWarning) {
  TF_REQUIRE_SHARED(kTinyQ8);
  test::TmpFile out("q_requant.gguf");
  const tools::QuantizeResult r = quantize(test::shared_path(kTinyQ8), out.path, "q4_0");
  EXPECT_GT(r.n_requantized, 0);
  auto m = Model::load(out.path);
  EXPECT_TRUE(test::all_finite(test::logits_after(*m, {1, 50, 60})));
  // Quantizing to the type a tensor already has copies it unchanged.
  const tools::QuantizeResult same = quantize(test::shared_path(kTinyQ8), out.path, "q8_0");
  EXPECT_EQ(same.n_requantized, 0);
  auto in = gguf::File::open(test::shared_path(kTinyQ8));
  auto f = gguf::File::open(out.path);
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    const auto& a = in->tensors()[i];
    const auto& b = f->tensors()[i];
    if (a.type != b.type) continue;  // token_embd (tied output) becomes Q8_0 either way
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes)) << a.name;
  }
}

// ---- bad input ----

TEST(Quantize, BadInputThrows) {
  test::TmpFile out("q_bad.gguf"), text("q_text.gguf");
  { std::ofstream(text.path) << "this is not a GGUF file, only some text that is long enough"; }
  auto message = [&](const std::string& in, const std::string& type,
                     const std::string& dest) -> std::string {
    try {
      quantize(in, dest, type);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  auto expect_error = [](const std::string& msg, const std::string& needle) {
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  };
  expect_error(message("/nonexistent/model.gguf", "q8_0", out.path), "/nonexistent/model.gguf");
  expect_error(message(text.path, "q8_0", out.path), text.path);
  expect_error(message(text.path, "q3_k", out.path), "unknown quantization type 'q3_k'");
  expect_error(message(text.path, "", out.path), "unknown quantization type ''");
  EXPECT_FALSE(std::filesystem::exists(out.path));
  EXPECT_FALSE(std::filesystem::exists(out.path + ".tmp"));
  TF_REQUIRE_SHARED(kTiny);
  expect_error(message(test::shared_path(kTiny), "q8_0", "/nonexistent/dir/out.gguf"),
               "/nonexistent/dir/out.gguf");
}

TEST(QuantizeCli, ConvertsAndFailsCleanly) {
  TF_REQUIRE_SHARED(kTiny);
  test::TmpFile out("q_cli.gguf"), text("q_cli.txt");
  test::CliResult r =
      test::run_cli({"quantize", test::shared_path(kTiny), out.path, "Q4_K_M", "-t", "2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("quantize: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fallback"), std::string::npos) << r.err;  // dim 128 fits no K block
  r = test::run_cli({"run", "-m", out.path, "-p", "Once upon a time", "-n", "4", "--temp", "0"});
  EXPECT_EQ(r.code, 0) << r.err;

  auto expect_error = [](const test::CliResult& res, const std::string& needle) {
    EXPECT_EQ(res.code, 1) << res.err;
    EXPECT_NE(res.err.find(needle), std::string::npos) << res.err;
  };
  expect_error(test::run_cli({"quantize", "/nonexistent.gguf", out.path, "q8_0"}),
               "error: /nonexistent.gguf");
  expect_error(test::run_cli({"quantize", test::shared_path(kTiny), out.path, "q9_0"}),
               "error: unknown quantization type 'q9_0'");
  { std::ofstream(text.path) << "plain text, not a model at all, long enough to have a header"; }
  expect_error(test::run_cli({"quantize", text.path, out.path, "q8_0"}), text.path);
  expect_error(test::run_cli({"quantize", test::shared_path(kTiny)}), "output");
}

}  // namespace
}  // namespace tf
