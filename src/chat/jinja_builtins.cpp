#include "chat/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <map>
#include <unordered_map>

#include "chat/jinja_interp.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf::jinja {

namespace {

// ---- argument helpers ------------------------------------------------------------------

// The argument at `index` or named `name`, else the default.
Value arg(const Args& a, size_t index, const char* name, Value def = Value()) {
  for (const auto& [k, v] : a.kw)
    if (k == name) return v;
  if (index < a.pos.size()) return a.pos[index];
  return def;
}
const std::string& need_str(const Value& v, const char* what) {
  if (!v.is_string())
    throw Error(std::string(what) + " must be a string, not " + v.type_name());
  return v.str();
}
int64_t need_int(const Value& v, const char* what) {
  if (!v.is_int()) throw Error(std::string(what) + " must be an integer, not " + v.type_name());
  return v.as_int();
}

// ---- Unicode case ----------------------------------------------------------------------

uint32_t to_upper(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
  static const std::unordered_map<uint32_t, uint32_t> upper = [] {
    std::unordered_map<uint32_t, uint32_t> m;
    for (size_t i = 0; i < unicode::data::kLowercaseCount; ++i) {
      const auto& p = unicode::data::kLowercase[i];
      m.emplace(p.to, p.from);  // first mapping wins
    }
    return m;
  }();
  if (cp == 0xdf) return cp;  // ß: no single code point
  auto it = upper.find(cp);
  return it == upper.end() ? cp : it->second;
}
uint32_t to_lower(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  return unicode::to_lower(cp);
}
bool is_cased_letter(uint32_t cp) { return to_upper(cp) != cp || to_lower(cp) != cp; }
bool is_alpha(uint32_t cp) {
  if (cp < 0x80) return std::isalpha(int(cp));
  return (unicode::flags(cp) & unicode::kCategoryMask) == unicode::kLetter;
}
bool is_digit(uint32_t cp) {
  if (cp < 0x80) return std::isdigit(int(cp));
  return (unicode::flags(cp) & unicode::kCategoryMask) == unicode::kNumber;
}
bool is_word(uint32_t cp) { return cp == '_' || is_alpha(cp) || is_digit(cp); }

std::string map_cps(std::string_view s, uint32_t (*f)(uint32_t)) {
  std::string out;
  out.reserve(s.size());
  for (uint32_t cp : to_cps(s)) unicode::append_utf8(out, f(cp));
  return out;
}
std::string upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (uint32_t cp : to_cps(s)) {
    if (cp == 0xdf) out += "SS";  // the one common full (one-to-many) mapping
    else unicode::append_utf8(out, to_upper(cp));
  }
  return out;
}
std::string lower(std::string_view s) { return map_cps(s, to_lower); }

// Python's str.title(): a cased letter after an uncased character starts a word.
std::string py_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (uint32_t cp : to_cps(s)) {
    const bool cased = is_cased_letter(cp);
    unicode::append_utf8(out, cased ? (prev_cased ? to_lower(cp) : to_upper(cp)) : cp);
    prev_cased = cased;
  }
  return out;
}
std::string py_capitalize(std::string_view s) {
  auto cps = to_cps(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i)
    unicode::append_utf8(out, i == 0 ? to_upper(cps[i]) : to_lower(cps[i]));
  return out;
}

// ---- str methods -----------------------------------------------------------------------

std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto cps = to_cps(s);
  std::vector<uint32_t> set;
  const bool ws = chars.is_none() || chars.is_undefined();
  if (!ws) set = to_cps(need_str(chars, "strip argument"));
  auto drop = [&](uint32_t cp) {
    return ws ? py_isspace(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && drop(cps[b])) ++b;
  if (right)
    while (e > b && drop(cps[e - 1])) --e;
  return from_cps(cps, b, e);
}

ValueList split_ws(const std::string& s, int64_t maxsplit, bool from_right) {
  auto cps = to_cps(s);
  std::vector<std::pair<size_t, size_t>> words;
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && py_isspace(cps[i])) ++i;
    if (i >= cps.size()) break;
    size_t j = i;
    while (j < cps.size() && !py_isspace(cps[j])) ++j;
    words.emplace_back(i, j);
    i = j;
  }
  ValueList out;
  if (maxsplit < 0 || int64_t(words.size()) <= maxsplit + 1) {
    for (auto [b, e] : words) out.push_back(Value::string(from_cps(cps, b, e)));
    return out;
  }
  if (!from_right) {
    for (int64_t k = 0; k < maxsplit; ++k)
      out.push_back(Value::string(from_cps(cps, words[size_t(k)].first, words[size_t(k)].second)));
    // The rest runs from the next word to the end, trailing whitespace included.
    out.push_back(Value::string(from_cps(cps, words[size_t(maxsplit)].first, cps.size())));
    return out;
  }
  const size_t first_kept = words.size() - size_t(maxsplit);
  out.push_back(Value::string(from_cps(cps, 0, words[first_kept - 1].second)));
  for (size_t k = first_kept; k < words.size(); ++k)
    out.push_back(Value::string(from_cps(cps, words[k].first, words[k].second)));
  return out;
}

ValueList split_sep(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right) {
  if (sep.empty()) throw Error("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t start = 0;
    int64_t n = 0;
    for (;;) {
      const size_t at = (maxsplit >= 0 && n >= maxsplit) ? std::string::npos : s.find(sep, start);
      if (at == std::string::npos) {
        parts.push_back(s.substr(start));
        break;
      }
      parts.push_back(s.substr(start, at - start));
      start = at + sep.size();
      ++n;
    }
  } else {
    size_t end = s.size();
    int64_t n = 0;
    for (;;) {
      size_t at = std::string::npos;
      if (!(maxsplit >= 0 && n >= maxsplit) && end >= sep.size()) at = s.rfind(sep, end - sep.size());
      if (at == std::string::npos) {
        parts.push_back(s.substr(0, end));
        break;
      }
      parts.push_back(s.substr(at + sep.size(), end - at - sep.size()));
      end = at;
      ++n;
    }
    std::reverse(parts.begin(), parts.end());
  }
  ValueList out;
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return out;
}

bool is_line_break(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d ||
         cp == 0x1e || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

std::vector<std::string> splitlines(const std::string& s, bool keepends = false) {
  auto cps = to_cps(s);
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (!is_line_break(cps[i])) continue;
    size_t e = i + 1;
    if (cps[i] == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') e = i + 2;
    out.push_back(from_cps(cps, b, keepends ? e : i));
    b = e;
    i = e - 1;
  }
  if (b < cps.size()) out.push_back(from_cps(cps, b, cps.size()));
  return out;
}

std::string replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement around every character.
    auto cps = to_cps(s);
    int64_t n = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += rep;
        ++n;
      }
      if (i < cps.size()) unicode::append_utf8(out, cps[i]);
    }
    return out;
  }
  size_t start = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t at = s.find(old, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += rep;
    start = at + old.size();
    ++n;
  }
  out.append(s, start, std::string::npos);
  return out;
}

// Python's format(value, spec): [[fill]align][sign][#][0][width][,|_][.precision][type].
std::string format_spec(const Value& v, const std::string& spec) {
  size_t i = 0;
  std::string fill = " ";
  char align = 0, sign = '-', type = 0, grouping = 0;
  bool alt = false, zero = false;
  auto cps = to_cps(spec);
  auto is_align = [](uint32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (cps.size() >= 2 && is_align(cps[1])) {
    fill = from_cps(cps, 0, 1);
    align = char(cps[1]);
    i = 2;
  } else if (!cps.empty() && is_align(cps[0])) {
    align = char(cps[0]);
    i = 1;
  }
  auto at = [&](size_t k) -> char { return k < cps.size() && cps[k] < 0x80 ? char(cps[k]) : 0; };
  if (at(i) == '+' || at(i) == '-' || at(i) == ' ') sign = at(i++);
  if (at(i) == '#') alt = true, ++i;
  if (at(i) == '0') zero = true, ++i;
  int64_t width = 0;
  while (std::isdigit(uint8_t(at(i)))) width = std::min<int64_t>(width * 10 + (at(i++) - '0'), 100000);
  if (at(i) == ',' || at(i) == '_') grouping = at(i++);
  int64_t prec = -1;
  if (at(i) == '.') {
    ++i;
    prec = 0;
    if (!std::isdigit(uint8_t(at(i)))) throw Error("Format specifier missing precision");
    while (std::isdigit(uint8_t(at(i)))) prec = std::min<int64_t>(prec * 10 + (at(i++) - '0'), 1000);
  }
  if (i < cps.size()) type = at(i++);
  if (i != cps.size() || (type == 0 && i < cps.size())) throw Error("Invalid format specifier '" + spec + "'");
  std::string body, prefix;
  const bool numeric = v.is_number();
  if (!numeric) {
    if (type != 0 && type != 's') throw Error(std::string("Unknown format code '") + type + "' for object of type '" + v.type_name() + "'");
    body = v.to_str();
    if (prec >= 0) {
      auto b = to_cps(body);
      if (int64_t(b.size()) > prec) body = from_cps(b, 0, size_t(prec));
    }
  } else {
    const bool is_float = v.kind() == Kind::Float || std::strchr("eEfFgG%", type ? type : 'd') != nullptr;
    if (!is_float) {
      int64_t n = v.as_int();
      const bool neg = n < 0;
      uint64_t u = neg ? uint64_t(0) - uint64_t(n) : uint64_t(n);
      const int base = type == 'x' || type == 'X' ? 16 : type == 'o' ? 8 : type == 'b' ? 2 : 10;
      if (type == 'c') {
        unicode::append_utf8(body, uint32_t(std::min<uint64_t>(u, 0x10FFFF)));
      } else {
        if (type && !std::strchr("dxXobn", type)) throw Error(std::string("Unknown format code '") + type + "' for int");
        do {
          const int d = int(u % uint64_t(base));
          body.insert(body.begin(), char(d < 10 ? '0' + d : (type == 'X' ? 'A' : 'a') + d - 10));
          u /= uint64_t(base);
        } while (u);
        if (grouping) {
          std::string g;
          const int every = base == 10 ? 3 : 4;
          for (size_t k = 0; k < body.size(); ++k) {
            if (k && (body.size() - k) % every == 0) g += grouping;
            g += body[k];
          }
          body = g;
        }
        if (alt && base != 10) prefix = base == 16 ? (type == 'X' ? "0X" : "0x") : base == 8 ? "0o" : "0b";
      }
      prefix = (neg ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "") + prefix;
    } else {
      double f = v.as_double();
      const bool neg = std::signbit(f) && !std::isnan(f);
      f = std::fabs(f);
      char buf[1200];
      if (type == 0 && prec < 0) {
        body = float_repr(f);
      } else {
        char t = type ? type : 'g';
        if (t == '%') f *= 100;
        const int p = int(prec < 0 ? 6 : prec);
        std::snprintf(buf, sizeof buf, std::string("%" + std::string(alt ? "#" : "") + ".*" +
                                                   (t == '%' ? 'f' : t == 'n' ? 'g' : t)).c_str(), p, f);
        body = buf;
        if (type == 0 && body.find_first_of(".e") == std::string::npos && std::isfinite(f)) body += ".0";
        if (t == '%') body += '%';
      }
      if (grouping) {
        const size_t dot = std::min(body.find_first_of(".e%"), body.size());
        std::string g;
        for (size_t k = 0; k < dot; ++k) {
          if (k && (dot - k) % 3 == 0) g += grouping;
          g += body[k];
        }
        body = g + body.substr(dot);
      }
      prefix = neg ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    }
  }
  if (zero && !align) {
    fill = "0";
    if (numeric) align = '=';
  }
  if (!align) align = numeric ? '>' : '<';
  const int64_t len = int64_t(cp_count(prefix) + cp_count(body));
  std::string pad;
  const int64_t padn = std::max<int64_t>(0, width - len);
  auto fills = [&](int64_t n) {
    std::string r;
    for (int64_t k = 0; k < n; ++k) r += fill;
    return r;
  };
  switch (align) {
    case '<': return prefix + body + fills(padn);
    case '^': return fills(padn / 2) + prefix + body + fills(padn - padn / 2);
    case '=': return prefix + fills(padn) + body;
    default: return fills(padn) + prefix + body;
  }
}

// Python str.format: {} {0} {name} fields, !r / !s conversions and format specs.
std::string str_format(const std::string& fmt, const Args& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else throw Error("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw Error("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    char conv = 0;
    std::string spec;
    if (auto colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (auto bang = field.find('!'); bang != std::string::npos) {
      conv = bang + 1 < field.size() ? field[bang + 1] : 0;
      field.resize(bang);
    }
    Value v;
    if (field.empty()) {
      if (auto_idx >= a.pos.size()) throw Error("Replacement index out of range");
      v = a.pos[auto_idx++];
    } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
      const size_t idx = std::stoul(field);
      if (idx >= a.pos.size()) throw Error("Replacement index out of range");
      v = a.pos[idx];
    } else {
      bool found = false;
      for (const auto& [k, val] : a.kw)
        if (k == field) {
          v = val;
          found = true;
        }
      if (!found) throw Error("KeyError: '" + field + "'");
    }
    if (conv == 'r' || conv == 's' || conv == 'a') {
      std::string conv_s;
      if (conv == 's') v.append_str(conv_s);
      else v.append_repr(conv_s);
      v = Value::string(std::move(conv_s));
    }
    out += spec.empty() ? v.to_str() : format_spec(v, spec);
  }
  return out;
}

Value str_call(Interp& in, const Value& self, const std::string& name, Args& a);

Value str_method(const Value& self, const std::string& name) {
  static const char* const kNames[] = {
      "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "split", "rsplit",
      "splitlines", "startswith", "endswith", "replace", "find", "rfind", "index", "rindex",
      "count", "format", "join", "isdigit", "isalpha", "isalnum", "isspace", "isupper",
      "islower", "isnumeric", "isdecimal", "istitle", "zfill", "center", "ljust", "rjust",
      "removeprefix", "removesuffix", "swapcase", "casefold", "partition", "rpartition",
      "expandtabs", "encode"};
  if (std::find_if(std::begin(kNames), std::end(kNames), [&](const char* n) { return name == n; }) ==
      std::end(kNames))
    return Value();
  if (name == "encode") return Value();  // bytes do not exist here
  return Value::function("str." + name, [self, name](Interp& in, Args& a) -> Value {
    if (!self.is_markup()) return str_call(in, self, name, a);
    // markupsafe: these methods escape their string arguments and give Markup back.
    static const char* const kWrapped[] = {"capitalize", "title", "lower", "upper", "replace", "ljust", "rjust",
                                           "lstrip", "rstrip", "center", "strip", "expandtabs", "swapcase",
                                           "zfill", "split", "rsplit", "splitlines", "partition", "rpartition",
                                           "format", "join"};
    bool wrapped = false;
    for (const char* w : kWrapped) wrapped |= name == w;
    if (!wrapped) return str_call(in, Value::string(self.str()), name, a);
    auto esc = [](const Value& v) { return v.is_string() && !v.is_markup() ? Value::markup(html_escape(v.str())) : v; };
    Args b = a;
    for (auto& x : b.pos) {
      if (name == "join" && (x.is_sequence() || x.lazy_kind() != Lazy::None)) {
        ValueList items;
        for (const auto& y : x.iterate()) items.push_back(esc(y));
        x = Value::list(std::move(items));
      } else {
        x = esc(x);
      }
    }
    for (auto& kv : b.kw) kv.second = esc(kv.second);
    const Value r = str_call(in, self, name, b);
    auto mk = [](const Value& v) { return v.is_string() ? Value::markup(v.str()) : v; };
    if (r.is_string()) return mk(r);
    if (r.is_sequence()) {
      ValueList items;
      for (const auto& y : r.items()) items.push_back(mk(y));
      return r.kind() == Kind::Tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
    }
    return r;
  });
}

Value str_call(Interp& in, const Value& self, const std::string& name, Args& a) {
  {
    const std::string& s = self.str();
    auto S = [](std::string v) { return Value::string(std::move(v)); };
    if (name == "upper") return S(upper(s));
    if (name == "lower" || name == "casefold") return S(lower(s));
    if (name == "title") return S(py_title(s));
    if (name == "capitalize") return S(py_capitalize(s));
    if (name == "swapcase")
      return S(map_cps(s, [](uint32_t cp) { return to_upper(cp) != cp ? to_upper(cp) : to_lower(cp); }));
    if (name == "strip") return S(strip(s, arg(a, 0, "chars", Value::none()), true, true));
    if (name == "lstrip") return S(strip(s, arg(a, 0, "chars", Value::none()), true, false));
    if (name == "rstrip") return S(strip(s, arg(a, 0, "chars", Value::none()), false, true));
    if (name == "split" || name == "rsplit") {
      const Value sep = arg(a, 0, "sep", Value::none());
      const int64_t maxsplit = need_int(arg(a, 1, "maxsplit", Value::integer(-1)), "maxsplit");
      const bool right = name == "rsplit";
      if (sep.is_none()) return Value::list(split_ws(s, maxsplit, right));
      return Value::list(split_sep(s, need_str(sep, "separator"), maxsplit, right));
    }
    if (name == "splitlines") {
      ValueList out;
      for (auto& l : splitlines(s, arg(a, 0, "keepends", Value::boolean(false)).truthy()))
        out.push_back(S(std::move(l)));
      return Value::list(std::move(out));
    }
    if (name == "startswith" || name == "endswith") {
      const Value p = arg(a, 0, "prefix");
      ValueList opts = p.kind() == Kind::Tuple ? p.items() : ValueList{p};
      for (const auto& o : opts) {
        const std::string& x = need_str(o, name == "startswith" ? "startswith argument" : "endswith argument");
        if (name == "startswith" ? s.compare(0, x.size(), x) == 0 && s.size() >= x.size()
                                 : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (name == "replace") {
      const std::string out = replace(s, need_str(arg(a, 0, "old"), "replace argument"),
                                      need_str(arg(a, 1, "new"), "replace argument"),
                                      need_int(arg(a, 2, "count", Value::integer(-1)), "count"));
      in.check_size(out.size());
      return S(out);
    }
    if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
      const std::string& sub = need_str(arg(a, 0, "sub"), "substring");
      const size_t at = (name[0] == 'r') ? s.rfind(sub) : s.find(sub);
      if (at == std::string::npos) {
        if (name == "index" || name == "rindex") throw Error("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(int64_t(cp_count(std::string_view(s).substr(0, at))));
    }
    if (name == "count") {
      const std::string& sub = need_str(arg(a, 0, "sub"), "substring");
      if (sub.empty()) return Value::integer(int64_t(cp_count(s)) + 1);
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
      return Value::integer(n);
    }
    if (name == "format") return S(str_format(s, a));
    if (name == "join") {
      std::string out;
      const ValueList items = arg(a, 0, "iterable").iterate();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += s;
        out += need_str(items[i], "sequence item");
        in.check_size(out.size());
      }
      return S(out);
    }
    if (name == "removeprefix") {
      const std::string& p = need_str(arg(a, 0, "prefix"), "prefix");
      return S(s.compare(0, p.size(), p) == 0 && s.size() >= p.size() ? s.substr(p.size()) : s);
    }
    if (name == "removesuffix") {
      const std::string& p = need_str(arg(a, 0, "suffix"), "suffix");
      return S(!p.empty() && s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0
                   ? s.substr(0, s.size() - p.size())
                   : s);
    }
    if (name == "partition" || name == "rpartition") {
      const std::string& sep = need_str(arg(a, 0, "sep"), "separator");
      if (sep.empty()) throw Error("empty separator");
      const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
      if (at == std::string::npos)
        return name == "partition" ? Value::tuple({S(s), S(""), S("")}) : Value::tuple({S(""), S(""), S(s)});
      return Value::tuple({S(s.substr(0, at)), S(sep), S(s.substr(at + sep.size()))});
    }
    const auto cps = to_cps(s);
    auto all = [&](auto pred) {
      return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), pred));
    };
    if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") return all(is_digit);
    if (name == "isalpha") return all(is_alpha);
    if (name == "isalnum") return all([](uint32_t c) { return is_alpha(c) || is_digit(c); });
    if (name == "isspace") return all(py_isspace);
    if (name == "isupper" || name == "islower") {
      bool any_cased = false;
      for (uint32_t c : cps) {
        if (!is_cased_letter(c)) continue;
        any_cased = true;
        if (name == "isupper" ? to_lower(c) == c : to_upper(c) == c) return Value::boolean(false);
      }
      return Value::boolean(any_cased);
    }
    if (name == "istitle") return Value::boolean(!cps.empty() && py_title(s) == s &&
                                                 std::any_of(cps.begin(), cps.end(), is_cased_letter));
    if (name == "expandtabs") return S(replace(s, "\t", "        ", -1));
    // zfill, center, ljust, rjust
    const int64_t width = need_int(arg(a, 0, "width"), "width");
    const int64_t len = int64_t(cps.size());
    if (width > in.limits().max_output_bytes) in.check_size(size_t(width));
    if (width <= len) return self;
    const int64_t pad = width - len;
    std::string fill = name == "zfill" ? "0" : need_str(arg(a, 1, "fillchar", Value::string(" ")), "fillchar");
    auto rep = [&](int64_t n) {
      std::string r;
      for (int64_t i = 0; i < n; ++i) r += fill;
      return r;
    };
    if (name == "ljust") return S(s + rep(pad));
    if (name == "rjust") return S(rep(pad) + s);
    if (name == "zfill") {
      if (!s.empty() && (s[0] == '-' || s[0] == '+')) return S(s.substr(0, 1) + rep(pad) + s.substr(1));
      return S(rep(pad) + s);
    }
    // center: Python puts the odd extra character on the left when width is odd... exactly:
    // left = pad / 2 + (pad & width & 1).
    const int64_t left = pad / 2 + (pad & width & 1);
    return S(rep(left) + s + rep(pad - left));
  }
}

Value dict_method(const Value& self, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return Value::function("dict." + name, [self, name](Interp& in, Args&) -> Value {
      ValueList out;
      for (const auto& [k, v] : self.dict_ref().items) {
        in.step();
        if (name == "items") out.push_back(Value::tuple({k, v}));
        else out.push_back(name == "keys" ? k : v);
      }
      return Value::lazy(std::move(out), name == "items"  ? Lazy::DictItems
                                         : name == "keys" ? Lazy::DictKeys
                                                          : Lazy::DictValues);
    });
  }
  if (name == "get") {
    return Value::function("dict.get", [self](Interp&, Args& a) -> Value {
      if (const Value* v = self.dict_ref().find(arg(a, 0, "key"))) return *v;
      return arg(a, 1, "default", Value::none());
    });
  }
  if (name == "copy") {
    return Value::function("dict.copy", [self](Interp&, Args&) { return Value::dict(self.dict_ref()); });
  }
  return Value();
}

Value list_method(const Value& self, const std::string& name) {
  if (name == "index") {
    return Value::function("list.index", [self](Interp&, Args& a) -> Value {
      const Value x = arg(a, 0, "value");
      for (size_t i = 0; i < self.items().size(); ++i)
        if (py_equal(self.items()[i], x)) return Value::integer(int64_t(i));
      throw Error("value is not in list");
    });
  }
  if (name == "count") {
    return Value::function("list.count", [self](Interp&, Args& a) -> Value {
      const Value x = arg(a, 0, "value");
      int64_t n = 0;
      for (const auto& v : self.items()) n += py_equal(v, x);
      return Value::integer(n);
    });
  }
  if (name == "copy" && self.kind() == Kind::List)
    return Value::function("list.copy", [self](Interp&, Args&) { return Value::list(self.items()); });
  return Value();
}

// ---- filters ---------------------------------------------------------------------------

using FilterFn = Value (*)(Interp&, const Value&, Args&);

// environment.getitem with a dotted attribute path ("a.b", "0"), as Jinja's attrgetter.
Value attr_path(Interp& in, const Value& item, const Value& attribute) {
  (void)in;
  if (attribute.is_int()) {
    const int64_t i = attribute.as_int();
    if (item.is_sequence() && i >= 0 && size_t(i) < item.items().size()) return item.items()[size_t(i)];
    if (item.is_mapping())
      if (const Value* v = item.dict_ref().find(attribute)) return *v;
    return Value::undefined("no item " + std::to_string(i));
  }
  const std::string& path = need_str(attribute, "attribute");
  Value cur = item;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    Value key = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)
                    ? Value::integer(std::stoll(part))
                    : Value::string(part);
    if (cur.is_undefined()) throw Error(cur.str_or_empty().empty() ? "value is undefined" : cur.str_or_empty());
    if (cur.is_mapping()) {
      const Value* v = cur.dict_ref().find(key);
      cur = v ? *v : (key.is_string() ? bound_method(cur, key.str()) : Value());
      if (!v && cur.is_undefined()) cur = Value::undefined("'dict object' has no attribute '" + part + "'");
    } else if (cur.is_sequence() && key.is_int()) {
      const int64_t i = key.as_int();
      cur = i < int64_t(cur.items().size()) ? cur.items()[size_t(i)] : Value::undefined("index out of range");
    } else if (cur.kind() == Kind::Namespace) {
      const Value* v = cur.dict_ref().find(key);
      cur = v ? *v : Value::undefined("no attribute '" + part + "'");
    } else {
      cur = key.is_string() ? bound_method(cur, part) : Value();
      if (cur.is_undefined()) cur = Value::undefined("no attribute '" + part + "'");
    }
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::string soft_str(const Value& v) { return v.to_str(); }

int64_t py_len(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return 0;
    case Kind::String: return int64_t(cp_count(v.str()));
    case Kind::List: case Kind::Tuple:
      if (v.lazy_kind() == Lazy::Generator) throw Error("object of type 'generator' has no len()");
      return int64_t(v.items().size());
    case Kind::Dict: case Kind::Namespace: return int64_t(v.dict_ref().items.size());
    case Kind::Loop: return v.loop_info().length;
    default: throw Error(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

// Sort key: strings lowercased unless case-sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(lower(v.str()));
  return v;
}

ValueList sorted(Interp& in, ValueList items, bool reverse, bool cs, const Value& attribute) {
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i) {
    in.step();
    Value k = attribute.is_none() || attribute.is_undefined() ? items[i] : attr_path(in, items[i], attribute);
    keyed.emplace_back(sort_key(k, cs), i);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? py_compare(b.first, a.first) < 0 : py_compare(a.first, b.first) < 0;
  });
  ValueList out;
  for (auto& [k, i] : keyed) out.push_back(items[i]);
  return out;
}

Value f_tojson(Interp& in, const Value& v, Args& a) {
  JsonDumpOptions o;
  // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None,
  // sort_keys=False).
  o.ensure_ascii = arg(a, 0, "ensure_ascii", Value::boolean(false)).truthy();
  const Value indent = arg(a, 1, "indent", Value::none());
  if (indent.is_int()) {
    o.has_indent = true;
    o.indent = std::string(size_t(std::max<int64_t>(0, std::min<int64_t>(indent.as_int(), 1 << 16))), ' ');
  } else if (indent.is_string()) {
    o.has_indent = true;
    o.indent = indent.str();
  } else if (!indent.is_none()) {
    throw Error("tojson: indent must be an integer, a string or None");
  }
  if (o.has_indent) o.item_sep = ",";
  const Value seps = arg(a, 2, "separators", Value::none());
  if (!seps.is_none()) {
    if (!seps.is_sequence() || seps.items().size() != 2)
      throw Error("tojson: separators must be a pair of strings");
    o.item_sep = need_str(seps.items()[0], "separator");
    o.key_sep = need_str(seps.items()[1], "separator");
  }
  o.sort_keys = arg(a, 3, "sort_keys", Value::boolean(false)).truthy();
  std::string out;
  json_dump(out, v, o);
  in.check_size(out.size());
  return Value::string(std::move(out));
}

Value f_default(Interp&, const Value& v, Args& a) {
  const bool boolean = arg(a, 1, "boolean", Value::boolean(false)).truthy();
  if (v.is_undefined() || (boolean && !v.truthy())) return arg(a, 0, "default_value", Value::string(""));
  return v;
}

Value f_length(Interp&, const Value& v, Args&) { return Value::integer(py_len(v)); }

Value f_first(Interp&, const Value& v, Args&) {
  if (v.lazy_kind() == Lazy::Generator) {
    Value x = v.next_item();
    return x.is_undefined() ? Value::undefined("No first item, sequence was empty.") : x;
  }
  ValueList items = v.iterate();
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}
Value f_last(Interp&, const Value& v, Args&) {
  if (v.is_undefined()) throw Error("'Undefined' object is not reversible");
  if (v.lazy_kind() == Lazy::Generator) throw Error("'generator' object is not reversible");
  ValueList items = v.iterate();
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value f_join(Interp& in, const Value& v, Args& a) {
  const std::string sep = soft_str(arg(a, 0, "d", Value::string("")));
  const Value attribute = arg(a, 1, "attribute", Value::none());
  std::string out;
  const ValueList items = v.iterate();
  for (size_t i = 0; i < items.size(); ++i) {
    in.step();
    if (i) out += sep;
    (attribute.is_none() ? items[i] : attr_path(in, items[i], attribute)).append_str(out);
    in.check_size(out.size());
  }
  return Value::string(std::move(out));
}

// Filters that work on soft_str(value) keep a Markup a Markup.
Value like(const Value& v, std::string s) {
  return v.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
}
Value f_string(Interp&, const Value& v, Args&) { return v.is_string() ? v : Value::string(soft_str(v)); }
Value f_upper(Interp&, const Value& v, Args&) { return like(v, upper(soft_str(v))); }
Value f_lower(Interp&, const Value& v, Args&) { return like(v, lower(soft_str(v))); }
Value f_capitalize(Interp&, const Value& v, Args&) { return like(v, py_capitalize(soft_str(v))); }
Value f_title(Interp&, const Value& v, Args&) {
  // Jinja splits on runs of whitespace and -({[< and capitalizes each piece.
  const auto cps = to_cps(soft_str(v));
  std::string out;
  bool word_start = true;
  for (uint32_t cp : cps) {
    const bool sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    if (sep) {
      unicode::append_utf8(out, cp);
      word_start = true;
    } else {
      unicode::append_utf8(out, word_start ? to_upper(cp) : to_lower(cp));
      word_start = false;
    }
  }
  return Value::string(std::move(out));
}
Value f_trim(Interp&, const Value& v, Args& a) {
  return like(v, strip(soft_str(v), arg(a, 0, "chars", Value::none()), true, true));
}
Value f_replace(Interp& in, const Value& v, Args& a) {
  const Value count = arg(a, 2, "count", Value::none());
  std::string out = replace(soft_str(v), soft_str(arg(a, 0, "old")), soft_str(arg(a, 1, "new")),
                            count.is_none() ? -1 : need_int(count, "count"));
  in.check_size(out.size());
  return Value::string(std::move(out));
}
Value f_safe(Interp&, const Value& v, Args&) { return v.is_markup() ? v : Value::markup(soft_str(v)); }
Value f_escape(Interp&, const Value& v, Args&) {
  return v.is_markup() ? v : Value::markup(html_escape(soft_str(v)));
}
Value f_forceescape(Interp&, const Value& v, Args&) { return Value::markup(html_escape(soft_str(v))); }

Value f_list(Interp& in, const Value& v, Args&) {
  ValueList items = v.iterate();
  in.step(int64_t(items.size()));
  return Value::list(std::move(items));
}

Value f_items(Interp& in, const Value& v, Args&) {
  if (v.is_undefined()) return Value::lazy({}, Lazy::Generator);
  if (!v.is_mapping()) throw Error("Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [k, x] : v.dict_ref().items) {
    in.step();
    out.push_back(Value::tuple({k, x}));
  }
  return Value::lazy(std::move(out), Lazy::Generator);
}

Value f_dictsort(Interp& in, const Value& v, Args& a) {
  if (!v.is_mapping()) throw Error("dictsort: expected a mapping");
  const bool cs = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const std::string by = soft_str(arg(a, 1, "by", Value::string("key")));
  const bool reverse = arg(a, 2, "reverse", Value::boolean(false)).truthy();
  if (by != "key" && by != "value") throw Error("You can only sort by either 'key' or 'value'");
  ValueList pairs;
  for (const auto& [k, x] : v.dict_ref().items) pairs.push_back(Value::tuple({k, x}));
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < pairs.size(); ++i)
    keyed.emplace_back(sort_key(pairs[i].items()[by == "key" ? 0 : 1], cs), i);
  in.step(int64_t(pairs.size()));
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? py_compare(y.first, x.first) < 0 : py_compare(x.first, y.first) < 0;
  });
  ValueList out;
  for (auto& [k, i] : keyed) out.push_back(pairs[i]);
  return Value::list(std::move(out));
}

Value f_sort(Interp& in, const Value& v, Args& a) {
  return Value::list(sorted(in, v.iterate(), arg(a, 0, "reverse", Value::boolean(false)).truthy(),
                            arg(a, 1, "case_sensitive", Value::boolean(false)).truthy(),
                            arg(a, 2, "attribute", Value::none())));
}

Value f_unique(Interp& in, const Value& v, Args& a) {
  const bool cs = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attribute = arg(a, 1, "attribute", Value::none());
  ValueList out, seen;
  for (const auto& item : v.iterate()) {
    in.step(int64_t(seen.size()) + 1);
    Value k = sort_key(attribute.is_none() ? item : attr_path(in, item, attribute), cs);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return py_equal(s, k); })) continue;
    seen.push_back(k);
    out.push_back(item);
  }
  return Value::lazy(std::move(out), Lazy::Generator);
}

Value f_reverse(Interp& in, const Value& v, Args&) {
  if (v.is_string()) {
    auto cps = to_cps(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value::string(from_cps(cps, 0, cps.size()));
  }
  ValueList items = v.iterate();
  in.step(int64_t(items.size()));
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

// map / select / reject / selectattr / rejectattr
Value f_map(Interp& in, const Value& v, Args& a) {
  ValueList out;
  if (!v.truthy()) return Value::lazy({}, Lazy::Generator);  // nothing over a falsy value (None too)
  const ValueList items = v.iterate();
  if (a.pos.empty()) {
    const Value attribute = arg(a, 99, "attribute");
    if (attribute.is_undefined()) throw Error("map: expected a filter name or attribute=");
    const Value def = arg(a, 99, "default");
    for (const auto& item : items) {
      in.step();
      Value x = attr_path(in, item, attribute);
      out.push_back(x.is_undefined() && !def.is_undefined() ? def : x);
    }
    return Value::lazy(std::move(out), Lazy::Generator);
  }
  const std::string name = need_str(a.pos[0], "map filter name");
  Args rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  if (!has_filter(name)) throw Error("No filter named '" + name + "'.");
  for (const auto& item : items) {
    Args copy = rest;
    out.push_back(in.filter(name, item, copy));
  }
  return Value::lazy(std::move(out), Lazy::Generator);
}

Value select_common(Interp& in, const Value& v, Args& a, bool by_attr, bool keep_if) {
  if (!v.truthy()) return Value::lazy({}, Lazy::Generator);  // a falsy value (None too): nothing
  size_t i = 0;
  Value attribute;
  if (by_attr) {
    if (a.pos.empty()) throw Error("Missing parameter for attribute name");
    attribute = a.pos[0];
    i = 1;
  }
  std::string test;
  Args targs;
  if (i < a.pos.size()) {
    test = need_str(a.pos[i], "test name");
    if (!has_test(test)) throw Error("No test named '" + test + "'.");
    targs.pos.assign(a.pos.begin() + long(i) + 1, a.pos.end());
    targs.kw = a.kw;
  }
  ValueList out;
  for (const auto& item : v.iterate()) {
    in.step();
    const Value x = by_attr ? attr_path(in, item, attribute) : item;
    bool ok;
    if (test.empty()) {
      ok = x.truthy();
    } else {
      Args copy = targs;
      ok = in.test(test, x, copy);
    }
    if (ok == keep_if) out.push_back(item);
  }
  return Value::lazy(std::move(out), Lazy::Generator);
}
Value f_select(Interp& in, const Value& v, Args& a) { return select_common(in, v, a, false, true); }
Value f_reject(Interp& in, const Value& v, Args& a) { return select_common(in, v, a, false, false); }
Value f_selectattr(Interp& in, const Value& v, Args& a) { return select_common(in, v, a, true, true); }
Value f_rejectattr(Interp& in, const Value& v, Args& a) { return select_common(in, v, a, true, false); }

// Python int(str) / float(str): surrounding whitespace and single underscores allowed.
bool parse_int(std::string s, int base, int64_t& out) {
  s = strip(s, Value::none(), true, true);
  std::string digits;
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (base == 16 && s.compare(i, 2, "0x") == 0) i += 2;
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && s[i + 1] != '_') continue;
    digits += s[i];
  }
  if (digits.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, base);
  if (*end || errno == ERANGE) return false;
  out = neg ? -v : v;
  return true;
}
bool parse_float(std::string s, double& out) {
  s = strip(s, Value::none(), true, true);
  if (s.empty()) return false;
  std::string low = lower(s);
  if (low == "nan" || low == "+nan" || low == "-nan") return out = NAN, true;
  if (low == "inf" || low == "+inf" || low == "infinity" || low == "+infinity") return out = INFINITY, true;
  if (low == "-inf" || low == "-infinity") return out = -INFINITY, true;
  for (char c : s)
    if (!(std::isdigit(uint8_t(c)) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' || c == '_'))
      return false;
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return *end == 0;
}

Value f_int(Interp&, const Value& v, Args& a) {
  const Value def = arg(a, 0, "default", Value::integer(0));
  const int64_t base = need_int(arg(a, 1, "base", Value::integer(10)), "base");
  if (v.is_int()) return Value::integer(v.as_int());
  if (v.kind() == Kind::Float) {
    if (!std::isfinite(v.as_double()) || std::fabs(v.as_double()) >= 9.2e18) return def;
    return Value::integer(int64_t(v.as_double()));
  }
  if (v.is_string()) {
    int64_t i;
    if (base >= 2 && base <= 36 && parse_int(v.str(), int(base), i)) return Value::integer(i);
    double f;
    if (parse_float(v.str(), f) && std::isfinite(f) && std::fabs(f) < 9.2e18) return Value::integer(int64_t(f));
  }
  return def;
}

Value f_float(Interp&, const Value& v, Args& a) {
  const Value def = arg(a, 0, "default", Value::number(0.0));
  if (v.is_number()) return Value::number(v.as_double());
  double f;
  if (v.is_string() && parse_float(v.str(), f)) return Value::number(f);
  return def;
}

Value f_abs(Interp&, const Value& v, Args&) {
  if (v.kind() == Kind::Float) return Value::number(std::fabs(v.as_double()));
  if (v.is_int()) {
    if (v.as_int() == INT64_MIN) throw Error("integer overflow");
    return Value::integer(std::abs(v.as_int()));
  }
  throw Error(std::string("bad operand type for abs(): '") + v.type_name() + "'");
}

Value f_round(Interp&, const Value& v, Args& a) {
  const int64_t precision = need_int(arg(a, 0, "precision", Value::integer(0)), "precision");
  const std::string method = soft_str(arg(a, 1, "method", Value::string("common")));
  if (!v.is_number()) throw Error("round: expected a number");
  const double x = v.as_double(), scale = std::pow(10.0, double(precision));
  if (method == "ceil") return Value::number(std::ceil(x * scale) / scale);
  if (method == "floor") return Value::number(std::floor(x * scale) / scale);
  if (method != "common") throw Error("method must be 'common', 'ceil' or 'floor'");
  if (v.is_int()) return Value::integer(v.as_int());
  // Python's round(): half to even.
  const double y = x * scale;
  double r = std::nearbyint(y);
  return Value::number(r / scale);
}

Value f_indent(Interp& in, const Value& v, Args& a) {
  const Value width = arg(a, 0, "width", Value::integer(4));
  const bool first = arg(a, 1, "first", Value::boolean(false)).truthy();
  const bool blank = arg(a, 2, "blank", Value::boolean(false)).truthy();
  std::string ind;
  if (width.is_string()) {
    ind = width.str();
  } else {
    const int64_t w = need_int(width, "width");
    in.check_size(size_t(std::max<int64_t>(0, w)));
    ind = std::string(size_t(std::max<int64_t>(0, w)), ' ');
  }
  if (!v.is_string())
    throw Error(std::string("unsupported operand type(s) for +=: '") + v.type_name() + "' and 'str'");
  const std::vector<std::string> lines = splitlines(v.str() + "\n");
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + ind;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += ind;
      rv += lines[i];
      in.check_size(rv.size());
    }
  }
  if (first) rv = ind + rv;
  return Value::string(std::move(rv));
}

Value f_center(Interp& in, const Value& v, Args& a) {
  Args b;
  b.pos.push_back(arg(a, 0, "width", Value::integer(80)));
  return in.call(str_method(Value::string(soft_str(v)), "center"), b);
}

Value f_wordcount(Interp&, const Value& v, Args&) {
  int64_t n = 0;
  bool in_word = false;
  for (uint32_t cp : to_cps(soft_str(v))) {
    const bool w = is_word(cp);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

Value f_batch(Interp& in, const Value& v, Args& a) {
  const int64_t n = need_int(arg(a, 0, "linecount"), "linecount");
  if (n <= 0) throw Error("batch: linecount must be positive");
  const Value fill = arg(a, 1, "fill_with", Value::none());
  ValueList out, cur;
  for (const auto& item : v.iterate()) {
    in.step();
    cur.push_back(item);
    if (int64_t(cur.size()) == n) {
      out.push_back(Value::list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (!fill.is_none())
      while (int64_t(cur.size()) < n) cur.push_back(fill);
    out.push_back(Value::list(std::move(cur)));
  }
  return Value::list(std::move(out));
}

Value f_sum(Interp& in, const Value& v, Args& a) {
  const Value attribute = arg(a, 0, "attribute", Value::none());
  Value total = arg(a, 1, "start", Value::integer(0));
  for (const auto& item : v.iterate()) {
    in.step();
    const Value x = attribute.is_none() ? item : attr_path(in, item, attribute);
    if (!x.is_number() || !total.is_number())
      throw Error(std::string("unsupported operand type(s) for +: '") + total.type_name() + "' and '" +
                  x.type_name() + "'");
    if (total.kind() == Kind::Float || x.kind() == Kind::Float) {
      total = Value::number(total.as_double() + x.as_double());
    } else {
      int64_t r;
      if (__builtin_add_overflow(total.as_int(), x.as_int(), &r)) throw Error("integer overflow");
      total = Value::integer(r);
    }
  }
  return total;
}

Value minmax(Interp& in, const Value& v, Args& a, bool want_max) {
  const bool cs = arg(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attribute = arg(a, 1, "attribute", Value::none());
  const ValueList items = v.iterate();
  if (items.empty()) return Value::undefined(want_max ? "No aggregated item, sequence was empty." : "No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    in.step();
    Value k = sort_key(attribute.is_none() ? items[i] : attr_path(in, items[i], attribute), cs);
    if (i == 0 || (want_max ? py_compare(k, best_key) > 0 : py_compare(k, best_key) < 0)) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}
Value f_min(Interp& in, const Value& v, Args& a) { return minmax(in, v, a, false); }
Value f_max(Interp& in, const Value& v, Args& a) { return minmax(in, v, a, true); }

Value f_attr(Interp& in, const Value& v, Args& a) {
  const std::string& name = need_str(arg(a, 0, "name"), "attribute name");
  if (v.is_mapping()) {
    Value m = bound_method(v, name);
    return m.is_undefined() ? Value::undefined("no attribute '" + name + "'") : m;
  }
  if (v.kind() == Kind::Namespace) {
    const Value* x = v.dict_ref().find(std::string_view(name));
    return x ? *x : Value::undefined("no attribute '" + name + "'");
  }
  (void)in;
  return bound_method(v, name);
}

Value f_format(Interp&, const Value& v, Args& a) {
  if (!a.kw.empty() && !a.pos.empty()) throw Error("can't handle positional and keyword arguments at the same time");
  if (!a.kw.empty()) {
    Dict d;
    for (auto& [k, x] : a.kw) d.set(Value::string(k), x);
    return Value::string(percent_format(soft_str(v), Value::dict(std::move(d))));
  }
  return Value::string(percent_format(soft_str(v), Value::tuple(a.pos)));
}

Value f_truncate(Interp&, const Value& v, Args& a) {
  const std::string s = soft_str(v);
  const int64_t length = need_int(arg(a, 0, "length", Value::integer(255)), "length");
  const bool killwords = arg(a, 1, "killwords", Value::boolean(false)).truthy();
  const std::string end = soft_str(arg(a, 2, "end", Value::string("...")));
  const Value lw = arg(a, 3, "leeway", Value::integer(5));
  const int64_t leeway = lw.is_int() ? lw.as_int() : 5;
  const auto cps = to_cps(s);
  const int64_t n = int64_t(cps.size()), elen = int64_t(cp_count(end));
  if (n <= length + leeway) return Value::string(s);
  const int64_t keep = std::max<int64_t>(0, length - elen);
  std::string head = from_cps(cps, 0, size_t(keep));
  if (killwords) return Value::string(head + end);
  const size_t sp = head.rfind(' ');
  if (sp != std::string::npos) head.resize(sp);
  return Value::string(head + end);
}

Value f_slice(Interp& in, const Value& v, Args& a) {
  const int64_t n = need_int(arg(a, 0, "slices"), "slices");
  if (n <= 0) throw Error("slice: the number of slices must be positive");
  const Value fill = arg(a, 1, "fill_with", Value::none());
  const ValueList items = v.iterate();
  in.step(int64_t(items.size()) + n);
  const int64_t len = int64_t(items.size()), per = len / n, extra = len % n;
  ValueList out;
  int64_t offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = offset + i * per;
    if (i < extra) ++offset;
    const int64_t end = offset + (i + 1) * per;
    ValueList part(items.begin() + start, items.begin() + end);
    if (!fill.is_none() && i >= extra) part.push_back(fill);
    out.push_back(Value::list(std::move(part)));
  }
  return Value::list(std::move(out));
}

Value f_striptags(Interp&, const Value& v, Args&) {
  // Markup.striptags: comments and tags removed, entities unescaped, whitespace collapsed.
  const std::string s = soft_str(v);
  std::string text;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 4, "<!--") == 0) {
      const size_t e = s.find("-->", i + 4);
      if (e == std::string::npos) {
        text.append(s, i, std::string::npos);
        break;
      }
      i = e + 3;
    } else if (s[i] == '<' && i + 1 < s.size() && s.find('>', i + 1) != std::string::npos) {
      i = s.find('>', i + 1) + 1;
    } else {
      text += s[i++];
    }
  }
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#34;", "\""},
      {"&#39;", "'"}, {"&apos;", "'"}, {"&nbsp;", "\u00a0"}};
  for (const auto& [from, to] : kEntities) text = replace(text, from, to, -1);
  std::string out;
  for (const auto& w : split_ws(text, -1, false)) {
    if (!out.empty()) out += ' ';
    out += w.str();
  }
  return Value::string(std::move(out));
}

// groupby: (grouper, list) pairs sorted by the key; the pairs answer .grouper and .list too.
Value f_groupby(Interp& in, const Value& v, Args& a) {
  const Value attribute = arg(a, 0, "attribute");
  const Value def = arg(a, 1, "default", Value::none());
  const bool cs = arg(a, 2, "case_sensitive", Value::boolean(false)).truthy();
  ValueList items = v.iterate();
  std::vector<std::pair<Value, Value>> keyed;  // (sort key, item)
  for (const auto& item : items) {
    in.step();
    Value k = attr_path(in, item, attribute);
    if (k.is_undefined() && !def.is_none()) k = def;
    keyed.emplace_back(k, item);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return py_compare(sort_key(x.first, cs), sort_key(y.first, cs)) < 0;
  });
  ValueList out;
  for (size_t i = 0; i < keyed.size();) {
    ValueList group;
    size_t j = i;
    while (j < keyed.size() && py_equal(sort_key(keyed[j].first, cs), sort_key(keyed[i].first, cs)))
      group.push_back(keyed[j++].second);
    out.push_back(Value::tuple({keyed[i].first, Value::list(std::move(group))}));
    i = j;
  }
  return Value::list(std::move(out));
}

// A filter: its function and its Python signature after the subject (positional order;
// `required` of them must be given; variadic filters take anything).
struct FilterDef {
  FilterFn fn;
  std::vector<const char*> params;
  size_t required = 0;
  bool variadic = false;
};

const std::map<std::string, FilterDef, std::less<>>& filter_table() {
  using P = std::vector<const char*>;
  static const std::map<std::string, FilterDef, std::less<>> m = {
      {"abs", {f_abs, {}}},
      {"attr", {f_attr, P{"name"}, 1}},
      {"batch", {f_batch, P{"linecount", "fill_with"}, 1}},
      {"capitalize", {f_capitalize, {}}},
      {"center", {f_center, P{"width"}}},
      {"count", {f_length, {}}},
      {"d", {f_default, P{"default_value", "boolean"}}},
      {"default", {f_default, P{"default_value", "boolean"}}},
      {"dictsort", {f_dictsort, P{"case_sensitive", "by", "reverse"}}},
      {"e", {f_escape, {}}},
      {"escape", {f_escape, {}}},
      {"first", {f_first, {}}},
      {"float", {f_float, P{"default"}}},
      {"forceescape", {f_forceescape, {}}},
      {"format", {f_format, {}, 0, true}},
      {"groupby", {f_groupby, P{"attribute", "default", "case_sensitive"}, 1}},
      {"indent", {f_indent, P{"width", "first", "blank"}}},
      {"int", {f_int, P{"default", "base"}}},
      {"items", {f_items, {}}},
      {"join", {f_join, P{"d", "attribute"}}},
      {"last", {f_last, {}}},
      {"length", {f_length, {}}},
      {"list", {f_list, {}}},
      {"lower", {f_lower, {}}},
      {"map", {f_map, {}, 0, true}},
      {"max", {f_max, P{"case_sensitive", "attribute"}}},
      {"min", {f_min, P{"case_sensitive", "attribute"}}},
      {"reject", {f_reject, {}, 0, true}},
      {"rejectattr", {f_rejectattr, {}, 0, true}},
      {"replace", {f_replace, P{"old", "new", "count"}, 2}},
      {"reverse", {f_reverse, {}}},
      {"round", {f_round, P{"precision", "method"}}},
      {"safe", {f_safe, {}}},
      {"select", {f_select, {}, 0, true}},
      {"selectattr", {f_selectattr, {}, 0, true}},
      {"slice", {f_slice, P{"slices", "fill_with"}, 1}},
      {"sort", {f_sort, P{"reverse", "case_sensitive", "attribute"}}},
      {"string", {f_string, {}}},
      {"striptags", {f_striptags, {}}},
      {"sum", {f_sum, P{"attribute", "start"}}},
      {"title", {f_title, {}}},
      {"tojson", {f_tojson, P{"ensure_ascii", "indent", "separators", "sort_keys"}}},
      {"trim", {f_trim, P{"chars"}}},
      {"truncate", {f_truncate, P{"length", "killwords", "end", "leeway"}}},
      {"unique", {f_unique, P{"case_sensitive", "attribute"}}},
      {"upper", {f_upper, {}}},
      {"wordcount", {f_wordcount, {}}},
  };
  return m;
}

void check_signature(const std::string& name, const FilterDef& d, const Args& a) {
  if (d.variadic) return;
  if (a.pos.size() > d.params.size())
    throw Error("filter '" + name + "' takes at most " + std::to_string(d.params.size()) +
                " argument(s), " + std::to_string(a.pos.size()) + " given");
  std::vector<bool> given(d.params.size(), false);
  for (size_t i = 0; i < a.pos.size(); ++i) given[i] = true;
  for (const auto& kv : a.kw) {
    size_t i = 0;
    while (i < d.params.size() && kv.first != d.params[i]) ++i;
    if (i == d.params.size())
      throw Error("filter '" + name + "' got an unexpected keyword argument '" + kv.first + "'");
    if (given[i]) throw Error("filter '" + name + "' got multiple values for argument '" + kv.first + "'");
    given[i] = true;
  }
  for (size_t i = 0; i < d.required; ++i)
    if (!given[i])
      throw Error("filter '" + name + "' missing required argument '" + d.params[i] + "'");
}

// ---- tests -----------------------------------------------------------------------------

using TestFn = bool (*)(Interp&, const Value&, Args&);

bool t_defined(Interp&, const Value& v, Args&) { return !v.is_undefined(); }
bool t_undefined(Interp&, const Value& v, Args&) { return v.is_undefined(); }
bool t_none(Interp&, const Value& v, Args&) { return v.is_none(); }
bool t_string(Interp&, const Value& v, Args&) { return v.is_string(); }
bool t_mapping(Interp&, const Value& v, Args&) { return v.is_mapping(); }
bool t_iterable(Interp&, const Value& v, Args&) { return v.is_iterable(); }
bool t_sequence(Interp&, const Value& v, Args&) {
  return v.is_string() || v.is_sequence() || v.is_mapping() || v.is_undefined();
}
bool t_number(Interp&, const Value& v, Args&) { return v.is_number(); }
bool t_integer(Interp&, const Value& v, Args&) { return v.kind() == Kind::Int; }
bool t_float(Interp&, const Value& v, Args&) { return v.kind() == Kind::Float; }
bool t_boolean(Interp&, const Value& v, Args&) { return v.kind() == Kind::Bool; }
bool t_true(Interp&, const Value& v, Args&) { return v.kind() == Kind::Bool && v.as_bool(); }
bool t_false(Interp&, const Value& v, Args&) { return v.kind() == Kind::Bool && !v.as_bool(); }
bool t_callable(Interp&, const Value& v, Args&) {
  return v.is_callable() || v.is_undefined() || v.kind() == Kind::Loop;  // as Python
}
bool t_escaped(Interp&, const Value&, Args&) { return false; }
int64_t int_of(const Value& v) {
  if (!v.is_int()) throw Error(std::string("expected an integer, got ") + v.type_name());
  return v.as_int();
}
bool t_even(Interp&, const Value& v, Args&) { return int_of(v) % 2 == 0; }
bool t_odd(Interp&, const Value& v, Args&) { return int_of(v) % 2 != 0; }
bool t_divisibleby(Interp&, const Value& v, Args& a) {
  const int64_t n = int_of(arg(a, 0, "num"));
  if (n == 0) throw Error("integer division or modulo by zero");
  return int_of(v) % n == 0;
}
bool t_eq(Interp&, const Value& v, Args& a) { return py_equal(v, arg(a, 0, "other")); }
bool t_ne(Interp&, const Value& v, Args& a) { return !py_equal(v, arg(a, 0, "other")); }
bool t_lt(Interp&, const Value& v, Args& a) { return py_compare(v, arg(a, 0, "other")) < 0; }
bool t_le(Interp&, const Value& v, Args& a) { return py_compare(v, arg(a, 0, "other")) <= 0; }
bool t_gt(Interp&, const Value& v, Args& a) { return py_compare(v, arg(a, 0, "other")) > 0; }
bool t_ge(Interp&, const Value& v, Args& a) { return py_compare(v, arg(a, 0, "other")) >= 0; }
bool t_in(Interp&, const Value& v, Args& a) {
  const Value seq = arg(a, 0, "seq");
  if (seq.is_string()) return v.is_string() && seq.str().find(v.str()) != std::string::npos;
  if (seq.is_mapping()) return seq.dict_ref().find(v) != nullptr;
  for (const auto& x : seq.iterate())
    if (py_equal(x, v)) return true;
  return false;
}
bool t_sameas(Interp&, const Value& v, Args& a) {
  const Value o = arg(a, 0, "other");
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Kind::None: case Kind::Undefined: return true;
    case Kind::Bool: case Kind::Int: return v.as_int() == o.as_int();
    case Kind::String: return &v.str() == &o.str() || v.str() == o.str();
    case Kind::List: case Kind::Tuple: return &v.items() == &o.items();
    case Kind::Dict: case Kind::Namespace: return &v.dict_ref() == &o.dict_ref();
    default: return py_equal(v, o);
  }
}
bool t_lower(Interp&, const Value& v, Args&) {
  if (!v.is_string()) return false;
  const std::string s = v.str();
  bool cased = false;
  for (uint32_t c : to_cps(s)) {
    if (!is_cased_letter(c)) continue;
    cased = true;
    if (to_lower(c) != c) return false;
  }
  return cased;
}
bool t_upper(Interp&, const Value& v, Args&) {
  if (!v.is_string()) return false;
  bool cased = false;
  for (uint32_t c : to_cps(v.str())) {
    if (!is_cased_letter(c)) continue;
    cased = true;
    if (to_upper(c) != c) return false;
  }
  return cased;
}
bool t_filter(Interp&, const Value& v, Args&) { return v.is_string() && has_filter(v.str()); }
bool t_test(Interp&, const Value& v, Args&) { return v.is_string() && has_test(v.str()); }

const std::map<std::string, TestFn, std::less<>>& tests() {
  static const std::map<std::string, TestFn, std::less<>> m = {
      {"!=", t_ne}, {"<", t_lt}, {"<=", t_le}, {"==", t_eq}, {">", t_gt}, {">=", t_ge},
      {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined},
      {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq}, {"escaped", t_escaped},
      {"even", t_even}, {"false", t_false}, {"filter", t_filter}, {"float", t_float},
      {"ge", t_ge}, {"greaterthan", t_gt}, {"gt", t_gt}, {"in", t_in}, {"integer", t_integer},
      {"iterable", t_iterable}, {"le", t_le}, {"lessthan", t_lt}, {"lower", t_lower},
      {"lt", t_lt}, {"mapping", t_mapping}, {"ne", t_ne}, {"none", t_none},
      {"number", t_number}, {"odd", t_odd}, {"sameas", t_sameas}, {"sequence", t_sequence},
      {"string", t_string}, {"test", t_test}, {"true", t_true}, {"undefined", t_undefined},
      {"upper", t_upper},
  };
  return m;
}

// ---- globals ---------------------------------------------------------------------------

Value g_range(Interp& in, Args& a) {
  if (!a.kw.empty()) throw Error("range() takes no keyword arguments");
  int64_t start = 0, stop, step = 1;
  if (a.pos.size() == 1) {
    stop = need_int(a.pos[0], "range argument");
  } else if (a.pos.size() == 2 || a.pos.size() == 3) {
    start = need_int(a.pos[0], "range argument");
    stop = need_int(a.pos[1], "range argument");
    if (a.pos.size() == 3) step = need_int(a.pos[2], "range argument");
  } else {
    throw Error("range expected 1 to 3 arguments, got " + std::to_string(a.pos.size()));
  }
  if (step == 0) throw Error("range() arg 3 must not be zero");
  const long double count = step > 0 ? std::ceil((long double)(stop - (long double)start) / step)
                                     : std::ceil((long double)(start - (long double)stop) / -step);
  // The sandbox's limit (jinja2.sandbox.MAX_RANGE).
  if (count > 100000)
    throw Error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  ValueList out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(Value::integer(i));
  in.step(int64_t(out.size()));
  return make_range(start, stop, step, std::move(out));
}

Value g_dict(Interp&, Args& a) {
  Dict d;
  if (!a.pos.empty()) {
    if (a.pos.size() > 1) throw Error("dict expected at most 1 argument");
    const Value& src = a.pos[0];
    if (src.is_mapping()) {
      d = src.dict_ref();
    } else {
      for (const auto& pair : src.iterate()) {
        if (!pair.is_sequence() || pair.items().size() != 2)
          throw Error("dictionary update sequence element has the wrong length");
        d.set(pair.items()[0], pair.items()[1]);
      }
    }
  }
  for (auto& [k, v] : a.kw) d.set(Value::string(k), v);
  return Value::dict(std::move(d));
}

Value g_namespace(Interp&, Args& a) {
  Dict d;
  for (const auto& p : a.pos) {
    if (!p.is_mapping()) throw Error("namespace() takes mappings as positional arguments");
    for (const auto& [k, v] : p.dict_ref().items) d.set(k, v);
  }
  for (auto& [k, v] : a.kw) d.set(Value::string(k), v);
  return Value::ns(std::move(d));
}

Value g_raise(Interp&, Args& a) {
  throw Error(a.pos.empty() ? std::string("raise_exception") : soft_str(a.pos[0]));
}

Value g_strftime_now(Interp&, Args& a) {
  const std::string fmt = need_str(arg(a, 0, "format"), "format");
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[512];
  const size_t n = fmt.size() < 200 ? std::strftime(buf, sizeof buf, fmt.c_str(), &tm) : 0;
  if (n == 0 && !fmt.empty()) throw Error("strftime_now: format too long or empty result");
  return Value::string(std::string(buf, n));
}

Value g_cycler(Interp&, Args& a) {
  auto items = std::make_shared<ValueList>(a.pos);
  if (items->empty()) throw Error("cycler needs at least one item");
  Dict d;
  d.set(Value::string("current"), (*items)[0]);
  Value ns = Value::ns(std::move(d));
  std::weak_ptr<Dict> self = ns.dict_ptr();
  auto pos = std::make_shared<size_t>(0);
  ns.dict_mut().set(Value::string("next"), Value::function("cycler.next", [items, pos, self](Interp&, Args&) {
    const Value v = (*items)[*pos];
    *pos = (*pos + 1) % items->size();
    if (auto d = self.lock()) d->set(Value::string("current"), (*items)[*pos]);
    return v;
  }));
  ns.dict_mut().set(Value::string("reset"), Value::function("cycler.reset", [items, pos, self](Interp&, Args&) {
    *pos = 0;
    if (auto d = self.lock()) d->set(Value::string("current"), (*items)[0]);
    return Value::none();
  }));
  return ns;
}

Value g_joiner(Interp&, Args& a) {
  const std::string sep = soft_str(arg(a, 0, "sep", Value::string(", ")));
  auto used = std::make_shared<bool>(false);
  return Value::function("joiner", [sep, used](Interp&, Args&) {
    if (!*used) {
      *used = true;
      return Value::string("");
    }
    return Value::string(sep);
  });
}

}  // namespace

Value make_range(int64_t start, int64_t stop, int64_t step, ValueList items) {
  std::string repr = "range(" + std::to_string(start) + ", " + std::to_string(stop);
  if (step != 1) repr += ", " + std::to_string(step);
  return Value::lazy(std::move(items), Lazy::Range, repr + ")");
}

Value slice_range(const Value& range, int64_t lo, int64_t hi, int64_t step, ValueList items) {
  // The range's own start and step, back from its repr "range(a, b[, c])".
  int64_t a = 0, b = 0, c = 1;
  const std::string r = range.to_str();
  if (std::sscanf(r.c_str(), "range(%ld, %ld, %ld)", &a, &b, &c) < 2) return Value::list(std::move(items));
  return make_range(a + lo * c, a + hi * c, c * step, std::move(items));
}

bool has_filter(std::string_view name) { return filter_table().count(name) > 0; }
bool has_test(std::string_view name) { return tests().count(name) > 0; }

Value call_filter(Interp& in, const std::string& name, const Value& subject, Args& args) {
  auto it = filter_table().find(name);
  if (it == filter_table().end()) throw Error("no filter named '" + name + "'");
  check_signature(name, it->second, args);
  return it->second.fn(in, subject, args);
}

bool call_test(Interp& in, const std::string& name, const Value& subject, Args& args) {
  auto it = tests().find(name);
  if (it == tests().end()) throw Error("no test named '" + name + "'");
  return it->second(in, subject, args);
}

Value bound_method(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Kind::String: return str_method(obj, name);
    case Kind::Dict: return dict_method(obj, name);
    case Kind::List: case Kind::Tuple: return list_method(obj, name);
    default: return Value();
  }
}

void add_globals(Dict& g) {
  g.set(Value::string("range"), Value::function("range", g_range));
  g.set(Value::string("dict"), Value::function("dict", g_dict));
  g.set(Value::string("namespace"), Value::function("namespace", g_namespace));
  g.set(Value::string("raise_exception"), Value::function("raise_exception", g_raise));
  g.set(Value::string("strftime_now"), Value::function("strftime_now", g_strftime_now));
  g.set(Value::string("cycler"), Value::function("cycler", g_cycler));
  g.set(Value::string("joiner"), Value::function("joiner", g_joiner));
}

// printf-style formatting: %s %r %d %i %f %e %g %x %o %c %% with flags, width, precision.
std::string percent_format(const std::string& fmt, const Value& args) {
  ValueList pos;
  const Dict* named = nullptr;
  if (args.kind() == Kind::Tuple) pos = args.items();
  else if (args.is_mapping()) named = &args.dict_ref();
  else pos = {args};
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw Error("incomplete format");
    Value v;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos || !named) throw Error("format requires a mapping");
      const Value* x = named->find(std::string_view(fmt).substr(i + 1, close - i - 1));
      if (!x) throw Error("KeyError in format");
      v = *x;
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::strchr("-+ #0", fmt[i]) && fmt[i]) spec += fmt[i++];
    while (i < fmt.size() && std::isdigit(uint8_t(fmt[i]))) spec += fmt[i++];
    if (i < fmt.size() && fmt[i] == '.') {
      spec += fmt[i++];
      while (i < fmt.size() && std::isdigit(uint8_t(fmt[i]))) spec += fmt[i++];
    }
    if (i >= fmt.size()) throw Error("incomplete format");
    const char c = fmt[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (v.is_undefined() && !named) {
      if (next >= pos.size()) throw Error("not enough arguments for format string");
      v = pos[next++];
    }
    if (spec.size() > 12) throw Error("format spec too long");
    char buf[512];
    switch (c) {
      case 's': case 'r': {
        std::string s;
        if (c == 's') v.append_str(s);
        else v.append_repr(s);
        std::snprintf(buf, sizeof buf, (spec + "s").c_str(), "");
        // width handling on the string itself
        std::string w = spec.substr(1);
        const bool left = !w.empty() && w[0] == '-';
        const size_t dot = w.find('.');
        if (dot != std::string::npos) {
          const size_t prec = std::stoul("0" + w.substr(dot + 1));
          auto cps = to_cps(s);
          if (cps.size() > prec) s = from_cps(cps, 0, prec);
          w.resize(dot);
        }
        w.erase(std::remove_if(w.begin(), w.end(), [](char ch) { return !std::isdigit(uint8_t(ch)); }), w.end());
        const size_t width = w.empty() ? 0 : std::min<size_t>(std::stoul(w), 4096);
        const size_t len = cp_count(s);
        if (len < width) s = left ? s + std::string(width - len, ' ') : std::string(width - len, ' ') + s;
        out += s;
        break;
      }
      case 'd': case 'i': case 'x': case 'X': case 'o': case 'c': {
        if (!v.is_number()) throw Error(std::string("%") + c + " format: a number is required, not " + v.type_name());
        const long long n = v.kind() == Kind::Float ? (long long)v.as_double() : (long long)v.as_int();
        if (c == 'c') {
          unicode::append_utf8(out, uint32_t(std::clamp<long long>(n, 0, 0x10FFFF)));
          break;
        }
        std::snprintf(buf, sizeof buf, (spec + "ll" + (c == 'i' ? 'd' : c)).c_str(), n);
        out += buf;
        break;
      }
      case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
        if (!v.is_number()) throw Error(std::string("must be real number, not ") + v.type_name());
        std::snprintf(buf, sizeof buf, (spec + c).c_str(), v.as_double());
        out += buf;
        break;
      }
      default: throw Error(std::string("unsupported format character '") + c + "'");
    }
  }
  if (!named && next < pos.size()) throw Error("not all arguments converted during string formatting");
  return out;
}

}  // namespace tf::jinja
