// tokenizer.json imported as tokenizer.ggml.* keys (format/hf_import.h) must tokenize exactly
// as the GGUF vocabularies of the same tokenizers do:
//  * TinyStories-656K (Llama-style BPE with byte fallback) against the fixed-scores GGUF,
//    whose scores are -(HF merge rank) (MANIFEST note 6), on the golden strings, the
//    perplexity story and the greedy prompts, and against llama.cpp's own ids for them;
//  * tokenizers/llama3 and tokenizers/qwen3 (byte-level BPE) against llama.cpp's test vectors
//    (.inp/.out) and the vocab GGUFs rebuilt from the same files by llama.cpp's converter.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "format/hf_import.h"
#include "hf_test_util.h"
#include "tokenizer_test_util.h"

namespace tf {
namespace {

using nlohmann::json;
using test::ids_str;
using test::shared_tokenizer;

std::unique_ptr<Tokenizer> from_metadata(const hf::Metadata& kv) {
  gguf::Writer w;
  for (const auto& [k, v] : kv) w.set(k, v);
  const std::vector<uint8_t> bytes = w.to_bytes();
  auto f = gguf::File::from_memory(bytes.data(), bytes.size(), "imported");
  return Tokenizer::from_gguf(*f);  // copies what it needs
}

const gguf::Value* find(const hf::Metadata& kv, const std::string& key) {
  for (const auto& [k, v] : kv)
    if (k == key) return &v;
  return nullptr;
}

// Every tokenizer key of the reference GGUF must be in the import with the same value.
void expect_same_tokenizer_keys(const hf::Metadata& kv, const std::string& gguf_rel,
                                const std::vector<std::string>& skip = {}) {
  auto ref = gguf::File::open(test::shared_path(gguf_rel));
  int compared = 0;
  for (const auto& [key, value] : ref->metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    if (std::find(skip.begin(), skip.end(), key) != skip.end()) continue;
    const gguf::Value* mine = find(kv, key);
    if (!mine) {
      ADD_FAILURE() << gguf_rel << ": key " << key << " missing from the import";
      continue;
    }
    EXPECT_EQ(mine->to_string(SIZE_MAX), value.to_string(SIZE_MAX)) << gguf_rel << ": " << key;
    ++compared;
  }
  EXPECT_GE(compared, 5);
}

std::vector<std::string> split_inputs(const std::string& text) {
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> parts;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(kSep, pos)) != std::string::npos; pos = hit + kSep.size())
    parts.push_back(text.substr(pos, hit - pos));
  return parts;
}

std::vector<std::vector<TokenId>> read_outputs(const std::string& text) {
  std::vector<std::vector<TokenId>> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream ids(line);
    std::vector<TokenId> v;
    for (long id; ids >> id;) v.push_back(static_cast<TokenId>(id));
    out.push_back(std::move(v));
  }
  return out;
}

TEST(HfTokenizer, TinyStoriesMatchesFixedScoresGguf) {
  const std::string dir = "models/hf/TinyStories-656K";
  const std::string twin = "models/gguf/TinyStories-656K.fixed-scores.f16.gguf";
  TF_REQUIRE_SHARED(dir + "/tokenizer.json");
  TF_REQUIRE_SHARED(twin);
  TF_REQUIRE_SHARED("golden/tokenize/tokenize.json");
  const json config = json::parse(test::read_file(test::shared_path(dir + "/config.json")));
  const hf::Metadata kv = hf::import_tokenizer(test::shared_path(dir), config, "llama");
  // Tokens, types, the score rule, special ids and flags: all as in the fixed GGUF.
  expect_same_tokenizer_keys(kv, twin);
  auto mine = from_metadata(kv);
  const Tokenizer& ref = shared_tokenizer(twin);

  const json tj = json::parse(test::read_file(test::shared_path("golden/tokenize/tokenize.json")));
  const json& llama_ids =
      tj["results"]["models/gguf/TinyStories-656K.fixed-scores.f16.gguf"]["ids"];
  std::vector<std::string> texts;
  for (const json& s : tj["strings"]) texts.push_back(s.get<std::string>());
  int with_llama = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto got = mine->encode(texts[i], false, false);
    EXPECT_EQ(ids_str(got), ids_str(ref.encode(texts[i], false, false))) << "string " << i;
    if (!llama_ids[i].is_null()) {  // llama.cpp aborts on characters the vocabulary lacks
      EXPECT_EQ(ids_str(got), ids_str(llama_ids[i].get<std::vector<TokenId>>())) << "string " << i;
      ++with_llama;
    }
  }
  EXPECT_GE(with_llama, 5);

  // The perplexity story: llama.cpp's 655 ids (BOS included) on the fixed file.
  const json ppl = json::parse(test::read_file(test::shared_path("golden/ppl/ppl.json")));
  std::string story = test::read_file(test::shared_path("golden/ppl/story.txt"));
  if (!story.empty() && story.back() == '\n') story.pop_back();  // as llama-perplexity reads it
  int stories = 0;
  for (const json& m : ppl["models"]) {
    if (m["model_path"].get<std::string>().find("fixed-scores.f16") == std::string::npos) continue;
    EXPECT_EQ(ids_str(mine->encode(story, true, false)),
              ids_str(m["ids"].get<std::vector<TokenId>>()));
    ++stories;
  }
  EXPECT_EQ(stories, 1);

  // The greedy prompts, as llama-server tokenized them (BOS, special tokens parsed).
  const json g = json::parse(
      test::read_file(test::shared_path("golden/greedy/TinyStories-656K.fixed-scores.f16.json")));
  for (const json& c : g["cases"])
    EXPECT_EQ(ids_str(mine->encode(c["prompt"].get<std::string>(), true, true)),
              ids_str(c["prompt_ids"].get<std::vector<TokenId>>()))
        << c["prompt"];
}

struct BpeCase {
  const char* dir;      // under models/tokenizers
  const char* vectors;  // .inp/.out basename under models/vocab
  const char* gguf;     // the vocab GGUF built from the same files
  const char* config;   // the config.json llama.cpp's converter was given (MANIFEST note 7)
  const char* arch;
};

class HfByteLevel : public ::testing::TestWithParam<BpeCase> {};

TEST_P(HfByteLevel, MatchesVectorsAndVocabGguf) {
  const BpeCase& p = GetParam();
  const std::string dir = std::string("models/tokenizers/") + p.dir;
  const std::string vocab = std::string("models/vocab/") + p.vectors;
  TF_REQUIRE_SHARED(dir + "/tokenizer.json");
  TF_REQUIRE_SHARED(vocab + ".inp");
  TF_REQUIRE_SHARED(std::string("models/vocab/") + p.gguf);
  const hf::Metadata kv =
      hf::import_tokenizer(test::shared_path(dir), json::parse(p.config), p.arch);
  expect_same_tokenizer_keys(kv, std::string("models/vocab/") + p.gguf);
  auto tok = from_metadata(kv);
  const auto inputs = split_inputs(test::read_file(test::shared_path(vocab + ".inp")));
  const auto expected = read_outputs(test::read_file(test::shared_path(vocab + ".out")));
  ASSERT_GT(inputs.size(), 40u);
  ASSERT_GE(expected.size(), inputs.size());
  int passed = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto got = tok->encode(inputs[i], false, false);
    passed += got == expected[i];
    EXPECT_EQ(ids_str(got), ids_str(expected[i]))
        << p.dir << " string " << i << " \"" << test::escaped(inputs[i]) << "\"";
  }
  std::cout << "[ hf vocab ] " << p.dir << ": " << passed << "/" << inputs.size() << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, HfByteLevel,
    ::testing::Values(BpeCase{"llama3", "ggml-vocab-llama-bpe.gguf", "ggml-vocab-llama-bpe.gguf",
                              R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 128256,
                    "bos_token_id": 128000, "eos_token_id": 128001})",
                              "llama"},
                      BpeCase{"qwen3", "ggml-vocab-qwen2.gguf", "ggml-vocab-qwen3.gguf",
                              R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936,
                    "bos_token_id": 151643, "eos_token_id": 151643})",
                              "qwen2"}),
    [](const auto& info) { return std::string(info.param.dir); });

// ----- what is not supported is an error that says so -----

std::string import_error(const std::string& tokenizer_json) {
  test::TempDir d("hf-tok");
  test::write_text(d / "tokenizer.json", tokenizer_json);
  try {
    hf::import_tokenizer(d.path, json(), "llama");
    return "";
  } catch (const tf::Error& e) {
    return e.what();
  }
}

TEST(HfTokenizer, UnsupportedIsAClearError) {
  EXPECT_NE(import_error(R"({"model": {"type": "Unigram", "vocab": []}})")
                .find("unsupported tokenizer model 'Unigram'"),
            std::string::npos);
  EXPECT_NE(import_error(R"({"model": {"type": "WordPiece", "vocab": {}}})")
                .find("unsupported tokenizer model 'WordPiece'"),
            std::string::npos);
  const std::string bpe =
      R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";
  EXPECT_NE(import_error("{" + bpe + "}").find("neither byte-level"), std::string::npos);
  EXPECT_NE(import_error("{" + bpe +
                         R"(, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                 {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false},
                 {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}})")
                .find("is not one of the known ones"),
            std::string::npos);
  EXPECT_NE(import_error("{" + bpe +
                         R"(, "normalizer": {"type": "Lowercase"},
                 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}})")
                .find("unsupported normalizer 'Lowercase'"),
            std::string::npos);
  EXPECT_NE(
      import_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}})").find("share id"),
      std::string::npos);
  EXPECT_NE(import_error(R"({"model": {"type": "BPE", "vocab": {"a": -3}}})").find("invalid id"),
            std::string::npos);
  EXPECT_NE(import_error("{\"model\": ").find("not valid JSON"), std::string::npos);
  EXPECT_EQ(
      import_error(
          "{" + bpe +
          R"(, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}})"),
      "");  // GPT-2 style is supported
}

}  // namespace
}  // namespace tf
