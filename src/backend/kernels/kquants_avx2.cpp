// AVX2 dot products of Q4_K / Q5_K / Q6_K rows with Q8_K activations.
//
// Per 32 codes: unsigned bytes (0..15, 0..31, 0..63) times signed activations with maddubs
// into int16 pair sums (at most 63 * 128 * 2 < 2^15), then madd with the sub-block scale into
// int32 lanes. Each 256-bit vector of codes covers 32 elements in order, so the activations are
// read as they are. The Q6_K -32 offset and the Q4_K/Q5_K mins use the activations' bsums.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <type_traits>

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TF_TARGET_AVX2 inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

TF_TARGET_AVX2 inline void prefetch_block(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p) + kPrefetch;
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

// vpshufb indices that copy int16 word k of each 128-bit lane to all 8 words of that lane.
TF_TARGET_AVX2 inline __m256i word_bcast_idx(int k) {
  return _mm256_set1_epi16(short((2 * k) | ((2 * k + 1) << 8)));
}

// Moves bit b of every byte to bit 4 (other bits are garbage; the caller masks).
TF_TARGET_AVX2 inline __m256i bit_to_4(__m256i v, int b) {
  return b <= 4 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(4 - b))
                : _mm256_srl_epi16(v, _mm_cvtsi32_si128(b - 4));
}

// ---- Q4_K / Q5_K: qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high);
// for Q5_K bits 2c and 2c+1 of qh[l] are their fifth bits.
template <bool kQ5>
TF_TARGET_AVX2 void dot_q45k(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* act,
                             int64_t n, float* out, int64_t os) {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
  const int64_t nb = n / kQK_K;
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const Block*>(w + size_t(r) * stride);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      prefetch_block(x + i, sizeof(Block));
      uint64_t sc, mn;
      unpack_k_scales(x[i].scales, &sc, &mn);
      // The 8 scales as int16, in both lanes, for the word broadcasts below.
      const __m256i scw =
          _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc))));
      __m256i hb = _mm256_setzero_si256();
      if constexpr (kQ5) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh));
      __m256i isum = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * c));
        __m256i q0 = _mm256_and_si256(l, low4);
        __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(l, 4), low4);
        if constexpr (kQ5) {
          q0 = _mm256_or_si256(q0, _mm256_and_si256(bit_to_4(hb, 2 * c), bit4));
          q1 = _mm256_or_si256(q1, _mm256_and_si256(bit_to_4(hb, 2 * c + 1), bit4));
        }
        const auto* a = reinterpret_cast<const __m256i*>(y[i].qs + 64 * c);
        const __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256(a));
        const __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256(a + 1));
        const __m256i s0 = _mm256_shuffle_epi8(scw, word_bcast_idx(2 * c));
        const __m256i s1 = _mm256_shuffle_epi8(scw, word_bcast_idx(2 * c + 1));
        isum = _mm256_add_epi32(
            isum, _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
      }
      // The mins: sum_j m_j * (activation sum of sub-block j) = pairs of the per-16 bsums.
      const auto* bs = reinterpret_cast<const __m128i*>(y[i].bsums);
      const __m128i bs32 = _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs + 1));
      const __m128i msum = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn))), bs32);
      const float d = _cvtsh_ss(x[i].d) * y[i].d, dmin = _cvtsh_ss(x[i].dmin) * y[i].d;
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d), acc);
      acc = _mm256_fnmadd_ps(_mm256_zextps128_ps256(_mm_cvtepi32_ps(msum)), _mm256_set1_ps(dmin),
                             acc);
    }
    out[r * os] = hsum(acc);
  }
}

// ---- Q6_K: in half h, ql[64h + l] holds elements 128h + l (low nibble) and 128h + 64 + l
// (high), ql[64h + 32 + l] elements 128h + 32 + l and 128h + 96 + l; qh[32h + l] has the top
// 2 bits of those four at bits 0, 2, 4, 6 in the order +0, +32, +64, +96.
TF_TARGET_AVX2 void dot_q6k(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* act,
                            int64_t n, float* out, int64_t os) {
  const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
  const int64_t nb = n / kQK_K;
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  // Even scales to the low lane, odd to the high: a vector of 32 codes spans sub-blocks 2j
  // (low lane) and 2j+1 (high lane), so broadcasting word j per lane gives its scales.
  const __m128i deinterleave = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const BlockQ6_K*>(w + size_t(r) * stride);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      prefetch_block(x + i, sizeof(BlockQ6_K));
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
      const __m256i scw = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, deinterleave));
      __m256i isum = _mm256_setzero_si256();
      for (int h = 0; h < 2; ++h) {
        const auto* ql = reinterpret_cast<const __m256i*>(x[i].ql + 64 * h);
        const __m256i l0 = _mm256_loadu_si256(ql), l1 = _mm256_loadu_si256(ql + 1);
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h));
        const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(l0, low4),
                                              _mm256_and_si256(_mm256_slli_epi16(hb, 4), bits45)),
                              _mm256_or_si256(_mm256_and_si256(l1, low4),
                                              _mm256_and_si256(_mm256_slli_epi16(hb, 2), bits45)),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                              _mm256_and_si256(hb, bits45)),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                              _mm256_and_si256(_mm256_srli_epi16(hb, 2), bits45))};
        for (int k = 0; k < 4; ++k) {
          const int j = 4 * h + k;  // elements 32j .. 32j + 31
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 32 * j));
          const __m256i p = _mm256_maddubs_epi16(q[k], a);
          isum = _mm256_add_epi32(
              isum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(scw, word_bcast_idx(j))));
        }
      }
      // Codes were used without their -32: subtract 32 * sum_g scale_g * bsum_g, in int32 so
      // that the large, mostly cancelling terms are exact (the reference's integer sum).
      const __m256i off = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8),
                                            _mm256_loadu_si256((const __m256i*)y[i].bsums));
      isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 5));
      acc += y[i].d * _cvtsh_ss(x[i].d) * float(hsum_epi32(isum));
    }
    out[r * os] = acc;
  }
}

}  // namespace

void add_kquants_avx2(Table& t) {
  t.dot[slot(DType::Q4_K)] = dot_q45k<false>;
  t.dot[slot(DType::Q5_K)] = dot_q45k<true>;
  t.dot[slot(DType::Q6_K)] = dot_q6k;
}

}  // namespace tf::kernels::detail

#endif
