// Measures the physical limits that throughput is reported against: memory read bandwidth
// (what bounds decoding) and fp32 / int8 arithmetic peaks (what bounds prompt processing).
#pragma once

#include <cstddef>
#include <vector>

namespace tf {

struct BandwidthSample {
  int threads;
  double gb_per_s;  // 1e9 bytes per second, best of the repetitions
};

// Streams a buffer much larger than the caches with `threads` threads, each reading its own
// contiguous part with wide loads. bytes = 0 picks 1 GiB.
double measure_read_bandwidth(int threads, size_t bytes = 0, int reps = 5);

struct ComputePeak {
  double fp32_gflops = 0;  // fused multiply-adds count as 2 flops
  double int8_gops = 0;    // 8-bit multiply-accumulates count as 2 ops
  const char* isa = "scalar";
};
// Peak of one thread times `threads`, measured with all threads running.
ComputePeak measure_compute_peak(int threads);

// What the CPU lists of AMX (Intel's tile units) and whether Linux grants the tile state to
// this process (arch_prctl ARCH_REQ_XCOMP_PERM). No kernel uses AMX yet; membw reports it.
struct AmxInfo {
  bool tile = false, int8 = false, bf16 = false;
  bool granted = false;  // the OS allowed the tile data state
};
AmxInfo query_amx();

// This process's resident memory (RSS) in bytes, from /proc/self/statm; 0 where unavailable.
size_t resident_bytes();

}  // namespace tf
