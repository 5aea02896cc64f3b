// Running the tokenfab binary from a test: its exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "test_util.h"

namespace tf::test {

struct Result {
  int code;
  std::string out, err;
};

inline std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("tokenfab_cli_" + std::to_string(getpid()) + "_" + name))
      .string();
}

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// Runs `tokenfab ARGS...`, with `input` (when given) as its stdin.
inline Result run(const std::vector<std::string>& args,
                  const std::optional<std::string>& input = std::nullopt) {
  std::string cmd = TF_CLI_PATH;
  for (const auto& a : args)
    cmd.append(" ").append(quote(a));  // (GCC 12 warns falsely on " " + ...)
  const std::string err_file = tmp_path("stderr"), in_file = tmp_path("stdin");
  cmd += " 2>" + err_file;
  if (input) {
    write_file(in_file, *input);
    cmd += " <" + in_file;
  }
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = read_file(err_file);
  std::filesystem::remove(err_file);
  if (input) std::filesystem::remove(in_file);
  return r;
}

// Exit code 1 and exactly one line on stderr that mentions `needle`.
inline void expect_clean_error(const Result& r, const std::string& needle) {
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
}

}  // namespace tf::test
