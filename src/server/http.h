// A small asynchronous HTTP/1.1 server on Boost.Beast: one I/O thread serves every
// connection, so an idle keep-alive or a slow stream costs a socket and a few kilobytes,
// never a thread. Handlers answer with a whole response or open a stream (chunked transfer,
// used for server-sent events) that other threads feed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace tf::server {

struct HttpRequest {
  std::string method, target, body;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

// The sending end of a response that is not ready when the handler returns. Thread-safe:
// any thread may call it; the work is queued on the I/O thread. When the client goes away
// (or reads a stream too slowly), on_close runs once and further calls are dropped.
class Stream {
 public:
  virtual ~Stream() = default;
  // Deferred replies: the whole response, once.
  virtual void respond(HttpResponse response) = 0;
  // Streaming replies: chunks, then end().
  virtual void write(std::string data) = 0;
  virtual void end() = 0;  // after the queued writes
  virtual bool closed() const = 0;
  virtual void on_close(std::function<void()> fn) = 0;
};

// What a handler returns: a response now; or a promise to call Stream::respond later
// (Deferred); or a stream started with this status and headers (and the body, if any, as its
// first chunk), which the handler keeps and writes to (Streaming).
struct HttpReply {
  enum Mode { Now, Deferred, Streaming };
  HttpResponse response;
  Mode mode = Now;
};

using Handler = std::function<HttpReply(const HttpRequest&, const std::shared_ptr<Stream>& stream)>;

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  size_t max_body = size_t(10) << 20;
  int read_timeout_s = 30;      // to receive a whole request
  int idle_timeout_s = 60;      // keep-alive between requests
  int write_timeout_s = 60;     // a streamed chunk not taken by the client for this long
  size_t max_stream_backlog = size_t(8) << 20;  // unsent bytes before a reader counts as stalled
};

class HttpServer {
 public:
  HttpServer(const HttpOptions& opts, Handler handler);
  ~HttpServer();
  // Binds and listens (throws tf::Error); returns the bound port.
  int listen();
  // Runs the I/O loop on the calling thread until stop().
  void run();
  // Stops accepting and ends the loop (from any thread, also a signal watcher).
  void stop();
  // Runs fn on the I/O thread.
  void post(std::function<void()> fn);
  size_t open_connections() const;

  struct Impl;  // (public so that the connection code in http.cpp can name it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tf::server
