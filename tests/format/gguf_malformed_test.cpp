// Corrupt and hostile GGUF input: every case must be a tf::Error naming what is wrong, never a
// crash, hang or huge allocation (these tests run under ASan, which aborts on absurd sizes).
#include <gtest/gtest.h>

#include <cstring>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "format/gguf.h"
#include "gguf_test_helpers.h"

namespace tf::gguf {
namespace {

using test::Bytes;
using test::parse_error;

constexpr uint32_t kF32 = 0, kQ8_0 = 8;
constexpr uint64_t kHuge63 = uint64_t(1) << 63, kHuge40 = uint64_t(1) << 40;

// A small but complete file exercising every section, for the truncation sweep.
std::vector<uint8_t> small_valid_file() {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.context_length", 128);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "", "hello"});
  Value nested;
  nested.type = ValueType::ARRAY;
  nested.elem_type = ValueType::ARRAY;
  Value inner;
  inner.type = ValueType::ARRAY;
  inner.elem_type = ValueType::INT32;
  inner.items.resize(2);
  for (auto& v : inner.items) v.type = ValueType::INT32;
  nested.items = {inner, inner};
  w.set("nested", nested);
  std::vector<float> a(12, 1.0f);
  std::vector<uint8_t> q(34, 7);  // one Q8_0 block
  w.add_tensor("a", DType::F32, {4, 3}, a.data(), a.size() * 4);
  w.add_tensor("q", DType::Q8_0, {32}, q.data(), q.size());
  return w.to_bytes();
}

TEST(GgufMalformed, SmallValidFileParses) {
  auto bytes = small_valid_file();
  EXPECT_EQ(parse_error(bytes), "");
}

TEST(GgufMalformed, TruncationAtEveryByte) {
  auto bytes = small_valid_file();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
    std::string msg = parse_error(prefix);
    EXPECT_FALSE(msg.empty()) << "truncated to " << n << " of " << bytes.size() << " bytes parsed";
  }
}

TEST(GgufMalformed, MessageFormat) {
  auto msg = parse_error(Bytes().header(1, 0).tensor("w", {1, 1, 1, 1, 1}, kF32, 0).b);
  // "<file>: <what> at offset N: <reason>"; n_dims sits after the 24-byte header and the
  // 9-byte name.
  EXPECT_EQ(msg, "bad.gguf: tensor 'w' (#0) at offset 33: n_dims 5 is not in [1, 4]");
}

TEST(GgufMalformed, EmptyAndTiny) {
  EXPECT_GGUF_ERROR(std::vector<uint8_t>{}, "empty");
  EXPECT_GGUF_ERROR(Bytes().raw("GGU").b, "too small");
  EXPECT_GGUF_ERROR(Bytes().raw("GGUF").b, "truncated", "version");
  EXPECT_GGUF_ERROR(Bytes().raw("GGUF").u32(3).u32(0).b, "truncated", "tensor count");
}

TEST(GgufMalformed, BadMagic) {
  EXPECT_GGUF_ERROR(Bytes().raw("GGML").u32(3).u64(0).u64(0).b, "not a GGUF file", "magic");
  EXPECT_GGUF_ERROR(Bytes()
                        .raw("\x7f"
                             "ELF")
                        .u32(3)
                        .u64(0)
                        .u64(0)
                        .b,
                    "not a GGUF file");
}

TEST(GgufMalformed, Versions) {
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 1).b, "version 1", "not supported");
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 4).b, "unsupported GGUF version 4");
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 0).b, "unsupported GGUF version 0");
  // A big-endian v3 file: the version's bytes are 00 00 00 03.
  EXPECT_GGUF_ERROR(Bytes().header(0, 0, 0x03000000).b, "big-endian");
  EXPECT_GGUF_ERROR(Bytes().raw("FUGG").u32(0x03000000).u64(0).u64(0).b, "big-endian");
  EXPECT_EQ(parse_error(Bytes().header(0, 0, 2).b), "");
  EXPECT_EQ(parse_error(Bytes().header(0, 0, 3).b), "");
}

TEST(GgufMalformed, AbsurdCounts) {
  for (uint64_t n : {kHuge63, kHuge40, ~uint64_t(0), uint64_t(1000)}) {
    EXPECT_GGUF_ERROR(Bytes().header(n, 0).b, "tensor count");
    EXPECT_GGUF_ERROR(Bytes().header(0, n).b, "metadata count");
    EXPECT_GGUF_ERROR(Bytes().header(n, n).b, "count");
  }
  // Individually plausible, jointly too large for the bytes present.
  EXPECT_GGUF_ERROR(Bytes().header(2, 3).zeros(80).b, "tensor count");
}

TEST(GgufMalformed, AbsurdStringLengths) {
  for (uint64_t n : {kHuge63, kHuge40, ~uint64_t(0)}) {
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).u64(n).raw("abcdefgh").b, "metadata entry #0",
                      "key length");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("name").type(ValueType::STRING).u64(n).b,
                      "key 'name' (#0)", "string value length");
    EXPECT_GGUF_ERROR(Bytes().header(1, 0).u64(n).zeros(40).b, "tensor #0", "tensor name length");
  }
}

TEST(GgufMalformed, AbsurdArrayLengths) {
  for (uint64_t n : {kHuge63, kHuge40, uint64_t(1) << 60, ~uint64_t(0)}) {
    for (ValueType elem :
         {ValueType::UINT8, ValueType::STRING, ValueType::ARRAY, ValueType::FLOAT64}) {
      auto b =
          Bytes().header(0, 1).str("tokens").type(ValueType::ARRAY).type(elem).u64(n).zeros(64);
      EXPECT_GGUF_ERROR(b.b, "key 'tokens' (#0)", "array of");
    }
  }
  // An inner array with an absurd length.
  auto b = Bytes().header(0, 1).str("outer").type(ValueType::ARRAY).type(ValueType::ARRAY).u64(1);
  b.type(ValueType::INT32).u64(kHuge40).zeros(16);
  EXPECT_GGUF_ERROR(b.b, "'outer'", "array of");
}

Bytes nested_arrays(int levels) {
  auto b = Bytes().header(0, 1).str("deep").type(ValueType::ARRAY);
  for (int k = 1; k < levels; ++k) b.type(ValueType::ARRAY).u64(1);
  b.type(ValueType::INT8).u64(0);
  return b;
}

TEST(GgufMalformed, NestingDepth) {
  EXPECT_EQ(parse_error(nested_arrays(8).b), "");
  EXPECT_GGUF_ERROR(nested_arrays(9).b, "'deep'", "nested");
  EXPECT_GGUF_ERROR(nested_arrays(100000).b, "'deep'", "nested");  // no stack overflow
}

TEST(GgufMalformed, BadValues) {
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(13).u32(0).b, "'k'", "invalid value type 13");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").type(ValueType::ARRAY).u32(99).u64(0).b, "'k'",
                    "invalid array element type 99");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("flag").type(ValueType::BOOL).u8(2).b, "'flag'",
                    "bool");
  EXPECT_GGUF_ERROR(Bytes().header(0, 2).kv_u32("dup", 1).kv_u32("dup", 2).b, "key 'dup' (#1)",
                    "duplicate key");
  // Unprintable key bytes are escaped in the message.
  EXPECT_GGUF_ERROR(Bytes().header(0, 2).kv_u32("\x01\n", 1).kv_u32("\x01\n", 2).b, "\\x01\\x0a");
}

TEST(GgufMalformed, BadAlignment) {
  for (uint32_t a : {0u, 3u, 48u, 0x80000001u})
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).kv_u32("general.alignment", a).b, "general.alignment",
                      "power of two");
  EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("general.alignment").type(ValueType::UINT64).u64(32).b,
                    "general.alignment", "uint32", "uint64");
  EXPECT_GGUF_ERROR(
      Bytes().header(0, 1).str("general.alignment").type(ValueType::STRING).str("32").b,
      "general.alignment", "string");
  EXPECT_EQ(parse_error(Bytes().header(0, 1).kv_u32("general.alignment", 64).b), "");
}

// A file with one tensor "w" and `data` bytes of tensor data after the aligned table.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> dims, uint32_t type, uint64_t offset = 0,
                                size_t data = 64) {
  return Bytes().header(1, 0).tensor("w", std::move(dims), type, offset).pad_to(32).zeros(data).b;
}

TEST(GgufMalformed, TensorDims) {
  EXPECT_EQ(parse_error(one_tensor({4, 2}, kF32)), "");
  EXPECT_GGUF_ERROR(one_tensor({}, kF32), "tensor 'w' (#0)", "n_dims 0");
  EXPECT_GGUF_ERROR(one_tensor({1, 1, 1, 1, 1}, kF32), "tensor 'w' (#0)", "n_dims 5");
  EXPECT_GGUF_ERROR(one_tensor({4, 0}, kF32), "'w'", "ne[1] = 0", "not positive");
  EXPECT_GGUF_ERROR(one_tensor({~uint64_t(0)}, kF32), "'w'", "ne[0] = -1", "not positive");
  EXPECT_GGUF_ERROR(one_tensor({kHuge63}, kF32), "'w'", "not positive");
  EXPECT_GGUF_ERROR(one_tensor({uint64_t(1) << 32, uint64_t(1) << 32}, kF32), "'w'", "overflow");
  EXPECT_GGUF_ERROR(one_tensor({uint64_t(1) << 31, uint64_t(1) << 31, 4}, kF32), "'w'", "overflow");
  // Fits in int64 elements, but not in bytes.
  EXPECT_GGUF_ERROR(one_tensor({uint64_t(1) << 31, uint64_t(1) << 31}, kF32), "'w'", "exceeds");
  EXPECT_GGUF_ERROR(one_tensor({uint64_t(1) << 40}, kF32), "'w'", "exceeds");
}

TEST(GgufMalformed, TensorTypes) {
  for (uint32_t t : {4u, 5u, 1000u, ~0u})  // 4, 5: ids ggml retired
    EXPECT_GGUF_ERROR(one_tensor({32}, t), "'w'", "unknown tensor type id " + std::to_string(t));
  EXPECT_GGUF_ERROR(one_tensor({33}, kQ8_0), "'w'", "ne[0] = 33", "block size 32");
  EXPECT_EQ(parse_error(one_tensor({32}, kQ8_0)), "");
}

TEST(GgufMalformed, TensorOffsets) {
  EXPECT_GGUF_ERROR(one_tensor({4}, kF32, 4), "'w'", "not a multiple of the alignment 32");
  EXPECT_GGUF_ERROR(one_tensor({4}, kF32, kHuge40), "'w'", "past end of file");
  EXPECT_GGUF_ERROR(one_tensor({4}, kF32, ~uint64_t(31)), "'w'", "past end of file");
  // Data section at 64 (24 header + 33 info, aligned); 16 bytes needed, 8 present.
  EXPECT_GGUF_ERROR(one_tensor({4}, kF32, 0, 8), "tensor 'w' (#0) at offset 24",
                    "data [64, 80) extends past end of file (72 bytes)");
  EXPECT_GGUF_ERROR(one_tensor({4}, kF32, 64, 64), "'w'", "past end of file");
  EXPECT_EQ(parse_error(one_tensor({4}, kF32, 32, 48)), "");
}

TEST(GgufMalformed, TensorOverlapAndDuplicates) {
  auto overlap = Bytes()
                     .header(2, 0)
                     .tensor("big", {64}, kF32, 0)
                     .tensor("blk.0.attn_q.weight", {4}, kF32, 32)
                     .pad_to(32)
                     .zeros(512);
  EXPECT_GGUF_ERROR(overlap.b, "tensor 'blk.0.attn_q.weight' (#1)", "overlaps tensor 'big' (#0)");
  auto same = Bytes().header(2, 0).tensor("a", {4}, kF32, 0).tensor("b", {4}, kF32, 0);
  EXPECT_GGUF_ERROR(same.pad_to(32).zeros(64).b, "overlaps");
  auto dup = Bytes().header(2, 0).tensor("a", {4}, kF32, 0).tensor("a", {4}, kF32, 32);
  EXPECT_GGUF_ERROR(dup.pad_to(32).zeros(64).b, "tensor 'a' (#1)", "duplicate tensor name");
  auto ok = Bytes().header(2, 0).tensor("a", {8}, kF32, 0).tensor("b", {4}, kF32, 32);
  EXPECT_EQ(parse_error(ok.pad_to(32).zeros(64).b), "");
}

TEST(GgufMalformed, FileErrors) {
  auto msg_of = [](const std::string& path) -> std::string {
    try {
      File::open(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_TRUE(test::contains_all(msg_of("/nonexistent/model.gguf"),
                                 {"/nonexistent/model.gguf", "cannot open"}));
  auto dir = std::filesystem::temp_directory_path();
  EXPECT_TRUE(test::contains_all(msg_of(dir.string()), {"not a regular file"}));
  auto empty = dir / ("tf_gguf_empty_" + std::to_string(::getpid()) + ".gguf");
  std::ofstream(empty).close();
  EXPECT_TRUE(test::contains_all(msg_of(empty.string()), {empty.string(), "empty"}));
  std::ofstream(empty) << "not a model at all";
  EXPECT_TRUE(test::contains_all(msg_of(empty.string()), {"not a GGUF file"}));
  std::filesystem::remove(empty);
  // Reading the file into memory reports the same errors as mapping it.
  auto msg_copied = [](const std::string& path) -> std::string {
    try {
      File::open(path, Residency::kCopied);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_TRUE(test::contains_all(msg_copied("/nonexistent/model.gguf"), {"cannot open"}));
  std::ofstream(empty) << "not a model at all";
  EXPECT_TRUE(test::contains_all(msg_copied(empty.string()), {"not a GGUF file"}));
  std::filesystem::remove(empty);
}

// A file read into memory of its own parses to the same metadata and tensor bytes as the
// mapped file, at 2 MiB-aligned memory (so huge pages can back it).
TEST(GgufMalformed, CopiedResidencyMatchesMapped) {
  auto bytes = Bytes()
                   .header(2, 1)
                   .str("general.architecture")
                   .type(ValueType::STRING)
                   .str("llama")
                   .tensor("a", {8}, kF32, 0)
                   .tensor("b", {4}, kF32, 32)
                   .pad_to(32);
  for (int i = 0; i < 64; ++i) bytes.b.push_back(uint8_t(i * 7 + 1));
  auto path = std::filesystem::temp_directory_path() /
              ("tf_gguf_copied_" + std::to_string(::getpid()) + ".gguf");
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.b.data()), std::streamsize(bytes.b.size()));
  auto mapped = File::open(path.string(), Residency::kMapped);
  auto copied = File::open(path.string(), Residency::kCopied);
  std::filesystem::remove(path);
  EXPECT_EQ(copied->get_string("general.architecture"), "llama");
  ASSERT_EQ(copied->tensors().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const TensorInfo& m = mapped->tensors()[i];
    const TensorInfo& c = copied->tensors()[i];
    EXPECT_EQ(c.name, m.name);
    ASSERT_EQ(c.nbytes, m.nbytes);
    EXPECT_EQ(std::memcmp(c.data, m.data, m.nbytes), 0);
    EXPECT_NE(c.data, m.data);
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(copied->tensors()[0].data) -
                          uintptr_t(copied->data_offset());
  EXPECT_EQ(start % (uintptr_t(2) << 20), 0u);
}

}  // namespace
}  // namespace tf::gguf
