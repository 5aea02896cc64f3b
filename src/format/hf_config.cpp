// config.json -> GGUF hyper-parameters, key for key as llama.cpp's converter writes them for
// the architectures model/config.cpp runs (its LlamaModel and Qwen2Model classes; Qwen3 is
// Qwen2's keys plus per-head Q/K norms, whose size comes from head_dim).
#include <cmath>
#include <numbers>

#include "format/hf_internal.h"
#include "util/error.h"

namespace tf::hf::detail {

namespace {

struct ArchEntry {
  const char* hf;    // config.json "architectures"[0]
  const char* gguf;  // general.architecture
};
constexpr ArchEntry kArchs[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "llama"},  // llama.cpp converts it as Llama
    {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},
    {"MixtralForCausalLM", "llama"},  // Llama with experts, as llama.cpp converts it
    {"Qwen2MoeForCausalLM", "qwen2moe"},
    {"Qwen3MoeForCausalLM", "qwen3moe"},
};

std::string supported_list() {
  std::string s;
  for (const ArchEntry& a : kArchs) s += std::string(s.empty() ? "" : ", ") + a.hf;
  return s;
}

// Llama 3.1's rope scaling: a factor per rotary frequency, stored as rope_freqs.weight. The
// arithmetic is float32 step by step, as the converter computes it with torch tensors.
std::vector<float> llama3_rope_factors(const json& rs, const std::string& what, double theta,
                                       int64_t head_dim) {
  auto num = [&](const char* k, double def) { return get_number(rs, k, what).value_or(def); };
  const float factor = float(num("factor", 8.0));
  const float low = float(num("low_freq_factor", 1.0));
  const float high = float(num("high_freq_factor", 4.0));
  const float old_ctx = float(num("original_max_position_embeddings", 8192.0));
  if (!(factor > 0) || !(low > 0) || !(high > 0) || !(old_ctx > 0) || low == high)
    throw Error(what + ": rope_scaling (llama3) has invalid factors");
  const float low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const float freq =
        1.0f / std::pow(float(theta), float(i) / float(head_dim));  // base ** (arange / dim)
    const float wavelen = float(2.0 * std::numbers::pi) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(factor);
    } else {
      const float smooth = (old_ctx / wavelen - low) / (high - low);
      out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return out;
}

// The experts: Mixtral's num_local_experts of intermediate_size (llama.cpp writes no expert
// width for it), Qwen-MoE's num_experts of moe_intermediate_size, every layer sparse.
void read_experts(const json& c, const std::string& what, const std::string& hf_arch, Hparams& h,
                  Metadata& kv) {
  const std::string a = h.arch + ".";
  const bool mixtral = hf_arch == "MixtralForCausalLM";
  if (!mixtral && h.arch != "qwen2moe" && h.arch != "qwen3moe") return;
  const char* count_key = mixtral ? "num_local_experts" : "num_experts";
  const auto n = get_int(c, count_key, what, 1, 4096);
  if (!n) throw Error(what + ": required key \"" + std::string(count_key) + "\" is missing");
  const auto used = get_int(c, "num_experts_per_tok", what, 1, *n);
  if (!used) throw Error(what + ": required key \"num_experts_per_tok\" is missing");
  h.n_expert = *n;
  h.n_ff_exp = h.n_ff;
  if (!mixtral) {
    const auto w = get_int(c, "moe_intermediate_size", what, 1, int64_t(1) << 20);
    if (!w) throw Error(what + ": required key \"moe_intermediate_size\" is missing");
    h.n_ff_exp = *w;
    // Dense layers among the sparse ones are not supported (no released model has them).
    if (get_int(c, "decoder_sparse_step", what, 1, 4096).value_or(1) != 1)
      throw Error(what + ": decoder_sparse_step other than 1 is not supported");
    if (auto m = c.find("mlp_only_layers"); m != c.end() && !(m->is_array() && m->empty()))
      throw Error(what + ": mlp_only_layers is not supported");
  }
  kv.emplace_back(a + "expert_count", u32(uint32_t(h.n_expert)));
  kv.emplace_back(a + "expert_used_count", u32(uint32_t(*used)));
  if (!mixtral) kv.emplace_back(a + "expert_feed_forward_length", u32(uint32_t(h.n_ff_exp)));
  if (h.arch == "qwen3moe" && !get_bool(c, "norm_topk_prob", what, true))
    kv.emplace_back(a + "expert_weights_norm", detail::boolean(false));
  if (h.arch == "qwen2moe") {
    if (get_bool(c, "norm_topk_prob", what, false))
      kv.emplace_back(a + "expert_weights_norm", detail::boolean(true));
    const auto sh = get_int(c, "shared_expert_intermediate_size", what, 0, int64_t(1) << 20);
    h.n_ff_shexp = sh.value_or(0);
    if (h.n_ff_shexp > 0)
      kv.emplace_back(a + "expert_shared_feed_forward_length", u32(uint32_t(h.n_ff_shexp)));
  }
}

}  // namespace

Hparams read_hparams(const json& c, const std::string& what, Metadata& kv) {
  if (!c.is_object()) throw Error(what + ": not a JSON object");
  auto archs = c.find("architectures");
  if (archs == c.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    throw Error(what + ": no \"architectures\" list naming the model class");
  const std::string hf_arch = (*archs)[0].get<std::string>();
  Hparams h;
  for (const ArchEntry& a : kArchs)
    if (hf_arch == a.hf) h.arch = a.gguf;
  if (h.arch.empty())
    throw Error(what + ": unsupported architecture " + hf_arch +
                " (supported: " + supported_list() + ")");
  const std::string a = h.arch + ".";
  constexpr int64_t kMaxDim = int64_t(1) << 20;
  auto need = [&](const char* key, int64_t hi) {
    auto v = get_int(c, key, what, 1, hi);
    if (!v) throw Error(what + ": required key \"" + std::string(key) + "\" is missing");
    return *v;
  };
  if (auto act = c.find("hidden_act"); act != c.end() && *act != "silu")
    throw Error(what + ": hidden_act " + act->dump() + " is not supported (only silu)");
  if (get_bool(c, "mlp_bias", what, false)) throw Error(what + ": mlp_bias is not supported");

  h.n_layer = need("num_hidden_layers", 4096);
  h.n_embd = need("hidden_size", kMaxDim);
  h.n_ff = need("intermediate_size", kMaxDim);
  h.n_head = need("num_attention_heads", 4096);
  h.n_head_kv = get_int(c, "num_key_value_heads", what, 1, 4096).value_or(h.n_head);
  if (h.n_head % h.n_head_kv != 0)
    throw Error(what + ": num_attention_heads is not a multiple of num_key_value_heads");
  const auto head_dim = get_int(c, "head_dim", what, 1, 4096);
  if (!head_dim && h.n_embd % h.n_head != 0)
    throw Error(what + ": hidden_size is not a multiple of num_attention_heads (and no head_dim)");
  h.head_dim = head_dim.value_or(h.n_embd / h.n_head);
  if (h.head_dim % 2 != 0) throw Error(what + ": the head size must be even for RoPE");
  h.n_vocab = get_int(c, "vocab_size", what, 1, int64_t(1) << 24).value_or(0);
  h.tied = get_bool(c, "tie_word_embeddings", what, false);
  h.permute_qk = h.arch == "llama";
  h.qkv_bias = h.arch == "qwen2" || h.arch == "qwen2moe" ||
               (h.arch == "llama" && get_bool(c, "attention_bias", what, false));
  h.qk_norm = h.arch == "qwen3" || h.arch == "qwen3moe";
  if (h.arch == "llama" && h.n_vocab == 0)
    throw Error(what + ": required key \"vocab_size\" is missing");

  kv.emplace_back(a + "block_count", u32(uint32_t(h.n_layer)));
  if (auto ctx = get_int(c, "max_position_embeddings", what, 1, int64_t(1) << 24))
    kv.emplace_back(a + "context_length", u32(uint32_t(*ctx)));
  kv.emplace_back(a + "embedding_length", u32(uint32_t(h.n_embd)));
  kv.emplace_back(a + "feed_forward_length", u32(uint32_t(h.n_ff)));
  kv.emplace_back(a + "attention.head_count", u32(uint32_t(h.n_head)));
  if (c.contains("num_key_value_heads"))
    kv.emplace_back(a + "attention.head_count_kv", u32(uint32_t(h.n_head_kv)));
  const auto theta = get_number(c, "rope_theta", what);
  if (theta) {
    if (!(*theta > 1.0)) throw Error(what + ": rope_theta must be > 1");
    kv.emplace_back(a + "rope.freq_base", f32(float(*theta)));
  }
  if (auto eps = get_number(c, "rms_norm_eps", what)) {
    if (!(*eps > 0.0 && *eps < 1.0)) throw Error(what + ": rms_norm_eps is out of range");
    kv.emplace_back(a + "attention.layer_norm_rms_epsilon", f32(float(*eps)));
  }
  if (head_dim) {
    kv.emplace_back(a + "attention.key_length", u32(uint32_t(h.head_dim)));
    kv.emplace_back(a + "attention.value_length", u32(uint32_t(h.head_dim)));
  }
  kv.emplace_back("general.file_type", u32(0));  // set by the importer once types are known
  read_experts(c, what, hf_arch, h, kv);

  if (h.arch == "llama") {
    kv.emplace_back(a + "vocab_size", u32(uint32_t(h.n_vocab)));
    kv.emplace_back(a + "rope.dimension_count", u32(uint32_t(h.head_dim)));
  }
  // RoPE scaling: the kinds the model runs; any other would silently change the outputs.
  auto rs = c.find("rope_scaling");
  if (rs != c.end() && !rs->is_null()) {
    if (!rs->is_object()) throw Error(what + ": rope_scaling is not an object");
    std::string type;
    for (const char* k : {"rope_type", "type"})
      if (auto t = rs->find(k); t != rs->end() && t->is_string()) type = t->get<std::string>();
    if (type == "linear" && h.arch == "llama") {
      const auto factor = get_number(*rs, "factor", what);
      if (!factor || !(*factor > 0)) throw Error(what + ": rope_scaling.factor must be > 0");
      kv.emplace_back(a + "rope.scaling.type", str("linear"));
      kv.emplace_back(a + "rope.scaling.factor", f32(float(*factor)));
    } else if (type == "llama3" && h.arch == "llama") {
      h.rope_freqs =
          llama3_rope_factors(*rs, what + ": rope_scaling", theta.value_or(10000.0), h.head_dim);
    } else if (type != "default") {
      throw Error(what + ": rope_scaling type '" + type + "' is not supported for " + hf_arch);
    }
  }
  return h;
}

}  // namespace tf::hf::detail
