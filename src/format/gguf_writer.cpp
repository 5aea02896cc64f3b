// GGUF v3 writer. The output is always something our own reader accepts (given valid
// metadata): tensor data is placed at aligned offsets in insertion order, gaps are zero-filled,
// and the file ends right after the last tensor's bytes.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <system_error>

#include "format/gguf.h"
#include "format/gguf_internal.h"

namespace tf::gguf {

namespace {

bool is_pow2(uint64_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}
uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

// Output target for serialize(): an in-memory vector or a file, so write() can stream a
// multi-gigabyte model without first building it in memory.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void append(const void* p, size_t n) = 0;
  uint64_t written() const { return written_; }

  template <typename T>
  void put(T v) {
    append(&v, sizeof v);
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    append(s.data(), s.size());
  }
  void zeros(uint64_t n) {
    static const uint8_t kZero[256] = {};
    while (n > 0) {
      size_t k = size_t(std::min<uint64_t>(n, sizeof kZero));
      append(kZero, k);
      n -= k;
    }
  }

 protected:
  uint64_t written_ = 0;
};

class VectorSink : public Sink {
 public:
  std::vector<uint8_t> bytes;
  void append(const void* p, size_t n) override {
    if (n == 0) return;
    size_t old = bytes.size();
    bytes.resize(old + n);
    std::memcpy(bytes.data() + old, p, n);
    written_ += n;
  }
};

class FileSink : public Sink {
 public:
  FileSink(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  void append(const void* p, size_t n) override {
    if (n && std::fwrite(p, 1, n, f_) != n)
      throw Error(path_ + ": write failed: " + std::system_category().message(errno));
    written_ += n;
  }

 private:
  std::FILE* f_;
  const std::string& path_;
};

[[noreturn]] void value_error(const std::string& key, const std::string& reason) {
  throw Error("gguf writer: key '" + key + "': " + reason);
}

template <typename T>
void put_int(Sink& out, const std::string& key, const Value& v, bool is_signed) {
  // Values are stored widened; refuse to silently truncate one that does not fit the type.
  if (is_signed ? (v.i < int64_t(std::numeric_limits<T>::min()) ||
                   v.i > int64_t(std::numeric_limits<T>::max()))
                : v.u > uint64_t(std::numeric_limits<T>::max()))
    value_error(key, std::string("value ") +
                         (is_signed ? std::to_string(v.i) : std::to_string(v.u)) +
                         " does not fit in " + value_type_name(v.type));
  out.put<T>(is_signed ? T(v.i) : T(v.u));
}

void put_value(Sink& out, const std::string& key, const Value& v, int depth) {
  switch (v.type) {
    case ValueType::UINT8:
      put_int<uint8_t>(out, key, v, false);
      break;
    case ValueType::INT8:
      put_int<int8_t>(out, key, v, true);
      break;
    case ValueType::UINT16:
      put_int<uint16_t>(out, key, v, false);
      break;
    case ValueType::INT16:
      put_int<int16_t>(out, key, v, true);
      break;
    case ValueType::UINT32:
      put_int<uint32_t>(out, key, v, false);
      break;
    case ValueType::INT32:
      put_int<int32_t>(out, key, v, true);
      break;
    case ValueType::UINT64:
      out.put<uint64_t>(v.u);
      break;
    case ValueType::INT64:
      out.put<int64_t>(v.i);
      break;
    case ValueType::FLOAT32:
      out.put<float>(float(v.f));
      break;
    case ValueType::FLOAT64:
      out.put<double>(v.f);
      break;
    case ValueType::BOOL:
      out.put<uint8_t>(v.b ? 1 : 0);
      break;
    case ValueType::STRING:
      out.put_string(v.str);
      break;
    case ValueType::ARRAY:
      if (depth >= detail::kMaxArrayDepth)
        value_error(key, "arrays nested more than " + std::to_string(detail::kMaxArrayDepth) +
                             " levels deep would be rejected by readers");
      if (!detail::is_valid_value_type(uint32_t(v.elem_type)))
        value_error(key, "invalid array element type " + std::to_string(uint32_t(v.elem_type)));
      out.put<uint32_t>(uint32_t(v.elem_type));
      out.put<uint64_t>(v.items.size());
      for (const Value& item : v.items) {
        if (item.type != v.elem_type)
          value_error(key, std::string("array of ") + value_type_name(v.elem_type) +
                               " holds an element of type " + value_type_name(item.type));
        put_value(out, key, item, depth + 1);
      }
      break;
    default:
      value_error(key, "invalid value type " + std::to_string(uint32_t(v.type)));
  }
}

template <typename T, typename Make>
Value make_array(ValueType elem, const std::vector<T>& xs, Make make) {
  Value v;
  v.type = ValueType::ARRAY;
  v.elem_type = elem;
  v.items.reserve(xs.size());
  for (const T& x : xs) v.items.push_back(make(x));
  return v;
}

}  // namespace

Value Writer::make_string(const std::string& s) {
  Value v;
  v.type = ValueType::STRING;
  v.str = s;
  return v;
}

Value Writer::make_u32(uint32_t x) {
  Value v;
  v.type = ValueType::UINT32;
  v.u = x;
  return v;
}

Value Writer::make_f32(float x) {
  Value v;
  v.type = ValueType::FLOAT32;
  v.f = x;
  return v;
}

void Writer::set(const std::string& key, Value v) {
  // Keep the layout alignment in step with the key, but only for values a reader accepts;
  // tests deliberately store bad alignments to produce corrupt files.
  if (key == detail::kAlignmentKey && v.type == ValueType::UINT32 && is_pow2(v.u))
    alignment_ = uint32_t(v.u);
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  }
  kv_.emplace_back(key, std::move(v));
}

void Writer::set_u32(const std::string& key, uint32_t v) {
  set(key, make_u32(v));
}

void Writer::set_i32(const std::string& key, int32_t x) {
  Value v;
  v.type = ValueType::INT32;
  v.i = x;
  set(key, std::move(v));
}

void Writer::set_u64(const std::string& key, uint64_t x) {
  Value v;
  v.type = ValueType::UINT64;
  v.u = x;
  set(key, std::move(v));
}

void Writer::set_f32(const std::string& key, float v) {
  set(key, make_f32(v));
}

void Writer::set_bool(const std::string& key, bool x) {
  Value v;
  v.type = ValueType::BOOL;
  v.b = x;
  set(key, std::move(v));
}

void Writer::set_string(const std::string& key, const std::string& v) {
  set(key, make_string(v));
}

void Writer::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  set(key, make_array(ValueType::STRING, v, make_string));
}

void Writer::set_f32_array(const std::string& key, const std::vector<float>& v) {
  set(key, make_array(ValueType::FLOAT32, v, make_f32));
}

void Writer::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  set(key, make_array(ValueType::INT32, v, [](int32_t x) {
        Value e;
        e.type = ValueType::INT32;
        e.i = x;
        return e;
      }));
}

void Writer::set_alignment(uint32_t a) {
  if (!is_pow2(a))
    throw Error("gguf writer: alignment " + std::to_string(a) + " is not a nonzero power of two");
  set_u32(detail::kAlignmentKey, a);
}

void Writer::add_tensor(const std::string& name, DType type, std::vector<int64_t> dims,
                        const void* data, size_t nbytes) {
  auto fail = [&](const std::string& reason) {
    throw Error("gguf writer: tensor '" + name + "': " + reason);
  };
  for (const PendingTensor& t : tensors_)
    if (t.name == name) fail("duplicate tensor name");
  if (dims.empty() || dims.size() > detail::kMaxDims)
    fail("has " + std::to_string(dims.size()) + " dimensions, expected 1 to " +
         std::to_string(detail::kMaxDims));
  for (int64_t d : dims)
    if (d <= 0) fail("dimension " + std::to_string(d) + " is not positive");
  auto row = row_bytes_checked(type, dims[0]);
  if (!row)
    fail("ne[0] = " + std::to_string(dims[0]) + " is not a multiple of the block size of " +
         dtype_name(type));
  size_t expect = *row;
  for (size_t d = 1; d < dims.size(); ++d)
    if (__builtin_mul_overflow(expect, size_t(dims[d]), &expect)) fail("size overflows");
  if (nbytes != expect)
    fail("data is " + std::to_string(nbytes) + " bytes, expected " + std::to_string(expect));
  if (nbytes && !data) fail("null data");
  const auto* b = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, type, std::move(dims), std::vector<uint8_t>(b, b + nbytes)});
}

namespace {

void serialize(Sink& out, const std::vector<std::pair<std::string, Value>>& kv, const auto& tensors,
               uint64_t alignment) {
  out.append(detail::kMagic, 4);
  out.put<uint32_t>(detail::kWriteVersion);
  out.put<uint64_t>(tensors.size());
  out.put<uint64_t>(kv.size());
  for (const auto& [key, value] : kv) {
    out.put_string(key);
    out.put<uint32_t>(uint32_t(value.type));
    put_value(out, key, value, 0);
  }

  std::vector<uint64_t> offsets;
  uint64_t next = 0;
  for (const auto& t : tensors) {
    next = align_up(next, alignment);
    offsets.push_back(next);
    next += t.data.size();
  }
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    out.put_string(t.name);
    out.put<uint32_t>(uint32_t(t.dims.size()));
    for (int64_t d : t.dims) out.put<uint64_t>(uint64_t(d));
    out.put<uint32_t>(uint32_t(t.type));
    out.put<uint64_t>(offsets[k]);
  }

  // No trailing padding after the last tensor: every byte of the file is then meaningful,
  // which also makes any truncation of the output detectable by the reader.
  if (tensors.empty()) return;
  uint64_t data_start = align_up(out.written(), alignment);
  out.zeros(data_start - out.written());
  for (size_t k = 0; k < tensors.size(); ++k) {
    out.zeros(data_start + offsets[k] - out.written());
    out.append(tensors[k].data.data(), tensors[k].data.size());
  }
}

}  // namespace

std::vector<uint8_t> Writer::to_bytes() const {
  VectorSink out;
  serialize(out, kv_, tensors_, alignment_);
  return std::move(out.bytes);
}

void Writer::write(const std::string& path) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot create: " + std::system_category().message(errno));
  try {
    FileSink out(f, path);
    serialize(out, kv_, tensors_, alignment_);
  } catch (...) {
    std::fclose(f);
    std::remove(path.c_str());  // don't leave a half-written model behind
    throw;
  }
  if (std::fclose(f) != 0) {
    int err = errno;
    std::remove(path.c_str());
    throw Error(path + ": write failed: " + std::system_category().message(err));
  }
}

}  // namespace tf::gguf
