#include "server/server.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "chat/chat_template.h"
#include "server/audit.h"
#include "server/messages_api.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/responses_api.h"
#include "server/tenants.h"
#include "tokenfab/tokenfab.h"
#include "tools/progress.h"
#include "util/error.h"
#include "util/file.h"

namespace tf::server {

namespace {

using Clock = std::chrono::steady_clock;

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

HttpResponse json_response(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = dump(body);
  return r;
}

HttpResponse error_response(const ApiError& e) {
  HttpResponse r = json_response(e.status, error_body(e));
  if (e.status == 429 || e.status == 503)
    r.headers["Retry-After"] = std::to_string(std::max<int64_t>(1, e.retry_after));
  if (e.status == 405 && !e.allow.empty()) r.headers["Allow"] = e.allow;
  return r;
}

ApiError api_error(int status, const std::string& type, const std::string& msg,
                   const std::string& code = "", const std::string& param = "") {
  ApiError e;
  e.status = status;
  e.type = type;
  e.message = msg;
  e.code = code;
  e.param = param;
  return e;
}

// Constant-time comparison: the time taken does not depend on where the strings differ.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? uint8_t(a[i]) : 0, y = i < b.size() ? uint8_t(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t base =
      uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
  char b[64];
  std::snprintf(b, sizeof b, "%s%016llx%04llx", prefix, (unsigned long long)base,
                (unsigned long long)(counter++ & 0xffff));
  return b;
}

// A tenant's concurrent-request slot, held from admission to the request's end.
struct Lease {
  Tenants* tenants;
  std::string tenant;
  Lease(Tenants* t, std::string n) : tenants(t), tenant(std::move(n)) {}
  ~Lease() { tenants->release(tenant); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
};

// Who sent a request, as far as routing has found out (for the audit log).
struct RequestInfo {
  std::string tenant;  // "" until authenticated
  std::string model;
  bool generation = false;  // a request for the engine (not /health, /metrics, /v1/models)
};

// Which API a request came through: one engine path, four wire formats.
enum class ApiKind { kChat, kCompletion, kResponses, kMessages };

// One HTTP request's generations (n choices, or several completion prompts).
struct Job {
  ApiKind kind = ApiKind::kChat;
  ApiRequest api;
  Json body;  // the request as sent (the Responses API echoes some of it)
  std::vector<std::unique_ptr<chat::StreamingOutputParser>> parsers;  // per choice, when parsing
  std::unique_ptr<ResponsesStream> responses;
  std::unique_ptr<MessagesStream> messages;
  std::string id;
  int64_t created = 0;
  std::shared_ptr<Stream> stream;
  std::vector<ChoiceResult> results;
  std::vector<bool> started;
  std::vector<size_t> offsets;  // text offsets (completions logprobs)
  std::vector<uint64_t> ids;    // scheduler ids
  std::vector<Clock::time_point> last_token;
  Clock::time_point t0;
  int remaining = 0;
  std::string endpoint;
  std::string tenant;
  std::unique_ptr<Lease> lease;  // released when the last generation ends
  std::mutex mu;                 // sinks run on the scheduler thread; on_close on the I/O thread
};

class Server {
 public:
  explicit Server(const ServeOptions& o) : o_(o) {
    model_id_ = o.model_id;
    if (model_id_.empty()) {
      std::string path = o.model_path;
      while (path.size() > 1 && path.back() == '/') path.pop_back();  // a directory's name
      std::string base = path.substr(path.find_last_of('/') + 1);
      if (base.size() > 5 && base.compare(base.size() - 5, 5, ".gguf") == 0)
        base.resize(base.size() - 5);
      model_id_ = base;
    }
  }

  int run() {
    // Signals go to one watcher thread: block them here, before any thread starts.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);

    // The books first: a bad keys file, usage file or audit path is a startup error.
    try {
      std::string usage = o_.usage_file;
      if (usage.empty() && !o_.api_keys_file.empty()) usage = o_.api_keys_file + ".usage.json";
      tenants_.open(o_.api_keys_file, usage);
      audit_ = std::make_unique<AuditLog>(o_.audit);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
    if (tenants_.has_keys())
      std::fprintf(stderr, "tokenfab: %zu tenants from %s (usage in %s)\n",
                   tenants_.snapshot().size(), o_.api_keys_file.c_str(),
                   tenants_.usage_file().c_str());

    http_ = std::make_unique<HttpServer>(
        o_.http,
        [this](const HttpRequest& r, const std::shared_ptr<Stream>& s) { return handle(r, s); });
    const int port = http_->listen();
    std::fprintf(stderr, "tokenfab: listening on http://%s:%d (model %s loading)\n",
                 o_.http.host.c_str(), port, model_id_.c_str());
    std::fflush(stderr);

    std::thread loader([this] { load(); });
    std::thread watcher([this, set] {
      for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (exiting_) return;  // our own wake-up at exit
        if (sig == SIGHUP) {   // re-read the keys file; a bad one keeps the keys in force
          try {
            tenants_.reload();
            std::fprintf(stderr, "tokenfab: SIGHUP: %s reloaded\n",
                         tenants_.has_keys() ? tenants_.keys_file().c_str() : "nothing to be");
          } catch (const std::exception& e) {
            std::fprintf(stderr, "tokenfab: SIGHUP: %s; the previous keys stay in force\n",
                         e.what());
          }
          std::fflush(stderr);
          continue;
        }
        std::fprintf(stderr, "tokenfab: %s: shutting down\n",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
        shutdown();
        return;
      }
    });
    // The usage counters reach their file within a second of changing.
    std::thread persister([this] {
      std::unique_lock<std::mutex> lk(persist_mu_);
      while (!persist_stop_) {
        persist_cv_.wait_for(lk, std::chrono::seconds(1));
        lk.unlock();
        tenants_.save();
        lk.lock();
      }
    });
    http_->run();
    // The loop ended: by shutdown(), or because loading failed.
    if (loader.joinable()) loader.join();
    if (!shutting_down_) {
      // Wake the watcher so it can be joined.
      exiting_ = true;
      pthread_kill(watcher.native_handle(), SIGTERM);
    }
    watcher.join();
    sched_.reset();  // the last requests end (and are charged)
    {
      std::lock_guard<std::mutex> lk(persist_mu_);
      persist_stop_ = true;
    }
    persist_cv_.notify_all();
    persister.join();
    if (!tenants_.save() && exit_code_ == 0) exit_code_ = 1;
    return exit_code_;
  }

 private:
  void load() {
    try {
      LoadOptions lo;
      lo.n_threads = o_.threads;
      lo.n_ctx = 8;  // the engine's own context is unused by the server: keep it small
      lo.kv_type = o_.kv_type;
      lo.quant = o_.quant;
      std::fprintf(stderr, "tokenfab: loading %s\n", o_.model_path.c_str());
      std::unique_ptr<tools::Progress> bar;
      lo.on_progress = [&](uint64_t done, uint64_t total) {
        if (!bar) bar = std::make_unique<tools::Progress>("loading", total);
        bar->set(done);
      };
      auto engine = Engine::load(o_.model_path, lo);
      if (bar) bar->finish();
      std::unique_ptr<chat::ChatTemplate> tmpl;
      if (!o_.chat_template_file.empty()) {
        const Tokenizer& tok = engine->tokenizer();
        tmpl =
            std::make_unique<chat::ChatTemplate>(read_file(o_.chat_template_file, "chat template"),
                                                 tok.bos() >= 0 ? tok.token_text(tok.bos()) : "",
                                                 tok.eos() >= 0 ? tok.token_text(tok.eos()) : "");
      } else {
        tmpl = std::make_unique<chat::ChatTemplate>(
            chat::ChatTemplate::from_model(engine->model().file(), engine->tokenizer()));
      }
      const chat::OutputFormat format = chat::detect_output_format(tmpl->source());
      std::fprintf(stderr, "tokenfab: tool calls: %s%s\n", chat::tool_format_name(format.tools),
                   format.think_open.empty() ? "" : (", reasoning: " + format.think_open).c_str());
      SchedulerParams sp;
      sp.n_parallel = o_.parallel;
      sp.n_ctx = o_.n_ctx;
      sp.n_threads = engine->n_threads();
      sp.kv_type = o_.kv_type;
      sp.max_queue = o_.max_queue;
      sp.kv_memory = o_.kv_memory;
      sp.meter = o_.meter;
      auto sched = std::make_unique<Scheduler>(engine->model(), engine->tokenizer(), sp);
      {
        std::lock_guard<std::mutex> lk(mu_);
        engine_ = std::move(engine);
        tmpl_ = std::move(tmpl);
        format_ = format;
        sched_ = std::move(sched);
      }
      ready_ = true;
      std::fprintf(stderr, "tokenfab: ready: %s, %d sequences x %lld positions, %d threads\n",
                   model_id_.c_str(), o_.parallel, (long long)sched_->n_ctx(),
                   engine_->n_threads());
      std::fprintf(stderr, "tokenfab: energy: %s; prices $%g/kWh, hardware $%g/h\n",
                   sched_->energy().describe().c_str(), sched_->prices().kwh,
                   sched_->prices().hardware_per_hour);
      std::fflush(stderr);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      exit_code_ = 1;
      http_->stop();
    }
  }

  void shutdown() {
    shutting_down_ = true;
    if (sched_) sched_->shutdown(false);  // running requests end as "cancelled"
    // Let the last chunks reach the clients, then stop the loop.
    for (int i = 0; i < 100 && streams_open_.load() > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    http_->stop();
  }

  HttpReply reply(const HttpResponse& r) {
    HttpReply out;
    out.response = r;
    return out;
  }

  HttpReply handle(const HttpRequest& req, const std::shared_ptr<Stream>& stream) {
    std::string path = req.target.substr(0, req.target.find('?'));
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    const std::string endpoint = path;
    HttpReply out;
    RequestInfo info;
    std::string error;
    const auto t0 = Clock::now();
    try {
      out = route(req, path, stream, info);
    } catch (const ApiError& e) {
      out = reply(error_response(e));
      error = e.message;
      // Anthropic's clients read their own error shape (headers as for any error).
      if (path.rfind("/v1/messages", 0) == 0)
        out.response.body = dump(anthropic_error(e.status, e.message));
    }
    if (out.mode == HttpReply::Now) {
      metrics_.request_done(endpoint_label(endpoint), out.response.status);
      if (info.generation && audit_->enabled()) {
        Json rec = {
            {"endpoint", endpoint_label(endpoint)},
            {"tenant", info.tenant.empty() ? Json() : Json(info.tenant)},
            {"model", info.model.empty() ? Json() : Json(info.model)},
            {"status", out.response.status},
            {"latency_ms", std::chrono::duration<double, std::milli>(Clock::now() - t0).count()}};
        if (!error.empty()) rec["error"] = error;
        audit_->write(rec);
      }
    }
    return out;
  }

  static std::string endpoint_label(const std::string& path) {
    static const char* const known[] = {
        "/v1/chat/completions",      "/v1/completions", "/v1/responses", "/v1/messages",
        "/v1/messages/count_tokens", "/v1/models",      "/health",       "/metrics"};
    for (const char* k : known)
      if (path == k) return k;
    if (path.rfind("/v1/models/", 0) == 0) return "/v1/models";
    return "other";
  }

  HttpReply route(const HttpRequest& req, const std::string& path,
                  const std::shared_ptr<Stream>& stream, RequestInfo& info) {
    auto method_is = [&](const char* m) {
      if (req.method == m) return;
      ApiError e =
          api_error(405, "invalid_request_error",
                    "method " + req.method + " is not allowed on " + path, "method_not_allowed");
      e.allow = m;
      throw e;
    };
    if (path == "/health") {
      method_is("GET");
      if (shutting_down_) return reply(json_response(503, {{"status", "shutting down"}}));
      if (!ready_) return reply(json_response(503, {{"status", "loading"}}));
      return reply(json_response(200, {{"status", "ok"}}));
    }
    if (path == "/metrics") {
      method_is("GET");
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4";
      SchedulerStats st;
      const bool have = ready_ && sched_;
      if (have) st = sched_->stats();
      r.body = metrics_.render(have ? &st : nullptr, !ready_, http_->open_connections(),
                               tenants_.snapshot(), have ? sched_->energy().source() : "");
      return reply(r);
    }
    const bool v1 = path.rfind("/v1/", 0) == 0;
    const bool known = path == "/v1/models" || path.rfind("/v1/models/", 0) == 0 ||
                       path == "/v1/chat/completions" || path == "/v1/completions" ||
                       path == "/v1/responses" || path == "/v1/messages" ||
                       path == "/v1/messages/count_tokens";
    if (!known) throw api_error(404, "invalid_request_error", "unknown route " + path, "not_found");
    info.generation = req.method == "POST" && path.rfind("/v1/models", 0) != 0;
    if (v1 && (tenants_.has_keys() || !o_.api_key.empty())) {
      std::string auth = req.header("authorization");
      // Anthropic clients send the key as x-api-key.
      if (auth.empty() && !req.header("x-api-key").empty())
        auth = "Bearer " + req.header("x-api-key");
      const auto refuse = [&] {
        return api_error(
            401, "authentication_error",
            auth.empty() ? "missing API key (send Authorization: Bearer KEY)" : "incorrect API key",
            "invalid_api_key");
      };
      if (tenants_.has_keys()) {
        const bool bearer = auth.rfind("Bearer ", 0) == 0;
        const auto t = bearer ? tenants_.authenticate(auth.substr(7)) : std::nullopt;
        if (!t) throw refuse();
        info.tenant = *t;
      } else if (!same_secret(auth, "Bearer " + o_.api_key)) {
        throw refuse();
      }
    }
    if (info.tenant.empty()) info.tenant = "default";
    if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
      method_is("GET");
      Json m = {
          {"id", model_id_}, {"object", "model"}, {"created", created_}, {"owned_by", "tokenfab"}};
      if (path != "/v1/models") {
        if (path.substr(11) != model_id_)
          throw api_error(404, "invalid_request_error",
                          "the model '" + path.substr(11) + "' does not exist", "model_not_found",
                          "model");
        return reply(json_response(200, m));
      }
      return reply(json_response(200, {{"object", "list"}, {"data", Json::array({m})}}));
    }
    method_is("POST");
    if (shutting_down_)
      throw api_error(503, "server_error", "the server is shutting down", "shutting_down");
    if (!ready_)
      throw api_error(503, "server_error", "the model is still loading", "model_loading");
    Json body;
    // nlohmann's parser stops at a NUL byte; no valid JSON holds a raw one.
    if (req.body.find('\0') != std::string::npos)
      throw api_error(400, "invalid_request_error",
                      "the body is not valid JSON: it contains a NUL byte", "invalid_json");
    try {
      body = Json::parse(req.body);
    } catch (const std::exception& e) {
      throw api_error(400, "invalid_request_error",
                      std::string("the body is not valid JSON: ") + e.what(), "invalid_json");
    }
    ApiKind kind = ApiKind::kCompletion;
    Json chat_body;
    if (path == "/v1/chat/completions") {
      kind = ApiKind::kChat;
    } else if (path == "/v1/responses") {
      kind = ApiKind::kResponses;
      chat_body = responses_to_chat(body);
    } else if (path == "/v1/messages") {
      kind = ApiKind::kMessages;
      chat_body = messages_to_chat(body);
    } else if (path == "/v1/messages/count_tokens") {
      const ApiRequest api = parse_chat(count_tokens_request_to_chat(body), *tmpl_, format_,
                                        engine_->tokenizer(), INT64_MAX);
      return reply(json_response(200, {{"input_tokens", api.gens.at(0).prompt.size()}}));
    }
    ApiRequest api;
    try {
      api = kind == ApiKind::kCompletion
                ? parse_completion(body, engine_->tokenizer(), sched_->n_ctx())
                : parse_chat(kind == ApiKind::kChat ? body : chat_body, *tmpl_, format_,
                             engine_->tokenizer(), sched_->n_ctx(), kind != ApiKind::kChat);
    } catch (const ApiError& e) {
      // A streamed Responses request learns of a context overflow as response.failed (what
      // Codex CLI looks for), in a stream of its own.
      if (kind == ApiKind::kResponses && e.code == "context_length_exceeded" &&
          chat_body.value("stream", false)) {
        ResponsesStream rs(random_id("resp_"), model_id_, int64_t(std::time(nullptr)), body);
        HttpResponse r;
        r.content_type = "text/event-stream";
        for (const auto& ev : rs.fail(e.code, e.message)) r.body += sse_event(ev);
        return reply(r);
      }
      throw;
    }
    if (!api.model.empty() && api.model != model_id_ && kind != ApiKind::kMessages &&
        kind != ApiKind::kResponses)
      throw api_error(404, "invalid_request_error", "the model '" + api.model + "' does not exist",
                      "model_not_found", "model");
    // Agent clients name their own models (claude-..., gpt-5-codex): this server answers with
    // the one it has.
    if (api.model.empty() || kind == ApiKind::kMessages || kind == ApiKind::kResponses)
      api.model = model_id_;
    if ((kind == ApiKind::kResponses || kind == ApiKind::kMessages) && api.gens.size() != 1)
      throw api_error(400, "invalid_request_error", "one generation per request", "invalid_value");
    info.model = api.model;
    if (auto no = tenants_.admit(info.tenant, api.model)) {
      ApiError e = api_error(no->status, no->type, no->message, no->code);
      e.retry_after = no->retry_after_s;
      throw e;
    }
    auto lease = std::make_unique<Lease>(&tenants_, info.tenant);
    return start(std::move(api), kind, std::move(body), endpoint_label(path), stream,
                 std::move(lease));
  }

  static std::string sse_event(const SseEvent& ev) {
    return "event: " + ev.event + "\ndata: " + dump(ev.data) + "\n\n";
  }

  HttpReply start(ApiRequest api, ApiKind kind, Json body, const std::string& endpoint,
                  const std::shared_ptr<Stream>& stream, std::unique_ptr<Lease> lease) {
    auto job = std::make_shared<Job>();
    job->tenant = lease->tenant;
    job->lease = std::move(lease);
    job->kind = kind;
    job->api = std::move(api);
    job->body = std::move(body);
    static const char* const prefixes[] = {"chatcmpl-", "cmpl-", "resp_", "msg_"};
    job->id = random_id(prefixes[int(kind)]);
    if (job->api.parse)
      for (size_t i = 0; i < job->api.gens.size(); ++i)
        job->parsers.push_back(
            std::make_unique<chat::StreamingOutputParser>(job->api.format, job->api.parse_options));
    else
      job->parsers.resize(job->api.gens.size());
    job->created = int64_t(std::time(nullptr));
    job->stream = stream;
    job->endpoint = endpoint;
    job->t0 = Clock::now();
    const size_t n = job->api.gens.size();
    std::string opening;  // a stream's first bytes
    job->results.resize(n);
    job->started.assign(n, false);
    job->offsets.assign(n, 0);
    job->last_token.resize(n);
    job->remaining = int(n);
    {
      std::lock_guard<std::mutex> lk(job->mu);
      for (size_t i = 0; i < n; ++i) {
        try {
          job->api.gens[i].timeout_s = o_.request_timeout_s;
          job->ids.push_back(sched_->submit(
              job->api.gens[i], [this, job, i](const GenEvent& e) { on_event(*job, i, e); }));
        } catch (const Scheduler::QueueFull& e) {
          for (uint64_t id : job->ids) sched_->cancel(id);
          job->remaining = -1;  // the events of the cancelled ones are ignored
          throw api_error(429, "rate_limit_error", std::string("server busy: ") + e.what(),
                          "queue_full");
        } catch (const Error& e) {
          for (uint64_t id : job->ids) sched_->cancel(id);
          job->remaining = -1;
          const std::string msg = e.what();
          throw api_error(400, "invalid_request_error", msg,
                          msg.find("context") != std::string::npos ? "context_length_exceeded"
                                                                   : "invalid_value");
        }
      }
      // The opening events go out with the response head, before anything the sinks write
      // (they wait for job->mu until the writers exist).
      if (job->api.stream && kind == ApiKind::kResponses) {
        job->responses =
            std::make_unique<ResponsesStream>(job->id, job->api.model, job->created, job->body);
        for (const auto& ev : job->responses->start()) opening += sse_event(ev);
      } else if (job->api.stream && kind == ApiKind::kMessages) {
        job->messages = std::make_unique<MessagesStream>(job->id, job->api.model);
        TurnUsage u;
        u.prompt_tokens = int64_t(job->api.gens[0].prompt.size());
        for (const auto& ev : job->messages->start(u)) opening += sse_event(ev);
      }
    }
    if (job->api.stream) ++streams_open_;
    std::weak_ptr<Job> weak = job;
    stream->on_close([this, weak] {
      auto j = weak.lock();
      if (!j) return;
      std::vector<uint64_t> ids;
      {
        std::lock_guard<std::mutex> lk(j->mu);
        if (j->remaining <= 0) return;
        ids = j->ids;
      }
      for (uint64_t id : ids) sched_->cancel(id);
    });
    HttpReply r;
    if (job->api.stream) {
      r.mode = HttpReply::Streaming;
      r.response.content_type = "text/event-stream";
      r.response.body = std::move(opening);
    } else {
      r.mode = HttpReply::Deferred;
    }
    return r;
  }

  void send_sse(Job& j, const Json& chunk) { j.stream->write("data: " + dump(chunk) + "\n\n"); }
  void send_events(Job& j, const std::vector<SseEvent>& evs) {
    std::string out;
    for (const auto& ev : evs) out += sse_event(ev);
    if (!out.empty()) j.stream->write(std::move(out));
  }

  static TurnDelta turn_delta(const chat::OutputDelta& d) {
    TurnDelta t;
    t.content = d.content;
    t.reasoning = d.reasoning;
    for (const auto& c : d.tool_calls) t.tool_calls.push_back({c.index, c.id, c.name, c.arguments});
    return t;
  }

  // The one choice of a Responses / Messages request, as those writers read it.
  AssistantTurn turn_of(const Job& j) const {
    const ChoiceResult& c = j.results[0];
    AssistantTurn t;
    if (j.api.parse) {
      t.content = c.parsed.content;
      t.reasoning = c.parsed.reasoning;
      for (const auto& tc : c.parsed.tool_calls)
        t.tool_calls.push_back({tc.id, tc.name, tc.arguments});
    } else {
      t.content = c.text;
    }
    t.finish_reason = c.finish_reason;
    t.matched_stop = c.stop_string;
    t.usage.prompt_tokens = c.usage.prompt_tokens;
    t.usage.cached_tokens = c.usage.cached_tokens;
    t.usage.completion_tokens = c.usage.completion_tokens;
    t.usage.meter = meter_json(c.usage);
    // Reasoning tokens, counted as the text tokenizes (the stream does not mark where the
    // reasoning ended token by token).
    if (!t.reasoning.empty())
      t.usage.reasoning_tokens =
          std::min<int64_t>(int64_t(engine_->tokenizer().encode(t.reasoning, false, false).size()),
                            t.usage.completion_tokens);
    return t;
  }

  HttpResponse error_for(const Job& j, int status, const std::string& type, const std::string& msg,
                         const std::string& code) {
    if (j.kind == ApiKind::kMessages) return json_response(status, anthropic_error(status, msg));
    return error_response(api_error(status, type, msg, code));
  }

  // A request's end, whatever its outcome: the tenant is charged for what it used and gets
  // its slot back, the metrics count it, and the audit log gets its line. With j.mu held.
  void settle(Job& j, int status) {
    const int n_prompts = j.api.prompt_of.empty() ? 1 : j.api.prompt_of.back() + 1;
    const GenUsage u = sum_usage(j.results, n_prompts);
    TenantCharge c;
    c.prompt_tokens = u.prompt_tokens;
    c.cached_tokens = u.cached_tokens;
    c.completion_tokens = u.completion_tokens;
    c.joules = u.input.joules + u.output.joules;
    c.input_usd = u.input.usd;
    c.output_usd = u.output.usd;
    c.seconds = u.input.seconds + u.output.seconds;
    tenants_.charge(j.tenant, c);
    j.lease.reset();
    metrics_.request_done(j.endpoint, status);
    if (!audit_->enabled()) return;
    Json reasons = Json::array();
    for (const auto& r : j.results) reasons.push_back(r.finish_reason);
    Json rec = {
        {"id", j.id},
        {"endpoint", j.endpoint},
        {"tenant", j.tenant},
        {"model", j.api.model},
        {"status", status},
        {"stream", j.api.stream},
        {"finish_reasons", reasons},
        {"prompt_tokens", u.prompt_tokens},
        {"cached_tokens", u.cached_tokens},
        {"completion_tokens", u.completion_tokens},
        {"joules", c.joules},
        {"cost_usd", c.input_usd + c.output_usd},
        {"energy_source", u.energy_source},
        {"latency_ms", std::chrono::duration<double, std::milli>(Clock::now() - j.t0).count()}};
    if (audit_->content()) {
      rec["request"] = j.body;
      Json outs = Json::array();
      for (const auto& r : j.results) outs.push_back(r.text);
      rec["output"] = outs;
    }
    audit_->write(rec);
  }

  // Runs on the scheduler thread.
  void on_event(Job& j, size_t i, const GenEvent& e) {
    std::lock_guard<std::mutex> lk(j.mu);
    if (j.remaining < 0) return;
    ChoiceResult& c = j.results[i];
    const auto now = Clock::now();
    if (!e.tokens.empty()) {
      if (c.tokens.empty() && j.last_token[i] == Clock::time_point{})
        metrics_.time_to_first_token(std::chrono::duration<double>(now - j.t0).count());
      else
        metrics_.inter_token(std::chrono::duration<double>(now - j.last_token[i]).count());
      j.last_token[i] = now;
      metrics_.tokens_generated(int64_t(e.tokens.size()));
    }
    // Tokens that end the generation (EOS) are counted but not shown.
    std::vector<GenToken> shown;
    for (const auto& t : e.tokens)
      if (!engine_->tokenizer().is_eog(t.id) || j.api.gens[i].ignore_eos) shown.push_back(t);
    // The text as the client sees it: split into content, reasoning and tool calls when parsed.
    chat::OutputDelta d;
    if (auto& p = j.parsers[i]) {
      d = p->push(e.text);
      if (e.done) {
        chat::OutputDelta rest = p->finish();
        d.content += rest.content;
        d.reasoning += rest.reasoning;
        d.tool_calls.insert(d.tool_calls.end(), rest.tool_calls.begin(), rest.tool_calls.end());
      }
      if (!j.api.parallel_tool_calls)
        std::erase_if(d.tool_calls, [](const chat::ToolCallDelta& t) { return t.index > 0; });
    } else {
      d.content = e.text;
    }
    if (j.api.stream && j.responses) {
      send_events(j, j.responses->push(turn_delta(d)));
    } else if (j.api.stream && j.messages) {
      send_events(j, j.messages->push(turn_delta(d)));
    } else if (j.api.stream) {
      if (!d.empty() || !shown.empty() || (!j.started[i] && !e.done)) {
        send_sse(j, chunk_json(j.api, engine_->tokenizer(), j.id, j.created, int(i), d, shown, "",
                               !j.started[i], j.offsets[i]));
        j.started[i] = true;
      }
      for (const auto& t : shown) j.offsets[i] += t.piece.size();
    }
    c.text += e.text;
    c.tokens.insert(c.tokens.end(), shown.begin(), shown.end());
    if (!e.done) return;
    // A request cut by its time limit ends as one cut by max_tokens would: "length" is the
    // reason OpenAI clients know for "stopped before the model finished".
    c.finish_reason = e.finish_reason == "timeout" ? "length" : e.finish_reason;
    c.stop_string = e.stop_string;
    if (j.parsers[i]) {
      c.parsed = j.parsers[i]->result();
      if (!j.api.parallel_tool_calls && c.parsed.tool_calls.size() > 1)
        c.parsed.tool_calls.resize(1);
      if (!c.parsed.tool_calls.empty() && c.finish_reason == "stop") c.finish_reason = "tool_calls";
    }
    if (e.finish_reason == "timeout") metrics_.request_timed_out();
    c.usage = e.usage;
    if (e.finish_reason == "error") error_ = e.error;
    if (j.api.stream && !j.responses && !j.messages) {
      if (!j.started[i]) {
        send_sse(j, chunk_json(j.api, engine_->tokenizer(), j.id, j.created, int(i), {}, {}, "",
                               true, 0));
        j.started[i] = true;
      }
      send_sse(j, chunk_json(j.api, engine_->tokenizer(), j.id, j.created, int(i), {}, {},
                             c.finish_reason, false, 0));
    }
    if (--j.remaining > 0) return;
    int n_prompts = j.api.prompt_of.empty() ? 1 : j.api.prompt_of.back() + 1;
    if (j.api.stream) {
      settle(j,
             200);  // before the last bytes: a client that reads the books next sees this request
      if (j.responses) {
        if (c.finish_reason == "error" || c.finish_reason == "cancelled")
          send_events(
              j, j.responses->fail(c.finish_reason == "error" ? "server_error" : "cancelled",
                                   c.finish_reason == "error" ? "generation failed: " + error_
                                                              : "the server stopped this request"));
        else
          send_events(j, j.responses->finish(turn_of(j)));
      } else if (j.messages) {
        if (c.finish_reason == "error" || c.finish_reason == "cancelled")
          send_events(
              j, {MessagesStream::error_event(
                     "api_error", c.finish_reason == "error" ? "generation failed: " + error_
                                                             : "the server stopped this request")});
        else
          send_events(j, j.messages->finish(turn_of(j)));
      } else {
        if (j.api.include_usage) {
          Json u = Json::object();
          u["id"] = j.id;
          u["object"] = j.api.chat ? "chat.completion.chunk" : "text_completion";
          u["created"] = j.created;
          u["model"] = j.api.model;
          u["system_fingerprint"] = "tokenfab";
          u["choices"] = Json::array();
          u["usage"] = usage_json(j.results, n_prompts);
          send_sse(j, u);
        }
        j.stream->write("data: [DONE]\n\n");
      }
      j.stream->end();
      --streams_open_;
      return;
    }
    bool failed = false, all_cancelled = true;
    for (const auto& r : j.results) {
      failed |= r.finish_reason == "error";
      all_cancelled &= r.finish_reason == "cancelled";
    }
    if (all_cancelled && shutting_down_) {
      settle(j, 503);
      j.stream->respond(error_for(j, 503, "server_error",
                                  "the server shut down before this request finished",
                                  "shutting_down"));
      return;
    }
    if (failed) {
      settle(j, 500);
      j.stream->respond(
          error_for(j, 500, "server_error", "generation failed: " + error_, "internal_error"));
      return;
    }
    settle(j, 200);
    Json out;
    if (j.kind == ApiKind::kResponses)
      out = responses_object(turn_of(j), j.id, j.api.model, j.created, j.body);
    else if (j.kind == ApiKind::kMessages)
      out = messages_object(turn_of(j), j.id, j.api.model);
    else
      out = full_response(j.api, engine_->tokenizer(), j.id, j.created, j.results);
    j.stream->respond(json_response(200, out));
  }

  ServeOptions o_;
  std::string model_id_;
  int64_t created_ = int64_t(std::time(nullptr));
  std::unique_ptr<HttpServer> http_;
  std::mutex mu_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<chat::ChatTemplate> tmpl_;
  chat::OutputFormat format_;  // how the template's model writes tool calls and reasoning
  std::unique_ptr<Scheduler> sched_;
  std::atomic<bool> ready_{false}, shutting_down_{false}, exiting_{false};
  std::atomic<int> streams_open_{0};
  Metrics metrics_;
  Tenants tenants_;
  std::unique_ptr<AuditLog> audit_;
  std::mutex persist_mu_;
  std::condition_variable persist_cv_;
  bool persist_stop_ = false;
  std::string error_;
  int exit_code_ = 0;
};

}  // namespace

int serve(const ServeOptions& opts) {
  Server s(opts);
  return s.run();
}

}  // namespace tf::server
