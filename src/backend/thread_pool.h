// A persistent pool of worker threads for the many small parallel loops of a forward pass.
//
// A decode step runs ~10 parallel loops per layer, each lasting tens of microseconds, so
// waking threads through the kernel (futex / condition variable, several microseconds each
// way) would cost a large share of the step. Workers therefore spin on an atomic generation
// counter for a while after each job and only then sleep on a condition variable; the caller
// takes chunk 0 itself and spins until the others are done.
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

  // Runs body over [0, n) split in size() contiguous chunks whose boundaries are multiples
  // of `grain`; returns when all are done. Runs on the calling thread alone when n <= grain.
  void parallel_for(int64_t n, const Body& body, int64_t grain = 1);

 private:
  void worker(int tid);
  void run_chunk(int tid);

  int n_threads_;
  std::vector<std::thread> threads_;
  // The current job. Written by the caller before bumping generation_ (release), read by
  // workers after seeing the new generation (acquire).
  const Body* body_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  // Sleeping after a long idle spell.
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace tf
