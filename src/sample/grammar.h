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
#include <memory>
#include <string>
#include <string_view>
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
  static std::shared_ptr<const Grammar> parse(std::string_view text, std::string_view root = "root");

  const std::vector<Rule>& rules() const { return rules_; }
  int32_t root() const { return root_; }

 private:
  std::vector<Rule> rules_;
  int32_t root_ = -1;
  friend class GrammarParser;
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> g);

  // Feeds UTF-8 bytes (a character may be split across calls). Returns false, changing
  // nothing, when they cannot continue a sentence of the grammar.
  bool accept(std::string_view bytes);
  // Whether accept(bytes) would succeed (a trailing incomplete character counts when some
  // completion of it could match).
  bool can_accept(std::string_view bytes) const;
  // The text so far is a whole sentence of the grammar (end of generation may come now).
  bool complete() const;
  // Nothing more can follow (a complete sentence of a finite grammar): only end of generation.
  bool dead() const {
    for (const Stack& s : stacks_)
      if (!s.empty()) return false;
    return pending_.empty();
  }

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
  struct State {
    std::vector<Stack> stacks;
    std::string pending;  // bytes of an incomplete UTF-8 character
  };
  bool step(State& st, std::string_view bytes, bool allow_partial) const;
  std::vector<Stack> advance(const std::vector<Stack>& stacks, uint32_t c) const;
  void expand(Stack s, std::vector<Stack>& out, int depth) const;
  const Grammar::Elem& at(const Pos& p) const;

  std::shared_ptr<const Grammar> g_;
  std::vector<Stack> stacks_;
  std::string pending_;
};

}  // namespace tf
