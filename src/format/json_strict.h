// JSON from untrusted files (safetensors headers and indexes, Hugging Face config and tokenizer
// files), parsed with nlohmann-json but stricter: a key repeated within one object is an
// error (nlohmann would silently keep the last one, so two readers could disagree about what
// a file says), and every failure is a tf::Error naming the file.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tf::json_strict {

// Throws tf::Error "<what>: not valid JSON: ..." or "<what>: duplicate key 'k'".
nlohmann::json parse(std::string_view text, const std::string& what);

}  // namespace tf::json_strict
