#include "backend/cpu_ops.h"

#include <algorithm>
#include <cmath>

#include "backend/kernels/kernels.h"
#include "tensor/quants.h"
#include "util/error.h"

namespace tf {

void rms_norm(const float* x, const float* w, float* out, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(float(sum / double(n)) + eps);
  if (w) {
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale;
  }
}

namespace {
// Below this much work (weight bytes x tokens) an operation runs on the calling thread alone:
// waking a second core costs more than it saves, and small models must never get slower
// with more threads.
constexpr size_t kParallelMinWork = size_t(1) << 20;
// Rows per tile when several tokens share a pass over the weights: a tile stays in L2 while
// every token's activations stream past it.
constexpr int64_t kRowTile = 64;
}  // namespace

void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tok, float* y,
            std::vector<uint8_t>& act_scratch) {
  const DType act_type = dtype_info(w.type).vec_dot_type;
  const size_t act_row = row_bytes(act_type, w.cols);
  if (act_scratch.size() < act_row * size_t(n_tok)) act_scratch.resize(act_row * size_t(n_tok));
  uint8_t* act = act_scratch.data();
  const int64_t rows = w.rows, cols = w.cols;
  const size_t work = size_t(rows) * w.row_stride * size_t(n_tok);
  const bool parallel = work >= kParallelMinWork && pool.size() > 1;
  auto quantize = [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) kernels::quantize_act(w.type, x + t * cols, act + t * act_row, cols);
  };
  auto body = [&](int64_t b, int64_t e, int) {
    if (n_tok == 1) {
      kernels::dot_rows(w.type, w.row(b), w.row_stride, e - b, act, cols, y + b);
      return;
    }
    for (int64_t r0 = b; r0 < e; r0 += kRowTile) {
      const int64_t nr = std::min(kRowTile, e - r0);
      for (int64_t t = 0; t < n_tok; ++t)
        kernels::dot_rows(w.type, w.row(r0), w.row_stride, nr, act + t * act_row, cols, y + t * rows + r0);
    }
  };
  if (parallel) {
    pool.parallel_for(n_tok, quantize);
    pool.parallel_for(rows, body, 16);
  } else {
    quantize(0, n_tok, 0);
    body(0, rows, 0);
  }
}

void get_row(const WeightView& w, int64_t r, float* out) {
  if (r < 0 || r >= w.rows) throw Error("token id " + std::to_string(r) + " out of range");
  dequantize_row(w.type, w.row(r), out, w.cols);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void silu_mul_inplace(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void rope_inplace(float* x, int n_heads, int head_dim, int32_t pos, const RopeParams& p) {
  // The angle of pair i is pos * base^(-2i/n_rot). Like llama.cpp, build base^(-2i/n_rot)
  // by repeated multiplication in float, so angles agree to the last bit.
  const float theta_scale = std::pow(p.freq_base, -2.0f / float(p.n_rot));
  const int half = p.n_rot / 2;
  float cs[512], sn[512];  // n_rot <= 1024 is checked when the model loads
  float theta = float(pos);
  for (int i = 0; i < half; ++i) {
    const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
    const float a = p.freq_scale * (theta / ff);
    cs[i] = std::cos(a);
    sn[i] = std::sin(a);
    theta *= theta_scale;
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int i0 = p.neox ? i : 2 * i;
      const int i1 = p.neox ? i + half : 2 * i + 1;
      const float a = v[i0], b = v[i1];
      v[i0] = a * cs[i] - b * sn[i];
      v[i1] = a * sn[i] + b * cs[i];
    }
  }
}

void softmax_inplace(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = (x[i] == -INFINITY) ? 0.0f : std::exp(x[i] - mx);
    x[i] = e;
    sum += e;
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace tf
