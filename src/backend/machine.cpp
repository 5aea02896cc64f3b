#include "backend/machine.h"

#include "backend/kernels/kernels.h"

// GCC 12 warns inside its own AVX-512 headers about the undefined upper lanes of set1.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The probes use x86 SIMD where there is some; elsewhere bandwidth is read with plain loads
// and the arithmetic peaks are left at 0 (unknown).
#if defined(__x86_64__) || defined(__i386__)
#define TF_MACHINE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

namespace tf {

namespace {

using Clock = std::chrono::steady_clock;

#ifdef TF_MACHINE_X86
// Four independent 256-bit accumulators keep several loads in flight; the sum defeats
// dead-code elimination.
__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i*)(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i*)(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i*)(p + i + 96)));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t v[4];
  _mm256_store_si256((__m256i*)v, x);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512((const void*)(p + i)));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512((const void*)(p + i + 64)));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512((const void*)(p + i + 128)));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512((const void*)(p + i + 192)));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) uint64_t v[8];
  _mm512_store_si512((void*)v, x);
  return v[0] ^ v[1] ^ v[2] ^ v[3] ^ v[4] ^ v[5] ^ v[6] ^ v[7];
}

#endif

uint64_t read_scalar(const uint8_t* p, size_t n) {
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    uint64_t x, y;
    std::memcpy(&x, p + i, 8);
    std::memcpy(&y, p + i + 8, 8);
    a ^= x;
    b ^= y;
  }
  return a ^ b;
}

uint64_t read_block(const uint8_t* p, size_t n) {
#ifdef TF_MACHINE_X86
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx512 ? read_avx512(p, n) : avx2 ? read_avx2(p, n) : read_scalar(p, n);
#else
  return read_scalar(p, n);
#endif
}

// Runs fn(tid) on `threads` threads started together; returns the wall time in seconds.
template <class F>
double run_threads(int threads, F fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      fn(t);
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = Clock::now();
  go.store(true);
  for (auto& t : ts) t.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::atomic<uint64_t> g_sink{0};

#ifdef TF_MACHINE_X86
__attribute__((target("avx512f"))) double fma_avx512(int64_t iters) {
  __m512 a[12];
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i));
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  float s = 0;
  for (int i = 0; i < 12; ++i) s += _mm512_reduce_add_ps(a[i]);
  g_sink += uint64_t(s);
  return double(iters) * 12 * 16 * 2;
}

__attribute__((target("avx2,fma"))) double fma_avx2(int64_t iters) {
  __m256 a[12];
  const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i));
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  alignas(32) float v[8] = {};
  for (int i = 0; i < 12; ++i) _mm256_store_ps(v, _mm256_add_ps(_mm256_load_ps(v), a[i]));
  g_sink += uint64_t(v[0]);
  return double(iters) * 12 * 8 * 2;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) double dp_avx512vnni(int64_t iters) {
  __m512i a[12];
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_epi32(i);
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
  // The lanes wrap around by design; add them as 64-bit values (a 32-bit reduction would be
  // signed overflow).
  alignas(64) int32_t v[16];
  int64_t sum = 0;
  for (int i = 0; i < 12; ++i) {
    _mm512_store_si512(v, a[i]);
    for (int32_t x : v) sum += x;
  }
  g_sink += uint64_t(sum);
  return double(iters) * 12 * 64 * 2;
}

// Without VNNI, int8 products take maddubs (u8 x s8 -> s16 pairs) then madd to s32.
__attribute__((target("avx2"))) double dp_avx2(int64_t iters) {
  __m256i a[8];
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
  for (int i = 0; i < 8; ++i) a[i] = _mm256_set1_epi32(i);
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 8; ++i)
      a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), one));
  alignas(32) int32_t v[8] = {};
  for (int i = 0; i < 8; ++i)
    _mm256_store_si256((__m256i*)v, _mm256_add_epi32(_mm256_load_si256((const __m256i*)v), a[i]));
  g_sink += uint64_t(v[0]);
  return double(iters) * 8 * 32 * 2;
}

#endif  // TF_MACHINE_X86

}  // namespace

size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return got == 2 ? size_t(resident) * size_t(::sysconf(_SC_PAGESIZE)) : 0;
}

double measure_read_bandwidth(int threads, size_t bytes, int reps) {
  threads = std::max(1, threads);
  if (bytes == 0) bytes = size_t(1) << 30;
  bytes &= ~size_t(4095);
  // On huge pages where the kernel allows, as the engine holds its weights (see
  // gguf::Residency::kCopied): the limit a decoding pass over those weights can reach.
  constexpr size_t kHuge = size_t(2) << 20;
  bytes = (bytes + kHuge - 1) & ~(kHuge - 1);
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kHuge, bytes)), &std::free);
  if (!buf) return 0;
  ::madvise(buf.get(), bytes, MADV_HUGEPAGE);
  // Touch every page from the threads that will read it, so pages are really allocated.
  run_threads(threads, [&](int t) {
    const size_t part = bytes / size_t(threads) & ~size_t(127);
    std::memset(buf.get() + part * size_t(t), t + 1, part);
  });
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double s = run_threads(threads, [&](int t) {
      const size_t part = bytes / size_t(threads) & ~size_t(127);
      g_sink += read_block(buf.get() + part * size_t(t), part);
    });
    const size_t part = bytes / size_t(threads) & ~size_t(127);
    best = std::max(best, double(part * size_t(threads)) / s / 1e9);
  }
  return best;
}

AmxInfo query_amx() {
  AmxInfo a;
#ifdef TF_MACHINE_X86
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return a;
  a.bf16 = edx & (1u << 22);
  a.tile = edx & (1u << 24);
  a.int8 = edx & (1u << 25);
  if (a.tile) {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtileData = 18;
    a.granted = ::syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
  }
#endif
  return a;
}

ComputePeak measure_compute_peak(int threads) {
  threads = std::max(1, threads);
  ComputePeak p;
#ifdef TF_MACHINE_X86
  // The peaks of the kernel level in use (TF_ISA may lower it below the CPU's).
  const kernels::Isa level = kernels::active();
  const bool avx512 = level == kernels::Isa::kAvx512 && __builtin_cpu_supports("avx512f");
  const bool vnni =
      avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  const bool avx2 = level != kernels::Isa::kScalar && __builtin_cpu_supports("avx2") &&
                    __builtin_cpu_supports("fma");
  p.isa = avx512 ? (vnni ? "avx512-vnni" : "avx512") : avx2 ? "avx2" : "scalar";
  const int64_t iters = 20'000'000;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<uint64_t> flops{0}, ops{0};
    if (avx512 || avx2) {
      const double s = run_threads(threads, [&](int) {
        flops += uint64_t(avx512 ? fma_avx512(iters / 2) : fma_avx2(iters / 2));
      });
      p.fp32_gflops = std::max(p.fp32_gflops, double(flops.load()) / s / 1e9);
      const double s2 = run_threads(threads, [&](int) {
        ops += uint64_t(vnni ? dp_avx512vnni(iters / 2) : dp_avx2(iters / 2));
      });
      p.int8_gops = std::max(p.int8_gops, double(ops.load()) / s2 / 1e9);
    }
  }
#endif
  return p;
}

}  // namespace tf
