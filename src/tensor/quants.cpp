// Dispatch by type, plus the unquantized formats (F32, F16, BF16).
#include "tensor/quants.h"

#include <cstring>
#include <string>

#include "tensor/fp16.h"
#include "tensor/quants_internal.h"
#include "util/error.h"

namespace tf {
namespace {

// Returns the number of blocks; throws for a bad element count.
int64_t blocks_of(DType t, int64_t n, const char* what) {
  const DTypeInfo& info = dtype_info(t);
  if (n < 0 || n % info.block_size != 0) {
    throw Error(std::string(what) + ": " + std::to_string(n) + " elements is not a multiple of " +
                info.name + "'s block size " + std::to_string(info.block_size));
  }
  return n / info.block_size;
}

[[noreturn]] void unsupported(DType t, const char* what) {
  throw Error(std::string(what) + " is not available for tensor type " + dtype_info(t).name);
}

// Plain types: products are summed in double, so this is the accurate reference a SIMD
// kernel (which sums in float lanes) is compared against.
double dot_f32(const float* w, const float* a, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(w[i]) * double(a[i]);
  return s;
}
// The float products of two halves (or bfloats) are exact, so only the summation rounds.
double dot_f16(const uint16_t* w, const uint16_t* a, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(fp16_to_f32(w[i]) * fp16_to_f32(a[i]));
  return s;
}
double dot_bf16(const uint16_t* w, const uint16_t* a, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(bf16_to_f32(w[i]) * bf16_to_f32(a[i]));
  return s;
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const int64_t nb = blocks_of(t, n, "dequantize_row");
  switch (t) {
    case DType::F32:
      if (n) std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(s[i]);
      return;
    }
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::Q4_0:
      return detail::dequant_q4_0(src, dst, nb);
    case DType::Q4_1:
      return detail::dequant_q4_1(src, dst, nb);
    case DType::Q5_0:
      return detail::dequant_q5_0(src, dst, nb);
    case DType::Q5_1:
      return detail::dequant_q5_1(src, dst, nb);
    case DType::Q8_0:
      return detail::dequant_q8_0(src, dst, nb);
    case DType::Q8_1:
      return detail::dequant_q8_1(src, dst, nb);
    case DType::Q2_K:
      return detail::dequant_q2_k(src, dst, nb);
    case DType::Q3_K:
      return detail::dequant_q3_k(src, dst, nb);
    case DType::Q4_K:
      return detail::dequant_q4_k(src, dst, nb);
    case DType::Q5_K:
      return detail::dequant_q5_k(src, dst, nb);
    case DType::Q6_K:
      return detail::dequant_q6_k(src, dst, nb);
    case DType::Q8_K:
      return detail::dequant_q8_k(src, dst, nb);
    default:
      unsupported(t, "dequantize_row");
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const int64_t nb = blocks_of(t, n, "quantize_row");
  switch (t) {
    case DType::F32:
      if (n) std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_fp16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::Q4_0:
      return detail::quant_q4_0(src, dst, nb);
    case DType::Q4_1:
      return detail::quant_q4_1(src, dst, nb);
    case DType::Q5_0:
      return detail::quant_q5_0(src, dst, nb);
    case DType::Q5_1:
      return detail::quant_q5_1(src, dst, nb);
    case DType::Q8_0:
      return detail::quant_q8_0(src, dst, nb);
    case DType::Q8_1:
      return detail::quant_q8_1(src, dst, nb);
    case DType::Q4_K:
      return detail::quant_q4_k(src, dst, nb);
    case DType::Q5_K:
      return detail::quant_q5_k(src, dst, nb);
    case DType::Q6_K:
      return detail::quant_q6_k(src, dst, nb);
    case DType::Q8_K:
      return detail::quant_q8_k(src, dst, nb);
    default:
      unsupported(t, "quantize_row");
  }
}

float vec_dot(DType w, const void* w_row, const void* act, int64_t n) {
  const int64_t nb = blocks_of(w, n, "vec_dot");
  switch (w) {
    case DType::F32:
      return float(dot_f32(static_cast<const float*>(w_row), static_cast<const float*>(act), n));
    case DType::F16:
      return float(
          dot_f16(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act), n));
    case DType::BF16:
      return float(
          dot_bf16(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act), n));
    case DType::Q4_0:
      return detail::dot_q4_0(w_row, act, nb);
    case DType::Q4_1:
      return detail::dot_q4_1(w_row, act, nb);
    case DType::Q5_0:
      return detail::dot_q5_0(w_row, act, nb);
    case DType::Q5_1:
      return detail::dot_q5_1(w_row, act, nb);
    case DType::Q8_0:
      return detail::dot_q8_0(w_row, act, nb);
    case DType::Q8_1:
      return detail::dot_q8_1(w_row, act, nb);
    case DType::Q2_K:
      return detail::dot_q2_k(w_row, act, nb);
    case DType::Q3_K:
      return detail::dot_q3_k(w_row, act, nb);
    case DType::Q4_K:
      return detail::dot_q4_k(w_row, act, nb);
    case DType::Q5_K:
      return detail::dot_q5_k(w_row, act, nb);
    case DType::Q6_K:
      return detail::dot_q6_k(w_row, act, nb);
    case DType::Q8_K:
      return detail::dot_q8_k(w_row, act, nb);
    default:
      unsupported(w, "vec_dot");
  }
}

}  // namespace tf
