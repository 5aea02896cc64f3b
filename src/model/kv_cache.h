// Keys and values of past positions, paged: a pool of fixed-size blocks of kBlockLen positions,
// and per sequence a block table listing the blocks that hold its positions in order. Memory is
// sized once, up front (refused with a clear error when it cannot be had); sequences take
// blocks as they grow and give them back when truncated, so memory follows the tokens actually
// held rather than n_seq x n_ctx. Blocks are reference-counted: sequences with a common prefix
// share its blocks (attach), and a block written while shared is copied first
// (copy on write), so sharing never changes what a sequence reads. Other holders (the engine's
// prefix cache) keep blocks alive with hold/release.
//
// A block holds, for every layer, the keys then the values of its kBlockLen positions:
//  - F16 (the default): per KV head, kBlockLen rows of head_dim fp16 values, so that one
//    head's keys (or values) over a block are one contiguous run: attention streams them.
//  - Q8_0 (34 bytes per 32 values, half the memory): one row of kv_dim / 32 Q8_0 blocks per
//    position (a head narrower than 32 values would split a Q8_0 block).
// Attention reads them through kernels::PagedRows.
// keys_only (deepseek2's latent cache): a layer holds one row per position (the attention
// computes with it as a key, and its first columns as the value), so values() and v_at()
// alias the keys and a block is half the size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/kernels/kernels.h"
#include "tensor/dtype.h"

namespace tf {

// "f16" / "q8_0" -> the cache type; throws tf::Error naming the accepted values otherwise.
DType parse_kv_type(const std::string& name);

class KvCache {
 public:
  static constexpr int kBlockShift = 6;
  static constexpr int32_t kBlockLen = 1 << kBlockShift;  // positions per block
  static int64_t blocks_for(int64_t positions) {
    return (positions + kBlockLen - 1) >> kBlockShift;
  }

  // type: DType::F16 or DType::Q8_0 (which needs kv_dim % 32 == 0). n_blocks: the pool's
  // size; 0 = enough for every sequence to hold n_ctx positions. head_dim: the size of a KV
  // head (a divisor of kv_dim; 0 = kv_dim). Throws tf::Error.
  KvCache(int64_t n_layer, int64_t n_seq, int64_t n_ctx, int64_t kv_dim, DType type = DType::F16,
          int64_t n_blocks = 0, int64_t head_dim = 0, bool keys_only = false);

  DType type() const { return type_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_seq() const { return n_seq_; }
  size_t bytes() const { return pool_.size(); }
  // Bytes of one position's key (or value) row, and of one block (all layers, K and V).
  size_t row_bytes() const { return row_bytes_; }
  size_t block_bytes() const { return block_bytes_; }
  // Bytes a pool of n blocks takes for this model's shape.
  static size_t block_bytes_for(int64_t n_layer, int64_t kv_dim, DType type,
                                bool keys_only = false);
  bool keys_only() const { return planes_ == 1; }

  int64_t n_blocks() const { return int64_t(refs_.size()); }
  int64_t free_blocks() const { return int64_t(free_.size()); }
  // Blocks in some sequence's table (the rest are free or only held).
  int64_t blocks_in_tables() const { return in_tables_; }

  // The writable keys / values of a position: F16, those of KV head `head` (head_dim
  // values); Q8_0, the whole row (head must be 0).
  uint8_t* k_at(int64_t layer, int64_t seq, int64_t pos, int64_t head = 0) {
    return block_base(seq, pos) + layer_offset(layer) + head * head_bytes() +
           size_t(pos & (kBlockLen - 1)) * seg_bytes_;
  }
  uint8_t* v_at(int64_t layer, int64_t seq, int64_t pos, int64_t head = 0) {
    return k_at(layer, seq, pos, head) + v_offset();
  }
  // A layer's keys / values of a sequence, for attention (rows 0..seq_len-1 are valid): F16,
  // the head_dim values of KV head `head` per row; Q8_0, whole rows (head ignored).
  kernels::PagedRows keys(int64_t layer, int64_t seq, int64_t head = 0) const {
    return {bases_[size_t(seq)].data(), layer_offset(layer) + head_offset(head), seg_bytes_,
            kBlockShift};
  }
  kernels::PagedRows values(int64_t layer, int64_t seq, int64_t head = 0) const {
    return {bases_[size_t(seq)].data(), layer_offset(layer) + v_offset() + head_offset(head),
            seg_bytes_, kBlockShift};
  }

  // Number of leading positions of a sequence that hold valid entries.
  int32_t seq_len(int64_t seq) const { return len_[size_t(seq)]; }
  // n must not exceed the positions reserved (the table's blocks).
  void set_seq_len(int64_t seq, int32_t n);
  int64_t reserved(int64_t seq) const { return int64_t(tables_[size_t(seq)].size()) * kBlockLen; }

  // Free blocks that reserve(seq, from, n) needs: new blocks up to position n, plus copies of
  // the shared blocks that positions [from, n) would be written into.
  int64_t blocks_to_reserve(int64_t seq, int64_t from, int64_t n) const;
  // Makes positions [from, n) of seq writable. Throws tf::Error, changing nothing, when the
  // pool lacks the blocks.
  void reserve(int64_t seq, int64_t from, int64_t n);
  // Forgets a sequence's positions >= n (n = 0 clears it); blocks past them are released.
  void truncate(int64_t seq, int32_t n);

  // ---- Blocks, for the engine's prefix cache ----
  const std::vector<int32_t>& table(int64_t seq) const { return tables_[size_t(seq)]; }
  // Gives an empty sequence the blocks, shared, as its first positions, n of them valid
  // (n <= blocks.size() * kBlockLen). Throws tf::Error on a bad block or a non-empty sequence.
  void attach(int64_t seq, const std::vector<int32_t>& blocks, int32_t n);
  // Keeps a block alive outside any table (release undoes it; a block is free when no table
  // and no holder has it).
  void hold(int32_t block);
  void release(int32_t block);
  // Tables and holders referring to a block.
  int32_t refs(int32_t block) const { return refs_[size_t(block)]; }

 private:
  uint8_t* block_base(int64_t seq, int64_t pos) const {
    return const_cast<uint8_t*>(bases_[size_t(seq)][size_t(pos >> kBlockShift)]);
  }
  size_t layer_offset(int64_t layer) const {
    return size_t(layer) * size_t(planes_) * kBlockLen * row_bytes_;
  }
  size_t v_offset() const { return planes_ == 2 ? size_t(kBlockLen) * row_bytes_ : 0; }
  // Bytes of one head's rows over a block (F16); Q8_0 rows are not split by head.
  size_t head_bytes() const { return size_t(kBlockLen) * seg_bytes_; }
  size_t head_offset(int64_t head) const {
    return type_ == DType::F16 ? size_t(head) * head_bytes() : 0;
  }
  uint8_t* block_ptr(int32_t b) { return pool_.data() + size_t(b) * block_bytes_; }
  int32_t take_block();                 // from the free list (which must not be empty)
  void add_ref(int32_t b, bool table);  // table: a sequence's table gains it
  void drop_ref(int32_t b, bool table);
  void check_seq(int64_t seq) const;
  void set_table_entry(int64_t seq, size_t i, int32_t b);

  DType type_;
  int planes_;  // 2: keys then values; 1: keys only (values alias them)
  int64_t n_seq_, n_ctx_;
  size_t row_bytes_, block_bytes_;
  size_t seg_bytes_;  // bytes between consecutive rows of a run: head_dim (F16) or kv_dim values
  std::vector<uint8_t> pool_;
  std::vector<int32_t> refs_, table_refs_;  // per block: all references; those from tables
  std::vector<int32_t> free_;               // free blocks (a stack)
  int64_t in_tables_ = 0;                   // blocks with table_refs_ > 0
  std::vector<std::vector<int32_t>> tables_;
  std::vector<std::vector<const uint8_t*>> bases_;  // per table entry: the block's first byte
  std::vector<int32_t> len_;
};

}  // namespace tf
