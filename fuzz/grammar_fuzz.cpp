// libFuzzer target for GBNF grammars: the bytes before the first NUL are a grammar, the rest a
// text fed to a matcher in pieces of varying size. Parsing either fails with tf::Error or
// gives a grammar that matching never crashes on or hangs in (no other exception).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sample/grammar.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string_view grammar = all.substr(0, nul);
  const std::string_view text = nul == std::string_view::npos ? std::string_view() : all.substr(nul + 1);
  try {
    const auto g = tf::Grammar::parse(grammar);
    tf::GrammarMatcher m(g);
    size_t i = 0, step = 1;
    while (i < text.size()) {
      const std::string_view piece = text.substr(i, step);
      (void)m.can_accept(piece);
      if (!m.accept(piece)) break;
      i += piece.size();
      step = step % 5 + 1;
    }
    (void)m.complete();
    (void)m.dead();
  } catch (const tf::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
