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

float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);  // round to nearest even; overflow -> inf; NaN stays NaN

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
uint16_t f32_to_bf16(float f);  // round to nearest even; NaN stays NaN

}  // namespace tf
