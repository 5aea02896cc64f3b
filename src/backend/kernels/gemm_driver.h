// The loop structure shared by the matrix kernels of every ISA (gemm_avx2.cpp,
// gemm_avx512.cpp): token chunks sized for L2, tiles of rows unpacked once into a panel,
// chunks of the reduction dimension sized for L1, register tiles of rows x tokens. It holds no
// SIMD code itself (it only calls the per-type functions, which carry the target attributes),
// so it can be compiled for the baseline.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "backend/kernels/internal.h"

namespace tf::kernels::detail {
namespace {

// Prepared activations per token chunk: about half of a 1 MiB L2, leaving room for the panel.
// (Measured on Zen 5: 384 KiB beat 768 KiB and 1.5 MiB by 7-15%.)
constexpr size_t kActBudget = size_t(384) << 10;

constexpr size_t align64(size_t x) {
  return (x + 63) & ~size_t(63);
}

// K describes one weight type: kR rows and up to kT tokens per micro-kernel call, the bytes of
// one token's prepared activations and of one panel, prep (one token), pack (up to kR rows;
// missing rows become zeros), units(n) (steps of the reduction dimension, kChunk of them per
// pass) and micro<T>. The driver itself needs no SIMD: it only calls them.
//
// micro<T> runs units [u0, u1) for kR rows and T tokens. Its accumulators (up to 16 floats
// per row and token, at acc + 16 (t kR + r)) start from zero when first, else from acc, and
// are saved back to acc unless last, when they are reduced into out instead. Splitting the
// reduction dimension this way keeps a panel chunk and the tokens' matching activations in L1; as
// the accumulators carry over unchanged, the summation order is the same as in one pass.
struct Acc {
  float* acc;  // 16 floats per row and token
  bool first, last;
};

template <class K, int T>
void micro_upto(int nt, const uint8_t* panel, const uint8_t* a, size_t ab, int64_t n, int64_t u0,
                int64_t u1, Acc acc, float* o, int64_t os, int nr) {
  if constexpr (T >= 1) {
    if (nt == T) return K::template micro<T>(panel, a, ab, n, u0, u1, acc, o, os, nr);
    micro_upto<K, T - 1>(nt, panel, a, ab, n, u0, u1, acc, o, os, nr);
  }
}

// Bytes between prepared tokens.
template <class K>
size_t act_bytes_of(int64_t n) {
  return align64(K::act_bytes(n));
}

// The loops over one chunk of nt prepared tokens (a: act_bytes_of<K>(n) apart), with the panel and
// accumulator scratch given.
template <class K>
void run_chunk(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* a, int64_t nt,
               int64_t n, float* out, int64_t os, uint8_t* panel, float* accbuf) {
  const size_t ab = act_bytes_of<K>(n);
  const int64_t units = K::units(n);
  for (int64_t r0 = 0; r0 < nrows; r0 += K::kR) {
    const int nr = int(std::min<int64_t>(K::kR, nrows - r0));
    K::pack(w + size_t(r0) * stride, stride, nr, n, panel);
    // The next tile's rows, into L2 while this one computes.
    if (r0 + K::kR < nrows) {
      const int nn = int(std::min<int64_t>(K::kR, nrows - r0 - K::kR));
      const size_t rb = K::row_bytes(n);
      for (int r = 0; r < nn; ++r) {
        const char* p = reinterpret_cast<const char*>(w + size_t(r0 + K::kR + r) * stride);
        for (size_t o = 0; o < rb; o += 64)
          __builtin_prefetch(p + o, 0, 2);  // into L2 (prefetcht1)
      }
    }
    float* o = out + r0;
    for (int64_t u0 = 0; u0 < units; u0 += K::kChunk) {
      const int64_t u1 = std::min(units, u0 + K::kChunk);
      int64_t t = 0;
      for (; t + K::kT <= nt; t += K::kT) {
        const Acc acc{accbuf + t * K::kR * 16, u0 == 0, u1 == units};
        K::template micro<K::kT>(panel, a + size_t(t) * ab, ab, n, u0, u1, acc, o + t * os, os, nr);
      }
      if (t < nt) {
        const Acc acc{accbuf + t * K::kR * 16, u0 == 0, u1 == units};
        micro_upto<K, K::kT - 1>(int(nt - t), panel, a + size_t(t) * ab, ab, n, u0, u1, acc,
                                 o + t * os, os, nr);
      }
    }
  }
}

// Tokens per chunk: their prepared activations fit kActBudget.
template <class K>
int64_t chunk_tokens(int64_t n, int64_t ntok) {
  int64_t tc = std::max<int64_t>(1, int64_t(kActBudget / act_bytes_of<K>(n)));
  if (tc >= K::kT) tc = tc / K::kT * K::kT;
  return std::min(tc, ntok);
}

// Panel, accumulators and (when prep) a chunk of prepared activations, in act_scratch.
template <class K>
uint8_t* gemm_scratch(int64_t n, int64_t tc, bool prep, float** accbuf, uint8_t** a) {
  const size_t pb = align64(K::panel_bytes(n));
  const size_t accb = size_t(tc + K::kT) * K::kR * 16 * sizeof(float);
  uint8_t* panel = act_scratch(pb + accb + (prep ? size_t(tc) * act_bytes_of<K>(n) : 0));
  *accbuf = reinterpret_cast<float*>(panel + pb);
  *a = panel + pb + accb;
  return panel;
}

// gemm: activations from quantize_act, prepared a chunk at a time.
template <class K>
void run_gemm(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* acts, size_t as,
              int64_t ntok, int64_t n, float* out, int64_t os) {
  const size_t ab = act_bytes_of<K>(n);
  const int64_t tc = chunk_tokens<K>(n, ntok);
  float* accbuf;
  uint8_t* a;
  uint8_t* panel = gemm_scratch<K>(n, tc, true, &accbuf, &a);
  for (int64_t t0 = 0; t0 < ntok; t0 += tc) {
    const int64_t nt = std::min(tc, ntok - t0);
    for (int64_t t = 0; t < nt; ++t) K::prep(acts + size_t(t0 + t) * as, n, a + size_t(t) * ab);
    run_chunk<K>(w, stride, nrows, a, nt, n, out + t0 * os, os, panel, accbuf);
  }
}

// gemm_prepared: all tokens already prepared (act_bytes_of<K>(n) apart).
template <class K>
void run_gemm_prepared(const uint8_t* w, size_t stride, int64_t nrows, const uint8_t* prepared,
                       int64_t ntok, int64_t n, float* out, int64_t os) {
  const size_t ab = act_bytes_of<K>(n);
  const int64_t tc = chunk_tokens<K>(n, ntok);
  float* accbuf;
  uint8_t* a;
  uint8_t* panel = gemm_scratch<K>(n, tc, false, &accbuf, &a);
  for (int64_t t0 = 0; t0 < ntok; t0 += tc)
    run_chunk<K>(w, stride, nrows, prepared + size_t(t0) * ab, std::min(tc, ntok - t0), n,
                 out + t0 * os, os, panel, accbuf);
}

// The table entry for a type whose kernels K describes.
template <class K>
GemmOps gemm_ops() {
  return GemmOps{run_gemm<K>, run_gemm_prepared<K>, act_bytes_of<K>, K::prep};
}

}  // namespace
}  // namespace tf::kernels::detail
