#include "tools/row_stream.h"

#include <algorithm>
#include <exception>
#include <thread>

#include "tensor/quants.h"

namespace tf::tools {
namespace {

constexpr size_t kChunkBytes = size_t(8) << 20;  // output per chunk

}  // namespace

RowStreamer::RowStreamer(GgufStreamWriter& w, int n_threads, Effort effort)
    : w_(w), n_threads_(std::max(1, n_threads)), effort_(effort) {}

RowStreamer::~RowStreamer() {
  if (pending_.valid()) pending_.wait();  // an error is already being reported
}

void RowStreamer::flush() {
  if (pending_.valid()) pending_.get();
}

void RowStreamer::submit(std::vector<uint8_t>& buf, size_t n) {
  flush();  // one write in flight at a time, in order
  pending_ = std::async(std::launch::async, [this, &buf, n] { w_.write(buf.data(), n); });
}

void RowStreamer::raw(const void* data, size_t n, const OnBytes& on_bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t off = 0; off < n; off += kChunkBytes) {
    const size_t k = std::min(kChunkBytes, n - off);
    std::vector<uint8_t>& buf = buf_[next_];
    next_ ^= 1;  // (the write in flight, if any, uses the other buffer)
    buf.assign(p + off, p + off + k);
    submit(buf, k);
    if (on_bytes) on_bytes(k);
  }
}

void RowStreamer::rows(DType type, int64_t n_per_row, int64_t n_rows, const RowFill& fill,
                       const OnBytes& on_bytes) {
  const size_t row_size = row_bytes(type, n_per_row);
  const int64_t chunk_rows =
      std::max<int64_t>(1, int64_t(kChunkBytes / std::max<size_t>(row_size, 1)));
  for (int64_t r0 = 0; r0 < n_rows; r0 += chunk_rows) {
    const int64_t nr = std::min(chunk_rows, n_rows - r0);
    std::vector<uint8_t>& buf = buf_[next_];
    next_ ^= 1;  // the other buffer may still be on its way to disk; this one is done
    buf.resize(size_t(nr) * row_size);

    // Each thread converts a contiguous run of rows: interleaved rows would have threads
    // writing into the same cache lines (a Q4_0 row of 64 weights is only 36 bytes). Small
    // tensors stay on one thread.
    const int n_thr =
        int(std::min<int64_t>(n_threads_, std::max<int64_t>(1, nr * n_per_row >> 14)));
    std::vector<std::exception_ptr> errors(static_cast<size_t>(n_thr));
    auto work = [&](int tid) {
      try {
        std::vector<float> tmp(static_cast<size_t>(n_per_row));
        for (int64_t r = nr * tid / n_thr; r < nr * (tid + 1) / n_thr; ++r) {
          fill(r0 + r, tmp.data());
          quantize_weights(type, tmp.data(), buf.data() + size_t(r) * row_size, n_per_row, effort_);
        }
      } catch (...) {
        errors[size_t(tid)] = std::current_exception();
      }
    };
    std::vector<std::thread> threads;
    for (int t = 1; t < n_thr; ++t) threads.emplace_back(work, t);
    work(0);
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);

    submit(buf, buf.size());
    if (on_bytes) on_bytes(buf.size());
  }
}

}  // namespace tf::tools
