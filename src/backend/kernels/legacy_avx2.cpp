// AVX2 dot products of Q4_0 / Q8_0 weight rows with Q8_0 activations. One 256-bit vector holds
// one 32-element block. Per block and row: an exact int32 dot in 8 lanes, converted to float
// and scaled by d_w * d_a into the row's accumulator; the lanes are summed at the end.
// Activation-only work is done once per call into a scratch buffer that every row reads.
#include "backend/kernels/internal.h"

#ifdef TF_KERNELS_X86
#include <immintrin.h>

#include "tensor/blocks.h"

namespace tf::kernels::detail {
namespace {

TF_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Per activation block: two 32-byte vectors (meaning depends on the kernel) and the scale.
struct alignas(32) ActBlock {
  int8_t v0[32];
  int8_t v1[32];
  float d;
  float pad[7];
};

ActBlock* scratch_blocks(int64_t nb) {
  return reinterpret_cast<ActBlock*>(act_scratch(size_t(nb) * sizeof(ActBlock)));
}

// Q4_0 codes q are 0..15 and the weight is d * (q - 8). maddubs multiplies unsigned by signed
// bytes, so use q as is and subtract maddubs(8, a), the activation-only part (v1). Pair sums
// stay in int16: |q * a| <= 15 * 128, two of them < 2^15.
TF_TARGET_AVX2 void prepare_q4_0(const BlockQ8_0* y, int64_t nb, ActBlock* out) {
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[i].v0), a);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[i].v1),
                       _mm256_maddubs_epi16(_mm256_set1_epi8(8), a));
    out[i].d = _cvtsh_ss(y[i].d);
  }
}

TF_TARGET_AVX2 inline __m256 q4_0_block(const BlockQ4_0& x, const ActBlock& a, __m256 acc) {
  // Broadcasting the 16 nibble bytes to both lanes and shifting only the high lane by 4 gives
  // elements 0..15 (low nibbles) then 16..31 (high nibbles), the reference order.
  __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.qs)));
  q = _mm256_and_si256(_mm256_srlv_epi64(q, _mm256_setr_epi64x(0, 0, 4, 4)),
                       _mm256_set1_epi8(0x0F));
  const __m256i p =
      _mm256_sub_epi16(_mm256_maddubs_epi16(q, _mm256_load_si256((const __m256i*)a.v0)),
                       _mm256_load_si256((const __m256i*)a.v1));
  const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  return _mm256_fmadd_ps(s, _mm256_set1_ps(_cvtsh_ss(x.d) * a.d), acc);
}

TF_TARGET_AVX2 void dot_q4_0(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* act,
                             int64_t n, float* out, int64_t os) {
  const int64_t nb = n / kQK;
  ActBlock* blocks = scratch_blocks(nb);
  prepare_q4_0(reinterpret_cast<const BlockQ8_0*>(act), nb, blocks);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const BlockQ4_0*>(w + size_t(r) * stride);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(x + i) + kPrefetch, _MM_HINT_T0);
      acc0 = q4_0_block(x[i], blocks[i], acc0);
      acc1 = q4_0_block(x[i + 1], blocks[i + 1], acc1);
    }
    if (i < nb) acc0 = q4_0_block(x[i], blocks[i], acc0);
    out[r * os] = hsum(_mm256_add_ps(acc0, acc1));
  }
}

// Q8_0 with llama.cpp's float arithmetic (ggml_vec_dot_q8_0_q8_0's AVX2 path, which its
// AVX-512 builds use too, and tinyBLAS_Q0_AVX): per block, the products are summed in groups
// of 4 consecutive elements into 8 int32 lanes, and each lane goes into the row's single float
// accumulator with one FMA by d_w * d_a, in block order; the lanes are added at the end as
// ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). Any other grouping, or splitting the blocks over
// two accumulators, changes the float sums in the last bit now and then, which flips later
// Q8_0 activation roundings and moves logits visibly (see dot_q8_0 in
// tensor/quants_legacy.cpp); this computes the reference's result bit for bit.
//
// The integer part widens both sides to int16 and uses madd (exact for every int8 pair, -128
// included, unlike ggml's sign trick); hadd then forms the groups of 4 in the lane order
// l0 l1 l4 l5 | l2 l3 l6 l7, which is undone once per row, before the final sum.
TF_TARGET_AVX2 void prepare_q8_0(const BlockQ8_0* y, int64_t nb, ActBlock* out) {
  for (int64_t i = 0; i < nb; ++i) {
    const auto* q = reinterpret_cast<const __m128i*>(y[i].qs);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[i].v0),
                       _mm256_cvtepi8_epi16(_mm_loadu_si128(q)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[i].v1),
                       _mm256_cvtepi8_epi16(_mm_loadu_si128(q + 1)));
    out[i].d = _cvtsh_ss(y[i].d);
  }
}

TF_TARGET_AVX2 inline __m256 q8_0_block(const BlockQ8_0& x, const ActBlock& a, __m256 acc) {
  const auto* q = reinterpret_cast<const __m128i*>(x.qs);
  const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(q));
  const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(q + 1));
  const __m256i p = _mm256_hadd_epi32(
      _mm256_madd_epi16(w0, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.v0))),
      _mm256_madd_epi16(w1, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.v1))));
  return _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(x.d) * a.d), _mm256_cvtepi32_ps(p), acc);
}

TF_TARGET_AVX2 void dot_q8_0(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* act,
                             int64_t n, float* out, int64_t os) {
  const int64_t nb = n / kQK;
  ActBlock* blocks = scratch_blocks(nb);
  prepare_q8_0(reinterpret_cast<const BlockQ8_0*>(act), nb, blocks);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto* x = reinterpret_cast<const BlockQ8_0*>(w + size_t(r) * stride);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(x + i) + kPrefetch, _MM_HINT_T0);
      acc = q8_0_block(x[i], blocks[i], acc);
    }
    // l0 l1 l4 l5 | l2 l3 l6 l7 -> l0 .. l7 (64-bit pieces 0 2 1 3)
    acc = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(acc), 0xD8));
    out[r * os] = hsum(acc);
  }
}

}  // namespace

void add_legacy_avx2(Table& t) {
  t.dot[slot(DType::Q4_0)] = dot_q4_0;
  t.dot[slot(DType::Q8_0)] = dot_q8_0;
}

}  // namespace tf::kernels::detail

#endif
