// tokenfab tokenize: token ids of a text as a JSON array. Works on vocab-only GGUF files.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "tokenfab/tokenfab.h"

namespace tf::cli {

namespace {
struct TokArgs {
  std::string model, text;
  bool no_bos = false, parse_special = false;
};

int tokenize(const TokArgs& a) {
  tools::ModelSourceOptions src;
  src.use_mmap = true;
  src.metadata_only = true;
  auto f = tools::open_model(a.model, src);
  auto tok = Tokenizer::from_gguf(*f);
  const std::vector<TokenId> ids = tok->encode(a.text, !a.no_bos, a.parse_special);
  std::printf("%s\n", nlohmann::json(ids).dump().c_str());
  return 0;
}
}  // namespace

Runner add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokArgs>();
  CLI::App* c = app.add_subcommand("tokenize", "print the token ids of a text as JSON");
  c->add_option("-m,--model", a->model,
                "GGUF file (a vocab-only file is enough) or Hugging Face model directory")
      ->required();
  c->add_option("text", a->text, "text to tokenize")->required();
  c->add_flag("--no-bos", a->no_bos, "do not add BOS/EOS tokens");
  c->add_flag("--parse-special", a->parse_special, "text spelling special tokens becomes them");
  return [a] { return tokenize(*a); };
}

}  // namespace tf::cli
