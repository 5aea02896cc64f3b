// tokenfab perplexity: perplexity of a text file, scored as llama.cpp's perplexity tool does.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
struct PplArgs {
  std::string model, file;
  int64_t ctx = 512;
  int threads = 0;
  bool json = false, mmap = false;
  std::string kv_type = "f16", quant;
};

int perplexity(const PplArgs& a) {
  std::ifstream in(a.file, std::ios::binary);
  if (!in) throw Error(a.file + ": cannot open text file");
  std::stringstream ss;
  ss << in.rdbuf();
  LoadOptions lo;
  lo.n_threads = a.threads;
  lo.n_ctx = a.ctx;
  lo.use_mmap = a.mmap;
  lo.quant = a.quant;
  lo.kv_type = parse_kv_type(a.kv_type);
  auto engine = Engine::load(a.model, lo);
  const PerplexityResult r = engine->perplexity(ss.str(), a.ctx);
  if (a.json) {
    nlohmann::json j;
    j["ppl"] = r.ppl;
    j["chunks"] = r.chunk_ppl;
    j["n_tokens"] = r.n_tokens;
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (size_t i = 0; i < r.chunk_ppl.size(); ++i)
      std::fprintf(stderr, "[%zu]%.4f%s", i + 1, r.chunk_ppl[i], i + 1 < r.chunk_ppl.size() ? "," : "\n");
    std::printf("%.4f\n", r.ppl);
  }
  return 0;
}
}  // namespace

Runner add_perplexity(CLI::App& app) {
  auto a = std::make_shared<PplArgs>();
  CLI::App* c = app.add_subcommand("perplexity", "perplexity of a model on a text file");
  c->add_option("-m,--model", a->model, "GGUF model file or Hugging Face model directory")
      ->required();
  c->add_option(
      "--quant", a->quant,
      "Hugging Face directory: convert the matrices to this type on load (f16, q8_0, q4_k_m, ...)");
  c->add_option("-f,--file", a->file, "text file")->required();
  c->add_option("-c,--ctx-size", a->ctx, "window size in tokens")
      ->check(CLI::Range(int64_t(4), int64_t(1) << 20));
  c->add_option("-t,--threads", a->threads, "threads (0 = auto)")->check(CLI::Range(0, 1024));
  add_kv_type_option(c, a->kv_type);
  c->add_flag("--mmap", a->mmap, "map the model file instead of reading it into memory");
  c->add_flag("--json", a->json, "print {\"ppl\": final, \"chunks\": [...]}");
  return [a] { return perplexity(*a); };
}

}  // namespace tf::cli
