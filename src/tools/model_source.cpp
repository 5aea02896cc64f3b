#include "tools/model_source.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include "format/hf_import.h"
#include "tools/gguf_stream.h"
#include "tools/progress.h"
#include "tools/quant_mix.h"
#include "tools/row_stream.h"
#include "util/error.h"

namespace tf::tools {
namespace {

// The import plan with every tensor's output type decided (the header lists them first).
struct Plan {
  std::unique_ptr<hf::Import> imp;
  std::vector<TensorSpec> specs;
  std::vector<TensorReport> reports;
  GgufStreamWriter::Metadata kv;
};

Plan plan(const std::string& dir, const std::string& type) {
  const bool keep = type.empty() || type == "auto";
  const QuantMix* mix = keep ? nullptr : &parse_mix(type);  // a typo fails before any reading
  hf::OutType out = hf::OutType::kAuto;
  if (mix && mix->base == DType::F32) out = hf::OutType::kF32;
  if (mix && mix->base == DType::F16) out = hf::OutType::kF16;
  if (mix && mix->base == DType::BF16) out = hf::OutType::kBF16;
  Plan p;
  p.imp = hf::import_dir(dir, out);
  const hf::Import& imp = *p.imp;

  ModelShape shape;
  for (const hf::TensorPlan& t : imp.tensors) {
    shape.has_output |= t.name == "output.weight";
    shape.n_attn_v += t.name.find("attn_v.weight") != std::string::npos;
    int layer = -1;
    if (std::sscanf(t.name.c_str(), "blk.%d.", &layer) == 1)
      shape.n_layer = std::max<int64_t>(shape.n_layer, layer + 1);
  }
  const bool quantized = mix && out == hf::OutType::kAuto;
  for (const hf::TensorPlan& t : imp.tensors) {
    const DType from = t.src ? t.src->type : DType::F32;
    size_t in_bytes = t.src ? t.src->nbytes : t.values.size() * 4;
    if (!t.parts.empty()) in_bytes *= t.parts.size();  // experts of one shape and dtype
    TensorReport r{t.name, from, t.type, in_bytes, 0, false, ""};
    if (quantized && is_quantizable(t.name, t.dims)) {
      const TypeChoice c = choose_type(*mix, t.name, t.dims, shape, /*pure=*/false);
      r.to = c.type;
      r.fallback = c.fallback;
    }
    r.converted = r.to != from || t.permute_heads > 0;
    p.specs.push_back({t.name, r.to, t.dims});
    r.bytes_out = p.specs.back().nbytes();
    p.reports.push_back(r);
  }
  p.kv = imp.metadata;
  if (mix)
    for (auto& [k, v] : p.kv)
      if (k == "general.file_type") v = gguf::Writer::make_u32(mix->file_type);
  return p;
}

void write_tensors(const Plan& p, GgufStreamWriter& w, int threads, bool progress) {
  const int n_threads =
      threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  uint64_t total = 0;
  for (const TensorReport& r : p.reports) total += r.bytes_out;
  Progress bar("convert", total);
  RowStreamer rows(w, n_threads);
  const auto on_bytes = [&](uint64_t b) {
    if (progress) bar.add(b);
  };
  const size_t n = p.imp->tensors.size();
  for (size_t k = 0; k < n; ++k) {
    const hf::TensorPlan& t = p.imp->tensors[k];
    const TensorReport& r = p.reports[k];
    if (progress || !r.fallback.empty()) {
      char line[512];
      std::snprintf(line, sizeof line, "[%4zu/%4zu] %-32s %-6s -> %-6s %10s%s%s", k + 1, n,
                    t.name.c_str(), dtype_name(r.from), dtype_name(r.to),
                    format_bytes(r.bytes_out).c_str(),
                    r.fallback.empty() ? "" : "  fallback: ", r.fallback.c_str());
      if (progress)
        bar.log(line);
      else
        std::fprintf(stderr, "%s\n", line);
    }
    if (!r.converted && !t.parts.empty()) {  // stacked experts, one after the other
      for (const auto* part : t.parts) rows.raw(part->data, part->nbytes, on_bytes);
    } else if (!r.converted && t.src) {
      rows.raw(t.src->data, t.src->nbytes, on_bytes);
    } else {
      rows.rows(
          r.to, t.dims[0], t.n_rows(), [&t](int64_t row, float* out) { t.read_row(row, out); },
          on_bytes);
    }
  }
  rows.flush();
  w.finish();
  if (progress) bar.finish();
}

// An imported directory as a GGUF file in anonymous memory, 2 MiB aligned so the kernel can
// use huge pages (as gguf::File does for a copied file); the File owns the memory, so the
// model may rewrite its weights in place (tiles) like a copied GGUF file's.
std::unique_ptr<gguf::File> import_to_memory(const std::string& path, const ModelSourceOptions& o) {
  Plan p = plan(path, o.quant);
  if (o.metadata_only) {  // a header without tensors: tiny, so built the simple way
    gguf::Writer meta;
    for (const auto& [k, v] : p.kv) meta.set(k, v);
    const std::vector<uint8_t> bytes = meta.to_bytes();
    void* m =
        ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw Error(path + ": out of memory for the metadata");
    std::memcpy(m, bytes.data(), bytes.size());
    return gguf::File::adopt_anonymous(m, bytes.size(), static_cast<uint8_t*>(m), bytes.size(),
                                       p.imp->dir);
  }
  constexpr size_t kHuge = size_t(2) << 20;
  struct Region {  // unmapped unless handed to the File
    void* base = nullptr;
    size_t size = 0;
    ~Region() {
      if (base) ::munmap(base, size);
    }
  } region;
  uint8_t* data = nullptr;
  auto alloc = [&](uint64_t total) {
    region.size = size_t(total) + kHuge;
    void* m =
        ::mmap(nullptr, region.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
      throw Error(path + ": cannot allocate " + std::to_string(total >> 20) +
                  " MiB for the imported model: " + std::system_category().message(errno));
    region.base = m;
    data = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(m) + kHuge - 1) &
                                      ~uintptr_t(kHuge - 1));
    ::madvise(data, (size_t(total) + kHuge - 1) & ~(kHuge - 1), MADV_HUGEPAGE);  // advice only
    return data;
  };
  uint64_t total = 0;
  {
    GgufStreamWriter w(alloc, p.kv, p.specs);
    total = w.total_bytes();
    write_tensors(p, w, o.threads, /*progress=*/false);
  }
  void* base = region.base;
  region.base = nullptr;  // the File unmaps it from here on, also if parsing throws
  return gguf::File::adopt_anonymous(base, region.size, data, size_t(total), p.imp->dir);
}

void refuse_quant(const std::string& path, const ModelSourceOptions& o) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(path +
                ": a directory without config.json (a Hugging Face model directory "
                "holds config.json, *.safetensors and tokenizer.json)");
  if (!o.quant.empty())
    throw Error("--quant converts Hugging Face directories on load; " + path +
                " is not one (for a GGUF file use `tokenfab quantize`)");
}

}  // namespace

std::shared_ptr<const gguf::File> open_model(const std::string& path, const ModelSourceOptions& o) {
  if (hf::is_model_dir(path)) return import_to_memory(path, o);
  refuse_quant(path, o);
  const auto residency = o.use_mmap ? gguf::Residency::kMapped : gguf::Residency::kCopied;
  return gguf::File::open(path, residency, o.progress);
}

std::unique_ptr<Model> load_model(const std::string& path, const ModelSourceOptions& o) {
  if (hf::is_model_dir(path)) {
    ModelSourceOptions full = o;
    full.metadata_only = false;
    return Model::from_owned_file(import_to_memory(path, full));
  }
  refuse_quant(path, o);
  return Model::load(path, o.use_mmap, o.progress);
}

QuantizeResult convert_hf(const ConvertOptions& o) {
  if (!hf::is_model_dir(o.dir))
    throw Error(o.dir + ": not a Hugging Face model directory (no config.json)");
  const auto t0 = std::chrono::steady_clock::now();
  Plan p = plan(o.dir, o.type);
  GgufStreamWriter w(o.out_path, p.kv, p.specs);
  write_tensors(p, w, o.threads, o.progress);
  QuantizeResult res;
  res.tensors = p.reports;
  for (const TensorReport& r : res.tensors) {
    res.bytes_in += r.bytes_in;
    res.bytes_out += r.bytes_out;
    res.n_fallback += !r.fallback.empty();
  }
  res.file_bytes = w.total_bytes();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace tf::tools
