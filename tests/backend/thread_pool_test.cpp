// The spinning thread pool: every index visited exactly once, chunks aligned to the grain,
// back-to-back jobs (no lost wake-ups), and jobs after the workers fell asleep.
#include "backend/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace {

TEST(ThreadPool, VisitsEveryIndexOnceWithAlignedChunks) {
  for (int threads : {1, 2, 3, 5}) {
    tf::ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 4, 16}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        pool.parallel_for(
            n,
            [&](int64_t b, int64_t e, int tid) {
              EXPECT_GE(tid, 0);
              EXPECT_LT(tid, threads);
              if (b % grain != 0)
                ADD_FAILURE() << "chunk start " << b << " not aligned to " << grain;
              for (int64_t i = b; i < e; ++i) seen[size_t(i)]++;
            },
            grain);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(seen[size_t(i)].load(), 1) << n << " " << grain << " " << i;
      }
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobs) {
  tf::ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 20000; ++job)
    pool.parallel_for(8, [&](int64_t b, int64_t e, int) { total += e - b; });
  EXPECT_EQ(total.load(), 20000 * 8);
}

// Jobs of changing sizes back to back, more threads than cores: a worker still leaving one job
// while the next is set up must not claim (and count off) grains of the next one. Each job is
// checked for complete, single coverage; a miscount shows as a wrong total or a hang.
TEST(ThreadPool, BackToBackJobsOfChangingSizes) {
  tf::ThreadPool pool(4);
  std::vector<std::atomic<int>> seen(64);
  for (int job = 0; job < 100000; ++job) {
    const int64_t n = 2 + (job * 7) % 61;
    for (int64_t i = 0; i < n; ++i) seen[size_t(i)].store(0, std::memory_order_relaxed);
    pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) seen[size_t(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(seen[size_t(i)].load(), 1) << "job " << job << " i " << i;
  }
}

TEST(ThreadPool, WakesSleepingWorkers) {
  tf::ThreadPool pool(3);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // long enough to fall asleep
    // Three chunks, each waiting until all three have started: only possible if both sleeping
    // workers woke up (a thread inside a chunk cannot claim another). A lost wake-up shows as
    // a timeout, not a hang.
    std::atomic<int> started{0}, tids{0};
    std::atomic<bool> timed_out{false};
    pool.parallel_for(3, [&](int64_t, int64_t, int tid) {
      tids |= 1 << tid;
      started++;
      const auto t0 = std::chrono::steady_clock::now();
      while (started.load() < 3)
        if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(5)) {
          timed_out = true;
          break;
        }
    });
    EXPECT_FALSE(timed_out.load()) << "round " << round;
    EXPECT_EQ(tids.load(), 7);
  }
}

TEST(ThreadPool, CallerFinishesAloneWhenWorkersAreBusy) {
  // Chunks are claimed dynamically: the loop completes even if workers are slow to start.
  tf::ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 100; ++job)
    pool.parallel_for(
        1000, [&](int64_t b, int64_t e, int) { total += e - b; }, 8);
  EXPECT_EQ(total.load(), 100 * 1000);
}

}  // namespace
