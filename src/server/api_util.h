// Small pieces shared by the Responses and Messages translators (responses_api.cpp,
// messages_api.cpp): reading request fields with 400s that name the field, and the bits of
// chat-message bookkeeping both need. Internal to those two files.
#pragma once

#include <cmath>
#include <string>

#include "server/api_types.h"
#include "server/openai.h"

namespace tf::server::api {

// A 400 naming `param` (a path such as "input[2].content[0]").
[[noreturn]] inline void bad(const std::string& param, const std::string& message,
                             const std::string& code = "invalid_value") {
  ApiError e;
  e.status = 400;
  e.param = param;
  e.message = message;
  e.code = code;
  throw e;
}

// The field, or nullptr when it is absent or JSON null (both mean "not given").
inline const Json* field(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline std::string path_of(const std::string& base, const char* name) {
  return base.empty() ? name : base + "." + name;
}
inline std::string path_of(const std::string& base, size_t index) {
  return base + "[" + std::to_string(index) + "]";
}

// A string field; "" when absent and not required.
inline std::string string_field(const Json& obj, const char* name, const std::string& base,
                                bool required) {
  const Json* f = field(obj, name);
  const std::string p = path_of(base, name);
  if (!f) {
    if (required) bad(p, "'" + p + "' is required");
    return "";
  }
  if (!f->is_string()) bad(p, "'" + p + "' must be a string");
  return f->get<std::string>();
}

inline const Json& object_at(const Json& arr, size_t i, const std::string& p) {
  if (!arr[i].is_object()) bad(p, "'" + p + "' must be an object");
  return arr[i];
}

// A whole number in 1..2^31-1 (1.0 is fine, 1.5 is not).
inline int64_t positive_integer(const Json& v, const std::string& p) {
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d >= 1 && d <= 2147483647.0 && d == std::floor(d)) return int64_t(d);
  }
  bad(p, "'" + p + "' must be a positive integer");
}

// The rest of `whole` after `prefix`, or "" when `whole` does not extend it (what the final turn
// adds to what was already streamed).
inline std::string tail_after(const std::string& whole, const std::string& prefix) {
  if (whole.size() <= prefix.size() || whole.compare(0, prefix.size(), prefix) != 0) return "";
  return whole.substr(prefix.size());
}

// Chat messages of one role that follow each other become one: many chat templates accept a
// system message only at the start, and both APIs produce several there (Responses:
// `instructions` then developer messages; Messages: `system` then system-role messages).
inline Json merge_consecutive_system(const Json& messages) {
  Json out = Json::array();
  for (const Json& m : messages) {
    if (m["role"] == "system" && !out.empty() && out.back()["role"] == "system") {
      out.back()["content"] =
          out.back()["content"].get<std::string>() + "\n\n" + m["content"].get<std::string>();
    } else {
      out.push_back(m);
    }
  }
  return out;
}

inline Json chat_tool_call(const std::string& id, const std::string& name,
                           const std::string& arguments) {
  return {
      {"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", arguments}}}};
}

}  // namespace tf::server::api
