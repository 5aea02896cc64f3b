// Where a model comes from: a GGUF file, or a Hugging Face directory (config.json,
// *.safetensors, tokenizer.json) imported into the GGUF that llama.cpp's converter would
// write (format/hf_import.h). `-m PATH` of every command goes through open_model, and
// `tokenfab convert` writes the same GGUF to disk.
//
// Imported tensors are converted row by row on several threads (the RowStreamer quantize uses)
// into their output type: by default each matrix keeps its source type (F32, F16, BF16; 1-D
// tensors F32, as the converter writes them); a type name (f16, q8_0, q4_k_m, ... as
// `tokenfab quantize` takes them) converts the matrices, quantized types with llama-quantize's
// mixture rules.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "format/gguf.h"
#include "model/model.h"
#include "tools/quantize.h"

namespace tf::tools {

struct ModelSourceOptions {
  bool use_mmap = false;  // GGUF files: map instead of copying (see gguf::Residency)
  std::function<void(uint64_t, uint64_t)> progress;  // GGUF files: bytes read so far
  std::string quant;  // Hugging Face directories: output type ("" = keep source types)
  int threads = 0;    // conversion threads (0: all cores)
  // Directories: only the metadata (tokenizer, template, hyper-parameters), no tensors; for
  // commands that never touch the weights (tokenize, template).
  bool metadata_only = false;
};

// A GGUF file, or an imported directory held in memory. Throws tf::Error; --quant with a GGUF
// file is an error (that is `tokenfab quantize`).
std::shared_ptr<const gguf::File> open_model(const std::string& path,
                                             const ModelSourceOptions& opts = {});
// The model over it: Model::load for a GGUF file; an imported directory's memory is the
// model's own, so its matrices are tiled in place as a copied GGUF file's are.
std::unique_ptr<Model> load_model(const std::string& path, const ModelSourceOptions& opts = {});

struct ConvertOptions {
  std::string dir, out_path;
  std::string type;  // "" or "auto": source types; else a `quantize` type name
  int threads = 0;
  bool progress = true;  // one line per tensor on stderr
};

// `tokenfab convert`: writes the imported directory as a GGUF file (atomically: OUT.tmp, then
// renamed). The report lists each tensor's source and output type.
QuantizeResult convert_hf(const ConvertOptions& opts);

}  // namespace tf::tools
