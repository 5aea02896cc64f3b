// Constrained decoding end to end on real models: whatever the model would say, the output
// follows the grammar (sampled at temperature 1 with several seeds, and greedy), and generation
// ends once the sentence is whole.
#include <gtest/gtest.h>

#include "sample/grammar.h"
#include "test_util.h"
#include "tokenfab/tokenfab.h"

namespace {

const char* kGrammars[] = {
    R"(root ::= " "? [0-9]{1,3} " apples and " [0-9]{1,3} " pears.")",
    R"(root ::= "{" ws "\"name\":" ws "\"" [a-z ]{1,12} "\"," ws "\"age\":" ws [1-9] [0-9]? ws "}"
ws ::= " "?)",
    R"(root ::= ("yes" | "no") ("," " "? ("yes" | "no")){2})",
};

TEST(GrammarGeneration, OutputAlwaysFollowsTheGrammar) {
  for (const char* model : {"models/gguf/stories260K.gguf", "models/gguf/TinyStories-656K.fixed-scores.q8_0.gguf"}) {
    const std::string rel = model;
    TF_REQUIRE_SHARED(rel);
    SCOPED_TRACE(model);
    auto engine = tf::Engine::load(tf::test::shared_path(rel));
    for (const char* text : kGrammars) {
      const auto grammar = tf::Grammar::parse(text);
      if (rel.find("656K") != std::string::npos && std::string(text).find("\"{\"") != std::string::npos) {
        // This vocabulary has no '{' (and no byte tokens): no token can begin the output.
        tf::GenerateOptions go;
        go.grammar = grammar;
        const tf::Generation g = engine->generate("Once upon a time", go);
        EXPECT_EQ(g.stop_reason, "grammar");
        EXPECT_EQ(g.text, "");
        continue;
      }
      for (uint64_t seed : {1, 2, 3, 0}) {
        tf::GenerateOptions go;
        go.n_predict = 80;
        go.grammar = grammar;
        go.sampling.seed = seed;
        go.sampling.temperature = seed == 0 ? 0.0f : 1.0f;  // seed 0 here: greedy
        const tf::Generation g = engine->generate("Once upon a time", go);
        SCOPED_TRACE(g.text);
        tf::GrammarMatcher m(grammar);
        EXPECT_TRUE(m.accept(g.text)) << "output leaves the grammar";
        EXPECT_EQ(g.stop_reason, "eos");
        EXPECT_TRUE(m.complete()) << "ended before the sentence was whole";
      }
    }
  }
}

TEST(GrammarGeneration, BadGrammarIsAClearError) {
  try {
    tf::Grammar::parse("root ::= [0-9");
    FAIL() << "accepted";
  } catch (const tf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("grammar line 1, column"), std::string::npos) << e.what();
  }
}

}  // namespace
