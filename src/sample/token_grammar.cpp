#include "sample/token_grammar.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/tokenizer.h"

namespace tf {

std::shared_ptr<const GrammarVocab> GrammarVocab::of(const Tokenizer& tok, bool render_special) {
  std::vector<std::string> pieces(size_t(tok.n_vocab()));
  std::vector<int32_t> eog;
  for (TokenId id = 0; id < tok.n_vocab(); ++id) {
    if (tok.is_eog(id)) {
      eog.push_back(id);  // its text never enters the output
      continue;
    }
    pieces[size_t(id)] = tok.token_to_piece(id, render_special);
  }
  TokenTrie trie(pieces);
  return std::make_shared<const GrammarVocab>(
      GrammarVocab{std::move(pieces), std::move(eog), std::move(trie)});
}

TokenGrammar::TokenGrammar(std::shared_ptr<const Grammar> g,
                           std::shared_ptr<const GrammarVocab> vocab)
    : m_(std::move(g)), v_(std::move(vocab)) {}

bool TokenGrammar::is_eog(int32_t t) const {
  return std::find(v_->eog.begin(), v_->eog.end(), t) != v_->eog.end();
}

bool TokenGrammar::allows(int32_t t) {
  if (t < 0 || size_t(t) >= v_->pieces.size()) return false;
  if (is_eog(t)) return m_.complete();
  const std::string& p = v_->pieces[size_t(t)];
  return !p.empty() && m_.can_accept(p);
}

bool TokenGrammar::mask(float* logits, int64_t n) {
  m_.allowed_tokens(v_->trie, allowed_);
  const bool end_ok = m_.complete();
  eog_logits_.clear();
  for (int32_t t : v_->eog) eog_logits_.push_back(t < n ? logits[t] : -INFINITY);
  bool any = false;
  for (int64_t t = 0; t < n; ++t) {
    const bool ok = size_t(t) < v_->pieces.size() && (allowed_[size_t(t) / 64] >> (t % 64) & 1);
    if (!ok) logits[t] = -INFINITY;
    any |= ok && logits[t] != -INFINITY;
  }
  if (end_ok)
    for (size_t i = 0; i < v_->eog.size(); ++i)
      if (v_->eog[i] < n) {
        logits[v_->eog[i]] = eog_logits_[i];
        any |= eog_logits_[i] != -INFINITY;
      }
  return any;
}

void TokenGrammar::accept(int32_t t) {
  if (t < 0 || size_t(t) >= v_->pieces.size() || is_eog(t)) return;
  m_.accept(v_->pieces[size_t(t)]);
}

}  // namespace tf
