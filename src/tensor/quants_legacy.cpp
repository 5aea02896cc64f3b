// Legacy 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
#include <cfloat>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants_internal.h"

namespace tf::detail {
namespace {

uint32_t load_qh(const uint8_t qh[4]) {
  return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}
void store_qh(uint8_t qh[4], uint32_t v) {
  for (int i = 0; i < 4; ++i) qh[i] = uint8_t(v >> (8 * i));
}

// The element of largest magnitude, with its sign (first one on ties). The symmetric formats
// map it to the most negative code (-8 or -16), which has no positive counterpart, so the
// full code range is used.
float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, int n, float* mn, float* mx) {
  *mn = FLT_MAX;
  *mx = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < *mn) *mn = x[j];
    if (x[j] > *mx) *mx = x[j];
  }
}

// floor(v) clamped to [0, hi]: the weight quantizers below round by adding 0.5 (or the code
// offset + 0.5) and truncating, like ggml's reference quantizers, so files we write match.
int trunc_code(float v, int hi) {
  if (!(v > 0)) return 0;
  if (v >= float(hi)) return hi;
  return int(v);
}

// Integer dot of the 32 codes of a 4/5-bit block (already unpacked, offset removed) with a
// Q8 block. Kept in int32: |q| <= 31 and |a| <= 128 over 32 elements cannot overflow.
int32_t idot32(const int8_t* q, const int8_t* a) {
  int32_t s = 0;
  for (int j = 0; j < kQK; ++j) s += int32_t(q[j]) * int32_t(a[j]);
  return s;
}

// Unpacks nibbles (+ optional fifth bit) into 32 codes minus `offset`.
void unpack4(const uint8_t* qs, int offset, int8_t* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = int8_t((qs[j] & 0xF) - offset);
    q[j + kQK / 2] = int8_t((qs[j] >> 4) - offset);
  }
}
void unpack5(const uint8_t* qs, uint32_t qh, int offset, int8_t* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    const int hi0 = int((qh >> j) & 1) << 4;
    const int hi1 = int((qh >> (j + kQK / 2)) & 1) << 4;
    q[j] = int8_t(((qs[j] & 0xF) | hi0) - offset);
    q[j + kQK / 2] = int8_t(((qs[j] >> 4) | hi1) - offset);
  }
}

// Shared by Q8_0 and Q8_1 (the latter also wants the code sum). Mirrors ggml's x86 (AVX/AVX2;
// AVX-512 builds take the same path) quantize_row_q8_0/q8_1 rather than the portable
// reference, deliberately: llama.cpp quantizes activations with that code, and matching its
// bytes is what makes our logits comparable. The differences from the reference are
// (1) the inverse scale is 127/amax, not 1/(amax/127), and (2) codes round half to even
// (vroundps), not half away from zero (roundf).
// Returns the float (not yet fp16-rounded) scale d and the code sum.
float quant_q8_block(const float* x, int8_t* qs, int32_t* sum) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int32_t s = 0;
  for (int j = 0; j < kQK; ++j) {
    qs[j] = sat_i8(round_even(x[j] * id));
    s += qs[j];
  }
  *sum = s;
  return d;
}

}  // namespace

// ---- dequantize ----

void dequant_q4_0(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = float((b[i].qs[j] & 0xF) - 8) * d;
      y[j + kQK / 2] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = float(b[i].qs[j] & 0xF) * d + m;
      y[j + kQK / 2] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequant_q5_0(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ5_0*>(src);
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    unpack5(b[i].qs, load_qh(b[i].qh), 16, q);
    for (int j = 0; j < kQK; ++j) y[j] = float(q[j]) * d;
  }
}

void dequant_q5_1(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ5_1*>(src);
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
    unpack5(b[i].qs, load_qh(b[i].qh), 0, q);
    for (int j = 0; j < kQK; ++j) y[j] = float(q[j]) * d + m;
  }
}

void dequant_q8_0(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(b[i].qs[j]) * d;
  }
}

void dequant_q8_1(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = float(b[i].qs[j]) * d;
  }
}

// ---- quantize ----

void quant_q4_0(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f32_to_fp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = trunc_code(x[j] * id + 8.5f, 15);
      const int q1 = trunc_code(x[j + kQK / 2] * id + 8.5f, 15);
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quant_q4_1(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float mn, mx;
    min_max(x, kQK, &mn, &mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f32_to_fp16(d);
    b[i].m = f32_to_fp16(mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = trunc_code((x[j] - mn) * id + 0.5f, 15);
      const int q1 = trunc_code((x[j + kQK / 2] - mn) * id + 0.5f, 15);
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quant_q5_0(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = trunc_code(x[j] * id + 16.5f, 31);
      const int q1 = trunc_code(x[j + kQK / 2] * id + 16.5f, 31);
      b[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= uint32_t(q0 >> 4) << j;
      qh |= uint32_t(q1 >> 4) << (j + kQK / 2);
    }
    store_qh(b[i].qh, qh);
  }
}

void quant_q5_1(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float mn, mx;
    min_max(x, kQK, &mn, &mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f32_to_fp16(d);
    b[i].m = f32_to_fp16(mn);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = trunc_code((x[j] - mn) * id + 0.5f, 31);
      const int q1 = trunc_code((x[j + kQK / 2] - mn) * id + 0.5f, 31);
      b[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= uint32_t(q0 >> 4) << j;
      qh |= uint32_t(q1 >> 4) << (j + kQK / 2);
    }
    store_qh(b[i].qh, qh);
  }
}

void quant_q8_0(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    int32_t sum;
    b[i].d = f32_to_fp16(quant_q8_block(x, b[i].qs, &sum));
  }
}

void quant_q8_1(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    int32_t sum;
    const float d = quant_q8_block(x, b[i].qs, &sum);
    b[i].d = f32_to_fp16(d);
    // ggml multiplies by the unrounded float d here, not by the stored fp16 scale.
    b[i].s = f32_to_fp16(d * float(sum));
  }
}

// ---- dot products: exact int32 per block, then one float multiply-add per block ----

float dot_q4_0(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    unpack4(x[i].qs, 8, q);
    sum += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(idot32(q, y[i].qs));
  }
  return sum;
}

float dot_q4_1(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sum = 0;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    unpack4(x[i].qs, 0, q);
    // sum_j (d q_j + m) a_j = d * sum q_j a_j + m * (sum a_j), and Q8_1 carries sum a_j as s.
    sum += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(idot32(q, y[i].qs)) +
           fp16_to_f32(x[i].m) * fp16_to_f32(y[i].s);
  }
  return sum;
}

float dot_q5_0(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sum = 0;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    unpack5(x[i].qs, load_qh(x[i].qh), 16, q);
    sum += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(idot32(q, y[i].qs));
  }
  return sum;
}

float dot_q5_1(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sum = 0;
  int8_t q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    unpack5(x[i].qs, load_qh(x[i].qh), 0, q);
    sum += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(idot32(q, y[i].qs)) +
           fp16_to_f32(x[i].m) * fp16_to_f32(y[i].s);
  }
  return sum;
}

// Summed exactly like llama.cpp's x86 kernels, ggml_vec_dot_q8_0_q8_0 (AVX2 path, which
// AVX-512 builds also take) and llamafile's tinyBLAS_Q0_AVX (same arithmetic): eight float
// lanes, lane l holding the int32 sum of the products of elements 4l..4l+3 of each block,
// accumulated across blocks by a fused multiply-add with the float product of the two scales;
// at the end the lanes are added as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). Rounding each
// block term separately, as a plain loop does, moves the result by an ulp or so, and that is
// enough to flip the rounding of a later activation quantization now and then: on the
// TinyStories Q8_0 goldens it moved single-token log-probabilities by up to ~0.05.
float dot_q8_0(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float acc[8] = {};
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d);
    for (int l = 0; l < 8; ++l) {
      int32_t s = 0;
      for (int j = 4 * l; j < 4 * l + 4; ++j) s += int32_t(x[i].qs[j]) * int32_t(y[i].qs[j]);
      acc[l] = std::fma(d, float(s), acc[l]);
    }
  }
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

float dot_q8_1(const void* w, const void* a, int64_t nb) {
  const auto* x = static_cast<const BlockQ8_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < nb; ++i) {
    sum += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(idot32(x[i].qs, y[i].qs));
  }
  return sum;
}

}  // namespace tf::detail
