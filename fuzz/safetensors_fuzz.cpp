// libFuzzer target for the safetensors reader (format/safetensors.h): the file parser on the
// whole input, and the same bytes as a sharded model's index JSON. Any input must parse or
// throw tf::Error; a parsed file's tensors must lie inside the input, be readable end to end,
// and not overlap.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "format/safetensors.h"

namespace {

#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

void exercise(const tf::safetensors::File& f, const uint8_t* data, size_t size) {
  volatile unsigned sink = 0;
  std::vector<std::pair<const uint8_t*, size_t>> spans;
  for (const auto& t : f.tensors()) {
    FUZZ_CHECK(f.find(t.name) == &t);
    FUZZ_CHECK(t.end - t.begin == t.nbytes);
    FUZZ_CHECK(t.data >= data + 8 && t.data + t.nbytes <= data + size);
    int64_t n = 1;
    for (int64_t d : t.shape) {
      FUZZ_CHECK(d >= 0);
      n *= d;
    }
    FUZZ_CHECK(t.n_elements() == n);
    if (t.nbytes > 0) {
      sink = sink + t.data[0] + t.data[t.nbytes - 1];
      spans.emplace_back(t.data, t.nbytes);
    }
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    FUZZ_CHECK(spans[i - 1].first + spans[i - 1].second <= spans[i].first);
  for (const auto& [k, v] : f.metadata()) sink = sink + unsigned(k.size() + v.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = tf::safetensors::File::from_memory(data, size, "fuzz.safetensors");
    exercise(*f, data, size);
  } catch (const tf::Error&) {
  }
  try {
    const auto map = tf::safetensors::ShardSet::parse_index(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.index.json");
    for (const auto& [tensor, shard] : map) {
      FUZZ_CHECK(!shard.empty() && shard != "." && shard != "..");
      FUZZ_CHECK(shard.find('/') == std::string::npos && shard.find('\\') == std::string::npos);
    }
  } catch (const tf::Error&) {
  }
  return 0;
}
