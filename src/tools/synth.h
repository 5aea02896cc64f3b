// `tokenfab synth`: a random-weight Llama / Qwen / Gemma / Phi-3 model of any shape and weight
// type, with a real tokenizer copied from another GGUF. Nothing learned is in it; it exists so that
// speed and memory can be measured on realistic shapes without downloading a model.
#pragma once

#include <cstdint>
#include <string>

namespace tf::tools {

struct SynthOptions {
  std::string out_path;
  std::string vocab_path;      // any GGUF with tokenizer.* metadata (vocab-only files work)
  std::string arch = "llama";  // llama, qwen2, qwen3, qwen3moe, gemma, gemma2, gemma3, phi3,
                               // deepseek2
  // Mixture of experts (qwen3moe needs it; llama takes it, as Mixtral): experts per layer,
  // experts per token, and each expert's feed-forward width (0: ffn). 0 experts: dense.
  int64_t experts = 0, experts_used = 2, expert_ffn = 0;
  // deepseek2 (multi-head latent attention; --kv-heads is ignored): q's low-rank latent (0: a
  // plain attn_q, as V2-Lite), the KV latent, a head's rope / non-rope key parts and its value
  // size; the dense leading layers, shared experts (each expert_ffn wide), expert groups and
  // the groups a token may use, gating "softmax" (V2) or "sigmoid" (V3: with the selection
  // bias, renormalized weights scaled by 2.5).
  int64_t q_lora = 0, kv_lora = 128, rope_dim = 32, nope_dim = 64, v_dim = 64;
  int64_t dense_lead = 1, shared_experts = 1, expert_groups = 1, expert_groups_used = 1;
  std::string gating = "softmax";
  int64_t dim = 2048, ffn = 5632, layers = 8, heads = 32, kv_heads = 4;
  int64_t head_dim = 0;  // 0: dim / heads
  int64_t ctx = 2048;
  int64_t window = -1;        // gemma2/3, phi3: sliding window (-1: the released models'; 0: none)
  std::string type = "q4_0";  // any name parse_mix() accepts, mixtures included
  bool pure = false;          // every matrix in the base type (no llama.cpp mixture rules)
  bool tied = false;          // no output.weight: token_embd is the output matrix too
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  bool progress = true;
};

struct SynthResult {
  uint64_t file_bytes = 0;
  uint64_t n_params = 0;
  int64_t n_vocab = 0;
  double seconds = 0;
};

// Writes the model. Throws tf::Error for a bad shape, type or vocab file.
SynthResult synth_model(const SynthOptions& opts);

}  // namespace tf::tools
