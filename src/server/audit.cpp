#include "server/audit.h"

#include <chrono>
#include <ctime>

#include "util/error.h"

namespace tf::server {

namespace {
std::string now_iso() {
  const auto t = std::chrono::system_clock::now();
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  const int ms = int(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char b[40];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", b, ms);
  return out;
}
}  // namespace

AuditLog::AuditLog(const AuditOptions& o) : o_(o) {
  if (o_.path.empty()) return;
  if (o_.keep < 1 || o_.keep > 1000) throw Error("--audit-keep must be in 1..1000");
  if (o_.max_bytes < 4096) throw Error("--audit-max-bytes must be at least 4096");
  f_ = std::fopen(o_.path.c_str(), "ab");
  if (!f_) throw Error("cannot open the audit log " + o_.path);
  std::fseek(f_, 0, SEEK_END);
  const long n = std::ftell(f_);
  size_ = n > 0 ? uint64_t(n) : 0;
}

AuditLog::~AuditLog() {
  if (f_) std::fclose(f_);
}

void AuditLog::rotate() {
  std::fclose(f_);
  f_ = nullptr;
  std::remove((o_.path + "." + std::to_string(o_.keep)).c_str());
  for (int i = o_.keep - 1; i >= 1; --i)
    std::rename((o_.path + "." + std::to_string(i)).c_str(),
                (o_.path + "." + std::to_string(i + 1)).c_str());
  std::rename(o_.path.c_str(), (o_.path + ".1").c_str());
  f_ = std::fopen(o_.path.c_str(), "ab");
  size_ = 0;
  if (!f_)
    std::fprintf(stderr, "tokenfab: cannot reopen the audit log %s after rotating it\n",
                 o_.path.c_str());
}

void AuditLog::write(const nlohmann::ordered_json& record) {
  if (!f_) return;
  nlohmann::ordered_json line;
  line["time"] = now_iso();
  for (const auto& kv : record.items()) line[kv.key()] = kv.value();
  const std::string s =
      line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lk(mu_);
  if (!f_) {
    f_ = std::fopen(o_.path.c_str(), "ab");
    if (!f_) return;
  }
  if (size_ > 0 && size_ + s.size() > o_.max_bytes) rotate();
  if (!f_) return;
  std::fwrite(s.data(), 1, s.size(), f_);
  std::fflush(f_);
  size_ += s.size();
}

}  // namespace tf::server
