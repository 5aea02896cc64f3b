#include "backend/thread_pool.h"

#include <algorithm>

namespace tf {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long an idle worker spins before sleeping: long enough to cover the gap between two
// operations of a forward pass, short enough not to burn a core between requests.
constexpr int kSpinIterations = 1 << 17;
// How long the caller spins for stragglers before yielding its core to them.
constexpr int kCallerSpins = 1 << 12;
// Chunks per thread: enough to rebalance around a preempted or slow thread, few enough that
// claiming stays negligible next to a chunk's work.
constexpr int64_t kChunksPerThread = 4;

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int t = 1; t < n_threads_; ++t) threads_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::work_on(uint32_t job, int tid) {
  for (;;) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    int64_t idx;
    do {
      if (uint32_t(c >> 32) != job) return;  // a newer job: ours is finished
      idx = int64_t(c & 0xFFFFFFFFu);
      if (idx >= n_chunks_) return;
    } while (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel));
    // The claimed chunk keeps the job (body_, n_, chunk_) alive until we finish it.
    const int64_t b = idx * chunk_, e = std::min(n_, b + chunk_);
    (*body_)(b, e, tid);
    remaining_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIterations; ++spin) {
      cpu_relax();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = g;
    work_on(uint32_t(g), tid);
  }
}

void ThreadPool::parallel_for(int64_t n, const Body& body, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {
    body(0, n, 0);
    return;
  }
  // Chunk size: a multiple of grain, about n / (threads * kChunksPerThread).
  const int64_t blocks = (n + grain - 1) / grain;
  const int64_t per = std::max<int64_t>(1, blocks / (n_threads_ * kChunksPerThread));
  body_ = &body;
  n_ = n;
  chunk_ = per * grain;
  n_chunks_ = (n + chunk_ - 1) / chunk_;
  remaining_.store(n_chunks_, std::memory_order_relaxed);
  const uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
  claim_.store(uint64_t(uint32_t(g)) << 32, std::memory_order_release);
  generation_.store(g, std::memory_order_release);
  if (sleepers_.load(std::memory_order_acquire) > 0) {
    // Taking the lock orders this notify after a worker's check-then-wait.
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  work_on(uint32_t(g), 0);
  // Spin briefly (the others normally finish within microseconds of us), then yield: on an
  // oversubscribed machine a worker may be waiting for a time slice that our spinning holds.
  for (int spin = 0; remaining_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kCallerSpins) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace tf
