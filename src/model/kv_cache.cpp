#include "model/kv_cache.h"

#include <unistd.h>

#include <new>
#include <string>

#include "util/error.h"

namespace tf {

KvCache::KvCache(int64_t n_layer, int64_t n_seq, int64_t n_ctx, int64_t kv_dim)
    : n_layer_(n_layer), n_seq_(n_seq), n_ctx_(n_ctx), kv_dim_(kv_dim) {
  if (n_layer <= 0 || n_seq <= 0 || n_ctx <= 0 || kv_dim <= 0)
    throw Error("KV cache: all dimensions must be positive");
  // Each factor is bounded by the config checks; guard the product anyway.
  const long double elems = (long double)n_layer * n_seq * n_ctx * kv_dim;
  constexpr long double kMaxBytes = (long double)(int64_t(1) << 40);
  if (elems * 4 > kMaxBytes)
    throw Error("KV cache of " + std::to_string(int64_t(elems * 4 / (1 << 20))) +
                " MiB is too large: reduce the context size");
  // Zero-filling touches every page, so an allocation larger than the machine's memory would
  // not fail cleanly: the OOM killer would end the process. Refuse it up front instead.
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0 && elems * 4 > (long double)pages * page)
    throw Error("KV cache of " + std::to_string(int64_t(elems * 4 / (1 << 20))) +
                " MiB does not fit in this machine's memory: reduce the context size");
  try {
    k_.assign(size_t(elems), 0);
    v_.assign(size_t(elems), 0);
  } catch (const std::bad_alloc&) {
    throw Error("KV cache: cannot allocate " + std::to_string(int64_t(elems * 4 / (1 << 20))) +
                " MiB: reduce the context size");
  }
  len_.assign(size_t(n_seq), 0);
}

}  // namespace tf
