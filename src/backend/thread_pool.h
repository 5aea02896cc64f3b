// A persistent pool of worker threads for the many small parallel loops of a forward pass.
//
// A decode step runs ~10 parallel loops per layer, each lasting tens of microseconds, so
// waking threads through the kernel (futex / condition variable, several microseconds each
// way) would cost a large share of the step. Workers therefore spin on an atomic generation
// counter for a while after each job and only then sleep on a condition variable.
//
// Participants (the caller included) claim chunks from an atomic counter, largest first: each
// claim takes a 1/(2 * threads) share of what is left, down to one grain. Big early chunks keep
// each thread streaming through long contiguous ranges; the small last ones let both threads
// finish within a grain of each other (equal fixed chunks left one thread idle for half a
// chunk on average, ~10% of a decode step), also when one vCPU runs slower than the other or
// a worker has been descheduled.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tf {

class ThreadPool {
 public:
  // Body of a parallel loop: processes [begin, end) on thread `tid`.
  using Body = std::function<void(int64_t begin, int64_t end, int tid)>;

  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs body over [0, n) in contiguous chunks whose boundaries are multiples of `grain`;
  // returns when all are done. Runs on the calling thread alone when n <= grain. Not
  // reentrant: one loop at a time.
  void parallel_for(int64_t n, const Body& body, int64_t grain = 1);

 private:
  void worker(int tid);
  // Claims and runs chunks of job `job` until none are left.
  void work_on(uint32_t job, int tid);

  int n_threads_;
  std::vector<std::thread> threads_;
  // The current job; valid while it has unfinished chunks (a claimed chunk keeps it alive).
  const Body* body_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  // ceil(n_ / grain_). Atomic because a late worker of the previous job may read it while the
  // next job is being set up (see parallel_for).
  std::atomic<int64_t> n_grains_{0};
  // High 32 bits: job id; low 32 bits: the first grain not yet claimed. Claiming compares the
  // job id, so a late worker cannot take a chunk of a newer job with an older job's view.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> remaining_{0};  // grains not yet finished
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  // Sleeping after a long idle spell.
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace tf
