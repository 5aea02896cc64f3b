// The searches work in two levels, as the formats do. First each sub-block gets its own best
// float scale (and offset) by trying a few candidate step sizes around the min/max one and
// refitting each by least squares. Then those are rounded to the 6- or 8-bit multiples of a
// super-block scale the format stores, the codes are recomputed with the stored values, and
// the super-block scale(s) are refitted by least squares over the whole block. Every step keeps
// the best candidate measured on the values the reader will actually reconstruct.
#include "tools/weight_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace tf::tools {
namespace {

constexpr int kSteps = 8;  // candidate step sizes tried per sub-block, each side of min/max

// Round to nearest (even) and clamp. Adding and removing 1.5 * 2^23 rounds any |v| < 2^22
// in two additions, where lrint/nearbyint are library calls unless errno handling is off.
inline float round_clampf(float v, float lo, float hi) {
  const float r = (v + 12582912.0f) - 12582912.0f;
  return std::min(std::max(r, lo), hi);  // minss/maxss, no branches; NaN stays NaN here...
}
inline int round_clamp(float v, int lo, int hi) {
  const float r = round_clampf(v, float(lo), float(hi));
  return r == r ? int(r) : lo;  // ... and becomes the low code
}

inline float sum8(const float* v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// The float a half-precision store of v gives back (what readers see).
inline float as_fp16(float v) {
  return fp16_to_f32(f32_to_fp16(v));
}

// ---- Q8_0: ggml's reference rule: d = amax / 127, q = round(x / d) ----

// roundf (halves away from zero), as ggml's reference quantizer rounds, so that our Q8_0
// tensors are byte for byte those of llama-quantize. Exact for |v| < 2^23.
inline int round_away(float v) {
  const int t = int(v);  // truncates
  const float frac = v - float(t);
  return t + (frac >= 0.5f) - (frac <= -0.5f);
}

void quant_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d > 0 ? 1 / d : 0;
    b[i].d = f32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) b[i].qs[j] = int8_t(round_away(x[j] * id));  // |x * id| <= 127
  }
}

// ---- Q4_K / Q5_K: x = (d * sc) * q - (dmin * m), sc and m 6-bit, q in 0..nmax ----

// Best x ~= a * q + b over n values with b <= 0 (the format subtracts a non-negative min).
struct Affine {
  float a = 0, b = 0;
};

Affine fit_affine(const float* x, int n, int nmax) {
  float mn = 0, mx = 0;
  for (int i = 0; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  if (mx <= mn) return {0, mn};  // all zero
  Affine best{(mx - mn) / nmax, mn};
  float sx = 0, sxx = 0;
  for (int i = 0; i < n; ++i) {
    sx += x[i];
    sxx += x[i] * x[i];
  }
  float best_err = INFINITY;
  for (int k = -kSteps; k <= kSteps; ++k) {
    const float iscale = (float(nmax) + 0.1f * float(k)) / (mx - mn);
    // Eight partial sums per quantity: independent lanes the compiler can keep in vector
    // registers (it may not reorder one float sum by itself).
    float l1[8] = {}, l2[8] = {}, lx[8] = {};
    for (int i = 0; i < n; i += 8)
      for (int j = 0; j < 8; ++j) {
        const float q = round_clampf(iscale * (x[i + j] - mn), 0, float(nmax));
        l1[j] += q;
        l2[j] += q * q;
        lx[j] += x[i + j] * q;
      }
    const float sl = sum8(l1), sll = sum8(l2), sxl = sum8(lx);
    // Least squares for (a, b) given the codes, then b clipped to <= 0; the error follows
    // from the same sums.
    const float det = float(n) * sll - sl * sl;
    if (det <= 0) continue;
    float a = (float(n) * sxl - float(sl) * sx) / det,
          b = (float(sll) * sx - float(sl) * sxl) / det;
    if (b > 0) {
      b = 0;
      a = sxl / sll;
    }
    if (a <= 0) continue;
    const float err =
        sxx - 2 * a * sxl - 2 * b * sx + a * a * sll + 2 * a * b * sl + float(n) * b * b;
    if (err < best_err) {
      best_err = err;
      best = {a, b};
    }
  }
  return best;
}

// Codes and squared error of a super-block for given stored scales.
double affine_codes(const float* x, int nmax, float d, float dmin, const uint8_t sc[8],
                    const uint8_t m[8], uint8_t q[kQK_K]) {
  double err = 0;
  for (int s = 0; s < 8; ++s) {
    const float step = d * sc[s], off = dmin * m[s];
    const float inv = step > 0 ? 1 / step : 0;
    for (int l = 0; l < 32; ++l) {
      const int i = 32 * s + l;
      q[i] = uint8_t(round_clamp((x[i] + off) * inv, 0, nmax));
      const float e = step * q[i] - off - x[i];  // as dequantize computes it
      err += double(e) * e;
    }
  }
  return err;
}

// Picks d, dmin, the 6-bit sc/m and the codes for one super-block.
void quant_affine_block(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out,
                        uint8_t sc[8], uint8_t m[8], uint8_t q[kQK_K]) {
  Affine f[8];
  float max_a = 0, max_off = 0;
  for (int s = 0; s < 8; ++s) {
    f[s] = fit_affine(x + 32 * s, 32, nmax);
    max_a = std::max(max_a, f[s].a);
    max_off = std::max(max_off, -f[s].b);
  }
  float d = as_fp16(max_a / 63), dmin = as_fp16(max_off / 63);
  auto scales_for = [&](float dd, float dm, uint8_t* sc_o, uint8_t* m_o) {
    for (int s = 0; s < 8; ++s) {
      // A sub-block with any spread keeps a non-zero step, or it would collapse to its offset.
      sc_o[s] = uint8_t(dd > 0 ? round_clamp(f[s].a / dd, f[s].a > 0 ? 1 : 0, 63) : 0);
      m_o[s] = uint8_t(dm > 0 ? round_clamp(-f[s].b / dm, 0, 63) : 0);
    }
  };
  scales_for(d, dmin, sc, m);
  double best = affine_codes(x, nmax, d, dmin, sc, m, q);
  // Refit d and dmin over the block for fixed integer scales and codes:
  // x ~= d * u - dmin * v with u = sc * q, v = m.
  for (int iter = 0; iter < 2; ++iter) {
    double suu = 0, svv = 0, suv = 0, sxu = 0, sxv = 0;
    for (int s = 0; s < 8; ++s)
      for (int l = 0; l < 32; ++l) {
        const int i = 32 * s + l;
        const double u = double(sc[s]) * q[i], v = m[s];
        suu += u * u;
        svv += v * v;
        suv += u * v;
        sxu += x[i] * u;
        sxv += x[i] * v;
      }
    double nd, ndmin;
    const double det = suu * svv - suv * suv;
    if (svv == 0 || det <= 1e-12 * suu * svv) {  // no mins in use: fit d alone
      nd = suu > 0 ? sxu / suu : 0;
      ndmin = dmin;
    } else {
      nd = (sxu * svv - sxv * suv) / det;
      ndmin = (sxu * suv - sxv * suu) / det;
    }
    if (!(nd > 0) || !(ndmin >= 0)) break;
    const float td = as_fp16(float(nd)), tdmin = as_fp16(float(ndmin));
    uint8_t tq[kQK_K];
    const double err = affine_codes(x, nmax, td, tdmin, sc, m, tq);
    if (!(err < best)) break;
    best = err;
    d = td;
    dmin = tdmin;
    std::memcpy(q, tq, sizeof tq);
  }
  *d_out = f32_to_fp16(d);
  *dmin_out = f32_to_fp16(dmin);
}

void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
  uint8_t sc[8], m[8], q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quant_affine_block(x, 15, &b[i].d, &b[i].dmin, sc, m, q);
    pack_k_scale_min(sc, m, b[i].scales);
    pack_q4_k_codes(q, b[i].qs);
  }
}

void quant_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
  uint8_t sc[8], m[8], q[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quant_affine_block(x, 31, &b[i].d, &b[i].dmin, sc, m, q);
    pack_k_scale_min(sc, m, b[i].scales);
    pack_q5_k_codes(q, b[i].qs, b[i].qh);
  }
}

// ---- Q6_K: x = (d * sc) * q, sc signed 8-bit, q in -32..31 ----

// Best signed scale for x ~= s * q over 16 values. The element of largest magnitude maps to
// about -32, the end of the code range with one more step.
float fit_symmetric(const float* x) {
  float vmax = 0;
  for (int i = 0; i < 16; ++i)
    if (std::fabs(x[i]) > std::fabs(vmax)) vmax = x[i];
  if (vmax == 0) return 0;
  float best = -vmax / 32, best_score = -1;
  for (int k = -kSteps; k <= kSteps; ++k) {
    const float iscale = -(32.0f + 0.1f * float(k)) / vmax;
    float lx[8] = {}, l2[8] = {};
    for (int i = 0; i < 16; i += 8)
      for (int j = 0; j < 8; ++j) {
        const float q = round_clampf(iscale * x[i + j], -32, 31);
        lx[j] += x[i + j] * q;
        l2[j] += q * q;
      }
    const float sxq = sum8(lx), sqq = sum8(l2);
    // With the optimal s = sxq / sqq the error is sum x^2 - sxq^2 / sqq: maximise the latter.
    if (sqq > 0 && sxq * sxq / sqq > best_score) {
      best_score = sxq * sxq / sqq;
      best = sxq / sqq;
    }
  }
  return best;
}

double symmetric_codes(const float* x, float d, const int8_t sc[16], int8_t q[kQK_K]) {
  double err = 0;
  for (int s = 0; s < 16; ++s) {
    const float step = d * sc[s];
    const float inv = step != 0 ? 1 / step : 0;
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * s + l;
      q[i] = int8_t(round_clamp(x[i] * inv, -32, 31));
      const float e = step * q[i] - x[i];
      err += double(e) * e;
    }
  }
  return err;
}

void quant_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float s[16], max_abs = 0;
    for (int j = 0; j < 16; ++j) {
      s[j] = fit_symmetric(x + 16 * j);
      max_abs = std::max(max_abs, std::fabs(s[j]));
    }
    float d = as_fp16(max_abs / 127);
    for (int j = 0; j < 16; ++j)
      b[i].scales[j] = int8_t(d > 0 ? round_clamp(s[j] / d, -128, 127) : 0);
    int8_t q[kQK_K];
    double best = symmetric_codes(x, d, b[i].scales, q);
    for (int iter = 0; iter < 2; ++iter) {  // refit d for fixed scales and codes
      double sxu = 0, suu = 0;
      for (int j = 0; j < kQK_K; ++j) {
        const double u = double(b[i].scales[j / 16]) * q[j];
        sxu += x[j] * u;
        suu += u * u;
      }
      if (!(suu > 0) || !(sxu > 0)) break;
      const float td = as_fp16(float(sxu / suu));
      int8_t tq[kQK_K];
      const double err = symmetric_codes(x, td, b[i].scales, tq);
      if (!(err < best)) break;
      best = err;
      d = td;
      std::memcpy(q, tq, sizeof tq);
    }
    b[i].d = f32_to_fp16(d);
    // ql[64h + l]: elements 128h + l (low nibble) and +64 (high); ql[64h + 32 + l]: +32 and
    // +96; qh[32h + l]: the top two bits of those four at bits 0, 2, 4, 6.
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

}  // namespace

void quantize_weights(DType t, const float* src, void* dst, int64_t n, Effort effort) {
  const int64_t nb = n / int64_t(dtype_info(t).block_size);
  if (n % int64_t(dtype_info(t).block_size) != 0) return quantize_row(t, src, dst, n);  // throws
  if (effort == Effort::kFast && t != DType::Q8_0) return quantize_row(t, src, dst, n);
  switch (t) {
    case DType::Q8_0:
      return quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case DType::Q4_K:
      return quant_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
    case DType::Q5_K:
      return quant_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
    case DType::Q6_K:
      return quant_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
    default:
      return quantize_row(t, src, dst, n);
  }
}

}  // namespace tf::tools
