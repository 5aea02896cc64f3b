// K-quants (256-element super-blocks): dequantization and dot products with Q8_K activations.
// Each type has one "codes" function that unpacks the bit layout into plain int8 codes in
// element order; dequantize and vec_dot both use it, so the layout lives in one place.
// Dequantize keeps ggml's expression order ((d * sc) * q - dmin * m) so token embeddings read
// through it are bit-identical to llama.cpp's.
#include <type_traits>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants_internal.h"

namespace tf::detail {
namespace {

// q in 0..3. Element 128h + 32k + l comes from bits 2k..2k+1 of qs[32h + l].
void q2k_codes(const BlockQ2_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l)
        q[128 * h + 32 * k + l] = int8_t((b.qs[32 * h + l] >> (2 * k)) & 3);
}

// q in -4..3: the 2 low bits as in Q2_K, minus 4 when the element's hmask bit is clear.
void q3k_codes(const BlockQ3_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) {
        const int lo = (b.qs[32 * h + l] >> (2 * k)) & 3;
        const bool hi = (b.hmask[l] >> (4 * h + k)) & 1;
        q[128 * h + 32 * k + l] = int8_t(lo - (hi ? 0 : 4));
      }
}

// q in 0..15 (Q4_K) or 0..31 (Q5_K, with qh).
void q4k_codes(const uint8_t* qs, const uint8_t* qh, int8_t* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
      if (qh) {
        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
      }
      q[64 * c + l] = int8_t(lo);
      q[64 * c + 32 + l] = int8_t(hi);
    }
}

// q in -32..31. In half h, ql[64h + l] holds elements 128h + l (low nibble) and 128h + 64 + l
// (high), ql[64h + 32 + l] holds 128h + 32 + l and 128h + 96 + l; qh[32h + l] has the top 2
// bits of those four elements at bits 0, 2, 4, 6 in the order +0, +32, +64, +96.
void q6k_codes(const BlockQ6_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* ql = b.ql + 64 * h;
      const int hb = b.qh[32 * h + l];
      int8_t* o = q + 128 * h + l;
      o[0] = int8_t(((ql[l] & 0xF) | ((hb & 3) << 4)) - 32);
      o[32] = int8_t(((ql[l + 32] & 0xF) | (((hb >> 2) & 3) << 4)) - 32);
      o[64] = int8_t(((ql[l] >> 4) | (((hb >> 4) & 3) << 4)) - 32);
      o[96] = int8_t(((ql[l + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32);
    }
}

// Integer dot of n codes with n activation codes; exact in int32 for every K type.
inline int32_t idot(const int8_t* q, const int8_t* a, int n) {
  int32_t s = 0;
  for (int j = 0; j < n; ++j) s += int32_t(q[j]) * int32_t(a[j]);
  return s;
}

// Q4_K / Q5_K share everything but the code unpacking.
template <class Block>
void dequant_q45k(const Block* b, float* y, int64_t nb) {
  int8_t q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    if constexpr (std::is_same_v<Block, BlockQ5_K>) {
      q4k_codes(b[i].qs, b[i].qh, q);
    } else {
      q4k_codes(b[i].qs, nullptr, q);
    }
    const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      k_scale_min(b[i].scales, s, &sc, &m);
      const float dl = d * sc, ml = dmin * m;
      for (int l = 0; l < 32; ++l) y[32 * s + l] = dl * q[32 * s + l] - ml;
    }
  }
}

template <class Block>
float dot_q45k(const Block* x, const BlockQ8_K* y, int64_t nb) {
  float sum = 0;
  int8_t q[kQK_K];
  for (int64_t i = 0; i < nb; ++i) {
    if constexpr (std::is_same_v<Block, BlockQ5_K>) {
      q4k_codes(x[i].qs, x[i].qh, q);
    } else {
      q4k_codes(x[i].qs, nullptr, q);
    }
    int32_t isum = 0, msum = 0;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      k_scale_min(x[i].scales, s, &sc, &m);
      isum += sc * idot(q + 32 * s, y[i].qs + 32 * s, 32);
      // The min term needs only the activation sums, which Q8_K precomputes per 16.
      msum += m * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
    }
    sum +=
        y[i].d * fp16_to_f32(x[i].d) * float(isum) - y[i].d * fp16_to_f32(x[i].dmin) * float(msum);
  }
  return sum;
}

}  // namespace

// ---- dequantize ----

void dequant_q2_k(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ2_K*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    q2k_codes(b[i], q);
    const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
    for (int s = 0; s < 16; ++s) {
      const float dl = d * (b[i].scales[s] & 0xF), ml = dmin * (b[i].scales[s] >> 4);
      for (int l = 0; l < 16; ++l) y[16 * s + l] = dl * q[16 * s + l] - ml;
    }
  }
}

void dequant_q3_k(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ3_K*>(src);
  int8_t q[kQK_K];
  uint8_t sc[16];
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    q3k_codes(b[i], q);
    q3k_scales(b[i].scales, sc);
    const float d = fp16_to_f32(b[i].d);
    for (int s = 0; s < 16; ++s) {
      const float dl = d * (sc[s] - 32);
      for (int l = 0; l < 16; ++l) y[16 * s + l] = dl * q[16 * s + l];
    }
  }
}

void dequant_q4_k(const void* src, float* y, int64_t nb) {
  dequant_q45k(static_cast<const BlockQ4_K*>(src), y, nb);
}

void dequant_q5_k(const void* src, float* y, int64_t nb) {
  dequant_q45k(static_cast<const BlockQ5_K*>(src), y, nb);
}

void dequant_q6_k(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ6_K*>(src);
  int8_t q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    q6k_codes(b[i], q);
    const float d = fp16_to_f32(b[i].d);
    for (int s = 0; s < 16; ++s) {
      const float dl = d * b[i].scales[s];
      for (int l = 0; l < 16; ++l) y[16 * s + l] = dl * q[16 * s + l];
    }
  }
}

void dequant_q8_k(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    for (int j = 0; j < kQK_K; ++j) y[j] = b[i].d * b[i].qs[j];
  }
}

// ---- dot products with Q8_K: exact int32 per super-block, then float ----

float dot_q2_k(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  int8_t q[kQK_K];
  for (int64_t i = 0; i < nb; ++i) {
    q2k_codes(x[i], q);
    int32_t isum = 0, msum = 0;
    for (int s = 0; s < 16; ++s) {
      isum += (x[i].scales[s] & 0xF) * idot(q + 16 * s, y[i].qs + 16 * s, 16);
      msum += (x[i].scales[s] >> 4) * y[i].bsums[s];
    }
    sum +=
        y[i].d * fp16_to_f32(x[i].d) * float(isum) - y[i].d * fp16_to_f32(x[i].dmin) * float(msum);
  }
  return sum;
}

float dot_q3_k(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ3_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  int8_t q[kQK_K];
  uint8_t sc[16];
  for (int64_t i = 0; i < nb; ++i) {
    q3k_codes(x[i], q);
    q3k_scales(x[i].scales, sc);
    int32_t isum = 0;
    for (int s = 0; s < 16; ++s) isum += (sc[s] - 32) * idot(q + 16 * s, y[i].qs + 16 * s, 16);
    sum += y[i].d * fp16_to_f32(x[i].d) * float(isum);
  }
  return sum;
}

float dot_q4_k(const void* w, const void* a, int64_t nb) {
  return dot_q45k(static_cast<const BlockQ4_K*>(w), static_cast<const BlockQ8_K*>(a), nb);
}

float dot_q5_k(const void* w, const void* a, int64_t nb) {
  return dot_q45k(static_cast<const BlockQ5_K*>(w), static_cast<const BlockQ8_K*>(a), nb);
}

float dot_q6_k(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  int8_t q[kQK_K];
  for (int64_t i = 0; i < nb; ++i) {
    q6k_codes(x[i], q);
    int32_t isum = 0;
    for (int s = 0; s < 16; ++s) isum += x[i].scales[s] * idot(q + 16 * s, y[i].qs + 16 * s, 16);
    sum += y[i].d * fp16_to_f32(x[i].d) * float(isum);
  }
  return sum;
}

float dot_q8_k(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ8_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < nb; ++i) sum += x[i].d * y[i].d * float(idot(x[i].qs, y[i].qs, kQK_K));
  return sum;
}

}  // namespace tf::detail
