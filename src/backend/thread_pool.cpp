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
constexpr int kCallerSpins = 1 << 12;

// Chunk `tid` of [0, n) split into `parts` pieces whose boundaries are multiples of grain.
void chunk(int64_t n, int64_t grain, int parts, int tid, int64_t* begin, int64_t* end) {
  const int64_t blocks = (n + grain - 1) / grain;
  const int64_t per = blocks / parts, extra = blocks % parts;
  const int64_t b0 = tid * per + std::min<int64_t>(tid, extra);
  const int64_t b1 = b0 + per + (tid < extra ? 1 : 0);
  *begin = std::min(n, b0 * grain);
  *end = std::min(n, b1 * grain);
}

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

void ThreadPool::run_chunk(int tid) {
  int64_t b, e;
  chunk(n_, grain_, n_threads_, tid, &b, &e);
  if (b < e) (*body_)(b, e, tid);
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
    run_chunk(tid);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const Body& body, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {
    body(0, n, 0);
    return;
  }
  body_ = &body;
  n_ = n;
  grain_ = grain;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  if (sleepers_.load(std::memory_order_acquire) > 0) {
    // Taking the lock orders this notify after a worker's check-then-wait.
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  run_chunk(0);
  // Spin briefly (the others normally finish within microseconds of us), then yield: on an
  // oversubscribed machine a worker may be waiting for a time slice that our spinning holds.
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kCallerSpins) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace tf
