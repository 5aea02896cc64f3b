// AVX2 matrix-matrix kernels (gemm in kernels.h); the scheme is gemm_avx512.cpp's (see
// gemm_driver.h for the loops) with 8-lane vectors and 16 registers, so smaller register tiles.
//
// Without VNNI the byte products take vpmaddubsw (unsigned codes times signed activations into
// int16 pair sums), a few of which are added in int16 while that cannot overflow, then vpmaddwd
// by ones into int32 lanes. As with AVX-512, a lane holds a whole Q4_0 block or K sub-block
// (a group is 8 of them, vector k holding dword k of each: an 8 x 8 or 8 x 4 transpose).
#include "backend/kernels/gemm_driver.h"
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <type_traits>

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX2 inline __m256i load(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
TF_TARGET_AVX2 inline __m256i loada(const void* p) {
  return _mm256_load_si256(static_cast<const __m256i*>(p));
}
TF_TARGET_AVX2 inline void store(void* p, __m256i v) {
  _mm256_store_si256(static_cast<__m256i*>(p), v);
}

// 8 rows of 8 dwords (y[L] = row L) to v[k] dword L = row L, dword k.
TF_TARGET_AVX2 inline void t8x8(const __m256i y[8], __m256i v[8]) {
  __m256i a[8], b[8];
  for (int i = 0; i < 4; ++i) {
    a[2 * i] = _mm256_unpacklo_epi32(y[2 * i], y[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_epi32(y[2 * i], y[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3
    b[4 * h + 0] = _mm256_unpacklo_epi64(a[4 * h], a[4 * h + 2]);
    b[4 * h + 1] = _mm256_unpackhi_epi64(a[4 * h], a[4 * h + 2]);
    b[4 * h + 2] = _mm256_unpacklo_epi64(a[4 * h + 1], a[4 * h + 3]);
    b[4 * h + 3] = _mm256_unpackhi_epi64(a[4 * h + 1], a[4 * h + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_permute2x128_si256(b[k], b[4 + k], 0x20);
    v[k + 4] = _mm256_permute2x128_si256(b[k], b[4 + k], 0x31);
  }
}

// 8 rows of 4 dwords, y[m] = [row m | row m + 4], to v[k] dword L = row L, dword k.
TF_TARGET_AVX2 inline void t8x4(const __m256i y[4], __m256i v[4]) {
  const __m256i a0 = _mm256_unpacklo_epi32(y[0], y[1]), a1 = _mm256_unpackhi_epi32(y[0], y[1]);
  const __m256i a2 = _mm256_unpacklo_epi32(y[2], y[3]), a3 = _mm256_unpackhi_epi32(y[2], y[3]);
  v[0] = _mm256_unpacklo_epi64(a0, a2);
  v[1] = _mm256_unpackhi_epi64(a0, a2);
  v[2] = _mm256_unpacklo_epi64(a1, a3);
  v[3] = _mm256_unpackhi_epi64(a1, a3);
}

TF_TARGET_AVX2 inline __m256 halves8(const uint16_t* h) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}

TF_TARGET_AVX2 inline float hsum8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

template <int R, int T>
TF_TARGET_AVX2 inline void acc_begin(const Acc& acc, __m256 (&v)[R][T]) {
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t)
      v[r][t] = acc.first ? _mm256_setzero_ps() : _mm256_load_ps(acc.acc + (t * R + r) * 16);
}
template <int R, int T>
TF_TARGET_AVX2 inline void acc_save(const Acc& acc, const __m256 (&v)[R][T]) {
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) _mm256_store_ps(acc.acc + (t * R + r) * 16, v[r][t]);
}

// ---- Q4_0: a lane per block, 8 blocks per group ----------------------------------------------

struct alignas(32) ActQ4_0 {
  int8_t code[8][32];  // code[k] dword L = elements 4k..4k+3 of block L
  int32_t bias[8];     // -8 * (sum of block L's codes)
  float d[8];
};
template <int R>
struct alignas(32) PanelQ4_0 {
  uint8_t code[R][8][32];
  float d[R][8];
};

struct Q4_0K {
  static constexpr int kR = 2, kT = 3, kChunk = 8;
  using Panel = PanelQ4_0<kR>;
  static int64_t units(int64_t n) { return (n / kQK + 7) / 8; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK) * sizeof(BlockQ4_0); }
  static size_t act_bytes(int64_t n) { return size_t(units(n)) * sizeof(ActQ4_0); }
  static size_t panel_bytes(int64_t n) { return size_t(units(n)) * sizeof(Panel); }

  TF_TARGET_AVX2 static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<ActQ4_0*>(out);
    const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    for (int64_t b0 = 0; b0 < nb; b0 += 8, ++g) {
      __m256i rows[8], v[8];
      alignas(16) uint16_t d[8];
      for (int L = 0; L < 8; ++L) {
        const bool ok = b0 + L < nb;
        rows[L] = ok ? load(y[b0 + L].qs) : _mm256_setzero_si256();
        d[L] = ok ? y[b0 + L].d : 0;
      }
      t8x8(rows, v);
      __m256i s = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k) {
        store(g->code[k], v[k]);
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(eight, v[k]), ones));
      }
      store(g->bias, _mm256_sub_epi32(_mm256_setzero_si256(), s));
      _mm256_store_ps(g->d, halves8(d));
    }
  }

  TF_TARGET_AVX2 static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                  uint8_t* out) {
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<Panel*>(out);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int64_t b0 = 0; b0 < nb; b0 += 8, ++g) {
      for (int r = 0; r < kR; ++r) {
        const auto* x =
            reinterpret_cast<const BlockQ4_0*>(w + size_t(std::min(r, nr - 1)) * stride);
        __m256i y[4], q[4];
        alignas(16) uint16_t d[8];
        for (int m = 0; m < 4; ++m) {
          __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
          if (r < nr && b0 + m < nb) lo = _mm_loadu_si128((const __m128i*)x[b0 + m].qs);
          if (r < nr && b0 + m + 4 < nb) hi = _mm_loadu_si128((const __m128i*)x[b0 + m + 4].qs);
          y[m] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        }
        for (int L = 0; L < 8; ++L) d[L] = r < nr && b0 + L < nb ? x[b0 + L].d : 0;
        t8x4(y, q);
        for (int k = 0; k < 4; ++k) {
          store(g->code[r][k], _mm256_and_si256(q[k], low4));
          store(g->code[r][k + 4], _mm256_and_si256(_mm256_srli_epi16(q[k], 4), low4));
        }
        _mm256_store_ps(g->d[r], halves8(d));
      }
    }
  }

  template <int T>
  TF_TARGET_AVX2 static void micro(const uint8_t* panel, const uint8_t* act, size_t ab, int64_t n,
                                   int64_t u0, int64_t u1, Acc ac, float* out, int64_t os, int nr) {
    __m256 acc[kR][T];
    acc_begin(ac, acc);
    const __m256i ones = _mm256_set1_epi16(1);
    const auto* p = reinterpret_cast<const Panel*>(panel) + u0;
    for (int64_t g = u0; g < u1; ++g, ++p) {
      const ActQ4_0* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const ActQ4_0*>(act + size_t(t) * ab) + g;
      // Pair sums of at most 15 * 128 * 2, eight of them: within int16.
      __m256i s[kR][T];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r)
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        __m256i wv[kR];
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) wv[r] = loada(p->code[r][k]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i av = loada(a[t]->code[k]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r)
            s[r][t] = _mm256_add_epi16(s[r][t], _mm256_maddubs_epi16(wv[r], av));
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m256 dw = _mm256_load_ps(p->d[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i i32 = _mm256_add_epi32(_mm256_madd_epi16(s[r][t], ones), loada(a[t]->bias));
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32),
                                      _mm256_mul_ps(dw, _mm256_load_ps(a[t]->d)), acc[r][t]);
        }
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = hsum8(acc[r][t]);
  }
};

// ---- Q8_0: llama.cpp's order (see gemm_avx512.cpp) --------------------------------------------
//
// Per row, token and block, 8 lanes: lane l = the int32 sum of elements 4l..4l+3. Both sides
// are widened to int16 (exact for every int8, -128 included) with the even elements in one
// vector and the odd ones in another, so vpmaddwd of each gives lane l the pairs (4l, 4l+2)
// and (4l+1, 4l+3), and one add the group of 4, in lane order.

struct alignas(32) ActQ8_0 {
  int16_t even[16], odd[16];
};
template <int R>
struct alignas(32) PanelQ8_0 {
  int16_t even[R][16], odd[R][16];
};

// The even bytes of 32 in the low 128 bits, the odd ones in the high.
TF_TARGET_AVX2 inline __m256i split_even_odd(__m256i v) {
  const __m256i idx = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2,
                                       4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, idx), 0xD8);
}

struct Q8_0K {
  static constexpr int kR = 2, kT = 3, kChunk = 64;
  using Panel = PanelQ8_0<kR>;
  static int64_t units(int64_t n) { return n / kQK; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK) * sizeof(BlockQ8_0); }
  static size_t act_bytes(int64_t n) {
    const size_t nb = size_t(n / kQK);
    return nb * sizeof(ActQ8_0) + align64(nb * sizeof(float));
  }
  static size_t panel_bytes(int64_t n) {
    const size_t nb = size_t(n / kQK);
    return nb * sizeof(Panel) + align64(nb * kR * sizeof(float));
  }

  TF_TARGET_AVX2 static void widen(const int8_t* qs, int16_t* even, int16_t* odd) {
    const __m256i s = split_even_odd(load(qs));
    store(even, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(s)));
    store(odd, _mm256_cvtepi8_epi16(_mm256_extracti128_si256(s, 1)));
  }

  TF_TARGET_AVX2 static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
    const int64_t nb = n / kQK;
    auto* b = reinterpret_cast<ActQ8_0*>(out);
    auto* d = reinterpret_cast<float*>(out + size_t(nb) * sizeof(ActQ8_0));
    for (int64_t i = 0; i < nb; ++i) {
      widen(y[i].qs, b[i].even, b[i].odd);
      d[i] = _cvtsh_ss(y[i].d);
    }
  }

  TF_TARGET_AVX2 static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                  uint8_t* out) {
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<Panel*>(out);
    auto* d = reinterpret_cast<float*>(out + size_t(nb) * sizeof(Panel));
    for (int r = 0; r < kR; ++r) {
      const auto* x = reinterpret_cast<const BlockQ8_0*>(w + size_t(std::min(r, nr - 1)) * stride);
      for (int64_t i = 0; i < nb; ++i) {
        if (r < nr) {
          widen(x[i].qs, g[i].even[r], g[i].odd[r]);
          d[i * kR + r] = _cvtsh_ss(x[i].d);
        } else {
          store(g[i].even[r], _mm256_setzero_si256());
          store(g[i].odd[r], _mm256_setzero_si256());
          d[i * kR + r] = 0.0f;
        }
      }
    }
  }

  template <int T>
  TF_TARGET_AVX2 static void micro(const uint8_t* panel, const uint8_t* act, size_t ab, int64_t n,
                                   int64_t u0, int64_t u1, Acc ac, float* out, int64_t os, int nr) {
    const int64_t nb = n / kQK;
    __m256 acc[kR][T];
    acc_begin(ac, acc);
    const auto* p = reinterpret_cast<const Panel*>(panel);
    const auto* dw = reinterpret_cast<const float*>(panel + size_t(nb) * sizeof(Panel));
    const ActQ8_0* a[T];
    const float* da[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      a[t] = reinterpret_cast<const ActQ8_0*>(act + size_t(t) * ab);
      da[t] = reinterpret_cast<const float*>(act + size_t(t) * ab + size_t(nb) * sizeof(ActQ8_0));
    }
    for (int64_t i = u0; i < u1; ++i) {
      __m256i we[kR], wo[kR];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        we[r] = loada(p[i].even[r]);
        wo[r] = loada(p[i].odd[r]);
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i ae = loada(a[t][i].even), ao = loada(a[t][i].odd);
        const __m256 dt = _mm256_set1_ps(da[t][i]);
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) {
          const __m256i s =
              _mm256_add_epi32(_mm256_madd_epi16(we[r], ae), _mm256_madd_epi16(wo[r], ao));
          const __m256 d = _mm256_mul_ps(_mm256_set1_ps(dw[i * kR + r]), dt);
          acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[r][t]);
        }
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = hsum8(acc[r][t]);  // ggml's hsum_float_8
  }
};

// ---- Q4_K / Q5_K: a lane per 32-element sub-block, one super-block per group -----------------

struct alignas(32) ActK4 {
  int8_t code[8][32];
  float d;
  float pad[7];
};
struct alignas(32) ActK4Mins {
  int16_t bsum[16];  // activation sums of sub-blocks 0..15 of two super-blocks
  float d[8];        // d_a of super-block L / 4
};
template <int R>
struct alignas(32) PanelK4 {
  uint8_t code[R][8][32];
  int32_t sc[R][8];
  float d[R][8];
};
template <int R>
struct alignas(32) PanelK4Mins {
  int16_t m[R][16];
  float dmin[R][8];
};

template <bool kQ5>
struct Q45K {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  static constexpr int kR = 2, kT = 2, kChunk = 8;
  using Panel = PanelK4<kR>;
  using PanelMins = PanelK4Mins<kR>;
  static int64_t units(int64_t n) { return n / kQK_K; }
  static int64_t min_groups(int64_t n) { return (n / kQK_K + 1) / 2; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK_K) * sizeof(Block); }
  static size_t act_bytes(int64_t n) {
    return size_t(units(n)) * sizeof(ActK4) + size_t(min_groups(n)) * sizeof(ActK4Mins);
  }
  static size_t panel_bytes(int64_t n) {
    return size_t(units(n)) * sizeof(Panel) + size_t(min_groups(n)) * sizeof(PanelMins);
  }

  TF_TARGET_AVX2 static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
    const int64_t nb = n / kQK_K;
    auto* g = reinterpret_cast<ActK4*>(out);
    for (int64_t i = 0; i < nb; ++i) {
      __m256i rows[8], v[8];
      for (int L = 0; L < 8; ++L) rows[L] = load(y[i].qs + 32 * L);
      t8x8(rows, v);
      for (int k = 0; k < 8; ++k) store(g[i].code[k], v[k]);
      g[i].d = y[i].d;
    }
    auto* mg = reinterpret_cast<ActK4Mins*>(g + nb);
    for (int64_t i = 0; i < min_groups(n); ++i) {
      for (int q = 0; q < 2; ++q) {
        const int64_t s = 2 * i + q;
        __m128i b = _mm_setzero_si128();
        if (s < nb) {  // pairs of the per-16 sums
          const auto* bs = reinterpret_cast<const __m128i*>(y[s].bsums);
          b = _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs + 1));
        }
        _mm_store_si128(reinterpret_cast<__m128i*>(mg[i].bsum + 8 * q), b);
        for (int l = 0; l < 4; ++l) mg[i].d[4 * q + l] = s < nb ? y[s].d : 0.0f;
      }
    }
  }

  TF_TARGET_AVX2 static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                  uint8_t* out) {
    const int64_t nb = n / kQK_K;
    auto* g = reinterpret_cast<Panel*>(out);
    auto* mg = reinterpret_cast<PanelMins*>(g + nb);
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int r = 0; r < kR; ++r) {
      const auto* x = reinterpret_cast<const Block*>(w + size_t(std::min(r, nr - 1)) * stride);
      const bool have = r < nr;
      for (int64_t i = 0; i < nb; ++i) {
        if (!have) {
          for (int k = 0; k < 8; ++k) store(g[i].code[r][k], _mm256_setzero_si256());
          store(g[i].sc[r], _mm256_setzero_si256());
          _mm256_store_ps(g[i].d[r], _mm256_setzero_ps());
          continue;
        }
        __m256i rows[8], v[8];
        __m256i qh = _mm256_setzero_si256();
        if constexpr (kQ5) qh = load(x[i].qh);
        for (int c = 0; c < 4; ++c) {  // chunk c: low nibbles sub-block 2c, high 2c + 1
          const __m256i l = load(x[i].qs + 32 * c);
          rows[2 * c] = _mm256_and_si256(l, low4);
          rows[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(l, 4), low4);
          if constexpr (kQ5) {
            for (int j = 0; j < 2; ++j) {
              const __m256i bit =
                  _mm256_and_si256(_mm256_srl_epi64(qh, _mm_cvtsi32_si128(2 * c + j)), one);
              rows[2 * c + j] = _mm256_or_si256(rows[2 * c + j], _mm256_slli_epi16(bit, 4));
            }
          }
        }
        t8x8(rows, v);
        for (int k = 0; k < 8; ++k) store(g[i].code[r][k], v[k]);
        uint64_t scs, mns;
        unpack_k_scales(x[i].scales, &scs, &mns);
        store(g[i].sc[r], _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(scs))));
        _mm256_store_ps(g[i].d[r], _mm256_set1_ps(_cvtsh_ss(x[i].d)));
      }
      for (int64_t i = 0; i < min_groups(n); ++i) {
        alignas(16) uint8_t m[16];
        alignas(16) uint16_t dm[8];
        for (int q = 0; q < 2; ++q) {
          const int64_t s = 2 * i + q;
          const bool ok = have && s < nb;
          uint64_t scs = 0, mns = 0;
          if (ok) unpack_k_scales(x[s].scales, &scs, &mns);
          std::memcpy(m + 8 * q, &mns, 8);
          for (int l = 0; l < 4; ++l) dm[4 * q + l] = ok ? x[s].dmin : 0;
        }
        store(mg[i].m[r],
              _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(m))));
        _mm256_store_ps(mg[i].dmin[r], halves8(dm));
      }
    }
  }

  template <int T>
  TF_TARGET_AVX2 static void micro(const uint8_t* panel, const uint8_t* act, size_t ab, int64_t n,
                                   int64_t u0, int64_t u1, Acc ac, float* out, int64_t os, int nr) {
    const int64_t nb = n / kQK_K;
    __m256 acc[kR][T];
    acc_begin(ac, acc);
    const __m256i ones = _mm256_set1_epi16(1);
    const auto* p = reinterpret_cast<const Panel*>(panel) + u0;
    for (int64_t g = u0; g < u1; ++g, ++p) {
      const ActK4* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const ActK4*>(act + size_t(t) * ab) + g;
      __m256i s[kR][T], s16[kR][T];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r)
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[r][t] = s16[r][t] = _mm256_setzero_si256();
      // Pair sums of at most 31 * 128 * 2: four (Q5_K) or eight (Q4_K) fit in int16.
      constexpr int kFlush = kQ5 ? 4 : 8;
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        __m256i wv[kR];
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) wv[r] = loada(p->code[r][k]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i av = loada(a[t]->code[k]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) {
            s16[r][t] = _mm256_add_epi16(s16[r][t], _mm256_maddubs_epi16(wv[r], av));
            if (k % kFlush == kFlush - 1) {
              s[r][t] = _mm256_add_epi32(s[r][t], _mm256_madd_epi16(s16[r][t], ones));
              s16[r][t] = _mm256_setzero_si256();
            }
          }
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m256i sc = loada(p->sc[r]);
        const __m256 dw = _mm256_load_ps(p->d[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(s[r][t], sc)),
                                      _mm256_mul_ps(dw, _mm256_set1_ps(a[t]->d)), acc[r][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    const auto* pm = reinterpret_cast<const PanelMins*>(reinterpret_cast<const Panel*>(panel) + nb);
    for (int64_t g = 0; g < min_groups(n); ++g, ++pm) {
      const ActK4Mins* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        a[t] =
            reinterpret_cast<const ActK4Mins*>(act + size_t(t) * ab + size_t(nb) * sizeof(ActK4)) +
            g;
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m256i m = loada(pm->m[r]);
        const __m256 dm = _mm256_load_ps(pm->dmin[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i ms = _mm256_madd_epi16(m, loada(a[t]->bsum));
          acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms),
                                       _mm256_mul_ps(dm, _mm256_load_ps(a[t]->d)), acc[r][t]);
        }
      }
    }
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = hsum8(acc[r][t]);
  }
};

// ---- Q6_K: a lane per 16-element sub-block, half a super-block per group ---------------------

struct alignas(32) ActK6 {
  int8_t code[4][32];
  int32_t bias[8];  // -32 * (activation sum of the sub-block)
  float d;
  float pad[7];
};
template <int R>
struct alignas(32) PanelK6 {
  uint8_t code[R][4][32];
  int32_t sc[R][8];
  float d[R][8];
};

struct Q6K {
  static constexpr int kR = 2, kT = 2, kChunk = 16;
  using Panel = PanelK6<kR>;
  static int64_t units(int64_t n) { return n / kQK_K * 2; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK_K) * sizeof(BlockQ6_K); }
  static size_t act_bytes(int64_t n) { return size_t(units(n)) * sizeof(ActK6); }
  static size_t panel_bytes(int64_t n) { return size_t(units(n)) * sizeof(Panel); }

  TF_TARGET_AVX2 static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
    auto* g = reinterpret_cast<ActK6*>(out);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
      for (int h = 0; h < 2; ++h, ++g) {  // sub-blocks 8h .. 8h + 7
        const int8_t* q = y[i].qs + 128 * h;
        __m256i rows[4], v[4];
        for (int m = 0; m < 4; ++m)
          rows[m] = _mm256_inserti128_si256(
              _mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)(q + 16 * m))),
              _mm_loadu_si128((const __m128i*)(q + 16 * (m + 4))), 1);
        t8x4(rows, v);
        for (int k = 0; k < 4; ++k) store(g->code[k], v[k]);
        const __m256i bs =
            _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i*)(y[i].bsums + 8 * h)));
        store(g->bias, _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bs, 5)));
        g->d = y[i].d;
      }
    }
  }

  TF_TARGET_AVX2 static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                  uint8_t* out) {
    const int64_t nb = n / kQK_K;
    auto* g = reinterpret_cast<Panel*>(out);
    const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
    for (int r = 0; r < kR; ++r) {
      const auto* x = reinterpret_cast<const BlockQ6_K*>(w + size_t(std::min(r, nr - 1)) * stride);
      for (int64_t i = 0; i < nb; ++i) {
        for (int h = 0; h < 2; ++h) {
          Panel& pg = g[2 * i + h];
          if (r >= nr) {
            for (int k = 0; k < 4; ++k) store(pg.code[r][k], _mm256_setzero_si256());
            store(pg.sc[r], _mm256_setzero_si256());
            _mm256_store_ps(pg.d[r], _mm256_setzero_ps());
            continue;
          }
          // Elements 128h + 32j + l, j = 0..3, in order (see dot_q6k in kquants_avx2.cpp).
          const __m256i l0 = load(x[i].ql + 64 * h), l1 = load(x[i].ql + 64 * h + 32);
          const __m256i hb = load(x[i].qh + 32 * h);
          const __m256i e[4] = {
              _mm256_or_si256(_mm256_and_si256(l0, low4),
                              _mm256_and_si256(_mm256_slli_epi16(hb, 4), bits45)),
              _mm256_or_si256(_mm256_and_si256(l1, low4),
                              _mm256_and_si256(_mm256_slli_epi16(hb, 2), bits45)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                              _mm256_and_si256(hb, bits45)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                              _mm256_and_si256(_mm256_srli_epi16(hb, 2), bits45))};
          // e[j] holds sub-blocks 2j (low 128 bits) and 2j + 1; rows[m] = [sub m | sub m + 4].
          __m256i rows[4], v[4];
          rows[0] = _mm256_permute2x128_si256(e[0], e[2], 0x20);
          rows[1] = _mm256_permute2x128_si256(e[0], e[2], 0x31);
          rows[2] = _mm256_permute2x128_si256(e[1], e[3], 0x20);
          rows[3] = _mm256_permute2x128_si256(e[1], e[3], 0x31);
          t8x4(rows, v);
          for (int k = 0; k < 4; ++k) store(pg.code[r][k], v[k]);
          store(pg.sc[r],
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(x[i].scales + 8 * h))));
          _mm256_store_ps(pg.d[r], _mm256_set1_ps(_cvtsh_ss(x[i].d)));
        }
      }
    }
  }

  template <int T>
  TF_TARGET_AVX2 static void micro(const uint8_t* panel, const uint8_t* act, size_t ab, int64_t n,
                                   int64_t u0, int64_t u1, Acc ac, float* out, int64_t os, int nr) {
    __m256 acc[kR][T];
    acc_begin(ac, acc);
    const __m256i ones = _mm256_set1_epi16(1);
    const auto* p = reinterpret_cast<const Panel*>(panel) + u0;
    for (int64_t g = u0; g < u1; ++g, ++p) {
      const ActK6* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const ActK6*>(act + size_t(t) * ab) + g;
      __m256i s[kR][T], s16[kR][T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i b = loada(a[t]->bias);
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) {
          s[r][t] = b;
          s16[r][t] = _mm256_setzero_si256();
        }
      }
      // Pair sums of at most 63 * 128 * 2: two fit in int16.
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        __m256i wv[kR];
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) wv[r] = loada(p->code[r][k]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i av = loada(a[t]->code[k]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) {
            s16[r][t] = _mm256_add_epi16(s16[r][t], _mm256_maddubs_epi16(wv[r], av));
            if (k % 2 == 1) {
              s[r][t] = _mm256_add_epi32(s[r][t], _mm256_madd_epi16(s16[r][t], ones));
              s16[r][t] = _mm256_setzero_si256();
            }
          }
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m256i sc = loada(p->sc[r]);
        const __m256 dw = _mm256_load_ps(p->d[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(s[r][t], sc)),
                                      _mm256_mul_ps(dw, _mm256_set1_ps(a[t]->d)), acc[r][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = hsum8(acc[r][t]);
  }
};

// ---- F32 / F16 / BF16: llama.cpp's tinyBLAS order, 16 lanes as two 8-lane halves -------------

template <DType kType>
struct FloatK {
  static constexpr int kR = 2, kT = 2, kChunk = 32;
  static int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }
  static int64_t units(int64_t n) { return padded(n) / 16; }
  static size_t elem() { return kType == DType::F32 ? 4 : 2; }
  static size_t row_bytes(int64_t n) { return size_t(n) * elem(); }
  static size_t act_bytes(int64_t n) { return align64(size_t(padded(n)) * sizeof(float)); }
  static size_t panel_bytes(int64_t n) { return size_t(kR) * act_bytes(n); }

  TF_TARGET_AVX2 static __m256 load8(const uint8_t* p) {
    if constexpr (kType == DType::F32) {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    } else if constexpr (kType == DType::F16) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    } else {
      const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
  }

  TF_TARGET_AVX2 static void widen(const uint8_t* src, int64_t n, float* dst) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_store_ps(dst + i, load8(src + size_t(i) * elem()));
    if (i < n) {  // the tail through a zero-padded copy
      alignas(32) uint8_t tmp[32] = {};
      std::memcpy(tmp, src + size_t(i) * elem(), size_t(n - i) * elem());
      _mm256_store_ps(dst + i, load8(tmp));
      i += 8;
    }
    for (; i < padded(n); i += 8) _mm256_store_ps(dst + i, _mm256_setzero_ps());
  }

  TF_TARGET_AVX2 static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    widen(act, n, reinterpret_cast<float*>(out));
  }

  TF_TARGET_AVX2 static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                  uint8_t* out) {
    const size_t rb = act_bytes(n);
    for (int r = 0; r < kR; ++r) {
      auto* dst = reinterpret_cast<float*>(out + size_t(r) * rb);
      if (r < nr) {
        widen(w + size_t(r) * stride, n, dst);
      } else {
        for (int64_t i = 0; i < padded(n); i += 8) _mm256_store_ps(dst + i, _mm256_setzero_ps());
      }
    }
  }

  // reduce_add16 of the 16 lanes lo (0..7) and hi (8..15).
  TF_TARGET_AVX2 static float reduce16(__m256 lo, __m256 hi) {
    return hsum8(_mm256_add_ps(lo, hi));
  }

  template <int T>
  TF_TARGET_AVX2 static void micro(const uint8_t* panel, const uint8_t* act, size_t ab, int64_t n,
                                   int64_t u0, int64_t u1, Acc ac, float* out, int64_t os, int nr) {
    const size_t rb = act_bytes(n);
    __m256 lo[kR][T], hi[kR][T];
    for (int r = 0; r < kR; ++r)
      for (int t = 0; t < T; ++t) {
        const float* s = ac.acc + (t * kR + r) * 16;
        lo[r][t] = ac.first ? _mm256_setzero_ps() : _mm256_load_ps(s);
        hi[r][t] = ac.first ? _mm256_setzero_ps() : _mm256_load_ps(s + 8);
      }
    const float* w[kR];
    const float* a[T];
    for (int r = 0; r < kR; ++r) w[r] = reinterpret_cast<const float*>(panel + size_t(r) * rb);
    for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const float*>(act + size_t(t) * ab);
    for (int64_t i = 16 * u0; i < 16 * u1; i += 16) {
      __m256 wl[kR], wh[kR];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        wl[r] = _mm256_load_ps(w[r] + i);
        wh[r] = _mm256_load_ps(w[r] + i + 8);
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256 al = _mm256_load_ps(a[t] + i), ah = _mm256_load_ps(a[t] + i + 8);
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) {
          lo[r][t] = _mm256_fmadd_ps(wl[r], al, lo[r][t]);
          hi[r][t] = _mm256_fmadd_ps(wh[r], ah, hi[r][t]);
        }
      }
    }
    if (!ac.last) {
      for (int r = 0; r < kR; ++r)
        for (int t = 0; t < T; ++t) {
          float* s = ac.acc + (t * kR + r) * 16;
          _mm256_store_ps(s, lo[r][t]);
          _mm256_store_ps(s + 8, hi[r][t]);
        }
      return;
    }
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = reduce16(lo[r][t], hi[r][t]);
  }
};

}  // namespace

void add_gemm_avx2(Table& t) {
  t.gemm[slot(DType::Q4_0)] = gemm_ops<Q4_0K>();
  t.gemm[slot(DType::Q8_0)] = gemm_ops<Q8_0K>();
  t.gemm[slot(DType::Q4_K)] = gemm_ops<Q45K<false>>();
  t.gemm[slot(DType::Q5_K)] = gemm_ops<Q45K<true>>();
  t.gemm[slot(DType::Q6_K)] = gemm_ops<Q6K>();
  t.gemm[slot(DType::F32)] = gemm_ops<FloatK<DType::F32>>();
  t.gemm[slot(DType::F16)] = gemm_ops<FloatK<DType::F16>>();
  t.gemm[slot(DType::BF16)] = gemm_ops<FloatK<DType::BF16>>();
}

}  // namespace tf::kernels::detail

#endif
