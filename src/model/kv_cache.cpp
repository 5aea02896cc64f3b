#include "model/kv_cache.h"

#include <unistd.h>

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

KvCache::KvCache(int64_t n_layer, int64_t n_seq, int64_t n_ctx, int64_t kv_dim, DType type)
    : type_(type), n_layer_(n_layer), n_seq_(n_seq), n_ctx_(n_ctx), kv_dim_(kv_dim) {
  if (n_layer <= 0 || n_seq <= 0 || n_ctx <= 0 || kv_dim <= 0)
    throw Error("KV cache: all dimensions must be positive");
  if (type != DType::F16 && type != DType::Q8_0)
    throw Error(std::string("KV cache: unsupported type ") + dtype_name(type) + " (use f16 or q8_0)");
  if (type == DType::Q8_0 && kv_dim % 32 != 0)
    throw Error("KV cache type q8_0 needs the key/value width (KV heads x head size = " +
                std::to_string(kv_dim) + ") to be a multiple of 32; use f16");
  // Each factor is bounded by the config checks; guard the product anyway.
  const long double elems = (long double)n_layer * n_seq * n_ctx * kv_dim;
  constexpr long double kMaxBytes = (long double)(int64_t(1) << 40);
  if (elems * 4 > kMaxBytes)
    throw Error("KV cache of " + std::to_string(int64_t(elems * 4 / (1 << 20))) +
                " MiB is too large: reduce the context size");
  row_bytes_ = tf::row_bytes(type, kv_dim);
  const long double bytes = (long double)n_layer * n_seq * n_ctx * (long double)row_bytes_ * 2;
  // Zero-filling touches every page, so an allocation larger than the machine's memory would
  // not fail cleanly: the OOM killer would end the process. Refuse it up front instead.
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0 && bytes > (long double)pages * page)
    throw Error("KV cache of " + std::to_string(int64_t(bytes / (1 << 20))) +
                " MiB does not fit in this machine's memory: reduce the context size");
  try {
    k_.assign(size_t(bytes / 2), 0);
    v_.assign(size_t(bytes / 2), 0);
  } catch (const std::bad_alloc&) {
    throw Error("KV cache: cannot allocate " + std::to_string(int64_t(bytes / (1 << 20))) +
                " MiB: reduce the context size");
  }
  len_.assign(size_t(n_seq), 0);
}

void KvCache::copy_prefix(int64_t src, int64_t dst, int32_t n) {
  if (src < 0 || src >= n_seq_ || dst < 0 || dst >= n_seq_ || n < 0 || n > len_[size_t(src)])
    throw Error("KV cache: bad prefix copy");
  if (src == dst) {
    truncate(dst, n);
    return;
  }
  for (int64_t l = 0; l < n_layer_; ++l) {
    std::memcpy(k_.data() + index(l, dst, 0), k_.data() + index(l, src, 0), size_t(n) * row_bytes_);
    if (type_ == DType::F16) {
      for (int64_t i = 0; i < kv_dim_; ++i)  // values are transposed: one run per row
        std::memcpy(v_row(l, dst, i), v_row(l, src, i), size_t(n) * sizeof(uint16_t));
    } else {
      std::memcpy(v_.data() + index(l, dst, 0), v_.data() + index(l, src, 0), size_t(n) * row_bytes_);
    }
  }
  len_[size_t(dst)] = n;
}

}  // namespace tf
