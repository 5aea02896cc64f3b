// Hand-built legacy blocks: each expectation is written from the format description, so a
// wrong nibble order, bit position or offset in the dequantizer fails here.
#include <gtest/gtest.h>

#include "tensor/blocks.h"
#include "tensor/quants.h"
#include "tensor_test_util.h"
#include "util/error.h"

namespace tf {
namespace {

using namespace tf::test;

TEST(DequantLegacy, Q4_0) {
  BlockQ4_0 b{};
  b.d = kHalf0_5;
  // Element j (< 16) is the low nibble of qs[j], element j + 16 the high nibble.
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  const auto y = dequant(DType::Q4_0, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f) << j;
  }
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[16], 3.5f);
  EXPECT_EQ(y[31], -4.0f);
}

TEST(DequantLegacy, Q4_1) {
  BlockQ4_1 b{};
  b.d = kHalf0_25;
  b.m = kHalfMinus1;
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  const auto y = dequant(DType::Q4_1, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.25f - 1.0f) << j;
    EXPECT_EQ(y[j + 16], (15 - j) * 0.25f - 1.0f) << j;
  }
  EXPECT_EQ(y[15], 2.75f);
}

TEST(DequantLegacy, Q5_0) {
  BlockQ5_0 b{};
  b.d = kHalf2;
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  // qh is little-endian: bit k of the uint32 is the fifth bit of element k.
  b.qh[0] = 0x01;  // element 0
  b.qh[1] = 0x80;  // element 15
  b.qh[2] = 0x00;
  b.qh[3] = 0xFF;  // elements 24..31
  const auto y = dequant(DType::Q5_0, &b, 32);
  auto high = [](int k) { return k == 0 || k == 15 || k >= 24; };
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], ((j | (high(j) ? 16 : 0)) - 16) * 2.0f) << j;
    EXPECT_EQ(y[j + 16], (((15 - j) | (high(j + 16) ? 16 : 0)) - 16) * 2.0f) << j;
  }
  EXPECT_EQ(y[0], 0.0f);    // (0 | 16) - 16
  EXPECT_EQ(y[1], -30.0f);  // 1 - 16
  EXPECT_EQ(y[15], 30.0f);  // (15 | 16) - 16
  EXPECT_EQ(y[16], -2.0f);  // 15 - 16
  EXPECT_EQ(y[24], 14.0f);  // (7 | 16) - 16
  EXPECT_EQ(y[31], 0.0f);   // (0 | 16) - 16
}

TEST(DequantLegacy, Q5_1) {
  BlockQ5_1 b{};
  b.d = kHalf0_5;
  b.m = kHalf3;
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
  b.qh[0] = 0x00;
  b.qh[1] = 0x00;
  b.qh[2] = 0x01;  // element 16
  b.qh[3] = 0x80;  // element 31
  const auto y = dequant(DType::Q5_1, &b, 32);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(y[j], j * 0.5f + 3.0f) << j;
  EXPECT_EQ(y[16], (15 + 16) * 0.5f + 3.0f);
  EXPECT_EQ(y[17], 14 * 0.5f + 3.0f);
  EXPECT_EQ(y[31], (0 + 16) * 0.5f + 3.0f);
}

TEST(DequantLegacy, Q8_0AndQ8_1) {
  BlockQ8_0 b{};
  b.d = kHalfMinus0_125;
  for (int j = 0; j < 32; ++j) b.qs[j] = int8_t(j * 8 - 128);
  const auto y = dequant(DType::Q8_0, &b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j * 8 - 128) * -0.125f) << j;
  EXPECT_EQ(y[0], 16.0f);

  BlockQ8_1 c{};
  c.d = kHalf1_5;
  c.s = kHalf3;  // not used by dequantization
  for (int j = 0; j < 32; ++j) c.qs[j] = int8_t(127 - j);
  const auto z = dequant(DType::Q8_1, &c, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(z[j], (127 - j) * 1.5f) << j;
}

TEST(DequantLegacy, MultipleBlocksAdvance) {
  BlockQ4_0 b[2]{};
  b[0].d = kHalf1;
  b[1].d = kHalf2;
  for (int j = 0; j < 16; ++j) {
    b[0].qs[j] = 0x99;  // every code 9 -> +1
    b[1].qs[j] = 0x00;  // every code 0 -> -8
  }
  const auto y = dequant(DType::Q4_0, b, 64);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 1.0f);
  for (int j = 32; j < 64; ++j) EXPECT_EQ(y[j], -16.0f);
}

TEST(DequantLegacy, PlainTypes) {
  const uint16_t h[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
  EXPECT_EQ(dequant(DType::F16, h, 4), (std::vector<float>{1.0f, -2.0f, 65504.0f, 0x1p-24f}));
  const uint16_t bf[2] = {0x3F80, 0xC040};
  EXPECT_EQ(dequant(DType::BF16, bf, 2), (std::vector<float>{1.0f, -3.0f}));
  const float f[3] = {1.5f, -0.0f, 7.0f};
  EXPECT_EQ(dequant(DType::F32, f, 3), (std::vector<float>{1.5f, -0.0f, 7.0f}));
}

TEST(DequantLegacy, RejectsBadInput) {
  BlockQ4_0 b{};
  float out[64];
  EXPECT_THROW(dequantize_row(DType::Q4_0, &b, out, 31), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_0, &b, out, -32), Error);
  EXPECT_THROW(dequantize_row(DType::I8, &b, out, 4), Error);
  EXPECT_THROW(dequantize_row(DType::IQ4_NL, &b, out, 32), Error);
  EXPECT_THROW(quantize_row(DType::Q2_K, out, &b, 0), Error);
  EXPECT_THROW(vec_dot(DType::I32, &b, &b, 4), Error);
  EXPECT_NO_THROW(dequantize_row(DType::Q4_0, &b, out, 0));
}

}  // namespace
}  // namespace tf
