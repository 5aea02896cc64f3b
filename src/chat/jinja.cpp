#include "chat/jinja.h"

#include "chat/jinja_ast.h"
#include "chat/jinja_interp.h"
#include "util/error.h"

namespace tf::jinja {

namespace {
// Only tf::Error leaves the interpreter: anything else a hostile template could provoke in
// library code (a number out of range, memory) becomes one.
template <class F>
auto guarded(F&& f) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Error("template: out of memory");
  } catch (const std::exception& e) {
    throw Error(std::string("template: ") + e.what());
  }
}
}  // namespace

Template::Template(std::string_view source) : prog_(guarded([&] { return parse(source); })) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Json& vars, const Limits& limits) const {
  return guarded([&] {
    Interp in(limits);
    return in.render(*prog_, vars);
  });
}

namespace {
// Does the expression name the field: `x.name`, `x['name']` or the variable `name`?
bool names_field(const Expr& e, std::string_view name) {
  bool found = false;
  std::function<void(const Expr&)> walk = [&](const Expr& x) {
    if (found) return;
    if ((x.kind == ExprKind::Getattr || x.kind == ExprKind::Name) && x.name == name) found = true;
    if (x.kind == ExprKind::Getitem && x.b && x.b->kind == ExprKind::Literal && x.b->value.is_string() &&
        x.b->value.str() == name)
      found = true;
    for (const ExprPtr* sub : {&x.a, &x.b})
      if (*sub && (*sub)->kind != ExprKind::Call) walk(**sub);
  };
  walk(e);
  return found;
}

// Does the template take the field apart as a list: iterate over it (`for p in m.content`)
// or run a list filter on it (`m.content | selectattr(...)`)? A mere `is string` test does not
// count: many templates check that and then drop anything else.
bool inspects(const Body& body, std::string_view name) {
  for (const auto& s : body) {
    if (s->kind == StmtKind::For && s->expr && names_field(*s->expr, name)) return true;
    for (const auto& b : s->bodies)
      if (inspects(b, name)) return true;
    if (inspects(s->body, name) || inspects(s->else_body, name)) return true;
  }
  bool found = false;
  visit_exprs(body, [&](const Expr& e) {
    if (found || e.kind != ExprKind::Filter || !e.a) return;
    static const char* const kListFilters[] = {"selectattr", "rejectattr", "select", "reject", "map",
                                               "first", "last", "batch", "join"};
    for (const char* f : kListFilters)
      if (e.name == f && names_field(*e.a, name)) found = true;
  });
  return found;
}
}  // namespace

bool Template::inspects_field(std::string_view name) const { return inspects(prog_->body, name); }

}  // namespace tf::jinja
