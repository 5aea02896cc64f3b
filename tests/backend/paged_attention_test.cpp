// Attention over a paged KV cache: the value sums of fp16 and Q8_0 rows (SIMD) against their
// scalar references, over rows scattered in blocks of several sizes (the SIMD result must not
// depend on the block size), and the sliced Q8_0 scores against a plain dequantize-then-dot.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/kernels/kernels.h"
#include "kernel_test_data.h"
#include "tensor/dtype.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace tf {
namespace {

// n_pos cache rows of `width` elements quantized to Q8_0, values of the given spread.
std::vector<uint8_t> q8_rows(int64_t n_pos, int64_t width, float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, spread);
  const size_t rb = row_bytes(DType::Q8_0, width);
  std::vector<uint8_t> rows(rb * size_t(n_pos));
  std::vector<float> x(static_cast<size_t>(width));
  for (int64_t j = 0; j < n_pos; ++j) {
    for (auto& v : x) v = nd(rng);
    quantize_row(DType::Q8_0, x.data(), rows.data() + rb * size_t(j), width);
  }
  return rows;
}

std::vector<float> dequantized(const std::vector<uint8_t>& rows, int64_t n_pos, int64_t width) {
  const size_t rb = row_bytes(DType::Q8_0, width);
  std::vector<float> out(size_t(n_pos * width));
  for (int64_t j = 0; j < n_pos; ++j)
    dequantize_row(DType::Q8_0, rows.data() + rb * size_t(j), out.data() + j * width, width);
  return out;
}

// The contiguous rows (`stride` bytes each) scattered over blocks of 2^shift positions, in
// reverse order in memory, as a paged cache holds them.
struct Scattered {
  std::vector<uint8_t> mem;
  std::vector<const uint8_t*> blocks;
  kernels::PagedRows rows;
  Scattered(const std::vector<uint8_t>& contiguous, size_t stride, int64_t len, int shift) {
    const int64_t B = int64_t(1) << shift, nb = (len + B - 1) / B;
    mem.assign(size_t(nb * B) * stride + 64, 0xEE);  // a NaN pattern past the rows in use
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dst = mem.data() + size_t((nb - 1 - b) * B) * stride;
      const int64_t n = std::min(B, len - b * B);
      std::memcpy(dst, contiguous.data() + size_t(b * B) * stride, size_t(n) * stride);
      blocks.push_back(dst);
    }
    rows.blocks = blocks.data();
    rows.stride = stride;
    rows.block_shift = shift;
  }
};

TEST(PagedAttention, F16WeightedSumMatchesReferenceAtEveryLevel) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  std::normal_distribution<float> nd(0.f, 1.f);
  kernels::test::at_every_level([&](kernels::Isa isa) {
    // (cache row width, head start, head size): SIMD heads of 1..9 vectors of 16 and heads
    // the reference takes (size not a multiple of 16).
    const int64_t shapes[][3] = {{256, 64, 64},  {512, 384, 128}, {1024, 256, 256},
                                 {320, 16, 144}, {64, 0, 8},      {96, 8, 40}};
    for (const auto& sh : shapes) {
      const int64_t width = sh[0], start = sh[1], D = sh[2];
      for (int64_t len : {1, 2, 9, 100, 300}) {
        std::vector<uint8_t> rows(size_t(len * width) * 2);
        auto* h = reinterpret_cast<uint16_t*>(rows.data());
        for (int64_t i = 0; i < len * width; ++i) h[i] = f32_to_fp16(nd(rng) * 3.f);
        auto h_at = [&](int64_t i) { return h[i]; };
        // Three weight vectors (query heads of one KV head, or a tile's tokens), the last with
        // zeros past 2/3 of the rows (a token that sees fewer positions).
        constexpr int64_t m = 3;
        std::vector<float> p(size_t(m * len));
        for (auto& v : p) v = ud(rng);
        for (int64_t j = 2 * len / 3 + 1; j < len; ++j) p[size_t(2 * len + j)] = 0.0f;
        std::vector<float> first;
        for (int shift : {0, 3, 6, 10}) {
          Scattered sc(rows, size_t(width) * 2, len, shift);
          std::vector<float> got(size_t(m * D), NAN), want(size_t(m * D), NAN);
          kernels::f16_weighted_sum(sc.rows, len, start, D, p.data(), size_t(len), m, got.data(),
                                    size_t(D));
          kernels::f16_weighted_sum_reference(sc.rows, len, start, D, p.data(), size_t(len), m,
                                              want.data(), size_t(D));
          for (int64_t hd = 0; hd < m * D; ++hd) {
            const int64_t h = hd / D, d = hd % D;
            double mag = 0;
            for (int64_t j = 0; j < len; ++j)
              mag += std::fabs(p[size_t(h * len + j)] * fp16_to_f32(h_at(j * width + start + d)));
            ASSERT_NEAR(got[size_t(hd)], want[size_t(hd)], 1e-6 * mag + 1e-30)
                << kernels::isa_name(isa) << " D " << D << " len " << len << " head " << h;
          }
          // Blocks of any size give the same bits: the sums run over positions in order.
          if (first.empty()) first = got;
          ASSERT_EQ(std::memcmp(first.data(), got.data(), size_t(m * D) * sizeof(float)), 0)
              << kernels::isa_name(isa) << " D " << D << " len " << len << " shift " << shift;
          // A head alone gives the bits it gives in the group.
          std::vector<float> alone(size_t(D), NAN);
          kernels::f16_weighted_sum(sc.rows, len, start, D, p.data() + 2 * len, size_t(len), 1,
                                    alone.data(), size_t(D));
          ASSERT_EQ(std::memcmp(alone.data(), got.data() + 2 * D, size_t(D) * sizeof(float)), 0);
        }
      }
    }
  });
}

TEST(Q8_0Attention, WeightedSumMatchesReferenceAtEveryLevel) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  kernels::test::at_every_level([&](kernels::Isa isa) {
    // (cache row width, head start, head size): whole-block heads of 1..9 blocks (the SIMD
    // version keeps up to 8 in registers) and heads that split blocks (reference path).
    const int64_t shapes[][3] = {{512, 64, 64}, {512, 384, 128}, {1024, 256, 256}, {320, 0, 288},
                                 {64, 0, 32},   {96, 8, 40},     {64, 16, 16}};
    for (const auto& sh : shapes) {
      const int64_t width = sh[0], start = sh[1], D = sh[2];
      for (int64_t len : {1, 2, 9, 100}) {
        for (float spread : {1e-3f, 1.f, 300.f}) {
          const auto rows = q8_rows(len, width, spread, uint32_t(len * 7 + D));
          std::vector<float> p(static_cast<size_t>(len));
          for (auto& v : p) v = ud(rng);
          std::vector<float> got(size_t(D), NAN), want(size_t(D), NAN);
          const size_t rb = row_bytes(DType::Q8_0, width);
          Scattered scat(rows, rb, len, int(len % 4));  // 1..8 positions per block
          kernels::q8_0_weighted_sum(scat.rows, len, start, D, p.data(), got.data());
          kernels::q8_0_weighted_sum_reference(scat.rows, len, start, D, p.data(), want.data());
          // Same products and order; only FMA contraction may differ (one rounding per step).
          const auto deq = dequantized(rows, len, width);
          for (int64_t d = 0; d < D; ++d) {
            double mag = 0;
            for (int64_t j = 0; j < len; ++j)
              mag += std::fabs(p[size_t(j)] * deq[size_t(j * width + start + d)]);
            ASSERT_NEAR(got[size_t(d)], want[size_t(d)], 1e-6 * mag + 1e-30)
                << kernels::isa_name(isa) << " D " << D << " start " << start << " len " << len
                << " d " << d;
          }
        }
      }
    }
  });
}

TEST(Q8_0Attention, SlicedScoresAreDotsWithTheDequantizedKeys) {
  const int64_t width = 96, start = 24, D = 40, len = 17;
  const auto rows = q8_rows(len, width, 2.f, 9);
  const auto deq = dequantized(rows, len, width);
  std::vector<float> q(static_cast<size_t>(D));
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : q) v = nd(rng);
  std::vector<float> sc(static_cast<size_t>(len));
  const float scale = 0.125f;
  kernels::q8_0_scores_sliced(rows.data(), row_bytes(DType::Q8_0, width), len, start, D, q.data(),
                              scale, sc.data());
  for (int64_t j = 0; j < len; ++j) {
    double want = 0, mag = 0;
    for (int64_t d = 0; d < D; ++d) {
      want += double(q[size_t(d)]) * deq[size_t(j * width + start + d)];
      mag += std::fabs(double(q[size_t(d)]) * deq[size_t(j * width + start + d)]);
    }
    EXPECT_NEAR(sc[size_t(j)], want * scale, 1e-5 * mag * scale) << "position " << j;
  }
}

}  // namespace
}  // namespace tf

namespace tf {
namespace {

TEST(PagedAttention, RoundToF16IsTheScalarRoundTripAtEveryLevel) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * std::ldexp(1.0f, int(i % 40) - 30);
  x[3] = 70000.f;  // overflows fp16: inf
  x[4] = 1e-9f;    // below the smallest subnormal: 0
  kernels::test::at_every_level([&](kernels::Isa isa) {
    for (int64_t n : {1, 15, 17, 1000}) {
      std::vector<float> got(x.begin(), x.begin() + n);
      kernels::round_to_f16(got.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(got[size_t(i)], fp16_to_f32(f32_to_fp16(x[size_t(i)])))
            << kernels::isa_name(isa) << " n " << n << " i " << i;
    }
  });
}

}  // namespace
}  // namespace tf
