// Writer -> reader round trips: every value type, nested arrays, tensors, alignment, getters.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "format/gguf.h"
#include "gguf_test_helpers.h"

namespace tf::gguf {
namespace {

Value scalar(ValueType t) {
  Value v;
  v.type = t;
  return v;
}
Value u(ValueType t, uint64_t x) {
  Value v = scalar(t);
  v.u = x;
  return v;
}
Value i(ValueType t, int64_t x) {
  Value v = scalar(t);
  v.i = x;
  return v;
}
Value f(ValueType t, double x) {
  Value v = scalar(t);
  v.f = x;
  return v;
}
Value b(bool x) {
  Value v = scalar(ValueType::BOOL);
  v.b = x;
  return v;
}
Value arr(ValueType elem, std::vector<Value> items) {
  Value v = scalar(ValueType::ARRAY);
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}

// Structural equality; floats compare bitwise so -0.0 and NaN payloads count too.
void expect_same(const Value& a, const Value& e, const std::string& where) {
  ASSERT_EQ(a.type, e.type) << where;
  switch (e.type) {
    case ValueType::UINT8:
    case ValueType::UINT16:
    case ValueType::UINT32:
    case ValueType::UINT64:
      EXPECT_EQ(a.u, e.u) << where;
      break;
    case ValueType::INT8:
    case ValueType::INT16:
    case ValueType::INT32:
    case ValueType::INT64:
      EXPECT_EQ(a.i, e.i) << where;
      break;
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      EXPECT_EQ(std::memcmp(&a.f, &e.f, 8), 0) << where;
      break;
    case ValueType::BOOL:
      EXPECT_EQ(a.b, e.b) << where;
      break;
    case ValueType::STRING:
      EXPECT_EQ(a.str, e.str) << where;
      break;
    case ValueType::ARRAY:
      ASSERT_EQ(a.elem_type, e.elem_type) << where;
      ASSERT_EQ(a.items.size(), e.items.size()) << where;
      for (size_t k = 0; k < e.items.size(); ++k)
        expect_same(a.items[k], e.items[k], where + "[" + std::to_string(k) + "]");
      break;
  }
}

std::unique_ptr<File> reparse(const std::vector<uint8_t>& bytes) {
  return File::from_memory(bytes.data(), bytes.size(), "mem.gguf");
}

std::vector<std::pair<std::string, Value>> all_value_kinds() {
  using VT = ValueType;
  return {
      {"u8", u(VT::UINT8, 255)},
      {"i8", i(VT::INT8, -128)},
      {"u16", u(VT::UINT16, 65535)},
      {"i16", i(VT::INT16, -32768)},
      {"u32", u(VT::UINT32, 4294967295u)},
      {"i32", i(VT::INT32, std::numeric_limits<int32_t>::min())},
      {"f32", f(VT::FLOAT32, double(-1.5f))},
      {"f32.negzero", f(VT::FLOAT32, -0.0)},
      {"f32.inf", f(VT::FLOAT32, double(std::numeric_limits<float>::infinity()))},
      {"bool.t", b(true)},
      {"bool.f", b(false)},
      {"str", Writer::make_string("hello, world")},
      {"str.empty", Writer::make_string("")},
      {"str.nul", Writer::make_string(std::string("a\0b", 3))},
      {"u64", u(VT::UINT64, std::numeric_limits<uint64_t>::max())},
      {"i64", i(VT::INT64, std::numeric_limits<int64_t>::min())},
      {"f64", f(VT::FLOAT64, 1e300)},
      {"arr.u8", arr(VT::UINT8, {u(VT::UINT8, 0), u(VT::UINT8, 200)})},
      {"arr.i8", arr(VT::INT8, {i(VT::INT8, -1), i(VT::INT8, 127)})},
      {"arr.u16", arr(VT::UINT16, {u(VT::UINT16, 1)})},
      {"arr.i16", arr(VT::INT16, {i(VT::INT16, -300)})},
      {"arr.u32", arr(VT::UINT32, {u(VT::UINT32, 7), u(VT::UINT32, 8)})},
      {"arr.i32", arr(VT::INT32, {i(VT::INT32, -7)})},
      {"arr.f32", arr(VT::FLOAT32, {f(VT::FLOAT32, 0.25), f(VT::FLOAT32, -2)})},
      {"arr.bool", arr(VT::BOOL, {b(true), b(false), b(true)})},
      {"arr.str", arr(VT::STRING, {Writer::make_string("x"), Writer::make_string("")})},
      {"arr.u64", arr(VT::UINT64, {u(VT::UINT64, uint64_t(1) << 63)})},
      {"arr.i64", arr(VT::INT64, {i(VT::INT64, -(int64_t(1) << 40))})},
      {"arr.f64", arr(VT::FLOAT64, {f(VT::FLOAT64, 3.25)})},
      {"arr.empty.i32", arr(VT::INT32, {})},
      {"arr.empty.str", arr(VT::STRING, {})},
      {"arr.empty.arr", arr(VT::ARRAY, {})},
      {"arr.nested",
       arr(VT::ARRAY, {arr(VT::INT32, {i(VT::INT32, 1), i(VT::INT32, 2)}), arr(VT::STRING, {}),
                       arr(VT::ARRAY, {arr(VT::STRING, {Writer::make_string("deep")})})})},
      {"键.ключ.🔑", Writer::make_string("unicode key, ünïcödé value ✓")},
  };
}

TEST(GgufRoundTrip, EveryValueType) {
  Writer w;
  auto kinds = all_value_kinds();
  for (const auto& [k, v] : kinds) w.set(k, v);
  auto bytes = w.to_bytes();
  auto file = reparse(bytes);
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  ASSERT_EQ(file->metadata().size(), kinds.size());
  for (size_t k = 0; k < kinds.size(); ++k) {
    EXPECT_EQ(file->metadata()[k].first, kinds[k].first);  // insertion order is kept
    expect_same(file->metadata()[k].second, kinds[k].second, kinds[k].first);
    ASSERT_NE(file->find(kinds[k].first), nullptr);
  }
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_EQ(file->find("absent"), nullptr);
}

TEST(GgufRoundTrip, EightLevelsOfNesting) {
  // Eight array levels is the documented limit (the malformed tests check nine fails).
  Value v = arr(ValueType::INT8, {i(ValueType::INT8, 5)});
  for (int level = 1; level < 8; ++level) v = arr(ValueType::ARRAY, {v});
  Writer w;
  w.set("deep", v);
  auto file = reparse(w.to_bytes());
  expect_same(*file->find("deep"), v, "deep");
}

TEST(GgufRoundTrip, SetReplacesInPlace) {
  Writer w;
  w.set_u32("a", 1);
  w.set_string("b", "two");
  w.set_u32("c", 3);
  w.set_string("a", "replaced");
  auto file = reparse(w.to_bytes());
  ASSERT_EQ(file->metadata().size(), 3u);
  EXPECT_EQ(file->metadata()[0].first, "a");
  EXPECT_EQ(file->get_string("a"), "replaced");
  EXPECT_EQ(file->metadata()[1].first, "b");
  EXPECT_EQ(file->metadata()[2].first, "c");
}

TEST(GgufRoundTrip, VersionTwoIsAccepted) {
  Writer w;
  w.set_u32("x", 9);
  auto bytes = w.to_bytes();
  bytes[4] = 2;  // v2 has the same layout as v3 (v3 only added big-endian support)
  auto file = reparse(bytes);
  EXPECT_EQ(file->version(), 2u);
  EXPECT_EQ(file->get_int_or("x", 0), 9);
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& x : out) x = uint8_t(rng());
  return out;
}

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> dims;
};

void check_tensors(uint32_t alignment, bool via_file) {
  const std::vector<TensorSpec> specs = {
      {"token_embd.weight", DType::F32, {8, 3}},
      {"blk.0.attn_q.weight", DType::F16, {5}},  // 10 bytes: forces padding before the next
      {"blk.0.ffn_up.weight", DType::Q8_0, {64, 2, 1}},
      {"blk.0.ffn_down.weight", DType::Q4_K, {256, 2}},
      {"output.weight", DType::I8, {3, 1, 1, 2}},
  };
  Writer w;
  if (alignment != 32) w.set_alignment(alignment);
  w.set_string("general.architecture", "llama");
  std::vector<std::vector<uint8_t>> datas;
  for (size_t k = 0; k < specs.size(); ++k) {
    size_t n = *row_bytes_checked(specs[k].type, specs[k].dims[0]);
    for (size_t d = 1; d < specs[k].dims.size(); ++d) n *= size_t(specs[k].dims[d]);
    datas.push_back(random_bytes(n, uint32_t(k + 1)));
    w.add_tensor(specs[k].name, specs[k].type, specs[k].dims, datas.back().data(), n);
  }
  auto bytes = w.to_bytes();

  std::unique_ptr<File> file;
  std::string path;
  if (via_file) {
    path = (std::filesystem::temp_directory_path() / ("tf_gguf_rt_" + std::to_string(::getpid()) +
                                                      "_" + std::to_string(alignment) + ".gguf"))
               .string();
    w.write(path);
    file = File::open(path);
    EXPECT_EQ(file->file_size(), bytes.size());
  } else {
    file = reparse(bytes);
  }
  const uint8_t* base = via_file ? nullptr : bytes.data();
  EXPECT_EQ(file->alignment(), alignment);
  EXPECT_EQ(file->data_offset() % alignment, 0u);
  ASSERT_EQ(file->tensors().size(), specs.size());
  for (size_t k = 0; k < specs.size(); ++k) {
    const TensorInfo& t = file->tensors()[k];
    EXPECT_EQ(t.name, specs[k].name);
    EXPECT_EQ(t.type, specs[k].type);
    EXPECT_EQ(t.dims, specs[k].dims);
    EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    ASSERT_EQ(t.nbytes, datas[k].size()) << t.name;
    EXPECT_EQ(std::memcmp(t.data, datas[k].data(), t.nbytes), 0) << t.name;
    if (base) {
      EXPECT_EQ(t.data, base + file->data_offset() + t.offset);
    }
    // A memory map is page aligned, so file alignment becomes pointer alignment.
    if (via_file && alignment <= 4096) {
      EXPECT_EQ(uintptr_t(t.data) % alignment, 0u) << t.name;
    }
    EXPECT_EQ(file->find_tensor(specs[k].name), &t);
  }
  EXPECT_EQ(file->tensors()[0].n_elements(), 24);
  EXPECT_EQ(file->tensors()[4].n_elements(), 6);
  EXPECT_EQ(file->find_tensor("nope"), nullptr);
  // Padding between tensors is zero.
  const TensorInfo& t1 = file->tensors()[1];
  const TensorInfo& t2 = file->tensors()[2];
  for (const uint8_t* p = t1.data + t1.nbytes; p < t2.data; ++p) EXPECT_EQ(*p, 0);
  file.reset();
  if (!path.empty()) std::filesystem::remove(path);
}

TEST(GgufRoundTrip, TensorsDefaultAlignment) {
  check_tensors(32, false);
}
TEST(GgufRoundTrip, TensorsAlignment1) {
  check_tensors(1, false);
}
TEST(GgufRoundTrip, TensorsAlignment8) {
  check_tensors(8, false);
}
TEST(GgufRoundTrip, TensorsAlignment64ViaFile) {
  check_tensors(64, true);
}
TEST(GgufRoundTrip, TensorsAlignment4096ViaFile) {
  check_tensors(4096, true);
}

TEST(GgufRoundTrip, UnsupportedButKnownTypesParse) {
  // Types the compute layer may not implement still load; the model layer decides.
  Writer w;
  for (DType t : {DType::Q2_K, DType::I16, DType::I64, DType::F64, DType::BF16}) {
    const DTypeInfo& info = dtype_info(t);
    std::vector<uint8_t> data(info.type_size, 0x11);
    w.add_tensor(std::string("t.") + info.name, t, {int64_t(info.block_size)}, data.data(),
                 data.size());
  }
  auto file = reparse(w.to_bytes());
  ASSERT_EQ(file->tensors().size(), 5u);
  EXPECT_EQ(file->tensors()[0].type, DType::Q2_K);
}

TEST(GgufRoundTrip, WriterRejectsInvalidInput) {
  Writer w;
  float x[4] = {};
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}, x, 0), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}, x, 4), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {0}, x, 0), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, x, 12), Error);
  EXPECT_THROW(w.add_tensor("t", DType::Q8_0, {4}, x, 4), Error);
  w.add_tensor("t", DType::F32, {4}, x, 16);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, x, 16), Error);

  Writer bad;
  bad.set("u8", u(ValueType::UINT8, 256));
  EXPECT_THROW(bad.to_bytes(), Error);
  Writer mixed;
  mixed.set("a", arr(ValueType::INT32, {u(ValueType::UINT32, 1)}));
  EXPECT_THROW(mixed.to_bytes(), Error);
  EXPECT_THROW(Writer().write("/nonexistent-dir/x.gguf"), Error);
}

TEST(GgufGetters, TypedAccess) {
  Writer w;
  w.set_string("s", "text");
  w.set_u32("u32", 7);
  w.set("i8", i(ValueType::INT8, -3));
  w.set("u64.big", u(ValueType::UINT64, std::numeric_limits<uint64_t>::max()));
  w.set("u64.small", u(ValueType::UINT64, 42));
  w.set_f32("f", 0.5f);
  w.set("f64", f(ValueType::FLOAT64, 1e-6));
  w.set_bool("yes", true);
  w.set_string_array("strs", {"a", "b", "c"});
  w.set_f32_array("floats", {1.0f, 2.5f});
  w.set_i32_array("ints", {-1, 0, 1});
  w.set("u64s",
        arr(ValueType::UINT64, {u(ValueType::UINT64, 1), u(ValueType::UINT64, uint64_t(1) << 63)}));
  w.set("nested", arr(ValueType::ARRAY, {arr(ValueType::INT32, {})}));
  auto file = reparse(w.to_bytes());

  EXPECT_EQ(file->get_string("s"), "text");
  EXPECT_EQ(file->get_string_or("missing", "def"), "def");
  EXPECT_EQ(file->get_int_or("u32", 0), 7);
  EXPECT_EQ(file->get_int_or("i8", 0), -3);
  EXPECT_EQ(file->get_int_or("u64.small", 0), 42);
  EXPECT_EQ(file->get_int_or("missing", -9), -9);
  EXPECT_DOUBLE_EQ(file->get_float_or("f", 0), 0.5);
  EXPECT_DOUBLE_EQ(file->get_float_or("f64", 0), 1e-6);
  EXPECT_DOUBLE_EQ(file->get_float_or("u32", 0), 7.0);  // integers are accepted as floats
  EXPECT_DOUBLE_EQ(file->get_float_or("missing", 2.5), 2.5);
  EXPECT_TRUE(file->get_bool_or("yes", false));
  EXPECT_FALSE(file->get_bool_or("missing", false));
  EXPECT_EQ(file->get_string_array("strs"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(file->get_float_array("floats"), (std::vector<float>{1.0f, 2.5f}));
  EXPECT_EQ(file->get_float_array("ints"), (std::vector<float>{-1, 0, 1}));
  EXPECT_EQ(file->get_int_array("ints"), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_TRUE(file->get_string_array("missing").empty());

  auto error_of = [&](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  using test::contains_all;
  EXPECT_TRUE(contains_all(error_of([&] { file->get_string("missing"); }), {"'missing'"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_string("u32"); }), {"'u32'", "uint32"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_string_or("u32", ""); }), {"'u32'"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_int_or("f", 0); }), {"'f'", "float32"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_int_or("u64.big", 0); }), {"'u64.big'"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_int_or("yes", 0); }), {"'yes'", "bool"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_float_or("s", 0); }), {"'s'", "string"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_bool_or("u32", 0); }), {"'u32'", "uint32"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_string_array("ints"); }),
                           {"'ints'", "array of int32"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_string_array("s"); }), {"'s'", "string"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_float_array("strs"); }),
                           {"'strs'", "array of string"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_int_array("floats"); }),
                           {"'floats'", "array of float32"}));
  EXPECT_TRUE(
      contains_all(error_of([&] { file->get_int_array("u64s"); }), {"'u64s'", "element 1"}));
  EXPECT_TRUE(contains_all(error_of([&] { file->get_int_array("nested"); }),
                           {"'nested'", "array of array"}));
}

TEST(GgufValue, NumericConversions) {
  EXPECT_EQ(u(ValueType::UINT8, 200).as_i64(), 200);
  EXPECT_EQ(i(ValueType::INT16, -5).as_i64(), -5);
  EXPECT_THROW(i(ValueType::INT16, -5).as_u64(), Error);
  EXPECT_THROW(u(ValueType::UINT64, uint64_t(1) << 63).as_i64(), Error);
  EXPECT_EQ(u(ValueType::UINT64, uint64_t(1) << 63).as_u64(), uint64_t(1) << 63);
  EXPECT_EQ(f(ValueType::FLOAT32, 3.0).as_i64(), 3);
  EXPECT_THROW(f(ValueType::FLOAT32, 3.5).as_i64(), Error);
  EXPECT_THROW(f(ValueType::FLOAT64, std::nan("")).as_u64(), Error);
  EXPECT_THROW(f(ValueType::FLOAT64, 1e30).as_i64(), Error);
  EXPECT_DOUBLE_EQ(i(ValueType::INT64, -7).as_f64(), -7.0);
  EXPECT_THROW(Writer::make_string("1").as_f64(), Error);
  EXPECT_THROW(b(true).as_i64(), Error);
  EXPECT_TRUE(u(ValueType::UINT64, 1).is_integer());
  EXPECT_FALSE(b(true).is_integer());
  EXPECT_FALSE(f(ValueType::FLOAT32, 1).is_integer());
  EXPECT_TRUE(f(ValueType::FLOAT64, 1).is_float());
}

TEST(GgufValue, ToString) {
  EXPECT_EQ(u(ValueType::UINT32, 32000).to_string(), "32000");
  EXPECT_EQ(i(ValueType::INT8, -3).to_string(), "-3");
  EXPECT_EQ(f(ValueType::FLOAT32, double(0.1f)).to_string(), "0.1");
  EXPECT_EQ(f(ValueType::FLOAT64, 1e-5).to_string(), "1e-05");
  EXPECT_EQ(b(true).to_string(), "true");
  EXPECT_EQ(Writer::make_string("llama").to_string(), "\"llama\"");
  EXPECT_EQ(Writer::make_string("a\"b\n\x01").to_string(), "\"a\\\"b\\n\\x01\"");
  Value tokens = arr(ValueType::STRING, {});
  for (const char* s : {"<unk>", "<s>", "</s>", "a"})
    tokens.items.push_back(Writer::make_string(s));
  EXPECT_EQ(tokens.to_string(2), "[str x4: \"<unk>\", \"<s>\", ...]");
  EXPECT_EQ(tokens.to_string(), "[str x4: \"<unk>\", \"<s>\", \"</s>\", \"a\"]");
  EXPECT_EQ(tokens.to_string(0), "[str x4: ...]");
  EXPECT_EQ(arr(ValueType::INT32, {}).to_string(), "[i32 x0]");
  Value nested = arr(ValueType::ARRAY, {arr(ValueType::INT32, {i(ValueType::INT32, 1)}),
                                        arr(ValueType::FLOAT32, {})});
  EXPECT_EQ(nested.to_string(), "[arr x2: [i32 x1: 1], [f32 x0]]");
  EXPECT_STREQ(value_type_name(ValueType::FLOAT64), "float64");
  EXPECT_STREQ(value_type_name(ValueType::ARRAY), "array");
}

}  // namespace
}  // namespace tf::gguf
