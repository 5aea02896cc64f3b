// Tensor element types as numbered in GGUF, with their block layouts.
// A row of n elements of a block type occupies (n / block_size) * type_size bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tf {

// Values are the GGUF / ggml type ids; keep them stable.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  // Types this build cannot compute with, listed so files using them get a clear
  // "unsupported type" error and correct tensor sizes instead of "unknown type id".
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

struct DTypeInfo {
  DType type;
  const char* name;     // "f32", "q4_K", ... (ggml spelling)
  uint32_t block_size;  // elements per block (1 for plain types)
  uint32_t type_size;   // bytes per block
  bool supported;       // this build can dequantize / compute with it
  DType vec_dot_type;   // what activations are converted to for dot products with this type
};

// nullptr for an id that is not a known ggml type (e.g. from a corrupt file).
const DTypeInfo* dtype_info(uint32_t raw_type_id);
const DTypeInfo& dtype_info(DType t);
inline const char* dtype_name(DType t) {
  return dtype_info(t).name;
}
// Parses "q8_0", "Q4_K", "f16" ... (case-insensitive); nullopt if unknown.
std::optional<DType> dtype_from_name(const char* name);

// Bytes for n elements; n must be a multiple of the block size (checked by callers that
// validate files: use row_bytes_checked there).
size_t row_bytes(DType t, int64_t n);
// Same, but returns nullopt on a non-multiple, negative n or overflow.
std::optional<size_t> row_bytes_checked(DType t, int64_t n);

}  // namespace tf
