// The safetensors reader: valid files and sharded sets parse; every kind of corruption is a
// tf::Error whose message says what is wrong (these run under ASan in CI: no crash, no huge
// allocation, whatever the header claims).
#include <gtest/gtest.h>

#include <filesystem>

#include "format/safetensors.h"
#include "hf_test_util.h"

namespace tf::safetensors {
namespace {

using test::safetensors_bytes;
using test::safetensors_raw;
using test::StTensor;

// The tf::Error message of parsing `b`, or "" if it parsed. Any other exception fails.
std::string error_of(const std::vector<uint8_t>& b) {
  try {
    File::from_memory(b.data(), b.size(), "t.safetensors");
    return "";
  } catch (const tf::Error& e) {
    return e.what();
  }
}

std::vector<uint8_t> valid_file() {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  return safetensors_bytes({{"a", "F32", {2, 3}, test::f32_bytes(a)},
                            {"b", "BF16", {4}, std::vector<uint8_t>(8, 0x3f)},
                            {"ids", "I64", {2}, std::vector<uint8_t>(16, 0)},
                            {"empty", "F16", {0, 5}, {}}},
                           {{"format", "pt"}, {"tied", "a"}});
}

// A header with one tensor entry `entry` over `data` bytes of data.
std::vector<uint8_t> one(const std::string& entry, size_t data = 64) {
  return safetensors_raw("{\"t\":" + entry + "}", data);
}

TEST(Safetensors, ValidFileParses) {
  const auto b = valid_file();
  auto f = File::from_memory(b.data(), b.size(), "ok.safetensors");
  ASSERT_EQ(f->tensors().size(), 4u);
  const Tensor* a = f->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, DType::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->nbytes, 24u);
  float v;
  std::memcpy(&v, a->data + 20, 4);
  EXPECT_EQ(v, 6.0f);
  EXPECT_EQ(f->find("b")->type, DType::BF16);
  EXPECT_FALSE(f->find("ids")->supported);  // validated, but not loadable as weights
  EXPECT_EQ(f->find("empty")->nbytes, 0u);
  EXPECT_EQ(f->metadata().at("tied"), "a");
}

TEST(Safetensors, TruncatedFiles) {
  const auto b = valid_file();
  for (size_t n = 0; n < 8; ++n)
    EXPECT_NE(error_of({b.begin(), b.begin() + long(n)}).find("truncated"), std::string::npos) << n;
  // Every cut is an error naming the problem, never a crash.
  for (size_t n = 8; n < b.size(); ++n) {
    const std::string e = error_of({b.begin(), b.begin() + long(n)});
    EXPECT_NE(e, "") << "prefix of " << n << " bytes parsed";
  }
  EXPECT_NE(error_of({b.begin(), b.end() - 1}).find("past the end of the data"), std::string::npos);
}

TEST(Safetensors, HeaderLength) {
  auto b = safetensors_raw("{}", 0);
  uint64_t n = 1000;  // past the end
  std::memcpy(b.data(), &n, 8);
  EXPECT_NE(error_of(b).find("extends past the end of the file"), std::string::npos);
  n = uint64_t(1) << 62;
  std::memcpy(b.data(), &n, 8);
  EXPECT_NE(error_of(b).find("exceeds the limit"), std::string::npos);
  EXPECT_EQ(error_of(safetensors_raw("{}", 0)), "");  // an empty model is well-formed
}

TEST(Safetensors, BadJson) {
  EXPECT_NE(error_of(safetensors_raw("{\"t\": {\"dtype\": ", 0)).find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of(safetensors_raw("\xff\xfe{}", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(safetensors_raw("[1, 2]", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(safetensors_raw("\"text\"", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(one("[]")).find("entry is not an object"), std::string::npos);
  EXPECT_NE(error_of(safetensors_raw("{\"__metadata__\": {\"a\": 1}}", 0)).find("not a string"),
            std::string::npos);
}

TEST(Safetensors, Dtypes) {
  EXPECT_NE(error_of(one(R"({"dtype":"F99","shape":[2],"data_offsets":[0,8]})"))
                .find("unsupported dtype 'F99'"),
            std::string::npos);
  EXPECT_NE(error_of(one(R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})")).find("dtype"),
            std::string::npos);
  EXPECT_EQ(error_of(one(R"({"dtype":"F16","shape":[2],"data_offsets":[0,4]})")), "");
}

TEST(Safetensors, ShapesAndSizes) {
  auto err = [](const std::string& entry) { return error_of(one(entry)); };
  EXPECT_NE(
      err(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})").find("do not match shape [3]"),
      std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,0]})").find("non-negative"),
            std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})").find("non-negative"),
            std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]})")
                .find("absurd"),
            std::string::npos);
  EXPECT_NE(
      err(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})").find("absurd"),
      std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})").find("shape"),
            std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1})").find("unknown field"),
            std::string::npos);
}

TEST(Safetensors, Offsets) {
  auto err = [](const std::string& entry) { return error_of(one(entry, 16)); };
  EXPECT_NE(
      err(R"({"dtype":"F32","shape":[4],"data_offsets":[8,24]})").find("past the end of the data"),
      std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})").find("begin <= end"),
            std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})").find("[begin, end]"),
            std::string::npos);
  EXPECT_NE(err(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})").find("non-negative"),
            std::string::npos);
  EXPECT_NE(
      err(R"({"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]})")
          .find("data_offsets"),
      std::string::npos);
  const auto overlap = safetensors_raw(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      16);
  EXPECT_NE(error_of(overlap).find("overlaps"), std::string::npos);
  const auto same = safetensors_raw(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
      16);
  EXPECT_NE(error_of(same).find("overlaps"), std::string::npos);
}

TEST(Safetensors, DuplicateNames) {
  const auto dup = safetensors_raw(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
      16);
  EXPECT_NE(error_of(dup).find("duplicate key 'a'"), std::string::npos);
  EXPECT_NE(error_of(one(R"({"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]})"))
                .find("duplicate key 'dtype'"),
            std::string::npos);
}

TEST(Safetensors, OpenMissingAndEmptyFiles) {
  test::TempDir d("st-open");
  EXPECT_THROW(File::open(d / "none.safetensors"), tf::Error);
  test::write_bytes(d / "empty.safetensors", {});
  try {
    File::open(d / "empty.safetensors");
    FAIL() << "empty file parsed";
  } catch (const tf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

// ----- sharded directories -----

std::vector<uint8_t> shard(const std::vector<std::string>& names) {
  std::vector<StTensor> ts;
  for (const std::string& n : names) ts.push_back({n, "F32", {2}, test::f32_bytes({1, 2})});
  return safetensors_bytes(ts);
}

std::string open_error(const std::string& dir) {
  try {
    ShardSet::open_dir(dir);
    return "";
  } catch (const tf::Error& e) {
    return e.what();
  }
}

void write_index(const test::TempDir& d, const std::string& weight_map) {
  test::write_text(d / "model.safetensors.index.json",
                   "{\"metadata\": {\"total_size\": 16}, \"weight_map\": " + weight_map + "}");
}

TEST(SafetensorsShards, ValidSetAndAliases) {
  test::TempDir d("st-shards");
  test::write_bytes(d / "a.safetensors", shard({"x", "y"}));
  auto b = safetensors_bytes({{"z", "F32", {2}, test::f32_bytes({3, 4})}}, {{"w", "z"}});
  test::write_bytes(d / "b.safetensors", b);
  write_index(d, R"({"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"})");
  ShardSet s = ShardSet::open_dir(d.path);
  EXPECT_EQ(s.all().size(), 3u);
  ASSERT_NE(s.find("z"), nullptr);
  EXPECT_EQ(s.find("w"), s.find("z"));  // __metadata__ alias
  EXPECT_EQ(s.find("nope"), nullptr);
}

TEST(SafetensorsShards, Errors) {
  {
    test::TempDir d("st-missing");
    test::write_bytes(d / "a.safetensors", shard({"x"}));
    write_index(d, R"({"x": "a.safetensors", "y": "b.safetensors"})");
    EXPECT_NE(open_error(d.path).find("shard 'b.safetensors' is missing"), std::string::npos);
  }
  {
    test::TempDir d("st-two");
    test::write_bytes(d / "a.safetensors", shard({"x"}));
    test::write_bytes(d / "b.safetensors", shard({"x", "y"}));
    write_index(d, R"({"x": "a.safetensors", "y": "b.safetensors"})");
    EXPECT_NE(open_error(d.path).find("in two shards"), std::string::npos);
  }
  {
    test::TempDir d("st-wrong");
    test::write_bytes(d / "a.safetensors", shard({"x"}));
    test::write_bytes(d / "b.safetensors", shard({"y"}));
    write_index(d, R"({"x": "b.safetensors", "y": "a.safetensors"})");
    EXPECT_NE(open_error(d.path).find("is not in shard"), std::string::npos);
  }
  {
    test::TempDir d("st-extra");
    test::write_bytes(d / "a.safetensors", shard({"x", "y"}));
    write_index(d, R"({"x": "a.safetensors"})");
    EXPECT_NE(open_error(d.path).find("is not in the index"), std::string::npos);
  }
  {
    test::TempDir d("st-dup");
    test::write_bytes(d / "a.safetensors", shard({"x"}));
    write_index(d, R"({"x": "a.safetensors", "x": "a.safetensors"})");
    EXPECT_NE(open_error(d.path).find("duplicate key 'x'"), std::string::npos);
  }
  {
    test::TempDir d("st-none");
    test::write_bytes(d / "model-00001-of-00002.safetensors", shard({"x"}));
    EXPECT_NE(open_error(d.path).find("no model.safetensors.index.json"), std::string::npos);
  }
  {
    test::TempDir d("st-badindex");
    test::write_text(d / "model.safetensors.index.json", "{\"weight_map\": [1]}");
    EXPECT_NE(open_error(d.path).find("weight_map"), std::string::npos);
  }
}

TEST(SafetensorsShards, PathTraversal) {
  for (const char* bad : {"../a.safetensors", "/etc/passwd", "sub/a.safetensors", "..", ".",
                          "a\\\\b.safetensors", ""}) {
    const std::string json = std::string(R"({"weight_map": {"x": ")") + bad + "\"}}";
    try {
      ShardSet::parse_index(json, "index.json");
      ADD_FAILURE() << "accepted shard name " << bad;
    } catch (const tf::Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a plain file name"), std::string::npos) << e.what();
    }
  }
  // And through a real directory: nothing outside it is opened.
  test::TempDir d("st-trav");
  write_index(d, R"({"x": "../outside.safetensors"})");
  EXPECT_NE(open_error(d.path).find("not a plain file name"), std::string::npos);
}

}  // namespace
}  // namespace tf::safetensors
