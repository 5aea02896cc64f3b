#include "engine/prefix_cache.h"

#include <algorithm>
#include <cstring>

namespace tf {

namespace {
constexpr size_t kB = size_t(KvCache::kBlockLen);
constexpr uint64_t kRoot = 0x9E3779B97F4A7C15ull;  // the key before block 0

// A 64-bit mix (splitmix64's finalizer): every input bit affects every output bit.
inline uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

PrefixCache::~PrefixCache() {
  for (auto& [key, e] : entries_) kv_.release(e.block);
}

uint64_t PrefixCache::chain(uint64_t parent, const TokenId* tokens, size_t count) {
  uint64_t h = mix(parent ^ count);
  for (size_t i = 0; i < count; ++i)
    h = mix(h ^ (uint64_t(uint32_t(tokens[i])) + (uint64_t(i) << 32)));
  return h;
}

PrefixCache::Entry* PrefixCache::find(uint64_t key, uint64_t parent, const TokenId* tokens,
                                      size_t count) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  Entry& e = it->second;
  if (e.parent != parent || e.tokens.size() != count ||
      std::memcmp(e.tokens.data(), tokens, count * sizeof(TokenId)) != 0)
    return nullptr;  // a collision: another chain's block
  return &e;
}

void PrefixCache::insert(uint64_t key, Entry e) {
  kv_.hold(e.block);
  children_[e.parent].push_back(key);
  entries_.emplace(key, std::move(e));
}

void PrefixCache::erase(uint64_t key) {
  auto it = entries_.find(key);
  auto& kids = children_[it->second.parent];
  kids.erase(std::find(kids.begin(), kids.end(), key));
  if (kids.empty()) children_.erase(it->second.parent);
  kv_.release(it->second.block);
  entries_.erase(it);
}

size_t PrefixCache::attach(int64_t seq, const TokenId* tokens, size_t n, size_t max_tokens) {
  std::vector<int32_t> blocks;
  uint64_t parent = kRoot;
  ++tick_;
  size_t i = 0;
  for (; (i + 1) * kB <= n; ++i) {
    const uint64_t key = chain(parent, tokens + i * kB, kB);
    Entry* e = find(key, parent, tokens + i * kB, kB);
    if (!e) break;
    e->last_use = tick_;
    blocks.push_back(e->block);
    parent = key;
  }
  size_t len = blocks.size() * kB;
  // The next block: the cached child of the chain that agrees longest with the prompt.
  if (auto kids = children_.find(parent); kids != children_.end() && i * kB < n) {
    const TokenId* rest = tokens + i * kB;
    const size_t avail = std::min(kB, n - i * kB);
    Entry* best = nullptr;
    size_t best_n = 0;
    for (uint64_t key : kids->second) {
      Entry& e = entries_.at(key);
      size_t m = 0;
      while (m < avail && m < e.tokens.size() && e.tokens[m] == rest[m]) ++m;
      if (m > best_n) {
        best = &e;
        best_n = m;
      }
    }
    if (best) {
      best->last_use = tick_;
      blocks.push_back(best->block);
      len += best_n;
    }
  }
  len = std::min(len, max_tokens);
  if (len == 0) return 0;
  blocks.resize((len + kB - 1) / kB);
  kv_.attach(seq, blocks, int32_t(len));
  return len;
}

void PrefixCache::publish(int64_t seq, const TokenId* tokens, size_t n, bool tail) {
  const auto& table = kv_.table(seq);
  n = std::min<size_t>(n, size_t(kv_.seq_len(seq)));
  uint64_t parent = kRoot;
  ++tick_;
  for (size_t i = 0; i * kB < n && i < table.size(); ++i) {
    const size_t count = std::min(kB, n - i * kB);
    if (count < kB && !tail) break;
    const uint64_t key = chain(parent, tokens + i * kB, count);
    if (Entry* e = find(key, parent, tokens + i * kB, count)) {
      e->last_use = tick_;  // cached already (this block, or an equal one of another sequence)
    } else if (!entries_.count(key)) {
      insert(key, Entry{parent, std::vector<TokenId>(tokens + i * kB, tokens + i * kB + count),
                        table[i], int32_t(i), tick_});
    } else {
      break;  // a colliding key: keep the entry there, cache nothing deeper
    }
    parent = key;
  }
}

int64_t PrefixCache::evictable() const {
  int64_t n = 0;
  for (const auto& [key, e] : entries_) n += kv_.refs(e.block) == 1 ? 1 : 0;
  return n;
}

int64_t PrefixCache::evict(int64_t want) {
  if (want <= 0) return 0;
  // Candidates: entries only the cache holds, oldest use first, deepest first on a tie.
  std::vector<std::pair<std::pair<uint64_t, int32_t>, uint64_t>> cand;
  for (const auto& [key, e] : entries_)
    if (kv_.refs(e.block) == 1) cand.push_back({{e.last_use, -e.depth}, key});
  const size_t k = std::min(cand.size(), size_t(want));
  std::partial_sort(cand.begin(), cand.begin() + long(k), cand.end());
  for (size_t i = 0; i < k; ++i) erase(cand[i].second);
  return int64_t(k);
}

}  // namespace tf
