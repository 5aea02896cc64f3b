#include "tensor/dtype.h"

#include <array>
#include <cctype>
#include <limits>
#include <string>

#include "util/error.h"

namespace tf {
namespace {

constexpr uint32_t kMaxId = 35;

struct Table {
  std::array<DTypeInfo, kMaxId + 1> info{};
  std::array<bool, kMaxId + 1> known{};

  constexpr void add(DType t, const char* name, uint32_t bs, uint32_t ts, bool supported,
                     DType dot) {
    const auto id = static_cast<uint32_t>(t);
    info[id] = DTypeInfo{t, name, bs, ts, supported, dot};
    known[id] = true;
  }
};

// Block sizes and bytes per block are those of ggml (and therefore of GGUF files).
// "supported" means dequantize_row and vec_dot accept the type.
constexpr Table make_table() {
  Table t;
  using D = DType;
  t.add(D::F32, "f32", 1, 4, true, D::F32);
  t.add(D::F16, "f16", 1, 2, true, D::F16);
  t.add(D::Q4_0, "q4_0", 32, 18, true, D::Q8_0);
  t.add(D::Q4_1, "q4_1", 32, 20, true, D::Q8_1);
  t.add(D::Q5_0, "q5_0", 32, 22, true, D::Q8_0);
  t.add(D::Q5_1, "q5_1", 32, 24, true, D::Q8_1);
  t.add(D::Q8_0, "q8_0", 32, 34, true, D::Q8_0);
  // Q8_1 and Q8_K are activation formats; a dot with themselves is provided for completeness.
  t.add(D::Q8_1, "q8_1", 32, 36, true, D::Q8_1);
  t.add(D::Q2_K, "q2_K", 256, 84, true, D::Q8_K);
  t.add(D::Q3_K, "q3_K", 256, 110, true, D::Q8_K);
  t.add(D::Q4_K, "q4_K", 256, 144, true, D::Q8_K);
  t.add(D::Q5_K, "q5_K", 256, 176, true, D::Q8_K);
  t.add(D::Q6_K, "q6_K", 256, 210, true, D::Q8_K);
  t.add(D::Q8_K, "q8_K", 256, 292, true, D::Q8_K);
  t.add(D::IQ2_XXS, "iq2_xxs", 256, 66, false, D::Q8_K);
  t.add(D::IQ2_XS, "iq2_xs", 256, 74, false, D::Q8_K);
  t.add(D::IQ3_XXS, "iq3_xxs", 256, 98, false, D::Q8_K);
  t.add(D::IQ1_S, "iq1_s", 256, 50, false, D::Q8_K);
  t.add(D::IQ4_NL, "iq4_nl", 32, 18, false, D::Q8_0);
  t.add(D::IQ3_S, "iq3_s", 256, 110, false, D::Q8_K);
  t.add(D::IQ2_S, "iq2_s", 256, 82, false, D::Q8_K);
  t.add(D::IQ4_XS, "iq4_xs", 256, 136, false, D::Q8_K);
  t.add(D::I8, "i8", 1, 1, false, D::I8);
  t.add(D::I16, "i16", 1, 2, false, D::I16);
  t.add(D::I32, "i32", 1, 4, false, D::I32);
  t.add(D::I64, "i64", 1, 8, false, D::I64);
  t.add(D::F64, "f64", 1, 8, false, D::F64);
  t.add(D::IQ1_M, "iq1_m", 256, 56, false, D::Q8_K);
  t.add(D::BF16, "bf16", 1, 2, true, D::BF16);
  t.add(D::TQ1_0, "tq1_0", 256, 54, false, D::Q8_K);
  t.add(D::TQ2_0, "tq2_0", 256, 66, false, D::Q8_K);
  return t;
}

constexpr Table kTable = make_table();

bool iequals(const char* a, const char* b) {
  for (; *a && *b; ++a, ++b) {
    if (std::tolower(static_cast<unsigned char>(*a)) !=
        std::tolower(static_cast<unsigned char>(*b)))
      return false;
  }
  return *a == *b;
}

}  // namespace

const DTypeInfo* dtype_info(uint32_t raw_type_id) {
  if (raw_type_id > kMaxId || !kTable.known[raw_type_id]) return nullptr;
  return &kTable.info[raw_type_id];
}

const DTypeInfo& dtype_info(DType t) {
  const DTypeInfo* info = dtype_info(static_cast<uint32_t>(t));
  if (!info) throw Error("invalid tensor type id " + std::to_string(static_cast<uint32_t>(t)));
  return *info;
}

std::optional<DType> dtype_from_name(const char* name) {
  if (!name) return std::nullopt;
  for (uint32_t id = 0; id <= kMaxId; ++id) {
    if (kTable.known[id] && iequals(name, kTable.info[id].name)) return kTable.info[id].type;
  }
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  return static_cast<size_t>(n) / info.block_size * info.type_size;
}

std::optional<size_t> row_bytes_checked(DType t, int64_t n) {
  const DTypeInfo* info = dtype_info(static_cast<uint32_t>(t));
  if (!info || n < 0 || n % info->block_size != 0) return std::nullopt;
  const auto blocks = static_cast<uint64_t>(n) / info->block_size;
  if (blocks > std::numeric_limits<size_t>::max() / info->type_size) return std::nullopt;
  return static_cast<size_t>(blocks * info->type_size);
}

}  // namespace tf
