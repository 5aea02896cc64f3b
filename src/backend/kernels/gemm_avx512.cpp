// AVX-512 matrix-matrix kernels (gemm in kernels.h): several weight rows times several
// activation rows per register tile, for prompt processing.
//
// Scheme, per call: the activations of a chunk of tokens (sized to stay in L2) are rearranged
// once into the layout the tile wants; then, for each tile of kR weight rows, the rows are
// unpacked once into a "panel" (codes as bytes in the same layout, scales as float vectors),
// and a micro-kernel multiplies the panel with the chunk's tokens kT at a time, holding
// kR x kT integer and float accumulators in registers (see gemm_driver.h for the loops). Each
// weight block is thus unpacked once per chunk instead of once per token, and each activation
// vector loaded once per kR rows.
//
// Integer types use vpdpbusd (unsigned codes times signed activations, offsets folded in as a
// per-lane bias precomputed from the activations). Except for Q8_0, a SIMD lane holds one
// whole block (Q4_0: 32 elements) or sub-block (K types), so the reference's exact integer sum
// per block is only split over the lanes of its sub-blocks, as in dot_rows. The layout that
// gives a lane a whole (sub-)block: 16 of them form a group, vector k of the group holds dword
// k (elements 4k..4k+3) of each, which is a 16 x 8 (or 16 x 4) dword transpose of the blocks.
#include "backend/kernels/gemm_driver.h"
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

// ---- dword transposes (vpermt2d networks) ---------------------------------------------------

struct alignas(64) Idx {
  int32_t v[16];
};

// Level tables; see t16x4 / t16x8.
constexpr Idx t4a(int off) {  // i = 8 kk + L (L < 8) <- Z[L / 4] dword 4 (L % 4) + kk + off
  Idx x{};
  for (int i = 0; i < 16; ++i) {
    const int kk = i / 8, L = i % 8;
    x.v[i] = (L < 4 ? 0 : 16) + 4 * (L % 4) + kk + off;
  }
  return x;
}
constexpr Idx merge8(int kk) {  // i = L <- (L < 8 ? a : b) dword 8 kk + L % 8
  Idx x{};
  for (int i = 0; i < 16; ++i) x.v[i] = (i < 8 ? 0 : 16) + 8 * kk + i % 8;
  return x;
}
constexpr Idx t8a(int h) {  // i = 4 kk + rr <- P[rr / 2] dword 8 (rr % 2) + 4 h + kk
  Idx x{};
  for (int i = 0; i < 16; ++i) {
    const int kk = i / 4, rr = i % 4;
    x.v[i] = (rr / 2 ? 16 : 0) + 8 * (rr % 2) + 4 * h + kk;
  }
  return x;
}
constexpr Idx t8b(int j) {  // i = 8 k2 + rr <- (rr < 4 ? a : b) dword 4 (2 j + k2) + rr % 4
  Idx x{};
  for (int i = 0; i < 16; ++i) {
    const int k2 = i / 8, rr = i % 8;
    x.v[i] = (rr < 4 ? 0 : 16) + 4 * (2 * j + k2) + rr % 4;
  }
  return x;
}
constexpr Idx kT4a[2] = {t4a(0), t4a(2)};
constexpr Idx kMerge8[2] = {merge8(0), merge8(1)};
constexpr Idx kT8a[2] = {t8a(0), t8a(1)};
constexpr Idx kT8b[2] = {t8b(0), t8b(1)};

TF_TARGET_AVX512 inline __m512i idx(const Idx& i) {
  return _mm512_load_si512(i.v);
}

TF_TARGET_AVX512 inline __m512i perm2(__m512i a, const Idx& i, __m512i b) {
  return _mm512_permutex2var_epi32(a, idx(i), b);
}

// 16 rows of 4 dwords, four rows per input (z[m] dword 4p + k = row 4m + p, dword k), to
// v[k] dword L = row L, dword k.
TF_TARGET_AVX512 inline void t16x4(const __m512i z[4], __m512i v[4]) {
  const __m512i x0 = perm2(z[0], kT4a[0], z[1]), x1 = perm2(z[0], kT4a[1], z[1]);
  const __m512i x2 = perm2(z[2], kT4a[0], z[3]), x3 = perm2(z[2], kT4a[1], z[3]);
  v[0] = perm2(x0, kMerge8[0], x2);
  v[1] = perm2(x0, kMerge8[1], x2);
  v[2] = perm2(x1, kMerge8[0], x3);
  v[3] = perm2(x1, kMerge8[1], x3);
}

// 16 rows of 8 dwords, two rows per input (p[m] dword 8q + k = row 2m + q, dword k), to v[k]
// dword L = row L, dword k.
TF_TARGET_AVX512 inline void t16x8(const __m512i p[8], __m512i v[8]) {
  __m512i a[4][2], b[2][2][2];
  for (int q = 0; q < 4; ++q)
    for (int h = 0; h < 2; ++h) a[q][h] = perm2(p[2 * q], kT8a[h], p[2 * q + 1]);
  for (int q = 0; q < 2; ++q)
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 2; ++j) b[q][h][j] = perm2(a[2 * q][h], kT8b[j], a[2 * q + 1][h]);
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 2; ++j)
      for (int k2 = 0; k2 < 2; ++k2)
        v[4 * h + 2 * j + k2] = perm2(b[0][h][j], kMerge8[k2], b[1][h][j]);
}

// 16 halves as floats.
TF_TARGET_AVX512 inline __m512 halves16(const uint16_t* h) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
}

TF_TARGET_AVX512 inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// ---- accumulator tiles (see Acc in gemm_driver.h) --------------------------------------------

template <int R, int T>
TF_TARGET_AVX512 inline void acc_begin(const Acc& acc, __m512 (&v)[R][T]) {
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t)
      v[r][t] = acc.first ? _mm512_setzero_ps() : _mm512_load_ps(acc.acc + (t * R + r) * 16);
}
template <int R, int T>
TF_TARGET_AVX512 inline void acc_save(const Acc& acc, const __m512 (&v)[R][T]) {
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) _mm512_store_ps(acc.acc + (t * R + r) * 16, v[r][t]);
}

// ---- Q4_0: a lane per block, 16 blocks per group ----------------------------------------------

struct alignas(64) ActQ4_0 {
  int8_t code[8][64];  // code[k] dword L = elements 4k..4k+3 of block L
  int32_t bias[16];    // -8 * (sum of block L's codes)
  float d[16];
};
struct alignas(64) PanelQ4_0 {
  uint8_t code[4][8][64];  // per row, as ActQ4_0::code, values 0..15
  float d[4][16];
};

struct Q4_0K {
  static constexpr int kR = 4, kT = 3, kChunk = 4;
  static int64_t groups(int64_t n) { return (n / kQK + 15) / 16; }
  static int64_t units(int64_t n) { return groups(n); }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK) * sizeof(BlockQ4_0); }
  static size_t act_bytes(int64_t n) { return size_t(groups(n)) * sizeof(ActQ4_0); }
  static size_t panel_bytes(int64_t n) { return size_t(groups(n)) * sizeof(PanelQ4_0); }

  TF_TARGET_AVX512_VNNI static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    prep_biased<8>(act, n, out);
  }

  // The activations' codes transposed to a lane per block, with the bias that takes off the
  // weights' offset (Q4_0: codes 0..15 stand for -8..7; Q8_0 weights get +128 below).
  template <int kOffset>
  TF_TARGET_AVX512_VNNI static void prep_biased(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<ActQ4_0*>(out);
    for (int64_t b0 = 0; b0 < nb; b0 += 16, ++g) {
      __m512i p[8], v[8];
      alignas(32) uint16_t d[16];
      for (int m = 0; m < 8; ++m) {
        const int64_t b = b0 + 2 * m;
        const __m256i lo = b < nb ? load256(y[b].qs) : _mm256_setzero_si256();
        const __m256i hi = b + 1 < nb ? load256(y[b + 1].qs) : _mm256_setzero_si256();
        p[m] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      }
      for (int L = 0; L < 16; ++L) d[L] = b0 + L < nb ? y[b0 + L].d : 0;
      t16x8(p, v);
      __m512i s = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        _mm512_store_si512(g->code[k], v[k]);
        s = _mm512_dpbusd_epi32(s, _mm512_set1_epi8(char(kOffset)), v[k]);
      }
      _mm512_store_si512(g->bias, _mm512_sub_epi32(_mm512_setzero_si512(), s));
      _mm512_store_ps(g->d, halves16(d));
    }
  }

  TF_TARGET_AVX512_VNNI static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                         uint8_t* out) {
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<PanelQ4_0*>(out);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    struct {
      __m512i pack, didx;
    } c;
    alignas(64) uint8_t pack[64];
    alignas(64) uint16_t didx[32] = {};
    for (int k = 0; k < 64; ++k) pack[k] = uint8_t(18 * (k / 16) + 2 + k % 16);  // 64+: hi
    for (int j = 0; j < 4; ++j) didx[j] = uint16_t(9 * j);
    c.pack = _mm512_load_si512(pack);
    c.didx = _mm512_load_si512(didx);
    for (int64_t b0 = 0; b0 < nb; b0 += 16, ++g) {
      for (int r = 0; r < kR; ++r) {
        if (r >= nr) {
          for (int k = 0; k < 8; ++k) _mm512_store_si512(g->code[r][k], _mm512_setzero_si512());
          _mm512_store_ps(g->d[r], _mm512_setzero_ps());
          continue;
        }
        const auto* x = reinterpret_cast<const BlockQ4_0*>(w + size_t(r) * stride);
        __m512i z[4], q[4];
        alignas(32) uint16_t d[16];
        if (b0 + 16 <= nb) {
          // Four blocks (72 bytes) at a time: one byte permute of two loads picks their nibble
          // arrays (as dot_q4_0 in legacy_avx512.cpp), one word permute their scales.
          const auto* gp = reinterpret_cast<const uint8_t*>(x + b0);
          for (int m = 0; m < 4; ++m, gp += 72) {
            const __m512i lo = _mm512_loadu_si512(gp);
            const __m512i hi = _mm512_maskz_loadu_epi8(0xFF, gp + 64);
            z[m] = _mm512_permutex2var_epi8(lo, c.pack, hi);
            _mm_storel_epi64(reinterpret_cast<__m128i*>(d + 4 * m),
                             _mm512_castsi512_si128(_mm512_permutexvar_epi16(c.didx, lo)));
          }
        } else {
          alignas(64) uint8_t qs[4][64];
          for (int L = 0; L < 16; ++L) {
            uint8_t* dst = &qs[L / 4][16 * (L % 4)];
            if (b0 + L < nb) {
              std::memcpy(dst, x[b0 + L].qs, 16);
            } else {
              std::memset(dst, 0, 16);
            }
          }
          for (int m = 0; m < 4; ++m) z[m] = _mm512_load_si512(qs[m]);
          for (int L = 0; L < 16; ++L) d[L] = b0 + L < nb ? x[b0 + L].d : 0;
        }
        t16x4(z, q);
        for (int k = 0; k < 4; ++k) {
          _mm512_store_si512(g->code[r][k], _mm512_and_si512(q[k], low4));
          _mm512_store_si512(g->code[r][k + 4], _mm512_and_si512(_mm512_srli_epi16(q[k], 4), low4));
        }
        _mm512_store_ps(g->d[r], halves16(d));
      }
    }
  }

  template <int T>
  TF_TARGET_AVX512_VNNI static void micro(const uint8_t* panel, const uint8_t* act, size_t ab,
                                          int64_t n, int64_t u0, int64_t u1, Acc ac, float* out,
                                          int64_t os, int nr) {
    __m512 acc[kR][T];
    acc_begin(ac, acc);
    const auto* p = reinterpret_cast<const PanelQ4_0*>(panel) + u0;
    for (int64_t g = u0; g < u1; ++g, ++p) {
      const ActQ4_0* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const ActQ4_0*>(act + size_t(t) * ab) + g;
      __m512i s[kR][T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i b = _mm512_load_si512(a[t]->bias);
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) s[r][t] = b;
      }
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        __m512i wv[kR];
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) wv[r] = _mm512_load_si512(p->code[r][k]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m512i av = _mm512_load_si512(a[t]->code[k]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) s[r][t] = _mm512_dpbusd_epi32(s[r][t], wv[r], av);
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m512 dw = _mm512_load_ps(p->d[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][t]),
                                      _mm512_mul_ps(dw, _mm512_load_ps(a[t]->d)), acc[r][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

// ---- Q8_0: llama.cpp's order, two rows per vector ---------------------------------------------
//
// The reference (and llama.cpp) keeps, per row and token, 8 float lanes: lane l gets the int32
// sum of elements 4l..4l+3 of each block, times d_w * d_a, by one FMA per block in block order.
// Blocks therefore cannot share a vector; a 512-bit vector holds one block of two rows (lanes
// 0..7 and 8..15) against one token, whose codes are broadcast to both halves.

struct alignas(64) ActQ8_0 {
  int8_t code[32];
  int32_t bias[8];  // -128 * (sum of the lane's 4 codes): the weights get +128
};
struct alignas(64) PanelQ8_0 {
  uint8_t code[2][64];  // [row 2p | row 2p + 1] codes + 128; the d_w follow all blocks
};

struct Q8_0ExactK {
  static constexpr int kR = 4, kT = 6, kChunk = 32;
  static int64_t units(int64_t n) { return n / kQK; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK) * sizeof(BlockQ8_0); }
  static size_t act_bytes(int64_t n) {
    const size_t nb = size_t(n / kQK);
    return nb * sizeof(ActQ8_0) + align64(nb * sizeof(float));
  }
  static size_t panel_bytes(int64_t n) {
    return size_t(n / kQK) * (sizeof(PanelQ8_0) + kR * sizeof(float));
  }

  TF_TARGET_AVX512_VNNI static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
    const int64_t nb = n / kQK;
    auto* b = reinterpret_cast<ActQ8_0*>(out);
    auto* d = reinterpret_cast<float*>(out + size_t(nb) * sizeof(ActQ8_0));
    const __m256i flip = _mm256_set1_epi8(char(0x80));
    for (int64_t i = 0; i < nb; ++i) {
      const __m256i a = load256(y[i].qs);
      const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), flip, a);
      _mm256_store_si256(reinterpret_cast<__m256i*>(b[i].code), a);
      _mm256_store_si256(reinterpret_cast<__m256i*>(b[i].bias),
                         _mm256_sub_epi32(_mm256_setzero_si256(), s));
      d[i] = _cvtsh_ss(y[i].d);
    }
  }

  TF_TARGET_AVX512_VNNI static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                         uint8_t* out) {
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<PanelQ8_0*>(out);
    auto* d = reinterpret_cast<float*>(g + nb);
    const __m256i flip = _mm256_set1_epi8(char(0x80));
    const BlockQ8_0* x[kR];
    for (int r = 0; r < kR; ++r)
      x[r] = reinterpret_cast<const BlockQ8_0*>(w + size_t(std::min(r, nr - 1)) * stride);
    for (int64_t i = 0; i < nb; ++i, ++g, d += kR) {
      for (int p = 0; p < 2; ++p) {
        const int r0 = 2 * p, r1 = 2 * p + 1;
        const __m256i lo =
            r0 < nr ? _mm256_xor_si256(load256(x[r0][i].qs), flip) : _mm256_setzero_si256();
        const __m256i hi =
            r1 < nr ? _mm256_xor_si256(load256(x[r1][i].qs), flip) : _mm256_setzero_si256();
        _mm512_store_si512(g->code[p], _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
      }
      for (int r = 0; r < kR; ++r) d[r] = r < nr ? _cvtsh_ss(x[r][i].d) : 0.0f;
    }
  }

  // ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) of one 128-bit quarter sum pair, as ggml.
  TF_TARGET_AVX512_VNNI static float hsum8(__m128 h) {
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
  }

  template <int T>
  TF_TARGET_AVX512_VNNI static void micro(const uint8_t* panel, const uint8_t* act, size_t ab,
                                          int64_t n, int64_t u0, int64_t u1, Acc ac, float* out,
                                          int64_t os, int nr) {
    const int64_t nb = n / kQK;
    __m512 acc[2][T];
    acc_begin(ac, acc);
    const auto* p = reinterpret_cast<const PanelQ8_0*>(panel) + u0;
    const float* dw =
        reinterpret_cast<const float*>(reinterpret_cast<const PanelQ8_0*>(panel) + nb);
    const ActQ8_0* a[T];
    const float* da[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      a[t] = reinterpret_cast<const ActQ8_0*>(act + size_t(t) * ab);
      da[t] = reinterpret_cast<const float*>(act + size_t(t) * ab + size_t(nb) * sizeof(ActQ8_0));
    }
    for (int64_t i = u0; i < u1; ++i, ++p) {
      const __m512i w0 = _mm512_load_si512(p->code[0]), w1 = _mm512_load_si512(p->code[1]);
      // d_w of rows 2q and 2q + 1 in lanes 0..7 and 8..15.
      const float* di = dw + i * kR;
      const __m512 d0 = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(di[0]), _mm512_set1_ps(di[1]));
      const __m512 d1 = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(di[2]), _mm512_set1_ps(di[3]));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i av = _mm512_broadcast_i64x4(load256(a[t][i].code));
        const __m512i bias = _mm512_broadcast_i64x4(load256(a[t][i].bias));
        const __m512 dt = _mm512_set1_ps(da[t][i]);
        const __m512i s0 = _mm512_dpbusd_epi32(bias, w0, av);
        const __m512i s1 = _mm512_dpbusd_epi32(bias, w1, av);
        acc[0][t] = _mm512_fmadd_ps(_mm512_mul_ps(d0, dt), _mm512_cvtepi32_ps(s0), acc[0][t]);
        acc[1][t] = _mm512_fmadd_ps(_mm512_mul_ps(d1, dt), _mm512_cvtepi32_ps(s1), acc[1][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t) {
      for (int q = 0; q < 2; ++q) {
        // Quarter 0 + 1 (row 2q) and 2 + 3 (row 2q + 1): lanes l + l+4 of each 8.
        const __m512 v = acc[q][t];
        const __m512 s = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
        if (2 * q < nr) out[t * os + 2 * q] = hsum8(_mm512_castps512_ps128(s));
        if (2 * q + 1 < nr) out[t * os + 2 * q + 1] = hsum8(_mm512_extractf32x4_ps(s, 2));
      }
    }
  }
};

// ---- Q8_0: a lane per block, as Q4_0 ---------------------------------------------------------
//
// The weights' codes + 128 (unsigned for vpdpbusd) in Q4_0's layout, 16 blocks per group, the
// activations as for Q4_0 with the bias -128 * (sum of the block's codes): each lane sums its
// block exactly, then one FMA per block adds d_w * d_a times that sum. The float additions
// are ordered differently from llama.cpp's (which splits each block over 8 lanes), so results
// differ from vec_dot in the last bits (tests: within the float rounding of the sum of the
// terms' magnitudes; the golden greedy tokens and perplexities are unchanged). Four times the
// integer work per instruction of the former kernel, which kept that order with two rows per
// vector (Q8_0ExactK, the default: kernels.h, Numerics).

struct Q8_0FastK : Q4_0K {
  static size_t row_bytes(int64_t n) { return size_t(n / kQK) * sizeof(BlockQ8_0); }

  TF_TARGET_AVX512_VNNI static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    prep_biased<128>(act, n, out);
  }

  TF_TARGET_AVX512_VNNI static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                         uint8_t* out) {
    const int64_t nb = n / kQK;
    auto* g = reinterpret_cast<PanelQ4_0*>(out);
    const __m256i flip = _mm256_set1_epi8(char(0x80));
    for (int64_t b0 = 0; b0 < nb; b0 += 16, ++g) {
      for (int r = 0; r < kR; ++r) {
        if (r >= nr) {
          for (int k = 0; k < 8; ++k) _mm512_store_si512(g->code[r][k], _mm512_setzero_si512());
          _mm512_store_ps(g->d[r], _mm512_setzero_ps());
          continue;
        }
        const auto* x = reinterpret_cast<const BlockQ8_0*>(w + size_t(r) * stride);
        __m512i p[8], v[8];
        alignas(32) uint16_t d[16];
        for (int m = 0; m < 8; ++m) {
          const int64_t b = b0 + 2 * m;
          // Blocks past the end: codes 0 against zero activations, scale 0.
          const __m256i lo =
              b < nb ? _mm256_xor_si256(load256(x[b].qs), flip) : _mm256_setzero_si256();
          const __m256i hi =
              b + 1 < nb ? _mm256_xor_si256(load256(x[b + 1].qs), flip) : _mm256_setzero_si256();
          p[m] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        for (int L = 0; L < 16; ++L) d[L] = b0 + L < nb ? x[b0 + L].d : 0;
        t16x8(p, v);
        for (int k = 0; k < 8; ++k) _mm512_store_si512(g->code[r][k], v[k]);
        _mm512_store_ps(g->d[r], halves16(d));
      }
    }
  }
};

// ---- Q4_K / Q5_K: a lane per 32-element sub-block, two super-blocks per group ---------------
//
// Lane L of group g is sub-block L % 8 of super-block 2g + L / 8. Its codes (0..15 or 0..31)
// times the activations are summed exactly by vpdpbusd, times the 6-bit scale by vpmulld, then
// scaled by d_w * d_a of the super-block in float. The mins use the activations' sums per
// sub-block: vpmaddwd of the mins and those sums, two sub-blocks per lane, so a vector covers
// four super-blocks (lane L: super-block L / 4), scaled by dmin * d_a.

struct alignas(64) ActK4 {
  int8_t code[8][64];
  float d[16];  // d_a of the lane's super-block
};
struct alignas(64) ActK4Mins {
  int16_t bsum[32];  // activation sums of sub-blocks 0..31 of four super-blocks
  float d[16];       // d_a of super-block L / 4
};
struct alignas(64) PanelK4 {
  uint8_t code[4][8][64];
  int32_t sc[4][16];
  float d[4][16];
};
struct alignas(64) PanelK4Mins {
  int16_t m[4][32];
  float dmin[4][16];
};

template <bool kQ5>
struct Q45K {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  static constexpr int kR = 4, kT = 3, kChunk = 4;
  static int64_t groups(int64_t n) { return (n / kQK_K + 1) / 2; }
  static int64_t units(int64_t n) { return groups(n); }
  static int64_t min_groups(int64_t n) { return (n / kQK_K + 3) / 4; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK_K) * sizeof(Block); }
  static size_t act_bytes(int64_t n) {
    return size_t(groups(n)) * sizeof(ActK4) + size_t(min_groups(n)) * sizeof(ActK4Mins);
  }
  static size_t panel_bytes(int64_t n) {
    return size_t(groups(n)) * sizeof(PanelK4) + size_t(min_groups(n)) * sizeof(PanelK4Mins);
  }

  TF_TARGET_AVX512_VNNI static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
    const int64_t nb = n / kQK_K, ng = groups(n);
    auto* g = reinterpret_cast<ActK4*>(out);
    for (int64_t i = 0; i < ng; ++i) {
      __m512i p[8], v[8];
      for (int m = 0; m < 8; ++m) {
        const int64_t s = 2 * i + m / 4;
        p[m] = s < nb ? _mm512_loadu_si512(y[s].qs + 64 * (m % 4)) : _mm512_setzero_si512();
      }
      t16x8(p, v);
      for (int k = 0; k < 8; ++k) _mm512_store_si512(g[i].code[k], v[k]);
      const float d0 = y[2 * i].d, d1 = 2 * i + 1 < nb ? y[2 * i + 1].d : 0.0f;
      _mm512_store_ps(g[i].d, _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d0), _mm512_set1_ps(d1)));
    }
    auto* mg = reinterpret_cast<ActK4Mins*>(g + ng);
    for (int64_t i = 0; i < min_groups(n); ++i) {
      alignas(64) float d[16];
      for (int q = 0; q < 4; ++q) {
        const int64_t s = 4 * i + q;
        __m128i b = _mm_setzero_si128();
        if (s < nb) {  // pairs of the per-16 sums
          const auto* bs = reinterpret_cast<const __m128i*>(y[s].bsums);
          b = _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs + 1));
        }
        _mm_store_si128(reinterpret_cast<__m128i*>(mg[i].bsum + 8 * q), b);
        for (int l = 0; l < 4; ++l) d[4 * q + l] = s < nb ? y[s].d : 0.0f;
      }
      _mm512_store_ps(mg[i].d, _mm512_load_ps(d));
    }
  }

  TF_TARGET_AVX512_VNNI static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                         uint8_t* out) {
    const int64_t nb = n / kQK_K, ng = groups(n);
    auto* g = reinterpret_cast<PanelK4*>(out);
    auto* mg = reinterpret_cast<PanelK4Mins*>(g + ng);
    const __m512i low4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    const __m512i nib_shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    for (int r = 0; r < kR; ++r) {
      const auto* x = reinterpret_cast<const Block*>(w + size_t(std::min(r, nr - 1)) * stride);
      const bool have = r < nr;
      for (int64_t i = 0; i < ng; ++i) {
        __m512i p[8], v[8];
        alignas(64) uint8_t sc[16];
        alignas(64) uint16_t d[16];
        for (int h = 0; h < 2; ++h) {
          const int64_t s = 2 * i + h;
          const bool ok = have && s < nb;
          uint64_t scs = 0, mns = 0;
          if (ok) unpack_k_scales(x[s].scales, &scs, &mns);
          std::memcpy(sc + 8 * h, &scs, 8);
          for (int l = 0; l < 8; ++l) d[8 * h + l] = ok ? x[s].d : 0;
          __m512i qh = _mm512_setzero_si512();
          if constexpr (kQ5) {
            if (ok) qh = _mm512_broadcast_i64x4(load256(x[s].qh));
          }
          for (int c = 0; c < 4; ++c) {
            if (!ok) {
              p[4 * h + c] = _mm512_setzero_si512();
              continue;
            }
            // Chunk c: low nibbles are sub-block 2c, high nibbles 2c + 1 (upper half).
            const __m512i l = _mm512_broadcast_i64x4(load256(x[s].qs + 32 * c));
            __m512i q = _mm512_and_si512(_mm512_srlv_epi64(l, nib_shift), low4);
            if constexpr (kQ5) {
              const __m512i sh =
                  _mm512_add_epi64(_mm512_set1_epi64(2 * c), _mm512_srli_epi64(nib_shift, 2));
              const __m512i bit = _mm512_and_si512(_mm512_srlv_epi64(qh, sh), one);
              q = _mm512_or_si512(q, _mm512_slli_epi16(bit, 4));
            }
            p[4 * h + c] = q;
          }
        }
        t16x8(p, v);
        for (int k = 0; k < 8; ++k) _mm512_store_si512(g[i].code[r][k], v[k]);
        _mm512_store_si512(g[i].sc[r], _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i*)sc)));
        _mm512_store_ps(g[i].d[r], halves16(d));
      }
      for (int64_t i = 0; i < min_groups(n); ++i) {
        alignas(64) uint8_t m[32];
        alignas(64) uint16_t dm[16];
        for (int q = 0; q < 4; ++q) {
          const int64_t s = 4 * i + q;
          const bool ok = have && s < nb;
          uint64_t scs = 0, mns = 0;
          if (ok) unpack_k_scales(x[s].scales, &scs, &mns);
          std::memcpy(m + 8 * q, &mns, 8);
          for (int l = 0; l < 4; ++l) dm[4 * q + l] = ok ? x[s].dmin : 0;
        }
        _mm512_store_si512(mg[i].m[r], _mm512_cvtepu8_epi16(load256(m)));
        _mm512_store_ps(mg[i].dmin[r], halves16(dm));
      }
    }
  }

  template <int T>
  TF_TARGET_AVX512_VNNI static void micro(const uint8_t* panel, const uint8_t* act, size_t ab,
                                          int64_t n, int64_t u0, int64_t u1, Acc ac, float* out,
                                          int64_t os, int nr) {
    const int64_t ng = groups(n), nm = min_groups(n);
    __m512 acc[kR][T];
    acc_begin(ac, acc);
    const auto* p = reinterpret_cast<const PanelK4*>(panel) + u0;
    for (int64_t g = u0; g < u1; ++g, ++p) {
      const ActK4* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const ActK4*>(act + size_t(t) * ab) + g;
      __m512i s[kR][T];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r)
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) s[r][t] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        __m512i wv[kR];
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) wv[r] = _mm512_load_si512(p->code[r][k]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m512i av = _mm512_load_si512(a[t]->code[k]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) s[r][t] = _mm512_dpbusd_epi32(s[r][t], wv[r], av);
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m512i sc = _mm512_load_si512(p->sc[r]);
        const __m512 dw = _mm512_load_ps(p->d[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(s[r][t], sc)),
                                      _mm512_mul_ps(dw, _mm512_load_ps(a[t]->d)), acc[r][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    // The mins of all super-blocks, with the last chunk.
    const auto* pm =
        reinterpret_cast<const PanelK4Mins*>(reinterpret_cast<const PanelK4*>(panel) + ng);
    for (int64_t g = 0; g < nm; ++g, ++pm) {
      const ActK4Mins* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        a[t] =
            reinterpret_cast<const ActK4Mins*>(act + size_t(t) * ab + size_t(ng) * sizeof(ActK4)) +
            g;
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m512i m = _mm512_load_si512(pm->m[r]);
        const __m512 dm = _mm512_load_ps(pm->dmin[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m512i ms = _mm512_madd_epi16(m, _mm512_load_si512(a[t]->bsum));
          acc[r][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms),
                                       _mm512_mul_ps(dm, _mm512_load_ps(a[t]->d)), acc[r][t]);
        }
      }
    }
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

// ---- Q6_K: a lane per 16-element sub-block, one super-block per group -------------------------
//
// Codes 0..63 unsigned; the -32 is the per-lane bias -32 * (activation sum of the sub-block),
// so each lane holds the exact sub-block sum before vpmulld by its signed scale.

struct alignas(64) ActK6 {
  int8_t code[4][64];
  int32_t bias[16];
  float d;
  float pad[15];
};
struct alignas(64) PanelK6 {
  uint8_t code[4][4][64];
  int32_t sc[4][16];
  float d[16];  // d_w of row r in lane r
};

// Rotate counts (dword lanes 0..7 / 8..15) bringing the 2 high bits of a Q6_K code to bits 4..5.
TF_TARGET_AVX512 inline __m512i rot(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(lo)), _mm256_set1_epi32(hi),
                            1);
}

struct Q6K {
  static constexpr int kR = 4, kT = 3, kChunk = 8;
  static int64_t units(int64_t n) { return n / kQK_K; }
  static size_t row_bytes(int64_t n) { return size_t(n / kQK_K) * sizeof(BlockQ6_K); }
  static size_t act_bytes(int64_t n) { return size_t(n / kQK_K) * sizeof(ActK6); }
  static size_t panel_bytes(int64_t n) { return size_t(n / kQK_K) * sizeof(PanelK6); }

  TF_TARGET_AVX512_VNNI static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
    auto* g = reinterpret_cast<ActK6*>(out);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
      __m512i z[4], v[4];
      for (int m = 0; m < 4; ++m) z[m] = _mm512_loadu_si512(y[i].qs + 64 * m);
      t16x4(z, v);
      for (int k = 0; k < 4; ++k) _mm512_store_si512(g[i].code[k], v[k]);
      const __m512i bs = _mm512_cvtepi16_epi32(load256(y[i].bsums));
      _mm512_store_si512(g[i].bias,
                         _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(bs, 5)));
      g[i].d = y[i].d;
    }
  }

  TF_TARGET_AVX512_VNNI static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                         uint8_t* out) {
    const int64_t nb = n / kQK_K;
    auto* g = reinterpret_cast<PanelK6*>(out);
    const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
    const __m512i rot_lo = rot(4, 2), rot_hi = rot(0, 30);
    for (int r = 0; r < kR; ++r) {
      const auto* x = reinterpret_cast<const BlockQ6_K*>(w + size_t(std::min(r, nr - 1)) * stride);
      for (int64_t i = 0; i < nb; ++i) {
        if (r >= nr) {
          for (int k = 0; k < 4; ++k) _mm512_store_si512(g[i].code[r][k], _mm512_setzero_si512());
          _mm512_store_si512(g[i].sc[r], _mm512_setzero_si512());
          g[i].d[r] = 0.0f;
          continue;
        }
        // Elements 0..255 in order, 64 per vector (see dot_q6k in kquants_avx512.cpp).
        __m512i z[4], v[4];
        for (int h = 0; h < 2; ++h) {
          const __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
          const __m512i hb = _mm512_broadcast_i64x4(load256(x[i].qh + 32 * h));
          z[2 * h] = _mm512_ternarylogic_epi32(_mm512_and_si512(l, low4),
                                               _mm512_rolv_epi32(hb, rot_lo), bits45, 0xF8);
          z[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                                                   _mm512_rolv_epi32(hb, rot_hi), bits45, 0xF8);
        }
        t16x4(z, v);
        for (int k = 0; k < 4; ++k) _mm512_store_si512(g[i].code[r][k], v[k]);
        _mm512_store_si512(
            g[i].sc[r],
            _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales))));
        g[i].d[r] = _cvtsh_ss(x[i].d);
      }
    }
  }

  template <int T>
  TF_TARGET_AVX512_VNNI static void micro(const uint8_t* panel, const uint8_t* act, size_t ab,
                                          int64_t n, int64_t u0, int64_t u1, Acc ac, float* out,
                                          int64_t os, int nr) {
    __m512 acc[kR][T];
    acc_begin(ac, acc);
    const auto* p = reinterpret_cast<const PanelK6*>(panel) + u0;
    for (int64_t g = u0; g < u1; ++g, ++p) {
      const ActK6* a[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const ActK6*>(act + size_t(t) * ab) + g;
      __m512i s[kR][T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i b = _mm512_load_si512(a[t]->bias);
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) s[r][t] = b;
      }
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        __m512i wv[kR];
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) wv[r] = _mm512_load_si512(p->code[r][k]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m512i av = _mm512_load_si512(a[t]->code[k]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) s[r][t] = _mm512_dpbusd_epi32(s[r][t], wv[r], av);
        }
      }
      // d_w * d_a for all rows and tokens at once (one scalar each), then broadcast.
      alignas(16) float dd[T][4];
      const __m128 dw = _mm_load_ps(p->d);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) _mm_store_ps(dd[t], _mm_mul_ps(dw, _mm_set1_ps(a[t]->d)));
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) {
        const __m512i sc = _mm512_load_si512(p->sc[r]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_mullo_epi32(s[r][t], sc)),
                                      _mm512_set1_ps(dd[t][r]), acc[r][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

// ---- F32 / F16 / BF16: llama.cpp's tinyBLAS order ---------------------------------------------
//
// One 16-lane FMA accumulator per row and token over the whole row, in order, then the lanes
// added as _mm512_reduce_add_ps does (reduce_add16): exactly vec_dot(..., DotKernel::Sgemm) for
// F32 / F16 with n % 16 == 0. Weights and activations are widened to float once (the panel and
// the prepared activations); rows are zero-padded to a multiple of 16.

template <DType kType>
struct FloatK {
  static constexpr int kR = 4, kT = 6, kChunk = 32;
  static int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }
  static int64_t units(int64_t n) { return padded(n) / 16; }
  static size_t elem() { return kType == DType::F32 ? 4 : 2; }
  static size_t row_bytes(int64_t n) { return size_t(n) * elem(); }
  static size_t act_bytes(int64_t n) { return align64(size_t(padded(n)) * sizeof(float)); }
  static size_t panel_bytes(int64_t n) { return size_t(kR) * act_bytes(n); }

  TF_TARGET_AVX512 static __m512 load16(const uint8_t* p, int64_t left) {
    const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    if constexpr (kType == DType::F32) {
      return _mm512_maskz_loadu_ps(m, p);
    } else if constexpr (kType == DType::F16) {
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    } else {
      const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
      return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
  }

  TF_TARGET_AVX512 static void widen(const uint8_t* src, int64_t n, float* dst) {
    for (int64_t i = 0; i < n; i += 16)
      _mm512_store_ps(dst + i, load16(src + size_t(i) * elem(), n - i));
  }

  TF_TARGET_AVX512 static void prep(const uint8_t* act, int64_t n, uint8_t* out) {
    widen(act, n, reinterpret_cast<float*>(out));
  }

  TF_TARGET_AVX512 static void pack(const uint8_t* w, size_t stride, int nr, int64_t n,
                                    uint8_t* out) {
    const size_t rb = act_bytes(n);
    for (int r = 0; r < kR; ++r) {
      auto* dst = reinterpret_cast<float*>(out + size_t(r) * rb);
      if (r < nr) {
        widen(w + size_t(r) * stride, n, dst);
      } else {
        for (int64_t i = 0; i < padded(n); i += 16) _mm512_store_ps(dst + i, _mm512_setzero_ps());
      }
    }
  }

  // h8[i] = v[i] + v[i+8]; h4[i] = h8[i] + h8[i+4]; (h4[0] + h4[2]) + (h4[1] + h4[3]).
  TF_TARGET_AVX512 static float reduce16(__m512 v) {
    const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
  }

  template <int T>
  TF_TARGET_AVX512 static void micro(const uint8_t* panel, const uint8_t* act, size_t ab, int64_t n,
                                     int64_t u0, int64_t u1, Acc ac, float* out, int64_t os,
                                     int nr) {
    const size_t rb = act_bytes(n);
    __m512 acc[kR][T];
    acc_begin(ac, acc);
    const float* w[kR];
    const float* a[T];
    for (int r = 0; r < kR; ++r) w[r] = reinterpret_cast<const float*>(panel + size_t(r) * rb);
    for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const float*>(act + size_t(t) * ab);
    for (int64_t i = 16 * u0; i < 16 * u1; i += 16) {
      __m512 wv[kR];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) wv[r] = _mm512_load_ps(w[r] + i);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512 av = _mm512_load_ps(a[t] + i);
#pragma GCC unroll 4
        for (int r = 0; r < kR; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], av, acc[r][t]);
      }
    }
    if (!ac.last) return acc_save(ac, acc);
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < nr; ++r) out[t * os + r] = reduce16(acc[r][t]);
  }
};

}  // namespace

void add_gemm_avx512(Table& t, const Features& f) {
  t.gemm[slot(DType::F32)] = gemm_ops<FloatK<DType::F32>>();
  t.gemm[slot(DType::F16)] = gemm_ops<FloatK<DType::F16>>();
  t.gemm[slot(DType::BF16)] = gemm_ops<FloatK<DType::BF16>>();
  if (!f.vnni) return;  // the AVX2 kernels stay in place for the integer types
  t.gemm[slot(DType::Q4_0)] = gemm_ops<Q4_0K>();
  if (f.fast)
    t.gemm[slot(DType::Q8_0)] = gemm_ops<Q8_0FastK>();
  else
    t.gemm[slot(DType::Q8_0)] = gemm_ops<Q8_0ExactK>();
  t.gemm[slot(DType::Q4_K)] = gemm_ops<Q45K<false>>();
  t.gemm[slot(DType::Q5_K)] = gemm_ops<Q45K<true>>();
  t.gemm[slot(DType::Q6_K)] = gemm_ops<Q6K>();
}

}  // namespace tf::kernels::detail

#endif
