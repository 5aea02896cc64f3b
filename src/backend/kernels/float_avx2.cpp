// AVX2 dot products for unquantized weights: F32 rows with F32 activations, F16 with F16,
// BF16 with BF16. The 16-bit activations are widened to float once per call (the products of
// two halves or two bfloats are exact in float, as in the reference); each row is then
// widened as it streams by and multiplied with FMAs into four independent accumulators.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <type_traits>

#include "tensor/fp16.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Loads 8 weights as float.
struct LoadF32 {
  using T = float;
  TF_TARGET_AVX2 static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float one(float v) { return v; }
};
struct LoadF16 {
  using T = uint16_t;
  TF_TARGET_AVX2 static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float one(uint16_t v) { return fp16_to_f32(v); }
};
struct LoadBF16 {
  using T = uint16_t;
  TF_TARGET_AVX2 static __m256 load8(const uint16_t* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
  static float one(uint16_t v) { return bf16_to_f32(v); }
};

// Activations as floats: F32 ones are used in place, 16-bit ones widened into scratch.
template <class L>
TF_TARGET_AVX2 const float* act_floats(const uint8_t* act, int64_t n) {
  if constexpr (std::is_same_v<L, LoadF32>) {
    return reinterpret_cast<const float*>(act);
  } else {
    auto* f = reinterpret_cast<float*>(act_scratch(size_t(n) * sizeof(float)));
    const auto* a = reinterpret_cast<const uint16_t*>(act);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_store_ps(f + i, L::load8(a + i));
    for (; i < n; ++i) f[i] = L::one(a[i]);
    return f;
  }
}

template <class L>
TF_TARGET_AVX2 void dot_plain(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* act,
                              int64_t n, float* out, int64_t os) {
  const float* a = act_floats<L>(act, n);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const typename L::T*>(w + size_t(r) * stride);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(x + i) + kPrefetch, _MM_HINT_T0);
      if constexpr (sizeof(typename L::T) == 4)
        _mm_prefetch(reinterpret_cast<const char*>(x + i) + kPrefetch + 64, _MM_HINT_T0);
      for (int k = 0; k < 4; ++k)
        acc[k] = _mm256_fmadd_ps(L::load8(x + i + 8 * k), _mm256_loadu_ps(a + i + 8 * k), acc[k]);
    }
    for (; i + 8 <= n; i += 8)
      acc[0] = _mm256_fmadd_ps(L::load8(x + i), _mm256_loadu_ps(a + i), acc[0]);
    float tail = 0.0f;
    for (; i < n; ++i) tail += L::one(x[i]) * a[i];
    out[r * os] =
        hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail;
  }
}

}  // namespace

void add_float_avx2(Table& t) {
  t.dot[slot(DType::F32)] = dot_plain<LoadF32>;
  t.dot[slot(DType::F16)] = dot_plain<LoadF16>;
  t.dot[slot(DType::BF16)] = dot_plain<LoadBF16>;
}

}  // namespace tf::kernels::detail

#endif
