// Tokenizers built from small in-memory vocabularies: the algorithms' rules, special
// tokens, detokenization, and clean errors for corrupt metadata. No shared data needed.
#include <gtest/gtest.h>

#include <random>

#include "format/gguf.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace tf {
namespace {

const std::string kSp = "\xE2\x96\x81";  // U+2581

// SPM vocabulary: <unk> <s> </s>, 256 byte tokens, then the given pieces with scores.
VocabData spm_vocab(const std::vector<std::pair<std::string, float>>& pieces,
                    bool byte_tokens = true) {
  VocabData d;
  d.model = "llama";
  d.tokens = {"<unk>", "<s>", "</s>"};
  d.types = {2, 3, 3};
  if (byte_tokens) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      d.tokens.push_back(name);
      d.types.push_back(6);
    }
  }
  for (const auto& [text, score] : pieces) {
    d.tokens.push_back(text);
    d.types.push_back(1);
  }
  d.scores.assign(d.tokens.size(), 0.0f);
  for (size_t i = 0; i < pieces.size(); ++i)
    d.scores[d.tokens.size() - pieces.size() + i] = pieces[i].second;
  return d;
}

TokenId id_of(const Tokenizer& t, const std::string& text) {
  for (TokenId i = 0; i < t.n_vocab(); ++i)
    if (t.token_text(i) == text) return i;
  return -1;
}

std::vector<TokenId> ids_of(const Tokenizer& t, const std::vector<std::string>& texts) {
  std::vector<TokenId> v;
  for (const auto& s : texts) v.push_back(id_of(t, s));
  return v;
}

// Byte-level BPE vocabulary: the 256 byte characters, then merges' results.
VocabData bpe_vocab(const std::vector<std::string>& merges, const std::string& pre = "gpt-2") {
  VocabData d;
  d.model = "gpt2";
  d.pre = pre;
  for (int b = 0; b < 256; ++b) d.tokens.push_back(unicode::byte_to_unicode(uint8_t(b)));
  for (const auto& m : merges) {
    const size_t sp = m.find(' ', 1);
    if (sp != std::string::npos) d.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  d.tokens.push_back("<|endoftext|>");
  d.types.assign(d.tokens.size(), 1);
  d.types.back() = 3;
  d.merges = merges;
  d.eos_id = d.bos_id = int64_t(d.tokens.size() - 1);
  return d;
}

TEST(SpmTokenizer, MergesHighestScoreFirst) {
  // "abc": "ab" (score -1) beats "bc" (score -2), then "ab"+"c" is not a token.
  auto t = Tokenizer::from_vocab(spm_vocab(
      {{"a", -5}, {"b", -5}, {"c", -5}, {"ab", -1}, {"bc", -2}, {kSp, -5}, {kSp + "a", -3}}));
  EXPECT_EQ(t->encode("abc", false, false), ids_of(*t, {kSp, "ab", "c"}));
  // With "bc" scoring higher, the other pairing wins.
  auto t2 = Tokenizer::from_vocab(
      spm_vocab({{"a", -5}, {"b", -5}, {"c", -5}, {"ab", -2}, {"bc", -1}, {kSp, -5}}));
  EXPECT_EQ(t2->encode("abc", false, false), ids_of(*t2, {kSp, "a", "bc"}));
}

TEST(SpmTokenizer, EqualScoresMergeLeftmostFirst) {
  auto t = Tokenizer::from_vocab(spm_vocab({{"a", -5}, {"aa", -1}, {kSp, -9}}));
  EXPECT_EQ(t->encode("aaa", false, false), ids_of(*t, {kSp, "aa", "a"}));
}

TEST(SpmTokenizer, SpacePrefixEscapingAndBos) {
  auto t = Tokenizer::from_vocab(
      spm_vocab({{"h", -5}, {"i", -5}, {"hi", -1}, {kSp, -5}, {kSp + "hi", 0}}));
  EXPECT_TRUE(t->add_bos());
  EXPECT_FALSE(t->add_eos());
  EXPECT_EQ(t->encode("hi hi", true, false),
            (std::vector<TokenId>{1, id_of(*t, kSp + "hi"), id_of(*t, kSp + "hi")}));
  EXPECT_EQ(t->encode("", true, false), std::vector<TokenId>{1});
  EXPECT_TRUE(t->encode("", false, false).empty());

  VocabData d = spm_vocab({{"h", -5}, {"i", -5}, {"hi", -1}, {kSp, -5}});
  d.add_space_prefix = false;
  d.add_bos = false;
  d.add_eos = true;
  auto t2 = Tokenizer::from_vocab(std::move(d));
  EXPECT_EQ(t2->encode("hi", true, false), (std::vector<TokenId>{id_of(*t2, "hi"), 2}));
}

TEST(SpmTokenizer, ByteFallbackAndUnknown) {
  auto t = Tokenizer::from_vocab(spm_vocab({{"a", -1}, {kSp, -1}}));
  // U+00E9 is not in the vocabulary: its two UTF-8 bytes become <0xC3><0xA9>.
  EXPECT_EQ(t->encode("\xC3\xA9", false, false),
            (std::vector<TokenId>{id_of(*t, kSp), id_of(*t, "<0xC3>"), id_of(*t, "<0xA9>")}));
  EXPECT_EQ(t->token_to_piece(id_of(*t, "<0xC3>")), "\xC3");
  // Invalid UTF-8 passes through byte by byte.
  EXPECT_EQ(t->encode("\xFF", false, false), (std::vector<TokenId>{id_of(*t, kSp), 3 + 0xFF}));

  // Without byte tokens (llama.cpp aborts here) an unknown character is one <unk>.
  auto nb = Tokenizer::from_vocab(spm_vocab({{"a", -1}, {kSp, -1}}, /*byte_tokens=*/false));
  EXPECT_EQ(nb->encode("a\xC3\xA9(a", false, false),
            (std::vector<TokenId>{id_of(*nb, kSp), id_of(*nb, "a"), 0, 0, id_of(*nb, "a")}));
}

TEST(SpmTokenizer, PiecesAndDetokenize) {
  auto t = Tokenizer::from_vocab(
      spm_vocab({{"h", -5}, {"i", -5}, {"hi", -1}, {kSp, -5}, {kSp + "hi", 0}}));
  const TokenId hi = id_of(*t, kSp + "hi");
  EXPECT_EQ(t->token_to_piece(hi), " hi");
  EXPECT_EQ(t->token_to_piece(1), "");
  EXPECT_EQ(t->token_to_piece(1, true), "<s>");
  EXPECT_EQ(t->token_to_piece(id_of(*t, "<0x0A>")), "\n");
  EXPECT_EQ(t->token_to_piece(-1), "");
  EXPECT_EQ(t->token_to_piece(1 << 30), "");
  EXPECT_EQ(t->token_text(1 << 30), "");
  EXPECT_EQ(t->token_attr(-5), TokenAttr::UNDEFINED);
  EXPECT_EQ(t->detokenize(t->encode("hi hi", false, false)), "hi hi");
  // After a BOS the prefix space stays, whether or not remove_special drops the BOS
  // (llama.cpp's llama_detokenize does the same).
  EXPECT_EQ(t->detokenize(t->encode("hi", true, false)), " hi");
  EXPECT_EQ(t->detokenize(t->encode("hi", true, false), true), " hi");
  EXPECT_EQ(t->detokenize({1, hi}, false, true), "<s> hi");
}

TEST(SpmTokenizer, LongInputIsFast) {
  auto t = Tokenizer::from_vocab(spm_vocab({{"a", -5}, {"aa", -1}, {"aaaa", -0.5}, {kSp, -9}}));
  const std::string s(200000, 'a');
  const auto ids = t->encode(s, false, false);
  EXPECT_EQ(ids.size(), 1u + 50000u);
}

TEST(BpeTokenizer, MergesByRank) {
  // Ranks: "h e" < "l l" < "he ll" < "o w"; "hello" merges he, ll, hell, then o stays.
  auto t = Tokenizer::from_vocab(bpe_vocab({"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"}));
  EXPECT_EQ(t->encode("hello", false, false), ids_of(*t, {"hello"}));
  EXPECT_EQ(t->encode("hello wo", false, false), ids_of(*t, {"hello", "Ġwo"}));
  EXPECT_EQ(t->token_to_piece(id_of(*t, "Ġwo")), " wo");
  EXPECT_FALSE(t->add_bos());
}

TEST(BpeTokenizer, RoundTripsAnyUtf8) {
  auto t = Tokenizer::from_vocab(bpe_vocab({"h e", "l l", "Ġ t", "Ġt h", "Ġth e"}));
  for (const std::string s :
       {"hello the world", "  tabs\tand\nnewlines\r\n", "caf\xC3\xA9 \xE2\x82\xAC",
        "\xF0\x9F\xA6\x99 emoji", "<|endoftext|> marker", ""}) {
    std::string back;
    for (TokenId id : t->encode(s, false, false)) back += t->token_to_piece(id);
    EXPECT_EQ(back, s);
  }
  // Invalid UTF-8 is replaced by U+FFFD before byte-level encoding, as llama.cpp does.
  std::string back;
  for (TokenId id : t->encode("a\xFF"
                              "b",
                              false, false))
    back += t->token_to_piece(id);
  EXPECT_EQ(back,
            "a\xEF\xBF\xBD"
            "b");
}

TEST(BpeTokenizer, SpecialTokensOnlyWithParseSpecial) {
  VocabData d = bpe_vocab({"h e"});
  d.tokens.push_back("<tool>");  // user-defined: matched even without parse_special
  d.types.push_back(4);
  auto t = Tokenizer::from_vocab(std::move(d));
  const TokenId eot = id_of(*t, "<|endoftext|>"), tool = id_of(*t, "<tool>");
  EXPECT_EQ(t->encode("he<|endoftext|>", false, true),
            (std::vector<TokenId>{id_of(*t, "he"), eot}));
  const auto plain = t->encode("he<|endoftext|>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eot), 0);
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(t->encode("<tool>he", false, false), (std::vector<TokenId>{tool, id_of(*t, "he")}));
  EXPECT_TRUE(t->is_eog(eot));
  EXPECT_EQ(t->eot(), eot);  // found by its text
  EXPECT_EQ(t->token_to_piece(eot), "");
  EXPECT_EQ(t->token_to_piece(tool), "<tool>");
}

TEST(BpeTokenizer, BosEosDefaultsFollowPreType) {
  VocabData d = bpe_vocab({"h e"}, "llama-bpe");
  const TokenId last = TokenId(d.tokens.size() - 1);
  auto t = Tokenizer::from_vocab(std::move(d));
  EXPECT_TRUE(t->add_bos());
  EXPECT_EQ(t->encode("he", true, false), (std::vector<TokenId>{last, id_of(*t, "he")}));
  VocabData d2 = bpe_vocab({"h e"}, "llama-bpe");
  d2.add_bos = false;
  EXPECT_FALSE(Tokenizer::from_vocab(std::move(d2))->add_bos());
}

TEST(BpeTokenizer, LongWordIsNearLinear) {
  auto t = Tokenizer::from_vocab(bpe_vocab({"a a", "aa aa", "aaaa aaaa"}));
  const auto ids = t->encode(std::string(100000, 'a'), false, false);
  EXPECT_EQ(ids.size(), 100000u / 8);
}

TEST(WpmTokenizer, GreedyLongestMatchLowercaseAndAccents) {
  VocabData d;
  d.model = "bert";
  d.tokens = {"[PAD]",      "[UNK]",    "[CLS]", "[SEP]",   kSp + "hello",
              kSp + "cafe", kSp + "un", "able",  kSp + ",", kSp + "x"};
  d.types = {3, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  d.unk_id = 1;
  d.bos_id = 2;
  d.sep_id = 3;
  auto t = Tokenizer::from_vocab(std::move(d));
  EXPECT_EQ(t->encode("Hello, CAF\xC3\x89 unable xyz", true, false),
            (std::vector<TokenId>{2, 4, 8, 5, 6, 7, 1, 3}));
}

TEST(Tokenizer, SpecialTokenSplittingLongestFirstAndStrip) {
  VocabData d = spm_vocab({{"a", -1}, {kSp, -1}});
  d.tokens.push_back("<|a|>");
  d.tokens.push_back("<|a|>x");  // longer, contains the shorter one
  d.types.push_back(3);
  d.types.push_back(3);
  d.scores.resize(d.tokens.size(), 0.0f);
  d.name = "Phi3-mini";  // llama.cpp gives phi-3's special tokens rstrip
  auto t = Tokenizer::from_vocab(std::move(d));
  const TokenId a = id_of(*t, "<|a|>"), ax = id_of(*t, "<|a|>x");
  EXPECT_EQ(t->encode("<|a|>x<|a|>", false, true), (std::vector<TokenId>{ax, a}));
  // rstrip: whitespace after the token is dropped; the SPM space prefix still applies.
  EXPECT_EQ(t->encode("<|a|>  \n a", false, true), t->encode("<|a|>a", false, true));
  EXPECT_EQ(t->encode("<|a|>a", false, true),
            (std::vector<TokenId>{a, id_of(*t, kSp), id_of(*t, "a")}));
}

TEST(Tokenizer, OutOfRangeSpecialIdsAreIgnored) {
  VocabData d = spm_vocab({{"a", -1}});
  d.sep_id = 0xFFFFFFFFLL;
  d.pad_id = -7;
  d.bos_id = 1LL << 40;  // keeps the default
  d.eot_id = 100000;
  auto t = Tokenizer::from_vocab(std::move(d));
  EXPECT_EQ(t->sep(), -1);
  EXPECT_EQ(t->pad(), -1);
  EXPECT_EQ(t->bos(), 1);
  EXPECT_EQ(t->eot(), -1);
  EXPECT_FALSE(t->is_eog(-1));
  EXPECT_TRUE(t->is_eog(2));

  // Defaults that do not exist in a tiny vocabulary are absent, not out-of-range ids.
  VocabData tiny;
  tiny.model = "gpt2";
  tiny.tokens = {"a", "b"};
  tiny.merges = {"a b"};
  auto t2 = Tokenizer::from_vocab(std::move(tiny));
  EXPECT_EQ(t2->bos(), -1);
  EXPECT_EQ(t2->eos(), -1);
  EXPECT_EQ(t2->encode("ab", true, true), (std::vector<TokenId>{0, 1}));  // "ab" is no token
}

void expect_error(VocabData d, const std::string& needle) {
  try {
    Tokenizer::from_vocab(std::move(d));
    ADD_FAILURE() << "no error, expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(CorruptVocab, CleanErrors) {
  VocabData d = spm_vocab({{"a", -1}});
  d.scores.pop_back();
  expect_error(d, "scores");

  d = spm_vocab({{"a", -1}});
  d.types.push_back(1);
  expect_error(d, "token_type");

  d = spm_vocab({});
  d.tokens.clear();
  d.scores.clear();
  d.types.clear();
  expect_error(d, "empty");

  d = spm_vocab({{"a", -1}});
  d.model = "rwkv-9000";
  expect_error(d, "rwkv-9000");

  d = spm_vocab({{"a", -1}});
  d.model = "";
  expect_error(d, "model");

  d = bpe_vocab({"h e"});
  d.pre = "no-such-pre";
  expect_error(d, "no-such-pre");

  d = bpe_vocab({});
  d.merges.clear();
  expect_error(d, "merges");

  d = spm_vocab({{"a", -1}, {"a", -2}});
  expect_error(d, "duplicate");
}

TEST(CorruptVocab, OddButUsableMetadataDoesNotCrash) {
  // Malformed merges are skipped; merges naming unknown tokens are kept (llama.cpp does
  // the same) and fall back to single bytes; odd token types read as UNDEFINED.
  VocabData d = bpe_vocab({"h e"});
  d.merges.insert(d.merges.begin(), {"", "x", "nospace", " ", "q z", "h e"});
  d.types[5] = 99;
  d.tokens[6] = "";  // renamed [EMPTY_6] like llama.cpp
  auto t = Tokenizer::from_vocab(std::move(d));
  EXPECT_EQ(t->token_attr(5), TokenAttr::UNDEFINED);
  EXPECT_EQ(t->token_text(6), "[EMPTY_6]");
  std::string back;
  for (TokenId id : t->encode("qz he", false, false)) back += t->token_to_piece(id);
  EXPECT_EQ(back, "qz he");
}

TEST(CorruptVocab, GgufWithWrongTypes) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_i32_array("tokenizer.ggml.tokens", {1, 2, 3});
  auto bytes = w.to_bytes();
  auto f = gguf::File::from_memory(bytes.data(), bytes.size(), "bad.gguf");
  EXPECT_THROW(Tokenizer::from_gguf(*f), Error);

  gguf::Writer w2;
  w2.set_string("general.architecture", "llama");
  w2.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
  auto bytes2 = w2.to_bytes();
  auto f2 = gguf::File::from_memory(bytes2.data(), bytes2.size(), "nomodel.gguf");
  EXPECT_THROW(Tokenizer::from_gguf(*f2), Error);

  gguf::Writer w3;
  w3.set_string("tokenizer.ggml.model", "llama");
  w3.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  w3.set_f32_array("tokenizer.ggml.scores", {0, 0, 0});
  auto bytes3 = w3.to_bytes();
  auto f3 = gguf::File::from_memory(bytes3.data(), bytes3.size(), "short.gguf");
  try {
    Tokenizer::from_gguf(*f3);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short.gguf"), std::string::npos) << e.what();
  }

  gguf::Writer w4;
  w4.set_string("tokenizer.ggml.model", "llama");
  w4.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  w4.set_u32("tokenizer.ggml.seperator_token_id", 0xFFFFFFFFu);
  w4.set_bool("tokenizer.ggml.add_bos_token", false);
  auto bytes4 = w4.to_bytes();
  auto f4 = gguf::File::from_memory(bytes4.data(), bytes4.size(), "ok.gguf");
  auto t = Tokenizer::from_gguf(*f4);
  EXPECT_EQ(t->sep(), -1);
  EXPECT_FALSE(t->add_bos());
  EXPECT_EQ(t->n_vocab(), 4);
}

TEST(StreamDecoder, HoldsIncompleteUtf8) {
  auto t = Tokenizer::from_vocab(spm_vocab({{kSp, -1}}));
  // U+1F999 (4 bytes) then U+4E16 (3 bytes) as byte tokens.
  const std::string text = "\xF0\x9F\xA6\x99\xE4\xB8\x96";
  const auto ids = t->encode(text, false, false);
  ASSERT_EQ(ids.size(), 8u);  // U+2581, then 7 byte tokens
  StreamDecoder sd(*t);
  std::vector<std::string> outs;
  for (TokenId id : ids) outs.push_back(sd.push(id));
  EXPECT_EQ(outs, (std::vector<std::string>{" ", "", "", "", "\xF0\x9F\xA6\x99", "", "",
                                            "\xE4\xB8\x96"}));
  EXPECT_EQ(sd.flush(), "");

  StreamDecoder cut(*t);
  EXPECT_EQ(cut.push(ids[1]), "");
  EXPECT_EQ(cut.push(ids[2]), "");
  EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(cut.flush(), "");

  // A byte that can never start a character is replaced at once.
  StreamDecoder bad(*t);
  EXPECT_EQ(bad.push(3 + 0x80), "\xEF\xBF\xBD");
  EXPECT_EQ(bad.push(3 + 'a'), "a");
  // A lead byte followed by a non-continuation byte.
  EXPECT_EQ(bad.push(3 + 0xE4), "");
  EXPECT_EQ(bad.push(3 + 'b'),
            "\xEF\xBF\xBD"
            "b");
}

TEST(StreamDecoder, ControlTokensOnlyWhenRendered) {
  auto t = Tokenizer::from_vocab(spm_vocab({{kSp, -1}}));
  StreamDecoder plain(*t), shown(*t, true);
  EXPECT_EQ(plain.push(2), "");
  EXPECT_EQ(shown.push(2), "</s>");
}

TEST(PreTokenizer, Gpt2AndLlama3Splits) {
  tok::PreTokenizer gpt2(tok::PreSet::kGpt2);
  EXPECT_EQ(gpt2.split_utf8("Hello world's  test 123!!"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " test", " 123", "!!"}));
  tok::PreTokenizer llama3(tok::PreSet::kLlama3);
  EXPECT_EQ(llama3.split_utf8("I'M 12345 ok\n\n  x"),
            (std::vector<std::string>{"I", "'M", " ", "123", "45", " ok", "\n\n", " ", " x"}));
  tok::PreTokenizer qwen(tok::PreSet::kQwen2);
  EXPECT_EQ(qwen.split_utf8("ab 12 \xC3\xA9t\xC3\xA9"),
            (std::vector<std::string>{"ab", " ", "1", "2", " \xC3\xA9t\xC3\xA9"}));
  EXPECT_EQ(gpt2.split("a b"), (std::vector<std::string>{"a",
                                                         "\xC4\xA0"
                                                         "b"}));
}

TEST(PreTokenizer, EveryKnownTypeCompilesAndSplitsHostileInput) {
  std::mt19937 rng(7);
  std::string junk;
  for (int i = 0; i < 3000; ++i) junk += static_cast<char>(rng() & 0xFF);
  junk += std::string(5000, ' ') + "end";
  for (const char* name :
       {"default",   "llama3",    "deepseek-llm", "deepseek-v3", "deepseek-coder",
        "falcon",    "mpt",       "starcoder",    "gpt-2",       "refact",
        "command-r", "qwen2",     "stablelm2",    "poro-chat",   "viking",
        "tekken",    "chameleon", "chatglm-bpe",  "smollm",      "megrez"}) {
    auto info = tok::lookup_pre_type(name);
    ASSERT_TRUE(info) << name;
    tok::PreTokenizer p(info->set);
    size_t total = 0;
    for (const auto& w : p.split_utf8(junk)) {
      EXPECT_FALSE(w.empty()) << name;
      total += w.size();
    }
    // the words re-encode the whole input (invalid bytes as 3-byte U+FFFD)
    std::string re;
    for (uint32_t cp : unicode::decode_utf8(junk)) unicode::append_utf8(re, cp);
    EXPECT_EQ(total, re.size()) << name;
  }
  EXPECT_FALSE(tok::lookup_pre_type("bogus"));
  EXPECT_TRUE(tok::lookup_pre_type(""));
}

TEST(Unicode, Tables) {
  EXPECT_TRUE(unicode::flags('a') & unicode::kLetter);
  EXPECT_TRUE(unicode::flags(0x0661) & unicode::kNumber);  // ARABIC-INDIC DIGIT ONE
  EXPECT_TRUE(unicode::flags(0x3000) & unicode::kWhitespace);
  EXPECT_TRUE(unicode::flags(0x2EBF0) & unicode::kLetter);  // CJK Ext. I (Unicode 15.1)
  EXPECT_TRUE(unicode::flags(0x0378) & unicode::kUndefined);
  EXPECT_TRUE(unicode::flags(0x110000) & unicode::kUndefined);
  EXPECT_EQ(unicode::to_lower('A'), uint32_t('a'));
  EXPECT_EQ(unicode::to_lower(0x0130), 0x69u);
  EXPECT_EQ(unicode::nfd_first(0xE9), 0x65u);      // e + acute
  EXPECT_EQ(unicode::nfd_first(0xAC00), 0x1100u);  // Hangul syllable -> leading jamo
  EXPECT_EQ(unicode::decode_utf8("a\xC3"), (std::vector<uint32_t>{'a', 0xFFFD}));
  EXPECT_EQ(unicode::decode_utf8("\xF4\x90\x80\x80").size(), 4u);
  EXPECT_EQ(unicode::utf8_check("\xED\xA0\x80"), -1);
  EXPECT_EQ(unicode::utf8_check("\xE4\xB8"), 0);
  EXPECT_EQ(unicode::utf8_check("\xE4\xB8\x96"), 3);
  for (int b = 0; b < 256; ++b) {
    const auto cps = unicode::decode_utf8(unicode::byte_to_unicode(uint8_t(b)));
    ASSERT_EQ(cps.size(), 1u);
    EXPECT_EQ(unicode::unicode_to_byte(cps[0]), b);
  }
}

}  // namespace
}  // namespace tf
