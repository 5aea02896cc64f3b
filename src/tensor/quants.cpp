// Dispatch by type, plus the unquantized formats (F32, F16, BF16).
#include "tensor/quants.h"

#include <cmath>
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

// Plain types, summed in the orders of llama.cpp's AVX-512 kernels (see DotKernel). Each
// emulates 16-lane float vectors lane by lane; std::fma is a single-rounding multiply-add,
// exactly like the vector FMA instructions those kernels use.

// The SIMD part of ggml_vec_dot_f32 / _f16: four 16-lane FMA accumulators over 64-element
// steps, folded as (acc0 + acc2) + (acc1 + acc3) and then reduced. Returns how far it got.
template <typename Load>
int64_t dot_vec_simd(const Load& xy, int64_t n, float* out) {
  const int64_t np = n & ~int64_t(63);
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) {
        const int64_t k = i + 16 * j + l;
        acc[j][l] = std::fma(xy.x(k), xy.y(k), acc[j][l]);
      }
  float fold[16];
  for (int l = 0; l < 16; ++l) fold[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  *out = reduce_add16(fold);
  return np;
}

// tinyBLAS: one 16-lane FMA accumulator over the row, then reduced. n % 16 == 0.
template <typename Load>
float dot_sgemm(const Load& xy, int64_t n) {
  float acc[16] = {};
  for (int64_t i = 0; i < n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] = std::fma(xy.x(i + l), xy.y(i + l), acc[l]);
  return reduce_add16(acc);
}

struct F32Rows {
  const float *w, *a;
  float x(int64_t i) const { return w[i]; }
  float y(int64_t i) const { return a[i]; }
};
struct F16Rows {
  const uint16_t *w, *a;
  float x(int64_t i) const { return fp16_to_f32(w[i]); }
  float y(int64_t i) const { return fp16_to_f32(a[i]); }
};

float dot_f32(const float* w, const float* a, int64_t n, DotKernel kernel) {
  const F32Rows xy{w, a};
  if (kernel == DotKernel::Sgemm && n % 16 == 0) return dot_sgemm(xy, n);
  float sum;
  int64_t i = dot_vec_simd(xy, n, &sum);
  // The leftover loop `sumf += x[i]*y[i]` (float sumf), as GCC (12, -march=native) compiles
  // it: it vectorizes the products of whole groups of 8 (each rounded, then added in order)
  // and contracts the last n % 8 into fused multiply-adds.
  const int64_t grouped = i + (n - i) / 8 * 8;
  for (; i < grouped; ++i) sum += w[i] * a[i];
  for (; i < n; ++i) sum = std::fma(w[i], a[i], sum);
  return sum;
}

// The float products of two halves are exact, so only the summation order matters.
float dot_f16(const uint16_t* w, const uint16_t* a, int64_t n, DotKernel kernel) {
  const F16Rows xy{w, a};
  if (kernel == DotKernel::Sgemm && n % 16 == 0) return dot_sgemm(xy, n);
  float simd;
  const int64_t np = dot_vec_simd(xy, n, &simd);
  double sum = simd;  // ggml_vec_dot_f16 adds the leftovers in double
  for (int64_t i = np; i < n; ++i) sum += double(xy.x(i) * xy.y(i));
  return float(sum);
}

// Not llama.cpp's order (see DotKernel): exact products of bfloats summed in double.
double dot_bf16(const uint16_t* w, const uint16_t* a, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(bf16_to_f32(w[i]) * bf16_to_f32(a[i]));
  return s;
}

}  // namespace

float reduce_add16(const float* v) {
  float h8[8], h4[4];
  for (int i = 0; i < 8; ++i) h8[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) h4[i] = h8[i] + h8[i + 4];
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

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

float vec_dot(DType w, const void* w_row, const void* act, int64_t n, DotKernel kernel) {
  const int64_t nb = blocks_of(w, n, "vec_dot");
  switch (w) {
    case DType::F32:
      return dot_f32(static_cast<const float*>(w_row), static_cast<const float*>(act), n, kernel);
    case DType::F16:
      return dot_f16(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act), n,
                     kernel);
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
