// Helpers shared by the GGUF reader, writer and value code; not part of the public interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "format/gguf.h"

namespace tf::gguf::detail {

inline constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
inline constexpr uint32_t kWriteVersion = 3;
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr const char* kAlignmentKey = "general.alignment";

// ggml tensors have at most 4 dimensions; anything larger is corruption, not a future feature.
inline constexpr uint32_t kMaxDims = 4;
// Arrays of arrays are legal, but real files never nest more than a couple of levels; the
// limit keeps recursion bounded on hostile input.
inline constexpr int kMaxArrayDepth = 8;
// Every parsed array element becomes a ~72-byte Value, so a file full of one-byte elements
// would cost ~70x its size in memory. Real vocabularies have well under 2M entries per array;
// capping the total keeps a hostile file from costing more than about a gigabyte.
inline constexpr uint64_t kMaxMetadataElements = uint64_t{1} << 24;

inline bool is_valid_value_type(uint32_t t) {
  return t <= uint32_t(ValueType::FLOAT64);
}

// Smallest number of bytes one value of this type can occupy in a file. Used to reject counts
// that cannot possibly fit in the remaining bytes before reserving memory for them.
inline uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
    case ValueType::STRING:  // the u64 length
      return 8;
    case ValueType::ARRAY:  // u32 element type + u64 count
      return 12;
  }
  return 1;
}

// Renders untrusted bytes (keys, tensor names) for an error message: printable, one line,
// bounded length, so a corrupt file cannot produce a multi-megabyte or terminal-mangling error.
std::string printable(std::string_view s, size_t max_len = 96);

}  // namespace tf::gguf::detail
