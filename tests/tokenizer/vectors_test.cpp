// Token-for-token agreement with llama.cpp on the shared test data:
//  * models/vocab/*.gguf.inp/.out (llama.cpp's test-tokenizer-0 vectors),
//  * golden/tokenize/tokenize.json (llama-tokenize on every vocab and golden model),
//  * golden/greedy/*.json prompt ids (llama-server /tokenize, add_special + parse_special).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "tokenizer_test_util.h"

namespace tf {
namespace {

using test::escaped;
using test::ids_str;
using test::shared_tokenizer;

std::vector<std::string> split_inputs(const std::string& text) {
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> parts;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(kSep, pos)) != std::string::npos; pos = hit + kSep.size())
    parts.push_back(text.substr(pos, hit - pos));
  return parts;  // text after the last separator is not a test string
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

struct VectorFile {
  const char* inputs;  // basename of .inp/.out under models/vocab
  const char* gguf;    // basename of the vocabulary under models/vocab ("" = none)
};

class LlamaCppVectors : public ::testing::TestWithParam<VectorFile> {};

TEST_P(LlamaCppVectors, MatchTokenForToken) {
  const VectorFile& p = GetParam();
  if (!*p.gguf) GTEST_SKIP() << p.inputs << " has no GGUF vocabulary in shared/";
  const std::string dir = "models/vocab/";
  TF_REQUIRE_SHARED(dir + p.gguf);
  TF_REQUIRE_SHARED(dir + p.inputs + ".inp");
  const auto inputs = split_inputs(test::read_file(test::shared_path(dir + p.inputs + ".inp")));
  const auto expected = read_outputs(test::read_file(test::shared_path(dir + p.inputs + ".out")));
  ASSERT_GE(expected.size(), inputs.size());
  ASSERT_GT(inputs.size(), 0u);

  const Tokenizer& tok = shared_tokenizer(dir + p.gguf);
  int passed = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto got = tok.encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
    if (got == expected[i]) {
      ++passed;
    } else {
      ADD_FAILURE() << p.gguf << " string " << i << " \"" << escaped(inputs[i]) << "\"\n  want "
                    << ids_str(expected[i]) << "\n  got  " << ids_str(got);
    }
  }
  std::cout << "[ vectors  ] " << p.gguf << ": " << passed << "/" << inputs.size() << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Vocab, LlamaCppVectors,
    ::testing::Values(VectorFile{"ggml-vocab-bert-bge.gguf", "ggml-vocab-bert-bge.gguf"},
                      VectorFile{"ggml-vocab-command-r.gguf", ""},
                      VectorFile{"ggml-vocab-deepseek-coder.gguf",
                                 "ggml-vocab-deepseek-coder.gguf"},
                      VectorFile{"ggml-vocab-deepseek-llm.gguf", "ggml-vocab-deepseek-llm.gguf"},
                      VectorFile{"ggml-vocab-falcon.gguf", "ggml-vocab-falcon.gguf"},
                      VectorFile{"ggml-vocab-gpt-2.gguf", "ggml-vocab-gpt-2.gguf"},
                      VectorFile{"ggml-vocab-llama-bpe.gguf", "ggml-vocab-llama-bpe.gguf"},
                      VectorFile{"ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-spm.gguf"},
                      VectorFile{"ggml-vocab-mpt.gguf", "ggml-vocab-mpt.gguf"},
                      VectorFile{"ggml-vocab-phi-3.gguf", "ggml-vocab-phi-3.gguf"},
                      VectorFile{"ggml-vocab-qwen2.gguf", "ggml-vocab-qwen3.gguf"},
                      VectorFile{"ggml-vocab-refact.gguf", "ggml-vocab-refact.gguf"},
                      VectorFile{"ggml-vocab-starcoder.gguf", "ggml-vocab-starcoder.gguf"}),
    [](const ::testing::TestParamInfo<VectorFile>& info) {
      std::string name = info.param.inputs;
      name = name.substr(std::string("ggml-vocab-").size());
      name = name.substr(0, name.find(".gguf"));
      for (char& c : name)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return name;
    });

// golden/tokenize/tokenize.json: one test per file, every string.
class GoldenTokenize : public ::testing::TestWithParam<const char*> {};

const nlohmann::json& tokenize_json() {
  static const nlohmann::json j =
      nlohmann::json::parse(test::read_file(test::shared_path("golden/tokenize/tokenize.json")));
  return j;
}

TEST_P(GoldenTokenize, MatchesLlamaTokenize) {
  const std::string rel = GetParam();
  TF_REQUIRE_SHARED("golden/tokenize/tokenize.json");
  TF_REQUIRE_SHARED(rel);
  const auto& j = tokenize_json();
  ASSERT_TRUE(j["results"].contains(rel)) << rel;
  const auto& strings = j["strings"];
  const auto& ids = j["results"][rel]["ids"];
  ASSERT_EQ(ids.size(), strings.size());

  const Tokenizer& tok = shared_tokenizer(rel);
  int passed = 0, aborted = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string s = strings[i].get<std::string>();
    const auto got = tok.encode(s, false, false);
    if (ids[i].is_null()) {
      // llama.cpp aborted here (SPM vocab without byte tokens); we only need to survive,
      // and every id must be valid.
      ++aborted;
      for (TokenId id : got) EXPECT_TRUE(id >= 0 && id < tok.n_vocab());
      continue;
    }
    const auto want = ids[i].get<std::vector<TokenId>>();
    if (got == want) {
      ++passed;
    } else {
      ADD_FAILURE() << rel << " string " << i << " \"" << escaped(s) << "\"\n  want "
                    << ids_str(want) << "\n  got  " << ids_str(got);
    }
  }
  std::cout << "[ golden   ] " << rel << ": " << passed << "/" << strings.size() - aborted
            << (aborted ? " (+" + std::to_string(aborted) + " where llama.cpp aborted)" : "")
            << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Files, GoldenTokenize,
    ::testing::Values(
        "models/vocab/ggml-vocab-baichuan.gguf", "models/vocab/ggml-vocab-bert-bge.gguf",
        "models/vocab/ggml-vocab-deepseek-coder.gguf", "models/vocab/ggml-vocab-deepseek-llm.gguf",
        "models/vocab/ggml-vocab-falcon.gguf", "models/vocab/ggml-vocab-gpt-2.gguf",
        "models/vocab/ggml-vocab-gpt-neox.gguf", "models/vocab/ggml-vocab-llama-bpe.gguf",
        "models/vocab/ggml-vocab-llama-spm.gguf", "models/vocab/ggml-vocab-mpt.gguf",
        "models/vocab/ggml-vocab-phi-3.gguf", "models/vocab/ggml-vocab-qwen3.gguf",
        "models/vocab/ggml-vocab-refact.gguf", "models/vocab/ggml-vocab-starcoder.gguf",
        "models/gguf/stories260K.gguf", "models/gguf/TinyStories-656K.f16.gguf",
        "models/gguf/tinystories-656k-q8_0.gguf",
        "models/gguf/TinyStories-656K.fixed-scores.f16.gguf",
        "models/gguf/TinyStories-656K.fixed-scores.q8_0.gguf"),
    [](const ::testing::TestParamInfo<const char*>& info) {
      std::string name = info.param;
      name = name.substr(name.rfind('/') + 1);
      name = name.substr(0, name.rfind(".gguf"));
      for (char& c : name)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return name;
    });

// golden/greedy/*.json: the prompt ids llama-server fed each model.
class GoldenPrompts : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenPrompts, PromptIdsMatch) {
  const std::string rel = std::string("golden/greedy/") + GetParam();
  TF_REQUIRE_SHARED(rel);
  const auto j = nlohmann::json::parse(test::read_file(test::shared_path(rel)));
  const std::string model = j["model_path"].get<std::string>();
  TF_REQUIRE_SHARED(model);
  const Tokenizer& tok = shared_tokenizer(model);
  ASSERT_FALSE(j["cases"].empty());
  for (const auto& c : j["cases"]) {
    const std::string prompt = c["prompt"].get<std::string>();
    const auto want = c["prompt_ids"].get<std::vector<TokenId>>();
    EXPECT_EQ(ids_str(tok.encode(prompt, true, true)), ids_str(want))
        << model << " prompt \"" << prompt << "\"";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenPrompts,
                         ::testing::Values("stories260K.json", "TinyStories-656K.f16.json",
                                           "tinystories-656k-q8_0.json",
                                           "TinyStories-656K.fixed-scores.f16.json",
                                           "TinyStories-656K.fixed-scores.q8_0.json"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           name = name.substr(0, name.rfind(".json"));
                           for (char& c : name)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

}  // namespace
}  // namespace tf
