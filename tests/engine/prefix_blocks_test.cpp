// The block prefix cache on its own: prompts share cached blocks exactly as far as their
// tokens agree (whole blocks by hash chain, then the best partial child), entries survive
// their sequence, and eviction frees least recently used, unused blocks, deepest first.
#include <gtest/gtest.h>

#include <numeric>

#include "engine/prefix_cache.h"

namespace {

constexpr size_t B = size_t(tf::KvCache::kBlockLen);
using Ids = std::vector<tf::TokenId>;

Ids seq_of(size_t n, tf::TokenId start) {
  Ids v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Puts tokens into sequence `seq` as a forward pass would (the K/V bytes do not matter here).
void compute(tf::KvCache& kv, int64_t seq, size_t n) {
  kv.reserve(seq, kv.seq_len(seq), int64_t(n));
  kv.set_seq_len(seq, int32_t(n));
}

TEST(PrefixBlocks, SharesWholeBlocksThenTheLongestPartialChild) {
  tf::KvCache kv(1, 3, 8 * B, 32);
  tf::PrefixCache pc(kv);
  const Ids a = seq_of(2 * B + 10, 1);
  compute(kv, 0, a.size());
  pc.publish(0, a.data(), a.size(), /*tail=*/true);
  EXPECT_EQ(pc.size(), 3u);
  const std::vector<int32_t> blocks_a = kv.table(0);
  kv.truncate(0, 0);  // the sequence ends; the cache keeps its blocks
  EXPECT_EQ(kv.free_blocks(), kv.n_blocks() - 3);
  EXPECT_EQ(pc.evictable(), 3);

  // Same first block and a half, then different tokens.
  Ids b(a.begin(), a.begin() + long(B + B / 2));
  b.push_back(9999);
  b.push_back(9998);
  EXPECT_EQ(pc.attach(1, b.data(), b.size(), b.size() - 1), B + B / 2);
  EXPECT_EQ(kv.seq_len(1), int32_t(B + B / 2));
  EXPECT_EQ(kv.table(1)[0], blocks_a[0]);
  EXPECT_EQ(kv.table(1)[1], blocks_a[1]);  // shared until written (copy on write)
  EXPECT_EQ(pc.evictable(), 1);            // the two in use cannot be evicted

  // The whole of a, as a new prompt: everything but its last token.
  EXPECT_EQ(pc.attach(2, a.data(), a.size(), a.size() - 1), a.size() - 1);
  // A prompt that differs in its first token shares nothing.
  Ids c = a;
  c[0] = 7777;
  kv.truncate(2, 0);
  EXPECT_EQ(pc.attach(2, c.data(), c.size(), c.size() - 1), 0u);
}

TEST(PrefixBlocks, SharingEndsAtTheFirstDifferentToken) {
  tf::KvCache kv(1, 2, 4 * B, 32);
  tf::PrefixCache pc(kv);
  Ids a = seq_of(2 * B, 1);
  compute(kv, 0, a.size());
  pc.publish(0, a.data(), a.size());
  kv.truncate(0, 0);
  // A token differs in the first block: only the tokens before it are shared.
  Ids b = seq_of(2 * B, 1);
  b[3] = 5000;
  EXPECT_EQ(pc.attach(1, b.data(), b.size(), b.size()), 3u);  // only the partial match
}

TEST(PrefixBlocks, EvictsLeastRecentlyUsedDeepestFirst) {
  tf::KvCache kv(1, 2, 4 * B, 32, tf::DType::F16, /*n_blocks=*/4);
  tf::PrefixCache pc(kv);
  const Ids a = seq_of(2 * B, 1), b = seq_of(2 * B, 1000);
  compute(kv, 0, a.size());
  pc.publish(0, a.data(), a.size());
  kv.truncate(0, 0);
  compute(kv, 0, b.size());
  pc.publish(0, b.data(), b.size());
  kv.truncate(0, 0);
  EXPECT_EQ(kv.free_blocks(), 0);
  // Use a again: b becomes the least recently used.
  EXPECT_EQ(pc.attach(1, a.data(), a.size(), a.size()), a.size());
  kv.truncate(1, 0);
  EXPECT_EQ(pc.evict(1), 1);
  EXPECT_EQ(kv.free_blocks(), 1);
  // b lost its second block (deepest first), keeps its first.
  EXPECT_EQ(pc.attach(1, b.data(), b.size(), b.size()), B);
  // In use now: only a's two blocks can go.
  EXPECT_EQ(pc.evict(10), 2);
  EXPECT_EQ(pc.size(), 1u);
  kv.truncate(1, 0);
  pc.clear();
  EXPECT_EQ(kv.free_blocks(), kv.n_blocks());
}

}  // namespace
