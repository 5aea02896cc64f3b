// Hand-built K-quant super-blocks with distinct scales/mins; specific elements are checked
// against values worked out by hand from the layout (see the comments next to each).
#include <gtest/gtest.h>

#include "tensor/blocks.h"
#include "tensor/quants.h"
#include "tensor_test_util.h"

namespace tf {
namespace {

using namespace tf::test;

// Packs eight 6-bit scales and mins the Q4_K/Q5_K way: pairs 0..3 in the low 6 bits of bytes
// 0..3 (scales) and 4..7 (mins); pairs 4..7 as nibbles in bytes 8..11 (scale low, min high)
// with their top two bits in bits 6..7 of bytes 0..3 (scales) and 4..7 (mins).
void pack_k4_scales(const int sc[8], const int m[8], uint8_t out[12]) {
  for (int j = 0; j < 12; ++j) out[j] = 0;
  for (int j = 0; j < 4; ++j) {
    out[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = uint8_t(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = uint8_t((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

const int kSc[8] = {10, 20, 30, 40, 50, 60, 33, 63};
const int kMin[8] = {1, 5, 9, 13, 17, 45, 62, 7};

TEST(DequantK, Q2_K) {
  BlockQ2_K b{};
  b.d = kHalf1;
  b.dmin = kHalf0_5;
  for (int s = 0; s < 16; ++s) b.scales[s] = uint8_t(s | ((15 - s) << 4));  // scale s, min 15-s
  b.qs[0] = 0xE4;       // 2-bit fields 0,1,2,3 -> elements 0, 32, 64, 96
  b.qs[17] = 0x03;      // element 17
  b.qs[32 + 5] = 0xC0;  // bits 6..7 of second half -> element 128 + 96 + 5 = 229
  const auto y = dequant(DType::Q2_K, &b, 256);
  EXPECT_EQ(y[0], 0 * 0 - 0.5f * 15);    // sub 0
  EXPECT_EQ(y[32], 2 * 1 - 0.5f * 13);   // sub 2, q 1
  EXPECT_EQ(y[64], 4 * 2 - 0.5f * 11);   // sub 4, q 2
  EXPECT_EQ(y[96], 6 * 3 - 0.5f * 9);    // sub 6, q 3
  EXPECT_EQ(y[17], 1 * 3 - 0.5f * 14);   // sub 1, q 3
  EXPECT_EQ(y[229], 14 * 3 - 0.5f * 1);  // sub 14, q 3
  EXPECT_EQ(y[128], -0.5f * 7);          // sub 8, q 0
  EXPECT_EQ(y[255], 0.0f);               // sub 15: min 0, q 0
  EXPECT_EQ(y[1], -7.5f);
}

TEST(DequantK, Q3_K) {
  BlockQ3_K b{};
  b.d = kHalf0_5;
  // Sixteen distinct biased 6-bit scales (value = s - 32), packed: low nibble of scale i in
  // byte i % 8 (low nibble for i < 8, high for i >= 8), top 2 bits in byte 8 + i % 4 at bit
  // 2 * (i / 4).
  int s[16];
  for (int i = 0; i < 16; ++i) s[i] = (i * 17 + 5) % 64;  // 5, 22, 39, 56, 9, 26, ...
  for (int i = 0; i < 16; ++i) {
    b.scales[i % 8] |= uint8_t((s[i] & 15) << (i < 8 ? 0 : 4));
    b.scales[8 + i % 4] |= uint8_t((s[i] >> 4) << (2 * (i / 4)));
  }
  // Default: low bits 0 with the high bit set -> q = 0.
  for (auto& h : b.hmask) h = 0xFF;
  b.qs[0] = 0x02;                // element 0: q = 2
  b.qs[1] = 0x0C;                // element 33 (half 0, field 1, l 1): low bits 3 ...
  b.hmask[1] &= ~uint8_t(0x02);  // ... high bit clear -> q = 3 - 4 = -1
  b.qs[32 + 8] = 0x10;           // element 200 (half 1, field 2, l 8): low bits 1 ...
  b.hmask[8] &= ~uint8_t(0x40);  // ... hmask bit 4 * 1 + 2 clear -> q = -3
  b.qs[32 + 31] = 0xC0;          // element 255 (half 1, field 3, l 31): q = 3
  b.qs[32 + 20] = 0x08;          // element 180 (half 1, field 1, l 20): q = 2
  const auto y = dequant(DType::Q3_K, &b, 256);
  EXPECT_EQ(y[0], 0.5f * (5 - 32) * 2);      // sub 0
  EXPECT_EQ(y[33], 0.5f * (39 - 32) * -1);   // sub 2
  EXPECT_EQ(y[200], 0.5f * (17 - 32) * -3);  // sub 12
  EXPECT_EQ(y[255], 0.5f * (4 - 32) * 3);    // sub 15
  EXPECT_EQ(y[180], 0.5f * (0 - 32) * 2);    // sub 11
  EXPECT_EQ(y[8], 0.0f);
  EXPECT_EQ(y[72], 0.0f);   // shares hmask[8] (bit 2), untouched
  EXPECT_EQ(y[168], 0.0f);  // shares hmask[8] (bit 5), untouched
}

TEST(DequantK, Q4_K) {
  BlockQ4_K b{};
  b.d = kHalf0_5;
  b.dmin = kHalf0_25;
  pack_k4_scales(kSc, kMin, b.scales);
  // Chunk c: qs[32c + l] low nibble -> element 64c + l (sub 2c), high -> 64c + 32 + l.
  for (int i = 0; i < 128; ++i) b.qs[i] = uint8_t((i % 16) | ((15 - i % 16) << 4));
  const auto y = dequant(DType::Q4_K, &b, 256);
  EXPECT_EQ(y[0], 0.5f * 10 * 0 - 0.25f * 1);
  EXPECT_EQ(y[5], 0.5f * 10 * 5 - 0.25f * 1);
  EXPECT_EQ(y[37], 0.5f * 20 * 10 - 0.25f * 5);    // chunk 0 high, l 5
  EXPECT_EQ(y[163], 0.5f * 60 * 12 - 0.25f * 45);  // chunk 2 high, l 3: sub 5
  EXPECT_EQ(y[200], 0.5f * 33 * 8 - 0.25f * 62);   // chunk 3 low, l 8: sub 6
  EXPECT_EQ(y[250], 0.5f * 63 * 5 - 0.25f * 7);    // chunk 3 high, l 26: sub 7
  EXPECT_EQ(y[255], 0.5f * 63 * 0 - 0.25f * 7);
  EXPECT_EQ(y[163], 348.75f);
}

TEST(DequantK, Q5_K) {
  BlockQ5_K b{};
  b.d = kHalf0_5;
  b.dmin = kHalf0_25;
  pack_k4_scales(kSc, kMin, b.scales);
  for (int i = 0; i < 128; ++i) b.qs[i] = uint8_t((i % 16) | ((15 - i % 16) << 4));
  // Fifth bit of element 64c + l is bit 2c of qh[l]; of 64c + 32 + l, bit 2c + 1.
  b.qh[3] = 0x21;   // elements 3 (bit 0) and 163 (bit 5)
  b.qh[31] = 0x80;  // element 255 (bit 7)
  const auto y = dequant(DType::Q5_K, &b, 256);
  EXPECT_EQ(y[3], 0.5f * 10 * 19 - 0.25f * 1);
  EXPECT_EQ(y[163], 0.5f * 60 * 28 - 0.25f * 45);
  EXPECT_EQ(y[255], 0.5f * 63 * 16 - 0.25f * 7);
  EXPECT_EQ(y[35], 0.5f * 20 * 12 - 0.25f * 5);   // bit 1 of qh[3] clear
  EXPECT_EQ(y[131], 0.5f * 50 * 3 - 0.25f * 17);  // bit 4 of qh[3] clear
  EXPECT_EQ(y[163], 828.75f);
}

TEST(DequantK, Q6_K) {
  BlockQ6_K b{};
  b.d = kHalf0_25;
  const int8_t sc[16] = {-128, -100, -64, -33, -1, 0, 1, 7, 15, 31, 32, 50, 64, 99, 120, 127};
  for (int s = 0; s < 16; ++s) b.scales[s] = sc[s];
  // All-zero bits mean code 0, i.e. q = -32. In half h, byte l of ql covers elements
  // 128h + l (low nibble) and 128h + 64 + l (high); byte 32 + l covers +32 and +96; qh[32h + l]
  // holds their top bits at 0, 2, 4, 6 for +0, +32, +64, +96.
  b.ql[0] = 0x0A;        // element 0: low 0xA ...
  b.qh[0] = 0x02;        // ... top 2 -> code 42, q 10
  b.ql[33] = 0x05;       // element 33: low 5 ...
  b.qh[1] = 0x0C;        // ... top 3 -> code 53, q 21
  b.ql[2] = 0xF0;        // element 66: low 0xF ...
  b.qh[2] = 0x10;        // ... top 1 -> code 31, q -1
  b.ql[63] = 0x30;       // element 127: low 3 ...
  b.qh[31] = 0xC0;       // ... top 3 -> code 51, q 19
  b.ql[64 + 16] = 0x01;  // element 144: code 1, q -31
  b.ql[64 + 63] = 0xF0;  // element 255: low 0xF ...
  b.qh[32 + 31] = 0xC0;  // ... top 3 -> code 63, q 31
  const auto y = dequant(DType::Q6_K, &b, 256);
  EXPECT_EQ(y[0], 0.25f * -128 * 10);
  EXPECT_EQ(y[33], 0.25f * -64 * 21);
  EXPECT_EQ(y[66], 0.25f * -1 * -1);
  EXPECT_EQ(y[127], 0.25f * 7 * 19);
  EXPECT_EQ(y[144], 0.25f * 31 * -31);
  EXPECT_EQ(y[255], 0.25f * 127 * 31);
  EXPECT_EQ(y[10], 0.25f * -128 * -32);
  EXPECT_EQ(y[64], 0.25f * -1 * -32);  // high nibble of ql[0] is 0, qh[0] bits 4..5 are 0
  EXPECT_EQ(y[200], 0.25f * 64 * -32);
  EXPECT_EQ(y[2], 0.25f * -128 * -32);  // low nibble of ql[2] is 0
}

TEST(DequantK, Q8_K) {
  BlockQ8_K b{};
  b.d = -0.5f;
  for (int j = 0; j < 256; ++j) b.qs[j] = int8_t(j - 128);
  const auto y = dequant(DType::Q8_K, &b, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], (j - 128) * -0.5f) << j;
}

}  // namespace
}  // namespace tf
