// tokenfab's public C++ API: load a GGUF model, tokenize, generate, score, and serve many
// requests at once through the continuous-batching Scheduler (Engine::make_scheduler).
// This is what the CLI and the server are built on; an embedding application needs nothing
// else.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/meter.h"
#include "engine/scheduler.h"
#include "format/gguf.h"
#include "model/context.h"
#include "model/model.h"
#include "sample/grammar.h"
#include "sample/sampler.h"
#include "sample/token_grammar.h"
#include "tokenizer/tokenizer.h"
#include "tools/model_source.h"
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
  // Called with (bytes read, file size) while the weights are read into memory.
  std::function<void(uint64_t, uint64_t)> on_progress;
  // A Hugging Face model directory (config.json, *.safetensors, tokenizer.json) is converted
  // on load (tools/model_source.h): matrices keep their type, or become this one ("f16",
  // "q8_0", "q4_k_m", ... as `tokenfab quantize` names them). Empty for GGUF files.
  std::string quant;
  MeterOptions meter;  // energy source and prices for Timings' charges (engine/meter.h)
};

struct GenerateOptions {
  int32_t n_predict = 128;  // < 0: until EOS or the context is full
  SamplingParams sampling;
  bool ignore_eos = false;
  bool parse_special = true;  // text spelling special tokens in the prompt becomes them
  // Prefix reuse (see Engine::generate_ids): keep the K/V of the longest prefix this prompt
  // shares with what the cache holds and process only the rest. Off: the whole prompt is
  // processed again.
  bool reuse_cache = true;
  // ... and let that prefix extend over positions not computed in a prompt batch (generated
  // tokens, decoded one at a time). Faster for a chat (the last reply is not processed again),
  // but not bit-identical to a fresh run for F32/F16 weights; see Engine::generate_ids.
  bool reuse_generated = false;
  // Constrained decoding: only tokens whose text keeps the output inside this grammar may be
  // sampled, and end of generation only once the output is a whole sentence of it. Generation
  // ends ("eos") when nothing but the end can follow; stop_reason "grammar" when no token can
  // continue the output. Masking tries every token's text each step (no token trie yet).
  std::shared_ptr<const Grammar> grammar;
};

struct Timings {
  // prompt_tokens: prompt tokens run through the model; cached_tokens: prompt tokens whose K/V
  // came from the cache instead (prompt_tokens + cached_tokens = the prompt's length). Prompt
  // speed is over the processed tokens only.
  int64_t prompt_tokens = 0, cached_tokens = 0, gen_tokens = 0;
  double prompt_ms = 0, gen_ms = 0;
  // Time, energy and cost of the prompt's processing and of the generation (engine/meter.h).
  Charge prompt_charge, gen_charge;
  const char* energy_source = "model";
  double prompt_tps() const { return prompt_ms > 0 ? prompt_tokens * 1000.0 / prompt_ms : 0; }
  double gen_tps() const { return gen_ms > 0 ? gen_tokens * 1000.0 / gen_ms : 0; }
};

struct Generation {
  std::vector<TokenId> prompt_ids;  // as fed to the model, BOS included
  std::vector<TokenId> tokens;      // generated, the EOS id included when it stopped there
  std::string text;
  std::string stop_reason;  // "eos", "length", "context", "cancelled", "grammar"
  Timings timings;
};

struct PerplexityResult {
  double ppl = 0;
  std::vector<double> chunk_ppl;  // perplexity of each chunk on its own
  int64_t n_tokens = 0;
};

class Engine {
 public:
  // Loads and validates the model and its tokenizer: a GGUF file or a Hugging Face model
  // directory. Throws tf::Error.
  static std::unique_ptr<Engine> load(const std::string& path, const LoadOptions& opts = {});

  const Model& model() const { return *model_; }
  // A continuous-batching scheduler over this engine's model and tokenizer (see
  // engine/scheduler.h): concurrent requests share forward passes, paged KV memory and the
  // prefix cache, without HTTP. n_threads <= 0 takes the engine's. The engine must outlive it.
  std::unique_ptr<Scheduler> make_scheduler(SchedulerParams p) const {
    if (p.n_threads <= 0) p.n_threads = n_threads();
    return std::make_unique<Scheduler>(model(), tokenizer(), p);
  }
  const Tokenizer& tokenizer() const { return *tok_; }
  int n_threads() const { return n_threads_; }
  int64_t n_ctx() const { return ctx_->n_ctx(); }
  size_t kv_cache_bytes() const { return ctx_->kv().bytes(); }
  // Where Timings' energy comes from (RAPL or the power model, see engine/meter.h).
  const std::string& energy_description() const { return meter_->energy().describe(); }

  std::vector<TokenId> tokenize(const std::string& text, bool add_special = true,
                                bool parse_special = true) const;

  // Generates a continuation. on_text receives each piece of complete UTF-8 text as it is
  // produced; returning false stops generation ("cancelled").
  //
  // The KV cache (sequence 0) keeps what the last call left in it: its prompt and generated
  // tokens except the last one sampled (never decoded); cached_ids() lists them. With
  // opts.reuse_cache, the next call keeps the longest common prefix of those and its prompt
  // and processes only the rest, always at least one token (its logits start generation), as
  // a multi-turn chat wants. Timings::cached_tokens says how many were kept.
  //
  // Reuse and bits: for F32 and F16 weights and F16 attention, one token goes through other
  // kernels than a batch of several (llama.cpp's choice, see llama_dot_kernel), which round
  // differently. Generated tokens are decoded one at a time, so their cached K/V are not what
  // a fresh run, processing them inside its prompt batch, computes. Measured on the test
  // models (tests/engine/prefix_cache_test.cpp prints it): the logits after such a prefix
  // differ from a fresh run's in half to nine tenths of the cases for F32/F16 weights, by up
  // to 1.4e-2; in 125 five-turn greedy conversations per model, replies changed in 2
  // (stories260K, F32), 0 (TinyStories-656K F16) and 1 (its Q8_0) turns. So by default reuse
  // stops where the positions computed by prompt batches end, and the part processed is two
  // tokens or more (prompts are cut into slices of two or more, see prompt_slices): results
  // are then a fresh run's bit for bit (tested), and a chat processes its last reply once
  // more, as a batch, with the new message. opts.reuse_generated drops that limit and keeps the
  // longest common prefix, as llama.cpp's prompt cache does.
  Generation generate(const std::string& prompt, const GenerateOptions& opts,
                      const std::function<bool(const std::string&)>& on_text = {});
  Generation generate_ids(std::vector<TokenId> prompt_ids, const GenerateOptions& opts,
                          const std::function<bool(const std::string&)>& on_text = {});

  // Perplexity as llama.cpp's perplexity tool computes it: the tokens (BOS first) are cut into
  // consecutive windows of n_ctx; each window starts with BOS and its second half is scored.
  // It runs in a context of its own: the generation cache is left as it was.
  PerplexityResult perplexity(const std::string& text, int64_t n_ctx);

  // The token ids whose K/V the cache holds (sequence 0, positions 0..size-1).
  const std::vector<TokenId>& cached_ids() const { return cached_ids_; }
  // Forgets the cache: the next generation processes its whole prompt.
  void clear_cache();

 private:
  Engine() = default;

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Context> ctx_;
  LoadOptions opts_;
  int n_threads_ = 1;
  // Invariant: positions 0..cached_ids_.size()-1 of ctx_'s sequence 0 hold the K/V of these
  // ids (positions past them, if any, are unknown and get overwritten), and the first
  // n_exact_ of them are what one fresh prompt batch over those ids computes, bit for bit.
  // Whatever writes to ctx_'s cache must keep this, or call clear_cache.
  std::vector<TokenId> cached_ids_;
  size_t n_exact_ = 0;
  std::shared_ptr<const GrammarVocab> grammar_vocab_;  // built on the first constrained run
  std::unique_ptr<StepMeter> meter_;
};

struct BenchParams {
  int64_t n_prompt = 512;  // prompt-processing batch
  int64_t n_gen = 128;     // tokens generated one at a time
  int64_t n_depth = 0;     // ... after this many cached positions (attention's cost grows)
  // Generation for this many sequences at once (each at n_depth), one batch per step, as the
  // server's continuous batching decodes: tg is then the aggregate tokens/s.
  int64_t n_seq = 1;
  int n_threads = 0;       // 0 = auto
  int reps = 5;
  bool measure_bandwidth = true;  // and the compute peak
  DType kv_type = DType::F16;
  // Grammar overhead: generation also runs constrained by this grammar (greedy, as the server
  // samples: the argmax checked first, the vocabulary masked when it is refused; the grammar
  // restarts when its sentence is whole), interleaved with unconstrained runs that take the
  // argmax too, so that the two differ only by the grammar's work.
  std::shared_ptr<const Grammar> grammar;
  std::shared_ptr<const GrammarVocab> grammar_vocab;
  MeterOptions meter;  // energy source and prices of the cost figures
};
struct Stat {
  double mean = 0, sd = 0;
};
struct BenchResult {
  Stat pp, tg;  // tokens per second
  Stat tg_grammar;  // with BenchParams::grammar (then tg takes the argmax too)
  double grammar_masks = 0;  // share of constrained steps that masked the whole vocabulary
  int threads = 0;
  double bytes_per_token = 0;   // weight bytes read per generated token
  double bandwidth_gb_s = 0;    // measured read bandwidth at this thread count
  double bandwidth_fraction = 0;  // bytes_per_token * tg / bandwidth
  // Arithmetic: 2 ops per weight multiply-add of the matrix products (attention not counted)
  // per token, against the peak of the kernel level in use (int8 for quantized weights, whose
  // products run on 8-bit activations; fp32 for float weights), measured after the runs.
  double ops_per_token = 0;
  double peak_gops = 0;
  std::string peak_kind;  // "int8 avx512-vnni", "fp32 avx2", ...
  double pp_peak_fraction = 0, tg_peak_fraction = 0;  // pp (tg) * ops_per_token / peak
  // Memory: the process's resident size after the runs, against the model file plus the KV
  // cache (the engine's own scratch and the program make up the rest).
  double resident_bytes = 0, file_bytes = 0, kv_bytes = 0;
  // The factory's figures (engine/meter.h): over all repetitions of each measurement.
  struct Cost {
    double tokens_per_joule = 0, usd_per_mtok = 0, joules_per_token = 0;
  };
  Cost pp_cost, tg_cost;
  std::string energy;  // the energy source, described
};
// Measures prompt processing and generation speed on random tokens (the weights' values do
// not matter for speed).
BenchResult run_bench(const Model& model, const BenchParams& p);

// Threads worth using for a model of this many weight bytes on this machine.
int auto_threads(size_t weight_bytes);

}  // namespace tf
