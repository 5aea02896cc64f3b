#include "model/kv_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "tensor/quants.h"
#include "util/error.h"

namespace tf {

DType parse_kv_type(const std::string& name) {
  if (name == "f16") return DType::F16;
  if (name == "q8_0") return DType::Q8_0;
  throw Error("unknown KV cache type '" + name + "' (use f16 or q8_0)");
}

size_t KvCache::block_bytes_for(int64_t n_layer, int64_t kv_dim, DType type, bool keys_only) {
  return size_t(n_layer) * (keys_only ? 1 : 2) * kBlockLen * tf::row_bytes(type, kv_dim);
}

KvCache::KvCache(int64_t n_layer, int64_t n_seq, int64_t n_ctx, int64_t kv_dim, DType type,
                 int64_t n_blocks, int64_t head_dim, bool keys_only)
    : type_(type), planes_(keys_only ? 1 : 2), n_seq_(n_seq), n_ctx_(n_ctx) {
  if (n_layer <= 0 || n_seq <= 0 || n_ctx <= 0 || kv_dim <= 0 || n_blocks < 0)
    throw Error("KV cache: all dimensions must be positive");
  if (type != DType::F16 && type != DType::Q8_0)
    throw Error(std::string("KV cache: unsupported type ") + dtype_name(type) +
                " (use f16 or q8_0)");
  if (type == DType::Q8_0 && kv_dim % 32 != 0)
    throw Error("KV cache type q8_0 needs the key/value width (KV heads x head size = " +
                std::to_string(kv_dim) + ") to be a multiple of 32; use f16");
  // Each factor is bounded by the config checks; guard the products anyway.
  if ((long double)n_layer * kv_dim * 4 * kBlockLen > (long double)(int64_t(1) << 36))
    throw Error("KV cache: the model's key/value rows are too large");
  if (n_blocks == 0) {
    if ((long double)n_seq * blocks_for(n_ctx) > (long double)(1 << 30))
      throw Error("KV cache: too many positions: reduce the context size or the sequences");
    n_blocks = n_seq * blocks_for(n_ctx);
  }
  if (n_blocks > (int64_t(1) << 30)) throw Error("KV cache: too many blocks");
  if (head_dim == 0) head_dim = kv_dim;
  if (head_dim < 0 || kv_dim % head_dim != 0)
    throw Error("KV cache: the head size must divide the key/value width");
  row_bytes_ = tf::row_bytes(type, kv_dim);
  seg_bytes_ = type == DType::F16 ? size_t(head_dim) * 2 : row_bytes_;
  block_bytes_ = block_bytes_for(n_layer, kv_dim, type, keys_only);
  const long double bytes = (long double)n_blocks * (long double)block_bytes_;
  constexpr long double kMaxBytes = (long double)(int64_t(1) << 40);
  // Zero-filling touches every page, so an allocation larger than the machine's memory would
  // not fail cleanly: the OOM killer would end the process. Refuse it up front instead.
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (bytes > kMaxBytes || (pages > 0 && page > 0 && bytes > (long double)pages * page))
    throw Error("KV cache of " + std::to_string(int64_t(bytes / (1 << 20))) +
                " MiB does not fit in this machine's memory: reduce the context size");
  try {
    pool_.assign(size_t(bytes), 0);
  } catch (const std::bad_alloc&) {
    throw Error("KV cache: cannot allocate " + std::to_string(int64_t(bytes / (1 << 20))) +
                " MiB: reduce the context size");
  }
  refs_.assign(size_t(n_blocks), 0);
  table_refs_.assign(size_t(n_blocks), 0);
  free_.resize(size_t(n_blocks));
  // Lowest block ids are taken first.
  for (int64_t b = 0; b < n_blocks; ++b) free_[size_t(b)] = int32_t(n_blocks - 1 - b);
  tables_.resize(size_t(n_seq));
  bases_.resize(size_t(n_seq));
  len_.assign(size_t(n_seq), 0);
}

void KvCache::check_seq(int64_t seq) const {
  if (seq < 0 || seq >= n_seq_)
    throw Error("KV cache: sequence " + std::to_string(seq) + " out of range");
}

int32_t KvCache::take_block() {
  const int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void KvCache::add_ref(int32_t b, bool table) {
  ++refs_[size_t(b)];
  if (table && table_refs_[size_t(b)]++ == 0) ++in_tables_;
}

void KvCache::drop_ref(int32_t b, bool table) {
  if (table && --table_refs_[size_t(b)] == 0) --in_tables_;
  if (--refs_[size_t(b)] == 0) free_.push_back(b);
}

void KvCache::set_table_entry(int64_t seq, size_t i, int32_t b) {
  auto& t = tables_[size_t(seq)];
  auto& bs = bases_[size_t(seq)];
  if (i == t.size()) {
    t.push_back(b);
    bs.push_back(block_ptr(b));
  } else {
    t[i] = b;
    bs[i] = block_ptr(b);
  }
}

void KvCache::set_seq_len(int64_t seq, int32_t n) {
  check_seq(seq);
  if (n < 0 || n > reserved(seq)) throw Error("KV cache: length past the reserved positions");
  len_[size_t(seq)] = n;
}

int64_t KvCache::blocks_to_reserve(int64_t seq, int64_t from, int64_t n) const {
  const auto& t = tables_[size_t(seq)];
  const int64_t want = blocks_for(n);
  int64_t need = std::max<int64_t>(0, want - int64_t(t.size()));
  for (int64_t i = from >> kBlockShift; i < std::min<int64_t>(want, int64_t(t.size())); ++i)
    if (refs_[size_t(t[size_t(i)])] > 1) ++need;
  return need;
}

void KvCache::reserve(int64_t seq, int64_t from, int64_t n) {
  check_seq(seq);
  if (n > n_ctx_ || from < 0) throw Error("KV cache: position outside the context");
  const int64_t need = blocks_to_reserve(seq, from, n);
  if (need > free_blocks())
    throw Error("KV cache is full: " + std::to_string(need) + " more blocks of " +
                std::to_string(kBlockLen) + " positions needed, " + std::to_string(free_blocks()) +
                " free");
  auto& t = tables_[size_t(seq)];
  const int64_t want = blocks_for(n);
  // Copy on write: a shared block about to be written becomes the sequence's own copy.
  for (int64_t i = from >> kBlockShift; i < std::min<int64_t>(want, int64_t(t.size())); ++i) {
    const int32_t old = t[size_t(i)];
    if (refs_[size_t(old)] <= 1) continue;
    const int32_t b = take_block();
    std::memcpy(block_ptr(b), block_ptr(old), block_bytes_);
    add_ref(b, true);
    set_table_entry(seq, size_t(i), b);
    drop_ref(old, true);
  }
  while (int64_t(t.size()) < want) {
    const int32_t b = take_block();
    add_ref(b, true);
    set_table_entry(seq, t.size(), b);
  }
}

void KvCache::truncate(int64_t seq, int32_t n) {
  check_seq(seq);
  n = std::max(n, 0);
  if (len_[size_t(seq)] > n) len_[size_t(seq)] = n;
  auto& t = tables_[size_t(seq)];
  const size_t keep = size_t(blocks_for(len_[size_t(seq)]));
  while (t.size() > keep) {
    drop_ref(t.back(), true);
    t.pop_back();
    bases_[size_t(seq)].pop_back();
  }
}

void KvCache::attach(int64_t seq, const std::vector<int32_t>& blocks, int32_t n) {
  check_seq(seq);
  if (!tables_[size_t(seq)].empty() || len_[size_t(seq)] != 0)
    throw Error("KV cache: attach to a sequence that holds positions");
  if (n < 0 || int64_t(n) > int64_t(blocks.size()) * kBlockLen || int64_t(n) > n_ctx_ ||
      int64_t(blocks.size()) > blocks_for(n_ctx_))
    throw Error("KV cache: bad attach length");
  for (int32_t b : blocks)
    if (b < 0 || b >= n_blocks() || refs_[size_t(b)] == 0)
      throw Error("KV cache: attach of a block that is not in use");
  for (int32_t b : blocks) {
    add_ref(b, true);
    set_table_entry(seq, tables_[size_t(seq)].size(), b);
  }
  len_[size_t(seq)] = n;
  truncate(seq, n);  // drops blocks past n
}

void KvCache::hold(int32_t block) {
  if (block < 0 || block >= n_blocks() || refs_[size_t(block)] == 0)
    throw Error("KV cache: hold of a block that is not in use");
  add_ref(block, false);
}

void KvCache::release(int32_t block) {
  if (block < 0 || block >= n_blocks() || refs_[size_t(block)] <= table_refs_[size_t(block)])
    throw Error("KV cache: release of a block that is not held");
  drop_ref(block, false);
}

}  // namespace tf
