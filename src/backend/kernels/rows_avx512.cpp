// AVX-512 versions of the float row operations around attention and the feed-forward gate:
// softmax, SiLU(gate) * up, float -> fp16 conversion and many short fp16 dot products. Each
// computes, lane for lane, the same operations as its scalar reference (cpu_ops.cpp,
// tensor/fp16.cpp, vec_dot with a DotKernel), so results are identical bit for bit; the
// scalar code emulates llama.cpp's AVX-512 arithmetic, which these now run natively.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "tensor/blocks.h"
#include "tensor/fp16.h"

// GCC 12 warns about the deliberately undefined inputs inside its own AVX-512 headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace tf::kernels::detail {
namespace {

// exp_ggml of cpu_ops.cpp on 16 lanes: x = n ln2 + b with n integral, exp(b) by a degree-5
// polynomial, scaled by 2^n in one rounding; |n| > 192 gives inf or 0 (as for -inf inputs).
TF_TARGET_AVX512 inline __m512 exp16(__m512 x) {
  const __m512 shift = _mm512_set1_ps(0x1.8p23f);
  const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift), shift);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(
          _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
          _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  const __m512 r = _mm512_scalef_ps(j, n);
  // Far out of range (|n| > 192, NaN compares false): inf above, 0 below.
  const __m512 abs_n = _mm512_abs_ps(n);
  const __mmask16 far = _mm512_cmp_ps_mask(abs_n, _mm512_set1_ps(192.0f), _CMP_GT_OQ);
  const __mmask16 pos = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_GT_OQ);
  const __m512 limit = _mm512_mask_blend_ps(pos, _mm512_setzero_ps(), _mm512_set1_ps(INFINITY));
  return _mm512_mask_blend_ps(far, r, limit);
}

// reduce_add16's order: halves, then quarters, then (q0 + q2) + (q1 + q3).
TF_TARGET_AVX512 inline float reduce16(__m512 v) {
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 t = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));  // h4[0]+h4[2], h4[1]+h4[3]
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

TF_TARGET_AVX512 inline __mmask16 first(int64_t k) {
  return k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << k) - 1);
}

TF_TARGET_AVX512 void softmax(float* x, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < n; i += 16)
    vmax =
        _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), first(n - i), x + i));
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  double sum = 0.0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first(n - i);
    // Lanes past the end are 0, as in the reference's zero-filled group.
    const __m512 e =
        _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx)));
    _mm512_mask_storeu_ps(x + i, m, e);
    sum += double(reduce16(e));
  }
  const __m512 inv = _mm512_set1_ps(float(1.0 / sum));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}

TF_TARGET_AVX512 void silu_mul(float* gate, const float* up, int64_t n) {
  const int64_t grouped = n - n % 16;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < grouped; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_storeu_ps(
        gate + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_loadu_ps(up + i)));
  }
  // The reference uses the libm exp on the ungrouped tail.
  for (int64_t i = grouped; i < n; ++i) gate[i] = (gate[i] / (1.0f + std::exp(-gate[i]))) * up[i];
}

TF_TARGET_AVX512 void to_f16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(out + i, m, h);
  }
}

TF_TARGET_AVX512 void round_f16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm512_mask_storeu_ps(x + i, m, _mm512_cvtph_ps(h));
  }
}

TF_TARGET_AVX512 inline __m512 load_h(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// The four 16-lane accumulators of vec_dot(F16, VecDot) over the first np (% 64 == 0)
// elements of R rows (stride elements apart), each folded (0 + 2) + (1 + 3) into out[r]; af
// holds the activations as floats. Several rows at once share the activation loads (a row
// alone needs one per FMA) and give the FMA chains independent neighbours.
template <int R>
TF_TARGET_AVX512 inline void vecdot_lanes(const uint16_t* x, size_t stride, const float* af,
                                          int64_t np, __m512* out) {
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < 4; ++k) acc[r][k] = _mm512_setzero_ps();
  for (int64_t i = 0; i < np; i += 64)
    for (int k = 0; k < 4; ++k) {
      const __m512 a = _mm512_load_ps(af + i + 16 * k);
      for (int r = 0; r < R; ++r)
        acc[r][k] =
            _mm512_fmadd_ps(load_h(x + size_t(r) * stride + i + 16 * k, 0xFFFF), a, acc[r][k]);
    }
  for (int r = 0; r < R; ++r)
    out[r] =
        _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][2]), _mm512_add_ps(acc[r][1], acc[r][3]));
}

// sum plus the products of elements [np, n) of x and af (n - np < 64), added in double in
// order: the part of vec_dot(F16, VecDot) after the last whole 64. fp16 x fp16 products are
// exact in float.
TF_TARGET_AVX512 inline double add_tail(double sum, const uint16_t* x, const float* af, int64_t np,
                                        int64_t n) {
  alignas(64) float p[64];
  for (int64_t i = np; i < n; i += 16)
    _mm512_store_ps(p + (i - np),
                    _mm512_mul_ps(load_h(x + i, first(n - i)), _mm512_load_ps(af + i)));
  for (int64_t i = 0; i < n - np; ++i) sum += double(p[i]);
  return sum;
}

// reduce16 of 16 vectors at once: lane r of the result is reduce16(v[r]), with the same
// additions (halves, then quarters, then (q0 + q2) + (q1 + q3)) done across vectors.
TF_TARGET_AVX512 inline __m512 reduce16x16(const __m512* v) {
  __m512 h8[8], h4[4];
  for (int k = 0; k < 8; ++k)  // [halves of row 2k | halves of row 2k+1]
    h8[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                          _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
  for (int k = 0; k < 4; ++k)  // 128-bit lane j: quarters of row 4k + j
    h4[k] = _mm512_add_ps(_mm512_shuffle_f32x4(h8[2 * k], h8[2 * k + 1], 0x88),
                          _mm512_shuffle_f32x4(h8[2 * k], h8[2 * k + 1], 0xDD));
  // Per 128-bit lane j of each pair: (q0 + q2, q1 + q3) of two rows.
  const __m512 g0 =
      _mm512_add_ps(_mm512_shuffle_ps(h4[0], h4[1], 0x44), _mm512_shuffle_ps(h4[0], h4[1], 0xEE));
  const __m512 g1 =
      _mm512_add_ps(_mm512_shuffle_ps(h4[2], h4[3], 0x44), _mm512_shuffle_ps(h4[2], h4[3], 0xEE));
  // Element 4j + e: the result of row 4e + j.
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(g0, g1, 0x88), _mm512_shuffle_ps(g0, g1, 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

// out[r] = scale * dot(w + r * stride, a, n) in the order of vec_dot(F16, ..., kernel): see
// dot_f16 in tensor/quants.cpp. Sgemm (n % 16 == 0): one 16-lane FMA chain, reduced. VecDot:
// four accumulators over each 64 elements, folded (0+2)+(1+3) and reduced, then the rest as
// float products added in double, in order.
TF_TARGET_AVX512 void dot_f16_rows(const uint16_t* w, size_t stride, int64_t rows,
                                   const uint16_t* a, int64_t n, bool sgemm, float scale,
                                   float* out) {
  if (sgemm && n % 16 == 0) {
    for (int64_t r = 0; r < rows; ++r) {
      const uint16_t* x = w + size_t(r) * stride;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t i = 0; i < n; i += 16)
        acc = _mm512_fmadd_ps(load_h(x + i, 0xFFFF), load_h(a + i, 0xFFFF), acc);
      out[r] = reduce16(acc) * scale;
    }
    return;
  }
  const int64_t np = n & ~int64_t(63);
  // The activations as floats, converted once for all rows (zeros after n).
  auto* af = reinterpret_cast<float*>(act_scratch(size_t(n + 64) * sizeof(float)));
  for (int64_t i = 0; i < n; i += 16) _mm512_store_ps(af + i, load_h(a + i, first(n - i)));
  int64_t r = 0;
  if (np == n) {
    // No double-summed tail: the float result of the reduction is the answer; reduce 16 rows
    // at a time.
    const __m512 vscale = _mm512_set1_ps(scale);
    for (; r + 16 <= rows; r += 16) {
      __m512 lanes[16];
      for (int k = 0; k < 16; k += 4)
        vecdot_lanes<4>(w + size_t(r + k) * stride, stride, af, np, lanes + k);
      _mm512_storeu_ps(out + r, _mm512_mul_ps(reduce16x16(lanes), vscale));
    }
  }
  for (; r < rows; r += 4) {
    const int nr = int(std::min<int64_t>(4, rows - r));
    __m512 lanes[4];
    if (nr == 4) {
      vecdot_lanes<4>(w + size_t(r) * stride, stride, af, np, lanes);
    } else {
      for (int k = 0; k < nr; ++k)
        vecdot_lanes<1>(w + size_t(r + k) * stride, stride, af, np, lanes + k);
    }
    for (int k = 0; k < nr; ++k) {
      const uint16_t* x = w + size_t(r + k) * stride;
      const double sum = np > 0 ? double(reduce16(lanes[k])) : 0.0;
      out[r + k] = float(add_tail(sum, x, af, np, n)) * scale;
    }
  }
}

// ---- One set of rows against several activation vectors (a GQA group's query heads) ----
//
// dot_f16_rows(VecDot) of each of m activation vectors with the same rows, for n % 64 == 0
// (no double-summed tail): each row is converted to float once for all m heads instead of once
// per head; per head the lanes are the same as dot_f16_rows computes, so are the bits.
template <int C>  // C = n / 64: 16-lane vectors per chain
TF_TARGET_AVX512 void dot_f16_group_n(const uint16_t* w, size_t stride, int64_t rows,
                                      const float* af, int64_t m, float scale, float* out,
                                      size_t out_stride, __m512* lanes) {
  constexpr int64_t n = 64 * C;
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < rows; r += 16) {
    const int nr = int(std::min<int64_t>(16, rows - r));
    for (int k = 0; k < nr; ++k) {
      const uint16_t* x = w + size_t(r + k) * stride;
      __m512 xv[4 * C];
      for (int i = 0; i < 4 * C; ++i) xv[i] = load_h(x + 16 * i, 0xFFFF);
      for (int64_t h = 0; h < m; ++h) {
        const float* a = af + h * n;
        __m512 acc[4];
        for (int j = 0; j < 4; ++j)  // an FMA onto +0, as dot_f16_rows (mul would keep a -0)
          acc[j] = _mm512_fmadd_ps(xv[j], _mm512_load_ps(a + 16 * j), _mm512_setzero_ps());
        for (int c = 1; c < C; ++c)
          for (int j = 0; j < 4; ++j)
            acc[j] = _mm512_fmadd_ps(xv[4 * c + j], _mm512_load_ps(a + 64 * c + 16 * j), acc[j]);
        lanes[h * 16 + k] =
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
      }
    }
    for (int64_t h = 0; h < m; ++h) {
      float* o = out + size_t(h) * out_stride + r;
      if (nr == 16) {
        _mm512_storeu_ps(o, _mm512_mul_ps(reduce16x16(lanes + h * 16), vscale));
      } else {
        for (int k = 0; k < nr; ++k) o[k] = reduce16(lanes[h * 16 + k]) * scale;
      }
    }
  }
}

// Long rows (a head's value sums over all cached positions): per row, the heads four at a
// time (16 accumulators), each 64-element piece of the row converted once for the four; the
// rest after the last whole 64 added in double per head, as dot_f16_rows does.
TF_TARGET_AVX512 void dot_f16_group_long(const uint16_t* w, size_t stride, int64_t rows,
                                         const float* af, size_t af_stride, int64_t m, int64_t n,
                                         float scale, float* out, size_t out_stride,
                                         __m512* lanes) {
  const int64_t np = n & ~int64_t(63);
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < rows; r += 16) {
    const int nr = int(std::min<int64_t>(16, rows - r));
    for (int k = 0; k < nr; ++k) {
      const uint16_t* x = w + size_t(r + k) * stride;
      for (int64_t h0 = 0; h0 < m; h0 += 4) {
        const float* a = af + size_t(h0) * af_stride;
        __m512 acc[4][4];
        for (int hh = 0; hh < 4; ++hh)
          for (int j = 0; j < 4; ++j) acc[hh][j] = _mm512_setzero_ps();
        for (int64_t i = 0; i < np; i += 64) {
          __m512 xv[4];
          for (int j = 0; j < 4; ++j) xv[j] = load_h(x + i + 16 * j, 0xFFFF);
          for (int hh = 0; hh < 4; ++hh)
            for (int j = 0; j < 4; ++j)
              acc[hh][j] = _mm512_fmadd_ps(
                  xv[j], _mm512_load_ps(a + size_t(hh) * af_stride + i + 16 * j), acc[hh][j]);
        }
        for (int hh = 0; hh < 4; ++hh)
          lanes[(h0 + hh) * 16 + k] = _mm512_add_ps(_mm512_add_ps(acc[hh][0], acc[hh][2]),
                                                    _mm512_add_ps(acc[hh][1], acc[hh][3]));
      }
    }
    for (int64_t h = 0; h < m; ++h) {
      float* o = out + size_t(h) * out_stride + r;
      if (np == n && nr == 16) {
        _mm512_storeu_ps(o, _mm512_mul_ps(reduce16x16(lanes + h * 16), vscale));
        continue;
      }
      const float* a = af + size_t(h) * af_stride;
      for (int k = 0; k < nr; ++k) {
        const uint16_t* x = w + size_t(r + k) * stride;
        const double sum = np > 0 ? double(reduce16(lanes[h * 16 + k])) : 0.0;
        o[k] = float(add_tail(sum, x, a, np, n)) * scale;
      }
    }
  }
}

TF_TARGET_AVX512 bool dot_f16_group(const uint16_t* w, size_t stride, int64_t rows,
                                    const uint16_t* a, size_t a_stride, int64_t m, int64_t n,
                                    float scale, float* out, size_t out_stride) {
  // Long rows stream four heads' activations per row: only while those stay in L1 (half of a
  // 48 KiB L1 here; beyond it, measured at 3072 positions x 8 heads, the grouped sums were 40%
  // slower than one head at a time, which keeps a head's activations in L1 for all rows).
  const size_t af_stride = size_t(n + 15) / 16 * 16;
  const bool short_rows = n == 64 || n == 128;
  const bool long_rows = n > 128 && m % 4 == 0 && 4 * af_stride * sizeof(float) <= (24u << 10);
  if (m > 16 || !(short_rows || long_rows)) return false;
  // The heads' activations as floats (zeros after n), then 16 rows' lanes per head.
  auto* af = reinterpret_cast<float*>(
      act_scratch(size_t(m) * af_stride * sizeof(float) + size_t(m) * 16 * 64));
  for (int64_t h = 0; h < m; ++h)
    for (int64_t i = 0; i < n; i += 16)
      _mm512_store_ps(af + size_t(h) * af_stride + size_t(i),
                      load_h(a + size_t(h) * a_stride + size_t(i), first(n - i)));
  auto* lanes = reinterpret_cast<__m512*>(af + size_t(m) * af_stride);
  if (n == 64)
    dot_f16_group_n<1>(w, stride, rows, af, m, scale, out, out_stride, lanes);
  else if (n == 128)
    dot_f16_group_n<2>(w, stride, rows, af, m, scale, out, out_stride, lanes);
  else
    for (int64_t h = 0; h < m; h += 4)  // four heads per pass over the rows
      dot_f16_group_long(w, stride, rows, af + size_t(h) * af_stride, af_stride, 4, n, scale,
                         out + size_t(h) * out_stride, out_stride, lanes);
  return true;
}

// ---- Value sums over paged rows ----
//
// Each keeps NV vectors of a head's sums in registers over all positions, walking the
// sequence's blocks in order: the block size does not change the result.

// Walks the rows of a paged head block by block (PagedRows in kernels.h): ROW_BODY runs with
// `r` the row's first byte (plus `extra`) and `j` its position, prefetching 8 rows ahead
// within a block and the next block's first rows near a block's end. (A macro, not a lambda:
// GCC does not compile a lambda's body for its enclosing function's target.)
#define TF_FOR_EACH_PAGED_ROW(rows, len, extra, ROW_BODY)                                          \
  do {                                                                                             \
    const int64_t B_ = (rows).block_len();                                                         \
    for (int64_t b0_ = 0, bi_ = 0; b0_ < (len); b0_ += B_, ++bi_) {                                \
      const uint8_t* base_ = (rows).blocks[bi_] + (rows).offset + (extra);                         \
      const int64_t n_ = std::min(B_, (len)-b0_);                                                  \
      const uint8_t* next_ =                                                                       \
          b0_ + B_ < (len) ? (rows).blocks[bi_ + 1] + (rows).offset + (extra) : nullptr;           \
      for (int64_t i_ = 0; i_ < n_; ++i_) {                                                        \
        const uint8_t* r = base_ + size_t(i_) * (rows).stride;                                     \
        if (i_ + 8 < n_)                                                                           \
          _mm_prefetch(reinterpret_cast<const char*>(r + 8 * (rows).stride), _MM_HINT_T0);         \
        else if (next_)                                                                            \
          _mm_prefetch(reinterpret_cast<const char*>(next_ + size_t(i_ + 8 - n_) * (rows).stride), \
                       _MM_HINT_T0);                                                               \
        const int64_t j = b0_ + i_;                                                                \
        ROW_BODY                                                                                   \
      }                                                                                            \
    }                                                                                              \
  } while (0)

// NV vectors (16 * NV columns) of G weight vectors' sums, in registers over all positions;
// each row's NV vectors are converted once for the G.
template <int NV, int G>
TF_TARGET_AVX512 void f16_wsum_tile(const PagedRows& rows, int64_t len, size_t extra,
                                    const float* p, size_t p_stride, float* out,
                                    size_t out_stride) {
  __m512 acc[G][NV];
  for (int g = 0; g < G; ++g)
    for (int k = 0; k < NV; ++k) acc[g][k] = _mm512_setzero_ps();
  const int64_t B = rows.block_len();
  for (int64_t b0 = 0; b0 < len; b0 += B) {
    const uint8_t* base = rows.blocks[b0 / B] + rows.offset + extra;
    const int64_t n = std::min(B, len - b0);
    const float* pj = p + b0;
    for (int64_t i = 0; i < n; ++i) {
      const auto* v = reinterpret_cast<const uint16_t*>(base + size_t(i) * rows.stride);
      _mm_prefetch(reinterpret_cast<const char*>(v) + 8 * rows.stride, _MM_HINT_T0);
      __m512 x[NV];
      for (int k = 0; k < NV; ++k) x[k] = load_h(v + 16 * k, 0xFFFF);
      for (int g = 0; g < G; ++g) {
        const __m512 w = _mm512_set1_ps(pj[size_t(g) * p_stride + size_t(i)]);
        for (int k = 0; k < NV; ++k) acc[g][k] = _mm512_fmadd_ps(w, x[k], acc[g][k]);
      }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int k = 0; k < NV; ++k) _mm512_storeu_ps(out + size_t(g) * out_stride + 16 * k, acc[g][k]);
}

// Up to 8 vectors of a head at a time, for as many weight vectors as keep up to 24
// accumulators in registers (the rest of m in one narrower pass). Prefetches run 8 rows ahead
// (past a block's end they touch the pool's next block: harmless).
template <int NV>
TF_TARGET_AVX512 void f16_wsum_columns(const PagedRows& rows, int64_t len, size_t extra,
                                       const float* p, size_t p_stride, int64_t m, float* out,
                                       size_t out_stride) {
  constexpr int kG = NV >= 8 ? 3 : NV >= 4 ? 6 : NV >= 2 ? 8 : 8;
  int64_t h = 0;
  for (; h + kG <= m; h += kG)
    f16_wsum_tile<NV, kG>(rows, len, extra, p + size_t(h) * p_stride, p_stride,
                          out + size_t(h) * out_stride, out_stride);
  using Tile = void (*)(const PagedRows&, int64_t, size_t, const float*, size_t, float*, size_t);
  static constexpr Tile kRest[] = {nullptr,
                                   f16_wsum_tile<NV, 1>,
                                   f16_wsum_tile<NV, std::min(2, kG)>,
                                   f16_wsum_tile<NV, std::min(3, kG)>,
                                   f16_wsum_tile<NV, std::min(4, kG)>,
                                   f16_wsum_tile<NV, std::min(5, kG)>,
                                   f16_wsum_tile<NV, std::min(6, kG)>,
                                   f16_wsum_tile<NV, std::min(7, kG)>};
  if (h < m)  // the rest (fewer than kG) in one pass
    kRest[m - h](rows, len, extra, p + size_t(h) * p_stride, p_stride, out + size_t(h) * out_stride,
                 out_stride);
}

// Tiles of NV vectors for G = 1..8 weight vectors.
template <int NV>
struct WsumTiles {
  using Tile = void (*)(const PagedRows&, int64_t, size_t, const float*, size_t, float*, size_t);
  static constexpr Tile kByG[] = {nullptr,
                                  f16_wsum_tile<NV, 1>,
                                  f16_wsum_tile<NV, 2>,
                                  f16_wsum_tile<NV, 3>,
                                  f16_wsum_tile<NV, 4>,
                                  f16_wsum_tile<NV, 5>,
                                  f16_wsum_tile<NV, 6>,
                                  f16_wsum_tile<NV, 7>,
                                  f16_wsum_tile<NV, 8>};
};

TF_TARGET_AVX512 void f16_weighted_sum(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                                       const float* p, size_t p_stride, int64_t m, float* out,
                                       size_t out_stride) {
  if (m <= 8) {
    // A few weight vectors (a decoding token's heads of one KV head): all of them in one pass
    // over the rows, the head's columns split so that at most 24 sums are in registers.
    using Tile = WsumTiles<1>::Tile;
    static constexpr const Tile* kByNv[] = {nullptr,
                                            WsumTiles<1>::kByG,
                                            WsumTiles<2>::kByG,
                                            WsumTiles<3>::kByG,
                                            WsumTiles<4>::kByG,
                                            WsumTiles<5>::kByG,
                                            WsumTiles<6>::kByG,
                                            WsumTiles<7>::kByG,
                                            WsumTiles<8>::kByG};
    const int64_t nvc = std::max<int64_t>(1, std::min<int64_t>(8, 24 / m));
    for (int64_t v = 0; v < D / 16; v += nvc) {
      const int64_t nv = std::min(nvc, D / 16 - v);
      kByNv[nv][m](rows, len, size_t(start + 16 * v) * 2, p, p_stride, out + 16 * v, out_stride);
    }
    return;
  }
  using Cols =
      void (*)(const PagedRows&, int64_t, size_t, const float*, size_t, int64_t, float*, size_t);
  static constexpr Cols kCols[] = {f16_wsum_columns<1>, f16_wsum_columns<2>, f16_wsum_columns<3>,
                                   f16_wsum_columns<4>, f16_wsum_columns<5>, f16_wsum_columns<6>,
                                   f16_wsum_columns<7>, f16_wsum_columns<8>};
  for (int64_t v = 0; v < D / 16; v += 8) {
    const int64_t nv = std::min<int64_t>(8, D / 16 - v);
    kCols[nv - 1](rows, len, size_t(start + 16 * v) * 2, p, p_stride, m, out + 16 * v, out_stride);
  }
}

// NB Q8_0 blocks (32 * NB columns) of the head: their 2 * NB vectors of sums; per position and
// block, w = p[j] * d (as the reference) times the codes.
template <int NB>
TF_TARGET_AVX512 void q8_0_wsum_slab(const PagedRows& rows, int64_t len, size_t extra,
                                     const float* p, float* out) {
  __m512 acc[2 * NB];
  for (int k = 0; k < 2 * NB; ++k) acc[k] = _mm512_setzero_ps();
  TF_FOR_EACH_PAGED_ROW(rows, len, extra, {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(r);
    for (int k = 0; k < NB; ++k) {
      const __m512 w = _mm512_set1_ps(p[j] * _cvtsh_ss(b[k].d));
      const auto* q = reinterpret_cast<const __m128i*>(b[k].qs);
      const __m512 x0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q)));
      const __m512 x1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1)));
      acc[2 * k] = _mm512_fmadd_ps(w, x0, acc[2 * k]);
      acc[2 * k + 1] = _mm512_fmadd_ps(w, x1, acc[2 * k + 1]);
    }
  });
#undef TF_FOR_EACH_PAGED_ROW
  for (int k = 0; k < 2 * NB; ++k) _mm512_storeu_ps(out + 16 * k, acc[k]);
}

TF_TARGET_AVX512 void q8_0_weighted_sum(const PagedRows& rows, int64_t len, int64_t start,
                                        int64_t D, const float* p, float* out) {
  using Slab = void (*)(const PagedRows&, int64_t, size_t, const float*, float*);
  static constexpr Slab kSlabs[] = {q8_0_wsum_slab<1>, q8_0_wsum_slab<2>, q8_0_wsum_slab<3>,
                                    q8_0_wsum_slab<4>, q8_0_wsum_slab<5>, q8_0_wsum_slab<6>,
                                    q8_0_wsum_slab<7>, q8_0_wsum_slab<8>};
  for (int64_t b = 0; b < D / 32; b += 8) {
    const int64_t nb = std::min<int64_t>(8, D / 32 - b);
    kSlabs[nb - 1](rows, len, size_t(start / 32 + b) * sizeof(BlockQ8_0), p, out + 32 * b);
  }
}

}  // namespace

void add_rows_avx512(Table& t) {
  t.rows.q8_0_weighted_sum = q8_0_weighted_sum;
  t.rows.f16_weighted_sum = f16_weighted_sum;
  t.rows.dot_f16_group = dot_f16_group;
  t.rows.softmax = softmax;
  t.rows.silu_mul = silu_mul;
  t.rows.to_f16 = to_f16;
  t.rows.round_f16 = round_f16;
  t.rows.dot_f16 = dot_f16_rows;
}

}  // namespace tf::kernels::detail

#endif
