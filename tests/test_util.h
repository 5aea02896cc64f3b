// Helpers shared by all test executables: locating ../shared and skipping cleanly without it.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

// The models with greedy goldens in ../shared/golden/greedy (file stems).
inline std::vector<std::string> golden_models() {
  return {"stories260K", "TinyStories-656K.f16", "tinystories-656k-q8_0",
          "TinyStories-656K.fixed-scores.f16", "TinyStories-656K.fixed-scores.q8_0"};
}

// A gtest parameter name from a file stem: anything but letters and digits becomes '_'.
struct StemName {
  template <class Info>
  std::string operator()(const Info& info) const {
    std::string s = info.param;
    for (char& ch : s)
      if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return s;
  }
};

}  // namespace tf::test

// Skips the current test, with the reason, when ../shared (or the named file in it) is missing.
#define TF_REQUIRE_SHARED(rel)                                                          \
  do {                                                                                  \
    if (tf::test::shared_dir().empty())                                                 \
      GTEST_SKIP() << "../shared not found (set TOKENFAB_SHARED): skipping real-data test"; \
    if (!std::filesystem::exists(tf::test::shared_path(rel)))                          \
      GTEST_SKIP() << "missing test file " << tf::test::shared_path(rel);               \
  } while (0)
