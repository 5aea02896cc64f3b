// Hugging Face directories loaded as models (tools/model_source.h):
//  * TinyStories-656K (../shared/models/hf) imported as F16 is its GGUF twin (llama.cpp's
//    conversion, TinyStories-656K.f16.gguf) tensor for tensor, byte for byte (so the Q/K
//    permutation is llama.cpp's), with the same hyper-parameter keys and the same logits;
//    imported as F32 it reproduces the independent float64 reference's 128 greedy ids.
//  * `tokenfab convert` writes the same GGUF to disk; `info` shows the twin's keys.
//  * --quant converts on load to exactly what `tokenfab quantize` makes of the F32 GGUF.
//  * Synthetic llama / qwen2 / qwen3 directories (F32, F16, BF16, sharded, tied or not) give
//    the logits of GGUF files written by hand with llama.cpp's names and layouts.
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "format/hf_import.h"
#include "hf_test_util.h"
#include "tensor/fp16.h"
#include "tools/model_source.h"
#include "tools_test_util.h"

namespace tf {
namespace {

using nlohmann::json;
const char* kHf = "models/hf/TinyStories-656K";
const char* kTwin = "models/gguf/TinyStories-656K.f16.gguf";

std::string ids_str(const std::vector<TokenId>& ids) {
  std::ostringstream os;
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? " " : "") << ids[i];
  return os.str();
}

// Logits at every position of `tokens` (one batch).
std::vector<std::vector<float>> all_logits(const Model& m, const std::vector<TokenId>& tokens) {
  ContextParams cp;
  cp.n_ctx = 256;
  cp.n_threads = 1;
  Context ctx(m, cp);
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], int32_t(i), 0, true);
  ctx.decode(b);
  std::vector<std::vector<float>> out;
  for (int64_t i = 0; i < ctx.n_outputs(); ++i)
    out.emplace_back(ctx.logits(i), ctx.logits(i) + ctx.n_vocab());
  return out;
}

double max_diff(const std::vector<std::vector<float>>& a,
                const std::vector<std::vector<float>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].size(), b[i].size());
    for (size_t k = 0; k < a[i].size() && k < b[i].size(); ++k)
      d = std::max(d, double(std::fabs(a[i][k] - b[i][k])));
  }
  return d;
}

std::vector<TokenId> greedy_ids(const Model& m, TokenId first, int n) {
  ContextParams cp;
  cp.n_ctx = 256;
  cp.n_threads = 1;
  Context ctx(m, cp);
  Batch b;
  b.add(first, 0, 0, true);
  std::vector<TokenId> out;
  for (int i = 0; i < n; ++i) {
    ctx.decode(b);
    const TokenId t = argmax(ctx.logits(0), ctx.n_vocab());
    out.push_back(t);
    b.clear();
    b.add(t, i + 1, 0, true);
  }
  return out;
}

std::unique_ptr<Model> import(const std::string& dir, const std::string& quant = "") {
  tools::ModelSourceOptions o;
  o.quant = quant;
  o.threads = 1;
  return tools::load_model(dir, o);  // as the engine loads it
}

// A story prefix (ids of "Once upon a time, there was a little girl named Lily.").
const std::vector<TokenId> kPrompt = {1, 147, 201, 282, 215, 286, 598, 1662, 356, 499, 826};

TEST(HfModel, TinyStoriesF16IsTheGgufTwin) {
  TF_REQUIRE_SHARED(std::string(kHf) + "/model.safetensors");
  TF_REQUIRE_SHARED(kTwin);
  auto mine = import(test::shared_path(kHf), "f16");
  auto twin = Model::load(test::shared_path(kTwin));
  const gguf::File& a = mine->file();
  const gguf::File& b = twin->file();
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < b.tensors().size(); ++i) {
    const gguf::TensorInfo& x = a.tensors()[i];
    const gguf::TensorInfo& y = b.tensors()[i];
    EXPECT_EQ(x.name, y.name) << "tensor order differs at " << i;
    const gguf::TensorInfo* t = a.find_tensor(y.name);
    ASSERT_NE(t, nullptr) << y.name;
    EXPECT_EQ(t->dims, y.dims) << y.name;
    EXPECT_EQ(t->type, y.type) << y.name;
    ASSERT_EQ(t->nbytes, y.nbytes) << y.name;
    EXPECT_EQ(std::memcmp(t->data, y.data, y.nbytes), 0) << y.name << ": bytes differ";
  }
  // Every model key of the twin (not the uploader's own, nor the tokenizer: see the
  // tokenizer tests for those against the fixed-scores copy) with the same value.
  int keys = 0;
  for (const auto& [key, value] : b.metadata()) {
    if (key.rfind("tokenizer.", 0) == 0 || key.rfind("mradermacher.", 0) == 0 ||
        key == "general.url" || key == "general.source.url")
      continue;
    const gguf::Value* v = a.find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->to_string(SIZE_MAX), value.to_string(SIZE_MAX)) << key;
    ++keys;
  }
  EXPECT_GE(keys, 14);
  EXPECT_EQ(max_diff(all_logits(*mine, kPrompt), all_logits(*twin, kPrompt)), 0.0);
}

TEST(HfModel, TinyStoriesF32MatchesTheFloat64Reference) {
  TF_REQUIRE_SHARED(std::string(kHf) + "/model.safetensors");
  TF_REQUIRE_SHARED("models/testvectors/TinyStories-656K.greedy128.json");
  TF_REQUIRE_SHARED(kTwin);
  auto mine = import(test::shared_path(kHf));
  EXPECT_EQ(mine->file().find_tensor("blk.0.attn_q.weight")->type, DType::F32);
  const json ref = json::parse(
      test::read_file(test::shared_path("models/testvectors/TinyStories-656K.greedy128.json")));
  const auto want = ref["ids_f32_f16"].get<std::vector<TokenId>>();
  EXPECT_EQ(ids_str(greedy_ids(*mine, 1, int(want.size()))), ids_str(want));
  // Against the F16 twin only the weights' rounding separates the two.
  auto twin = Model::load(test::shared_path(kTwin));
  const double d = max_diff(all_logits(*mine, kPrompt), all_logits(*twin, kPrompt));
  std::printf("[ hf       ] TinyStories F32 import vs F16 GGUF: max |logit diff| %.5f\n", d);
  EXPECT_GT(d, 0.0);
  EXPECT_LT(d, 0.05);
}

TEST(HfModel, ConvertWritesTheSameGguf) {
  TF_REQUIRE_SHARED(std::string(kHf) + "/model.safetensors");
  TF_REQUIRE_SHARED(kTwin);
  const std::string dir = test::shared_path(kHf);
  test::TmpFile out("hf_convert.gguf");
  tools::ConvertOptions o;
  o.dir = dir;
  o.out_path = out.path;
  o.progress = false;
  o.threads = 1;
  tools::convert_hf(o);
  auto disk = Model::load(out.path);
  auto mem = import(dir);
  ASSERT_EQ(disk->file().metadata().size(), mem->file().metadata().size());
  for (size_t i = 0; i < disk->file().metadata().size(); ++i) {
    EXPECT_EQ(disk->file().metadata()[i].first, mem->file().metadata()[i].first);
    EXPECT_EQ(disk->file().metadata()[i].second.to_string(SIZE_MAX),
              mem->file().metadata()[i].second.to_string(SIZE_MAX));
  }
  ASSERT_EQ(disk->file().tensors().size(), mem->file().tensors().size());
  for (const gguf::TensorInfo& t : disk->file().tensors()) {
    const gguf::TensorInfo* u = mem->file().find_tensor(t.name);
    ASSERT_NE(u, nullptr);
    ASSERT_EQ(t.nbytes, u->nbytes);
    EXPECT_EQ(std::memcmp(t.data, u->data, t.nbytes), 0) << t.name;
  }
  EXPECT_EQ(max_diff(all_logits(*disk, kPrompt), all_logits(*mem, kPrompt)), 0.0);

  // Through the CLI: `convert --type f16` then `info`: the twin's hyper-parameter lines.
  test::TmpFile out16("hf_convert16.gguf");
  ASSERT_EQ(test::run_cli({"convert", dir, out16.path, "--type", "f16"}).code, 0);
  auto info = [](const std::string& path) {
    test::TmpFile txt("hf_info.txt");
    const std::string cmd = std::string(TF_CLI_PATH) + " info '" + path + "' > " + txt.path;
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    return test::read_file(txt.path);
  };
  const std::string mine = info(out16.path), ref = info(test::shared_path(kTwin));
  std::istringstream lines(ref);
  int checked = 0;
  for (std::string line; std::getline(lines, line);) {
    const bool model_key =
        line.find("  llama.") == 0 || line.find("  general.architecture") == 0 ||
        line.find("  general.file_type") == 0 || line.find("  tokenizer.ggml.bos") == 0 ||
        line.find("  tokenizer.ggml.tokens") == 0 || line.find("  blk.0.attn_q.weight") == 0;
    if (!model_key) continue;
    EXPECT_NE(mine.find(line), std::string::npos) << "info of the converted file lacks: " << line;
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(HfModel, QuantOnLoadEqualsQuantizeOfTheConvertedFile) {
  TF_REQUIRE_SHARED(std::string(kHf) + "/model.safetensors");
  const std::string dir = test::shared_path(kHf);
  test::TmpFile f32("hf_q_f32.gguf"), q8("hf_q_q8.gguf");
  tools::ConvertOptions c;
  c.dir = dir;
  c.out_path = f32.path;
  c.progress = false;
  tools::convert_hf(c);
  tools::QuantizeOptions q;
  q.in_path = f32.path;
  q.out_path = q8.path;
  q.type = "q8_0";
  q.progress = false;
  tools::quantize_model(q);
  auto quantized = Model::load(q8.path);
  auto loaded = import(dir, "q8_0");
  EXPECT_EQ(loaded->file().find_tensor("blk.0.ffn_up.weight")->type, DType::Q8_0);
  EXPECT_EQ(loaded->file().get_int_or("general.file_type", -1), 7);  // MOSTLY_Q8_0
  for (const gguf::TensorInfo& t : quantized->file().tensors()) {
    const gguf::TensorInfo* u = loaded->file().find_tensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->type, t.type) << t.name;
    ASSERT_EQ(u->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(u->data, t.data, t.nbytes), 0) << t.name;
  }
  // Q4_0 (tiled at load where the CPU has kernels for tiles): the imported model's memory is
  // its own, so it is tiled as the GGUF file is, and computes the same.
  test::TmpFile q4("hf_q_q4.gguf");
  q.out_path = q4.path;
  q.type = "q4_0";
  tools::quantize_model(q);
  auto from_file = Model::load(q4.path);
  auto from_dir = import(dir, "q4_0");
  EXPECT_EQ(from_dir->tiled_matrices(), from_file->tiled_matrices());
  std::printf("[ hf       ] q4_0 on load: %lld matrices tiled\n",
              (long long)from_dir->tiled_matrices());
  EXPECT_EQ(max_diff(all_logits(*from_dir, kPrompt), all_logits(*from_file, kPrompt)), 0.0);
  // And a GGUF file with --quant is refused (that is `tokenfab quantize`).
  tools::ModelSourceOptions o;
  o.quant = "q8_0";
  EXPECT_THROW(tools::open_model(f32.path, o), tf::Error);
}

// The engine path (-m DIR): tokenizer and model from the directory, as run / serve use them.
TEST(HfModel, EngineLoadsADirectory) {
  TF_REQUIRE_SHARED(std::string(kHf) + "/model.safetensors");
  TF_REQUIRE_SHARED("models/gguf/TinyStories-656K.fixed-scores.f16.gguf");
  const std::string dir = test::shared_path(kHf);
  EXPECT_EQ(
      ids_str(test::greedy(dir, "The little dog", 16)),
      ids_str(test::greedy(test::shared_path("models/gguf/TinyStories-656K.fixed-scores.f16.gguf"),
                           "The little dog", 16)));
  const test::CliResult r =
      test::run_cli({"run", "-m", dir, "-p", "Once", "-n", "4", "--temp", "0"});
  EXPECT_EQ(r.code, 0) << r.err;
  const test::CliResult q =
      test::run_cli({"run", "-m", dir, "-p", "Once", "-n", "4", "--quant", "q9_9"});
  EXPECT_EQ(q.code, 1);
  EXPECT_NE(q.err.find("q9_9"), std::string::npos) << q.err;
}

// ----- synthetic directories against hand-written GGUF twins -----

struct Shape {
  std::string arch;  // "llama", "qwen2", "qwen3"
  std::string dtype = "F32";
  bool tied = false, sharded = false;
  int64_t n_layer = 2, n_embd = 64, n_head = 4, n_kv = 2, head_dim = 16, n_ff = 96, n_vocab = 64;
  bool bias = false;         // llama with attention_bias (its Q/K biases permuted too)
  bool rope_llama3 = false;  // Llama 3.1 rope_scaling: a generated rope_freqs.weight
  // Experts (arch qwen3moe, or llama written as Mixtral's names): count, per token, width.
  int64_t n_expert = 0, n_used = 2, n_ff_exp = 32;
};

// One tensor with its values stored in `dtype` (and those exact values as floats).
struct Weight {
  std::string hf;
  std::vector<int64_t> shape;  // HF order
  std::vector<float> values;
  std::vector<uint8_t> bits;
  DType type;
};

Weight make_weight(const std::string& name, std::vector<int64_t> shape, std::string dtype,
                   std::mt19937& rng, float center, float scale) {
  Weight w{name, shape, {}, {}, DType::F32};
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::uniform_real_distribution<float> u(-scale, scale);
  w.type = dtype == "F16" ? DType::F16 : dtype == "BF16" ? DType::BF16 : DType::F32;
  for (int64_t i = 0; i < n; ++i) {
    float v = center + u(rng);
    if (w.type == DType::F16) {
      const uint16_t h = f32_to_fp16(v);
      v = fp16_to_f32(h);
      w.bits.push_back(uint8_t(h));
      w.bits.push_back(uint8_t(h >> 8));
    } else if (w.type == DType::BF16) {
      const uint16_t h = f32_to_bf16(v);
      v = bf16_to_f32(h);
      w.bits.push_back(uint8_t(h));
      w.bits.push_back(uint8_t(h >> 8));
    } else {
      const auto b = test::f32_bytes({v});
      w.bits.insert(w.bits.end(), b.begin(), b.end());
    }
    w.values.push_back(v);
  }
  return w;
}

// GGUF row r of a llama Q/K matrix is HF row (h, i, j) with r = h*d + 2j + i: the converter's
// reshape(heads, 2, d/2, cols).swapaxes(1, 2), spelled out.
std::vector<uint8_t> permute_rows(const Weight& w, int64_t heads) {
  const int64_t rows = w.shape[0], d = rows / heads;
  const size_t row_bytes = w.bits.size() / size_t(rows);
  std::vector<uint8_t> out(w.bits.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < d / 2; ++j)
        std::memcpy(out.data() + size_t(h * d + 2 * j + i) * row_bytes,
                    w.bits.data() + size_t(h * d + i * d / 2 + j) * row_bytes, row_bytes);
  return out;
}

// Writes the HF directory and returns the GGUF twin's bytes.
std::vector<uint8_t> write_synthetic(const Shape& s, const std::string& dir) {
  std::mt19937 rng(1234);
  const int64_t q = s.n_head * s.head_dim, kv = s.n_kv * s.head_dim;
  std::vector<Weight> ws;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, float center, float scale) {
    ws.push_back(make_weight(n, std::move(shape), s.dtype, rng, center, scale));
  };
  add("model.embed_tokens.weight", {s.n_vocab, s.n_embd}, 0, 0.5f);
  if (!s.tied) add("lm_head.weight", {s.n_vocab, s.n_embd}, 0, 0.2f);
  add("model.norm.weight", {s.n_embd}, 1, 0.1f);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {s.n_embd}, 1, 0.1f);
    add(p + "self_attn.q_proj.weight", {q, s.n_embd}, 0, 0.3f);
    add(p + "self_attn.k_proj.weight", {kv, s.n_embd}, 0, 0.3f);
    add(p + "self_attn.v_proj.weight", {kv, s.n_embd}, 0, 0.3f);
    add(p + "self_attn.o_proj.weight", {s.n_embd, q}, 0, 0.2f);
    if (s.arch == "qwen2" || s.bias)
      for (const char* b : {"q", "k", "v"})
        add(p + "self_attn." + b + "_proj.bias", {b[0] == 'q' ? q : kv}, 0, 0.2f);
    if (s.arch == "qwen3" || s.arch == "qwen3moe")
      for (const char* b : {"q", "k"})
        add(p + "self_attn." + b + "_norm.weight", {s.head_dim}, 1, 0.2f);
    add(p + "post_attention_layernorm.weight", {s.n_embd}, 1, 0.1f);
    if (s.n_expert > 0) {
      const bool mixtral = s.arch == "llama";
      const int64_t fx = mixtral ? s.n_ff : s.n_ff_exp;
      add(p + (mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight"),
          {s.n_expert, s.n_embd}, 0, 1.0f);
      for (int64_t e = 0; e < s.n_expert; ++e) {
        const std::string x =
            p + (mixtral ? "block_sparse_moe.experts." : "mlp.experts.") + std::to_string(e) + ".";
        add(x + (mixtral ? "w1.weight" : "gate_proj.weight"), {fx, s.n_embd}, 0, 0.2f);
        add(x + (mixtral ? "w3.weight" : "up_proj.weight"), {fx, s.n_embd}, 0, 0.2f);
        add(x + (mixtral ? "w2.weight" : "down_proj.weight"), {s.n_embd, fx}, 0, 0.2f);
      }
      continue;
    }
    add(p + "mlp.gate_proj.weight", {s.n_ff, s.n_embd}, 0, 0.2f);
    add(p + "mlp.up_proj.weight", {s.n_ff, s.n_embd}, 0, 0.2f);
    add(p + "mlp.down_proj.weight", {s.n_embd, s.n_ff}, 0, 0.2f);
  }
  // The safetensors files.
  std::vector<test::StTensor> parts[2];
  json weight_map = json::object();
  for (size_t i = 0; i < ws.size(); ++i) {
    const int shard = s.sharded ? int(i % 2) : 0;
    parts[shard].push_back({ws[i].hf, s.dtype, ws[i].shape, ws[i].bits});
    weight_map[ws[i].hf] = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
  }
  if (s.sharded) {
    for (int k = 0; k < 2; ++k)
      test::write_bytes(dir + "/model-0000" + std::to_string(k + 1) + "-of-00002.safetensors",
                        test::safetensors_bytes(parts[k]));
    test::write_text(dir + "/model.safetensors.index.json",
                     json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());
  } else {
    test::write_bytes(dir + "/model.safetensors", test::safetensors_bytes(parts[0]));
  }
  const char* cls = s.arch == "llama"   ? (s.n_expert ? "MixtralForCausalLM" : "LlamaForCausalLM")
                    : s.arch == "qwen2" ? "Qwen2ForCausalLM"
                    : s.arch == "qwen3moe" ? "Qwen3MoeForCausalLM"
                                           : "Qwen3ForCausalLM";
  json cfg = {{"architectures", {cls}},        {"hidden_size", s.n_embd},
              {"intermediate_size", s.n_ff},   {"num_attention_heads", s.n_head},
              {"num_key_value_heads", s.n_kv}, {"num_hidden_layers", s.n_layer},
              {"vocab_size", s.n_vocab},       {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},         {"max_position_embeddings", 256},
              {"tie_word_embeddings", s.tied}, {"hidden_act", "silu"}};
  if (s.head_dim != s.n_embd / s.n_head) cfg["head_dim"] = s.head_dim;
  if (s.n_expert > 0) {
    cfg[s.arch == "llama" ? "num_local_experts" : "num_experts"] = s.n_expert;
    cfg["num_experts_per_tok"] = s.n_used;
    if (s.arch != "llama") {
      cfg["moe_intermediate_size"] = s.n_ff_exp;
      cfg["norm_topk_prob"] = true;
      cfg["decoder_sparse_step"] = 1;
      cfg["mlp_only_layers"] = json::array();
    }
  }
  if (s.bias) cfg["attention_bias"] = true;
  if (s.rope_llama3)
    cfg["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", 8.0},
                           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 64}};
  test::write_text(dir + "/config.json", cfg.dump());
  // A small Llama-style tokenizer of n_vocab tokens.
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int64_t i = 3; i < s.n_vocab; ++i) vocab["t" + std::to_string(i)] = i;
  json tok = {
      {"model",
       {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", json::array()}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", json::array()}}},
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}}};
  test::write_text(dir + "/tokenizer.json", tok.dump());

  // The twin, as llama.cpp's converter lays it out.
  gguf::Writer w;
  const std::string a = s.arch + ".";
  w.set_string("general.architecture", s.arch);
  w.set_u32(a + "block_count", uint32_t(s.n_layer));
  w.set_u32(a + "context_length", 256);
  w.set_u32(a + "embedding_length", uint32_t(s.n_embd));
  w.set_u32(a + "feed_forward_length", uint32_t(s.n_ff));
  w.set_u32(a + "attention.head_count", uint32_t(s.n_head));
  w.set_u32(a + "attention.head_count_kv", uint32_t(s.n_kv));
  w.set_f32(a + "rope.freq_base", 10000.0f);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  if (s.head_dim != s.n_embd / s.n_head) {
    w.set_u32(a + "attention.key_length", uint32_t(s.head_dim));
    w.set_u32(a + "attention.value_length", uint32_t(s.head_dim));
  }
  if (s.n_expert > 0) {
    w.set_u32(a + "expert_count", uint32_t(s.n_expert));
    w.set_u32(a + "expert_used_count", uint32_t(s.n_used));
    if (s.arch != "llama") w.set_u32(a + "expert_feed_forward_length", uint32_t(s.n_ff_exp));
  }
  auto gname = [](std::string n) {
    const std::pair<const char*, const char*> map[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"input_layernorm", "attn_norm"},
        {"post_attention_layernorm", "ffn_norm"},
        {"self_attn.q_proj", "attn_q"},
        {"self_attn.k_proj", "attn_k"},
        {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"},
        {"self_attn.q_norm", "attn_q_norm"},
        {"self_attn.k_norm", "attn_k_norm"},
        {"mlp.gate_proj", "ffn_gate"},
        {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},
        {"model.layers.", "blk."}};
    for (const auto& [from, to] : map)
      if (auto p = n.find(from); p != std::string::npos) n.replace(p, std::strlen(from), to);
    return n;
  };
  if (s.rope_llama3) {  // first, as the converter writes its generated tensors
    std::vector<float> f;
    for (int64_t i = 0; i < s.head_dim; i += 2) {
      const double freq = 1.0 / std::pow(10000.0, double(i) / double(s.head_dim));
      const double wavelen = 2 * 3.14159265358979323846 / freq, lo = 64.0 / 1.0, hi = 64.0 / 4.0;
      const double smooth = (64.0 / wavelen - 1.0) / (4.0 - 1.0);
      f.push_back(float(wavelen < hi   ? 1.0
                        : wavelen > lo ? 8.0
                                       : 1.0 / ((1 - smooth) / 8.0 + smooth)));
    }
    w.add_tensor("rope_freqs.weight", DType::F32, {int64_t(f.size())}, f.data(), f.size() * 4);
  }
  // Experts: each layer's router (kept F32) and the experts' matrices stacked in order.
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<uint8_t>>> stacked;
  DType expert_type = DType::F32;
  for (const Weight& x : ws) {
    const size_t e = x.hf.find(".experts.");
    if (x.hf.find("gate.weight") != std::string::npos &&
        x.hf.find("gate_proj") == std::string::npos) {
      const std::string l = x.hf.substr(13, x.hf.find('.', 13) - 13);  // after "model.layers."
      w.add_tensor("blk." + l + ".ffn_gate_inp.weight", DType::F32, {x.shape[1], x.shape[0]},
                   x.values.data(), x.values.size() * 4);
      continue;
    }
    if (e == std::string::npos) continue;
    const std::string l = x.hf.substr(13, x.hf.find('.', 13) - 13);
    const std::string kind = x.hf.substr(x.hf.rfind('.', x.hf.size() - 8) + 1);
    const char* g = kind == "w1.weight" || kind == "gate_proj.weight" ? "ffn_gate_exps.weight"
                    : kind == "w3.weight" || kind == "up_proj.weight" ? "ffn_up_exps.weight"
                                                                      : "ffn_down_exps.weight";
    auto& [dims, bytes] = stacked["blk." + l + "." + g];
    dims = {x.shape[1], x.shape[0], s.n_expert};
    bytes.insert(bytes.end(), x.bits.begin(), x.bits.end());
    expert_type = x.type;
  }
  for (const auto& [name, t] : stacked)
    w.add_tensor(name, expert_type, t.first, t.second.data(), t.second.size());
  for (const Weight& x : ws) {
    if (x.hf.find(".experts.") != std::string::npos ||
        x.hf.find("gate.weight") != std::string::npos)
      if (x.hf.find("gate_proj") == std::string::npos ||
          x.hf.find(".experts.") != std::string::npos)
        continue;
    const std::string g = gname(x.hf);
    std::vector<int64_t> dims(x.shape.rbegin(), x.shape.rend());
    if (x.shape.size() == 1) {  // 1-D: F32; a llama Q/K bias permuted like its matrix's rows
      std::vector<float> v = x.values;
      const bool q_bias = g.find("attn_q.bias") != std::string::npos;
      if (s.arch == "llama" && (q_bias || g.find("attn_k.bias") != std::string::npos)) {
        const int64_t heads = q_bias ? s.n_head : s.n_kv, d = int64_t(v.size()) / heads;
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < 2; ++i)
            for (int64_t j = 0; j < d / 2; ++j)
              v[size_t(h * d + 2 * j + i)] = x.values[size_t(h * d + i * d / 2 + j)];
      }
      w.add_tensor(g, DType::F32, dims, v.data(), v.size() * 4);
      continue;
    }
    std::vector<uint8_t> bits = x.bits;
    if (s.arch == "llama" && g.find("attn_q.") != std::string::npos)
      bits = permute_rows(x, s.n_head);
    if (s.arch == "llama" && g.find("attn_k.") != std::string::npos) bits = permute_rows(x, s.n_kv);
    w.add_tensor(g, x.type, dims, bits.data(), bits.size());
  }
  return w.to_bytes();
}

void PrintTo(const Shape& s, std::ostream* os) {
  *os << s.arch << " " << s.dtype << (s.tied ? " tied" : "") << (s.sharded ? " sharded" : "");
}

class HfSynthetic : public ::testing::TestWithParam<Shape> {};

TEST_P(HfSynthetic, LogitsEqualTheHandWrittenGguf) {
  const Shape& s = GetParam();
  test::TempDir dir("hf-synth");
  const std::vector<uint8_t> twin_bytes = write_synthetic(s, dir.path);
  auto twin = Model::from_gguf(std::shared_ptr<const gguf::File>(
      gguf::File::from_memory(twin_bytes.data(), twin_bytes.size(), "twin")));
  auto mine = import(dir.path);
  const std::vector<TokenId> toks = {1, 5, 9, 20, 33, 7, 60, 2, 14};
  const double d = max_diff(all_logits(*mine, toks), all_logits(*twin, toks));
  if (s.rope_llama3) {
    // The factors are computed in float32 (as torch does) against float64 here.
    EXPECT_LT(d, 1e-4);
    const auto* t = mine->file().find_tensor("rope_freqs.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dims, (std::vector<int64_t>{s.head_dim / 2}));
  } else {
    EXPECT_EQ(d, 0.0);
  }
  EXPECT_EQ(mine->file().find("general.architecture")->str, s.arch);
  EXPECT_EQ(mine->file().find_tensor("output.weight") != nullptr, !s.tied);
  if (s.n_expert > 0) {  // the experts became one stacked tensor, and bench counts 2 of them
    const auto* t = mine->file().find_tensor("blk.1.ffn_down_exps.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dims[2], s.n_expert);
    EXPECT_EQ(mine->weight_bytes(), twin->weight_bytes());
    EXPECT_LT(mine->weight_bytes(), mine->file().file_size());
  }
}

// Experts that do not add up are named: config.json says 5 and the router 4, or 3 and an
// expert has index 3.
TEST(HfModel, MissingExpertsAreNamed) {
  Shape s{"qwen3moe"};
  s.n_expert = 4;
  test::TempDir dir("hf-moe-bad");
  write_synthetic(s, dir.path);
  json c = json::parse(test::read_file(dir.path + "/config.json"));
  c["num_experts"] = 5;
  test::write_text(dir.path + "/config.json", c.dump());
  try {
    import(dir.path);
    ADD_FAILURE() << "accepted";
  } catch (const tf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape [4, 64], expected [5, 64]"), std::string::npos)
        << e.what();  // the router says there are 4
  }
  c["num_experts"] = 3;
  test::write_text(dir.path + "/config.json", c.dump());
  try {
    import(dir.path);
    ADD_FAILURE() << "accepted";
  } catch (const tf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is for expert 3"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Archs, HfSynthetic,
    ::testing::Values(
        Shape{"llama"}, Shape{"llama", "F16", true}, Shape{"llama", "BF16", false, true},
        Shape{"qwen2"}, Shape{"qwen2", "BF16", true, true},
        Shape{"qwen3", "F32", false, false, 2, 64, 4, 2, 32},
        Shape{"llama", "F32", false, false, 2, 64, 4, 2, 16, 96, 64, true, true},
        Shape{"qwen3moe", "BF16", false, true, 2, 64, 4, 2, 32, 96, 64, false, false, 8, 2, 32},
        Shape{"llama", "F16", false, false, 2, 64, 4, 2, 16, 64, 64, false, false, 4, 2}),
    [](const auto& info) {
      const Shape& s = info.param;
      return s.arch + "_" + s.dtype + (s.tied ? "_tied" : "") + (s.sharded ? "_sharded" : "") +
             (s.head_dim != s.n_embd / s.n_head ? "_headdim" : "") + (s.bias ? "_bias" : "") +
             (s.rope_llama3 ? "_rope_llama3" : "") + (s.n_expert ? "_experts" : "");
    });

// ----- what does not fit is a clear error -----

std::string import_error(const std::function<void(const std::string&)>& spoil,
                         Shape s = Shape{"llama"}) {
  test::TempDir dir("hf-bad");
  write_synthetic(s, dir.path);
  spoil(dir.path);
  try {
    import(dir.path);
    return "";
  } catch (const tf::Error& e) {
    return e.what();
  }
}

void edit_config(const std::string& dir, const std::function<void(json&)>& f) {
  json c = json::parse(test::read_file(dir + "/config.json"));
  f(c);
  test::write_text(dir + "/config.json", c.dump());
}

// Rewrites the single safetensors file with one tensor changed (or dropped: shape empty).
void edit_tensor(const std::string& dir, const std::string& name, const std::string& new_name,
                 const std::string& dtype, std::vector<int64_t> shape) {
  auto f = safetensors::File::open(dir + "/model.safetensors");
  std::vector<test::StTensor> ts;
  for (const auto& t : f->tensors()) {
    test::StTensor x{t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)};
    if (t.name == name) {
      if (new_name.empty()) continue;
      x.name = new_name;
      x.dtype = dtype;
      x.shape = shape;
      int64_t n = dtype == "I64" ? 8 : 4;
      for (int64_t d : shape) n *= d;
      x.data.assign(size_t(n), 0);
    }
    ts.push_back(x);
  }
  f.reset();
  test::write_bytes(dir + "/model.safetensors", test::safetensors_bytes(ts));
}

TEST(HfModel, ErrorsNameTheProblem) {
  auto has = [](const std::string& err, const std::string& what) {
    EXPECT_NE(err.find(what), std::string::npos) << "error: " << err << "\nexpected: " << what;
  };
  has(import_error([](const std::string& d) {
        edit_config(d, [](json& c) { c["architectures"] = {"GemmaForCausalLM"}; });
      }),
      "unsupported architecture GemmaForCausalLM");
  has(import_error(
          [](const std::string& d) { edit_config(d, [](json& c) { c.erase("hidden_size"); }); }),
      "required key \"hidden_size\"");
  has(import_error([](const std::string& d) {
        edit_config(d, [](json& c) { c["num_hidden_layers"] = "two"; });
      }),
      "must be an integer");
  has(import_error([](const std::string& d) {
        edit_config(d, [](json& c) { c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}}; });
      }),
      "rope_scaling type 'yarn' is not supported");
  has(import_error([](const std::string& d) {
        edit_tensor(d, "model.layers.1.mlp.up_proj.weight", "", "", {});
      }),
      "no tensor for 'blk.1.ffn_up.weight'");
  has(import_error([](const std::string& d) {
        edit_tensor(d, "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight",
                    "F32", {96, 63});
      }),
      "has shape [96, 63], expected [96, 64]");
  has(import_error([](const std::string& d) {
        edit_tensor(d, "model.norm.weight", "model.norm.weight", "I64", {64});
      }),
      "unsupported dtype 'I64'");
  has(import_error([](const std::string& d) {
        edit_tensor(d, "model.norm.weight", "model.extra.weight", "F32", {64});
      }),
      "'model.extra.weight' is not one this architecture uses");
  has(import_error([](const std::string& d) {
        edit_tensor(d, "model.norm.weight", "model.layers.7.mlp.up_proj.weight", "F32", {96, 64});
      }),
      "is for layer 7 but config.json has 2 layers");
  has(import_error([](const std::string& d) { std::filesystem::remove(d + "/tokenizer.json"); }),
      "no tokenizer.json");
  has(import_error([](const std::string& d) { test::write_text(d + "/config.json", "{oops"); }),
      "not valid JSON");
}

}  // namespace
}  // namespace tf
