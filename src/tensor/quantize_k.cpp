// K-quant quantizers. Q8_K (an activation format) follows ggml exactly; Q4_K / Q5_K / Q6_K are
// simple, valid weight quantizers (no error-minimising scale search like ggml's): every
// sub-block's range is covered by construction, so each element is off by at most half a step.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants_internal.h"

namespace tf::detail {
namespace {

// fp16 of a non-negative v, rounded up instead of to nearest, so that a super-block scale
// d with d * 63 >= need is still large enough after storage.
uint16_t fp16_at_least(float v) {
  uint16_t h = f32_to_fp16(v);
  if (h >= 0x7C00) return 0x7BFF;  // beyond the format's range: clip rather than store inf
  if (fp16_to_f32(h) < v && h < 0x7BFF) ++h;  // next representable half (positive values)
  return h;
}

// Smallest integer k in [0, kmax] with k * unit >= need (kmax if none). Division is only a
// first guess; the check fixes float rounding.
int ceil_steps(float need, float unit, int kmax) {
  if (need <= 0) return 0;
  if (unit <= 0) return kmax;
  int k = int(std::min(std::ceil(need / unit), float(kmax)));
  while (k < kmax && float(k) * unit < need) ++k;
  return k;
}

int round_code(float v, int lo, int hi) {
  const float r = round_even(v);
  if (!(r >= float(lo))) return lo;  // also NaN
  return r > float(hi) ? hi : int(r);
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): picks 6-bit scales/mins for 8 sub-blocks of
// 32 and the codes. Model per element: x ~= (d * sc) * q - dmin * m, q in 0..nmax.
void quant_k_affine(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out, uint8_t sc[8],
                    uint8_t m[8], uint8_t q[kQK_K]) {
  // The stored min is subtracted (m >= 0), so it can only express a sub-block minimum <= 0;
  // all-positive data simply starts at code 0.
  float neg_min[8], top[8];
  float max_neg_min = 0;
  for (int s = 0; s < 8; ++s) {
    float mn = 0, mx = 0;
    for (int l = 0; l < 32; ++l) {
      mn = std::min(mn, x[32 * s + l]);
      mx = std::max(mx, x[32 * s + l]);
    }
    neg_min[s] = -mn;
    top[s] = mx;
    max_neg_min = std::max(max_neg_min, -mn);
  }
  // Mins first, rounded up so the bottom of every sub-block is representable.
  const uint16_t dmin_h = fp16_at_least(max_neg_min / 63);
  const float dmin = fp16_to_f32(dmin_h);
  float step_need[8], max_step = 0;
  for (int s = 0; s < 8; ++s) {
    m[s] = uint8_t(ceil_steps(neg_min[s], dmin, 63));
    // Then the step that reaches the top from the (possibly lower) stored offset.
    step_need[s] = (top[s] + dmin * m[s]) / float(nmax);
    max_step = std::max(max_step, step_need[s]);
  }
  const uint16_t d_h = fp16_at_least(max_step / 63);
  const float d = fp16_to_f32(d_h);
  for (int s = 0; s < 8; ++s) {
    sc[s] = uint8_t(ceil_steps(step_need[s], d, 63));
    const float step = d * sc[s], off = dmin * m[s];
    const float inv = step > 0 ? 1.0f / step : 0.0f;
    for (int l = 0; l < 32; ++l)
      q[32 * s + l] = uint8_t(round_code((x[32 * s + l] + off) * inv, 0, nmax));
  }
  *d_out = d_h;
  *dmin_out = dmin_h;
}

}  // namespace

// Mirrors ggml's quantize_row_q8_K_ref, which llama.cpp's x86 build also uses for activations
// (there is no SIMD variant), deliberately byte for byte: the element of largest magnitude
// (first on ties) maps to -127, so d = 1 / (-127 / max) can be negative; codes round half to
// even (ggml's nearest_int) and are capped at 127; d is stored as a float.
void quant_q8_k(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float amax = 0, max = 0;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const float r = round_even(iscale * x[j]);
      b[i].qs[j] = r > 127.0f ? int8_t(127) : sat_i8(r);
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * g + l];
      b[i].bsums[g] = int16_t(sum);
    }
    b[i].d = 1 / iscale;
  }
}

void quant_q4_k(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ4_K*>(dst);
  uint8_t sc[8], m[8], q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quant_k_affine(x, 15, &b[i].d, &b[i].dmin, sc, m, q);
    pack_k_scale_min(sc, m, b[i].scales);
    pack_q4_k_codes(q, b[i].qs);
  }
}

void quant_q5_k(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ5_K*>(dst);
  uint8_t sc[8], m[8], q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quant_k_affine(x, 31, &b[i].d, &b[i].dmin, sc, m, q);
    pack_k_scale_min(sc, m, b[i].scales);
    pack_q5_k_codes(q, b[i].qs, b[i].qh);
  }
}

// Symmetric: each sub-block of 16 gets step amax/31 (codes -31..31; -32 is left unused so
// no element can clip), rounded up to a multiple of the super-block scale d, with int8
// multipliers up to 127.
void quant_q6_k(const float* x, void* dst, int64_t nb) {
  auto* b = static_cast<BlockQ6_K*>(dst);
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float need[16], max_need = 0;
    for (int s = 0; s < 16; ++s) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * s + l]));
      need[s] = amax / 31;
      max_need = std::max(max_need, need[s]);
    }
    b[i].d = fp16_at_least(max_need / 127);
    const float d = fp16_to_f32(b[i].d);
    int8_t q[kQK_K];
    for (int s = 0; s < 16; ++s) {
      b[i].scales[s] = int8_t(ceil_steps(need[s], d, 127));
      const float step = d * b[i].scales[s];
      const float inv = step > 0 ? 1.0f / step : 0.0f;
      for (int l = 0; l < 16; ++l) q[16 * s + l] = int8_t(round_code(x[16 * s + l] * inv, -32, 31));
    }
    // Inverse of q6k_codes() in quants_k.cpp.
    std::memset(b[i].qh, 0, sizeof(b[i].qh));
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + l;
        const int c0 = q[e] + 32, c1 = q[e + 32] + 32, c2 = q[e + 64] + 32, c3 = q[e + 96] + 32;
        b[i].ql[64 * h + l] = uint8_t((c0 & 0xF) | ((c2 & 0xF) << 4));
        b[i].ql[64 * h + 32 + l] = uint8_t((c1 & 0xF) | ((c3 & 0xF) << 4));
        b[i].qh[32 * h + l] =
            uint8_t((c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6));
      }
  }
}

}  // namespace tf::detail
