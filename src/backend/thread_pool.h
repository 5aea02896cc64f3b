// A persistent pool of worker threads. parallel_for splits [0, n) into contiguous chunks, one
// per thread (the caller's thread takes chunk 0), so there is no thread creation per operation
// and no per-call allocation.
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

  // Runs body over [0, n) split in size() chunks aligned to `grain`; returns when all are done.
  // Falls back to the calling thread alone when n is too small to be worth splitting.
  void parallel_for(int64_t n, const Body& body, int64_t grain = 1);

 private:
  void worker(int tid);

  int n_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  const Body* body_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
};

}  // namespace tf
