// A one-line progress bar on stderr for long conversions. On a terminal it redraws in place
// (at most ten times a second) and keeps log lines above it; when stderr is a file or pipe it
// draws nothing, so logs stay readable, and only the log lines appear.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tf::tools {

class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes);
  ~Progress();

  void set(uint64_t done_bytes);
  void add(uint64_t bytes) { set(done_ + bytes); }
  void log(const std::string& line);  // one line above the bar
  void finish();                      // final state, then a newline

  double seconds() const;

 private:
  void draw(bool force);
  void clear_line();

  std::string label_;
  uint64_t total_, done_ = 0;
  bool tty_, drawn_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_bytes(uint64_t bytes);  // "276.3 MiB"

}  // namespace tf::tools
