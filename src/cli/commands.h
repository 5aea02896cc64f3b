// Each `tokenfab <command>` registers its options on a CLI11 subcommand and returns the
// function that runs it (returning the process exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/meter.h"
#include "sample/grammar.h"
#include "sample/sampler.h"

namespace tf::cli {

using Runner = std::function<int()>;

Runner add_run(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_membw(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_template(CLI::App& app);
Runner add_chat(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_keygen(CLI::App& app);
Runner add_plan(CLI::App& app);

// The KV cache type option shared by run, perplexity and bench (parsed with parse_kv_type).
inline void add_kv_type_option(CLI::App* c, std::string& kv_type) {
  c->add_option("--kv-type", kv_type, "KV cache type: f16 or q8_0 (half the memory)")
      ->check(CLI::IsMember({"f16", "q8_0"}));
}

// The meter's options shared by run, bench and serve (engine/meter.h).
inline void add_meter_options(CLI::App* c, MeterOptions& m) {
  c->add_option("--watts", m.watts,
                "power while computing, for the energy model when RAPL is not readable (default 10 W per thread)")
      ->check(CLI::Range(0.0, 1e6));
  c->add_option("--price-kwh", m.price_kwh, "electricity price in $ per kWh (default 0.15)")
      ->check(CLI::Range(0.0, 1e4));
  c->add_option("--hardware-cost-per-hour", m.hardware_usd_per_hour,
                "the machine's cost in $ per hour (default $0.045 per hardware thread)")
      ->check(CLI::Range(0.0, 1e6));
  c->add_flag("!--no-rapl", m.use_rapl, "use the power model even when RAPL counters are readable");
}

// The sampling options shared by run and chat.
struct SamplingArgs {
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f;
  int top_k = 40;
  float repeat_penalty = 1.0f, freq_penalty = 0.f, presence_penalty = 0.f;
  int repeat_last_n = 64;
  int64_t seed = -1;

  SamplingParams params() const {
    SamplingParams s;
    s.temperature = temp;
    s.top_k = top_k;
    s.top_p = top_p;
    s.min_p = min_p;
    s.repeat_penalty = repeat_penalty;
    s.frequency_penalty = freq_penalty;
    s.presence_penalty = presence_penalty;
    s.penalty_last_n = repeat_last_n;
    if (seed >= 0) s.seed = uint64_t(seed);
    return s;
  }
};

inline void add_sampling_options(CLI::App* c, SamplingArgs& a) {
  c->add_option("--temp", a.temp, "temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", a.top_k, "top-k (0 = off)")->check(CLI::Range(0, 1 << 30));
  c->add_option("--top-p", a.top_p, "top-p (1 = off)")->check(CLI::Range(0.0, 1.0));
  c->add_option("--min-p", a.min_p, "min-p (0 = off)")->check(CLI::Range(0.0, 1.0));
  c->add_option("--repeat-penalty", a.repeat_penalty, "repetition penalty (1 = off)")
      ->check(CLI::Range(0.01, 100.0));
  c->add_option("--repeat-last-n", a.repeat_last_n, "tokens the penalties look back (-1 = all)")
      ->check(CLI::Range(-1, 1 << 30));
  c->add_option("--frequency-penalty", a.freq_penalty, "frequency penalty")
      ->check(CLI::Range(-2.0, 2.0));
  c->add_option("--presence-penalty", a.presence_penalty, "presence penalty")
      ->check(CLI::Range(-2.0, 2.0));
  c->add_option("--seed", a.seed, "random seed (-1 = random)")
      ->check(CLI::Range(int64_t(-1), int64_t(0xFFFFFFFE)));
}

// --grammar FILE / --json-schema FILE, shared by run and bench.
struct ConstraintArgs {
  std::string grammar_file, schema_file;
  // The grammar they give (null for neither); throws tf::Error naming the file on a bad one.
  std::shared_ptr<const Grammar> load() const;
};
void add_constraint_options(CLI::App* c, ConstraintArgs& a, const std::string& what);

}  // namespace tf::cli
