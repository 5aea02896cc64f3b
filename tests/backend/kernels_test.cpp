// The SIMD kernels against the scalar reference (tensor/quants.h), at every ISA level this CPU
// has: dot_rows on random blocks with extreme scales, quantize_act byte for byte, and the ISA
// switch itself.
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

// Restores the detected level after each test so test order does not matter.
class Kernels : public ::testing::Test {
 protected:
  void TearDown() override { set_active(detect()); }
};

// ---- random data -------------------------------------------------------------------------

// Activations: floats with the chosen scale, converted by the reference quantizer (so Q8_K's
// block sums are consistent with its codes, as the kernels require).
std::vector<float> random_floats(int64_t n, Scale sc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  // Clamped so F16 activations stay finite.
  for (int64_t i = 0; i < n; ++i)
    x[size_t(i)] = std::clamp(g(rng) * pick_scale(sc, rng, int(i / 256), false), -6e4f, 6e4f);
  return x;
}

std::vector<uint8_t> ref_act(DType w, const std::vector<float>& x) {
  const DType a = dtype_info(w).vec_dot_type;
  std::vector<uint8_t> out(row_bytes(a, int64_t(x.size())));
  quantize_row(a, x.data(), out.data(), int64_t(x.size()));
  return out;
}

// The sum of the magnitudes of the float terms the reference adds: per block for the quantized
// types (the d and dmin parts of the K types separately, since they may cancel), per element
// for the plain types. The kernels differ from the reference only in rounding of these sums.
double magnitude(DType t, const uint8_t* row, const uint8_t* act, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  const DTypeInfo& ainfo = dtype_info(info.vec_dot_type);
  if (info.block_size == 1) {
    std::vector<float> w(static_cast<size_t>(n)), a(static_cast<size_t>(n));
    dequantize_row(t, row, w.data(), n);
    dequantize_row(info.vec_dot_type, act, a.data(), n);
    double m = 0;
    for (int64_t i = 0; i < n; ++i) m += std::fabs(double(w[size_t(i)]) * a[size_t(i)]);
    return m;
  }
  double m = 0;
  std::vector<uint8_t> blk(info.type_size);
  for (int64_t i = 0; i < n / info.block_size; ++i) {
    const uint8_t* wb = row + size_t(i) * info.type_size;
    const uint8_t* ab = act + size_t(i) * ainfo.type_size;
    if (t == DType::Q4_K || t == DType::Q5_K) {
      for (int part = 0; part < 2; ++part) {  // zero dmin, then d
        std::memcpy(blk.data(), wb, blk.size());
        std::memset(blk.data() + (part == 0 ? 2 : 0), 0, 2);
        m += std::fabs(double(vec_dot(t, blk.data(), ab, info.block_size)));
      }
    } else {
      m += std::fabs(double(vec_dot(t, wb, ab, info.block_size)));
    }
  }
  return m;
}

const DType kTypes[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K,
                        DType::Q6_K, DType::F16,  DType::BF16, DType::F32};

// Block counts per row for each type: odd counts and counts that leave partial vectors.
std::vector<int64_t> sizes_for(DType t) {
  const int64_t bs = dtype_info(t).block_size;
  if (bs == 256) return {256, 768, 1280};
  if (bs == 32) return {32, 96, 160, 544};
  return {1, 7, 31, 32, 33, 100, 257, 1000};
}

// |fast - ref| <= 1e-5 * sum|terms| + 1e-35: float sums of at most a few hundred terms in
// either order are both within ~n * 2^-24 of the exact sum; the absolute part covers results
// in the subnormal range, where relative precision is lost.
TEST_F(Kernels, DotRowsMatchesReference) {
  const Scale scales[] = {Scale::kNormal, Scale::kTiny, Scale::kLarge, Scale::kZero,
                          Scale::kOutlier};
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    for (DType t : kTypes) {
      for (int64_t n : sizes_for(t)) {
        for (Scale ws : scales) {
          const Scale as = ws == Scale::kOutlier ? Scale::kNormal : ws;
          const uint32_t seed = uint32_t(n * 131 + int(t) * 7 + int(ws));
          // Up to two groups of rows worked side by side (kRowGroup) and a remainder.
          const int64_t rows = 17;
          const auto w = random_weights(t, n, rows, 0, ws, seed);
          const auto act = ref_act(t, random_floats(n, as, seed + 1));
          const size_t rb = row_bytes(t, n);
          for (int64_t nrows : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17}) {
            std::vector<float> out(size_t(2 * nrows), -1.0f);
            dot_rows(t, w.data(), rb, nrows, act.data(), n, out.data(), 2);
            for (int64_t r = 0; r < nrows; ++r) {
              const uint8_t* row = w.data() + size_t(r) * rb;
              const float ref = vec_dot(t, row, act.data(), n);
              const double tol = 1e-5 * magnitude(t, row, act.data(), n) + 1e-35;
              ASSERT_NEAR(out[size_t(2 * r)], ref, tol)
                  << var.name << " " << dtype_name(t) << " n=" << n << " scale=" << scale_name(ws)
                  << " nrows=" << nrows << " row=" << r;
              ASSERT_EQ(out[size_t(2 * r + 1)], -1.0f) << "wrote outside out_stride";
            }
          }
        }
      }
    }
  }
}

// Rows of the maximum-magnitude codes with matching activations: the integer sums must not
// overflow or saturate anywhere in the SIMD paths (e.g. maddubs pairs, -128 * -128).
TEST_F(Kernels, DotRowsExtremeCodes) {
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      const int64_t n = dtype_info(t).block_size == 256 ? 512 : 96;
      for (uint8_t fill : {uint8_t(0x00), uint8_t(0xFF), uint8_t(0x80), uint8_t(0x7F)}) {
        auto w = random_weights(t, n, 5, 0, Scale::kNormal, 7);
        const DTypeInfo& info = dtype_info(t);
        // Overwrite everything but the scale halves with the fill byte.
        for (size_t b = 0; b < w.size(); b += info.type_size) {
          const size_t d_off = t == DType::Q6_K ? offsetof(BlockQ6_K, d) : 0;
          const size_t d_len = (t == DType::Q4_K || t == DType::Q5_K) ? 4 : 2;
          for (size_t k = 0; k < info.type_size; ++k)
            if (k < d_off || k >= d_off + d_len) w[b + k] = fill;
        }
        std::vector<float> x(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) x[size_t(i)] = (i % 3 == 0) ? -1.0f : 1.0f;
        auto act = ref_act(t, x);
        if (t == DType::Q4_0 || t == DType::Q8_0) {
          // -128 activations (the quantizer only makes them from NaN): still exact.
          for (size_t b = 0; b < act.size(); b += sizeof(BlockQ8_0))
            std::memset(act.data() + b + 2, fill == 0x7F ? 0x7F : 0x80, kQK);
        }
        std::vector<float> out(5);
        dot_rows(t, w.data(), row_bytes(t, n), 5, act.data(), n, out.data());
        for (int r = 0; r < 5; ++r) {
          const uint8_t* row = w.data() + size_t(r) * row_bytes(t, n);
          const float ref = vec_dot(t, row, act.data(), n);
          ASSERT_NEAR(out[size_t(r)], ref, 1e-5 * magnitude(t, row, act.data(), n) + 1e-35)
              << var.name << " " << dtype_name(t) << " fill=" << int(fill);
        }
      }
    }
  }
}

// The reference f32_to_fp16 sets the sign bit of a positive NaN (it ORs in the unmasked
// a >> 13); F16C does not. Both are NaN, which is all a NaN activation can mean, so accept
// either spelling of the sign for NaN halves only.
void forgive_f16_nan_sign(const std::vector<uint8_t>& ref, std::vector<uint8_t>& got) {
  for (size_t i = 0; i + 1 < ref.size(); i += 2) {
    uint16_t r, g;
    std::memcpy(&r, &ref[i], 2);
    std::memcpy(&g, &got[i], 2);
    const bool both_nan = (r & 0x7FFF) > 0x7C00 && (g & 0x7FFF) > 0x7C00;
    if (both_nan && (r & 0x7FFF) == (g & 0x7FFF)) std::memcpy(&got[i], &r, 2);
  }
}

// Byte-identical activations, on random data of several magnitudes, exact .5 ties, zeros,
// signed zeros, a negative maximum, values too small for 127/amax, inf and NaN.
TEST_F(Kernels, QuantizeActMatchesQuantizeRow) {
  std::vector<std::vector<float>> inputs;
  for (Scale s : {Scale::kNormal, Scale::kTiny, Scale::kLarge, Scale::kZero, Scale::kOutlier})
    inputs.push_back(random_floats(1024, s, 11 + int(s)));
  {
    // Ties: with amax = 127 (or max = -127 for Q8_K) the scale is exactly +-1, so k + 0.5
    // lands exactly on a tie after scaling.
    std::vector<float> x(1024);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 250) - 125) + 0.5f;
    for (size_t b = 0; b < x.size(); b += 32) x[b + 3] = 127.0f;
    for (size_t b = 0; b < x.size(); b += 256) x[b + 7] = -127.0f;
    inputs.push_back(x);
    for (size_t b = 0; b < x.size(); b += 32) x[b + 3] = -127.0f;
    inputs.push_back(x);
  }
  {
    std::vector<float> x(1024, 0.0f);
    for (size_t i = 0; i < x.size(); i += 2) x[i] = -0.0f;
    x[40] = 3e-38f;
    x[41] = -1e-38f;  // block 1: amax ~3e-38, 127/amax overflows to inf
    x[300] = 1e-44f;  // subnormal-only block
    x[600] = INFINITY;
    x[601] = 2.0f;
    x[700] = NAN;
    x[701] = -5.0f;
    x[900] = -INFINITY;
    x[1000] = 65520.0f;  // fp16 rounding edge
    x[1001] = 5.96e-8f;
    inputs.push_back(x);
  }
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    for (DType w : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::F16, DType::BF16, DType::F32}) {
      for (size_t k = 0; k < inputs.size(); ++k) {
        const auto& x = inputs[k];
        for (int64_t n : {int64_t(256), int64_t(1024)}) {
          const DType a = dtype_info(w).vec_dot_type;
          std::vector<uint8_t> ref(row_bytes(a, n), 0xAB), got(row_bytes(a, n), 0xCD);
          quantize_row(a, x.data(), ref.data(), n);
          quantize_act(w, x.data(), got.data(), n);
          if (a == DType::F16) forgive_f16_nan_sign(ref, got);
          ASSERT_EQ(ref, got) << var.name << " " << dtype_name(a) << " input " << k << " n=" << n;
        }
      }
      // Lengths that leave a scalar tail for the plain types.
      if (dtype_info(w).block_size == 1) {
        const auto& x = inputs[0];
        for (int64_t n : {1, 7, 9, 17, 31}) {
          std::vector<uint8_t> ref(row_bytes(w, n), 0xAB), got(row_bytes(w, n), 0xCD);
          quantize_row(w, x.data(), ref.data(), n);
          quantize_act(w, x.data(), got.data(), n);
          ASSERT_EQ(ref, got) << var.name << " " << dtype_name(w) << " n=" << n;
        }
      }
    }
  }
}

TEST_F(Kernels, BadLengthsThrow) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> x(64), out(4);
  for (const Variant& var : variants()) {
    detail::set_active_features(var.f);
    EXPECT_THROW(dot_rows(DType::Q4_0, buf.data(), 18, 1, buf.data(), 33, out.data()), Error);
    EXPECT_THROW(dot_rows(DType::Q4_K, buf.data(), 144, 1, buf.data(), 64, out.data()), Error);
    EXPECT_THROW(quantize_act(DType::Q8_0, x.data(), buf.data(), 40), Error);
    EXPECT_NO_THROW(dot_rows(DType::Q4_0, buf.data(), 18, 0, buf.data(), 32, out.data()));
  }
}

TEST_F(Kernels, IsaOverride) {
  const Isa best = detect();
  EXPECT_EQ(set_active(Isa::kScalar), Isa::kScalar);
  EXPECT_EQ(active(), Isa::kScalar);
  EXPECT_FALSE(has_fast_path(DType::Q4_0));
  // Asking for more than the CPU has is clamped.
  EXPECT_EQ(set_active(Isa::kAvx512), best);
  EXPECT_EQ(active(), best);
  if (best != Isa::kScalar) {
    EXPECT_EQ(set_active(Isa::kAvx2), Isa::kAvx2);
    for (DType t : kTypes) EXPECT_TRUE(has_fast_path(t)) << dtype_name(t);
    EXPECT_FALSE(has_fast_path(DType::Q4_1));  // no kernel: the reference is used
  }
}

TEST_F(Kernels, ParseIsa) {
  EXPECT_EQ(parse_isa("scalar"), Isa::kScalar);
  EXPECT_EQ(parse_isa("AVX2"), Isa::kAvx2);
  EXPECT_EQ(parse_isa("avx512"), Isa::kAvx512);
  EXPECT_EQ(parse_isa("sse4"), std::nullopt);
  EXPECT_EQ(parse_isa(""), std::nullopt);
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) EXPECT_EQ(parse_isa(isa_name(i)), i);
}

// TF_ISA is read once per process, so each case runs in a freshly started child process
// ("threadsafe" death tests re-execute the binary; "fast" ones would inherit our state).
TEST_F(Kernels, EnvironmentVariable) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto run = [](const char* value) {
    setenv("TF_ISA", value, 1);
    const Isa got = active();
    unsetenv("TF_ISA");
    std::exit(static_cast<int>(got));
  };
  const Isa best = detect();
  EXPECT_EXIT(run("scalar"), ::testing::ExitedWithCode(int(Isa::kScalar)), "");
  EXPECT_EXIT(run("avx512"), ::testing::ExitedWithCode(int(best)), "");
  EXPECT_EXIT(run("bogus"), ::testing::ExitedWithCode(int(best)), "ignoring unknown TF_ISA=bogus");
}

}  // namespace
}  // namespace tf::kernels
