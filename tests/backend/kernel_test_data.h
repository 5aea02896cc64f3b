// Shared by the kernel tests: the kernel sets this CPU can run, and random weight rows with
// scales of every kind (normal, fp16-subnormal, large, zero, one outlier block).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/kernels/internal.h"
#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace tf::kernels::test {

using detail::Features;

// Every distinct kernel set this CPU can run: the public levels plus the AVX-512 variants
// without VNNI/VBMI and without BF16 (separate code paths, reachable on older AVX-512 CPUs).
struct Variant {
  std::string name;
  Features f;
};
inline std::vector<Variant> variants() {
  const Features c = detail::cpu_features();
  std::vector<Variant> v{{"scalar", {}}};
  if (c.avx2) v.push_back({"avx2", {true, false, false, false}});
  if (c.avx512) v.push_back({"avx512-base", {true, true, false, false}});
  if (c.vnni) v.push_back({"avx512-vnni", {true, true, true, false}});
  if (c.bf16) v.push_back({"avx512-bf16", {true, true, false, true}});
  if (c.vnni && c.bf16) v.push_back({"avx512-all", {true, true, true, true}});
  // Numerics::kFast (kernels that reorder float additions).
  if (c.vnni) v.push_back({"avx512-vnni-fast", {true, true, true, false, true}});
  return v;
}

// Runs f(isa) at every public kernel level this CPU has, restoring the active level after.
template <class F>
void at_every_level(F&& f) {
  const Isa saved = active();
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (int(isa) > int(detect())) continue;
    set_active(isa);
    f(isa);
  }
  set_active(saved);
}

enum class Scale { kNormal, kTiny, kLarge, kZero, kOutlier };
inline const char* scale_name(Scale s) {
  switch (s) {
    case Scale::kNormal:
      return "normal";
    case Scale::kTiny:
      return "tiny";
    case Scale::kLarge:
      return "large";
    case Scale::kZero:
      return "zero";
    case Scale::kOutlier:
      return "outlier";
  }
  return "?";
}

// A float scale of the given kind (for fp16 fields "tiny" means fp16 subnormals).
inline float pick_scale(Scale s, std::mt19937& rng, int block, bool half_field) {
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  switch (s) {
    case Scale::kNormal:
      return u(rng) * 0.01f;
    case Scale::kTiny:
      return half_field ? u(rng) * 3e-7f : u(rng) * 1e-30f;
    case Scale::kLarge:
      return u(rng) * 1e4f;
    case Scale::kZero:
      return 0.0f;
    case Scale::kOutlier:
      return block == 1 ? u(rng) * 3e4f : u(rng) * 0.01f;
  }
  return 0;
}

// Weight rows: random code bytes (every bit pattern), scale fields overwritten with sane
// halves of the chosen kind; plain types get random values times the scale.
// Rows are `stride` bytes apart (0: packed).
inline std::vector<uint8_t> random_weights(DType t, int64_t n, int64_t rows, size_t stride,
                                           Scale sc, uint32_t seed) {
  std::mt19937 rng(seed);
  const DTypeInfo& info = dtype_info(t);
  const size_t rb = stride ? stride : row_bytes(t, n);
  std::vector<uint8_t> v(rb * size_t(rows));
  for (auto& b : v) b = uint8_t(rng());
  auto set_half = [&](uint8_t* p, float f) {
    const uint16_t h = f32_to_fp16(f);
    std::memcpy(p, &h, 2);
  };
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int64_t nb = n / info.block_size;
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = v.data() + size_t(r) * rb;
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* b = row + size_t(i) * info.type_size;
      const float s = pick_scale(sc, rng, int(i), true);
      switch (t) {
        case DType::Q4_0:
        case DType::Q8_0:
          set_half(b, s);
          break;
        case DType::Q4_K:
        case DType::Q5_K:
          set_half(b, s);
          set_half(b + 2, pick_scale(sc, rng, int(i), true) * 0.5f);
          break;
        case DType::Q6_K:
          set_half(b + offsetof(BlockQ6_K, d), s);
          break;
        case DType::F32: {
          const float f = g(rng) * pick_scale(sc, rng, int(i / 32), false) * 100.0f;
          std::memcpy(b, &f, 4);
          break;
        }
        case DType::F16:  // kept inside the fp16 range
          set_half(b, std::clamp(g(rng) * s, -6e4f, 6e4f));
          break;
        case DType::BF16: {
          const uint16_t h = f32_to_bf16(g(rng) * pick_scale(sc, rng, int(i / 32), false) * 100.f);
          std::memcpy(b, &h, 2);
          break;
        }
        default:
          break;
      }
    }
  }
  return v;
}

}  // namespace tf::kernels::test
