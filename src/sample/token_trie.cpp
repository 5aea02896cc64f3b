#include "sample/token_trie.h"

#include <algorithm>
#include <deque>
#include <numeric>

namespace tf {

TokenTrie::TokenTrie(const std::vector<std::string>& pieces) : n_vocab_(pieces.size()) {
  std::vector<int32_t> order;
  order.reserve(pieces.size());
  for (size_t t = 0; t < pieces.size(); ++t)
    if (!pieces[t].empty()) order.push_back(int32_t(t));
  // Sorted by text, the tokens below any node are one contiguous run, shortest (the node's
  // own) first.
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return pieces[size_t(a)] < pieces[size_t(b)]; });
  tokens_.reserve(order.size());

  // Breadth first, so that each node's children are appended together (contiguous).
  struct Work {
    uint32_t node;
    size_t lo, hi, depth;  // the run of `order` below the node, and its depth
  };
  nodes_.push_back(Node{});
  std::deque<Work> work{{0, 0, order.size(), 0}};
  while (!work.empty()) {
    const Work w = work.front();
    work.pop_front();
    size_t i = w.lo;
    nodes_[w.node].tok_begin = uint32_t(tokens_.size());
    while (i < w.hi && pieces[size_t(order[i])].size() == w.depth) tokens_.push_back(order[i++]);
    nodes_[w.node].tok_end = uint32_t(tokens_.size());
    nodes_[w.node].child_begin = uint32_t(nodes_.size());
    while (i < w.hi) {
      const auto b = uint8_t(pieces[size_t(order[i])][w.depth]);
      size_t j = i;
      while (j < w.hi && uint8_t(pieces[size_t(order[j])][w.depth]) == b) ++j;
      Node child;
      child.byte = b;
      const auto id = uint32_t(nodes_.size());
      nodes_.push_back(child);
      work.push_back({id, i, j, w.depth + 1});
      i = j;
    }
    nodes_[w.node].child_end = uint32_t(nodes_.size());
  }
}

}  // namespace tf
