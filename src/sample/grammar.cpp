#include "sample/grammar.h"

#include <algorithm>
#include <functional>
#include <map>

#include "sample/token_trie.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf {

namespace {
constexpr size_t kMaxText = size_t(1) << 20;  // bytes of grammar text
constexpr size_t kMaxRules = 20000;
constexpr size_t kMaxElems = size_t(1) << 20;
constexpr int kMaxNesting = 100;     // parentheses
constexpr int kMaxRepeat = 1000;     // {m,n}
constexpr size_t kMaxStacks = 4096;  // parse stacks a matcher follows at once
constexpr size_t kMaxStackDepth = 4096;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// Decodes one UTF-8 character of s at i (advancing i), checked by utf8_check (strict:
// overlongs, surrogates and values past U+10FFFF are invalid); -1 when invalid, -2 when s
// ends inside a character that more bytes could complete.
int64_t decode_utf8(std::string_view s, size_t& i) {
  const int n = unicode::utf8_check(s.substr(i));
  if (n <= 0) return n == 0 ? -2 : -1;
  const auto b0 = uint8_t(s[i]);
  uint32_t c = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int k = 1; k < n; ++k) c = (c << 6) | (uint8_t(s[i + size_t(k)]) & 0x3F);
  i += size_t(n);
  return c;
}

// The code points an incomplete UTF-8 character (its first bytes, valid so far) may become:
// false when the bytes can begin no character.
bool partial_range(std::string_view p, uint32_t& lo, uint32_t& hi) {
  const auto b0 = uint8_t(p[0]);
  const int n = (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || int(p.size()) >= n) return false;
  uint32_t c = n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < p.size(); ++k) {
    const auto b = uint8_t(p[k]);
    if ((b & 0xC0) != 0x80) return false;
    c = (c << 6) | (b & 0x3F);
  }
  const int missing = n - int(p.size());
  lo = c << (6 * missing);
  hi = lo | ((1u << (6 * missing)) - 1);
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  lo = std::max(lo, kMin[n]);
  hi = std::min<uint32_t>(hi, 0x10FFFF);
  return lo <= hi;
}

}  // namespace

bool Grammar::Elem::matches(uint32_t c) const {
  bool in = false;
  for (const auto& [a, b] : ranges)
    if (c >= a && c <= b) {
      in = true;
      break;
    }
  return in != negated;
}

bool Grammar::Elem::matches_any(uint32_t lo, uint32_t hi) const {
  if (!negated) {
    for (const auto& [a, b] : ranges)
      if (a <= hi && b >= lo) return true;
    return false;
  }
  // Negated: some point of [lo, hi] outside every range (ranges are sorted and merged).
  uint64_t cur = lo;
  for (const auto& [a, b] : ranges) {
    if (b < cur) continue;
    if (a > cur) return true;
    cur = uint64_t(b) + 1;
    if (cur > hi) return false;
  }
  return cur <= hi;
}

// Recursive descent over the text, building rules; synthetic rules for groups and repetitions.
class GrammarParser {
 public:
  explicit GrammarParser(std::string_view text) : s_(text) {}

  std::shared_ptr<const Grammar> run(std::string_view root) {
    if (s_.size() > kMaxText) fail("the grammar is larger than 1 MiB");
    skip(true);
    while (i_ < s_.size()) {
      const size_t at = i_;
      const std::string name = parse_name();
      const int32_t id = rule_id(name, at);
      if (defined_[size_t(id)]) fail("rule '" + name + "' is defined twice", at);
      defined_[size_t(id)] = true;
      skip(false);
      if (s_.compare(i_, 3, "::=") != 0) fail("expected '::=' after the rule name");
      i_ += 3;
      skip(true);
      g_->rules_[size_t(id)].alts = parse_alternates(false, 0);
      skip(true);
    }
    for (size_t r = 0; r < g_->rules_.size(); ++r)
      if (!defined_[r])
        fail("rule '" + g_->rules_[r].name + "' is used but not defined", used_at_[r]);
    const auto it = ids_.find(std::string(root));
    if (it == ids_.end()) throw Error("grammar: no rule '" + std::string(root) + "' to start from");
    g_->root_ = it->second;
    check_left_recursion();
    return g_;
  }

 private:
  [[noreturn]] void fail(const std::string& what, size_t at = std::string::npos) const {
    if (at == std::string::npos) at = std::min(i_, s_.size());
    int line = 1, col = 1;
    for (size_t k = 0; k < at; ++k) {
      if (s_[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw Error("grammar line " + std::to_string(line) + ", column " + std::to_string(col) + ": " +
                what);
  }

  // Spaces, tabs and comments; newlines too when `newlines`.
  void skip(bool newlines) {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
        ++i_;
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const size_t b = i_;
    while (i_ < s_.size() && is_name_char(s_[i_])) ++i_;
    if (i_ == b) fail("expected a rule name");
    return std::string(s_.substr(b, i_ - b));
  }

  int32_t rule_id(const std::string& name, size_t at) {
    auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    return new_rule(name, at);
  }

  int32_t new_rule(const std::string& name, size_t at) {
    if (g_->rules_.size() >= kMaxRules) fail("too many rules");
    const auto id = int32_t(g_->rules_.size());
    g_->rules_.push_back({name, {}});
    defined_.push_back(false);
    used_at_.push_back(at);
    ids_.emplace(name, id);
    return id;
  }

  int32_t synthetic(const std::string& base, std::vector<Grammar::Alt> alts) {
    const int32_t id = new_rule(base + "_" + std::to_string(g_->rules_.size()), i_);
    defined_[size_t(id)] = true;
    g_->rules_[size_t(id)].alts = std::move(alts);
    return id;
  }

  void count(size_t n) {
    elems_ += n;
    if (elems_ > kMaxElems) fail("the grammar is too large");
  }

  std::vector<Grammar::Alt> parse_alternates(bool nested, int depth) {
    std::vector<Grammar::Alt> alts;
    alts.push_back(parse_sequence(nested, depth));
    while (i_ < s_.size() && s_[i_] == '|') {
      ++i_;
      skip(true);
      alts.push_back(parse_sequence(nested, depth));
    }
    return alts;
  }

  // One escape after a backslash, in a literal or a class.
  uint32_t parse_escape() {
    if (i_ >= s_.size()) fail("unfinished escape");
    const char c = s_[i_++];
    auto hex = [&](int digits) {
      uint32_t v = 0;
      for (int k = 0; k < digits; ++k) {
        if (i_ >= s_.size()) fail("unfinished escape");
        const char h = s_[i_++];
        const int d = h >= '0' && h <= '9'   ? h - '0'
                      : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                             : -1;
        if (d < 0) fail("bad hexadecimal digit in an escape");
        v = v * 16 + uint32_t(d);
      }
      if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) fail("escape is not a Unicode character");
      return v;
    };
    switch (c) {
      case 'n':
        return '\n';
      case 't':
        return '\t';
      case 'r':
        return '\r';
      case '\\':
        return '\\';
      case '"':
        return '"';
      case '\'':
        return '\'';
      case '[':
        return '[';
      case ']':
        return ']';
      case '-':
        return '-';
      case '^':
        return '^';
      case 'x':
        return hex(2);
      case 'u':
        return hex(4);
      case 'U':
        return hex(8);
      default:
        fail(std::string("unknown escape '\\") + c + "'");
    }
  }

  // One character of a literal or class (escapes resolved).
  uint32_t parse_char() {
    if (s_[i_] == '\\') {
      ++i_;
      return parse_escape();
    }
    size_t k = i_;
    const int64_t c = decode_utf8(s_, k);
    if (c < 0) fail("invalid UTF-8 in the grammar");
    i_ = k;
    return uint32_t(c);
  }

  Grammar::Elem chars(std::vector<std::pair<uint32_t, uint32_t>> r, bool negated) {
    std::sort(r.begin(), r.end());
    std::vector<std::pair<uint32_t, uint32_t>> merged;
    for (const auto& p : r) {
      if (!merged.empty() && p.first <= merged.back().second + 1)
        merged.back().second = std::max(merged.back().second, p.second);
      else
        merged.push_back(p);
    }
    Grammar::Elem e;
    e.kind = Grammar::Elem::kChars;
    e.negated = negated;
    e.ranges = std::move(merged);
    return e;
  }

  Grammar::Elem ref(int32_t rule) {
    Grammar::Elem e;
    e.kind = Grammar::Elem::kRule;
    e.rule = rule;
    return e;
  }

  // The last item of seq, from `start`, repeated min..max times (max < 0: unbounded).
  void repeat(Grammar::Alt& seq, size_t start, int min, int max) {
    const Grammar::Alt item(seq.begin() + long(start), seq.end());
    seq.resize(start);
    count(item.size() * size_t(std::max(min, 1) + std::max(max, 0)));
    for (int k = 0; k < min; ++k) seq.insert(seq.end(), item.begin(), item.end());
    auto with_end = [](Grammar::Alt a) {
      a.push_back(Grammar::Elem{});
      return a;
    };
    if (max < 0) {  // star ::= item star | (empty)
      const int32_t star = new_rule("star_" + std::to_string(g_->rules_.size()), i_);
      defined_[size_t(star)] = true;
      Grammar::Alt more = item;
      more.push_back(ref(star));
      g_->rules_[size_t(star)].alts = {with_end(more), with_end({})};
      seq.push_back(ref(star));
      return;
    }
    // (max - min) nested optionals: opt_k ::= item opt_{k-1} | (empty)
    int32_t inner = -1;
    for (int k = 0; k < max - min; ++k) {
      Grammar::Alt more = item;
      if (inner >= 0) more.push_back(ref(inner));
      inner = synthetic("opt", {with_end(more), with_end({})});
    }
    if (inner >= 0) seq.push_back(ref(inner));
  }

  int parse_int() {
    const size_t b = i_;
    int v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      v = v * 10 + (s_[i_++] - '0');
      if (v > kMaxRepeat) fail("repetition count over " + std::to_string(kMaxRepeat));
    }
    if (i_ == b) fail("expected a number");
    return v;
  }

  Grammar::Alt parse_sequence(bool nested, int depth) {
    Grammar::Alt seq;
    size_t last = 0;  // where the last item starts in seq
    bool have_last = false;
    for (;;) {
      skip(nested);
      if (i_ >= s_.size()) break;
      const char c = s_[i_];
      if (c == '|' || c == ')' || c == '\n' || c == '\r') break;
      const size_t item_start = seq.size();
      if (c == '"') {
        ++i_;
        while (i_ < s_.size() && s_[i_] != '"') {
          if (s_[i_] == '\n') fail("newline inside a literal");
          const uint32_t ch = parse_char();
          seq.push_back(chars({{ch, ch}}, false));
        }
        if (i_ >= s_.size()) fail("unterminated literal");
        ++i_;
        count(seq.size() - item_start);
      } else if (c == '[') {
        ++i_;
        bool neg = false;
        if (i_ < s_.size() && s_[i_] == '^') {
          neg = true;
          ++i_;
        }
        std::vector<std::pair<uint32_t, uint32_t>> r;
        while (i_ < s_.size() && s_[i_] != ']') {
          if (s_[i_] == '\n') fail("newline inside a character class");
          const uint32_t a = parse_char();
          uint32_t b = a;
          if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
            ++i_;
            b = parse_char();
            if (b < a) fail("character range out of order");
          }
          r.push_back({a, b});
        }
        if (i_ >= s_.size()) fail("unterminated character class");
        ++i_;
        seq.push_back(chars(std::move(r), neg));
        count(1);
      } else if (c == '.') {
        ++i_;
        seq.push_back(chars({}, true));
        count(1);
      } else if (c == '(') {
        if (depth >= kMaxNesting) fail("parentheses nested too deep");
        ++i_;
        skip(true);
        auto alts = parse_alternates(true, depth + 1);
        skip(true);
        if (i_ >= s_.size() || s_[i_] != ')') fail("expected ')'");
        ++i_;
        for (auto& a : alts) a.push_back(Grammar::Elem{});
        seq.push_back(ref(synthetic("group", std::move(alts))));
        count(1);
      } else if (is_name_char(c)) {
        const size_t at = i_;
        const std::string name = parse_name();
        skip(false);
        if (s_.compare(i_, 3, "::=") == 0) {
          if (nested) fail("a new rule inside parentheses");
          i_ = at;  // the next rule starts here (rules on one line)
          break;
        }
        seq.push_back(ref(rule_id(name, at)));
        count(1);
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (!have_last) fail(std::string("'") + c + "' repeats nothing");
        ++i_;
        if (c == '*') {
          repeat(seq, last, 0, -1);
        } else if (c == '+') {
          repeat(seq, last, 1, -1);
        } else if (c == '?') {
          repeat(seq, last, 0, 1);
        } else {
          skip(false);
          const int lo = parse_int();
          int hi = lo;
          skip(false);
          if (i_ < s_.size() && s_[i_] == ',') {
            ++i_;
            skip(false);
            hi = i_ < s_.size() && s_[i_] == '}' ? -1 : parse_int();
            skip(false);
          }
          if (i_ >= s_.size() || s_[i_] != '}') fail("expected '}'");
          ++i_;
          if (hi >= 0 && hi < lo) fail("repetition {m,n} with n < m");
          repeat(seq, last, lo, hi);
        }
        have_last = false;  // x** is an error, as in llama.cpp
        continue;
      } else {
        fail(std::string("unexpected character '") + c + "'");
      }
      last = item_start;
      have_last = true;
    }
    seq.push_back(Grammar::Elem{});
    return seq;
  }

  // A rule that can reach itself before consuming a character would expand forever.
  void check_left_recursion() const {
    const auto& rules = g_->rules_;
    std::vector<bool> nullable(rules.size(), false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < rules.size(); ++r) {
        if (nullable[r]) continue;
        for (const auto& a : rules[r].alts) {
          bool all = true;
          for (const auto& e : a)
            if (e.kind == Grammar::Elem::kChars ||
                (e.kind == Grammar::Elem::kRule && !nullable[size_t(e.rule)])) {
              all = false;
              break;
            }
          if (all) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    // 0 unvisited, 1 on the path, 2 done.
    std::vector<uint8_t> mark(rules.size(), 0);
    std::function<void(size_t)> visit = [&](size_t r) {
      mark[r] = 1;
      for (const auto& a : rules[r].alts)
        for (const auto& e : a) {
          if (e.kind != Grammar::Elem::kRule) break;
          const auto t = size_t(e.rule);
          if (mark[t] == 1) throw Error("grammar: rule '" + rules[t].name + "' is left-recursive");
          if (mark[t] == 0) visit(t);
          if (!nullable[t]) break;
        }
      mark[r] = 2;
    };
    for (size_t r = 0; r < rules.size(); ++r)
      if (mark[r] == 0) visit(r);
  }

  std::string_view s_;
  size_t i_ = 0;
  std::shared_ptr<Grammar> g_ = std::make_shared<Grammar>();
  std::map<std::string, int32_t> ids_;
  std::vector<bool> defined_;
  std::vector<size_t> used_at_;
  size_t elems_ = 0;
};

std::shared_ptr<const Grammar> Grammar::parse(std::string_view text, std::string_view root) {
  return GrammarParser(text).run(root);
}

// ---- Matching ----

namespace {
constexpr size_t kMaxSets = 50000;                 // interned stack sets before the caches restart
constexpr size_t kMaxTransitions = 1 << 20;        // cached (set, character) transitions
constexpr size_t kMaxMaskBytes = size_t(8) << 20;  // cached token masks, per matcher
}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> g) : g_(std::move(g)) {
  const int32_t root = g_->root();
  std::vector<Stack> start;
  for (size_t a = 0; a < g_->rules()[size_t(root)].alts.size(); ++a)
    expand({Pos{root, int32_t(a), 0}}, start, 0);
  cur_.set = intern(std::move(start));
}

const Grammar::Elem& GrammarMatcher::at(const Pos& p) const {
  return g_->rules()[size_t(p.rule)].alts[size_t(p.alt)][size_t(p.elem)];
}

// Pushes onto out every stack s can be in with a character class (or nothing) on top.
void GrammarMatcher::expand(Stack s, std::vector<Stack>& out, int depth) const {
  if (depth > 10000 || s.size() > kMaxStackDepth || out.size() > kMaxStacks) return;
  for (;;) {
    if (s.empty()) {
      out.push_back(s);
      return;
    }
    const Pos top = s.back();
    const Grammar::Elem& e = at(top);
    if (e.kind == Grammar::Elem::kChars) {
      out.push_back(std::move(s));
      return;
    }
    s.pop_back();
    if (e.kind == Grammar::Elem::kEnd) continue;  // the rule is done: back to its caller
    // A rule reference: its continuation, unless that is the end (no need to come back),
    // then each of the rule's alternatives.
    const Pos next{top.rule, top.alt, top.elem + 1};
    if (at(next).kind != Grammar::Elem::kEnd) s.push_back(next);
    const auto& alts = g_->rules()[size_t(e.rule)].alts;
    for (size_t a = 0; a < alts.size(); ++a) {
      Stack t = s;
      t.push_back(Pos{e.rule, int32_t(a), 0});
      expand(std::move(t), out, depth + 1);
    }
    return;
  }
}

std::vector<GrammarMatcher::Stack> GrammarMatcher::advance(const std::vector<Stack>& stacks,
                                                           uint32_t c) const {
  std::vector<Stack> out;
  for (const Stack& s : stacks) {
    if (s.empty() || !at(s.back()).matches(c)) continue;
    Stack t = s;
    ++t.back().elem;
    expand(std::move(t), out, 0);
  }
  return out;
}

int32_t GrammarMatcher::intern(std::vector<Stack>&& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  auto [it, fresh] = ids_.try_emplace(std::move(stacks), int32_t(sets_.size()));
  if (fresh) sets_.push_back(it->first);
  return it->second;
}

int32_t GrammarMatcher::next(int32_t set, uint32_t c) {
  const uint64_t key = uint64_t(uint32_t(set)) << 21 | c;
  if (auto it = next_.find(key); it != next_.end()) return it->second;
  std::vector<Stack> out = advance(sets_[size_t(set)], c);
  const int32_t to = out.empty() ? -1 : intern(std::move(out));
  next_.emplace(key, to);
  return to;
}

bool GrammarMatcher::step_byte(Cursor& cur, uint8_t b) {
  if (cur.n == 0 && b < 0x80) {
    cur.set = next(cur.set, b);
    return cur.set >= 0;
  }
  if (cur.n >= 4) return false;
  cur.pending[cur.n++] = char(b);
  const std::string_view p(cur.pending, cur.n);
  const int len = unicode::utf8_check(p);
  if (len < 0) return false;
  if (len == 0) {  // incomplete: some completion must fit a class on top of some stack
    uint32_t lo, hi;
    if (!partial_range(p, lo, hi)) return false;
    for (const Stack& s : sets_[size_t(cur.set)])
      if (!s.empty() && at(s.back()).matches_any(lo, hi)) return true;
    return false;
  }
  size_t i = 0;
  const int64_t c = decode_utf8(p, i);
  cur.n = 0;
  if (c < 0) return false;
  cur.set = next(cur.set, uint32_t(c));
  return cur.set >= 0;
}

void GrammarMatcher::trim_caches() {
  if (sets_.size() <= kMaxSets && next_.size() <= kMaxTransitions) return;
  // Start over from the current set alone (ids change, so the masks go too).
  std::vector<Stack> keep = sets_[size_t(cur_.set)];
  sets_.clear();
  ids_.clear();
  next_.clear();
  masks_.clear();
  mask_bytes_ = 0;
  cur_.set = intern(std::move(keep));
}

bool GrammarMatcher::accept(std::string_view bytes) {
  trim_caches();
  Cursor c = cur_;
  for (char b : bytes)
    if (!step_byte(c, uint8_t(b))) return false;
  cur_ = c;
  return true;
}

bool GrammarMatcher::can_accept(std::string_view bytes) {
  trim_caches();
  Cursor c = cur_;
  for (char b : bytes)
    if (!step_byte(c, uint8_t(b))) return false;
  return true;
}

bool GrammarMatcher::complete() const {
  if (cur_.n != 0) return false;
  for (const Stack& s : sets_[size_t(cur_.set)])
    if (s.empty()) return true;
  return false;
}

bool GrammarMatcher::dead() const {
  if (cur_.n != 0) return false;
  for (const Stack& s : sets_[size_t(cur_.set)])
    if (!s.empty()) return false;
  return true;
}

std::string GrammarMatcher::mask_key(const Cursor& c) const {
  std::string k(reinterpret_cast<const char*>(&c.set), sizeof c.set);
  k.append(c.pending, c.n);
  return k;
}

void GrammarMatcher::allowed_tokens(const TokenTrie& trie, std::vector<uint64_t>& allowed) {
  trim_caches();
  const size_t words = (trie.n_vocab() + 63) / 64;
  if (mask_trie_ != &trie) {
    masks_.clear();
    mask_bytes_ = 0;
    mask_trie_ = &trie;
  }
  const std::string key = mask_key(cur_);
  if (auto it = masks_.find(key); it != masks_.end()) {
    allowed = it->second;
    return;
  }
  allowed.assign(words, 0);
  const auto& nodes = trie.nodes();
  const auto& toks = trie.tokens();
  // Depth first over the trie, carrying the cursor each prefix leads to; a prefix the grammar
  // refuses skips its whole subtree.
  struct Frame {
    uint32_t node;
    Cursor cur;
  };
  std::vector<Frame> work;
  for (uint32_t ch = nodes[0].child_begin; ch < nodes[0].child_end; ++ch)
    work.push_back({ch, cur_});
  while (!work.empty()) {
    Frame f = work.back();
    work.pop_back();
    const TokenTrie::Node& n = nodes[f.node];
    if (!step_byte(f.cur, n.byte)) continue;
    for (uint32_t t = n.tok_begin; t < n.tok_end; ++t)
      allowed[size_t(toks[t]) / 64] |= uint64_t(1) << (toks[t] % 64);
    for (uint32_t ch = n.child_begin; ch < n.child_end; ++ch) work.push_back({ch, f.cur});
  }
  if (mask_bytes_ + words * 8 > kMaxMaskBytes) {
    masks_.clear();
    mask_bytes_ = 0;
  }
  masks_.emplace(key, allowed);
  mask_bytes_ += words * 8;
}

}  // namespace tf
