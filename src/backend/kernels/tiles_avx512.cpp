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

template <int T>
void gemm_upto(int nt, const uint8_t* tiles, int64_t ntiles, size_t tile_bytes, const ActTokens* a,
               int64_t nb, float* out, int64_t os) {
  if constexpr (T >= 1) {
    if (nt == T) return gemm_tiles<T>(tiles, ntiles, tile_bytes, a, nb, out, os);
    gemm_upto<T - 1>(nt, tiles, ntiles, tile_bytes, a, nb, out, os);
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
  gemm_upto<16>(int(ntok), tiles, ntiles, tile_bytes, reinterpret_cast<const ActTokens*>(prepared),
                n / kQK, out, os);
}

}  // namespace

void add_tiles_avx512(Table& t, const Features& f) {
  if (!f.vnni) return;
  t.q4_0x16.dot = dot_q4_0x16;
  t.q4_0x16.prep_bytes = prep_bytes_q4_0x16;
  t.q4_0x16.prep = prep_q4_0x16;
  t.q4_0x16.gemm = gemm_q4_0x16;
}

}  // namespace tf::kernels::detail

#endif
