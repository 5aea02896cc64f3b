// AVX2 activation converters. Each must write exactly the bytes of the scalar quantize_row,
// because the dot-product kernels are tested against the reference on those bytes and because
// the reference matches llama.cpp's x86 quantizers. The subtle parts are NaN/inf and rounding;
// the comments at each step say which reference line they mirror.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include <cstring>

#include "tensor/blocks.h"
#include "tensor/fp16.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX2 inline __m256 abs_ps(__m256 v) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

// max(|v|, acc) ignoring a NaN in v, like the reference's fmax(amax, fabs(x)): vmaxps returns
// its second operand when either is NaN, and acc never holds NaN.
TF_TARGET_AVX2 inline __m256 absmax_acc(__m256 v, __m256 acc) {
  return _mm256_max_ps(abs_ps(v), acc);
}

// Horizontal max of a NaN-free vector.
TF_TARGET_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 32 scaled floats -> 32 int8 codes in order, as the reference's sat_i8(round_even(v)) (with
// Q8_K's extra "> 127 -> 127", which sat_i8 already does). vcvtps2dq rounds half to even like
// nearbyint; it turns NaN and out-of-range values into INT32_MIN, which the packs saturate to
// -128. That is the reference's answer for NaN and large negatives, but the reference gives 127
// for +inf or large positives (possible when 127/amax overflows for amax < ~4e-37), so clamp
// at 127 first: min(127, v) keeps a NaN v because vminps returns its second operand then.
TF_TARGET_AVX2 inline __m256i to_i8x32(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  const __m256 hi = _mm256_set1_ps(127.0f);
  const __m256i i0 = _mm256_cvtps_epi32(_mm256_min_ps(hi, v0));
  const __m256i i1 = _mm256_cvtps_epi32(_mm256_min_ps(hi, v1));
  const __m256i i2 = _mm256_cvtps_epi32(_mm256_min_ps(hi, v2));
  const __m256i i3 = _mm256_cvtps_epi32(_mm256_min_ps(hi, v3));
  // The packs work per 128-bit lane; the dword permute restores element order.
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TF_TARGET_AVX2 void quant_q8_0(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_setzero_ps();
    m = absmax_acc(v0, m);
    m = absmax_acc(v1, m);
    m = absmax_acc(v2, m);
    m = absmax_acc(v3, m);
    const float amax = hmax(m);
    // Same scalar expressions as the reference (x86 ggml): 127/amax, not 1/(amax/127).
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    b[i].d = f32_to_fp16(amax / 127.0f);
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i q = to_i8x32(_mm256_mul_ps(v0, vid), _mm256_mul_ps(v1, vid),
                               _mm256_mul_ps(v2, vid), _mm256_mul_ps(v3, vid));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs), q);
  }
}

// Sums of each 16 codes of 256 (8 vectors of 32): maddubs with ones gives pair sums, madd
// quad sums, two hadd rounds the group sums, spread over lanes; then reorder to 0..15.
TF_TARGET_AVX2 void group_sums16(const __m256i* q, int16_t* out) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i m[8];
  for (int k = 0; k < 8; ++k) m[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q[k]), ones16);
  // Vector k holds groups 2k (low lane) and 2k+1 (high lane) as 4 partial sums each.
  const __m256i h01 = _mm256_hadd_epi32(m[0], m[1]), h23 = _mm256_hadd_epi32(m[2], m[3]);
  const __m256i h45 = _mm256_hadd_epi32(m[4], m[5]), h67 = _mm256_hadd_epi32(m[6], m[7]);
  // Low lanes now hold groups 0,2,4,6 / 8,10,12,14; high lanes the odd ones.
  const __m256i g = _mm256_packs_epi32(_mm256_hadd_epi32(h01, h23), _mm256_hadd_epi32(h45, h67));
  const __m128i even = _mm256_castsi256_si128(g), odd = _mm256_extracti128_si256(g, 1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi16(even, odd));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), _mm_unpackhi_epi16(even, odd));
}

TF_TARGET_AVX2 void quant_q8_k(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < kQK_K; k += 8) m = absmax_acc(_mm256_loadu_ps(x + k), m);
    const float amax = hmax(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The reference keeps the signed value of the first element whose |x| reaches amax (it
    // updates only on a strictly larger |x|); find that element.
    float max = 0.0f;
    const __m256 va = _mm256_set1_ps(amax);
    for (int k = 0; k < kQK_K; k += 8) {
      const int mask =
          _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + k)), va, _CMP_EQ_OQ));
      if (mask) {
        max = x[k + __builtin_ctz(unsigned(mask))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    __m256i q[8];
    for (int k = 0; k < 8; ++k) {
      const float* p = x + 32 * k;
      q[k] = to_i8x32(
          _mm256_mul_ps(_mm256_loadu_ps(p), vs), _mm256_mul_ps(_mm256_loadu_ps(p + 8), vs),
          _mm256_mul_ps(_mm256_loadu_ps(p + 16), vs), _mm256_mul_ps(_mm256_loadu_ps(p + 24), vs));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + 32 * k), q[k]);
    }
    group_sums16(q, b[i].bsums);
    b[i].d = 1 / iscale;
  }
}

// F16C's vcvtps2ph with round-to-nearest-even gives the same bits as f32_to_fp16, including
// subnormals, overflow to inf, and NaN (quiet bit set, top payload bits kept).
TF_TARGET_AVX2 void quant_f16(const float* x, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), h);
  }
  for (; i < n; ++i) d[i] = f32_to_fp16(x[i]);
}

// f32_to_bf16 in integer lanes (vcvtneps2bf16 would flush subnormals, so it is not used):
// round to nearest even by adding 0x7FFF + lsb, except NaN, which is truncated and made quiet.
TF_TARGET_AVX2 __m256i bf16_bits(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i bias =
      _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), _mm256_and_si256(hi, _mm256_set1_epi32(1)));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)),
                                         _mm256_set1_epi32(0x7F800000));
  const __m256i quiet = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

TF_TARGET_AVX2 void quant_bf16(const float* x, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // Values are <= 0xFFFF, so the unsigned-saturating pack is exact; it interleaves lanes.
    const __m256i p = _mm256_packus_epi32(bf16_bits(_mm256_loadu_ps(x + i)),
                                          bf16_bits(_mm256_loadu_ps(x + i + 8)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm256_permute4x64_epi64(p, 0xD8));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(x[i]);
}

}  // namespace

void add_quant_avx2(Table& t) {
  t.quant[slot(DType::Q8_0)] = quant_q8_0;
  t.quant[slot(DType::Q8_K)] = quant_q8_k;
  t.quant[slot(DType::F16)] = quant_f16;
  t.quant[slot(DType::BF16)] = quant_bf16;
}

}  // namespace tf::kernels::detail

#endif
