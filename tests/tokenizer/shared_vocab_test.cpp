// Behaviour on the real vocabularies in shared/: BOS/EOS rules, special tokens, end of
// generation, round trips, streaming, and hostile input.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <random>

#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace tf {
namespace {

using test::escaped;
using test::ids_str;
using test::shared_tokenizer;

const std::string kVocab = "models/vocab/";

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const int n = unicode::utf8_check(std::string_view(s).substr(i));
    if (n <= 0) return false;
    i += n;
  }
  return true;
}

std::vector<std::string> sample_texts() {
  std::vector<std::string> texts;
  const std::string rel = "golden/tokenize/tokenize.json";
  if (std::filesystem::exists(test::shared_path(rel))) {
    auto j = nlohmann::json::parse(test::read_file(test::shared_path(rel)));
    for (const auto& s : j["strings"]) texts.push_back(s.get<std::string>());
  }
  texts.push_back("Hello world! \xF0\x9F\xA6\x99 \xE4\xB8\x96\xE7\x95\x8C  \t\n\n x");
  return texts;
}

TEST(SharedVocab, BosEosRules) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  const Tokenizer& spm = shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf");
  EXPECT_TRUE(spm.add_bos());
  EXPECT_FALSE(spm.add_eos());
  EXPECT_EQ(spm.encode("Hello", true, false).front(), 1);
  EXPECT_EQ(spm.encode("Hello", false, false).front(), 15043);  // "▁Hello"

  const Tokenizer& l3 = shared_tokenizer(kVocab + "ggml-vocab-llama-bpe.gguf");
  EXPECT_TRUE(l3.add_bos());  // llama-bpe pre type, no add_bos_token key
  EXPECT_EQ(l3.encode("Hi", true, false), (std::vector<TokenId>{128000, 13347}));

  const Tokenizer& qwen = shared_tokenizer(kVocab + "ggml-vocab-qwen3.gguf");
  EXPECT_FALSE(qwen.add_bos());  // add_bos_token = false in the file
  EXPECT_EQ(qwen.encode("Hi", true, false), qwen.encode("Hi", false, false));

  const Tokenizer& gpt2 = shared_tokenizer(kVocab + "ggml-vocab-gpt-2.gguf");
  EXPECT_FALSE(gpt2.add_bos());

  const Tokenizer& bert = shared_tokenizer(kVocab + "ggml-vocab-bert-bge.gguf");
  const auto b = bert.encode("hello", true, false);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b.front(), 101);
  EXPECT_EQ(b.back(), 102);
}

TEST(SharedVocab, InvalidSpecialIdsAreAbsent) {
  TF_REQUIRE_SHARED("models/gguf/stories260K.gguf");
  const Tokenizer& t = shared_tokenizer("models/gguf/stories260K.gguf");
  EXPECT_EQ(t.sep(), -1);  // stored as 0xFFFFFFFF
  EXPECT_EQ(t.pad(), -1);
  EXPECT_EQ(t.bos(), 1);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_TRUE(t.is_eog(2));
  EXPECT_FALSE(t.is_eog(1));
}

TEST(SharedVocab, ParseSpecial) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  const Tokenizer& spm = shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm.encode("<s>Hello</s>", false, true), (std::vector<TokenId>{1, 15043, 2}));
  const auto plain = spm.encode("<s>Hello</s>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);

  // Qwen3's <think> is user-defined: matched even without parse_special.
  const Tokenizer& qwen = shared_tokenizer(kVocab + "ggml-vocab-qwen3.gguf");
  EXPECT_EQ(qwen.encode("<think>", false, false), std::vector<TokenId>{151667});
  EXPECT_EQ(qwen.encode("<|im_start|>", false, true), std::vector<TokenId>{151644});
  EXPECT_GT(qwen.encode("<|im_start|>", false, false).size(), 1u);

  // Phi-3's special tokens eat the whitespace after them (rstrip), as in llama.cpp.
  const Tokenizer& phi = shared_tokenizer(kVocab + "ggml-vocab-phi-3.gguf");
  EXPECT_EQ(phi.encode("<|user|>\nHi", false, true), phi.encode("<|user|>Hi", false, true));
  EXPECT_EQ(phi.encode("<|user|>Hi", false, true).front(), 32010);
}

TEST(SharedVocab, EndOfGeneration) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-qwen3.gguf");
  const Tokenizer& qwen = shared_tokenizer(kVocab + "ggml-vocab-qwen3.gguf");
  EXPECT_TRUE(qwen.is_eog(151645));  // <|im_end|>, the eos
  EXPECT_TRUE(qwen.is_eog(151643));  // <|endoftext|>
  EXPECT_FALSE(qwen.is_eog(151644));
  const Tokenizer& l3 = shared_tokenizer(kVocab + "ggml-vocab-llama-bpe.gguf");
  EXPECT_TRUE(l3.is_eog(128001));
  EXPECT_TRUE(l3.is_eog(128009));  // <|eot_id|>
  EXPECT_EQ(l3.eot(), 128009);
  EXPECT_FALSE(l3.is_eog(128000));
}

TEST(SharedVocab, PiecesOfEachKind) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  const Tokenizer& spm = shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm.token_to_piece(15043), " Hello");
  EXPECT_EQ(spm.token_to_piece(13), "\n");  // <0x0A>
  EXPECT_EQ(spm.token_to_piece(1), "");
  EXPECT_EQ(spm.token_to_piece(1, true), "<s>");
  EXPECT_EQ(spm.token_attr(13), TokenAttr::BYTE);
  const Tokenizer& gpt2 = shared_tokenizer(kVocab + "ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2.token_text(262), "\xC4\xA0the");
  EXPECT_EQ(gpt2.token_to_piece(262), " the");
}

// Byte-level BPE renders every input byte back; SPM with byte fallback too, minus the
// prefix space (detokenize removes it) and around special tokens.
TEST(SharedVocab, RoundTrip) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-gpt-2.gguf");
  for (const char* name :
       {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen3.gguf",
        "ggml-vocab-deepseek-llm.gguf", "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-falcon.gguf",
        "ggml-vocab-mpt.gguf", "ggml-vocab-gpt-neox.gguf", "ggml-vocab-starcoder.gguf",
        "ggml-vocab-refact.gguf"}) {
    const Tokenizer& t = shared_tokenizer(kVocab + name);
    for (const std::string& s : sample_texts()) {
      std::string back;
      for (TokenId id : t.encode(s, false, false)) back += t.token_to_piece(id);
      EXPECT_EQ(back, s) << name << ": \"" << escaped(s) << "\"";
    }
  }
  for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"}) {
    const Tokenizer& t = shared_tokenizer(kVocab + name);
    for (const std::string& s : sample_texts()) {
      if (s.find("</s>") != std::string::npos) continue;  // a user-defined token in phi-3
      EXPECT_EQ(t.detokenize(t.encode(s, false, false)), s) << name << ": \"" << escaped(s) << "\"";
    }
  }
}

TEST(SharedVocab, StreamDecoderMatchesWholeDecode) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-spm.gguf");
  for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-bpe.gguf"}) {
    const Tokenizer& t = shared_tokenizer(kVocab + name);
    for (const std::string& s : sample_texts()) {
      const auto ids = t.encode(s, false, false);
      StreamDecoder sd(t);
      std::string streamed, whole;
      for (TokenId id : ids) {
        const std::string part = sd.push(id);
        EXPECT_TRUE(valid_utf8(part)) << name << ": \"" << escaped(s) << "\"";
        streamed += part;
        whole += t.token_to_piece(id);
      }
      streamed += sd.flush();
      EXPECT_EQ(streamed, whole) << name << ": \"" << escaped(s) << "\"";
    }
  }
  // The family emoji is split into byte tokens by the SPM vocab: nothing until complete.
  const Tokenizer& spm = shared_tokenizer(kVocab + "ggml-vocab-llama-spm.gguf");
  const auto ids = spm.encode("\xF0\x9F\x91\xA8", false, false);  // U+1F468
  ASSERT_EQ(ids.size(), 5u);                                      // "▁" and four byte tokens
  StreamDecoder sd(spm);
  EXPECT_EQ(sd.push(ids[0]), " ");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "");
  EXPECT_EQ(sd.push(ids[3]), "");
  EXPECT_EQ(sd.push(ids[4]), "\xF0\x9F\x91\xA8");
}

TEST(SharedVocab, HostileInputNeverCrashes) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-gpt-2.gguf");
  std::mt19937 rng(1234);
  std::vector<std::string> inputs = {"\xFF\xFE\xFD",
                                     "\xC3",
                                     "\xE4\xB8",
                                     "\xF0\x9F\x98",
                                     "\xED\xA0\x80 surrogate",
                                     "\xF4\x90\x80\x80 too big",
                                     std::string(3, '\0') + "nul",
                                     "<s><s></s>"};
  for (int i = 0; i < 12; ++i) {
    std::string s;
    const int len = 1 + rng() % 200;
    for (int k = 0; k < len; ++k) s += static_cast<char>(rng() & 0xFF);
    inputs.push_back(s);
  }
  for (const char* rel :
       {"models/vocab/ggml-vocab-gpt-2.gguf", "models/vocab/ggml-vocab-llama-spm.gguf",
        "models/vocab/ggml-vocab-llama-bpe.gguf", "models/vocab/ggml-vocab-bert-bge.gguf",
        "models/vocab/ggml-vocab-deepseek-llm.gguf", "models/vocab/ggml-vocab-qwen3.gguf",
        "models/vocab/ggml-vocab-falcon.gguf", "models/gguf/TinyStories-656K.f16.gguf"}) {
    if (!std::filesystem::exists(test::shared_path(rel))) continue;
    const Tokenizer& t = shared_tokenizer(rel);
    for (const std::string& s : inputs) {
      for (bool special : {false, true}) {
        const auto ids = t.encode(s, special, special);
        for (TokenId id : ids) ASSERT_TRUE(id >= 0 && id < t.n_vocab()) << rel;
        StreamDecoder sd(t, special);
        std::string out;
        for (TokenId id : ids) out += sd.push(id);
        out += sd.flush();
        EXPECT_TRUE(valid_utf8(out)) << rel;
        (void)t.detokenize(ids, special, special);
      }
    }
  }
}

TEST(SharedVocab, LargeVocabularyLoadsQuickly) {
  TF_REQUIRE_SHARED(kVocab + "ggml-vocab-llama-bpe.gguf");
  auto file = gguf::File::open(test::shared_path(kVocab + "ggml-vocab-llama-bpe.gguf"));
  VocabData d = Tokenizer::read_gguf(*file);
  ASSERT_EQ(d.tokens.size(), 128256u);
  ASSERT_EQ(d.merges.size(), 280147u);
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = Tokenizer::from_vocab(std::move(d));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Typically ~0.2 s; generous for a loaded 2-core machine or a sanitizer build.
  EXPECT_LT(s, 5.0);
  EXPECT_EQ(tok->n_vocab(), 128256);
}

}  // namespace
}  // namespace tf
