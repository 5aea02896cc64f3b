// Dot products of fp16 rows in exactly the order of llama.cpp's AVX-512 kernels (see
// tensor/quants.h DotKernel), for attention: the scalar reference (vec_dot F16 with a
// DotKernel) emulates those 16-lane vectors element by element, which is correct but slow.
// These compute the same lanes with real vectors, so the results are bit-identical.
#pragma once

#include <cstdint>

#include "tensor/quants.h"

namespace tf::kernels {

// Same result as vec_dot(DType::F16, w, a, n, kernel), bit for bit.
float dot_f16_ordered(const uint16_t* w, const uint16_t* a, int64_t n, DotKernel kernel);

namespace detail {
// For tests: 0 = scalar reference, 1 = AVX2, 2 = AVX-512 (the caller checks the CPU has it).
int f16_dot_best_level();
float dot_f16_ordered_at(int level, const uint16_t* w, const uint16_t* a, int64_t n, DotKernel kernel);
}  // namespace detail

}  // namespace tf::kernels
