// Tenants: who may use the server, how much, and what they have used. A keys file (JSON,
// `--api-keys FILE`) lists the tenants, each with the SHA-256 of its keys (never the keys
// themselves: `tokenfab keygen` makes a key and its entry), token budgets per UTC day and
// month, a requests-per-minute and a concurrency limit, and the models it may use:
//
//   {"tenants": [{"name": "acme", "key_sha256": ["<64 hex>", ...],
//                 "tokens_per_day": 1000000, "tokens_per_month": 20000000,
//                 "requests_per_minute": 60, "concurrency": 4, "models": ["*"]}]}
//
// Limits left out (or 0) are unlimited. Budgets count prompt and generated tokens (cached
// prompt tokens too, as the hosted APIs bill them) and are checked when a request arrives: a
// request admitted under the budget runs to its end, so a budget may be overrun by the
// requests in flight when it runs out. The file is re-read on SIGHUP; a bad file keeps the
// keys in force and says why on stderr.
//
// Usage counters (requests, tokens, joules, dollars per tenant, and the budgets' periods)
// persist in a small JSON file, replaced atomically (write, fsync, rename), so a restart
// neither forgets a spent budget nor resets the metered totals.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace tf::server {

using Sha256 = std::array<uint8_t, 32>;
Sha256 sha256(const std::string& data);
std::string hex(const Sha256& h);
// A new random key ("tf-" and 43 base64url characters: 256 bits).
std::string new_api_key();

struct TenantSpec {
  std::string name;
  std::vector<Sha256> key_hashes;
  int64_t tokens_per_day = 0, tokens_per_month = 0;  // 0: unlimited
  int64_t requests_per_minute = 0, concurrency = 0;  // 0: unlimited
  std::vector<std::string> models;                   // empty or "*": all
  bool allows_model(const std::string& m) const;
};

// Parses a keys file's text; throws tf::Error naming `where` and what is wrong.
std::vector<TenantSpec> parse_tenants(const std::string& text, const std::string& where);

struct TenantUsage {
  int64_t requests = 0, prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double joules = 0, usd = 0, input_usd = 0, output_usd = 0, seconds = 0;
  std::string day, month;  // the budgets' current periods (UTC "2026-12-03", "2026-12")
  int64_t day_tokens = 0, month_tokens = 0;
};

struct Refusal {
  int status = 429;
  std::string type, code, message;
  int64_t retry_after_s = 1;
};

// What one finished request used.
struct TenantCharge {
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  double joules = 0, input_usd = 0, output_usd = 0, seconds = 0;
};

class Tenants {
 public:
  using SysClock = std::chrono::system_clock;
  // No keys file: one tenant, "default", without limits (the server may still check one
  // --api-key). A usage file may be given either way ("" = counters in memory only).
  Tenants() = default;
  // Reads the keys file (throws tf::Error) and the usage file if it exists.
  void open(const std::string& keys_file, const std::string& usage_file);
  // Re-reads the keys file: on success the new tenants apply to the next requests, usage
  // counters stay; throws and keeps the old ones on error.
  void reload();
  bool has_keys() const { return !keys_file_.empty(); }
  const std::string& keys_file() const { return keys_file_; }

  // The tenant of this key, or nullopt. The key's hash is compared with every stored hash in
  // constant time, all of them, so timing tells nothing about which nor how much matched.
  std::optional<std::string> authenticate(const std::string& key) const;

  // Admission of one request of `tenant` for `model`: a refusal, or nothing (then the request
  // holds one of the tenant's concurrent slots until release()).
  std::optional<Refusal> admit(const std::string& tenant, const std::string& model,
                               SysClock::time_point now = SysClock::now());
  void release(const std::string& tenant);
  void charge(const std::string& tenant, const TenantCharge& c,
              SysClock::time_point now = SysClock::now());

  struct Row {
    std::string name;
    TenantUsage usage;
    int64_t in_flight = 0, in_flight_peak = 0;
    std::map<std::string, int64_t> refused;
  };
  std::vector<Row> snapshot() const;

  // Writes the usage file if anything changed since the last save (atomically); false and a
  // message on stderr when it cannot.
  bool save();
  const std::string& usage_file() const { return usage_file_; }

 private:
  struct State {
    TenantUsage usage;
    int64_t in_flight = 0, in_flight_peak = 0;
    std::deque<SysClock::time_point> recent;  // admissions in the last minute
    std::map<std::string, int64_t> refused;
  };
  State& state(const std::string& name);  // with mu_ held
  void roll_periods(TenantUsage& u, SysClock::time_point now) const;
  void load_usage();

  mutable std::mutex mu_;
  std::string keys_file_, usage_file_;
  std::vector<TenantSpec> specs_;
  std::map<std::string, State> states_;
  bool dirty_ = false;
};

}  // namespace tf::server
