// Keys and values of past positions, in fp16, for a fixed number of sequence slots.
// Keys: [layer][slot][position][kv_dim], one contiguous row per position, read by q.k.
// Values: [layer][slot][kv_dim][position], transposed, so that each output element of
// attention is one contiguous dot product over positions (as llama.cpp lays them out).
// The engine assigns slots to requests; memory is sized once, up front, and refused with a
// clear error when it cannot be had.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tf {

class KvCache {
 public:
  KvCache(int64_t n_layer, int64_t n_seq, int64_t n_ctx, int64_t kv_dim);

  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_seq() const { return n_seq_; }
  size_t bytes() const { return (k_.size() + v_.size()) * sizeof(uint16_t); }

  uint16_t* k(int64_t layer, int64_t seq, int64_t pos) { return k_.data() + index(layer, seq, pos); }
  // Row `i` (of kv_dim) of the transposed values: n_ctx positions.
  uint16_t* v_row(int64_t layer, int64_t seq, int64_t i) { return v_.data() + index(layer, seq, 0) + size_t(i * n_ctx_); }

  // Number of leading positions of a slot that hold valid entries.
  int32_t seq_len(int64_t seq) const { return len_[size_t(seq)]; }
  void set_seq_len(int64_t seq, int32_t n) { len_[size_t(seq)] = n; }
  // Forgets a slot's positions >= n (n = 0 clears it).
  void truncate(int64_t seq, int32_t n) {
    if (len_[size_t(seq)] > n) len_[size_t(seq)] = n;
  }

 private:
  size_t index(int64_t layer, int64_t seq, int64_t pos) const {
    return size_t(((layer * n_seq_ + seq) * n_ctx_ + pos) * kv_dim_);
  }

  int64_t n_layer_, n_seq_, n_ctx_, kv_dim_;
  std::vector<uint16_t> k_, v_;
  std::vector<int32_t> len_;
};

}  // namespace tf
