// Grammars for constrained decoding, in llama.cpp's GBNF notation:
//
//   root   ::= "{" ws pair ("," ws pair)* "}"       # rules: name ::= alternatives
//   pair   ::= string ":" ws value                   # sequences, | alternatives, ( groups )
//   string ::= "\"" [^"\\]* "\""                     # "literals" with \n \t \\ \" \xHH \uHHHH
//   digit  ::= [0-9] | [a-fA-F]                      # [classes], [^negated], . any character
//   num    ::= digit+ ("." digit{1,3})?              # * + ? {m} {m,} {m,n} repetitions
//
// A Grammar is parsed once (untrusted text: every error names its line and column, and sizes
// are bounded); a GrammarMatcher follows one output through it, character by character, as the
// set of parse stacks a pushdown automaton could be in; can_accept tells whether a token's text
// keeps the output inside the grammar, which is what masking the logits needs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tf {

class Grammar {
 public:
  // An element of an alternative: a character class, a reference to a rule, or the end.
  struct Elem {
    enum Kind : uint8_t { kEnd, kChars, kRule } kind = kEnd;
    bool negated = false;                               // kChars: [^...] or .
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // kChars: inclusive code point ranges
    int32_t rule = -1;                                  // kRule
    bool matches(uint32_t c) const;
    // Whether some code point in [lo, hi] matches (for a partly known UTF-8 character).
    bool matches_any(uint32_t lo, uint32_t hi) const;
  };
  using Alt = std::vector<Elem>;  // ends with a kEnd element
  struct Rule {
    std::string name;
    std::vector<Alt> alts;
  };

  // Parses GBNF text; `root` names the start rule. Throws tf::Error ("grammar line L, column
  // C: ...") on a syntax error, an undefined rule, left recursion, or a grammar over the limits.
  static std::shared_ptr<const Grammar> parse(std::string_view text,
                                              std::string_view root = "root");

  const std::vector<Rule>& rules() const { return rules_; }
  int32_t root() const { return root_; }

 private:
  std::vector<Rule> rules_;
  int32_t root_ = -1;
  friend class GrammarParser;
};

class TokenTrie;

// Follows one output through a grammar. The state is an interned set of parse stacks (plus
// the bytes of an incomplete UTF-8 character); transitions between sets are cached as they are
// discovered, so a grammar is lazily turned into a DFA over the characters the output uses,
// and a step costs a hash lookup once a state has been seen. Masks of allowed tokens are
// cached per state too: JSON's wide-open states (inside a string, between values) recur at
// almost every token. One matcher serves one output, on one thread.
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> g);

  // Feeds UTF-8 bytes (a character may be split across calls). Returns false, changing
  // nothing, when they cannot continue a sentence of the grammar.
  bool accept(std::string_view bytes);
  // Whether accept(bytes) would succeed (a trailing incomplete character counts when some
  // completion of it could match).
  bool can_accept(std::string_view bytes);
  // The text so far is a whole sentence of the grammar (end of generation may come now).
  bool complete() const;
  // Nothing more can follow (a complete sentence of a finite grammar): only end of generation.
  bool dead() const;
  // Sets bit t (allowed[t / 64] >> t % 64) for every token t of the trie whose text can
  // follow, clearing the others; allowed is resized to the trie's vocabulary.
  void allowed_tokens(const TokenTrie& trie, std::vector<uint64_t>& allowed);

  // A position: element `elem` of alternative `alt` of rule `rule`.
  struct Pos {
    int32_t rule, alt, elem;
    bool operator==(const Pos& o) const { return rule == o.rule && alt == o.alt && elem == o.elem; }
    bool operator<(const Pos& o) const {
      return rule != o.rule ? rule < o.rule : alt != o.alt ? alt < o.alt : elem < o.elem;
    }
  };
  using Stack = std::vector<Pos>;  // top = back, always at a character class (or empty: done)

 private:
  // Where the output is: a stack set, and the first bytes of a character still incomplete.
  struct Cursor {
    int32_t set = -1;
    uint8_t n = 0;
    char pending[4] = {};
  };
  bool step_byte(Cursor& c, uint8_t b);   // false (c unspecified) when b cannot come next
  int32_t next(int32_t set, uint32_t c);  // the set after character c; -1: none
  int32_t intern(std::vector<Stack>&& stacks);
  void trim_caches();  // bounds the caches' memory, between steps
  std::vector<Stack> advance(const std::vector<Stack>& stacks, uint32_t c) const;
  void expand(Stack s, std::vector<Stack>& out, int depth) const;
  const Grammar::Elem& at(const Pos& p) const;
  std::string mask_key(const Cursor& c) const;

  std::shared_ptr<const Grammar> g_;
  Cursor cur_;
  std::vector<std::vector<Stack>> sets_;        // interned stack sets, by id
  std::map<std::vector<Stack>, int32_t> ids_;   // ... and their ids
  std::unordered_map<uint64_t, int32_t> next_;  // (set << 21 | character) -> set or -1
  std::unordered_map<std::string, std::vector<uint64_t>> masks_;  // per cursor, for one trie
  const TokenTrie* mask_trie_ = nullptr;
  size_t mask_bytes_ = 0;
};

}  // namespace tf
