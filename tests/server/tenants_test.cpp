// Tenants at a fixed clock: budgets renew at UTC midnight and on the 1st, Retry-After counts to
// then, the minute window slides, concurrency slots come back, and the usage file round-trips.
#include "server/tenants.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "util/error.h"

namespace {

using tf::server::Tenants;
using Clock = std::chrono::system_clock;

Clock::time_point utc(int y, int mo, int d, int h, int mi, int s) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return Clock::from_time_t(timegm(&tm));
}

struct Files {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tf-tenants-" + std::to_string(::getpid()));
  Files() { std::filesystem::create_directories(dir); }
  ~Files() { std::filesystem::remove_all(dir); }
  std::string keys(const std::string& text) {
    const auto p = dir / "keys.json";
    std::ofstream(p) << text;
    return p.string();
  }
};

std::string entry(const std::string& name, const std::string& key, const std::string& limits) {
  return "{\"name\":\"" + name + "\",\"key_sha256\":\"" + tf::server::hex(tf::server::sha256(key)) +
         "\"" + limits + "}";
}

TEST(TenantsTest, Sha256MatchesKnownVector) {
  EXPECT_EQ(tf::server::hex(tf::server::sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string k = tf::server::new_api_key();
  EXPECT_EQ(k.size(), 3u + 43u);
  EXPECT_NE(k, tf::server::new_api_key());
}

TEST(TenantsTest, BudgetsRenewAtMidnightAndOnTheFirst) {
  Files f;
  Tenants t;
  t.open(f.keys("{\"tenants\":[" +
                entry("a", "ka", ",\"tokens_per_day\":100,\"tokens_per_month\":250") + "]}"),
         "");
  EXPECT_EQ(t.authenticate("ka").value_or(""), "a");
  EXPECT_FALSE(t.authenticate("kb"));
  auto now = utc(2026, 12, 31, 23, 0, 0);
  ASSERT_FALSE(t.admit("a", "m", now));
  t.release("a");
  tf::server::TenantCharge c;
  c.prompt_tokens = 60;
  c.completion_tokens = 40;
  t.charge("a", c, now);
  auto no = t.admit("a", "m", now);
  ASSERT_TRUE(no);
  EXPECT_EQ(no->status, 429);
  EXPECT_EQ(no->code, "tokens_per_day");
  EXPECT_EQ(no->retry_after_s, 3600);  // to 2027-01-01 00:00 UTC
  // A new day (and month): both budgets renew.
  now = utc(2027, 1, 1, 0, 0, 1);
  ASSERT_FALSE(t.admit("a", "m", now));
  t.release("a");
  c.prompt_tokens = 100;
  c.completion_tokens = 0;
  t.charge("a", c, now);
  t.charge("a", c, utc(2027, 1, 2, 0, 0, 0));
  t.charge("a", c, utc(2027, 1, 3, 0, 0, 0));
  no = t.admit("a", "m", utc(2027, 1, 4, 12, 0, 0));
  ASSERT_TRUE(no);
  EXPECT_EQ(no->code, "tokens_per_month");
  EXPECT_EQ(no->retry_after_s, 27 * 86400 + 12 * 3600);  // to 2027-02-01
}

TEST(TenantsTest, MinuteWindowSlidesAndConcurrencySlotsReturn) {
  Files f;
  Tenants t;
  t.open(f.keys("{\"tenants\":[" +
                entry("a", "ka", ",\"requests_per_minute\":2,\"concurrency\":1") + "]}"),
         "");
  const auto t0 = utc(2026, 6, 1, 12, 0, 0);
  ASSERT_FALSE(t.admit("a", "m", t0));
  auto no = t.admit("a", "m", t0 + std::chrono::seconds(1));
  ASSERT_TRUE(no);
  EXPECT_EQ(no->code, "concurrency");
  t.release("a");
  ASSERT_FALSE(t.admit("a", "m", t0 + std::chrono::seconds(10)));
  t.release("a");
  no = t.admit("a", "m", t0 + std::chrono::seconds(20));
  ASSERT_TRUE(no);
  EXPECT_EQ(no->code, "requests_per_minute");
  EXPECT_EQ(no->retry_after_s, 41);  // the first admission leaves the window at t0 + 60 s
  ASSERT_FALSE(t.admit("a", "m", t0 + std::chrono::seconds(60)));
  const auto rows = t.snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].in_flight, 1);
  EXPECT_EQ(rows[0].in_flight_peak, 1);
  EXPECT_EQ(rows[0].refused.at("concurrency"), 1);
  EXPECT_EQ(rows[0].refused.at("requests_per_minute"), 1);
}

TEST(TenantsTest, UsageFileRoundTripsAndBadOnesAreClearErrors) {
  Files f;
  const std::string keys =
      f.keys("{\"tenants\":[" + entry("a", "ka", "") + "," + entry("b", "kb", "") + "]}");
  const std::string usage = (f.dir / "usage.json").string();
  {
    Tenants t;
    t.open(keys, usage);
    tf::server::TenantCharge c;
    c.prompt_tokens = 7;
    c.cached_tokens = 3;
    c.completion_tokens = 11;
    c.joules = 1.5;
    c.input_usd = 0.25;
    c.output_usd = 0.5;
    t.charge("b", c);
    ASSERT_TRUE(t.save());
  }
  Tenants t;
  t.open(keys, usage);
  const auto rows = t.snapshot();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].name, "b");
  EXPECT_EQ(rows[1].usage.requests, 1);
  EXPECT_EQ(rows[1].usage.completion_tokens, 11);
  EXPECT_EQ(rows[1].usage.day_tokens, 18);
  EXPECT_DOUBLE_EQ(rows[1].usage.joules, 1.5);
  EXPECT_DOUBLE_EQ(rows[1].usage.usd, 0.75);
  EXPECT_EQ(rows[0].usage.requests, 0);
  std::ofstream(usage) << "{\"tenants\": {\"b\": {\"requests\": \"x\"}}}";
  Tenants bad;
  EXPECT_THROW(bad.open(keys, usage), tf::Error);
}

TEST(TenantsTest, KeysFileErrorsNameTheProblem) {
  auto err = [](const std::string& text) {
    try {
      tf::server::parse_tenants(text, "k.json");
    } catch (const tf::Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_NE(err("[]").find("\"tenants\" array"), std::string::npos);
  EXPECT_NE(err("{\"tenants\":[]}").find("no tenants"), std::string::npos);
  EXPECT_NE(
      err("{\"tenants\":[{\"name\":\"a b\",\"key_sha256\":\"" + std::string(64, 'a') + "\"}]}")
          .find("letters"),
      std::string::npos);
  EXPECT_NE(err("{\"tenants\":[{\"name\":\"a\",\"key_sha256\":\"" + std::string(64, 'a') +
                "\",\"rpm\":3}]}")
                .find("unknown field \"rpm\""),
            std::string::npos);
  EXPECT_NE(err("{\"tenants\":[{\"name\":\"a\",\"key_sha256\":[\"" + std::string(64, 'a') +
                "\",\"" + std::string(64, 'a') + "\"]}]}")
                .find("twice"),
            std::string::npos);
  EXPECT_NE(err("{\"tenants\":[{\"name\":\"a\",\"key_sha256\":\"" + std::string(64, 'a') +
                "\",\"models\":\"m\"}]}")
                .find("list of model ids"),
            std::string::npos);
  EXPECT_EQ(err("{\"tenants\":[{\"name\":\"a\",\"key_sha256\":\"" + std::string(64, 'A') +
                "\",\"models\":[\"*\"]}]}"),
            "(accepted)");
}

}  // namespace
