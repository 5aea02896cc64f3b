// A Jinja2 interpreter for chat templates, written for the language as Hugging Face
// transformers runs it in apply_chat_template: a sandboxed environment with trim_blocks and
// lstrip_blocks on, loop controls (break/continue) on, autoescaping off, and its own tojson
// (json.dumps with ensure_ascii=False). Values behave as Python's do wherever a template can
// see it: undefined vs none, truthiness, int vs float printing, dict order, repr of lists.
//
// Templates are untrusted: parsing and rendering never crash or hang. Every error is a
// tf::Error whose message starts with "template line L, column C: ". Limits bound the work a
// template can do (loop iterations, call depth, output size).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tf::jinja {

// JSON with object keys in insertion order, as Python's dicts keep them (tool schemas printed
// by tojson must come out in the order they were given).
using Json = nlohmann::ordered_json;

struct Limits {
  int64_t max_output_bytes = int64_t(64) << 20;  // the rendered text and any one string value
  int64_t max_steps = 20'000'000;                // loop iterations + calls + output writes
  int max_depth = 256;                           // nesting of macro calls / recursion
};

struct Program;  // the parsed template (jinja_ast.h)

class Template {
 public:
  // Parses the template. Throws tf::Error for a syntax error (with line and column) or a
  // template nested deeper than the parser allows.
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the given variables (a JSON object: names -> values). Besides these, the
  // globals range, dict, namespace, raise_exception, strftime_now, cycler and joiner exist.
  // Throws tf::Error on a runtime error (raise_exception, undefined attribute of undefined,
  // type errors as Python raises them) or when a limit is hit.
  std::string render(const Json& vars, const Limits& limits = {}) const;

  // True if the template takes the named attribute/item of something apart as a list: a
  // for loop over it (`for part in message['content']`) or a list filter on it
  // (`message.content | selectattr(...)`). The chat layer uses it to decide whether a
  // template takes OpenAI content parts or plain strings (as vLLM detects it).
  bool inspects_field(std::string_view name) const;

 private:
  std::unique_ptr<Program> prog_;
};

}  // namespace tf::jinja
