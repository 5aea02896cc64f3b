#include "tensor/fp16.h"

namespace tf {

uint16_t f32_to_fp16(float f) {
  const uint32_t u = f32_to_bits(f);
  const auto sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7FFFFFFF;
  if (a > 0x7F800000u) {
    // NaN: keep the top payload bits and force the quiet bit, like x86 F16C does.
    return uint16_t(sign | 0x7E00 | ((a >> 13) & 0x3FF));
  }
  // 65520 is the midpoint between 65504 (largest half, odd mantissa) and 2^16: it and anything
  // above round to infinity.
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00);
  if (a >= 0x38800000u) {
    // Normal half: rebias the exponent (127 -> 15) and round off 13 mantissa bits. A carry out
    // of the mantissa correctly bumps the exponent.
    uint32_t h = (a - (112u << 23)) >> 13;
    const uint32_t rem = a & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  // Subnormal half (or zero): the result is round(|f| / 2^-24). With the implicit bit,
  // |f| = m * 2^(e - 150), so the shift below is 126 - e (>= 14 here).
  const uint32_t e = a >> 23;
  if (e < 102) return sign;  // |f| < 2^-25: below half the smallest subnormal (or a tie to 0)
  const uint32_t m = (a & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - e;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;  // q may reach 0x400: the smallest normal
  return uint16_t(sign | q);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_to_bits(f);
  if ((u & 0x7FFFFFFF) > 0x7F800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  // Adding 0x7FFF (+1 when the kept lsb is odd) rounds to nearest even; overflow carries into
  // the exponent and produces inf, as it should.
  return uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

}  // namespace tf
