// `plan`: the roofline's arithmetic on fixed inputs worked out by hand, profile validation, and
// the CLI's JSON. The expected figures are written from the formulas with the calibrated
// efficiencies read from kernel_efficiency() (so recalibrating does not break them, a wrong
// formula does); the comments give the numbers at the constants of this writing.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "tools/plan.h"
#include "tools/synth.h"
#include "tools_test_util.h"

namespace tf {
namespace {

using plan::HardwareProfile;
using plan::ModelShape;
using plan::Workload;

// A 1e9-parameter Q8_0 model: 8.5 bits per weight, so 1.0625e9 bytes read per token. One layer
// with one KV head of 128 keeps the KV terms easy: per position 1 layer x (K + V) x 128 x 2
// bytes (f16) = 512 bytes.
ModelShape q8_model() {
  ModelShape m;
  m.name = "hand";
  m.weight_type = "q8_0";
  m.n_params = 1e9;
  m.groups = {{DType::Q8_0, 1e9, 1.0625e9}};
  m.weight_bytes = 1.0625e9;
  m.resident_bytes = 1.0625e9;
  m.n_layer = 1;
  m.n_embd = 1024;
  m.n_head = 8;
  m.n_head_kv = 1;
  m.head_dim = 128;
  m.n_vocab = 1000;
  return m;
}

// 100 GB/s, 10 int8 TOPS, 1 bf16 / fp32 TFLOPS, 1000 W, $3.60 an hour, 64 GiB.
HardwareProfile profile_100() {
  HardwareProfile h;
  h.name = "hand";
  h.source = "test";
  h.mem_bw_gb_s = 100;
  h.int8_tops = 10;
  h.bf16_tflops = 1;
  h.fp32_tflops = 1;
  h.watts = 1000;
  h.usd_per_hour = 3.6;
  h.memory_gib = 64;
  return h;
}

const double kEq = 1e-9;  // relative tolerance: the same arithmetic in another order

void expect_rel(double got, double want) {
  EXPECT_NEAR(got, want, std::fabs(want) * kEq) << got;
}

TEST(PlanModel, BitsPerWeightFromBlockLayouts) {
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::Q4_0), 4.5);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::Q8_0), 8.5);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::Q4_K), 4.5);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::Q5_K), 5.5);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::Q6_K), 6.5625);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::F16), 16);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::BF16), 16);
  EXPECT_DOUBLE_EQ(plan::bits_per_weight(DType::F32), 32);
}

TEST(PlanModel, ShapeFromParameters) {
  // Llama 3 8B in Q4_0: the embedding (128256 x 4096 = 525,336,576) is looked up, not
  // multiplied; the other 7,504,663,424 weights are read each token: x 4.5 / 8 = 4.2214e9 B.
  plan::ParamShape p;
  p.params = 8.03e9;
  p.quant = "q4_0";
  p.layers = 32;
  p.embd = 4096;
  p.heads = 32;
  p.kv_heads = 8;
  p.vocab = 128256;
  const ModelShape m = plan::shape_from_params(p);
  EXPECT_EQ(m.weight_type, "q4_0");
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.n_head_kv, 8);
  expect_rel(m.matmul_params(), 8.03e9 - 128256.0 * 4096);
  expect_rel(m.weight_bytes, (8.03e9 - 128256.0 * 4096) * 4.5 / 8);
  expect_rel(m.resident_bytes, 8.03e9 * 4.5 / 8);
  p.tied = true;
  expect_rel(plan::shape_from_params(p).weight_bytes, 8.03e9 * 4.5 / 8);

  plan::ParamShape bad = p;
  bad.quant = "q4_k_m";
  EXPECT_THROW(plan::shape_from_params(bad), Error);
  bad = p;
  bad.heads = 0;
  EXPECT_THROW(plan::shape_from_params(bad), Error);
  bad = p;
  bad.kv_heads = 5;  // 32 heads cannot share 5 KV heads evenly
  EXPECT_THROW(plan::shape_from_params(bad), Error);
  bad = p;
  bad.tied = false;
  bad.params = 1e8;  // smaller than its own embedding table
  EXPECT_THROW(plan::shape_from_params(bad), Error);
}

TEST(PlanModel, ShapeOfALoadedModelMatchesWeightBytes) {
  test::TmpFile vocab("plan_vocab.gguf"), out("plan_synth.gguf");
  test::write_small_vocab(vocab.path);
  tools::SynthOptions o;
  o.out_path = out.path;
  o.vocab_path = vocab.path;
  o.dim = 256;
  o.ffn = 512;
  o.layers = 2;
  o.heads = 4;
  o.kv_heads = 2;
  o.ctx = 256;
  o.type = "q8_0";
  o.pure = true;
  o.threads = 2;
  o.progress = false;
  tools::synth_model(o);
  auto model = Model::load(out.path, true);
  const ModelShape m = plan::shape_of(*model, out.path);
  EXPECT_DOUBLE_EQ(m.weight_bytes, double(model->weight_bytes()));
  double bytes = 0;
  for (const plan::WeightGroup& g : m.groups) bytes += g.bytes;
  EXPECT_DOUBLE_EQ(bytes, m.weight_bytes);
  // Per layer q, o: 256 x 256; k, v: 256 x 128; gate, up, down: 256 x 512; plus the output
  // matrix 300 x 256.
  const double per_layer = 2 * 256.0 * 256 + 2 * 256.0 * 128 + 3 * 256.0 * 512;
  EXPECT_DOUBLE_EQ(m.matmul_params(), 2 * per_layer + 300.0 * 256);
  EXPECT_EQ(m.weight_type, "q8_0");
  EXPECT_EQ(m.n_layer, 2);
  EXPECT_EQ(m.n_head_kv, 2);
  EXPECT_EQ(m.head_dim, 64);
  EXPECT_EQ(m.n_ctx_train, 256);
  EXPECT_GT(m.resident_bytes, m.weight_bytes);  // the embedding table and the norms too
  EXPECT_GT(m.n_params, m.matmul_params());
}

TEST(PlanModel, DecodeOfOneStreamIsBandwidthOverWeightBytes) {
  // Prompt 1, output 0: one step at depth 1. Memory: 1.0625e9 B / (e_bw x 100e9 B/s) plus
  // the attention; the arithmetic of one token (2e9 int8 ops at e_gemv x 10 TOPS, 3.9 ms at
  // e_gemv = 0.051) is below the 10.6 ms of reading: 94.1 tokens/s at e_bw = 1.
  Workload w;
  w.prompt = 1;
  w.output = 0;
  const plan::PlanResult r = plan::predict(q8_model(), profile_100(), w);
  const plan::KernelEfficiency e = plan::kernel_efficiency(DType::Q8_0);
  const plan::KernelEfficiency f = plan::kernel_efficiency(DType::F16);
  ASSERT_LT(2e9 / (e.gemv * 10e12), 1.0625e9 / (e.bandwidth * 100e9));
  // Attention over the one position: 512 B of K/V read, or 4 x 1 layer x 1024 ops at the
  // decode attention's share of 1 TFLOPS (here the arithmetic, 19.5 ns, is the larger).
  const double attn =
      std::max(512 / (f.bandwidth * 100e9), 4096 / (plan::kDecodeAttentionShare * 1e12));
  const double step = 1.0625e9 / (e.bandwidth * 100e9) + attn;
  expect_rel(r.decode_step_s, step);
  expect_rel(r.decode_tps_stream, 1 / step);
  expect_rel(r.decode_tps_total, 1 / step);
  EXPECT_EQ(r.decode_bound, "memory");
  EXPECT_NEAR(r.decode_tps_stream, e.bandwidth * 100e9 / 1.0625e9, 0.01);
  EXPECT_DOUBLE_EQ(r.kv_bytes_per_position, 512);
}

TEST(PlanModel, DecodeOfOneStreamCanBeBoundByItsKernel) {
  // At 1 int8 TOPS one token's 2e9 ops take 2e9 / (e_gemv x 1e12) = 39 ms (e_gemv = 0.051),
  // more than the 10.6 ms of reading the weights: the step is the arithmetic.
  HardwareProfile h = profile_100();
  h.int8_tops = 1;
  Workload w;
  w.prompt = 1;
  w.output = 0;
  const plan::PlanResult r = plan::predict(q8_model(), h, w);
  const plan::KernelEfficiency e = plan::kernel_efficiency(DType::Q8_0);
  const plan::KernelEfficiency f = plan::kernel_efficiency(DType::F16);
  ASSERT_GT(2e9 / (e.gemv * 1e12), 1.0625e9 / (e.bandwidth * 100e9));
  // Attention: 512 B of KV against 4 x 1 layer x 1024 x 1 ops, each at its own rate.
  const double attn =
      std::max(512 / (f.bandwidth * 100e9), 4096 / (plan::kDecodeAttentionShare * 1e12));
  expect_rel(r.decode_step_s, 2e9 / (e.gemv * 1e12) + attn);
  EXPECT_EQ(r.decode_bound, "compute");
}

TEST(PlanModel, DecodeReadsEveryStreamsKvAtTheAverageDepth) {
  // 4 users, prompt 1000, output 200: average depth 1100, so 4 x 1100 x 512 B of KV per step.
  Workload w;
  w.prompt = 1000;
  w.output = 200;
  w.users = 4;
  const plan::PlanResult r = plan::predict(q8_model(), profile_100(), w);
  const plan::KernelEfficiency e = plan::kernel_efficiency(DType::Q8_0);
  const plan::KernelEfficiency f = plan::kernel_efficiency(DType::F16);
  // The attention: 4 x 1100 x 512 B = 2.25 MB read (22.5 us), or 4 x 1100 x 4096 ops at the
  // decode attention's share of the float unit (85.8 us at 0.21): the larger of the two.
  const double attn = std::max(4 * 1100 * 512.0 / (f.bandwidth * 100e9),
                               4 * 1100 * 4096.0 / (plan::kDecodeAttentionShare * 1e12));
  const double mem = 1.0625e9 / (e.bandwidth * 100e9) + attn;
  expect_rel(r.decode_step_s, mem);
  expect_rel(r.decode_tps_total, 4 / mem);
  expect_rel(r.decode_tps_stream, 1 / mem);
}

TEST(PlanModel, BatchingRaisesTheAggregateUntilComputeBinds) {
  // B streams: reading the weights takes 10.6 ms whatever B (the KV is tiny here); the
  // arithmetic is B x 2e9 ops at e_gemm x 10 TOPS (0.8 ms a stream at e_gemm = 0.25), at least
  // one token's at e_gemv: compute binds from about 14 streams.
  Workload w;
  w.prompt = 1;
  w.output = 0;
  double last_total = 0, last_stream = 1e300;
  bool saw_compute = false;
  for (int64_t b : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
    w.users = b;
    const plan::PlanResult r = plan::predict(q8_model(), profile_100(), w);
    EXPECT_GE(r.decode_tps_total, last_total * (1 - 1e-12)) << b;
    EXPECT_LE(r.decode_tps_stream, last_stream * (1 + 1e-12)) << b;
    last_total = r.decode_tps_total;
    last_stream = r.decode_tps_stream;
    if (r.decode_bound == "compute") saw_compute = true;
  }
  ASSERT_TRUE(saw_compute);
  // Fully compute-bound (256 streams), the aggregate is the matrix-matrix rate over one
  // token's operations, with the attention's (KV reads of 256 x 512 B are below its
  // arithmetic here).
  const plan::KernelEfficiency e = plan::kernel_efficiency(DType::Q8_0);
  const plan::KernelEfficiency f = plan::kernel_efficiency(DType::F16);
  const double step =
      256 * 2e9 / (e.gemm * 10e12) + std::max(256 * 512 / (f.bandwidth * 100e9),
                                              256 * 4096 / (plan::kDecodeAttentionShare * 1e12));
  expect_rel(last_total, 256 / step);
  // Memory-bound at first: 1 -> 2 streams nearly doubles the aggregate.
  w.users = 1;
  const double one = plan::predict(q8_model(), profile_100(), w).decode_tps_total;
  w.users = 2;
  EXPECT_NEAR(plan::predict(q8_model(), profile_100(), w).decode_tps_total / one, 2, 1e-3);
}

TEST(PlanModel, PrefillIsComputeBoundWithCausalAttention) {
  // P = 1000 tokens: 1000 x 2e9 int8 ops at e_gemm x 10 TOPS (0.8 s at 0.25), plus attention
  // over 1 + 2 + ... + 1000 = 500,500 positions: 4 x 1 layer x 1024 x 500500 ops at the float
  // e_gemm x 1 TFLOPS. Memory: ceil(1000 / 128) = 8 reads of the weights, 85 ms.
  Workload w;
  w.prompt = 1000;
  w.output = 10;
  w.users = 3;
  const plan::PlanResult r = plan::predict(q8_model(), profile_100(), w);
  const plan::KernelEfficiency e = plan::kernel_efficiency(DType::Q8_0);
  const plan::KernelEfficiency f = plan::kernel_efficiency(DType::F16);
  const double s = 1000 * 2e9 / (e.gemm * 10e12) + 4.0 * 1024 * 500500 / (f.gemm * 1e12);
  expect_rel(r.prefill_s, s);
  expect_rel(r.prefill_tps, 1000 / s);
  expect_rel(r.ttft_all_users_s, 3 * s);
  EXPECT_EQ(r.prefill_bound, "compute");
  expect_rel(r.request_s, s + 10 * r.decode_step_s);

  // With almost no compute limit, the weights read once per 128-token pass bind instead.
  HardwareProfile fast = profile_100();
  fast.int8_tops = fast.bf16_tflops = fast.fp32_tflops = 1e6;
  const plan::PlanResult m = plan::predict(q8_model(), fast, w);
  EXPECT_EQ(m.prefill_bound, "memory");
  expect_rel(m.prefill_s,
             8 * 1.0625e9 / (e.bandwidth * 100e9) + 4.0 * 1024 * 500500 / (f.gemm * 1e18));
}

TEST(PlanModel, MixedTypesAddUpTypeByType) {
  // A Q4_0 model with a Q6_K output matrix (as tokenfab synth --type q4_0 writes it): each
  // type's matrices take the larger of their reading and their arithmetic, and the step is
  // the sum. Prompt 1, output 0: attention over one position.
  ModelShape m = q8_model();
  m.groups = {{DType::Q4_0, 8e8, 4.5e8}, {DType::Q6_K, 2e8, 1.640625e8}};
  HardwareProfile h = profile_100();
  h.int8_tops = 1;
  Workload w;
  w.prompt = 1;
  w.output = 0;
  const plan::KernelEfficiency e4 = plan::kernel_efficiency(DType::Q4_0);
  const plan::KernelEfficiency e6 = plan::kernel_efficiency(DType::Q6_K);
  const plan::KernelEfficiency f = plan::kernel_efficiency(DType::F16);
  const double q4 = std::max(4.5e8 / (e4.bandwidth * 100e9), 1.6e9 / (e4.gemv * 1e12));
  const double q6 = std::max(1.640625e8 / (e6.bandwidth * 100e9), 4e8 / (e6.gemv * 1e12));
  const double attn =
      std::max(512 / (f.bandwidth * 100e9), 4096 / (plan::kDecodeAttentionShare * 1e12));
  expect_rel(plan::predict(m, h, w).decode_step_s, q4 + q6 + attn);
}

TEST(PlanModel, EnergyAndCostPerMillionTokens) {
  // $3.60/h = $0.001/s; 1000 W at $0.15/kWh = 1000 x 0.15 / 3.6e6 = $4.1667e-5/s.
  Workload w;
  w.prompt = 500;
  w.output = 100;
  w.users = 2;
  w.usd_per_kwh = 0.15;
  const plan::PlanResult r = plan::predict(q8_model(), profile_100(), w);
  const double per_s = 0.001 + 1000 * 0.15 / 3.6e6;
  expect_rel(r.usd_per_second, per_s);
  expect_rel(r.usd_per_mtok_input, per_s / r.prefill_tps * 1e6);
  expect_rel(r.usd_per_mtok_output, per_s / r.decode_tps_total * 1e6);
  expect_rel(r.prefill_tokens_per_joule, r.prefill_tps / 1000);
  expect_rel(r.decode_tokens_per_joule, r.decode_tps_total / 1000);
  // Free hardware: only the energy is paid.
  HardwareProfile h = profile_100();
  h.usd_per_hour = 0;
  expect_rel(plan::predict(q8_model(), h, w).usd_per_mtok_output,
             1000 * 0.15 / 3.6e6 / r.decode_tps_total * 1e6);
}

TEST(PlanModel, KvPerUserAndUsersThatFit) {
  // 32 layers, 8 KV heads of 128: f16 K + V per position = 32 x 2 x 1024 x 2 = 131072 B;
  // q8_0 = 32 x 2 x (1024 / 32 x 34) = 69632 B (0.53 of f16). 4096 positions a user:
  // 512 MiB in f16. 64 GiB - 1.0625e9 B of weights - 1 GiB overhead = 66,583,234,912 B
  // -> 124 users in f16 (124.02), 233 in q8_0 (233.45).
  ModelShape m = q8_model();
  m.n_layer = 32;
  m.n_head_kv = 8;
  m.n_head = 32;
  Workload w;
  w.prompt = 4000;
  w.output = 96;
  const plan::PlanResult f16 = plan::predict(m, profile_100(), w);
  EXPECT_DOUBLE_EQ(f16.kv_bytes_per_position, 131072);
  EXPECT_DOUBLE_EQ(f16.kv_bytes_per_user, 4096.0 * 131072);
  const double free_bytes = 64.0 * (1 << 30) - 1.0625e9 - plan::kMemoryOverheadBytes;
  EXPECT_EQ(f16.users_fit, int64_t(std::floor(free_bytes / (4096.0 * 131072))));
  EXPECT_EQ(f16.users_fit, 124);
  w.kv_type = DType::Q8_0;
  const plan::PlanResult q8 = plan::predict(m, profile_100(), w);
  EXPECT_DOUBLE_EQ(q8.kv_bytes_per_position, 69632);
  EXPECT_NEAR(q8.kv_bytes_per_user / f16.kv_bytes_per_user, 34.0 / 64, 1e-12);
  EXPECT_EQ(q8.users_fit, 233);
  EXPECT_TRUE(q8.warnings.empty());
  // More users than fit: a warning, and the memory needed says why.
  w.users = 300;
  const plan::PlanResult over = plan::predict(m, profile_100(), w);
  ASSERT_FALSE(over.warnings.empty());
  EXPECT_NE(over.warnings[0].find("do not fit"), std::string::npos);
  expect_rel(over.memory_needed_bytes,
             1.0625e9 + plan::kMemoryOverheadBytes + 300 * q8.kv_bytes_per_user);
  // Weights larger than memory: nobody fits.
  HardwareProfile small = profile_100();
  small.memory_gib = 1;
  EXPECT_EQ(plan::predict(m, small, w).users_fit, 0);
}

TEST(PlanModel, RejectsImpossibleInputs) {
  Workload w;
  w.users = 0;
  EXPECT_THROW(plan::predict(q8_model(), profile_100(), w), Error);
  w = Workload{};
  w.prompt = 0;
  EXPECT_THROW(plan::predict(q8_model(), profile_100(), w), Error);
  w = Workload{};
  HardwareProfile h = profile_100();
  h.mem_bw_gb_s = 0;
  EXPECT_THROW(plan::predict(q8_model(), h, w), Error);
  h = profile_100();
  h.int8_tops = h.bf16_tflops = h.fp32_tflops = 0;
  EXPECT_THROW(plan::predict(q8_model(), h, w), Error);
}

nlohmann::json good_profile() {
  return {{"name", "box"},      {"mem_bw_gb_s", 200}, {"int8_tops", 20},     {"bf16_tflops", 5},
          {"fp32_tflops", 2.5}, {"watts", 300},       {"usd_per_hour", 1.2}, {"memory_gib", 256}};
}

std::string profile_error(const nlohmann::json& j) {
  try {
    plan::profile_from_json(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PlanProfiles, JsonValidation) {
  const HardwareProfile p = plan::profile_from_json(good_profile());
  EXPECT_EQ(p.name, "box");
  EXPECT_EQ(p.source, "user profile");
  EXPECT_DOUBLE_EQ(p.mem_bw_gb_s, 200);
  EXPECT_DOUBLE_EQ(p.memory_gib, 256);

  nlohmann::json j = good_profile();
  j.erase("watts");
  EXPECT_NE(profile_error(j).find("\"watts\" is missing"), std::string::npos) << profile_error(j);
  j = good_profile();
  j["mem_bw_gb_s"] = -5;
  EXPECT_NE(profile_error(j).find("\"mem_bw_gb_s\" must be > 0"), std::string::npos)
      << profile_error(j);
  j = good_profile();
  j["mem_bw_gb_s"] = 0;
  EXPECT_NE(profile_error(j).find("\"mem_bw_gb_s\" must be > 0"), std::string::npos);
  j = good_profile();
  j["usd_per_hour"] = -1;
  EXPECT_NE(profile_error(j).find("\"usd_per_hour\" must be >= 0"), std::string::npos);
  j = good_profile();
  j["int8_tops"] = "fast";
  EXPECT_NE(profile_error(j).find("\"int8_tops\" must be a number"), std::string::npos);
  j = good_profile();
  j["int8_tops"] = j["bf16_tflops"] = j["fp32_tflops"] = 0;
  EXPECT_NE(profile_error(j).find("compute peak"), std::string::npos);
  j = good_profile();
  j["name"] = 7;
  EXPECT_NE(profile_error(j).find("\"name\" must be a string"), std::string::npos);
  EXPECT_NE(profile_error(nlohmann::json::array()).find("JSON object"), std::string::npos);
}

TEST(PlanProfiles, BuiltInsAreValidAndSayWhereTheyComeFrom) {
  ASSERT_GE(plan::builtin_profiles().size(), 4u);
  int measured = 0, datasheet = 0;
  for (const HardwareProfile& p : plan::builtin_profiles()) {
    // Each survives its own JSON: the same validation as a user's file.
    const HardwareProfile q = plan::profile_from_json(plan::to_json(p));
    EXPECT_EQ(q.name, p.name);
    EXPECT_DOUBLE_EQ(q.mem_bw_gb_s, p.mem_bw_gb_s);
    EXPECT_GT(p.watts, 0) << p.name;
    EXPECT_FALSE(p.price_note.empty()) << p.name;
    EXPECT_EQ(plan::find_profile(p.name), &p);
    if (p.source.rfind("measured", 0) == 0) ++measured;
    if (p.source.rfind("datasheet", 0) == 0) ++datasheet;
  }
  EXPECT_EQ(measured, 1);
  EXPECT_GE(datasheet, 3);
  EXPECT_EQ(plan::find_profile("no-such-part"), nullptr);
}

// Runs the tokenfab binary; returns its exit code, with stdout and stderr.
struct CliRun {
  int code;
  std::string out, err;
};
CliRun run_cli(const std::vector<std::string>& args) {
  std::string cmd = TF_CLI_PATH;
  for (const auto& a : args) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += " " + q + "'";
  }
  const std::string out_file = test::tmp_file("plan_out"), err_file = test::tmp_file("plan_err");
  cmd += " >" + out_file + " 2>" + err_file;
  const int status = std::system(cmd.c_str());
  CliRun r{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
           test::read_file(out_file), test::read_file(err_file)};
  std::filesystem::remove(out_file);
  std::filesystem::remove(err_file);
  return r;
}

const std::vector<std::string> kLlama8B = {"plan",     "--params",   "8.03e9", "--quant", "q4_0",
                                           "--layers", "32",         "--embd", "4096",    "--heads",
                                           "32",       "--kv-heads", "8",      "--vocab", "128256"};

TEST(PlanCli, ParamsJsonHasTheFields) {
  std::vector<std::string> args = kLlama8B;
  for (const char* a : {"--profile", "h100-sxm", "--prompt", "1000", "--output", "200", "--users",
                        "8", "--kv-type", "q8_0", "--json"})
    args.push_back(a);
  const CliRun r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);  // throws (fails) if not JSON
  EXPECT_EQ(j["model"]["weight_type"], "q4_0");
  EXPECT_EQ(j["profile"]["name"], "h100-sxm");
  EXPECT_EQ(j["workload"]["users"], 8);
  EXPECT_EQ(j["workload"]["kv_type"], "q8_0");
  for (const char* k : {"tokens_per_s", "ttft_s", "tokens_per_joule", "usd_per_mtok", "bound"})
    EXPECT_TRUE(j["plan"]["prefill"].contains(k)) << k;
  for (const char* k :
       {"tokens_per_s_per_stream", "tokens_per_s_total", "tokens_per_joule", "usd_per_mtok"})
    EXPECT_TRUE(j["plan"]["decode"].contains(k)) << k;
  for (const char* k : {"kv_bytes_per_user", "users_fit"})
    EXPECT_TRUE(j["plan"]["memory"].contains(k)) << k;
  // The CLI prints what the library computes for the same inputs.
  plan::ParamShape p;
  p.params = 8.03e9;
  p.quant = "q4_0";
  p.layers = 32;
  p.embd = 4096;
  p.heads = 32;
  p.kv_heads = 8;
  p.vocab = 128256;
  Workload w;
  w.prompt = 1000;
  w.output = 200;
  w.users = 8;
  w.kv_type = DType::Q8_0;
  const plan::PlanResult want =
      plan::predict(plan::shape_from_params(p), *plan::find_profile("h100-sxm"), w);
  EXPECT_NEAR(j["plan"]["decode"]["tokens_per_s_total"].get<double>(), want.decode_tps_total,
              want.decode_tps_total * 1e-9);
  EXPECT_EQ(j["plan"]["memory"]["users_fit"].get<int64_t>(), want.users_fit);
  // 1200 positions x 32 layers x 2 x (1024 / 32 x 34 B).
  EXPECT_DOUBLE_EQ(j["plan"]["memory"]["kv_bytes_per_user"].get<double>(), 1200.0 * 32 * 2 * 1088);
}

TEST(PlanCli, TableListAndErrors) {
  std::vector<std::string> args = kLlama8B;
  args.insert(args.end(), {"--profile", "epyc-9654"});
  CliRun r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("decode (output)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("users that fit"), std::string::npos) << r.out;

  r = run_cli({"plan", "--list-profiles", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GE(nlohmann::json::parse(r.out)["profiles"].size(), 4u);

  auto one_line_error = [](const CliRun& r, const std::string& needle) {
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  test::TmpFile bad("plan_profile.json");
  { std::ofstream(bad.path) << R"({"name": "x", "mem_bw_gb_s": 100, "int8_tops": 1})"; }
  args = kLlama8B;
  args.insert(args.end(), {"--profile", bad.path});
  one_line_error(run_cli(args), "is missing");
  args = kLlama8B;
  args.insert(args.end(), {"--profile", "no-such-part"});
  one_line_error(run_cli(args), "unknown profile");
  one_line_error(run_cli({"plan", "--profile", "h100-sxm"}), "needs a model");
  args = kLlama8B;
  args.insert(args.end(), {"--validate"});
  one_line_error(run_cli(args), "needs a model file");
}

}  // namespace
}  // namespace tf
