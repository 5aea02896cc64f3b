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
    int64_t first, count;
    do {
      if (uint32_t(c >> 32) != job) return;  // a newer job: ours is finished
      first = int64_t(c & 0xFFFFFFFFu);
      const int64_t grains = n_grains_.load(std::memory_order_acquire);
      if (first >= grains) return;
      count = std::max<int64_t>(1, (grains - first) / (2 * n_threads_));
    } while (!claim_.compare_exchange_weak(c, c + uint64_t(count), std::memory_order_acq_rel));
    // The claimed chunk keeps the job (body_, n_, grain_) alive until we finish it.
    const int64_t b = first * grain_, e = std::min(n_, (first + count) * grain_);
    (*body_)(b, e, tid);
    remaining_.fetch_sub(count, std::memory_order_acq_rel);
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
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
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
  // Grains are counted in the claim word's low 32 bits: widen the grain if there are more.
  constexpr int64_t kMaxGrains = int64_t(1) << 30;
  if (const int64_t grains = (n + grain - 1) / grain; grains > kMaxGrains)
    grain *= (grains + kMaxGrains - 1) / kMaxGrains;
  const uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
  const uint64_t job = uint64_t(uint32_t(g)) << 32;
  // Close the previous job before changing the sizes: a late worker that loaded its last claim
  // word and then reads the new, larger n_grains_ would otherwise see grains left, and its
  // compare-exchange (the claim word unchanged) would take grains of no job and subtract them
  // from the new job's count: the caller then waits forever. That worker's acquire of the new
  // n_grains_ orders this store before its compare-exchange, which therefore fails.
  claim_.store(job | 0xFFFFFFFFu, std::memory_order_relaxed);
  body_ = &body;
  n_ = n;
  grain_ = grain;
  const int64_t grains = (n + grain - 1) / grain;
  remaining_.store(grains, std::memory_order_relaxed);
  n_grains_.store(grains, std::memory_order_release);
  claim_.store(job, std::memory_order_release);
  // Sequentially consistent with the sleepers_ increment and generation_ check of a worker
  // going to sleep: either it sees the new generation or this sees it sleeping (with
  // release/acquire both could read the old values, and the worker would sleep through jobs).
  generation_.store(g, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
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
