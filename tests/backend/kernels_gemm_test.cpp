// The matrix-matrix kernels (kernels::gemm) against the scalar reference vec_dot, at every ISA
// level this CPU has: random blocks with extreme scales, 1..9 and 32 tokens, odd row counts,
// partial groups, token chunking, strides, extreme codes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/kernels/internal.h"
#include "backend/kernels/kernels.h"
#include "kernel_test_data.h"
#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "util/error.h"

namespace tf::kernels {
namespace {

using detail::Features;
using namespace tf::kernels::test;

class Gemm : public ::testing::Test {
 protected:
  void TearDown() override { set_active(detect()); }
};

// ntok activation rows (act_stride bytes apart), quantized by the reference quantizer.
std::vector<uint8_t> random_acts(DType w, int64_t n, int64_t ntok, size_t act_stride, Scale sc,
                                 uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const DType a = dtype_info(w).vec_dot_type;
  std::vector<uint8_t> out(act_stride * size_t(ntok), 0xEE);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t t = 0; t < ntok; ++t) {
    for (int64_t i = 0; i < n; ++i)
      x[size_t(i)] = std::clamp(g(rng) * pick_scale(sc, rng, int(i / 256), false), -6e4f, 6e4f);
    quantize_row(a, x.data(), out.data() + size_t(t) * act_stride, n);
  }
  return out;
}

// The sum of the magnitudes of the products the kernels add, element by element (for the K
// types the d and dmin parts separately, since they may cancel): kernels split a block's sum
// over SIMD lanes (dot_rows: groups of 4 elements) before going to float, and each lane's float
// rounding is relative to its own size, which can exceed the block's sum.
double magnitude(DType t, const uint8_t* row, const uint8_t* act, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<float> a(static_cast<size_t>(n)), w(static_cast<size_t>(n));
  dequantize_row(info.vec_dot_type, act, a.data(), n);
  std::vector<uint8_t> copy(row, row + row_bytes(t, n));
  const bool k45 = t == DType::Q4_K || t == DType::Q5_K;
  double m = 0;
  for (int part = 0; part < (k45 ? 2 : 1); ++part) {
    if (k45) {  // part 0: dmin zeroed, part 1: d zeroed
      std::memcpy(copy.data(), row, copy.size());
      for (size_t b = 0; b < copy.size(); b += info.type_size)
        std::memset(copy.data() + b + (part == 0 ? 2 : 0), 0, 2);
    }
    dequantize_row(t, copy.data(), w.data(), n);
    for (int64_t i = 0; i < n; ++i) m += std::fabs(double(w[size_t(i)]) * double(a[size_t(i)]));
  }
  return m;
}

const DType kTypes[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K,
                        DType::Q6_K, DType::F16,  DType::BF16, DType::F32};

// Row lengths: whole and partial groups (16 blocks for Q4_0, 2 super-blocks for Q4_K / Q5_K)
// and, for the plain types, lengths that are not a multiple of 16.
std::vector<int64_t> sizes_for(DType t) {
  const int64_t bs = dtype_info(t).block_size;
  if (bs == 256) return {256, 768, 1280};
  if (bs == 32) return {32, 96, 544, 1024};
  return {16, 48, 100, 256};
}

// Whether gemm must equal the reference bit for bit: Q8_0 with exact numerics (llama.cpp's
// order; the fast AVX-512 VNNI kernel sums a block per lane), F32 and F16 in llama.cpp's
// prompt-kernel order when a matrix kernel handles them.
bool exact(DType t, int64_t n) {
  if (t == DType::Q8_0) return numerics() == Numerics::kExact;
  return (t == DType::F32 || t == DType::F16) && n % 16 == 0 && has_gemm(t);
}

DotKernel ref_kernel(DType t) {
  return (t == DType::F32 || t == DType::F16) && has_gemm(t) ? DotKernel::Sgemm : DotKernel::VecDot;
}

// Every (rows, tokens) sub-problem of one random problem, with sentinel-checked output strides.
void check_problem(DType t, int64_t n, Scale ws, uint32_t seed, const std::vector<Variant>& vars) {
  const Scale as = ws == Scale::kOutlier ? Scale::kNormal : ws;
  constexpr int64_t kRows = 11, kTok = 32;
  const size_t rb = row_bytes(t, n) + 8;  // rows and activations not packed back to back
  const size_t ab = row_bytes(dtype_info(t).vec_dot_type, n) + 4;
  const auto w = random_weights(t, n, kRows, rb, ws, seed);
  const auto act = random_acts(t, n, kTok, ab, as, seed + 1);
  for (const Variant& var : vars) {
    detail::set_active_features(var.f);
    const DotKernel kern = ref_kernel(t);
    std::vector<float> ref(size_t(kRows * kTok));
    std::vector<double> tol(ref.size());
    for (int64_t tk = 0; tk < kTok; ++tk)
      for (int64_t r = 0; r < kRows; ++r) {
        const uint8_t* row = w.data() + size_t(r) * rb;
        const uint8_t* a = act.data() + size_t(tk) * ab;
        ref[size_t(tk * kRows + r)] = vec_dot(t, row, a, n, kern);
        tol[size_t(tk * kRows + r)] = 1e-5 * magnitude(t, row, a, n) + 1e-35;
      }
    for (int64_t nrows : {1, 3, 4, 5, 7, 11}) {
      for (int64_t ntok : {1, 2, 3, 4, 5, 6, 7, 8, 9, 32}) {
        const int64_t os = nrows + 3;
        std::vector<float> out(size_t(os * ntok), -1.0f);
        gemm(t, w.data(), rb, nrows, act.data(), ab, ntok, n, out.data(), os);
        for (int64_t tk = 0; tk < ntok; ++tk) {
          for (int64_t r = 0; r < os; ++r) {
            const float got = out[size_t(tk * os + r)];
            if (r >= nrows) {
              ASSERT_EQ(got, -1.0f) << "wrote outside the rows, " << var.name;
              continue;
            }
            const size_t k = size_t(tk * kRows + r);
            const std::string what = var.name + " " + dtype_name(t) + " n=" + std::to_string(n) +
                                     " scale=" + std::to_string(int(ws)) +
                                     " rows=" + std::to_string(nrows) +
                                     " ntok=" + std::to_string(ntok) + " row=" + std::to_string(r) +
                                     " tok=" + std::to_string(tk);
            if (exact(t, n)) {
              ASSERT_EQ(got, ref[k]) << what;
            } else {
              ASSERT_NEAR(got, ref[k], tol[k]) << what;
            }
          }
        }
      }
    }
  }
}

TEST_F(Gemm, MatchesReference) {
  const auto vars = variants();
  for (DType t : kTypes)
    for (int64_t n : sizes_for(t))
      for (Scale ws : {Scale::kNormal, Scale::kTiny, Scale::kLarge, Scale::kZero, Scale::kOutlier})
        check_problem(t, n, ws, uint32_t(n * 131 + int(t) * 7 + int(ws)), vars);
}

// Long rows and many tokens: several token chunks and row tiles per call.
TEST_F(Gemm, LongRowsManyTokens) {
  const auto vars = variants();
  for (const Variant& var : vars) {
    detail::set_active_features(var.f);
    for (DType t : kTypes) {
      const int64_t n = 5632, nrows = 9, ntok = 100;
      const size_t rb = row_bytes(t, n), ab = row_bytes(dtype_info(t).vec_dot_type, n);
      const auto w = random_weights(t, n, nrows, rb, Scale::kNormal, 99 + int(t));
      const auto act = random_acts(t, n, ntok, ab, Scale::kNormal, 7 + int(t));
      std::vector<float> out(size_t(nrows * ntok));
      gemm(t, w.data(), rb, nrows, act.data(), ab, ntok, n, out.data(), nrows);
      for (int64_t tk = 0; tk < ntok; ++tk)
        for (int64_t r = 0; r < nrows; ++r) {
          const uint8_t* row = w.data() + size_t(r) * rb;
          const uint8_t* a = act.data() + size_t(tk) * ab;
          const float ref = vec_dot(t, row, a, n, ref_kernel(t));
          const float got = out[size_t(tk * nrows + r)];
          if (exact(t, n)) {
            ASSERT_EQ(got, ref) << var.name << " " << dtype_name(t) << " r=" << r << " t=" << tk;
          } else {
            ASSERT_NEAR(got, ref, 1e-5 * magnitude(t, row, a, n) + 1e-35)
                << var.name << " " << dtype_name(t) << " r=" << r << " t=" << tk;
          }
        }
    }
  }
}

// Maximum-magnitude codes and activations (-128 included): no overflow or saturation.
TEST_F(Gemm, ExtremeCodes) {
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      const DTypeInfo& info = dtype_info(t);
      const int64_t n = info.block_size == 256 ? 512 : 96, rows = 5, ntok = 4;
      const size_t rb = row_bytes(t, n), ab = row_bytes(info.vec_dot_type, n);
      for (uint8_t fill : {uint8_t(0x00), uint8_t(0xFF), uint8_t(0x80), uint8_t(0x7F)}) {
        auto w = random_weights(t, n, rows, rb, Scale::kNormal, 7);
        for (size_t b = 0; b < w.size(); b += info.type_size) {
          const size_t d_off = t == DType::Q6_K ? offsetof(BlockQ6_K, d) : 0;
          const size_t d_len = (t == DType::Q4_K || t == DType::Q5_K) ? 4 : 2;
          for (size_t k = 0; k < info.type_size; ++k)
            if (k < d_off || k >= d_off + d_len) w[b + k] = fill;
        }
        std::vector<uint8_t> act(ab * ntok);
        std::vector<float> x(static_cast<size_t>(n));
        for (int64_t tk = 0; tk < ntok; ++tk) {
          for (int64_t i = 0; i < n; ++i) x[size_t(i)] = ((i + tk) % 3 == 0) ? -1.0f : 1.0f;
          quantize_row(info.vec_dot_type, x.data(), act.data() + size_t(tk) * ab, n);
          if (t == DType::Q4_0 || t == DType::Q8_0) {  // -128 activations (only from NaN)
            for (size_t b = 0; b < ab; b += sizeof(BlockQ8_0))
              std::memset(act.data() + size_t(tk) * ab + b + 2, fill == 0x7F ? 0x7F : 0x80, kQK);
          }
        }
        std::vector<float> out(size_t(rows * ntok));
        gemm(t, w.data(), rb, rows, act.data(), ab, ntok, n, out.data(), rows);
        for (int64_t tk = 0; tk < ntok; ++tk)
          for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* row = w.data() + size_t(r) * rb;
            const uint8_t* a = act.data() + size_t(tk) * ab;
            const float ref = vec_dot(t, row, a, n);
            ASSERT_NEAR(out[size_t(tk * rows + r)], ref, 1e-5 * magnitude(t, row, a, n) + 1e-35)
                << var.name << " " << dtype_name(t) << " fill=" << int(fill);
          }
      }
    }
  }
}

// gemm_prepare + gemm_prepared give gemm's results bit for bit, from any row offset.
TEST_F(Gemm, PreparedMatchesGemm) {
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    for (DType t : kTypes) {
      const size_t pb = gemm_act_bytes(t, 1024);
      if (!has_gemm(t)) {
        EXPECT_EQ(pb, 0u) << var.name << " " << dtype_name(t);
        continue;
      }
      ASSERT_EQ(pb % 64, 0u);
      for (int64_t n : sizes_for(t)) {
        const int64_t nrows = 13, ntok = 11;
        const size_t rb = row_bytes(t, n), ab = row_bytes(dtype_info(t).vec_dot_type, n);
        const auto w = random_weights(t, n, nrows, rb, Scale::kNormal, 5 + int(t));
        const auto act = random_acts(t, n, ntok, ab, Scale::kNormal, 6 + int(t));
        const size_t pbn = gemm_act_bytes(t, n);
        std::vector<uint8_t> buf(pbn * ntok + 64);
        uint8_t* prep = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
        for (int64_t k = 0; k < ntok; ++k)
          gemm_prepare(t, act.data() + size_t(k) * ab, n, prep + size_t(k) * pbn);
        std::vector<float> want(size_t(nrows * ntok)), got(want.size(), -1.0f);
        gemm(t, w.data(), rb, nrows, act.data(), ab, ntok, n, want.data(), nrows);
        // Two row ranges, as threads would split them.
        gemm_prepared(t, w.data(), rb, 5, prep, ntok, n, got.data(), nrows);
        gemm_prepared(t, w.data() + 5 * rb, rb, nrows - 5, prep, ntok, n, got.data() + 5, nrows);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(got[i], want[i])
              << var.name << " " << dtype_name(t) << " n=" << n << " i=" << i;
      }
    }
    std::vector<uint8_t> buf(64);
    std::vector<float> out(1);
    EXPECT_THROW(gemm_prepare(DType::Q4_1, buf.data(), 32, buf.data()), Error);
    EXPECT_THROW(gemm_prepared(DType::Q4_1, buf.data(), 20, 1, buf.data(), 1, 32, out.data(), 1),
                 Error);
  }
}

TEST_F(Gemm, BadLengthsThrowAndEmptyIsANoOp) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> out(4, -1.0f);
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    EXPECT_THROW(gemm(DType::Q4_0, buf.data(), 18, 1, buf.data(), 34, 2, 33, out.data(), 1), Error);
    EXPECT_THROW(gemm(DType::Q6_K, buf.data(), 210, 1, buf.data(), 292, 2, 64, out.data(), 1),
                 Error);
    EXPECT_NO_THROW(gemm(DType::Q4_0, buf.data(), 18, 0, buf.data(), 34, 2, 32, out.data(), 1));
    EXPECT_NO_THROW(gemm(DType::Q4_0, buf.data(), 18, 2, buf.data(), 34, 0, 32, out.data(), 1));
    EXPECT_EQ(out[0], -1.0f);
  }
}

TEST_F(Gemm, CoverageAtEachLevel) {
  EXPECT_EQ(set_active(Isa::kScalar), Isa::kScalar);
  for (DType t : kTypes) EXPECT_FALSE(has_gemm(t)) << dtype_name(t);
  if (detect() == Isa::kScalar) return;
  set_active(Isa::kAvx2);
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16,
                  DType::BF16, DType::F32})
    EXPECT_TRUE(has_gemm(t)) << dtype_name(t);
  EXPECT_FALSE(has_gemm(DType::Q4_1));
}

}  // namespace
}  // namespace tf::kernels
