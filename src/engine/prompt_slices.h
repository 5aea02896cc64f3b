// How the engine cuts a prompt into forward steps.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tf {

// The prompt positions [from, to) as consecutive slices of at most n_batch tokens, with no
// slice of a single token when the range holds more than one (and n_batch > 2): the last two
// slices are evened out instead. One token goes through other kernels than several (for
// F32/F16 weights and F16 attention: llama.cpp's choice, see llama_dot_kernel), which round
// differently; this way every position of a prompt longer than one token is computed by the
// batch kernels, whatever the range's start. So K/V cached from an earlier prompt and a fresh
// run over the same tokens agree bit for bit.
inline std::vector<std::pair<size_t, size_t>> prompt_slices(size_t from, size_t to,
                                                            int64_t n_batch) {
  std::vector<std::pair<size_t, size_t>> out;
  const size_t nb = size_t(std::max<int64_t>(1, n_batch));
  for (size_t i = from; i < to;) {
    size_t m = std::min(nb, to - i);
    if (to - i - m == 1 && m > 2) --m;
    out.emplace_back(i, i + m);
    i += m;
  }
  return out;
}

}  // namespace tf
