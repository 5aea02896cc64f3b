// tokenfab convert: a Hugging Face model directory to the GGUF file llama.cpp's converter
// would write (same keys, tensor names and layouts; loadable by llama.cpp).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "tools/model_source.h"
#include "tools/progress.h"
#include "tools/quant_mix.h"

namespace tf::cli {

Runner add_convert(CLI::App& app) {
  auto o = std::make_shared<tools::ConvertOptions>();
  CLI::App* c = app.add_subcommand(
      "convert", "convert a Hugging Face model directory (safetensors) to a GGUF file");
  c->add_option("dir", o->dir, "model directory: config.json, *.safetensors, tokenizer.json")
      ->required();
  c->add_option("output", o->out_path, "output GGUF file")->required();
  c->add_option("--type", o->type,
                "matrix type: auto (keep F32/F16/BF16, the default), " + tools::mix_names());
  c->add_option("-t,--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, 1024));
  return [o] {
    const tools::QuantizeResult r = tools::convert_hf(*o);
    std::fprintf(stderr, "convert: %s -> %s (%s): %zu tensors, %s of weights -> file %s, %.1f s\n",
                 o->dir.c_str(), o->out_path.c_str(), o->type.empty() ? "auto" : o->type.c_str(),
                 r.tensors.size(), tools::format_bytes(r.bytes_in).c_str(),
                 tools::format_bytes(r.file_bytes).c_str(), r.seconds);
    return 0;
  };
}

}  // namespace tf::cli
