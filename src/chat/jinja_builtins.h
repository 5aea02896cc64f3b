// Jinja's filters, tests, globals, and the Python methods of str, dict and list that
// templates call (`s.strip()`, `d.get(k)`), as the Hugging Face environment has them.
#pragma once

#include <string>
#include <string_view>

#include "chat/jinja_value.h"

namespace tf::jinja {

class Interp;

bool has_filter(std::string_view name);
bool has_test(std::string_view name);

Value call_filter(Interp& in, const std::string& name, const Value& subject, Args& args);
bool call_test(Interp& in, const std::string& name, const Value& subject, Args& args);

// A method of a str / dict / list value bound to it, or undefined when there is none.
Value bound_method(const Value& obj, const std::string& name);

// range, dict, namespace, raise_exception, strftime_now, cycler, joiner.
void add_globals(Dict& globals);

// range(start, stop, step) as a value; a slice [lo:hi:step] of one (items already taken).
Value make_range(int64_t start, int64_t stop, int64_t step, ValueList items);
Value slice_range(const Value& range, int64_t lo, int64_t hi, int64_t step, ValueList items);

// Python's `%` string formatting (printf style) with a value or a tuple of values.
std::string percent_format(const std::string& fmt, const Value& args);

}  // namespace tf::jinja
