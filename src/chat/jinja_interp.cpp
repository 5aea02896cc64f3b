#include "chat/jinja_interp.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "chat/jinja_builtins.h"
#include "chat/jinja_lexer.h"
#include "util/error.h"

namespace tf::jinja {

struct DepthGuard {
  explicit DepthGuard(Interp& in) : in_(in) {
    if (++in_.depth_ > in_.limits_.max_depth)
      throw Error("recursion too deep (more than " + std::to_string(in_.limits_.max_depth) +
                  " nested calls)");
  }
  ~DepthGuard() { --in_.depth_; }
  Interp& in_;
};

namespace {

[[noreturn]] void undefined_error(const Value& u) {
  throw Error(u.is_undefined() && !u.str_or_empty().empty() ? u.str_or_empty()
                                                             : "value is undefined");
}

[[noreturn]] void overflow() {
  throw Error("integer overflow (values beyond 64 bits are not supported)");
}
int64_t add_ck(int64_t x, int64_t y) {
  int64_t r;
  if (__builtin_add_overflow(x, y, &r)) overflow();
  return r;
}
int64_t sub_ck(int64_t x, int64_t y) {
  int64_t r;
  if (__builtin_sub_overflow(x, y, &r)) overflow();
  return r;
}
int64_t mul_ck(int64_t x, int64_t y) {
  int64_t r;
  if (__builtin_mul_overflow(x, y, &r)) overflow();
  return r;
}

Value number_op(const std::string& op, const Value& a, const Value& b) {
  const bool ints = a.kind() != Kind::Float && b.kind() != Kind::Float;
  if (op == "/") {
    if (b.as_double() == 0) throw Error("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (ints) {
    const int64_t x = a.as_int(), y = b.as_int();
    if (op == "+") return Value::integer(add_ck(x, y));
    if (op == "-") return Value::integer(sub_ck(x, y));
    if (op == "*") return Value::integer(mul_ck(x, y));
    if (op == "//" || op == "%") {
      if (y == 0) throw Error("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) overflow();
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        q -= 1;
        m += y;
      }
      return Value::integer(op == "//" ? q : m);
    }
    if (op == "**") {
      if (y < 0) return Value::number(std::pow(double(x), double(y)));
      int64_t result = 1, base = x, e = y;
      while (e > 0) {
        if (e & 1) result = mul_ck(result, base);
        e >>= 1;
        if (e > 0) base = mul_ck(base, base);
      }
      return Value::integer(result);
    }
  }
  const double x = a.as_double(), y = b.as_double();
  if (op == "+") return Value::number(x + y);
  if (op == "-") return Value::number(x - y);
  if (op == "*") return Value::number(x * y);
  if (op == "//" || op == "%") {
    if (y == 0) throw Error("float division or modulo by zero");
    // Python's float_floor_div / float_rem.
    double mod = std::fmod(x, y), div = (x - mod) / y;
    if (mod != 0) {
      if ((y < 0) != (mod < 0)) {
        mod += y;
        div -= 1.0;
      }
    } else {
      mod = std::copysign(0.0, y);
    }
    if (op == "%") return Value::number(mod);
    double fl;
    if (div != 0) {
      fl = std::floor(div);
      if (div - fl > 0.5) fl += 1.0;
    } else {
      fl = std::copysign(0.0, x / y);
    }
    return Value::number(fl);
  }
  if (op == "**") {
    if (x == 0 && y < 0) throw Error("0.0 cannot be raised to a negative power");
    return Value::number(std::pow(x, y));
  }
  throw Error("unknown operator " + op);
}

[[noreturn]] void type_error(const std::string& op, const Value& a, const Value& b) {
  throw Error("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
              b.type_name() + "'");
}

}  // namespace

// ---- entry -----------------------------------------------------------------------------

std::string Interp::render(const Program& prog, const Json& vars) {
  auto globals = std::make_shared<Scope>();
  Dict g;
  add_globals(g);
  for (auto& [k, v] : g.items) globals->vars[k.str()] = v;
  auto context = std::make_shared<Scope>();
  context->parent = globals;
  if (!vars.is_null() && !vars.is_object()) throw Error("template variables must be an object");
  if (vars.is_object())
    for (auto it = vars.begin(); it != vars.end(); ++it)
      context->vars[it.key()] = Value::from_json(it.value());
  auto top = std::make_shared<Scope>();
  top->parent = context;
  std::string out;
  try {
    exec(prog.body, top, out);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind("template line ", 0) == 0) throw;
    fail_at(line_, col_, msg);
  }
  return out;
}

void Interp::step(int64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps)
    throw Error("the template did too much work (more than " + std::to_string(limits_.max_steps) +
                " steps)");
}

void Interp::check_size(size_t bytes) const {
  if (int64_t(bytes) > limits_.max_output_bytes)
    throw Error("output too large (more than " + std::to_string(limits_.max_output_bytes) +
                " bytes)");
}

// ---- statements ------------------------------------------------------------------------

Interp::Flow Interp::exec(const Body& body, const ScopePtr& scope, std::string& out) {
  for (const auto& s : body) {
    const Flow f = exec_stmt(*s, scope, out);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interp::Flow Interp::exec_stmt(const Stmt& s, const ScopePtr& scope, std::string& out) {
  at(s.line, s.col);
  step();
  switch (s.kind) {
    case StmtKind::Text:
      out += s.text;
      check_size(out.size());
      return Flow::Normal;
    case StmtKind::Output: {
      const Value v = eval(*s.expr, scope);
      v.append_str(out);
      check_size(out.size());
      return Flow::Normal;
    }
    case StmtKind::If:
      for (size_t i = 0; i < s.conds.size(); ++i) {
        if (eval(*s.conds[i], scope).truthy()) return exec(s.bodies[i], scope, out);
      }
      return exec(s.else_body, scope, out);
    case StmtKind::For: return exec_for(s, scope, out);
    case StmtKind::Set: exec_set(s, scope, out); return Flow::Normal;
    case StmtKind::Macro: scope->vars[s.text] = make_macro(s, scope); return Flow::Normal;
    case StmtKind::CallBlock: {
      const Expr& c = *s.expr;
      Value callee = eval(*c.a, scope);
      Args args;
      eval_args(c, scope, args);
      args.kw.emplace_back("caller", make_macro(s, scope, &s));
      at(c.line, c.col);
      const Value r = call(callee, args);
      r.append_str(out);
      check_size(out.size());
      return Flow::Normal;
    }
    case StmtKind::FilterBlock: {
      auto inner = std::make_shared<Scope>();
      inner->parent = scope;
      std::string text;
      exec(s.body, inner, text);
      Value v = Value::string(std::move(text));
      for (const auto& f : s.filters) {
        Args args;
        eval_args(*f, scope, args);
        at(f->line, f->col);
        v = filter(f->name, v, args);
      }
      v.append_str(out);
      check_size(out.size());
      return Flow::Normal;
    }
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
    case StmtKind::Scope: return exec(s.body, scope, out);
    case StmtKind::With: {
      auto inner = std::make_shared<Scope>();
      inner->parent = scope;
      for (size_t i = 0; i < s.targets.size(); ++i) inner->vars[s.targets[i]] = eval(*s.conds[i], scope);
      return exec(s.body, inner, out);
    }
  }
  return Flow::Normal;
}

namespace {
void bind_targets(const Stmt& s, Scope& scope, const Value& v) {
  if (!s.target_tuple) {
    scope.vars[s.targets[0]] = v;
    return;
  }
  ValueList parts;
  if (v.is_sequence() || v.is_string() || v.is_mapping()) parts = v.iterate();
  else throw Error(std::string("cannot unpack non-iterable ") + v.type_name() + " object");
  if (parts.size() != s.targets.size())
    throw Error(parts.size() > s.targets.size()
                    ? "too many values to unpack (expected " + std::to_string(s.targets.size()) + ")"
                    : "not enough values to unpack (expected " + std::to_string(s.targets.size()) +
                          ", got " + std::to_string(parts.size()) + ")");
  for (size_t i = 0; i < parts.size(); ++i) scope.vars[s.targets[i]] = parts[i];
}
}  // namespace

Interp::Flow Interp::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
  const Value seq = eval(*s.expr, scope);
  exec_loop(s, scope, seq, 0, out);
  return Flow::Normal;
}

void Interp::exec_loop(const Stmt& s, const ScopePtr& scope, const Value& seq, int depth0,
                       std::string& out) {
  at(s.line, s.col);
  if (!seq.is_iterable()) throw Error(std::string("'") + seq.type_name() + "' object is not iterable");
  ValueList all = seq.iterate();
  if (s.cond) {
    ValueList kept;
    for (auto& item : all) {
      step();
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      bind_targets(s, *probe, item);
      if (eval(*s.cond, probe).truthy()) kept.push_back(std::move(item));
    }
    all = std::move(kept);
  }
  auto items = std::make_shared<const ValueList>(std::move(all));
  auto changed = std::make_shared<std::optional<ValueList>>();
  const int64_t n = int64_t(items->size());
  for (int64_t i = 0; i < n; ++i) {
    step();
    auto iter = std::make_shared<Scope>();
    iter->parent = scope;
    bind_targets(s, *iter, (*items)[size_t(i)]);
    auto info = std::make_shared<LoopInfo>();
    info->index0 = i;
    info->length = n;
    info->items = items;
    info->depth0 = depth0;
    info->last_changed = changed;
    if (s.recursive) {
      info->recursive = &s;
      info->scope = scope;
    }
    iter->vars["loop"] = Value::loop(std::move(info));
    const Flow f = exec(s.body, iter, out);
    if (f == Flow::Break) break;
  }
  if (n == 0 && !s.else_body.empty()) {
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    exec(s.else_body, inner, out);
  }
}

void Interp::exec_set(const Stmt& s, const ScopePtr& scope, std::string& out) {
  Value v;
  if (s.block_set) {
    auto inner = std::make_shared<Scope>();
    inner->parent = scope;
    std::string text;
    exec(s.body, inner, text);
    v = Value::string(std::move(text));
    for (const auto& f : s.filters) {
      Args args;
      eval_args(*f, scope, args);
      at(f->line, f->col);
      v = filter(f->name, v, args);
    }
  } else {
    v = eval(*s.expr, scope);
  }
  at(s.line, s.col);
  if (!s.attr_of.empty()) {
    const Value* ns = scope->lookup(s.attr_of);
    if (!ns || ns->kind() != Kind::Namespace)
      throw Error("cannot assign attribute on non-namespace object");
    ns->dict_mut().set(Value::string(s.targets[0]), std::move(v));
    return;
  }
  bind_targets(s, *scope, v);
}

// A macro (or the caller of a call block) as a function value. The defining scope is held
// weakly: a scope holding its own macro would otherwise never be freed.
Value Interp::make_macro(const Stmt& s, const ScopePtr& scope, const Stmt* caller_of) {
  std::weak_ptr<Scope> def = scope;
  const Stmt* m = &s;
  const std::string name = caller_of ? "caller" : s.text;
  return Value::function(name, [m, def, name, caller_of](Interp& in, Args& args) -> Value {
    DepthGuard guard(in);
    in.step();
    auto parent = def.lock();
    if (!parent) throw Error("macro '" + name + "' called after its scope ended");
    auto sc = std::make_shared<Scope>();
    sc->parent = parent;
    const auto& params = m->params;
    if (args.pos.size() > params.size() && !m->uses_varargs)
      throw Error("macro '" + name + "' takes not more than " + std::to_string(params.size()) +
                  " argument(s)");
    std::vector<bool> given(params.size(), false);
    for (size_t i = 0; i < params.size() && i < args.pos.size(); ++i) {
      sc->vars[params[i].name] = args.pos[i];
      given[i] = true;
    }
    Dict extra_kw;
    for (auto& [k, v] : args.kw) {
      if (k == "caller" && !caller_of) {
        sc->vars["caller"] = v;
        continue;
      }
      bool found = false;
      for (size_t i = 0; i < params.size(); ++i) {
        if (params[i].name != k) continue;
        if (given[i]) throw Error("macro '" + name + "' got multiple values for argument '" + k + "'");
        sc->vars[k] = v;
        given[i] = found = true;
      }
      if (!found) {
        if (!m->uses_kwargs) throw Error("macro '" + name + "' takes no keyword argument '" + k + "'");
        extra_kw.set(Value::string(k), v);
      }
    }
    for (size_t i = 0; i < params.size(); ++i) {
      if (given[i]) continue;
      sc->vars[params[i].name] =
          params[i].def ? in.eval(*params[i].def, sc)
                        : Value::undefined("parameter '" + params[i].name + "' was not provided");
    }
    ValueList rest;
    for (size_t i = params.size(); i < args.pos.size(); ++i) rest.push_back(args.pos[i]);
    sc->vars["varargs"] = Value::tuple(std::move(rest));
    sc->vars["kwargs"] = Value::dict(std::move(extra_kw));
    std::string out;
    in.exec(m->body, sc, out);
    return Value::string(std::move(out));
  }, [&] {
    std::vector<std::string> names;
    for (const auto& p : s.params) names.push_back(p.name);
    return names;
  }());
}

// ---- expressions -----------------------------------------------------------------------

void Interp::eval_args(const Expr& e, const ScopePtr& scope, Args& args) {
  for (const auto& a : e.items) args.pos.push_back(eval(*a, scope));
  for (const auto& [k, v] : e.kwargs) args.kw.emplace_back(k, eval(*v, scope));
}

Value Interp::call(const Value& fn, Args& args) {
  if (fn.is_undefined()) undefined_error(fn);
  if (fn.kind() == Kind::Loop) {
    const LoopInfo& l = fn.loop_info();
    if (!l.recursive) throw Error("'LoopContext' object is not callable (the loop is not recursive)");
    if (args.pos.size() != 1 || !args.kw.empty()) throw Error("loop() takes exactly one argument");
    auto scope = l.scope.lock();
    if (!scope) throw Error("loop() called after its loop ended");
    DepthGuard guard(*this);
    std::string out;
    exec_loop(*l.recursive, scope, args.pos[0], l.depth0 + 1, out);
    return Value::string(std::move(out));
  }
  if (!fn.is_callable()) throw Error(std::string("'") + fn.type_name() + "' object is not callable");
  return fn.fn().call(*this, args);
}

Value Interp::filter(const std::string& name, const Value& subject, Args& args) {
  step();
  return call_filter(*this, name, subject, args);
}

bool Interp::test(const std::string& name, const Value& subject, Args& args) {
  step();
  return call_test(*this, name, subject, args);
}

Value Interp::eval(const Expr& e, const ScopePtr& scope) {
  switch (e.kind) {
    case ExprKind::Literal: return e.value;
    case ExprKind::Name: {
      if (const Value* v = scope->lookup(e.name)) return *v;
      return Value::undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::List: case ExprKind::Tuple: {
      ValueList items;
      items.reserve(e.items.size());
      for (const auto& i : e.items) items.push_back(eval(*i, scope));
      return e.kind == ExprKind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprKind::DictLit: {
      Dict d;
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        Value k = eval(*e.items[i], scope);
        if (k.is_sequence() && k.kind() == Kind::List) { at(e.line, e.col); throw Error("unhashable type: 'list'"); }
        if (k.is_mapping()) { at(e.line, e.col); throw Error("unhashable type: 'dict'"); }
        d.set(std::move(k), eval(*e.items[i + 1], scope));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::Getattr: {
      const Value obj = eval(*e.a, scope);
      at(e.line, e.col);
      return getattr(obj, e.name);
    }
    case ExprKind::Getitem: {
      const Value obj = eval(*e.a, scope);
      const Value key = eval(*e.b, scope);
      at(e.line, e.col);
      return getitem(obj, key);
    }
    case ExprKind::Slice: return slice(e, scope);
    case ExprKind::Call: {
      const Value fn = eval(*e.a, scope);
      Args args;
      eval_args(e, scope, args);
      at(e.line, e.col);
      return call(fn, args);
    }
    case ExprKind::Filter: {
      const Value subject = eval(*e.a, scope);
      Args args;
      eval_args(e, scope, args);
      at(e.line, e.col);
      if (e.deferred) throw Error("no filter named '" + e.name + "' found");
      return filter(e.name, subject, args);
    }
    case ExprKind::Test: {
      const Value subject = eval(*e.a, scope);
      Args args;
      eval_args(e, scope, args);
      at(e.line, e.col);
      if (e.deferred) throw Error("no test named '" + e.name + "' found");
      return Value::boolean(test(e.name, subject, args) != e.negated);
    }
    case ExprKind::Unary: {
      const Value v = eval(*e.a, scope);
      at(e.line, e.col);
      if (e.name == "not") return Value::boolean(!v.truthy());
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_number())
        throw Error(std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.kind() == Kind::Bool ? Value::integer(v.as_int()) : v;
      if (v.kind() == Kind::Float) return Value::number(-v.as_double());
      return Value::integer(sub_ck(0, v.as_int()));
    }
    case ExprKind::Binary: return binary(e, scope);
    case ExprKind::Compare: return compare(e, scope);
    case ExprKind::CondExpr: {
      if (eval(*e.a, scope).truthy()) return eval(*e.b, scope);
      if (e.c) return eval(*e.c, scope);
      return Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    }
  }
  return Value();
}

Value Interp::binary(const Expr& e, const ScopePtr& scope) {
  const std::string& op = e.name;
  if (op == "and") {
    Value l = eval(*e.a, scope);
    return l.truthy() ? eval(*e.b, scope) : l;
  }
  if (op == "or") {
    Value l = eval(*e.a, scope);
    return l.truthy() ? l : eval(*e.b, scope);
  }
  const Value l = eval(*e.a, scope);
  const Value r = eval(*e.b, scope);
  at(e.line, e.col);
  if (op == "~") {
    std::string s = l.to_str();
    r.append_str(s);
    check_size(s.size());
    return Value::string(std::move(s));
  }
  if (l.is_undefined()) undefined_error(l);
  if (r.is_undefined()) undefined_error(r);
  if (l.is_number() && r.is_number()) return number_op(op, l, r);
  if (op == "+") {
    if (l.is_string() && r.is_string()) {
      check_size(l.str().size() + r.str().size());
      // Markup + str escapes the str (markupsafe), whichever side it is on.
      if (l.is_markup() || r.is_markup())
        return Value::markup((l.is_markup() ? l.str() : html_escape(l.str())) +
                             (r.is_markup() ? r.str() : html_escape(r.str())));
      return Value::string(l.str() + r.str());
    }
    if (l.kind() == r.kind() && l.is_sequence() && l.lazy_kind() == Lazy::None &&
        r.lazy_kind() == Lazy::None) {
      ValueList items = l.items();
      items.insert(items.end(), r.items().begin(), r.items().end());
      step(int64_t(items.size()));
      return l.kind() == Kind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    type_error(op, l, r);
  }
  if (op == "*") {
    const Value* seq = l.is_int() ? &r : &l;
    const Value* cnt = l.is_int() ? &l : &r;
    if (!cnt->is_int() || !(seq->is_string() || seq->is_sequence())) type_error(op, l, r);
    const int64_t n = std::max<int64_t>(0, cnt->as_int());
    if (seq->is_string()) {
      if (n > 0 && seq->str().size() > 0 && n > limits_.max_output_bytes / int64_t(seq->str().size()))
        check_size(size_t(limits_.max_output_bytes) + 1);
      std::string s;
      s.reserve(seq->str().size() * size_t(n));
      for (int64_t i = 0; i < n; ++i) s += seq->str();
      return Value::string(std::move(s));
    }
    const size_t len = seq->items().size();
    if (len > 0 && n > limits_.max_steps / int64_t(len)) step(limits_.max_steps + 1);
    step(int64_t(len) * n);
    ValueList items;
    for (int64_t i = 0; i < n; ++i) items.insert(items.end(), seq->items().begin(), seq->items().end());
    return seq->kind() == Kind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
  }
  if (op == "%" && l.is_string()) {
    if (!l.is_markup()) return Value::string(percent_format(l.str(), r));
    // Markup % args escapes the arguments.
    auto esc = [](const Value& v) { return v.is_string() && !v.is_markup() ? Value::string(html_escape(v.str())) : v; };
    Value args;
    if (r.kind() == Kind::Tuple) {
      ValueList items;
      for (const auto& x : r.items()) items.push_back(esc(x));
      args = Value::tuple(std::move(items));
    } else if (r.is_mapping()) {
      Dict d;
      for (const auto& [k, x] : r.dict_ref().items) d.set(k, esc(x));
      args = Value::dict(std::move(d));
    } else {
      args = esc(r);
    }
    return Value::markup(percent_format(l.str(), args));
  }
  type_error(op, l, r);
}

namespace {
bool contains(const Value& hay, const Value& needle) {
  switch (hay.kind()) {
    case Kind::String:
      if (!needle.is_string())
        throw Error(std::string("'in <string>' requires string as left operand, not ") +
                    needle.type_name());
      return hay.str().find(needle.str()) != std::string::npos;
    case Kind::List: case Kind::Tuple:
      if (hay.lazy_kind() == Lazy::Generator) {  // consumed up to the match, as in Python
        for (Value v = hay.next_item(); !v.is_undefined(); v = hay.next_item())
          if (py_equal(v, needle)) return true;
        return false;
      }
      for (const auto& v : hay.items())
        if (py_equal(v, needle)) return true;
      return false;
    case Kind::Dict: return hay.dict_ref().find(needle) != nullptr;
    case Kind::Undefined: return false;
    default:
      throw Error(std::string("argument of type '") + hay.type_name() + "' is not iterable");
  }
}
}  // namespace

Value Interp::compare(const Expr& e, const ScopePtr& scope) {
  Value left = eval(*e.a, scope);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.items[i], scope);
    at(e.line, e.col);
    const std::string& op = e.ops[i];
    bool ok;
    if (op == "==") ok = py_equal(left, right);
    else if (op == "!=") ok = !py_equal(left, right);
    else if (op == "in") ok = contains(right, left);
    else if (op == "notin") ok = !contains(right, left);
    else {
      if (left.is_undefined()) undefined_error(left);
      if (right.is_undefined()) undefined_error(right);
      const int c = py_compare(left, right);
      ok = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
    }
    if (!ok) return Value::boolean(false);
    left = std::move(right);
  }
  return Value::boolean(true);
}

Value Interp::getattr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Kind::Undefined: undefined_error(obj);
    case Kind::Dict: {
      Value m = bound_method(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.dict_ref().find(std::string_view(name))) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    case Kind::Namespace:
      if (const Value* v = obj.dict_ref().find(std::string_view(name))) return *v;
      return Value::undefined("'Namespace object' has no attribute '" + name + "'");
    case Kind::Loop: {
      const LoopInfo& l = obj.loop_info();
      if (name == "index0") return Value::integer(l.index0);
      if (name == "index") return Value::integer(l.index0 + 1);
      if (name == "revindex") return Value::integer(l.length - l.index0);
      if (name == "revindex0") return Value::integer(l.length - l.index0 - 1);
      if (name == "first") return Value::boolean(l.index0 == 0);
      if (name == "last") return Value::boolean(l.index0 + 1 == l.length);
      if (name == "length") return Value::integer(l.length);
      if (name == "depth") return Value::integer(l.depth0 + 1);
      if (name == "depth0") return Value::integer(l.depth0);
      if (name == "changed") {
        auto state = l.last_changed;
        return Value::function("changed", [state](Interp&, Args& a) -> Value {
          if (state->has_value() && state->value().size() == a.pos.size() &&
              std::equal(a.pos.begin(), a.pos.end(), state->value().begin(), py_equal))
            return Value::boolean(false);
          *state = a.pos;
          return Value::boolean(true);
        });
      }
      if (name == "previtem")
        return l.index0 > 0 ? (*l.items)[size_t(l.index0 - 1)] : Value::undefined("there is no previous item");
      if (name == "nextitem")
        return l.index0 + 1 < l.length ? (*l.items)[size_t(l.index0 + 1)]
                                      : Value::undefined("there is no next item");
      if (name == "cycle") {
        const int64_t idx = l.index0;
        return Value::function("cycle", [idx](Interp&, Args& a) -> Value {
          if (a.pos.empty()) throw Error("no items for cycling given");
          return a.pos[size_t(idx % int64_t(a.pos.size()))];
        });
      }
      return Value::undefined("'LoopContext object' has no attribute '" + name + "'");
    }
    case Kind::Function:
      if (name == "name") return Value::string(obj.fn().name);
      if (name == "arguments") {
        ValueList names;
        for (const auto& a : obj.fn().arguments) names.push_back(Value::string(a));
        return Value::tuple(std::move(names));
      }
      return Value::undefined("'function object' has no attribute '" + name + "'");
    default: {
      // groupby's (grouper, list) pairs answer to those names too.
      if (obj.kind() == Kind::Tuple && obj.items().size() == 2 && (name == "grouper" || name == "list"))
        return obj.items()[name == "grouper" ? 0 : 1];
      Value m = bound_method(obj, name);
      if (!m.is_undefined()) return m;
      return Value::undefined("'" + std::string(obj.type_name()) + " object' has no attribute '" + name + "'");
    }
  }
}

Value Interp::getitem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Kind::Undefined: undefined_error(obj);
    case Kind::Dict:
      if (const Value* v = obj.dict_ref().find(key)) return *v;
      if (key.is_string()) {
        Value m = bound_method(obj, key.str());
        if (!m.is_undefined()) return m;
      }
      {
        std::string k;
        key.append_repr(k);
        return Value::undefined("'dict object' has no attribute " + k);
      }
    case Kind::List: case Kind::Tuple: case Kind::String: {
      if (key.is_int()) {
        int64_t i = key.as_int();
        if (obj.is_string()) {
          const auto cps = to_cps(obj.str());
          const int64_t n = int64_t(cps.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return Value::undefined("string index out of range");
          std::string ch = from_cps(cps, size_t(i), size_t(i) + 1);
          return obj.is_markup() ? Value::markup(std::move(ch)) : Value::string(std::move(ch));
        }
        if (!obj.is_sequence())
          return Value::undefined(std::string("'") + obj.type_name() + "' object is not subscriptable");
        const int64_t n = int64_t(obj.items().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("list index out of range");
        return obj.items()[size_t(i)];
      }
      if (key.is_string()) return getattr(obj, key.str());
      return Value::undefined("bad index type");
    }
    case Kind::Namespace: case Kind::Loop:
      if (key.is_string()) return getattr(obj, key.str());
      return Value::undefined("object is not subscriptable");
    default:
      if (key.is_string()) return getattr(obj, key.str());
      return Value::undefined(std::string("'") + obj.type_name() + "' object is not subscriptable");
  }
}

Value Interp::slice(const Expr& e, const ScopePtr& scope) {
  const Value obj = eval(*e.a, scope);
  auto bound = [&](const ExprPtr& x) -> std::optional<int64_t> {
    if (!x) return std::nullopt;
    const Value v = eval(*x, scope);
    if (v.is_none()) return std::nullopt;
    if (!v.is_int()) throw Error("slice indices must be integers or None");
    return v.as_int();
  };
  const auto start = bound(e.b), stop = bound(e.c), stp = bound(e.d);
  at(e.line, e.col);
  if (obj.is_undefined()) undefined_error(obj);
  const int64_t step_v = stp.value_or(1);
  if (step_v == 0) throw Error("slice step cannot be zero");
  std::vector<uint32_t> cps;
  int64_t n;
  if (obj.is_string()) {
    cps = to_cps(obj.str());
    n = int64_t(cps.size());
  } else if (obj.is_sequence()) {
    n = int64_t(obj.items().size());
  } else if (obj.kind() == Kind::List || obj.kind() == Kind::Tuple) {
    throw Error(std::string("'") + obj.type_name() + "' object is not subscriptable");
  } else {
    throw Error(std::string("'") + obj.type_name() + "' object is not subscriptable");
  }
  // Python's slice.indices.
  auto clamp = [&](std::optional<int64_t> v, int64_t def_pos, int64_t def_neg) {
    if (!v) return step_v > 0 ? def_pos : def_neg;
    int64_t x = *v;
    if (x < 0) x += n;
    if (step_v > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t lo = clamp(start, 0, n - 1), hi = clamp(stop, n, -1);
  std::vector<int64_t> idx;
  for (int64_t i = lo; step_v > 0 ? i < hi : i > hi; i += step_v) idx.push_back(i);
  if (obj.is_string()) {
    std::vector<uint32_t> sel;
    for (int64_t i : idx) sel.push_back(cps[size_t(i)]);
    std::string text = from_cps(sel, 0, sel.size());
    return obj.is_markup() ? Value::markup(std::move(text)) : Value::string(std::move(text));
  }
  ValueList items;
  for (int64_t i : idx) items.push_back(obj.items()[size_t(i)]);
  if (obj.lazy_kind() == Lazy::Range) return slice_range(obj, lo, hi, step_v, std::move(items));
  return obj.kind() == Kind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
}

}  // namespace tf::jinja
