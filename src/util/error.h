// The one exception type the library throws for bad input (files, prompts, parameters).
// CLI and server catch it and turn it into a one-line message / HTTP error.
#pragma once

#include <stdexcept>
#include <string>

namespace tf {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tf
