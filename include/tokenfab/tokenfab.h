// tokenfab's public C++ API: load a GGUF model, tokenize, generate, score.
// This is what the CLI (and later the server) is built on; an embedding application needs
// nothing else.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "model/context.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace tf {

struct LoadOptions {
  int n_threads = 0;   // 0 = chosen from the model size and the machine
  int64_t n_ctx = 0;   // 0 = the model's training context (capped at 4096)
  int64_t n_batch = 128;  // tokens per forward step: see ContextParams
  // Map the file instead of reading it into memory of the engine's own (which is backed by
  // huge pages where possible, and is faster to stream). Mapping loads nothing up front.
  bool use_mmap = false;
  // KV cache element type: F16 (llama.cpp's default and rounding) or Q8_0 (half the memory;
  // needs n_head_kv * head_dim % 32 == 0). See parse_kv_type for the command-line names.
  DType kv_type = DType::F16;
};

struct GenerateOptions {
  int32_t n_predict = 128;  // < 0: until EOS or the context is full
  SamplingParams sampling;
  bool ignore_eos = false;
  bool parse_special = true;  // text spelling special tokens in the prompt becomes them
};

struct Timings {
  int64_t prompt_tokens = 0, gen_tokens = 0;
  double prompt_ms = 0, gen_ms = 0;
  double prompt_tps() const { return prompt_ms > 0 ? prompt_tokens * 1000.0 / prompt_ms : 0; }
  double gen_tps() const { return gen_ms > 0 ? gen_tokens * 1000.0 / gen_ms : 0; }
};

struct Generation {
  std::vector<TokenId> prompt_ids;  // as fed to the model, BOS included
  std::vector<TokenId> tokens;      // generated, the EOS id included when it stopped there
  std::string text;
  std::string stop_reason;  // "eos", "length", "context", "cancelled"
  Timings timings;
};

struct PerplexityResult {
  double ppl = 0;
  std::vector<double> chunk_ppl;  // perplexity of each chunk on its own
  int64_t n_tokens = 0;
};

class Engine {
 public:
  // Loads and validates the model and its tokenizer. Throws tf::Error.
  static std::unique_ptr<Engine> load(const std::string& path, const LoadOptions& opts = {});

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  int n_threads() const { return n_threads_; }
  int64_t n_ctx() const { return ctx_->n_ctx(); }
  size_t kv_cache_bytes() const { return ctx_->kv().bytes(); }

  std::vector<TokenId> tokenize(const std::string& text, bool add_special = true,
                                bool parse_special = true) const;

  // Generates a continuation. on_text receives each piece of complete UTF-8 text as it is
  // produced; returning false stops generation ("cancelled").
  Generation generate(const std::string& prompt, const GenerateOptions& opts,
                      const std::function<bool(const std::string&)>& on_text = {});
  Generation generate_ids(std::vector<TokenId> prompt_ids, const GenerateOptions& opts,
                          const std::function<bool(const std::string&)>& on_text = {});

  // Perplexity as llama.cpp's perplexity tool computes it: the tokens (BOS first) are cut into
  // consecutive windows of n_ctx; each window starts with BOS and its second half is scored.
  PerplexityResult perplexity(const std::string& text, int64_t n_ctx);

 private:
  Engine() = default;

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Context> ctx_;
  LoadOptions opts_;
  int n_threads_ = 1;
};

struct BenchParams {
  int64_t n_prompt = 512;  // prompt-processing batch
  int64_t n_gen = 128;     // tokens generated one at a time
  int64_t n_depth = 0;     // ... after this many cached positions (attention's cost grows)
  int n_threads = 0;       // 0 = auto
  int reps = 5;
  bool measure_bandwidth = true;
  DType kv_type = DType::F16;
};
struct Stat {
  double mean = 0, sd = 0;
};
struct BenchResult {
  Stat pp, tg;  // tokens per second
  int threads = 0;
  double bytes_per_token = 0;   // weight bytes read per generated token
  double bandwidth_gb_s = 0;    // measured read bandwidth at this thread count
  double bandwidth_fraction = 0;  // bytes_per_token * tg / bandwidth
  // Memory: the process's resident size after the runs, against the model file plus the KV
  // cache (the engine's own scratch and the program make up the rest).
  double resident_bytes = 0, file_bytes = 0, kv_bytes = 0;
};
// Measures prompt processing and generation speed on random tokens (the weights' values do
// not matter for speed).
BenchResult run_bench(const Model& model, const BenchParams& p);

// Threads worth using for a model of this many weight bytes on this machine.
int auto_threads(size_t weight_bytes);

}  // namespace tf
