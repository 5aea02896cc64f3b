// Test helpers for Hugging Face inputs: writing safetensors files and model directories.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tf::test {

struct StTensor {
  std::string name, dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

inline std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A safetensors file: tensors laid out back to back in the given order.
inline std::vector<uint8_t> safetensors_bytes(const std::vector<StTensor>& ts,
                                              const std::map<std::string, std::string>& meta = {}) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!meta.empty()) h["__metadata__"] = meta;
  uint64_t off = 0;
  for (const StTensor& t : ts) {
    h[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.data.size()}}};
    off += t.data.size();
  }
  std::string js = h.dump();
  while (js.size() % 8) js += ' ';  // the format pads the header with spaces
  std::string out(8, '\0');  // (a string: GCC 12 warns wrongly about vector inserts here)
  const uint64_t n = js.size();
  std::memcpy(out.data(), &n, 8);
  out += js;
  for (const StTensor& t : ts) out.append(t.data.begin(), t.data.end());
  return std::vector<uint8_t>(out.begin(), out.end());
}

// The same with a header given as text (for corrupt headers) and raw data.
inline std::vector<uint8_t> safetensors_raw(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  out.append(data_bytes, '\x3c');
  return std::vector<uint8_t>(out.begin(), out.end());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
inline void write_text(const std::string& path, const std::string& s) {
  std::ofstream f(path, std::ios::binary);
  f << s;
}

// A fresh directory under the system temp dir, removed with the object.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = (std::filesystem::temp_directory_path() /
            ("tf-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
               .string();
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

}  // namespace tf::test
