// `tokenfab quantize`: converts the weight matrices of a GGUF model to another type (or a
// llama.cpp-style mixture of types), copying everything else. The input is read through the
// memory map and the output streamed, so any size of model converts in a few MiB of memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace tf::tools {

struct QuantizeOptions {
  std::string in_path, out_path;
  std::string type;      // any name parse_mix() accepts: q8_0, q4_k_m, f16, ...
  bool pure = false;     // every matrix in the base type (no llama.cpp mixture rules)
  int threads = 0;       // 0: all cores
  bool progress = true;  // progress bar and one line per tensor on stderr
};

struct TensorReport {
  std::string name;
  DType from, to;
  uint64_t bytes_in = 0, bytes_out = 0;
  bool converted = false;  // false: copied unchanged
  std::string fallback;    // why the row length forced a different type, if it did
};

struct QuantizeResult {
  std::vector<TensorReport> tensors;
  uint64_t bytes_in = 0, bytes_out = 0;  // tensor data
  uint64_t file_bytes = 0;
  int n_fallback = 0, n_requantized = 0;
  double seconds = 0;
};

// Throws tf::Error for a missing or invalid input, an unknown type, or a tensor whose type
// cannot be converted. Warnings (fallbacks, requantization) go to stderr.
QuantizeResult quantize_model(const QuantizeOptions& opts);

}  // namespace tf::tools
