// Helpers shared by the tensor-layer tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/quants.h"

namespace tf::test {

// Well-known half bit patterns used to hand-build blocks.
inline constexpr uint16_t kHalf0_25 = 0x3400;
inline constexpr uint16_t kHalf0_5 = 0x3800;
inline constexpr uint16_t kHalf1 = 0x3C00;
inline constexpr uint16_t kHalf1_5 = 0x3E00;
inline constexpr uint16_t kHalf2 = 0x4000;
inline constexpr uint16_t kHalf3 = 0x4200;
inline constexpr uint16_t kHalfMinus1 = 0xBC00;
inline constexpr uint16_t kHalfMinus0_125 = 0xB000;

inline std::vector<float> dequant(DType t, const void* src, int64_t n) {
  std::vector<float> out(size_t(n), NAN);
  dequantize_row(t, src, out.data(), n);
  return out;
}

inline std::vector<uint8_t> quant(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(t, int64_t(x.size())), 0xCD);
  quantize_row(t, x.data(), out.data(), int64_t(x.size()));
  return out;
}

inline std::vector<float> gaussian(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng) * scale;
  return v;
}

// Worst-case error from storing a scale v as fp16: half an ulp relative for normals, half the
// subnormal spacing (2^-25) near zero.
inline double fp16_err(double v) {
  return std::max(std::fabs(v) * 0x1p-11, 0x1p-25);
}

}  // namespace tf::test
