// A persistent pool of worker threads for the many small parallel loops of a forward pass.
//
// A decode step runs ~10 parallel loops per layer, each lasting tens of microseconds, so
// waking threads through the kernel (futex / condition variable, several microseconds each
// way) would cost a large share of the step. Workers therefore spin on an atomic generation
// counter for a while after each job and only then sleep on a condition variable.
//
// Work is split into a few chunks per thread that participants claim from an atomic counter,
// the caller included. A worker that the OS has descheduled (a busy machine) then costs at
// most the chunk it holds, instead of stalling the whole loop until it runs again.
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
  int64_t n_ = 0, chunk_ = 1;
  int64_t n_chunks_ = 0;
  // High 32 bits: job id; low 32 bits: next chunk to claim. Claiming compares the job id, so
  // a late worker cannot take a chunk of a newer job with an older job's view.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> remaining_{0};  // chunks not yet finished
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  // Sleeping after a long idle spell.
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace tf
