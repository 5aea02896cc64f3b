#include "model/model.h"

#include <cstdlib>
#include <string_view>

#include "format/gguf.h"
#include "tensor/quants.h"
#include "util/error.h"

namespace tf {

namespace {

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

class Binder {
 public:
  explicit Binder(const gguf::File& f) : f_(f) {}

  const gguf::TensorInfo* find(const std::string& name, std::vector<int64_t> shape, bool required) {
    const gguf::TensorInfo* t = f_.find_tensor(name);
    if (!t) {
      if (required) throw Error(f_.path() + ": tensor '" + name + "' is missing");
      return nullptr;
    }
    std::vector<int64_t> dims = t->dims;
    while (dims.size() > shape.size() && dims.back() == 1) dims.pop_back();
    if (dims != shape)
      throw Error(f_.path() + ": tensor '" + name + "' has shape " + dims_str(t->dims) +
                  ", expected " + dims_str(shape));
    const DTypeInfo& info = dtype_info(t->type);
    if (!info.supported)
      throw Error(f_.path() + ": tensor '" + name + "' has unsupported type " + info.name);
    return t;
  }

  WeightView matrix(const std::string& name, int64_t cols, int64_t rows, bool required = true) {
    const gguf::TensorInfo* t = find(name, {cols, rows}, required);
    if (!t) return {};
    WeightView w;
    w.type = t->type;
    w.data = t->data;
    w.cols = cols;
    w.rows = rows;
    w.row_stride = row_bytes(t->type, cols);
    return w;
  }

  // Rows [r0, r0 + rows) of a matrix of `total` rows: one of the products a fused tensor holds
  // (phi3's attn_qkv and gate/up). Row slices are matrices of their own, tiled separately.
  WeightView rows(const std::string& name, int64_t cols, int64_t total, int64_t r0, int64_t rows) {
    WeightView w = matrix(name, cols, total);
    w.data += size_t(r0) * w.row_stride;
    w.rows = rows;
    return w;
  }

  // The n slices of a stacked 3-D tensor (cols x rows x n), one matrix each.
  std::vector<WeightView> stack(const std::string& name, int64_t cols, int64_t rows, int64_t n) {
    const gguf::TensorInfo* t = find(name, {cols, rows, n}, true);
    std::vector<WeightView> v(static_cast<size_t>(n));
    for (int64_t e = 0; e < n; ++e) {
      WeightView& w = v[size_t(e)];
      w.type = t->type;
      w.cols = cols;
      w.rows = rows;
      w.row_stride = row_bytes(t->type, cols);
      w.data = t->data + size_t(e) * size_t(rows) * w.row_stride;
    }
    return v;
  }

  std::vector<float> vec(const std::string& name, int64_t n, bool required = true) {
    const gguf::TensorInfo* t = find(name, {n}, required);
    if (!t) return {};
    std::vector<float> v(static_cast<size_t>(n));
    dequantize_row(t->type, t->data, v.data(), n);
    return v;
  }

 private:
  const gguf::File& f_;
};

// deepseek2's multi-head latent attention weights (see LayerWeights).
void bind_mla(Binder& b, const std::string& p, const ModelConfig& c, LayerWeights& L) {
  if (c.q_lora_rank > 0) {
    L.wq_a = b.matrix(p + "attn_q_a.weight", c.n_embd, c.q_lora_rank);
    L.q_a_norm = b.vec(p + "attn_q_a_norm.weight", c.q_lora_rank);
    L.wq_b = b.matrix(p + "attn_q_b.weight", c.q_lora_rank, c.q_dim());
  } else {
    L.wq = b.matrix(p + "attn_q.weight", c.n_embd, c.q_dim());
  }
  L.wkv_a = b.matrix(p + "attn_kv_a_mqa.weight", c.n_embd, c.kv_lora_rank + c.n_rot);
  L.kv_a_norm = b.vec(p + "attn_kv_a_norm.weight", c.kv_lora_rank);
  L.wkv_b =
      b.matrix(p + "attn_kv_b.weight", c.kv_lora_rank, c.n_head * (c.qk_nope() + c.v_head_dim));
  L.wo = b.matrix(p + "attn_output.weight", c.attn_out_dim(), c.n_embd);
  // The per-head views and W_k's transposed copy (see LayerWeights).
  const int64_t H = c.n_head, N = c.qk_nope(), V = c.v_head_dim, C = c.kv_lora_rank;
  const WeightView& kvb = L.wkv_b;
  const bool is_float = kvb.type == DType::F32 || kvb.type == DType::F16 || kvb.type == DType::BF16;
  const DType t = !is_float && N % 32 == 0 ? DType::Q8_0 : DType::F32;
  const size_t rb = row_bytes(t, N);
  L.wk_t_data.resize(size_t(H * C) * rb);
  std::vector<float> wk(size_t(N * C)), col(static_cast<size_t>(N));
  for (int64_t h = 0; h < H; ++h) {
    WeightView v = kvb;
    v.data = kvb.row(h * (N + V) + N);
    v.rows = V;
    L.wv_head.push_back(v);
    for (int64_t i = 0; i < N; ++i)
      dequantize_row(kvb.type, kvb.row(h * (N + V) + i), &wk[size_t(i * C)], C);
    uint8_t* dst = L.wk_t_data.data() + size_t(h * C) * rb;
    for (int64_t k = 0; k < C; ++k) {
      for (int64_t i = 0; i < N; ++i) col[size_t(i)] = wk[size_t(i * C + k)];
      quantize_row(t, col.data(), dst + size_t(k) * rb, N);
    }
    WeightView w;
    w.type = t;
    w.data = dst;
    w.cols = N;
    w.rows = C;
    w.row_stride = rb;
    L.wk_t.push_back(w);
  }
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, bool use_mmap,
                                   const std::function<void(uint64_t, uint64_t)>& progress) {
  const auto residency = use_mmap ? gguf::Residency::kMapped : gguf::Residency::kCopied;
  return from_owned_file(gguf::File::open(path, residency, progress));
}

std::unique_ptr<Model> Model::from_owned_file(std::unique_ptr<gguf::File> file) {
  gguf::File& f = *file;  // writable() refuses a mapped file, which then stays rows
  std::unique_ptr<Model> m = from_gguf(std::move(file));
  const char* env = std::getenv("TF_TILES");
  if (!(env && std::string_view(env) == "0")) m->tile_weights(f);  // the model is its only user
  return m;
}

void Model::tile_weights(gguf::File& f) {
  auto tile = [&](WeightView& w) {
    if (w.empty() || w.layout != kernels::Layout::kRows) return;
    const kernels::Layout l = kernels::preferred_layout(w.type, w.rows, w.cols);
    if (l == kernels::Layout::kRows) return;
    uint8_t* p = f.writable(w.data, w.row_stride * size_t(w.rows));
    if (!p) return;  // mapped: rewriting would copy every page
    kernels::tile(l, p, w.row_stride, w.rows, w.cols);
    w.layout = l;
  };
  // The embedding matrix is read a row at a time (get_row), so a tied output stays rows.
  if (output_.data != tok_embd_.data) tile(output_);
  for (LayerWeights& L : layers_) {
    for (WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.sh_gate,
                          &L.sh_up, &L.sh_down, &L.wq_a, &L.wq_b, &L.wkv_a})
      tile(*w);
    for (auto* v : {&L.exp_gate, &L.exp_up, &L.exp_down})
      for (WeightView& w : *v) tile(w);
  }
}

std::unique_ptr<Model> Model::from_gguf(std::shared_ptr<const gguf::File> file) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  m->cfg_ = ModelConfig::from_gguf(*m->file_);
  m->bind();
  return m;
}

void Model::bind() {
  const gguf::File& f = *file_;
  ModelConfig& c = cfg_;
  const gguf::TensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) throw Error(f.path() + ": tensor 'token_embd.weight' is missing");
  if (emb->dims.size() < 2) throw Error(f.path() + ": tensor 'token_embd.weight' is not 2-D");
  if (c.n_vocab == 0) c.n_vocab = emb->dims[1];
  Binder b(f);
  tok_embd_ = b.matrix("token_embd.weight", c.n_embd, c.n_vocab);
  output_ = b.matrix("output.weight", c.n_embd, c.n_vocab, /*required=*/false);
  if (output_.empty()) output_ = tok_embd_;  // tied embeddings
  output_norm_ = b.vec("output_norm.weight", c.n_embd);
  rope_freqs_ = b.vec("rope_freqs.weight", c.n_rot / 2, /*required=*/false);
  rope_long_ = b.vec("rope_factors_long.weight", c.n_rot / 2, /*required=*/false);
  rope_short_ = b.vec("rope_factors_short.weight", c.n_rot / 2, /*required=*/false);
  if (rope_long_.empty() != rope_short_.empty())
    throw Error(f.path() + ": rope_factors_long and rope_factors_short come together");

  layers_.resize(size_t(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = layers_[size_t(i)];
    L.attn_norm = b.vec(p + "attn_norm.weight", c.n_embd);
    if (c.mla()) {
      bind_mla(b, p, c, L);
    } else {
      if (f.find_tensor(p + "attn_qkv.weight")) {  // phi3: one product, Q then K then V rows
        const std::string n = p + "attn_qkv.weight";
        const int64_t total = c.q_dim() + 2 * c.kv_dim();
        L.wq = b.rows(n, c.n_embd, total, 0, c.q_dim());
        L.wk = b.rows(n, c.n_embd, total, c.q_dim(), c.kv_dim());
        L.wv = b.rows(n, c.n_embd, total, c.q_dim() + c.kv_dim(), c.kv_dim());
      } else {
        L.wq = b.matrix(p + "attn_q.weight", c.n_embd, c.q_dim());
        L.wk = b.matrix(p + "attn_k.weight", c.n_embd, c.kv_dim());
        L.wv = b.matrix(p + "attn_v.weight", c.n_embd, c.kv_dim());
      }
      L.wo = b.matrix(p + "attn_output.weight", c.q_dim(), c.n_embd);
      // Biases are required by qwen2 but some llama-family files carry them too.
      L.bq = b.vec(p + "attn_q.bias", c.q_dim(), c.qkv_bias);
      L.bk = b.vec(p + "attn_k.bias", c.kv_dim(), c.qkv_bias);
      L.bv = b.vec(p + "attn_v.bias", c.kv_dim(), c.qkv_bias);
      if (c.qk_norm) {
        L.q_norm = b.vec(p + "attn_q_norm.weight", c.head_dim);
        L.k_norm = b.vec(p + "attn_k_norm.weight", c.head_dim);
      }
    }
    L.ffn_norm = b.vec(p + "ffn_norm.weight", c.n_embd);
    if (c.post_norms) {
      L.attn_post_norm = b.vec(p + "post_attention_norm.weight", c.n_embd);
      L.ffn_post_norm = b.vec(p + "post_ffw_norm.weight", c.n_embd);
    }
    if (c.n_expert > 0 && i >= c.n_lead_dense) {
      L.gate_inp = b.matrix(p + "ffn_gate_inp.weight", c.n_embd, c.n_expert);
      L.exp_gate = b.stack(p + "ffn_gate_exps.weight", c.n_embd, c.n_ff_exp, c.n_expert);
      L.exp_up = b.stack(p + "ffn_up_exps.weight", c.n_embd, c.n_ff_exp, c.n_expert);
      L.exp_down = b.stack(p + "ffn_down_exps.weight", c.n_ff_exp, c.n_embd, c.n_expert);
      if (c.n_ff_shexp > 0) {
        L.sh_gate = b.matrix(p + "ffn_gate_shexp.weight", c.n_embd, c.n_ff_shexp);
        L.sh_up = b.matrix(p + "ffn_up_shexp.weight", c.n_embd, c.n_ff_shexp);
        L.sh_down = b.matrix(p + "ffn_down_shexp.weight", c.n_ff_shexp, c.n_embd);
        if (c.arch != Arch::DEEPSEEK2)  // its shared experts are not gated
          L.sh_gate_inp = b.vec(p + "ffn_gate_inp_shexp.weight", c.n_embd);
      }
      if (c.arch == Arch::DEEPSEEK2)
        L.exp_probs_b = b.vec(p + "exp_probs_b.bias", c.n_expert, /*required=*/false);
      continue;
    }
    if (c.arch == Arch::PHI3) {  // ffn_up holds the gate rows, then the up rows
      L.w_gate = b.rows(p + "ffn_up.weight", c.n_embd, 2 * c.n_ff, 0, c.n_ff);
      L.w_up = b.rows(p + "ffn_up.weight", c.n_embd, 2 * c.n_ff, c.n_ff, c.n_ff);
    } else {
      L.w_gate = b.matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff);
      L.w_up = b.matrix(p + "ffn_up.weight", c.n_embd, c.n_ff);
    }
    L.w_down = b.matrix(p + "ffn_down.weight", c.n_ff, c.n_embd);
  }
}

namespace {

// Every matrix of a layer, experts included.
template <class F>
void each_matrix(const LayerWeights& L, F f) {
  for (const WeightView* w :
       {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.gate_inp, &L.sh_gate,
        &L.sh_up, &L.sh_down, &L.wq_a, &L.wq_b, &L.wkv_a})
    f(*w, false);
  // MLA reads W_v's rows of wkv_b and the transposed W_k copy (not wkv_b's W_k rows).
  for (const auto* v : {&L.wv_head, &L.wk_t})
    for (const WeightView& w : *v) f(w, false);
  for (const auto* v : {&L.exp_gate, &L.exp_up, &L.exp_down})
    for (const WeightView& w : *v) f(w, true);
}

}  // namespace

size_t Model::weight_bytes() const {
  auto bytes = [](const WeightView& w) {
    return w.empty() ? size_t(0) : w.row_stride * size_t(w.rows);
  };
  size_t total = bytes(output_);
  double experts = 0;
  for (const LayerWeights& L : layers_)
    each_matrix(L, [&](const WeightView& w, bool expert) {
      if (expert)
        experts += double(bytes(w));
      else
        total += bytes(w);
    });
  if (cfg_.n_expert > 0)
    total += size_t(experts * double(cfg_.n_expert_used) / double(cfg_.n_expert));
  return total;
}

int64_t Model::matmul_params() const {
  auto n = [](const WeightView& w) { return w.empty() ? int64_t(0) : w.rows * w.cols; };
  int64_t total = n(output_), experts = 0;
  for (const LayerWeights& L : layers_)
    each_matrix(L, [&](const WeightView& w, bool expert) { (expert ? experts : total) += n(w); });
  if (cfg_.n_expert > 0) total += experts / cfg_.n_expert * cfg_.n_expert_used;
  return total;
}

int64_t Model::tiled_matrices() const {
  int64_t n = output_.layout != kernels::Layout::kRows;
  for (const LayerWeights& L : layers_)
    each_matrix(L, [&](const WeightView& w, bool) { n += w.layout != kernels::Layout::kRows; });
  return n;
}

}  // namespace tf
