// Per-type kernels behind the dispatchers in quants.cpp. Private to the tensor layer.
// All counts are in blocks (nb), already validated by the dispatcher.
#pragma once

#include <cmath>
#include <cstdint>

namespace tf::detail {

// Round to nearest, ties to even, as x86 cvtps/roundps and ggml's nearest_int() do. Using
// nearbyint (rather than an add-a-magic-constant trick) keeps the rounding exact even if the
// compiler is allowed to fuse a preceding multiply into an FMA.
inline float round_even(float v) {
  return std::nearbyint(v);
}

// Saturating float -> int8 conversion with the result x86's cvtps_epi32 + packs would give:
// out-of-range or NaN becomes INT32_MIN there, which then saturates to -128.
inline int8_t sat_i8(float v) {
  if (!(v >= -128.0f)) return -128;  // also catches NaN
  if (v > 127.0f) return 127;
  return static_cast<int8_t>(v);
}

// Legacy 32-element formats (quants_legacy.cpp).
void dequant_q4_0(const void* src, float* dst, int64_t nb);
void dequant_q4_1(const void* src, float* dst, int64_t nb);
void dequant_q5_0(const void* src, float* dst, int64_t nb);
void dequant_q5_1(const void* src, float* dst, int64_t nb);
void dequant_q8_0(const void* src, float* dst, int64_t nb);
void dequant_q8_1(const void* src, float* dst, int64_t nb);
void quant_q4_0(const float* src, void* dst, int64_t nb);
void quant_q4_1(const float* src, void* dst, int64_t nb);
void quant_q5_0(const float* src, void* dst, int64_t nb);
void quant_q5_1(const float* src, void* dst, int64_t nb);
void quant_q8_0(const float* src, void* dst, int64_t nb);
void quant_q8_1(const float* src, void* dst, int64_t nb);
float dot_q4_0(const void* w, const void* a, int64_t nb);  // a: Q8_0
float dot_q4_1(const void* w, const void* a, int64_t nb);  // a: Q8_1
float dot_q5_0(const void* w, const void* a, int64_t nb);  // a: Q8_0
float dot_q5_1(const void* w, const void* a, int64_t nb);  // a: Q8_1
float dot_q8_0(const void* w, const void* a, int64_t nb);  // a: Q8_0
float dot_q8_1(const void* w, const void* a, int64_t nb);  // a: Q8_1

// K-quants, 256-element super-blocks (quants_k.cpp, quantize_k.cpp).
void dequant_q2_k(const void* src, float* dst, int64_t nb);
void dequant_q3_k(const void* src, float* dst, int64_t nb);
void dequant_q4_k(const void* src, float* dst, int64_t nb);
void dequant_q5_k(const void* src, float* dst, int64_t nb);
void dequant_q6_k(const void* src, float* dst, int64_t nb);
void dequant_q8_k(const void* src, float* dst, int64_t nb);
void quant_q4_k(const float* src, void* dst, int64_t nb);
void quant_q5_k(const float* src, void* dst, int64_t nb);
void quant_q6_k(const float* src, void* dst, int64_t nb);
void quant_q8_k(const float* src, void* dst, int64_t nb);
float dot_q2_k(const void* w, const void* a, int64_t nb);  // a: Q8_K for all of these
float dot_q3_k(const void* w, const void* a, int64_t nb);
float dot_q4_k(const void* w, const void* a, int64_t nb);
float dot_q5_k(const void* w, const void* a, int64_t nb);
float dot_q6_k(const void* w, const void* a, int64_t nb);
float dot_q8_k(const void* w, const void* a, int64_t nb);

}  // namespace tf::detail
