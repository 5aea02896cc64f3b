// Grammars over token ids: what a sampler needs from a GrammarMatcher. A GrammarVocab (each
// token's text in a trie, and which tokens end generation) is built once per tokenizer and
// shared; a TokenGrammar follows one output.
//
// End of generation is allowed exactly when the text so far is a whole sentence of the grammar.
// Tokens with no text (control tokens unless rendered) are never allowed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sample/grammar.h"
#include "sample/token_trie.h"

namespace tf {

class Tokenizer;

struct GrammarVocab {
  std::vector<std::string> pieces;  // each token's text as the output will show it
  std::vector<int32_t> eog;         // end-of-generation tokens
  TokenTrie trie;

  // render_special: control tokens count with their text (as when the output shows them,
  // e.g. a tool-call marker that is a control token); else they have none.
  static std::shared_ptr<const GrammarVocab> of(const Tokenizer& tok, bool render_special);
};

class TokenGrammar {
 public:
  TokenGrammar(std::shared_ptr<const Grammar> g, std::shared_ptr<const GrammarVocab> vocab);

  // Whether one token may come next (cheap: the sampler's choice is usually checked first).
  bool allows(int32_t token);
  // Sets the logit of every token that may not come next to -inf. False when none may.
  bool mask(float* logits, int64_t n_vocab);
  // Records a token (it must be allowed); end-of-generation tokens change nothing.
  void accept(int32_t token);
  // Only the end may follow.
  bool dead() const { return m_.dead(); }
  bool complete() const { return m_.complete(); }

 private:
  bool is_eog(int32_t t) const;
  GrammarMatcher m_;
  std::shared_ptr<const GrammarVocab> v_;
  std::vector<uint64_t> allowed_;
  std::vector<float> eog_logits_;
};

}  // namespace tf
