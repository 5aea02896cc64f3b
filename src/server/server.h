// `tokenfab serve`: the OpenAI-compatible HTTP API over the continuous-batching scheduler.
// The port opens at once; /health answers 503 until the model has loaded. SIGTERM / SIGINT
// stop it gracefully: new requests are refused, running ones end (their streams get a final
// chunk and [DONE]), and the process exits 0.
#pragma once

#include <memory>
#include <string>

#include "engine/meter.h"
#include "server/audit.h"
#include "server/http.h"
#include "tensor/dtype.h"

namespace tf::server {

struct ServeOptions {
  std::string model_path;  // GGUF file or Hugging Face model directory
  std::string quant;       // directories: convert the matrices to this type on load
  std::string model_id;  // default: the file name without .gguf
  HttpOptions http;
  std::string api_key;   // empty: no authentication
  int parallel = 4;
  int64_t n_ctx = 0;     // per sequence; 0 = the model's (capped at 4096)
  int threads = 0;
  DType kv_type = DType::F16;
  std::string chat_template_file;
  size_t max_queue = 256;
  size_t kv_memory = 0;            // KV-cache bytes; 0 = parallel x ctx positions
  double request_timeout_s = 600;  // per request, from arrival; 0 = none
  MeterOptions meter;              // energy source and prices (engine/meter.h)
  // Tenants (server/tenants.h): keys, budgets and limits; "" = one tenant, "default".
  std::string api_keys_file;
  // The tenants' usage counters, kept across restarts; "" = the keys file's path plus
  // ".usage.json" when there is one, else in memory only.
  std::string usage_file;
  AuditOptions audit;  // one JSON line per request (server/audit.h)
};

// Runs the server until a signal; returns the process exit code.
int serve(const ServeOptions& opts);

}  // namespace tf::server
