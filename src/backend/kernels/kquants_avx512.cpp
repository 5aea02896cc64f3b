// AVX-512 VNNI dot products of Q4_K / Q5_K / Q6_K rows with Q8_K activations.
//
// Per 256-element super-block the codes are unpacked into four 64-byte vectors of unsigned
// bytes (0..15, 0..31 or 0..63). vpmaddubsw multiplies them with the signed activations into
// int16 pair sums (at most 63 * 128 * 2 < 2^15), and vpdpwssd multiplies those by the
// sub-block scale and adds into int32 lanes: the exact integer sum of the reference, regrouped.
// The Q6_K -32 offset and the Q4_K/Q5_K mins only need the activations' per-16 sums (bsums).
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <type_traits>

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX512_VNNI inline void prefetch_block(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p) + kPrefetch;
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

// ---- Q4_K / Q5_K ----
//
// qs[32c + l] holds element 64c + l (low nibble) and 64c + 32 + l (high). A 64-byte load of
// qs covers chunks c, c+1, so its low nibbles are sub-blocks 2c and 2c+2 and its high nibbles
// 2c+1 and 2c+3. The activations are rearranged once per call to match.
struct alignas(64) ActK {
  int8_t a[4][64];  // [a0..31 | a64..95], [a32..63 | a96..127], same for 128..255
  int16_t msum[8];  // bsums of each 32-element sub-block (pairs of the per-16 sums)
  float d;
  float pad[11];
};

TF_TARGET_AVX512_VNNI void prepare_k(const BlockQ8_K* y, int64_t nb, ActK* out) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto* a = reinterpret_cast<const __m256i*>(y[i].qs);
    for (int h = 0; h < 2; ++h) {  // halves of 128
      for (int k = 0; k < 2; ++k) {
        const __m512i v =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(a + 4 * h + k)),
                               _mm256_loadu_si256(a + 4 * h + k + 2), 1);
        _mm512_store_si512(out[i].a[2 * h + k], v);
      }
    }
    const auto* bs = reinterpret_cast<const __m128i*>(y[i].bsums);
    _mm_store_si128(reinterpret_cast<__m128i*>(out[i].msum),
                    _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs + 1)));
    out[i].d = y[i].d;
  }
}

// lo in the low 8 dwords, hi in the high 8.
TF_TARGET_AVX512_VNNI inline __m512i rot(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(lo)), _mm256_set1_epi32(hi),
                            1);
}

// Word indices spreading scale j over the 16 int16 pair sums of its 32-element sub-block.
TF_TARGET_AVX512_VNNI inline __m512i spread_idx(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(short(lo))),
                            _mm256_set1_epi16(short(hi)), 1);
}

template <bool kQ5>
TF_TARGET_AVX512_VNNI void dot_q45k(const uint8_t* w, size_t stride, int64_t nrows,
                                    const uint8_t* act, int64_t n, float* out, int64_t os) {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  const int64_t nb = n / kQK_K;
  auto* ya = reinterpret_cast<ActK*>(act_scratch(size_t(nb) * sizeof(ActK)));
  prepare_k(reinterpret_cast<const BlockQ8_K*>(act), nb, ya);
  const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  const __m512i sidx[4] = {spread_idx(0, 2), spread_idx(1, 3), spread_idx(4, 6), spread_idx(5, 7)};
  // Q5_K: bit 2c of qh[l] is the fifth bit of element 64c + l, bit 2c+1 of element 64c+32+l.
  // Rotating each dword left by (4 - bit) mod 32 brings that bit to bit 4 of every byte.
  const __m512i hrot[4] = {rot(4, 2), rot(3, 1), rot(0, 30), rot(31, 29)};
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const Block*>(w + size_t(r) * stride);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      prefetch_block(x + i, sizeof(Block));
      const ActK& y = ya[i];
      uint64_t sc, mn;
      unpack_k_scales(x[i].scales, &sc, &mn);
      const __m512i scw = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc))));
      const __m512i l0 = _mm512_loadu_si512(x[i].qs), l1 = _mm512_loadu_si512(x[i].qs + 64);
      __m512i q[4] = {_mm512_and_si512(l0, low4), _mm512_and_si512(_mm512_srli_epi16(l0, 4), low4),
                      _mm512_and_si512(l1, low4), _mm512_and_si512(_mm512_srli_epi16(l1, 4), low4)};
      if constexpr (kQ5) {
        const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)x[i].qh));
        for (int k = 0; k < 4; ++k)  // q | (rotated & 0x10)
          q[k] = _mm512_ternarylogic_epi32(q[k], _mm512_rolv_epi32(h, hrot[k]), bit4, 0xF8);
      }
      __m512i isum = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i p = _mm512_maddubs_epi16(q[k], _mm512_load_si512(y.a[k]));
        isum = _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi16(sidx[k], scw));
      }
      // The mins: sum over sub-blocks of m_j * (activation sum of sub-block j).
      const __m128i mw = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(mn)));
      const __m128i msum = _mm_madd_epi16(mw, _mm_load_si128((const __m128i*)y.msum));
      const float d = _cvtsh_ss(x[i].d) * y.d, dmin = _cvtsh_ss(x[i].dmin) * y.d;
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
      acc = _mm512_fnmadd_ps(_mm512_zextps128_ps512(_mm_cvtepi32_ps(msum)), _mm512_set1_ps(dmin),
                             acc);
    }
    out[r * os] = _mm512_reduce_add_ps(acc);
  }
}

// ---- Q6_K ----
//
// In half h, ql[64h + l] holds elements 128h + l (low nibble) and 128h + 64 + l (high), and
// ql[64h + 32 + l] elements 128h + 32 + l and 128h + 96 + l, so one 64-byte load of ql gives
// elements 0..63 (low nibbles) and 64..127 (high) of the half in order: the activations need
// no rearranging. The 2 high bits of those four elements sit at bits 0, 2, 4, 6 of qh[32h + l];
// a dword rotate by (4 - bit) mod 32 moves them to bits 4..5.
TF_TARGET_AVX512_VNNI void dot_q6k(const uint8_t* w, size_t stride, int64_t nrows,
                                   const uint8_t* act, int64_t n, float* out, int64_t os) {
  const auto* y = reinterpret_cast<const BlockQ8_K*>(act);
  const int64_t nb = n / kQK_K;
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  const __m512i rot_lo = rot(4, 2), rot_hi = rot(0, 30);
  // 16 scales, one per 16 elements: vector k covers sub-blocks 4k..4k+3, 8 pair sums each.
  __m512i sidx[4];
  for (int k = 0; k < 4; ++k) {
    alignas(64) int16_t idx[32];
    for (int j = 0; j < 32; ++j) idx[j] = int16_t(4 * k + j / 8);
    sidx[k] = _mm512_load_si512(idx);
  }
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const BlockQ6_K*>(w + size_t(r) * stride);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      prefetch_block(x + i, sizeof(BlockQ6_K));
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)x[i].scales));
      const __m512i scw = _mm512_castsi256_si512(sc16);
      __m512i isum = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h) {
        const __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
        const __m512i hb =
            _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(x[i].qh + 32 * h)));
        const __m512i q0 = _mm512_ternarylogic_epi32(_mm512_and_si512(l, low4),
                                                     _mm512_rolv_epi32(hb, rot_lo), bits45, 0xF8);
        const __m512i q1 =
            _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                                      _mm512_rolv_epi32(hb, rot_hi), bits45, 0xF8);
        const __m512i p0 = _mm512_maddubs_epi16(q0, _mm512_loadu_si512(y[i].qs + 128 * h));
        const __m512i p1 = _mm512_maddubs_epi16(q1, _mm512_loadu_si512(y[i].qs + 128 * h + 64));
        isum = _mm512_dpwssd_epi32(isum, p0, _mm512_permutexvar_epi16(sidx[2 * h], scw));
        isum = _mm512_dpwssd_epi32(isum, p1, _mm512_permutexvar_epi16(sidx[2 * h + 1], scw));
      }
      // Codes were used without their -32: subtract 32 * sum_j scale_j * bsum_j. That term is
      // about as large as the lanes, so the lanes must be added exactly (in int32) before
      // going to float, or the cancellation would cost many bits. The result is the
      // reference's integer sum, and the float steps below are the reference's too.
      const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i*)y[i].bsums));
      isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
      acc += y[i].d * _cvtsh_ss(x[i].d) * float(_mm512_reduce_add_epi32(isum));
    }
    out[r * os] = acc;
  }
}

}  // namespace

void add_kquants_avx512(Table& t, const Features& f) {
  if (!f.vnni) return;  // the AVX2 kernels stay in place
  t.dot[slot(DType::Q4_K)] = dot_q45k<false>;
  t.dot[slot(DType::Q5_K)] = dot_q45k<true>;
  t.dot[slot(DType::Q6_K)] = dot_q6k;
}

}  // namespace tf::kernels::detail

#endif
