#include "actors/status_server.hpp"

#include <array>
#include <set>
#include <span>
#include <string_view>
#include <thread>
#include <utility>

#include <asio.hpp>

#include "proxy/http1.hpp"

namespace starling::actors {

namespace {

using asio::ip::tcp;

/// Heads of status requests are small: a browser's or Prometheus' fit in a few hundred bytes.
constexpr std::size_t max_head_bytes = 16u << 10;

/// One response of the status server (not a proxy-generated error: those are for traffic).
void write_response(std::string& out, int status, std::string_view reason, std::string_view type,
                    std::string_view body, bool head_only, bool close) {
  out += "HTTP/1.1 " + std::to_string(status) + " ";
  out += reason;
  out += "\r\ncontent-type: ";
  out += type;
  out += "\r\ncontent-length: " + std::to_string(body.size()) + "\r\n";
  if (close)
    out += "connection: close\r\n";
  out += "\r\n";
  if (!head_only)
    out += body;
}

class server;

/// One client connection. Lives on the server's thread only.
class session : public std::enable_shared_from_this<session> {
public:
  session(server& srv, tcp::socket socket);
  ~session();
  void start() {
    arm_timer();
    read();
  }
  void close() {
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
  }

private:
  void arm_timer();
  void read();
  void on_data();
  void handle(std::string method, std::string target, bool keep_alive);
  void send(std::string bytes, bool keep_alive);

  server& srv_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<char, 4096> chunk_{};
  /// Received bytes not yet consumed by the parser.
  std::string in_;
  proxy::http1_parser parser_{proxy::direction::request, [] {
                                proxy::http1_limits l;
                                l.max_head_bytes = max_head_bytes;
                                l.max_headers = 64;
                                l.max_target_bytes = 1024;
                                l.max_body_bytes = 64u << 10;
                                return l;
                              }()};
  std::string method_;
  std::string target_;
  /// A response is being made or written: nothing more is read until it is done.
  bool busy_ = false;
  /// Bumped per request: a late /metrics reply for an earlier one is dropped.
  std::uint64_t request_no_ = 0;
};

class server final : public status_server {
public:
  server(status_server_options opts) : opts_(std::move(opts)), acceptor_(io_) {}

  ~server() override { stop(); }

  bool open(const std::string& host, std::uint16_t port, std::string& error) {
    asio::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) {
      error = "not an IP address: " + host;
      return false;
    }
    tcp::endpoint ep{address, port};
    acceptor_.open(ep.protocol(), ec);
    if (!ec)
      acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
      acceptor_.bind(ep, ec);
    if (!ec)
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = ec.message();
      return false;
    }
    const auto local = acceptor_.local_endpoint(ec);
    endpoint_ = local.address().is_v6() ? "[" + local.address().to_string() + "]"
                                        : local.address().to_string();
    endpoint_ += ":" + std::to_string(local.port());
    accept();
    thread_ = std::thread([this] { io_.run(); });
    return true;
  }

  std::string local_endpoint() const override { return endpoint_; }
  const status_server_stats& stats() const override { return stats_; }

  void stop() override {
    if (stopped_.exchange(true))
      return;
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
      for (const auto& w : sessions_)
        if (auto s = w.lock())
          s->close();
      sessions_.clear();
    });
    work_.reset();
    if (thread_.joinable())
      thread_.join();
  }

  status_server_options& options() { return opts_; }
  asio::io_context& io() { return io_; }
  status_server_stats& counters() { return stats_; }
  void forget(const std::weak_ptr<session>& s) { sessions_.erase(s); }
  std::size_t open_sessions() const { return sessions_.size(); }

private:
  void accept() {
    acceptor_.async_accept([this](asio::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
      if (!ec) {
        if (sessions_.size() >= opts_.max_connections) {
          stats_.refused_connections.fetch_add(1, std::memory_order_relaxed);
          asio::error_code ignored;
          socket.close(ignored);
        } else {
          stats_.connections.fetch_add(1, std::memory_order_relaxed);
          auto s = std::make_shared<session>(*this, std::move(socket));
          sessions_.insert(s);
          s->start();
        }
      }
      accept();
    });
  }

  status_server_options opts_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  tcp::acceptor acceptor_;
  std::string endpoint_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  status_server_stats stats_;
  /// Open sessions (the server's thread only), to close them at stop.
  std::set<std::weak_ptr<session>, std::owner_less<std::weak_ptr<session>>> sessions_;
};

session::session(server& srv, tcp::socket socket)
    : srv_(srv), socket_(std::move(socket)), timer_(srv.io()) {}

session::~session() = default;

void session::arm_timer() {
  timer_.expires_after(srv_.options().head_timeout);
  timer_.async_wait([w = weak_from_this()](asio::error_code ec) {
    auto self = w.lock();
    if (ec || !self || self->busy_)
      return;
    self->srv_.counters().timeouts.fetch_add(1, std::memory_order_relaxed);
    self->srv_.forget(self);
    self->close();
  });
}

void session::read() {
  socket_.async_read_some(asio::buffer(chunk_),
                          [self = shared_from_this()](asio::error_code ec, std::size_t n) {
                            if (ec) {
                              self->srv_.forget(self);
                              self->close();
                              return;
                            }
                            self->in_.append(self->chunk_.data(), n);
                            self->on_data();
                          });
}

void session::on_data() {
  while (!busy_) {
    auto r = parser_.parse(std::span<const char>{in_.data(), in_.size()});
    in_.erase(0, r.consumed);
    switch (r.status) {
    case proxy::parse_status::need_more:
      read();
      return;
    case proxy::parse_status::head:
      method_ = std::string{parser_.head().method};
      target_ = std::string{parser_.head().target};
      break;
    case proxy::parse_status::body:
      break; // a status request's body means nothing: dropped
    case proxy::parse_status::complete:
      handle(std::move(method_), std::move(target_), parser_.head().keep_alive);
      break;
    case proxy::parse_status::upgrade:
    case proxy::parse_status::error: {
      srv_.counters().malformed.fetch_add(1, std::memory_order_relaxed);
      std::string out;
      proxy::write_error_response(
          r.status == proxy::parse_status::error ? r.error : proxy::http_error::malformed, out,
          true);
      send(std::move(out), false);
      return;
    }
    }
  }
}

void session::handle(std::string method, std::string target, bool keep_alive) {
  busy_ = true;
  timer_.cancel();
  srv_.counters().requests.fetch_add(1, std::memory_order_relaxed);
  const bool head_only = method == "HEAD";
  std::string out;
  if (method != "GET" && !head_only) {
    write_response(out, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", false,
                   !keep_alive);
    send(std::move(out), keep_alive);
    return;
  }
  const auto path = std::string_view{target}.substr(0, target.find('?'));
  if (path == "/healthz") {
    write_response(out, 200, "OK", "text/plain", "ok\n", head_only, !keep_alive);
  } else if (path == "/readyz") {
    const bool ready = srv_.options().ready && srv_.options().ready();
    if (ready)
      write_response(out, 200, "OK", "text/plain", "ready\n", head_only, !keep_alive);
    else
      write_response(out, 503, "Service Unavailable", "text/plain", "not ready\n", head_only,
                     !keep_alive);
  } else if (path == "/metrics" && srv_.options().metrics) {
    const auto no = ++request_no_;
    auto answered = std::make_shared<bool>(false);
    auto finish = [self = shared_from_this(), no, answered, head_only,
                   keep_alive](const std::string& text) {
      if (*answered || no != self->request_no_)
        return;
      *answered = true;
      std::string out;
      if (text.empty())
        write_response(out, 503, "Service Unavailable", "text/plain",
                       "metrics could not be gathered\n", head_only, !keep_alive);
      else
        write_response(out, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, head_only,
                       !keep_alive);
      self->send(std::move(out), keep_alive);
    };
    // The provider may answer from any thread; the answer is handled on this one.
    srv_.options().metrics([finish, &io = srv_.io()](std::string text) {
      asio::post(io, [finish, text = std::move(text)] { finish(text); });
    });
    timer_.expires_after(srv_.options().metrics_timeout);
    timer_.async_wait([finish](asio::error_code ec) {
      if (!ec)
        finish(std::string{});
    });
    return;
  } else {
    srv_.counters().not_found.fetch_add(1, std::memory_order_relaxed);
    write_response(out, 404, "Not Found", "text/plain", "try /metrics, /healthz or /readyz\n",
                   head_only, !keep_alive);
  }
  send(std::move(out), keep_alive);
}

void session::send(std::string bytes, bool keep_alive) {
  busy_ = true;
  auto buf = std::make_shared<std::string>(std::move(bytes));
  asio::async_write(socket_, asio::buffer(*buf),
                    [self = shared_from_this(), buf, keep_alive](asio::error_code ec, std::size_t) {
                      self->busy_ = false;
                      if (ec || !keep_alive) {
                        self->srv_.forget(self);
                        self->close();
                        return;
                      }
                      self->arm_timer();
                      self->on_data(); // pipelined requests already read, then read more
                    });
}

} // namespace

std::shared_ptr<status_server> status_server::start(const std::string& host, std::uint16_t port,
                                                    status_server_options options,
                                                    std::string& error) {
  auto s = std::make_shared<server>(std::move(options));
  if (!s->open(host, port, error))
    return nullptr;
  return s;
}

} // namespace starling::actors
