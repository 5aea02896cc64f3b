// Grammar masks over real vocabularies: the trie walk with its caches must allow exactly the
// tokens that checking each token's text one by one on a fresh matcher allows (SentencePiece
// pieces with spaces and byte tokens; byte-level BPE pieces that end inside a UTF-8
// character), at every step of real outputs; and a TokenGrammar masks logits accordingly.
#include <gtest/gtest.h>

#include <cmath>

#include "format/gguf.h"
#include "sample/token_grammar.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace {

const char* kJson = R"(
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]+)? ws
ws ::= | " " | "\n" [ \t]{0,20}
)";

std::unique_ptr<tf::Tokenizer> vocab(const std::string& rel) {
  auto f = tf::gguf::File::open(tf::test::shared_path(rel));
  return tf::Tokenizer::from_gguf(*f);
}

// The allowed set the slow way: a fresh matcher fed `prefix`, asked of each token's text.
std::vector<bool> reference(const std::string& grammar, const std::string& prefix,
                            const std::vector<std::string>& pieces) {
  std::vector<bool> ok(pieces.size());
  tf::GrammarMatcher m(tf::Grammar::parse(grammar));
  if (!m.accept(prefix)) return ok;
  for (size_t t = 0; t < pieces.size(); ++t) ok[t] = !pieces[t].empty() && m.can_accept(pieces[t]);
  return ok;
}

void check_masks(const std::string& rel, const std::string& grammar, const std::string& text) {
  TF_REQUIRE_SHARED(rel);
  auto tok = vocab(rel);
  auto v = tf::GrammarVocab::of(*tok, false);
  tf::GrammarMatcher m(tf::Grammar::parse(grammar));
  std::vector<uint64_t> bits;
  // Steps at every byte of the text (mid-character ones included), and the mask cache hit
  // the second time round a state.
  size_t checked = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i > 0) {
      ASSERT_TRUE(m.accept(text.substr(i - 1, 1))) << "at byte " << i;
    }
    if (i % 7 != 0 && i != text.size() && (uint8_t(text[i]) & 0xC0) != 0x80) continue;
    m.allowed_tokens(v->trie, bits);
    const auto want = reference(grammar, text.substr(0, i), v->pieces);
    for (size_t t = 0; t < want.size(); ++t)
      ASSERT_EQ(bool(bits[t / 64] >> (t % 64) & 1), want[t])
          << "token " << t << " '" << v->pieces[t] << "' after '" << text.substr(0, i) << "'";
    ++checked;
  }
  EXPECT_GT(checked, 3u);
}

TEST(TokenGrammar, TrieHoldsEveryTokenOnce) {
  const std::vector<std::string> pieces = {"ab", "a", "", "abc", "b", "ab", "\xE6\x97"};
  tf::TokenTrie trie(pieces);
  std::vector<std::string> spelled(pieces.size());
  std::vector<int> seen(pieces.size());
  // Walk it, spelling each node's path.
  std::vector<std::pair<uint32_t, std::string>> work{{0, ""}};
  while (!work.empty()) {
    auto [n, path] = work.back();
    work.pop_back();
    const auto& node = trie.nodes()[n];
    for (uint32_t t = node.tok_begin; t < node.tok_end; ++t) {
      spelled[size_t(trie.tokens()[t])] = path;
      ++seen[size_t(trie.tokens()[t])];
    }
    for (uint32_t c = node.child_begin; c < node.child_end; ++c)
      work.push_back({c, path + char(trie.nodes()[c].byte)});
  }
  for (size_t t = 0; t < pieces.size(); ++t) {
    EXPECT_EQ(seen[t], pieces[t].empty() ? 0 : 1) << t;
    if (!pieces[t].empty()) {
      EXPECT_EQ(spelled[t], pieces[t]);
    }
  }
}

TEST(TokenGrammar, SpmMasksEqualTokenByTokenChecks) {
  check_masks("models/vocab/ggml-vocab-llama-spm.gguf", kJson,
              "{\"name\": \"Ana \xC3\xA9t\xC3\xA9\", \"n\": [1, -2.5, true, {}],\n  \"x\": null}");
}

TEST(TokenGrammar, BytePieceBpeMasksEqualTokenByTokenChecks) {
  check_masks("models/vocab/ggml-vocab-qwen3.gguf", kJson,
              "{\"\xE6\x97\xA5\xE6\x9C\xAC\": \"caf\xC3\xA9 \xF0\x9F\x98\x80\", \"k\": [0]}");
  check_masks("models/vocab/ggml-vocab-qwen3.gguf", "root ::= [\\u4e00-\\u9fff]{1,4} \"!\"",
              "\xE6\x97\xA5\xE6\x9C\xAC!");
}

TEST(TokenGrammar, MasksLogitsAndEndOfGeneration) {
  const std::string rel = "models/vocab/ggml-vocab-llama-spm.gguf";
  TF_REQUIRE_SHARED(rel);
  auto tok = vocab(rel);
  auto v = tf::GrammarVocab::of(*tok, false);
  ASSERT_FALSE(v->eog.empty());
  tf::TokenGrammar g(tf::Grammar::parse("root ::= \"yes\" | \"no\""), v);
  std::vector<float> logits(size_t(tok->n_vocab()), 1.0f);
  ASSERT_TRUE(g.mask(logits.data(), int64_t(logits.size())));
  for (size_t t = 0; t < logits.size(); ++t) {
    const std::string& p = v->pieces[t];
    const bool want =
        !p.empty() && (std::string("yes").rfind(p, 0) == 0 || std::string("no").rfind(p, 0) == 0);
    ASSERT_EQ(logits[t] == 1.0f, want) << "token " << t << " '" << p << "'";
  }
  for (int32_t e : v->eog) EXPECT_FALSE(g.allows(e));  // not a whole sentence yet
  std::vector<int32_t> yes;                            // y, e, s as single-character tokens
  for (char c : std::string("yes"))
    for (size_t t = 0; t < v->pieces.size(); ++t)
      if (v->pieces[t] == std::string(1, c)) {
        yes.push_back(int32_t(t));
        break;
      }
  ASSERT_EQ(yes.size(), 3u);
  for (auto id : yes) {
    ASSERT_TRUE(g.allows(id));
    g.accept(id);
  }
  EXPECT_TRUE(g.complete());
  EXPECT_TRUE(g.dead());
  std::fill(logits.begin(), logits.end(), 1.0f);
  ASSERT_TRUE(g.mask(logits.data(), int64_t(logits.size())));
  for (size_t t = 0; t < logits.size(); ++t) {
    const bool is_end = std::find(v->eog.begin(), v->eog.end(), int32_t(t)) != v->eog.end();
    ASSERT_EQ(logits[t] == 1.0f, is_end) << t;
  }
}

}  // namespace
