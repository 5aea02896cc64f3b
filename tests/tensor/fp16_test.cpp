#include "tensor/fp16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace tf {
namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

bool is_half_nan(uint16_t h) {
  return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
}

TEST(Fp16, KnownEncodings) {
  EXPECT_EQ(f32_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_fp16(0.5f), 0x3800);
  EXPECT_EQ(f32_to_fp16(65504.0f), 0x7BFF);         // largest finite half
  EXPECT_EQ(f32_to_fp16(0x1p-14f), 0x0400);         // smallest normal
  EXPECT_EQ(f32_to_fp16(0x1p-24f), 0x0001);         // smallest subnormal
  EXPECT_EQ(f32_to_fp16(1023 * 0x1p-24f), 0x03FF);  // largest subnormal
  EXPECT_EQ(f32_to_fp16(-0x1p-24f), 0x8001);
}

TEST(Fp16, Decodes) {
  EXPECT_EQ(fp16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(fp16_to_f32(0x03FF), 1023 * 0x1p-24f);
  EXPECT_EQ(fp16_to_f32(0x0400), 0x1p-14f);
  EXPECT_TRUE(std::signbit(fp16_to_f32(0x8000)));
  EXPECT_EQ(fp16_to_f32(0x7C00), kInf);
  EXPECT_EQ(fp16_to_f32(0xFC00), -kInf);
  EXPECT_TRUE(std::isnan(fp16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(fp16_to_f32(0xFC01)));
}

TEST(Fp16, RoundsToNearestEven) {
  // 1 + 2^-11 lies halfway between 1 (mantissa 0, even) and 1 + 2^-10 (odd): down.
  EXPECT_EQ(f32_to_fp16(1.0f + 0x1p-11f), 0x3C00);
  // 1 + 3*2^-11 lies halfway between 0x3C01 (odd) and 0x3C02 (even): up.
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3C02);
  // Just above / below a tie go to the nearer neighbour.
  EXPECT_EQ(f32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * 0x1p-11f - 0x1p-20f), 0x3C01);
  // Subnormal ties: 2^-25 is halfway between 0 and the smallest subnormal -> 0 (even);
  // 3 * 2^-25 is halfway between 1 and 2 subnormal steps -> 2.
  EXPECT_EQ(f32_to_fp16(0x1p-25f), 0x0000);
  EXPECT_EQ(f32_to_fp16(-0x1p-25f), 0x8000);
  EXPECT_EQ(f32_to_fp16(0x1p-25f * 1.0001f), 0x0001);
  EXPECT_EQ(f32_to_fp16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(f32_to_fp16(0x1p-26f), 0x0000);
  EXPECT_EQ(f32_to_fp16(1e-30f), 0x0000);
  // Rounding up out of the subnormal range gives the smallest normal.
  EXPECT_EQ(f32_to_fp16(0x1p-14f - 0x1p-26f), 0x0400);
}

TEST(Fp16, OverflowInfNaN) {
  EXPECT_EQ(f32_to_fp16(65519.0f), 0x7BFF);  // below the midpoint 65520
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7C00);  // tie with odd 65504 -> up, i.e. to infinity
  EXPECT_EQ(f32_to_fp16(1e6f), 0x7C00);
  EXPECT_EQ(f32_to_fp16(-1e30f), 0xFC00);
  EXPECT_EQ(f32_to_fp16(std::numeric_limits<float>::max()), 0x7C00);
  EXPECT_EQ(f32_to_fp16(kInf), 0x7C00);
  EXPECT_EQ(f32_to_fp16(-kInf), 0xFC00);
  EXPECT_TRUE(is_half_nan(f32_to_fp16(kNaN)));
  EXPECT_TRUE(is_half_nan(f32_to_fp16(-kNaN)));
  // A NaN whose payload lives only in the low bits must not turn into infinity.
  EXPECT_TRUE(is_half_nan(f32_to_fp16(bits_to_f32(0x7F800001))));
  // The sign survives: a positive quiet NaN is 0x7E00, not a negative one.
  EXPECT_EQ(f32_to_fp16(bits_to_f32(0x7FC00000)), 0x7E00);
  EXPECT_EQ(f32_to_fp16(bits_to_f32(0xFFC00000)), 0xFE00);
}

TEST(Fp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_f32(uint16_t(h));
    if (is_half_nan(uint16_t(h))) {
      EXPECT_TRUE(std::isnan(f)) << h;
      continue;
    }
    // Independent decode: sign * mantissa * 2^exponent.
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? std::ldexp(m, -24) : e == 31 ? INFINITY : std::ldexp(1024 + m, e - 25);
    if (h & 0x8000) v = -v;
    ASSERT_EQ(f, float(v)) << h;
    ASSERT_EQ(f32_to_fp16(f), h) << h;
  }
}

TEST(Bf16, Conversions) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC000), -2.0f);
  // Ties: 1 + 2^-8 is halfway between 0x3F80 (even) and 0x3F81 -> down; 1 + 3*2^-8 is halfway
  // between 0x3F81 and 0x3F82 (even) -> up.
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3F808000)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3F818000)), 0x3F82);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3F808001)), 0x3F81);
  // Subnormals keep their bits (no flush to zero).
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00010000)), 0x0001);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00018000)), 0x0002);
  // The largest float rounds up to infinity; infinities stay.
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(f32_to_bf16(kInf), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-kInf), 0xFF80);
  // NaN stays NaN even when rounding would carry its payload away.
  const uint16_t n = f32_to_bf16(bits_to_f32(0x7F800001));
  EXPECT_EQ(n & 0x7F80, 0x7F80);
  EXPECT_NE(n & 0x7F, 0);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(kNaN))));
}

}  // namespace
}  // namespace tf
