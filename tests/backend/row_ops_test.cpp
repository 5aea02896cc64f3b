// The SIMD row operations (softmax, SiLU x up, fp16 conversion, batched fp16 dots) must give
// exactly the bits of their scalar references: golden exactness against llama.cpp rests on
// those references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu_ops.h"
#include "backend/kernels/kernels.h"
#include "kernel_test_data.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace tf {
namespace {

// Runs the test body at the AVX-512 level (where the fast row operations live), restoring the
// level afterwards; skips on CPUs without it.
class RowOps : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = kernels::active();
    if (kernels::detect() != kernels::Isa::kAvx512) GTEST_SKIP() << "CPU lacks AVX-512";
    kernels::set_active(kernels::Isa::kAvx512);
    ASSERT_NE(kernels::softmax_fn(), nullptr);
    ASSERT_NE(kernels::silu_mul_fn(), nullptr);
  }
  void TearDown() override { kernels::set_active(saved_); }
  kernels::Isa saved_ = kernels::Isa::kScalar;
};

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(f32_to_bits(got[i]), f32_to_bits(want[i]))
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
}

TEST_F(RowOps, SoftmaxMatchesReference) {
  std::mt19937 rng(11);
  for (int64_t n : {1, 2, 15, 16, 17, 31, 32, 33, 100, 512, 1000}) {
    for (float spread : {0.01f, 1.f, 10.f, 100.f, 1000.f}) {
      std::normal_distribution<float> nd(0.f, spread);
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = nd(rng);
      if (n > 3) x[size_t(n) / 2] = -INFINITY;  // a masked cell
      std::vector<float> want = x, got = x;
      softmax_reference(want.data(), n);
      kernels::softmax_fn()(got.data(), n);
      expect_same_bits(got, want, "softmax n " + std::to_string(n));
    }
  }
}

TEST_F(RowOps, SiluMulMatchesReference) {
  std::mt19937 rng(12);
  for (int64_t n : {1, 7, 16, 17, 48, 100, 5632}) {
    for (float spread : {0.1f, 3.f, 40.f, 200.f}) {
      std::normal_distribution<float> nd(0.f, spread);
      std::vector<float> g(static_cast<size_t>(n)), up(static_cast<size_t>(n));
      for (auto& v : g) v = nd(rng);
      for (auto& v : up) v = nd(rng);
      std::vector<float> want = g, got = g;
      silu_mul_reference(want.data(), up.data(), n);
      kernels::silu_mul_fn()(got.data(), up.data(), n);
      expect_same_bits(got, want, "silu n " + std::to_string(n));
    }
  }
}

TEST_F(RowOps, F16ConversionMatchesReference) {
  std::mt19937 rng(13);
  std::vector<float> x(100000);
  for (auto& v : x) {
    do v = bits_to_f32(uint32_t(rng()));
    while (std::isnan(v));
  }
  // Halfway cases, the overflow threshold and subnormals.
  for (float v : {65504.f, 65519.f, 65520.f, 1e-8f, 5.96e-8f, 2.98e-8f, 6.1e-5f, -0.f})
    x.push_back(v);
  const int64_t n = int64_t(x.size());
  std::vector<uint16_t> got(x.size());
  kernels::f32_to_f16_row(x.data(), got.data(), n);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], f32_to_fp16(x[i])) << "x = " << x[i];
  // Short tails stop at n.
  std::vector<uint16_t> tail(20, 0xABCD);
  kernels::f32_to_f16_row(x.data(), tail.data(), 3);
  EXPECT_EQ(tail[3], 0xABCD);
}

TEST_F(RowOps, DotF16RowsMatchesVecDot) {
  std::mt19937 rng(14);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t n : {8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 1000}) {
    for (float scale : {1e-3f, 1.f, 40.f}) {
      const int64_t rows = 37, stride = n + 5;
      std::vector<uint16_t> w(size_t(rows * stride)), a(static_cast<size_t>(n));
      for (auto& v : w) v = f32_to_fp16(scale * nd(rng));
      for (auto& v : a) v = f32_to_fp16(nd(rng));
      for (DotKernel k : {DotKernel::VecDot, DotKernel::Sgemm}) {
        std::vector<float> got(static_cast<size_t>(rows)), want(static_cast<size_t>(rows));
        kernels::dot_f16_rows(w.data(), size_t(stride), rows, a.data(), n, k, 0.125f, got.data());
        for (int64_t r = 0; r < rows; ++r)
          want[size_t(r)] = vec_dot(DType::F16, w.data() + r * stride, a.data(), n, k) * 0.125f;
        expect_same_bits(got, want,
                         "dot n " + std::to_string(n) + " kernel " + std::to_string(int(k)));
      }
    }
  }
}

// The public operations agree with their references at every level this CPU has.
// Several query heads against the same cached keys (n = head size) or their weights against
// the same cached values (n = positions): the bits of one dot_f16_rows per head, for the shapes
// the grouped kernel handles (64, 128; longer rows with heads in fours, with and without a
// tail after the last whole 64) and those it hands back.
TEST_F(RowOps, DotF16RowsGroupEqualsPerHead) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (int64_t n : {64, 128, 32, 96, 192, 200, 256, 1056}) {
    for (int64_t m : {1, 2, 4, 8}) {
      for (int64_t rows : {1, 15, 16, 17, 40}) {
        const size_t stride = size_t(4 * n + 3);  // rows interleaved with other heads' keys
        std::vector<uint16_t> w(stride * size_t(rows)), a(size_t(m * n));
        for (auto& x : w) x = f32_to_fp16(nd(rng));
        for (auto& x : a) x = f32_to_fp16(nd(rng));
        const size_t os = size_t(rows + 5);
        std::vector<float> got(os * size_t(m), -1.f), want(os * size_t(m), -1.f);
        for (DotKernel k : {DotKernel::VecDot, DotKernel::Sgemm}) {
          kernels::dot_f16_rows_group(w.data(), stride, rows, a.data(), size_t(n), m, n, k, 0.125f,
                                      got.data(), os);
          for (int64_t h = 0; h < m; ++h)
            kernels::dot_f16_rows(w.data(), stride, rows, a.data() + h * n, n, k, 0.125f,
                                  want.data() + size_t(h) * os);
          expect_same_bits(got, want,
                           "group n " + std::to_string(n) + " m " + std::to_string(m) + " rows " +
                               std::to_string(rows));
        }
      }
    }
  }
}

// One row at a time, every length class (tails of 1..63 after whole 64s, Sgemm's n % 16),
// both orders, at every level this CPU has.
TEST(RowOpsDispatch, F16DotEveryLengthBitIdentical) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  kernels::test::at_every_level([&](kernels::Isa isa) {
    for (int64_t n : {1, 15, 16, 17, 32, 63, 64, 65, 128, 130, 192, 1000, 1024}) {
      for (float scale : {1e-3f, 1.f, 30.f}) {
        std::vector<uint16_t> w(static_cast<size_t>(n)), a(static_cast<size_t>(n));
        for (auto& x : w) x = f32_to_fp16(scale * nd(rng));
        for (auto& x : a) x = f32_to_fp16(nd(rng));
        for (DotKernel k : {DotKernel::VecDot, DotKernel::Sgemm}) {
          const float want = vec_dot(DType::F16, w.data(), a.data(), n, k);
          float got = 0.0f;
          kernels::dot_f16_rows(w.data(), size_t(n), 1, a.data(), n, k, 1.0f, &got);
          ASSERT_EQ(f32_to_bits(got), f32_to_bits(want))
              << kernels::isa_name(isa) << " n " << n << " kernel " << int(k) << ": " << got
              << " vs " << want;
        }
      }
    }
  });
}

TEST(RowOpsDispatch, EveryLevelMatchesReference) {
  std::mt19937 rng(15);
  std::normal_distribution<float> nd(0.f, 5.f);
  std::vector<float> x(300), up(300);
  for (auto& v : x) v = nd(rng);
  for (auto& v : up) v = nd(rng);
  std::vector<float> want_sm = x, want_silu = x;
  softmax_reference(want_sm.data(), 300);
  silu_mul_reference(want_silu.data(), up.data(), 300);
  kernels::test::at_every_level([&](kernels::Isa isa) {
    std::vector<float> sm = x, silu = x;
    softmax_inplace(sm.data(), 300);
    silu_mul_inplace(silu.data(), up.data(), 300);
    expect_same_bits(sm, want_sm, std::string("softmax at ") + kernels::isa_name(isa));
    expect_same_bits(silu, want_silu, std::string("silu at ") + kernels::isa_name(isa));
    // The batched fp16 dots (AVX2: the per-row dot in the same order; scalar: the reference).
    std::vector<uint16_t> w(64 * 130), a(130);
    for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_fp16(x[i % 300] * float(i % 7 + 1) * 0.1f);
    for (size_t i = 0; i < a.size(); ++i) a[i] = f32_to_fp16(up[i]);
    for (int64_t n : {64, 96, 130 - 2}) {
      for (DotKernel k : {DotKernel::VecDot, DotKernel::Sgemm}) {
        std::vector<float> got(64), want(64);
        kernels::dot_f16_rows(w.data(), 130, 64, a.data(), n, k, 0.5f, got.data());
        for (int r = 0; r < 64; ++r)
          want[size_t(r)] = vec_dot(DType::F16, w.data() + r * 130, a.data(), n, k) * 0.5f;
        expect_same_bits(got, want, std::string("dot_f16_rows at ") + kernels::isa_name(isa));
      }
    }
  });
}

}  // namespace
// GeGLU: GELU in fp16 as llama.cpp's table gives it (within fp16 of the float formula, exact
// at table points), 0 below -10, the identity above 10, times up in float; and soft-capping.
TEST(GeluSoftcap, GeluMulIsTheFp16TableTimesUp) {
  std::vector<float> x, up;
  for (float v = -12.f; v <= 12.f; v += 0.0371f) {
    x.push_back(v);
    up.push_back(0.5f + 0.01f * float(x.size() % 7));
  }
  std::vector<float> g = x;
  gelu_mul_inplace(g.data(), up.data(), int64_t(g.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = x[i];
    float want = v <= -10.f ? 0.f : v >= 10.f ? v : gelu_exact(fp16_to_f32(f32_to_fp16(v)));
    if (v > -10.f && v < 10.f) want = fp16_to_f32(f32_to_fp16(want));
    ASSERT_EQ(g[i], want * up[i]) << v;
    EXPECT_NEAR(g[i], gelu_exact(v) * up[i], 2e-3 * (1 + std::fabs(v))) << v;
  }
  float one = 1.f;
  const float three = 3.f;
  gelu_mul_inplace(&one, &three, 1);
  EXPECT_NEAR(one, 3 * 0.841192f, 3e-3);  // gelu(1) = 0.8412
  std::vector<float> c = {-1000.f, -1.f, 0.f, 2.f, 1000.f};
  softcap_inplace(c.data(), 5, 30.f);
  EXPECT_NEAR(c[0], -30.f, 1e-4);
  EXPECT_NEAR(c[1], 30 * std::tanh(-1 / 30.), 1e-6);
  EXPECT_EQ(c[2], 0.f);
  EXPECT_NEAR(c[4], 30.f, 1e-4);
}

// A sliding window's softmax is the masked full row's, bit for bit (llama.cpp's rounding).
TEST(GeluSoftcap, WindowedSoftmaxIsTheMaskedRow) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int64_t len : {1, 17, 40, 100, 333})
    for (int64_t lo : {int64_t(0), len / 3, len - 1}) {
      std::vector<float> row(static_cast<size_t>(len));
      for (float& v : row) v = nd(rng);
      std::vector<float> full = row;
      std::fill(full.begin(), full.begin() + lo, -INFINITY);
      softmax_inplace(full.data(), len);
      softmax_window_inplace(row.data(), lo, len);
      for (int64_t j = lo; j < len; ++j)
        ASSERT_EQ(row[size_t(j)], full[size_t(j)]) << len << " " << lo;
      for (int64_t j = 0; j < lo; ++j) EXPECT_EQ(full[size_t(j)], 0.f);
    }
}

}  // namespace tf
