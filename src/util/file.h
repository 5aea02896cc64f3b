// Whole small files (keys, grammars, schemas, templates) read as text.
#pragma once

#include <string>

namespace tf {

// The file's bytes; throws tf::Error "cannot read the <what> <path>".
std::string read_file(const std::string& path, const char* what);

}  // namespace tf
