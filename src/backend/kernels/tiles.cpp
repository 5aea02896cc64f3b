// Weights repacked into tiles (Layout in kernels.h): the rewrite itself, its inverse, and the
// entry points, which split a row range into whole tiles (the SIMD kernels), partial tiles (a
// whole tile into a small buffer, the wanted rows copied out) and the rows after the last tile.
// At levels without tile kernels a tile is copied back to rows and the row kernels run on it,
// which is also the reference the tile kernels are tested against.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/kernels/internal.h"
#include "tensor/blocks.h"
#include "util/error.h"

namespace tf::kernels {
namespace {

constexpr int64_t kTileRows = 16;
// Weight bytes a group of tiles may span in gemm_tiled: about a quarter of a 1 MiB L2.
constexpr size_t kTileGroupBytes = size_t(256) << 10;

// One layout: its weight type, and how 16 rows' block b becomes one tile block and back
// (rows `stride` bytes apart; a tile block is 16 row blocks long).
struct Desc {
  DType type;
  size_t block_bytes;  // of one row's block
  void (*to_tile)(const uint8_t* rows, size_t stride, int64_t b, uint8_t* g);
  void (*to_rows)(const uint8_t* g, int64_t b, size_t stride, uint8_t* rows);
  int64_t chunk_tokens;  // tokens per gemm kernel call
  const detail::TileOps& (*ops)();
};

// Q4_0 (see Layout::kQ4_0x16): codes as dwords, lane per row, then the 16 scales.
void q4_0_to_tile(const uint8_t* rows, size_t stride, int64_t b, uint8_t* g) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ4_0 blk;
    std::memcpy(&blk, rows + size_t(L) * stride + size_t(b) * sizeof blk, sizeof blk);
    for (int j = 0; j < 4; ++j) std::memcpy(g + 64 * j + 4 * L, blk.qs + 4 * j, 4);
    std::memcpy(g + 256 + 2 * L, &blk.d, 2);
  }
}
void q4_0_to_rows(const uint8_t* g, int64_t b, size_t stride, uint8_t* rows) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ4_0 blk;
    for (int j = 0; j < 4; ++j) std::memcpy(blk.qs + 4 * j, g + 64 * j + 4 * L, 4);
    std::memcpy(&blk.d, g + 256 + 2 * L, 2);
    std::memcpy(rows + size_t(L) * stride + size_t(b) * sizeof blk, &blk, sizeof blk);
  }
}

// Q4_K (see Layout::kQ4_Kx16): 32 code dword vectors, 3 scale dword vectors, then d, dmin.
void q4_k_to_tile(const uint8_t* rows, size_t stride, int64_t b, uint8_t* g) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ4_K blk;
    std::memcpy(&blk, rows + size_t(L) * stride + size_t(b) * sizeof blk, sizeof blk);
    for (int v = 0; v < 32; ++v) std::memcpy(g + 64 * v + 4 * L, blk.qs + 4 * v, 4);
    for (int q = 0; q < 3; ++q) std::memcpy(g + 2048 + 64 * q + 4 * L, blk.scales + 4 * q, 4);
    std::memcpy(g + 2240 + 2 * L, &blk.d, 2);
    std::memcpy(g + 2272 + 2 * L, &blk.dmin, 2);
  }
}
void q4_k_to_rows(const uint8_t* g, int64_t b, size_t stride, uint8_t* rows) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ4_K blk;
    for (int v = 0; v < 32; ++v) std::memcpy(blk.qs + 4 * v, g + 64 * v + 4 * L, 4);
    for (int q = 0; q < 3; ++q) std::memcpy(blk.scales + 4 * q, g + 2048 + 64 * q + 4 * L, 4);
    std::memcpy(&blk.d, g + 2240 + 2 * L, 2);
    std::memcpy(&blk.dmin, g + 2272 + 2 * L, 2);
    std::memcpy(rows + size_t(L) * stride + size_t(b) * sizeof blk, &blk, sizeof blk);
  }
}

// Q6_K (see Layout::kQ6_Kx16): low bits, high bits and scales as dword vectors, then d.
void q6_k_to_tile(const uint8_t* rows, size_t stride, int64_t b, uint8_t* g) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ6_K blk;
    std::memcpy(&blk, rows + size_t(L) * stride + size_t(b) * sizeof blk, sizeof blk);
    for (int v = 0; v < 32; ++v) std::memcpy(g + 64 * v + 4 * L, blk.ql + 4 * v, 4);
    for (int v = 0; v < 16; ++v) std::memcpy(g + 2048 + 64 * v + 4 * L, blk.qh + 4 * v, 4);
    for (int v = 0; v < 4; ++v) std::memcpy(g + 3072 + 64 * v + 4 * L, blk.scales + 4 * v, 4);
    std::memcpy(g + 3328 + 2 * L, &blk.d, 2);
  }
}
void q6_k_to_rows(const uint8_t* g, int64_t b, size_t stride, uint8_t* rows) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ6_K blk;
    for (int v = 0; v < 32; ++v) std::memcpy(blk.ql + 4 * v, g + 64 * v + 4 * L, 4);
    for (int v = 0; v < 16; ++v) std::memcpy(blk.qh + 4 * v, g + 2048 + 64 * v + 4 * L, 4);
    for (int v = 0; v < 4; ++v) std::memcpy(blk.scales + 4 * v, g + 3072 + 64 * v + 4 * L, 4);
    std::memcpy(&blk.d, g + 3328 + 2 * L, 2);
    std::memcpy(rows + size_t(L) * stride + size_t(b) * sizeof blk, &blk, sizeof blk);
  }
}

// Q8_0 (see Layout::kQ8_0x16): codes + 128 as dword lanes, then the scales.
void q8_0_to_tile(const uint8_t* rows, size_t stride, int64_t b, uint8_t* g) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ8_0 blk;
    std::memcpy(&blk, rows + size_t(L) * stride + size_t(b) * sizeof blk, sizeof blk);
    for (int l = 0; l < 8; ++l)
      for (int i = 0; i < 4; ++i) g[64 * l + 4 * L + i] = uint8_t(blk.qs[4 * l + i]) ^ 0x80;
    std::memcpy(g + 512 + 2 * L, &blk.d, 2);
  }
}
void q8_0_to_rows(const uint8_t* g, int64_t b, size_t stride, uint8_t* rows) {
  for (int L = 0; L < kTileRows; ++L) {
    BlockQ8_0 blk;
    for (int l = 0; l < 8; ++l)
      for (int i = 0; i < 4; ++i) blk.qs[4 * l + i] = int8_t(g[64 * l + 4 * L + i] ^ 0x80);
    std::memcpy(&blk.d, g + 512 + 2 * L, 2);
    std::memcpy(rows + size_t(L) * stride + size_t(b) * sizeof blk, &blk, sizeof blk);
  }
}

const detail::TileOps& q8_0_ops() {
  return detail::active_table().q8_0x16;
}
const detail::TileOps& q6_k_ops() {
  return detail::active_table().q6_kx16;
}
const detail::TileOps& q4_0_ops() {
  return detail::active_table().q4_0x16;
}
const detail::TileOps& q4_k_ops() {
  return detail::active_table().q4_kx16;
}

DType layout_type(Layout l) {
  switch (l) {
    case Layout::kQ4_Kx16:
      return DType::Q4_K;
    case Layout::kQ6_Kx16:
      return DType::Q6_K;
    case Layout::kQ8_0x16:
      return DType::Q8_0;
    default:
      return DType::Q4_0;
  }
}

const Desc& desc(Layout l, const char* what) {
  static const Desc q4_0{DType::Q4_0, sizeof(BlockQ4_0), q4_0_to_tile, q4_0_to_rows, 16, q4_0_ops};
  static const Desc q4_k{DType::Q4_K, sizeof(BlockQ4_K), q4_k_to_tile, q4_k_to_rows, 8, q4_k_ops};
  if (l == Layout::kQ4_0x16) return q4_0;
  static const Desc q6_k{DType::Q6_K, sizeof(BlockQ6_K), q6_k_to_tile, q6_k_to_rows, 8, q6_k_ops};
  if (l == Layout::kQ4_Kx16) return q4_k;
  static const Desc q8_0{DType::Q8_0, sizeof(BlockQ8_0), q8_0_to_tile, q8_0_to_rows, 2, q8_0_ops};
  if (l == Layout::kQ6_Kx16) return q6_k;
  if (l == Layout::kQ8_0x16) return q8_0;
  throw Error(std::string(what) + ": unknown tile layout");
}

// The layout's description, after checking the matrix fits it.
const Desc& check_layout(Layout l, DType w, size_t stride, int64_t n, const char* what) {
  const Desc& d = desc(l, what);
  if (w != d.type)
    throw Error(std::string(what) + ": " + dtype_name(d.type) + " tiles cannot hold " +
                dtype_name(w) + " weights");
  const int64_t bs = dtype_info(d.type).block_size;
  if (n <= 0 || n % bs != 0 || stride != row_bytes(d.type, n))
    throw Error(std::string(what) + ": tiles need packed rows of whole blocks");
  return d;
}

void untile_one(const Desc& d, const uint8_t* tile, int64_t nb, size_t stride, uint8_t* rows) {
  for (int64_t b = 0; b < nb; ++b)
    d.to_rows(tile + size_t(b) * d.block_bytes * kTileRows, b, stride, rows);
}

// A thread's buffer for one tile as rows (the fallback and partial tiles).
uint8_t* tile_rows_scratch(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes) buf.resize(bytes);
  return buf.data();
}

}  // namespace

Layout preferred_layout(DType w, int64_t rows, int64_t n) {
  if (rows < kTileRows || n <= 0) return Layout::kRows;
  const detail::Table& t = detail::active_table();
  if (w == DType::Q4_0 && n % kQK == 0 && t.q4_0x16.dot) return Layout::kQ4_0x16;
  if (w == DType::Q4_K && n % kQK_K == 0 && t.q4_kx16.dot) return Layout::kQ4_Kx16;
  if (w == DType::Q6_K && n % kQK_K == 0 && t.q6_kx16.dot) return Layout::kQ6_Kx16;
  if (w == DType::Q8_0 && n % kQK == 0 && t.q8_0x16.dot) return Layout::kQ8_0x16;
  return Layout::kRows;
}

int64_t tiled_rows(Layout l, int64_t rows) {
  return l == Layout::kRows ? 0 : rows - rows % kTileRows;
}

void tile(Layout l, uint8_t* data, size_t stride, int64_t rows, int64_t n) {
  const Desc& d = check_layout(l, layout_type(l), stride, n, "tile");
  const int64_t nb = n / dtype_info(d.type).block_size;
  std::vector<uint8_t> tmp(size_t(kTileRows) * stride);
  for (int64_t r = 0; r + kTileRows <= rows; r += kTileRows) {
    uint8_t* p = data + size_t(r) * stride;
    for (int64_t b = 0; b < nb; ++b)
      d.to_tile(p, stride, b, tmp.data() + size_t(b) * d.block_bytes * kTileRows);
    std::memcpy(p, tmp.data(), tmp.size());
  }
}

void untile(Layout l, uint8_t* data, size_t stride, int64_t rows, int64_t n) {
  const Desc& d = check_layout(l, layout_type(l), stride, n, "untile");
  const int64_t nb = n / dtype_info(d.type).block_size;
  std::vector<uint8_t> tmp(size_t(kTileRows) * stride);
  for (int64_t r = 0; r + kTileRows <= rows; r += kTileRows) {
    uint8_t* p = data + size_t(r) * stride;
    untile_one(d, p, nb, stride, tmp.data());
    std::memcpy(p, tmp.data(), tmp.size());
  }
}

namespace {

// Calls f(tile index, first row wanted, rows wanted) for the tiles that rows [r0, r1) touch
// (r1 <= tiled rows), whole runs of tiles as one call with first = 0 and rows a multiple of 16.
template <class Whole, class Part>
void for_tiles(int64_t r0, int64_t r1, Whole whole, Part part) {
  int64_t r = r0;
  if (r % kTileRows) {
    const int64_t t = r / kTileRows, end = std::min(r1, (t + 1) * kTileRows);
    part(t, r - t * kTileRows, end - r);
    r = end;
  }
  const int64_t whole_end = r1 - r1 % kTileRows;
  if (r < whole_end) {
    whole(r / kTileRows, (whole_end - r) / kTileRows);
    r = whole_end;
  }
  if (r < r1) part(r / kTileRows, 0, r1 - r);
}

}  // namespace

void dot_rows_tiled(Layout l, DType w, const void* data, size_t stride, int64_t rows, int64_t r0,
                    int64_t r1, const void* act, int64_t n, float* out) {
  const Desc& d = check_layout(l, w, stride, n, "dot_rows_tiled");
  if (r0 < 0 || r1 > rows || r0 >= r1) return;
  const auto* base = static_cast<const uint8_t*>(data);
  const int64_t tr = tiled_rows(l, rows), t_end = std::min(r1, tr);
  const size_t tile_bytes = size_t(kTileRows) * stride;
  const auto kernel = d.ops().dot;
  const int64_t nb = n / dtype_info(d.type).block_size;
  auto run = [&](int64_t t, int64_t count, float* o) {  // count whole tiles from tile t
    const uint8_t* p = base + size_t(t) * tile_bytes;
    if (kernel) return kernel(p, count, tile_bytes, static_cast<const uint8_t*>(act), n, o);
    uint8_t* tmp = tile_rows_scratch(tile_bytes);
    for (int64_t i = 0; i < count; ++i) {
      untile_one(d, p + size_t(i) * tile_bytes, nb, stride, tmp);
      dot_rows(w, tmp, stride, kTileRows, act, n, o + i * kTileRows);
    }
  };
  if (r0 < t_end)
    for_tiles(
        r0, t_end, [&](int64_t t, int64_t count) { run(t, count, out + (t * kTileRows - r0)); },
        [&](int64_t t, int64_t first, int64_t count) {
          float tmp[kTileRows];
          run(t, 1, tmp);
          std::copy(tmp + first, tmp + first + count, out + (t * kTileRows + first - r0));
        });
  const int64_t rest = std::max(r0, tr);
  if (rest < r1)
    dot_rows(w, base + size_t(rest) * stride, stride, r1 - rest, act, n, out + (rest - r0));
}

void gemm_tiled(Layout l, DType w, const void* data, size_t stride, int64_t rows, int64_t r0,
                int64_t r1, const void* acts, size_t act_stride, int64_t ntok, int64_t n,
                float* out, int64_t os) {
  const Desc& d = check_layout(l, w, stride, n, "gemm_tiled");
  const int64_t nb = n / dtype_info(d.type).block_size, ct = d.chunk_tokens;
  if (r0 < 0 || r1 > rows || r0 >= r1 || ntok <= 0) return;
  const auto* base = static_cast<const uint8_t*>(data);
  const auto* a = static_cast<const uint8_t*>(acts);
  const int64_t tr = tiled_rows(l, rows), t_end = std::min(r1, tr);
  const size_t tile_bytes = size_t(kTileRows) * stride;
  const detail::TileOps& ops = d.ops();
  // Each chunk of up to ct tokens is prepared once per call (ops.prep), for all its tiles.
  const int64_t nchunks = (ntok + ct - 1) / ct;
  const size_t pb = ops.gemm ? (ops.prep_bytes(n) + 63) & ~size_t(63) : 0;
  uint8_t* prepared = nullptr;
  if (ops.gemm && r0 < t_end) {
    prepared = detail::act_scratch(pb * size_t(nchunks));
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t t0 = c * ct;
      ops.prep(a + size_t(t0) * act_stride, act_stride, std::min(ct, ntok - t0), n,
               prepared + size_t(c) * pb);
    }
  }
  // count whole tiles from tile t, tokens [t0, t0 + nt), into o (row r of the tiles at o[r]).
  auto run = [&](int64_t t, int64_t count, int64_t t0, int64_t nt, float* o, int64_t ostride) {
    const uint8_t* p = base + size_t(t) * tile_bytes;
    if (ops.gemm)
      return ops.gemm(p, count, tile_bytes, prepared + size_t(t0 / ct) * pb, nt, n, o, ostride);
    uint8_t* tmp = tile_rows_scratch(tile_bytes);
    for (int64_t i = 0; i < count; ++i) {
      untile_one(d, p + size_t(i) * tile_bytes, nb, stride, tmp);
      gemm(w, tmp, stride, kTileRows, a + size_t(t0) * act_stride, act_stride, nt, n,
           o + i * kTileRows, ostride);
    }
  };
  // Whole tiles in groups that stay in L2 while every chunk of tokens passes over them.
  const int64_t group = std::max<int64_t>(1, int64_t(kTileGroupBytes / tile_bytes));
  auto whole = [&](int64_t t, int64_t count) {
    for (int64_t g = t; g < t + count; g += group) {
      const int64_t gc = std::min(group, t + count - g);
      for (int64_t t0 = 0; t0 < ntok; t0 += ct)
        run(g, gc, t0, std::min(ct, ntok - t0), out + t0 * os + (g * kTileRows - r0), os);
    }
  };
  auto part = [&](int64_t t, int64_t first, int64_t count) {
    float tmp[kTileRows * kTileRows];
    for (int64_t t0 = 0; t0 < ntok; t0 += ct) {
      const int64_t nt = std::min(ct, ntok - t0);
      run(t, 1, t0, nt, tmp, kTileRows);
      for (int64_t k = 0; k < nt; ++k)
        std::copy(tmp + k * kTileRows + first, tmp + k * kTileRows + first + count,
                  out + (t0 + k) * os + (t * kTileRows + first - r0));
    }
  };
  if (r0 < t_end) for_tiles(r0, t_end, whole, part);
  const int64_t rest = std::max(r0, tr);
  if (rest < r1)
    gemm(w, base + size_t(rest) * stride, stride, r1 - rest, a, act_stride, ntok, n,
         out + (rest - r0), os);
}

}  // namespace tf::kernels
