// Lookups and typed getters over a parsed File. Type mismatches are reported with the key and
// the type actually found, since "wrong type" alone is useless when debugging a converter.
#include "format/gguf.h"
#include "format/gguf_internal.h"

namespace tf::gguf {

namespace {

[[noreturn]] void key_error(const std::string& file, std::string_view key,
                            const std::string& reason) {
  throw Error(file + ": key '" + detail::printable(key) + "': " + reason);
}

std::string type_desc(const Value& v) {
  if (v.type == ValueType::ARRAY) return std::string("array of ") + value_type_name(v.elem_type);
  return value_type_name(v.type);
}

// Runs a numeric conversion and re-throws its error with the key (and element) named.
template <typename F>
auto convert(const std::string& file, std::string_view key, int64_t index, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    std::string where = index >= 0 ? "element " + std::to_string(index) + ": " : "";
    key_error(file, key, where + e.what());
  }
}

}  // namespace

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;  // validated by the reader not to overflow
  return n;
}

const Value* File::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) key_error(path_, key, "required key is missing");
  if (v->type != ValueType::STRING) key_error(path_, key, "expected string, got " + type_desc(*v));
  return v->str;
}

std::string File::get_string_or(std::string_view key, std::string def) const {
  return has(key) ? get_string(key) : def;
}

int64_t File::get_int_or(std::string_view key, int64_t def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (!v->is_integer()) key_error(path_, key, "expected an integer, got " + type_desc(*v));
  return convert(path_, key, -1, [&] { return v->as_i64(); });
}

double File::get_float_or(std::string_view key, double def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (!v->is_float() && !v->is_integer())
    key_error(path_, key, "expected a number, got " + type_desc(*v));
  return v->as_f64();
}

bool File::get_bool_or(std::string_view key, bool def) const {
  const Value* v = find(key);
  if (!v) return def;
  if (v->type != ValueType::BOOL) key_error(path_, key, "expected bool, got " + type_desc(*v));
  return v->b;
}

std::vector<std::string> File::get_string_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return {};
  if (v->type != ValueType::ARRAY || v->elem_type != ValueType::STRING)
    key_error(path_, key, "expected array of string, got " + type_desc(*v));
  std::vector<std::string> out;
  out.reserve(v->items.size());
  for (const Value& item : v->items) out.push_back(item.str);
  return out;
}

std::vector<float> File::get_float_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return {};
  Value probe;  // an element of the array's type, to ask whether it is numeric
  probe.type = v->elem_type;
  if (v->type != ValueType::ARRAY || !(probe.is_float() || probe.is_integer()))
    key_error(path_, key, "expected array of numbers, got " + type_desc(*v));
  std::vector<float> out;
  out.reserve(v->items.size());
  for (const Value& item : v->items) out.push_back(float(item.as_f64()));
  return out;
}

std::vector<int64_t> File::get_int_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return {};
  Value probe;
  probe.type = v->elem_type;
  if (v->type != ValueType::ARRAY || !probe.is_integer())
    key_error(path_, key, "expected array of integers, got " + type_desc(*v));
  std::vector<int64_t> out;
  out.reserve(v->items.size());
  for (size_t k = 0; k < v->items.size(); ++k) {
    out.push_back(convert(path_, key, int64_t(k), [&] { return v->items[k].as_i64(); }));
  }
  return out;
}

}  // namespace tf::gguf
