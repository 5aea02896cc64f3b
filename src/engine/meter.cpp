#include "engine/meter.h"

#include <dirent.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "util/error.h"

namespace tf {

namespace {

bool read_u64(const std::string& path, uint64_t& v) {
  std::ifstream f(path);
  if (!f) return false;
  unsigned long long x = 0;
  if (!(f >> x)) return false;
  v = x;
  return true;
}

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (f) std::getline(f, s);
  return s;
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int hardware_threads() {
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

EnergyMeter::EnergyMeter(const MeterOptions& o, int threads) {
  if (!(o.watts >= 0) || o.watts > 1e6) throw Error("--watts must be in 0..1e6");
  if (o.use_rapl) {
    // Top-level zones only (intel-rapl:N, AMD's included: the kernel names them the same);
    // their subzones (core, uncore, dram) are parts of the package count.
    std::vector<std::string> zones;
    if (DIR* d = opendir(o.powercap_root.c_str())) {
      while (dirent* e = readdir(d)) {
        const std::string n = e->d_name;
        if (n.rfind("intel-rapl:", 0) == 0 && n.find(':', 11) == std::string::npos)
          zones.push_back(n);
      }
      closedir(d);
    }
    std::sort(zones.begin(), zones.end());
    std::string names;
    for (const auto& z : zones) {
      const std::string dir = o.powercap_root + "/" + z;
      if (read_line(dir + "/name").rfind("package", 0) != 0) continue;
      Domain dom;
      dom.energy_path = dir + "/energy_uj";
      uint64_t v = 0;
      // Since 2020 kernels make energy_uj readable by root only: then the model is used.
      if (!read_u64(dom.energy_path, v)) continue;
      if (!read_u64(dir + "/max_energy_range_uj", dom.range_uj)) dom.range_uj = 0;
      domains_.push_back(dom);
      names += (names.empty() ? "" : ", ") + read_line(dir + "/name");
    }
    if (!domains_.empty()) describe_ = "RAPL " + names + " (" + o.powercap_root + ")";
  }
  if (domains_.empty()) {
    const bool dflt = o.watts <= 0;
    watts_ = dflt ? kDefaultWattsPerThread * std::max(1, threads) : o.watts;
    char b[160];
    if (dflt)
      std::snprintf(
          b, sizeof b,
          "power model: %.0f W while computing (%d threads x %.0f W default; set --watts)", watts_,
          std::max(1, threads), kDefaultWattsPerThread);
    else
      std::snprintf(b, sizeof b, "power model: %g W while computing (--watts)", watts_);
    describe_ = b;
  }
}

EnergyMeter::Sample EnergyMeter::now() const {
  Sample s;
  s.seconds = steady_seconds();
  for (const auto& d : domains_) {
    uint64_t v = 0;
    read_u64(d.energy_path, v);  // a failed read counts as no energy, never as an error
    s.micro_j.push_back(v);
  }
  return s;
}

double EnergyMeter::joules(const Sample& a, const Sample& b) const {
  if (domains_.empty()) return watts_ * std::max(0.0, b.seconds - a.seconds);
  double uj = 0;
  for (size_t i = 0; i < domains_.size() && i < a.micro_j.size() && i < b.micro_j.size(); ++i) {
    const uint64_t x = a.micro_j[i], y = b.micro_j[i];
    if (y >= x)
      uj += double(y - x);
    else if (domains_[i].range_uj >= x)  // wrapped once
      uj += double(domains_[i].range_uj - x + y);
  }
  return uj / 1e6;
}

Prices prices_of(const MeterOptions& o) {
  if (!(o.price_kwh >= 0) || o.price_kwh > 1e4) throw Error("--price-kwh must be in 0..1e4");
  if (!(o.hardware_usd_per_hour < 1e7)) throw Error("--hardware-cost-per-hour is too large");
  Prices p;
  p.kwh = o.price_kwh;
  p.hardware_per_hour = o.hardware_usd_per_hour >= 0
                            ? o.hardware_usd_per_hour
                            : kDefaultUsdPerThreadHour * hardware_threads();
  return p;
}

Charge StepMeter::Step::per_token() const {
  Charge c;
  if (tokens <= 0) return c;
  const double n = double(tokens);
  c.tokens = 1;
  c.steps = 1 / n;
  c.seconds = seconds / n;
  c.joules = joules / n;
  c.usd = usd / n;
  return c;
}

StepMeter::Step StepMeter::end(int64_t tokens) {
  const EnergyMeter::Sample stop = energy_.now();
  Step s;
  s.tokens = tokens;
  s.seconds = std::max(0.0, stop.seconds - start_.seconds);
  s.joules = energy_.joules(start_, stop);
  s.usd = prices_.usd(s.joules, s.seconds);
  total_.tokens += tokens;
  total_.steps += 1;
  total_.seconds += s.seconds;
  total_.joules += s.joules;
  total_.usd += s.usd;
  return s;
}

}  // namespace tf
