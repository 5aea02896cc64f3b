// Counters, gauges and histograms of the server, written in Prometheus' text format. Besides
// tokenfab_* names it exports the gauges that Kubernetes inference gateways read from vLLM
// (vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc), so the
// same load- and prefix-aware routing works for tokenfab pods.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "engine/scheduler.h"
#include "server/tenants.h"

namespace tf::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double v);
  void write(std::string& out, const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t n_ = 0;
};

class Metrics {
 public:
  void request_done(const std::string& endpoint, int status);
  void time_to_first_token(double seconds) { ttft_.observe(seconds); }
  void inter_token(double seconds) { itl_.observe(seconds); }
  void tokens_generated(int64_t n);
  void request_timed_out() { ++timeouts_; }
  // The whole text; `loading` while the model is not ready.
  // tenants: the meter's books per tenant (counters that persist across restarts when the
  // server keeps a usage file); energy_source: "rapl" or "model".
  std::string render(const SchedulerStats* s, bool loading, size_t connections,
                     const std::vector<Tenants::Row>& tenants = {}, const std::string& energy_source = "") const;

 private:
  mutable std::mutex mu_;
  std::atomic<uint64_t> timeouts_{0};
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> recent_;  // last 10 s
  Histogram ttft_{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  Histogram itl_{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
};

}  // namespace tf::server
