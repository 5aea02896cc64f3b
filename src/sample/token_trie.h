// Every token's text in one byte trie, so that a grammar can decide a whole vocabulary in one
// walk: tokens sharing a prefix share the work of matching it, and a prefix the grammar refuses
// prunes every token below it at once (most of a vocabulary, in a narrow state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tf {

class TokenTrie {
 public:
  struct Node {
    uint32_t child_begin = 0, child_end = 0;  // children: nodes [child_begin, child_end)
    uint32_t tok_begin = 0, tok_end = 0;      // tokens spelled by the path to this node
    uint8_t byte = 0;                         // the edge from the parent
  };

  // pieces[t] is token t's text; an empty one (control tokens) is never in the trie.
  explicit TokenTrie(const std::vector<std::string>& pieces);

  const std::vector<Node>& nodes() const { return nodes_; }  // [0] is the root
  const std::vector<int32_t>& tokens() const { return tokens_; }
  size_t n_vocab() const { return n_vocab_; }

 private:
  std::vector<Node> nodes_;
  std::vector<int32_t> tokens_;
  size_t n_vocab_ = 0;
};

}  // namespace tf
