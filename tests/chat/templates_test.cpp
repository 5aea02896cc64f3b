// Every chat template in ../shared/models/templates, rendered for every conversation in
// tests/chat/conversations, with and without the generation prompt: our interpreter must give
// jinja2's bytes exactly (jinja2 run as HF apply_chat_template runs it, reference_render.py),
// or raise where jinja2 raises. The variables come from ChatTemplate::variables(), as the chat
// layer hands them to the template (bos "<s>", eos "</s>").
//
// The templates: models/templates/*.jinja, mistral.rs/*.jinja, mistral.rs/*.json (a
// {"chat_template": ...} object: a string, or a list of {"name", "template"}), and every line of
// ollama/templates.jsonl ({name: template}). jinja2 runs once, on all renders together.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "chat/jinja.h"
#include "reference.h"
#include "test_util.h"
#include "util/error.h"

namespace tf::chat::test {
namespace {

namespace fs = std::filesystem;

struct NamedTemplate {
  std::string name, source;
};

std::vector<std::string> sorted_files(const fs::path& dir, const std::string& ext) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ext) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<NamedTemplate> shared_templates() {
  const fs::path root = tf::test::shared_path("models/templates");
  std::vector<NamedTemplate> out;
  for (const auto& f : sorted_files(root, ".jinja"))
    out.push_back({fs::path(f).filename().string(), tf::test::read_file(f)});
  const fs::path mrs = root / "mistral.rs";
  for (const auto& f : sorted_files(mrs, ".jinja"))
    out.push_back({"mistral.rs/" + fs::path(f).filename().string(), tf::test::read_file(f)});
  for (const auto& f : sorted_files(mrs, ".json")) {
    const std::string name = "mistral.rs/" + fs::path(f).filename().string();
    const json j = json::parse(tf::test::read_file(f));
    const json& t = j.at("chat_template");
    if (t.is_string()) {
      out.push_back({name, t.get<std::string>()});
    } else {  // HF's list form: [{"name": "default", "template": "..."}, ...]
      for (const json& named : t)
        out.push_back({name + ":" + named.at("name").get<std::string>(),
                       named.at("template").get<std::string>()});
    }
  }
  std::istringstream lines(tf::test::read_file((root / "ollama" / "templates.jsonl").string()));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++n;
    char num[16];
    std::snprintf(num, sizeof num, "%02d", n);
    const json entry = json::parse(line);  // (not a temporary: items() refers to it)
    for (const auto& [name, src] : entry.items())
      out.push_back({"ollama/" + std::string(num) + "-" + name, src.get<std::string>()});
  }
  return out;
}

struct Conversation {
  std::string name;
  json messages, tools, extra;
};

std::vector<Conversation> conversations() {
  std::vector<Conversation> out;
  for (const auto& f : sorted_files(chat_dir() + "/conversations", ".json")) {
    const json j = json::parse(tf::test::read_file(f));
    out.push_back({fs::path(f).stem().string(), j.at("messages"), j.value("tools", json()),
                   j.value("extra", json::object())});
  }
  return out;
}

// One render: what jinja2 did, and what we did.
struct Job {
  size_t tmpl = 0, conv = 0;
  bool gen = false;
  RefResult ref;
  bool ok = false;
  std::string text;      // our render, or our error
  bool foreign = false;  // ours threw something other than tf::Error
};

struct Comparison {
  std::string skip;   // non-empty: why the comparison cannot run
  std::string error;  // non-empty: the harness itself failed
  std::vector<NamedTemplate> templates;
  std::vector<Conversation> convs;
  std::vector<Job> jobs;
};

// The variables when ChatTemplate cannot build them (its constructor or variables() threw):
// the same names, unnormalized messages, so jinja2 still gets its say.
json fallback_variables(const ChatInputs& in) {
  json v = {{"messages", in.messages},
            {"tools", in.tools},
            {"add_generation_prompt", in.add_generation_prompt},
            {"bos_token", "<s>"},
            {"eos_token", "</s>"},
            {"documents", nullptr}};
  for (const auto& [k, x] : in.extra.items()) v[k] = x;
  return v;
}

Comparison compute() {
  Comparison r;
  if (tf::test::shared_dir().empty()) {
    r.skip = "../shared not found (set TOKENFAB_SHARED): skipping the chat template comparison";
    return r;
  }
  if (!fs::is_directory(tf::test::shared_path("models/templates"))) {
    r.skip = "missing " + tf::test::shared_path("models/templates");
    return r;
  }
  if (!reference_available()) {
    r.skip = kNoReference;
    return r;
  }
  try {
    r.templates = shared_templates();
    r.convs = conversations();
  } catch (const std::exception& e) {
    r.error = std::string("reading the templates or conversations: ") + e.what();
    return r;
  }

  // Our side, and the jobs for jinja2.
  json jobs = json::array();
  for (size_t t = 0; t < r.templates.size(); ++t) {
    const std::string& src = r.templates[t].source;
    std::unique_ptr<ChatTemplate> ct;
    std::string parse_error;
    try {
      ct = std::make_unique<ChatTemplate>(src, "<s>", "</s>");
    } catch (const tf::Error& e) {
      parse_error = e.what();
    } catch (const std::exception& e) {
      parse_error = std::string("non-tf::Error exception: ") + e.what();
    }
    std::optional<tf::jinja::Template> tmpl;
    if (ct) {
      try {
        tmpl.emplace(src);
      } catch (const std::exception& e) {
        parse_error = std::string("Template() threw after ChatTemplate() parsed: ") + e.what();
      }
    }
    for (size_t c = 0; c < r.convs.size(); ++c) {
      for (bool gen : {true, false}) {
        ChatInputs in;
        in.messages = r.convs[c].messages;
        in.tools = r.convs[c].tools;
        in.add_generation_prompt = gen;
        in.extra = r.convs[c].extra;
        Job job;
        job.tmpl = t;
        job.conv = c;
        job.gen = gen;
        json vars;
        std::string vars_error;
        if (ct) {
          try {
            vars = ct->variables(in);
          } catch (const std::exception& e) {
            vars_error = std::string("ChatTemplate::variables() threw: ") + e.what();
          }
        }
        if (!ct || !vars_error.empty()) {
          vars = fallback_variables(in);
          job.text = !vars_error.empty() ? vars_error : parse_error;
          job.foreign = !vars_error.empty() || parse_error.rfind("non-tf::Error", 0) == 0;
        } else if (!tmpl) {
          job.text = parse_error;
          job.foreign = true;
        } else {
          try {
            job.text = tmpl->render(vars);
            job.ok = true;
          } catch (const tf::Error& e) {
            job.text = e.what();
          } catch (const std::exception& e) {
            job.text = std::string("non-tf::Error exception: ") + e.what();
            job.foreign = true;
          }
        }
        jobs.push_back({{"template", src}, {"vars", std::move(vars)}});
        r.jobs.push_back(std::move(job));
      }
    }
  }

  std::vector<RefResult> ref;
  if (const std::string err = run_reference(jobs, ref); !err.empty()) {
    r.error = err;
    return r;
  }
  for (size_t i = 0; i < ref.size(); ++i) r.jobs[i].ref = std::move(ref[i]);
  return r;
}

const Comparison& comparison() {
  static const Comparison r = compute();
  return r;
}

bool equal(const Job& j) {
  return !j.foreign && j.ok && j.ref.ok && j.text == j.ref.text;
}
bool both_error(const Job& j) {
  return !j.foreign && !j.ok && !j.ref.ok;
}

std::string label(const Comparison& r, const Job& j) {
  return r.templates[j.tmpl].name + " x " + r.convs[j.conv].name +
         (j.gen ? " (add_generation_prompt)" : " (no generation prompt)");
}

#define TF_REQUIRE_RUN(r)                            \
  do {                                               \
    if (!(r).skip.empty()) GTEST_SKIP() << (r).skip; \
    ASSERT_EQ((r).error, "");                        \
  } while (0)

TEST(ChatTemplates, FoundTemplatesAndConversations) {
  const Comparison& r = comparison();
  TF_REQUIRE_RUN(r);
  EXPECT_GE(r.templates.size(), 60u);  // 28 + 16 + 35 when this was written
  EXPECT_GE(r.convs.size(), 12u);
}

TEST(ChatTemplates, RenderAsJinja2) {
  const Comparison& r = comparison();
  TF_REQUIRE_RUN(r);
  constexpr int kMaxPrinted = 20, kMaxPerTemplate = 2;
  size_t n_equal = 0, n_both_error = 0, n_mismatch = 0;
  int n_printed = 0;
  std::map<std::string, int> mismatches_per_template;
  for (const Job& j : r.jobs) {
    if (equal(j)) {
      ++n_equal;
      continue;
    }
    if (both_error(j)) {
      ++n_both_error;
      continue;
    }
    ++n_mismatch;
    // Printed: the first two of each template, twenty in all (the rest are counted).
    if (++mismatches_per_template[r.templates[j.tmpl].name] > kMaxPerTemplate) continue;
    if (++n_printed > kMaxPrinted) continue;
    std::ostringstream msg;
    msg << "mismatch: " << label(r, j) << "\n  ";
    if (j.foreign) {
      msg << "ours failed in a way the contract rules out: " << j.text
          << "\n  jinja2: " << (j.ref.ok ? "renders" : j.ref.text);
    } else if (j.ok && j.ref.ok) {
      msg << first_difference(j.ref.text, j.text);
    } else if (j.ref.ok) {
      msg << "jinja2 renders (" << j.ref.text.size() << " bytes: \""
          << escaped(j.ref.text.substr(0, 120)) << "...\"), ours raises: " << j.text;
    } else {
      msg << "jinja2 raises " << j.ref.text << ", ours renders (" << j.text.size() << " bytes): \""
          << escaped(j.text.substr(0, 120)) << "...\"";
    }
    ADD_FAILURE() << msg.str();
  }
  std::cout << "[ chat     ] " << r.templates.size() << " templates x " << r.convs.size()
            << " conversations x 2 = " << r.jobs.size() << " renders: " << n_equal << " equal, "
            << n_both_error << " both error, " << n_mismatch << " mismatch\n";
  if (n_mismatch > 0) {
    std::cout << "[ chat     ] mismatches per template"
              << (n_printed < int(n_mismatch) ? " (not all printed above)" : "") << ":\n";
    for (const auto& [name, n] : mismatches_per_template)
      std::cout << "               " << name << ": " << n << "\n";
  }
  EXPECT_EQ(n_mismatch, 0u);
}

// Guards the comparison itself: it must not compare errors to errors everywhere. Some template
// renders every conversation, both ways, to non-empty text, and ours gives the same bytes.
TEST(ChatTemplates, SomeTemplateRendersEveryConversation) {
  const Comparison& r = comparison();
  TF_REQUIRE_RUN(r);
  std::vector<int> ref_nonempty(r.templates.size(), 0), ours_equal(r.templates.size(), 0);
  for (const Job& j : r.jobs) {
    if (j.ref.ok && !j.ref.text.empty()) ++ref_nonempty[j.tmpl];
    if (equal(j) && !j.text.empty()) ++ours_equal[j.tmpl];
  }
  const int all = int(r.convs.size()) * 2;
  std::vector<std::string> ref_all, ours_all;
  for (size_t t = 0; t < r.templates.size(); ++t) {
    if (ref_nonempty[t] == all) ref_all.push_back(r.templates[t].name);
    if (ours_equal[t] == all) ours_all.push_back(r.templates[t].name);
  }
  std::cout << "[ chat     ] " << ref_all.size() << " templates render every conversation "
            << "non-empty in jinja2, " << ours_all.size() << " of them equal here\n";
  ASSERT_FALSE(ref_all.empty()) << "no template renders all conversations in jinja2: the "
                                   "harness or the conversations are broken";
  EXPECT_FALSE(ours_all.empty()) << "none of the templates that jinja2 renders for every "
                                    "conversation (e.g. "
                                 << ref_all.front() << ") gives the same bytes here for all";
  // Every conversation renders somewhere, so none is broken as a whole.
  for (size_t c = 0; c < r.convs.size(); ++c) {
    int ok = 0;
    for (const Job& j : r.jobs)
      if (j.conv == c && j.ref.ok && !j.ref.text.empty()) ++ok;
    EXPECT_GT(ok, 0) << "conversation " << r.convs[c].name << " renders with no template";
  }
}

// Both sides raising is a pass, but it must stay the exception: mostly templates' own
// raise_exception for conversations they do not support (roles, tool calls).
TEST(ChatTemplates, FewRendersErrorOnBothSides) {
  const Comparison& r = comparison();
  TF_REQUIRE_RUN(r);
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> by_cause;
  size_t n = 0;
  for (const Job& j : r.jobs) {
    if (!both_error(j)) continue;
    ++n;
    by_cause[{r.templates[j.tmpl].name, j.ref.text.substr(0, 110)}].push_back(
        r.convs[j.conv].name + (j.gen ? "" : "/nogen"));
  }
  std::cout << "[ chat     ] " << n << " of " << r.jobs.size()
            << " renders raise on both sides; by template and jinja2's error:\n";
  for (const auto& [key, where] : by_cause) {
    std::cout << "               " << key.first << " (" << where.size() << "): " << key.second
              << "\n";
  }
  EXPECT_LT(double(n), 0.25 * double(r.jobs.size()))
      << "too many renders fail on both sides: the comparison says little";
}

// The contract of jinja.h: an error names its line and column (checked where ours raises and
// jinja2 does too).
TEST(ChatTemplates, ErrorsNameLineAndColumn) {
  const Comparison& r = comparison();
  TF_REQUIRE_RUN(r);
  int bad = 0;
  for (const Job& j : r.jobs) {
    if (!both_error(j) || has_position_prefix(j.text)) continue;
    if (++bad <= 10)
      ADD_FAILURE() << label(r, j) << ": error lacks \"template line L, column C: \": " << j.text;
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace
}  // namespace tf::chat::test
