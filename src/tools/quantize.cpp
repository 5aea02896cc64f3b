#include "tools/quantize.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "format/gguf.h"
#include "tensor/quants.h"
#include "tools/gguf_stream.h"
#include "tools/progress.h"
#include "tools/quant_mix.h"
#include "tools/row_stream.h"
#include "util/error.h"

namespace tf::tools {
namespace {

bool is_float_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? " x " : "") + std::to_string(d[i]);
  return s + "]";
}

// The input is mapped read-only, so pages of a tensor already converted can be dropped and
// would simply be read again from the file if touched; this keeps the resident size of a
// conversion near its largest tensor instead of growing to the whole input.
void release_pages(const uint8_t* data, size_t n) {
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + n + page - 1) / page * page;
  if (n > 0) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // a hint
}

ModelShape shape_of(const gguf::File& f) {
  ModelShape s;
  int64_t max_layer = -1;
  for (const gguf::TensorInfo& t : f.tensors()) {
    if (t.name == "output.weight") s.has_output = true;
    if (t.name.find("attn_v.weight") != std::string::npos) ++s.n_attn_v;
    int layer = -1;
    if (std::sscanf(t.name.c_str(), "blk.%d.", &layer) == 1)
      max_layer = std::max<int64_t>(max_layer, layer);
  }
  const std::string arch = f.get_string_or("general.architecture", "");
  s.n_layer = f.get_int_or(arch + ".block_count", max_layer + 1);
  return s;
}

}  // namespace

QuantizeResult quantize_model(const QuantizeOptions& o) {
  const QuantMix& mix = parse_mix(o.type);  // before touching files: a typo fails fast
  auto in = gguf::File::open(o.in_path);
  const ModelShape shape = shape_of(*in);

  // Decide every tensor's type first: the header, written before any data, lists them.
  QuantizeResult res;
  std::vector<TensorSpec> specs;
  std::vector<DType> requant_types;
  for (const gguf::TensorInfo& t : in->tensors()) {
    TensorReport r{t.name, t.type, t.type, t.nbytes, t.nbytes, false, ""};
    if (is_quantizable(t.name, t.dims)) {
      const TypeChoice c = choose_type(mix, t.name, t.dims, shape, o.pure);
      r.to = c.type;
      r.fallback = c.fallback;
      r.converted = c.type != t.type;
    }
    if (r.converted) {
      if (!dtype_info(t.type).supported)
        throw Error(o.in_path + ": tensor '" + t.name + "' has type " + dtype_name(t.type) +
                    ", which cannot be converted");
      if (!is_float_type(t.type)) {
        ++res.n_requantized;
        bool seen = false;
        for (DType d : requant_types) seen |= d == t.type;
        if (!seen) requant_types.push_back(t.type);
      }
      r.bytes_out = TensorSpec{t.name, r.to, t.dims}.nbytes();
    }
    if (!r.fallback.empty()) ++res.n_fallback;
    specs.push_back({t.name, r.to, t.dims});
    res.tensors.push_back(r);
  }
  if (!requant_types.empty()) {
    std::string names;
    for (DType d : requant_types) names += std::string(names.empty() ? "" : ", ") + dtype_name(d);
    std::fprintf(stderr,
                 "warning: %s holds already quantized tensors (%s): they are dequantized and "
                 "quantized again, which adds the errors of both\n",
                 o.in_path.c_str(), names.c_str());
  }

  GgufStreamWriter::Metadata kv;
  for (const auto& [key, value] : in->metadata())
    if (key.rfind("split.", 0) != 0) kv.emplace_back(key, value);  // the output is one file
  auto set_u32 = [&](const std::string& key, uint32_t v) {
    for (auto& [k, val] : kv)
      if (k == key) {
        val = gguf::Writer::make_u32(v);
        return;
      }
    kv.emplace_back(key, gguf::Writer::make_u32(v));
  };
  set_u32("general.quantization_version", 2);
  set_u32("general.file_type", mix.file_type);

  GgufStreamWriter w(o.out_path, kv, specs);
  const int n_threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  uint64_t total = 0;
  for (const TensorReport& r : res.tensors) total += r.bytes_out;
  Progress bar("quantize", total);
  RowStreamer rows(w, n_threads);
  const auto on_bytes = [&](uint64_t b) {
    if (o.progress) bar.add(b);
  };
  const size_t n_tensors = in->tensors().size();
  for (size_t k = 0; k < n_tensors; ++k) {
    const gguf::TensorInfo& t = in->tensors()[k];
    const TensorReport& r = res.tensors[k];
    if (o.progress || !r.fallback.empty()) {
      char line[512];
      std::snprintf(line, sizeof line, "[%4zu/%4zu] %-32s %-16s %6s -> %-6s %10s -> %10s%s%s",
                    k + 1, n_tensors, t.name.c_str(), dims_str(t.dims).c_str(), dtype_name(r.from),
                    r.converted ? dtype_name(r.to) : "(copy)", format_bytes(r.bytes_in).c_str(),
                    format_bytes(r.bytes_out).c_str(),
                    r.fallback.empty() ? "" : "  fallback: ", r.fallback.c_str());
      if (o.progress)
        bar.log(line);
      else
        std::fprintf(stderr, "%s\n", line);
    }
    if (!r.converted) {
      rows.raw(t.data, t.nbytes, on_bytes);  // copies the bytes before returning
    } else {
      const int64_t n = t.dims[0];
      const size_t src_row = row_bytes(t.type, n);
      auto fill = [&](int64_t row, float* out) {
        dequantize_row(t.type, t.data + size_t(row) * src_row, out, n);
      };
      rows.rows(r.to, n, TensorSpec{t.name, t.type, t.dims}.n_rows(), fill, on_bytes);
    }
    release_pages(t.data, t.nbytes);
  }
  rows.flush();
  w.finish();
  if (o.progress) bar.finish();

  for (const TensorReport& r : res.tensors) {
    res.bytes_in += r.bytes_in;
    res.bytes_out += r.bytes_out;
  }
  res.file_bytes = w.total_bytes();
  res.seconds = bar.seconds();
  if (res.n_fallback > 0)
    std::fprintf(stderr, "warning: %d of %zu tensors needed a fallback type (see above)\n",
                 res.n_fallback, n_tensors);
  return res;
}

}  // namespace tf::tools
