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

// llama.cpp's x86 CPU backend computes a matrix product with one of two kernels, and for the
// float types they round differently (they add the products in different orders):
//  - VecDot: ggml's vec_dot functions, used when the activations are a single row (decoding
//    one token) or when llamafile's sgemm declines the shapes;
//  - Sgemm:  llamafile's tinyBLAS, used for two or more activation rows (prompt processing)
//    when the shapes suit it (see llama_dot_kernel in backend/cpu_ops.h).
// The results below reproduce those of an AVX-512 build (GGML_NATIVE on this project's
// reference machines) bit for bit. The legacy quantized types (Q8_0, Q4_0, ...) use the same
// per-block arithmetic in both kernels, so the choice only matters for F32 and F16. BF16 keeps
// an accurate reference order (llama.cpp uses AVX512-BF16 dot instructions there).
enum class DotKernel { VecDot, Sgemm };

// Dot product of one row of weights (type w) with activations already converted to
// dtype_info(w).vec_dot_type. n elements. This is the reference semantics of a matmul row.
// Sgemm needs n to be a multiple of 16 for F32/F16 (llama.cpp's condition too); otherwise
// VecDot is used.
float vec_dot(DType w, const void* w_row, const void* act, int64_t n,
              DotKernel kernel = DotKernel::VecDot);

// The horizontal sum of 16 floats in _mm512_reduce_add_ps's order (as GCC implements it): the
// upper and lower halves are added lane by lane, 16 -> 8 -> 4 -> 2 -> 1.
float reduce_add16(const float* v);

}  // namespace tf
