#include "backend/kernels/f16_dot.h"

#if defined(__GNUC__) && !defined(__clang__)
// Vector helpers are only ever inlined into functions compiled for their ISA.
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12 warns inside its own headers about the undefined upper lanes of cvtph.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__x86_64__) || defined(__i386__)
#define TF_F16_DOT_X86 1
#include <immintrin.h>
#endif

#include "tensor/fp16.h"

namespace tf::kernels {

namespace {

#ifdef TF_F16_DOT_X86
// Horizontal sum of 16 lanes in reduce_add16's order: halves, then quarters, then
// (q0 + q2) + (q1 + q3).
inline float reduce16(const float* v) { return reduce_add16(v); }

__attribute__((target("avx512f"), always_inline)) inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

__attribute__((target("avx2,fma,f16c"), always_inline)) inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

__attribute__((target("avx512f"))) float dot_avx512(const uint16_t* w, const uint16_t* a, int64_t n,
                                                   DotKernel kernel) {
  alignas(64) float lanes[16];
  if (kernel == DotKernel::Sgemm && n % 16 == 0) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) acc = _mm512_fmadd_ps(load16(w + i), load16(a + i), acc);
    _mm512_store_ps(lanes, acc);
    return reduce16(lanes);
  }
  const int64_t np = n & ~int64_t(63);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j) acc[j] = _mm512_fmadd_ps(load16(w + i + 16 * j), load16(a + i + 16 * j), acc[j]);
  _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3])));
  double sum = reduce16(lanes);
  for (int64_t i = np; i < n; ++i) sum += double(fp16_to_f32(w[i]) * fp16_to_f32(a[i]));
  return float(sum);
}

// The same 16 lanes as two 8-lane halves.
__attribute__((target("avx2,fma,f16c"))) float dot_avx2(const uint16_t* w, const uint16_t* a, int64_t n,
                                                       DotKernel kernel) {
  alignas(32) float lanes[16];
  if (kernel == DotKernel::Sgemm && n % 16 == 0) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
      lo = _mm256_fmadd_ps(load8(w + i), load8(a + i), lo);
      hi = _mm256_fmadd_ps(load8(w + i + 8), load8(a + i + 8), hi);
    }
    _mm256_store_ps(lanes, lo);
    _mm256_store_ps(lanes + 8, hi);
    return reduce16(lanes);
  }
  const int64_t np = n & ~int64_t(63);
  __m256 acc[8];
  for (auto& v : acc) v = _mm256_setzero_ps();
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(load8(w + i + 8 * j), load8(a + i + 8 * j), acc[j]);
  // acc[2j] / acc[2j+1] are the low / high halves of 16-lane accumulator j.
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])));
  _mm256_store_ps(lanes + 8, _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
  double sum = reduce16(lanes);
  for (int64_t i = np; i < n; ++i) sum += double(fp16_to_f32(w[i]) * fp16_to_f32(a[i]));
  return float(sum);
}


#endif  // TF_F16_DOT_X86

}  // namespace

namespace detail {
int f16_dot_best_level() {
#ifdef TF_F16_DOT_X86
  static const int level = __builtin_cpu_supports("avx512f") ? 2
                           : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                              __builtin_cpu_supports("f16c"))
                               ? 1
                               : 0;
  return level;
#else
  return 0;
#endif
}

float dot_f16_ordered_at(int level, const uint16_t* w, const uint16_t* a, int64_t n, DotKernel kernel) {
#ifdef TF_F16_DOT_X86
  if (level >= 2) return dot_avx512(w, a, n, kernel);
  if (level == 1) return dot_avx2(w, a, n, kernel);
#endif
  return vec_dot(DType::F16, w, a, n, kernel);
}
}  // namespace detail

float dot_f16_ordered(const uint16_t* w, const uint16_t* a, int64_t n, DotKernel kernel) {
  return detail::dot_f16_ordered_at(detail::f16_dot_best_level(), w, a, n, kernel);
}

}  // namespace tf::kernels
