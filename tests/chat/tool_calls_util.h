// Helpers for the output-parser tests: feeding an output in pieces, and putting the deltas
// back together the way an OpenAI client does.
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "chat/tool_calls.h"

namespace tf::chat::test {

// Byte offsets where a UTF-8 character starts (the engine never splits a character).
inline std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> v;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) v.push_back(i);
  return v;
}

// Appends a delta as a client would: tool-call deltas by index, the first of each carrying
// id and name. Fails the test if the deltas break that contract.
inline void apply_delta(ParsedOutput& out, const OutputDelta& d) {
  out.content += d.content;
  out.reasoning += d.reasoning;
  for (const ToolCallDelta& t : d.tool_calls) {
    ASSERT_GE(t.index, 0);
    ASSERT_LE(size_t(t.index), out.tool_calls.size()) << "a delta skipped an index";
    if (size_t(t.index) == out.tool_calls.size()) {
      EXPECT_FALSE(t.id.empty()) << "the first delta of a call carries its id";
      EXPECT_FALSE(t.name.empty()) << "the first delta of a call carries its name";
      out.tool_calls.push_back({t.id, t.name, t.arguments});
    } else {
      EXPECT_TRUE(t.id.empty() && t.name.empty()) << "a later delta repeats id or name";
      out.tool_calls[size_t(t.index)].arguments += t.arguments;
    }
  }
}

// The output fed in the given pieces; deltas concatenated. Also checks result() against them.
inline ParsedOutput stream(const OutputFormat& f, const std::vector<std::string>& pieces,
                           const ParseOptions& opt) {
  StreamingOutputParser p(f, opt);
  ParsedOutput out;
  for (const std::string& piece : pieces) apply_delta(out, p.push(piece));
  apply_delta(out, p.finish());
  EXPECT_TRUE(p.finish().empty()) << "finish() twice";
  EXPECT_EQ(p.result().content, out.content);
  EXPECT_EQ(p.result().reasoning, out.reasoning);
  EXPECT_EQ(p.result().tool_calls, out.tool_calls);
  out.warnings = p.result().warnings;
  return out;
}

inline std::vector<std::string> split_at(const std::string& s, const std::vector<size_t>& cuts) {
  std::vector<std::string> pieces;
  size_t from = 0;
  for (size_t c : cuts) {
    pieces.push_back(s.substr(from, c - from));
    from = c;
  }
  pieces.push_back(s.substr(from));
  return pieces;
}

// The streaming property: however the text is cut (at character boundaries), the deltas add up
// to parse_output() of the whole. Cuts: once at every position; at every character; and random
// token-sized pieces.
inline void expect_stream_equal(const OutputFormat& f, const std::string& text, ParseOptions opt,
                                int random_rounds = 20) {
  opt.log_warnings = false;
  opt.id_seed = 12345;
  const ParsedOutput whole = parse_output(f, text, opt);
  const std::vector<size_t> starts = char_starts(text);
  for (size_t c : starts) {
    if (c == 0) continue;
    const ParsedOutput got = stream(f, split_at(text, {c}), opt);
    ASSERT_EQ(got, whole) << "split at byte " << c << " of: " << text;
  }
  {
    std::vector<size_t> all(starts.begin() + (starts.empty() ? 0 : 1), starts.end());
    ASSERT_EQ(stream(f, split_at(text, all), opt), whole) << "split at every character: " << text;
  }
  std::mt19937 rng(uint32_t(text.size()) * 7919u + 1);
  for (int round = 0; round < random_rounds; ++round) {
    std::vector<size_t> cuts;
    size_t i = 0;
    while (true) {
      i += 1 + rng() % 6;
      while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) ++i;
      if (i >= text.size()) break;
      cuts.push_back(i);
    }
    ASSERT_EQ(stream(f, split_at(text, cuts), opt), whole)
        << "random split, round " << round << ": " << text;
  }
  // An empty piece changes nothing.
  std::vector<std::string> with_empty = {"", text, ""};
  ASSERT_EQ(stream(f, with_empty, opt), whole);
}

}  // namespace tf::chat::test
