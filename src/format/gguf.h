// GGUF (v2, v3) reader over a read-only memory map, and a writer.
//
// The reader validates the whole header, metadata and tensor table before anything uses
// them: every count, length, dimension and offset is checked against the file size with
// overflow-safe arithmetic. Errors are tf::Error with the file name, the key or tensor, and
// the byte offset, e.g. "model.gguf: tensor 'blk.0.attn_q.weight' at offset 1234: data
// extends past end of file".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/dtype.h"
#include "util/error.h"

namespace tf::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Strings are owned copies; arrays hold their elements (possibly arrays).
struct Value {
  ValueType type = ValueType::UINT8;
  union {
    uint64_t u;  // UINT8..UINT64
    int64_t i;   // INT8..INT64
    double f;    // FLOAT32, FLOAT64
    bool b;      // BOOL
  };
  std::string str;                 // STRING
  ValueType elem_type = ValueType::UINT8;  // ARRAY: type of the elements
  std::vector<Value> items;        // ARRAY

  Value() : u(0) {}
  bool is_integer() const;
  bool is_float() const { return type == ValueType::FLOAT32 || type == ValueType::FLOAT64; }
  // Numeric views; throw tf::Error if the value is not numeric (or out of range for as_i64/u64).
  int64_t as_i64() const;
  uint64_t as_u64() const;
  double as_f64() const;
  std::string to_string(size_t max_items = 8) const;  // for `tokenfab info`
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ne[0] (innermost, contiguous) first, as in ggml
  DType type = DType::F32;
  uint64_t offset = 0;        // relative to the start of the data section
  const uint8_t* data = nullptr;  // into the mapping; valid while the File lives
  size_t nbytes = 0;
  int64_t n_elements() const;
};

// How an opened file's bytes are held in memory.
enum class Residency {
  kMapped,  // mmap of the file: pages come from the page cache on first touch; nothing copied
  kCopied,  // read into private anonymous memory, backed by 2 MiB pages where the kernel
            // allows: streaming the weights then misses the TLB about 500 times less often
            // (decoding measured ~10% faster here), and the memory is the process's own. A
            // file larger than 3/4 of physical memory is mapped instead.
};

class File {
 public:
  // Opens and validates a file. Throws tf::Error (missing, unreadable, not GGUF, corrupt).
  // progress(done, total) is called as a copied file's bytes are read (not for kMapped).
  static std::unique_ptr<File> open(const std::string& path,
                                    Residency residency = Residency::kMapped,
                                    const std::function<void(uint64_t, uint64_t)>& progress = {});
  // Parses a buffer that the caller keeps alive (tests, fuzzing). `name` is used in errors.
  static std::unique_ptr<File> from_memory(const void* data, size_t size, std::string name);
  // Takes over an anonymous mapping [region, region + region_size) (mmap'd read-write by the
  // caller) holding a file at data[0, size): a model assembled in memory (an imported Hugging
  // Face directory). It is unmapped with the File, and writable() works as on a copy.
  static std::unique_ptr<File> adopt_anonymous(void* region, size_t region_size,
                                               const uint8_t* data, size_t size, std::string name);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute offset of tensor data

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(std::string_view key) const;  // nullptr if absent
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. The "or" forms return the default when the key is absent and throw
  // tf::Error (naming the key) when it is present with an incompatible type.
  std::string get_string(std::string_view key) const;  // throws if absent
  std::string get_string_or(std::string_view key, std::string def) const;
  int64_t get_int_or(std::string_view key, int64_t def) const;   // any integer type
  double get_float_or(std::string_view key, double def) const;   // float or integer types
  bool get_bool_or(std::string_view key, bool def) const;
  // Arrays: throws if present with the wrong element type; empty vector when absent.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr if absent

  // [p, p + n) as writable memory when it lies in the process's own copy of the file
  // (Residency::kCopied), else nullptr: for rewriting weights in place once at load (tiles),
  // by the only user of the file, before anything reads them.
  uint8_t* writable(const uint8_t* p, size_t n);

 private:
  File() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* region_ = nullptr;  // what ~File unmaps (the file or the anonymous copy), if anything
  size_t region_size_ = 0;
  bool own_copy_ = false;  // base_ points into anonymous memory of our own (kCopied)
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Builds a GGUF v3 file in memory. Used by tests (small synthetic models, corrupt files)
// and by `tokenfab quantize` / `synth`.
class Writer {
 public:
  void set(const std::string& key, Value v);  // replaces an existing key, keeps order
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_alignment(uint32_t a);  // also writes general.alignment

  // Copies the bytes; dims innermost first; data size must equal row_bytes * rows.
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> dims,
                  const void* data, size_t nbytes);

  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;  // throws tf::Error on I/O failure

  static Value make_string(const std::string& s);
  static Value make_u32(uint32_t v);
  static Value make_f32(float v);

 private:
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace tf::gguf
