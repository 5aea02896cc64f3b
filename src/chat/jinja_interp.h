// The tree-walking interpreter behind Template::render: scopes as Jinja2 has them (a for loop
// iteration, a macro call and a block set each get their own; if does not), limits on work
// and output, and errors that name the template position.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "chat/jinja_ast.h"

namespace tf::jinja {

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;

  const Value* lookup(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

class Interp {
 public:
  explicit Interp(const Limits& limits) : limits_(limits) {}

  std::string render(const Program& prog, const Json& vars);

  Value eval(const Expr& e, const ScopePtr& scope);
  // Calls a callable value (macro, builtin function, bound method).
  Value call(const Value& fn, Args& args);
  // Applies a filter / test by name (used by map, select, selectattr...).
  Value filter(const std::string& name, const Value& subject, Args& args);
  bool test(const std::string& name, const Value& subject, Args& args);

  // Counts one unit of work; throws when the template has done too much.
  void step(int64_t n = 1);
  // Throws when a string of this size would pass the output limit.
  void check_size(size_t bytes) const;
  const Limits& limits() const { return limits_; }

 private:
  enum class Flow { Normal, Break, Continue };
  Flow exec(const Body& body, const ScopePtr& scope, std::string& out);
  Flow exec_stmt(const Stmt& s, const ScopePtr& scope, std::string& out);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
  void exec_loop(const Stmt& s, const ScopePtr& scope, const Value& seq, int depth0,
                 std::string& out);
  void exec_set(const Stmt& s, const ScopePtr& scope, std::string& out);
  Value make_macro(const Stmt& s, const ScopePtr& scope, const Stmt* caller_of = nullptr);
  Value binary(const Expr& e, const ScopePtr& scope);
  Value compare(const Expr& e, const ScopePtr& scope);
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  Value slice(const Expr& e, const ScopePtr& scope);
  void eval_args(const Expr& e, const ScopePtr& scope, Args& args);
  void at(int line, int col) {
    line_ = line;
    col_ = col;
  }

  const Limits& limits_;
  int64_t steps_ = 0;
  int depth_ = 0;
  int line_ = 1, col_ = 1;
  friend struct DepthGuard;
};

}  // namespace tf::jinja
