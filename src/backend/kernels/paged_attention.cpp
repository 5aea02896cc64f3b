// Attention over a paged KV cache (fp16 or Q8_0 rows): the scalar references and the dispatch
// to SIMD versions.
#include <algorithm>

#include "backend/kernels/internal.h"
#include "tensor/blocks.h"
#include "tensor/fp16.h"

namespace tf::kernels {

namespace {

// Calls f(i, blocks[b].qs + in, m, d) for the pieces of [start, start + D) of one row that lie
// in one block each: elements i..i+m-1 of the slice, with block scale d.
template <class F>
inline void for_each_piece(const BlockQ8_0* blocks, int64_t start, int64_t D, F&& f) {
  for (int64_t i = 0; i < D;) {
    const int64_t e = start + i, b = e / kQK, in = e % kQK;
    const int64_t m = std::min<int64_t>(D - i, kQK - in);
    f(i, blocks[b].qs + in, m, fp16_to_f32(blocks[b].d));
    i += m;
  }
}

}  // namespace

void f16_weighted_sum_reference(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                                const float* p, size_t p_stride, int64_t m, float* out,
                                size_t out_stride) {
  for (int64_t h = 0; h < m; ++h) {
    float* o = out + size_t(h) * out_stride;
    std::fill(o, o + D, 0.0f);
    for (int64_t j = 0; j < len; ++j) {
      const auto* v = reinterpret_cast<const uint16_t*>(rows.row(j)) + start;
      const float w = p[size_t(h) * p_stride + size_t(j)];
      for (int64_t d = 0; d < D; ++d) o[d] += w * fp16_to_f32(v[d]);
    }
  }
}

void f16_weighted_sum(const PagedRows& rows, int64_t len, int64_t start, int64_t D, const float* p,
                      size_t p_stride, int64_t m, float* out, size_t out_stride) {
  if (auto f = detail::active_table().rows.f16_weighted_sum; f && D % 16 == 0)
    return f(rows, len, start, D, p, p_stride, m, out, out_stride);
  f16_weighted_sum_reference(rows, len, start, D, p, p_stride, m, out, out_stride);
}

void q8_0_scores_sliced(const uint8_t* rows, size_t stride, int64_t len, int64_t start, int64_t D,
                        const float* q, float scale, float* sc) {
  for (int64_t j = 0; j < len; ++j) {
    const auto* blocks = reinterpret_cast<const BlockQ8_0*>(rows + size_t(j) * stride);
    float s = 0.0f;
    for_each_piece(blocks, start, D, [&](int64_t i, const int8_t* qs, int64_t m, float d) {
      float part = 0.0f;
      for (int64_t k = 0; k < m; ++k) part += q[i + k] * float(qs[k]);
      s += part * d;
    });
    sc[j] = s * scale;
  }
}

void q8_0_weighted_sum_reference(const PagedRows& rows, int64_t len, int64_t start, int64_t D,
                                 const float* p, float* out) {
  std::fill(out, out + D, 0.0f);
  for (int64_t j = 0; j < len; ++j) {
    const auto* blocks = reinterpret_cast<const BlockQ8_0*>(rows.row(j));
    for_each_piece(blocks, start, D, [&](int64_t i, const int8_t* qs, int64_t m, float d) {
      const float w = p[j] * d;
      for (int64_t k = 0; k < m; ++k) out[i + k] += w * float(qs[k]);
    });
  }
}

void q8_0_weighted_sum(const PagedRows& rows, int64_t len, int64_t start, int64_t D, const float* p,
                       float* out) {
  if (auto f = detail::active_table().rows.q8_0_weighted_sum; f && start % kQK == 0 && D % kQK == 0)
    return f(rows, len, start, D, p, out);
  q8_0_weighted_sum_reference(rows, len, start, D, p, out);
}

}  // namespace tf::kernels
