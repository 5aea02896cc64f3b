// Fast CPU kernels for the hot loop of decoding: dot products of weight rows (in their file type)
// with one activation row, plus the activation conversion that feeds them.
//
// One binary runs on every x86-64 CPU: the SIMD code is compiled per function for AVX2 or
// AVX-512 and picked at run time from cpuid. Every kernel computes the exact integer sums of
// the scalar reference in tensor/quants.h (at most split over a few SIMD lanes per block);
// only the order of the float additions differs, so results agree with vec_dot to a few ulps
// of the sum of the terms' magnitudes. Types without a fast path (and the scalar level) use
// the reference itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "tensor/dtype.h"

namespace tf::kernels {

// Instruction-set levels. kAvx2 means AVX2 + FMA + F16C. kAvx512 means AVX-512 F, BW, VL and
// DQ; kernels that also want VNNI + VBMI + GFNI (the integer ones) or BF16 use them when the
// CPU has them and otherwise fall back to their AVX2 (or plain AVX-512) version.
enum class Isa { kScalar, kAvx2, kAvx512 };

// The best level this CPU (and OS: saved register state) supports; computed once.
Isa detect();
// The level in use. On first use it is detect(), lowered by the environment variable TF_ISA
// ("scalar", "avx2", "avx512"; anything else is reported once on stderr and ignored).
Isa active();
// Switches the level for all threads (tests, benchmarks); clamped to detect(). Returns the
// level actually set. Not meant to be called while other threads run kernels.
Isa set_active(Isa isa);
const char* isa_name(Isa isa);
// "scalar" / "avx2" / "avx512" (case-insensitive) -> level; nullopt for anything else.
std::optional<Isa> parse_isa(std::string_view name);

// Converts n floats (a multiple of the block size) to the activation type that weights of type
// w take, dtype_info(w).vec_dot_type, writing exactly the bytes quantize_row would write.
// out must hold row_bytes(vec_dot_type, n) bytes. Throws tf::Error like quantize_row.
void quantize_act(DType w, const float* x, void* out, int64_t n);

// out[r * out_stride] = vec_dot(w, W + r * row_stride, act, n) for r in [0, nrows). Work that
// depends only on the activations is done once per call (into a thread-local scratch buffer),
// then rows stream one after another with software prefetch: interleaving several rows was
// measured to defeat the hardware prefetcher. So give each thread one call with its whole row
// range rather than many small calls. act must come from quantize_act (the K-quant kernels rely
// on the per-16 sums it stores). Weight rows need no alignment. Throws tf::Error if n is not a
// multiple of w's block size.
void dot_rows(DType w, const void* W, size_t row_stride, int64_t nrows, const void* act, int64_t n,
              float* out, int64_t out_stride = 1);

// Whether dot_rows has a SIMD kernel for w at the active level (false: scalar reference).
bool has_fast_path(DType w);

}  // namespace tf::kernels
