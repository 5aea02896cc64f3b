// Splits a template into tokens as Jinja2's lexer does with trim_blocks and lstrip_blocks on:
// text, {{ }} and {% %} delimiters, and the tokens inside them. Comments vanish here, and
// whitespace control ({%- -%} {%+ +%}) is applied to the neighbouring text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tf::jinja {

enum class Tok : uint8_t {
  Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End
};

struct Token {
  Tok type;
  std::string text;  // Text / Name / Op: as written; String: the decoded value
  int64_t ival = 0;
  double fval = 0;
  int line = 1, col = 1;
};

// Throws tf::Error ("template line L, column C: ...") on a lexical error.
std::vector<Token> lex(std::string_view source);

// "template line L, column C: " + message.
[[noreturn]] void fail_at(int line, int col, const std::string& message);

}  // namespace tf::jinja
