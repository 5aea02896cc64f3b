// vec_dot against "dequantize both rows, dot in double", for every weight type, plus a
// hand-computed Q8_0 x Q8_0 case.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "tensor_test_util.h"

namespace tf {
namespace {

using namespace tf::test;

TEST(VecDot, Q8_0HandComputed) {
  BlockQ8_0 w[2]{}, a[2]{};
  w[0].d = kHalf0_5;
  a[0].d = kHalf0_25;
  w[1].d = kHalf2;
  a[1].d = kHalfMinus1;
  for (int j = 0; j < 32; ++j) {
    w[0].qs[j] = int8_t(j);  // sum_j j * 1 = 496
    a[0].qs[j] = 1;
    w[1].qs[j] = int8_t(j % 2 ? -127 : 127);  // sum = 16 * 127 * 3 - 16 * 127 * 5 = -4064
    a[1].qs[j] = int8_t(j % 2 ? 5 : 3);
  }
  // 0.5 * 0.25 * 496 + 2 * -1 * -4064 = 62 + 8128
  EXPECT_EQ(vec_dot(DType::Q8_0, w, a, 64), 8190.0f);
}

TEST(VecDot, Q4_0HandComputed) {
  BlockQ4_0 w{};
  BlockQ8_0 a{};
  w.d = kHalf1;
  a.d = kHalf0_5;
  for (int j = 0; j < 16; ++j) w.qs[j] = 0xF0;  // elements 0..15 -> -8, 16..31 -> +7
  for (int j = 0; j < 32; ++j) a.qs[j] = 2;
  // 1 * 0.5 * (16 * -8 * 2 + 16 * 7 * 2) = 0.5 * -32
  EXPECT_EQ(vec_dot(DType::Q4_0, &w, &a, 32), -16.0f);
}

// F16 weights take F16 activations: the expected value is the exact dot of the two fp16 rows.
TEST(VecDot, F16UsesHalfActivations) {
  const std::vector<float> w = {1.0f, 2.0f, -3.0f, 0.5f}, x = {0.1f, 0.2f, 0.3f, 0.4f};
  const auto wq = quant(DType::F16, w), xq = quant(DType::F16, x);
  double expect = 0;
  for (int i = 0; i < 4; ++i)
    expect += double(w[i]) * fp16_to_f32(f32_to_fp16(x[i]));  // w values are exact in fp16
  EXPECT_FLOAT_EQ(vec_dot(DType::F16, wq.data(), xq.data(), 4), float(expect));
}

// Random bytes with the fp16 scale fields overwritten by sane values: covers Q2_K / Q3_K
// (no quantizer yet) and every bit pattern of the codes.
std::vector<uint8_t> random_blocks(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(row_bytes(t, n));
  for (auto& b : v) b = uint8_t(rng());
  const size_t bs = dtype_info(t).type_size;
  std::uniform_real_distribution<float> u(0.001f, 0.1f);
  for (size_t off = 0; off < v.size(); off += bs) {
    auto put = [&](size_t at) {
      const uint16_t h = f32_to_fp16(u(rng));
      std::memcpy(&v[off + at], &h, 2);
    };
    switch (t) {
      case DType::Q2_K:
        put(80), put(82);
        break;
      case DType::Q3_K:
        put(108);
        break;
      case DType::Q6_K:
        put(208);
        break;
      default:
        break;
    }
  }
  return v;
}

TEST(VecDot, MatchesDequantizedDot) {
  const int64_t n = 1024;
  std::mt19937 rng(42);
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                         DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                         DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};
  for (DType t : types) {
    for (int trial = 0; trial < 4; ++trial) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " trial " + std::to_string(trial));
      const DType at = dtype_info(t).vec_dot_type;
      auto x = gaussian(n, trial == 3 ? 100.0f : 1.0f, 1000 + trial);
      if (trial == 2) x[77] = 50.0f;  // an outlier in the activations
      const auto wf = gaussian(n, 0.05f, 2000 + trial);
      // Q2_K / Q3_K have no quantizer: random codes. Q6_K gets random codes once too, to
      // reach codes and negative scales our quantizer does not produce.
      const bool random_codes =
          t == DType::Q2_K || t == DType::Q3_K || (t == DType::Q6_K && trial == 1);
      const auto w = random_codes ? random_blocks(t, n, rng) : quant(t, wf);
      const auto a = quant(at, x);
      const auto wd = dequant(t, w.data(), n), ad = dequant(at, a.data(), n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += double(wd[i]) * double(ad[i]);
        mag += std::fabs(double(wd[i]) * double(ad[i]));
      }
      // Float accumulation over n / block blocks: a few ulps of the magnitude sum.
      double tol = 1e-5 * mag + 1e-30;
      // Q4_1 / Q5_1 use the activation block sum s = fp16(d * sum q) instead of summing the
      // dequantized activations: |s - sum a_j| <= 2 * 2^-11 * sum |a_j| per block, times |m|.
      if (t == DType::Q4_1 || t == DType::Q5_1) {
        const size_t wb = dtype_info(t).type_size;
        for (int64_t blk = 0; blk < n / 32; ++blk) {
          uint16_t mh;
          std::memcpy(&mh, w.data() + blk * wb + 2, 2);
          double asum = 0;
          for (int j = 0; j < 32; ++j) asum += std::fabs(ad[blk * 32 + j]);
          tol += std::fabs(fp16_to_f32(mh)) * asum * 0x1p-9;
        }
      }
      const float got = vec_dot(t, w.data(), a.data(), n);
      EXPECT_NEAR(got, ref, tol) << "mag " << mag;
    }
  }
}

}  // namespace
}  // namespace tf
