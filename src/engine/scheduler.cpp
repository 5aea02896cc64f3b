#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "util/error.h"

namespace tf {

namespace {
using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

struct Scheduler::Seq {
  uint64_t id = 0;
  GenRequest req;
  GenSink sink;
  Sampler sampler;
  StreamDecoder dec;
  int slot = -1;
  int64_t worst = 0;       // KV blocks reserved for it at admission (worst_blocks)
  size_t prompt_done = 0;  // prompt tokens whose K/V are in the slot
  int64_t cached = 0;      // ... of which were there before this request
  std::vector<TokenId> generated;
  bool last_decoded = true;  // the last generated token's K/V are in the slot
  std::string held;          // text that could still turn out to start a stop string
  size_t max_stop = 0;
  Clock::time_point t_submit, t_admit, t_first;
  bool done = false;
  std::unique_ptr<TokenGrammar> grammar;
  std::string stop_string;  // the stop string that ended it
  Charge input, output;     // metered (see engine/meter.h)

  Seq(GenRequest r, GenSink s, const Tokenizer& tok)
      : req(std::move(r)), sink(std::move(s)), sampler(req.sampling), dec(tok, req.render_special) {
    for (const auto& st : req.stop) max_stop = std::max(max_stop, st.size());
  }
  bool prefilling() const { return prompt_done < req.prompt.size(); }
};

Scheduler::Scheduler(const Model& model, const Tokenizer& tok, const SchedulerParams& params)
    : model_(model), tok_(tok), p_(params), meter_(params.meter, params.n_threads) {
  if (p_.n_parallel < 1 || p_.n_parallel > 256) throw Error("parallel sequences must be in 1..256");
  if (p_.step_tokens < 1 || p_.prompt_tokens_while_decoding < 1)
    throw Error("step token budgets must be positive");
  n_ctx_ = p_.n_ctx > 0 ? p_.n_ctx : std::min<int64_t>(model.config().n_ctx_train, 4096);
  ContextParams cp;
  cp.n_ctx = n_ctx_;
  cp.n_seq = p_.n_parallel;
  cp.n_batch = std::min<int64_t>(p_.step_tokens, 512);
  cp.n_threads = p_.n_threads;
  cp.kv_type = p_.kv_type;
  if (p_.kv_memory > 0) {
    const size_t bb = KvCache::block_bytes_for(model.config().n_layer, model.config().kv_row_dim(),
                                               p_.kv_type, model.config().kv_keys_only());
    cp.kv_blocks = int64_t(p_.kv_memory / bb);
    if (cp.kv_blocks < 1)
      throw Error("the KV memory budget of " + std::to_string(p_.kv_memory) +
                  " bytes is less than one block (" + std::to_string(bb) + " bytes for " +
                  std::to_string(KvCache::kBlockLen) + " positions)");
  } else {
    // Each sequence may need one block more than its positions: the copy of a shared block
    // it writes into (copy on write, at most once: see worst_blocks).
    cp.kv_blocks = p_.n_parallel * (KvCache::blocks_for(n_ctx_) + 1);
  }
  ctx_ = std::make_unique<Context>(model, cp);
  prefix_ = std::make_unique<PrefixCache>(ctx_->kv());
  slots_.resize(size_t(p_.n_parallel));
  for (TokenId id = 0; id < tok.n_vocab(); ++id)
    if (tok.is_eog(id)) eog_.push_back(id);
  stats_.kv_total_blocks = ctx_->kv().n_blocks();
  stats_.kv_block_tokens = KvCache::kBlockLen;
  stats_.kv_total_cells = stats_.kv_total_blocks * KvCache::kBlockLen;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  shutdown(false);
  prefix_.reset();  // releases its blocks before the context goes
}

// The blocks of its positions, plus one: a sequence writes into a shared block at most once,
// at its first position past the cached prefix it attached (later it writes only past its own
// published blocks), and that copy on write takes a block while the cache keeps the original.
int64_t Scheduler::worst_blocks(const GenRequest& r) const {
  const int64_t most = r.max_tokens < 0 ? n_ctx_ : int64_t(r.prompt.size()) + r.max_tokens;
  return KvCache::blocks_for(std::min(most, n_ctx_)) + 1;
}

void Scheduler::shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    draining_ = drain;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t Scheduler::submit(GenRequest req, GenSink sink) {
  if (req.prompt.empty()) throw Error("the prompt is empty");
  for (TokenId t : req.prompt)
    if (t < 0 || t >= tok_.n_vocab())
      throw Error("prompt token id " + std::to_string(t) + " out of range");
  const int64_t need = int64_t(req.prompt.size()) + std::max<int32_t>(req.max_tokens, 0);
  if (int64_t(req.prompt.size()) >= n_ctx_ || need > n_ctx_)
    throw Error("the prompt (" + std::to_string(req.prompt.size()) + " tokens) plus max_tokens (" +
                std::to_string(std::max<int32_t>(req.max_tokens, 0)) +
                ") does not fit the context of " + std::to_string(n_ctx_) + " tokens");
  if (worst_blocks(req) > ctx_->kv().n_blocks())
    throw Error("the prompt (" + std::to_string(req.prompt.size()) + " tokens) plus max_tokens (" +
                (req.max_tokens < 0 ? std::string("unset: the whole context")
                                    : std::to_string(req.max_tokens)) +
                ") does not fit the KV memory of " +
                std::to_string(ctx_->kv().n_blocks() * KvCache::kBlockLen) + " positions");
  if (!(req.timeout_s >= 0)) throw Error("the timeout must not be negative");
  req.sampling.validate();
  auto s = std::make_shared<Seq>(std::move(req), std::move(sink), tok_);
  if (s->req.grammar)
    s->grammar =
        std::make_unique<TokenGrammar>(s->req.grammar, grammar_vocab(s->req.render_special));
  s->t_submit = Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw QueueFull("the server is shutting down");
    if (queue_.size() >= p_.max_queue) throw QueueFull("too many requests are waiting");
    s->id = next_id_++;
    queue_.push_back(s);
    stats_.waiting = int64_t(queue_.size());
  }
  cv_.notify_all();
  return s->id;
}

void Scheduler::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto busy = [&] {
        for (const auto& sl : slots_)
          if (sl.seq) return true;
        return false;
      };
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty() || !cancels_.empty() || busy(); });
      if (stopping_ && !draining_) {
        // Cancel everything: queued first, then running.
        std::deque<std::shared_ptr<Seq>> q;
        q.swap(queue_);
        lk.unlock();
        for (auto& s : q) finish(*s, "cancelled");
        for (auto& sl : slots_)
          if (sl.seq) finish(*sl.seq, "cancelled");
        return;
      }
      if (stopping_ && queue_.empty() && !busy()) return;
    }
    try {
      step();
    } catch (const std::exception& e) {
      // A fault in the forward pass: every running sequence ends with the error; the
      // scheduler keeps serving.
      for (auto& sl : slots_)
        if (sl.seq) finish(*sl.seq, "error", e.what());
    }
  }
}

void Scheduler::admit() {
  std::vector<std::shared_ptr<Seq>> cancelled;
  std::vector<std::shared_ptr<Seq>> admitted;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (uint64_t id : cancels_) {
      for (auto it = queue_.begin(); it != queue_.end(); ++it)
        if ((*it)->id == id) {
          cancelled.push_back(*it);
          queue_.erase(it);
          break;
        }
      for (auto& sl : slots_)
        if (sl.seq && sl.seq->id == id) cancelled.push_back(sl.seq);
    }
    cancels_.clear();
    while (!queue_.empty()) {
      auto s = queue_.front();
      int free_slot = -1;
      for (size_t i = 0; i < slots_.size() && free_slot < 0; ++i)
        if (!slots_[i].seq) free_slot = int(i);
      // In order of arrival, while a slot is free and the pool can hold the request's worst
      // case next to those of the running sequences.
      const int64_t worst = worst_blocks(s->req);
      if (free_slot < 0 || committed_blocks_ + worst > ctx_->kv().n_blocks()) break;
      queue_.pop_front();
      Slot& sl = slots_[size_t(free_slot)];
      sl.seq = s;
      s->slot = free_slot;
      s->worst = worst;
      committed_blocks_ += worst;
      // The longest cached prefix, keeping at least the prompt's last token to process (its
      // logits start the generation).
      const auto& pr = s->req.prompt;
      const size_t hit = prefix_->attach(free_slot, pr.data(), pr.size(), pr.size() - 1);
      sl.cached.assign(pr.begin(), pr.begin() + long(hit));
      s->prompt_done = hit;
      s->cached = int64_t(hit);
      s->t_admit = Clock::now();
      for (size_t i = 0; i < pr.size(); ++i) s->sampler.accept(pr[i]);
      if (hit > 0) ++stats_.prefix_hits;
      stats_.cached_tokens += int64_t(hit);
      admitted.push_back(s);
    }
    stats_.waiting = int64_t(queue_.size());
  }
  for (auto& s : cancelled)
    if (!s->done) finish(*s, "cancelled");
  // Requests past their deadline, queued or running.
  const auto now = Clock::now();
  std::vector<std::shared_ptr<Seq>> late;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto past = [&](const Seq& s) {
      return s.req.timeout_s > 0 &&
             now - s.t_submit > std::chrono::duration<double>(s.req.timeout_s);
    };
    for (auto it = queue_.begin(); it != queue_.end();)
      if (past(**it)) {
        late.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    for (auto& sl : slots_)
      if (sl.seq && past(*sl.seq)) late.push_back(sl.seq);
    stats_.waiting = int64_t(queue_.size());
  }
  for (auto& s : late)
    if (!s->done) finish(*s, "timeout");
}

bool Scheduler::step() {
  admit();
  Batch batch;
  std::vector<Seq*> out_seq;  // the sequence of each output row, in batch order
  int64_t budget = p_.step_tokens;
  // Decode tokens first: every running sequence advances by one.
  for (auto& sl : slots_) {
    Seq* s = sl.seq.get();
    if (!s || s->prefilling() || s->last_decoded) continue;
    const int32_t pos = int32_t(s->req.prompt.size() + s->generated.size() - 1);
    batch.add(s->generated.back(), pos, s->slot, true);
    out_seq.push_back(s);
    --budget;
  }
  // Then prompt chunks, oldest request first. While sequences decode, prompts get a smaller
  // share of the step (every decoding stream waits for it), unless at least as many requests
  // are still waiting for their first token as are decoding: then the waiting users' time to
  // first token matters more (a burst of arrivals starts sooner, and aggregate throughput
  // rises with the larger steps).
  std::vector<Seq*> pre;
  for (auto& sl : slots_)
    if (sl.seq && sl.seq->prefilling()) pre.push_back(sl.seq.get());
  if (!out_seq.empty() && pre.size() < out_seq.size())
    budget = std::min(budget, p_.prompt_tokens_while_decoding);
  std::sort(pre.begin(), pre.end(), [](Seq* a, Seq* b) { return a->id < b->id; });
  std::vector<std::pair<Seq*, size_t>> chunks;
  for (Seq* s : pre) {
    if (budget <= 0) break;
    const size_t n = std::min<size_t>(size_t(budget), s->req.prompt.size() - s->prompt_done);
    for (size_t i = 0; i < n; ++i) {
      const size_t at = s->prompt_done + i;
      const bool last = at + 1 == s->req.prompt.size();
      batch.add(s->req.prompt[at], int32_t(at), s->slot, last);
      if (last) out_seq.push_back(s);
    }
    chunks.emplace_back(s, n);
    budget -= int64_t(n);
  }
  if (batch.size() == 0) return false;
  // Free blocks for the batch, from the prefix cache's unused entries if need be.
  if (const int64_t need = ctx_->kv_blocks_needed(batch); need > ctx_->kv().free_blocks())
    prefix_->evict(need - ctx_->kv().free_blocks());
  meter_.begin();
  ctx_->decode(batch);
  // The cache now holds what the batch carried.
  for (size_t i = 0; i < batch.size(); ++i)
    slots_[size_t(batch.seq[i])].cached.push_back(batch.tokens[i]);
  for (auto& sl : slots_)
    if (sl.seq && !sl.seq->prefilling()) sl.seq->last_decoded = true;
  for (auto& [s, n] : chunks) {
    s->prompt_done += n;
    // Whole prompt blocks are shared from now on, even while this request still runs.
    const Slot& sl = slots_[size_t(s->slot)];
    prefix_->publish(s->slot, sl.cached.data(), sl.cached.size());
  }
  std::vector<Pending> pending;
  for (size_t i = 0; i < out_seq.size(); ++i)
    on_token(*out_seq[i], ctx_->logits(int64_t(i)), pending);
  // The step (forward pass and sampling) is charged by tokens: each of its sequences pays for
  // the tokens it put in, prompt tokens to its input, decode tokens to its output. The events
  // go out after that, so that a request's final usage includes its last step.
  const StepMeter::Step st = meter_.end(int64_t(batch.size()));
  const Charge one = st.per_token();
  for (size_t i = 0; i < batch.size(); ++i) {
    Seq* s = slots_[size_t(batch.seq[i])].seq.get();
    if (!s) continue;
    const bool prompt_token = size_t(batch.pos[i]) < s->req.prompt.size();
    (prompt_token ? s->input : s->output) += one;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.steps;
    stats_.metered = meter_.total();
    update_stats();
  }
  for (auto& p : pending) {
    if (!p.ev.text.empty() || !p.ev.tokens.empty() || p.reason.empty()) p.seq->sink(p.ev);
    if (!p.reason.empty()) finish(*p.seq, p.reason);
  }
  return true;
}

void Scheduler::update_stats() {
  int64_t used = 0, running = 0;
  for (const auto& sl : slots_) {
    if (!sl.seq) continue;
    used += int64_t(sl.cached.size());
    ++running;
  }
  stats_.kv_used_cells = used;
  stats_.running = running;
  stats_.kv_used_blocks = ctx_->kv().blocks_in_tables();
  stats_.kv_cached_blocks = int64_t(prefix_->size());
}

std::shared_ptr<const GrammarVocab> Scheduler::grammar_vocab(bool render_special) {
  std::lock_guard<std::mutex> lk(vocab_mu_);
  auto& v = grammar_vocab_[render_special ? 1 : 0];
  if (!v) v = GrammarVocab::of(tok_, render_special);
  return v;
}

void Scheduler::on_token(Seq& s, const float* raw, std::vector<Pending>& out) {
  if (s.done) return;
  const int64_t nv = ctx_->n_vocab();
  // Scratch kept across tokens: a fresh 128 KB vector per token would be fresh pages each time.
  std::vector<float>& logits = logits_scratch_;
  logits.assign(raw, raw + nv);
  if (s.req.ignore_eos)
    for (TokenId id : eog_) logits[size_t(id)] = -INFINITY;
  TokenId tok;
  if (!s.grammar) {
    tok = s.sampler.sample(logits.data(), nv);
  } else {
    tok = s.grammar->choose(logits.data(), nv, s.req.sampling.temperature <= 0.f,
                            [&](float* l) { return s.sampler.sample(l, nv); });
    if (tok < 0) {  // nothing can continue the output
      s.held += s.dec.flush();
      GenEvent ev;
      ev.text = std::move(s.held);
      s.held.clear();
      out.push_back({&s, std::move(ev), "stop"});
      return;
    }
    s.grammar->accept(tok);
  }
  s.sampler.accept(tok);
  if (s.generated.empty()) s.t_first = Clock::now();
  s.generated.push_back(tok);
  s.last_decoded = false;

  GenEvent ev;
  GenToken gt;
  gt.id = tok;
  gt.piece = tok_.token_to_piece(tok, s.req.render_special);
  if (s.req.top_logprobs >= 0) {
    std::vector<float>& lsm = lsm_scratch_;
    log_softmax(raw, nv, lsm);
    gt.logprob = lsm[size_t(tok)];
    const int32_t k = std::min<int32_t>(s.req.top_logprobs, int32_t(nv));
    std::vector<TokenId> ids(static_cast<size_t>(nv));
    for (TokenId i = 0; i < nv; ++i) ids[size_t(i)] = i;
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](TokenId a, TokenId b) {
      return lsm[size_t(a)] > lsm[size_t(b)] || (lsm[size_t(a)] == lsm[size_t(b)] && a < b);
    });
    for (int32_t i = 0; i < k; ++i) gt.top.push_back({ids[size_t(i)], lsm[size_t(ids[size_t(i)])]});
  }
  const bool eog = !s.req.ignore_eos && tok_.is_eog(tok);
  if (!eog) s.held += s.dec.push(tok);
  ev.tokens.push_back(std::move(gt));

  std::string reason;
  // Stop strings: the earliest match ends the text there.
  size_t cut = std::string::npos;
  for (const auto& st : s.req.stop) {
    if (st.empty()) continue;
    const size_t at = s.held.find(st);
    if (at != std::string::npos && at < cut) {
      cut = at;
      s.stop_string = st;
    }
  }
  const int64_t total = int64_t(s.req.prompt.size() + s.generated.size());
  if (cut != std::string::npos) {
    s.held.resize(cut);
    reason = "stop";
  } else if (eog || (s.grammar && s.grammar->dead())) {
    reason = "stop";
  } else if (s.req.max_tokens >= 0 && int64_t(s.generated.size()) >= s.req.max_tokens) {
    reason = "length";
  } else if (total >= n_ctx_) {
    reason = "length";
  }
  if (!reason.empty()) {
    if (cut == std::string::npos) s.held += s.dec.flush();
    ev.text = std::move(s.held);
    s.held.clear();
    out.push_back({&s, std::move(ev), reason});
    return;
  }
  // Emit all but the longest tail that could begin a stop string.
  size_t keep = 0;
  for (const auto& st : s.req.stop)
    for (size_t n = std::min(st.size() - 1, s.held.size()); n > keep; --n)
      if (s.held.compare(s.held.size() - n, n, st, 0, n) == 0) {
        keep = n;
        break;
      }
  ev.text = s.held.substr(0, s.held.size() - keep);
  s.held.erase(0, s.held.size() - keep);
  out.push_back({&s, std::move(ev), ""});
}

void Scheduler::finish(Seq& s, const std::string& reason, const std::string& error) {
  if (s.done) return;
  s.done = true;
  // The slot's reference may be the last one: keep the sequence alive until the end.
  std::shared_ptr<Seq> keep = s.slot >= 0 ? slots_[size_t(s.slot)].seq : nullptr;
  const auto now = Clock::now();
  GenEvent ev;
  ev.done = true;
  ev.finish_reason = reason;
  ev.error = error;
  ev.stop_string = s.stop_string;
  GenUsage& u = ev.usage;
  u.prompt_tokens = int64_t(s.req.prompt.size());
  u.cached_tokens = s.cached;
  u.completion_tokens = int64_t(s.generated.size());
  u.input = s.input;
  u.output = s.output;
  u.energy_source = meter_.energy().source();
  if (s.slot >= 0) {
    u.queue_ms = ms_between(s.t_submit, s.t_admit);
    if (!s.generated.empty()) {
      u.prompt_ms = ms_between(s.t_admit, s.t_first);
      u.decode_ms = ms_between(s.t_first, now);
    }
  } else {
    u.queue_ms = ms_between(s.t_submit, now);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (s.slot >= 0) {
      Slot& sl = slots_[size_t(s.slot)];
      if (sl.seq.get() == &s) {
        // Its blocks (prompt and the tokens decoded, the last partial one too) stay in the
        // prefix cache; the slot gives everything back at once.
        prefix_->publish(s.slot, sl.cached.data(), sl.cached.size(), /*tail=*/true);
        ctx_->kv().truncate(s.slot, 0);
        sl.cached.clear();
        sl.seq.reset();
        committed_blocks_ -= s.worst;
      }
    }
    ++stats_.requests_done;
    update_stats();
    stats_.prompt_tokens += u.prompt_tokens;
    stats_.completion_tokens += u.completion_tokens;
  }
  s.sink(ev);
}

}  // namespace tf
