#include "backend/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "util/error.h"

// Compiles a function twice, with and without FMA instructions, picking one at load time:
// std::fma is a libm call unless the compiler may use the instruction, and both give the same
// bits (a fused multiply-add rounds once either way).
#if defined(__x86_64__) && defined(__GNUC__)
#define TF_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define TF_FMA_CLONES
#endif

namespace tf {
namespace {

// ggml_v_expf, the exp of llama.cpp's vectorized softmax and SiLU on AVX-512 (an approximation
// adapted from ARM's optimized routines, within ~1.5 ulp of exp), evaluated for one lane:
// x = n ln2 + b with n integral, exp(b) by a degree-5 polynomial, then scaled by 2^n. The
// result is not always the correctly rounded exp, so std::exp would differ in the last bit
// now and then, and such bits decide later roundings (f16 attention weights, Q8_0
// activations).
__attribute__((always_inline)) inline float exp_ggml(float x) {
  const float shift = 0x1.8p23f;  // adding it rounds x * log2(e) to an integer
  const float n = std::fma(x, 0x1.715476p+0f, shift) - shift;
  // b = x - n ln2, with ln2 split in two parts so the products are exact
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  if (std::isnan(n)) return n;
  if (std::fabs(n) > 192.0f) return n > 0.0f ? INFINITY : 0.0f;  // far out of range
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  // _mm512_scalef_ps rounds once, also for subnormal results. In the normal range scaling by
  // an exact power of two does not round at all; only the rare far tail needs ldexp.
  const int e = int(n);
  if (e >= -125 && e <= 127) return j * bits_to_f32(uint32_t(e + 127) << 23);
  return std::ldexp(j, e);
}

}  // namespace

DotKernel llama_dot_kernel(DType w, int64_t rows, int64_t cols, int64_t n_tok) {
  // llamafile_sgemm: "only enable sgemm for prompt processing" (n >= 2). For F32/F16 its
  // tinyBLAS<16 lanes> needs k % 16 == 0 and m % 4 == 0, else ggml falls back to vec_dot.
  // For the legacy quantized types both kernels compute the same, so the answer does not
  // matter; BF16 (and the K types, which have no x86 sgemm) ignore it.
  if (n_tok < 2) return DotKernel::VecDot;
  if ((w == DType::F32 || w == DType::F16) && (cols % 16 != 0 || rows % 4 != 0))
    return DotKernel::VecDot;
  return DotKernel::Sgemm;
}

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
// The same for products with several tokens, which are compute-bound: multiply-adds. 2^24 of
// them take ~50 us on one core here. Below that a second thread gained at best 2x on the tiny
// models' prompts and lost 2x whenever this VM was slow to run it (a shared host), so a tiny
// model's prompt now runs on one thread whatever the count asked for.
constexpr size_t kParallelMinMacs = size_t(1) << 24;
// Rows per tile when several tokens share a pass over the weights: a tile stays in L2 while
// every token's activations stream past it.
constexpr int64_t kRowTile = 64;
}  // namespace

namespace {

// One token through `count` matrices stacked on one another (same width and activation type):
// the activations are converted once, then one parallel loop covers all their rows.
void matvec_stacked(ThreadPool& pool, const WeightView* const* ws, float* const* ys, int count,
                    const float* x, std::vector<uint8_t>& act_scratch) {
  const int64_t cols = ws[0]->cols;
  int64_t total_rows = 0;
  size_t bytes = 0;
  for (int i = 0; i < count; ++i) {
    total_rows += ws[i]->rows;
    bytes += size_t(ws[i]->rows) * ws[i]->row_stride;
  }
  const size_t act_row = row_bytes(dtype_info(ws[0]->type).vec_dot_type, cols);
  if (act_scratch.size() < act_row) act_scratch.resize(act_row);
  uint8_t* act = act_scratch.data();
  kernels::quantize_act(ws[0]->type, x, act, cols);
  // Rows [b, e) of the stack.
  auto body = [&](int64_t b, int64_t e, int) {
    int64_t first = 0;
    for (int i = 0; i < count && b < e; ++i) {
      const WeightView& w = *ws[i];
      const int64_t lo = std::max(b, first), hi = std::min(e, first + w.rows);
      if (lo < hi) {
        if (w.layout != kernels::Layout::kRows) {
          kernels::dot_rows_tiled(w.layout, w.type, w.data, w.row_stride, w.rows, lo - first,
                                  hi - first, act, cols, ys[i] + (lo - first));
        } else {
          kernels::dot_rows(w.type, w.row(lo - first), w.row_stride, hi - lo, act, cols,
                            ys[i] + (lo - first));
        }
        b = hi;
      }
      first += w.rows;
    }
  };
  if (bytes >= kParallelMinWork && pool.size() > 1) {
    pool.parallel_for(total_rows, body, 16);  // row ranges in multiples of the kernels' tiles
  } else {
    body(0, total_rows, 0);
  }
}

}  // namespace

void matmul(ThreadPool& pool, const WeightView& w, const float* x, int64_t n_tok, float* y,
            std::vector<uint8_t>& act_scratch) {
  if (n_tok == 1) {
    const WeightView* ws[] = {&w};
    float* ys[] = {y};
    return matvec_stacked(pool, ws, ys, 1, x, act_scratch);
  }
  const DType act_type = dtype_info(w.type).vec_dot_type;
  const size_t act_row = row_bytes(act_type, w.cols);
  const int64_t rows = w.rows, cols = w.cols;
  // Several tokens: the matrix kernel, unless llama.cpp would use its vec_dot for these shapes
  // (F32/F16 round differently there; see llama_dot_kernel). Its per-token preparation of the
  // activations is done here, once, rather than by every chunk of rows.
  const bool float_type = w.type == DType::F32 || w.type == DType::F16;
  const bool tiled = w.layout != kernels::Layout::kRows;  // its own kernels, no preparation
  const bool use_gemm =
      !tiled && n_tok > 1 && kernels::has_gemm(w.type) &&
      (!float_type || llama_dot_kernel(w.type, rows, cols, n_tok) == DotKernel::Sgemm);
  const size_t prep_row = use_gemm ? kernels::gemm_act_bytes(w.type, cols) : 0;
  const size_t act_bytes = act_row * size_t(n_tok);
  const size_t need = act_bytes + (prep_row ? 64 + prep_row * size_t(n_tok) : 0);
  if (act_scratch.size() < need) act_scratch.resize(need);
  uint8_t* act = act_scratch.data();
  uint8_t* prep = nullptr;  // 64-byte aligned, after the quantized rows
  if (prep_row)
    prep = act + ((reinterpret_cast<uintptr_t>(act) + act_bytes + 63) & ~uintptr_t(63)) -
           reinterpret_cast<uintptr_t>(act);
  const bool parallel =
      pool.size() > 1 && size_t(rows) * size_t(cols) * size_t(n_tok) >= kParallelMinMacs;
  auto quantize = [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      kernels::quantize_act(w.type, x + t * cols, act + t * act_row, cols);
      if (prep) kernels::gemm_prepare(w.type, act + t * act_row, cols, prep + t * prep_row);
    }
  };
  auto body = [&](int64_t b, int64_t e, int) {
    if (tiled) {
      kernels::gemm_tiled(w.layout, w.type, w.data, w.row_stride, rows, b, e, act, act_row, n_tok,
                          cols, y + b, rows);
      return;
    }
    if (use_gemm) {
      // These rows, all tokens (the kernel chunks them to fit the cache).
      kernels::gemm_prepared(w.type, w.row(b), w.row_stride, e - b, prep, n_tok, cols, y + b, rows);
      return;
    }
    for (int64_t r0 = b; r0 < e; r0 += kRowTile) {
      const int64_t nr = std::min(kRowTile, e - r0);
      for (int64_t t = 0; t < n_tok; ++t)
        kernels::dot_rows(w.type, w.row(r0), w.row_stride, nr, act + t * act_row, cols,
                          y + t * rows + r0);
    }
  };
  if (parallel) {
    pool.parallel_for(n_tok, quantize);
    // Row ranges in multiples of the kernels' row tiles.
    pool.parallel_for(rows, body, use_gemm || tiled ? 32 : 16);
  } else {
    quantize(0, n_tok, 0);
    body(0, rows, 0);
  }
}

void matmul_multi(ThreadPool& pool, const WeightView* const* ws, float* const* ys, int count,
                  const float* x, int64_t n_tok, std::vector<uint8_t>& act_scratch) {
  bool stackable = n_tok == 1;
  for (int i = 1; i < count; ++i)
    stackable = stackable && ws[i]->cols == ws[0]->cols &&
                dtype_info(ws[i]->type).vec_dot_type == dtype_info(ws[0]->type).vec_dot_type;
  if (stackable) return matvec_stacked(pool, ws, ys, count, x, act_scratch);
  for (int i = 0; i < count; ++i) matmul(pool, *ws[i], x, n_tok, ys[i], act_scratch);
}

void get_row(const WeightView& w, int64_t r, float* out) {
  if (r < 0 || r >= w.rows) throw Error("token id " + std::to_string(r) + " out of range");
  dequantize_row(w.type, w.row(r), out, w.cols);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void silu_mul_inplace(float* gate, const float* up, int64_t n) {
  if (auto fast = kernels::silu_mul_fn()) return fast(gate, up, n);
  silu_mul_reference(gate, up, n);
}

void softmax_inplace(float* x, int64_t n) {
  if (auto fast = kernels::softmax_fn()) return fast(x, n);
  softmax_reference(x, n);
}

float gelu_exact(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f, kCubic = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCubic * x * x)));
}

namespace {
// GELU of every fp16 input, rounded to fp16: llama.cpp's CPU GELU is this table, read at the
// input rounded to fp16 (and 0 or x beyond +-10), so gemma's logits match it this way. A
// lookup is also a fraction of a tanh.
const std::vector<uint16_t>& gelu_table() {
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = f32_to_fp16(gelu_exact(fp16_to_f32(uint16_t(h))));
    return t;
  }();
  return table;
}
}  // namespace

void gelu_mul_inplace(float* gate, const float* up, int64_t n) {
  const uint16_t* table = gelu_table().data();
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    const float g = x <= -10.0f ? 0.0f : x >= 10.0f ? x : fp16_to_f32(table[f32_to_fp16(x)]);
    gate[i] = g * up[i];
  }
}

void softcap_inplace(float* x, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

void softmax_window_inplace(float* x, int64_t lo, int64_t len) {
  const int64_t lo16 = lo / 16 * 16;
  std::fill(x + lo16, x + lo, -INFINITY);
  softmax_inplace(x + lo16, len - lo16);
}

TF_FMA_CLONES
void silu_mul_reference(float* gate, const float* up, int64_t n) {
  // ggml_vec_silu_f32: x / (1 + exp(-x)) with exp_ggml on whole groups of 16, the libm expf
  // on the rest; the product with up is a separate float multiply.
  const int64_t grouped = n - n % 16;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float e = i < grouped ? exp_ggml(-g) : std::exp(-g);
    gate[i] = (g / (1.0f + e)) * up[i];
  }
}

TF_FMA_CLONES
void rope_inplace(float* x, int n_heads, int head_dim, int32_t pos, const RopeParams& p) {
  // The angle of pair i is pos * base^(-2i/n_rot). Like llama.cpp, build base^(-2i/n_rot)
  // by repeated multiplication in float, so angles agree to the last bit.
  const float theta_scale = std::pow(p.freq_base, -2.0f / float(p.n_rot));
  const int half = p.n_rot / 2;
  float cs[512], sn[512];  // n_rot <= 1024 is checked when the model loads
  float theta = float(pos);
  if (p.ext_factor != 0.0f) {
    // ggml_rope_yarn_corr_dims: the dimensions where a full turn takes n_ctx_orig / beta
    // positions, for beta_fast (start, floored) and beta_slow (end, ceiled).
    auto corr_dim = [&](float beta) {
      return float(p.n_rot) * std::log(float(p.n_ctx_orig) / (beta * 2 * float(M_PI))) /
             (2 * std::log(p.freq_base));
    };
    const float lo = std::max(0.0f, std::floor(corr_dim(p.beta_fast)));
    const float hi = std::min(float(p.n_rot - 1), std::ceil(corr_dim(p.beta_slow)));
    const float mscale = p.attn_factor * (1.0f + 0.1f * std::log(1.0f / p.freq_scale));
    for (int i = 0; i < half; ++i) {
      const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
      const float extrap = theta / ff, interp = p.freq_scale * extrap;
      const float y = (float(i) - lo) / std::max(0.001f, hi - lo);
      const float mix = (1.0f - std::min(1.0f, std::max(0.0f, y))) * p.ext_factor;
      const float a = interp * (1 - mix) + extrap * mix;
      cs[i] = std::cos(a) * mscale;
      sn[i] = std::sin(a) * mscale;
      theta *= theta_scale;
    }
  } else {
  for (int i = 0; i < half; ++i) {
    const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
    const float a = p.freq_scale * (theta / ff);
      cs[i] = std::cos(a) * p.attn_factor;  // exact when 1
      sn[i] = std::sin(a) * p.attn_factor;
    theta *= theta_scale;
  }
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int i0 = p.neox ? i : 2 * i;
      const int i1 = p.neox ? i + half : 2 * i + 1;
      const float a = v[i0], b = v[i1];
      // As GCC compiles ggml's rope (FMA contraction): one product of each pair is rounded,
      // the other fused into the add, which changes the last bit now and then.
      v[i0] = std::fma(a, cs[i], -(b * sn[i]));
      v[i1] = std::fma(a, sn[i], b * cs[i]);
    }
  }
}

TF_FMA_CLONES
void softmax_reference(float* x, int64_t n) {
  // ggml_soft_max (no mask bias beyond -inf): exp_ggml(x - max) in groups of 16, each group
  // summed in float in _mm512_reduce_add_ps order and the group sums added in double; then
  // multiplied by the float reciprocal of the sum. The -inf padding adds exact zeros.
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += 16) {
    float e[16] = {};
    for (int64_t i = i0; i < std::min(n, i0 + 16); ++i) x[i] = e[i - i0] = exp_ggml(x[i] - mx);
    sum += double(reduce_add16(e));
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace tf
