// Weights in tiles (kernels::Layout): the rewrite is lossless, and dot_rows_tiled / gemm_tiled
// equal the row kernels on the untiled rows (the scalar vec_dot being the reference) at every
// level, for row ranges that start and end inside tiles, rows after the last tile, 1..40
// tokens, ragged block counts and extreme scales.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/kernels/internal.h"
#include "backend/kernels/kernels.h"
#include "kernel_test_data.h"
#include "tensor/blocks.h"
#include "tensor/quants.h"
#include "util/error.h"

namespace tf::kernels {
namespace {

using namespace tf::kernels::test;

class Tiles : public ::testing::Test {
 protected:
  void TearDown() override { set_active(detect()); }
};

std::vector<uint8_t> acts_for(DType w, int64_t n, int64_t ntok, Scale sc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const DType at = dtype_info(w).vec_dot_type;
  const size_t ab = row_bytes(at, n);
  std::vector<uint8_t> out(ab * size_t(ntok));
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t t = 0; t < ntok; ++t) {
    for (int64_t i = 0; i < n; ++i) x[size_t(i)] = g(rng) * pick_scale(sc, rng, int(i / 64), false);
    quantize_row(at, x.data(), out.data() + size_t(t) * ab, n);
  }
  return out;
}

// The sum of the products' magnitudes: the float rounding the kernels may add is relative to
// it (for Q4_K the d and dmin parts separately, since they may cancel).
double magnitude(DType t, const uint8_t* row, const uint8_t* act, int64_t n) {
  const DType at = dtype_info(t).vec_dot_type;
  std::vector<float> w(static_cast<size_t>(n)), a(static_cast<size_t>(n));
  dequantize_row(at, act, a.data(), n);
  std::vector<uint8_t> copy(row, row + row_bytes(t, n));
  const bool k = t == DType::Q4_K;
  double m = 0;
  for (int part = 0; part < (k ? 2 : 1); ++part) {
    if (k)
      for (int64_t b = 0; b < n / kQK_K; ++b) {
        auto* blk = reinterpret_cast<BlockQ4_K*>(copy.data()) + b;
        const auto* src = reinterpret_cast<const BlockQ4_K*>(row) + b;
        blk->d = part == 0 ? src->d : 0;
        blk->dmin = part == 1 ? src->dmin : 0;
      }
    dequantize_row(t, copy.data(), w.data(), n);
    for (int64_t i = 0; i < n; ++i) m += std::fabs(double(w[size_t(i)]) * a[size_t(i)]);
  }
  return m;
}

TEST_F(Tiles, TileAndUntileAreInverse) {
  const int64_t n = 32 * 7, rows = 16 * 3 + 5;
  const size_t stride = row_bytes(DType::Q4_0, n);
  const auto orig = random_weights(DType::Q4_0, n, rows, 0, Scale::kNormal, 7);
  auto v = orig;
  tile(Layout::kQ4_0x16, v.data(), stride, rows, n);
  EXPECT_NE(v, orig);
  // The rows after the last tile are untouched.
  const size_t tail = size_t(tiled_rows(Layout::kQ4_0x16, rows)) * stride;
  EXPECT_EQ(0, std::memcmp(v.data() + tail, orig.data() + tail, orig.size() - tail));
  // Spot-check the layout: row 3's scale of block 2, and its code bytes 4..7 of block 1.
  uint16_t d;
  std::memcpy(&d, v.data() + 2 * 288 + 256 + 2 * 3, 2);
  EXPECT_EQ(d, reinterpret_cast<const BlockQ4_0*>(orig.data() + 3 * stride)[2].d);
  EXPECT_EQ(0,
            std::memcmp(v.data() + 288 + 64 + 4 * 3,
                        reinterpret_cast<const BlockQ4_0*>(orig.data() + 3 * stride)[1].qs + 4, 4));
  untile(Layout::kQ4_0x16, v.data(), stride, rows, n);
  EXPECT_EQ(v, orig);
  EXPECT_THROW(tile(Layout::kQ4_0x16, v.data(), stride + 1, rows, n), Error);
  EXPECT_THROW(tile(Layout::kRows, v.data(), stride, rows, n), Error);
}

TEST_F(Tiles, LayoutIsOnlyPreferredWhereThereAreKernels) {
  EXPECT_EQ(preferred_layout(DType::Q5_K, 64, 256), Layout::kRows);  // no tiles for it
  EXPECT_EQ(preferred_layout(DType::Q4_0, 8, 256), Layout::kRows);   // not one whole tile
  set_active(Isa::kScalar);
  EXPECT_EQ(preferred_layout(DType::Q4_0, 64, 256), Layout::kRows);
  EXPECT_EQ(tiled_rows(Layout::kQ4_0x16, 37), 32);
  EXPECT_EQ(tiled_rows(Layout::kRows, 37), 0);
}

struct Case {
  Layout layout;
  DType type;
  int64_t n, rows;
};

class TileKernels : public ::testing::TestWithParam<Case> {
 protected:
  void TearDown() override { set_active(detect()); }
};

TEST_P(TileKernels, DotAndGemmEqualTheReferenceAtEveryLevel) {
  const Case cs = GetParam();
  const Scale scales[] = {Scale::kNormal, Scale::kTiny, Scale::kLarge, Scale::kOutlier};
  at_every_level([&](Isa isa) {
    for (Scale sc : scales) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " " + dtype_name(cs.type) +
                   " n=" + std::to_string(cs.n) + " rows=" + std::to_string(cs.rows) + " " +
                   scale_name(sc));
      const size_t stride = row_bytes(cs.type, cs.n);
      const auto rows = random_weights(cs.type, cs.n, cs.rows, 0, sc, uint32_t(cs.n + cs.rows));
      auto tiled = rows;
      tile(cs.layout, tiled.data(), stride, cs.rows, cs.n);
      const int64_t ntok = 40;  // whole token chunks and a ragged one
      const auto acts = acts_for(cs.type, cs.n, ntok, Scale::kNormal, uint32_t(cs.n));
      const size_t ab = row_bytes(dtype_info(cs.type).vec_dot_type, cs.n);
      // Reference: the scalar vec_dot on the original rows.
      std::vector<double> ref(size_t(ntok * cs.rows)), mag(ref.size());
      for (int64_t t = 0; t < ntok; ++t)
        for (int64_t r = 0; r < cs.rows; ++r) {
          const uint8_t* w = rows.data() + size_t(r) * stride;
          const uint8_t* a = acts.data() + size_t(t) * ab;
          ref[size_t(t * cs.rows + r)] = vec_dot(cs.type, w, a, cs.n);
          mag[size_t(t * cs.rows + r)] = magnitude(cs.type, w, a, cs.n);
        }
      auto close = [&](float got, int64_t t, int64_t r) {
        const double want = ref[size_t(t * cs.rows + r)];
        const double tol = 1e-5 * mag[size_t(t * cs.rows + r)] + 1e-30;
        return std::fabs(double(got) - want) <= tol;
      };
      // Ranges that start and end inside tiles, and ones past the tiles.
      const int64_t ranges[][2] = {
          {0, cs.rows}, {3, cs.rows}, {5, 11}, {17, cs.rows - 1}, {cs.rows - 2, cs.rows}};
      for (const auto& rg : ranges) {
        const int64_t r0 = rg[0], r1 = rg[1];
        if (r0 >= r1 || r1 > cs.rows) continue;
        std::vector<float> out(size_t(r1 - r0), NAN);
        dot_rows_tiled(cs.layout, cs.type, tiled.data(), stride, cs.rows, r0, r1, acts.data(), cs.n,
                       out.data());
        for (int64_t r = r0; r < r1; ++r)
          ASSERT_TRUE(close(out[size_t(r - r0)], 0, r))
              << "dot row " << r << " of [" << r0 << ", " << r1 << "): " << out[size_t(r - r0)]
              << " vs " << ref[size_t(r)];
        for (int64_t nt : {int64_t(1), int64_t(3), int64_t(8), int64_t(16), ntok}) {
          const int64_t os = (r1 - r0) + 2;
          std::vector<float> g(size_t(nt * os), NAN);
          gemm_tiled(cs.layout, cs.type, tiled.data(), stride, cs.rows, r0, r1, acts.data(), ab, nt,
                     cs.n, g.data(), os);
          for (int64_t t = 0; t < nt; ++t) {
            for (int64_t r = r0; r < r1; ++r)
              ASSERT_TRUE(close(g[size_t(t * os + r - r0)], t, r))
                  << "gemm token " << t << " of " << nt << ", row " << r << ": "
                  << g[size_t(t * os + r - r0)] << " vs " << ref[size_t(t * cs.rows + r)];
            // Nothing written outside the range.
            EXPECT_TRUE(std::isnan(g[size_t(t * os + r1 - r0)]));
          }
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Layouts, TileKernels,
                         ::testing::Values(Case{Layout::kQ4_0x16, DType::Q4_0, 32, 16},
                                           Case{Layout::kQ4_0x16, DType::Q4_0, 32 * 5, 37},
                                           Case{Layout::kQ4_0x16, DType::Q4_0, 32 * 16, 48},
                                           Case{Layout::kQ4_0x16, DType::Q4_0, 32 * 17, 64 + 3},
                                           Case{Layout::kQ4_0x16, DType::Q4_0, 2048, 32},
                                           Case{Layout::kQ4_Kx16, DType::Q4_K, 256, 16},
                                           Case{Layout::kQ4_Kx16, DType::Q4_K, 256 * 3, 37},
                                           Case{Layout::kQ4_Kx16, DType::Q4_K, 2048, 48 + 5},
                                           Case{Layout::kQ6_Kx16, DType::Q6_K, 256, 16},
                                           Case{Layout::kQ6_Kx16, DType::Q6_K, 256 * 3, 37},
                                           Case{Layout::kQ6_Kx16, DType::Q6_K, 2048, 48 + 5},
                                           Case{Layout::kQ8_0x16, DType::Q8_0, 32, 16},
                                           Case{Layout::kQ8_0x16, DType::Q8_0, 32 * 7, 37},
                                           Case{Layout::kQ8_0x16, DType::Q8_0, 2048, 48 + 5}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(dtype_name(i.param.type)) + "_n" +
                                  std::to_string(i.param.n) + "_rows" +
                                  std::to_string(i.param.rows);
                         });

TEST_F(Tiles, Q4_KTileAndUntileAreInverse) {
  const int64_t n = 512, rows = 16 * 2 + 3;
  const size_t stride = row_bytes(DType::Q4_K, n);
  const auto orig = random_weights(DType::Q4_K, n, rows, 0, Scale::kNormal, 9);
  auto v = orig;
  tile(Layout::kQ4_Kx16, v.data(), stride, rows, n);
  EXPECT_NE(v, orig);
  const auto* r5 = reinterpret_cast<const BlockQ4_K*>(orig.data() + 5 * stride);
  uint16_t dmin;
  std::memcpy(&dmin, v.data() + 2304 + 2272 + 2 * 5, 2);  // row 5, super-block 1
  EXPECT_EQ(dmin, r5[1].dmin);
  EXPECT_EQ(0, std::memcmp(v.data() + 2048 + 64 * 2 + 4 * 5, r5[0].scales + 8, 4));
  untile(Layout::kQ4_Kx16, v.data(), stride, rows, n);
  EXPECT_EQ(v, orig);
  EXPECT_THROW(tile(Layout::kQ4_Kx16, v.data(), stride, rows, n + 32), Error);  // not whole blocks
}

TEST_F(Tiles, ExtremeCodesKeepExactBlockSums) {
  // All codes 0 or all 15 (the -8 / +7 ends), activations at +-127: the integer sums of a
  // block are exact, so with unit scales the result is an exact small integer.
  const int64_t n = 64, rows = 16;
  const size_t stride = row_bytes(DType::Q4_0, n);
  std::vector<uint8_t> w(stride * rows);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < 2; ++b) {
      BlockQ4_0 blk;
      blk.d = 0x3C00;  // 1.0
      std::memset(blk.qs, r % 2 ? 0xFF : 0x00, sizeof blk.qs);
      std::memcpy(w.data() + size_t(r) * stride + size_t(b) * sizeof blk, &blk, sizeof blk);
    }
  std::vector<uint8_t> act(row_bytes(DType::Q8_0, n));
  for (int b = 0; b < 2; ++b) {
    BlockQ8_0 a;
    a.d = 0x3C00;
    for (int i = 0; i < kQK; ++i) a.qs[i] = int8_t(i % 2 ? 127 : -127);
    a.qs[0] = 127;
    std::memcpy(act.data() + size_t(b) * sizeof a, &a, sizeof a);
  }
  tile(Layout::kQ4_0x16, w.data(), stride, rows, n);
  at_every_level([&](Isa) {
    float out[16];
    dot_rows_tiled(Layout::kQ4_0x16, DType::Q4_0, w.data(), stride, rows, 0, rows, act.data(), n,
                   out);
    // Per block: sum of codes = 254 (one -127 turned +127); weights -8 or +7.
    for (int r = 0; r < rows; ++r) EXPECT_EQ(out[r], (r % 2 ? 7.0f : -8.0f) * 254 * 2) << r;
  });
}

}  // namespace
}  // namespace tf::kernels

namespace tf::kernels {
namespace {

// Q8_0 tiles keep llama.cpp's (the reference's) float order: the same bits as vec_dot.
TEST_F(Tiles, Q8_0IsBitExact) {
  const int64_t n = 32 * 9, rows = 16 * 2 + 3;
  const size_t stride = row_bytes(DType::Q8_0, n);
  for (Scale sc : {Scale::kNormal, Scale::kLarge, Scale::kOutlier}) {
    const auto w = random_weights(DType::Q8_0, n, rows, 0, sc, 5);
    auto t = w;
    tile(Layout::kQ8_0x16, t.data(), stride, rows, n);
    const auto acts = acts_for(DType::Q8_0, n, 5, Scale::kNormal, 3);
    const size_t ab = row_bytes(DType::Q8_0, n);
    std::vector<float> d(static_cast<size_t>(rows)), g(static_cast<size_t>(5 * rows));
    gemm_tiled(Layout::kQ8_0x16, DType::Q8_0, t.data(), stride, rows, 0, rows, acts.data(), ab, 5,
               n, g.data(), rows);
    for (int64_t k = 0; k < 5; ++k) {
      dot_rows_tiled(Layout::kQ8_0x16, DType::Q8_0, t.data(), stride, rows, 0, rows,
                     acts.data() + size_t(k) * ab, n, d.data());
      for (int64_t r = 0; r < rows; ++r) {
        const float want =
            vec_dot(DType::Q8_0, w.data() + size_t(r) * stride, acts.data() + size_t(k) * ab, n);
        ASSERT_EQ(d[size_t(r)], want) << "dot token " << k << " row " << r;
        ASSERT_EQ(g[size_t(k * rows + r)], want) << "gemm token " << k << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace tf::kernels
