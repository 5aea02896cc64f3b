// The chat layer: OpenAI messages normalized for the template, template selection from a
// model file, and prompt tokenization (special tokens parsed, BOS never doubled).
#include <gtest/gtest.h>

#include "chat/chat_template.h"
#include "format/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

using tf::chat::ChatInputs;
using tf::chat::ChatTemplate;
using tf::jinja::Json;

const char* kPlain = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
const char* kParts =
    "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}"
    "{% for p in m.content %}<{{ p.text }}>{% endfor %}{% endif %}{% endfor %}";

TEST(ChatLayer, ArgumentsStringBecomesTheObject) {
  ChatTemplate t("{{ messages[0].tool_calls[0].function.arguments | tojson }}", "<s>", "</s>");
  ChatInputs in;
  in.messages = Json::parse(R"([{"role": "assistant", "content": null, "tool_calls": [
      {"id": "c1", "type": "function", "function": {"name": "f",
       "arguments": "{\"b\": 1, \"a\": [\"é\", null]}"}}]}])");
  EXPECT_EQ(t.apply(in), R"({"b": 1, "a": ["é", null]})");
  // Not JSON: kept as the string it is.
  in.messages[0]["tool_calls"][0]["function"]["arguments"] = "not json";
  EXPECT_EQ(t.apply(in), R"("not json")");
}

TEST(ChatLayer, ContentPartsJoinedUnlessTheTemplateTakesThem) {
  ChatInputs in;
  in.messages = Json::parse(R"([{"role": "user", "content": [{"type": "text", "text": "a"},
                                                              {"type": "text", "text": "b"}]}])");
  ChatTemplate plain(kPlain, "", "");
  EXPECT_FALSE(plain.takes_content_parts());
  EXPECT_EQ(plain.apply(in), "user: a\nb\n");
  ChatTemplate parts(kParts, "", "");
  EXPECT_TRUE(parts.takes_content_parts());
  EXPECT_EQ(parts.apply(in), "<a><b>");
  // Checking `is string` alone is not taking parts (Qwen3's template drops anything else).
  ChatTemplate checks("{% for m in messages %}{% if m.content is string %}{{ m.content }}"
                      "{% else %}DROPPED{% endif %}{% endfor %}",
                      "", "");
  EXPECT_FALSE(checks.takes_content_parts());
  EXPECT_EQ(checks.apply(in), "a\nb");
  ChatTemplate filtered("{{ messages[0].content | map(attribute='text') | join('+') }}", "", "");
  EXPECT_TRUE(filtered.takes_content_parts());
  EXPECT_EQ(filtered.apply(in), "a+b");
}

TEST(ChatLayer, MalformedMessagesNameTheIndex) {
  ChatTemplate t(kPlain, "", "");
  auto err = [&](const char* messages) {
    ChatInputs in;
    in.messages = Json::parse(messages);
    try {
      t.apply(in);
    } catch (const tf::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(R"({"role": "user"})").find("must be an array"), std::string::npos);
  EXPECT_NE(err(R"([{"role": "user", "content": "x"}, 3])").find("messages[1]"), std::string::npos);
  EXPECT_NE(err(R"([{"content": "x"}])").find("messages[0].role"), std::string::npos);
  EXPECT_NE(err(R"([{"role": "user", "content": 5}])").find("messages[0].content"),
            std::string::npos);
  EXPECT_NE(err(R"([{"role": "user", "content": [{"type": "image_url"}]}])").find("image_url"),
            std::string::npos);
  EXPECT_NE(err(R"([{"role": "assistant", "tool_calls": {}}])").find("tool_calls"),
            std::string::npos);
}

TEST(ChatLayer, VariablesFollowTransformers) {
  ChatTemplate t("{{ tools is none }}|{{ documents is none }}|{{ add_generation_prompt }}|"
                 "{{ bos_token }}{{ eos_token }}|{{ enable_thinking }}",
                 "<s>", "</s>");
  ChatInputs in;
  in.add_generation_prompt = false;
  in.extra = Json::parse(R"({"enable_thinking": false})");
  EXPECT_EQ(t.apply(in), "True|True|False|<s></s>|False");
}

TEST(ChatLayer, DefaultTemplateIsChatML) {
  ChatTemplate t(tf::chat::default_template(), "", "");
  ChatInputs in;
  in.messages = Json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
      {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
        "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
      {"role": "tool", "content": "R"}])");
  EXPECT_EQ(t.apply(in),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n"
            "</tool_call><|im_end|>\n<|im_start|>tool\nR<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatLayer, TemplateFromModelFile) {
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-phi-3.gguf");
  const auto file = tf::gguf::File::open(tf::test::shared_path("models/vocab/ggml-vocab-phi-3.gguf"));
  const auto tok = tf::Tokenizer::from_gguf(*file);
  const ChatTemplate t = ChatTemplate::from_model(*file, *tok);
  EXPECT_EQ(t.source(), file->get_string("tokenizer.chat_template"));
  EXPECT_EQ(t.bos_token(), "<s>");
  ChatInputs in;
  in.messages = Json::parse(R"([{"role": "user", "content": "Hi"}])");
  const std::string prompt = t.apply(in);
  EXPECT_NE(prompt.find("<|user|>"), std::string::npos) << prompt;
  // A model without a template gets ChatML.
  TF_REQUIRE_SHARED("models/gguf/stories260K.gguf");
  const auto f2 = tf::gguf::File::open(tf::test::shared_path("models/gguf/stories260K.gguf"));
  const auto tok2 = tf::Tokenizer::from_gguf(*f2);
  EXPECT_EQ(ChatTemplate::from_model(*f2, *tok2).source(), tf::chat::default_template());
}

TEST(ChatLayer, PromptTokensParseSpecialsAndNeverDoubleBos) {
  TF_REQUIRE_SHARED("models/vocab/ggml-vocab-phi-3.gguf");
  const auto file = tf::gguf::File::open(tf::test::shared_path("models/vocab/ggml-vocab-phi-3.gguf"));
  const auto tok = tf::Tokenizer::from_gguf(*file);
  ASSERT_TRUE(tok->add_bos());
  const auto plain = tf::chat::tokenize_prompt(*tok, "<|user|>\nHi<|end|>\n");
  ASSERT_GE(plain.size(), 3u);
  EXPECT_EQ(plain[0], tok->bos());
  EXPECT_NE(plain[1], tok->bos());
  // <|user|> is one special token, not text.
  EXPECT_EQ(tok->token_text(plain[1]), "<|user|>");
  const auto with_bos = tf::chat::tokenize_prompt(*tok, "<s><|user|>\nHi<|end|>\n");
  EXPECT_EQ(with_bos, plain);
}

}  // namespace
