// The SIMD fp16 dot products used by attention must equal the scalar emulation of llama.cpp's
// order bit for bit, at every level this CPU has, for both kernel orders.
#include "backend/kernels/f16_dot.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tensor/fp16.h"

namespace {

TEST(F16DotOrdered, BitIdenticalToScalarEmulation) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int best = tf::kernels::detail::f16_dot_best_level();
  for (int64_t n : {1, 15, 16, 17, 32, 63, 64, 65, 128, 130, 192, 1000, 1024}) {
    for (float scale : {1e-3f, 1.f, 30.f}) {
      std::vector<uint16_t> w(static_cast<size_t>(n)), a(static_cast<size_t>(n));
      for (auto& x : w) x = tf::f32_to_fp16(scale * nd(rng));
      for (auto& x : a) x = tf::f32_to_fp16(nd(rng));
      for (tf::DotKernel k : {tf::DotKernel::VecDot, tf::DotKernel::Sgemm}) {
        const float want = tf::vec_dot(tf::DType::F16, w.data(), a.data(), n, k);
        for (int level = 1; level <= best; ++level) {
          const float got = tf::kernels::detail::dot_f16_ordered_at(level, w.data(), a.data(), n, k);
          ASSERT_EQ(tf::f32_to_bits(got), tf::f32_to_bits(want))
              << "n " << n << " level " << level << " kernel " << int(k) << ": " << got << " vs " << want;
        }
      }
    }
  }
}

}  // namespace
