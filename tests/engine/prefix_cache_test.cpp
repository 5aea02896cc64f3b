// Prefix reuse in the engine: a generation whose prompt shares a prefix with what the KV cache
// holds processes only the rest, reports how many tokens came from the cache, and gives the
// tokens a fresh engine gives for the same prompt.
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/prompt_slices.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"

namespace {

using nlohmann::json;
using Ids = std::vector<tf::TokenId>;

Ids concat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// What the cache must hold after a generation: the prompt and the generated tokens but the
// last (sampled, never decoded).
Ids expected_cache(const tf::Generation& g) {
  Ids ids = g.prompt_ids;
  if (!g.tokens.empty()) ids.insert(ids.end(), g.tokens.begin(), g.tokens.end() - 1);
  return ids;
}

size_t common_prefix(const Ids& a, const Ids& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

class PrefixCache : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string rel = "golden/greedy/" + GetParam() + ".json";
    TF_REQUIRE_SHARED(rel);
    const json g = json::parse(tf::test::read_file(tf::test::shared_path(rel)));
    path_ = tf::test::shared_path(g["model_path"].get<std::string>());
    tf::LoadOptions lo;
    lo.n_ctx = 512;
    lo.n_threads = 1;
    engine_ = tf::Engine::load(path_, lo);
    fresh_ = tf::Engine::load(path_, lo);
    go_.n_predict = 24;
    go_.sampling.temperature = 0;
  }

  // The same prompt on an engine whose cache is cleared first.
  tf::Generation fresh(const Ids& prompt) {
    fresh_->clear_cache();
    return fresh_->generate_ids(prompt, go_);
  }

  // Generates on the reusing engine and checks the counts and the tokens against a fresh run.
  tf::Generation check(const Ids& prompt, int64_t want_cached, const std::string& what) {
    SCOPED_TRACE(what);
    const tf::Generation g = engine_->generate_ids(prompt, go_);
    EXPECT_EQ(g.timings.cached_tokens, want_cached);
    EXPECT_EQ(g.timings.prompt_tokens, int64_t(prompt.size()) - want_cached);
    EXPECT_EQ(engine_->cached_ids(), expected_cache(g));
    const tf::Generation f = fresh(prompt);
    EXPECT_EQ(f.timings.cached_tokens, 0);
    EXPECT_EQ(g.tokens, f.tokens);
    EXPECT_EQ(g.text, f.text);
    EXPECT_EQ(g.stop_reason, f.stop_reason);
    return g;
  }

  std::string path_;
  std::unique_ptr<tf::Engine> engine_, fresh_;
  tf::GenerateOptions go_;
};

// Default reuse: only positions computed by prompt batches, and a suffix of two tokens or more,
// so that the results are a fresh run's bit for bit.
TEST_P(PrefixCache, SharedPrefixIsNotReprocessed) {
  const Ids p1 = engine_->tokenize("Once upon a time, there was a little dog named Max.");
  const tf::Generation a = check(p1, 0, "first generation: empty cache");
  ASSERT_FALSE(a.tokens.empty());
  EXPECT_EQ(engine_->cached_ids(), expected_cache(a));

  // A chat's next turn: the whole previous exchange, then more text. The previous prompt comes
  // from the cache; the generated tokens (decoded one at a time) are processed again.
  const Ids p2 = concat(concat(p1, a.tokens), engine_->tokenize(" Max said", false));
  const tf::Generation b = check(p2, int64_t(p1.size()), "continuation");

  // A branch: only the part shared with the cache is kept.
  const Ids p3 =
      concat(Ids(p1.begin(), p1.begin() + 5), engine_->tokenize(" cat and a bird", false));
  check(p3, int64_t(common_prefix(p3, expected_cache(b))), "branch");

  // The same prompt again: all in the cache, but the last two tokens are processed (the last
  // for its logits, two for the batch kernels).
  check(p3, int64_t(p3.size() - 2), "same prompt");

  // A prompt that is a strict prefix of what the cache holds.
  const Ids p4(p3.begin(), p3.end() - 3);
  check(p4, int64_t(p4.size() - 2), "prefix of the cache");

  // Perplexity runs in a context of its own: the cache survives it.
  const Ids before = engine_->cached_ids();
  engine_->perplexity(tf::test::read_file(tf::test::shared_path("golden/ppl/story.txt")), 64);
  EXPECT_EQ(engine_->cached_ids(), before);
  const Ids p5 = concat(p4, engine_->tokenize(" They played", false));
  check(p5, int64_t(p4.size()), "after perplexity");

  // Reuse off: the whole prompt is processed (and the cache then holds it).
  go_.reuse_cache = false;
  const tf::Generation off = check(p5, 0, "reuse off");
  go_.reuse_cache = true;
  EXPECT_EQ(engine_->cached_ids(), expected_cache(off));
  check(p5, int64_t(p5.size() - 2), "reuse on again");

  // clear_cache forgets everything.
  engine_->clear_cache();
  EXPECT_TRUE(engine_->cached_ids().empty());
  check(p5, 0, "after clear_cache");

  // A one-token prompt (BOS alone) is processed as one token, as a fresh run does.
  const Ids bos(p1.begin(), p1.begin() + 1);
  check(bos, 0, "one token");
  check(concat(bos, engine_->tokenize(" Once", false)), 0, "after a one-token prompt");
}

// reuse_generated: the longest common prefix, generated tokens included; at least one token is
// processed. (The tokens still equal a fresh run's on these prompts, though the logits need not
// be the same bits: see PrefixCacheBits.)
TEST_P(PrefixCache, ReuseGeneratedTakesTheLongestCommonPrefix) {
  go_.reuse_generated = true;
  const Ids p1 = engine_->tokenize("Once upon a time, there was a little dog named Max.");
  const tf::Generation a = check(p1, 0, "first generation: empty cache");
  ASSERT_FALSE(a.tokens.empty());

  // Everything but the last generated token (never decoded) comes from the cache.
  const Ids p2 = concat(concat(p1, a.tokens), engine_->tokenize(" Max said", false));
  const tf::Generation b = check(p2, int64_t(p1.size() + a.tokens.size() - 1), "continuation");

  const Ids p3 =
      concat(Ids(p1.begin(), p1.begin() + 5), engine_->tokenize(" cat and a bird", false));
  check(p3, int64_t(common_prefix(p3, expected_cache(b))), "branch");
  check(p3, int64_t(p3.size() - 1), "same prompt: only the last token");
  const Ids p4(p3.begin(), p3.end() - 3);
  check(p4, int64_t(p4.size() - 1), "prefix of the cache");
}

// Several turns of a conversation-like prompt growing each time, on every golden prompt: the
// cache serves all but the new text and the last generated token, the tokens stay a fresh
// engine's.
TEST_P(PrefixCache, GrowingConversation) {
  for (int64_t n_batch : {int64_t(128), int64_t(7)}) {
    tf::LoadOptions lo;
    lo.n_ctx = 512;
    lo.n_threads = 1;
    lo.n_batch = n_batch;  // 7: prompts cross slice boundaries
    engine_ = tf::Engine::load(path_, lo);
    for (bool generated : {false, true}) {
      SCOPED_TRACE("n_batch " + std::to_string(n_batch) + (generated ? ", reuse_generated" : ""));
      go_.reuse_generated = generated;
      engine_->clear_cache();
      Ids prompt = engine_->tokenize("Lily and Ben went to the park.");
      int64_t want_cached = 0;
      const char* turns[] = {" Ben said", " Then Lily", " The end.", " One day"};
      for (const char* turn : turns) {
        const tf::Generation g = check(prompt, want_cached, std::string("turn before") + turn);
        // An EOS ends the reply; the next prompt continues after it like any other token.
        want_cached = int64_t(generated ? expected_cache(g).size() : prompt.size());
        prompt = concat(concat(prompt, g.tokens), engine_->tokenize(turn, false));
      }
    }
  }
}

// A generation that hits an error (a token id out of range) leaves the cache empty, never
// wrong: the next one processes its whole prompt.
TEST_P(PrefixCache, ErrorForgetsTheCache) {
  const Ids p1 = engine_->tokenize("The little dog");
  check(p1, 0, "first");
  Ids bad = p1;
  bad.push_back(1 << 30);
  EXPECT_THROW(engine_->generate_ids(bad, go_), tf::Error);
  EXPECT_TRUE(engine_->cached_ids().empty());
  check(p1, 0, "after the error");
}

INSTANTIATE_TEST_SUITE_P(Models, PrefixCache, ::testing::ValuesIn(tf::test::golden_models()),
                         tf::test::StemName());

TEST(PromptSlices, CoverTheRangeWithNoSingleTokenSlice) {
  for (int64_t nb : {1, 2, 3, 7, 128})
    for (size_t from : {0, 1, 5, 127, 128})
      for (size_t n = 1; n < 300; ++n) {
        const auto s = tf::prompt_slices(from, from + n, nb);
        ASSERT_FALSE(s.empty());
        EXPECT_EQ(s.front().first, from);
        EXPECT_EQ(s.back().second, from + n);
        for (size_t i = 0; i < s.size(); ++i) {
          if (i > 0) {
            EXPECT_EQ(s[i].first, s[i - 1].second);
          }
          EXPECT_LE(s[i].second - s[i].first, size_t(nb));
          EXPECT_GE(s[i].second - s[i].first, (n > 1 && nb > 2) ? 2u : 1u)
              << "nb " << nb << " n " << n << " slice " << i;
        }
      }
}

// The property default reuse rests on, at the level of the forward pass, over random prompts
// and split points: K/V of a prefix computed by prompt batches (slices as the engine cuts
// them), then a suffix of two tokens or more, give the logits of one fresh run bit for bit.
// Decoding some of the positions one token at a time instead (as generated tokens are) is
// measured and printed, not asserted: for F32/F16 weights it changes the last bits.
class PrefixCacheBits : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefixCacheBits, BatchedPrefixGivesFreshLogitsBitForBit) {
  const std::string rel = "golden/greedy/" + GetParam() + ".json";
  TF_REQUIRE_SHARED(rel);
  const json g = json::parse(tf::test::read_file(tf::test::shared_path(rel)));
  auto model = tf::Model::load(tf::test::shared_path(g["model_path"].get<std::string>()));
  for (tf::DType kv : {tf::DType::F16, tf::DType::Q8_0}) {
    SCOPED_TRACE(kv == tf::DType::F16 ? "f16 cache" : "q8_0 cache");
    tf::ContextParams cp;
    cp.n_ctx = 320;
    cp.n_batch = 32;
    cp.n_threads = 1;
    cp.kv_type = kv;
    tf::Context fresh(*model, cp), reused(*model, cp);
    std::mt19937 rng(11);
    std::uniform_int_distribution<tf::TokenId> tok(3, tf::TokenId(model->config().n_vocab - 1));
    auto run = [&](tf::Context& ctx, const Ids& ids, size_t from, size_t to) {
      tf::Batch b;
      for (const auto& [s, e] : tf::prompt_slices(from, to, cp.n_batch)) {
        b.clear();
        for (size_t i = s; i < e; ++i) b.add(ids[i], int32_t(i), 0, i + 1 == to);
        ctx.decode(b);
      }
    };
    int one_token_differs = 0, cases = 0;
    double max_diff = 0;
    for (int trial = 0; trial < 24; ++trial) {
      const size_t n_pre = 2 + rng() % 150, n_mid = 1 + rng() % 30, n_suf = 2 + rng() % 60;
      Ids ids(n_pre + n_mid + n_suf);
      for (auto& t : ids) t = tok(rng);
      fresh.kv().truncate(0, 0);
      run(fresh, ids, 0, ids.size());
      const std::vector<float> want(fresh.logits(0), fresh.logits(0) + fresh.n_vocab());
      // Prefix and middle in prompt batches (two calls, as two turns), then the suffix.
      reused.kv().truncate(0, 0);
      run(reused, ids, 0, n_pre);
      run(reused, ids, n_pre, n_pre + n_mid + (n_mid == 1));  // (two tokens at least)
      reused.kv().truncate(0, int32_t(n_pre + n_mid));
      run(reused, ids, n_pre + n_mid, ids.size());
      ASSERT_EQ(std::memcmp(want.data(), reused.logits(0), want.size() * sizeof(float)), 0)
          << "trial " << trial << ": prefix " << n_pre << ", middle " << n_mid << ", suffix "
          << n_suf;
      // The middle decoded one token at a time instead.
      reused.kv().truncate(0, int32_t(n_pre));
      tf::Batch b;
      for (size_t i = n_pre; i < n_pre + n_mid; ++i) {
        b.clear();
        b.add(ids[i], int32_t(i), 0, true);
        reused.decode(b);
      }
      run(reused, ids, n_pre + n_mid, ids.size());
      const float* got = reused.logits(0);
      ++cases;
      one_token_differs += std::memcmp(want.data(), got, want.size() * sizeof(float)) != 0;
      for (size_t i = 0; i < want.size(); ++i)
        max_diff = std::max(max_diff, double(std::fabs(want[i] - got[i])));
    }
    std::printf(
        "  %-36s %s cache: generated-token prefix changes the logits in %d/%d cases, "
        "by at most %.3g\n",
        GetParam().c_str(), kv == tf::DType::F16 ? "f16 " : "q8_0", one_token_differs, cases,
        max_diff);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, PrefixCacheBits, ::testing::ValuesIn(tf::test::golden_models()),
                         tf::test::StemName());

}  // namespace
