// CPU detection, the per-level kernel tables, and the public entry points.
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <string>

#include "backend/kernels/internal.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "util/error.h"

#ifdef TF_KERNELS_X86
#include <cpuid.h>
#endif

namespace tf::kernels {
namespace detail {
namespace {

#ifdef TF_KERNELS_X86
// XCR0: which register files the OS saves on context switch. Without OS support the
// instructions fault even if cpuid lists them.
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

Features query_cpu() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12),
             f16c = c & (1u << 29);
  if (!osxsave || !avx || !fma || !f16c) return f;
  const uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return f;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5), bmi1 = b & (1u << 3), bmi2 = b & (1u << 8);
  f.avx2 = avx2 && bmi1 && bmi2;
  const bool zmm_state = (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM0-15 upper halves, ZMM16-31
  const bool f512 = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  f.avx512 = f.avx2 && zmm_state && f512 && dq && bw && vl;
  const bool vbmi = c & (1u << 1), gfni = c & (1u << 8), vnni = c & (1u << 11);
  f.vnni = f.avx512 && vnni && vbmi && gfni;
  unsigned a1 = 0, b1, c1, d1;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) f.bf16 = f.avx512 && (a1 & (1u << 5));
  return f;
}
#else
Features query_cpu() {
  return {};
}
#endif

std::atomic<bool> g_fast{false};  // the numerics in force (set_numerics)

Features level_features(Isa isa) {
  Features f = cpu_features();
  f.fast = g_fast.load();
  if (isa == Isa::kScalar) return Features{false, false, false, false, f.fast};
  if (isa == Isa::kAvx2) return Features{f.avx2, false, false, false, f.fast};
  return f;
}

// Tables are immutable once published; the list only grows (tests may build a few), so
// pointers handed out stay valid.
std::mutex g_mu;
std::list<Table> g_tables;
std::atomic<const Table*> g_active{nullptr};

const Table* publish(Features f) {
  std::lock_guard<std::mutex> lock(g_mu);
  f = clamp(f);
  for (const Table& t : g_tables) {
    if (t.features.avx2 == f.avx2 && t.features.avx512 == f.avx512 && t.features.vnni == f.vnni &&
        t.features.bf16 == f.bf16 && t.features.fast == f.fast)
      return &t;
  }
  g_tables.push_back(make_table(f));
  return &g_tables.back();
}

Isa level_of(const Features& f) {
  return f.avx512 ? Isa::kAvx512 : f.avx2 ? Isa::kAvx2 : Isa::kScalar;
}

const Table* initial_table() {
  Isa isa = detect();
  if (const char* env = std::getenv("TF_ISA"); env && *env) {
    if (auto want = parse_isa(env)) {
      if (static_cast<int>(*want) < static_cast<int>(isa)) isa = *want;
    } else {
      std::fprintf(stderr, "tokenfab: ignoring unknown TF_ISA=%s (use scalar, avx2 or avx512)\n",
                   env);
    }
  }
  if (const char* env = std::getenv("TF_NUMERICS"); env && *env) {
    if (auto want = parse_numerics(env))
      g_fast = *want == Numerics::kFast;
    else
      std::fprintf(stderr, "tokenfab: ignoring unknown TF_NUMERICS=%s (use exact or fast)\n", env);
  }
  return publish(level_features(isa));
}

}  // namespace

uint8_t* act_scratch(size_t bytes) {
  struct Buf {
    uint8_t* p = nullptr;
    size_t size = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.size < bytes) {
    const size_t size = (bytes + 4095) & ~size_t(4095);
    auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, size));
    if (!p) throw std::bad_alloc();
    std::free(buf.p);
    buf.p = p;
    buf.size = size;
  }
  return buf.p;
}

Features cpu_features() {
  static const Features f = query_cpu();
  return f;
}

Features clamp(Features f) {
  const Features c = cpu_features();
  Features r;
  r.avx2 = f.avx2 && c.avx2;
  r.avx512 = r.avx2 && f.avx512 && c.avx512;
  r.vnni = r.avx512 && f.vnni && c.vnni;
  r.bf16 = r.avx512 && f.bf16 && c.bf16;
  r.fast = f.fast;
  return r;
}

Table make_table(Features f) {
  Table t;
  t.features = f;
#ifdef TF_KERNELS_X86
  // Later entries overwrite earlier ones, so the best kernel for each type wins.
  if (f.avx2) {
    add_quant_avx2(t);
    add_legacy_avx2(t);
    add_kquants_avx2(t);
    add_float_avx2(t);
    add_rows_avx2(t);
    add_gemm_avx2(t);
  }
  if (f.avx512) {
    add_legacy_avx512(t, f);
    add_kquants_avx512(t, f);
    add_float_avx512(t, f);
    add_gemm_avx512(t, f);
    add_rows_avx512(t);
    add_tiles_avx512(t, f);
  }
#endif
  return t;
}

const Table& active_table() {
  const Table* t = g_active.load(std::memory_order_acquire);
  if (t) return *t;
  static const Table* const init = initial_table();  // env read once, thread-safe
  const Table* expected = nullptr;
  g_active.compare_exchange_strong(expected, init, std::memory_order_acq_rel);
  return *g_active.load(std::memory_order_acquire);
}

void set_active_features(Features f) {
  g_active.store(publish(f), std::memory_order_release);
}

}  // namespace detail

Isa detect() {
  return detail::level_of(detail::cpu_features());
}

Isa active() {
  return detail::level_of(detail::active_table().features);
}

Isa set_active(Isa isa) {
  detail::set_active_features(detail::level_features(isa));
  return active();
}

Numerics numerics() {
  return detail::active_table().features.fast ? Numerics::kFast : Numerics::kExact;
}

void set_numerics(Numerics n) {
  detail::Features f = detail::active_table().features;
  f.fast = n == Numerics::kFast;
  detail::g_fast = f.fast;
  detail::set_active_features(f);
}

std::optional<Numerics> parse_numerics(std::string_view name) {
  if (name == "exact") return Numerics::kExact;
  if (name == "fast") return Numerics::kFast;
  return std::nullopt;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

std::optional<Isa> parse_isa(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (s == isa_name(isa)) return isa;
  return std::nullopt;
}

namespace {

int64_t check_blocks(DType t, int64_t n, const char* what) {
  const DTypeInfo& info = dtype_info(t);
  if (n < 0 || n % info.block_size != 0) {
    throw Error(std::string(what) + ": " + std::to_string(n) + " elements is not a multiple of " +
                info.name + "'s block size " + std::to_string(info.block_size));
  }
  return n / info.block_size;
}

}  // namespace

void quantize_act(DType w, const float* x, void* out, int64_t n) {
  const DType a = dtype_info(w).vec_dot_type;
  const size_t s = detail::slot(a);
  const detail::Table& t = detail::active_table();
  if (s < detail::kTypeSlots && t.quant[s]) {
    check_blocks(a, n, "quantize_act");
    return t.quant[s](x, out, n);
  }
  quantize_row(a, x, out, n);
}

void dot_rows(DType w, const void* W, size_t row_stride, int64_t nrows, const void* act, int64_t n,
              float* out, int64_t out_stride) {
  const size_t s = detail::slot(w);
  const detail::Table& t = detail::active_table();
  if (s < detail::kTypeSlots && t.dot[s]) {
    check_blocks(w, n, "dot_rows");
    if (nrows <= 0) return;
    return t.dot[s](static_cast<const uint8_t*>(W), row_stride, nrows,
                    static_cast<const uint8_t*>(act), n, out, out_stride);
  }
  const auto* base = static_cast<const uint8_t*>(W);
  for (int64_t r = 0; r < nrows; ++r)
    out[r * out_stride] = vec_dot(w, base + size_t(r) * row_stride, act, n);
}

void gemm(DType w, const void* W, size_t row_stride, int64_t nrows, const void* acts,
          size_t act_stride, int64_t ntok, int64_t n, float* out, int64_t out_row_stride) {
  const size_t s = detail::slot(w);
  const detail::Table& t = detail::active_table();
  check_blocks(w, n, "gemm");
  if (nrows <= 0 || ntok <= 0) return;
  const auto* a = static_cast<const uint8_t*>(acts);
  if (s < detail::kTypeSlots && t.gemm[s].run) {
    return t.gemm[s].run(static_cast<const uint8_t*>(W), row_stride, nrows, a, act_stride, ntok, n,
                         out, out_row_stride);
  }
  for (int64_t k = 0; k < ntok; ++k)
    dot_rows(w, W, row_stride, nrows, a + size_t(k) * act_stride, n, out + k * out_row_stride);
}

bool has_gemm(DType w) {
  const size_t s = detail::slot(w);
  return s < detail::kTypeSlots && detail::active_table().gemm[s].run != nullptr;
}

size_t gemm_act_bytes(DType w, int64_t n) {
  const size_t s = detail::slot(w);
  const detail::Table& t = detail::active_table();
  check_blocks(w, n, "gemm_act_bytes");
  return s < detail::kTypeSlots && t.gemm[s].run ? t.gemm[s].act_bytes(n) : 0;
}

void gemm_prepare(DType w, const void* act, int64_t n, void* out) {
  const size_t s = detail::slot(w);
  const detail::Table& t = detail::active_table();
  check_blocks(w, n, "gemm_prepare");
  if (s >= detail::kTypeSlots || !t.gemm[s].run)
    throw Error(std::string("gemm_prepare: no matrix kernel for ") + dtype_name(w));
  t.gemm[s].prep(static_cast<const uint8_t*>(act), n, static_cast<uint8_t*>(out));
}

void gemm_prepared(DType w, const void* W, size_t row_stride, int64_t nrows, const void* prepared,
                   int64_t ntok, int64_t n, float* out, int64_t out_row_stride) {
  const size_t s = detail::slot(w);
  const detail::Table& t = detail::active_table();
  check_blocks(w, n, "gemm_prepared");
  if (s >= detail::kTypeSlots || !t.gemm[s].run)
    throw Error(std::string("gemm_prepared: no matrix kernel for ") + dtype_name(w));
  if (nrows <= 0 || ntok <= 0) return;
  t.gemm[s].run_prepared(static_cast<const uint8_t*>(W), row_stride, nrows,
                         static_cast<const uint8_t*>(prepared), ntok, n, out, out_row_stride);
}

SoftmaxFn softmax_fn() {
  return detail::active_table().rows.softmax;
}

SiluMulFn silu_mul_fn() {
  return detail::active_table().rows.silu_mul;
}

void f32_to_f16_row(const float* x, uint16_t* out, int64_t n) {
  if (auto f = detail::active_table().rows.to_f16) return f(x, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_fp16(x[i]);
}

void round_to_f16(float* x, int64_t n) {
  if (auto f = detail::active_table().rows.round_f16) return f(x, n);
  for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

void dot_f16_rows(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a, int64_t n,
                  DotKernel kernel, float scale, float* out) {
  if (auto f = detail::active_table().rows.dot_f16)
    return f(w, stride, rows, a, n, kernel == DotKernel::Sgemm, scale, out);
  for (int64_t r = 0; r < rows; ++r)
    out[r] = vec_dot(DType::F16, w + size_t(r) * stride, a, n, kernel) * scale;
}

void dot_f16_rows_group(const uint16_t* w, size_t stride, int64_t rows, const uint16_t* a,
                        size_t a_stride, int64_t m, int64_t n, DotKernel kernel, float scale,
                        float* out, size_t out_stride) {
  if (auto f = detail::active_table().rows.dot_f16_group;
      f && kernel == DotKernel::VecDot && rows > 0 &&
      f(w, stride, rows, a, a_stride, m, n, scale, out, out_stride))
    return;
  for (int64_t h = 0; h < m; ++h)
    dot_f16_rows(w, stride, rows, a + size_t(h) * a_stride, n, kernel, scale,
                 out + size_t(h) * out_stride);
}

bool has_fast_path(DType w) {
  const size_t s = detail::slot(w);
  return s < detail::kTypeSlots && detail::active_table().dot[s] != nullptr;
}

}  // namespace tf::kernels
