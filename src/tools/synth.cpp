// Weights are drawn so that a forward pass behaves like a trained model's numerically: each
// matrix has std 1/sqrt(fan_in), so a matrix-vector product of an RMS-normalized input has
// outputs of order 1 and the residual stream grows only linearly with depth; norm weights are
// 1. Every row comes from its own counter-based random stream (seed, tensor, row), so the file
// is the same whatever the thread count and rows can be generated in any order.
#include "tools/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#include "format/gguf.h"
#include "tools/gguf_stream.h"
#include "tools/progress.h"
#include "tools/quant_mix.h"
#include "tools/row_stream.h"
#include "util/error.h"

namespace tf::tools {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// wyrand: one multiply per 64 random bits, which keeps generation well below the cost of
// quantizing. Its statistical quality is far beyond what random weights need.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t tensor, uint64_t row)
      : s_(splitmix64(splitmix64(splitmix64(seed) ^ tensor) ^ row)) {}
  uint64_t next() {
    s_ += 0xA0761D6478BD642Full;
    const __uint128_t m = __uint128_t(s_) * (s_ ^ 0xE7037ED1A0B428DBull);
    return uint64_t(m >> 64) ^ uint64_t(m);
  }
  // Approximately standard normal: the sum of four 16-bit uniforms (Irwin-Hall), centred and
  // scaled to unit variance. Bounded by +-3.46, which random weights are better off with.
  float normal() {
    const uint64_t r = next();
    const float s = float((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
    return (s - 131070.0f) * (1.0f / 37837.23f);
  }

 private:
  uint64_t s_;
};

struct Planned {
  TensorSpec spec;
  float std = 0;    // random N(0, std^2) ...
  float value = 0;  // ... or this constant when std == 0
};

void check_shape(const SynthOptions& o) {
  static const char* const kArchs[] = {"llama",  "qwen2",  "qwen3", "qwen3moe", "gemma",
                                       "gemma2", "gemma3", "phi3",  "deepseek2"};
  if (std::find(std::begin(kArchs), std::end(kArchs), o.arch) == std::end(kArchs))
    throw Error("synth: unknown architecture '" + o.arch +
                "' (valid: llama, qwen2, qwen3, qwen3moe, gemma, gemma2, gemma3, phi3, deepseek2)");
  if (o.arch == "qwen3moe" && o.experts == 0) throw Error("synth: qwen3moe needs --experts");
  if (o.experts > 0 && o.arch != "llama" && o.arch != "qwen3moe" && o.arch != "deepseek2")
    throw Error("synth: " + o.arch + " has no experts here");
  if (o.experts < 0 || o.experts > 1024)
    throw Error("synth: --experts " + std::to_string(o.experts) + " is out of range (0..1024)");
  if (o.experts > 0 && (o.experts_used < 1 || o.experts_used > o.experts))
    throw Error("synth: --experts-used must be in 1..--experts");
  if (o.expert_ffn < 0 || o.expert_ffn > (int64_t(1) << 20))
    throw Error("synth: --expert-ffn is out of range");
  auto positive = [](int64_t v, const char* what) {
    if (v <= 0 || v > (int64_t(1) << 20))
      throw Error(std::string("synth: ") + what + " = " + std::to_string(v) + " is out of range");
  };
  positive(o.dim, "--dim");
  positive(o.ffn, "--ffn");
  positive(o.layers, "--layers");
  positive(o.heads, "--heads");
  positive(o.kv_heads, "--kv-heads");
  positive(o.ctx, "--ctx");
  if (o.window > (int64_t(1) << 24)) throw Error("synth: --window is out of range");
  if (o.window == 0 && o.arch.rfind("gemma", 0) == 0 && o.arch != "gemma")
    throw Error("synth: " + o.arch + " needs a window (--window > 0)");
  if (o.arch == "deepseek2") {
    positive(o.kv_lora, "--kv-lora");
    positive(o.nope_dim, "--nope-dim");
    positive(o.v_dim, "--v-dim");
    if (o.rope_dim <= 0 || o.rope_dim % 2 != 0 || o.rope_dim > 1024)
      throw Error("synth: --rope-dim must be even and in 2..1024");
    if (o.q_lora < 0 || o.q_lora > 65536 || o.kv_lora > 65536)
      throw Error("synth: --q-lora / --kv-lora must be in 0..65536");
    if (o.dense_lead < 0 || o.dense_lead > o.layers)
      throw Error("synth: --dense-lead must be in 0..--layers");
    if (o.shared_experts < 0 || o.shared_experts > 64)
      throw Error("synth: --shared-experts must be in 0..64");
    if (o.gating != "softmax" && o.gating != "sigmoid")
      throw Error("synth: --gating must be softmax or sigmoid");
    if (o.experts > 0 && (o.expert_groups < 1 || o.experts % o.expert_groups != 0 ||
                          o.expert_groups_used < 1 || o.expert_groups_used > o.expert_groups ||
                          o.expert_groups_used * (o.experts / o.expert_groups) < o.experts_used))
      throw Error(
          "synth: --expert-groups must divide --experts, and --expert-groups-used (in "
          "1..groups) must leave at least --experts-used experts");
    return;
  }
  if (o.heads % o.kv_heads != 0)
    throw Error("synth: --heads " + std::to_string(o.heads) + " is not a multiple of --kv-heads " +
                std::to_string(o.kv_heads));
  if (o.head_dim == 0 && o.dim % o.heads != 0)
    throw Error("synth: --dim " + std::to_string(o.dim) + " is not a multiple of --heads " +
                std::to_string(o.heads) + " (give --head-dim)");
  const int64_t hd = o.head_dim ? o.head_dim : o.dim / o.heads;
  if (hd <= 0 || hd % 2 != 0 || hd > 1024)
    throw Error("synth: head dimension " + std::to_string(hd) + " must be even and <= 1024");
}

}  // namespace

SynthResult synth_model(const SynthOptions& o) {
  check_shape(o);
  const QuantMix& mix = parse_mix(o.type);
  const int64_t hd = o.head_dim ? o.head_dim : o.dim / o.heads;
  const bool ds = o.arch == "deepseek2";
  const int64_t q_dim = ds ? o.heads * (o.nope_dim + o.rope_dim) : o.heads * hd;
  const int64_t kv_dim = o.kv_heads * hd;
  const bool qwen = o.arch.rfind("qwen", 0) == 0;
  const bool gemma = o.arch.rfind("gemma", 0) == 0, phi3 = o.arch == "phi3";
  const bool tied = o.tied || gemma;  // gemma's files have no output.weight

  auto vocab = gguf::File::open(o.vocab_path);
  const gguf::Value* tokens = vocab->find("tokenizer.ggml.tokens");
  if (!tokens || tokens->type != gguf::ValueType::ARRAY || tokens->items.empty())
    throw Error(o.vocab_path + ": no tokenizer.ggml.tokens: not a vocabulary file");
  const int64_t n_vocab = int64_t(tokens->items.size());

  GgufStreamWriter::Metadata kv;
  auto set = [&](const std::string& key, gguf::Value v) { kv.emplace_back(key, std::move(v)); };
  auto u32 = [](uint64_t x) { return gguf::Writer::make_u32(uint32_t(x)); };
  const std::string a = o.arch + ".";
  set("general.architecture", gguf::Writer::make_string(o.arch));
  set("general.name",
      gguf::Writer::make_string("synthetic " + o.arch + " " + std::to_string(o.layers) + "x" +
                                std::to_string(o.dim) + " (random weights)"));
  set("general.file_type", u32(mix.file_type));
  set("general.quantization_version", u32(2));
  set(a + "context_length", u32(uint64_t(o.ctx)));
  set(a + "embedding_length", u32(uint64_t(o.dim)));
  set(a + "feed_forward_length", u32(uint64_t(o.ffn)));
  set(a + "block_count", u32(uint64_t(o.layers)));
  set(a + "attention.head_count", u32(uint64_t(o.heads)));
  set(a + "attention.head_count_kv", u32(uint64_t(ds ? o.heads : o.kv_heads)));
  if (ds) {
    set(a + "attention.key_length", u32(uint64_t(o.nope_dim + o.rope_dim)));
    set(a + "attention.value_length", u32(uint64_t(o.v_dim)));
    if (o.q_lora > 0) set(a + "attention.q_lora_rank", u32(uint64_t(o.q_lora)));
    set(a + "attention.kv_lora_rank", u32(uint64_t(o.kv_lora)));
    set(a + "leading_dense_block_count", u32(uint64_t(o.dense_lead)));
    // Released files carry it (llama.cpp requires it); without YaRN scaling it changes nothing.
    set(a + "rope.scaling.yarn_log_multiplier", gguf::Writer::make_f32(0.1f));
  } else if (q_dim != o.dim) {  // otherwise implied, and older readers do not expect the keys
    set(a + "attention.key_length", u32(uint64_t(hd)));
    set(a + "attention.value_length", u32(uint64_t(hd)));
  }
  set(a + "rope.dimension_count", u32(uint64_t(ds ? o.rope_dim : hd)));
  set(a + "rope.freq_base", gguf::Writer::make_f32(qwen || o.arch == "gemma3" ? 1e6f : 1e4f));
  set(a + "attention.layer_norm_rms_epsilon", gguf::Writer::make_f32(qwen ? 1e-6f : 1e-5f));
  // The values of the released models: Gemma 2's window and soft-caps, Gemma 3's window,
  // Phi-3 without a window (as Phi-4; 0 says so).
  auto window = [&](int64_t released) {
    set(a + "attention.sliding_window", u32(uint64_t(o.window >= 0 ? o.window : released)));
  };
  if (o.arch == "gemma2") {
    window(4096);
    set(a + "attn_logit_softcapping", gguf::Writer::make_f32(50.f));
    set(a + "final_logit_softcapping", gguf::Writer::make_f32(30.f));
  }
  if (o.arch == "gemma3") window(1024);
  if (phi3) window(0);
  set(a + "vocab_size", u32(uint64_t(n_vocab)));
  const int64_t ffn_exp = o.expert_ffn ? o.expert_ffn : o.ffn;
  if (o.experts > 0) {
    set(a + "expert_count", u32(uint64_t(o.experts)));
    set(a + "expert_used_count", u32(uint64_t(o.experts_used)));
    set(a + "expert_feed_forward_length", u32(uint64_t(ffn_exp)));
    if (ds) {
      const bool sigmoid = o.gating == "sigmoid";
      set(a + "expert_shared_count", u32(uint64_t(o.shared_experts)));
      set(a + "expert_weights_scale", gguf::Writer::make_f32(sigmoid ? 2.5f : 1.0f));
      gguf::Value norm;
      norm.type = gguf::ValueType::BOOL;
      norm.b = sigmoid;
      set(a + "expert_weights_norm", norm);
      set(a + "expert_gating_func", u32(sigmoid ? 2 : 1));
      set(a + "expert_group_count", u32(uint64_t(o.expert_groups)));
      set(a + "expert_group_used_count", u32(uint64_t(o.expert_groups_used)));
    }
  }
  for (const auto& [key, value] : vocab->metadata())
    if (key.rfind("tokenizer.", 0) == 0) set(key, value);

  // Tensors in the order llama.cpp's converter writes them.
  const ModelShape shape{o.layers, o.layers, !tied};
  std::vector<Planned> plan;
  std::vector<std::string> fallbacks;  // each distinct reason once
  auto matrix = [&](const std::string& name, int64_t in, int64_t out, float std) {
    const TypeChoice c = choose_type(mix, name, {in, out}, shape, o.pure);
    plan.push_back({{name, c.type, {in, out}}, std, 0});
    if (!c.fallback.empty() &&
        std::find(fallbacks.begin(), fallbacks.end(), c.fallback) == fallbacks.end())
      fallbacks.push_back(c.fallback);
  };
  auto vec = [&](const std::string& name, int64_t n, float std, float value) {
    plan.push_back({{name, DType::F32, {n}}, std, value});
  };
  auto inv_sqrt = [](int64_t n) { return float(1.0 / std::sqrt(double(n))); };
  // An untied embedding of rms 1 weighs like one layer's contribution to the residual stream;
  // a tied one doubles as the output matrix and is scaled like it, to keep logits moderate.
  // (Gemma scales its embeddings by sqrt(dim), which brings a tied one back to rms 1.)
  matrix("token_embd.weight", o.dim, n_vocab, tied ? inv_sqrt(o.dim) : 1.0f);
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", o.dim, 0, 1);
    if (ds) {
      if (o.q_lora > 0) {
        matrix(p + "attn_q_a.weight", o.dim, o.q_lora, inv_sqrt(o.dim));
        vec(p + "attn_q_a_norm.weight", o.q_lora, 0, 1);
        matrix(p + "attn_q_b.weight", o.q_lora, q_dim, inv_sqrt(o.q_lora));
      } else {
        matrix(p + "attn_q.weight", o.dim, q_dim, inv_sqrt(o.dim));
      }
      matrix(p + "attn_kv_a_mqa.weight", o.dim, o.kv_lora + o.rope_dim, inv_sqrt(o.dim));
      vec(p + "attn_kv_a_norm.weight", o.kv_lora, 0, 1);
      matrix(p + "attn_kv_b.weight", o.kv_lora, o.heads * (o.nope_dim + o.v_dim),
             inv_sqrt(o.kv_lora));
      matrix(p + "attn_output.weight", o.heads * o.v_dim, o.dim, inv_sqrt(o.heads * o.v_dim));
      vec(p + "ffn_norm.weight", o.dim, 0, 1);
      if (o.experts == 0 || l < o.dense_lead) {
        matrix(p + "ffn_gate.weight", o.dim, o.ffn, inv_sqrt(o.dim));
        matrix(p + "ffn_up.weight", o.dim, o.ffn, inv_sqrt(o.dim));
        matrix(p + "ffn_down.weight", o.ffn, o.dim, inv_sqrt(o.ffn));
        continue;
      }
      plan.push_back(
          {{p + "ffn_gate_inp.weight", DType::F32, {o.dim, o.experts}}, inv_sqrt(o.dim), 0});
      if (o.gating == "sigmoid") vec(p + "exp_probs_b.bias", o.experts, 0.01f, 0);
      auto stacked = [&](const std::string& name, int64_t in, int64_t out, float std) {
        const TypeChoice c = choose_type(mix, name, {in, out}, shape, o.pure);
        plan.push_back({{name, c.type, {in, out, o.experts}}, std, 0});
      };
      stacked(p + "ffn_gate_exps.weight", o.dim, ffn_exp, inv_sqrt(o.dim));
      stacked(p + "ffn_up_exps.weight", o.dim, ffn_exp, inv_sqrt(o.dim));
      stacked(p + "ffn_down_exps.weight", ffn_exp, o.dim, inv_sqrt(ffn_exp));
      if (o.shared_experts > 0) {
        const int64_t sh = ffn_exp * o.shared_experts;
        matrix(p + "ffn_gate_shexp.weight", o.dim, sh, inv_sqrt(o.dim));
        matrix(p + "ffn_up_shexp.weight", o.dim, sh, inv_sqrt(o.dim));
        matrix(p + "ffn_down_shexp.weight", sh, o.dim, inv_sqrt(sh));
      }
      continue;
    }
    if (phi3) {
      matrix(p + "attn_qkv.weight", o.dim, q_dim + 2 * kv_dim, inv_sqrt(o.dim));
    } else {
      matrix(p + "attn_q.weight", o.dim, q_dim, inv_sqrt(o.dim));
      matrix(p + "attn_k.weight", o.dim, kv_dim, inv_sqrt(o.dim));
      matrix(p + "attn_v.weight", o.dim, kv_dim, inv_sqrt(o.dim));
    }
    matrix(p + "attn_output.weight", q_dim, o.dim, inv_sqrt(q_dim));
    if (o.arch == "gemma2" || o.arch == "gemma3") {
      vec(p + "post_attention_norm.weight", o.dim, 0, 1);
      vec(p + "post_ffw_norm.weight", o.dim, 0, 1);
    }
    if (o.arch == "qwen2") {
      vec(p + "attn_q.bias", q_dim, 0.02f, 0);
      vec(p + "attn_k.bias", kv_dim, 0.02f, 0);
      vec(p + "attn_v.bias", kv_dim, 0.02f, 0);
    }
    if (o.arch == "qwen3" || o.arch == "qwen3moe" || o.arch == "gemma3") {
      vec(p + "attn_q_norm.weight", hd, 0, 1);
      vec(p + "attn_k_norm.weight", hd, 0, 1);
    }
    vec(p + "ffn_norm.weight", o.dim, 0, 1);
    if (o.experts > 0) {
      // The router stays F32 (as llama.cpp's converter leaves it); the experts are stacked.
      plan.push_back(
          {{p + "ffn_gate_inp.weight", DType::F32, {o.dim, o.experts}}, inv_sqrt(o.dim), 0});
      auto stacked = [&](const std::string& name, int64_t in, int64_t out, float std) {
        const TypeChoice c = choose_type(mix, name, {in, out}, shape, o.pure);
        plan.push_back({{name, c.type, {in, out, o.experts}}, std, 0});
      };
      stacked(p + "ffn_gate_exps.weight", o.dim, ffn_exp, inv_sqrt(o.dim));
      stacked(p + "ffn_up_exps.weight", o.dim, ffn_exp, inv_sqrt(o.dim));
      stacked(p + "ffn_down_exps.weight", ffn_exp, o.dim, inv_sqrt(ffn_exp));
      continue;
    }
    if (phi3) {  // the gate rows, then the up rows
      matrix(p + "ffn_up.weight", o.dim, 2 * o.ffn, inv_sqrt(o.dim));
    } else {
      matrix(p + "ffn_gate.weight", o.dim, o.ffn, inv_sqrt(o.dim));
      matrix(p + "ffn_up.weight", o.dim, o.ffn, inv_sqrt(o.dim));
    }
    matrix(p + "ffn_down.weight", o.ffn, o.dim, inv_sqrt(o.ffn));
  }
  vec("output_norm.weight", o.dim, 0, 1);
  if (!tied) matrix("output.weight", o.dim, n_vocab, inv_sqrt(o.dim));

  for (const std::string& f : fallbacks) std::fprintf(stderr, "synth: %s\n", f.c_str());

  std::vector<TensorSpec> specs;
  SynthResult res;
  res.n_vocab = n_vocab;
  for (const Planned& p : plan) {
    specs.push_back(p.spec);
    res.n_params += uint64_t(p.spec.dims[0] * p.spec.n_rows());
  }
  GgufStreamWriter w(o.out_path, kv, specs);
  const int n_threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  Progress bar("synth", w.total_bytes() - w.bytes_written());
  // Random weights lose nothing to a quick choice of K-quant scales.
  RowStreamer rows(w, n_threads, Effort::kFast);
  for (size_t k = 0; k < plan.size(); ++k) {
    const Planned& p = plan[k];
    const int64_t n = p.spec.dims[0];
    auto fill = [&, k](int64_t row, float* out) {
      if (p.std == 0) {
        std::fill(out, out + n, p.value);
        return;
      }
      Rng rng(o.seed, k, uint64_t(row));
      for (int64_t i = 0; i < n; ++i) out[i] = p.std * rng.normal();
    };
    rows.rows(p.spec.type, n, p.spec.n_rows(), fill, [&](uint64_t b) {
      if (o.progress) bar.add(b);
    });
  }
  rows.flush();
  w.finish();
  if (o.progress) bar.finish();
  res.file_bytes = w.total_bytes();
  res.seconds = bar.seconds();
  return res;
}

}  // namespace tf::tools
