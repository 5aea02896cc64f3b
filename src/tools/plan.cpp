#include "tools/plan.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "format/gguf.h"
#include "model/model.h"
#include "util/error.h"

namespace tf::plan {

namespace {

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

bool is_float(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

void add_weight(std::map<DType, WeightGroup>& groups, const WeightView& w) {
  if (w.empty()) return;
  WeightGroup& g = groups[w.type];
  g.type = w.type;
  g.params += double(w.rows) * double(w.cols);
  g.bytes += double(w.row_stride) * double(w.rows);
}

// Fills weight_type from the groups: the type holding most of the bytes.
void set_weight_type(ModelShape& m) {
  const WeightGroup* best = nullptr;
  for (const WeightGroup& g : m.groups)
    if (!best || g.bytes > best->bytes) best = &g;
  m.weight_type = best ? dtype_name(best->type) : "none";
}

}  // namespace

double ModelShape::matmul_params() const {
  double n = 0;
  for (const WeightGroup& g : groups) n += g.params;
  return n;
}

double bits_per_weight(DType t) {
  const DTypeInfo& i = dtype_info(t);
  return double(i.type_size) * 8.0 / double(i.block_size);
}

ModelShape shape_of(const Model& model, const std::string& name) {
  const ModelConfig& c = model.config();
  ModelShape m;
  m.name = name;
  m.n_layer = c.n_layer;
  m.n_embd = c.n_embd;
  m.n_head = c.n_head;
  m.n_head_kv = c.n_head_kv;
  m.head_dim = c.head_dim;
  m.n_vocab = c.n_vocab;
  m.n_ctx_train = c.n_ctx_train;
  m.kv_row_dim = c.kv_row_dim();
  m.kv_rows = c.kv_keys_only() ? 1 : 2;
  // The same matrices Model::weight_bytes() counts: those every token multiplies.
  std::map<DType, WeightGroup> groups;
  add_weight(groups, model.output());
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model.layer(l);
    for (const WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.wq_a,
                                &L.wq_b, &L.wkv_a, &L.wkv_b})
      add_weight(groups, *w);
  }
  for (const auto& [t, g] : groups) m.groups.push_back(g);
  m.weight_bytes = double(model.weight_bytes());
  for (const gguf::TensorInfo& t : model.file().tensors()) {
    m.n_params += double(t.n_elements());
    m.resident_bytes += double(t.nbytes);
  }
  set_weight_type(m);
  return m;
}

ModelShape shape_from_params(const ParamShape& p) {
  const auto type = dtype_from_name(p.quant.c_str());
  if (!type || !dtype_info(*type).supported || *type == DType::Q8_1 || *type == DType::Q8_K)
    throw Error("unknown or unsupported weight type '" + p.quant +
                "' (use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, "
                "q6_k; for a mixture such as q4_k_m, plan a GGUF file with -m)");
  auto need = [](int64_t v, const char* what) {
    if (v <= 0) throw Error(std::string("--") + what + " must be given and > 0");
  };
  if (!(p.params > 0) || !std::isfinite(p.params)) throw Error("--params must be given and > 0");
  need(p.layers, "layers");
  need(p.embd, "embd");
  need(p.heads, "heads");
  need(p.vocab, "vocab");
  const int64_t kv_heads = p.kv_heads > 0 ? p.kv_heads : p.heads;
  if (p.heads % kv_heads != 0)
    throw Error("--heads (" + std::to_string(p.heads) + ") must be a multiple of --kv-heads (" +
                std::to_string(kv_heads) + ")");
  const int64_t head_dim = p.head_dim > 0 ? p.head_dim : p.embd / p.heads;
  if (head_dim <= 0) throw Error("--head-dim must be > 0");
  if (p.ctx < 0) throw Error("--ctx must be >= 0");

  ModelShape m;
  m.name = "parameters";
  m.n_layer = p.layers;
  m.n_embd = p.embd;
  m.n_head = p.heads;
  m.n_head_kv = kv_heads;
  m.head_dim = head_dim;
  m.n_vocab = p.vocab;
  m.n_ctx_train = p.ctx;
  m.n_params = p.params;
  const double embd_table = double(p.vocab) * double(p.embd);
  const double multiplied = p.tied ? p.params : p.params - embd_table;
  if (multiplied <= 0)
    throw Error("--params (" + fmt(p.params) +
                ") is smaller than the token embedding (vocab x embd = " + fmt(embd_table) + ")");
  const double bpw = bits_per_weight(*type);
  m.groups.push_back({*type, multiplied, multiplied * bpw / 8});
  m.weight_bytes = multiplied * bpw / 8;
  m.resident_bytes = p.params * bpw / 8;
  set_weight_type(m);
  return m;
}

// ---- Calibration -------------------------------------------------------------------------------
//
// Measured on the development VM (2 vCPU "AMD EPYC", Zen 5 class: AVX-512 VNNI / BF16, 32 MiB
// L3, 24 GiB), 2026-12-03, 2 threads, in three interleaved rounds of
//   tokenfab membw --json; tokenfab bench -m M -p 512 -n 128 -r 3 -t 2 --json
// over five random-weight models of the reference shape (tokenfab synth --vocab
// ggml-vocab-llama-spm.gguf --ctx 8192: 8 layers, embd 2048, ffn 5632, 32 heads, 4 KV heads,
// vocab 32000; 417.9M weights multiplied per token): --type q4_0 (its output matrix is Q6_K),
// q8_0, f16, and q4_k / q6_k with --pure. Medians: membw 31.1 GB/s (2 threads; single readings
// ranged 28.6-54.0), int8 903 GOP/s, fp32 226 GFLOP/s.
//   type   pp512 t/s  tg128 t/s   tg GB/s
//   q4_0   520        85.1        21.4   (with its Q6_K output)
//   q8_0   264        55.3        24.5
//   f16    186        24.9        20.7
//   q4_k   439        130.9       30.8
//   q6_k   439        101.3       34.7
// - bandwidth: Q4_K and Q6_K, the types whose decode is bound by memory here, stream at 0.99 and
//   1.12 of the median membw figure: 1.0 for every type. (Earlier project notes had decode at
//   80-98% of membw; on this VM the figure itself moves by +-30% with the neighbours' load.)
// - gemv: Q4_0, Q8_0 and F16 decode below the bandwidth (21-25 GB/s): their matrix x vector
//   kernels bind first, at 0.078, 0.051 and 0.092 of the int8 / fp32 peak (Q4_0 after its Q6_K
//   output's share). For Q4_K and Q6_K only a lower bound is known (0.12 and 0.094: they are
//   memory-bound), and is taken.
// - gemm: prompt processing fitted in the order F16 (also the attention's rate: 0.70 of fp32),
//   then Q6_K, Q4_K, Q8_0 (0.43, 0.43, 0.25 of int8), then Q4_0 with its Q6_K output (0.53).
// - decode attention: kDecodeAttentionShare (plan.h), from generation after 0 and 2048 cached
//   positions.
// Types not measured take their family's figures (Q4_1 / Q5_0 / Q5_1 from Q4_0; Q2_K, Q3_K,
// Q5_K from Q4_K; BF16 and F32 from F16). The efficiencies describe tokenfab's CPU kernels: on
// other hardware (the datasheet profiles) they are an assumption, not a measurement.
KernelEfficiency kernel_efficiency(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
      return {1.0, 0.078, 0.53};
    case DType::Q8_0:
      return {1.0, 0.051, 0.25};
    case DType::Q6_K:
      return {1.0, 0.094, 0.43};
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
      return {1.0, 0.12, 0.43};
    default:  // F16, BF16, F32
      return {1.0, 0.092, 0.70};
  }
}

double compute_peak_tops(const HardwareProfile& h, DType t) {
  const double chain_int8[] = {h.int8_tops, h.bf16_tflops, h.fp32_tflops};
  const double chain_16[] = {h.bf16_tflops, h.fp32_tflops, 0};
  const double chain_32[] = {h.fp32_tflops, h.bf16_tflops, 0};
  const double* chain = t == DType::F32 ? chain_32 : is_float(t) ? chain_16 : chain_int8;
  for (int i = 0; i < 3; ++i)
    if (chain[i] > 0) return chain[i];
  return 0;
}

// ---- Profiles ----------------------------------------------------------------------------------

const std::vector<HardwareProfile>& builtin_profiles() {
  static const std::vector<HardwareProfile> profiles = {
      // This development machine, from the calibration runs above (medians of 15 `tokenfab
      // membw` runs at 2 threads between the benches).
      {"dev-vm",
       "measured on this machine by tokenfab membw, 2026-12-03, \"AMD EPYC\" (Zen 5 class, "
       "AVX-512 VNNI), 2 vCPU, 2 threads, median of 15 runs; bf16 = the fp32 peak (tokenfab's "
       "F16/BF16 kernels compute in fp32)",
       31.1, 0.903, 0.226, 0.226, 20, 0.09, 23.5,
       "estimate: the meter's defaults (engine/meter.h), 10 W and $0.045/h per thread"},
      // Datasheet parts. CPU peaks are cores x base clock x the core's operations per cycle
      // (Zen 4: 32 fp32 / 64 bf16 / 128 int8 on 256-bit units; Zen 5: 64 / 128 / 256 on 512-bit
      // units, which this machine's membw per core and clock agrees with; Golden Cove: 64 fp32
      // with two AVX-512 FMA units, AMX 1024 bf16 / 2048 int8). Bandwidth is channels x 8
      // bytes x transfer rate. Memory is one 64 GiB DIMM per channel (an assumption). Prices
      // are the CPU's launch list price over three years of use, the rest of the server not
      // included: estimates, not quotes.
      {"epyc-9654",
       "datasheet: AMD EPYC 9654 (Zen 4, 96 cores, 2.4 GHz base, 360 W default TDP, 12 x "
       "DDR5-4800), AMD product specifications; datasheet peak, not measured",
       460.8, 29.49, 14.75, 7.37, 360, 0.45, 768,
       "estimate: list price $11,805 over 3 years (26,280 h), CPU only"},
      {"epyc-9755",
       "datasheet: AMD EPYC 9755 (Zen 5, 128 cores, 2.7 GHz base, 500 W TDP, 12 x DDR5-6400), "
       "AMD product specifications; datasheet peak, not measured",
       614.4, 88.47, 44.24, 22.12, 500, 0.49, 768,
       "estimate: list price $12,984 over 3 years (26,280 h), CPU only"},
      {"xeon-8480plus",
       "datasheet: Intel Xeon Platinum 8480+ (56 cores, 2.0 GHz base, 350 W TDP, 8 x DDR5-4800, "
       "AMX), Intel ARK; int8 / bf16 are AMX peaks (tokenfab has no AMX kernels); datasheet "
       "peak, not measured",
       307.2, 229.4, 114.7, 7.17, 350, 0.41, 512,
       "estimate: list price $10,710 over 3 years (26,280 h), CPU only"},
      {"h100-sxm",
       "datasheet: NVIDIA H100 SXM5 80 GB, NVIDIA H100 Tensor Core GPU datasheet (3.35 TB/s "
       "HBM3; dense tensor-core BF16 989 TFLOPS and INT8 1979 TOPS, the datasheet's sparsity "
       "figures halved; FP32 67 TFLOPS; up to 700 W); tokenfab has no GPU backend: datasheet "
       "peak, not measured",
       3350, 1979, 989, 67, 700, 2.50, 79.6,
       "estimate: cloud rental; public on-demand prices range about $1.65-6.88/h (2026)"},
  };
  return profiles;
}

const HardwareProfile* find_profile(const std::string& name) {
  for (const HardwareProfile& p : builtin_profiles())
    if (p.name == name) return &p;
  return nullptr;
}

HardwareProfile profile_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("a hardware profile must be a JSON object");
  HardwareProfile p;
  auto text = [&](const char* key, std::string& out, const char* fallback) {
    if (!j.contains(key)) {
      out = fallback;
      return;
    }
    if (!j[key].is_string())
      throw Error(std::string("profile field \"") + key + "\" must be a string");
    out = j[key].get<std::string>();
  };
  // positive: must be > 0; otherwise >= 0.
  auto number = [&](const char* key, double& out, bool positive) {
    if (!j.contains(key)) throw Error(std::string("profile field \"") + key + "\" is missing");
    if (!j[key].is_number())
      throw Error(std::string("profile field \"") + key + "\" must be a number");
    out = j[key].get<double>();
    if (!std::isfinite(out) || out < 0 || (positive && out == 0))
      throw Error(std::string("profile field \"") + key + "\" must be " +
                  (positive ? "> 0" : ">= 0") + " (got " + fmt(out) + ")");
  };
  text("name", p.name, "custom");
  text("source", p.source, "user profile");
  text("price_note", p.price_note, "");
  number("mem_bw_gb_s", p.mem_bw_gb_s, true);
  number("int8_tops", p.int8_tops, false);
  number("bf16_tflops", p.bf16_tflops, false);
  number("fp32_tflops", p.fp32_tflops, false);
  number("watts", p.watts, false);
  number("usd_per_hour", p.usd_per_hour, false);
  number("memory_gib", p.memory_gib, true);
  if (p.int8_tops == 0 && p.bf16_tflops == 0 && p.fp32_tflops == 0)
    throw Error("profile needs a compute peak: int8_tops, bf16_tflops or fp32_tflops > 0");
  return p;
}

nlohmann::json to_json(const HardwareProfile& p) {
  return {{"name", p.name},
          {"source", p.source},
          {"mem_bw_gb_s", p.mem_bw_gb_s},
          {"int8_tops", p.int8_tops},
          {"bf16_tflops", p.bf16_tflops},
          {"fp32_tflops", p.fp32_tflops},
          {"watts", p.watts},
          {"usd_per_hour", p.usd_per_hour},
          {"memory_gib", p.memory_gib},
          {"price_note", p.price_note}};
}

nlohmann::json to_json(const ModelShape& m) {
  nlohmann::json groups = nlohmann::json::array();
  for (const WeightGroup& g : m.groups)
    groups.push_back({{"type", dtype_name(g.type)}, {"params", g.params}, {"bytes", g.bytes}});
  return {{"name", m.name},
          {"weight_type", m.weight_type},
          {"n_params", m.n_params},
          {"matmul_params", m.matmul_params()},
          {"weight_bytes", m.weight_bytes},
          {"resident_bytes", m.resident_bytes},
          {"groups", groups},
          {"n_layer", m.n_layer},
          {"n_embd", m.n_embd},
          {"n_head", m.n_head},
          {"n_head_kv", m.n_head_kv},
          {"head_dim", m.head_dim},
          {"n_vocab", m.n_vocab},
          {"n_ctx_train", m.n_ctx_train}};
}

nlohmann::json to_json(const PlanResult& r) {
  return {{"prefill",
           {{"seconds", r.prefill_s},
            {"tokens_per_s", r.prefill_tps},
            {"bound", r.prefill_bound},
            {"ttft_s", r.prefill_s},
            {"ttft_all_users_s", r.ttft_all_users_s},
            {"tokens_per_joule", r.prefill_tokens_per_joule},
            {"usd_per_mtok", r.usd_per_mtok_input}}},
          {"decode",
           {{"step_s", r.decode_step_s},
            {"tokens_per_s_per_stream", r.decode_tps_stream},
            {"tokens_per_s_total", r.decode_tps_total},
            {"bound", r.decode_bound},
            {"tokens_per_joule", r.decode_tokens_per_joule},
            {"usd_per_mtok", r.usd_per_mtok_output}}},
          {"request_s", r.request_s},
          {"usd_per_second", r.usd_per_second},
          {"memory",
           {{"kv_bytes_per_position", r.kv_bytes_per_position},
            {"kv_bytes_per_user", r.kv_bytes_per_user},
            {"needed_bytes", r.memory_needed_bytes},
            {"overhead_bytes", kMemoryOverheadBytes},
            {"users_fit", r.users_fit}}},
          {"warnings", r.warnings}};
}

// ---- The roofline ------------------------------------------------------------------------------

PlanResult predict(const ModelShape& m, const HardwareProfile& h, const Workload& w) {
  if (w.prompt < 1) throw Error("the prompt must be at least 1 token");
  if (w.output < 0) throw Error("the output length must be >= 0");
  if (w.users < 1) throw Error("there must be at least 1 user");
  if (w.prefill_batch < 1) throw Error("the prompt batch must be at least 1 token");
  if (w.kv_type != DType::F16 && w.kv_type != DType::Q8_0)
    throw Error("KV cache type must be f16 or q8_0");
  if (!(w.usd_per_kwh >= 0)) throw Error("the energy price must be >= 0");
  if (!(h.mem_bw_gb_s > 0)) throw Error("profile " + h.name + " has no memory bandwidth");
  if (m.groups.empty() || m.n_layer <= 0 || m.head_dim <= 0 || m.n_head_kv <= 0)
    throw Error("model shape has no weights or no attention");

  PlanResult r;
  const double bw = h.mem_bw_gb_s * 1e9;
  // Attention runs on the float unit at the float kernels' shares.
  const double float_peak = compute_peak_tops(h, DType::F16) * 1e12;
  if (!(float_peak > 0)) throw Error("profile " + h.name + " has no compute peak");
  const KernelEfficiency fe = kernel_efficiency(DType::F16);

  // KV cache: K and V rows of n_head_kv x head_dim per position and layer.
  const int64_t kv_dim = m.kv_row_dim > 0 ? m.kv_row_dim : m.n_head_kv * m.head_dim;
  if (w.kv_type == DType::Q8_0 && m.kv_rows == 1)
    throw Error("KV type q8_0 is not supported for a latent (deepseek2) KV cache: use f16");
  if (w.kv_type == DType::Q8_0 && kv_dim % 32 != 0)
    throw Error("KV type q8_0 needs KV heads x head size (" + std::to_string(kv_dim) +
                ") to be a multiple of 32");
  r.kv_bytes_per_position =
      double(m.n_layer) * double(m.kv_rows) * double(row_bytes(w.kv_type, kv_dim));
  // Attention of one query over d positions: q.k and p.v for every head of every layer, two
  // operations per multiply-add.
  const double q_dim = double(m.n_head) * double(m.head_dim);
  auto attn_ops = [&](double d) { return 4.0 * double(m.n_layer) * q_dim * d; };

  const double P = double(w.prompt), B = double(w.users);
  const double passes = std::ceil(P / double(w.prefill_batch));
  const double depth = P + double(w.output) / 2;
  // Each weight type's matrices: the larger of reading and computing, summed; the bound is
  // whichever side gave most of the time.
  double prefill_s = 0, prefill_mem = 0, decode_s = 0, decode_mem = 0;
  for (const WeightGroup& g : m.groups) {
    const double peak = compute_peak_tops(h, g.type) * 1e12;
    if (!(peak > 0)) throw Error("profile " + h.name + " has no compute peak");
    const KernelEfficiency e = kernel_efficiency(g.type);
    const double read_s = g.bytes / (e.bandwidth * bw);
    const double gemm_s = 2 * g.params / (e.gemm * peak);  // per token, in a batch
    const double gemv_s = 2 * g.params / (e.gemv * peak);  // one token alone
    const double pf_read = passes * read_s, pf_calc = P * gemm_s;
    prefill_s += std::max(pf_read, pf_calc);
    if (pf_read >= pf_calc) prefill_mem += pf_read;
    const double dc_calc = std::max(gemv_s, B * gemm_s);
    decode_s += std::max(read_s, dc_calc);
    if (read_s >= dc_calc) decode_mem += read_s;
  }
  // Prefill attention: the prompt's tokens attend to 1..P positions, P (P + 1) / 2 in all.
  const double pf_attn = attn_ops(P * (P + 1) / 2) / (fe.gemm * float_peak);
  prefill_s += pf_attn;
  // Decode attention: every stream reads its K/V at the average depth.
  const double kv_read = B * depth * r.kv_bytes_per_position / (fe.bandwidth * bw);
  const double kv_calc = B * attn_ops(depth) / (kDecodeAttentionShare * float_peak);
  decode_s += std::max(kv_read, kv_calc);
  if (kv_read >= kv_calc) decode_mem += kv_read;

  r.prefill_s = prefill_s;
  r.prefill_bound = prefill_mem * 2 >= prefill_s ? "memory" : "compute";
  r.prefill_tps = P / r.prefill_s;
  r.ttft_all_users_s = B * r.prefill_s;
  r.decode_step_s = decode_s;
  r.decode_bound = decode_mem * 2 >= decode_s ? "memory" : "compute";
  r.decode_tps_stream = 1 / r.decode_step_s;
  r.decode_tps_total = B / r.decode_step_s;
  r.request_s = r.prefill_s + double(w.output) * r.decode_step_s;

  // Energy and money: a second of the machine costs its hourly price plus its energy.
  if (h.watts > 0) {
    r.prefill_tokens_per_joule = r.prefill_tps / h.watts;
    r.decode_tokens_per_joule = r.decode_tps_total / h.watts;
  }
  r.usd_per_second = h.usd_per_hour / 3600 + h.watts * w.usd_per_kwh / 3.6e6;
  r.usd_per_mtok_input = r.usd_per_second / r.prefill_tps * 1e6;
  r.usd_per_mtok_output = r.usd_per_second / r.decode_tps_total * 1e6;

  // Memory: weights, the overhead, and each user's whole context.
  r.kv_bytes_per_user = double(w.prompt + w.output) * r.kv_bytes_per_position;
  r.memory_needed_bytes = m.resident_bytes + kMemoryOverheadBytes + B * r.kv_bytes_per_user;
  const double free_bytes =
      h.memory_gib * 1024 * 1024 * 1024 - m.resident_bytes - kMemoryOverheadBytes;
  r.users_fit = free_bytes > 0 ? int64_t(std::floor(free_bytes / r.kv_bytes_per_user)) : 0;

  if (free_bytes <= 0)
    r.warnings.push_back("the weights (" + fmt(m.resident_bytes / 1e9) + " GB) do not fit in " +
                         fmt(h.memory_gib) + " GiB with the overhead");
  else if (w.users > r.users_fit)
    r.warnings.push_back(std::to_string(w.users) + " users do not fit: the KV cache has room for " +
                         std::to_string(r.users_fit));
  if (m.n_ctx_train > 0 && w.prompt + w.output > m.n_ctx_train)
    r.warnings.push_back("prompt + output (" + std::to_string(w.prompt + w.output) +
                         ") exceeds the model's training context (" +
                         std::to_string(m.n_ctx_train) + ")");
  if (h.watts <= 0)
    r.warnings.push_back("the profile has no power figure: tokens per joule not computed");
  return r;
}

}  // namespace tf::plan
