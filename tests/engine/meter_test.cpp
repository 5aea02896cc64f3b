// The meter: RAPL counters read from a powercap tree (a fake one here), the power model when
// they are not readable, prices, and the scheduler's split of each step over its requests:
// what the requests are charged adds up to what the engine metered.
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "engine/meter.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"

namespace {

namespace fs = std::filesystem;

void put(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s << "\n";
}

struct FakePowercap {
  fs::path root = fs::temp_directory_path() / ("tf-powercap-" + std::to_string(::getpid()));
  FakePowercap() {
    fs::remove_all(root);
    put(root / "intel-rapl:0/name", "package-0");
    put(root / "intel-rapl:0/energy_uj", "1000000");
    put(root / "intel-rapl:0/max_energy_range_uj", "262143328850");
    // A subzone (part of the package: not counted again) and a platform zone (not a package).
    put(root / "intel-rapl:0:0/name", "core");
    put(root / "intel-rapl:0:0/energy_uj", "5");
    put(root / "intel-rapl:1/name", "psys");
    put(root / "intel-rapl:1/energy_uj", "7");
    put(root / "intel-rapl:2/name", "package-1");
    put(root / "intel-rapl:2/energy_uj", "200");
    put(root / "intel-rapl:2/max_energy_range_uj", "1000");
  }
  ~FakePowercap() { fs::remove_all(root); }
};

TEST(MeterTest, RaplPackagesAreSummedAndWrapAround) {
  FakePowercap pc;
  tf::MeterOptions o;
  o.powercap_root = pc.root.string();
  tf::EnergyMeter m(o, 2);
  ASSERT_TRUE(m.rapl());
  EXPECT_STREQ(m.source(), "rapl");
  EXPECT_NE(m.describe().find("package-0, package-1"), std::string::npos) << m.describe();
  const auto a = m.now();
  put(pc.root / "intel-rapl:0/energy_uj", "3500000");  // +2.5 J
  put(pc.root / "intel-rapl:2/energy_uj", "100");      // wrapped at 1000: +900 uJ
  const auto b = m.now();
  EXPECT_NEAR(m.joules(a, b), 2.5 + 900e-6, 1e-12);
}

TEST(MeterTest, PowerModelWhenRaplIsMissingOrRefused) {
  tf::MeterOptions o;
  o.powercap_root = "/nonexistent/powercap";
  tf::EnergyMeter dflt(o, 3);
  EXPECT_FALSE(dflt.rapl());
  EXPECT_STREQ(dflt.source(), "model");
  EXPECT_DOUBLE_EQ(dflt.model_watts(), 3 * tf::kDefaultWattsPerThread);
  EXPECT_NE(dflt.describe().find("default"), std::string::npos);
  o.watts = 42;
  tf::EnergyMeter set(o, 3);
  EXPECT_DOUBLE_EQ(set.model_watts(), 42);
  tf::EnergyMeter::Sample a, b;
  a.seconds = 10;
  b.seconds = 12.5;
  EXPECT_DOUBLE_EQ(set.joules(a, b), 105);
  // A readable tree is ignored when RAPL is turned off.
  FakePowercap pc;
  o.powercap_root = pc.root.string();
  o.use_rapl = false;
  EXPECT_FALSE(tf::EnergyMeter(o, 1).rapl());
  o.watts = -1;
  EXPECT_THROW(tf::EnergyMeter(o, 1), tf::Error);
}

TEST(MeterTest, PricesTurnJoulesAndHoursIntoDollars) {
  tf::MeterOptions o;
  o.price_kwh = 0.2;
  o.hardware_usd_per_hour = 3.6;
  const tf::Prices p = tf::prices_of(o);
  // 3.6 MJ = 1 kWh = $0.2; 10 s of a $3.6/h machine = $0.01.
  EXPECT_NEAR(p.usd(3.6e6, 10), 0.21, 1e-12);
  o.hardware_usd_per_hour = -1;
  EXPECT_GT(tf::prices_of(o).hardware_per_hour, 0);
  tf::Charge c;
  c.usd = 0.5;
  EXPECT_DOUBLE_EQ(c.usd_per_mtok(250000), 2.0);
  EXPECT_DOUBLE_EQ(c.usd_per_mtok(0), 0.0);
}

TEST(MeterTest, StepSharesSplitByTokens) {
  tf::StepMeter::Step s;
  s.tokens = 16;
  s.seconds = 0.32;
  s.joules = 8;
  s.usd = 1.6;
  const tf::Charge c = s.per_token();
  EXPECT_DOUBLE_EQ(c.steps, 1.0 / 16);
  EXPECT_DOUBLE_EQ(c.seconds, 0.02);
  EXPECT_DOUBLE_EQ(c.joules, 0.5);
  EXPECT_DOUBLE_EQ(c.usd, 0.1);
  EXPECT_EQ(c.tokens, 1);
}

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  int left = 0;
  std::vector<tf::GenUsage> usage;
};

class MeterSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tf::test::shared_dir().empty()) GTEST_SKIP() << "../shared not found: skipping";
    engine_ = tf::Engine::load(tf::test::shared_path("models/gguf/stories260K.gguf"));
  }
  std::unique_ptr<tf::Engine> engine_;
};

// 16 identical requests admitted together share every step: each is charged 1/16 of each,
// and the charges of all requests add up to what the engine metered.
TEST_F(MeterSchedulerTest, SixteenIdenticalRequestsEachPayASixteenth) {
  tf::SchedulerParams sp;
  sp.n_parallel = 16;
  sp.meter.watts = 50;
  sp.meter.use_rapl = false;
  sp.meter.hardware_usd_per_hour = 1.8;
  auto sched = engine_->make_scheduler(sp);
  Done d;
  d.left = 16;
  const auto prompt = engine_->tokenize("Once upon a time");
  // A first request holds the scheduler thread in its sink while the 16 are queued, so that
  // they are admitted together.
  std::promise<void> go;
  std::shared_future<void> gate = go.get_future().share();
  std::promise<tf::GenUsage> gate_usage;
  std::promise<void> entered;
  tf::GenRequest g;
  g.prompt = engine_->tokenize("The little dog");  // another prompt: no prefix to share
  g.max_tokens = 1;
  sched->submit(g, [gate, &gate_usage, &entered](const tf::GenEvent& e) {
    if (!e.done) {
      entered.set_value();
      gate.wait();
    } else {
      gate_usage.set_value(e.usage);
    }
  });
  entered.get_future().wait();
  {
    for (int i = 0; i < 16; ++i) {
      tf::GenRequest r;
      r.prompt = prompt;
      r.max_tokens = 24;
      r.ignore_eos = true;
      r.sampling.temperature = 0;
      sched->submit(r, [&d](const tf::GenEvent& e) {
        if (!e.done) return;
        std::lock_guard<std::mutex> lk(d.mu);
        d.usage.push_back(e.usage);
        if (--d.left == 0) d.cv.notify_all();
      });
    }
  }
  go.set_value();
  {
    std::unique_lock<std::mutex> lk(d.mu);
    ASSERT_TRUE(d.cv.wait_for(lk, std::chrono::seconds(120), [&] { return d.left == 0; }));
  }
  const tf::SchedulerStats st = sched->stats();
  ASSERT_EQ(d.usage.size(), 16u);
  const tf::GenUsage gu = gate_usage.get_future().get();
  tf::Charge sum = gu.input;
  sum += gu.output;
  for (const auto& u : d.usage) {
    EXPECT_EQ(u.completion_tokens, 24);
    EXPECT_STREQ(u.energy_source, "model");
    // Every prompt token not found in the cache (the gate's BOS is) went through a step, and
    // every generated token but the last.
    EXPECT_EQ(u.input.tokens, int64_t(prompt.size()) - u.cached_tokens);
    EXPECT_EQ(u.output.tokens, 23);
    sum += u.input;
    sum += u.output;
  }
  EXPECT_EQ(sum.tokens, st.metered.tokens);
  EXPECT_NEAR(sum.steps, double(st.steps), 1e-9);
  EXPECT_NEAR(st.metered.steps, double(st.steps), 1e-9);
  EXPECT_NEAR(sum.seconds, st.metered.seconds, 1e-9 * st.metered.seconds + 1e-12);
  EXPECT_NEAR(sum.joules, st.metered.joules, 1e-9 * st.metered.joules + 1e-12);
  EXPECT_NEAR(sum.usd, st.metered.usd, 1e-9 * st.metered.usd + 1e-15);
  // The power model: joules are watts x seconds; dollars are energy plus hardware time.
  EXPECT_NEAR(st.metered.joules, 50 * st.metered.seconds, 1e-9);
  EXPECT_NEAR(st.metered.usd, st.metered.joules / 3.6e6 * 0.15 + st.metered.seconds * 1.8 / 3600,
              1e-12);
  // The gate's step, then one prompt step and 23 decode steps, each shared by all 16.
  EXPECT_NEAR(gu.input.steps, 1.0, 1e-12);
  EXPECT_EQ(st.steps, 25);
  for (const auto& u : d.usage) {
    EXPECT_NEAR(u.input.steps + u.output.steps, 24.0 / 16, 1e-9);
    EXPECT_NEAR(u.output.steps, 23.0 / 16, 1e-9);
    EXPECT_GT(u.output.joules, 0);
  }
}

TEST_F(MeterSchedulerTest, RunChargesPromptAndGeneration) {
  tf::LoadOptions lo;
  lo.meter.watts = 30;
  lo.meter.use_rapl = false;
  auto e = tf::Engine::load(tf::test::shared_path("models/gguf/stories260K.gguf"), lo);
  tf::GenerateOptions go;
  go.n_predict = 16;
  go.sampling.temperature = 0;
  go.ignore_eos = true;
  const tf::Generation g = e->generate("Once upon a time", go);
  const tf::Timings& t = g.timings;
  EXPECT_EQ(t.prompt_charge.tokens, t.prompt_tokens);
  EXPECT_EQ(t.gen_charge.tokens, 16);
  EXPECT_NEAR(t.prompt_charge.joules, 30 * t.prompt_charge.seconds, 1e-9);
  EXPECT_NEAR(t.gen_charge.joules, 30 * t.gen_charge.seconds, 1e-9);
  EXPECT_GT(t.gen_charge.usd, 0);
  EXPECT_NE(e->energy_description().find("30 W"), std::string::npos) << e->energy_description();
}

}  // namespace
