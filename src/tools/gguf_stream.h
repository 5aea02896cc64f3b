// Writes a GGUF file whose tensor data arrives piece by piece, so that a multi-gigabyte model
// never has to sit in memory (gguf::Writer keeps every tensor's bytes until write()).
//
// The whole layout is known up front (metadata, then each tensor's name, type and shape), so
// the header is written first and the data follows in declaration order, each tensor starting
// at an aligned offset. The output is written to PATH.tmp and renamed on finish(); a writer
// destroyed before finish() (an exception) removes it, so no half-written model is left behind.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "format/gguf.h"

namespace tf::tools {

struct TensorSpec {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> dims;  // ne[0] (the row) first
  size_t nbytes() const;      // throws tf::Error for rows that do not hold whole blocks
  int64_t n_rows() const;     // product of dims[1..]
};

class GgufStreamWriter {
 public:
  using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

  // Creates the file and writes the header. general.alignment in `kv`, if present and valid,
  // sets the data alignment (default 32).
  GgufStreamWriter(const std::string& path, const Metadata& kv, std::vector<TensorSpec> tensors);
  // Writes into memory instead: `alloc(total)` is called once, as soon as the file's size is
  // known, and returns a buffer of at least that many bytes that outlives the writer.
  using Alloc = std::function<uint8_t*(uint64_t total)>;
  GgufStreamWriter(const Alloc& alloc, const Metadata& kv, std::vector<TensorSpec> tensors);
  ~GgufStreamWriter();
  GgufStreamWriter(const GgufStreamWriter&) = delete;
  GgufStreamWriter& operator=(const GgufStreamWriter&) = delete;

  // Appends data of the current tensor; moves on to the next one when it is complete. Data
  // may not run past the declared size of the last tensor.
  void write(const void* data, size_t n);
  // Checks every tensor is complete, closes and renames the file into place.
  void finish();

  uint64_t bytes_written() const { return pos_; }  // header included
  uint64_t total_bytes() const { return total_; }  // file size once finished

 private:
  std::vector<uint8_t> layout(const Metadata& kv);  // fills start_/size_/total_; the header
  void raw(const void* data, size_t n);
  void pad_to(uint64_t offset);

  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  uint8_t* mem_ = nullptr;  // memory mode: the buffer
  std::vector<TensorSpec> tensors_;
  std::vector<uint64_t> start_;  // absolute offset of each tensor's data
  std::vector<size_t> size_;
  size_t cur_ = 0;         // tensor being written
  uint64_t cur_done_ = 0;  // its bytes written so far
  uint64_t pos_ = 0, total_ = 0;
  bool finished_ = false;
};

}  // namespace tf::tools
