// Safetensors parsing and validation. Nothing from the header is trusted until it has been
// checked against the bytes that are there; all size arithmetic is overflow-checked.
#include "format/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "format/json_strict.h"
#include "util/file.h"

namespace tf::safetensors {

static_assert(std::endian::native == std::endian::little, "safetensors is little-endian");

namespace {

using nlohmann::json;

struct DtypeDesc {
  const char* name;
  size_t size;
  bool supported;
  DType type;
};

// Every dtype the format defines, so that a model with, say, an I64 buffer still validates;
// only F32, F16 and BF16 can be loaded as weights.
constexpr DtypeDesc kDtypes[] = {
    {"F32", 4, true, DType::F32},      {"F16", 2, true, DType::F16},
    {"BF16", 2, true, DType::BF16},    {"F64", 8, false, DType::F32},
    {"I64", 8, false, DType::F32},     {"U64", 8, false, DType::F32},
    {"I32", 4, false, DType::F32},     {"U32", 4, false, DType::F32},
    {"I16", 2, false, DType::F32},     {"U16", 2, false, DType::F32},
    {"I8", 1, false, DType::F32},      {"U8", 1, false, DType::F32},
    {"BOOL", 1, false, DType::F32},    {"F8_E4M3", 1, false, DType::F32},
    {"F8_E5M2", 1, false, DType::F32},
};

const DtypeDesc* find_dtype(const std::string& s) {
  for (const DtypeDesc& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// A non-negative JSON integer (nlohmann stores those as unsigned); nullopt for anything else.
std::optional<uint64_t> as_u64(const json& v) {
  if (!v.is_number_integer()) return std::nullopt;
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  const int64_t i = v.get<int64_t>();
  if (i < 0) return std::nullopt;
  return uint64_t(i);
}

std::string errno_text() {
  return std::system_category().message(errno);
}

}  // namespace

int64_t Tensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated by the parser not to overflow
  return n;
}

File::~File() {
  if (map_) munmap(map_, map_size_);
}

std::unique_ptr<File> File::from_memory(const void* data, size_t size, std::string name) {
  std::unique_ptr<File> f(new File());
  f->path_ = std::move(name);
  f->base_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->parse();
  return f;
}

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text());
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const std::string why = errno_text();
      ::close(fd);
      throw Error(path + ": cannot map: " + why);
    }
    f->map_ = p;
    f->map_size_ = f->size_;
    f->base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  f->parse();
  return f;
}

const Tensor* File::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void File::parse() {
  const std::string& p = path_;
  if (size_ < 8)
    throw Error(p + ": truncated: " + std::to_string(size_) +
                " bytes, too small for a safetensors header");
  uint64_t n = 0;
  std::memcpy(&n, base_, 8);
  if (n > kMaxHeaderBytes)
    throw Error(p + ": header length " + std::to_string(n) + " exceeds the limit of " +
                std::to_string(kMaxHeaderBytes) + " bytes (not a safetensors file?)");
  if (n > size_ - 8)
    throw Error(p + ": header length " + std::to_string(n) + " extends past the end of the file (" +
                std::to_string(size_) + " bytes): truncated or not a safetensors file");
  const std::string_view text(reinterpret_cast<const char*>(base_ + 8), size_t(n));
  const json h = json_strict::parse(text, p + ": header");
  if (!h.is_object()) throw Error(p + ": header is not a JSON object");

  const uint8_t* data = base_ + 8 + n;
  const uint64_t data_size = size_ - 8 - n;
  for (const auto& [name, entry] : h.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(p + ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw Error(p + ": __metadata__ '" + k + "' is not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor '" + name + "'";
    if (!entry.is_object()) throw Error(where + ": entry is not an object");
    for (const auto& [k, v] : entry.items())
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        throw Error(where + ": unknown field '" + k + "'");
    Tensor t;
    t.name = name;
    auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) throw Error(where + ": missing or non-string dtype");
    t.dtype = dt->get<std::string>();
    const DtypeDesc* desc = find_dtype(t.dtype);
    if (!desc)
      throw Error(where + ": unsupported dtype '" + t.dtype + "' (unknown to safetensors)");
    t.supported = desc->supported;
    t.type = desc->type;

    auto sh = entry.find("shape");
    if (sh == entry.end() || !sh->is_array())
      throw Error(where + ": shape must be an array of non-negative integers");
    if (sh->size() > 8) throw Error(where + ": shape has more than 8 dimensions");
    uint64_t bytes = desc->size;
    for (const json& d : *sh) {
      const auto v = as_u64(d);
      if (!v) throw Error(where + ": shape must be an array of non-negative integers");
      if (*v > uint64_t(INT64_MAX) || __builtin_mul_overflow(bytes, *v, &bytes))
        throw Error(where + ": shape " + sh->dump() + " is absurd (its byte size overflows)");
      t.shape.push_back(int64_t(*v));
    }
    auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      throw Error(where + ": data_offsets must be [begin, end]");
    const auto b = as_u64((*off)[0]), e = as_u64((*off)[1]);
    if (!b || !e || *b > *e)
      throw Error(where + ": data_offsets must be non-negative integers with begin <= end");
    t.begin = *b;
    t.end = *e;
    if (t.end > data_size)
      throw Error(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.end) + "] run past the end of the data (" +
                  std::to_string(data_size) + " bytes): truncated file?");
    if (t.end - t.begin != bytes)
      throw Error(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.end) + "] do not match shape " + shape_str(t.shape) + " of " +
                  t.dtype + " (" + std::to_string(bytes) + " bytes)");
    t.data = data + t.begin;
    t.nbytes = size_t(bytes);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // Overlaps: sorted by start, each non-empty tensor must begin at or after the previous end.
  std::vector<const Tensor*> order;
  for (const Tensor& t : tensors_)
    if (t.nbytes > 0) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const Tensor* a, const Tensor* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->begin < order[i - 1]->end)
      throw Error(p + ": tensor '" + order[i]->name + "' overlaps tensor '" + order[i - 1]->name +
                  "' (data_offsets " + std::to_string(order[i]->begin) + " < " +
                  std::to_string(order[i - 1]->end) + ")");
}

// ----- sharded sets -----

std::map<std::string, std::string> ShardSet::parse_index(std::string_view text,
                                                         const std::string& name) {
  const json j = json_strict::parse(text, name);
  if (!j.is_object()) throw Error(name + ": not a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) throw Error(name + ": no 'weight_map' object");
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string())
      throw Error(name + ": weight_map entry for '" + tensor + "' is not a string");
    const std::string s = shard.get<std::string>();
    // Shards live next to the index: a path (or anything a path could hide in) is refused.
    if (s.empty() || s == "." || s == ".." || s.size() > 255 ||
        s.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      throw Error(name + ": weight_map entry for '" + tensor + "' names shard '" + s +
                  "', which is not a plain file name in the model directory");
    out[tensor] = s;
  }
  return out;
}

ShardSet ShardSet::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  ShardSet set;
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::error_code ec;
  std::map<std::string, std::string> shard_of;  // tensor -> the shard holding it
  auto add_file = [&](std::unique_ptr<File> f, const std::string& shard) {
    for (const Tensor& t : f->tensors()) {
      auto [it, fresh] = shard_of.emplace(t.name, shard);
      if (!fresh)
        throw Error(dir + ": tensor '" + t.name + "' is in two shards (" + it->second + " and " +
                    shard + ")");
      set.by_name_.emplace(t.name, &t);
    }
    set.files_.push_back(std::move(f));
  };

  if (fs::is_regular_file(index_path, ec)) {
    if (fs::file_size(index_path, ec) > kMaxHeaderBytes)
      throw Error(index_path + ": too large for an index");
    const std::map<std::string, std::string> map =
        parse_index(read_file(index_path, "safetensors index"), index_path);
    std::set<std::string> shards;
    for (const auto& [t, s] : map) shards.insert(s);
    for (const std::string& s : shards) {
      const std::string path = dir + "/" + s;
      if (!fs::is_regular_file(path, ec))
        throw Error(index_path + ": shard '" + s + "' is missing");
      add_file(File::open(path), s);
    }
    // The index and the shards must agree exactly, or a shard is stale or incomplete.
    for (const auto& [t, s] : map) {
      auto it = shard_of.find(t);
      if (it == shard_of.end() || it->second != s)
        throw Error(index_path + ": tensor '" + t + "' is not in shard '" + s + "'");
    }
    for (const auto& [t, s] : shard_of)
      if (!map.count(t))
        throw Error(index_path + ": tensor '" + t + "' of shard '" + s + "' is not in the index");
  } else {
    const std::string single = dir + "/model.safetensors";
    if (!fs::is_regular_file(single, ec)) {
      bool shards = false;
      for (const auto& e : fs::directory_iterator(dir, ec))
        shards |= e.path().extension() == ".safetensors";
      throw Error(dir + (shards ? ": has .safetensors shards but no model.safetensors.index.json"
                                : ": no model.safetensors"));
    }
    add_file(File::open(single), "model.safetensors");
  }

  // Tied weights saved once: "__metadata__": {"model.embed_tokens.weight": "lm_head.weight"}.
  for (const auto& f : set.files_)
    for (const auto& [from, to] : f->metadata())
      if (!set.by_name_.count(from) && set.by_name_.count(to)) set.aliases_[from] = to;
  return set;
}

const Tensor* ShardSet::find(std::string_view name) const {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  auto a = aliases_.find(name);
  if (a == aliases_.end()) return nullptr;
  auto t = by_name_.find(a->second);
  return t == by_name_.end() ? nullptr : t->second;
}

std::vector<const Tensor*> ShardSet::all() const {
  std::vector<const Tensor*> v;
  for (const auto& [name, t] : by_name_) v.push_back(t);
  return v;
}

}  // namespace tf::safetensors
