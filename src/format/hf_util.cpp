#include <cmath>
#include <filesystem>

#include "format/hf_internal.h"
#include "format/json_strict.h"
#include "util/error.h"
#include "util/file.h"

namespace tf::hf::detail {

std::optional<json> read_json(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  const std::string path = dir + "/" + name;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  if (!fs::is_regular_file(path, ec)) throw Error(path + ": not a regular file");
  if (fs::file_size(path, ec) > (uint64_t(64) << 20)) throw Error(path + ": too large (> 64 MiB)");
  return json_strict::parse(read_file(path, "file"), path);
}

std::optional<int64_t> get_int(const json& obj, const std::string& key, const std::string& what,
                               int64_t lo, int64_t hi) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  // Integral floats (2048.0) appear in some exported configs; anything fractional is wrong.
  auto range_error = [&] {
    return Error(what + ": \"" + key + "\" = " + it->dump() + " is out of range (" +
                 std::to_string(lo) + ".." + std::to_string(hi) + ")");
  };
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) throw range_error();
    const int64_t i = it->get<int64_t>();
    if (i < lo || i > hi) throw range_error();
    return i;
  }
  if (!it->is_number_float() || it->get<double>() != std::floor(it->get<double>()))
    throw Error(what + ": \"" + key + "\" must be an integer, got " + it->dump());
  const double v = it->get<double>();
  if (v < double(lo) || v > double(hi)) throw range_error();
  return int64_t(v);
}

std::optional<double> get_number(const json& obj, const std::string& key, const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) throw Error(what + ": \"" + key + "\" must be a number, got " + it->dump());
  const double v = it->get<double>();
  if (!std::isfinite(v)) throw Error(what + ": \"" + key + "\" is not finite");
  return v;
}

bool get_bool(const json& obj, const std::string& key, const std::string& what, bool def) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_boolean()) throw Error(what + ": \"" + key + "\" must be true or false");
  return it->get<bool>();
}

gguf::Value u32(uint32_t v) {
  return gguf::Writer::make_u32(v);
}
gguf::Value i32(int32_t v) {
  gguf::Value x;
  x.type = gguf::ValueType::INT32;
  x.i = v;
  return x;
}
gguf::Value f32(float v) {
  return gguf::Writer::make_f32(v);
}
gguf::Value boolean(bool v) {
  gguf::Value x;
  x.type = gguf::ValueType::BOOL;
  x.b = v;
  return x;
}
gguf::Value str(const std::string& s) {
  return gguf::Writer::make_string(s);
}
gguf::Value str_array(const std::vector<std::string>& v) {
  gguf::Value a;
  a.type = gguf::ValueType::ARRAY;
  a.elem_type = gguf::ValueType::STRING;
  a.items.reserve(v.size());
  for (const std::string& s : v) a.items.push_back(str(s));
  return a;
}
gguf::Value f32_array(const std::vector<float>& v) {
  gguf::Value a;
  a.type = gguf::ValueType::ARRAY;
  a.elem_type = gguf::ValueType::FLOAT32;
  a.items.reserve(v.size());
  for (float x : v) a.items.push_back(f32(x));
  return a;
}
gguf::Value i32_array(const std::vector<int32_t>& v) {
  gguf::Value a;
  a.type = gguf::ValueType::ARRAY;
  a.elem_type = gguf::ValueType::INT32;
  a.items.reserve(v.size());
  for (int32_t x : v) a.items.push_back(i32(x));
  return a;
}

}  // namespace tf::hf::detail
