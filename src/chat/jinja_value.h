// Values of the Jinja interpreter, with Python's semantics where a template can observe them:
// truthiness, equality (1 == 1.0 == True), ordering, str() and repr() printing, dict order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tf::jinja {

class Value;
class Interp;
using ValueList = std::vector<Value>;

// Arguments of a call: positional, then keyword (in call order).
struct Args {
  ValueList pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Function {
  std::string name;
  std::function<Value(Interp&, Args&)> call;
  std::vector<std::string> arguments;  // a macro's parameter names (macro.arguments)
};

struct Dict {
  std::vector<std::pair<Value, Value>> items;
  const Value* find(const Value& key) const;
  Value* find(const Value& key);
  const Value* find(std::string_view key) const;
  void set(Value key, Value v);
};

// loop.* inside a for loop.
struct Stmt;
struct Scope;
struct LoopInfo {
  int64_t index0 = 0, length = 0;
  std::shared_ptr<const ValueList> items;
  int depth0 = 0;
  std::shared_ptr<std::optional<ValueList>> last_changed;  // loop.changed(), over iterations
  const Stmt* recursive = nullptr;                         // a recursive loop: loop(items)
  std::weak_ptr<Scope> scope;                              // ... runs there again
};

enum class Kind : uint8_t {
  Undefined, None, Bool, Int, Float, String, List, Tuple, Dict, Namespace, Function, Loop
};

// Lists that Python would hand over as something lazier: the generators of map / select /
// reject / selectattr / rejectattr / unique / items (truthy, consumed by use, no len, not
// JSON), dict views (print as dict_keys([...]), not indexable, not JSON) and range objects
// (print as range(a, b), not JSON).
enum class Lazy : uint8_t { None, Generator, DictKeys, DictValues, DictItems, Range };

class Value {
 public:
  Value() = default;  // undefined
  static Value undefined(std::string hint = "");
  static Value none() { return Value(Kind::None); }
  static Value boolean(bool b) {
    Value v(Kind::Bool);
    v.i_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v(Kind::Int);
    v.i_ = i;
    return v;
  }
  static Value number(double f) {
    Value v(Kind::Float);
    v.f_ = f;
    return v;
  }
  static Value string(std::string s);
  // A markupsafe.Markup string (from |safe or |e): plain strings combined with it by + or %
  // are HTML-escaped, as jinja2 does even with autoescaping off.
  static Value markup(std::string s);
  static Value lazy(ValueList items, Lazy kind, std::string repr = "");
  static Value list(ValueList items);
  static Value tuple(ValueList items);
  static Value dict(Dict d = {});
  static Value ns(Dict d = {});
  static Value function(std::string name, std::function<Value(Interp&, Args&)> fn,
                        std::vector<std::string> arguments = {});
  static Value loop(std::shared_ptr<LoopInfo> info);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_int() const { return kind_ == Kind::Int || kind_ == Kind::Bool; }  // Python: bool is int
  bool is_number() const { return is_int() || kind_ == Kind::Float; }
  // A list or tuple (also range): indexable, with a length.
  bool is_sequence() const {
    return (kind_ == Kind::List || kind_ == Kind::Tuple) && (lazy_ == Lazy::None || lazy_ == Lazy::Range);
  }
  bool is_markup() const { return kind_ == Kind::String && markup_; }
  Lazy lazy_kind() const { return lazy_; }
  // A generator's next item (consuming it), or undefined at the end.
  Value next_item() const;
  bool is_mapping() const { return kind_ == Kind::Dict; }
  bool is_callable() const { return kind_ == Kind::Function; }
  // Iterable as Python sees it: strings, lists, tuples, dicts (keys) and undefined (empty).
  bool is_iterable() const;

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }  // Int or Bool
  double as_double() const { return kind_ == Kind::Float ? f_ : double(i_); }
  const std::string& str() const { return *s_; }      // String
  // String: the text; Undefined: the hint on why (for error messages); else "".
  const std::string& str_or_empty() const {
    static const std::string empty;
    return s_ ? *s_ : empty;
  }
  std::shared_ptr<Dict> dict_ptr() const { return dict_; }
  const ValueList& items() const { return *list_; }   // List / Tuple
  const Dict& dict_ref() const { return *dict_; }     // Dict / Namespace
  Dict& dict_mut() const { return *dict_; }           // Namespace attribute assignment
  const Function& fn() const { return *fn_; }
  const LoopInfo& loop_info() const { return *loop_; }

  bool truthy() const;
  // Python's str() (Undefined prints as "").
  std::string to_str() const;
  void append_str(std::string& out) const;
  // Python's repr().
  void append_repr(std::string& out) const;
  // The Python type name used in error messages ("str", "int", "dict", "NoneType"...).
  const char* type_name() const;
  // Items when iterated (dict: keys; string: characters). Throws for non-iterables.
  ValueList iterate() const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::Undefined;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const Function> fn_;
  std::shared_ptr<LoopInfo> loop_;
  bool markup_ = false;
  Lazy lazy_ = Lazy::None;
  std::shared_ptr<size_t> gen_pos_;  // a generator's items consumed so far
};

// markupsafe.escape of a str.
std::string html_escape(std::string_view s);

// Python ==.
bool py_equal(const Value& a, const Value& b);
// Python <: -1, 0, 1; throws tf::Error (TypeError) when the types cannot be ordered.
int py_compare(const Value& a, const Value& b);

// Python's float repr ("1.0", "0.1", "1e+16", "inf").
std::string float_repr(double f);
// Python's repr of a str.
void append_str_repr(std::string& out, std::string_view s);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys). indent < 0: none; indent_str
// overrides when set (indent given as a string). Throws tf::Error for values JSON cannot hold.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;  // the per-level indent text
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
};
void json_dump(std::string& out, const Value& v, const JsonDumpOptions& o, int depth = 0);

// UTF-8 helpers: code point count and code point <-> byte offsets (Python indexes strings by
// code point).
size_t cp_count(std::string_view s);
std::vector<uint32_t> to_cps(std::string_view s);
std::string from_cps(const std::vector<uint32_t>& cps, size_t begin, size_t end);
bool py_isspace(uint32_t cp);

}  // namespace tf::jinja
