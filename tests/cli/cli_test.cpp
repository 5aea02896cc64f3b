// The tokenfab binary as a user runs it: outputs, exit codes, and one clear line on stderr for
// every kind of bad input.
#include <nlohmann/json.hpp>

#include "cli/cli_test_util.h"
#include "tokenfab/tokenfab.h"

namespace {

using nlohmann::json;

using tf::test::expect_clean_error;
using tf::test::Result;
using tf::test::run;
using tf::test::tmp_path;
using tf::test::write_file;

const char* kStories = "models/gguf/stories260K.gguf";

TEST(Cli, MissingFile) {
  expect_clean_error(run({"run", "-m", "/nonexistent/model.gguf", "-p", "hi"}),
                     "/nonexistent/model.gguf");
  expect_clean_error(run({"info", "/nonexistent/model.gguf"}), "/nonexistent/model.gguf");
}

TEST(Cli, NotAGgufFile) {
  const std::string p = tmp_path("text.gguf");
  write_file(p, "this is not a model, just some text that is long enough\n");
  expect_clean_error(run({"run", "-m", p, "-p", "hi"}), p);
  write_file(p, "");
  expect_clean_error(run({"tokenize", "-m", p, "hi"}), p);
  std::filesystem::remove(p);
}

TEST(Cli, TruncatedModel) {
  TF_REQUIRE_SHARED(kStories);
  const std::string whole = tf::test::read_file(tf::test::shared_path(kStories));
  const std::string p = tmp_path("trunc.gguf");
  for (size_t cut :
       {size_t(3), size_t(24), size_t(200), size_t(5000), whole.size() / 2, whole.size() - 1}) {
    write_file(p, whole.substr(0, cut));
    expect_clean_error(run({"run", "-m", p, "-p", "hi", "-n", "4"}), p);
  }
  std::filesystem::remove(p);
}

// A valid GGUF whose architecture or tensor type we do not support.
TEST(Cli, UnsupportedArchitectureAndType) {
  TF_REQUIRE_SHARED(kStories);
  auto src = tf::gguf::File::open(tf::test::shared_path(kStories));
  const std::string p = tmp_path("unsupported.gguf");
  {
    tf::gguf::Writer w;
    for (const auto& [k, v] : src->metadata()) w.set(k, v);
    w.set_string("general.architecture", "rwkv6");
    for (const auto& t : src->tensors()) w.add_tensor(t.name, t.type, t.dims, t.data, t.nbytes);
    w.write(p);
    expect_clean_error(run({"run", "-m", p, "-p", "hi"}), "unsupported architecture 'rwkv6'");
  }
  {
    tf::gguf::Writer w;
    for (const auto& [k, v] : src->metadata()) w.set(k, v);
    for (const auto& t : src->tensors()) {
      if (t.name == "blk.0.attn_q.weight") {
        // Same bytes, relabelled as 32-bit integers: a known type no matmul supports.
        w.add_tensor(t.name, tf::DType::I32, t.dims, t.data, t.nbytes);
      } else {
        w.add_tensor(t.name, t.type, t.dims, t.data, t.nbytes);
      }
    }
    w.write(p);
    expect_clean_error(run({"run", "-m", p, "-p", "hi"}), "blk.0.attn_q.weight");
  }
  std::filesystem::remove(p);
}

TEST(Cli, PromptLongerThanContext) {
  TF_REQUIRE_SHARED(kStories);
  expect_clean_error(run({"run", "-m", tf::test::shared_path(kStories), "-c", "8", "-p",
                          "Once upon a time there was a little girl named Lily who loved"}),
                     "context");
}

TEST(Cli, BadArguments) {
  TF_REQUIRE_SHARED(kStories);
  const std::string m = tf::test::shared_path(kStories);
  EXPECT_EQ(run({"run", "-m", m, "-p", "hi", "--temp", "-1"}).code, 1);
  EXPECT_EQ(run({"run", "-m", m, "-p", "hi", "-n", "abc"}).code, 1);
  EXPECT_EQ(run({"frobnicate"}).code, 1);
  EXPECT_EQ(run({}).code, 1);
}

TEST(Cli, RunJsonGreedyMatchesGolden) {
  TF_REQUIRE_SHARED("golden/greedy/stories260K.json");
  const json g =
      json::parse(tf::test::read_file(tf::test::shared_path("golden/greedy/stories260K.json")));
  const json& cs = g["cases"][1];
  const Result r =
      run({"run", "-m", tf::test::shared_path(kStories), "-p", cs["prompt"].get<std::string>(),
           "-n", "64", "--temp", "0", "--json", "-t", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"], cs["prompt_ids"]);
  EXPECT_EQ(j["tokens"], cs["generated_ids"]);
  EXPECT_EQ(j["text"], cs["generated_text"]);
  EXPECT_EQ(j["stop_reason"], "length");
  EXPECT_TRUE(j["timings"].contains("predicted_per_second"));
}

// --kv-type q8_0 and --mmap change how memory is held, not what the CLI can do; an unknown
// cache type is a clean argument error.
TEST(Cli, KvTypeAndMmapOptions) {
  TF_REQUIRE_SHARED(kStories);
  const std::string m = tf::test::shared_path(kStories);
  const Result q8 = run({"run", "-m", m, "-p", "Once upon a time", "-n", "16", "--temp", "0",
                         "--kv-type", "q8_0", "--json"});
  ASSERT_EQ(q8.code, 0) << q8.err;
  EXPECT_EQ(json::parse(q8.out)["tokens"].size(), 16u);
  const Result mapped = run(
      {"run", "-m", m, "-p", "Once upon a time", "-n", "16", "--temp", "0", "--mmap", "--json"});
  const Result copied =
      run({"run", "-m", m, "-p", "Once upon a time", "-n", "16", "--temp", "0", "--json"});
  ASSERT_EQ(mapped.code, 0) << mapped.err;
  EXPECT_EQ(json::parse(mapped.out)["tokens"], json::parse(copied.out)["tokens"]);
  EXPECT_EQ(run({"run", "-m", m, "-p", "hi", "--kv-type", "q4"}).code, 1);
  const Result b =
      run({"bench", "-m", m, "-p", "16", "-n", "4", "-r", "1", "--kv-type", "q8_0", "--json"});
  ASSERT_EQ(b.code, 0) << b.err;
  const json bj = json::parse(b.out);
  EXPECT_GT(bj["memory"]["resident_bytes"].get<double>(), 0.0);
  EXPECT_GT(bj["memory"]["kv_bytes"].get<double>(), 0.0);
  // The meter's figures, and batched decoding of several sequences.
  EXPECT_GT(bj["tg"]["tokens_per_joule"].get<double>(), 0.0);
  EXPECT_GT(bj["pp"]["usd_per_mtok"].get<double>(), 0.0);
  EXPECT_NE(bj["energy_source"].get<std::string>().find("W"), std::string::npos);
  const Result bs = run({"bench", "-m", m, "-p", "0", "-n", "4", "-d", "8", "-s", "3", "-r", "1",
                         "--watts", "30", "--no-rapl", "--json"});
  ASSERT_EQ(bs.code, 0) << bs.err;
  const json bsj = json::parse(bs.out);
  EXPECT_EQ(bsj["tg"]["sequences"], 3);
  EXPECT_GT(bsj["tg"]["tokens_per_s"].get<double>(), 0.0);
  EXPECT_NEAR(bsj["tg"]["joules_per_token"].get<double>() * bsj["tg"]["tokens_per_s"].get<double>(),
              30.0, 0.3);  // metered around the timed loop
  const Result rr = run({"run", "-m", m, "-p", "Once upon a time", "-n", "8", "--temp", "0",
                         "--watts", "25", "--no-rapl", "--json"});
  ASSERT_EQ(rr.code, 0) << rr.err;
  const json meter = json::parse(rr.out)["meter"];
  EXPECT_EQ(meter["energy_source"], "model");
  EXPECT_NEAR(meter["generation"]["joules"].get<double>(),
              25 * meter["generation"]["seconds"].get<double>(), 1e-9);
  EXPECT_NE(rr.err.find("tokens/J"), std::string::npos) << rr.err;
}

TEST(Cli, RunStreamsTextAndReportsSpeed) {
  TF_REQUIRE_SHARED(kStories);
  const Result r = run({"run", "-m", tf::test::shared_path(kStories), "-p", "Once upon a time",
                        "-n", "16", "--temp", "0.8", "--seed", "7"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_NE(r.err.find("tokens/s"), std::string::npos) << r.err;
  // Same seed, same text.
  const Result r2 = run({"run", "-m", tf::test::shared_path(kStories), "-p", "Once upon a time",
                         "-n", "16", "--temp", "0.8", "--seed", "7"});
  EXPECT_EQ(r.out, r2.out);
}

TEST(Cli, TokenizeVocabOnlyFile) {
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-llama-spm.gguf");
  const Result r =
      run({"tokenize", "-m", tf::test::shared_path("models/vocab/ggml-vocab-llama-spm.gguf"),
           "Hello world"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse("[1, 15043, 3186]"));
  const Result nobos =
      run({"tokenize", "-m", tf::test::shared_path("models/vocab/ggml-vocab-llama-spm.gguf"),
           "--no-bos", "Hello world"});
  EXPECT_EQ(json::parse(nobos.out), json::parse("[15043, 3186]"));
}

TEST(Cli, PerplexityJsonMatchesGolden) {
  TF_REQUIRE_SHARED("golden/ppl/story.txt");
  const Result r = run({"perplexity", "-m", tf::test::shared_path(kStories), "-f",
                        tf::test::shared_path("golden/ppl/story.txt"), "-c", "128", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_NEAR(j["ppl"].get<double>(), 4.0082, 4.0082e-3);
  EXPECT_EQ(j["chunks"].size(), 11u);
}

TEST(Cli, InfoListsMetadataAndTensors) {
  TF_REQUIRE_SHARED(kStories);
  const Result r = run({"info", tf::test::shared_path(kStories)});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("general.architecture"), std::string::npos);
  EXPECT_NE(r.out.find("blk.4.ffn_down.weight"), std::string::npos);
  EXPECT_NE(r.out.find("tensors (48)"), std::string::npos);
}

}  // namespace

namespace {

// run --json-schema: whatever the seed, the output is JSON valid against the schema; a bad
// schema file is one clear error line naming the file and the keyword.
TEST(Cli, RunJsonSchemaGivesValidJson) {
  TF_REQUIRE_SHARED(kStories);
  const std::string schema = tf::test::tmp_path("schema.json");
  tf::test::write_file(schema, R"({"type": "object", "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 12},
      "age": {"type": "integer", "minimum": 1, "maximum": 99},
      "likes": {"type": "array", "items": {"enum": ["cats", "dogs"]}, "maxItems": 2}},
      "required": ["name", "age"]})");
  for (const char* seed : {"1", "2", "3"}) {
    const Result r =
        run({"run", "-m", tf::test::shared_path(kStories), "-p", "Once upon a time", "-n", "200",
             "--temp", "1", "--seed", seed, "--json-schema", schema, "--json", "-t", "1"});
    ASSERT_EQ(r.code, 0) << r.err;
    const json out = json::parse(r.out);
    SCOPED_TRACE(out["text"].get<std::string>());
    EXPECT_EQ(out["stop_reason"], "eos");
    const json v = json::parse(out["text"].get<std::string>());
    ASSERT_TRUE(v.is_object());
    ASSERT_TRUE(v["name"].is_string());
    EXPECT_GE(v["name"].get<std::string>().size(), 1u);
    ASSERT_TRUE(v["age"].is_number_integer());
    EXPECT_GE(v["age"].get<int>(), 1);
    EXPECT_LE(v["age"].get<int>(), 99);
    if (v.contains("likes")) {
      EXPECT_LE(v["likes"].size(), 2u);
      for (const auto& x : v["likes"]) EXPECT_TRUE(x == "cats" || x == "dogs");
    }
    for (const auto& [k, _] : v.items())
      EXPECT_TRUE(k == "name" || k == "age" || k == "likes") << k;
  }
  tf::test::write_file(schema, R"({"type": "object", "patternProperties": {"a": {}}})");
  const Result bad =
      run({"run", "-m", tf::test::shared_path(kStories), "-p", "x", "--json-schema", schema});
  tf::test::expect_clean_error(bad, "patternProperties");
  std::filesystem::remove(schema);
}

}  // namespace
