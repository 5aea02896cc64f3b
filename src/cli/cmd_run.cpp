// tokenfab run: generate a continuation of a prompt, streamed to stdout.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
struct RunArgs {
  std::string model, prompt;
  ConstraintArgs constraint;
  int n_predict = 128;
  SamplingArgs sampling;
  int threads = 0;
  int64_t ctx = 0;
  bool json = false, ignore_eos = false, mmap = false;
  std::string kv_type = "f16", quant;
  MeterOptions meter;
};

int run(const RunArgs& a) {
  LoadOptions lo;
  lo.n_threads = a.threads;
  lo.n_ctx = a.ctx;
  lo.use_mmap = a.mmap;
  lo.quant = a.quant;
  lo.kv_type = parse_kv_type(a.kv_type);
  lo.meter = a.meter;
  auto engine = Engine::load(a.model, lo);
  GenerateOptions go;
  go.n_predict = a.n_predict;
  go.ignore_eos = a.ignore_eos;
  go.sampling = a.sampling.params();
  go.grammar = a.constraint.load();

  std::function<bool(const std::string&)> stream;
  if (!a.json) {
    stream = [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    };
  }
  const Generation g = engine->generate(a.prompt, go, stream);
  const Timings& t = g.timings;
  if (a.json) {
    nlohmann::json j;
    j["prompt_tokens"] = g.prompt_ids;
    j["tokens"] = g.tokens;
    j["text"] = g.text;
    j["stop_reason"] = g.stop_reason;
    // As llama.cpp's server reports them: prompt_n tokens processed, cache_n served from the
    // KV cache (always 0 here: a fresh engine per run).
    j["timings"] = {{"prompt_n", t.prompt_tokens},
                    {"cache_n", t.cached_tokens},
                    {"prompt_ms", t.prompt_ms},
                    {"prompt_per_second", t.prompt_tps()},
                    {"predicted_n", t.gen_tokens},
                    {"predicted_ms", t.gen_ms},
                    {"predicted_per_second", t.gen_tps()},
                    {"threads", engine->n_threads()}};
    auto charge = [](const Charge& c, int64_t n) {
      return nlohmann::json{{"tokens", n},
                            {"seconds", c.seconds},
                            {"joules", c.joules},
                            {"cost_usd", c.usd},
                            {"usd_per_mtok", c.usd_per_mtok(n)}};
    };
    j["meter"] = {{"energy_source", t.energy_source},
                  {"energy_detail", engine->energy_description()},
                  {"prompt", charge(t.prompt_charge, t.prompt_tokens)},
                  {"generation", charge(t.gen_charge, t.gen_tokens)}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  std::fprintf(stderr,
               "prompt: %lld tokens, %.1f tokens/s | generation: %lld tokens, %.1f tokens/s | %d "
               "threads | stop: %s\n",
               (long long)t.prompt_tokens, t.prompt_tps(), (long long)t.gen_tokens, t.gen_tps(),
               engine->n_threads(), g.stop_reason.c_str());
  const double joules = t.prompt_charge.joules + t.gen_charge.joules;
  const int64_t n = t.prompt_tokens + t.gen_tokens;
  std::fprintf(
      stderr,
      "energy: %.3f J, %.2f tokens/J (%s) | cost: $%.6f, $%.3f/Mtok prompt, $%.3f/Mtok generated\n",
      joules, joules > 0 ? double(n) / joules : 0.0, engine->energy_description().c_str(),
      t.prompt_charge.usd + t.gen_charge.usd, t.prompt_charge.usd_per_mtok(t.prompt_tokens),
      t.gen_charge.usd_per_mtok(t.gen_tokens));
  return 0;
}
}  // namespace

Runner add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* c = app.add_subcommand("run", "generate text from a prompt");
  c->add_option("-m,--model", a->model, "GGUF model file or Hugging Face model directory")
      ->required();
  c->add_option(
      "--quant", a->quant,
      "Hugging Face directory: convert the matrices to this type on load (f16, q8_0, q4_k_m, ...)");
  c->add_option("-p,--prompt", a->prompt, "prompt text (special tokens are parsed)");
  add_constraint_options(c, a->constraint, "the output follows it");
  c->add_option("-n,--n-predict", a->n_predict, "tokens to generate (-1: until EOS / full)")
      ->check(CLI::Range(-1, 1 << 30));
  add_sampling_options(c, a->sampling);
  c->add_option("-t,--threads", a->threads, "threads (0 = auto)")->check(CLI::Range(0, 1024));
  c->add_option("-c,--ctx-size", a->ctx, "context size (0 = model's, at most 4096)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  add_kv_type_option(c, a->kv_type);
  add_meter_options(c, a->meter);
  c->add_flag("--mmap", a->mmap, "map the model file instead of reading it into memory");
  c->add_flag("--ignore-eos", a->ignore_eos, "keep generating past end-of-sequence tokens");
  c->add_flag("--json", a->json, "print one JSON object instead of streaming text");
  return [a] { return run(*a); };
}

}  // namespace tf::cli
