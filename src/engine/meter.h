// The factory's meter: what a token costs. Each forward step's wall time and energy are
// measured and split over the tokens it carried, so a request is charged for the share of
// every step it took part in (a decode step serving 16 sequences charges each 1/16; a step
// carrying 200 prompt tokens of one request and 8 decode tokens of others charges 200/208 to
// the first). Time and energy become money with two prices: electricity ($/kWh) and the
// hardware's own cost per hour (amortised purchase or rent).
//
// Energy comes from Linux powercap (RAPL: the CPU package counters, Intel's and AMD's) when
// its counters are readable, otherwise from a power model: a fixed draw while computing
// (--watts; default kDefaultWattsPerThread per engine thread). Every report says which. RAPL
// counts the whole package, other processes included; the model counts only the engine's
// busy time. Idle time is charged to no request: utilisation is the owner's business, and
// the hardware cost per token quoted here is the cost at the utilisation achieved.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tf {

// A server core at full load with its share of the uncore and memory draws about 10 W
// (package power of 2-4 W per core idle to 8-12 W loaded on current EPYC and Xeon parts,
// plus DRAM): a documented guess, overridden by --watts or by RAPL.
constexpr double kDefaultWattsPerThread = 10.0;
// Electricity at a typical industrial rate.
constexpr double kDefaultPriceKwh = 0.15;
// The hardware's cost per hour per hardware thread: what general-purpose cloud instances
// charge per vCPU-hour (about $0.04-0.05 in 2025 list prices).
constexpr double kDefaultUsdPerThreadHour = 0.045;

struct MeterOptions {
  double watts = 0;  // power model's draw while computing; 0 = default per thread
  double price_kwh = kDefaultPriceKwh;
  double hardware_usd_per_hour = -1;  // < 0: kDefaultUsdPerThreadHour x hardware threads
  bool use_rapl = true;               // read RAPL when it is readable
  std::string powercap_root = "/sys/class/powercap";  // tests point it at a fake tree
};

// Cumulative energy: RAPL package counters, or watts x time.
class EnergyMeter {
 public:
  struct Sample {
    double seconds = 0;             // steady clock
    std::vector<uint64_t> micro_j;  // one per RAPL domain
  };

  // threads: the engine's, for the default power model.
  EnergyMeter(const MeterOptions& o, int threads);
  Sample now() const;
  // Joules between two samples (RAPL counters wrap at their range).
  double joules(const Sample& a, const Sample& b) const;
  bool rapl() const { return !domains_.empty(); }
  const char* source() const { return rapl() ? "rapl" : "model"; }
  // E.g. "RAPL package-0 (/sys/class/powercap/intel-rapl:0)" or "power model: 20 W while
  // computing (2 threads x 10 W default)".
  const std::string& describe() const { return describe_; }
  double model_watts() const { return watts_; }

 private:
  struct Domain {
    std::string energy_path;
    uint64_t range_uj = 0;  // the counter wraps to 0 past this
  };
  std::vector<Domain> domains_;
  double watts_ = 0;
  std::string describe_;
};

struct Prices {
  double kwh = kDefaultPriceKwh;
  double hardware_per_hour = 0;
  double usd(double joules, double seconds) const {
    return joules / 3.6e6 * kwh + seconds * hardware_per_hour / 3600.0;
  }
};
Prices prices_of(const MeterOptions& o);

// What a request (or one half of it: its prompt, or its generated tokens) was charged.
struct Charge {
  int64_t tokens = 0;  // of its tokens that went through forward steps
  double steps = 0;    // sum of its shares of the steps it was in
  double seconds = 0;  // its share of those steps' wall time
  double joules = 0;
  double usd = 0;
  Charge& operator+=(const Charge& c) {
    tokens += c.tokens;
    steps += c.steps;
    seconds += c.seconds;
    joules += c.joules;
    usd += c.usd;
    return *this;
  }
  // Dollars per million of the given tokens (the request's prompt or completion count).
  double usd_per_mtok(int64_t n) const { return n > 0 ? usd / double(n) * 1e6 : 0; }
};

// Meters steps: begin() before a forward pass, end() after it (sampling included) with the
// tokens it carried; the returned cost per token is what each of them is charged.
class StepMeter {
 public:
  StepMeter(const MeterOptions& o, int threads) : energy_(o, threads), prices_(prices_of(o)) {}
  void begin() { start_ = energy_.now(); }
  struct Step {
    double seconds = 0, joules = 0, usd = 0;
    int64_t tokens = 0;
    // One token's share.
    Charge per_token() const;
    // All of it, as one charge.
    Charge whole() const { return {tokens, 1, seconds, joules, usd}; }
  };
  Step end(int64_t tokens);
  const EnergyMeter& energy() const { return energy_; }
  const Prices& prices() const { return prices_; }
  // Everything metered so far (each step whole).
  const Charge& total() const { return total_; }

 private:
  EnergyMeter energy_;
  Prices prices_;
  EnergyMeter::Sample start_;
  Charge total_;
};

}  // namespace tf
