#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>
#include <utility>

#include "engine/prompt_slices.h"
#include "tokenfab/tokenfab.h"

namespace tf {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

int auto_threads(size_t weight_bytes) {
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  // Below a few MiB of weights a token takes microseconds, and waking a second thread for
  // each of the dozens of small operations costs more than it saves.
  if (weight_bytes < (size_t(16) << 20)) return 1;
  return hw;
}

std::unique_ptr<Engine> Engine::load(const std::string& path, const LoadOptions& opts) {
  if (opts.n_threads < 0 || opts.n_threads > 1024) throw Error("thread count must be in 0..1024");
  if (opts.n_ctx < 0) throw Error("context size must be >= 0");
  if (opts.n_batch <= 0) throw Error("batch size must be > 0");
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = opts;
  tools::ModelSourceOptions src;
  src.use_mmap = opts.use_mmap;
  src.progress = opts.on_progress;
  src.quant = opts.quant;
  src.threads = opts.n_threads;
  e->model_ = tools::load_model(path, src);
  e->tok_ = Tokenizer::from_gguf(e->model_->file());
  if (e->tok_->n_vocab() != e->model_->config().n_vocab)
    throw Error(path + ": tokenizer has " + std::to_string(e->tok_->n_vocab()) +
                " tokens but the model's embedding has " +
                std::to_string(e->model_->config().n_vocab));
  e->n_threads_ = opts.n_threads > 0 ? opts.n_threads : auto_threads(e->model_->weight_bytes());
  ContextParams cp;
  cp.n_ctx = opts.n_ctx > 0 ? opts.n_ctx : std::min<int64_t>(e->model_->config().n_ctx_train, 4096);
  cp.n_batch = opts.n_batch;
  cp.n_threads = e->n_threads_;
  cp.kv_type = opts.kv_type;
  e->ctx_ = std::make_unique<Context>(*e->model_, cp);
  e->meter_ = std::make_unique<StepMeter>(opts.meter, e->n_threads_);
  return e;
}

std::vector<TokenId> Engine::tokenize(const std::string& text, bool add_special,
                                      bool parse_special) const {
  return tok_->encode(text, add_special, parse_special);
}

Generation Engine::generate(const std::string& prompt, const GenerateOptions& opts,
                            const std::function<bool(const std::string&)>& on_text) {
  return generate_ids(tokenize(prompt, true, opts.parse_special), opts, on_text);
}

Generation Engine::generate_ids(std::vector<TokenId> prompt_ids, const GenerateOptions& opts,
                                const std::function<bool(const std::string&)>& on_text) {
  Generation g;
  g.prompt_ids = std::move(prompt_ids);
  const int64_t n_ctx = ctx_->n_ctx();
  if (g.prompt_ids.empty()) throw Error("the prompt is empty and the model adds no BOS token");
  if (int64_t(g.prompt_ids.size()) > n_ctx)
    throw Error("the prompt is " + std::to_string(g.prompt_ids.size()) +
                " tokens, more than the context size " + std::to_string(n_ctx) +
                " (use a larger -c or a shorter prompt)");
  Sampler sampler(opts.sampling);
  for (TokenId t : g.prompt_ids) sampler.accept(t);

  // The ids in the cache are taken out of cached_ids_ while they change, so that an exception
  // (a bad id, a throwing callback) leaves the bookkeeping empty, never wrong: the next call
  // then starts from an empty cache.
  std::vector<TokenId> cached = std::move(cached_ids_);
  cached_ids_.clear();
  size_t n_exact = std::exchange(n_exact_, 0);
  if (int64_t(cached.size()) > ctx_->kv().seq_len(0)) {  // (cannot happen)
    cached.clear();
    n_exact = 0;
  }
  const size_t n_prompt = g.prompt_ids.size();
  size_t keep = 0;
  if (opts.reuse_cache) {
    const size_t n = std::min(cached.size(), n_prompt);
    while (keep < n && cached[keep] == g.prompt_ids[keep]) ++keep;
    if (!opts.reuse_generated) {
      // Only positions computed by the batch kernels, as a fresh run computes them, and a
      // suffix of two tokens or more, which goes through them too.
      keep = std::min(keep, n_exact);
      if (n_prompt >= 2) keep = std::min(keep, n_prompt - 2);
    }
    // The last prompt token is always processed: its logits choose the first new token.
    if (keep == n_prompt) --keep;
  }
  ctx_->kv().truncate(0, int32_t(keep));
  cached.resize(keep);

  // Prompt (the part not in the cache), logits for the last token only.
  auto t0 = Clock::now();
  meter_->begin();
  Batch batch;
  bool batched = true;  // every position went through the batch kernels (see prompt_slices)
  for (const auto& [b, e] : prompt_slices(keep, n_prompt, opts_.n_batch)) {
    batch.clear();
    for (size_t i = b; i < e; ++i) batch.add(g.prompt_ids[i], int32_t(i), 0, i + 1 == n_prompt);
    ctx_->decode(batch);
    batched = batched && e - b >= 2;
  }
  cached.insert(cached.end(), g.prompt_ids.begin() + std::ptrdiff_t(keep), g.prompt_ids.end());
  n_exact = keep <= n_exact && batched ? n_prompt : std::min(n_exact, keep);
  g.timings.prompt_ms = ms_since(t0);
  g.timings.prompt_tokens = int64_t(n_prompt - keep);
  g.timings.cached_tokens = int64_t(keep);
  g.timings.prompt_charge = meter_->end(g.timings.prompt_tokens).whole();
  g.timings.energy_source = meter_->energy().source();

  StreamDecoder dec(*tok_);
  std::vector<float> logits(size_t(ctx_->n_vocab()));
  std::vector<TokenId> banned;  // end-of-generation ids, masked when ignoring EOS
  if (opts.ignore_eos)
    for (TokenId id = 0; id < tok_->n_vocab(); ++id)
      if (tok_->is_eog(id)) banned.push_back(id);
  int32_t pos = int32_t(g.prompt_ids.size());
  t0 = Clock::now();
  meter_->begin();
  g.stop_reason = "length";
  std::unique_ptr<TokenGrammar> gm;
  if (opts.grammar) {
    if (!grammar_vocab_) grammar_vocab_ = GrammarVocab::of(*tok_, false);
    gm = std::make_unique<TokenGrammar>(opts.grammar, grammar_vocab_);
  }
  const bool greedy = opts.sampling.temperature <= 0.f;
  for (int32_t i = 0; opts.n_predict < 0 || i < opts.n_predict; ++i) {
    std::copy(ctx_->logits(0), ctx_->logits(0) + ctx_->n_vocab(), logits.begin());
    for (TokenId id : banned) logits[size_t(id)] = -INFINITY;
    const int64_t nv = ctx_->n_vocab();
    const TokenId tok =
        gm ? gm->choose(logits.data(), nv, greedy, [&](float* l) { return sampler.sample(l, nv); })
           : sampler.sample(logits.data(), nv);
    if (tok < 0) {  // no token can continue the output
      g.stop_reason = "grammar";
      break;
    }
    sampler.accept(tok);
    g.tokens.push_back(tok);
    if (tok_->is_eog(tok)) {
      g.stop_reason = "eos";
      break;
    }
    if (gm) gm->accept(tok);
    const std::string piece = dec.push(tok);
    g.text += piece;
    if (on_text && !piece.empty() && !on_text(piece)) {
      g.stop_reason = "cancelled";
      break;
    }
    if (opts.n_predict >= 0 && i + 1 >= opts.n_predict) break;
    if (gm && gm->dead()) {  // the sentence is whole and nothing may follow it
      g.stop_reason = "eos";
      break;
    }
    if (pos >= n_ctx) {
      g.stop_reason = "context";
      break;
    }
    batch.clear();
    batch.add(tok, pos++, 0, true);
    ctx_->decode(batch);
    cached.push_back(tok);
  }
  // The cache now holds the prompt and every generated token but the last (sampled, never
  // decoded); the generated ones went through the one-token kernels.
  cached_ids_ = std::move(cached);
  n_exact_ = n_exact;
  const std::string rest = dec.flush();
  g.text += rest;
  if (on_text && !rest.empty()) on_text(rest);
  g.timings.gen_ms = ms_since(t0);
  g.timings.gen_tokens = int64_t(g.tokens.size());
  g.timings.gen_charge = meter_->end(g.timings.gen_tokens).whole();
  return g;
}

void Engine::clear_cache() {
  cached_ids_.clear();
  n_exact_ = 0;
  ctx_->kv().truncate(0, 0);
}

PerplexityResult Engine::perplexity(const std::string& text_in, int64_t n_ctx) {
  if (n_ctx < 4) throw Error("perplexity: the context size must be at least 4");
  // Like llama-perplexity: one trailing newline is dropped before tokenizing.
  std::string text = text_in;
  if (!text.empty() && text.back() == '\n') text.pop_back();
  const std::vector<TokenId> ids = tok_->encode(text, true, false);
  PerplexityResult r;
  r.n_tokens = int64_t(ids.size());
  const int64_t n_chunks = r.n_tokens / n_ctx;
  if (n_chunks == 0)
    throw Error("perplexity: the text has " + std::to_string(r.n_tokens) +
                " tokens, fewer than one window of " + std::to_string(n_ctx));
  // A context of its own (sized for the window): the generation cache in ctx_, and
  // cached_ids_ with it, stay as they are.
  ContextParams cp;
  cp.n_ctx = n_ctx;
  cp.n_batch = opts_.n_batch;
  cp.n_threads = n_threads_;
  cp.kv_type = opts_.kv_type;
  Context ctx(*model_, cp);
  const int64_t first = n_ctx / 2;
  double nll_sum = 0;
  int64_t count = 0;
  std::vector<float> lsm;
  for (int64_t c = 0; c < n_chunks; ++c) {
    ctx.kv().truncate(0, 0);
    double chunk_nll = 0;
    // The window goes through the model in slices of at most n_batch tokens, so that only one
    // slice's logits are held at a time.
    for (int64_t s0 = 0; s0 < n_ctx; s0 += cp.n_batch) {
      const int64_t s1 = std::min(n_ctx, s0 + cp.n_batch);
      Batch batch;
      for (int64_t j = s0; j < s1; ++j) {
        TokenId t = ids[size_t(c * n_ctx + j)];
        if (j == 0 && tok_->add_bos() && tok_->bos() >= 0) t = tok_->bos();
        batch.add(t, int32_t(j), 0, j >= first && j < n_ctx - 1);
      }
      ctx.decode(batch);
      int64_t out = 0;
      for (int64_t j = std::max(s0, first); j < std::min(s1, n_ctx - 1); ++j) {
        log_softmax(ctx.logits(out++), ctx.n_vocab(), lsm);
        chunk_nll -= lsm[size_t(ids[size_t(c * n_ctx + j + 1)])];
      }
    }
    nll_sum += chunk_nll;
    count += n_ctx - 1 - first;
    r.chunk_ppl.push_back(std::exp(chunk_nll / double(n_ctx - 1 - first)));
  }
  r.ppl = std::exp(nll_sum / double(count));
  return r;
}

}  // namespace tf
