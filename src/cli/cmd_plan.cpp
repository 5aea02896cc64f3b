// tokenfab plan: the factory planner. Predicts speed, energy, cost and KV memory for a model on
// a hardware profile under a workload (src/tools/plan.h holds the roofline model); --validate
// measures the prediction against `bench` on this machine.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "backend/machine.h"
#include "cli/chat_common.h"
#include "cli/commands.h"
#include "tokenfab/tokenfab.h"
#include "tools/plan.h"

namespace tf::cli {

namespace {

// Power and price of this machine when nothing better is known (--watts and
// --hardware-cost-per-hour override): the meter's defaults (engine/meter.h), so that a plan
// and what run / bench / serve charge agree.
constexpr double kWattsPerCore = kDefaultWattsPerThread;
constexpr double kUsdPerCoreHour = kDefaultUsdPerThreadHour;

struct PlanArgs {
  std::string model, profile = "this";
  plan::ParamShape params;
  plan::Workload w;
  std::string kv_type = "f16";
  double watts = -1, cost_per_hour = -1;
  int threads = 0;
  bool json = false, list = false, validate = false;
};

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) {
        std::string v = line.substr(c + 1);
        v.erase(0, v.find_first_not_of(' '));
        return v;
      }
    }
  return "unknown CPU";
}

double memory_gib() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kib = 0;
  while (f >> key) {
    if (key == "MemTotal:") {
      f >> kib;
      break;
    }
    f.ignore(1 << 10, '\n');
  }
  return kib / (1024 * 1024);
}

// Profile "this": the machine measured now, as `tokenfab membw` does.
plan::HardwareProfile measure_this(int threads) {
  plan::HardwareProfile h;
  h.name = "this";
  // The median of five membw readings (each the best of five passes over 1 GiB): on a shared
  // VM single readings moved by +-30% while decoding speed held still (see plan.cpp).
  std::vector<double> bws;
  for (int i = 0; i < 5; ++i) bws.push_back(measure_read_bandwidth(threads));
  std::sort(bws.begin(), bws.end());
  const double bw = bws[2];
  // The best of three: a reading taken while a neighbour holds the other core is halved.
  ComputePeak c = measure_compute_peak(threads);
  for (int i = 0; i < 2; ++i) {
    const ComputePeak more = measure_compute_peak(threads);
    if (more.int8_gops > c.int8_gops) c.int8_gops = more.int8_gops;
    if (more.fp32_gflops > c.fp32_gflops) c.fp32_gflops = more.fp32_gflops;
  }
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  h.source = "measured on this machine by membw's probes, " + std::string(date) + ", " +
             cpu_model() + ", " + std::to_string(threads) + " thread" + (threads > 1 ? "s" : "") +
             " (" + c.isa + "); bf16 = the fp32 peak (tokenfab's F16/BF16 kernels compute in fp32)";
  h.mem_bw_gb_s = bw;
  h.int8_tops = c.int8_gops / 1e3;
  h.fp32_tflops = c.fp32_gflops / 1e3;
  h.bf16_tflops = h.fp32_tflops;
  h.watts = kWattsPerCore * threads;
  h.usd_per_hour = kUsdPerCoreHour * threads;
  char note[160];
  std::snprintf(note, sizeof note,
                "estimate (the meter's defaults): %d x %.0f W and %d x $%.3f/h per thread; "
                "--watts and --hardware-cost-per-hour override",
                threads, kWattsPerCore, threads, kUsdPerCoreHour);
  h.price_note = note;
  h.memory_gib = memory_gib();
  return h;
}

bool looks_like_file(const std::string& s) {
  return s.find('/') != std::string::npos || s.find(".json") != std::string::npos;
}

plan::HardwareProfile load_profile(const std::string& spec, int threads) {
  if (spec == "this" || spec == "measure") return measure_this(threads);
  if (const plan::HardwareProfile* p = plan::find_profile(spec)) return *p;
  std::ifstream probe(spec);
  if (!probe) {
    std::string names = "this";
    for (const auto& p : plan::builtin_profiles()) names += ", " + p.name;
    if (looks_like_file(spec)) throw Error(spec + ": cannot open profile file");
    throw Error("unknown profile '" + spec + "' (built in: " + names + "; or a JSON file)");
  }
  const std::string text = read_file_bytes(spec, "profile");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw Error(spec + ": the profile file is not valid JSON");
  }
  try {
    plan::HardwareProfile p = plan::profile_from_json(j);
    return p;
  } catch (const Error& e) {
    throw Error(spec + ": " + e.what());
  }
}

void list_profiles(bool json) {
  nlohmann::json arr = nlohmann::json::array();
  if (!json)
    std::printf("%-14s %9s %9s %9s %9s %7s %8s %8s  source\n", "name", "GB/s", "int8 TOPS",
                "bf16 TF", "fp32 TF", "watts", "$/hour", "mem GiB");
  if (!json)
    std::printf("%-14s %9s %9s %9s %9s %7s %8s %8s  measured at run time (membw's probes)\n",
                "this", "-", "-", "-", "-", "-", "-", "-");
  for (const plan::HardwareProfile& p : plan::builtin_profiles()) {
    if (json) {
      arr.push_back(plan::to_json(p));
      continue;
    }
    std::printf("%-14s %9.1f %9.2f %9.2f %9.2f %7.0f %8.3f %8.0f  %s\n", p.name.c_str(),
                p.mem_bw_gb_s, p.int8_tops, p.bf16_tflops, p.fp32_tflops, p.watts, p.usd_per_hour,
                p.memory_gib, p.source.c_str());
  }
  if (json) std::printf("%s\n", nlohmann::json{{"profiles", arr}}.dump().c_str());
}

std::string human_bytes(double b) {
  char buf[64];
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1f KB", b / 1e3);
  return buf;
}

void print_plan(const plan::ModelShape& m, const plan::HardwareProfile& h, const plan::Workload& w,
                const plan::PlanResult& r) {
  std::printf(
      "model:    %s: %s, %.3g params (%.3g multiplied per token), %s read per token, %s in "
      "memory\n",
      m.name.c_str(), m.weight_type.c_str(), m.n_params, m.matmul_params(),
      human_bytes(m.weight_bytes).c_str(), human_bytes(m.resident_bytes).c_str());
  std::printf("          %lld layers, embd %lld, %lld heads (%lld KV) of %lld, vocab %lld\n",
              (long long)m.n_layer, (long long)m.n_embd, (long long)m.n_head,
              (long long)m.n_head_kv, (long long)m.head_dim, (long long)m.n_vocab);
  std::printf(
      "profile:  %s: %.1f GB/s, int8 %.3g TOPS, bf16 %.3g TFLOPS, fp32 %.3g TFLOPS, %.0f W, "
      "$%.3f/h, %.0f GiB\n",
      h.name.c_str(), h.mem_bw_gb_s, h.int8_tops, h.bf16_tflops, h.fp32_tflops, h.watts,
      h.usd_per_hour, h.memory_gib);
  std::printf("          %s\n", h.source.c_str());
  if (!h.price_note.empty()) std::printf("          price: %s\n", h.price_note.c_str());
  std::printf("workload: prompt %lld, output %lld, %lld concurrent user%s, KV %s, $%.3f/kWh\n\n",
              (long long)w.prompt, (long long)w.output, (long long)w.users, w.users > 1 ? "s" : "",
              dtype_name(w.kv_type), w.usd_per_kwh);
  std::printf("%-22s %14s %14s %9s %12s %12s\n", "", "t/s per stream", "t/s aggregate", "bound",
              "tokens/J", "$/Mtok");
  std::printf("%-22s %14.2f %14.2f %9s %12.3g %12.4g\n", "prefill (prompt)", r.prefill_tps,
              r.prefill_tps, r.prefill_bound.c_str(), r.prefill_tokens_per_joule,
              r.usd_per_mtok_input);
  std::printf("%-22s %14.2f %14.2f %9s %12.3g %12.4g\n\n", "decode (output)", r.decode_tps_stream,
              r.decode_tps_total, r.decode_bound.c_str(), r.decode_tokens_per_joule,
              r.usd_per_mtok_output);
  std::printf("time to first token:  %.3f s alone", r.prefill_s);
  if (w.users > 1)
    std::printf(", %.3f s for the last of %lld prompts arriving together", r.ttft_all_users_s,
                (long long)w.users);
  std::printf("\n");
  std::printf("one request:          %.2f s (prompt, then %lld tokens at %.2f t/s)\n", r.request_s,
              (long long)w.output, r.decode_tps_stream);
  std::printf("KV cache:             %s per user (%s per position)",
              human_bytes(r.kv_bytes_per_user).c_str(),
              human_bytes(r.kv_bytes_per_position).c_str());
  if (w.users > 1)
    std::printf("; %s for %lld users", human_bytes(r.kv_bytes_per_user * double(w.users)).c_str(),
                (long long)w.users);
  std::printf("\n");
  std::printf("users that fit:       %lld in %.0f GiB (weights %s + %s overhead)\n",
              (long long)r.users_fit, h.memory_gib, human_bytes(m.resident_bytes).c_str(),
              human_bytes(plan::kMemoryOverheadBytes).c_str());
  for (const std::string& s : r.warnings) std::printf("warning: %s\n", s.c_str());
}

int plan_main(PlanArgs& a) {
  if (a.list) {
    list_profiles(a.json);
    return 0;
  }
  a.w.kv_type = parse_kv_type(a.kv_type);
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<Model> model;
  plan::ModelShape shape;
  if (!a.model.empty()) {
    // Validation runs bench on the model as bench loads it (copied); a plan only needs the
    // tensor table, which a mapping gives without reading the weights.
    tools::ModelSourceOptions src;
    src.use_mmap = !a.validate;
    model = tools::load_model(a.model, src);
    shape = plan::shape_of(*model, a.model);
  } else {
    if (a.validate) throw Error("plan --validate needs a model file (-m)");
    if (a.params.params <= 0)
      throw Error("plan needs a model: -m GGUF, or --params with the shape options");
    shape = plan::shape_from_params(a.params);
  }
  const int threads = a.threads > 0 ? a.threads : model ? auto_threads(model->weight_bytes()) : hw;
  if (a.validate && a.profile != "this" && a.profile != "measure")
    throw Error("plan --validate measures this machine: use --profile this");
  plan::HardwareProfile h = load_profile(a.profile, threads);
  if (a.watts >= 0) h.watts = a.watts;
  if (a.cost_per_hour >= 0) {
    h.usd_per_hour = a.cost_per_hour;
    h.price_note = "--hardware-cost-per-hour";
  }
  const plan::PlanResult r = plan::predict(shape, h, a.w);

  nlohmann::json j;
  if (a.json) {
    j["model"] = plan::to_json(shape);
    j["profile"] = plan::to_json(h);
    j["workload"] = {{"prompt", a.w.prompt},
                     {"output", a.w.output},
                     {"users", a.w.users},
                     {"kv_type", dtype_name(a.w.kv_type)},
                     {"usd_per_kwh", a.w.usd_per_kwh}};
    j["plan"] = plan::to_json(r);
  } else {
    print_plan(shape, h, a.w, r);
  }

  if (a.validate) {
    // The same workload as bench runs it: a prompt of at most 512 tokens, then 128 tokens
    // generated one at a time after it (bench -d), a single stream.
    BenchParams bp;
    bp.n_prompt = std::min<int64_t>(a.w.prompt, 512);
    bp.n_gen = 128;
    bp.n_depth = bp.n_prompt;
    bp.reps = 3;
    bp.n_threads = threads;
    bp.kv_type = a.w.kv_type;
    bp.measure_bandwidth = false;
    // The meter charges the measured runs at the plan's prices (its power model, or RAPL
    // where readable), so the costs compare too.
    bp.meter.watts = h.watts;
    bp.meter.price_kwh = a.w.usd_per_kwh;
    bp.meter.hardware_usd_per_hour = h.usd_per_hour;
    plan::Workload vw = a.w;
    vw.prompt = bp.n_prompt;
    vw.output = bp.n_gen;
    vw.users = 1;
    const plan::PlanResult pr = plan::predict(shape, h, vw);
    if (!a.json)
      std::printf(
          "\nvalidating: tokenfab bench -m %s -p %lld -n %lld -d %lld -r %d -t %d --kv-type %s "
          "...\n",
          a.model.c_str(), (long long)bp.n_prompt, (long long)bp.n_gen, (long long)bp.n_depth,
          bp.reps, threads, dtype_name(bp.kv_type));
    std::fflush(stdout);
    const BenchResult br = run_bench(*model, bp);
    struct Row {
      const char* name;
      double predicted;
      Stat measured;
    };
    const Row rows[] = {{"prefill t/s", pr.prefill_tps, br.pp},
                        {"decode t/s", pr.decode_tps_stream, br.tg},
                        {"prefill $/Mtok", pr.usd_per_mtok_input, {br.pp_cost.usd_per_mtok, 0}},
                        {"decode $/Mtok", pr.usd_per_mtok_output, {br.tg_cost.usd_per_mtok, 0}}};
    static const char* const kKeys[] = {"prefill", "decode", "prefill_cost", "decode_cost"};
    nlohmann::json vj = {{"bench",
                          {{"n_prompt", bp.n_prompt},
                           {"n_gen", bp.n_gen},
                           {"n_depth", bp.n_depth},
                           {"reps", bp.reps},
                           {"threads", br.threads}}}};
    if (!a.json)
      std::printf("%-14s %12s %20s %8s %12s\n", "", "predicted", "measured (mean ± sd)", "ratio",
                  "within 25%");
    for (size_t i = 0; i < std::size(rows); ++i) {
      const Row& row = rows[i];
      const bool speed = i < 2;
      const double ratio = row.measured.mean > 0 ? row.predicted / row.measured.mean : 0;
      const bool within = ratio > 0 && std::fabs(ratio - 1) <= 0.25;
      if (a.json) {
        vj[kKeys[i]] = {{"unit", speed ? "tokens/s" : "$/Mtok"},
                        {"predicted", row.predicted},
                        {"measured", row.measured.mean},
                        {"measured_sd", row.measured.sd},
                        {"ratio", ratio},
                        {"within_25_percent", within}};
      } else {
        char measured[64];
        if (speed)
          std::snprintf(measured, sizeof measured, "%.2f ± %.2f", row.measured.mean,
                        row.measured.sd);
        else
          std::snprintf(measured, sizeof measured, "%.4g", row.measured.mean);
        std::printf(speed ? "%-14s %12.2f %20s %8.3f %12s\n" : "%-14s %12.4g %20s %8.3f %12s\n",
                    row.name, row.predicted, measured, ratio, within ? "yes" : "no");
      }
    }
    if (!a.json) std::printf("energy: %s\n", br.energy.c_str());
    if (a.json) j["validate"] = vj;
  }
  if (a.json) std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

Runner add_plan(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* c = app.add_subcommand(
      "plan", "predict speed, energy, cost and KV memory of a model on hardware (roofline)");
  c->add_option("-m,--model", a->model,
                "GGUF model file or Hugging Face directory (or give --params and the shape)");
  c->add_option("--params", a->params.params, "total parameters, e.g. 8e9 (without -m)");
  c->add_option("--quant", a->params.quant, "weight type with --params: q4_0, q8_0, q4_k, f16 ...")
      ->capture_default_str();
  c->add_option("--layers", a->params.layers, "layers (with --params)");
  c->add_option("--embd", a->params.embd, "embedding size (with --params)");
  c->add_option("--heads", a->params.heads, "attention heads (with --params)");
  c->add_option("--kv-heads", a->params.kv_heads,
                "key/value heads (with --params; default: heads)");
  c->add_option("--head-dim", a->params.head_dim, "size of a head (default: embd / heads)");
  c->add_option("--vocab", a->params.vocab, "vocabulary size (with --params)");
  c->add_option("--ctx", a->params.ctx, "training context (with --params; 0 = unknown)");
  c->add_flag("--tied", a->params.tied, "the output matrix is the token embedding");
  c->add_option("--profile", a->profile,
                "hardware: this (measured now), a built-in name, or a JSON file")
      ->capture_default_str();
  c->add_flag("--list-profiles", a->list, "list the built-in hardware profiles");
  c->add_option("--prompt", a->w.prompt, "prompt tokens per request")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24))
      ->capture_default_str();
  c->add_option("--output", a->w.output, "generated tokens per request")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24))
      ->capture_default_str();
  c->add_option("--users", a->w.users, "concurrent streams")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  add_kv_type_option(c, a->kv_type);
  c->add_option("--price-kwh", a->w.usd_per_kwh, "energy price, $ per kWh")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  c->add_option("--hardware-cost-per-hour", a->cost_per_hour,
                "$ per hour of the hardware (overrides the profile)")
      ->check(CLI::Range(0.0, 1e9));
  c->add_option("--watts", a->watts, "power draw (overrides the profile)")
      ->check(CLI::Range(0.0, 1e7));
  c->add_option("-t,--threads", a->threads, "threads to measure and bench with (0 = auto)")
      ->check(CLI::Range(0, 1024));
  c->add_flag("--json", a->json, "print one JSON object");
  c->add_flag("--validate", a->validate,
              "run bench on this machine and print predicted against measured");
  return [a] { return plan_main(*a); };
}

}  // namespace tf::cli
