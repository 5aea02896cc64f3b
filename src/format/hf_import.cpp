// A Hugging Face model directory -> the plan of the GGUF file llama.cpp's converter writes.
#include "format/hf_import.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "format/hf_internal.h"
#include "util/error.h"

namespace tf::hf {

namespace detail {
std::string gguf_name(const std::string& name, int64_t n_layer, const std::string& what,
                      int64_t* expert);
}

namespace {

using detail::Hparams;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// The Hugging Face shape (outermost first) each GGUF tensor must have.
std::vector<int64_t> expected_shape(const std::string& g, const Hparams& h, int64_t n_vocab) {
  const int64_t q = h.n_head * h.head_dim, kv = h.n_head_kv * h.head_dim;
  auto ends = [&](const char* s) {
    const std::string x(s);
    return g.size() >= x.size() && g.compare(g.size() - x.size(), x.size(), x) == 0;
  };
  if (g == "token_embd.weight" || g == "output.weight") return {n_vocab, h.n_embd};
  if (ends("attn_q.weight")) return {q, h.n_embd};
  if (ends("attn_k.weight") || ends("attn_v.weight")) return {kv, h.n_embd};
  if (ends("attn_output.weight")) return {h.n_embd, q};
  if (ends("attn_q.bias")) return {q};
  if (ends("attn_k.bias") || ends("attn_v.bias")) return {kv};
  if (ends("attn_q_norm.weight") || ends("attn_k_norm.weight")) return {h.head_dim};
  if (ends("ffn_gate.weight") || ends("ffn_up.weight")) return {h.n_ff, h.n_embd};
  if (ends("ffn_down.weight")) return {h.n_embd, h.n_ff};
  // Experts (each one's own tensor), the router, the shared expert and its gate.
  if (ends("ffn_gate_exps.weight") || ends("ffn_up_exps.weight")) return {h.n_ff_exp, h.n_embd};
  if (ends("ffn_down_exps.weight")) return {h.n_embd, h.n_ff_exp};
  if (ends("ffn_gate_inp.weight")) return {h.n_expert, h.n_embd};
  if (ends("ffn_gate_shexp.weight") || ends("ffn_up_shexp.weight")) return {h.n_ff_shexp, h.n_embd};
  if (ends("ffn_down_shexp.weight")) return {h.n_embd, h.n_ff_shexp};
  if (ends("ffn_gate_inp_shexp.weight")) return {1, h.n_embd};
  return {h.n_embd};  // the norms
}

// The converter's rule: 1-D tensors and norms in F32, other matrices in the output type.
DType out_type(const std::string& gguf_name, size_t n_dims, DType src, OutType out) {
  const bool is_norm =
      gguf_name.size() >= 12 && gguf_name.compare(gguf_name.size() - 12, 12, "_norm.weight") == 0;
  const bool is_weight =
      gguf_name.size() >= 7 && gguf_name.compare(gguf_name.size() - 7, 7, ".weight") == 0;
  // The routers stay F32, as the converter keeps them.
  const bool is_router = gguf_name.find("ffn_gate_inp") != std::string::npos;
  if (n_dims <= 1 || is_norm || !is_weight || is_router) return DType::F32;
  switch (out) {
    case OutType::kF32:
      return DType::F32;
    case OutType::kF16:
      return DType::F16;
    case OutType::kBF16:
      return DType::BF16;
    case OutType::kAuto:
      return src;
  }
  return src;
}

uint32_t file_type_of(const std::vector<TensorPlan>& ts) {
  // llama_ftype of the embedding's type, as the converter records its --outtype.
  for (const TensorPlan& t : ts)
    if (t.name == "token_embd.weight")
      return t.type == DType::F16 ? 1 : t.type == DType::BF16 ? 32 : 0;
  return 0;
}

}  // namespace

bool is_model_dir(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) &&
         std::filesystem::is_regular_file(path + "/config.json", ec);
}

std::unique_ptr<Import> import_dir(const std::string& dir_in, OutType out) {
  namespace fs = std::filesystem;
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a directory");
  const auto config = detail::read_json(dir, "config.json");
  if (!config) throw Error(dir + ": no config.json (not a Hugging Face model directory)");

  auto imp = std::make_unique<Import>();
  imp->dir = dir;
  Metadata hp;
  const Hparams h = detail::read_hparams(*config, dir + "/config.json", hp);
  imp->arch = h.arch;
  imp->weights = safetensors::ShardSet::open_dir(dir);
  const safetensors::ShardSet& w = imp->weights;

  // The embedding: stored, or only under a __metadata__ alias, or (tied) only as lm_head.
  const safetensors::Tensor* embd = w.find("model.embed_tokens.weight");
  std::string embd_name = "model.embed_tokens.weight";
  if (!embd && h.tied && w.find("lm_head.weight")) {
    embd = w.find("lm_head.weight");
    embd_name = "lm_head.weight";
  }
  if (!embd) throw Error(dir + ": tensor 'model.embed_tokens.weight' is missing");
  if (embd->shape.size() != 2) throw Error(dir + ": tensor '" + embd_name + "' is not 2-D");
  const int64_t n_vocab = h.n_vocab > 0 ? h.n_vocab : embd->shape[0];

  // Hugging Face names in sorted order (the converter writes tensors as safetensors lists
  // them), the embedding's included even when only an alias holds it.
  std::set<std::string> names;
  for (const safetensors::Tensor* t : w.all()) names.insert(t->name);
  names.insert("model.embed_tokens.weight");
  if (embd_name == "lm_head.weight") names.erase("lm_head.weight");

  if (!h.rope_freqs.empty()) {  // generated first, as the converter's extra tensors are
    TensorPlan t;
    t.name = "rope_freqs.weight";
    t.dims = {int64_t(h.rope_freqs.size())};
    t.values = h.rope_freqs;
    imp->tensors.push_back(std::move(t));
  }
  std::set<std::string> have;
  // Stacked experts being gathered: GGUF name -> each expert's tensor (all must come).
  std::map<std::string, std::vector<const safetensors::Tensor*>> stacks;
  for (const std::string& name : names) {
    int64_t expert = -1;
    const std::string g = detail::gguf_name(name, h.n_layer, dir, &expert);
    if (g.empty()) continue;
    if (g == "output.weight" && h.tied) continue;  // tied: the model reuses token_embd
    const safetensors::Tensor* src = name == "model.embed_tokens.weight" ? embd : w.find(name);
    const std::string where = dir + ": tensor '" + src->name + "'";
    if (!src->supported)
      throw Error(where + " has unsupported dtype '" + src->dtype +
                  "' (supported: F32, F16, BF16)");
    const std::vector<int64_t> want = expected_shape(g, h, n_vocab);
    if (src->shape != want)
      throw Error(where + " has shape " + shape_str(src->shape) + ", expected " + shape_str(want) +
                  " from config.json");
    if (expert >= 0) {
      if (expert >= h.n_expert)
        throw Error(where + " is for expert " + std::to_string(expert) + " but config.json has " +
                    std::to_string(h.n_expert));
      auto& parts = stacks[g];
      parts.resize(size_t(h.n_expert), nullptr);
      parts[size_t(expert)] = src;
      if (std::count(parts.begin(), parts.end(), nullptr) > 0) continue;
      for (const safetensors::Tensor* p : parts)
        if (p->type != parts[0]->type)
          throw Error(dir + ": the experts of '" + g + "' have different dtypes");
      TensorPlan t;  // complete: one tensor of n_expert slices, expert 0 first
      t.name = g;
      t.source = parts[0]->name;
      t.src = parts[0];
      t.parts = parts;
      t.dims = {src->shape[1], src->shape[0], h.n_expert};
      t.type = out_type(g, 3, src->type, out);
      have.insert(g);
      imp->tensors.push_back(std::move(t));
      continue;
    }
    TensorPlan t;
    t.name = g;
    t.source = src->name;
    t.src = src;
    t.dims.assign(src->shape.rbegin(), src->shape.rend());
    t.type = out_type(g, t.dims.size(), src->type, out);
    const bool is_q = g.find("attn_q.") != std::string::npos;
    const bool is_k = g.find("attn_k.") != std::string::npos;
    if (h.permute_qk && (is_q || is_k)) t.permute_heads = is_q ? h.n_head : h.n_head_kv;
    have.insert(g);
    imp->tensors.push_back(std::move(t));
  }

  // Everything the architecture needs must be there (the model checks again, by GGUF name).
  std::vector<std::string> need = {"token_embd.weight", "output_norm.weight"};
  if (!h.tied) need.push_back("output.weight");
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    for (const char* s : {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                          "attn_output.weight", "ffn_norm.weight"})
      need.push_back(p + s);
    if (h.n_expert == 0) {
      for (const char* s : {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"})
        need.push_back(p + s);
    } else {
      for (const char* s : {"ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight",
                            "ffn_down_exps.weight"})
        need.push_back(p + s);
      if (h.n_ff_shexp > 0)
        for (const char* s : {"ffn_gate_shexp.weight", "ffn_up_shexp.weight",
                              "ffn_down_shexp.weight", "ffn_gate_inp_shexp.weight"})
          need.push_back(p + s);
    }
    if (h.qkv_bias)
      for (const char* s : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) need.push_back(p + s);
    if (h.qk_norm)
      for (const char* s : {"attn_q_norm.weight", "attn_k_norm.weight"}) need.push_back(p + s);
  }
  for (const auto& [g, parts] : stacks)
    if (!have.count(g))
      throw Error(dir + ": '" + g + "' lacks expert " +
                  std::to_string(std::find(parts.begin(), parts.end(), nullptr) - parts.begin()));
  for (const std::string& g : need)
    if (!have.count(g))
      throw Error(dir + ": the checkpoint has no tensor for '" + g + "'" +
                  (g == "output.weight" ? " (lm_head.weight; tie_word_embeddings is false)" : ""));

  Metadata& kv = imp->metadata;
  kv.emplace_back("general.architecture", detail::str(h.arch));
  kv.emplace_back("general.type", detail::str("model"));
  // The directory's own name, as the converter falls back to (also for "." or "x/..").
  const fs::path abs = fs::absolute(dir, ec).lexically_normal();
  std::string name = (abs.has_filename() ? abs : abs.parent_path()).filename().string();
  kv.emplace_back("general.name", detail::str(name.empty() ? "model" : name));
  for (auto& e : hp) kv.push_back(std::move(e));
  for (auto& [k, v] : kv)
    if (k == "general.file_type") v = detail::u32(file_type_of(imp->tensors));
  for (auto& e : import_tokenizer(dir, *config, h.arch)) kv.push_back(std::move(e));
  kv.emplace_back("general.quantization_version", detail::u32(2));
  return imp;
}

}  // namespace tf::hf
