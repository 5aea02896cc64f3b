// Recursive-descent parser over the lexer's tokens, following Jinja2's grammar and operator
// precedence (parser.py): condexpr < or < and < not < compare < + - < ~ < * / // % < ** <
// unary - + < postfix (. [] ()) and filters / tests.
#include <algorithm>

#include "chat/jinja_ast.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_lexer.h"

namespace tf::jinja {

namespace {

void visit_expr(const Expr& e, const std::function<void(const Expr&)>& fn) {
  fn(e);
  for (const ExprPtr* sub : {&e.a, &e.b, &e.c, &e.d})
    if (*sub) visit_expr(**sub, fn);
  for (const auto& i : e.items) visit_expr(*i, fn);
  for (const auto& kv : e.kwargs) visit_expr(*kv.second, fn);
}

}  // namespace

void visit_exprs(const Body& body, const std::function<void(const Expr&)>& fn) {
  for (const auto& s : body) {
    for (const ExprPtr* e : {&s->expr, &s->cond})
      if (*e) visit_expr(**e, fn);
    for (const auto& c : s->conds) visit_expr(*c, fn);
    for (const auto& f : s->filters) visit_expr(*f, fn);
    for (const auto& p : s->params)
      if (p.def) visit_expr(*p.def, fn);
    for (const auto& b : s->bodies) visit_exprs(b, fn);
    visit_exprs(s->body, fn);
    visit_exprs(s->else_body, fn);
  }
}

namespace {

void mark_varargs(Stmt& s) {
  visit_exprs(s.body, [&](const Expr& e) {
    if (e.kind != ExprKind::Name) return;
    if (e.name == "varargs") s.uses_varargs = true;
    if (e.name == "kwargs") s.uses_kwargs = true;
  });
}

constexpr int kMaxNesting = 200;  // expression and statement nesting the parser accepts

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::unique_ptr<Program> program() {
    auto prog = std::make_unique<Program>();
    prog->body = body({});
    if (cur().type != Tok::End) fail("unexpected token");
    return prog;
  }

 private:
  // ---- token helpers ----
  const Token& cur() const { return t_[p_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  void next() {
    if (p_ + 1 < t_.size()) ++p_;
  }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  [[noreturn]] void fail(const std::string& msg) const {
    fail_at(cur().line, cur().col, msg + " (got " + describe(cur()) + ")");
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::Text: return "text";
      case Tok::VarBegin: return "'{{'";
      case Tok::VarEnd: return "'}}'";
      case Tok::BlockBegin: return "'{%'";
      case Tok::BlockEnd: return "'%}'";
      case Tok::Name: return "'" + t.text + "'";
      case Tok::String: return "string";
      case Tok::Int: case Tok::Float: return "number";
      case Tok::Op: return "'" + t.text + "'";
      case Tok::End: return "end of template";
    }
    return "token";
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "'");
    next();
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail("expected a name");
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail("expected the end of the statement block '%}'");
    next();
  }

  struct Depth {
    explicit Depth(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxNesting) p_.fail("template nested too deeply");
    }
    ~Depth() { --p_.depth_; }
    Parser& p_;
  };

  ExprPtr node(ExprKind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // ---- statements ----

  // Statements until a block tag named in `ends` (left current: the tag's name) or the end.
  Body body(const std::vector<std::string>& ends) {
    Depth d(*this);
    Body out;
    for (;;) {
      const Token& t = cur();
      if (t.type == Tok::End) {
        if (!ends.empty()) {
          std::string want;
          for (const auto& e : ends) want += (want.empty() ? "'" : " or '") + e + "'";
          fail("unexpected end of template; looking for the tags " + want);
        }
        return out;
      }
      if (t.type == Tok::Text) {
        auto s = stmt(StmtKind::Text, t);
        s->text = t.text;
        out.push_back(std::move(s));
        next();
      } else if (t.type == Tok::VarBegin) {
        auto s = stmt(StmtKind::Output, t);
        next();
        s->expr = tuple(true);
        if (cur().type != Tok::VarEnd) fail("expected the end of the print statement '}}'");
        next();
        out.push_back(std::move(s));
      } else if (t.type == Tok::BlockBegin) {
        next();
        if (cur().type != Tok::Name) fail("expected a tag name");
        if (std::find(ends.begin(), ends.end(), cur().text) != ends.end()) return out;
        out.push_back(statement());
      } else {
        fail("unexpected token");
      }
    }
  }

  StmtPtr stmt(StmtKind k, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = at.line;
    s->col = at.col;
    return s;
  }

  // The body of a block statement that is not "soft" (for, macro, ...): filters named there
  // must exist at parse time, as in Jinja.
  Body hard_body(const std::vector<std::string>& ends) {
    const int saved = soft_;
    soft_ = 0;
    Body b = body(ends);
    soft_ = saved;
    return b;
  }

  StmtPtr statement() {
    const Token& t = cur();
    const std::string tag = t.text;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "break" || tag == "continue") {
      if (loops_ == 0) fail("'" + tag + "' outside of a loop");
      auto s = stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, t);
      next();
      expect_block_end();
      return s;
    }
    if (tag == "with") {
      auto s = stmt(StmtKind::With, t);
      next();
      while (cur().type != Tok::BlockEnd) {
        if (!s->targets.empty()) expect_op(",");
        s->targets.push_back(expect_name());
        expect_op("=");
        s->conds.push_back(expression(true));
      }
      next();
      s->body = hard_body({"endwith"});
      next();
      expect_block_end();
      return s;
    }
    if (tag == "generation") {  // transformers' AssistantTracker tag: renders its body
      auto s = stmt(StmtKind::Scope, t);
      next();
      expect_block_end();
      s->body = body({"endgeneration"});
      next();
      expect_block_end();
      return s;
    }
    fail("unknown tag '" + tag + "'");
  }

  StmtPtr parse_if() {
    auto s = stmt(StmtKind::If, cur());
    ++soft_;
    next();
    for (;;) {
      s->conds.push_back(tuple(false));
      expect_block_end();
      s->bodies.push_back(body({"elif", "else", "endif"}));
      const std::string tag = cur().text;
      next();
      if (tag == "elif") continue;
      if (tag == "else") {
        expect_block_end();
        s->else_body = body({"endif"});
        next();
      }
      break;
    }
    expect_block_end();
    --soft_;
    return s;
  }

  // Assignment targets: a name, names separated by commas, optionally in parentheses.
  void targets(Stmt& s) {
    bool paren = false;
    if (is_op("(")) {
      paren = true;
      next();
    }
    for (;;) {
      s.targets.push_back(expect_name());
      if (!is_op(",")) break;
      s.target_tuple = true;
      next();
      if (cur().type != Tok::Name) break;  // trailing comma
    }
    if (paren) {
      s.target_tuple = true;
      expect_op(")");
    }
  }

  StmtPtr parse_for() {
    auto s = stmt(StmtKind::For, cur());
    next();
    targets(*s);
    for (const auto& n : s->targets)
      if (n == "loop") fail("can't assign to special loop variable in for-loop target");
    if (!is_name("in")) fail("expected 'in'");
    next();
    s->expr = tuple(false, "recursive");
    if (is_name("if")) {
      next();
      s->cond = expression(true);
    }
    if (is_name("recursive")) {
      s->recursive = true;
      next();
    }
    expect_block_end();
    ++loops_;
    s->body = hard_body({"endfor", "else"});
    --loops_;
    if (cur().text == "else") {
      next();
      expect_block_end();
      s->else_body = hard_body({"endfor"});
    }
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_set() {
    auto s = stmt(StmtKind::Set, cur());
    next();
    if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == ".") {
      s->attr_of = expect_name();
      next();
      s->targets.push_back(expect_name());
    } else {
      targets(*s);
    }
    if (is_op("=")) {
      next();
      s->expr = tuple(true);
      expect_block_end();
      return s;
    }
    if (!s->attr_of.empty() || s->target_tuple) fail("expected '='");
    s->block_set = true;
    while (is_op("|")) {
      next();
      s->filters.push_back(filter_call(nullptr));
    }
    expect_block_end();
    s->body = hard_body({"endset"});
    next();
    expect_block_end();
    return s;
  }

  void params(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (is_op(")")) break;
      Param prm;
      prm.name = expect_name();
      if (is_op("=")) {
        next();
        prm.def = expression(true);
      } else {
        for (const auto& q : s.params)
          if (q.def) fail("non-default argument follows default argument");
      }
      s.params.push_back(std::move(prm));
    }
    next();
  }

  StmtPtr parse_macro() {
    auto s = stmt(StmtKind::Macro, cur());
    next();
    s->text = expect_name();
    params(*s);
    expect_block_end();
    const int saved_loops = loops_;
    loops_ = 0;
    s->body = hard_body({"endmacro"});
    loops_ = saved_loops;
    mark_varargs(*s);
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block() {
    auto s = stmt(StmtKind::CallBlock, cur());
    next();
    if (is_op("(")) params(*s);
    s->expr = expression(true);
    if (s->expr->kind != ExprKind::Call) fail("expected a call");
    expect_block_end();
    const int saved_loops = loops_;
    loops_ = 0;
    s->body = hard_body({"endcall"});
    loops_ = saved_loops;
    mark_varargs(*s);
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = stmt(StmtKind::FilterBlock, cur());
    next();
    s->filters.push_back(filter_call(nullptr));
    while (is_op("|")) {
      next();
      s->filters.push_back(filter_call(nullptr));
    }
    expect_block_end();
    s->body = hard_body({"endfilter"});
    next();
    expect_block_end();
    return s;
  }

  // ---- expressions ----

  bool tuple_end(const char* extra) const {
    const Token& t = cur();
    if (t.type == Tok::VarEnd || t.type == Tok::BlockEnd) return true;
    if (t.type == Tok::Op && t.text == ")") return true;
    return extra && t.type == Tok::Name && t.text == extra;
  }

  // Comma-separated expressions: one expression, or a tuple.
  ExprPtr tuple(bool with_condexpr, const char* extra_end = nullptr, bool parens = false) {
    const Token& start = cur();
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    for (;;) {
      if (!args.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      args.push_back(expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!parens) fail("expected an expression");
    }
    auto e = node(ExprKind::Tuple, start);
    e->items = std::move(args);
    return e;
  }

  ExprPtr expression(bool with_condexpr) {
    Depth d(*this);
    return with_condexpr ? condexpr() : or_expr();
  }

  ExprPtr condexpr() {
    ExprPtr e = or_expr();
    while (is_name("if")) {
      const Token& at = cur();
      next();
      ++soft_;
      auto c = node(ExprKind::CondExpr, at);
      c->a = or_expr();
      c->b = std::move(e);
      if (is_name("else")) {
        next();
        c->c = condexpr();
      }
      --soft_;
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const char* op, ExprPtr l, ExprPtr r, const Token& at) {
    auto e = node(ExprKind::Binary, at);
    e->name = op;
    e->a = std::move(l);
    e->b = std::move(r);
    return e;
  }

  ExprPtr or_expr() {
    ExprPtr l = and_expr();
    while (is_name("or")) {
      const Token& at = cur();
      next();
      l = binary("or", std::move(l), and_expr(), at);
    }
    return l;
  }
  ExprPtr and_expr() {
    ExprPtr l = not_expr();
    while (is_name("and")) {
      const Token& at = cur();
      next();
      l = binary("and", std::move(l), not_expr(), at);
    }
    return l;
  }
  ExprPtr not_expr() {
    if (is_name("not")) {
      Depth d(*this);
      auto e = node(ExprKind::Unary, cur());
      next();
      e->name = "not";
      e->a = not_expr();
      return e;
    }
    return compare();
  }
  ExprPtr compare() {
    const Token& at = cur();
    ExprPtr first = math1();
    std::unique_ptr<Expr> cmp;
    for (;;) {
      std::string op;
      if (cur().type == Tok::Op &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
           cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(ExprKind::Compare, at);
        cmp->a = std::move(first);
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr math1() {
    ExprPtr l = concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = cur();
      const char* op = cur().text == "+" ? "+" : "-";
      next();
      l = binary(op, std::move(l), concat(), at);
    }
    return l;
  }
  ExprPtr concat() {
    ExprPtr l = math2();
    while (is_op("~")) {
      const Token& at = cur();
      next();
      l = binary("~", std::move(l), math2(), at);
    }
    return l;
  }
  ExprPtr math2() {
    ExprPtr l = pow_expr();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = cur();
      const std::string op = cur().text;
      next();
      auto e = binary("", std::move(l), pow_expr(), at);
      e->name = op;
      l = std::move(e);
    }
    return l;
  }
  ExprPtr pow_expr() {
    ExprPtr l = unary(true);
    while (is_op("**")) {
      const Token& at = cur();
      next();
      l = binary("**", std::move(l), unary(true), at);
    }
    return l;
  }
  ExprPtr unary(bool with_filter) {
    Depth d(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(ExprKind::Unary, cur());
      e->name = cur().text;
      next();
      e->a = unary(false);
    } else {
      e = primary();
    }
    e = postfix(std::move(e));
    if (with_filter) e = filter_expr(std::move(e));
    return e;
  }

  ExprPtr primary() {
    const Token& t = cur();
    if (t.type == Tok::Name) {
      ExprPtr e = node(ExprKind::Literal, t);
      if (t.text == "true" || t.text == "True") e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") e->value = Value::none();
      else {
        e->kind = ExprKind::Name;
        e->name = t.text;
      }
      next();
      return e;
    }
    if (t.type == Tok::String) {
      ExprPtr e = node(ExprKind::Literal, t);
      std::string s = t.text;
      next();
      while (cur().type == Tok::String) {  // adjacent literals concatenate
        s += cur().text;
        next();
      }
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.type == Tok::Int || t.type == Tok::Float) {
      ExprPtr e = node(ExprKind::Literal, t);
      e->value = t.type == Tok::Int ? Value::integer(t.ival) : Value::number(t.fval);
      next();
      return e;
    }
    if (is_op("(")) {
      next();
      ExprPtr e = tuple(true, nullptr, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ExprPtr e = node(ExprKind::List, t);
      next();
      while (!is_op("]")) {
        if (!e->items.empty()) expect_op(",");
        if (is_op("]")) break;
        e->items.push_back(expression(true));
      }
      next();
      return e;
    }
    if (is_op("{")) {
      ExprPtr e = node(ExprKind::DictLit, t);
      next();
      while (!is_op("}")) {
        if (!e->items.empty()) expect_op(",");
        if (is_op("}")) break;
        e->items.push_back(expression(true));
        expect_op(":");
        e->items.push_back(expression(true));
      }
      next();
      return e;
    }
    fail("unexpected token in expression");
  }

  ExprPtr postfix(ExprPtr e) {
    for (;;) {
      if (is_op(".") || is_op("[")) e = subscript(std::move(e));
      else if (is_op("(")) e = call(std::move(e));
      else return e;
    }
  }

  ExprPtr filter_expr(ExprPtr e) {
    for (;;) {
      if (is_op("|")) {
        next();
        e = filter_call(std::move(e));
      } else if (is_name("is")) {
        e = test(std::move(e));
      } else if (is_op("(")) {
        e = call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // Postfix nodes take the position where their subject starts: errors point at `x` in
  // `x.y.z`, not at a dot.
  Token start_of(const Expr& e) const {
    Token t;
    t.line = e.line;
    t.col = e.col;
    return t;
  }

  ExprPtr subscript(ExprPtr obj) {
    const Token at = start_of(*obj);
    if (is_op(".")) {
      next();
      if (cur().type == Tok::Name) {
        auto e = node(ExprKind::Getattr, at);
        e->name = cur().text;
        e->a = std::move(obj);
        next();
        return e;
      }
      if (cur().type == Tok::Int) {
        auto e = node(ExprKind::Getitem, at);
        e->a = std::move(obj);
        e->b = node(ExprKind::Literal, cur());
        e->b->value = Value::integer(cur().ival);
        next();
        return e;
      }
      fail("expected a name or number after '.'");
    }
    next();  // [
    std::vector<ExprPtr> keys;
    while (!is_op("]")) {
      if (!keys.empty()) expect_op(",");
      if (is_op("]")) break;
      keys.push_back(subscribed());
    }
    expect_op("]");
    if (keys.empty()) fail("expected a subscript");
    ExprPtr key;
    if (keys.size() == 1) {
      key = std::move(keys[0]);
    } else {
      key = node(ExprKind::Tuple, at);
      key->items = std::move(keys);
    }
    if (key->kind == ExprKind::Slice) {
      key->a = std::move(obj);
      return key;
    }
    auto e = node(ExprKind::Getitem, at);
    e->a = std::move(obj);
    e->b = std::move(key);
    return e;
  }

  // One subscript: an expression or a slice start:stop:step (the object goes into `a` later).
  ExprPtr subscribed() {
    const Token& at = cur();
    ExprPtr start;
    if (!is_op(":")) {
      start = expression(true);
      if (!is_op(":")) return start;
    }
    next();  // :
    auto s = node(ExprKind::Slice, at);
    s->b = std::move(start);
    if (!is_op("]") && !is_op(",") && !is_op(":")) s->c = expression(true);
    if (is_op(":")) {
      next();
      if (!is_op("]") && !is_op(",")) s->d = expression(true);
    }
    return s;
  }

  // (args) after a callee, filter or test.
  void call_args(Expr& e) {
    expect_op("(");
    bool comma_needed = false;
    while (!is_op(")")) {
      if (comma_needed) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        std::string key = cur().text;
        next();
        next();
        e.kwargs.emplace_back(std::move(key), expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument after keyword argument");
        e.items.push_back(expression(true));
      }
      comma_needed = true;
    }
    next();
  }

  ExprPtr call(ExprPtr callee) {
    auto e = node(ExprKind::Call, start_of(*callee));
    e->a = std::move(callee);
    call_args(*e);
    return e;
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".") && peek().type == Tok::Name) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  ExprPtr filter_call(ExprPtr subject) {
    const Token& at = cur();
    auto e = node(ExprKind::Filter, at);
    e->name = dotted_name();
    e->a = std::move(subject);
    if (!has_filter(e->name)) {
      if (soft_ == 0) fail_at(at.line, at.col, "no filter named '" + e->name + "'");
      e->deferred = true;
    }
    if (is_op("(")) call_args(*e);
    return e;
  }

  ExprPtr test(ExprPtr subject) {
    const Token& at = cur();
    next();  // is
    auto e = node(ExprKind::Test, at);
    if (is_name("not")) {
      e->negated = true;
      next();
    }
    const Token& name_tok = cur();
    e->name = dotted_name();
    e->a = std::move(subject);
    if (!has_test(e->name)) {
      if (soft_ == 0) fail_at(name_tok.line, name_tok.col, "no test named '" + e->name + "'");
      e->deferred = true;
    }
    if (is_op("(")) {
      call_args(*e);
    } else {
      const Token& t = cur();
      const bool starts_arg =
          t.type == Tok::Name || t.type == Tok::String || t.type == Tok::Int ||
          t.type == Tok::Float || (t.type == Tok::Op && (t.text == "(" || t.text == "[" || t.text == "{"));
      if (starts_arg && !(t.type == Tok::Name &&
                          (t.text == "else" || t.text == "or" || t.text == "and"))) {
        Depth d(*this);
        e->items.push_back(postfix(primary()));
      }
    }
    return e;
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0;
  int soft_ = 0;   // > 0 inside an if statement or conditional expression
  int loops_ = 0;  // enclosing for loops (within the current macro)
};

}  // namespace

std::unique_ptr<Program> parse(std::string_view source) { return Parser(lex(source)).program(); }

}  // namespace tf::jinja
