// Continuous batching: many generation requests share one model context. A scheduler thread
// runs steps; each step is one forward pass over a batch holding the next token of every
// decoding sequence plus prompt chunks of new ones, up to a token budget, so a long prompt
// never stalls the others' decoding. Each running sequence owns a KV-cache sequence slot whose
// block table grows with it. Prompt blocks are published to the prefix cache as soon as they
// are computed, and a sequence's blocks when it ends: a new request attaches the cached blocks
// of its longest cached prefix and processes only the rest (a system prompt shared by many
// users, a conversation's earlier turns, an agent's growing transcript are not recomputed).
// A request is admitted only when the pool can hold its worst case (prompt + max_tokens, or
// the whole context), so a running sequence never runs out of KV memory.
//
// Requests are admitted through a bounded queue; events (text deltas with their tokens, and
// the final usage) are delivered to a sink on the scheduler thread. Nothing here knows HTTP.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/meter.h"
#include "engine/prefix_cache.h"
#include "model/context.h"
#include "sample/sampler.h"
#include "sample/token_grammar.h"
#include "tokenizer/tokenizer.h"

namespace tf {

struct SchedulerParams {
  int n_parallel = 4;       // sequences decoded together (KV-cache slots)
  int64_t n_ctx = 0;        // positions per sequence; 0 = the model's (capped at 4096)
  int64_t step_tokens = 256;  // tokens per forward step (decode tokens first, then prompts)
  // ... of which prompt tokens while other sequences are decoding: a step's time is every
  // decoding stream's inter-token gap, so long prompts enter in smaller pieces then. 128 rather
  // than 64: 16 streams arriving at once start sooner and the aggregate rises (reference Q4_0
  // model, bench/serve -c 16 -n 128: 256 -> 275 tok/s), for a higher p99 inter-token gap while
  // they enter (150 -> 190-240 ms).
  int64_t prompt_tokens_while_decoding = 128;
  int n_threads = 1;
  DType kv_type = DType::F16;
  // KV memory budget in bytes; 0 = enough for n_parallel sequences of n_ctx positions.
  size_t kv_memory = 0;
  size_t max_queue = 256;   // requests waiting for a slot; more are refused (QueueFull)
  MeterOptions meter;       // energy source and prices (engine/meter.h)
};

struct GenRequest {
  std::vector<TokenId> prompt;  // BOS included as the caller wants it
  int32_t max_tokens = -1;      // < 0: until end of generation or the context is full
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings: matched across tokens, never emitted
  bool ignore_eos = false;
  int32_t top_logprobs = -1;    // < 0: no logprobs; else the chosen token's and this many more
  // Wall-clock limit from submission (queue time included); 0 = none. Past it the request
  // ends with finish_reason "timeout", keeping what it generated.
  double timeout_s = 0;
  // Constrained decoding: only tokens that keep the output inside this grammar are sampled;
  // the request ends ("stop") when the sentence is whole and nothing may follow, or when no
  // token can continue it.
  std::shared_ptr<const Grammar> grammar;
  // Control tokens appear in the text with their spelling (tool-call markers that are control
  // tokens, for the chat layer's parser); the grammar sees the same text.
  bool render_special = false;
};

struct TokenLogprob {
  TokenId id;
  float logprob;
};
struct GenToken {
  TokenId id;
  std::string piece;  // the token's bytes (may be part of a UTF-8 character)
  float logprob = 0;
  std::vector<TokenLogprob> top;  // best first, when asked for
};

struct GenUsage {
  int64_t prompt_tokens = 0;      // the whole prompt
  int64_t cached_tokens = 0;      // ... of which came from the KV cache
  int64_t completion_tokens = 0;
  double queue_ms = 0, prompt_ms = 0, decode_ms = 0;
  // Its shares of the steps that carried its prompt tokens, and its generated ones.
  Charge input, output;
  const char* energy_source = "model";  // "rapl" or "model" (see engine/meter.h)
};

struct GenEvent {
  // Text that became final with this step (complete UTF-8; stop strings held back until
  // they are decided, never included), and the tokens generated since the last event.
  std::string text;
  std::vector<GenToken> tokens;
  bool done = false;
  std::string finish_reason;  // when done: "stop", "length", "cancelled", "timeout", "error"
  std::string error;          // when finish_reason == "error"
  std::string stop_string;    // when a stop string ended it: which one
  GenUsage usage;             // when done
};
using GenSink = std::function<void(const GenEvent&)>;

struct SchedulerStats {
  int64_t waiting = 0, running = 0;
  int64_t kv_used_cells = 0, kv_total_cells = 0;  // used: positions of running sequences
  int64_t kv_used_blocks = 0, kv_total_blocks = 0;  // used: in running sequences' tables
  int64_t kv_cached_blocks = 0;  // in the prefix cache (some also used)
  int64_t kv_block_tokens = 0;   // positions per block
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;  // totals
  int64_t requests_done = 0, steps = 0;
  int64_t prefix_hits = 0;  // requests that reused at least one cached token
  Charge metered;           // every step, whole: the sum of what the requests were charged
};

class Scheduler {
 public:
  struct QueueFull : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

  Scheduler(const Model& model, const Tokenizer& tok, const SchedulerParams& params);
  ~Scheduler();  // cancels what is left and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  int64_t n_ctx() const { return n_ctx_; }
  int n_parallel() const { return int(slots_.size()); }
  const EnergyMeter& energy() const { return meter_.energy(); }
  const Prices& prices() const { return meter_.prices(); }

  // Queues a request and returns its id. The sink gets events on the scheduler thread and
  // must not block. Throws tf::Error when the prompt is empty or prompt + max_tokens cannot
  // fit a sequence's context (or the KV memory), QueueFull when the queue is full.
  uint64_t submit(GenRequest req, GenSink sink);
  // Stops a request (queued or running); its sink gets a final "cancelled" event. Unknown
  // ids (already finished) are ignored.
  void cancel(uint64_t id);
  SchedulerStats stats() const;
  // Finishes running and queued requests (drain) or cancels them, then stops the thread.
  void shutdown(bool drain);

 private:
  struct Seq;
  struct Slot {
    std::vector<TokenId> cached;  // tokens whose K/V the slot holds, in order
    std::shared_ptr<Seq> seq;     // the sequence using it, or null (then it holds nothing)
  };

  void loop();
  bool step();  // one forward pass; false when there was nothing to do
  void admit();
  void finish(Seq& s, const std::string& reason, const std::string& error = "");
  // Samples the next token from the logits; the event to send (and the finish reason, when
  // it ends) are sent after the step is metered.
  struct Pending {
    Seq* seq;
    GenEvent ev;
    std::string reason;  // empty: the sequence goes on
  };
  void on_token(Seq& s, const float* logits, std::vector<Pending>& out);
  int64_t worst_blocks(const GenRequest& r) const;  // KV blocks it may come to hold
  // The vocabulary as grammars see it, built on first use (by the submitting thread).
  std::shared_ptr<const GrammarVocab> grammar_vocab(bool render_special);
  void update_stats();  // the gauges; with mu_ held

  const Model& model_;
  const Tokenizer& tok_;
  SchedulerParams p_;
  int64_t n_ctx_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<PrefixCache> prefix_;
  std::vector<Slot> slots_;
  int64_t committed_blocks_ = 0;  // worst_blocks of the running sequences
  std::vector<float> logits_scratch_, lsm_scratch_;  // on_token's, on the scheduler thread
  StepMeter meter_;  // on the scheduler thread

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Seq>> queue_;
  std::vector<uint64_t> cancels_;
  bool stopping_ = false, draining_ = false;
  uint64_t next_id_ = 1;
  SchedulerStats stats_;
  std::vector<TokenId> eog_;  // end-of-generation ids (masked with ignore_eos)
  std::mutex vocab_mu_;
  std::shared_ptr<const GrammarVocab> grammar_vocab_[2];  // [render_special]
  std::thread thread_;
};

}  // namespace tf
