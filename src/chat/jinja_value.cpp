#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf::jinja {

// ---- construction ----------------------------------------------------------------------

Value Value::undefined(std::string hint) {
  Value v(Kind::Undefined);
  if (!hint.empty()) v.s_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::string(std::string s) {
  Value v(Kind::String);
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::markup(std::string s) {
  Value v = string(std::move(s));
  v.markup_ = true;
  return v;
}
Value Value::lazy(ValueList items, Lazy kind, std::string repr) {
  Value v = list(std::move(items));
  v.lazy_ = kind;
  if (!repr.empty()) v.s_ = std::make_shared<const std::string>(std::move(repr));
  if (kind == Lazy::Generator) v.gen_pos_ = std::make_shared<size_t>(0);
  return v;
}
Value Value::next_item() const {
  if (lazy_ != Lazy::Generator || *gen_pos_ >= list_->size()) return Value::undefined("the generator is exhausted");
  return (*list_)[(*gen_pos_)++];
}
std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&#39;"; break;
      case '"': out += "&#34;"; break;
      default: out += c;
    }
  }
  return out;
}
Value Value::list(ValueList items) {
  Value v(Kind::List);
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
Value Value::tuple(ValueList items) {
  Value v(Kind::Tuple);
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}
Value Value::dict(Dict d) {
  Value v(Kind::Dict);
  v.dict_ = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::ns(Dict d) {
  Value v(Kind::Namespace);
  v.dict_ = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::function(std::string name, std::function<Value(Interp&, Args&)> fn,
                      std::vector<std::string> arguments) {
  Value v(Kind::Function);
  v.fn_ = std::make_shared<const Function>(
      Function{std::move(name), std::move(fn), std::move(arguments)});
  return v;
}
Value Value::loop(std::shared_ptr<LoopInfo> info) {
  Value v(Kind::Loop);
  v.loop_ = std::move(info);
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return number(double(u));
      return integer(int64_t(u));
    }
    case nlohmann::json::value_t::number_float: return number(j.get<double>());
    case nlohmann::json::value_t::string: return string(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      d.items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        d.items.emplace_back(string(it.key()), from_json(it.value()));
      return dict(std::move(d));
    }
    default: return none();
  }
}

// ---- dict ------------------------------------------------------------------------------

const Value* Dict::find(const Value& key) const {
  for (const auto& [k, v] : items)
    if (py_equal(k, key)) return &v;
  return nullptr;
}
Value* Dict::find(const Value& key) {
  for (auto& [k, v] : items)
    if (py_equal(k, key)) return &v;
  return nullptr;
}
const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}
void Dict::set(Value key, Value v) {
  if (Value* old = find(key)) {
    *old = std::move(v);
    return;
  }
  items.emplace_back(std::move(key), std::move(v));
}

// ---- predicates ------------------------------------------------------------------------

bool Value::is_iterable() const {
  switch (kind_) {
    case Kind::Undefined: case Kind::String: case Kind::List: case Kind::Tuple: case Kind::Dict:
      return true;
    default: return false;
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined: case Kind::None: return false;
    case Kind::Bool: case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0;
    case Kind::String: return !s_->empty();
    case Kind::List: case Kind::Tuple: return lazy_ == Lazy::Generator || !list_->empty();
    case Kind::Dict: return !dict_->items.empty();
    default: return true;
  }
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List:
      switch (lazy_) {
        case Lazy::Generator: return "generator";
        case Lazy::DictKeys: return "dict_keys";
        case Lazy::DictValues: return "dict_values";
        case Lazy::DictItems: return "dict_items";
        case Lazy::Range: return "range";
        default: return "list";
      }
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Function: return "function";
    case Kind::Loop: return "LoopContext";
  }
  return "object";
}

ValueList Value::iterate() const {
  switch (kind_) {
    case Kind::Undefined: return {};
    case Kind::List: case Kind::Tuple:
      if (lazy_ == Lazy::Generator) {  // consumed by iterating
        const size_t from = std::min(*gen_pos_, list_->size());
        *gen_pos_ = list_->size();
        return ValueList(list_->begin() + long(from), list_->end());
      }
      return *list_;
    case Kind::Dict: {
      ValueList keys;
      keys.reserve(dict_->items.size());
      for (const auto& kv : dict_->items) keys.push_back(kv.first);
      return keys;
    }
    case Kind::String: {
      ValueList chars;
      const std::string& s = *s_;
      for (size_t i = 0; i < s.size();) {
        size_t n = std::min(unicode::utf8_len(uint8_t(s[i])), s.size() - i);
        chars.push_back(string(s.substr(i, n)));
        i += n;
      }
      return chars;
    }
    default: throw Error(std::string("'") + type_name() + "' object is not iterable");
  }
}

// ---- equality and order ----------------------------------------------------------------

bool py_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() != Kind::Float && b.kind() != Kind::Float) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind() || a.lazy_kind() != b.lazy_kind()) return false;
  if (a.lazy_kind() == Lazy::Generator) return &a.items() == &b.items();
  switch (a.kind()) {
    case Kind::Undefined: case Kind::None: return true;
    case Kind::String: return a.str() == b.str();
    case Kind::List: case Kind::Tuple: {
      const ValueList &x = a.items(), &y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!py_equal(x[i], y[i])) return false;
      return true;
    }
    case Kind::Dict: {
      const Dict &x = a.dict_ref(), &y = b.dict_ref();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* w = y.find(k);
        if (!w || !py_equal(v, *w)) return false;
      }
      return true;
    }
    case Kind::Namespace: return &a.dict_ref() == &b.dict_ref();
    case Kind::Function: return &a.fn() == &b.fn();
    case Kind::Loop: return &a.loop_info() == &b.loop_info();
    default: return false;
  }
}

int py_compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind() != Kind::Float && b.kind() != Kind::Float)
      return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.kind() == b.kind() && a.is_sequence()) {
    const ValueList &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (py_equal(x[i], y[i])) continue;
      return py_compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  throw Error(std::string("'<' not supported between instances of '") + a.type_name() +
              "' and '" + b.type_name() + "'");
}

// ---- printing --------------------------------------------------------------------------

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: fixed notation when the decimal
  // exponent is in [-4, 16), else d.ddde+XX.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  std::string out = sign;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(size_t(-decpt), '0') + digits;
    } else if (size_t(decpt) >= digits.size()) {
      out += digits + std::string(size_t(decpt) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(decpt)) + "." + digits.substr(size_t(decpt));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char eb[16];
  std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  return out + eb;
}

namespace {
// str.isprintable: false for controls, format characters, separators other than the space,
// private use and surrogates; unassigned code points count as non-printable too.
bool py_isprintable(uint32_t cp) {
  if (cp == ' ') return true;
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return false;
  const uint16_t f = unicode::flags(cp) & unicode::kCategoryMask;
  if (f == unicode::kSeparator || f == unicode::kUndefined) return false;
  if (f == unicode::kControl) return false;  // Cf, Co, Cs
  return true;
}
}  // namespace

bool py_isspace(uint32_t cp) {
  if (cp >= 0x1c && cp <= 0x1f) return true;
  return unicode::is_whitespace(cp);
}

void append_str_repr(std::string& out, std::string_view s) {
  const bool has_sq = s.find('\'') != std::string_view::npos;
  const bool has_dq = s.find('"') != std::string_view::npos;
  const char q = has_sq && !has_dq ? '"' : '\'';
  out += q;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = uint8_t(s[i]);
    if (c < 0x80) {
      ++i;
      if (c == '\\') out += "\\\\";
      else if (c == uint8_t(q)) (out += '\\') += char(c);
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c < 0x20 || c == 0x7f) {
        char b[8];
        std::snprintf(b, sizeof b, "\\x%02x", c);
        out += b;
      } else {
        out += char(c);
      }
      continue;
    }
    const size_t n = std::min(unicode::utf8_len(c), s.size() - i);
    const auto cps = unicode::decode_utf8(s.substr(i, n));
    const uint32_t cp = cps.empty() ? unicode::kReplacementChar : cps[0];
    if (py_isprintable(cp)) {
      out.append(s.substr(i, n));
    } else {
      char b[16];
      if (cp <= 0xff) std::snprintf(b, sizeof b, "\\x%02x", cp);
      else if (cp <= 0xffff) std::snprintf(b, sizeof b, "\\u%04x", cp);
      else std::snprintf(b, sizeof b, "\\U%08x", cp);
      out += b;
    }
    i += n;
  }
  out += q;
}

void Value::append_str(std::string& out) const {
  switch (kind_) {
    case Kind::Undefined: return;
    case Kind::String: out += *s_; return;
    default: append_repr(out);
  }
}

std::string Value::to_str() const {
  if (kind_ == Kind::String) return *s_;
  std::string s;
  append_str(s);
  return s;
}

void Value::append_repr(std::string& out) const {
  switch (kind_) {
    case Kind::Undefined: out += "Undefined"; return;
    case Kind::None: out += "None"; return;
    case Kind::Bool: out += i_ ? "True" : "False"; return;
    case Kind::Int: out += std::to_string(i_); return;
    case Kind::Float: out += float_repr(f_); return;
    case Kind::String:
      if (markup_) {
        out += "Markup(";
        append_str_repr(out, *s_);
        out += ")";
      } else {
        append_str_repr(out, *s_);
      }
      return;
    case Kind::List: case Kind::Tuple: {
      if (s_) {
        out += *s_;
        return;
      }
      if (lazy_ == Lazy::Generator) {
        out += "<generator object at 0x7f0000000000>";  // Python prints an address here
        return;
      }
      if (lazy_ == Lazy::DictKeys || lazy_ == Lazy::DictValues || lazy_ == Lazy::DictItems) {
        out += type_name();
        out += "([";
        for (size_t i = 0; i < list_->size(); ++i) {
          if (i) out += ", ";
          (*list_)[i].append_repr(out);
        }
        out += "])";
        return;
      }
      const bool tup = kind_ == Kind::Tuple;
      out += tup ? '(' : '[';
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i) out += ", ";
        (*list_)[i].append_repr(out);
      }
      if (tup && list_->size() == 1) out += ',';
      out += tup ? ')' : ']';
      return;
    }
    case Kind::Dict: case Kind::Namespace: {
      const bool ns = kind_ == Kind::Namespace;
      out += ns ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, v] : dict_->items) {
        if (!first) out += ", ";
        first = false;
        k.append_repr(out);
        out += ": ";
        v.append_repr(out);
      }
      out += ns ? "}>" : "}";
      return;
    }
    case Kind::Function: out += "<function " + fn_->name + ">"; return;
    case Kind::Loop: out += "<LoopContext " + std::to_string(loop_->index0 + 1) + "/" +
                            std::to_string(loop_->length) + ">";
      return;
  }
}

// ---- json.dumps ------------------------------------------------------------------------

namespace {
void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = uint8_t(s[i]);
    if (c < 0x80) {
      ++i;
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            out += b;
          } else {
            out += char(c);
          }
      }
      continue;
    }
    const size_t n = std::min(unicode::utf8_len(c), s.size() - i);
    if (!ensure_ascii) {
      out.append(s.substr(i, n));
    } else {
      const auto cps = unicode::decode_utf8(s.substr(i, n));
      uint32_t cp = cps.empty() ? unicode::kReplacementChar : cps[0];
      char b[16];
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(b, sizeof b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else {
        std::snprintf(b, sizeof b, "\\u%04x", cp);
      }
      out += b;
    }
    i += n;
  }
  out += '"';
}

void json_float(std::string& out, double f) {
  if (std::isnan(f)) out += "NaN";
  else if (std::isinf(f)) out += f < 0 ? "-Infinity" : "Infinity";
  else out += float_repr(f);
}

void json_newline(std::string& out, const JsonDumpOptions& o, int depth) {
  out += '\n';
  for (int i = 0; i < depth; ++i) out += o.indent;
}
}  // namespace

void json_dump(std::string& out, const Value& v, const JsonDumpOptions& o, int depth) {
  if (depth > 512) throw Error("tojson: value nested too deeply");
  switch (v.kind()) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.as_int()); return;
    case Kind::Float: json_float(out, v.as_double()); return;
    case Kind::String: json_string(out, v.str(), o.ensure_ascii); return;
    case Kind::List: case Kind::Tuple: {
      if (v.lazy_kind() != Lazy::None)
        throw Error(std::string("Object of type ") + v.type_name() + " is not JSON serializable");
      const ValueList& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += o.item_sep;
        if (o.has_indent) json_newline(out, o, depth + 1);
        json_dump(out, items[i], o, depth + 1);
      }
      if (o.has_indent) json_newline(out, o, depth);
      out += ']';
      return;
    }
    case Kind::Dict: {
      const auto& src = v.dict_ref().items;
      if (src.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : src) items.push_back(&kv);
      if (o.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) {
          return py_compare(a->first, b->first) < 0;
        });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += o.item_sep;
        first = false;
        if (o.has_indent) json_newline(out, o, depth + 1);
        const Value& k = kv->first;
        // json.dumps turns str, int, float, bool and None keys into strings.
        switch (k.kind()) {
          case Kind::String: json_string(out, k.str(), o.ensure_ascii); break;
          case Kind::Bool: out += k.as_bool() ? "\"true\"" : "\"false\""; break;
          case Kind::Int: out += "\"" + std::to_string(k.as_int()) + "\""; break;
          case Kind::Float: {
            std::string f;
            json_float(f, k.as_double());
            out += "\"" + f + "\"";
            break;
          }
          case Kind::None: out += "\"null\""; break;
          default:
            throw Error(std::string("keys must be str, int, float, bool or None, not ") +
                        k.type_name());
        }
        out += o.key_sep;
        json_dump(out, kv->second, o, depth + 1);
      }
      if (o.has_indent) json_newline(out, o, depth);
      out += '}';
      return;
    }
    default:
      throw Error(std::string("Object of type ") + v.type_name() + " is not JSON serializable");
  }
}

// ---- UTF-8 -----------------------------------------------------------------------------

size_t cp_count(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i += unicode::utf8_len(uint8_t(s[i]))) ++n;
  return n;
}

std::vector<uint32_t> to_cps(std::string_view s) { return unicode::decode_utf8(s); }

std::string from_cps(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < cps.size(); ++i) unicode::append_utf8(out, cps[i]);
  return out;
}

}  // namespace tf::jinja
