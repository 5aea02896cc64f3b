// Helpers shared by all test executables: locating ../shared and skipping cleanly without it.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tf::test {

// The read-only test data folder (models, golden outputs), or "" when it is absent.
inline std::string shared_dir() {
  if (const char* env = std::getenv("TOKENFAB_SHARED"); env && *env) return env;
  std::error_code ec;
  if (std::filesystem::is_directory(TF_SHARED_DEFAULT, ec)) return TF_SHARED_DEFAULT;
  return "";
}

inline std::string shared_path(const std::string& rel) { return shared_dir() + "/" + rel; }

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace tf::test

// Skips the current test, with the reason, when ../shared (or the named file in it) is missing.
#define TF_REQUIRE_SHARED(rel)                                                          \
  do {                                                                                  \
    if (tf::test::shared_dir().empty())                                                 \
      GTEST_SKIP() << "../shared not found (set TOKENFAB_SHARED): skipping real-data test"; \
    if (!std::filesystem::exists(tf::test::shared_path(rel)))                          \
      GTEST_SKIP() << "missing test file " << tf::test::shared_path(rel);               \
  } while (0)
