// The operations a transformer forward pass needs, on the CPU. Each works on plain float rows;
// weights stay in their file type and are never dequantized as a whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/kernels/kernels.h"
#include "backend/thread_pool.h"
#include "tensor/dtype.h"
#include "tensor/quants.h"

namespace tf {

// A 2-D weight matrix as stored in the file: `rows` rows of `cols` elements of `type`, or
// rewritten at load into tiles of rows (layout; see kernels::Layout), which then only the
// matrix products read: row(r) is a plain row only for rows after the tiles.
struct WeightView {
  DType type = DType::F32;
  const uint8_t* data = nullptr;
  int64_t cols = 0;  // ne[0]: the reduction dimension
  int64_t rows = 0;  // ne[1]: output features
  size_t row_stride = 0;
  kernels::Layout layout = kernels::Layout::kRows;
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_stride; }
  bool empty() const { return data == nullptr; }
};

// out = x / rms(x) (* w when w is not null). The sum of squares is accumulated in double, as
// llama.cpp does, so that results agree to the last bits on long rows.
void rms_norm(const float* x, const float* w, float* out, int64_t n, float eps);

// The kernel llama.cpp's CPU backend (AVX-512 build) uses for the product of a rows x cols
// matrix of type w with n_tok activation rows: llamafile's sgemm takes two or more rows when
// its tile shapes fit (for F32/F16: cols % 16 == 0 and rows % 4 == 0), ggml's vec_dot the rest.
// It matters for the rounding of F32/F16 products (including attention's); see DotKernel.
DotKernel llama_dot_kernel(DType w, int64_t rows, int64_t cols, int64_t n_tok);

// y[t][r] = dot(W[r], x[t]) for t < n_tok. Activations are first converted to the weight
// type's vec_dot_type in `act_scratch` (grown if needed; reuse it to avoid allocation).
void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tok, float* y,
            std::vector<uint8_t>& act_scratch);

// Several matrices applied to the same activations (attention's Q, K and V; the feed-forward
// gate and up): ys[i] = ws[i] x for i < count. For one token, when the matrices share the
// activation type and width, this is one parallel loop over all their rows: the activations are
// converted once and the threads meet once instead of once per matrix. Otherwise (several
// tokens, mixed activation types) it is matmul per matrix.
void matmul_multi(ThreadPool& pool, const WeightView* const* ws, float* const* ys, int count,
                  const float* x, int64_t n_tok, std::vector<uint8_t>& act_scratch);

// One row of an embedding matrix (any supported type) as floats.
void get_row(const WeightView& w, int64_t r, float* out);

void add_inplace(float* x, const float* y, int64_t n);
// gate[i] = silu(gate[i]) * up[i] for one row of n values, rounding like llama.cpp (the
// 16-element groups of its vectorized SiLU start at the row's first element, so call this per
// row).
void silu_mul_inplace(float* gate, const float* up, int64_t n);
// gate[i] = gelu(gate[i]) * up[i] (GeGLU), with GELU's tanh approximation
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (gemma's gelu_pytorch_tanh), in fp16 as
// llama.cpp computes it: gelu_exact of the input rounded to fp16, rounded to fp16; 0 below -10
// and x above 10.
void gelu_mul_inplace(float* gate, const float* up, int64_t n);
float gelu_exact(float x);  // the formula in float
// x[i] = cap * tanh(x[i] / cap): soft-capping of scores or logits (gemma2).
void softcap_inplace(float* x, int64_t n, float cap);

// Rotary position embedding of one token's heads, in place.
struct RopeParams {
  int n_rot = 0;      // rotated dimensions per head (usually head_dim)
  bool neox = false;  // NeoX layout pairs (i, i + n_rot/2); normal pairs (2i, 2i+1)
  float freq_base = 10000.f;
  float freq_scale = 1.f;               // linear scaling: position * freq_scale
  const float* freq_factors = nullptr;  // optional per-pair divisors (Llama 3 rope_freqs)
  // YaRN, as ggml's rope_yarn: with ext_factor != 0, pair i's angle mixes the interpolated
  // (freq_scale) and extrapolated angles by ramp(i) * ext_factor, the ramp falling from 1 to 0
  // between the correction dimensions of n_ctx_orig for beta_fast and beta_slow; cos and sin
  // are then scaled by attn_factor * (1 + 0.1 ln(1 / freq_scale)). Without it, by attn_factor.
  float ext_factor = 0.f;
  float attn_factor = 1.f;
  int n_ctx_orig = 0;
  float beta_fast = 32.f, beta_slow = 1.f;
};
void rope_inplace(float* x, int n_heads, int head_dim, int32_t pos, const RopeParams& p);

// Softmax of n values in place, rounding like llama.cpp's soft_max on a row that continues
// with -inf up to a multiple of 16 (its attention rows are padded to a multiple of 32 cells).
void softmax_inplace(float* x, int64_t n);
// Softmax of x[lo, len) as llama.cpp computes it over the whole row [0, len) with the cells
// before lo masked to -inf (a sliding window): its sums run in groups of 16 from cell 0, so
// this starts at lo rounded down to 16 with the cells before lo set to -inf (exact zeros).
// The same bits as softmax_inplace(x, len) on the masked row; x[0, lo16) is not touched.
void softmax_window_inplace(float* x, int64_t lo, int64_t len);

// The scalar code of silu_mul_inplace and softmax_inplace, which use SIMD kernels computing
// the same bits where the CPU has them (tests compare the two).
void silu_mul_reference(float* gate, const float* up, int64_t n);
void softmax_reference(float* x, int64_t n);

}  // namespace tf
