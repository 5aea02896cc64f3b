// Greedy continuations against llama.cpp's (../shared/golden/greedy): ids must match token for
// token up to the first near-tie, and the reported log-probabilities must agree closely.
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "model/context.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "test_util.h"

namespace {

using nlohmann::json;

struct Step {
  int32_t id;
  std::vector<float> logprobs;  // whole vocabulary
};

// Greedy decoding from prompt ids, n steps, optionally never choosing `banned`.
std::vector<Step> greedy(const tf::Model& m, const std::vector<int32_t>& prompt, int n, int banned,
                         int threads) {
  tf::ContextParams cp;
  cp.n_ctx = 512;
  cp.n_threads = threads;
  tf::Context ctx(m, cp);
  tf::Batch b;
  for (size_t i = 0; i < prompt.size(); ++i)
    b.add(prompt[i], int32_t(i), 0, i + 1 == prompt.size());
  ctx.decode(b);
  std::vector<Step> out;
  int32_t pos = int32_t(prompt.size());
  for (int i = 0; i < n; ++i) {
    Step s;
    tf::log_softmax(ctx.logits(0), ctx.n_vocab(), s.logprobs);
    std::vector<float> l(ctx.logits(0), ctx.logits(0) + ctx.n_vocab());
    if (banned >= 0) l[size_t(banned)] = -INFINITY;
    s.id = tf::argmax(l.data(), int64_t(l.size()));
    out.push_back(s);
    b.clear();
    b.add(s.id, pos++, 0, true);
    ctx.decode(b);
  }
  return out;
}

struct Compared {
  int matched = 0;
  bool diverged_at_tie = false;
  double max_lp_diff = 0;
};

// Compares our steps with llama.cpp's. Fails unless every id matches, or the first mismatch is
// at a step llama.cpp lists as a near-tie and that is also a near-tie for us.
Compared compare(const std::vector<Step>& ours, const json& run, const std::string& what) {
  Compared c;
  std::set<int> ties;
  for (const json& t : run["near_ties"]) ties.insert(t["step"].get<int>());
  const json& steps = run["steps"];
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& g = steps[i];
    const Step& s = ours[i];
    for (const json& top : g["top"]) {
      const double d =
          std::fabs(s.logprobs[top["id"].get<size_t>()] - top["logprob"].get<double>());
      c.max_lp_diff = std::max(c.max_lp_diff, d);
      EXPECT_LT(d, 0.02) << what << " step " << i << " token " << top["id"] << ": logprob differs";
    }
    if (std::getenv("TF_GOLDEN_VERBOSE")) {
      double step_max = 0;
      for (const json& top : g["top"])
        step_max = std::max(step_max, std::fabs(s.logprobs[top["id"].get<size_t>()] -
                                                top["logprob"].get<double>()));
      std::printf("    %s step %zu: max |dlogprob| %.5f\n", what.c_str(), i, step_max);
    }
    const int32_t gid = g["id"].get<int32_t>();
    if (s.id != gid) {
      const float gap = s.logprobs[size_t(s.id)] - s.logprobs[size_t(gid)];
      EXPECT_TRUE(ties.count(int(i)) && gap < 0.01f)
          << what << ": step " << i << " we chose " << s.id << ", llama.cpp " << gid << " (our gap "
          << gap << ", not a near-tie)";
      c.diverged_at_tie = true;
      return c;
    }
    ++c.matched;
  }
  return c;
}

class GoldenGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenGreedy, MatchesLlamaCpp) {
  const std::string rel = "golden/greedy/" + GetParam() + ".json";
  TF_REQUIRE_SHARED(rel);
  const json g = json::parse(tf::test::read_file(tf::test::shared_path(rel)));
  auto model = tf::Model::load(tf::test::shared_path(g["model_path"].get<std::string>()));
  for (const json& cs : g["cases"]) {
    const auto prompt = cs["prompt_ids"].get<std::vector<int32_t>>();
    const std::string what = GetParam() + " \"" + cs["prompt"].get<std::string>() + "\"";
    auto ours = greedy(*model, prompt, int(cs["steps"].size()), -1, 1);
    Compared c = compare(ours, cs, what);
    std::printf("  %-60s matched %2d/%zu%s, max |dlogprob| %.5f\n", what.c_str(), c.matched,
                cs["steps"].size(), c.diverged_at_tie ? " (then diverged at a near-tie)" : "",
                c.max_lp_diff);
    if (cs.contains("ignore_eos_run")) {
      const json& r = cs["ignore_eos_run"];
      auto ours2 = greedy(*model, prompt, int(r["steps"].size()), r["banned_id"].get<int>(), 1);
      Compared c2 = compare(ours2, r, what + " (ignore_eos)");
      std::printf("  %-60s matched %2d/%zu%s, max |dlogprob| %.5f\n",
                  (what + " ignore_eos").c_str(), c2.matched, r["steps"].size(),
                  c2.diverged_at_tie ? " (then diverged at a near-tie)" : "", c2.max_lp_diff);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenGreedy, ::testing::ValuesIn(tf::test::golden_models()),
                         tf::test::StemName());

// The work split across threads must not change a single bit of the result.
TEST(Threads, SameLogitsWithTwoThreads) {
  TF_REQUIRE_SHARED("models/gguf/tinystories-656k-q8_0.gguf");
  auto model = tf::Model::load(tf::test::shared_path("models/gguf/tinystories-656k-q8_0.gguf"));
  auto a = greedy(*model, {1, 80, 247, 229, 604}, 20, -1, 1);
  auto b = greedy(*model, {1, 80, 247, 229, 604}, 20, -1, 2);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].id, b[i].id) << "step " << i;
    ASSERT_EQ(a[i].logprobs, b[i].logprobs) << "step " << i;
  }
}

}  // namespace
