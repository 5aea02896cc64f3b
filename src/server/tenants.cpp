#include "server/tenants.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "util/error.h"
#include "util/file.h"

namespace tf::server {

using Json = nlohmann::ordered_json;

Sha256 sha256(const std::string& data) {
  Sha256 h{};
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), h.data(), &n, EVP_sha256(), nullptr) != 1 ||
      n != h.size())
    throw Error("SHA-256 failed");
  return h;
}

std::string hex(const Sha256& h) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

std::string new_api_key() {
  uint8_t b[32];
  if (RAND_bytes(b, sizeof b) != 1) throw Error("no random bytes for a key");
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string k = "tf-";
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t x : b) {
    acc = (acc << 8) | x;
    bits += 8;
    while (bits >= 6) {
      k += a[(acc >> (bits - 6)) & 63];
      bits -= 6;
    }
  }
  if (bits > 0) k += a[(acc << (6 - bits)) & 63];
  return k;
}

bool TenantSpec::allows_model(const std::string& m) const {
  if (models.empty()) return true;
  for (const auto& x : models)
    if (x == "*" || x == m) return true;
  return false;
}

namespace {

bool parse_hex(const std::string& s, Sha256& out) {
  if (s.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      const char c = s[2 * i + size_t(k)];
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out[i] = uint8_t(v);
  }
  return true;
}

std::string utc(std::chrono::system_clock::time_point t, const char* fmt) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char b[32];
  std::strftime(b, sizeof b, fmt, &tm);
  return b;
}

// Seconds from t to the next UTC midnight, or to the first of the next month.
int64_t seconds_to_next(std::chrono::system_clock::time_point t, bool month) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  if (month) {
    tm.tm_mday = 1;
    tm.tm_mon += 1;
  } else {
    tm.tm_mday += 1;
  }
  const std::time_t next = timegm(&tm);
  return std::max<int64_t>(1, int64_t(next - tt));
}

}  // namespace

std::vector<TenantSpec> parse_tenants(const std::string& text, const std::string& where) {
  auto bad = [&](const std::string& m) { throw Error(where + ": " + m); };
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) bad("not valid JSON");
  if (!j.is_object() || !j.contains("tenants") || !j["tenants"].is_array())
    bad("expected an object with a \"tenants\" array");
  for (const auto& kv : j.items())
    if (kv.key() != "tenants") bad("unknown field \"" + kv.key() + "\"");
  std::vector<TenantSpec> out;
  std::set<std::string> names;
  std::set<Sha256> hashes;
  for (size_t i = 0; i < j["tenants"].size(); ++i) {
    const Json& t = j["tenants"][i];
    const std::string at = "tenant " + std::to_string(i);
    if (!t.is_object()) bad(at + " is not an object");
    TenantSpec s;
    auto limit = [&](const char* k, int64_t& v) {
      if (!t.contains(k)) return;
      const Json& x = t[k];
      if (!x.is_number_integer() || x.get<int64_t>() < 0)
        bad(at + ": \"" + k + "\" must be a non-negative integer (0 = unlimited)");
      v = x.get<int64_t>();
    };
    for (const auto& kv : t.items()) {
      static const std::set<std::string> known = {
          "name",        "key_sha256", "tokens_per_day", "tokens_per_month", "requests_per_minute",
          "concurrency", "models"};
      if (!known.count(kv.key())) {
        if (kv.key() == "key" || kv.key() == "api_key")
          bad(at +
              ": keys are stored hashed: give \"key_sha256\" (tokenfab keygen prints an entry)");
        bad(at + ": unknown field \"" + kv.key() + "\"");
      }
    }
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty())
      bad(at + ": \"name\" must be a non-empty string");
    s.name = t["name"];
    if (s.name.size() > 128) bad(at + ": the name is longer than 128 bytes");
    for (unsigned char c : s.name)
      if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.'))
        bad(at + ": the name may only hold letters, digits, '-', '_' and '.'");
    if (!names.insert(s.name).second) bad("two tenants are named \"" + s.name + "\"");
    Json keys = t.value("key_sha256", Json());
    if (keys.is_string()) keys = Json::array({keys});
    if (!keys.is_array() || keys.empty())
      bad(at + " (" + s.name +
          "): \"key_sha256\" must be a SHA-256 in hex, or a non-empty list of them");
    for (const auto& k : keys) {
      Sha256 h{};
      if (!k.is_string() || !parse_hex(k.get<std::string>(), h))
        bad(at + " (" + s.name +
            "): \"key_sha256\" entries are 64 hex digits (the SHA-256 of the key)");
      if (!hashes.insert(h).second)
        bad(at + " (" + s.name + "): a key hash appears twice in the file");
      s.key_hashes.push_back(h);
    }
    limit("tokens_per_day", s.tokens_per_day);
    limit("tokens_per_month", s.tokens_per_month);
    limit("requests_per_minute", s.requests_per_minute);
    limit("concurrency", s.concurrency);
    if (t.contains("models")) {
      if (!t["models"].is_array())
        bad(at + " (" + s.name + "): \"models\" must be a list of model ids or \"*\"");
      for (const auto& m : t["models"]) {
        if (!m.is_string())
          bad(at + " (" + s.name + "): \"models\" must be a list of model ids or \"*\"");
        s.models.push_back(m);
      }
    }
    out.push_back(std::move(s));
  }
  if (out.empty()) bad("no tenants: nobody could use the server");
  return out;
}

void Tenants::open(const std::string& keys_file, const std::string& usage_file) {
  std::vector<TenantSpec> specs;
  if (!keys_file.empty()) specs = parse_tenants(read_file(keys_file, "keys file"), keys_file);
  std::lock_guard<std::mutex> lk(mu_);
  keys_file_ = keys_file;
  usage_file_ = usage_file;
  specs_ = std::move(specs);
  if (!usage_file_.empty()) load_usage();
}

void Tenants::reload() {
  if (keys_file_.empty()) return;
  auto specs = parse_tenants(read_file(keys_file_, "keys file"), keys_file_);
  std::lock_guard<std::mutex> lk(mu_);
  specs_ = std::move(specs);
}

std::optional<std::string> Tenants::authenticate(const std::string& key) const {
  const Sha256 h = sha256(key);
  std::lock_guard<std::mutex> lk(mu_);
  const TenantSpec* found = nullptr;
  for (const auto& s : specs_)
    for (const auto& k : s.key_hashes)
      if (CRYPTO_memcmp(k.data(), h.data(), h.size()) == 0) found = &s;
  if (!found) return std::nullopt;
  return found->name;
}

Tenants::State& Tenants::state(const std::string& name) {
  return states_[name];
}

void Tenants::roll_periods(TenantUsage& u, SysClock::time_point now) const {
  const std::string day = utc(now, "%Y-%m-%d"), month = utc(now, "%Y-%m");
  if (u.day != day) {
    u.day = day;
    u.day_tokens = 0;
  }
  if (u.month != month) {
    u.month = month;
    u.month_tokens = 0;
  }
}

std::optional<Refusal> Tenants::admit(const std::string& tenant, const std::string& model,
                                      SysClock::time_point now) {
  std::lock_guard<std::mutex> lk(mu_);
  const TenantSpec* spec = nullptr;
  for (const auto& s : specs_)
    if (s.name == tenant) spec = &s;
  State& st = state(tenant);
  auto refuse = [&](int status, const char* type, const char* code, const std::string& msg,
                    int64_t after) {
    ++st.refused[code];
    Refusal r;
    r.status = status;
    r.type = type;
    r.code = code;
    r.message = msg;
    r.retry_after_s = after;
    return r;
  };
  if (spec) {
    if (!spec->allows_model(model))
      return refuse(403, "permission_error", "model_not_allowed",
                    "tenant '" + tenant + "' may not use the model '" + model + "'", 0);
    roll_periods(st.usage, now);
    if (spec->tokens_per_day > 0 && st.usage.day_tokens >= spec->tokens_per_day)
      return refuse(429, "insufficient_quota", "tokens_per_day",
                    "tenant '" + tenant + "' has used its budget of " +
                        std::to_string(spec->tokens_per_day) + " tokens per day (" +
                        std::to_string(st.usage.day_tokens) + " used); it renews at 00:00 UTC",
                    seconds_to_next(now, false));
    if (spec->tokens_per_month > 0 && st.usage.month_tokens >= spec->tokens_per_month)
      return refuse(429, "insufficient_quota", "tokens_per_month",
                    "tenant '" + tenant + "' has used its budget of " +
                        std::to_string(spec->tokens_per_month) + " tokens per month (" +
                        std::to_string(st.usage.month_tokens) +
                        " used); it renews on the 1st at 00:00 UTC",
                    seconds_to_next(now, true));
    while (!st.recent.empty() && now - st.recent.front() >= std::chrono::minutes(1))
      st.recent.pop_front();
    if (spec->requests_per_minute > 0 && int64_t(st.recent.size()) >= spec->requests_per_minute) {
      const auto wait = std::chrono::minutes(1) - (now - st.recent.front());
      const int64_t s = std::chrono::duration_cast<std::chrono::seconds>(wait).count() + 1;
      return refuse(429, "rate_limit_error", "requests_per_minute",
                    "tenant '" + tenant + "' is limited to " +
                        std::to_string(spec->requests_per_minute) + " requests per minute",
                    s);
    }
    if (spec->concurrency > 0 && st.in_flight >= spec->concurrency)
      return refuse(429, "rate_limit_error", "concurrency",
                    "tenant '" + tenant + "' is limited to " + std::to_string(spec->concurrency) +
                        " concurrent requests",
                    1);
  }
  st.recent.push_back(now);
  ++st.in_flight;
  st.in_flight_peak = std::max(st.in_flight_peak, st.in_flight);
  return std::nullopt;
}

void Tenants::release(const std::string& tenant) {
  std::lock_guard<std::mutex> lk(mu_);
  State& st = state(tenant);
  if (st.in_flight > 0) --st.in_flight;
}

void Tenants::charge(const std::string& tenant, const TenantCharge& c, SysClock::time_point now) {
  std::lock_guard<std::mutex> lk(mu_);
  TenantUsage& u = state(tenant).usage;
  roll_periods(u, now);
  ++u.requests;
  u.prompt_tokens += c.prompt_tokens;
  u.cached_tokens += c.cached_tokens;
  u.completion_tokens += c.completion_tokens;
  u.joules += c.joules;
  u.input_usd += c.input_usd;
  u.output_usd += c.output_usd;
  u.usd += c.input_usd + c.output_usd;
  u.seconds += c.seconds;
  u.day_tokens += c.prompt_tokens + c.completion_tokens;
  u.month_tokens += c.prompt_tokens + c.completion_tokens;
  dirty_ = true;
}

std::vector<Tenants::Row> Tenants::snapshot() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<Row> out;
  std::set<std::string> seen;
  for (const auto& [name, st] : states_) {
    out.push_back({name, st.usage, st.in_flight, st.in_flight_peak, st.refused});
    seen.insert(name);
  }
  for (const auto& s : specs_)  // tenants that have not been seen yet show zeros
    if (!seen.count(s.name)) out.push_back({s.name, {}, 0, 0, {}});
  std::sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.name < b.name; });
  return out;
}

void Tenants::load_usage() {
  std::ifstream f(usage_file_, std::ios::binary);
  if (!f) return;  // the first run
  std::stringstream ss;
  ss << f.rdbuf();
  const Json j = Json::parse(ss.str(), nullptr, false);
  auto bad = [&](const std::string& m) {
    throw Error(usage_file_ + ": " + m + " (move it away to start the counters afresh)");
  };
  if (j.is_discarded() || !j.is_object() || !j.contains("tenants") || !j["tenants"].is_object())
    bad("not a tokenfab usage file");
  try {
    for (const auto& [name, t] : j["tenants"].items()) {
      TenantUsage& u = states_[name].usage;
      u.requests = t.at("requests").get<int64_t>();
      u.prompt_tokens = t.at("prompt_tokens").get<int64_t>();
      u.cached_tokens = t.at("cached_tokens").get<int64_t>();
      u.completion_tokens = t.at("completion_tokens").get<int64_t>();
      u.joules = t.at("joules").get<double>();
      u.usd = t.at("cost_usd").get<double>();
      u.input_usd = t.at("input_cost_usd").get<double>();
      u.output_usd = t.at("output_cost_usd").get<double>();
      u.seconds = t.at("compute_seconds").get<double>();
      u.day = t.at("day").get<std::string>();
      u.day_tokens = t.at("day_tokens").get<int64_t>();
      u.month = t.at("month").get<std::string>();
      u.month_tokens = t.at("month_tokens").get<int64_t>();
    }
  } catch (const std::exception& e) {
    bad(std::string("a tenant's counters are malformed: ") + e.what());
  }
}

bool Tenants::save() {
  Json j;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (usage_file_.empty() || !dirty_) return true;
    dirty_ = false;
    j["version"] = 1;
    j["tenants"] = Json::object();
    for (const auto& [name, st] : states_) {
      const TenantUsage& u = st.usage;
      j["tenants"][name] = {{"requests", u.requests},
                            {"prompt_tokens", u.prompt_tokens},
                            {"cached_tokens", u.cached_tokens},
                            {"completion_tokens", u.completion_tokens},
                            {"joules", u.joules},
                            {"cost_usd", u.usd},
                            {"input_cost_usd", u.input_usd},
                            {"output_cost_usd", u.output_usd},
                            {"compute_seconds", u.seconds},
                            {"day", u.day},
                            {"day_tokens", u.day_tokens},
                            {"month", u.month},
                            {"month_tokens", u.month_tokens}};
    }
  }
  // Written beside the file and renamed over it: a crash leaves the old file or the new one.
  const std::string tmp = usage_file_ + ".tmp";
  const std::string text = j.dump(1) + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  if (ok) {
    size_t off = 0;
    while (ok && off < text.size()) {
      const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
      ok = n > 0;
      if (ok) off += size_t(n);
    }
    ok = ok && ::fsync(fd) == 0;
    ok = ::close(fd) == 0 && ok;
  }
  ok = ok && std::rename(tmp.c_str(), usage_file_.c_str()) == 0;
  if (!ok) {
    std::fprintf(stderr, "tokenfab: cannot write the usage file %s\n", usage_file_.c_str());
    std::lock_guard<std::mutex> lk(mu_);
    dirty_ = true;
  }
  return ok;
}

}  // namespace tf::server
