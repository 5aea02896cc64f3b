// Produces tensors row by row, converts each row to its file type on several threads, and
// streams the result to a GgufStreamWriter. Work goes in chunks of a few MiB: while one chunk
// is written to disk the next is computed, so memory stays at two chunks whatever the model.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <vector>

#include "tools/gguf_stream.h"
#include "tools/weight_quant.h"

namespace tf::tools {

class RowStreamer {
 public:
  // Fills `out` with the n_per_row floats of row `row`. Called concurrently from several
  // threads (for different rows), so it must not share mutable state between calls.
  using RowFill = std::function<void(int64_t row, float* out)>;
  // Told how many output bytes were produced since the last call.
  using OnBytes = std::function<void(uint64_t)>;

  RowStreamer(GgufStreamWriter& w, int n_threads, Effort effort = Effort::kBest);
  ~RowStreamer();

  // Appends one tensor of n_rows rows of n_per_row elements, stored as `type`.
  void rows(DType type, int64_t n_per_row, int64_t n_rows, const RowFill& fill,
            const OnBytes& on_bytes);
  // Appends bytes as they are (a tensor copied unchanged).
  void raw(const void* data, size_t n, const OnBytes& on_bytes);
  // Waits for the last write; rethrows its error.
  void flush();

 private:
  void submit(std::vector<uint8_t>& buf, size_t n);

  GgufStreamWriter& w_;
  int n_threads_;
  Effort effort_;
  std::vector<uint8_t> buf_[2];
  int next_ = 0;  // buffer to fill next
  std::future<void> pending_;
};

}  // namespace tf::tools
