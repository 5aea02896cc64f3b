#include "chat/jinja_lexer.h"

#include <cstring>

#include "chat/jinja_value.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf::jinja {

void fail_at(int line, int col, const std::string& message) {
  throw Error("template line " + std::to_string(line) + ", column " + std::to_string(col) +
              ": " + message);
}

namespace {

// Python's `\s` on str patterns (Unicode whitespace). Returns the byte length of the
// whitespace character at s[i], or 0.
size_t space_at(std::string_view s, size_t i) {
  const unsigned char c = uint8_t(s[i]);
  if (c < 0x80) return (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) ? 1 : 0;
  const size_t n = std::min(unicode::utf8_len(c), s.size() - i);
  const auto cps = unicode::decode_utf8(s.substr(i, n));
  return !cps.empty() && py_isspace(cps[0]) ? n : 0;
}

size_t skip_spaces(std::string_view s, size_t i) {
  while (i < s.size()) {
    const size_t n = space_at(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

// Python str.rstrip() (all Unicode whitespace).
std::string_view rstrip(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
    if (space_at(s, start) != end - start) break;
    end = start;
  }
  return s.substr(0, end);
}

bool all_spaces(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = space_at(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

bool is_name_start(char c) { return std::isalpha(uint8_t(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(uint8_t(c)) || c == '_'; }

class Lexer {
 public:
  explicit Lexer(std::string_view src) : s_(src) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      const size_t tag = find_tag(pos_);
      std::string_view text = s_.substr(pos_, (tag == std::string_view::npos ? s_.size() : tag) - pos_);
      if (tag == std::string_view::npos) {
        emit_text(text, pos_);
        break;
      }
      const char kind = s_[tag + 1];  // '{', '%' or '#'
      const char sign = tag + 2 < s_.size() ? s_[tag + 2] : 0;
      const bool is_raw = kind == '%' && raw_begin_end(tag) != std::string_view::npos;
      if (sign == '-') {
        text = rstrip(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: only whitespace between the line start and the tag goes.
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && all_spaces(text.substr(l_pos)))
          text = text.substr(0, l_pos);
      }
      emit_text(text, pos_);
      size_t p = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (is_raw) {
        p = lex_raw(tag);
      } else if (kind == '#') {
        p = lex_comment(tag, p);
      } else {
        p = lex_tag(tag, p, kind == '{');
      }
      line_starting = p > 0 && s_[p - 1] == '\n';
      pos_ = p;
    }
    add(Tok::End, s_.size());
    return std::move(out_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < s_.size(); ++i)
      if (s_[i] == '{' && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return std::string_view::npos;
  }

  void line_col(size_t off, int& line, int& col) const {
    // Positions are computed on demand (errors and tokens); cache the last answer.
    if (off < cache_off_) {
      cache_off_ = 0;
      cache_line_ = 1;
      cache_col_ = 1;
    }
    for (size_t i = cache_off_; i < off && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++cache_line_;
        cache_col_ = 1;
      } else if ((uint8_t(s_[i]) & 0xC0) != 0x80) {
        ++cache_col_;
      }
    }
    cache_off_ = off;
    line = cache_line_;
    col = cache_col_;
  }

  [[noreturn]] void fail(size_t off, const std::string& msg) const {
    int line, col;
    line_col(off, line, col);
    fail_at(line, col, msg);
  }

  Token& add(Tok t, size_t off, std::string text = "") {
    Token tok;
    tok.type = t;
    tok.text = std::move(text);
    line_col(off, tok.line, tok.col);
    out_.push_back(std::move(tok));
    return out_.back();
  }

  void emit_text(std::string_view text, size_t off) {
    if (!text.empty()) add(Tok::Text, off, std::string(text));
  }

  // If a `{% raw %}` tag starts at `tag`, the offset just past it; else npos.
  size_t raw_begin_end(size_t tag) const {
    size_t p = tag + 2;
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
    p = skip_spaces(s_, p);
    if (s_.compare(p, 3, "raw") != 0) return std::string_view::npos;
    p += 3;
    if (p < s_.size() && is_name_char(s_[p])) return std::string_view::npos;
    p = skip_spaces(s_, p);
    if (s_.compare(p, 3, "-%}") == 0) return skip_spaces(s_, p + 3);
    if (s_.compare(p, 2, "%}") == 0) return p + 2;
    return std::string_view::npos;
  }

  size_t lex_raw(size_t tag) {
    const size_t body = raw_begin_end(tag);
    // Find {%[-+]? \s* endraw \s* (+%}|-%}\s*|%}\n?)
    for (size_t i = body; i + 1 < s_.size(); ++i) {
      if (s_[i] != '{' || s_[i + 1] != '%') continue;
      size_t p = i + 2;
      char sign = 0;
      if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) sign = s_[p++];
      p = skip_spaces(s_, p);
      if (s_.compare(p, 6, "endraw") != 0) continue;
      p = skip_spaces(s_, p + 6);
      size_t end;
      if (s_.compare(p, 3, "+%}") == 0) end = p + 3;
      else if (s_.compare(p, 3, "-%}") == 0) end = skip_spaces(s_, p + 3);
      else if (s_.compare(p, 2, "%}") == 0) end = p + 2 + (p + 2 < s_.size() && s_[p + 2] == '\n');
      else continue;
      std::string_view text = s_.substr(body, i - body);
      if (sign == '-') {
        text = rstrip(text);
      } else if (sign != '+') {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        // (Jinja's line_starting is false here: the raw_begin tag ended the last match.)
        if (l_pos > 0 && all_spaces(text.substr(l_pos))) text = text.substr(0, l_pos);
      }
      emit_text(text, body);
      return end;
    }
    fail(tag, "Missing end of raw directive");
  }

  size_t lex_comment(size_t tag, size_t p) {
    for (size_t i = p; i + 1 < s_.size(); ++i) {
      if (s_[i] != '#' || s_[i + 1] != '}') continue;
      if (i > p && s_[i - 1] == '-') return skip_spaces(s_, i + 2);
      if (i > p && s_[i - 1] == '+') return i + 2;
      return i + 2 + (i + 2 < s_.size() && s_[i + 2] == '\n');
    }
    fail(tag, "Missing end of comment tag");
  }

  // Tokens of a {{ }} (var) or {% %} tag, up to and including its end; returns the offset
  // after the end (and the whitespace the end's control consumes).
  size_t lex_tag(size_t tag, size_t p, bool var) {
    add(var ? Tok::VarBegin : Tok::BlockBegin, tag);
    int depth = 0;  // open brackets: an end delimiter inside them is not an end
    const char* close = var ? "}}" : "%}";
    for (;;) {
      p = skip_spaces(s_, p);
      if (p >= s_.size()) fail(tag, var ? "unexpected end of template, expected '}}'"
                                        : "unexpected end of template, expected '%}'");
      if (depth == 0) {
        if (s_[p] == '-' && s_.compare(p + 1, 2, close) == 0) {
          add(var ? Tok::VarEnd : Tok::BlockEnd, p);
          return skip_spaces(s_, p + 3);
        }
        if (!var && s_[p] == '+' && s_.compare(p + 1, 2, close) == 0) {
          add(Tok::BlockEnd, p);
          return p + 3;
        }
        if (s_.compare(p, 2, close) == 0) {
          add(var ? Tok::VarEnd : Tok::BlockEnd, p);
          // trim_blocks: the first newline after a block tag goes.
          if (!var && p + 2 < s_.size() && s_[p + 2] == '\n') return p + 3;
          return p + 2;
        }
      }
      const char c = s_[p];
      if (is_name_start(c)) {
        size_t e = p;
        while (e < s_.size() && is_name_char(s_[e])) ++e;
        add(Tok::Name, p, std::string(s_.substr(p, e - p)));
        p = e;
      } else if (std::isdigit(uint8_t(c))) {
        p = lex_number(p);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static const char* const kOps2[] = {"//", "**", "==", "!=", ">=", "<="};
        size_t n = 0;
        for (const char* op : kOps2)
          if (s_.compare(p, 2, op) == 0) n = 2;
        if (!n && std::strchr("+-/*%~[](){}><=.:|,;", c) && c != 0) n = 1;
        if (!n) {
          if (c == '!') fail(p, "unexpected '!'");
          fail(p, std::string("unexpected char '") + c + "'");
        }
        if (n == 1) {
          if (c == '(' || c == '[' || c == '{') ++depth;
          if (c == ')' || c == ']' || c == '}') {
            if (depth == 0) fail(p, std::string("unexpected '") + c + "'");
            --depth;
          }
        }
        add(Tok::Op, p, std::string(s_.substr(p, n)));
        p += n;
      }
    }
  }

  // Digits with optional single underscores between them.
  size_t digits(size_t p) const {
    while (p < s_.size()) {
      if (std::isdigit(uint8_t(s_[p]))) ++p;
      else if (s_[p] == '_' && p + 1 < s_.size() && std::isdigit(uint8_t(s_[p + 1])) && p > 0 &&
               std::isdigit(uint8_t(s_[p - 1])))
        ++p;
      else break;
    }
    return p;
  }

  size_t lex_number(size_t p) {
    size_t e = digits(p);
    bool is_float = false;
    // After a dot (`x.0.1`) digits are an item index, never a float.
    const bool after_dot = !out_.empty() && out_.back().type == Tok::Op && out_.back().text == ".";
    if (!after_dot && e + 1 < s_.size() && s_[e] == '.' && std::isdigit(uint8_t(s_[e + 1]))) {
      e = digits(e + 1);
      is_float = true;
    }
    if (!after_dot && e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t x = e + 1;
      if (x < s_.size() && (s_[x] == '+' || s_[x] == '-')) ++x;
      if (x < s_.size() && std::isdigit(uint8_t(s_[x]))) {
        e = digits(x);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = p; i < e; ++i)
      if (s_[i] != '_') text += s_[i];
    if (is_float) {
      Token& t = add(Tok::Float, p, text);
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      // 0b / 0o / 0x prefixes.
      int base = 10;
      if (text == "0" && e < s_.size() && std::strchr("bBoOxX", s_[e]) && s_[e]) {
        base = std::tolower(uint8_t(s_[e])) == 'b' ? 2 : std::tolower(uint8_t(s_[e])) == 'o' ? 8 : 16;
        size_t x = e + 1;
        text.clear();
        while (x < s_.size() && (std::isxdigit(uint8_t(s_[x])) || s_[x] == '_')) {
          if (s_[x] != '_') text += s_[x];
          ++x;
        }
        e = x;
      } else if (text.size() > 1 && text[0] == '0') {
        for (char ch : text)
          if (ch != '0') fail(p, "invalid integer literal (leading zeros)");
      }
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, base);
      if (errno == ERANGE || text.empty() || *end) fail(p, "integer literal out of range: " + text);
      Token& t = add(Tok::Int, p, text);
      t.ival = v;
    }
    return e;
  }

  // A quoted string; escapes decoded as Python's unicode-escape codec does.
  size_t lex_string(size_t p) {
    const char q = s_[p];
    std::string v;
    size_t i = p + 1;
    for (;;) {
      if (i >= s_.size()) fail(p, "unexpected end of string");
      const char c = s_[i];
      if (c == q) break;
      if (c != '\\') {
        v += c;
        ++i;
        continue;
      }
      if (i + 1 >= s_.size()) fail(p, "unexpected end of string");
      const char e = s_[i + 1];
      i += 2;
      auto hex = [&](int n) -> uint32_t {
        uint32_t cp = 0;
        for (int k = 0; k < n; ++k) {
          if (i >= s_.size() || !std::isxdigit(uint8_t(s_[i])))
            fail(p, "truncated \\x, \\u or \\U escape in string");
          const char h = s_[i++];
          cp = cp * 16 + uint32_t(std::isdigit(uint8_t(h)) ? h - '0' : std::tolower(uint8_t(h)) - 'a' + 10);
        }
        return cp;
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': v += '\\'; break;
        case '\'': v += '\''; break;
        case '"': v += '"'; break;
        case 'a': v += '\a'; break;
        case 'b': v += '\b'; break;
        case 'f': v += '\f'; break;
        case 'n': v += '\n'; break;
        case 'r': v += '\r'; break;
        case 't': v += '\t'; break;
        case 'v': v += '\v'; break;
        case 'x': unicode::append_utf8(v, hex(2)); break;
        case 'u': unicode::append_utf8(v, hex(4)); break;
        case 'U': {
          const uint32_t cp = hex(8);
          if (cp > 0x10FFFF) fail(p, "illegal Unicode character in string escape");
          unicode::append_utf8(v, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = uint32_t(e - '0');
            for (int k = 0; k < 2 && i < s_.size() && s_[i] >= '0' && s_[i] <= '7'; ++k)
              cp = cp * 8 + uint32_t(s_[i++] - '0');
            unicode::append_utf8(v, cp);
          } else {
            // Unknown escapes stay as written (\N{...} is not supported: kept literally).
            v += '\\';
            v += e;
          }
      }
    }
    add(Tok::String, p, std::move(v));
    return i + 1;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::vector<Token> out_;
  mutable size_t cache_off_ = 0;
  mutable int cache_line_ = 1, cache_col_ = 1;
};

}  // namespace

std::vector<Token> lex(std::string_view source) {
  // Like Jinja: newlines normalized to \n and one trailing newline dropped
  // (keep_trailing_newline is off).
  std::string norm;
  norm.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      norm += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      norm += source[i];
    }
  }
  if (!norm.empty() && norm.back() == '\n') norm.pop_back();
  return Lexer(norm).run();
}

}  // namespace tf::jinja
