// Metadata values: type names, numeric conversions and display formatting.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "format/gguf.h"
#include "format/gguf_internal.h"

namespace tf::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
      return "uint8";
    case ValueType::INT8:
      return "int8";
    case ValueType::UINT16:
      return "uint16";
    case ValueType::INT16:
      return "int16";
    case ValueType::UINT32:
      return "uint32";
    case ValueType::INT32:
      return "int32";
    case ValueType::FLOAT32:
      return "float32";
    case ValueType::BOOL:
      return "bool";
    case ValueType::STRING:
      return "string";
    case ValueType::ARRAY:
      return "array";
    case ValueType::UINT64:
      return "uint64";
    case ValueType::INT64:
      return "int64";
    case ValueType::FLOAT64:
      return "float64";
  }
  return "invalid";
}

namespace {

// Compact names for array headers, so `[str x32000: ...]` stays short in `tokenfab info`.
const char* short_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
      return "u8";
    case ValueType::INT8:
      return "i8";
    case ValueType::UINT16:
      return "u16";
    case ValueType::INT16:
      return "i16";
    case ValueType::UINT32:
      return "u32";
    case ValueType::INT32:
      return "i32";
    case ValueType::FLOAT32:
      return "f32";
    case ValueType::BOOL:
      return "bool";
    case ValueType::STRING:
      return "str";
    case ValueType::ARRAY:
      return "arr";
    case ValueType::UINT64:
      return "u64";
    case ValueType::INT64:
      return "i64";
    case ValueType::FLOAT64:
      return "f64";
  }
  return "?";
}

bool is_signed_int(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}

// Integral doubles inside [lo, hi) convert exactly; everything else (fractions, NaN, out of
// range) is refused rather than silently truncated.
bool integral_in_range(double f, double lo, double hi) {
  return std::isfinite(f) && f == std::trunc(f) && f >= lo && f < hi;
}

[[noreturn]] void not_convertible(const Value& v, const char* target) {
  std::string what = value_type_name(v.type);
  // (append, not " " + ...: GCC 12 warns falsely about that temporary's copy)
  if (v.type != ValueType::STRING && v.type != ValueType::ARRAY) what.append(" ").append(v.to_string());
  throw Error("value of type " + what + " cannot be converted to " + target);
}

template <typename T>
void append_shortest(std::string& out, T x) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, res.ptr);
}

void append_quoted(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += char(c);  // UTF-8 passes through: tokens are meant to be readable
        }
    }
  }
  out += '"';
}

void append_value(std::string& out, const Value& v, size_t max_items) {
  switch (v.type) {
    case ValueType::UINT8:
    case ValueType::UINT16:
    case ValueType::UINT32:
    case ValueType::UINT64:
      append_shortest(out, v.u);
      break;
    case ValueType::INT8:
    case ValueType::INT16:
    case ValueType::INT32:
    case ValueType::INT64:
      append_shortest(out, v.i);
      break;
    // A FLOAT32 printed as float gives "0.1", not the widened double's 0.10000000149011612.
    case ValueType::FLOAT32:
      append_shortest(out, float(v.f));
      break;
    case ValueType::FLOAT64:
      append_shortest(out, v.f);
      break;
    case ValueType::BOOL:
      out += v.b ? "true" : "false";
      break;
    case ValueType::STRING:
      append_quoted(out, v.str);
      break;
    case ValueType::ARRAY: {
      out += '[';
      out += short_type_name(v.elem_type);
      out += " x";
      append_shortest(out, v.items.size());
      if (!v.items.empty()) {
        out += ": ";
        size_t shown = std::min(v.items.size(), max_items);
        for (size_t k = 0; k < shown; ++k) {
          if (k) out += ", ";
          append_value(out, v.items[k], max_items);
        }
        if (shown < v.items.size()) out += shown ? ", ..." : "...";
      }
      out += ']';
      break;
    }
    default:
      out += "<invalid>";
      break;
  }
}

}  // namespace

bool Value::is_integer() const {
  switch (type) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

int64_t Value::as_i64() const {
  if (is_integer()) {
    if (is_signed_int(type)) return i;
    if (u <= uint64_t(std::numeric_limits<int64_t>::max())) return int64_t(u);
    not_convertible(*this, "int64 (out of range)");
  }
  if (is_float()) {
    if (integral_in_range(f, -0x1p63, 0x1p63)) return int64_t(f);
    not_convertible(*this, "int64 (not an integral value in range)");
  }
  not_convertible(*this, "int64");
}

uint64_t Value::as_u64() const {
  if (is_integer()) {
    if (!is_signed_int(type)) return u;
    if (i >= 0) return uint64_t(i);
    not_convertible(*this, "uint64 (negative)");
  }
  if (is_float()) {
    if (integral_in_range(f, 0.0, 0x1p64)) return uint64_t(f);
    not_convertible(*this, "uint64 (not an integral value in range)");
  }
  not_convertible(*this, "uint64");
}

double Value::as_f64() const {
  if (is_float()) return f;
  if (is_integer()) return is_signed_int(type) ? double(i) : double(u);
  not_convertible(*this, "a number");
}

std::string Value::to_string(size_t max_items) const {
  std::string out;
  append_value(out, *this, max_items);
  return out;
}

namespace detail {

std::string printable(std::string_view s, size_t max_len) {
  std::string out;
  size_t n = std::min(s.size(), max_len);
  for (size_t k = 0; k < n; ++k) {
    unsigned char c = s[k];
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  if (s.size() > max_len) out += "...";
  return out;
}

}  // namespace detail
}  // namespace tf::gguf
