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
  for (LayerWeights& L : layers_)
    for (WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) tile(*w);
}

int64_t Model::matmul_params() const {
  auto n = [](const WeightView& w) { return w.empty() ? int64_t(0) : w.rows * w.cols; };
  int64_t total = n(output_);
  for (const LayerWeights& L : layers_)
    total += n(L.wq) + n(L.wk) + n(L.wv) + n(L.wo) + n(L.w_gate) + n(L.w_up) + n(L.w_down);
  return total;
}

int64_t Model::tiled_matrices() const {
  int64_t n = output_.layout != kernels::Layout::kRows;
  for (const LayerWeights& L : layers_)
    for (const WeightView* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      n += w->layout != kernels::Layout::kRows;
  return n;
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

  layers_.resize(size_t(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights& L = layers_[size_t(i)];
    L.attn_norm = b.vec(p + "attn_norm.weight", c.n_embd);
    L.wq = b.matrix(p + "attn_q.weight", c.n_embd, c.q_dim());
    L.wk = b.matrix(p + "attn_k.weight", c.n_embd, c.kv_dim());
    L.wv = b.matrix(p + "attn_v.weight", c.n_embd, c.kv_dim());
    L.wo = b.matrix(p + "attn_output.weight", c.q_dim(), c.n_embd);
    // Biases are required by qwen2 but some llama-family files carry them too.
    L.bq = b.vec(p + "attn_q.bias", c.q_dim(), c.qkv_bias);
    L.bk = b.vec(p + "attn_k.bias", c.kv_dim(), c.qkv_bias);
    L.bv = b.vec(p + "attn_v.bias", c.kv_dim(), c.qkv_bias);
    if (c.qk_norm) {
      L.q_norm = b.vec(p + "attn_q_norm.weight", c.head_dim);
      L.k_norm = b.vec(p + "attn_k_norm.weight", c.head_dim);
    }
    L.ffn_norm = b.vec(p + "ffn_norm.weight", c.n_embd);
    L.w_gate = b.matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff);
    L.w_up = b.matrix(p + "ffn_up.weight", c.n_embd, c.n_ff);
    L.w_down = b.matrix(p + "ffn_down.weight", c.n_ff, c.n_embd);
  }
}

size_t Model::weight_bytes() const {
  auto bytes = [](const WeightView& w) {
    return w.empty() ? size_t(0) : w.row_stride * size_t(w.rows);
  };
  size_t total = bytes(output_);
  for (const LayerWeights& L : layers_)
    total += bytes(L.wq) + bytes(L.wk) + bytes(L.wv) + bytes(L.wo) + bytes(L.w_gate) +
             bytes(L.w_up) + bytes(L.w_down);
  return total;
}

}  // namespace tf
