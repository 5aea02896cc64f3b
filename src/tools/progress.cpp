#include "tools/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tf::tools {

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Progress::Progress(std::string label, uint64_t total_bytes)
    : label_(std::move(label)),
      total_(total_bytes),
      tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (drawn_ && !finished_) std::fputc('\n', stderr);  // leave the cursor on a fresh line
}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::set(uint64_t done) {
  done_ = std::min(done, total_);
  draw(false);
}

void Progress::clear_line() {
  if (drawn_) std::fputs("\r\033[K", stderr);
}

void Progress::log(const std::string& line) {
  clear_line();
  std::fprintf(stderr, "%s\n", line.c_str());
  drawn_ = false;
  draw(true);
}

void Progress::draw(bool force) {
  if (!tty_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  constexpr int kWidth = 30;
  const double frac = total_ ? double(done_) / double(total_) : 1.0;
  const int filled = int(frac * kWidth);
  std::string bar(size_t(filled), '#');
  bar.resize(kWidth, '.');
  clear_line();
  std::fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %.1fs", label_.c_str(), bar.c_str(),
               int(frac * 100), format_bytes(done_).c_str(), format_bytes(total_).c_str(),
               seconds());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (finished_) return;
  done_ = total_;
  draw(true);
  if (drawn_) std::fputc('\n', stderr);
  finished_ = true;
}

}  // namespace tf::tools
