// Keys and values of past positions for a fixed number of sequence slots, in one of two
// element types:
//  - F16 (the default, as llama.cpp): keys [layer][slot][position][kv_dim], one contiguous row
//    per position, read by q.k; values [layer][slot][kv_dim][position], transposed, so that
//    each output element of attention is one contiguous dot product over positions (as
//    llama.cpp lays them out).
//  - Q8_0 (half the memory: 34 bytes per 32 values): keys and values both as one row of
//    Q8_0 blocks per position, [layer][slot][position][kv_dim / 32 blocks]. Values are not
//    transposed: a block would then span 32 positions written at different times.
// The engine assigns slots to requests; memory is sized once, up front, and refused with a
// clear error when it cannot be had.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace tf {

// "f16" / "q8_0" -> the cache type; throws tf::Error naming the accepted values otherwise.
DType parse_kv_type(const std::string& name);

class KvCache {
 public:
  // type: DType::F16 or DType::Q8_0 (which needs kv_dim % 32 == 0). Throws tf::Error.
  KvCache(int64_t n_layer, int64_t n_seq, int64_t n_ctx, int64_t kv_dim, DType type = DType::F16);

  DType type() const { return type_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_seq() const { return n_seq_; }
  size_t bytes() const { return k_.size() + v_.size(); }
  // Bytes of one position's key (or Q8_0 value) row.
  size_t row_bytes() const { return row_bytes_; }

  // F16: the key row of a position; row `i` (of kv_dim) of the transposed values.
  uint16_t* k(int64_t layer, int64_t seq, int64_t pos) {
    return reinterpret_cast<uint16_t*>(k_.data() + index(layer, seq, pos));
  }
  uint16_t* v_row(int64_t layer, int64_t seq, int64_t i) {
    return reinterpret_cast<uint16_t*>(v_.data() + index(layer, seq, 0)) + size_t(i * n_ctx_);
  }
  // Q8_0: the key / value row of a position.
  uint8_t* k_q8(int64_t layer, int64_t seq, int64_t pos) { return k_.data() + index(layer, seq, pos); }
  uint8_t* v_q8(int64_t layer, int64_t seq, int64_t pos) { return v_.data() + index(layer, seq, pos); }

  // Number of leading positions of a slot that hold valid entries.
  int32_t seq_len(int64_t seq) const { return len_[size_t(seq)]; }
  void set_seq_len(int64_t seq, int32_t n) { len_[size_t(seq)] = n; }
  // Makes slot dst hold the first n positions of slot src (the same bits as computing them
  // again), and nothing after: a prompt prefix cached in one slot serves another.
  void copy_prefix(int64_t src, int64_t dst, int32_t n);
  // Forgets a slot's positions >= n (n = 0 clears it).
  void truncate(int64_t seq, int32_t n) {
    if (len_[size_t(seq)] > n) len_[size_t(seq)] = n;
  }

 private:
  size_t index(int64_t layer, int64_t seq, int64_t pos) const {
    return size_t((layer * n_seq_ + seq) * n_ctx_ + pos) * row_bytes_;
  }

  DType type_;
  int64_t n_layer_, n_seq_, n_ctx_, kv_dim_;
  size_t row_bytes_;
  std::vector<uint8_t> k_, v_;
  std::vector<int32_t> len_;
};

}  // namespace tf
