// tokenfab info: metadata and tensor table of a GGUF file (or of the GGUF a Hugging Face
// directory converts to).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
int info(const std::string& path) {
  // A Hugging Face directory shows the GGUF it is converted to (this reads the weights).
  tools::ModelSourceOptions src;
  src.use_mmap = true;
  auto f = tools::open_model(path, src);
  std::printf("file: %s\nversion: %u\nalignment: %llu\nsize: %zu bytes\n", path.c_str(),
              f->version(), (unsigned long long)f->alignment(), f->file_size());
  std::printf("\nmetadata (%zu keys):\n", f->metadata().size());
  for (const auto& [key, value] : f->metadata())
    std::printf("  %-45s %-8s %s\n", key.c_str(), gguf::value_type_name(value.type),
                value.to_string().c_str());
  std::printf("\ntensors (%zu):\n", f->tensors().size());
  size_t total = 0;
  for (const gguf::TensorInfo& t : f->tensors()) {
    std::string dims;
    for (size_t i = 0; i < t.dims.size(); ++i) dims += (i ? " x " : "") + std::to_string(t.dims[i]);
    std::printf("  %-40s %-6s %-22s offset %-10llu %zu bytes\n", t.name.c_str(), dtype_name(t.type),
                dims.c_str(), (unsigned long long)t.offset, t.nbytes);
    total += t.nbytes;
  }
  std::printf("\ntensor data: %zu bytes\n", total);
  return 0;
}
}  // namespace

Runner add_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand("info", "print a GGUF file's metadata and tensor table");
  c->add_option("model", *path, "GGUF file or Hugging Face model directory")->required();
  return [path] { return info(*path); };
}

}  // namespace tf::cli
