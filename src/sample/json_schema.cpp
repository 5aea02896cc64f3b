// JSON Schema -> GBNF (see json_schema.h for what is supported).
//
// Every schema node becomes a rule (shared rules such as `string` or `value` once per
// builder, identical bodies once). The grammars are meant to be deterministic, so that the
// matcher follows few parse stacks:
//
//   object  "{" ws S_0 "}": S_k is "the first property written is k or later", R_k "properties
//           after one already written, from k on" (both linear in the number of properties);
//           extra keys (additionalProperties) come after the known ones and are strings that
//           are none of the known keys (a trie of the keys: no duplicate keys).
//   array   "[" ws e_0 ws T_1 "]" with T_i the rest after i items; the tail of `items` is one
//           bounded repetition.
//   string  "\"" char* "\"" where char is one JSON character (escapes included); lengths are
//           char{m,n}. A pattern is compiled from the regex subset below to the JSON-encoded
//           characters it matches: `"` and `\` as \" and \\, tab / newline / CR as \t \n \r
//           (classes produce no other control characters, nor \u escapes; a control character
//           written in the pattern itself comes out as \u00XX).
//   integer bounds become exact digit-range grammars (per number of digits, per leading digit).
//   number  bounds must be integers: integer part range plus fraction (no exponent), exactly.
//
// Regex subset for `pattern` (ECMAScript syntax): literal characters, `.`, classes [..] and
// [^..] with ranges and escapes, \d \w \s \D \W \S, \t \n \r \f \v \0 \xHH \uHHHH, escaped
// punctuation, groups ( ), (?: ) and (?<name> ), alternation |, quantifiers * + ? {m} {m,}
// {m,n} (n <= 1000; lazy `?` suffixes accepted), `^` at the start and `$` at the end of a
// top-level alternative (without them the match may be anywhere in the string, as JSON Schema
// says). Lookaround, backreferences, \b \B, \p{..} and repeating something that can match
// nothing are refused.
#include "sample/json_schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <set>
#include <string_view>

#include "util/error.h"

namespace tf {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 64;             // nested schemas (and $ref hops) per value
constexpr size_t kMaxWork = 200000;       // schema nodes visited per add_schema
constexpr size_t kMaxRules = 12000;       // parser rules (the parser's limit is 20000)
constexpr size_t kMaxElems = 500000;      // parser elements (its limit is 1 << 20)
constexpr size_t kMaxBytes = 512 * 1024;  // grammar text (its limit is 1 MiB)
constexpr int64_t kMaxRepeat = 1000;      // {m,n}
constexpr size_t kMaxPattern = 4096;      // bytes of a `pattern`
constexpr int kMaxRegexNesting = 64;      // parentheses in a pattern
constexpr int kIntDigits = 20;            // digits of an integer part
constexpr double kMaxBound = 1e18;        // |minimum|, |maximum|

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw Error("json schema: " + what + " at " + (path.empty() ? std::string("the root") : path));
}

// One code point of UTF-8 text from i (advanced), or -1 for an invalid sequence.
int64_t next_code_point(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  int n = 0;
  uint32_t cp = 0, min = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 1, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 2, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 3, cp = c & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (i + size_t(n) >= s.size()) return -1;
  for (int k = 1; k <= n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + size_t(k)]);
    if ((d & 0xC0) != 0x80) return -1;
    cp = cp << 6 | (d & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  i += size_t(n) + 1;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | cp >> 6);
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | cp >> 12);
    out += char(0x80 | (cp >> 6 & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | cp >> 18);
    out += char(0x80 | (cp >> 12 & 0x3F));
    out += char(0x80 | (cp >> 6 & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::string hex_escape(uint32_t cp) {
  char buf[16];
  if (cp < 0x100) {
    std::snprintf(buf, sizeof buf, "\\x%02X", unsigned(cp));
  } else if (cp < 0x10000) {
    std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(cp));
  } else {
    std::snprintf(buf, sizeof buf, "\\U%08X", unsigned(cp));
  }
  return buf;
}

// Code point sets: sorted, disjoint, non-adjacent inclusive ranges.
using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;
constexpr uint32_t kMaxCp = 0x10FFFF;

Ranges normalize(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (const auto& p : r) {
    if (!out.empty() && p.first <= out.back().second + 1)
      out.back().second = std::max(out.back().second, p.second);
    else
      out.push_back(p);
  }
  return out;
}

Ranges complement(const Ranges& r) {  // r normalized
  Ranges out;
  uint32_t next = 0;
  for (const auto& p : r) {
    if (p.first > next) out.push_back({next, p.first - 1});
    next = p.second + 1;
  }
  if (r.empty() || r.back().second < kMaxCp) out.push_back({next, kMaxCp});
  return out;
}

Ranges intersect(const Ranges& a, const Ranges& b) {  // both normalized
  Ranges out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const uint32_t lo = std::max(a[i].first, b[j].first);
    const uint32_t hi = std::min(a[i].second, b[j].second);
    if (lo <= hi) out.push_back({lo, hi});
    (a[i].second < b[j].second ? i : j)++;
  }
  return out;
}

bool contains(const Ranges& r, uint32_t c) {
  for (const auto& p : r)
    if (c >= p.first && c <= p.second) return true;
  return false;
}

// One character of a GBNF class.
std::string class_char(uint32_t cp) {
  if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
    return std::string(1, char(cp));
  if (cp > 0x20 && cp < 0x7F &&
      std::string_view("\\]^-[\"").find(char(cp)) == std::string_view::npos)
    return std::string(1, char(cp));
  return hex_escape(cp);
}

// A GBNF class for the set (normalized, not empty); negated when that is shorter.
std::string class_of(const Ranges& r) {
  const Ranges c = complement(r);
  const bool neg = !c.empty() && c.size() < r.size();
  std::string s = neg ? "[^" : "[";
  for (const auto& [lo, hi] : neg ? c : r) {
    s += class_char(lo);
    if (hi > lo + 1) s += '-';
    if (hi > lo) s += class_char(hi);
  }
  return s + "]";
}

}  // namespace

// ---- GbnfBuilder ----

std::string GbnfBuilder::literal(const std::string& text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const int64_t cp = next_code_point(text, i);
    if (cp < 0) throw Error("json schema: invalid UTF-8 in a grammar literal");
    if (cp == '"' || cp == '\\') {
      out += '\\';
      out += char(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x20 || cp == 0x7F) {
      out += hex_escape(uint32_t(cp));
    } else {
      append_utf8(out, uint32_t(cp));
    }
  }
  return out + "\"";
}

std::string GbnfBuilder::add_rule(const std::string& name, const std::string& body) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
      }))
    throw Error("grammar: bad rule name '" + name + "'");
  if (rules_.emplace(name, body).second) {
    order_.push_back(name);
  } else {
    rules_[name] = body;
  }
  return name;
}

std::string GbnfBuilder::str() const {
  if (!rules_.count("root")) throw Error("grammar: no rule 'root'");
  std::string out;
  for (const std::string& name : order_) out += name + " ::= " + rules_.at(name) + "\n";
  return out;
}

namespace {

// What the GBNF parser makes of a rule body, roughly (it counts repetitions as copies).
struct Cost {
  size_t rules = 0, elems = 0;
};

Cost estimate(std::string_view s) {
  Cost c;
  size_t last = 0;  // elements of the last item (what a repetition copies)
  auto number = [&](size_t& i) {
    size_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9')
      v = std::min<size_t>(v * 10 + size_t(s[i++] - '0'), 100000);
    return v;
  };
  for (size_t i = 0; i < s.size();) {
    const char ch = s[i];
    if (ch == '"' || ch == '[') {
      const char close = ch == '"' ? '"' : ']';
      size_t n = 0;
      for (++i; i < s.size() && s[i] != close; ++i, ++n)
        if (s[i] == '\\') ++i;
      ++i;
      last = ch == '"' ? n : 1;
      c.elems += last;
    } else if (ch == '(') {
      ++i;
      ++c.rules;
      last = 0;
    } else if (ch == ')' || ch == '.') {
      ++i;
      ++c.elems;
      last = 1;
    } else if (ch == '*' || ch == '+' || ch == '?') {
      ++i;
      ++c.rules;
      c.elems += last * (ch == '?' ? 2 : 1);
      last = 0;
    } else if (ch == '{') {
      ++i;
      const size_t lo = number(i);
      size_t hi = lo;
      bool open = false;
      if (i < s.size() && s[i] == ',') {
        ++i;
        open = i < s.size() && s[i] == '}';
        hi = open ? 0 : number(i);
      }
      while (i < s.size() && s[i] != '}') ++i;
      ++i;
      c.rules += open ? 1 : hi > lo ? hi - lo : 0;
      c.elems += last * (std::max<size_t>(lo, 1) + hi);
      last = 0;
    } else if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_') {
      while (i < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-' || s[i] == '_'))
        ++i;
      ++c.elems;
      last = 1;
    } else if (ch == '#') {
      while (i < s.size() && s[i] != '\n') ++i;
    } else {
      if (ch == '|') last = 0;
      ++i;
    }
  }
  return c;
}

// ---- Digit ranges ----

std::string repeat_char(char c, size_t n) {
  return std::string(n, c);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// Alternatives as one item of a sequence.
std::string group(const std::vector<std::string>& alts) {
  if (alts.size() == 1) return alts[0];
  std::string r = "(";  // (appended piecewise: GCC 12 warns falsely about "(" + s)
  r += join(alts, " | ");
  r += ')';
  return r;
}

std::string cat(const std::string& a, const std::string& b) {
  return a.empty() ? b : b.empty() ? a : a + " " + b;
}

std::string any_digits(size_t n) {
  return n == 0 ? "" : n == 1 ? "[0-9]" : "[0-9]{" + std::to_string(n) + "}";
}

std::string digit_class(char lo, char hi) {
  if (lo == hi) return std::string("\"") + lo + "\"";
  if (lo == '0' && hi == '9') return "[0-9]";
  return std::string("[") + lo + "-" + hi + "]";
}

// The digit strings of x's length from x to y (x <= y, same length, leading zeros allowed).
std::string same_length(const std::string& x, const std::string& y) {
  size_t p = 0;
  while (p < x.size() && x[p] == y[p]) ++p;
  if (p == x.size()) return x.empty() ? "" : "\"" + x + "\"";
  const std::string prefix = p ? "\"" + x.substr(0, p) + "\"" : "";
  const size_t n = x.size() - p - 1;  // digits after the first that differs
  const std::string xt = x.substr(p + 1), yt = y.substr(p + 1);
  char lo = x[p], hi = y[p];
  std::vector<std::string> alts;
  if (xt != repeat_char('0', n)) {
    alts.push_back(cat(digit_class(lo, lo), same_length(xt, repeat_char('9', n))));
    ++lo;
  }
  const bool y_high = yt == repeat_char('9', n);
  if (!y_high) --hi;
  if (lo <= hi) alts.push_back(cat(digit_class(lo, hi), any_digits(n)));
  if (!y_high) alts.push_back(cat(digit_class(y[p], y[p]), same_length(repeat_char('0', n), yt)));
  return cat(prefix, group(alts));
}

// Decimal integers (no sign, no leading zeros) from a to b; b < 0: no upper bound (at most
// kIntDigits digits).
std::string nonneg_range(int64_t a, int64_t b) {
  const std::string sa = std::to_string(a);
  std::vector<std::string> alts;
  if (b < 0) {
    if (a == 0) return "(\"0\" | [1-9] [0-9]{0," + std::to_string(kIntDigits - 1) + "})";
    alts.push_back(same_length(sa, repeat_char('9', sa.size())));
    if (sa.size() < size_t(kIntDigits))
      alts.push_back("[1-9] [0-9]{" + std::to_string(sa.size()) + "," +
                     std::to_string(kIntDigits - 1) + "}");
    return group(alts);
  }
  const std::string sb = std::to_string(b);
  for (size_t len = sa.size(); len <= sb.size(); ++len) {
    std::string lo = sa;
    if (len != sa.size()) lo = repeat_char('0', len), lo[0] = '1';
    const std::string hi = len == sb.size() ? sb : repeat_char('9', len);
    alts.push_back(same_length(lo, hi));
  }
  return group(alts);
}

// Integers in [lo, hi] (either may be absent), as alternatives.
std::string int_range(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  std::vector<std::string> alts;
  if (!lo || *lo < 0)
    alts.push_back("\"-\" " + nonneg_range(hi && *hi < 0 ? -*hi : 1, lo ? -*lo : -1));
  if (!hi || *hi >= 0)
    alts.push_back(nonneg_range(lo ? std::max<int64_t>(*lo, 0) : 0, hi ? *hi : -1));
  return join(alts, " | ");
}

const char* const kFracAny = "(\".\" [0-9]{1,20})?";
const char* const kFracZero = "(\".\" \"0\"{1,20})?";
const char* const kFracNonzero = "\".\" \"0\"{0,19} [1-9] [0-9]{0,19}";
const char* const kExponent = "([eE] [-+]? [0-9]{1,3})?";

// Non-negative decimals m (no exponent unless unbounded from 0) with c < m or c <= m (cx), and
// m < d or m <= d (dx) when d is given; the caller checks that some value is left.
std::vector<std::string> magnitude(int64_t c, bool cx, std::optional<int64_t> d, bool dx) {
  std::vector<std::string> alts;
  const std::string exp = !d && c == 0 ? std::string(" ") + kExponent : "";
  if (cx && (!d || *d > c)) alts.push_back("\"" + std::to_string(c) + "\" " + kFracNonzero + exp);
  const int64_t start = cx ? c + 1 : c;
  if (!d) {
    alts.push_back(nonneg_range(start, -1) + " " + kFracAny + exp);
  } else {
    if (start <= *d - 1) alts.push_back(nonneg_range(start, *d - 1) + " " + kFracAny);
    if (!dx && *d >= start) alts.push_back("\"" + std::to_string(*d) + "\" " + kFracZero);
  }
  return alts;
}

bool nonempty(int64_t c, bool cx, std::optional<int64_t> d, bool dx) {
  return !d || *d > c || (*d == c && !cx && !dx);
}

// Decimals between integer bounds (lox / hix: exclusive), as alternatives; empty: none.
std::string number_range(std::optional<int64_t> lo, bool lox, std::optional<int64_t> hi, bool hix) {
  std::vector<std::string> alts;
  const int64_t c = lo && *lo >= 0 ? *lo : 0;
  const bool cx = lo && *lo >= 0 ? lox : false;
  if ((!hi || *hi >= 0) && nonempty(c, cx, hi, hix))
    for (std::string& a : magnitude(c, cx, hi, hix)) alts.push_back(std::move(a));
  if (!lo || *lo < 0) {
    const int64_t mc = hi && *hi < 0 ? -*hi : 0;
    const bool mcx = hi && *hi < 0 ? hix : true;
    std::optional<int64_t> md;
    if (lo) md = -*lo;
    if (nonempty(mc, mcx, md, lox)) alts.push_back("\"-\" " + group(magnitude(mc, mcx, md, lox)));
  }
  return join(alts, " | ");
}

}  // namespace

namespace {

// ---- Patterns ----

// JSON-string characters written without an escape (control characters, '"', '\\' and the
// surrogates excluded).
const Ranges& raw_chars() {
  static const Ranges r = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0xD7FF}, {0xE000, kMaxCp}};
  return r;
}

// The short JSON escape letter of a character, or 0.
char escape_letter(uint32_t c) {
  switch (c) {
    case '"':
      return '"';
    case '\\':
      return '\\';
    case '\n':
      return 'n';
    case '\t':
      return 't';
    case '\r':
      return 'r';
    case '\b':
      return 'b';
    case '\f':
      return 'f';
    default:
      return 0;
  }
}

// A regular expression (the subset in the comment at the top) compiled to GBNF for the
// JSON-encoded content of the strings it matches somewhere (anchors: from the start / to
// the end).
class PatternCompiler {
 public:
  PatternCompiler(const std::string& pattern, std::string path,
                  std::function<std::string()> any_char)
      : path_(std::move(path)), any_char_(std::move(any_char)) {
    if (pattern.size() > kMaxPattern) fail("'pattern' is longer than 4096 bytes", path_);
    for (size_t i = 0; i < pattern.size();) {
      const int64_t c = next_code_point(pattern, i);
      if (c < 0) fail("'pattern' is not valid UTF-8", path_);
      p_.push_back(uint32_t(c));
    }
  }

  std::string compile() {
    std::vector<std::string> alts;
    for (;;) {
      const bool from_start = eat('^');
      bool to_end = false;
      const Item seq = sequence(0, &to_end);
      std::string e = seq.expr;
      if (!from_start && !to_end && e.empty()) {
        e = any_char_() + "*";
      } else {
        if (!from_start) e = cat(any_char_() + "*", e);
        if (!to_end) e = cat(e, any_char_() + "*");
      }
      alts.push_back(e.empty() ? "\"\"" : e);
      if (!eat('|')) break;
    }
    if (i_ < p_.size()) bad("unbalanced ')'");
    return alts.size() == 1 ? alts[0] : group(alts);
  }

 private:
  struct Item {
    std::string expr;  // one GBNF item (or a sequence, for a whole sequence)
    bool nullable = false;
    std::string text;  // JSON-encoded text when the item is one literal character
    bool literal = false;
  };

  [[noreturn]] void bad(const std::string& what) const {
    fail("'pattern' " + what + " (character " + std::to_string(i_ + 1) + ")", path_);
  }

  bool eat(uint32_t c) {
    if (i_ < p_.size() && p_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  // Alternatives inside parentheses.
  Item alternation(int depth) {
    std::vector<std::string> alts;
    bool nullable = false;
    for (;;) {
      const Item seq = sequence(depth, nullptr);
      alts.push_back(seq.expr.empty() ? "\"\"" : seq.expr);
      nullable = nullable || seq.nullable;
      if (!eat('|')) break;
    }
    Item it;
    it.expr = "(" + join(alts, " | ") + ")";
    it.nullable = nullable;
    return it;
  }

  // Items up to '|', ')' or the end; at the top level (to_end given) a final '$' sets it.
  Item sequence(int depth, bool* to_end) {
    std::vector<Item> items;
    while (i_ < p_.size() && p_[i_] != '|' && p_[i_] != ')') {
      const uint32_t c = p_[i_];
      if (c == '$') {
        ++i_;
        if (to_end && (i_ == p_.size() || p_[i_] == '|')) {
          *to_end = true;
          break;
        }
        bad("has '$' that is not at the end (not supported)");
      }
      if (c == '^') bad("has '^' that is not at the start (not supported)");
      Item it = atom(depth);
      quantifier(it);
      items.push_back(std::move(it));
    }
    // Consecutive literal characters become one literal.
    Item seq;
    seq.nullable = true;
    std::string text;
    auto flush = [&] {
      if (!text.empty()) seq.expr = cat(seq.expr, GbnfBuilder::literal(text));
      text.clear();
    };
    for (const Item& it : items) {
      if (it.literal) {
        text += it.text;
      } else {
        flush();
        seq.expr = cat(seq.expr, it.expr);
      }
      seq.nullable = seq.nullable && it.nullable;
    }
    flush();
    return seq;
  }

  static Item char_item(uint32_t c) {
    Item it;
    it.literal = true;
    if (const char l = escape_letter(c)) {
      it.text = std::string("\\") + l;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(c));
      it.text = buf;
    } else {
      append_utf8(it.text, c);
    }
    it.expr = GbnfBuilder::literal(it.text);
    return it;
  }

  Item set_item(const Ranges& set) const {
    std::vector<std::string> alts;
    const Ranges raw = intersect(set, raw_chars());
    if (!raw.empty()) alts.push_back(class_of(raw));
    std::string letters;
    for (uint32_t c : {'"', '\\', '\n', '\t', '\r', '\b', '\f'})
      if (contains(set, c)) letters += class_char(uint32_t(escape_letter(c)));
    if (!letters.empty())
      alts.push_back("\"\\\\\" " +
                     (letters.size() == 1 ? GbnfBuilder::literal(letters) : "[" + letters + "]"));
    if (alts.empty()) bad("has a class that matches no character");
    Item it;
    it.expr = alts.size() == 1 ? alts[0] : "(" + join(alts, " | ") + ")";
    return it;
  }

  static Ranges digits() { return {{'0', '9'}}; }
  static Ranges word() { return normalize({{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}); }
  static Ranges space() {
    return normalize({{'\t', '\r'},
                      {' ', ' '},
                      {0xA0, 0xA0},
                      {0x1680, 0x1680},
                      {0x2000, 0x200A},
                      {0x2028, 0x2029},
                      {0x202F, 0x202F},
                      {0x205F, 0x205F},
                      {0x3000, 0x3000},
                      {0xFEFF, 0xFEFF}});
  }

  uint32_t hex(int n) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      if (i_ >= p_.size() || !std::isxdigit(int(p_[i_] < 0x80 ? p_[i_] : 0)))
        bad("has a bad \\x or \\u escape");
      const auto h = char(p_[i_++]);
      v = v * 16 + uint32_t(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }

  // After a backslash: a set (\d \w \s and negations) or one character. In a class, \b is
  // backspace.
  Ranges escape(bool in_class) {
    if (i_ >= p_.size()) bad("ends with '\\'");
    const uint32_t c = p_[i_++];
    switch (c) {
      case 'd':
        return digits();
      case 'D':
        return complement(digits());
      case 'w':
        return word();
      case 'W':
        return complement(word());
      case 's':
        return space();
      case 'S':
        return complement(space());
      case 'n':
        return {{'\n', '\n'}};
      case 't':
        return {{'\t', '\t'}};
      case 'r':
        return {{'\r', '\r'}};
      case 'f':
        return {{'\f', '\f'}};
      case 'v':
        return {{'\v', '\v'}};
      case 'x': {
        const uint32_t v = hex(2);
        return {{v, v}};
      }
      case 'u': {
        const uint32_t v = hex(4);
        if (v >= 0xD800 && v <= 0xDFFF) bad("has a surrogate \\u escape (not supported)");
        return {{v, v}};
      }
      case '0':
        if (i_ < p_.size() && p_[i_] >= '0' && p_[i_] <= '9')
          bad("has an octal escape (not supported)");
        return {{0, 0}};
      case 'b':
        if (in_class) return {{'\b', '\b'}};
        bad("has a word boundary \\b (not supported)");
      case 'B':
        bad("has a word boundary \\B (not supported)");
      case 'p':
      case 'P':
        bad("has a Unicode property escape (not supported)");
      case 'k':
        bad("has a backreference (not supported)");
      default:
        break;
    }
    if (c >= '1' && c <= '9') bad("has a backreference (not supported)");
    if (c < 0x80 && std::isalnum(int(c)))
      bad(std::string("has an unknown escape '\\") + char(c) + "'");
    return {{c, c}};
  }

  Ranges char_class() {  // after '['
    const bool negated = eat('^');
    Ranges r;
    while (i_ < p_.size() && p_[i_] != ']') {
      Ranges a;
      if (eat('\\')) {
        a = escape(true);
      } else {
        a = {{p_[i_], p_[i_]}};
        ++i_;
      }
      if (a.size() == 1 && a[0].first == a[0].second && i_ + 1 < p_.size() && p_[i_] == '-' &&
          p_[i_ + 1] != ']') {
        ++i_;
        Ranges b;
        if (eat('\\')) {
          b = escape(true);
        } else {
          b = {{p_[i_], p_[i_]}};
          ++i_;
        }
        if (b.size() != 1 || b[0].first != b[0].second) bad("has a class range ending in a set");
        if (b[0].first < a[0].first) bad("has a class range out of order");
        a = {{a[0].first, b[0].first}};
      }
      r.insert(r.end(), a.begin(), a.end());
    }
    if (!eat(']')) bad("has an unterminated class '['");
    r = normalize(std::move(r));
    return negated ? complement(r) : r;
  }

  Item atom(int depth) {
    const uint32_t c = p_[i_++];
    switch (c) {
      case '(': {
        if (depth + 1 > kMaxRegexNesting) bad("nests parentheses too deep");
        if (eat('?')) {
          if (eat(':')) {
          } else if (i_ + 1 < p_.size() && p_[i_] == '<' && p_[i_ + 1] != '=' &&
                     p_[i_ + 1] != '!') {
            while (i_ < p_.size() && p_[i_] != '>') ++i_;  // a named group
            if (!eat('>')) bad("has an unterminated group name");
          } else {
            bad("has a lookaround or an unknown group (?... (not supported)");
          }
        }
        Item it = alternation(depth + 1);
        if (!eat(')')) bad("has an unterminated group '('");
        return it;
      }
      case '[':
        return set_item(char_class());
      case '.':
        return set_item(complement(normalize({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}})));
      case '\\': {
        const Ranges r = escape(false);
        if (r.size() == 1 && r[0].first == r[0].second) return char_item(r[0].first);
        return set_item(r);
      }
      case '*':
      case '+':
      case '?':
        bad("has a quantifier that repeats nothing");
      case '{':
        --i_;
        if (counted()) bad("has a quantifier that repeats nothing");
        ++i_;
        return char_item(c);
      default:
        return char_item(c);
    }
  }

  // Reads {m}, {m,} or {m,n} at i_ (advancing) into lo_/hi_; false (i_ unchanged) if what is
  // there is not one (then '{' is a literal, as ECMAScript's Annex B has it).
  bool counted() {
    size_t j = i_;
    if (j >= p_.size() || p_[j] != '{') return false;
    auto number = [&](int64_t& v) {
      const size_t b = j;
      v = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9') {
        v = std::min<int64_t>(v * 10 + (p_[j] - '0'), 1000000);
        ++j;
      }
      return j > b;
    };
    ++j;
    int64_t lo = 0, hi = -1;
    if (!number(lo)) return false;
    if (j < p_.size() && p_[j] == ',') {
      ++j;
      if (!(j < p_.size() && p_[j] == '}') && !number(hi)) return false;
    } else {
      hi = lo;
    }
    if (j >= p_.size() || p_[j] != '}') return false;
    i_ = j + 1;
    lo_ = lo;
    hi_ = hi;
    return true;
  }

  void quantifier(Item& it) {
    if (i_ >= p_.size()) return;
    const uint32_t c = p_[i_];
    int64_t lo, hi;  // hi < 0: unbounded
    if (c == '*' || c == '+' || c == '?') {
      ++i_;
      lo = c == '+' ? 1 : 0;
      hi = c == '?' ? 1 : -1;
    } else if (counted()) {
      lo = lo_;
      hi = hi_;
    } else {
      return;
    }
    eat('?');  // lazy: the same strings
    if (i_ < p_.size() && (p_[i_] == '*' || p_[i_] == '+' || p_[i_] == '?' || counted()))
      bad("has a quantifier that repeats a quantifier");
    if (lo > kMaxRepeat || hi > kMaxRepeat) bad("has a repetition count over 1000 (not supported)");
    if (hi >= 0 && hi < lo) bad("has a repetition {m,n} with n < m");
    if (it.nullable && (hi < 0 || hi > 1))
      bad("repeats something that can match nothing (not supported)");
    std::string q;
    if (lo == 0 && hi < 0) {
      q = "*";
    } else if (lo == 1 && hi < 0) {
      q = "+";
    } else if (lo == 0 && hi == 1) {
      q = "?";
    } else if (lo == hi) {
      q = "{" + std::to_string(lo) + "}";
    } else {
      q = "{" + std::to_string(lo) + "," + (hi < 0 ? "" : std::to_string(hi)) + "}";
    }
    if (lo == 1 && hi == 1) q.clear();
    if (!q.empty()) {
      it.expr += q;
      it.literal = false;
      if (lo == 0) it.nullable = true;
    }
    if (hi == 0) {  // x{0}: nothing
      it.expr = "";
      it.literal = false;
      it.nullable = true;
    }
  }

  std::vector<uint32_t> p_;
  size_t i_ = 0;
  int64_t lo_ = 0, hi_ = 0;
  std::string path_;
  std::function<std::string()> any_char_;  // the rule for any JSON string character
};

}  // namespace

// ---- Converter ----

namespace {

const std::set<std::string, std::less<>> kAnnotations = {
    "title",   "description", "examples",   "default",  "$schema",   "$id",
    "$anchor", "$comment",    "deprecated", "readOnly", "writeOnly", "discriminator"};

const std::set<std::string, std::less<>> kKeywords = {"type",
                                                      "properties",
                                                      "required",
                                                      "additionalProperties",
                                                      "items",
                                                      "prefixItems",
                                                      "additionalItems",
                                                      "enum",
                                                      "const",
                                                      "anyOf",
                                                      "oneOf",
                                                      "allOf",
                                                      "$ref",
                                                      "$defs",
                                                      "definitions",
                                                      "minItems",
                                                      "maxItems",
                                                      "minLength",
                                                      "maxLength",
                                                      "pattern",
                                                      "minimum",
                                                      "maximum",
                                                      "exclusiveMinimum",
                                                      "exclusiveMaximum",
                                                      "format",
                                                      "uniqueItems"};

const char* const kTypes[] = {"string", "number", "integer", "boolean", "null", "object", "array"};

bool name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
}

// A rule-name hint: letters, digits and '-', at most 48 characters.
std::string sanitize(const std::string& s) {
  std::string r;
  for (char c : s) {
    const char d = name_char(c) ? c : '-';
    if (d == '-' && (r.empty() || r.back() == '-')) continue;
    r += d;
    if (r.size() >= 48) break;
  }
  while (!r.empty() && r.back() == '-') r.pop_back();
  return r.empty() ? "r" : r;
}

bool is_identifier(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return name_char(c) || c == '_'; });
}

// A JSON pointer token, escaped.
std::string pointer_token(const std::string& key) {
  std::string r;
  for (char c : key) {
    if (c == '~') {
      r += "~0";
    } else if (c == '/') {
      r += "~1";
    } else {
      r += c;
    }
  }
  return r;
}

// The keywords of s other than annotations, $defs / definitions and `except`.
Json constraints(const Json& s, std::initializer_list<const char*> except) {
  Json r = Json::object();
  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& k = it.key();
    if (kAnnotations.count(k) || k == "$defs" || k == "definitions") continue;
    if (std::any_of(except.begin(), except.end(), [&](const char* e) { return k == e; })) continue;
    r[k] = it.value();
  }
  return r;
}

}  // namespace

class GbnfBuilder::Converter {
 public:
  Converter(GbnfBuilder& b, const Json& root, const std::string& name)
      : b_(b), root_(root), name_(sanitize(name)) {}

  std::string run() {
    if (!b_.rules_.count("ws")) add("ws", "| \" \" | \"\\n\" [ \\t]{0,20}");
    return visit(root_, "", name_, 0);
  }

 private:
  // ---- Rules ----

  std::string unique(const std::string& hint) {
    std::string base = sanitize(hint);
    if (!b_.rules_.count(base)) return base;
    size_t& n = b_.next_suffix_[base];
    if (n < 2) n = 2;
    for (;; ++n) {
      const std::string name = base + "-" + std::to_string(n);
      if (!b_.rules_.count(name)) return name;
    }
  }

  void add(const std::string& name, const std::string& body) {
    const Cost c = estimate(body);
    b_.parser_rules_ += c.rules + 1;
    b_.parser_elems_ += c.elems + 1;
    b_.bytes_ += name.size() + body.size() + 6;
    if (b_.parser_rules_ > kMaxRules || b_.parser_elems_ > kMaxElems || b_.bytes_ > kMaxBytes)
      fail("the grammar for the schema would be too large", path_);
    b_.add_rule(name, body);
  }

  // A rule for body (the existing one when a rule has that body); a body that is just a rule
  // name is that name.
  std::string make(const std::string& hint, const std::string& body) {
    if (is_identifier(body)) return body;
    if (auto it = b_.by_body_.find(body); it != b_.by_body_.end()) return it->second;
    const std::string name = unique(hint);
    add(name, body);
    b_.by_body_.emplace(body, name);
    return name;
  }

  // A name now, its body later (recursive rules).
  std::string reserve(const std::string& hint) {
    const std::string name = unique(hint);
    b_.add_rule(name, "\"\"");
    return name;
  }

  void define(const std::string& name, const std::string& body) {
    add(name, body);
    b_.by_body_.emplace(body, name);
  }

  // The shared rules, made once per builder (and recognized by a key no body can be).
  std::string shared(const std::string& what) {
    const std::string key = "\x01" + what;
    if (auto it = b_.by_body_.find(key); it != b_.by_body_.end()) return it->second;
    std::string name;
    if (what == "value" || what == "object" || what == "array") {  // mutually recursive
      const std::string value = reserve("value"), object = reserve("object"),
                        array = reserve("array");
      const std::string str = shared("string"), num = shared("number");
      define(value, object + " | " + array + " | " + str + " | " + num +
                        " | \"true\" | \"false\" | \"null\"");
      define(object, "\"{\" ws (" + str + " ws \":\" ws " + value + " ws (\",\" ws " + str +
                         " ws \":\" ws " + value + " ws)*)? \"}\"");
      define(array, "\"[\" ws (" + value + " ws (\",\" ws " + value + " ws)*)? \"]\"");
      b_.by_body_["\x01value"] = value;
      b_.by_body_["\x01object"] = object;
      b_.by_body_
          ["\x01"
           "array"] = array;
      return b_.by_body_[key];
    }
    if (what == "char") {
      name =
          make("char", "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})");
    } else if (what == "string") {
      name = make("string", "\"\\\"\" " + shared("char") + "* \"\\\"\"");
    } else if (what == "number") {
      name = make("number",
                  "\"-\"? (\"0\" | [1-9] [0-9]{0,19}) " + std::string(kFracAny) + " " + kExponent);
    } else if (what == "integer") {
      name = make("integer", "\"-\"? (\"0\" | [1-9] [0-9]{0,19})");
    } else if (what == "boolean") {
      name = make("boolean", "\"true\" | \"false\"");
    } else if (what == "null") {
      name = make("null", "\"null\"");
    } else if (what == "date") {
      name = make("date",
                  "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | "
                  "\"3\" [01])");
    } else if (what == "time") {
      name = make("time",
                  "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" "
                  "[0-9]{1,9})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])");
    } else if (what == "date-time") {
      name = make("date-time", shared("date") + " \"T\" " + shared("time"));
    } else if (what == "uuid") {
      name = make("uuid",
                  "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
                  "[0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12}");
    } else if (what == "ipv4") {
      const std::string octet = make("octet", nonneg_range(0, 255));
      name = make("ipv4", octet + " (\".\" " + octet + "){3}");
    }
    b_.by_body_[key] = name;
    return name;
  }

  // ---- Schemas ----

  void check_keywords(const Json& s, const std::string& path) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (!kKeywords.count(k) && !kAnnotations.count(k))
        fail("unsupported keyword '" + k + "'", path);
    }
    if (s.contains("uniqueItems") &&
        !(s["uniqueItems"].is_boolean() && !s["uniqueItems"].get<bool>()))
      fail("'uniqueItems' is supported only when false", path);
  }

  // Whether s has keywords other than annotations, $defs / definitions and `except`.
  static bool has_constraints(const Json& s, const char* except) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (!kAnnotations.count(k) && k != "$defs" && k != "definitions" && k != except) return true;
    }
    return false;
  }

  // Counts the work of copying v (its nodes) against the bound.
  void charge(const Json& v, const std::string& path) {
    std::vector<const Json*> todo = {&v};
    while (!todo.empty()) {
      const Json* x = todo.back();
      todo.pop_back();
      if (++work_ > kMaxWork) fail("the schema is too large", path);
      if (x->is_structured())
        for (const Json& c : *x) todo.push_back(&c);
    }
  }

  std::optional<int64_t> count(const Json& s, const char* key, const std::string& path) {
    if (!s.contains(key)) return std::nullopt;
    const Json& v = s[key];
    if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0))
      return int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(1) << 40));
    if (v.is_number_float() && v.get<double>() >= 0 &&
        v.get<double>() == std::floor(v.get<double>()))
      return int64_t(std::min(v.get<double>(), 1e12));
    fail(std::string("'") + key + "' must be a non-negative integer", path);
  }

  std::vector<std::string> type_list(const Json& s, const std::string& path) {
    const Json& t = s["type"];
    std::vector<std::string> out;
    auto one = [&](const Json& v) {
      if (!v.is_string()) fail("'type' must be a string or an array of strings", path);
      const std::string name = v.get<std::string>();
      if (std::find(std::begin(kTypes), std::end(kTypes), name) == std::end(kTypes))
        fail("unknown type '" + name + "'", path);
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    };
    if (t.is_array()) {
      if (t.empty()) fail("'type' is an empty array", path);
      for (const Json& v : t) one(v);
    } else {
      one(t);
    }
    return out;
  }

  // The type a schema without `type` is for, from its keywords (several: each applies to its
  // own type); none: any value.
  static std::vector<std::string> inferred(const Json& s) {
    std::vector<std::string> out;
    auto any = [&](std::initializer_list<const char*> keys) {
      return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return s.contains(k); });
    };
    if (any({"properties", "additionalProperties", "required"})) out.push_back("object");
    if (any({"items", "prefixItems", "additionalItems", "minItems", "maxItems"}))
      out.push_back("array");
    if (any({"minLength", "maxLength", "pattern", "format"})) out.push_back("string");
    if (any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}))
      out.push_back("number");
    return out;
  }

  static bool has_type(const Json& v, const std::string& t) {
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer")
      return v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                       v.get<double>() == std::floor(v.get<double>()));
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    if (t == "object") return v.is_object();
    return v.is_array();
  }

  std::string visit(const Json& s, const std::string& path, const std::string& hint, int depth) {
    path_ = path;
    if (depth > kMaxDepth) fail("the schema is nested deeper than 64", path);
    if (++work_ > kMaxWork) fail("the schema is too large", path);
    if (s.is_boolean()) {
      if (s.get<bool>()) return shared("value");
      fail("the schema 'false' allows no value", path);
    }
    if (!s.is_object()) fail("a schema must be an object or a boolean", path);
    check_keywords(s, path);
    if (s.contains("$ref") || s.contains("allOf")) {
      if (!s.contains("allOf") && !has_constraints(s, "$ref"))
        return ref_rule(s["$ref"], path, depth);
      return visit(flatten(s, path, depth), path, hint, depth + 1);
    }
    if (s.contains("anyOf") || s.contains("oneOf")) {
      if (s.contains("anyOf") && s.contains("oneOf"))
        fail("'anyOf' together with 'oneOf' is not supported", path);
      const char* kw = s.contains("anyOf") ? "anyOf" : "oneOf";
      const Json& alts = s[kw];
      if (!alts.is_array() || alts.empty())
        fail(std::string("'") + kw + "' must be a non-empty array", path);
      const Json rest = constraints(s, {kw});
      std::vector<std::string> names;
      std::set<std::string> seen;
      for (size_t i = 0; i < alts.size(); ++i) {
        const std::string p = path + "/" + kw + "/" + std::to_string(i);
        const std::string h = hint + "-" + std::to_string(i);
        const std::string n =
            rest.empty() ? visit(alts[i], p, h, depth + 1)
                         : visit(merge(rest, flatten(alts[i], p, depth + 1), p), p, h, depth + 1);
        if (seen.insert(n).second) names.push_back(n);
      }
      path_ = path;
      return make(hint, join(names, " | "));
    }
    if (s.contains("enum") || s.contains("const")) return enum_rule(s, path, hint);
    std::vector<std::string> types = s.contains("type") ? type_list(s, path) : inferred(s);
    if (types.empty()) return shared("value");
    if (std::find(types.begin(), types.end(), "number") != types.end())
      std::erase(types, std::string("integer"));
    if (types.size() == 1) return typed(types[0], s, path, hint, depth);
    std::vector<std::string> names;
    for (const std::string& t : types) names.push_back(typed(t, s, path, hint + "-" + t, depth));
    path_ = path;
    return make(hint, join(names, " | "));
  }

  std::string typed(const std::string& t, const Json& s, const std::string& path,
                    const std::string& hint, int depth) {
    path_ = path;
    if (t == "string") return string_rule(s, path, hint);
    if (t == "number" || t == "integer") return number_rule(s, path, hint, t == "integer");
    if (t == "boolean" || t == "null") return shared(t);
    // Inside an object or array something was written: $refs from here on are no left
    // recursion of the ones being made.
    std::set<std::string> head;
    head.swap(head_);
    std::string r =
        t == "object" ? object_rule(s, path, hint, depth) : array_rule(s, path, hint, depth);
    head.swap(head_);
    return r;
  }

  std::string enum_rule(const Json& s, const std::string& path, const std::string& hint) {
    if (s.contains("enum") && s.contains("const"))
      fail("'enum' together with 'const' is not supported", path);
    const Json values = s.contains("const") ? Json::array({s["const"]}) : s["enum"];
    if (!values.is_array() || values.empty()) fail("'enum' must be a non-empty array", path);
    const Json rest = constraints(s, {"enum", "const", "type"});
    if (!rest.empty())
      fail("'" + rest.begin().key() + "' together with '" +
               (s.contains("enum") ? "enum" : "const") + "' is not supported",
           path);
    const std::vector<std::string> types =
        s.contains("type") ? type_list(s, path) : std::vector<std::string>{};
    std::vector<std::string> alts;
    std::set<std::string> seen;
    size_t bytes = 0;
    for (const Json& v : values) {
      if (!types.empty() && std::none_of(types.begin(), types.end(),
                                         [&](const std::string& t) { return has_type(v, t); }))
        continue;
      std::string l = value_of(v, path, 0);
      bytes += l.size() + 3;
      if (bytes > kMaxBytes) fail("the grammar for the schema would be too large", path);
      if (seen.insert(l).second) alts.push_back(std::move(l));
    }
    if (alts.empty()) fail("no value of 'enum' / 'const' has the schema's type", path);
    return make(hint, join(alts, " | "));
  }

  // Exactly the JSON value v: scalars as their compact serialization, ws between the tokens
  // of arrays and objects.
  std::string value_of(const Json& v, const std::string& path, int depth) {
    if (depth > kMaxDepth) fail("an 'enum' / 'const' value is nested deeper than 64", path);
    if (v.is_array()) {
      if (v.empty()) return "\"[\" ws \"]\"";
      std::string r = "\"[\" ws";
      for (size_t i = 0; i < v.size(); ++i)
        r += (i ? " \",\" ws " : " ") + value_of(v[i], path, depth + 1) + " ws";
      return r + " \"]\"";
    }
    if (v.is_object()) {
      if (v.empty()) return "\"{\" ws \"}\"";
      std::string r = "\"{\" ws";
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it, first = false)
        r += (first ? " " : " \",\" ws ") + GbnfBuilder::literal(Json(it.key()).dump()) +
             " ws \":\" ws " + value_of(it.value(), path, depth + 1) + " ws";
      return r + " \"}\"";
    }
    return GbnfBuilder::literal(v.dump());
  }

  // ---- $ref and allOf ----

  // The schema a $ref points to, and its JSON pointer (the path of its errors).
  std::pair<const Json*, std::string> resolve(const Json& ref, const std::string& path) {
    if (!ref.is_string()) fail("'$ref' must be a string", path);
    const std::string r = ref.get<std::string>();
    if (r.empty() || r[0] != '#')
      fail("$ref '" + r + "' is not supported (only local \"#...\" references)", path);
    if (r.size() > 1 && r[1] != '/') fail("$ref '" + r + "' (an anchor) is not supported", path);
    std::string pointer;  // percent-decoded
    for (size_t i = 1; i < r.size(); ++i) {
      if (r[i] == '%' && i + 2 < r.size() && std::isxdigit(static_cast<unsigned char>(r[i + 1])) &&
          std::isxdigit(static_cast<unsigned char>(r[i + 2]))) {
        pointer += char(std::stoi(r.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        pointer += r[i];
      }
    }
    const Json* cur = &root_;
    std::string canonical;
    for (size_t i = 0; i < pointer.size();) {
      const size_t end = std::min(pointer.find('/', i + 1), pointer.size());
      std::string token;
      for (size_t k = i + 1; k < end; ++k) {
        if (pointer[k] == '~' && k + 1 < end && (pointer[k + 1] == '0' || pointer[k + 1] == '1')) {
          token += pointer[++k] == '0' ? '~' : '/';
        } else {
          token += pointer[k];
        }
      }
      i = end;
      if (cur->is_object() && cur->contains(token)) {
        cur = &(*cur)[token];
      } else if (cur->is_array() && !token.empty() && token.size() < 10 &&
                 std::all_of(token.begin(), token.end(),
                             [](char c) { return c >= '0' && c <= '9'; }) &&
                 std::stoul(token) < cur->size()) {
        cur = &(*cur)[std::stoul(token)];
      } else {
        fail("$ref '" + r + "' points to nothing", path);
      }
      canonical += '/';
      canonical += pointer_token(token);
    }
    return {cur, canonical};
  }

  std::string ref_rule(const Json& ref, const std::string& path, int depth) {
    const auto [target, key] = resolve(ref, path);
    if (head_.count(key))
      fail("$ref '" + ref.get<std::string>() +
               "' comes back to itself before any character of the value (left recursion)",
           path);
    if (auto it = refs_.find(key); it != refs_.end()) return it->second;
    const size_t slash = key.rfind('/');
    const std::string hint =
        key.empty()
            ? name_
            : name_ + "-" + sanitize(key.substr(slash == std::string::npos ? 0 : slash + 1));
    const std::string name = reserve(hint);
    refs_[key] = name;
    head_.insert(key);
    const std::string body = visit(*target, key, hint, depth + 1);
    head_.erase(key);
    path_ = path;
    define(name, body);
    return name;
  }

  // s with its $ref and allOf merged into it (neither is left at the top); false: error.
  Json flatten(const Json& s, const std::string& path, int depth) {
    if (depth > kMaxDepth)
      fail("the schema is nested deeper than 64 (or its $ref / allOf loop)", path);
    if (++work_ > kMaxWork) fail("the schema is too large", path);
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail("the schema 'false' allows no value", path);
      return Json::object();
    }
    if (!s.is_object()) fail("a schema must be an object or a boolean", path);
    check_keywords(s, path);
    Json r = constraints(s, {"$ref", "allOf"});
    charge(r, path);
    if (s.contains("$ref")) {
      const auto [target, key] = resolve(s["$ref"], path);
      r = merge(r, flatten(*target, key, depth + 1), path);
    }
    if (s.contains("allOf")) {
      const Json& all = s["allOf"];
      if (!all.is_array() || all.empty()) fail("'allOf' must be a non-empty array", path);
      for (size_t i = 0; i < all.size(); ++i)
        r = merge(r, flatten(all[i], path + "/allOf/" + std::to_string(i), depth + 1), path);
    }
    return r;
  }

  // Both: of one value (a schema for each is {"allOf": [a, b]}, left for later).
  static Json both(const Json& a, const Json& b) {
    if (a == b) return a;
    if (a.is_boolean()) return a.get<bool>() ? b : a;
    if (b.is_boolean()) return b.get<bool>() ? a : b;
    return Json{{"allOf", Json::array({a, b})}};
  }

  // The keywords of two flattened schemas together (what allOf means, for the keywords where
  // that is simple); an error names the keyword that cannot be combined.
  Json merge(const Json& a, const Json& b, const std::string& path) {
    charge(a, path);
    Json r = a;
    for (auto it = b.begin(); it != b.end(); ++it) {
      const std::string& k = it.key();
      const Json& v = it.value();
      if (!r.contains(k)) {
        r[k] = v;
        continue;
      }
      Json& w = r[k];
      if (w == v) continue;
      auto as_number = [&](const Json& x) {
        if (!x.is_number()) fail("'" + k + "' must be a number", path);
        return x.get<double>();
      };
      if (k == "properties" && w.is_object() && v.is_object()) {
        work_ += w.size() * v.size() / 16;  // ordered_json's lookups are linear
        if (work_ > kMaxWork) fail("the schema is too large", path);
        for (auto p = v.begin(); p != v.end(); ++p)
          w[p.key()] = w.contains(p.key()) ? both(w[p.key()], p.value()) : p.value();
      } else if (k == "required" && w.is_array() && v.is_array()) {
        std::set<Json> have(w.begin(), w.end());
        for (const Json& n : v)
          if (have.insert(n).second) w.push_back(n);
      } else if (k == "type") {
        const std::vector<std::string> x = type_list(r, path),
                                       y = type_list(Json{{"type", v}}, path);
        Json common = Json::array();
        for (const std::string& t : x) {
          const bool in_y = std::find(y.begin(), y.end(), t) != y.end();
          const bool num = std::find(y.begin(), y.end(), "number") != y.end();
          if (in_y || (t == "integer" && num))
            common.push_back(t);
          else if (t == "number" && std::find(y.begin(), y.end(), "integer") != y.end())
            common.push_back("integer");
        }
        if (common.empty()) fail("'allOf' combines types that have no value in common", path);
        w = common.size() == 1 ? common[0] : common;
      } else if (k == "enum" && w.is_array() && v.is_array()) {
        Json common = Json::array();
        const std::set<Json> in_v(v.begin(), v.end());
        for (const Json& x : w)
          if (in_v.count(x)) common.push_back(x);
        if (common.empty()) fail("'allOf' combines enums that have no value in common", path);
        w = common;
      } else if ((k == "minimum" || k == "minLength" || k == "minItems" ||
                  (k == "exclusiveMinimum" && !w.is_boolean() && !v.is_boolean()))) {
        if (as_number(v) > as_number(w)) w = v;
      } else if ((k == "maximum" || k == "maxLength" || k == "maxItems" ||
                  (k == "exclusiveMaximum" && !w.is_boolean() && !v.is_boolean()))) {
        if (as_number(v) < as_number(w)) w = v;
      } else if (k == "additionalProperties" || k == "items" || k == "additionalItems") {
        w = both(w, v);
      } else {
        fail("'allOf' combines two different '" + k + "' (not supported)", path);
      }
    }
    return r;
  }

  // ---- Strings and numbers ----

  std::string string_rule(const Json& s, const std::string& path, const std::string& hint) {
    const std::optional<int64_t> min = count(s, "minLength", path),
                                 max = count(s, "maxLength", path);
    const bool length = min || max;
    if (s.contains("pattern") && !s["pattern"].is_string())
      fail("'pattern' must be a string", path);
    if (s.contains("format") && !s["format"].is_string()) fail("'format' must be a string", path);
    if (int(length) + int(s.contains("pattern")) + int(s.contains("format")) > 1)
      fail("only one of minLength/maxLength, 'pattern' and 'format' at a time is supported", path);
    const std::string quote = "\"\\\"\"";
    if (s.contains("format")) {
      const std::string f = s["format"].get<std::string>();
      if (f != "date" && f != "time" && f != "date-time" && f != "uuid" && f != "ipv4")
        fail("unsupported format '" + f + "'", path);
      return make(f + "-string", quote + " " + shared(f) + " " + quote);
    }
    if (s.contains("pattern")) {
      PatternCompiler pc(s["pattern"].get<std::string>(), path, [this] { return shared("char"); });
      const std::string body = pc.compile();
      path_ = path;
      return make(hint, quote + " " + body + " " + quote);
    }
    if (!length) return shared("string");
    const int64_t lo = min.value_or(0);
    if (lo > kMaxRepeat) fail("minLength over 1000 is not supported", path);
    if (max && *max < lo) fail("minLength is greater than maxLength", path);
    // A maxLength over 1000 is taken as 1000 (a subset of the valid strings).
    const int64_t hi = max ? std::min(*max, kMaxRepeat) : -1;
    std::string rep;
    if (lo == hi) {
      rep = "{" + std::to_string(lo) + "}";
    } else {
      rep = "{" + std::to_string(lo) + "," + (hi < 0 ? "" : std::to_string(hi)) + "}";
    }
    const std::string body =
        hi == 0 ? quote + " " + quote : quote + " " + shared("char") + rep + " " + quote;
    return make(hint, body);
  }

  struct Bound {
    double value;
    bool exclusive;
  };

  // The tighter of `inclusive` and `exclusive` (numbers, or draft 4's boolean exclusive*).
  std::optional<Bound> bound(const Json& s, const char* inclusive, const char* exclusive,
                             bool lower, const std::string& path) {
    std::optional<Bound> b;
    bool draft4 = false;
    if (s.contains(exclusive)) {
      const Json& e = s[exclusive];
      if (e.is_boolean()) {
        draft4 = e.get<bool>();
      } else if (e.is_number()) {
        b = Bound{e.get<double>(), true};
      } else {
        fail(std::string("'") + exclusive + "' must be a number", path);
      }
    }
    if (s.contains(inclusive)) {
      const Json& v = s[inclusive];
      if (!v.is_number()) fail(std::string("'") + inclusive + "' must be a number", path);
      const Bound c{v.get<double>(), draft4};
      if (!b || (lower ? c.value > b->value : c.value < b->value)) b = c;
    }
    // Bounds beyond 1e18 that leave more room are taken as 1e18 (a subset of the values).
    if (b && lower && b->value < -kMaxBound) b = Bound{-kMaxBound, false};
    if (b && !lower && b->value > kMaxBound) b = Bound{kMaxBound, false};
    if (b && !(std::fabs(b->value) <= kMaxBound))
      fail(std::string("a bound (") + inclusive + "/" + exclusive +
               ") beyond 1e18 in size is not supported",
           path);
    return b;
  }

  std::string number_rule(const Json& s, const std::string& path, const std::string& hint,
                          bool integer) {
    const std::optional<Bound> lo = bound(s, "minimum", "exclusiveMinimum", true, path);
    const std::optional<Bound> hi = bound(s, "maximum", "exclusiveMaximum", false, path);
    if (!lo && !hi) return shared(integer ? "integer" : "number");
    std::optional<int64_t> a, b;
    std::string body;
    if (integer) {
      if (lo) a = int64_t(lo->exclusive ? std::floor(lo->value) + 1 : std::ceil(lo->value));
      if (hi) b = int64_t(hi->exclusive ? std::ceil(hi->value) - 1 : std::floor(hi->value));
      if (a && b && *a > *b) fail("no integer is within minimum/maximum", path);
      body = int_range(a, b);
    } else {
      for (const auto& x : {lo, hi})
        if (x && x->value != std::floor(x->value))
          fail("a non-integer minimum/maximum for a number is not supported", path);
      if (lo) a = int64_t(lo->value);
      if (hi) b = int64_t(hi->value);
      body = number_range(a, lo && lo->exclusive, b, hi && hi->exclusive);
      if (body.empty()) fail("no number is within minimum/maximum", path);
    }
    return make(hint, body);
  }

  // ---- Objects ----

  // A JSON string that is none of the keys (JSON-encoded, without quotes): a trie of the
  // keys, one rule per node. Where a key continues with an escape, no other escape is
  // offered (a subset: such keys are rare).
  std::string key_not_in(const std::vector<std::string>& keys, const std::string& hint) {
    struct Node {
      std::map<std::string, size_t> children;  // unit -> node
      bool key = false;
    };
    std::vector<Node> nodes(1);
    for (const std::string& k : keys) {
      size_t n = 0;
      for (size_t i = 0; i < k.size();) {
        std::string unit;
        if (k[i] == '\\') {
          const size_t len = i + 1 < k.size() && k[i + 1] == 'u' ? 6 : 2;
          unit = k.substr(i, len);
          i += len;
        } else {
          const size_t b = i;
          if (next_code_point(k, i) < 0) throw Error("json schema: invalid UTF-8 in a key");
          unit = k.substr(b, i - b);
        }
        if (auto it = nodes[n].children.find(unit); it != nodes[n].children.end()) {
          n = it->second;
        } else {
          nodes[n].children.emplace(unit, nodes.size());
          n = nodes.size();
          nodes.emplace_back();
        }
      }
      nodes[n].key = true;
    }
    const std::string rest = make("string-rest", shared("char") + "* \"\\\"\"");
    const std::string escape = "\"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})";
    std::vector<std::string> names(nodes.size());
    for (size_t n = nodes.size(); n-- > 0;) {  // children come after their parents
      std::vector<std::string> alts;
      if (!nodes[n].key) alts.push_back("\"\\\"\"");
      Ranges taken;
      bool escapes = false;
      for (const auto& [unit, child] : nodes[n].children) {
        alts.push_back(GbnfBuilder::literal(unit) + " " + names[child]);
        if (unit[0] == '\\') {
          escapes = true;
        } else {
          size_t i = 0;
          const auto cp = uint32_t(next_code_point(unit, i));
          taken.push_back({cp, cp});
        }
      }
      const Ranges other = intersect(raw_chars(), complement(normalize(taken)));
      if (!other.empty()) alts.push_back(class_of(other) + " " + rest);
      if (!escapes) alts.push_back(escape + " " + rest);
      names[n] = make(hint + "-k", join(alts, " | "));
    }
    return make(hint, "\"\\\"\" " + names[0]);
  }

  std::string object_rule(const Json& s, const std::string& path, const std::string& hint,
                          int depth) {
    static const Json kAny = true;
    const Json* props = s.contains("properties") ? &s["properties"] : nullptr;
    if (props && !props->is_object()) fail("'properties' must be an object", path);
    std::vector<std::string> required;
    std::set<std::string> is_required, is_property;
    if (s.contains("required")) {
      const Json& r = s["required"];
      if (!r.is_array()) fail("'required' must be an array of strings", path);
      for (const Json& n : r) {
        if (!n.is_string()) fail("'required' must be an array of strings", path);
        if (is_required.insert(n.get<std::string>()).second)
          required.push_back(n.get<std::string>());
      }
    }
    const Json* additional =
        s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    if (additional && !additional->is_boolean() && !additional->is_object())
      fail("'additionalProperties' must be a schema", path);
    const bool closed =
        additional ? additional->is_boolean() && !additional->get<bool>() : props != nullptr;
    const Json* extra = closed ? nullptr : additional ? additional : &kAny;

    struct Prop {
      std::string key;
      const Json* schema;
      std::string path;
      bool required;
    };
    std::vector<Prop> list;
    if (props) {
      for (auto it = props->begin(); it != props->end(); ++it) {
        list.push_back({it.key(), &it.value(), path + "/properties/" + pointer_token(it.key()),
                        is_required.count(it.key()) > 0});
        is_property.insert(it.key());
      }
    }
    for (const std::string& r : required) {
      if (is_property.count(r)) continue;
      if (!extra)
        fail("the required property '" + r + "' is not allowed (additionalProperties)", path);
      list.push_back({r, extra, path + "/required", true});
    }
    const bool any_extra = extra && (*extra == kAny || *extra == Json::object());
    if (list.empty() && any_extra) return shared("object");

    std::vector<std::string> kvs, keys;
    for (const Prop& p : list) {
      const std::string h = hint + "-" + sanitize(p.key);
      const std::string value = visit(*p.schema, p.path, h, depth + 1);
      const std::string key = Json(p.key).dump();
      keys.push_back(key.substr(1, key.size() - 2));
      path_ = path;
      kvs.push_back(make(h + "-kv", GbnfBuilder::literal(key) + " ws \":\" ws " + value));
    }
    std::string extra_kv;
    if (extra) {
      const std::string value = visit(*extra, additional ? path + "/additionalProperties" : path,
                                      hint + "-extra", depth + 1);
      path_ = path;
      const std::string key =
          keys.empty() ? shared("string") : key_not_in(keys, hint + "-extra-key");
      extra_kv = make(hint + "-extra-kv", key + " ws \":\" ws " + value);
    }
    // From the end: R = what may follow once a property was written, from property k on;
    // firsts = the ways the object can start (its first property), "" for none.
    std::string r;
    std::vector<std::string> firsts;
    if (extra) {
      r = make(hint + "-extra-rest", "(\",\" ws " + extra_kv + " ws)*");
      firsts = {extra_kv + " ws " + r, ""};
    } else {
      firsts = {""};
    }
    for (size_t k = list.size(); k-- > 0;) {
      const std::string item = kvs[k] + " ws";
      if (list[k].required) firsts.clear();
      firsts.push_back(cat(item, r));
      if (k == 0) break;
      const std::string next =
          list[k].required ? cat("\",\" ws " + item, r) : cat("(\",\" ws " + item + ")?", r);
      r = make(hint + "-r" + std::to_string(k), next);
    }
    std::reverse(firsts.begin(), firsts.end());
    const bool empty_ok = std::find(firsts.begin(), firsts.end(), "") != firsts.end();
    std::erase(firsts, std::string());
    std::string inner;
    if (!firsts.empty()) inner = empty_ok ? "(" + join(firsts, " | ") + ")?" : group(firsts);
    return make(hint, cat("\"{\" ws", inner) + " \"}\"");
  }

  // ---- Arrays ----

  static std::string repeated(const std::string& item, int64_t lo, int64_t hi) {
    if (hi == 0) return "";
    std::string q;
    if (lo == 0 && hi < 0) {
      q = "*";
    } else if (lo == 1 && hi < 0) {
      q = "+";
    } else if (lo == 0 && hi == 1) {
      q = "?";
    } else if (lo == hi) {
      q = lo == 1 ? "" : "{" + std::to_string(lo) + "}";
    } else {
      q = "{" + std::to_string(lo) + "," + (hi < 0 ? "" : std::to_string(hi)) + "}";
    }
    return "(" + item + ")" + q;
  }

  std::string array_rule(const Json& s, const std::string& path, const std::string& hint,
                         int depth) {
    static const Json kAny = true;
    const Json* prefix = nullptr;  // the tuple
    const Json* rest = nullptr;    // the items after it (nullptr: none)
    std::string prefix_path, rest_path;
    if (s.contains("prefixItems")) {
      if (s.contains("additionalItems"))
        fail("'additionalItems' together with 'prefixItems' is not supported (use 'items')", path);
      prefix = &s["prefixItems"];
      prefix_path = path + "/prefixItems";
      if (s.contains("items")) rest = &s["items"], rest_path = path + "/items";
    } else if (s.contains("items") && s["items"].is_array()) {
      prefix = &s["items"];
      prefix_path = path + "/items";
      if (s.contains("additionalItems"))
        rest = &s["additionalItems"], rest_path = path + "/additionalItems";
    } else {
      rest = s.contains("items") ? &s["items"] : &kAny;
      rest_path = path + "/items";
    }
    if (prefix && !prefix->is_array()) fail("'prefixItems' must be an array of schemas", path);
    if (rest && rest->is_boolean() && !rest->get<bool>()) rest = nullptr;
    const int64_t k = prefix ? int64_t(prefix->size()) : 0;
    const std::optional<int64_t> min_items = count(s, "minItems", path),
                                 max_items = count(s, "maxItems", path);
    if (!prefix && !min_items && !max_items && rest && (*rest == kAny || *rest == Json::object()))
      return shared("array");
    // A maxItems over 1000 is taken as 1000 (a subset of the valid arrays).
    int64_t mx = max_items ? std::min(*max_items, kMaxRepeat) : -1;
    if (!rest) mx = mx < 0 ? k : std::min(mx, k);
    // Without minItems the whole tuple (as much of it as maxItems allows).
    const int64_t mn = min_items.value_or(mx < 0 ? k : std::min(k, mx));
    if (mn > kMaxRepeat) fail("minItems over 1000 is not supported", path);
    if (mx >= 0 && mn > mx)
      fail(rest ? "minItems is greater than maxItems"
                : "minItems is greater than the tuple's length",
           path);
    if (mx == 0) return make(hint, "\"[\" ws \"]\"");

    std::vector<std::string> elems;  // the tuple's
    for (int64_t i = 0; i < k && (mx < 0 || i < mx); ++i)
      elems.push_back(visit((*prefix)[size_t(i)], prefix_path + "/" + std::to_string(i),
                            hint + "-" + std::to_string(i), depth + 1));
    std::string item;
    if (rest && (mx < 0 || mx > k)) item = visit(*rest, rest_path, hint + "-item", depth + 1);
    path_ = path;
    std::string body;
    if (k == 0) {
      body = cat(item + " ws", repeated("\",\" ws " + item + " ws", std::max<int64_t>(mn - 1, 0),
                                        mx < 0 ? -1 : mx - 1));
    } else {
      // tail = what may follow once i items were written, from i = the tuple's end down to 1.
      std::string tail = item.empty()
                             ? ""
                             : repeated("\",\" ws " + item + " ws", std::max<int64_t>(mn - k, 0),
                                        mx < 0 ? -1 : mx - k);
      if (!tail.empty()) tail = make(hint + "-tail", tail);
      for (int64_t i = int64_t(elems.size()) - 1; i >= 1; --i) {
        const std::string next = cat("\",\" ws " + elems[size_t(i)] + " ws", tail);
        tail = make(hint + "-t" + std::to_string(i), i < mn ? next : "(" + next + ")?");
      }
      body = cat(elems[0] + " ws", tail);
    }
    body = mn == 0 ? "(" + body + ")?" : body;
    return make(hint, "\"[\" ws " + body + " \"]\"");
  }

  GbnfBuilder& b_;
  const Json& root_;
  std::string name_;
  std::string path_;                         // of the schema being converted (errors)
  std::map<std::string, std::string> refs_;  // JSON pointer -> its rule
  std::set<std::string> head_;               // $refs being made that nothing was written since
  size_t work_ = 0;
};

std::string GbnfBuilder::add_schema(const nlohmann::ordered_json& schema, const std::string& name) {
  GbnfBuilder saved = *this;
  try {
    Converter c(*this, schema, name);
    return c.run();
  } catch (const nlohmann::json::exception& e) {
    *this = std::move(saved);
    throw Error(std::string("json schema: ") + e.what());
  } catch (...) {
    *this = std::move(saved);
    throw;
  }
}

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema) {
  GbnfBuilder b;
  b.add_rule("root", "\"\"");  // taken, so that no rule of the schema gets the name
  b.add_rule("root", b.add_schema(schema, "schema"));
  return b.str();
}

}  // namespace tf
