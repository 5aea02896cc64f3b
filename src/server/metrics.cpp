#include "server/metrics.h"

#include <cstdio>

namespace tf::server {

namespace {
using Clock = std::chrono::steady_clock;
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}
void metric(std::string& out, const std::string& name, const char* type, const std::string& help,
            double value) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
         num(value) + "\n";
}
}  // namespace

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lk(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++n_;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lk(mu_);
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    char le[32];
    std::snprintf(le, sizeof le, "%g", bounds_[i]);
    out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(n_) + "\n";
}

void Metrics::request_done(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::tokens_generated(int64_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  const auto now = Clock::now();
  recent_.emplace_back(now, n);
  while (!recent_.empty() && now - recent_.front().first > std::chrono::seconds(10))
    recent_.pop_front();
}

std::string Metrics::render(const SchedulerStats* s, bool loading, size_t connections,
                            const std::vector<Tenants::Row>& tenants,
                            const std::string& energy_source) const {
  std::string out;
  {
    std::lock_guard<std::mutex> lk(mu_);
    out +=
        "# HELP tokenfab_requests_total HTTP requests by endpoint and status\n"
        "# TYPE tokenfab_requests_total counter\n";
    for (const auto& [k, v] : requests_)
      out += "tokenfab_requests_total{endpoint=\"" + k.first + "\",status=\"" +
             std::to_string(k.second) + "\"} " + std::to_string(v) + "\n";
    int64_t toks = 0;
    for (const auto& r : recent_) toks += r.second;
    double span = 10;
    if (!recent_.empty())
      span = std::max(1.0,
                      std::chrono::duration<double>(Clock::now() - recent_.front().first).count());
    metric(out, "tokenfab_generation_tokens_per_second", "gauge",
           "tokens generated per second over the last 10 seconds",
           recent_.empty() ? 0 : double(toks) / span);
  }
  metric(out, "tokenfab_model_loading", "gauge", "1 while the model loads", loading ? 1 : 0);
  metric(out, "tokenfab_http_connections", "gauge", "open HTTP connections", double(connections));
  const SchedulerStats z{};
  const SchedulerStats& st = s ? *s : z;
  // Usage counts the blocks of running sequences; blocks only the prefix cache holds are
  // reclaimable, so they count as free (as vLLM counts them).
  const double kv = st.kv_total_blocks ? double(st.kv_used_blocks) / double(st.kv_total_blocks) : 0;
  metric(out, "tokenfab_prompt_tokens_total", "counter", "prompt tokens of finished requests",
         double(st.prompt_tokens));
  metric(out, "tokenfab_cached_prompt_tokens_total", "counter",
         "prompt tokens served from the KV cache", double(st.cached_tokens));
  metric(out, "tokenfab_completion_tokens_total", "counter", "tokens generated",
         double(st.completion_tokens));
  metric(out, "tokenfab_prefix_cache_hits_total", "counter",
         "requests that reused cached prompt tokens", double(st.prefix_hits));
  metric(out, "tokenfab_prefix_cache_blocks", "gauge",
         "KV blocks kept by the prefix cache (some also in use)", double(st.kv_cached_blocks));
  metric(out, "tokenfab_request_timeouts_total", "counter",
         "requests ended by the per-request time limit", double(timeouts_.load()));
  metric(out, "tokenfab_requests_waiting", "gauge", "requests queued for a sequence slot",
         double(st.waiting));
  metric(out, "tokenfab_requests_running", "gauge", "requests being decoded", double(st.running));
  metric(out, "tokenfab_kv_cache_usage_ratio", "gauge",
         "share of KV-cache blocks in running sequences (0-1)", kv);
  metric(out, "tokenfab_kv_cache_cells_used", "gauge", "KV-cache positions of running sequences",
         double(st.kv_used_cells));
  metric(out, "tokenfab_kv_cache_cells_total", "gauge", "KV-cache positions",
         double(st.kv_total_cells));
  metric(out, "tokenfab_kv_cache_blocks_used", "gauge",
         "KV-cache blocks in running sequences' block tables", double(st.kv_used_blocks));
  metric(out, "tokenfab_kv_cache_blocks_total", "gauge", "KV-cache blocks",
         double(st.kv_total_blocks));
  metric(out, "tokenfab_engine_steps_total", "counter", "forward passes of the scheduler",
         double(st.steps));
  // The meter (engine/meter.h): every step, whole, since the server started.
  metric(out, "tokenfab_compute_seconds_total", "counter", "wall time of the engine's steps",
         st.metered.seconds);
  metric(out, "tokenfab_energy_joules_total", "counter",
         "energy of the engine's steps (see tokenfab_energy_source)", st.metered.joules);
  metric(out, "tokenfab_cost_usd_total", "counter",
         "cost of the engine's steps: energy and hardware time", st.metered.usd);
  if (!energy_source.empty())
    out +=
        "# HELP tokenfab_energy_source where joules come from: RAPL counters or the power model\n"
        "# TYPE tokenfab_energy_source gauge\ntokenfab_energy_source{source=\"" +
        energy_source + "\"} 1\n";
  if (!tenants.empty()) {
    auto family = [&](const char* name, const char* type, const char* help, auto value) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
      for (const auto& t : tenants)
        out += std::string(name) + "{tenant=\"" + t.name + "\"} " + num(value(t)) + "\n";
    };
    using Row = Tenants::Row;
    family("tokenfab_tenant_requests_total", "counter", "finished requests by tenant",
           [](const Row& t) { return double(t.usage.requests); });
    family("tokenfab_tenant_prompt_tokens_total", "counter", "prompt tokens by tenant",
           [](const Row& t) { return double(t.usage.prompt_tokens); });
    family("tokenfab_tenant_cached_prompt_tokens_total", "counter",
           "prompt tokens served from the KV cache, by tenant",
           [](const Row& t) { return double(t.usage.cached_tokens); });
    family("tokenfab_tenant_completion_tokens_total", "counter", "generated tokens by tenant",
           [](const Row& t) { return double(t.usage.completion_tokens); });
    family("tokenfab_tenant_energy_joules_total", "counter",
           "energy charged to the tenant's requests", [](const Row& t) { return t.usage.joules; });
    family("tokenfab_tenant_cost_usd_total", "counter", "cost charged to the tenant's requests",
           [](const Row& t) { return t.usage.usd; });
    family("tokenfab_tenant_input_cost_usd_total", "counter", "... of which for prompt tokens",
           [](const Row& t) { return t.usage.input_usd; });
    family("tokenfab_tenant_output_cost_usd_total", "counter", "... of which for generated tokens",
           [](const Row& t) { return t.usage.output_usd; });
    family("tokenfab_tenant_day_tokens", "gauge",
           "tokens counted against the tenant's daily budget",
           [](const Row& t) { return double(t.usage.day_tokens); });
    family("tokenfab_tenant_month_tokens", "gauge",
           "tokens counted against the tenant's monthly budget",
           [](const Row& t) { return double(t.usage.month_tokens); });
    family("tokenfab_tenant_requests_in_flight", "gauge", "the tenant's requests running now",
           [](const Row& t) { return double(t.in_flight); });
    family("tokenfab_tenant_requests_in_flight_peak", "gauge",
           "most of the tenant's requests running at once",
           [](const Row& t) { return double(t.in_flight_peak); });
    out +=
        "# HELP tokenfab_tenant_refused_total requests refused by tenant and limit\n"
        "# TYPE tokenfab_tenant_refused_total counter\n";
    for (const auto& t : tenants)
      for (const auto& [why, n] : t.refused)
        out += "tokenfab_tenant_refused_total{tenant=\"" + t.name + "\",limit=\"" + why + "\"} " +
               std::to_string(n) + "\n";
  }
  ttft_.write(out, "tokenfab_time_to_first_token_seconds",
              "time from request to first generated token");
  itl_.write(out, "tokenfab_inter_token_latency_seconds",
             "time between consecutive generated tokens");
  // The names vLLM exports, read by inference gateways (Gateway API Inference Extension, llm-d).
  metric(out, "vllm:num_requests_waiting", "gauge", "requests waiting (vLLM-compatible name)",
         double(st.waiting));
  metric(out, "vllm:num_requests_running", "gauge", "requests running (vLLM-compatible name)",
         double(st.running));
  metric(out, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage 0-1 (vLLM-compatible name)", kv);
  return out;
}

}  // namespace tf::server
