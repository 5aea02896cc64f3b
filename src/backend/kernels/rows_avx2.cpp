// AVX2 version of the many-row fp16 dot (RowOps::dot_f16, used by attention): llama.cpp's
// 16-lane order (see dot_f16 in tensor/quants.cpp) computed as two 8-lane halves per 16-lane
// vector, so the result equals the scalar emulation bit for bit. The AVX-512 version, with
// whole 16-lane vectors and 16 rows reduced at once, is in rows_avx512.cpp.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <algorithm>

#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX2 inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// vec_dot(F16, w, a, n, Sgemm or VecDot), bit for bit.
TF_TARGET_AVX2 float dot_ordered(const uint16_t* w, const uint16_t* a, int64_t n, bool sgemm) {
  alignas(32) float lanes[16];
  if (sgemm && n % 16 == 0) {  // one 16-lane chain
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
      lo = _mm256_fmadd_ps(load8(w + i), load8(a + i), lo);
      hi = _mm256_fmadd_ps(load8(w + i + 8), load8(a + i + 8), hi);
    }
    _mm256_store_ps(lanes, lo);
    _mm256_store_ps(lanes + 8, hi);
    return reduce_add16(lanes);
  }
  // Four 16-lane chains over each 64 elements, folded (0 + 2) + (1 + 3); the rest in double.
  const int64_t np = n & ~int64_t(63);
  __m256 acc[8];
  for (auto& v : acc) v = _mm256_setzero_ps();
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 8; ++j)
      acc[j] = _mm256_fmadd_ps(load8(w + i + 8 * j), load8(a + i + 8 * j), acc[j]);
  // acc[2j] / acc[2j + 1] are the low / high halves of 16-lane chain j.
  _mm256_store_ps(lanes,
                  _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])));
  _mm256_store_ps(lanes + 8,
                  _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
  double sum = reduce_add16(lanes);
  for (int64_t i = np; i < n; ++i) sum += double(fp16_to_f32(w[i]) * fp16_to_f32(a[i]));
  return float(sum);
}

TF_TARGET_AVX2 void dot_f16_rows(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a,
                                 int64_t n, bool sgemm, float scale, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    out[r] = dot_ordered(w + size_t(r) * stride, a, n, sgemm) * scale;
}

// f16_weighted_sum for D % 16 == 0: up to 8 vectors of 8 sums in registers over all rows.
template <int NV>
TF_TARGET_AVX2 void f16_wsum_slab(const PagedRows& rows, int64_t len, size_t extra, const float* p,
                                  float* out) {
  __m256 acc[NV];
  for (int k = 0; k < NV; ++k) acc[k] = _mm256_setzero_ps();
  const int64_t B = rows.block_len();
  for (int64_t b0 = 0, bi = 0; b0 < len; b0 += B, ++bi) {
    const uint8_t* base = rows.blocks[bi] + rows.offset + extra;
    const int64_t n = std::min(B, len - b0);
    for (int64_t j = 0; j < n; ++j) {
      const auto* v = reinterpret_cast<const uint16_t*>(base + size_t(j) * rows.stride);
      const __m256 w = _mm256_set1_ps(p[b0 + j]);
      for (int k = 0; k < NV; ++k) acc[k] = _mm256_fmadd_ps(w, load8(v + 8 * k), acc[k]);
    }
  }
  for (int k = 0; k < NV; ++k) _mm256_storeu_ps(out + 8 * k, acc[k]);
}

TF_TARGET_AVX2 void f16_weighted_sum(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                                     const float* p, size_t p_stride, int64_t m, float* out,
                                     size_t out_stride) {
  using Slab = void (*)(const PagedRows&, int64_t, size_t, const float*, float*);
  static constexpr Slab kSlabs[] = {f16_wsum_slab<2>, f16_wsum_slab<4>, f16_wsum_slab<6>,
                                    f16_wsum_slab<8>};
  for (int64_t h = 0; h < m; ++h)
    for (int64_t v = 0; v < D / 16; v += 4) {
      const int64_t nv = std::min<int64_t>(4, D / 16 - v);
      kSlabs[nv - 1](rows, len, size_t(start + 16 * v) * 2, p + size_t(h) * p_stride,
                     out + size_t(h) * out_stride + 16 * v);
    }
}

}  // namespace

void add_rows_avx2(Table& t) {
  t.rows.dot_f16 = dot_f16_rows;
  t.rows.f16_weighted_sum = f16_weighted_sum;
}

}  // namespace tf::kernels::detail

#endif
