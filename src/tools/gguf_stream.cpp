#include "tools/gguf_stream.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#include "util/error.h"

namespace tf::tools {
namespace {

uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

std::string errno_text() {
  return std::system_category().message(errno);
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

}  // namespace

size_t TensorSpec::nbytes() const {
  if (dims.empty()) throw Error("tensor '" + name + "' has no dimensions");
  auto row = row_bytes_checked(type, dims[0]);
  if (!row)
    throw Error("tensor '" + name + "': rows of " + std::to_string(dims[0]) +
                " elements do not fit " + dtype_name(type) + " blocks");
  return *row * size_t(n_rows());
}

int64_t TensorSpec::n_rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < dims.size(); ++i) r *= dims[i];
  return r;
}

std::vector<uint8_t> GgufStreamWriter::layout(const Metadata& kv) {
  // The metadata is serialized by gguf::Writer (one implementation of the value encoding);
  // with no tensors its output is exactly magic, version, counts and the key/value pairs, so
  // only the tensor count needs patching before the tensor table is appended here.
  gguf::Writer meta;
  for (const auto& [key, value] : kv) meta.set(key, value);
  std::vector<uint8_t> head = meta.to_bytes();
  const uint64_t n_tensors = tensors_.size();
  std::memcpy(head.data() + 8, &n_tensors, sizeof n_tensors);  // after magic and version

  uint64_t alignment = 32;
  for (const auto& [key, value] : kv)
    if (key == "general.alignment" && value.type == gguf::ValueType::UINT32 && value.u != 0 &&
        (value.u & (value.u - 1)) == 0)
      alignment = value.u;

  uint64_t rel = 0;
  std::vector<uint64_t> rel_off;
  for (const TensorSpec& t : tensors_) {
    rel = align_up(rel, alignment);
    rel_off.push_back(rel);
    size_.push_back(t.nbytes());
    rel += size_.back();
    put<uint64_t>(head, t.name.size());
    head.insert(head.end(), t.name.begin(), t.name.end());
    put<uint32_t>(head, uint32_t(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(head, uint64_t(d));
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, rel_off.back());
  }
  const uint64_t data_start = align_up(head.size(), alignment);
  for (uint64_t r : rel_off) start_.push_back(data_start + r);
  // Like gguf::Writer, no padding after the last tensor: the file ends with its last byte.
  total_ = tensors_.empty() ? head.size() : data_start + rel;
  return head;
}

GgufStreamWriter::GgufStreamWriter(const std::string& path, const Metadata& kv,
                                   std::vector<TensorSpec> tensors)
    : path_(path), tmp_path_(path + ".tmp"), tensors_(std::move(tensors)) {
  const std::vector<uint8_t> head = layout(kv);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) throw Error(tmp_path_ + ": cannot create: " + errno_text());
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  raw(head.data(), head.size());
  if (!tensors_.empty()) pad_to(start_[0]);
}

GgufStreamWriter::GgufStreamWriter(const Alloc& alloc, const Metadata& kv,
                                   std::vector<TensorSpec> tensors)
    : path_("(memory)"), tensors_(std::move(tensors)) {
  const std::vector<uint8_t> head = layout(kv);
  mem_ = alloc(total_);
  raw(head.data(), head.size());
  if (!tensors_.empty()) pad_to(start_[0]);
}

GgufStreamWriter::~GgufStreamWriter() {
  if (f_) std::fclose(f_);
  if (!finished_ && !mem_) std::remove(tmp_path_.c_str());
}

void GgufStreamWriter::raw(const void* data, size_t n) {
  if (mem_) {
    if (pos_ + n > total_) throw Error("GGUF in memory: more bytes than the layout holds");
    if (n) std::memcpy(mem_ + pos_, data, n);
    pos_ += n;
    return;
  }
  if (n && std::fwrite(data, 1, n, f_) != n)
    throw Error(tmp_path_ + ": write failed: " + errno_text());
  pos_ += n;
}

void GgufStreamWriter::pad_to(uint64_t offset) {
  static const uint8_t kZero[64] = {};
  while (pos_ < offset) raw(kZero, size_t(std::min<uint64_t>(offset - pos_, sizeof kZero)));
}

void GgufStreamWriter::write(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    while (cur_ < tensors_.size() && cur_done_ == size_[cur_]) {
      ++cur_;
      cur_done_ = 0;
      if (cur_ < tensors_.size()) pad_to(start_[cur_]);
    }
    if (cur_ == tensors_.size()) throw Error(path_ + ": more tensor data than declared");
    const size_t k = size_t(std::min<uint64_t>(n, size_[cur_] - cur_done_));
    raw(p, k);
    p += k;
    n -= k;
    cur_done_ += k;
  }
}

void GgufStreamWriter::finish() {
  if (pos_ != total_)
    throw Error(path_ + ": incomplete tensor data (" + std::to_string(pos_) + " of " +
                std::to_string(total_) + " bytes)");
  if (mem_) {
    finished_ = true;
    return;
  }
  std::FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) throw Error(tmp_path_ + ": write failed: " + errno_text());
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    throw Error(path_ + ": cannot rename " + tmp_path_ + " into place: " + errno_text());
  finished_ = true;
}

}  // namespace tf::tools
