// IEEE half and bfloat16 conversions (scalar, exact round-to-nearest-even).
#pragma once

#include <cstdint>
#include <cstring>

namespace tf {

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Exact (every half is a float). Inline because dot-product loops call it per element.
inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t em = h & 0x7FFFu;  // exponent and mantissa
  if (em >= 0x7C00u) return bits_to_f32(sign | 0x7F800000u | ((em & 0x3FFu) << 13));  // inf/NaN
  if (em >= 0x0400u) return bits_to_f32(sign | ((em << 13) + (112u << 23)));  // rebias 15 -> 127
  const float mag = float(em) * 5.9604644775390625e-8f;  // subnormal: em * 2^-24, exact
  return sign ? -mag : mag;
}
uint16_t f32_to_fp16(float f);  // round to nearest even; overflow -> inf; NaN stays NaN

inline float bf16_to_f32(uint16_t h) {
  return bits_to_f32(uint32_t(h) << 16);
}
uint16_t f32_to_bf16(float f);  // round to nearest even; NaN stays NaN

}  // namespace tf
