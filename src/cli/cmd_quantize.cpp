// tokenfab quantize: convert a model's weight matrices to another type or mixture of types.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "tools/progress.h"
#include "tools/quant_mix.h"
#include "tools/quantize.h"

namespace tf::cli {

Runner add_quantize(CLI::App& app) {
  auto o = std::make_shared<tools::QuantizeOptions>();
  CLI::App* c = app.add_subcommand("quantize", "convert a GGUF model's weights to another type");
  c->add_option("input", o->in_path, "input GGUF model (F32, F16, BF16 or quantized)")->required();
  c->add_option("output", o->out_path, "output GGUF file")->required();
  c->add_option("type", o->type, "target: " + tools::mix_names())->required();
  c->add_flag("--pure", o->pure, "every matrix in the base type (no llama.cpp mixture rules)");
  c->add_option("-t,--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, 1024));
  return [o] {
    const tools::QuantizeResult r = tools::quantize_model(*o);
    int converted = 0;
    for (const auto& t : r.tensors) converted += t.converted;
    std::fprintf(stderr,
                 "quantize: %s -> %s (%s): %d of %zu tensors converted; tensor data %s -> %s "
                 "(%.2fx), file %s, %.1f s\n",
                 o->in_path.c_str(), o->out_path.c_str(), o->type.c_str(), converted,
                 r.tensors.size(), tools::format_bytes(r.bytes_in).c_str(),
                 tools::format_bytes(r.bytes_out).c_str(),
                 r.bytes_out ? double(r.bytes_in) / double(r.bytes_out) : 0.0,
                 tools::format_bytes(r.file_bytes).c_str(), r.seconds);
    return 0;
  };
}

}  // namespace tf::cli
