// GGUF parsing and validation. Nothing read from the file is trusted until it has been checked
// against the bytes that are actually there: counts and lengths are compared with the
// remaining size *before* anything is allocated for them, and all offset arithmetic is done so
// that it cannot wrap.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <system_error>
#include <tuple>

#include "format/gguf.h"
#include "format/gguf_internal.h"

namespace tf::gguf {

// GGUF is little-endian and we read fields with memcpy; a big-endian host would need swaps.
static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a LE host");

namespace {

using detail::printable;

// Reads fields sequentially and formats errors as "<file>: <what> at offset N: <reason>",
// where `what` names the header entry, key or tensor currently being read.
struct Cursor {
  const uint8_t* base;
  size_t size;
  const std::string& file;
  size_t pos = 0;
  std::string what = "header";
  uint64_t elements = 0;  // metadata array elements parsed so far (see kMaxMetadataElements)

  [[noreturn]] void fail(uint64_t at, const std::string& reason) const {
    throw Error(file + ": " + what + " at offset " + std::to_string(at) + ": " + reason);
  }
  size_t remaining() const { return size - pos; }

  void need(size_t n, const char* field) const {
    if (n > remaining())
      fail(pos, std::string("truncated: ") + field + " needs " + std::to_string(n) +
                    " bytes, only " + std::to_string(remaining()) + " left in the file");
  }
  template <typename T>
  T read(const char* field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, base + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string read_string(const char* field) {
    size_t at = pos;
    uint64_t len = read<uint64_t>(field);
    if (len > remaining())
      fail(at, std::string(field) + " length " + std::to_string(len) + " exceeds the " +
                   std::to_string(remaining()) + " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(base + pos), size_t(len));
    pos += size_t(len);
    return s;
  }
  ValueType read_type(const char* field) {
    size_t at = pos;
    uint32_t raw = read<uint32_t>(field);
    if (!detail::is_valid_value_type(raw))
      fail(at, "invalid " + std::string(field) + " " + std::to_string(raw));
    return ValueType(raw);
  }
};

Value read_value(Cursor& c, ValueType type, int depth) {
  Value v;
  v.type = type;
  switch (type) {
    case ValueType::UINT8:
      v.u = c.read<uint8_t>("uint8 value");
      break;
    case ValueType::INT8:
      v.i = c.read<int8_t>("int8 value");
      break;
    case ValueType::UINT16:
      v.u = c.read<uint16_t>("uint16 value");
      break;
    case ValueType::INT16:
      v.i = c.read<int16_t>("int16 value");
      break;
    case ValueType::UINT32:
      v.u = c.read<uint32_t>("uint32 value");
      break;
    case ValueType::INT32:
      v.i = c.read<int32_t>("int32 value");
      break;
    case ValueType::UINT64:
      v.u = c.read<uint64_t>("uint64 value");
      break;
    case ValueType::INT64:
      v.i = c.read<int64_t>("int64 value");
      break;
    case ValueType::FLOAT32:
      v.f = c.read<float>("float32 value");
      break;
    case ValueType::FLOAT64:
      v.f = c.read<double>("float64 value");
      break;
    case ValueType::BOOL: {
      size_t at = c.pos;
      uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) c.fail(at, "bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.b = b != 0;
      break;
    }
    case ValueType::STRING:
      v.str = c.read_string("string value");
      break;
    case ValueType::ARRAY: {
      size_t at = c.pos;
      if (depth >= detail::kMaxArrayDepth)
        c.fail(at, "arrays nested more than " + std::to_string(detail::kMaxArrayDepth) +
                       " levels deep");
      v.elem_type = c.read_type("array element type");
      size_t count_at = c.pos;
      uint64_t count = c.read<uint64_t>("array length");
      // Each element needs at least min_encoded_size bytes, so this rejects absurd counts
      // before reserve() could try to allocate for them.
      uint64_t min_size = detail::min_encoded_size(v.elem_type);
      if (count > c.remaining() / min_size)
        c.fail(count_at, "array of " + std::to_string(count) + " " + value_type_name(v.elem_type) +
                             " elements cannot fit in the " + std::to_string(c.remaining()) +
                             " bytes left in the file");
      c.elements += count;
      if (c.elements > detail::kMaxMetadataElements)
        c.fail(count_at, "metadata arrays hold more than " +
                             std::to_string(detail::kMaxMetadataElements) + " elements in total");
      v.items.reserve(size_t(count));
      for (uint64_t k = 0; k < count; ++k) v.items.push_back(read_value(c, v.elem_type, depth + 1));
      break;
    }
  }
  return v;
}

bool is_pow2(uint64_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

}  // namespace

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// Reads the whole file into fresh anonymous memory whose start is 2 MiB aligned, so the kernel
// can back it with transparent huge pages. Returns the region (to unmap) and the data start.
std::pair<void*, size_t> read_anonymous(int fd, size_t size, const std::string& path,
                                        const uint8_t** data,
                                        const std::function<void(uint64_t, uint64_t)>& progress) {
  const size_t region = size + kHugePage;
  void* p = ::mmap(nullptr, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error(path + ": cannot allocate " + std::to_string(size >> 20) +
                " MiB to hold the file: " + std::system_category().message(errno));
  auto* start = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~uintptr_t(kHugePage - 1));
  // Advice only: without THP support the copy still works on normal pages.
  ::madvise(start, (size + kHugePage - 1) & ~(kHugePage - 1), MADV_HUGEPAGE);
  size_t done = 0;
  while (done < size) {
    const size_t want = std::min(size - done, size_t(64) << 20);
    const ssize_t got = ::pread(fd, start + done, want, off_t(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string why = got < 0 ? std::system_category().message(errno)
                                      : "file shrank while being read";
      ::munmap(p, region);
      throw Error(path + ": cannot read at offset " + std::to_string(done) + ": " + why);
    }
    done += size_t(got);
    if (progress) progress(done, size);
  }
  *data = start;
  return {p, region};
}

}  // namespace

std::unique_ptr<File> File::open(const std::string& path, Residency residency,
                                 const std::function<void(uint64_t, uint64_t)>& progress) {
  auto sys_error = [&](const char* op) {
    return Error(path + ": " + op + ": " + std::system_category().message(errno));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw sys_error("cannot open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Error e = sys_error("cannot stat");
    ::close(fd);
    throw e;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  if (st.st_size == 0) {
    ::close(fd);
    throw Error(path + ": empty file (0 bytes), not a GGUF model");
  }
  const size_t size = size_t(st.st_size);
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  f->size_ = size;
  // A copy bigger than most of the machine's memory would not fail cleanly (the OOM killer
  // ends the process); such a file is mapped instead, and pages in as it is read.
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0 && size > size_t(pages) / 4 * 3 * size_t(page))
    residency = Residency::kMapped;
  if (residency == Residency::kCopied) {
    try {
      std::tie(f->region_, f->region_size_) = read_anonymous(fd, size, path, &f->base_, progress);
      f->own_copy_ = true;
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
  } else {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int mmap_errno = errno;
    ::close(fd);  // the mapping keeps the file alive
    if (p == MAP_FAILED) {
      errno = mmap_errno;
      throw sys_error("cannot mmap");
    }
    f->base_ = static_cast<const uint8_t*>(p);
    f->region_ = p;
    f->region_size_ = size;
  }
  f->parse();  // ~File unmaps the region, also when this throws
  return f;
}

std::unique_ptr<File> File::from_memory(const void* data, size_t size, std::string name) {
  if (size == 0) throw Error(name + ": empty file (0 bytes), not a GGUF model");
  if (!data) throw Error(name + ": null buffer");
  std::unique_ptr<File> f(new File());
  f->path_ = std::move(name);
  f->base_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->parse();
  return f;
}

File::~File() {
  if (region_) ::munmap(region_, region_size_);
}

std::unique_ptr<File> File::adopt_anonymous(void* region, size_t region_size, const uint8_t* data,
                                            size_t size, std::string name) {
  std::unique_ptr<File> f(new File());
  f->path_ = std::move(name);
  f->region_ = region;  // ~File unmaps it, also when parse() throws
  f->region_size_ = region_size;
  f->base_ = data;
  f->size_ = size;
  f->own_copy_ = true;
  if (size == 0) throw Error(f->path_ + ": empty file (0 bytes), not a GGUF model");
  f->parse();
  return f;
}

uint8_t* File::writable(const uint8_t* p, size_t n) {
  if (!own_copy_ || p < base_ || size_t(p - base_) > size_ || n > size_ - size_t(p - base_))
    return nullptr;
  return const_cast<uint8_t*>(p);  // our own PROT_WRITE anonymous memory (read_anonymous)
}

void File::parse() {
  Cursor c{base_, size_, path_};

  // --- header ---
  if (size_ < 4) c.fail(0, "file too small to be GGUF (" + std::to_string(size_) + " bytes)");
  if (std::memcmp(base_, detail::kMagic, 4) != 0) {
    // A writer that stored the magic as a big-endian u32 produces "FUGG".
    if (std::memcmp(base_, "FUGG", 4) == 0) c.fail(0, "big-endian GGUF files are not supported");
    char hex[32];
    std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", base_[0], base_[1], base_[2], base_[3]);
    c.fail(0, std::string("not a GGUF file (magic bytes ") + hex + ", expected 'GGUF')");
  }
  c.pos = 4;
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    // A big-endian file has its small version number in the high bytes.
    uint32_t swapped = __builtin_bswap32(version_);
    if (swapped >= 1 && swapped <= 3)
      c.fail(4, "big-endian GGUF files are not supported (version field reads as " +
                    std::to_string(version_) + ")");
    if (version_ == 1) c.fail(4, "GGUF version 1 is not supported (only versions 2 and 3 are)");
    c.fail(4,
           "unsupported GGUF version " + std::to_string(version_) + " (only versions 2 and 3 are)");
  }
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");

  // The smallest possible entries: a key-value pair is an empty key (8), a type (4) and a
  // one-byte value; a tensor is an empty name (8), n_dims (4), one dim (8), type (4) and
  // offset (8). Counts that cannot fit are rejected before reserving anything.
  constexpr uint64_t kMinKv = 8 + 4 + 1, kMinTensor = 8 + 4 + 8 + 4 + 8;
  if (n_kv > c.remaining() / kMinKv)
    c.fail(16, "metadata count " + std::to_string(n_kv) + " cannot fit in the " +
                   std::to_string(c.remaining()) + " bytes left in the file");
  if (n_tensors > c.remaining() / kMinTensor ||
      n_kv * kMinKv + n_tensors * kMinTensor > c.remaining())
    c.fail(8, "tensor count " + std::to_string(n_tensors) + " (with " + std::to_string(n_kv) +
                  " metadata entries) cannot fit in the " + std::to_string(c.remaining()) +
                  " bytes left in the file");

  // --- metadata ---
  std::vector<size_t> kv_offsets;
  kv_.reserve(size_t(n_kv));
  kv_offsets.reserve(size_t(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    size_t at = c.pos;
    c.what = "metadata entry #" + std::to_string(k);
    std::string key = c.read_string("key");
    c.what = "key '" + printable(key) + "' (#" + std::to_string(k) + ")";
    if (auto it = kv_index_.find(key); it != kv_index_.end())
      c.fail(at, "duplicate key (first defined by entry #" + std::to_string(it->second) +
                     " at offset " + std::to_string(kv_offsets[it->second]) + ")");
    ValueType type = c.read_type("value type");
    Value v = read_value(c, type, 0);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
    kv_offsets.push_back(at);
  }

  if (auto it = kv_index_.find(detail::kAlignmentKey); it != kv_index_.end()) {
    const Value& v = kv_[it->second].second;
    c.what =
        std::string("key '") + detail::kAlignmentKey + "' (#" + std::to_string(it->second) + ")";
    size_t at = kv_offsets[it->second];
    if (v.type != ValueType::UINT32)
      c.fail(at, std::string("alignment must be a uint32, got ") + value_type_name(v.type));
    if (!is_pow2(v.u))
      c.fail(at, "alignment " + std::to_string(v.u) + " is not a nonzero power of two");
    alignment_ = v.u;
  } else {
    alignment_ = detail::kDefaultAlignment;
  }

  // --- tensor table ---
  std::vector<size_t> info_offsets;
  tensors_.reserve(size_t(n_tensors));
  info_offsets.reserve(size_t(n_tensors));
  for (uint64_t t = 0; t < n_tensors; ++t) {
    size_t at = c.pos;
    c.what = "tensor #" + std::to_string(t);
    TensorInfo ti;
    ti.name = c.read_string("tensor name");
    c.what = "tensor '" + printable(ti.name) + "' (#" + std::to_string(t) + ")";
    if (auto it = tensor_index_.find(ti.name); it != tensor_index_.end())
      c.fail(at,
             "duplicate tensor name (first defined by tensor #" + std::to_string(it->second) + ")");

    size_t ndims_at = c.pos;
    uint32_t n_dims = c.read<uint32_t>("n_dims");
    if (n_dims == 0 || n_dims > detail::kMaxDims)
      c.fail(ndims_at, "n_dims " + std::to_string(n_dims) + " is not in [1, " +
                           std::to_string(detail::kMaxDims) + "]");
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      size_t dim_at = c.pos;
      uint64_t ne = c.read<uint64_t>("dimension");
      if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max()))
        c.fail(dim_at, "dimension ne[" + std::to_string(d) + "] = " + std::to_string(int64_t(ne)) +
                           " is not positive");
      if (__builtin_mul_overflow(n_elements, int64_t(ne), &n_elements))
        c.fail(dim_at, "element count overflows at dimension ne[" + std::to_string(d) + "]");
      ti.dims.push_back(int64_t(ne));
    }

    size_t type_at = c.pos;
    uint32_t raw_type = c.read<uint32_t>("tensor type");
    const DTypeInfo* info = dtype_info(raw_type);
    if (!info) c.fail(type_at, "unknown tensor type id " + std::to_string(raw_type));
    ti.type = info->type;
    if (ti.dims[0] % info->block_size != 0)
      c.fail(type_at, "ne[0] = " + std::to_string(ti.dims[0]) +
                          " is not a multiple of the block size " +
                          std::to_string(info->block_size) + " of type " + info->name);
    auto row = row_bytes_checked(ti.type, ti.dims[0]);
    uint64_t nbytes = row ? uint64_t(*row) : 0;
    bool overflow = !row;
    for (size_t d = 1; d < ti.dims.size() && !overflow; ++d)
      overflow = __builtin_mul_overflow(nbytes, uint64_t(ti.dims[d]), &nbytes);
    if (overflow || nbytes > c.size)
      c.fail(type_at, "data size of " + std::to_string(n_elements) + " " + info->name +
                          " elements exceeds the file size (" + std::to_string(c.size) + " bytes)");
    ti.nbytes = size_t(nbytes);

    size_t offset_at = c.pos;
    ti.offset = c.read<uint64_t>("tensor data offset");
    if (ti.offset % alignment_ != 0)
      c.fail(offset_at, "data offset " + std::to_string(ti.offset) +
                            " is not a multiple of the alignment " + std::to_string(alignment_));

    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
    info_offsets.push_back(at);
  }

  // --- data section ---
  // pos <= size and alignment <= 2^31, so this cannot wrap.
  data_offset_ = (uint64_t(c.pos) + alignment_ - 1) / alignment_ * alignment_;
  auto what_tensor = [&](size_t t) {
    return "tensor '" + printable(tensors_[t].name) + "' (#" + std::to_string(t) + ")";
  };
  auto range = [](uint64_t a, uint64_t b) {
    std::string r = "[";
    r += std::to_string(a);
    r += ", ";
    r += std::to_string(b);
    r += ")";
    return r;
  };
  for (size_t t = 0; t < tensors_.size(); ++t) {
    TensorInfo& ti = tensors_[t];
    c.what = what_tensor(t);
    if (ti.offset > size_)
      c.fail(info_offsets[t], "data offset " + std::to_string(ti.offset) +
                                  " lies past end of file (" + std::to_string(size_) + " bytes)");
    // data_offset_ <= size + alignment and offset, nbytes <= size, so the sums cannot wrap.
    uint64_t start = data_offset_ + ti.offset;
    uint64_t end = start + ti.nbytes;
    if (end > size_)
      c.fail(info_offsets[t], "data " + range(start, end) + " extends past end of file (" +
                                  std::to_string(size_) + " bytes)");
    ti.data = base_ + start;
  }

  // Tensors must not share bytes: a writer bug or a crafted file could otherwise make one
  // tensor's in-place update (or quantized reinterpretation) corrupt another.
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& prev = tensors_[order[k - 1]];
    const TensorInfo& cur = tensors_[order[k]];
    if (prev.offset + prev.nbytes > cur.offset) {
      c.what = what_tensor(order[k]);
      c.fail(info_offsets[order[k]],
             "data " + range(data_offset_ + cur.offset, data_offset_ + cur.offset + cur.nbytes) +
                 " overlaps " + what_tensor(order[k - 1]) + " at " +
                 range(data_offset_ + prev.offset, data_offset_ + prev.offset + prev.nbytes));
    }
  }
}

}  // namespace tf::gguf
