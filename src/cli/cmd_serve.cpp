// tokenfab serve: the OpenAI-compatible HTTP server (see src/server/server.h).
#include <cctype>
#include <fstream>

#include "cli/commands.h"
#include "model/kv_cache.h"
#include "server/server.h"
#include "server/tenants.h"
#include "util/error.h"

namespace tf::cli {

namespace {
// "512M", "2G", "1.5GiB", "1000000" -> bytes (K/M/G/T are powers of 1024).
size_t parse_bytes(const std::string& text, const char* option = "--kv-memory") {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  for (auto& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  double scale = 0;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "K")
    scale = 1024.0;
  else if (unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    scale = 1024.0 * 1024 * 1024 * 1024;
  if (used == 0 || scale == 0 || !(v > 0) || v * scale > 1e15)
    throw Error(std::string(option) + ": '" + text + "' is not a size (e.g. 512M, 2G)");
  return size_t(v * scale);
}
}  // namespace

Runner add_serve(CLI::App& app) {
  auto* c = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  auto o = std::make_shared<server::ServeOptions>();
  auto key_file = std::make_shared<std::string>();
  auto kv_type = std::make_shared<std::string>("f16");
  auto kv_memory = std::make_shared<std::string>();
  c->add_option("-m,--model", o->model_path, "GGUF model file or Hugging Face model directory")
      ->required();
  c->add_option(
      "--quant", o->quant,
      "Hugging Face directory: convert the matrices to this type on load (f16, q8_0, q4_k_m, ...)");
  c->add_option("--host", o->http.host,
                "address to listen on (default 127.0.0.1: this machine only)");
  c->add_option("--port", o->http.port, "port (0: any free port, printed at start)");
  c->add_option("--api-key", o->api_key, "require this key (Authorization: Bearer KEY)");
  c->add_option("--api-key-file", *key_file, "read the key from this file (first line)");
  c->add_option("--parallel", o->parallel, "sequences decoded together (default 4)");
  c->add_option("-c,--ctx-size", o->n_ctx,
                "context per sequence (default: the model's, up to 4096)");
  c->add_option("-t,--threads", o->threads, "threads (default: by model size)");
  c->add_option("--chat-template", o->chat_template_file,
                "Jinja chat template file (default: the model's)");
  c->add_option("--model-id", o->model_id, "the model's name in the API (default: the file name)");
  c->add_option("--max-queue", o->max_queue,
                "requests waiting for a slot before 429 (default 256)");
  c->add_option("--kv-memory", *kv_memory,
                "KV-cache memory, e.g. 2G (default: --parallel sequences of the full context); "
                "requests are admitted while their worst case fits");
  c->add_option("--request-timeout", o->request_timeout_s,
                "seconds a request may take from arrival, queue included (default 600; 0: none)")
      ->check(CLI::NonNegativeNumber);
  add_kv_type_option(c, *kv_type);
  auto* keys = c->add_option("--api-keys", o->api_keys_file,
                             "tenants: a JSON file of hashed keys with budgets and limits "
                             "(tokenfab keygen; reloaded on SIGHUP)");
  keys->excludes(c->get_option("--api-key"))->excludes(c->get_option("--api-key-file"));
  c->add_option(
      "--usage-file", o->usage_file,
      "keep the tenants' usage counters in this file (default with --api-keys: FILE.usage.json)");
  auto audit_max = std::make_shared<std::string>("64M");
  c->add_option("--audit-log", o->audit.path, "append one JSON line per request to this file");
  c->add_option("--audit-max-bytes", *audit_max,
                "rotate the audit log past this size (default 64M)");
  c->add_option("--audit-keep", o->audit.keep, "rotated audit logs kept (default 5)")
      ->check(CLI::Range(1, 1000));
  c->add_flag("--audit-content", o->audit.content, "also log each request's body and output text");
  add_meter_options(c, o->meter);
  return [o, key_file, kv_type, kv_memory, audit_max] {
    if (!kv_memory->empty()) o->kv_memory = parse_bytes(*kv_memory);
    o->audit.max_bytes = parse_bytes(*audit_max, "--audit-max-bytes");
    if (!key_file->empty()) {
      std::ifstream f(*key_file);
      if (!f) throw Error("cannot read the API key file " + *key_file);
      std::getline(f, o->api_key);
      while (!o->api_key.empty() && (o->api_key.back() == '\r' || o->api_key.back() == ' '))
        o->api_key.pop_back();
      if (o->api_key.empty()) throw Error("the API key file " + *key_file + " is empty");
    }
    o->kv_type = parse_kv_type(*kv_type);
    return server::serve(*o);
  };
}

Runner add_keygen(CLI::App& app) {
  auto* c =
      app.add_subcommand("keygen", "make an API key and its tenant entry for serve --api-keys");
  auto name = std::make_shared<std::string>("tenant");
  auto key = std::make_shared<std::string>();
  c->add_option("--name", *name, "the tenant's name");
  c->add_option("--key", *key, "hash this key instead of making a new one");
  return [name, key] {
    const std::string k = key->empty() ? server::new_api_key() : *key;
    nlohmann::ordered_json entry = {{"name", *name},
                                    {"key_sha256", server::hex(server::sha256(k))}};
    // The entry is checked as the server will read it.
    server::parse_tenants(nlohmann::ordered_json{{"tenants", {entry}}}.dump(), "the new entry");
    std::printf("key (give it to the tenant; it is not stored): %s\n", k.c_str());
    std::printf("entry for the keys file: %s\n", entry.dump().c_str());
    return 0;
  };
}

}  // namespace tf::cli
