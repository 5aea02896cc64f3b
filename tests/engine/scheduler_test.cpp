// Continuous batching: requests decoded together give exactly the tokens they give alone;
// stop strings, limits, cancellation and prefix reuse behave as documented.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/scheduler.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"

namespace {

using tf::GenEvent;
using tf::GenRequest;
using tf::Scheduler;
using tf::SchedulerParams;

struct Collected {
  std::mutex mu;
  std::condition_variable cv;
  std::string text;
  std::vector<tf::TokenId> tokens;
  bool done = false;
  GenEvent last;
  int events = 0;
};

tf::GenSink sink_for(Collected& c) {
  return [&c](const GenEvent& e) {
    std::lock_guard<std::mutex> lk(c.mu);
    c.text += e.text;
    for (const auto& t : e.tokens) c.tokens.push_back(t.id);
    ++c.events;
    if (e.done) {
      c.done = true;
      c.last = e;
      c.cv.notify_all();
    }
  };
}

void wait(Collected& c) {
  std::unique_lock<std::mutex> lk(c.mu);
  ASSERT_TRUE(c.cv.wait_for(lk, std::chrono::seconds(120), [&] { return c.done; }));
}

GenRequest greedy(std::vector<tf::TokenId> prompt, int n) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = n;
  r.sampling.temperature = 0;
  return r;
}

// About 80-90 tokens with the stories vocabularies.
constexpr const char* kLongPrompt =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park with her mom and dad. They were very happy and had a big red ball. One day, Lily saw "
    "a cat in a tree and wanted to help";

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tf::test::shared_dir().empty()) GTEST_SKIP() << "../shared not found: skipping";
    engine_ = tf::Engine::load(tf::test::shared_path("models/gguf/stories260K.gguf"));
  }
  void load(const std::string& rel) { engine_ = tf::Engine::load(tf::test::shared_path(rel)); }
  const std::vector<std::string> prompts_ = {
      "Once upon a time", "The little dog", "Lily and Ben went to the park.", "",
      "One day, a girl", "The sun was", "Tom had a red ball", "She said"};
  std::unique_ptr<tf::Engine> engine_;
};

TEST_F(SchedulerTest, BatchedEqualsAlone) {
  for (const char* model : {"models/gguf/stories260K.gguf", "models/gguf/TinyStories-656K.fixed-scores.f16.gguf",
                            "models/gguf/TinyStories-656K.fixed-scores.q8_0.gguf"}) {
  SCOPED_TRACE(model);
  load(model);
  const int n = 48;
  // Alone: the engine's own generate (one sequence, one token per step).
  std::vector<std::vector<tf::TokenId>> alone;
  std::vector<std::string> alone_text;
  for (const auto& p : prompts_) {
    tf::GenerateOptions go;
    go.n_predict = n;
    go.sampling.temperature = 0;
    auto g = engine_->generate(p, go);
    alone.push_back(g.tokens);
    alone_text.push_back(g.text);
  }
  SchedulerParams sp;
  sp.n_parallel = 4;  // fewer slots than requests: some wait in the queue
  sp.n_ctx = 256;
  sp.step_tokens = 7;  // prompts arrive in several chunks, next to others' decoding
  Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
  std::vector<Collected> got(prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i)
    sched.submit(greedy(engine_->tokenize(prompts_[i]), n), sink_for(got[i]));
  for (size_t i = 0; i < prompts_.size(); ++i) {
    wait(got[i]);
    EXPECT_EQ(got[i].tokens, alone[i]) << "prompt '" << prompts_[i] << "'";
    EXPECT_EQ(got[i].text, alone_text[i]) << prompts_[i];
    EXPECT_EQ(got[i].last.usage.prompt_tokens, int64_t(engine_->tokenize(prompts_[i]).size()));
    EXPECT_EQ(got[i].last.usage.completion_tokens, int64_t(alone[i].size()));
  }
  const auto st = sched.stats();
  EXPECT_EQ(st.requests_done, int64_t(prompts_.size()));
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  }
}

TEST_F(SchedulerTest, StopStringsAreNeverEmitted) {
  SchedulerParams sp;
  sp.n_ctx = 256;
  Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
  Collected full, stopped;
  sched.submit(greedy(engine_->tokenize("Once upon a time"), 64), sink_for(full));
  wait(full);
  // Stop at a string that the greedy text contains, spanning a token boundary.
  const std::string& t = full.text;
  const size_t at = t.find("little");
  ASSERT_NE(at, std::string::npos) << t;
  GenRequest r = greedy(engine_->tokenize("Once upon a time"), 64);
  r.stop = {"zzz", "ittle g", "little"};
  sched.submit(r, sink_for(stopped));
  wait(stopped);
  EXPECT_EQ(stopped.text, t.substr(0, at));
  EXPECT_EQ(stopped.last.finish_reason, "stop");
}

TEST_F(SchedulerTest, LimitsAndPrefixReuse) {
  SchedulerParams sp;
  sp.n_parallel = 1;
  sp.n_ctx = 128;
  Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
  const auto prompt = engine_->tokenize(kLongPrompt);
  ASSERT_GT(prompt.size(), 64u);
  ASSERT_LT(prompt.size() + 10, 128u);
  Collected a, b;
  sched.submit(greedy(prompt, 10), sink_for(a));
  wait(a);
  EXPECT_EQ(a.last.finish_reason, "length");
  EXPECT_EQ(a.tokens.size(), 10u);
  EXPECT_EQ(a.last.usage.cached_tokens, 0);
  // The same prompt again: all but its last token come from the prefix cache (a whole block
  // and the finished sequence's partial block).
  sched.submit(greedy(prompt, 10), sink_for(b));
  wait(b);
  EXPECT_EQ(b.last.usage.cached_tokens, int64_t(prompt.size()) - 1);
  EXPECT_EQ(b.last.finish_reason, "length") << b.last.error;
  EXPECT_EQ(b.tokens, a.tokens);
  EXPECT_EQ(sched.stats().prefix_hits, 1);
  EXPECT_EQ(sched.stats().kv_used_blocks, 0);  // finished: all back (some kept by the cache)
  EXPECT_GE(sched.stats().kv_cached_blocks, 1);
  // Too long for the context: refused up front.
  EXPECT_THROW(sched.submit(greedy(prompt, 1000), [](const GenEvent&) {}), tf::Error);
  EXPECT_THROW(sched.submit(greedy({}, 1), [](const GenEvent&) {}), tf::Error);
}

TEST_F(SchedulerTest, CancelFreesTheSlot) {
  SchedulerParams sp;
  sp.n_parallel = 1;
  sp.n_ctx = 2048;
  Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
  Collected a, b;
  GenRequest r = greedy(engine_->tokenize("Once"), -1);
  r.ignore_eos = true;
  const uint64_t id = sched.submit(r, sink_for(a));
  sched.submit(greedy(engine_->tokenize("The"), 4), sink_for(b));  // waits for the slot
  sched.cancel(id);
  wait(a);
  EXPECT_EQ(a.last.finish_reason, "cancelled");
  wait(b);
  EXPECT_EQ(b.last.finish_reason, "length");
  EXPECT_EQ(sched.stats().running, 0);
}

}  // namespace

namespace {

// A prompt prefix computed by a running request is shared, block by block, with a new
// request: the same tokens as computing it, without recomputing.
TEST_F(SchedulerTest, PrefixSharedWithARunningSequence) {
  for (const char* model : {"models/gguf/stories260K.gguf", "models/gguf/TinyStories-656K.fixed-scores.q8_0.gguf"}) {
    SCOPED_TRACE(model);
    load(model);
    std::string system;
    while (engine_->tokenize(system).size() < 80) system += std::string(kLongPrompt) + ". ";
    const auto pa = engine_->tokenize(system + "One day");
    const auto pb = engine_->tokenize(system + "Her friend");
    size_t shared = 0;
    while (shared < pa.size() && shared < pb.size() && pa[shared] == pb[shared]) ++shared;
    ASSERT_GE(shared, 64u);  // at least one whole block
    std::vector<tf::TokenId> alone_b;
    {
      SchedulerParams sp;
      sp.n_ctx = 512;
      Scheduler fresh(engine_->model(), engine_->tokenizer(), sp);
      Collected c;
      fresh.submit(greedy(pb, 24), sink_for(c));
      wait(c);
      alone_b = c.tokens;
    }
    SchedulerParams sp;
    sp.n_parallel = 2;
    sp.n_ctx = 512;
    Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
    Collected a, b;
    GenRequest ra = greedy(pa, 200);
    ra.ignore_eos = true;
    sched.submit(ra, sink_for(a));
    // Wait until A's prompt is in its slot (it produced a token), then send B.
    for (int i = 0; i < 2000; ++i) {
      {
        std::lock_guard<std::mutex> lk(a.mu);
        if (!a.tokens.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    sched.submit(greedy(pb, 24), sink_for(b));
    wait(b);
    EXPECT_EQ(b.last.usage.cached_tokens, int64_t(shared / 64 * 64));
    EXPECT_EQ(b.tokens, alone_b);
    EXPECT_EQ(sched.stats().prefix_hits, 1);
    wait(a);
    EXPECT_EQ(sched.stats().kv_used_blocks, 0);
  }
}

}  // namespace

namespace {

// A KV memory budget smaller than n_parallel full contexts: requests wait for blocks instead
// of failing, and every one gets the tokens it gets alone; the blocks all come back.
TEST_F(SchedulerTest, KvMemoryBudgetAdmitsWhatFits) {
  SchedulerParams one;
  one.n_ctx = 256;
  std::vector<std::vector<tf::TokenId>> alone;
  {
    Scheduler fresh(engine_->model(), engine_->tokenizer(), one);
    for (const auto& p : prompts_) {
      Collected c;
      fresh.submit(greedy(engine_->tokenize(p), 40), sink_for(c));
      wait(c);
      alone.push_back(c.tokens);
    }
  }
  SchedulerParams sp;
  sp.n_parallel = 8;
  sp.n_ctx = 512;
  const auto& cfg = engine_->model().config();
  const size_t block = tf::KvCache::block_bytes_for(cfg.n_layer, cfg.kv_dim(), tf::DType::F16);
  sp.kv_memory = 5 * block;  // two requests' worst case (prompt + 40 tokens + 1: 2 blocks)
  Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
  EXPECT_EQ(sched.stats().kv_total_blocks, 5);
  std::vector<Collected> got(prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i)
    sched.submit(greedy(engine_->tokenize(prompts_[i]), 40), sink_for(got[i]));
  for (size_t i = 0; i < prompts_.size(); ++i) {
    wait(got[i]);
    EXPECT_EQ(got[i].last.finish_reason, "length") << got[i].last.error;
    EXPECT_EQ(got[i].tokens, alone[i]) << "prompt " << i;
  }
  EXPECT_EQ(sched.stats().kv_used_blocks, 0);
  // A request whose worst case exceeds the whole budget is refused up front.
  EXPECT_THROW(sched.submit(greedy(engine_->tokenize("Once"), 400), [](const GenEvent&) {}),
               tf::Error);
}

TEST_F(SchedulerTest, TimeoutEndsARequestKeepingItsTokens) {
  SchedulerParams sp;
  sp.n_parallel = 1;
  sp.n_ctx = 4096;
  sp.n_threads = 0;  // the engine's
  auto owned = engine_->make_scheduler(sp);  // the public API's way to a scheduler
  Scheduler& sched = *owned;
  GenRequest r = greedy(engine_->tokenize("Once"), -1);
  r.ignore_eos = true;
  r.timeout_s = 0.2;
  Collected a, b;
  sched.submit(r, sink_for(a));
  GenRequest q = greedy(engine_->tokenize("The"), 4);  // queued behind it, then served
  sched.submit(q, sink_for(b));
  wait(a);
  EXPECT_EQ(a.last.finish_reason, "timeout");
  EXPECT_EQ(int64_t(a.tokens.size()), a.last.usage.completion_tokens);
  EXPECT_LT(a.tokens.size(), 4000u);
  wait(b);
  EXPECT_EQ(b.last.finish_reason, "length");
  GenRequest bad = q;
  bad.timeout_s = -1;
  EXPECT_THROW(sched.submit(bad, [](const GenEvent&) {}), tf::Error);
}

}  // namespace

namespace {

// Constrained requests batched together give what Engine::generate gives each alone (greedy:
// the same masked argmax; sampled: the same seed, the same masked chain), follow the grammar,
// and end with "stop" once the sentence is whole.
TEST_F(SchedulerTest, GrammarConstrainedBatchEqualsAlone) {
  const auto grammar = tf::Grammar::parse(
      R"(root ::= " "? ("yes" | "no" | [0-9]{1,3}) (", " ("yes" | "no" | [a-z]{1,6})){1,4} ".")");
  const int n = 40;
  std::vector<tf::Generation> alone;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    tf::GenerateOptions go;
    go.n_predict = n;
    go.grammar = grammar;
    go.sampling.temperature = i % 2 ? 0.f : 1.f;
    go.sampling.seed = 7 + i;
    alone.push_back(engine_->generate(prompts_[i].empty() ? "A" : prompts_[i], go));
  }
  SchedulerParams sp;
  sp.n_parallel = 3;
  sp.n_ctx = 256;
  Scheduler sched(engine_->model(), engine_->tokenizer(), sp);
  std::vector<Collected> got(prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i) {
    GenRequest r = greedy(engine_->tokenize(prompts_[i].empty() ? "A" : prompts_[i]), n);
    r.grammar = grammar;
    r.sampling.temperature = i % 2 ? 0.f : 1.f;
    r.sampling.top_k = 40;
    r.sampling.top_p = 0.95f;
    r.sampling.min_p = 0.05f;
    r.sampling.seed = 7 + i;
    sched.submit(std::move(r), sink_for(got[i]));
  }
  for (size_t i = 0; i < prompts_.size(); ++i) {
    wait(got[i]);
    SCOPED_TRACE(got[i].text);
    tf::GrammarMatcher m(grammar);
    EXPECT_TRUE(m.accept(got[i].text));
    EXPECT_TRUE(m.complete());
    EXPECT_EQ(got[i].last.finish_reason, "stop");
    EXPECT_EQ(got[i].text, alone[i].text);
  }
}

}  // namespace
