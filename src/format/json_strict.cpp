#include "format/json_strict.h"

#include <set>
#include <vector>

#include "util/error.h"

namespace tf::json_strict {

nlohmann::json parse(std::string_view text, const std::string& what) {
  using nlohmann::json;
  // The parser reports each object's start, its keys and its end in order, so a stack of key
  // sets (one per open object) sees every duplicate.
  std::vector<std::set<std::string>> open;
  std::string duplicate;
  auto cb = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.empty() && parsed.is_string() &&
            !open.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    throw Error(what + ": not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) throw Error(what + ": duplicate key '" + duplicate + "'");
  return j;
}

}  // namespace tf::json_strict
