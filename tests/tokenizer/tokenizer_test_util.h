// Shared helpers for the tokenizer tests: cached tokenizers for the shared vocab files and
// readable id lists.
#pragma once

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace tf::test {

// Loads shared/<rel> once per process (the big vocabularies take a while to index).
inline const Tokenizer& shared_tokenizer(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto it = cache.find(rel);
  if (it == cache.end()) {
    auto file = gguf::File::open(shared_path(rel));
    it = cache.emplace(rel, Tokenizer::from_gguf(*file)).first;
  }
  return *it->second;
}

inline std::string ids_str(const std::vector<TokenId>& ids) {
  std::ostringstream os;
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? " " : "") << ids[i];
  return os.str();
}

inline std::string escaped(const std::string& s, size_t max = 80) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace tf::test
