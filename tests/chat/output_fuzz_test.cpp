// The output parser on untrusted text: random bytes and random soup of every format's markers
// and JSON pieces, whole and streamed in random pieces (split anywhere, even inside a UTF-8
// character), must never throw and must stream exactly like the whole; large inputs must be
// parsed in time linear in their size.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "chat/tool_calls.h"
#include "tool_calls_util.h"

namespace tf::chat::test {
namespace {

using F = ToolFormat;

std::vector<OutputFormat> all_formats() {
  std::vector<OutputFormat> out;
  for (int i = 0; i <= int(F::kGptOss); ++i) {
    OutputFormat f;
    f.tools = F(i);
    out.push_back(f);
    f.think_open = i == int(F::kGptOss) ? "<|channel|>analysis<|message|>" : "<think>";
    f.think_close = i == int(F::kGptOss) ? "<|end|>" : "</think>";
    out.push_back(f);
    f.starts_in_reasoning = true;
    out.push_back(f);
  }
  return out;
}

const std::vector<std::string>& soup() {
  static const std::vector<std::string> pieces = {
      "<tool_call>",
      "</tool_call>",
      "<think>",
      "</think>",
      "[TOOL_CALLS]",
      "[ARGS]",
      "[CALL_ID]",
      "<function=",
      "</function>",
      "<|python_tag|>",
      ">>>",
      "all\n",
      "python\n",
      "<｜tool▁calls▁begin｜>",
      "<｜tool▁call▁begin｜>",
      "<｜tool▁sep｜>",
      "<｜tool▁call▁end｜>",
      "<｜tool▁calls▁end｜>",
      "function",
      "```json\n",
      "```",
      "<|START_ACTION|>",
      "<|END_ACTION|>",
      "<|START_THINKING|>",
      "<|END_THINKING|>",
      "<|START_RESPONSE|>",
      "Action:",
      "functools",
      "<|tool_call|>",
      "<response>",
      "<|tool_calls_section_begin|>",
      "<|tool_call_begin|>",
      "functions.f:0",
      "<|tool_call_argument_begin|>",
      "<|tool_call_end|>",
      "<TOOLCALL>",
      "</TOOLCALL>",
      "<seed:tool_call>",
      "<parameter=a>",
      "</parameter>",
      "<|channel|>",
      "analysis",
      "final",
      "commentary to=functions.f ",
      "<|message|>",
      "<|end|>",
      "<|start|>assistant",
      "<|call|>",
      "{",
      "}",
      "[",
      "]",
      "\"name\"",
      "\"arguments\"",
      "\"parameters\"",
      "\"tool_calls\"",
      ":",
      ",",
      "\"f\"",
      "\"x\\\"y\"",
      "1",
      "-2.5e3",
      "true",
      "null",
      " ",
      "\n",
      "\t",
      "text",
      "ü",
      "😀",
      "\\u00e9",
      "\\ud800",
      "\"",
      "\\",
      ".call(",
      ")",
      "=",
      "'",
      "get_weather\n",
      "\xff",
      "\xc3",
      "\x80",
      std::string(1, '\0'),
  };
  return pieces;
}

std::string random_text(std::mt19937& rng, size_t pieces) {
  std::string s;
  const auto& v = soup();
  for (size_t i = 0; i < pieces; ++i) {
    if (rng() % 8 == 0) {
      s += char(rng() % 256);  // a random byte
    } else {
      s += v[rng() % v.size()];
    }
  }
  return s;
}

// Random cuts anywhere (bytes, not characters: the parser must cope even then).
ParsedOutput stream_bytes(const OutputFormat& f, const std::string& text, std::mt19937& rng,
                          const ParseOptions& opt) {
  std::vector<size_t> cuts;
  for (size_t i = 1 + rng() % 5; i < text.size(); i += 1 + rng() % 7) cuts.push_back(i);
  return stream(f, split_at(text, cuts), opt);
}

TEST(OutputFuzz, MarkerSoupStreamsLikeWhole) {
  std::mt19937 rng(20240611);
  ParseOptions opt;
  opt.log_warnings = false;
  opt.id_seed = 99;
  int n = 0;
  for (const OutputFormat& f : all_formats()) {
    for (int round = 0; round < 60; ++round) {
      const std::string text = random_text(rng, 1 + rng() % 40);
      for (int flags = 0; flags < 4; ++flags) {
        opt.parse_tools = flags & 1;
        opt.parse_reasoning = flags & 2;
        ParsedOutput whole;
        ASSERT_NO_THROW(whole = parse_output(f, text, opt));
        const ParsedOutput got = stream_bytes(f, text, rng, opt);
        ASSERT_EQ(got, whole) << tool_format_name(f.tools) << " flags " << flags << ": "
                              << testing::PrintToString(text);
        for (const ToolCall& c : whole.tool_calls) {  // calls are well formed
          EXPECT_FALSE(c.name.empty());
          EXPECT_EQ(c.arguments.front(), '{');
          EXPECT_EQ(c.arguments.back(), '}');
        }
        ++n;
      }
    }
  }
  EXPECT_GT(n, 1000);
}

TEST(OutputFuzz, RandomBytes) {
  std::mt19937 rng(7);
  ParseOptions opt;
  opt.log_warnings = false;
  opt.id_seed = 1;
  for (const OutputFormat& f : all_formats()) {
    for (int round = 0; round < 20; ++round) {
      std::string text(rng() % 200, '\0');
      for (char& c : text) c = char(rng() % 256);
      const ParsedOutput whole = parse_output(f, text, opt);
      ASSERT_EQ(stream_bytes(f, text, rng, opt), whole);
    }
  }
}

// Valid calls of every format mixed with soup: the calls found must not depend on the split.
TEST(OutputFuzz, CallsAmidSoup) {
  const std::vector<std::pair<F, std::string>> calls = {
      {F::kHermes, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1]}}</tool_call>"},
      {F::kMistral, "[TOOL_CALLS]f[ARGS]{\"a\": \"b\"}"},
      {F::kMistralNemo, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]"},
      {F::kFunctionaryV31, "<function=f>{\"x\": null}</function>"},
      {F::kDeepSeekV31, "<｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>"},
      {F::kKimiK2,
       "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{}<|tool_call_end|>"},
      {F::kNemotron, "<TOOLCALL>[{\"name\": \"f\", \"arguments\": {}}]</TOOLCALL>"},
  };
  std::mt19937 rng(3);
  ParseOptions opt;
  opt.log_warnings = false;
  opt.id_seed = 5;
  for (const auto& [tools, call] : calls) {
    OutputFormat f;
    f.tools = tools;
    for (int round = 0; round < 40; ++round) {
      const std::string text =
          random_text(rng, rng() % 6) + " " + call + " " + random_text(rng, rng() % 6);
      const ParsedOutput whole = parse_output(f, text, opt);
      ASSERT_EQ(stream_bytes(f, text, rng, opt), whole) << testing::PrintToString(text);
    }
  }
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Streams `text` in 3-byte pieces; returns the result.
ParsedOutput stream3(const OutputFormat& f, const std::string& text) {
  ParseOptions opt;
  opt.log_warnings = false;
  StreamingOutputParser p(f, opt);
  for (size_t i = 0; i < text.size(); i += 3) p.push(std::string_view(text).substr(i, 3));
  p.finish();
  return p.result();
}

// Inputs that a parser rescanning its held-back text on every piece would take minutes on.
TEST(OutputFuzz, LargeInputsAreLinear) {
  const auto t0 = std::chrono::steady_clock::now();
  OutputFormat hermes;
  hermes.tools = F::kHermes;
  hermes.think_open = "<think>";
  hermes.think_close = "</think>";
  const size_t n = size_t(1) << 20;

  // A 1 MiB argument string, streamed.
  std::string big = "<tool_call>{\"name\": \"write\", \"arguments\": {\"text\": \"";
  big += std::string(n, 'a');
  big += "\"}}</tool_call>";
  ParsedOutput out = stream3(hermes, big);
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].arguments.size(), n + 11);  // {"text":"..."}

  // 1 MiB of reasoning and of content with many '<'.
  std::string text = "<think>";
  for (size_t i = 0; i < n / 8; ++i) text += "a <b </t ";
  text += "</think>";
  for (size_t i = 0; i < n / 8; ++i) text += "x <tool y";
  out = stream3(hermes, text);
  EXPECT_GT(out.reasoning.size(), n);
  EXPECT_GT(out.content.size(), n);

  // Deep nesting inside a call: content, no recursion.
  const std::string deep = "<tool_call>{\"name\": \"f\", \"arguments\": " + std::string(n, '[');
  out = stream3(hermes, deep);
  EXPECT_TRUE(out.tool_calls.empty());
  EXPECT_EQ(out.content.size(), deep.size());

  // Many unterminated openings.
  std::string many;
  for (size_t i = 0; i < n / 32; ++i) many += "<tool_call>{\"name\": \"f\", \"a";
  out = stream3(hermes, many);
  EXPECT_TRUE(out.tool_calls.empty());
  EXPECT_EQ(out.content, many);

  OutputFormat seed;
  seed.tools = F::kSeedOss;
  std::string params;
  for (size_t i = 0; i < n / 64; ++i) params += "<seed:tool_call><function=f><parameter=a>";
  out = stream3(seed, params);
  EXPECT_EQ(out.content, params);

  OutputFormat llama;
  llama.tools = F::kLlama3;
  const std::string code = "<|python_tag|>" + std::string(n, 'x');
  out = stream3(llama, code);
  ASSERT_EQ(out.tool_calls.size(), 1u);

  OutputFormat f32;
  f32.tools = F::kFunctionaryV32;
  out = stream3(f32, "python\n" + std::string(n, 'y'));
  ASSERT_EQ(out.tool_calls.size(), 1u);

  // Generous: linear work here takes well under a second (a quadratic one, hours).
  EXPECT_LT(seconds_since(t0), 60.0);
}

}  // namespace
}  // namespace tf::chat::test
