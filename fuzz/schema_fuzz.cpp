// libFuzzer target for the JSON Schema converter: any JSON document as a schema must give GBNF
// text that the grammar parser accepts (the converter's output is trusted by the server), or a
// tf::Error; a grammar it made is also run over the input's own bytes, so the matcher sees
// schema-shaped grammars.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "sample/grammar.h"
#include "sample/json_schema.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
  if (schema.is_discarded()) return 0;
  std::string gbnf;
  try {
    gbnf = tf::json_schema_to_gbnf(schema);
  } catch (const tf::Error&) {
    return 0;  // refused, with a message: fine
  }
  try {
    tf::GrammarMatcher m(tf::Grammar::parse(gbnf));
    m.accept(text);
    m.complete();
  } catch (const tf::Error& e) {
    std::fprintf(stderr, "the converter made a grammar its parser refuses: %s\n%s\n", e.what(), gbnf.c_str());
    std::abort();
  }
  return 0;
}
