// `tokenfab template` itself (not only the library under it) prints exactly what jinja2
// renders, for the real templates in ../shared and a spread of the test conversations.
#include <filesystem>

#include "chat/chat_template.h"
#include "chat/reference.h"
#include "cli_test_util.h"
#include "util/error.h"

namespace {

namespace fs = std::filesystem;
using tf::chat::test::json;
using tf::test::Result;
using tf::test::run;

TEST(CliTemplate, SharedTemplatesMatchJinja2) {
  TF_REQUIRE_SHARED("models/templates");
  if (!tf::chat::test::reference_available()) GTEST_SKIP() << tf::chat::test::kNoReference;
  std::vector<std::string> templates;
  for (const auto& e : fs::directory_iterator(tf::test::shared_path("models/templates")))
    if (e.path().extension() == ".jinja") templates.push_back(e.path().string());
  std::sort(templates.begin(), templates.end());
  ASSERT_GE(templates.size(), 20u);
  const std::vector<std::string> convs = {"01-system-user.json", "06-tool-call.json", "10-chinese-emoji.json"};
  struct Case {
    std::string tmpl, conv;
    bool gen;
  };
  std::vector<Case> cases;
  json jobs = json::array();
  for (const auto& t : templates) {
    const std::string src = tf::test::read_file(t);
    for (const auto& c : convs) {
      const std::string conv_path = tf::chat::test::chat_dir() + "/conversations/" + c;
      const json conv = json::parse(tf::test::read_file(conv_path));
      for (bool gen : {true, false}) {
        tf::chat::ChatInputs in;
        in.messages = conv["messages"];
        if (conv.contains("tools")) in.tools = conv["tools"];
        if (conv.contains("extra")) in.extra = conv["extra"];
        in.add_generation_prompt = gen;
        json vars;
        try {
          vars = tf::chat::ChatTemplate(src, "<s>", "</s>").variables(in);
        } catch (const tf::Error&) {
          continue;  // a template we cannot parse fails the library tests already
        }
        jobs.push_back({{"template", src}, {"vars", vars}});
        cases.push_back({t, conv_path, gen});
      }
    }
  }
  std::vector<tf::chat::test::RefResult> ref;
  const std::string err = tf::chat::test::run_reference(jobs, ref);
  ASSERT_EQ(err, "");
  ASSERT_EQ(ref.size(), cases.size());
  int equal = 0, both_error = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<std::string> args = {"template", "--chat-template", cases[i].tmpl, "--messages", cases[i].conv,
                                      "--bos", "<s>", "--eos", "</s>"};
    if (!cases[i].gen) args.push_back("--no-generation-prompt");
    const Result r = run(args);
    if (ref[i].ok) {
      EXPECT_EQ(r.code, 0) << cases[i].tmpl << " " << cases[i].conv << ": " << r.err;
      EXPECT_EQ(r.out, ref[i].text) << cases[i].tmpl << " " << cases[i].conv << " gen=" << cases[i].gen;
      equal += r.code == 0 && r.out == ref[i].text;
    } else {
      EXPECT_EQ(r.code, 1) << cases[i].tmpl << " " << cases[i].conv << ": jinja2 raised " << ref[i].text;
      both_error += r.code == 1;
    }
  }
  std::printf("[ template ] %zu CLI renders: %d byte-equal to jinja2, %d rejected by both\n", cases.size(), equal,
              both_error);
  EXPECT_GT(equal, int(cases.size()) / 2);
}

}  // namespace
