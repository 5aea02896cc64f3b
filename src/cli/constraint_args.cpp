// --grammar / --json-schema: constrained output from the command line.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "sample/json_schema.h"
#include "util/error.h"
#include "util/file.h"

namespace tf::cli {

std::shared_ptr<const Grammar> ConstraintArgs::load() const {
  if (!grammar_file.empty() && !schema_file.empty())
    throw Error("give --grammar or --json-schema, not both");
  try {
    if (!grammar_file.empty()) return Grammar::parse(read_file(grammar_file, "grammar file"));
    if (schema_file.empty()) return nullptr;
    const std::string text = read_file(schema_file, "JSON schema file");
    const auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
    if (schema.is_discarded()) throw Error("it is not valid JSON");
    return Grammar::parse(json_schema_to_gbnf(schema));
  } catch (const Error& e) {
    const std::string& f = grammar_file.empty() ? schema_file : grammar_file;
    const std::string msg = e.what();
    if (msg.rfind("cannot read", 0) == 0) throw;
    throw Error(f + ": " + msg);
  }
}

void add_constraint_options(CLI::App* c, ConstraintArgs& a, const std::string& what) {
  c->add_option("--grammar", a.grammar_file, "GBNF grammar file: " + what);
  c->add_option("--json-schema", a.schema_file,
                "JSON Schema file (compiled to a grammar): " + what);
}

}  // namespace tf::cli
