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
  // The next token: `sample(logits)` drawn from the allowed ones, or -1 when none is allowed.
  // Greedy decoding takes the model's own choice when the grammar allows it (then it is the
  // masked argmax too: one token checked instead of the whole vocabulary) and masks only when
  // it is refused; sampling masks first, so that the chain (top-k, top-p, ...) works over the
  // allowed tokens only. `masked` (optional) says whether the vocabulary was masked. The token
  // is not recorded: accept() it.
  template <typename Sample>
  int32_t choose(float* logits, int64_t n_vocab, bool greedy, Sample&& sample,
                 bool* masked = nullptr) {
    if (masked) *masked = false;
    if (greedy) {
      const int32_t t = sample(logits);
      if (allows(t)) return t;
    }
    if (masked) *masked = true;
    if (!mask(logits, n_vocab)) return -1;
    return sample(logits);
  }
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
