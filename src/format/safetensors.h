// Safetensors reader (Hugging Face's weight format), strict in the same way as the GGUF reader.
//
// A file is: u64 little-endian header length N, N bytes of JSON, then the tensor data. The
// JSON object maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data start), plus an optional "__metadata__" object of strings.
// Everything is checked before use: N against the file, the JSON shape, each dtype and shape
// (element counts overflow-checked), end - begin == elements x element size, offsets inside
// the data, no two tensors overlapping, no duplicate names. Errors are tf::Error naming the
// file and the tensor, e.g. "model.safetensors: tensor 'lm_head.weight': data_offsets
// [0, 96] do not match shape [4, 8] of F32 (128 bytes)".
//
// A model directory holds one file (model.safetensors) or shards listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file name); ShardSet opens
// and cross-checks either form.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/dtype.h"
#include "util/error.h"

namespace tf::safetensors {

// The header length limit: real headers are a few hundred KiB even for thousands of tensors.
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

struct Tensor {
  std::string name;
  std::string dtype;       // as written: "F32", "BF16", "I64", ...
  bool supported = false;  // dtype is F32, F16 or BF16 (then `type` is set)
  DType type = DType::F32;
  std::vector<int64_t> shape;     // outermost first (row-major, as PyTorch)
  uint64_t begin = 0, end = 0;    // data_offsets
  const uint8_t* data = nullptr;  // into the file's bytes
  size_t nbytes = 0;
  int64_t n_elements() const;
};

class File {
 public:
  // Maps and validates a file. Throws tf::Error.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses a buffer that the caller keeps alive (tests, fuzzing). `name` is used in errors.
  static std::unique_ptr<File> from_memory(const void* data, size_t size, std::string name);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<Tensor>& tensors() const { return tensors_; }  // in header order
  const Tensor* find(std::string_view name) const;                 // nullptr if absent
  // "__metadata__" (absent: empty). Torch writers record tied weights here as
  // {removed name: kept name}; see ShardSet::find.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  File() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// The weights of a model directory: one file or a sharded set.
class ShardSet {
 public:
  // Opens dir/model.safetensors.index.json and its shards if the index exists, else
  // dir/model.safetensors. Throws tf::Error for a missing file, a bad index (shard names must
  // be plain file names inside dir), a tensor in two shards or one the index places wrongly.
  static ShardSet open_dir(const std::string& dir);
  // Parses an index's JSON text (exposed for tests and fuzzing): tensor name -> shard name.
  static std::map<std::string, std::string> parse_index(std::string_view json,
                                                        const std::string& name);

  // The tensor by name, following a "__metadata__" alias when the name itself is absent
  // (torch's save_model drops a tied copy and records it as an alias). nullptr if neither.
  const Tensor* find(std::string_view name) const;
  // Every tensor, with the file holding it, sorted by name.
  std::vector<const Tensor*> all() const;
  const std::vector<std::unique_ptr<File>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<File>> files_;
  std::map<std::string, const Tensor*, std::less<>> by_name_;
  std::map<std::string, std::string, std::less<>> aliases_;
};

}  // namespace tf::safetensors
