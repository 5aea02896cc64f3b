// tokenfab bench: prompt-processing and generation speed, and how close generation comes to
// the memory-bandwidth limit. tokenfab membw: the machine's limits themselves.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "backend/machine.h"
#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
struct BenchArgs {
  std::string model;
  BenchParams p;
  bool json = false, mmap = false;
  std::string kv_type = "f16", quant;
  ConstraintArgs constraint;
};

nlohmann::json cost_json(const BenchResult::Cost& c) {
  return {{"tokens_per_joule", c.tokens_per_joule},
          {"joules_per_token", c.joules_per_token},
          {"usd_per_mtok", c.usd_per_mtok}};
}

int bench(BenchArgs& a) {
  tools::ModelSourceOptions src;
  src.use_mmap = a.mmap;
  src.quant = a.quant;
  auto model = tools::load_model(a.model, src);
  a.p.kv_type = parse_kv_type(a.kv_type);
  a.p.grammar = a.constraint.load();
  if (a.p.grammar) {
    auto tok = Tokenizer::from_gguf(model->file());
    a.p.grammar_vocab = GrammarVocab::of(*tok, false);
  }
  const BenchResult r = run_bench(*model, a.p);
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["pp"] = {{"n", a.p.n_prompt}, {"tokens_per_s", r.pp.mean}, {"sd", r.pp.sd}};
    j["tg"] = {{"n", a.p.n_gen},
               {"depth", a.p.n_depth},
               {"sequences", a.p.n_seq},
               {"tokens_per_s", r.tg.mean},
               {"sd", r.tg.sd}};
    if (a.p.n_prompt > 0) j["pp"].update(cost_json(r.pp_cost));
    if (a.p.n_gen > 0) j["tg"].update(cost_json(r.tg_cost));
    j["energy_source"] = r.energy;
    if (a.p.grammar)
      j["tg_grammar"] = {{"tokens_per_s", r.tg_grammar.mean},
                         {"sd", r.tg_grammar.sd},
                         {"overhead", 1 - r.tg_grammar.mean / r.tg.mean},
                         {"masked_steps", r.grammar_masks}};
    j["threads"] = r.threads;
    j["bytes_per_token"] = r.bytes_per_token;
    j["bandwidth_gb_s"] = r.bandwidth_gb_s;
    j["bandwidth_fraction"] = r.bandwidth_fraction;
    j["compute"] = {{"ops_per_token", r.ops_per_token},
                    {"peak_gops", r.peak_gops},
                    {"peak", r.peak_kind},
                    {"pp_fraction", r.pp_peak_fraction},
                    {"tg_fraction", r.tg_peak_fraction}};
    j["tiled_matrices"] = model->tiled_matrices();
    j["memory"] = {{"resident_bytes", r.resident_bytes},
                   {"file_bytes", r.file_bytes},
                   {"kv_bytes", r.kv_bytes}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf(
      "model: %s (%.1f MiB of weights read per token, %lld matrices in tiles)\nthreads: %d\n",
      a.model.c_str(), r.bytes_per_token / (1 << 20), (long long)model->tiled_matrices(),
      r.threads);
  if (a.p.n_prompt > 0) {
    std::printf("pp%-5lld %10.2f ± %.2f tokens/s\n", (long long)a.p.n_prompt, r.pp.mean, r.pp.sd);
    if (r.peak_gops > 0)
      std::printf("prompt computes %.1f GOP/s = %.1f%% of the measured %s peak %.1f GOP/s\n",
                  r.pp.mean * r.ops_per_token / 1e9, 100 * r.pp_peak_fraction, r.peak_kind.c_str(),
                  r.peak_gops);
  }
  if (a.p.n_gen > 0) {
    std::printf("tg%-5lld %10.2f ± %.2f tokens/s", (long long)a.p.n_gen, r.tg.mean, r.tg.sd);
    if (a.p.n_seq > 1) std::printf(" aggregate over %lld sequences", (long long)a.p.n_seq);
    if (a.p.n_depth > 0) std::printf(" after %lld cached positions", (long long)a.p.n_depth);
    std::printf("\n");
    if (a.p.grammar)
      std::printf(
          "tg%-5lld %10.2f ± %.2f tokens/s with the grammar: %.1f%% slower (%.0f%% of steps "
          "masked)\n",
          (long long)a.p.n_gen, r.tg_grammar.mean, r.tg_grammar.sd,
          100 * (1 - r.tg_grammar.mean / r.tg.mean), 100 * r.grammar_masks);
    if (r.bandwidth_gb_s > 0)
      std::printf(
          "generation reads %.2f GB/s = %.1f%% of the measured %.2f GB/s (ceiling %.1f tokens/s)\n",
          r.bytes_per_token * r.tg.mean / 1e9, 100 * r.bandwidth_fraction, r.bandwidth_gb_s,
          r.bandwidth_gb_s * 1e9 / r.bytes_per_token);
    if (a.p.n_seq > 1 && r.peak_gops > 0)
      std::printf("generation computes %.1f GOP/s = %.1f%% of the measured %s peak\n",
                  r.tg.mean * r.ops_per_token / 1e9, 100 * r.tg_peak_fraction, r.peak_kind.c_str());
  }
  auto cost_line = [](const char* what, const BenchResult::Cost& c) {
    std::printf("%s: %.2f tokens/J (%.4f J/token), $%.4f per million tokens\n", what,
                c.tokens_per_joule, c.joules_per_token, c.usd_per_mtok);
  };
  std::printf("energy: %s\n", r.energy.c_str());
  if (a.p.n_prompt > 0) cost_line("prompt", r.pp_cost);
  if (a.p.n_gen > 0) cost_line("generation", r.tg_cost);
  constexpr double kMiB = 1 << 20;
  if (r.resident_bytes > 0)
    std::printf("resident %.1f MiB = %.3f x (model file %.1f MiB + KV cache %.1f MiB)\n",
                r.resident_bytes / kMiB, r.resident_bytes / (r.file_bytes + r.kv_bytes),
                r.file_bytes / kMiB, r.kv_bytes / kMiB);
  return 0;
}

int membw(bool json) {
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  nlohmann::json j;
  j["bandwidth"] = nlohmann::json::array();
  for (int t = 1; t <= hw; ++t) {
    const double bw = measure_read_bandwidth(t);
    j["bandwidth"].push_back({{"threads", t}, {"gb_per_s", bw}});
    if (!json) std::printf("read bandwidth, %d thread%s: %6.2f GB/s\n", t, t > 1 ? "s" : " ", bw);
  }
  for (int t : {1, hw}) {
    const ComputePeak c = measure_compute_peak(t);
    j["compute"].push_back({{"threads", t},
                            {"isa", c.isa},
                            {"fp32_gflops", c.fp32_gflops},
                            {"int8_gops", c.int8_gops}});
    if (!json)
      std::printf("compute, %d thread%s (%s): fp32 %.1f GFLOP/s, int8 %.1f GOP/s\n", t,
                  t > 1 ? "s" : " ", c.isa, c.fp32_gflops, c.int8_gops);
    if (hw == 1) break;
  }
  const AmxInfo amx = query_amx();
  j["amx"] = {{"tile", amx.tile}, {"int8", amx.int8}, {"bf16", amx.bf16}, {"granted", amx.granted}};
  if (!json) {
    if (!amx.tile)
      std::printf("amx: not on this CPU (no int8/bf16 tile peaks)\n");
    else
      std::printf(
          "amx: tile%s%s, tile state %s by the OS; no kernel uses it yet, peaks not measured\n",
          amx.int8 ? " int8" : "", amx.bf16 ? " bf16" : "", amx.granted ? "granted" : "refused");
  }
  if (json) std::printf("%s\n", j.dump().c_str());
  return 0;
}
}  // namespace

Runner add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* c = app.add_subcommand("bench", "measure prompt and generation speed");
  c->add_option("-m,--model", a->model, "GGUF model file or Hugging Face model directory")
      ->required();
  c->add_option(
      "--quant", a->quant,
      "Hugging Face directory: convert the matrices to this type on load (f16, q8_0, q4_k_m, ...)");
  c->add_option("-p,--n-prompt", a->p.n_prompt, "prompt tokens per batch (0 = skip)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 16));
  c->add_option("-d,--depth", a->p.n_depth, "generate after this many cached positions")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  c->add_option("-n,--n-gen", a->p.n_gen, "generated tokens (0 = skip)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 16));
  c->add_option("-t,--threads", a->p.n_threads, "threads (0 = auto)")->check(CLI::Range(0, 1024));
  c->add_option(
       "-s,--sequences", a->p.n_seq,
       "generate for this many sequences at once, one batch per step (tg: aggregate tokens/s)")
      ->check(CLI::Range(int64_t(1), int64_t(256)));
  c->add_option("-r,--reps", a->p.reps, "repetitions")->check(CLI::Range(1, 1000));
  c->add_flag("--json", a->json, "print one JSON object");
  add_kv_type_option(c, a->kv_type);
  add_meter_options(c, a->p.meter);
  add_constraint_options(c, a->constraint,
                         "also generate constrained by it (interleaved): its overhead");
  c->add_flag("--mmap", a->mmap, "map the model file instead of reading it into memory");
  return [a] { return bench(*a); };
}

Runner add_membw(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("membw", "measure memory bandwidth and compute peaks");
  c->add_flag("--json", *json, "print one JSON object");
  return [json] { return membw(*json); };
}

}  // namespace tf::cli
