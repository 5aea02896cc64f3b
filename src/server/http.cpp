#include "server/http.h"

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <utility>  // (Boost 1.74's asio uses std::exchange without including it)
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <mutex>
#include <optional>

#include "util/error.h"

namespace tf::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpServer::Impl {
  HttpOptions opts;
  Handler handler;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::atomic<size_t> connections{0};
  std::atomic<bool> stopping{false};
  asio::steady_timer accept_retry{ioc};
  bool accept_error_logged = false;
  void accept();
};

namespace {

const char* reason(int status) {
  return http::obsolete_reason(http::int_to_status(unsigned(status))).data();
}

class Session;
std::string chunk(const std::string& data);

class StreamImpl : public Stream {
 public:
  StreamImpl(asio::io_context& ioc, std::weak_ptr<Session> s) : ioc_(ioc), s_(std::move(s)) {}
  void respond(HttpResponse r) override;
  void write(std::string data) override;
  void end() override;
  bool closed() const override { return closed_.load(); }
  void on_close(std::function<void()> fn) override;

  std::atomic<bool> closed_{false};
  std::mutex mu_;
  std::function<void()> close_fn_;

 private:
  asio::io_context& ioc_;
  std::weak_ptr<Session> s_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& srv) : stream_(std::move(socket)), srv_(srv) {
    ++srv_.connections;
  }
  ~Session() {
    --srv_.connections;
    mark_closed();
  }

  void start() { do_read(srv_.opts.read_timeout_s); }

  // ---- streaming (I/O thread) ----
  void queue(std::string chunk) {
    if (!streaming_ || closed_) return;
    backlog_ += chunk.size();
    if (backlog_ > srv_.opts.max_stream_backlog) {
      close();  // the reader stalled: drop it rather than buffer without end
      return;
    }
    out_.push_back(std::move(chunk));
    if (!writing_) do_write();
  }
  void finish_stream() {
    if (!streaming_ || closed_ || ending_) return;
    ending_ = true;
    out_.push_back("0\r\n\r\n");
    if (!writing_) do_write();
  }
  void respond_deferred(HttpResponse r) {
    if (!deferred_ || closed_) return;
    deferred_ = false;
    beast::error_code ec;
    stream_.socket().cancel(ec);  // the peer watch
    stream_obj_.reset();
    send(r);
  }

  std::shared_ptr<StreamImpl> stream_obj_;

 private:
  // Reads the next request; `timeout_s` bounds the whole read (the first request of a
  // connection gets read_timeout_s, later keep-alive ones idle_timeout_s).
  void do_read(int timeout_s) {
    parser_.emplace();
    parser_->body_limit(srv_.opts.max_body);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(timeout_s));
    http::async_read(stream_, buf_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof) {
      close();
      return;
    }
    if (ec == http::error::body_limit) {
      // The client may still be sending: answer, then read and drop the rest for a moment
      // before closing, so that it sees the 413 rather than a reset.
      drain_ = true;
      send_error(413, "the request body is larger than " + std::to_string(srv_.opts.max_body) + " bytes", "request_too_large");
      return;
    }
    if (ec) {
      send_error(400, std::string("malformed HTTP request: ") + ec.message(), "bad_request");
      return;
    }
    auto& req = parser_->get();
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    for (const auto& f : req) {
      std::string name(f.name_string());
      for (char& c : name) c = char(std::tolower(uint8_t(c)));
      r.headers[name] = std::string(f.value());
    }
    r.body = std::move(req.body());
    keep_alive_ = req.keep_alive();
    stream_obj_ = std::make_shared<StreamImpl>(srv_.ioc, weak_from_this());
    HttpReply reply;
    try {
      reply = srv_.handler(r, stream_obj_);
    } catch (const std::exception& e) {
      reply = HttpReply{};
      reply.response.status = 500;
      reply.response.body = std::string("{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    }
    if (reply.mode == HttpReply::Streaming) {
      start_stream(reply.response);
    } else if (reply.mode == HttpReply::Deferred) {
      deferred_ = true;
      stream_.expires_never();
      watch_peer();
    } else {
      stream_obj_.reset();
      send(reply.response);
    }
  }

  void send_error(int status, const std::string& msg, const char* code) {
    HttpResponse res;
    res.status = status;
    std::string m;
    for (char c : msg) m += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    res.body = "{\"error\":{\"message\":\"" + m + "\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"" +
               code + "\"}}";
    keep_alive_ = false;
    send(res);
  }

  void send(const HttpResponse& r) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(unsigned(r.status));
    res->version(11);
    res->set(http::field::server, "tokenfab");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->set(k, v);
    res->keep_alive(keep_alive_ && !srv_.stopping);
    res->body() = r.body;
    res->prepare_payload();
    stream_.expires_after(std::chrono::seconds(srv_.opts.read_timeout_s));
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (!ec && self->drain_) {
        self->drain();
        return;
      }
      if (ec || !res->keep_alive()) {
        self->close();
        return;
      }
      self->do_read(self->srv_.opts.idle_timeout_s);
    });
  }

  // After refusing a request whose body is still arriving: stop sending, discard what comes
  // in (up to 2 seconds / 64 MiB), then close.
  void drain() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(2));
    drain_buf_.resize(64 * 1024);
    drain_more();
  }
  void drain_more() {
    stream_.async_read_some(asio::buffer(drain_buf_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > (size_t(64) << 20)) {
        self->close();
        return;
      }
      self->drain_more();
    });
  }

  void start_stream(const HttpResponse& r) {
    streaming_ = true;
    std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
    head += "Server: tokenfab\r\nContent-Type: " + r.content_type +
            "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n";
    for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
    head += "\r\n";
    // A body given with the streaming reply goes out first, with the head (opening events
    // that must precede anything the generation writes).
    if (!r.body.empty()) head += chunk(r.body);
    stream_.expires_never();
    out_.push_front(std::move(head));
    if (!writing_) do_write();
    watch_peer();
  }

  // While a reply is pending or streaming, a read that completes means the client closed (or
  // sent more than it should): either way the exchange is over.
  void watch_peer() {
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
      if (ec == asio::error::operation_aborted || self->closed_) return;
      if (!self->deferred_ && !self->streaming_) return;
      char tmp[512];
      beast::error_code rec;
      const size_t n = self->stream_.socket().read_some(asio::buffer(tmp), rec);
      if (rec || n == 0) {
        self->close();
        return;
      }
      self->watch_peer();  // stray bytes: ignore and keep watching
    });
  }

  void do_write() {
    if (out_.empty() || closed_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    // A reader that takes no bytes for this long is gone.
    stream_.expires_after(std::chrono::seconds(srv_.opts.write_timeout_s));
    asio::async_write(stream_, asio::buffer(out_.front()),
                      [self = shared_from_this()](beast::error_code ec, size_t n) {
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->stream_.expires_never();  // (armed again by the next write)
                        self->backlog_ -= std::min(self->backlog_, n);
                        self->out_.pop_front();
                        if (self->out_.empty() && self->ending_) {
                          self->close();
                          return;
                        }
                        self->do_write();
                      });
  }

 public:
  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    mark_closed();
  }

 private:
  void mark_closed() {
    if (!stream_obj_) return;
    auto s = std::move(stream_obj_);
    s->closed_ = true;
    std::function<void()> fn;
    {
      std::lock_guard<std::mutex> lk(s->mu_);
      fn = std::move(s->close_fn_);
    }
    if (fn) fn();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpServer::Impl& srv_;
  std::deque<std::string> out_;
  size_t backlog_ = 0;
  bool writing_ = false, ending_ = false, closed_ = false, streaming_ = false, keep_alive_ = true;
  bool deferred_ = false, drain_ = false;
  std::vector<char> drain_buf_;
  size_t drained_ = 0;
};

std::string chunk(const std::string& data) {
  char len[32];
  std::snprintf(len, sizeof len, "%zx\r\n", data.size());
  return len + data + "\r\n";
}

void StreamImpl::respond(HttpResponse r) {
  if (closed_) return;
  asio::post(ioc_, [s = s_, r = std::move(r)]() mutable {
    if (auto sp = s.lock()) sp->respond_deferred(std::move(r));
  });
}

void StreamImpl::write(std::string data) {
  if (closed_ || data.empty()) return;
  asio::post(ioc_, [s = s_, c = chunk(data)]() mutable {
    if (auto sp = s.lock()) sp->queue(std::move(c));
  });
}

void StreamImpl::end() {
  asio::post(ioc_, [s = s_] {
    if (auto sp = s.lock()) sp->finish_stream();
  });
}

void StreamImpl::on_close(std::function<void()> fn) {
  bool now = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_) now = true;
    else close_fn_ = fn;
  }
  if (now && fn) fn();
}

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (stopping) return;
    if (ec) {
      // Out of descriptors (EMFILE) or similar: the listening socket stays readable, so an
      // immediate retry would spin. Wait a little, and say so once.
      if (!accept_error_logged) {
        std::fprintf(stderr, "tokenfab: accept failed: %s (retrying)\n", ec.message().c_str());
        accept_error_logged = true;
      }
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code) {
        if (!stopping) accept();
      });
      return;
    }
    accept_error_logged = false;
    socket.set_option(tcp::no_delay(true), ec);
    std::make_shared<Session>(std::move(socket), *this)->start();
    accept();
  });
}

HttpServer::HttpServer(const HttpOptions& opts, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->opts = opts;
  impl_->handler = std::move(handler);
}
HttpServer::~HttpServer() = default;

int HttpServer::listen() {
  // Many open streams need many descriptors: raise the soft limit to the hard one.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  beast::error_code ec;
  const auto addr = asio::ip::make_address(impl_->opts.host, ec);
  if (ec) throw Error("invalid host address '" + impl_->opts.host + "'");
  if (impl_->opts.port < 0 || impl_->opts.port > 65535) throw Error("port must be in 0..65535");
  tcp::endpoint ep(addr, uint16_t(impl_->opts.port));
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw Error("cannot listen on " + impl_->opts.host + ":" + std::to_string(impl_->opts.port) + ": " + ec.message());
  impl_->accept();
  return a.local_endpoint().port();
}

void HttpServer::run() { impl_->ioc.run(); }

void HttpServer::stop() {
  impl_->stopping = true;
  asio::post(impl_->ioc, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->ioc.stop();
  });
}

void HttpServer::post(std::function<void()> fn) { asio::post(impl_->ioc, std::move(fn)); }

size_t HttpServer::open_connections() const { return impl_->connections.load(); }

}  // namespace tf::server
