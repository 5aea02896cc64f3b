// Scalar reference implementations: the ground truth every fast kernel is tested against.
// Block layouts follow ggml's (the bytes in GGUF files), written from the format description.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace tf {

// Converts n elements of type t (n a multiple of its block size) to float.
// Throws tf::Error for a type without a dequantizer.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Converts n floats to type t (n a multiple of its block size). Available for F32, F16, BF16,
// Q8_0, Q8_1, Q8_K, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K. The activation types
// Q8_0/Q8_1/Q8_K produce exactly the bytes llama.cpp's x86 CPU backend produces (for Q8_0/Q8_1
// that is its AVX path, not the portable reference), because its results depend on them.
// Q4_0..Q5_1 match ggml's reference quantizers; the K weight types are simple but valid.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// Dot product of one row of weights (type w) with activations already converted to
// dtype_info(w).vec_dot_type. n elements. This is the reference semantics of a matmul row.
float vec_dot(DType w, const void* w_row, const void* act, int64_t n);

}  // namespace tf
