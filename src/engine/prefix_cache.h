// The prefix cache: KV blocks of finished or running sequences kept for reuse, keyed by their
// contents. Block i of a token sequence is keyed by a hash chained through blocks 0..i (its
// tokens and its parent's key), so a key names a whole prefix, not one block's tokens: two
// prompts share cached blocks exactly as far as their tokens agree, block by block. Entries
// hold their block (KvCache::hold) and keep the tokens, so a hash collision is detected, never
// served. A sequence that ends also leaves its last, partly filled block; and where the chain of
// whole blocks ends, a prompt may share the next block's leading positions with any cached
// child of that chain (the one agreeing longest): so reuse is down to the token, not the block
// (copy on write keeps the shared block intact when the new sequence writes into it). Blocks no
// sequence uses are evicted least recently used first (the deepest of a chain first, so a
// chain is shortened from its end) when the pool needs free blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "model/kv_cache.h"

namespace tf {

using TokenId = int32_t;

class PrefixCache {
 public:
  explicit PrefixCache(KvCache& kv) : kv_(kv) {}
  ~PrefixCache();  // releases the held blocks
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // Gives the empty sequence `seq` the cached blocks holding the longest prefix of tokens[0, n)
  // in whole blocks, and sets its length to the tokens they hold, at most max_tokens. Returns
  // that length (0: nothing cached).
  size_t attach(int64_t seq, const TokenId* tokens, size_t n, size_t max_tokens);
  // Records the blocks of sequence seq that hold tokens[0, n) (its first n positions), so that
  // later sequences can share them: the whole ones, and with `tail` the last partial one too
  // (for a sequence that is done writing). Blocks already cached are only marked used.
  void publish(int64_t seq, const TokenId* tokens, size_t n, bool tail = false);
  // Frees up to `want` blocks by dropping least recently used entries whose block no sequence
  // has. Returns the number of blocks freed.
  int64_t evict(int64_t want);
  // Entries whose block only the cache holds (what evict could free).
  int64_t evictable() const;
  size_t size() const { return entries_.size(); }
  // Drops every entry no sequence uses (tests; an operator's flush).
  void clear() { evict(int64_t(entries_.size())); }

 private:
  struct Entry {
    uint64_t parent;
    std::vector<TokenId> tokens;  // kBlockLen, or fewer for a partial block
    int32_t block;
    int32_t depth;      // block index in its chain
    uint64_t last_use;  // tick of the last attach or publish
  };
  // The key of a block of `count` tokens after the chain `parent`.
  static uint64_t chain(uint64_t parent, const TokenId* tokens, size_t count);
  // The entry under key for those tokens after parent, or nullptr.
  Entry* find(uint64_t key, uint64_t parent, const TokenId* tokens, size_t count);
  void insert(uint64_t key, Entry e);
  void erase(uint64_t key);

  KvCache& kv_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> children_;  // parent key -> entry keys
  uint64_t tick_ = 0;
};

}  // namespace tf
