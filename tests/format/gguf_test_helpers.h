// Helpers for GGUF tests: a raw byte builder for hand-made (often deliberately corrupt) files
// and a parse wrapper that returns the error message instead of throwing.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "format/gguf.h"

namespace tf::gguf::test {

// Appends little-endian fields; used to spell out files the Writer would refuse to produce.
struct Bytes {
  std::vector<uint8_t> b;

  template <typename T>
  Bytes& put(T v) {
    uint8_t tmp[sizeof v];
    std::memcpy(tmp, &v, sizeof v);
    b.insert(b.end(), tmp, tmp + sizeof v);
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& raw(std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& type(ValueType t) { return u32(uint32_t(t)); }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  // A key with a uint32 value.
  Bytes& kv_u32(std::string_view key, uint32_t v) {
    return str(key).type(ValueType::UINT32).u32(v);
  }
  Bytes& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).u32(uint32_t(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Bytes& pad_to(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

// The tf::Error message from parsing `bytes`, or "" if it parsed. Any other exception fails
// the test: malformed input must be reported as tf::Error, nothing else.
inline std::string parse_error(const std::vector<uint8_t>& bytes, const char* name = "bad.gguf") {
  try {
    File::from_memory(bytes.data(), bytes.size(), name);
    return "";
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-tf::Error exception: " << e.what();
    return "<wrong exception>";
  }
}

inline ::testing::AssertionResult contains_all(const std::string& msg,
                                               std::initializer_list<std::string_view> parts) {
  if (msg.empty()) return ::testing::AssertionFailure() << "parsed without error";
  for (std::string_view p : parts)
    if (msg.find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message \"" << msg << "\" lacks \"" << p << "\"";
  return ::testing::AssertionSuccess();
}

}  // namespace tf::gguf::test

// Expects `bytes` to fail parsing with a message containing every given substring.
#define EXPECT_GGUF_ERROR(bytes, ...) \
  EXPECT_TRUE(::tf::gguf::test::contains_all(::tf::gguf::test::parse_error(bytes), {__VA_ARGS__}))
