// AVX-512 dot products for unquantized weights (see float_avx2.cpp for the scheme). Tails use
// masked loads, which read zeros past the end. BF16 uses vdpbf16ps when the CPU has
// AVX512_BF16: it multiplies bfloat pairs straight from memory and adds them in float, so the
// activations need no widening at all.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace tf::kernels::detail {
namespace {

// Loads 16 weights (fewer under a mask, zeros elsewhere) as float.
struct LoadF32 {
  using T = float;
  TF_TARGET_AVX512 static __m512 load16(const float* p, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, p);
  }
};
struct LoadF16 {
  using T = uint16_t;
  TF_TARGET_AVX512 static __m512 load16(const uint16_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};
struct LoadBF16 {
  using T = uint16_t;
  TF_TARGET_AVX512 static __m512 load16(const uint16_t* p, __mmask16 m) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
};

template <class L>
TF_TARGET_AVX512 const float* act_floats(const uint8_t* act, int64_t n) {
  if constexpr (std::is_same_v<L, LoadF32>) {
    return reinterpret_cast<const float*>(act);
  } else {
    auto* f = reinterpret_cast<float*>(act_scratch(size_t(n + 16) * sizeof(float)));
    const auto* a = reinterpret_cast<const typename L::T*>(act);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
      _mm512_store_ps(f + i, L::load16(a + i, m));
    }
    return f;
  }
}

template <class L>
TF_TARGET_AVX512 void dot_plain(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* act,
                                int64_t n, float* out, int64_t os) {
  const float* a = act_floats<L>(act, n);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const typename L::T*>(w + size_t(r) * stride);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
      const char* pf = reinterpret_cast<const char*>(x + i) + kPrefetch;
      for (size_t o = 0; o < 64 * sizeof(typename L::T); o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
      for (int k = 0; k < 4; ++k)
        acc[k] = _mm512_fmadd_ps(L::load16(x + i + 16 * k, 0xFFFF), _mm512_loadu_ps(a + i + 16 * k),
                                 acc[k]);
    }
    for (; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
      acc[0] = _mm512_fmadd_ps(L::load16(x + i, m), _mm512_maskz_loadu_ps(m, a + i), acc[0]);
    }
    out[r * os] = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  }
}

// vdpbf16ps: per float lane, acc += w[2j] * a[2j] + w[2j+1] * a[2j+1] over bfloat pairs.
TF_TARGET_AVX512_BF16 inline __m512 dp_bf16(__m512 acc, __m512i w, __m512i a) {
  return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)a);
}

TF_TARGET_AVX512_BF16 void dot_bf16_dp(const uint8_t* w, size_t stride, int64_t nrows,
                                       const uint8_t* act, int64_t n, float* out, int64_t os) {
  const auto* a = reinterpret_cast<const uint16_t*>(act);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const uint16_t*>(w + size_t(r) * stride);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
      const char* pf = reinterpret_cast<const char*>(x + i) + kPrefetch;
      _mm_prefetch(pf, _MM_HINT_T0);
      _mm_prefetch(pf + 64, _MM_HINT_T0);
      acc0 = dp_bf16(acc0, _mm512_loadu_si512(x + i), _mm512_loadu_si512(a + i));
      acc1 = dp_bf16(acc1, _mm512_loadu_si512(x + i + 32), _mm512_loadu_si512(a + i + 32));
    }
    for (; i < n; i += 32) {
      const int64_t left = n - i;
      const __mmask32 m = left >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << left) - 1);
      acc0 = dp_bf16(acc0, _mm512_maskz_loadu_epi16(m, x + i), _mm512_maskz_loadu_epi16(m, a + i));
    }
    out[r * os] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

}  // namespace

void add_float_avx512(Table& t, const Features& f) {
  t.dot[slot(DType::F32)] = dot_plain<LoadF32>;
  t.dot[slot(DType::F16)] = dot_plain<LoadF16>;
  t.dot[slot(DType::BF16)] = f.bf16 ? dot_bf16_dp : dot_plain<LoadBF16>;
}

}  // namespace tf::kernels::detail

#endif
