// Throughput measurement: prompt processing (one batch of P tokens) and generation (N tokens
// one at a time), each from an empty KV cache, repeated, with the weight bytes a generated
// token reads and what fraction of the measured memory bandwidth that makes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>

#include "backend/machine.h"
#include "tokenfab/tokenfab.h"

namespace tf {

namespace {
using Clock = std::chrono::steady_clock;

Stat stats(const std::vector<double>& v) {
  Stat s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0.0;
  return s;
}
}  // namespace

BenchResult run_bench(const Model& model, const BenchParams& p) {
  if (p.n_prompt < 0 || p.n_gen < 0 || p.n_depth < 0 || p.reps < 1 || p.n_seq < 1 || p.n_seq > 256)
    throw Error("bench: invalid sizes");
  if (p.n_seq > 1 && p.grammar)
    throw Error("bench: a grammar with several sequences is not measured");
  BenchResult r;
  r.threads = p.n_threads > 0 ? p.n_threads : auto_threads(model.weight_bytes());
  r.bytes_per_token = double(model.weight_bytes()) / double(p.n_seq);  // read once per step
  r.ops_per_token = 2.0 * double(model.matmul_params());
  ContextParams cp;
  cp.n_ctx = std::max<int64_t>(16, std::max(p.n_prompt, p.n_depth + p.n_gen));
  cp.n_batch = std::clamp<int64_t>(std::max({p.n_prompt, p.n_depth, p.n_seq}), 1,
                                   std::max(p.n_seq, ContextParams{}.n_batch));
  cp.n_seq = p.n_seq;
  cp.n_threads = r.threads;
  cp.kv_type = p.kv_type;
  // The context (and its spinning worker threads) must be gone before bandwidth is measured.
  auto ctx_ptr = std::make_unique<Context>(model, cp);
  Context& ctx = *ctx_ptr;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(model.config().n_vocab - 1));

  auto prompt_run = [&]() {
    ctx.kv().truncate(0, 0);
    Batch b;
    for (int64_t i = 0; i < p.n_prompt; ++i) b.add(tok(rng), int32_t(i), 0, i + 1 == p.n_prompt);
    const auto t0 = Clock::now();
    ctx.decode(b);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  // Generation after n_depth cached positions: filled once, kept by every repetition.
  auto fill_depth = [&]() {
    for (int32_t s = 0; s < int32_t(p.n_seq); ++s) {
      ctx.kv().truncate(s, 0);
      Batch b;
      for (int64_t i = 0; i < p.n_depth; ++i) b.add(tok(rng), int32_t(i), s, i + 1 == p.n_depth);
      if (p.n_depth > 0) ctx.decode(b);
    }
  };
  std::vector<float> logits(size_t(ctx.n_vocab()));
  int64_t masks = 0, constrained_steps = 0;
  // n_seq sequences: one token of each per step, tokens per second counted over all of them.
  auto gen_batched = [&]() {
    for (int32_t s = 0; s < int32_t(p.n_seq); ++s) ctx.kv().truncate(s, int32_t(p.n_depth));
    Batch b;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < p.n_gen; ++i) {
      b.clear();
      for (int32_t s = 0; s < int32_t(p.n_seq); ++s)
        b.add(tok(rng), int32_t(p.n_depth + i), s, true);
      ctx.decode(b);
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  auto gen_run = [&](bool with_grammar) {
    if (p.n_seq > 1) return gen_batched();
    ctx.kv().truncate(0, int32_t(p.n_depth));
    std::unique_ptr<TokenGrammar> g;
    Batch b;
    int32_t next = tok(rng);
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < p.n_gen; ++i) {
      b.clear();
      b.add(next, int32_t(p.n_depth + i), 0, true);
      ctx.decode(b);
      if (!p.grammar) {
        next = tok(rng);
        continue;
      }
      std::copy(ctx.logits(0), ctx.logits(0) + ctx.n_vocab(), logits.begin());
      if (!with_grammar) {
        next = argmax(logits.data(), ctx.n_vocab());
        continue;
      }
      if (!g || g->dead()) g = std::make_unique<TokenGrammar>(p.grammar, p.grammar_vocab);
      ++constrained_steps;
      bool masked = false;
      const int64_t nv = ctx.n_vocab();
      const int32_t t = g->choose(
          logits.data(), nv, true, [&](float* l) { return argmax(l, nv); }, &masked);
      masks += masked;
      if (t < 0) {  // a dead end: start over
        g.reset();
        continue;
      }
      next = t;
      g->accept(next);
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };

  std::vector<double> pp, tg, tgg;
  // Energy and cost of the measured runs (not of the warm-ups).
  StepMeter meter(p.meter, r.threads);
  Charge pp_charge, tg_charge;
  if (p.n_prompt > 0) {
    prompt_run();  // warm-up: page in the weights, settle the threads
    for (int i = 0; i < p.reps; ++i) {
      meter.begin();
      pp.push_back(double(p.n_prompt) / prompt_run());
      pp_charge += meter.end(p.n_prompt).whole();
    }
  }
  if (p.n_gen > 0) {
    fill_depth();
    gen_run(false);
    if (p.grammar) gen_run(true);
    masks = constrained_steps = 0;
    for (int i = 0; i < p.reps; ++i) {
      meter.begin();
      tg.push_back(double(p.n_gen * p.n_seq) / gen_run(false));
      tg_charge += meter.end(p.n_gen * p.n_seq).whole();
      if (p.grammar) tgg.push_back(double(p.n_gen) / gen_run(true));
    }
  }
  auto cost = [](const Charge& c) {
    BenchResult::Cost k;
    if (c.tokens <= 0) return k;
    if (c.joules > 0) k.tokens_per_joule = double(c.tokens) / c.joules;
    k.joules_per_token = c.joules / double(c.tokens);
    k.usd_per_mtok = c.usd_per_mtok(c.tokens);
    return k;
  };
  r.pp_cost = cost(pp_charge);
  r.tg_cost = cost(tg_charge);
  r.energy = meter.energy().describe();
  r.tg_grammar = stats(tgg);
  if (constrained_steps > 0) r.grammar_masks = double(masks) / double(constrained_steps);
  r.pp = stats(pp);
  r.tg = stats(tg);
  r.resident_bytes = double(resident_bytes());
  r.file_bytes = double(model.file().file_size());
  r.kv_bytes = double(ctx.kv().bytes());
  ctx_ptr.reset();
  if (p.measure_bandwidth) {
    r.bandwidth_gb_s = measure_read_bandwidth(r.threads, size_t(512) << 20, 3);
    if (r.bandwidth_gb_s > 0)
      r.bandwidth_fraction = r.bytes_per_token * r.tg.mean / (r.bandwidth_gb_s * 1e9);
    const ComputePeak c = measure_compute_peak(r.threads);
    const DType act = dtype_info(model.layer(0).w_up.type).vec_dot_type;
    const bool int8 = act == DType::Q8_0 || act == DType::Q8_K || act == DType::Q8_1;
    r.peak_gops = int8 ? c.int8_gops : c.fp32_gflops;
    r.peak_kind = std::string(int8 ? "int8 " : "fp32 ") + c.isa;
    if (r.peak_gops > 0) {
      r.pp_peak_fraction = r.pp.mean * r.ops_per_token / (r.peak_gops * 1e9);
      r.tg_peak_fraction = r.tg.mean * r.ops_per_token / (r.peak_gops * 1e9);
    }
  }
  return r;
}

}  // namespace tf
