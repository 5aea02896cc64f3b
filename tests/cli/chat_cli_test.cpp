// `tokenfab template` and `tokenfab chat` as a user runs them: exact bytes of a rendered
// prompt, one clean stderr line for every bad input, and a chat driven through a pipe whose
// turns reuse the cache and reply as `tokenfab run` does on the same rendered prompt.
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_test_util.h"

namespace {

using nlohmann::json;
using tf::test::expect_clean_error;
using tf::test::Result;
using tf::test::run;
using tf::test::tmp_path;
using tf::test::write_file;

// A small ChatML-like template: roles, content, an optional system default, tools, an extra
// variable, and the generation prompt; trim_blocks eats the newline after each block tag.
const char* kTemplate =
    "{{ bos_token }}{% if messages[0].role != 'system' %}<|system|>\nYou are helpful.<|end|>\n"
    "{% endif %}\n"
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}\n"
    "{% if tools %}<|tools|>{{ tools | tojson }}<|end|>\n{% endif %}\n"
    "{% if enable_thinking is defined and not enable_thinking %}<|nothink|>{% endif %}\n"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

// A temporary file that goes away with the test.
struct TmpFile {
  std::string path;
  TmpFile(const std::string& name, const std::string& bytes) : path(tmp_path(name)) {
    write_file(path, bytes);
  }
  ~TmpFile() { std::filesystem::remove(path); }
};

TEST(CliTemplate, RendersExactBytesWithNoNewlineAdded) {
  const TmpFile tmpl("tmpl.jinja", kTemplate);
  const TmpFile msgs("msgs.json",
                     R"([{"role": "user", "content": "Hi \u00e9"},
                         {"role": "assistant", "content": "Hello!"},
                         {"role": "user", "content": "Two\nlines"}])");
  const Result r = run({"template", "--chat-template", tmpl.path, "--messages", msgs.path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<s><|system|>\nYou are helpful.<|end|>\n<|user|>\nHi \xc3\xa9<|end|>\n"
            "<|assistant|>\nHello!<|end|>\n<|user|>\nTwo\nlines<|end|>\n<|assistant|>\n");
  EXPECT_TRUE(r.err.empty()) << r.err;

  // No generation prompt, other BOS text.
  const Result n = run({"template", "--chat-template", tmpl.path, "--messages", msgs.path,
                        "--no-generation-prompt", "--bos", ""});
  ASSERT_EQ(n.code, 0) << n.err;
  EXPECT_EQ(n.out,
            "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi \xc3\xa9<|end|>\n"
            "<|assistant|>\nHello!<|end|>\n<|user|>\nTwo\nlines<|end|>\n");
}

// The conversation-file form: messages, tools (printed by tojson in the order given) and extra
// variables; --var and --tools override; a .json template file (mistral.rs style) works too.
TEST(CliTemplate, ConversationObjectToolsVarsAndJsonTemplate) {
  const TmpFile tmpl("tmpl.json", json({{"chat_template", kTemplate}}).dump());
  const TmpFile conv("conv.json", R"({"messages": [{"role": "system", "content": "S"},
                                                   {"role": "user", "content": "U"}],
                                      "tools": [{"type": "function",
                                                 "function": {"name": "f", "b": 1, "a": 2}}],
                                      "extra": {"enable_thinking": false}})");
  const Result r =
      run({"template", "--chat-template", tmpl.path, "--messages", conv.path, "--eos", "E"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<s><|system|>\nS<|end|>\n<|user|>\nU<|end|>\n"
            "<|tools|>[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"b\": 1, \"a\": "
            "2}}]<|end|>\n<|nothink|><|assistant|>\n");
  const TmpFile tools("tools.json", R"([{"type": "function", "function": {"name": "g"}}])");
  const Result v = run({"template", "--chat-template", tmpl.path, "--messages", conv.path,
                        "--tools", tools.path, "--var", "enable_thinking=true"});
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_EQ(v.out,
            "<s><|system|>\nS<|end|>\n<|user|>\nU<|end|>\n"
            "<|tools|>[{\"type\": \"function\", \"function\": {\"name\": \"g\"}}]<|end|>\n"
            "<|assistant|>\n");
  // A list of named templates, as tokenizer_config.json may hold.
  const TmpFile named("named.json",
                      json({{"chat_template", json::array({
                                                  {{"name", "default"}, {"template", "D"}},
                                                  {{"name", "tool_use"}, {"template", "T"}},
                                              })}})
                          .dump());
  EXPECT_EQ(run({"template", "--chat-template", named.path, "--messages", conv.path}).out, "D");
  EXPECT_EQ(run({"template", "--chat-template", named.path, "--messages", conv.path,
                 "--template-variant", "tool_use"})
                .out,
            "T");
}

TEST(CliTemplate, BadInputIsOneLineAndExitOne) {
  const TmpFile tmpl("tmpl.jinja", kTemplate);
  const TmpFile msgs("msgs.json", R"([{"role": "user", "content": "x"}])");
  expect_clean_error(
      run({"template", "--chat-template", "/nonexistent/t.jinja", "--messages", msgs.path}),
      "/nonexistent/t.jinja");
  expect_clean_error(
      run({"template", "--chat-template", tmpl.path, "--messages", "/nonexistent/m.json"}),
      "/nonexistent/m.json");
  expect_clean_error(run({"template", "--messages", msgs.path}), "--chat-template");
  expect_clean_error(run({"template", "-m", "/nonexistent/model.gguf", "--messages", msgs.path}),
                     "/nonexistent/model.gguf");
  {
    const TmpFile bad("bad.json", "[{\"role\": \"user\",\n \"content\": }]");
    const Result r = run({"template", "--chat-template", tmpl.path, "--messages", bad.path});
    expect_clean_error(r, bad.path);
    EXPECT_NE(r.err.find("line 2, column"), std::string::npos) << r.err;
  }
  {
    const TmpFile bad("bad.json", R"({"chat_template": 5})");
    expect_clean_error(run({"template", "--chat-template", bad.path, "--messages", msgs.path}),
                       "chat_template");
  }
  {
    const TmpFile m5("m5.json", R"([{"role": "user", "content": 5}])");
    expect_clean_error(run({"template", "--chat-template", tmpl.path, "--messages", m5.path}),
                       "messages[0].content");
  }
  {
    const TmpFile syntax("syntax.jinja", "Hello\n{% for m in messages %}{{ m.content }");
    const Result r = run({"template", "--chat-template", syntax.path, "--messages", msgs.path});
    expect_clean_error(r, syntax.path);
    EXPECT_NE(r.err.find("template line 2, column"), std::string::npos) << r.err;
  }
  {
    // raise_exception's message, even one spanning lines, comes out on one line.
    const TmpFile raise("raise.jinja",
                        "{% if messages[0].role != 'system' %}"
                        "{{ raise_exception('Conversations must start\\nwith a system message') }}"
                        "{% endif %}");
    const Result r = run({"template", "--chat-template", raise.path, "--messages", msgs.path});
    expect_clean_error(r, "Conversations must start\\nwith a system message");
    EXPECT_NE(r.err.find(raise.path), std::string::npos) << r.err;
  }
  expect_clean_error(run({"template", "--chat-template", tmpl.path, "--messages", msgs.path,
                          "--var", "enable_thinking=nope"}),
                     "not JSON");
  expect_clean_error(
      run({"template", "--chat-template", tmpl.path, "--messages", msgs.path, "--var", "novalue"}),
      "NAME=JSON");
}

const char* kStories = "models/gguf/stories260K.gguf";

// A model without a template of its own renders the ChatML default, with the model's BOS/EOS
// texts, from its metadata alone.
TEST(CliTemplate, ModelWithoutTemplateUsesChatML) {
  TF_REQUIRE_SHARED(kStories);
  const TmpFile msgs("msgs.json", R"([{"role": "system", "content": "S"},
                                      {"role": "user", "content": "U"}])");
  const Result r =
      run({"template", "-m", tf::test::shared_path(kStories), "--messages", msgs.path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\n");
  const TmpFile tmpl("be.jinja", "{{ bos_token }}|{{ eos_token }}");
  const Result be = run({"template", "-m", tf::test::shared_path(kStories), "--chat-template",
                         tmpl.path, "--messages", msgs.path});
  ASSERT_EQ(be.code, 0) << be.err;
  EXPECT_EQ(be.out, "<s>|</s>");
}

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) v.push_back(json::parse(line));
  return v;
}

class CliChat : public ::testing::TestWithParam<std::string> {};

// Two lines through a pipe: two turns. The second reuses the first's prompt from the cache and
// processes only the rest; each reply is what `tokenfab run --temp 0` gives on the same
// rendered prompt (rendered by `tokenfab template`).
TEST_P(CliChat, TwoTurnsThroughAPipeReuseTheCacheAndMatchRun) {
  const std::string rel = "models/gguf/" + GetParam() + ".gguf";
  TF_REQUIRE_SHARED(rel);
  const std::string model = tf::test::shared_path(rel);
  const std::string n = "24";
  const std::vector<std::string> user = {"Hello there", "Tell me a story about a cat"};
  const Result r = run({"chat", "-m", model, "--temp", "0", "-n", n, "-t", "1", "--json"},
                       user[0] + "\n" + user[1] + "\n");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<json> turns = json_lines(r.out);
  ASSERT_EQ(turns.size(), 2u) << r.out;

  EXPECT_EQ(turns[0]["cached_tokens"], 0);
  for (const json& t : turns)
    EXPECT_EQ(t["prompt_tokens"].get<int64_t>() + t["cached_tokens"].get<int64_t>(),
              int64_t(t["prompt_ids"].size()));
  // Turn two: the first prompt is in the cache (the reply, decoded one token at a time, is
  // processed again with the new message so that the bits stay a fresh run's).
  const int64_t cached = turns[1]["cached_tokens"].get<int64_t>();
  EXPECT_GT(cached, 0);
  EXPECT_LE(cached, int64_t(turns[0]["prompt_ids"].size()));
  EXPECT_EQ(turns[1]["prompt_tokens"].get<int64_t>(),
            int64_t(turns[1]["prompt_ids"].size()) - cached);
  std::printf("  %-28s turn 2: %lld of %zu prompt tokens processed, %lld cached\n",
              GetParam().c_str(), (long long)turns[1]["prompt_tokens"].get<int64_t>(),
              turns[1]["prompt_ids"].size(), (long long)cached);

  json messages = json::array();
  for (size_t i = 0; i < turns.size(); ++i) {
    messages.push_back({{"role", "user"}, {"content", user[i]}});
    const TmpFile msgs("msgs.json", messages.dump());
    const Result rendered = run({"template", "-m", model, "--messages", msgs.path});
    ASSERT_EQ(rendered.code, 0) << rendered.err;
    const Result ref =
        run({"run", "-m", model, "--temp", "0", "-n", n, "-t", "1", "--json", "-p", rendered.out});
    ASSERT_EQ(ref.code, 0) << ref.err;
    const json j = json::parse(ref.out);
    EXPECT_EQ(j["prompt_tokens"], turns[i]["prompt_ids"]) << "turn " << i;
    EXPECT_EQ(j["text"], turns[i]["reply"]) << "turn " << i;
    EXPECT_EQ(j["tokens"].size(), turns[i]["completion_tokens"].get<size_t>()) << "turn " << i;
    messages.push_back({{"role", "assistant"}, {"content", turns[i]["reply"]}});
  }

  // --reuse-replies: the first reply's cached K/V serve too (all but its last token, when the
  // re-rendered text tokenizes the same way), so at least as much comes from the cache.
  const Result rr =
      run({"chat", "-m", model, "--temp", "0", "-n", n, "-t", "1", "--json", "--reuse-replies"},
          user[0] + "\n" + user[1] + "\n");
  ASSERT_EQ(rr.code, 0) << rr.err;
  const std::vector<json> rt = json_lines(rr.out);
  ASSERT_EQ(rt.size(), 2u);
  EXPECT_EQ(rt[1]["prompt_ids"], turns[1]["prompt_ids"]);
  EXPECT_GE(rt[1]["cached_tokens"].get<int64_t>(), cached);
  EXPECT_EQ(rt[1]["prompt_tokens"].get<int64_t>() + rt[1]["cached_tokens"].get<int64_t>(),
            int64_t(rt[1]["prompt_ids"].size()));
  std::printf("  %-28s --reuse-replies turn 2: %lld processed, %lld cached\n", GetParam().c_str(),
              (long long)rt[1]["prompt_tokens"].get<int64_t>(),
              (long long)rt[1]["cached_tokens"].get<int64_t>());
}

INSTANTIATE_TEST_SUITE_P(Models, CliChat, ::testing::Values("stories260K", "TinyStories-656K.f16"),
                         tf::test::StemName());

// Without --json stdout holds only the replies, one per line; stats go to stderr. A system
// message opens the conversation. End of input ends the program with 0.
TEST(CliChatText, RepliesOnStdoutStatsOnStderr) {
  TF_REQUIRE_SHARED(kStories);
  const std::string model = tf::test::shared_path(kStories);
  const Result r = run({"chat", "-m", model, "--temp", "0", "-n", "12", "--system", "Be kind."},
                       "Hi\n\nWhat now?");  // an empty line is skipped; the last has no newline
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("> "), std::string::npos) << "no prompt decoration on a pipe";
  EXPECT_NE(r.err.find("cached"), std::string::npos) << r.err;
  // The same turns with --json give the same replies: stdout held them and a newline each.
  const Result j =
      run({"chat", "-m", model, "--temp", "0", "-n", "12", "--system", "Be kind.", "--json"},
          "Hi\nWhat now?\n");
  ASSERT_EQ(j.code, 0) << j.err;
  const std::vector<json> turns = json_lines(j.out);
  ASSERT_EQ(turns.size(), 2u);
  EXPECT_EQ(r.out, turns[0]["reply"].get<std::string>() + "\n" +
                       turns[1]["reply"].get<std::string>() + "\n");

  const Result empty = run({"chat", "-m", model}, "");
  EXPECT_EQ(empty.code, 0) << empty.err;
  EXPECT_TRUE(empty.out.empty());
}

TEST(CliChatText, BadInputIsOneLineAndExitOne) {
  expect_clean_error(run({"chat", "-m", "/nonexistent/model.gguf"}, "hi\n"),
                     "/nonexistent/model.gguf");
  TF_REQUIRE_SHARED(kStories);
  const std::string model = tf::test::shared_path(kStories);
  const TmpFile raise("raise.jinja", "{{ raise_exception('no chatting') }}");
  expect_clean_error(run({"chat", "-m", model, "--chat-template", raise.path}, "hi\n"),
                     "no chatting");
  const TmpFile syntax("syntax.jinja", "{% if %}");
  expect_clean_error(run({"chat", "-m", model, "--chat-template", syntax.path}, "hi\n"),
                     "template line 1, column");
  // A conversation that outgrows the context.
  expect_clean_error(run({"chat", "-m", model, "-c", "32", "-n", "4"},
                         "Once upon a time there was a little girl named Lily who loved to "
                         "play outside in the sun\n"),
                     "context");
}

}  // namespace
