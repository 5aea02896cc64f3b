// The paged KV cache's block bookkeeping: blocks taken as sequences grow and given back when
// they shrink, shared prefixes, copy on write, holders, and a full pool refused cleanly.
#include <gtest/gtest.h>

#include <cstring>

#include "model/kv_cache.h"
#include "util/error.h"

namespace {

constexpr int64_t B = tf::KvCache::kBlockLen;

// Writes a recognisable byte pattern into every key row of [from, to) of a sequence.
void fill(tf::KvCache& kv, int64_t seq, int64_t from, int64_t to, uint8_t tag) {
  kv.reserve(seq, from, to);
  for (int64_t p = from; p < to; ++p)
    for (int64_t h = 0; h < 2; ++h) std::memset(kv.k_at(0, seq, p, h), tag + int(p % 7), 8);
  kv.set_seq_len(seq, int32_t(to));
}

uint8_t key_byte(const tf::KvCache& kv, int64_t seq, int64_t pos, int64_t head) {
  return *kv.keys(0, seq, head).row(pos);
}

TEST(KvCache, BlocksFollowTheTokensHeld) {
  tf::KvCache kv(2, 2, 4 * B, 8, tf::DType::F16, 0, 4);  // 2 heads of 4
  EXPECT_EQ(kv.n_blocks(), 8);
  EXPECT_EQ(kv.free_blocks(), 8);
  fill(kv, 0, 0, B + 1, 10);
  EXPECT_EQ(kv.table(0).size(), 2u);
  EXPECT_EQ(kv.free_blocks(), 6);
  EXPECT_EQ(kv.blocks_in_tables(), 2);
  kv.truncate(0, int32_t(B));  // the second block goes back
  EXPECT_EQ(kv.free_blocks(), 7);
  EXPECT_EQ(key_byte(kv, 0, 5, 1), 10 + 5 % 7);
  kv.truncate(0, 0);
  EXPECT_EQ(kv.free_blocks(), 8);
  EXPECT_EQ(kv.blocks_in_tables(), 0);
}

TEST(KvCache, SharedPrefixIsCopiedOnWrite) {
  tf::KvCache kv(1, 2, 4 * B, 8, tf::DType::F16, 0, 4);
  fill(kv, 0, 0, B + 10, 20);
  kv.attach(1, kv.table(0), int32_t(B + 5));  // shares both blocks, no copy yet
  EXPECT_EQ(kv.free_blocks(), 8 - 2);
  EXPECT_EQ(kv.table(1), kv.table(0));
  EXPECT_EQ(kv.refs(kv.table(0)[1]), 2);
  // Writing position B + 5 of sequence 1 copies the shared second block first.
  EXPECT_EQ(kv.blocks_to_reserve(1, B + 5, B + 6), 1);
  fill(kv, 1, B + 5, B + 6, 100);
  EXPECT_NE(kv.table(1)[1], kv.table(0)[1]);
  EXPECT_EQ(kv.table(1)[0], kv.table(0)[0]);  // the untouched first block stays shared
  EXPECT_EQ(key_byte(kv, 1, B + 5, 0), 100 + (B + 5) % 7);
  EXPECT_EQ(key_byte(kv, 0, B + 5, 0), 20 + (B + 5) % 7);  // the original is intact
  EXPECT_EQ(key_byte(kv, 1, B + 4, 0), 20 + (B + 4) % 7);  // the copy kept the prefix
  EXPECT_EQ(kv.free_blocks(), 8 - 3);
  kv.truncate(0, 0);
  kv.truncate(1, 0);
  EXPECT_EQ(kv.free_blocks(), 8);
}

TEST(KvCache, HeldBlocksOutliveTheirSequence) {
  tf::KvCache kv(1, 2, 2 * B, 8, tf::DType::F16);
  fill(kv, 0, 0, B, 30);
  const int32_t b = kv.table(0)[0];
  kv.hold(b);
  kv.truncate(0, 0);
  EXPECT_EQ(kv.refs(b), 1);
  EXPECT_EQ(kv.free_blocks(), kv.n_blocks() - 1);
  kv.attach(1, {b}, int32_t(B - 1));
  EXPECT_EQ(key_byte(kv, 1, 3, 0), 30 + 3);
  EXPECT_THROW(kv.attach(1, {b}, 1), tf::Error);  // not empty
  kv.truncate(1, 0);
  kv.release(b);
  EXPECT_EQ(kv.free_blocks(), kv.n_blocks());
  EXPECT_THROW(kv.release(b), tf::Error);
  EXPECT_THROW(kv.hold(b), tf::Error);  // free blocks cannot be held
}

TEST(KvCache, AFullPoolIsRefusedWithoutChanges) {
  tf::KvCache kv(1, 2, 4 * B, 8, tf::DType::F16, /*n_blocks=*/3);
  fill(kv, 0, 0, 2 * B, 1);
  EXPECT_EQ(kv.free_blocks(), 1);
  EXPECT_THROW(kv.reserve(1, 0, 2 * B), tf::Error);
  EXPECT_EQ(kv.free_blocks(), 1);
  EXPECT_TRUE(kv.table(1).empty());
  EXPECT_THROW(kv.set_seq_len(1, 1), tf::Error);     // nothing reserved
  EXPECT_THROW(kv.reserve(1, 0, 5 * B), tf::Error);  // past the context
}

TEST(KvCache, HeadSizeMustDivideTheWidth) {
  EXPECT_THROW(tf::KvCache(2, 1, 64, 64, tf::DType::F16, 0, 48), tf::Error);
  EXPECT_NO_THROW(tf::KvCache(2, 1, 64, 64, tf::DType::F16, 0, 16));
}

}  // namespace
