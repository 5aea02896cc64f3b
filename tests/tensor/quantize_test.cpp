// quantize_row: exact bytes for the activation formats (which must match llama.cpp's x86
// build), and quantize -> dequantize error bounds for every format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "tensor_test_util.h"

namespace tf {
namespace {

using namespace tf::test;

// ---- exact bytes ----

TEST(QuantizeExact, Q8_0RoundsHalfToEvenWithScale127OverAmax) {
  std::vector<float> x(64, 0.0f);
  // Block 0: amax 127, so d = 1 and id = 1: the codes are the inputs rounded half to even.
  const float in0[] = {127,  2.5f,  3.5f,   -2.5f,  -0.5f, 0.5f, 1.5f,
                       -127, 0.49f, 100.2f, -63.5f, 62.5f, -3.5f};
  std::copy(std::begin(in0), std::end(in0), x.begin());
  // Block 1: amax 2.75. 127 / 2.75 = 46.1818199 (x86 path) while 1 / (2.75 / 127) =
  // 46.1818161 (portable reference); 1.375 times these is 63.5000038 vs 63.4999962, so only
  // the x86 formula gives 64.
  x[32] = 2.75f;
  x[33] = 1.375f;
  x[34] = -1.375f;
  const auto q = quant(DType::Q8_0, x);
  ASSERT_EQ(q.size(), 68u);
  std::vector<uint8_t> expect0 = {0x00,          0x3C,  // d = 1.0 as fp16, little-endian
                                  127,           2,    4,   uint8_t(-2),  0,  0,          2,
                                  uint8_t(-127), 0,    100, uint8_t(-64), 62, uint8_t(-4)};
  expect0.resize(34, 0);  // the remaining codes are 0
  EXPECT_EQ(std::vector<uint8_t>(q.begin(), q.begin() + 34), expect0);
  // d = 2.75 / 127 = 0.0216535 -> fp16 2^-6 * (1 + 395/1024) = 0x258B.
  const std::vector<uint8_t> expect1_head = {0x8B, 0x25, 127, 64, uint8_t(-64), 0};
  EXPECT_EQ(std::vector<uint8_t>(q.begin() + 34, q.begin() + 40), expect1_head);
}

TEST(QuantizeExact, Q8_1CarriesScaledSum) {
  std::vector<float> x(32, 0.0f);
  const float in[] = {127,  2.5f,  3.5f,   -2.5f,  -0.5f, 0.5f, 1.5f,
                      -127, 0.49f, 100.2f, -63.5f, 62.5f, -3.5f};
  std::copy(std::begin(in), std::end(in), x.begin());
  const auto q = quant(DType::Q8_1, x);
  BlockQ8_1 b;
  std::memcpy(&b, q.data(), sizeof b);
  EXPECT_EQ(b.d, 0x3C00);
  // Codes sum to 127+2+4-2+0+0+2-127+0+100-64+62-4 = 100; s = fp16(1.0 * 100) = 0x5640.
  EXPECT_EQ(b.s, 0x5640);
  const int8_t expect[] = {127, 2, 4, -2, 0, 0, 2, -127, 0, 100, -64, 62, -4};
  for (int j = 0; j < 13; ++j) EXPECT_EQ(b.qs[j], expect[j]) << j;
}

TEST(QuantizeExact, Q8_K) {
  std::vector<float> x(512, 0.0f);
  // Block 0: the first element of largest magnitude (+127, ahead of -127) fixes
  // iscale = -127 / 127 = -1, so codes are -round_half_even(x) and d = 1 / iscale = -1.
  x[0] = 127;
  x[1] = -127;
  x[2] = 2.5f;
  x[3] = 3.5f;
  x[4] = -0.5f;
  x[5] = 0.5f;
  x[16] = 10;
  // Block 1: max -3 -> iscale = 127 / 3 (> 0, so -3 -> -127), d = 1 / iscale in float.
  x[256] = -3;
  // iscale is 11097429 * 2^-18 in float; times 1.5 that is 16646143.5 * 2^-18, a tie that
  // float rounding sends to the even 16646144 * 2^-18 = 63.5, which then rounds to even 64.
  x[257] = 1.5f;
  const auto q = quant(DType::Q8_K, x);
  BlockQ8_K b[2];
  std::memcpy(b, q.data(), sizeof b);
  EXPECT_EQ(b[0].d, -1.0f);
  const int8_t expect[] = {-127, 127, -2, -4, 0, 0};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(b[0].qs[j], expect[j]) << j;
  EXPECT_EQ(b[0].qs[16], -10);
  EXPECT_EQ(b[0].bsums[0], -127 + 127 - 2 - 4);
  EXPECT_EQ(b[0].bsums[1], -10);
  for (int g = 2; g < 16; ++g) EXPECT_EQ(b[0].bsums[g], 0);
  const float iscale = -127.0f / -3.0f;
  EXPECT_EQ(b[1].d, 1.0f / iscale);
  EXPECT_EQ(b[1].qs[0], -127);
  EXPECT_EQ(b[1].qs[1], 64);
}

TEST(QuantizeExact, ZerosStayZero) {
  const std::vector<float> x(256, 0.0f);
  for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                  DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const auto q = quant(t, x);
    for (float v : dequant(t, q.data(), 256)) ASSERT_EQ(v, 0.0f) << dtype_name(t);
  }
}

TEST(QuantizeExact, PlainTypes) {
  const std::vector<float> x = {1.0f, -2.0f, 65504.0f, 1.0f + 0x1p-11f};
  const auto h = quant(DType::F16, x);
  EXPECT_EQ(h, (std::vector<uint8_t>{0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x00, 0x3C}));
  const auto bf = quant(DType::BF16, {1.0f, -3.0f});
  EXPECT_EQ(bf, (std::vector<uint8_t>{0x80, 0x3F, 0x40, 0xC0}));
  const auto f = quant(DType::F32, {1.5f});
  EXPECT_EQ(f, (std::vector<uint8_t>{0x00, 0x00, 0xC0, 0x3F}));
}

// ---- round trips ----

struct Scenario {
  const char* name;
  std::vector<float> x;
};

std::vector<Scenario> scenarios() {
  const size_t n = 1024;
  std::vector<Scenario> s;
  s.push_back({"gaussian", gaussian(n, 1.0f, 1)});
  s.push_back({"tiny 1e-30", gaussian(n, 1e-30f, 2)});
  s.push_back({"large 1e4", gaussian(n, 1e4f, 3)});
  s.push_back({"zeros", std::vector<float>(n, 0.0f)});
  auto outlier = gaussian(n, 1.0f, 4);
  outlier[300] = 1000.0f;
  s.push_back({"outlier", outlier});
  auto pos = gaussian(n, 1.0f, 5);
  for (auto& v : pos) v = std::fabs(v) + 3.0f;  // all positive: the K mins must be 0
  s.push_back({"positive", pos});
  auto neg = gaussian(n, 1.0f, 6);
  for (auto& v : neg) v = -std::fabs(v) - 3.0f;
  s.push_back({"negative", neg});
  return s;
}

float absmax(const float* x, int n) {
  float m = 0;
  for (int j = 0; j < n; ++j) m = std::max(m, std::fabs(x[j]));
  return m;
}

// Per-element error bound for one block: (x of the block, the quantized block) -> bound.
// Each one is derived from the format: the worst rounding of a code is half a step, a clipped
// extreme code costs one step, and scales stored as fp16 add |code| * fp16 error.
using BoundFn = std::function<double(const float* x, const uint8_t* blk, int j)>;

double legacy_sym(const float* x, int levels) {  // Q4_0 (8) / Q5_0 (16)
  // d = max / -levels: the extreme of the other sign would need code +levels, which does not
  // exist, so it clips by one step.
  const double d = absmax(x, 32) / levels;
  return d * (1 + 1e-5) + levels * fp16_err(d);
}

double legacy_affine(const float* x, int nmax) {  // Q4_1 (15) / Q5_1 (31)
  const double mn = *std::min_element(x, x + 32), mx = *std::max_element(x, x + 32);
  const double d = (mx - mn) / nmax;
  return d / 2 * (1 + 1e-5) + nmax * fp16_err(d) + fp16_err(mn) + 1e-6 * absmax(x, 32);
}

double q8_bound(const float* x) {  // Q8_0 / Q8_1: d = amax / 127, codes rounded to nearest
  const double d = absmax(x, 32) / 127.0;
  return d / 2 * (1 + 1e-5) + 127 * fp16_err(d);
}

// Q4_K / Q5_K: within sub-block s of 32 the step is fp16(d) * sc_s and the offset covers the
// sub-block's minimum, so the error is at most half a step. The step itself is at most the
// sub-block range (plus the offset's rounding slack dmin) over nmax, plus one unit of d.
double k_affine_bound(const float* x, uint16_t dh, uint16_t dminh, int nmax, int j) {
  const float* sb = x + (j / 32) * 32;
  const double mn = std::min(0.0f, *std::min_element(sb, sb + 32));
  const double mx = std::max(0.0f, *std::max_element(sb, sb + 32));
  const double d = fp16_to_f32(dh), dmin = fp16_to_f32(dminh);
  const double step = (mx - mn + dmin) / nmax + d;
  return step / 2 * (1 + 1e-4) + 1e-6 * absmax(x, 256);
}

struct TypeCase {
  DType t;
  int block;
  BoundFn bound;
};

std::vector<TypeCase> type_cases() {
  return {
      {DType::F32, 1, [](const float*, const uint8_t*, int) { return 0.0; }},
      {DType::F16, 1, [](const float* x, const uint8_t*, int) { return fp16_err(x[0]); }},
      {DType::BF16, 1,
       [](const float* x, const uint8_t*, int) { return std::fabs(x[0]) * 0x1p-8; }},
      {DType::Q8_0, 32, [](const float* x, const uint8_t*, int) { return q8_bound(x); }},
      {DType::Q8_1, 32, [](const float* x, const uint8_t*, int) { return q8_bound(x); }},
      {DType::Q4_0, 32, [](const float* x, const uint8_t*, int) { return legacy_sym(x, 8); }},
      {DType::Q5_0, 32, [](const float* x, const uint8_t*, int) { return legacy_sym(x, 16); }},
      {DType::Q4_1, 32, [](const float* x, const uint8_t*, int) { return legacy_affine(x, 15); }},
      {DType::Q5_1, 32, [](const float* x, const uint8_t*, int) { return legacy_affine(x, 31); }},
      // Q8_K keeps d as a float: only half a step of code rounding.
      {DType::Q8_K, 256,
       [](const float* x, const uint8_t*, int) { return absmax(x, 256) / 254.0 * (1 + 1e-5); }},
      {DType::Q4_K, 256,
       [](const float* x, const uint8_t* blk, int j) {
         const auto* b = reinterpret_cast<const BlockQ4_K*>(blk);
         return k_affine_bound(x, b->d, b->dmin, 15, j);
       }},
      {DType::Q5_K, 256,
       [](const float* x, const uint8_t* blk, int j) {
         const auto* b = reinterpret_cast<const BlockQ5_K*>(blk);
         return k_affine_bound(x, b->d, b->dmin, 31, j);
       }},
      // Q6_K: sub-blocks of 16 with step >= amax_s / 31 (codes -31..31 suffice, no clipping),
      // rounded up by at most one unit of d.
      {DType::Q6_K, 256,
       [](const float* x, const uint8_t* blk, int j) {
         const auto* b = reinterpret_cast<const BlockQ6_K*>(blk);
         const double step = absmax(x + (j / 16) * 16, 16) / 31.0 + fp16_to_f32(b->d);
         return step / 2 * (1 + 1e-4) + 1e-6 * absmax(x, 256);
       }},
  };
}

TEST(QuantizeRoundTrip, WithinFormatBounds) {
  for (const TypeCase& tc : type_cases()) {
    const size_t bytes = dtype_info(tc.t).type_size;
    for (const Scenario& sc : scenarios()) {
      SCOPED_TRACE(std::string(dtype_name(tc.t)) + " / " + sc.name);
      const auto q = quant(tc.t, sc.x);
      const auto y = dequant(tc.t, q.data(), int64_t(sc.x.size()));
      double worst_ratio = 0;
      for (size_t i = 0; i < sc.x.size(); ++i) {
        const size_t blk = i / tc.block;
        const double bound =
            tc.bound(sc.x.data() + blk * tc.block, q.data() + blk * bytes, int(i % tc.block));
        const double err = std::fabs(double(y[i]) - double(sc.x[i]));
        ASSERT_TRUE(std::isfinite(y[i])) << i;
        ASSERT_LE(err, bound) << "element " << i << " x=" << sc.x[i] << " y=" << y[i];
        if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
      }
      RecordProperty(std::string(dtype_name(tc.t)) + "_" + sc.name, std::to_string(worst_ratio));
    }
  }
}

// The K super-block scales must themselves be tied to the data (otherwise the per-block bound
// above could be loose): d and dmin are at most the largest need / 63, rounded up to fp16.
TEST(QuantizeRoundTrip, KScalesAreTight) {
  for (const Scenario& sc : scenarios()) {
    SCOPED_TRACE(sc.name);
    for (int nmax : {15, 31}) {
      const DType t = nmax == 15 ? DType::Q4_K : DType::Q5_K;
      const auto q = quant(t, sc.x);
      const size_t bytes = dtype_info(t).type_size;
      for (size_t blk = 0; blk < sc.x.size() / 256; ++blk) {
        uint16_t dh, dminh;
        std::memcpy(&dh, q.data() + blk * bytes, 2);
        std::memcpy(&dminh, q.data() + blk * bytes + 2, 2);
        const double amax = absmax(sc.x.data() + blk * 256, 256);
        const double dmin = fp16_to_f32(dminh), d = fp16_to_f32(dh);
        EXPECT_LE(dmin, amax / 63 * (1 + 0x1p-10) + 0x1p-24);
        EXPECT_LE(d, (2 * amax + dmin) / nmax / 63 * (1 + 0x1p-10) + 0x1p-24);
      }
    }
    const auto q = quant(DType::Q6_K, sc.x);
    for (size_t blk = 0; blk < sc.x.size() / 256; ++blk) {
      uint16_t dh;
      std::memcpy(&dh, q.data() + blk * 210 + 208, 2);
      const double amax = absmax(sc.x.data() + blk * 256, 256);
      EXPECT_LE(fp16_to_f32(dh), amax / 31 / 127 * (1 + 0x1p-10) + 0x1p-24);
    }
  }
}

}  // namespace
}  // namespace tf
