#include "tensor/dtype.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "util/error.h"

namespace tf {
namespace {

struct Expect {
  DType t;
  const char* name;
  uint32_t block, bytes;
  bool supported;
  DType dot;
};

// Sizes from the ggml block definitions (e.g. Q4_K: 2 halves + 12 scale bytes + 128 nibble
// bytes = 144 for 256 weights).
const Expect kExpected[] = {
    {DType::F32, "f32", 1, 4, true, DType::F32},
    {DType::F16, "f16", 1, 2, true, DType::F16},
    {DType::Q4_0, "q4_0", 32, 18, true, DType::Q8_0},
    {DType::Q4_1, "q4_1", 32, 20, true, DType::Q8_1},
    {DType::Q5_0, "q5_0", 32, 22, true, DType::Q8_0},
    {DType::Q5_1, "q5_1", 32, 24, true, DType::Q8_1},
    {DType::Q8_0, "q8_0", 32, 34, true, DType::Q8_0},
    {DType::Q8_1, "q8_1", 32, 36, true, DType::Q8_1},
    {DType::Q2_K, "q2_K", 256, 84, true, DType::Q8_K},
    {DType::Q3_K, "q3_K", 256, 110, true, DType::Q8_K},
    {DType::Q4_K, "q4_K", 256, 144, true, DType::Q8_K},
    {DType::Q5_K, "q5_K", 256, 176, true, DType::Q8_K},
    {DType::Q6_K, "q6_K", 256, 210, true, DType::Q8_K},
    {DType::Q8_K, "q8_K", 256, 292, true, DType::Q8_K},
    {DType::IQ2_XXS, "iq2_xxs", 256, 66, false, DType::Q8_K},
    {DType::IQ2_XS, "iq2_xs", 256, 74, false, DType::Q8_K},
    {DType::IQ3_XXS, "iq3_xxs", 256, 98, false, DType::Q8_K},
    {DType::IQ1_S, "iq1_s", 256, 50, false, DType::Q8_K},
    {DType::IQ4_NL, "iq4_nl", 32, 18, false, DType::Q8_0},
    {DType::IQ3_S, "iq3_s", 256, 110, false, DType::Q8_K},
    {DType::IQ2_S, "iq2_s", 256, 82, false, DType::Q8_K},
    {DType::IQ4_XS, "iq4_xs", 256, 136, false, DType::Q8_K},
    {DType::I8, "i8", 1, 1, false, DType::I8},
    {DType::I16, "i16", 1, 2, false, DType::I16},
    {DType::I32, "i32", 1, 4, false, DType::I32},
    {DType::I64, "i64", 1, 8, false, DType::I64},
    {DType::F64, "f64", 1, 8, false, DType::F64},
    {DType::IQ1_M, "iq1_m", 256, 56, false, DType::Q8_K},
    {DType::BF16, "bf16", 1, 2, true, DType::BF16},
    {DType::TQ1_0, "tq1_0", 256, 54, false, DType::Q8_K},
    {DType::TQ2_0, "tq2_0", 256, 66, false, DType::Q8_K},
};

TEST(DType, TableMatchesGgml) {
  for (const Expect& e : kExpected) {
    SCOPED_TRACE(e.name);
    const DTypeInfo* info = dtype_info(static_cast<uint32_t>(e.t));
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info, &dtype_info(e.t));
    EXPECT_EQ(info->type, e.t);
    EXPECT_STREQ(info->name, e.name);
    EXPECT_STREQ(dtype_name(e.t), e.name);
    EXPECT_EQ(info->block_size, e.block);
    EXPECT_EQ(info->type_size, e.bytes);
    EXPECT_EQ(info->supported, e.supported);
    EXPECT_EQ(info->vec_dot_type, e.dot);
  }
}

TEST(DType, UnknownIdsAreNull) {
  // 4 and 5 were removed from ggml, 31..33 and 36..38 are retired repacked types.
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 39u, 1000u, 0xFFFFFFFFu}) {
    EXPECT_EQ(dtype_info(id), nullptr) << id;
  }
  EXPECT_THROW(dtype_info(static_cast<DType>(4)), Error);
}

TEST(DType, FromName) {
  EXPECT_EQ(dtype_from_name("q8_0"), DType::Q8_0);
  EXPECT_EQ(dtype_from_name("Q4_K"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("F16"), DType::F16);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_EQ(dtype_from_name("IQ4_XS"), DType::IQ4_XS);
  EXPECT_EQ(dtype_from_name("q4"), std::nullopt);
  EXPECT_EQ(dtype_from_name("q4_0x"), std::nullopt);
  EXPECT_EQ(dtype_from_name(""), std::nullopt);
  EXPECT_EQ(dtype_from_name(nullptr), std::nullopt);
  for (const Expect& e : kExpected) EXPECT_EQ(dtype_from_name(e.name), e.t) << e.name;
}

TEST(DType, RowBytes) {
  EXPECT_EQ(row_bytes(DType::F32, 0), 0u);
  EXPECT_EQ(row_bytes(DType::F32, 3), 12u);
  EXPECT_EQ(row_bytes(DType::F16, 4096), 8192u);
  EXPECT_EQ(row_bytes(DType::Q4_0, 64), 36u);
  EXPECT_EQ(row_bytes(DType::Q8_0, 4096), 128u * 34);
  EXPECT_EQ(row_bytes(DType::Q6_K, 512), 420u);
  EXPECT_EQ(row_bytes(DType::Q8_K, 256), 292u);
}

TEST(DType, RowBytesChecked) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(row_bytes_checked(DType::Q4_0, 0), 0u);
  EXPECT_EQ(row_bytes_checked(DType::Q4_0, 64), 36u);
  EXPECT_EQ(row_bytes_checked(DType::Q4_K, 256 * 3), 3u * 144);
  // Not a whole number of blocks.
  EXPECT_EQ(row_bytes_checked(DType::Q4_0, 33), std::nullopt);
  EXPECT_EQ(row_bytes_checked(DType::Q4_K, 32), std::nullopt);
  EXPECT_EQ(row_bytes_checked(DType::Q8_0, 1), std::nullopt);
  // Negative.
  EXPECT_EQ(row_bytes_checked(DType::F32, -1), std::nullopt);
  EXPECT_EQ(row_bytes_checked(DType::Q4_0, -32), std::nullopt);
  EXPECT_EQ(row_bytes_checked(DType::F32, std::numeric_limits<int64_t>::min()), std::nullopt);
  // Overflow of blocks * bytes in size_t (64-bit here).
  EXPECT_EQ(row_bytes_checked(DType::F32, kMax), std::nullopt);
  EXPECT_EQ(row_bytes_checked(DType::F64, int64_t(1) << 61), std::nullopt);
  EXPECT_EQ(row_bytes_checked(DType::F32, int64_t(1) << 62), std::nullopt);
  // Largest counts that still fit.
  EXPECT_EQ(row_bytes_checked(DType::I8, kMax), size_t(kMax));
  // Block types pack at most ~2.3 bytes per element, so the largest multiple fits too.
  EXPECT_EQ(row_bytes_checked(DType::Q8_0, kMax - kMax % 32), ((size_t(1) << 58) - 1) * 34);
  EXPECT_EQ(row_bytes_checked(DType::F32, (int64_t(1) << 62) - 1), (size_t(1) << 62) * 4 - 4);
  // An id outside the table.
  EXPECT_EQ(row_bytes_checked(static_cast<DType>(5), 32), std::nullopt);
}

}  // namespace
}  // namespace tf
