// The parsed form of a template: expression and statement nodes, as Jinja2's parser builds
// them (same precedence, same statement forms).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja.h"
#include "chat/jinja_value.h"

namespace tf::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind : uint8_t {
  Literal,    // value
  Name,       // name
  List,       // items
  Tuple,      // items
  DictLit,    // items as key, value pairs (items[2i], items[2i+1])
  Getattr,    // a.name
  Getitem,    // a[b]
  Slice,      // a[b:c:d] (b, c, d may be null)
  Call,       // a(args, kwargs)
  Filter,     // a | name(args, kwargs); a is null in a filter block
  Test,       // a is [not] name(args)
  Unary,      // op a: "-", "+", "not"
  Binary,     // a op b: + - * / // % ** ~ and or
  Compare,    // a (ops[i] items[i])...
  CondExpr,   // b if a else c
};

struct Expr {
  ExprKind kind;
  int line = 0, col = 0;
  std::string name;  // Name / Getattr / Filter / Test / operator of Unary and Binary
  Value value;       // Literal
  ExprPtr a, b, c, d;
  std::vector<ExprPtr> items;                              // List/Tuple/Dict/Compare operands/Call args
  std::vector<std::pair<std::string, ExprPtr>> kwargs;     // Call / Filter / Test keywords
  std::vector<std::string> ops;                            // Compare operators
  bool negated = false;                                    // Test: `is not`
  bool deferred = false;  // Filter/Test name unknown at parse time: an error only if evaluated
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind : uint8_t {
  Text,       // text
  Output,     // {{ expr }}
  If,         // conds[i] -> bodies[i]; else_body
  For,        // targets in expr [if cond]: body, else_body
  Set,        // target = expr, or the block form (body, with filters in expr)
  Macro,      // name(params = defaults): body
  CallBlock,  // {% call(params) expr %} body
  FilterBlock,
  Break,
  Continue,
  Scope,      // a body rendered in place ({% generation %} and the like)
  With,       // {% with targets[i] = conds[i]... %} body
};

struct Param {
  std::string name;
  ExprPtr def;  // null: required
};

struct Stmt {
  StmtKind kind;
  int line = 0, col = 0;
  std::string text;                  // Text; Macro name
  ExprPtr expr, cond;                // Output/Set value/For iterable/CallBlock call, For filter
  std::vector<std::string> targets;  // For / Set targets; Set to "ns.attr" has attr_of = "ns"
  std::string attr_of;
  bool target_tuple = false;         // `for a, b in` / `set a, b =`
  bool block_set = false;
  bool recursive = false;           // For: `recursive` (the body may call loop(items))
  std::vector<ExprPtr> conds;        // If
  std::vector<Body> bodies;          // If branches
  Body body, else_body;
  std::vector<Param> params;         // Macro / CallBlock
  bool uses_varargs = false, uses_kwargs = false;  // Macro / CallBlock body reads them
  std::vector<ExprPtr> filters;      // FilterBlock / block Set: Filter nodes with a == null
};

struct Program {
  Body body;
};

// Calls fn on every expression node under body (statements' expressions and their
// subexpressions, nested bodies included).
void visit_exprs(const Body& body, const std::function<void(const Expr&)>& fn);

// Parses a whole template. Throws tf::Error with line and column.
std::unique_ptr<Program> parse(std::string_view source);

}  // namespace tf::jinja
