// Shared by the kernel files and their tests; not part of the backend's interface.
//
// Each ISA file compiles its functions with a target attribute (never the whole file with
// -m flags), so the rest of the program stays baseline x86-64. All such functions live in
// anonymous namespaces: an inline or template function with AVX code and external linkage
// could be merged by the linker with a baseline copy and then run on a CPU without AVX.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/kernels/kernels.h"
#include "tensor/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#define TF_KERNELS_X86 1
#define TF_AVX2_FEATURES "avx2,fma,f16c,bmi,bmi2,popcnt"
#define TF_TARGET_AVX2 __attribute__((target(TF_AVX2_FEATURES)))
#define TF_AVX512_FEATURES TF_AVX2_FEATURES ",avx512f,avx512bw,avx512vl,avx512dq"
#define TF_TARGET_AVX512 __attribute__((target(TF_AVX512_FEATURES)))
// The integer kernels: dpbusd / dpwssd (VNNI), byte permutes (VBMI), GF(2) affine nibble
// extraction (GFNI). Every CPU with VBMI also has the other two (Ice Lake, Zen 4 and later).
#define TF_TARGET_AVX512_VNNI \
  __attribute__((target(TF_AVX512_FEATURES ",avx512vnni,avx512vbmi,gfni")))
#define TF_TARGET_AVX512_BF16 __attribute__((target(TF_AVX512_FEATURES ",avx512bf16")))
#endif

namespace tf::kernels::detail {

// What the kernels may use. Each flag implies the ones above it.
struct Features {
  bool avx2 = false;    // AVX2, FMA, F16C, BMI1/2
  bool avx512 = false;  // F, BW, VL, DQ
  bool vnni = false;    // AVX512_VNNI + AVX512_VBMI + GFNI
  bool bf16 = false;    // AVX512_BF16
  // Not a CPU feature: kernels that reorder float additions against llama.cpp's may be used
  // (Numerics::kFast in kernels.h).
  bool fast = false;
};
Features cpu_features();
// The subset of f this CPU has (a flag is dropped when one it implies is missing).
Features clamp(Features f);

// A kernel for one weight type: see dot_rows in kernels.h (n already validated).
using DotRowsFn = void (*)(const uint8_t* w, size_t row_stride, int64_t nrows, const uint8_t* act,
                           int64_t n, float* out, int64_t out_stride);
// The matrix kernel of one weight type: see gemm, gemm_act_bytes, gemm_prepare and
// gemm_prepared in kernels.h (n already validated, nrows and ntok positive).
struct GemmOps {
  void (*run)(const uint8_t* w, size_t row_stride, int64_t nrows, const uint8_t* acts,
              size_t act_stride, int64_t ntok, int64_t n, float* out, int64_t os) = nullptr;
  void (*run_prepared)(const uint8_t* w, size_t row_stride, int64_t nrows, const uint8_t* prepared,
                       int64_t ntok, int64_t n, float* out, int64_t os) = nullptr;
  size_t (*act_bytes)(int64_t n) = nullptr;  // a multiple of 64
  void (*prep)(const uint8_t* act, int64_t n, uint8_t* out) = nullptr;
};
// An activation converter, by activation type (n already validated).
using QuantFn = void (*)(const float* x, void* out, int64_t n);

// The float row operations (see softmax_row etc. in kernels.h); nullptr: scalar reference.
struct RowOps {
  void (*softmax)(float* x, int64_t n) = nullptr;
  void (*silu_mul)(float* gate, const float* up, int64_t n) = nullptr;
  void (*to_f16)(const float* x, uint16_t* out, int64_t n) = nullptr;
  void (*round_f16)(float* x, int64_t n) = nullptr;
  void (*dot_f16)(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a, int64_t n,
                  bool sgemm, float scale, float* out) = nullptr;
  // dot_f16_rows_group (VecDot) for the shapes it handles; returns false for the others.
  bool (*dot_f16_group)(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a,
                        size_t a_stride, int64_t m, int64_t n, float scale, float* out,
                        size_t out_stride) = nullptr;
  // q8_0_weighted_sum for whole blocks (start and D multiples of 32).
  void (*q8_0_weighted_sum)(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                            const float* p, float* out) = nullptr;
  // f16_weighted_sum for D % 16 == 0.
  void (*f16_weighted_sum)(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                           const float* p, size_t p_stride, int64_t m, float* out,
                           size_t out_stride) = nullptr;
};

// Kernels for a tile layout (see Layout in kernels.h), on whole tiles: tile i of `ntiles` at
// tiles + i * tile_bytes. dot: out[16 i + L] for row L of tile i, act one token from
// quantize_act. gemm: out[t * os + 16 i + L] for ntok <= 16 tokens, prepared by prep (from
// quantize_act rows acts + t * as) into prep_bytes(n) bytes, 64-byte aligned.
struct TileOps {
  void (*dot)(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes, const uint8_t* act,
              int64_t n, float* out) = nullptr;
  size_t (*prep_bytes)(int64_t n) = nullptr;
  void (*prep)(const uint8_t* acts, size_t as, int64_t ntok, int64_t n, uint8_t* out) = nullptr;
  void (*gemm)(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes, const uint8_t* prepared,
               int64_t ntok, int64_t n, float* out, int64_t os) = nullptr;
};

inline constexpr size_t kTypeSlots = 36;  // ggml type ids 0..35
struct Table {
  Features features;
  std::array<DotRowsFn, kTypeSlots> dot{};  // nullptr: scalar reference
  std::array<QuantFn, kTypeSlots> quant{};  // nullptr: quantize_row
  std::array<GemmOps, kTypeSlots> gemm{};   // run == nullptr: dot per token
  RowOps rows;
  TileOps q4_0x16, q4_kx16, q6_kx16, q8_0x16;
};
Table make_table(Features f);

// Switches the active table to one built for f (clamped to the CPU): lets tests reach the
// AVX-512 variants that lack VNNI or BF16 on a CPU that has them.
void set_active_features(Features f);
const Table& active_table();

// Filled in by the ISA files.
void add_quant_avx2(Table& t);
void add_legacy_avx2(Table& t);
void add_legacy_avx512(Table& t, const Features& f);
void add_kquants_avx2(Table& t);
void add_kquants_avx512(Table& t, const Features& f);
void add_float_avx2(Table& t);
void add_float_avx512(Table& t, const Features& f);
void add_gemm_avx2(Table& t);
void add_gemm_avx512(Table& t, const Features& f);
void add_rows_avx2(Table& t);
void add_rows_avx512(Table& t);
void add_tiles_avx512(Table& t, const Features& f);

inline size_t slot(DType t) {
  return static_cast<size_t>(t);
}

// A 64-byte aligned, thread-local buffer of at least `bytes` bytes for activation data that
// a kernel prepares once per call and then reads for every row. Valid until the next call on
// the same thread.
uint8_t* act_scratch(size_t bytes);

// How far ahead (bytes) a kernel prefetches its weight row. With weights on huge pages, 4 KiB
// ahead decodes ~10% faster than 1 KiB (Q4_0, Q4_K_M; 512 B: ~15% slower).
inline constexpr int kPrefetch = 4096;

// Rows a matrix-vector kernel works on at once when one row alone is bound by its arithmetic
// rather than by memory (Q4_0, Q8_0: a 2048-wide Q4_0 row streamed at ~50 GB/s from L2, one
// core's share of DRAM is ~34): the group shares each activation load, and its independent
// accumulator chains hide the FMA latency that a single row waits on per block. Measured over
// a model's matrices at 2 threads: Q4_0 53 -> 69-76 GB/s (4 rows: 59; 16 rows: 64), Q8_0 58 ->
// 62-66 GB/s. (The AVX2 kernels gained nothing from groups of 4: their per-block arithmetic,
// not latency or loads, is what limits them.)
inline constexpr int kRowGroup = 8;

// The prefetch distance for a group of `rows` consecutive rows, `stride` bytes apart, walked
// side by side: the same offset in the next group's rows. Each row prefetching kPrefetch ahead
// would land in the group's own later rows (already streaming) and leave the next group's
// cold; that ran at 14-16 instead of 35 GB/s from DRAM at one thread.
inline size_t prefetch_distance(int rows, size_t stride) {
  return rows == 1 ? size_t(kPrefetch) : size_t(rows) * stride;
}

// Q4_K / Q5_K pack 8 6-bit scales and 8 6-bit mins into 12 bytes (see k_scale_min in
// tensor/blocks.h). This unpacks all of them at once with 32-bit integer ops, one value per
// byte: scales 0..7 into *sc, mins into *m (byte j = sub-block j).
inline void unpack_k_scales(const uint8_t* s, uint64_t* sc, uint64_t* m) {
  uint32_t u0, u1, u2;
  std::memcpy(&u0, s, 4);
  std::memcpy(&u1, s + 4, 4);
  std::memcpy(&u2, s + 8, 4);
  constexpr uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
  // Sub-blocks 0..3: low 6 bits of bytes 0..3 (scales) and 4..7 (mins). Sub-blocks 4..7: a
  // nibble from bytes 8..11 plus the top 2 bits of bytes 0..3 (scales) or 4..7 (mins).
  const uint32_t sc_hi = (u2 & kLow4) | (((u0 >> 6) & kLow2) << 4);
  const uint32_t m_hi = ((u2 >> 4) & kLow4) | (((u1 >> 6) & kLow2) << 4);
  *sc = (u0 & kLow6) | (uint64_t(sc_hi) << 32);
  *m = (u1 & kLow6) | (uint64_t(m_hi) << 32);
}

}  // namespace tf::kernels::detail
