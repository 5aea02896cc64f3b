// The audit log: one JSON line per API request (time, tenant, endpoint, model, status, token
// counts, joules, cost, latency), appended and flushed as each request ends. Prompt and
// output text are left out unless the server runs with --audit-content. Past max_bytes the
// file is rotated: FILE -> FILE.1 -> ... -> FILE.<keep>, the oldest dropped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace tf::server {

struct AuditOptions {
  std::string path;  // "" = no log
  uint64_t max_bytes = 64ull << 20;
  int keep = 5;
  bool content = false;
};

class AuditLog {
 public:
  // Opens (appends to) the file; throws tf::Error when it cannot.
  explicit AuditLog(const AuditOptions& o);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;
  bool enabled() const { return !o_.path.empty(); }
  bool content() const { return o_.content; }
  // Adds "time" (UTC, ISO 8601 with milliseconds) first and writes the line.
  void write(const nlohmann::ordered_json& record);

 private:
  void rotate();  // with mu_ held
  AuditOptions o_;
  std::mutex mu_;
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tf::server
