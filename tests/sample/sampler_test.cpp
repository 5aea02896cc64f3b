// Sampler behaviour: greedy, each truncation rule, temperature, penalties and seeding.
#include "sample/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "util/error.h"

namespace {

tf::SamplingParams plain(float temp) {
  tf::SamplingParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.f;
  p.seed = 1234;
  return p;
}

std::map<int32_t, int> histogram(tf::Sampler& s, const std::vector<float>& logits, int n) {
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) ++h[s.sample(logits.data(), int64_t(logits.size()))];
  return h;
}

TEST(Sampler, GreedyPicksArgmaxAndFirstOnTies) {
  tf::Sampler s(plain(0.f));
  std::vector<float> l = {0.1f, 3.f, -2.f, 3.f, 1.f};
  EXPECT_EQ(s.sample(l.data(), 5), 1);
  EXPECT_EQ(tf::argmax(l.data(), 5), 1);
}

TEST(Sampler, TopKOneIsGreedyEvenWhenHot) {
  auto p = plain(5.f);
  p.top_k = 1;
  tf::Sampler s(p);
  std::vector<float> l = {0.f, 0.5f, 0.4f};
  for (int i = 0; i < 200; ++i) ASSERT_EQ(s.sample(l.data(), 3), 1);
}

TEST(Sampler, TemperatureFollowsSoftmax) {
  tf::Sampler s(plain(1.f));
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  const int n = 20000;
  auto h = histogram(s, l, n);
  EXPECT_NEAR(h[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(h[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(h[2] / double(n), 0.2, 0.02);
  // A low temperature sharpens the distribution towards the best token.
  tf::Sampler cold(plain(0.25f));
  auto hc = histogram(cold, l, n);
  EXPECT_GT(hc[0] / double(n), 0.8);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  auto p = plain(1.f);
  p.top_p = 0.6f;  // 0.5 alone is not enough; 0.5 + 0.3 is
  tf::Sampler s(p);
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  auto h = histogram(s, l, 5000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_GT(h[1], 1000);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  auto p = plain(1.f);
  p.min_p = 0.5f;  // keep tokens with p >= 0.5 * p(best) = 0.25
  tf::Sampler s(p);
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  auto h = histogram(s, l, 5000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_GT(h[1], 1000);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  auto p = plain(0.f);
  p.repeat_penalty = 2.f;
  tf::Sampler s(p);
  // Token 0 leads (4 vs 3); once seen, its logit halves to 2 and token 1 wins.
  std::vector<float> l = {4.f, 3.f, -1.f};
  EXPECT_EQ(s.sample(l.data(), 3), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(l.data(), 3), 1);
  // A negative logit gets more negative, never less.
  std::vector<float> neg = {-1.f, -1.5f};
  tf::Sampler s2(p);
  s2.accept(0);
  EXPECT_EQ(s2.sample(neg.data(), 2), 1);
}

TEST(Sampler, FrequencyAndPresencePenalties) {
  auto p = plain(0.f);
  p.frequency_penalty = 0.5f;
  tf::Sampler s(p);
  std::vector<float> l = {2.f, 1.2f};
  s.accept(0);
  EXPECT_EQ(s.sample(l.data(), 2), 0);  // 2 - 0.5 = 1.5 > 1.2
  s.accept(0);
  EXPECT_EQ(s.sample(l.data(), 2), 1);  // 2 - 1.0 = 1.0 < 1.2
  auto q = plain(0.f);
  q.presence_penalty = 1.f;
  tf::Sampler s2(q);
  s2.accept(0);
  EXPECT_EQ(s2.sample(l.data(), 2), 1);  // 2 - 1 = 1 < 1.2
}

TEST(Sampler, PenaltyWindowForgetsOldTokens) {
  auto p = plain(0.f);
  p.presence_penalty = 1.f;
  p.penalty_last_n = 2;
  tf::Sampler s(p);
  std::vector<float> l = {2.f, 1.2f, 0.f, 0.f};
  s.accept(0);
  s.accept(2);
  s.accept(3);  // token 0 falls out of the 2-token window
  EXPECT_EQ(s.sample(l.data(), 4), 0);
}

TEST(Sampler, SeedReproducesAndDiffers) {
  std::vector<float> l(100);
  for (size_t i = 0; i < l.size(); ++i) l[i] = float(i % 7) * 0.3f;
  auto draw = [&](uint64_t seed) {
    auto p = plain(1.f);
    p.seed = seed;
    tf::Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(s.sample(l.data(), 100));
    return out;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Sampler, RejectsInvalidParameters) {
  auto p = plain(NAN);
  EXPECT_THROW(tf::Sampler{p}, tf::Error);
  p = plain(1.f);
  p.repeat_penalty = 0.f;
  EXPECT_THROW(tf::Sampler{p}, tf::Error);
  p = plain(1.f);
  p.top_p = -0.5f;
  EXPECT_THROW(tf::Sampler{p}, tf::Error);
}

TEST(LogSoftmax, MatchesDefinition) {
  std::vector<float> l = {1.f, 2.f, 3.f}, out;
  tf::log_softmax(l.data(), 3, out);
  const double z = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[size_t(i)], l[size_t(i)] - z, 1e-6);
}

// The sampler sorts only as much of the vocabulary as its rules and the draw look at; this is
// the whole chain with a full sort (the definition), drawing from the same random stream.
int32_t sample_by_full_sort(const tf::SamplingParams& p, std::mt19937_64& rng,
                            const std::vector<float>& logits) {
  struct C {
    int32_t id;
    float logit;
    float p;
  };
  std::vector<C> c;
  for (size_t i = 0; i < logits.size(); ++i) c.push_back({int32_t(i), logits[i], 0.f});
  std::sort(c.begin(), c.end(), [](const C& a, const C& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  });
  if (p.top_k > 0 && size_t(p.top_k) < c.size()) c.resize(size_t(p.top_k));
  auto softmax = [&](float t) {
    double sum = 0;
    for (auto& x : c) sum += x.p = std::exp((x.logit - c[0].logit) / t);
    for (auto& x : c) x.p = float(x.p / sum);
  };
  softmax(1.f);
  if (p.top_p < 1.f) {
    double cum = 0;
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); ++i)
      if ((cum += c[i].p) >= p.top_p) {
        keep = i + 1;
        break;
      }
    c.resize(std::max<size_t>(1, keep));
  }
  if (p.min_p > 0.f) {
    size_t keep = 1;
    while (keep < c.size() && c[keep].p >= c[0].p * p.min_p) ++keep;
    c.resize(keep);
  }
  softmax(p.temperature);
  const double r = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  double cum = 0;
  for (const auto& x : c)
    if (r < (cum += x.p)) return x.id;
  return c.back().id;
}

TEST(Sampler, PartialSortingDrawsWhatAFullSortDraws) {
  std::mt19937 gen(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  int draws = 0;
  for (float spread : {0.5f, 3.f, 12.f}) {  // flat to peaked distributions
    std::vector<float> logits(5000);
    for (auto& l : logits) l = spread * nd(gen);
    logits[17] = logits[18];  // a tie, broken by id
    if (spread > 1.f)         // masked tokens, as a grammar leaves them
      for (size_t i = 100; i < logits.size(); i += 3) logits[i] = -INFINITY;
    for (int32_t k : {0, 1, 40, 4999, 6000})
      for (float top_p : {1.f, 0.95f, 0.5f, 0.f})
        for (float min_p : {0.f, 0.05f, 1.f})
          for (float temp : {1.f, 0.7f, 1.5f}) {
            tf::SamplingParams p;
            p.temperature = temp;
            p.top_k = k;
            p.top_p = top_p;
            p.min_p = min_p;
            p.seed = uint64_t(draws);
            tf::Sampler s(p);
            std::mt19937_64 ref(p.seed);
            for (int i = 0; i < 4; ++i, ++draws)
              ASSERT_EQ(s.sample(logits.data(), int64_t(logits.size())),
                        sample_by_full_sort(p, ref, logits))
                  << "spread " << spread << " k " << k << " top_p " << top_p << " min_p " << min_p
                  << " temp " << temp << " draw " << i;
          }
  }
  EXPECT_EQ(draws, 3 * 5 * 4 * 3 * 3 * 4);
}

}  // namespace
