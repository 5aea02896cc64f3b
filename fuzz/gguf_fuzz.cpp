// libFuzzer target for the GGUF reader. Any input must either parse or throw tf::Error; a
// parsed file must be fully usable (every value printable, every tensor's bytes readable) and
// must survive a rewrite with our Writer unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "format/gguf.h"

using tf::gguf::File;
using tf::gguf::Value;

namespace {

// Invariant violations are bugs in the reader, so abort and let libFuzzer save the input.
#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

template <typename F>
void ignore_tf_errors(F&& f) {
  try {
    f();
  } catch (const tf::Error&) {
  }
}

// Touches every element and nested array (ASan flags any dangling or uninitialized access).
size_t walk(const Value& v) {
  size_t n = 1 + v.str.size();
  ignore_tf_errors([&] { n += size_t(v.as_f64() != 0); });
  ignore_tf_errors([&] { n += size_t(v.as_i64()); });
  ignore_tf_errors([&] { n += size_t(v.as_u64()); });
  for (const Value& item : v.items) {
    FUZZ_CHECK(item.type == v.elem_type);
    n += walk(item);
  }
  return n;
}

void exercise(const File& f, const uint8_t* data, size_t size) {
  FUZZ_CHECK(f.version() == 2 || f.version() == 3);
  FUZZ_CHECK(f.alignment() != 0 && (f.alignment() & (f.alignment() - 1)) == 0);
  volatile size_t sink = 0;
  for (const auto& kv : f.metadata()) {
    // Named references, not a structured binding: clang 14 cannot capture those in lambdas.
    const std::string& key = kv.first;
    const Value& value = kv.second;
    FUZZ_CHECK(f.find(key) == &value);
    sink = sink + value.to_string().size() + walk(value);
    ignore_tf_errors([&] { sink = sink + f.get_string(key).size(); });
    ignore_tf_errors([&] { sink = sink + size_t(f.get_int_or(key, 0)); });
    ignore_tf_errors([&] { sink = sink + size_t(f.get_float_or(key, 0) != 0); });
    ignore_tf_errors([&] { sink = sink + f.get_bool_or(key, false); });
    ignore_tf_errors([&] { sink = sink + f.get_string_array(key).size(); });
    ignore_tf_errors([&] { sink = sink + f.get_float_array(key).size(); });
    ignore_tf_errors([&] { sink = sink + f.get_int_array(key).size(); });
  }
  for (const auto& t : f.tensors()) {
    FUZZ_CHECK(f.find_tensor(t.name) == &t);
    FUZZ_CHECK(!t.dims.empty() && t.dims.size() <= 4 && t.n_elements() > 0);
    FUZZ_CHECK(t.offset % f.alignment() == 0 && t.nbytes > 0);
    FUZZ_CHECK(t.data >= data + f.data_offset() && t.data + t.nbytes <= data + size);
    sink = sink + t.data[0] + t.data[t.nbytes - 1];
  }
}

// Rewrites a parsed file and checks that the copy parses to the same content.
void round_trip(const File& f) {
  tf::gguf::Writer w;
  for (const auto& [key, value] : f.metadata()) w.set(key, value);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.dims, t.data, t.nbytes);
  std::vector<uint8_t> bytes = w.to_bytes();
  auto g = File::from_memory(bytes.data(), bytes.size(), "rewritten.gguf");
  FUZZ_CHECK(g->metadata().size() == f.metadata().size());
  for (size_t k = 0; k < f.metadata().size(); ++k) {
    FUZZ_CHECK(g->metadata()[k].first == f.metadata()[k].first);
    FUZZ_CHECK(g->metadata()[k].second.to_string(SIZE_MAX) ==
               f.metadata()[k].second.to_string(SIZE_MAX));
  }
  FUZZ_CHECK(g->tensors().size() == f.tensors().size());
  for (size_t k = 0; k < f.tensors().size(); ++k) {
    const auto &a = f.tensors()[k], &b = g->tensors()[k];
    FUZZ_CHECK(a.name == b.name && a.dims == b.dims && a.type == b.type && a.nbytes == b.nbytes);
    FUZZ_CHECK(std::memcmp(a.data, b.data, a.nbytes) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<File> f;
  try {
    f = File::from_memory(data, size, "fuzz.gguf");
  } catch (const tf::Error&) {
    return 0;  // rejecting bad input is the expected outcome
  }
  exercise(*f, data, size);
  round_trip(*f);  // a tf::Error escaping here is a bug: libFuzzer reports it as a crash
  return 0;
}
