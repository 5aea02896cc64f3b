// AVX-512 VNNI kernels for Q4_0 weights in 16-row tiles (Layout::kQ4_0x16 in kernels.h).
//
// A zmm lane per row: the four 64-byte code vectors of a tile block hold, in lane L, bytes
// 4j..4j+3 of row L, so their low nibbles meet activation codes 4j..4j+3 and their high nibbles
// codes 16+4j..16+4j+3, each broadcast to all lanes. 8 vpdpbusd give the block's exact integer
// sums for 16 rows at once, with no transposes at run time and no horizontal sums at the end;
// the bias -8 * (sum of the activation codes) takes off the codes' offset. For several tokens
// the unpacked block (8 registers) is reused for up to 16 tokens, each with one register of
// integer sums and one of float accumulators.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

constexpr size_t kBlock = 16 * sizeof(BlockQ4_0);  // one tile block: 256 code bytes + 16 scales

TF_TARGET_AVX512_VNNI inline __m512i bcast32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Calls f(std::integral_constant<int, nt>) for 1 <= nt <= T: a run-time token count to the
// kernel instantiated for it.
template <int T, class F>
void with_tokens(int nt, F f) {
  if constexpr (T >= 1) {
    if (nt == T) return f(std::integral_constant<int, T>{});
    with_tokens<T - 1>(nt, f);
  }
}

TF_TARGET_AVX512_VNNI inline void prefetch_block(const uint8_t* g) {
  for (int k = 0; k < 5; ++k)
    _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 64 * k), _MM_HINT_T0);
}

TF_TARGET_AVX512_VNNI inline int32_t code_sum(const int8_t* q) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), v);
  __m128i x = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4E));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xB1));
  return _mm_cvtsi128_si32(x);
}

// ---- one token --------------------------------------------------------------------------------

struct ActBlock {
  int32_t bias;  // -8 * (sum of the block's activation codes)
  float d;
};

TF_TARGET_AVX512_VNNI void dot_q4_0x16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                       const uint8_t* act, int64_t n, float* out) {
  const int64_t nb = n / kQK;
  const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
  auto* pre = reinterpret_cast<ActBlock*>(act_scratch(size_t(nb) * sizeof(ActBlock)));
  for (int64_t b = 0; b < nb; ++b) pre[b] = {-8 * code_sum(y[b].qs), _cvtsh_ss(y[b].d)};
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kBlock;
      prefetch_block(g);
      const int8_t* q = y[b].qs;
      // Low and high nibbles in two chains, so that each waits on 4 vpdpbusd, not 8.
      __m512i lo = _mm512_set1_epi32(pre[b].bias), hi = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(g + 64 * j);
        lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, low4), bcast32(q + 4 * j));
        hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4),
                                 bcast32(q + 16 + 4 * j));
      }
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 256)));
      acc[b & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)),
                                   _mm512_mul_ps(dw, _mm512_set1_ps(pre[b].d)), acc[b & 1]);
    }
    _mm512_storeu_ps(out + 16 * i, _mm512_add_ps(acc[0], acc[1]));
  }
}

// ---- up to 16 tokens ---------------------------------------------------------------------------

// One activation block of every token, side by side, so a tile block reads them in one stream.
struct alignas(64) ActTokens {
  int8_t qs[16][kQK];
  int32_t bias[16];
  float d[16];
};

template <int T>
TF_TARGET_AVX512_VNNI void gemm_tiles(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                      const ActTokens* a, int64_t nb, float* out, int64_t os) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kBlock;
      prefetch_block(g);
      __m512i w[8];
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(g + 64 * j);
        w[j] = _mm512_and_si512(v, low4);
        w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      }
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 256)));
      const ActTokens& A = a[b];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        __m512i s = _mm512_set1_epi32(A.bias[t]);
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) s = _mm512_dpbusd_epi32(s, w[j], bcast32(A.qs[t] + 4 * j));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(A.d[t])),
                                 acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * os + 16 * i, acc[t]);
  }
}

size_t prep_bytes_q4_0x16(int64_t n) {
  return size_t(n / kQK) * sizeof(ActTokens);
}

TF_TARGET_AVX512_VNNI void prep_q4_0x16(const uint8_t* acts, size_t as, int64_t ntok, int64_t n,
                                        uint8_t* out) {
  const int64_t nb = n / kQK;
  auto* a = reinterpret_cast<ActTokens*>(out);
  for (int64_t t = 0; t < ntok; ++t) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(acts + size_t(t) * as);
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(a[b].qs[t], y[b].qs, kQK);
      a[b].bias[t] = -8 * code_sum(y[b].qs);
      a[b].d[t] = _cvtsh_ss(y[b].d);
    }
  }
}

TF_TARGET_AVX512_VNNI void gemm_q4_0x16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                        const uint8_t* prepared, int64_t ntok, int64_t n,
                                        float* out, int64_t os) {
  const auto* a = reinterpret_cast<const ActTokens*>(prepared);
  with_tokens<16>(int(ntok), [&](auto t) {
    gemm_tiles<decltype(t)::value>(tiles, ntiles, tile_bytes, a, n / kQK, out, os);
  });
}

// ---- Q4_K
// ----------------------------------------------------------------------------------------
//
// A super-block of a tile: 32 code vectors (vector 8c + k: chunk c, dwords k), whose low
// nibbles are sub-block 2c and high nibbles sub-block 2c + 1; 3 vectors of packed scales; the
// rows' d and dmin. Each sub-block's integer sum is multiplied by its 6-bit scale in integers
// and the mins term sum(m_j * (activation sum of sub-block j)) comes from the activations'
// per-16 sums, as in the reference, so the super-block's two integer sums are exact.

constexpr size_t kKBlock = 16 * sizeof(BlockQ4_K);  // 2304
constexpr size_t kKScales = 2048, kKD = 2240, kKDmin = 2272;

// The scale of sub-block j (0..7) of each row, as an int32 per lane (see unpack_k_scales).
TF_TARGET_AVX512_VNNI inline __m512i k_scale(const uint8_t* g, int j) {
  const __m512i u0 = _mm512_loadu_si512(g + kKScales);
  if (j < 4) return _mm512_and_si512(_mm512_srli_epi32(u0, 8 * j), _mm512_set1_epi32(0x3F));
  const __m512i u2 = _mm512_loadu_si512(g + kKScales + 128);
  const int s = 8 * (j - 4);
  const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(u2, s), _mm512_set1_epi32(0x0F));
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(u0, s + 6), _mm512_set1_epi32(0x03));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 4));
}

// The rows' mins as int16 pairs for vpdpwssd: m[0] = (m0, m2), m[1] = (m1, m3), m[2] = (m4, m6),
// m[3] = (m5, m7) in each lane.
TF_TARGET_AVX512_VNNI inline void k_mins(const uint8_t* g, __m512i m[4]) {
  const __m512i u1 = _mm512_loadu_si512(g + kKScales + 64);
  const __m512i u2 = _mm512_loadu_si512(g + kKScales + 128);
  const __m512i lo = _mm512_and_si512(u1, _mm512_set1_epi32(0x3F3F3F3F));
  const __m512i hi = _mm512_or_si512(
      _mm512_and_si512(_mm512_srli_epi32(u2, 4), _mm512_set1_epi32(0x0F0F0F0F)),
      _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), _mm512_set1_epi32(0x03030303)),
                        4));
  const __m512i words = _mm512_set1_epi32(0x00FF00FF);
  m[0] = _mm512_and_si512(lo, words);
  m[1] = _mm512_and_si512(_mm512_srli_epi32(lo, 8), words);
  m[2] = _mm512_and_si512(hi, words);
  m[3] = _mm512_and_si512(_mm512_srli_epi32(hi, 8), words);
}

// An activation super-block's sub-block sums as the int16 pairs k_mins multiplies:
// (B0, B2), (B1, B3), (B4, B6), (B5, B7) with B_j = bsums[2j] + bsums[2j + 1].
inline void k_pairs(const BlockQ8_K& y, int32_t out[4]) {
  int32_t B[8];
  for (int j = 0; j < 8; ++j) B[j] = y.bsums[2 * j] + y.bsums[2 * j + 1];
  auto pack = [](int32_t a, int32_t b) {
    return int32_t(uint32_t(uint16_t(int16_t(a))) | (uint32_t(uint16_t(int16_t(b))) << 16));
  };
  out[0] = pack(B[0], B[2]);
  out[1] = pack(B[1], B[3]);
  out[2] = pack(B[4], B[6]);
  out[3] = pack(B[5], B[7]);
}

TF_TARGET_AVX512_VNNI inline __m512i k_msum(const __m512i m[4], const int32_t pairs[4]) {
  __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(), m[0], _mm512_set1_epi32(pairs[0]));
  s = _mm512_dpwssd_epi32(s, m[1], _mm512_set1_epi32(pairs[1]));
  s = _mm512_dpwssd_epi32(s, m[2], _mm512_set1_epi32(pairs[2]));
  return _mm512_dpwssd_epi32(s, m[3], _mm512_set1_epi32(pairs[3]));
}

struct ActKBlock {
  int32_t pairs[4];
  float d;
};

TF_TARGET_AVX512_VNNI void dot_q4_kx16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                       const uint8_t* act, int64_t n, float* out) {
  const int64_t nb = n / kQK_K;
  const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
  auto* pre = reinterpret_cast<ActKBlock*>(act_scratch(size_t(nb) * sizeof(ActKBlock)));
  for (int64_t b = 0; b < nb; ++b) {
    k_pairs(y[b], pre[b].pairs);
    pre[b].d = y[b].d;
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kKBlock;
      const int8_t* q = y[b].qs;
      __m512i isum = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        for (int k = 0; k < 9; ++k)
          _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 576 * c + 64 * k),
                       _MM_HINT_T0);
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
        for (int k = 0; k < 8; ++k) {
          const __m512i v = _mm512_loadu_si512(g + 64 * (8 * c + k));
          lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, low4), bcast32(q + 64 * c + 4 * k));
          hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4),
                                   bcast32(q + 64 * c + 32 + 4 * k));
        }
        isum =
            _mm512_add_epi32(isum, _mm512_add_epi32(_mm512_mullo_epi32(lo, k_scale(g, 2 * c)),
                                                    _mm512_mullo_epi32(hi, k_scale(g, 2 * c + 1))));
      }
      __m512i m[4];
      k_mins(g, m);
      const __m512i msum = k_msum(m, pre[b].pairs);
      const __m512 da = _mm512_set1_ps(pre[b].d);
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kKD)));
      const __m512 dm =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kKDmin)));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, da), acc);
      acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dm, da), acc);
    }
    _mm512_storeu_ps(out + 16 * i, acc);
  }
}

// One activation super-block of up to 8 tokens.
struct alignas(64) ActKTokens {
  int8_t qs[8][kQK_K];
  int32_t pairs[8][4];
  float d[8];
};

template <int T>
TF_TARGET_AVX512_VNNI void gemm_k_tiles(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                        const ActKTokens* a, int64_t nb, float* out, int64_t os) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kKBlock;
      const ActKTokens& A = a[b];
      __m512i isum[T];
      for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        for (int k = 0; k < 9; ++k)
          _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 576 * c + 64 * k),
                       _MM_HINT_T0);
        for (int half = 0; half < 2; ++half) {  // low nibbles: sub-block 2c; high: 2c + 1
          __m512i w[8];
          for (int k = 0; k < 8; ++k) {
            const __m512i v = _mm512_loadu_si512(g + 64 * (8 * c + k));
            w[k] = _mm512_and_si512(half ? _mm512_srli_epi16(v, 4) : v, low4);
          }
          const __m512i sc = k_scale(g, 2 * c + half);
          const int off = 64 * c + 32 * half;
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int k = 0; k < 8; ++k)
              s = _mm512_dpbusd_epi32(s, w[k], bcast32(A.qs[t] + off + 4 * k));
            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s, sc));
          }
        }
      }
      __m512i m[4];
      k_mins(g, m);
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kKD)));
      const __m512 dm =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kKDmin)));
      for (int t = 0; t < T; ++t) {
        const __m512 da = _mm512_set1_ps(A.d[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, da), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(k_msum(m, A.pairs[t])), _mm512_mul_ps(dm, da),
                                  acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * os + 16 * i, acc[t]);
  }
}

size_t prep_bytes_q4_kx16(int64_t n) {
  return size_t(n / kQK_K) * sizeof(ActKTokens);
}

void prep_q4_kx16(const uint8_t* acts, size_t as, int64_t ntok, int64_t n, uint8_t* out) {
  const int64_t nb = n / kQK_K;
  auto* a = reinterpret_cast<ActKTokens*>(out);
  for (int64_t t = 0; t < ntok; ++t) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(acts + size_t(t) * as);
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(a[b].qs[t], y[b].qs, kQK_K);
      k_pairs(y[b], a[b].pairs[t]);
      a[b].d[t] = y[b].d;
    }
  }
}

TF_TARGET_AVX512_VNNI void gemm_q4_kx16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                        const uint8_t* prepared, int64_t ntok, int64_t n,
                                        float* out, int64_t os) {
  const auto* a = reinterpret_cast<const ActKTokens*>(prepared);
  with_tokens<8>(int(ntok), [&](auto t) {
    gemm_k_tiles<decltype(t)::value>(tiles, ntiles, tile_bytes, a, n / kQK_K, out, os);
  });
}

// ---- Q6_K
// ----------------------------------------------------------------------------------------
//
// A super-block of a tile: 32 vectors of low-bit bytes (ql), 16 of high-bit bytes (qh), 4 of
// scales, then d. For half h and dword k, with A = ql vector 16h + k, B = ql vector 16h + 8 + k
// and H = qh vector 8h + k, code c (elements 128h + 32c + 4k..+3) is the nibble of A (c = 0, 2:
// low, high) or B (c = 1, 3) with two bits of H above it: 0..63, standing for -32..31. Group g
// of 16 elements (g = 8h + 2c + k / 4) has its own int8 scale; the -32 comes off as
// -32 * (the group's activation sum, from Q8_K's per-16 sums), the start of its integer sum.

constexpr size_t kQ6Block = 16 * sizeof(BlockQ6_K);  // 3360
constexpr size_t kQ6High = 2048, kQ6Scales = 3072, kQ6D = 3328;

// Code c of dword k in half h, for 16 rows.
TF_TARGET_AVX512_VNNI inline __m512i q6_code(const uint8_t* g, int h, int c, int k) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i q = _mm512_loadu_si512(g + 64 * (16 * h + 8 * (c & 1) + k));
  const __m512i hb = _mm512_loadu_si512(g + kQ6High + 64 * (8 * h + k));
  const __m512i nib =
      c < 2 ? _mm512_and_si512(q, low4) : _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
  // Bits 2c, 2c + 1 of each qh byte, moved to bits 4, 5.
  const __m512i two = _mm512_set1_epi8(0x30);
  __m512i hi;
  switch (c) {
    case 0:
      hi = _mm512_slli_epi16(hb, 4);
      break;
    case 1:
      hi = _mm512_slli_epi16(hb, 2);
      break;
    case 2:
      hi = hb;
      break;
    default:
      hi = _mm512_srli_epi16(hb, 2);
      break;
  }
  return _mm512_or_si512(nib, _mm512_and_si512(hi, two));
}

// The int8 scale of group j (0..15) of each row, sign-extended to int32 per lane.
TF_TARGET_AVX512_VNNI inline __m512i q6_scale(const uint8_t* g, int j) {
  const __m512i v = _mm512_loadu_si512(g + kQ6Scales + 64 * (j / 4));
  return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * (j % 4)), 24);
}

struct ActQ6Block {
  int32_t bias[16];  // -32 * (activation sum of group j)
  float d;
};

inline void q6_bias(const BlockQ8_K& y, int32_t* bias) {
  for (int j = 0; j < 16; ++j) bias[j] = -32 * int32_t(y.bsums[j]);
}

TF_TARGET_AVX512_VNNI void dot_q6_kx16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                       const uint8_t* act, int64_t n, float* out) {
  const int64_t nb = n / kQK_K;
  const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
  auto* pre = reinterpret_cast<ActQ6Block*>(act_scratch(size_t(nb) * sizeof(ActQ6Block)));
  for (int64_t b = 0; b < nb; ++b) {
    q6_bias(y[b], pre[b].bias);
    pre[b].d = y[b].d;
  }
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kQ6Block;
      const int8_t* q = y[b].qs;
      for (int k = 0; k < 53; ++k)
        _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 64 * k), _MM_HINT_T0);
      __m512i isum = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h) {
        // s[c][kq]: group 8h + 2c + kq. Each ql/qh dword triple gives its four codes at once.
        __m512i s[4][2];
        for (int c = 0; c < 4; ++c)
          for (int kq = 0; kq < 2; ++kq)
            s[c][kq] = _mm512_set1_epi32(pre[b].bias[8 * h + 2 * c + kq]);
        for (int k = 0; k < 8; ++k) {
          const __m512i A = _mm512_loadu_si512(g + 64 * (16 * h + k));
          const __m512i B = _mm512_loadu_si512(g + 64 * (16 * h + 8 + k));
          const __m512i H = _mm512_loadu_si512(g + kQ6High + 64 * (8 * h + k));
          const __m512i low4 = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(0x30);
          const __m512i code[4] = {_mm512_or_si512(_mm512_and_si512(A, low4),
                                                   _mm512_and_si512(_mm512_slli_epi16(H, 4), two)),
                                   _mm512_or_si512(_mm512_and_si512(B, low4),
                                                   _mm512_and_si512(_mm512_slli_epi16(H, 2), two)),
                                   _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), low4),
                                                   _mm512_and_si512(H, two)),
                                   _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), low4),
                                                   _mm512_and_si512(_mm512_srli_epi16(H, 2), two))};
          for (int c = 0; c < 4; ++c)
            s[c][k / 4] =
                _mm512_dpbusd_epi32(s[c][k / 4], code[c], bcast32(q + 128 * h + 32 * c + 4 * k));
        }
        for (int c = 0; c < 4; ++c)
          for (int kq = 0; kq < 2; ++kq)
            isum = _mm512_add_epi32(isum,
                                    _mm512_mullo_epi32(s[c][kq], q6_scale(g, 8 * h + 2 * c + kq)));
      }
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kQ6D)));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(pre[b].d)),
                            acc);
    }
    _mm512_storeu_ps(out + 16 * i, acc);
  }
}

struct alignas(64) ActQ6Tokens {
  int8_t qs[8][kQK_K];
  int32_t bias[8][16];
  float d[8];
};

template <int T>
TF_TARGET_AVX512_VNNI void gemm_q6_tiles(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                         const ActQ6Tokens* a, int64_t nb, float* out, int64_t os) {
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kQ6Block;
      const ActQ6Tokens& A = a[b];
      for (int k = 0; k < 53; ++k)
        _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 64 * k), _MM_HINT_T0);
      __m512i isum[T];
      for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h)
        for (int c = 0; c < 4; ++c) {
          __m512i w[8];
          for (int k = 0; k < 8; ++k) w[k] = q6_code(g, h, c, k);
          const int j = 8 * h + 2 * c;
          const __m512i sc0 = q6_scale(g, j), sc1 = q6_scale(g, j + 1);
          const int off = 128 * h + 32 * c;
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) {
            __m512i s0 = _mm512_set1_epi32(A.bias[t][j]), s1 = _mm512_set1_epi32(A.bias[t][j + 1]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) {
              s0 = _mm512_dpbusd_epi32(s0, w[k], bcast32(A.qs[t] + off + 4 * k));
              s1 = _mm512_dpbusd_epi32(s1, w[k + 4], bcast32(A.qs[t] + off + 16 + 4 * k));
            }
            isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0),
                                                                 _mm512_mullo_epi32(s1, sc1)));
          }
        }
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kQ6D)));
      for (int t = 0; t < T; ++t)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(A.d[t])), acc[t]);
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * os + 16 * i, acc[t]);
  }
}

size_t prep_bytes_q6_kx16(int64_t n) {
  return size_t(n / kQK_K) * sizeof(ActQ6Tokens);
}

void prep_q6_kx16(const uint8_t* acts, size_t as, int64_t ntok, int64_t n, uint8_t* out) {
  const int64_t nb = n / kQK_K;
  auto* a = reinterpret_cast<ActQ6Tokens*>(out);
  for (int64_t t = 0; t < ntok; ++t) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(acts + size_t(t) * as);
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(a[b].qs[t], y[b].qs, kQK_K);
      q6_bias(y[b], a[b].bias[t]);
      a[b].d[t] = y[b].d;
    }
  }
}

TF_TARGET_AVX512_VNNI void gemm_q6_kx16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                        const uint8_t* prepared, int64_t ntok, int64_t n,
                                        float* out, int64_t os) {
  const auto* a = reinterpret_cast<const ActQ6Tokens*>(prepared);
  with_tokens<8>(int(ntok), [&](auto t) {
    gemm_q6_tiles<decltype(t)::value>(tiles, ntiles, tile_bytes, a, n / kQK_K, out, os);
  });
}

// ---- Q8_0, in llama.cpp's order
// -------------------------------------------------------------------
//
// llama.cpp (and the reference) keeps 8 float lanes per row and token: lane l adds, block after
// block, d_w * d_a times the int32 sum of codes 4l..4l+3, with one FMA; the lanes are summed at
// the end as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). Here vector l of a tile block is
// lane l of 16 rows at once, so 8 accumulators give every row's lanes with the same roundings.

constexpr size_t kQ8Block = 16 * sizeof(BlockQ8_0);  // 544

struct ActQ8Lanes {
  int32_t bias[8];  // -128 * (sum of codes 4l..4l+3): the weights carry +128
  float d;
};

TF_TARGET_AVX512_VNNI inline void q8_lane_bias(const int8_t* q, int32_t* bias) {
  for (int l = 0; l < 8; ++l)
    bias[l] = -128 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
}

TF_TARGET_AVX512_VNNI inline __m512 q8_lanes_sum(const __m512 acc[8]) {
  return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
                       _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])));
}

TF_TARGET_AVX512_VNNI void dot_q8_0x16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                       const uint8_t* act, int64_t n, float* out) {
  const int64_t nb = n / kQK;
  const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
  auto* pre = reinterpret_cast<ActQ8Lanes*>(act_scratch(size_t(nb) * sizeof(ActQ8Lanes)));
  for (int64_t b = 0; b < nb; ++b) {
    q8_lane_bias(y[b].qs, pre[b].bias);
    pre[b].d = _cvtsh_ss(y[b].d);
  }
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc[8];
    for (int l = 0; l < 8; ++l) acc[l] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kQ8Block;
      for (int k = 0; k < 9; ++k)
        _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 64 * k), _MM_HINT_T0);
      const __m512 dd = _mm512_mul_ps(
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 512))),
          _mm512_set1_ps(pre[b].d));
      for (int l = 0; l < 8; ++l) {
        const __m512i s =
            _mm512_dpbusd_epi32(_mm512_set1_epi32(pre[b].bias[l]), _mm512_loadu_si512(g + 64 * l),
                                bcast32(y[b].qs + 4 * l));
        acc[l] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s), acc[l]);
      }
    }
    _mm512_storeu_ps(out + 16 * i, q8_lanes_sum(acc));
  }
}

struct alignas(64) ActQ8Tokens {
  int8_t qs[2][kQK];
  int32_t bias[2][8];
  float d[2];
};

template <int T>
TF_TARGET_AVX512_VNNI void gemm_q8_tiles(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                         const ActQ8Tokens* a, int64_t nb, float* out, int64_t os) {
  for (int64_t i = 0; i < ntiles; ++i) {
    const uint8_t* p = tiles + size_t(i) * tile_bytes;
    __m512 acc[T][8];
    for (int t = 0; t < T; ++t)
      for (int l = 0; l < 8; ++l) acc[t][l] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* g = p + size_t(b) * kQ8Block;
      for (int k = 0; k < 9; ++k)
        _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetch + 64 * k), _MM_HINT_T0);
      const ActQ8Tokens& A = a[b];
      const __m512 dw =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 512)));
      __m512 dd[T];
      for (int t = 0; t < T; ++t) dd[t] = _mm512_mul_ps(dw, _mm512_set1_ps(A.d[t]));
      for (int l = 0; l < 8; ++l) {
        const __m512i w = _mm512_loadu_si512(g + 64 * l);
        for (int t = 0; t < T; ++t) {
          const __m512i s =
              _mm512_dpbusd_epi32(_mm512_set1_epi32(A.bias[t][l]), w, bcast32(A.qs[t] + 4 * l));
          acc[t][l] = _mm512_fmadd_ps(dd[t], _mm512_cvtepi32_ps(s), acc[t][l]);
        }
      }
    }
    for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * os + 16 * i, q8_lanes_sum(acc[t]));
  }
}

size_t prep_bytes_q8_0x16(int64_t n) {
  return size_t(n / kQK) * sizeof(ActQ8Tokens);
}

TF_TARGET_AVX512_VNNI void prep_q8_0x16(const uint8_t* acts, size_t as, int64_t ntok, int64_t n,
                                        uint8_t* out) {
  const int64_t nb = n / kQK;
  auto* a = reinterpret_cast<ActQ8Tokens*>(out);
  for (int64_t t = 0; t < ntok; ++t) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(acts + size_t(t) * as);
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(a[b].qs[t], y[b].qs, kQK);
      q8_lane_bias(y[b].qs, a[b].bias[t]);
      a[b].d[t] = _cvtsh_ss(y[b].d);
    }
  }
}

TF_TARGET_AVX512_VNNI void gemm_q8_0x16(const uint8_t* tiles, int64_t ntiles, size_t tile_bytes,
                                        const uint8_t* prepared, int64_t ntok, int64_t n,
                                        float* out, int64_t os) {
  const auto* a = reinterpret_cast<const ActQ8Tokens*>(prepared);
  if (ntok == 2) return gemm_q8_tiles<2>(tiles, ntiles, tile_bytes, a, n / kQK, out, os);
  gemm_q8_tiles<1>(tiles, ntiles, tile_bytes, a, n / kQK, out, os);
}

}  // namespace

void add_tiles_avx512(Table& t, const Features& f) {
  if (!f.vnni) return;
  t.q4_0x16.dot = dot_q4_0x16;
  t.q4_0x16.prep_bytes = prep_bytes_q4_0x16;
  t.q4_0x16.prep = prep_q4_0x16;
  t.q4_0x16.gemm = gemm_q4_0x16;
  t.q4_kx16.dot = dot_q4_kx16;
  t.q4_kx16.prep_bytes = prep_bytes_q4_kx16;
  t.q4_kx16.prep = prep_q4_kx16;
  t.q4_kx16.gemm = gemm_q4_kx16;
  t.q6_kx16.dot = dot_q6_kx16;
  t.q6_kx16.prep_bytes = prep_bytes_q6_kx16;
  t.q6_kx16.prep = prep_q6_kx16;
  t.q6_kx16.gemm = gemm_q6_kx16;
  t.q8_0x16.dot = dot_q8_0x16;
  t.q8_0x16.prep_bytes = prep_bytes_q8_0x16;
  t.q8_0x16.prep = prep_q8_0x16;
  t.q8_0x16.gemm = gemm_q8_0x16;
}

}  // namespace tf::kernels::detail

#endif
