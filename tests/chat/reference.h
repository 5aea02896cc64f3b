// Helpers of the chat tests: running the jinja2 reference (reference_render.py under Debian's
// /usr/bin/python3) on a batch of jobs, and printing where two renders differ.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "chat/jinja.h"
#include "test_util.h"

namespace tf::chat::test {

// Ordered, as the interpreter's variables are (Python dicts keep insertion order); the jobs
// file hands jinja2 the same order.
using json = tf::jinja::Json;

// The interpreter the reference must run under: Debian's, with python3-jinja2 (3.1.2). The
// pyenv python3 on PATH has no jinja2, or another version.
inline constexpr const char* kPython = "/usr/bin/python3";

inline std::string tests_dir() {
  return TF_TESTS_DIR;
}
inline std::string chat_dir() {
  return tests_dir() + "/chat";
}

// True when kPython exists and imports jinja2 (checked once).
inline bool reference_available() {
  static const bool ok = [] {
    const std::string cmd = std::string(kPython) + " -c 'import jinja2' >/dev/null 2>&1";
    return std::filesystem::exists(kPython) && std::system(cmd.c_str()) == 0;
  }();
  return ok;
}

inline constexpr const char* kNoReference =
    "/usr/bin/python3 cannot import jinja2 (apt-get install python3-jinja2): skipping the "
    "comparison with the reference renderer";

// One reference result: the rendered text, or jinja2's "ExceptionType: message".
struct RefResult {
  bool ok = false;
  std::string text;  // rendered text when ok, else the error
};

// Renders jobs ([{"template": SRC, "vars": {...}}, ...]) with reference_render.py in one run.
// Returns "" and fills `out` (one result per job), or returns what went wrong.
inline std::string run_reference(const json& jobs, std::vector<RefResult>& out) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("tokenfab_chat_jobs_" + std::to_string(getpid()) + ".json"))
                               .string();
  {
    std::ofstream f(path, std::ios::binary);
    const std::string text = jobs.dump();
    f.write(text.data(), std::streamsize(text.size()));
    if (!f) return "cannot write " + path;
  }
  const std::string cmd =
      std::string(kPython) + " '" + chat_dir() + "/reference_render.py' '" + path + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "cannot start " + cmd;
  std::string text;
  std::array<char, 65536> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) text.append(buf.data(), n);
  const int status = pclose(p);
  std::filesystem::remove(path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return cmd + " failed (status " + std::to_string(status) + ")";
  json results;
  try {
    results = json::parse(text);
  } catch (const std::exception& e) {
    return std::string("reference output is not JSON: ") + e.what();
  }
  if (!results.is_array() || results.size() != jobs.size())
    return "reference returned " + std::to_string(results.size()) + " results for " +
           std::to_string(jobs.size()) + " jobs";
  out.clear();
  for (const json& r : results) {
    RefResult rr;
    rr.ok = r.contains("ok");
    rr.text = rr.ok ? r["ok"].get<std::string>() : r.value("error", std::string("?"));
    out.push_back(std::move(rr));
  }
  return "";
}

// The length of the valid UTF-8 sequence at s[i], or 0 if none starts there.
inline size_t utf8_length(std::string_view s, size_t i) {
  const unsigned char c = s[i];
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  return n;
}

// Bytes made readable on one line: \n \r \t \\, control bytes and bytes that are not valid
// UTF-8 escaped; valid UTF-8 text as is.
inline std::string escaped(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const size_t n = utf8_length(s, i);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (n == 0 || c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  return out;
}

// Where `want` and `got` first differ, with some bytes of context on both sides (the split
// shown at the start of the character that differs).
inline std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const std::string& longer = i < want.size() ? want : got;  // (same bytes before i)
  size_t at = i;  // back to the first byte of the character
  while (at > 0 && at < longer.size() && (static_cast<unsigned char>(longer[at]) & 0xC0) == 0x80)
    --at;
  size_t from = at > 40 ? at - 40 : 0;
  while (from > 0 && (static_cast<unsigned char>(longer[from]) & 0xC0) == 0x80) --from;
  auto tail = [](const std::string& s, size_t at) {
    if (at >= s.size()) return std::string("(end)");
    size_t end = std::min(s.size(), at + 60);
    while (end < s.size() && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) ++end;
    return escaped(std::string_view(s).substr(at, end - at));
  };
  std::ostringstream os;
  os << "first difference at byte " << i << " (lengths: jinja2 " << want.size() << ", ours "
     << got.size() << ")\n"
     << "      jinja2: ..." << escaped(want.substr(from, at - from)) << " >>>" << tail(want, at)
     << "\n"
     << "      ours:   ..." << escaped(got.substr(from, at - from)) << " >>>" << tail(got, at);
  return os.str();
}

// The contract of jinja.h: every error message starts "template line L, column C: ".
inline bool has_position_prefix(const std::string& msg) {
  int line = 0, col = 0, used = 0;
  return std::sscanf(msg.c_str(), "template line %d, column %d: %n", &line, &col, &used) == 2 &&
         used > 0;
}

}  // namespace tf::chat::test
