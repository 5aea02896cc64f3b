#include "model/config.h"

#include <cmath>

#include "format/gguf.h"
#include "util/error.h"

namespace tf {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::LLAMA:
      return "llama";
    case Arch::QWEN2:
      return "qwen2";
    case Arch::QWEN3:
      return "qwen3";
    case Arch::QWEN2MOE:
      return "qwen2moe";
    case Arch::QWEN3MOE:
      return "qwen3moe";
    case Arch::GEMMA:
      return "gemma";
    case Arch::GEMMA2:
      return "gemma2";
    case Arch::GEMMA3:
      return "gemma3";
    case Arch::PHI3:
      return "phi3";
    case Arch::DEEPSEEK2:
      return "deepseek2";
  }
  return "?";
}

namespace {

// Reads a positive integer hyper-parameter and checks it against a sanity bound, so that a
// corrupt file cannot make us allocate absurd buffers later.
int64_t get_dim(const gguf::File& f, const std::string& key, int64_t def, int64_t max) {
  const int64_t v = f.get_int_or(key, def);
  if (v <= 0 || v > max)
    throw Error(f.path() + ": metadata '" + key + "' = " + std::to_string(v) +
                " is out of range (1.." + std::to_string(max) + ")");
  return v;
}

float get_positive_float(const gguf::File& f, const std::string& key, double def) {
  const double v = f.get_float_or(key, def);
  if (!(v > 0.0 && v < 1e6))
    throw Error(f.path() + ": metadata '" + key + "' = " + std::to_string(v) + " is out of range");
  return float(v);
}

// What gemma and phi3 add to the llama block (see ModelConfig). The defaults are llama.cpp's
// for files that predate a key.
void read_family_features(const gguf::File& f, const std::string& a, ModelConfig& c) {
  constexpr int64_t kMaxWindow = int64_t(1) << 24;
  switch (c.arch) {
    case Arch::GEMMA:
    case Arch::GEMMA2:
    case Arch::GEMMA3: {
      c.embd_scale = true;
      c.ffn_act = FfnAct::GELU;
      if (c.arch == Arch::GEMMA) break;
      c.post_norms = true;
      // Queries are scaled by 1/sqrt(query_pre_attn_scalar), which GGUF does not carry: it is
      // head_dim except in the 27B models (46 layers for Gemma 2, 62 for Gemma 3), where it is
      // n_embd / n_head, as llama.cpp decides it.
      const bool big = (c.arch == Arch::GEMMA2 && c.n_layer == 46) ||
                       (c.arch == Arch::GEMMA3 && c.n_layer == 62);
      c.attn_scale = 1.0f / std::sqrt(float(big ? c.n_embd / c.n_head : c.head_dim));
      c.n_swa = get_dim(f, a + "attention.sliding_window", c.arch == Arch::GEMMA2 ? 4096 : 1024,
                        kMaxWindow);
      if (c.arch == Arch::GEMMA2) {
        c.swa_pattern = 2;
        c.attn_softcap = get_positive_float(f, a + "attn_logit_softcapping", 50.0);
        c.final_softcap = get_positive_float(f, a + "final_logit_softcapping", 30.0);
      } else {
        c.swa_pattern = 6;
        c.rope_freq_base_swa = 10000.f;  // the local layers' RoPE; global ones scale
        c.rope_freq_scale_swa = 1.f;
      }
      break;
    }
    case Arch::PHI3: {
      // 0 (Phi-4) or absent: no window; llama.cpp's defaults for older Phi-3 files.
      int64_t def = 0;
      if ((c.n_layer == 32 || c.n_layer == 40) && c.n_ctx_train == 4096) def = 2047;
      const int64_t w = f.get_int_or(a + "attention.sliding_window", def);
      if (w < 0 || w > kMaxWindow)
        throw Error(f.path() + ": metadata '" + a + "attention.sliding_window' is out of range");
      c.n_swa = w;
      c.swa_pattern = 1;
      c.rope_attn_factor = get_positive_float(f, a + "rope.scaling.attn_factor", 1.0);
      break;
    }
    default:
      break;
  }
}

void bad(const gguf::File& f, const std::string& key, const std::string& why) {
  throw Error(f.path() + ": metadata '" + key + "' " + why);
}

// deepseek2's expert keys (after the common ones: count, used count, width).
void read_deepseek2_experts(const gguf::File& f, const std::string& a, ModelConfig& c) {
  const int64_t shared = f.get_int_or(a + "expert_shared_count", 0);
  if (shared < 0 || shared > 64) bad(f, a + "expert_shared_count", "is out of range (0..64)");
  c.n_ff_shexp = shared * c.n_ff_exp;
  const double scale = f.get_float_or(a + "expert_weights_scale", 1.0);
  if (!(scale > 0.0 && scale <= 1000.0))
    bad(f, a + "expert_weights_scale", "is out of range (0..1000]");
  c.expert_weights_scale = float(scale);
  // Absent or 0 ("none", as llama.cpp reads older V2 / V2.5 files): softmax.
  const int64_t gating = f.get_int_or(a + "expert_gating_func", 1);
  if (gating < 0 || gating > 2)
    bad(f, a + "expert_gating_func", "must be 1 (softmax) or 2 (sigmoid)");
  c.expert_gating_sigmoid = gating == 2;
  c.n_expert_group = f.get_int_or(a + "expert_group_count", 1);
  if (c.n_expert_group < 1 || c.n_expert_group > c.n_expert || c.n_expert % c.n_expert_group != 0)
    bad(f, a + "expert_group_count",
        "= " + std::to_string(c.n_expert_group) + " must divide expert_count " +
            std::to_string(c.n_expert));
  c.n_group_used = f.get_int_or(a + "expert_group_used_count", c.n_expert_group);
  if (c.n_group_used < 1 || c.n_group_used > c.n_expert_group)
    bad(f, a + "expert_group_used_count", "must be in 1..expert_group_count");
  // The groups kept must hold enough experts for the token's choice.
  if (c.n_group_used * (c.n_expert / c.n_expert_group) < c.n_expert_used)
    bad(f, a + "expert_group_used_count", "leaves fewer experts than expert_used_count");
  if (c.expert_gating_sigmoid && c.n_expert_group > 1 && c.n_expert / c.n_expert_group < 2)
    bad(f, a + "expert_group_count", "leaves fewer than 2 experts per group (sigmoid gating)");
}

// deepseek2's attention keys (after head_dim = key_length, v_head_dim = value_length, n_rot).
void read_deepseek2_attention(const gguf::File& f, const std::string& a, ModelConfig& c) {
  constexpr int64_t kMaxRank = 65536;
  const int64_t ql = f.get_int_or(a + "attention.q_lora_rank", 0);
  if (ql < 0 || ql > kMaxRank) bad(f, a + "attention.q_lora_rank", "is out of range (0..65536)");
  c.q_lora_rank = ql;
  if (!f.has(a + "attention.kv_lora_rank")) bad(f, a + "attention.kv_lora_rank", "is missing");
  c.kv_lora_rank = get_dim(f, a + "attention.kv_lora_rank", 0, kMaxRank);
  if (!f.has(a + "attention.key_length")) bad(f, a + "attention.key_length", "is missing");
  if (!f.has(a + "rope.dimension_count")) bad(f, a + "rope.dimension_count", "is missing");
  if (c.n_rot >= c.head_dim)
    bad(f, a + "rope.dimension_count", "must be less than attention.key_length (qk_nope > 0)");
  const int64_t lead = f.get_int_or(a + "leading_dense_block_count", 0);
  if (lead < 0 || lead > c.n_layer)
    bad(f, a + "leading_dense_block_count", "is out of range (0..block_count)");
  c.n_lead_dense = c.n_expert > 0 ? lead : c.n_layer;
  const double lm = f.get_float_or(a + "rope.scaling.yarn_log_multiplier", 0.0);
  if (!(lm >= 0.0 && lm <= 10.0))
    bad(f, a + "rope.scaling.yarn_log_multiplier", "is out of range (0..10)");
  c.yarn_log_mul = float(lm);
  // llama.cpp rotates deepseek2's q_pe / k_pe with attn_factor 1 / (1 + 0.1 ln(1/freq_scale)),
  // cancelling the rotation's own YaRN magnitude: the scale comes in kq_scale instead.
  c.rope_attn_factor = float(1.0 / (1.0 + 0.1 * std::log(1.0 / double(c.rope_freq_scale))));
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const gguf::File& f) {
  ModelConfig c;
  if (!f.has("general.architecture"))
    throw Error(f.path() + ": metadata 'general.architecture' is missing");
  c.arch_name = f.get_string("general.architecture");
  if (c.arch_name == "llama") {
    c.arch = Arch::LLAMA;
  } else if (c.arch_name == "qwen2") {
    c.arch = Arch::QWEN2;
    c.qkv_bias = true;
  } else if (c.arch_name == "qwen3") {
    c.arch = Arch::QWEN3;
    c.qk_norm = true;
  } else if (c.arch_name == "qwen2moe") {
    c.arch = Arch::QWEN2MOE;
    c.qkv_bias = true;
  } else if (c.arch_name == "qwen3moe") {
    c.arch = Arch::QWEN3MOE;
    c.qk_norm = true;
  } else if (c.arch_name == "gemma") {
    c.arch = Arch::GEMMA;
  } else if (c.arch_name == "gemma2") {
    c.arch = Arch::GEMMA2;
  } else if (c.arch_name == "gemma3") {
    c.arch = Arch::GEMMA3;
    c.qk_norm = true;
  } else if (c.arch_name == "phi3") {
    c.arch = Arch::PHI3;
  } else if (c.arch_name == "deepseek2") {
    c.arch = Arch::DEEPSEEK2;
  } else {
    throw Error(f.path() + ": unsupported architecture '" + c.arch_name +
                "' (supported: llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma, gemma2, gemma3, "
                "phi3, deepseek2)");
  }
  const std::string a = c.arch_name + ".";
  constexpr int64_t kMaxDim = int64_t(1) << 20;
  c.n_embd = get_dim(f, a + "embedding_length", 0, kMaxDim);
  c.n_layer = get_dim(f, a + "block_count", 0, 4096);
  c.n_expert = f.get_int_or(a + "expert_count", 0);
  if (c.n_expert < 0 || c.n_expert > 4096)
    throw Error(f.path() + ": metadata '" + a + "expert_count' is out of range (0..4096)");
  if ((c.arch == Arch::QWEN3MOE || c.arch == Arch::QWEN2MOE) && c.n_expert == 0)
    throw Error(f.path() + ": metadata '" + a + "expert_count' is missing");
  if (c.n_expert > 0) {
    c.n_expert_used = get_dim(f, a + "expert_used_count", 0, c.n_expert);
    c.n_ff_exp = get_dim(f, a + "expert_feed_forward_length",
                         f.get_int_or(a + "feed_forward_length", 0), kMaxDim);
    // Qwen3-MoE (norm_topk_prob) and Mixtral renormalize the chosen experts' weights; Qwen2-MoE
    // (Qwen1.5-MoE, Qwen2-57B-A14B) does not.
    c.expert_weights_norm = f.get_bool_or(a + "expert_weights_norm",
                                          c.arch != Arch::QWEN2MOE && c.arch != Arch::DEEPSEEK2);
    const int64_t sh = f.get_int_or(a + "expert_shared_feed_forward_length", 0);
    if (sh < 0 || sh > kMaxDim)
      throw Error(f.path() + ": metadata '" + a +
                  "expert_shared_feed_forward_length' is out of range");
    c.n_ff_shexp = sh;
    if (c.arch == Arch::DEEPSEEK2) read_deepseek2_experts(f, a, c);
  }
  c.n_ff = get_dim(f, a + "feed_forward_length", c.n_ff_exp, kMaxDim);
  c.n_head = get_dim(f, a + "attention.head_count", 0, 4096);
  c.n_head_kv = get_dim(f, a + "attention.head_count_kv", c.n_head, c.n_head);
  if (c.n_head % c.n_head_kv != 0)
    throw Error(f.path() + ": head_count " + std::to_string(c.n_head) +
                " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv));
  const int64_t def_head_dim = c.n_embd % c.n_head == 0 ? c.n_embd / c.n_head : 0;
  c.head_dim = get_dim(f, a + "attention.key_length", def_head_dim, 4096);
  const int64_t v_dim = get_dim(f, a + "attention.value_length", c.head_dim, 4096);
  if (c.arch == Arch::DEEPSEEK2)
    c.v_head_dim = v_dim;
  else if (v_dim != c.head_dim)
    throw Error(f.path() + ": attention.value_length != key_length is not supported");
  c.n_ctx_train = get_dim(f, a + "context_length", 2048, int64_t(1) << 24);
  c.rms_eps = float(f.get_float_or(a + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.rms_eps > 0.f && c.rms_eps < 1.f))
    throw Error(f.path() + ": metadata '" + a +
                "attention.layer_norm_rms_epsilon' is out of range");
  c.n_rot = int(get_dim(f, a + "rope.dimension_count", c.head_dim, c.head_dim));
  if (c.n_rot % 2 != 0 || c.n_rot > 1024)
    throw Error(f.path() + ": rope.dimension_count must be even and <= 1024");
  // deepseek2 rotates adjacent pairs; qwen*, gemma*, phi3 NeoX pairs.
  c.rope_neox = c.arch != Arch::LLAMA && c.arch != Arch::DEEPSEEK2;
  c.rope_freq_base = float(f.get_float_or(a + "rope.freq_base", 10000.0));
  if (!(c.rope_freq_base > 1.f))
    throw Error(f.path() + ": metadata '" + a + "rope.freq_base' must be > 1");
  // Linear position interpolation (rope.scaling.type = "linear"); Llama 3 style scaling comes
  // as the rope_freqs.weight tensor and is applied by the model.
  const std::string scaling = f.get_string_or(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    const double factor = f.get_float_or(a + "rope.scaling.factor", 1.0);
    if (!(factor > 0.0)) throw Error(f.path() + ": rope.scaling.factor must be > 0");
    c.rope_freq_scale = float(1.0 / factor);
  } else if (scaling == "yarn") {
    // YaRN: ggml's rope_yarn with llama.cpp's defaults (ext_factor 1, beta_fast 32,
    // beta_slow 1, the original context from rope.scaling.original_context_length).
    const double factor = f.get_float_or(a + "rope.scaling.factor", 1.0);
    if (!(factor >= 1.0 && factor <= 1024.0))
      throw Error(f.path() + ": metadata '" + a + "rope.scaling.factor' = " +
                  std::to_string(factor) + " is out of range for yarn (1..1024)");
    c.rope_freq_scale = float(1.0 / factor);
    c.rope_ext_factor = 1.f;
    c.rope_n_ctx_orig =
        get_dim(f, a + "rope.scaling.original_context_length", c.n_ctx_train, int64_t(1) << 24);
    const double af = f.get_float_or(a + "rope.scaling.attn_factor", 1.0);
    if (!(af > 0.0 && af <= 16.0))
      throw Error(f.path() + ": metadata '" + a + "rope.scaling.attn_factor' is out of range");
    c.rope_attn_factor = float(af);
  } else if (scaling != "none" && scaling != "llama3") {
    throw Error(f.path() + ": unsupported rope.scaling.type '" + scaling + "'");
  }
  if (c.arch == Arch::DEEPSEEK2) read_deepseek2_attention(f, a, c);
  c.n_vocab = f.get_int_or(a + "vocab_size", 0);  // 0: taken from token_embd.weight
  if (c.rope_n_ctx_orig == 0)  // also phi3's longrope switch (YaRN read it above)
    c.rope_n_ctx_orig =
        get_dim(f, a + "rope.scaling.original_context_length", c.n_ctx_train, int64_t(1) << 24);
  read_family_features(f, a, c);
  return c;
}

}  // namespace tf
