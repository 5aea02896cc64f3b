// Quantizers for weight matrices as `quantize` and `synth` write them. For Q4_K, Q5_K and Q6_K
// they search for the scales that minimise the squared error (the tensor layer's quantizers
// pick scales from the min/max only, which is simple and safe but ~10% less accurate); Q8_0
// follows ggml's reference rule exactly, so its bytes are llama-quantize's, minus the library
// call per element. Other types go to tf::quantize_row.
// The block layouts are ggml's, so any reader of GGUF files can use the results.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace tf::tools {

// How hard to look for good K-quant scales. kFast takes the tensor layer's direct min/max
// choice (~15x quicker, ~5-10% more error): right for random weights, where nothing is lost.
enum class Effort { kBest, kFast };

// Converts n floats (a multiple of the type's block size) to type t.
void quantize_weights(DType t, const float* src, void* dst, int64_t n,
                      Effort effort = Effort::kBest);

}  // namespace tf::tools
