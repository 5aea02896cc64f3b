// Fast CPU kernels for the hot loops: dot products of weight rows (in their file type) with one
// activation row (decoding), matrix products with many activation rows (prompt processing),
// plus the activation conversion that feeds them.
//
// One binary runs on every x86-64 CPU: the SIMD code is compiled per function for AVX2 or
// AVX-512 and picked at run time from cpuid. Every kernel computes the exact integer sums of
// the scalar reference in tensor/quants.h (at most split over a few SIMD lanes per block);
// only the order of the float additions differs, so results agree with vec_dot to a few ulps
// of the sum of the terms' magnitudes. Types without a fast path (and the scalar level) use
// the reference itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "tensor/dtype.h"
#include "tensor/quants.h"

namespace tf::kernels {

// Instruction-set levels. kAvx2 means AVX2 + FMA + F16C. kAvx512 means AVX-512 F, BW, VL and
// DQ; kernels that also want VNNI + VBMI + GFNI (the integer ones) or BF16 use them when the
// CPU has them and otherwise fall back to their AVX2 (or plain AVX-512) version.
enum class Isa { kScalar, kAvx2, kAvx512 };

// The best level this CPU (and OS: saved register state) supports; computed once.
Isa detect();
// The level in use. On first use it is detect(), lowered by the environment variable TF_ISA
// ("scalar", "avx2", "avx512"; anything else is reported once on stderr and ignored).
Isa active();
// Switches the level for all threads (tests, benchmarks); clamped to detect(). Returns the
// level actually set. Not meant to be called while other threads run kernels.
Isa set_active(Isa isa);
const char* isa_name(Isa isa);
// "scalar" / "avx2" / "avx512" (case-insensitive) -> level; nullopt for anything else.
std::optional<Isa> parse_isa(std::string_view name);

// Which roundings the kernels keep. kExact (the default): where llama.cpp's summation order is
// followed (Q8_0 matrix products, F32/F16 prompt products), it is followed bit for bit, so the
// golden tests compare tokens and logits with llama.cpp's exactly. kFast: kernels that add the
// same exact integer block sums in another float order may be used (today the AVX-512 VNNI
// Q8_0 prompt kernel, about twice as fast); results differ in the last bits, which on the tiny
// golden models moves greedy continuations at near-ties and perplexity by < 0.1%. Set by the
// environment variable TF_NUMERICS ("exact" / "fast") on first use, or set_numerics.
enum class Numerics { kExact, kFast };
Numerics numerics();
void set_numerics(Numerics n);  // as set_active: not while other threads run kernels
std::optional<Numerics> parse_numerics(std::string_view name);

// Converts n floats (a multiple of the block size) to the activation type that weights of type
// w take, dtype_info(w).vec_dot_type, writing exactly the bytes quantize_row would write.
// out must hold row_bytes(vec_dot_type, n) bytes. Throws tf::Error like quantize_row.
void quantize_act(DType w, const float* x, void* out, int64_t n);

// out[r * out_stride] = vec_dot(w, W + r * row_stride, act, n) for r in [0, nrows). Work that
// depends only on the activations is done once per call (into a thread-local scratch buffer),
// then rows stream one after another with software prefetch: interleaving several rows was
// measured to defeat the hardware prefetcher. So give each thread one call with its whole row
// range rather than many small calls. act must come from quantize_act (the K-quant kernels rely
// on the per-16 sums it stores). Weight rows need no alignment. Throws tf::Error if n is not a
// multiple of w's block size.
void dot_rows(DType w, const void* W, size_t row_stride, int64_t nrows, const void* act, int64_t n,
              float* out, int64_t out_stride = 1);

// Whether dot_rows has a SIMD kernel for w at the active level (false: scalar reference).
bool has_fast_path(DType w);

// The matrix-matrix product for several activation rows (prompt processing):
// out[t * out_row_stride + r] = vec_dot(w, W + r * row_stride, acts + t * act_stride, n, kernel)
// for r in [0, nrows), t in [0, ntok), with acts from quantize_act. Each weight block is
// unpacked once per group of tokens (into a small panel that stays in cache) and multiplied
// against several tokens held in registers; the activations are rearranged once per call. So
// give each thread one call with its whole row range and all tokens.
//  - Q8_0 follows llama.cpp's summation order (the reference's) bit for bit, except with
//    Numerics::kFast at AVX-512 VNNI: each block summed exactly in one lane, the blocks added in
//    another order;
//  - F32 and F16 add the products as llama.cpp's prompt kernel does, so with n % 16 == 0 the
//    result equals vec_dot(..., DotKernel::Sgemm) bit for bit (other n: zero-padded, same
//    scheme);
//  - Q4_0 and the K types keep the reference's exact integer sums per block (split over SIMD
//    lanes per sub-block), only the float additions are ordered differently (as dot_rows);
//  - BF16 multiplies exactly and adds in float.
// Types without a matrix kernel at the active level fall back to dot_rows per token. Throws
// tf::Error if n is not a multiple of w's block size.
void gemm(DType w, const void* W, size_t row_stride, int64_t nrows, const void* acts,
          size_t act_stride, int64_t ntok, int64_t n, float* out, int64_t out_row_stride);

// Whether gemm has a matrix kernel for w at the active level (false: dot_rows per token).
bool has_gemm(DType w);

// gemm in two steps, for callers that split the rows over threads: the per-token
// rearrangement of the activations that gemm does on every call is done once per token and
// shared. gemm_act_bytes is the size of one prepared token (a multiple of 64), or 0 when w has
// no matrix kernel at the active level (use gemm then; the other two throw tf::Error).
// gemm_prepare converts one token's activations (from quantize_act) into out, which must be
// 64-byte aligned; gemm_prepared is gemm on ntok tokens prepared gemm_act_bytes apart. Prepared
// data is only valid at the ISA level it was made at.
size_t gemm_act_bytes(DType w, int64_t n);
void gemm_prepare(DType w, const void* act, int64_t n, void* out);
void gemm_prepared(DType w, const void* W, size_t row_stride, int64_t nrows, const void* prepared,
                   int64_t ntok, int64_t n, float* out, int64_t out_row_stride);

// ---- Weights repacked at load into tiles ----
// A matrix may be rewritten in place, once at load, into a layout that its kernels read with
// less work than the file's rows. Each tile takes exactly the bytes of the rows it replaces, so
// offsets, sizes and the rows that are not tiled stay where they were.
//  - kQ4_0x16: Q4_0 rows in tiles of 16 consecutive rows. For each block b of a tile, 288
//    bytes: four 64-byte vectors, dword L of vector j holding nibble bytes 4j..4j+3 of row L's
//    block b (their low nibbles are elements 4j..4j+3, the high ones 16+4j..16+4j+3), then
//    the 16 rows' fp16 scales. So a SIMD lane holds one row: 16 rows times one activation
//    block are 8 vpdpbusd with broadcast activation codes and no horizontal sums, and a prompt
//    or a batch of sequences unpacks each block once for up to 16 tokens held in registers.
//  - kQ4_Kx16: Q4_K rows in tiles of 16 rows. For each super-block b of a tile, 2304 bytes:
//    32 vectors of 64 bytes, dword L of vector v holding code bytes 4v..4v+3 of row L (the low
//    nibbles of vector v are elements 64 (v / 8) + 4 (v % 8) + 0..3, the high ones 32 further);
//    3 vectors holding the rows' 12 packed scale bytes as dwords the same way; then the 16 d
//    and the 16 dmin (fp16). The 6-bit scales unpack with a few 32-bit operations for all 16
//    rows at once, and each sub-block's sum is scaled in integers, as the reference does.
//  - kQ6_Kx16: Q6_K rows in tiles of 16 rows. For each super-block, 3360 bytes: the rows' 128
//    low-bit bytes as 32 dword vectors, their 64 high-bit bytes as 16, their 16 scales as 4,
//    then the 16 d (fp16).
//  - kQ8_0x16: Q8_0 rows in tiles of 16 rows. For each block, 544 bytes: 8 vectors of 64 bytes,
//    dword L of vector l holding codes 4l..4l+3 of row L plus 128 (unsigned, for vpdpbusd),
//    then the 16 scales. Its kernels keep llama.cpp's order bit for bit (each row's 8 float
//    lanes are the 8 vectors' lanes), so Q8_0 stays exact.
// Rows after the last whole tile (rows % 16) stay rows.
// Results keep the exact integer sum of each block (the K types: of each super-block, scales
// and mins applied in integers); the float additions run in block order with a fused multiply-add
// per block (dot_rows's kernels order them differently).
enum class Layout : uint8_t { kRows, kQ4_0x16, kQ4_Kx16, kQ6_Kx16, kQ8_0x16 };

// The layout the active level reads fastest for a rows x n matrix of type w (kRows: none).
Layout preferred_layout(DType w, int64_t rows, int64_t n);
// Rows of `rows` that live in tiles (the rest stay rows).
int64_t tiled_rows(Layout l, int64_t rows);
// Rewrites rows [0, tiled_rows) of a matrix (row 0 at data, rows `stride` bytes apart, which
// must be row_bytes of the type) into layout l, in place; untile is the inverse. Throws
// tf::Error for a type or stride the layout does not take.
void tile(Layout l, uint8_t* data, size_t stride, int64_t rows, int64_t n);
void untile(Layout l, uint8_t* data, size_t stride, int64_t rows, int64_t n);

// dot_rows and gemm for rows [r0, r1) of a whole matrix in layout l (data: its row 0; rows: all
// of its rows): out[(r - r0) * out_stride] and out[t * out_row_stride + (r - r0)]. acts come
// from quantize_act. At levels without tile kernels each tile is copied back to rows first.
void dot_rows_tiled(Layout l, DType w, const void* data, size_t stride, int64_t rows, int64_t r0,
                    int64_t r1, const void* act, int64_t n, float* out);
void gemm_tiled(Layout l, DType w, const void* data, size_t stride, int64_t rows, int64_t r0,
                int64_t r1, const void* acts, size_t act_stride, int64_t ntok, int64_t n,
                float* out, int64_t out_row_stride);

// ---- Row operations around attention and the feed-forward gate ----
// Each equals its scalar reference bit for bit (the references emulate llama.cpp's AVX-512
// arithmetic, which the fast versions run natively).

// Fast softmax_inplace / silu_mul_inplace (backend/cpu_ops.h) at the active level, or nullptr
// when there is none and the caller's scalar code runs.
using SoftmaxFn = void (*)(float* x, int64_t n);
using SiluMulFn = void (*)(float* gate, const float* up, int64_t n);
SoftmaxFn softmax_fn();
SiluMulFn silu_mul_fn();

// out[i] = f32_to_fp16(x[i]) (round to nearest even).
void f32_to_f16_row(const float* x, uint16_t* out, int64_t n);
// x[i] = fp16_to_f32(f32_to_fp16(x[i])): floats rounded to the nearest fp16 value.
void round_to_f16(float* x, int64_t n);

// out[r] = vec_dot(F16, w + r * stride, a, n, kernel) * scale for r in [0, rows): many short
// fp16 dot products in llama.cpp's order (attention scores over cached keys, or values over
// attention weights). stride is in elements.
void dot_f16_rows(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a, int64_t n,
                  DotKernel kernel, float scale, float* out);

// dot_f16_rows(w, stride, rows, a + h * a_stride, n, kernel, scale, out + h * out_stride) for
// h < m: the query heads of a GQA group against their shared cached keys. The same bits as m
// calls; with VecDot and a head size of 64 or 128 (AVX-512) each key row is converted from
// fp16 once for all m heads, which is what bounds the scores at long contexts.
void dot_f16_rows_group(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a,
                        size_t a_stride, int64_t m, int64_t n, DotKernel kernel, float scale,
                        float* out, size_t out_stride);

// ---- Attention over a paged KV cache ----
// The cache is a pool of blocks of block_len positions (a power of two); a sequence's rows
// are spread over the blocks of its block table. Row j of a sequence is at
// blocks[j >> block_shift] + offset + (j & (block_len - 1)) * stride.
struct PagedRows {
  const uint8_t* const* blocks = nullptr;  // each block's first row
  size_t offset = 0;                       // bytes added to every block pointer (layer, K/V)
  size_t stride = 0;                       // bytes between consecutive rows of a block
  int block_shift = 0;                     // log2 of the positions per block
  int64_t block_len() const { return int64_t(1) << block_shift; }
  const uint8_t* row(int64_t j) const {
    return blocks[j >> block_shift] + offset + size_t(j & (block_len() - 1)) * stride;
  }
};

// out[h * out_stride + d] = sum over j < len of p[h * p_stride + j] * v(j, start + d), for
// h < m and d < D, with v(j, e) element e of fp16 row j: the attention-weighted sums of the
// values for m weight vectors (the query heads of one KV head, or the tokens of a prompt
// tile). Each row is converted once for all m. (Attention rounds the weights to fp16 first,
// as llama.cpp does: round_to_f16; the products are then exact in float.) Sums run over j in order,
// in registers over all positions and blocks, so the block size never changes the result; the SIMD
// versions round like the reference up to FMA contraction.
void f16_weighted_sum(const PagedRows& rows, int64_t len, int64_t start, int64_t D, const float* p,
                      size_t p_stride, int64_t m, float* out, size_t out_stride);
void f16_weighted_sum_reference(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                                const float* p, size_t p_stride, int64_t m, float* out,
                                size_t out_stride);

// Q8_0 cache rows: one row of Q8_0 blocks per position; a head reads elements
// [start, start + D) of each row. value(j, e) = d * q of element e of row j.

// sc[j] = scale * sum over d < D of q[d] * value(j, start + d), for j < len, of `len`
// contiguous rows `stride` bytes apart. Dequantizes the slices: for heads that do not cover
// whole blocks (whole-block heads score with quantize_act and dot_rows, in integers).
void q8_0_scores_sliced(const uint8_t* rows, size_t stride, int64_t len, int64_t start, int64_t D,
                        const float* q, float scale, float* sc);

// out[d] = sum over j < len of p[j] * value(j, start + d), for d < D: the attention-weighted
// sum of the values. The SIMD version (whole blocks) keeps a head's sums in registers over
// all positions; it rounds like the reference up to the order of FMA contraction.
void q8_0_weighted_sum(const PagedRows& rows, int64_t len, int64_t start, int64_t D, const float* p,
                       float* out);
void q8_0_weighted_sum_reference(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                                 const float* p, float* out);

}  // namespace tf::kernels
