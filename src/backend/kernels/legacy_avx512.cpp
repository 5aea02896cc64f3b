// AVX-512 VNNI dot products of Q4_0 / Q8_0 weight rows with Q8_0 activations: vpdpbusd does
// the byte products and their sums into int32 lanes in one instruction. Without VNNI (+VBMI,
// GFNI) the AVX2 kernels are used instead (see add_legacy_avx512).
//
// vpdpbusd multiplies unsigned by signed bytes. The weight codes are made unsigned (Q4_0 codes
// are 0..15 before their -8; Q8_0 codes get +128 by flipping the top bit) and the offset times
// the activation sum is subtracted: that "bias" depends only on the activations, so it is
// computed once per call, with the activation codes and scales, into a scratch buffer that
// every row then reads. (Q4_0 here is not llama.cpp's summation order; Q8_0 is.)
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

// GCC 12 warns about the deliberately undefined inputs inside its own AVX-512 headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

// ---- Q4_0, four blocks (72 bytes, 128 elements) per step ----
//
// Two loads cover the 72 bytes (d0, qs0, d1, qs1, ...; the second starts at byte 8 so it ends
// exactly at the group's end). One two-source byte permute packs the four 16-byte nibble arrays
// into one vector; two GF(2) affine transforms (one instruction each) take its low and its
// high nibbles, and two vpdpbusd multiply those with the matching activation halves. Lane t of
// the int32 result belongs to block t / 4, so the four scales (words 0, 9, 18, 27 of the first
// load) are spread 4 lanes each. Fewer instructions per byte than a block pair per vector.
struct alignas(64) ActQuad {
  int8_t lo[64];     // codes 0..15 of the four blocks
  int8_t hi[64];     // codes 16..31
  int32_t bias[16];  // -8 * (sum of the 8 codes lane t multiplies)
  float d[16];       // activation scale of block t / 4
};

TF_TARGET_AVX512_VNNI void prepare_quads(const BlockQ8_0* y, int64_t nb, ActQuad* out) {
  for (int64_t i = 0; i < nb; i += 4) {
    ActQuad& q = out[i / 4];
    for (int j = 0; j < 4; ++j) {
      const bool have = i + j < nb;
      const __m128i z = _mm_setzero_si128();
      const auto* a = reinterpret_cast<const __m128i*>(y[i + (have ? j : 0)].qs);
      _mm_store_si128(reinterpret_cast<__m128i*>(q.lo + 16 * j), have ? _mm_loadu_si128(a) : z);
      _mm_store_si128(reinterpret_cast<__m128i*>(q.hi + 16 * j), have ? _mm_loadu_si128(a + 1) : z);
      _mm_store_ps(q.d + 4 * j, _mm_set1_ps(have ? _cvtsh_ss(y[i + j].d) : 0.0f));
    }
    const __m512i eight = _mm512_set1_epi8(8);
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, _mm512_load_si512(q.lo));
    s = _mm512_dpbusd_epi32(s, eight, _mm512_load_si512(q.hi));
    _mm512_store_si512(q.bias, _mm512_sub_epi32(_mm512_setzero_si512(), s));
  }
}

struct Q4_0Consts {
  __m512i pack;     // vpermt2b indices: qs0..qs3 out of [load(x), load(x + 8)]
  __m512i low_nib;  // affine matrices: low nibble, high nibble (as a value 0..15)
  __m512i high_nib;
  __m512i didx;  // vpermw indices: word 9 * (t / 4) (beyond 16 words: 512-bit form)
};

// Bytes 56..71 of a 72-byte group (only 64..71 are used).
TF_TARGET_AVX512_VNNI inline __m512i tail16(const uint8_t* g) {
  return _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 56)));
}

TF_TARGET_AVX512_VNNI inline __m512 q4_0_quad(__m512i v0, __m512i v8, const ActQuad& a,
                                              const Q4_0Consts& c, __m512 acc) {
  const __m512i packed = _mm512_permutex2var_epi8(v0, c.pack, v8);
  const __m512i lo = _mm512_gf2p8affine_epi64_epi8(packed, c.low_nib, 0);
  const __m512i hi = _mm512_gf2p8affine_epi64_epi8(packed, c.high_nib, 0);
  __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512(a.bias), lo, _mm512_load_si512(a.lo));
  s = _mm512_dpbusd_epi32(s, hi, _mm512_load_si512(a.hi));
  const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(c.didx, v0)));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_load_ps(a.d)), acc);
}

// R consecutive rows side by side (see kRowGroup), one accumulator each; a single row gets two
// so that consecutive FMAs do not wait on each other.
template <int R>
TF_TARGET_AVX512_VNNI inline void q4_0_rows(const uint8_t* w, size_t stride, const ActQuad* quads,
                                            int64_t nq, int64_t rem, const Q4_0Consts& c,
                                            float* out, int64_t os) {
  constexpr size_t kQuad = 4 * sizeof(BlockQ4_0);
  const size_t ahead = prefetch_distance(R, stride);
  constexpr int kAcc = R == 1 ? 2 : R;
  __m512 acc[kAcc];
  for (int k = 0; k < kAcc; ++k) acc[k] = _mm512_setzero_ps();
  int64_t q = 0;
  for (; q < nq; ++q) {
    const ActQuad& a = quads[q];
    for (int k = 0; k < R; ++k) {
      const uint8_t* g = w + k * stride + q * kQuad;
      _mm_prefetch(reinterpret_cast<const char*>(g + ahead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(g + ahead + 64), _MM_HINT_T0);
      const int ai = R == 1 ? int(q & 1) : k;
      acc[ai] = q4_0_quad(_mm512_loadu_si512(g), tail16(g), a, c, acc[ai]);
    }
  }
  if (rem) {  // 1..3 blocks, 18..54 bytes: a masked load reads only those (zeros after)
    const __mmask64 rem_mask = (__mmask64(1) << (rem * sizeof(BlockQ4_0))) - 1;
    for (int k = 0; k < R; ++k) {
      const __m512i v0 = _mm512_maskz_loadu_epi8(rem_mask, w + k * stride + q * kQuad);
      const int ai = R == 1 ? 1 : k;
      acc[ai] = q4_0_quad(v0, _mm512_setzero_si512(), quads[q], c, acc[ai]);
    }
  }
  if constexpr (R == 1) {
    out[0] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
  } else {
    for (int k = 0; k < R; ++k) out[k * os] = _mm512_reduce_add_ps(acc[k]);
  }
}

TF_TARGET_AVX512_VNNI void dot_q4_0(const uint8_t* w, size_t stride, int64_t nrows,
                                    const uint8_t* act, int64_t n, float* out, int64_t os) {
  const int64_t nb = n / kQK, nq = nb / 4, rem = nb % 4;
  auto* quads = reinterpret_cast<ActQuad*>(act_scratch(size_t((nb + 3) / 4) * sizeof(ActQuad)));
  prepare_quads(reinterpret_cast<const BlockQ8_0*>(act), nb, quads);
  Q4_0Consts c;
  alignas(64) uint8_t pack[64];
  for (int k = 0; k < 64; ++k) {
    const int src = 18 * (k / 16) + 2 + k % 16;  // byte of the 72-byte group
    pack[k] = uint8_t(src < 64 ? src : 64 + (src - 56));
  }
  c.pack = _mm512_load_si512(pack);
  // vgf2p8affineqb: bit i of each result byte = parity(byte & matrix byte 7 - i).
  c.low_nib = _mm512_set1_epi64(0x0102040800000000);
  c.high_nib = _mm512_set1_epi64(0x1020408000000000);
  c.didx = _mm512_castsi256_si512(
      _mm256_setr_epi16(0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27));
  int64_t r = 0;
  for (; r + kRowGroup <= nrows; r += kRowGroup)
    q4_0_rows<kRowGroup>(w + size_t(r) * stride, stride, quads, nq, rem, c, out + r * os, os);
  for (; r < nrows; ++r)
    q4_0_rows<1>(w + size_t(r) * stride, stride, quads, nq, rem, c, out + r * os, os);
}

// ---- Q8_0, one block per 256-bit vector ----
//
// llama.cpp's float arithmetic (see dot_q8_0 in legacy_avx2.cpp): vpdpbusd sums the products
// of 4 consecutive codes into each of 8 int32 lanes (weights made unsigned by +128, the bias
// -128 * sum of the lane's 4 activation codes precomputed), and the lanes go into a single
// accumulator with one FMA per block, in block order. Two blocks per 512-bit vector or two
// accumulators would be faster but add the block terms in another order than llama.cpp.
struct alignas(32) ActQ8 {
  int8_t a[32];     // the codes
  int32_t bias[8];  // -128 * (sum of the lane's 4 codes)
  float d;
  float pad[7];
};

// R consecutive rows side by side (see kRowGroup): each row keeps its single accumulator and
// block order, so the results are the same bits; the R chains hide each other's FMA latency.
template <int R>
TF_TARGET_AVX512_VNNI inline void q8_0_rows(const uint8_t* w, size_t stride, const ActQ8* blocks,
                                            int64_t nb, float* out, int64_t os) {
  const __m256i flip = _mm256_set1_epi8(char(0x80));
  const BlockQ8_0* x[R];
  __m256 acc[R];
  const size_t ahead = prefetch_distance(R, stride);
  for (int k = 0; k < R; ++k) {
    x[k] = reinterpret_cast<const BlockQ8_0*>(w + size_t(k) * stride);
    acc[k] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(blocks[i].a));
    const __m256i bias = _mm256_load_si256(reinterpret_cast<const __m256i*>(blocks[i].bias));
    const float da = blocks[i].d;
    for (int k = 0; k < R; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(x[k] + i) + ahead, _MM_HINT_T0);
      const __m256i q =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[k][i].qs)), flip);
      const __m256i s = _mm256_dpbusd_epi32(bias, q, a);
      acc[k] =
          _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x[k][i].d) * da), _mm256_cvtepi32_ps(s), acc[k]);
    }
  }
  for (int k = 0; k < R; ++k) {
    // ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), like ggml's hsum_float_8
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[k]), _mm256_extractf128_ps(acc[k], 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    out[k * os] = _mm_cvtss_f32(h);
  }
}

TF_TARGET_AVX512_VNNI void dot_q8_0(const uint8_t* w, size_t stride, int64_t nrows,
                                    const uint8_t* act, int64_t n, float* out, int64_t os) {
  const int64_t nb = n / kQK;
  const auto* y = reinterpret_cast<const BlockQ8_0*>(act);
  auto* blocks = reinterpret_cast<ActQ8*>(act_scratch(size_t(nb) * sizeof(ActQ8)));
  const __m256i flip = _mm256_set1_epi8(char(0x80));
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), flip, a);
    _mm256_store_si256(reinterpret_cast<__m256i*>(blocks[i].a), a);
    _mm256_store_si256(reinterpret_cast<__m256i*>(blocks[i].bias),
                       _mm256_sub_epi32(_mm256_setzero_si256(), s));
    blocks[i].d = _cvtsh_ss(y[i].d);
  }
  int64_t r = 0;
  for (; r + kRowGroup <= nrows; r += kRowGroup)
    q8_0_rows<kRowGroup>(w + size_t(r) * stride, stride, blocks, nb, out + r * os, os);
  for (; r < nrows; ++r) q8_0_rows<1>(w + size_t(r) * stride, stride, blocks, nb, out + r * os, os);
}

}  // namespace

void add_legacy_avx512(Table& t, const Features& f) {
  if (!f.vnni) return;  // the AVX2 kernels stay in place
  t.dot[slot(DType::Q4_0)] = dot_q4_0;
  t.dot[slot(DType::Q8_0)] = dot_q8_0;
}

}  // namespace tf::kernels::detail

#endif
