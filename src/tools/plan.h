// `tokenfab plan`, the factory planner: from a model's shape, a hardware profile and a workload,
// predicts prompt and generation speed, energy, cost and KV memory with a roofline model.
// Pure arithmetic: nothing here reads files or measures anything (the CLI does that and fills
// in the structs).
//
// The model (README, "tokenfab plan"), a roofline per matrix type:
// - Every matrix multiply takes max(time to read its weights, time of its arithmetic): bytes
//   at the memory bandwidth, two operations per weight and token on the unit its type's kernel
//   uses (int8 dot products for quantized weights, the float unit for F16 / BF16 / F32), each
//   at a share of the peak measured for tokenfab's kernels (KernelEfficiency). A step is the
//   sum over the model's weight types, plus attention (K/V read, and its arithmetic).
// - Prompt processing (prefill): P tokens in passes of `prefill_batch`; the weights are read
//   once per pass, the arithmetic is P tokens' at the matrix-matrix share of the peak, and the
//   causal attention covers 1 + 2 + ... + P positions.
// - Generation (decode) of B streams together: one step produces a token for each. It reads
//   the weights once whatever B, plus every stream's K/V up to the average depth (prompt +
//   output / 2); its arithmetic is at least one token's at the matrix-vector share and B
//   tokens' at the matrix-matrix share; its attention (one query per stream) runs at
//   kDecodeAttentionShare. Per-stream tokens/s = 1 / step, aggregate = B / step: batching
//   raises the aggregate until the arithmetic binds.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace tf {
class Model;
}

namespace tf::plan {

// The weights of one type: a model is usually one type, a mixture (q4_k_m) several.
struct WeightGroup {
  DType type = DType::F32;
  double params = 0;  // elements of the matrices of this type multiplied for every token
  double bytes = 0;   // their bytes (read once per decode step)
};

struct ModelShape {
  std::string name;                 // the file, or "parameters"
  std::string weight_type;          // the type holding most of the bytes read per token
  double n_params = 0;              // every tensor's elements, embeddings included
  double weight_bytes = 0;          // bytes read per token: what Model::weight_bytes() reports
  double resident_bytes = 0;        // every tensor's bytes: what memory must hold
  std::vector<WeightGroup> groups;  // the matrices multiplied per token, by type
  int64_t n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
  int64_t n_ctx_train = 0;  // 0 = unknown
  // The KV cache's row per position and layer (0: n_head_kv x head_dim) and its rows (2: K and
  // V; 1: deepseek2's latent, keys only).
  int64_t kv_row_dim = 0;
  int kv_rows = 2;

  double matmul_params() const;
};

// From a loaded model (mapped is enough: only the tensor table and the config are read).
ModelShape shape_of(const Model& model, const std::string& name);

// From parameters, e.g. Llama 3 8B: params 8.03e9, q4_0, 32 layers, embd 4096, 32 heads,
// 8 KV heads, vocab 128256. Every tensor is taken to be of `quant`, whose bits per weight come
// from its block layout (q4_0 4.5, q8_0 8.5, q4_k 4.5, q5_k 5.5, q6_k 6.5625, f16 16, f32 32).
// The token embedding (vocab x embd) is looked up, not multiplied, unless `tied` (then it is
// the output matrix too). Throws tf::Error for a missing or inconsistent value.
struct ParamShape {
  double params = 0;
  std::string quant = "q4_0";
  int64_t layers = 0, embd = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0, ctx = 0;
  bool tied = false;
};
ModelShape shape_from_params(const ParamShape& p);

// Bits per weight of a type, from its block layout (type_size * 8 / block_size).
double bits_per_weight(DType t);

struct HardwareProfile {
  std::string name;
  // Where the figures come from: "measured on this machine by membw, DATE, CPU" or
  // "datasheet: PART, DOCUMENT" (a datasheet figure is a peak, never measured here).
  std::string source;
  double mem_bw_gb_s = 0;  // memory read bandwidth, 1e9 bytes/s
  double int8_tops = 0;    // dense int8 multiply-accumulate peak, 2 ops each, 1e12/s
  double bf16_tflops = 0;  // dense 16-bit float peak (what F16 / BF16 weights compute with)
  double fp32_tflops = 0;
  double watts = 0;         // package or board power under load
  double usd_per_hour = 0;  // what the hardware costs to have, per hour
  double memory_gib = 0;    // memory for weights and KV cache
  std::string price_note;   // where usd_per_hour comes from
};

// The profiles shipped with tokenfab: this development machine as measured, and public
// datacenter parts from their datasheets. ("this", measured at run time, is the CLI's.)
const std::vector<HardwareProfile>& builtin_profiles();
const HardwareProfile* find_profile(const std::string& name);  // nullptr if not built in

// A profile from a JSON object with the fields above (name, source, price_note optional).
// Throws tf::Error naming the field for a missing, non-numeric, negative or zero-where-it-
// cannot-be value.
HardwareProfile profile_from_json(const nlohmann::json& j);
nlohmann::json to_json(const HardwareProfile& p);

struct Workload {
  int64_t prompt = 512;  // tokens per request
  int64_t output = 128;  // generated tokens per request
  int64_t users = 1;     // concurrent streams decoded together
  DType kv_type = DType::F16;
  double usd_per_kwh = 0.15;
  int64_t prefill_batch = 128;  // tokens per forward pass of a prompt (ContextParams::n_batch)
};

// The share of a peak tokenfab's kernels reach, by weight type (calibrated on this machine:
// see plan.cpp for the commands and figures).
struct KernelEfficiency {
  double bandwidth;  // weight bytes streamed per second / the measured read bandwidth
  double gemv;       // one token (matrix x vector): operations per second / the unit's peak
  double gemm;       // a batch of tokens (matrix x matrix): the same
};
KernelEfficiency kernel_efficiency(DType t);

// Decode attention (one query per stream against its cached K/V) runs on the float unit at this
// share of its peak: measured as the extra time per cached position (bench -p 0 -n 128 -d 0 /
// 2048 on the reference Q4_0 model: 81.3 -> 66.0 tokens/s, 1.39 us per position for 65,536
// operations = 47 GFLOP/s of 226). Prompt attention uses the F16 matrix-matrix share.
inline constexpr double kDecodeAttentionShare = 0.21;

// Which peak of a profile a weight type computes with, in 1e12 operations/s (falling back to
// the next unit when the profile has 0 for it: int8 -> bf16 -> fp32).
double compute_peak_tops(const HardwareProfile& h, DType t);

// Memory kept free of weights and KV cache when counting the users that fit: the OS, the
// program and the engine's scratch buffers.
inline constexpr double kMemoryOverheadBytes = 1024.0 * 1024 * 1024;

struct PlanResult {
  // Prompt processing of one request's prompt.
  double prefill_s = 0;         // = time to first token for a request alone
  double prefill_tps = 0;       // tokens/s (per stream = aggregate: one prompt at a time)
  std::string prefill_bound;    // "compute" or "memory"
  double ttft_all_users_s = 0;  // ... for the last of `users` prompts arriving together
  // Generation with `users` streams decoded together, at the average depth.
  double decode_step_s = 0;
  double decode_tps_stream = 0;
  double decode_tps_total = 0;
  std::string decode_bound;
  double request_s = 0;  // prefill + output tokens at the per-stream rate
  // Energy and cost.
  double prefill_tokens_per_joule = 0, decode_tokens_per_joule = 0;
  double usd_per_second = 0;  // hardware + energy
  double usd_per_mtok_input = 0, usd_per_mtok_output = 0;
  // Memory.
  double kv_bytes_per_position = 0;  // all layers, K and V
  double kv_bytes_per_user = 0;      // (prompt + output) positions
  double memory_needed_bytes = 0;    // weights + overhead + users x KV
  int64_t users_fit = 0;             // streams whose KV fits beside the weights
  std::vector<std::string> warnings;
};

// Throws tf::Error for an impossible workload or a profile without bandwidth or compute.
PlanResult predict(const ModelShape& m, const HardwareProfile& h, const Workload& w);

nlohmann::json to_json(const ModelShape& m);
nlohmann::json to_json(const PlanResult& r);

}  // namespace tf::plan
