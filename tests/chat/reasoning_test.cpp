// Reasoning extraction: the think block at the start of the output, as generated or opened by
// the prompt, with reasoning_format "none" (parse_reasoning false) leaving it as generated.
#include <gtest/gtest.h>

#include <string>

#include "chat/tool_calls.h"
#include "tool_calls_util.h"

namespace tf::chat::test {
namespace {

using F = ToolFormat;

OutputFormat think(F tools, bool starts = false) {
  OutputFormat f;
  f.tools = tools;
  f.think_open = "<think>";
  f.think_close = "</think>";
  f.starts_in_reasoning = starts;
  return f;
}

ParsedOutput parse(const OutputFormat& f, const std::string& text, bool tools = true,
                   bool reasoning = true) {
  ParseOptions opt;
  opt.parse_tools = tools;
  opt.parse_reasoning = reasoning;
  opt.log_warnings = false;
  ParsedOutput out = parse_output(f, text, opt);
  expect_stream_equal(f, text, opt, 5);
  return out;
}

TEST(ReasoningTest, WhitespaceAroundIsDropped) {
  const ParsedOutput out = parse(think(F::kHermes), "\n<think>\n\n  a\n b \n\n</think>\n\n\nC\n");
  EXPECT_EQ(out.reasoning, "a\n b");
  EXPECT_EQ(out.content, "C");
}

TEST(ReasoningTest, NoneKeepsTheBlockAsGenerated) {
  const std::string text = "<think>\nx\n</think>\n\nHi";
  const ParsedOutput out = parse(think(F::kHermes), text, true, false);
  EXPECT_EQ(out.content, text);
  EXPECT_EQ(out.reasoning, "");
}

TEST(ReasoningTest, NoneWithPromptOpenedBlockAddsNoMarker) {
  const std::string text = "Thinking\n</think>\n\nAnswer";
  const ParsedOutput out = parse(think(F::kDeepSeekR1, true), text, true, false);
  EXPECT_EQ(out.content, text);
  EXPECT_EQ(out.reasoning, "");
}

TEST(ReasoningTest, NoneStillParsesCallsAfterTheBlock) {
  const ParsedOutput out = parse(think(F::kHermes),
                                 "<think>x <tool_call>{\"name\": \"no\"}</tool_call></think>\n"
                                 "<tool_call>{\"name\": \"yes\"}</tool_call>",
                                 true, false);
  EXPECT_EQ(out.content, "<think>x <tool_call>{\"name\": \"no\"}</tool_call></think>");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].name, "yes");
}

TEST(ReasoningTest, UnclosedIsAllReasoning) {
  EXPECT_EQ(parse(think(F::kDeepSeekR1, true), "a <tool_call> b\n").reasoning, "a <tool_call> b");
  EXPECT_EQ(parse(think(F::kHermes), "<think>a b").reasoning, "a b");
  EXPECT_EQ(parse(think(F::kHermes), "<think>a b").content, "");
}

TEST(ReasoningTest, OnlyAtTheStart) {
  const ParsedOutput out = parse(think(F::kHermes), "Hello <think>x</think> there");
  EXPECT_EQ(out.content, "Hello <think>x</think> there");
  EXPECT_EQ(out.reasoning, "");
  // One block only: a second one is content.
  const ParsedOutput two = parse(think(F::kHermes), "<think>a</think><think>b</think>");
  EXPECT_EQ(two.reasoning, "a");
  EXPECT_EQ(two.content, "<think>b</think>");
}

TEST(ReasoningTest, PromptOpenedBlockReopened) {
  const ParsedOutput out = parse(think(F::kDeepSeekR1, true), "\n<think>\nplan\n</think>\nok");
  EXPECT_EQ(out.reasoning, "plan");
  EXPECT_EQ(out.content, "ok");
}

TEST(ReasoningTest, MarkersWithoutPrompt) {
  // starts_in_reasoning without markers means nothing.
  OutputFormat f;
  f.starts_in_reasoning = true;
  EXPECT_EQ(parse(f, "plain </think> text").content, "plain </think> text");
}

TEST(ReasoningTest, StreamedPiecesReleaseEarly) {
  StreamingOutputParser p(think(F::kHermes), true, true);
  OutputDelta d = p.push("<think>Let me");
  EXPECT_EQ(d.reasoning, "Let me");
  d = p.push(" see</thi");  // the close marker may be coming
  EXPECT_EQ(d.reasoning, " see");
  d = p.push("nk>\n\nIt is ");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "It is");
  d = p.push("4.");
  EXPECT_EQ(d.content, " 4.");
  p.finish();
  EXPECT_EQ(p.result().reasoning, "Let me see");
  EXPECT_EQ(p.result().content, "It is 4.");
}

TEST(ReasoningTest, CommandR7BPlanAndResponse) {
  OutputFormat f;
  f.tools = F::kCommandR7B;
  f.think_open = "<|START_THINKING|>";
  f.think_close = "<|END_THINKING|>";
  const std::string text =
      "<|START_THINKING|>plan<|END_THINKING|><|START_RESPONSE|>Hi<|END_RESPONSE|>";
  ParsedOutput out = parse(f, text);
  EXPECT_EQ(out.reasoning, "plan");
  EXPECT_EQ(out.content, "Hi");
  out = parse(f, text, true, false);
  EXPECT_EQ(out.content, text);
}

TEST(ReasoningTest, HarmonyLaterAnalysis) {
  OutputFormat f;
  f.tools = F::kGptOss;
  f.think_open = "<|channel|>analysis<|message|>";
  f.think_close = "<|end|>";
  const ParsedOutput out =
      parse(f,
            "<|channel|>analysis<|message|>First.<|end|><|start|>assistant<|channel|>commentary"
            "<|message|>Checking.<|end|><|start|>assistant<|channel|>analysis<|message|>Second."
            "<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>");
  EXPECT_EQ(out.reasoning, "First.\n\nSecond.");
  EXPECT_EQ(out.content, "Checking.Done.");
}

TEST(ReasoningTest, SeedThink) {
  OutputFormat f;
  f.tools = F::kSeedOss;
  f.think_open = "<seed:think>";
  f.think_close = "</seed:think>";
  const ParsedOutput out = parse(
      f, "<seed:think>\nhm <seed:cot_budget_reflect>x</seed:cot_budget_reflect>\n</seed:think>ok");
  EXPECT_EQ(out.reasoning, "hm <seed:cot_budget_reflect>x</seed:cot_budget_reflect>");
  EXPECT_EQ(out.content, "ok");
}

}  // namespace
}  // namespace tf::chat::test
