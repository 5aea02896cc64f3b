// detect_output_format over the real templates in ../shared/models/templates: every template
// in the set is in the table (a new file fails the test until it is added), with the tool
// syntax, the think markers and whether the generation prompt opens the think block.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "chat/tool_calls.h"
#include "test_util.h"

namespace tf::chat::test {
namespace {

namespace fs = std::filesystem;
using F = ToolFormat;

struct Expected {
  F tools;
  std::string think_open;  // "" none; "<think>" implies "</think>"
  bool starts_in_reasoning = false;
};

const std::map<std::string, Expected>& expected() {
  static const std::map<std::string, Expected> table = {
      {"ByteDance-Seed-OSS.jinja", {F::kSeedOss, "<seed:think>"}},
      {"CohereForAI-c4ai-command-r-plus-tool_use.jinja", {F::kCommandRPlus, ""}},
      {"CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
       {F::kCommandR7B, "<|START_THINKING|>"}},
      {"Mistral-Small-3.2-24B-Instruct-2506.jinja", {F::kMistral, ""}},
      {"NVIDIA-Nemotron-Nano-v2.jinja", {F::kNemotron, "<think>", true}},
      {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", {F::kHermes, ""}},
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", {F::kHermes, ""}},
      {"Qwen-QwQ-32B.jinja", {F::kHermes, "<think>", true}},
      {"Qwen-Qwen2.5-7B-Instruct.jinja", {F::kHermes, ""}},
      {"Qwen-Qwen3-0.6B.jinja", {F::kHermes, "<think>"}},
      {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", {F::kDeepSeekR1, "<think>", true}},
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", {F::kDeepSeekR1, "<think>", true}},
      {"deepseek-ai-DeepSeek-V3.1.jinja", {F::kDeepSeekV31, "<think>"}},
      {"fireworks-ai-llama-3-firefunction-v2.jinja", {F::kFirefunctionV2, ""}},
      {"google-gemma-2-2b-it.jinja", {F::kGeneric, ""}},
      {"ibm-granite-granite-3.3-2B-Instruct.jinja", {F::kGranite, "<think>"}},
      {"llama-cpp-deepseek-r1.jinja", {F::kDeepSeekR1, "<think>", true}},
      {"llama-cpp-rwkv-world.jinja", {F::kGeneric, "<think>"}},
      {"meetkai-functionary-medium-v3.1.jinja", {F::kFunctionaryV31, ""}},
      {"meetkai-functionary-medium-v3.2.jinja", {F::kFunctionaryV32, ""}},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", {F::kLlama3, ""}},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", {F::kLlama3, ""}},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", {F::kLlama3, ""}},
      {"microsoft-Phi-3.5-mini-instruct.jinja", {F::kGeneric, ""}},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", {F::kMistralNemo, ""}},
      {"moonshotai-Kimi-K2.jinja", {F::kKimiK2, ""}},
      {"openai-gpt-oss-120b.jinja", {F::kGptOss, "<|channel|>analysis<|message|>"}},
      {"unsloth-mistral-Devstral-Small-2507.jinja", {F::kMistral, ""}},
      {"mistral.rs/chatml.json", {F::kGeneric, ""}},
      {"mistral.rs/deepseek_tool_call.jinja", {F::kDeepSeekR1, ""}},
      {"mistral.rs/default.json", {F::kGeneric, ""}},
      {"mistral.rs/gemma3n.jinja", {F::kGeneric, ""}},
      {"mistral.rs/idefics3.json", {F::kGeneric, ""}},
      {"mistral.rs/llama2.json", {F::kGeneric, ""}},
      {"mistral.rs/llama3.json", {F::kGeneric, ""}},
      {"mistral.rs/mistral.json", {F::kGeneric, ""}},
      {"mistral.rs/mistral_nemo_tool_call.jinja", {F::kMistralNemo, ""}},
      {"mistral.rs/mistral_small_tool_call.jinja", {F::kMistralNemo, ""}},
      {"mistral.rs/nousresearch_hermes2_pro_tool_use.jinja", {F::kHermes, ""}},
      {"mistral.rs/nousresearch_hermes3_tool_use.jinja", {F::kHermes, ""}},
      {"mistral.rs/phi3.5.json", {F::kGeneric, ""}},
      {"mistral.rs/phi3.json", {F::kGeneric, ""}},
      {"mistral.rs/smollm3.jinja", {F::kHermes, "<think>"}},
      {"mistral.rs/vicuna.json", {F::kGeneric, ""}},
  };
  return table;
}

std::string close_of(const std::string& open) {
  if (open == "<think>") return "</think>";
  if (open == "<seed:think>") return "</seed:think>";
  if (open == "<|START_THINKING|>") return "<|END_THINKING|>";
  if (open == "<|channel|>analysis<|message|>") return "<|end|>";
  return "";
}

// Every template source of a file: .jinja as is; .json {"chat_template": text or [{name,
// template}]}.
std::vector<std::string> sources(const fs::path& p) {
  const std::string text = tf::test::read_file(p.string());
  if (p.extension() != ".json") return {text};
  const nlohmann::json j = nlohmann::json::parse(text);
  const nlohmann::json& t = j.at("chat_template");
  if (t.is_string()) return {t.get<std::string>()};
  std::vector<std::string> out;
  for (const auto& named : t) out.push_back(named.at("template").get<std::string>());
  return out;
}

TEST(ToolDetect, RealTemplates) {
  TF_REQUIRE_SHARED("models/templates");
  const fs::path root = tf::test::shared_path("models/templates");
  std::set<std::string> seen;
  for (const fs::path& dir : {root, root / "mistral.rs"}) {
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string ext = e.path().extension().string();
      if (!e.is_regular_file() || (ext != ".jinja" && ext != ".json")) continue;
      const std::string name = (dir == root ? "" : "mistral.rs/") + e.path().filename().string();
      seen.insert(name);
      auto it = expected().find(name);
      ASSERT_NE(it, expected().end()) << "not in the table: " << name;
      for (const std::string& src : sources(e.path())) {
        const OutputFormat f = detect_output_format(src);
        EXPECT_EQ(tool_format_name(f.tools), std::string(tool_format_name(it->second.tools)))
            << name;
        EXPECT_EQ(f.think_open, it->second.think_open) << name;
        EXPECT_EQ(f.think_close, close_of(it->second.think_open)) << name;
        EXPECT_EQ(f.starts_in_reasoning, it->second.starts_in_reasoning) << name;
      }
    }
  }
  EXPECT_EQ(seen.size(), expected().size());
}

// ollama's detection set: plain chat templates, none with tool syntax or thinking.
TEST(ToolDetect, OllamaTemplatesAreGeneric) {
  TF_REQUIRE_SHARED("models/templates/ollama/templates.jsonl");
  std::istringstream lines(
      tf::test::read_file(tf::test::shared_path("models/templates/ollama/templates.jsonl")));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json entry = nlohmann::json::parse(line);
    for (const auto& [name, src] : entry.items()) {
      const OutputFormat f = detect_output_format(src.get<std::string>());
      EXPECT_EQ(f.tools, F::kGeneric) << name;
      EXPECT_EQ(f.think_open, "") << name;
      ++n;
    }
  }
  EXPECT_EQ(n, 35);
}

TEST(ToolDetect, ForPrompt) {
  OutputFormat f;
  f.think_open = "<think>";
  f.think_close = "</think>";
  EXPECT_TRUE(for_prompt(f, "<|im_start|>assistant\n<think>\n").starts_in_reasoning);
  EXPECT_FALSE(for_prompt(f, "<|im_start|>assistant\n<think>\n\n</think>\n\n").starts_in_reasoning);
  EXPECT_FALSE(for_prompt(f, "<｜Assistant｜></think>").starts_in_reasoning);
  EXPECT_FALSE(for_prompt(f, "<|im_start|>assistant\n").starts_in_reasoning);
  f.think_open.clear();
  EXPECT_FALSE(for_prompt(f, "<think>").starts_in_reasoning);
}

TEST(ToolDetect, Names) {
  for (int i = 0; i <= int(F::kGptOss); ++i) {
    const F f = F(i);
    EXPECT_EQ(tool_format_from_name(tool_format_name(f)), f) << tool_format_name(f);
  }
  EXPECT_EQ(tool_format_from_name("nope"), std::nullopt);
}

TEST(ToolDetect, BrokenTemplateIsGeneric) {
  const OutputFormat f = detect_output_format("{% if %}<think>");
  EXPECT_EQ(f.tools, F::kGeneric);
  EXPECT_EQ(f.think_open, "<think>");
  EXPECT_FALSE(f.starts_in_reasoning);
}

}  // namespace
}  // namespace tf::chat::test
