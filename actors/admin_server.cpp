// The admin protocol over Asio: server (one I/O thread) and blocking client. See
// admin_server.hpp and docs/decisions/0007.
//
// Lifetime: the destructor detaches the reply gate, stops the io_context and joins the
// thread. A responder holds the gate, not the server, so a late answer is dropped.
#include "actors/admin_server.hpp"

#include <algorithm>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <openssl/crypto.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "actors/errc.hpp"
#include "admin.pb.h"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "proto/wire/framing.hpp"

namespace starling::actors {

namespace {

using asio::ip::tcp;

constexpr std::uint32_t protocol_version = 1;
constexpr std::size_t read_chunk = 16 * 1024;
/// The client refuses answers above this.
constexpr std::size_t max_reply = 64u << 20;

std::string encode_reply(const admin_reply& r) {
  v1::AdminResponse msg;
  msg.set_status(static_cast<v1::AdminResponse::Status>(r.code));
  msg.set_body(r.body);
  msg.set_error(r.error);
  return wire::framed(msg.SerializeAsString());
}

/// True if `a` equals the secret `b`, compared in time independent of where they differ.
bool same_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

/// Lets responders reach the server while it runs.
struct reply_gate {
  std::mutex mutex;
  admin_server::impl* owner = nullptr;
};

} // namespace

class admin_server::impl {
public:
  impl(admin_server_config cfg, admin_handler handler)
      : cfg_(std::move(cfg)), handler_(std::move(handler)), acceptor_(io_),
        gate_(std::make_shared<reply_gate>()),
        stats_(cfg_.stats ? cfg_.stats : std::make_shared<admin_server_stats>()) {
    // Fields only; open() binds.
  }

  caf::expected<void> open() {
    asio::error_code ec;
    auto addr = asio::ip::make_address(cfg_.host, ec);
    if (ec)
      return make_error(errc::bind_failed, "admin address " + cfg_.host + ": " + ec.message());
    tcp::endpoint ep{addr, cfg_.port};
    auto where = [&] { return cfg_.host + ":" + std::to_string(cfg_.port); };
    if (acceptor_.open(ep.protocol(), ec); ec)
      return make_error(errc::bind_failed,
                        "cannot listen on admin " + where() + ": " + ec.message());
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (acceptor_.bind(ep, ec); ec)
      return make_error(errc::bind_failed,
                        "cannot listen on admin " + where() + ": " + ec.message());
    if (acceptor_.listen(asio::socket_base::max_listen_connections, ec); ec)
      return make_error(errc::bind_failed,
                        "cannot listen on admin " + where() + ": " + ec.message());
    port_ = acceptor_.local_endpoint(ec).port();
    {
      std::lock_guard guard{gate_->mutex};
      gate_->owner = this;
    }
    arm_accept();
    thread_ = std::thread{[this] { io_.run(); }};
    return caf::unit;
  }

  void stop() {
    if (thread_.joinable() && !drained_) {
      // Answers already on their way are written first (a `starling leave` is answered just
      // before the agent shuts down): no new connections, then wait until no connection
      // waits for the handler or writes, at most drain_timeout.
      drained_ = true;
      auto done = std::make_shared<std::promise<void>>();
      auto finished = done->get_future();
      asio::post(io_, [this, done] {
        asio::error_code ignored;
        acceptor_.close(ignored);
        drain(std::chrono::steady_clock::now() + drain_timeout, done);
      });
      finished.wait_for(drain_timeout + std::chrono::milliseconds{500});
    }
    {
      std::lock_guard guard{gate_->mutex};
      gate_->owner = nullptr;
    }
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
      for (auto& [id, c] : conns_)
        close(c);
      conns_.clear();
    });
    io_.stop();
    if (thread_.joinable())
      thread_.join();
  }

  std::uint16_t port() const noexcept { return port_; }

  const admin_server_stats& stats() const noexcept { return *stats_; }

private:
  /// How long stop() lets answers in flight finish.
  static constexpr std::chrono::milliseconds drain_timeout{1000};

  /// Polls (every 10 ms, until `deadline`) for the end of every request in flight, then
  /// fulfils `done`. Runs on the I/O thread.
  void drain(std::chrono::steady_clock::time_point deadline,
             const std::shared_ptr<std::promise<void>>& done) {
    const bool busy = std::any_of(conns_.begin(), conns_.end(), [](const auto& entry) {
      return entry.second->waiting || entry.second->writing;
    });
    if (!busy || std::chrono::steady_clock::now() >= deadline) {
      done->set_value();
      return;
    }
    drain_timer_.expires_after(std::chrono::milliseconds{10});
    drain_timer_.async_wait([this, deadline, done](const asio::error_code& ec) {
      if (!ec)
        drain(deadline, done);
      else
        done->set_value();
    });
  }

  struct conn {
    conn(std::uint64_t id, tcp::socket s, std::size_t max_request)
        : id(id), socket(std::move(s)), timer(socket.get_executor()), reader(max_request),
          buffer(read_chunk) {
      // Fields only.
    }
    std::uint64_t id;
    tcp::socket socket;
    /// Idle timeout while reading, request timeout while the handler works.
    asio::steady_timer timer;
    wire::frame_reader reader;
    std::vector<char> buffer;
    /// The reply being written.
    std::string out;
    /// Sequence number of the request in flight; a responder answers only its own.
    std::uint64_t request = 0;
    /// A request is with the handler.
    bool waiting = false;
    /// An answer is being written.
    bool writing = false;
    bool closed = false;
  };
  using conn_ptr = std::shared_ptr<conn>;

  void arm_accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
      if (!ec)
        on_accept(std::move(socket));
      arm_accept();
    });
  }

  void on_accept(tcp::socket socket) {
    // Full: make room by closing the oldest idle connection (no request in the handler and
    // no answer being written), so idle or half-sent connections cannot lock the operator
    // out. Only when every connection is busy is the new one refused.
    if (conns_.size() >= cfg_.max_connections && !evict_oldest_idle()) {
      stats_->refused_connections.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("admin: refusing a connection: {} open, all busy", conns_.size());
      asio::error_code ignored;
      socket.close(ignored);
      return;
    }
    stats_->connections.fetch_add(1, std::memory_order_relaxed);
    auto c = std::make_shared<conn>(next_id_++, std::move(socket), cfg_.max_request);
    conns_.emplace(c->id, c);
    arm_timer(c, cfg_.idle_timeout);
    read(c);
  }

  /// Closes the oldest connection that is neither waiting for the handler nor writing an
  /// answer; false if there is none. Ids grow with accept order, so the map's first idle
  /// entry is the oldest.
  bool evict_oldest_idle() {
    for (auto& [id, c] : conns_) {
      if (c->waiting || c->writing)
        continue;
      stats_->evicted_connections.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("admin: {} connections open: closing the oldest idle one", conns_.size());
      auto victim = c; // close() erases the entry.
      close(victim);
      return true;
    }
    return false;
  }

  void arm_timer(const conn_ptr& c, std::chrono::milliseconds after) {
    c->timer.expires_after(after);
    c->timer.async_wait([this, c, seq = c->request](const asio::error_code& ec) {
      if (ec || c->closed || c->request != seq)
        return;
      stats_->timeouts.fetch_add(1, std::memory_order_relaxed);
      if (c->waiting)
        answer(c, seq, admin_reply::failed("the agent did not answer in time"));
      else
        close(c);
    });
  }

  void read(const conn_ptr& c) {
    // A request may already be buffered behind the previous one.
    if (auto frame = c->reader.next(); frame.what != wire::frame_reader::status::need_more) {
      on_frame(c, std::move(frame));
      return;
    }
    c->socket.async_read_some(asio::buffer(c->buffer),
                              [this, c](const asio::error_code& ec, std::size_t n) {
                                if (c->closed)
                                  return;
                                if (ec) {
                                  close(c);
                                  return;
                                }
                                c->reader.feed(std::string_view{c->buffer.data(), n});
                                read(c);
                              });
  }

  void on_frame(const conn_ptr& c, wire::frame_reader::result frame) {
    if (frame.what != wire::frame_reader::status::frame) {
      stats_->malformed.fetch_add(1, std::memory_order_relaxed);
      if (frame.what == wire::frame_reader::status::empty)
        spdlog::debug("admin: closing a connection: empty request frame");
      else
        spdlog::debug("admin: closing a connection: request over {} bytes", cfg_.max_request);
      close(c);
      return;
    }
    auto req = decode_admin_request(frame.body);
    ++c->request;
    c->waiting = true;
    const auto seq = c->request;
    if (!req) {
      stats_->malformed.fetch_add(1, std::memory_order_relaxed);
      answer(c, seq, admin_reply::usage(message_of(req.error())));
      return;
    }
    auto args = std::optional<std::vector<std::string>>{std::move(req->args)};
    if (!cfg_.credential.empty() && (!cfg_.needs_credential || cfg_.needs_credential(*args)) &&
        !same_secret(req->credential, cfg_.credential)) {
      stats_->auth_refused.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("admin: refused `{}` without the admin credential", args->front());
      answer(c, seq,
             admin_reply::failed(
                 "permission denied: `starling " + args->front() +
                 "` changes the node and needs its admin credential, which the agent keeps "
                 "in <data-dir>/admin.cookie and in its user's runtime dir; run the command "
                 "as the agent's user, or pass --admin-cookie FILE (docs/operations.md, "
                 "\"Admin access\")"));
      return;
    }
    stats_->requests.fetch_add(1, std::memory_order_relaxed);
    arm_timer(c, cfg_.request_timeout);
    admin_responder reply = [gate = gate_, weak = std::weak_ptr<conn>{c},
                             seq](admin_reply r) mutable {
      std::lock_guard guard{gate->mutex};
      if (auto* owner = gate->owner)
        asio::post(owner->io_, [owner, weak, seq, r = std::move(r)]() mutable {
          if (auto c = weak.lock())
            owner->answer(c, seq, std::move(r));
        });
    };
    try {
      handler_(std::move(*args), std::move(reply));
    } catch (const std::exception& e) {
      answer(c, seq, admin_reply::failed(std::string{"internal error: "} + e.what()));
    }
  }

  /// Writes the answer to request `seq` (if it is still the one in flight), then reads on.
  void answer(const conn_ptr& c, std::uint64_t seq, admin_reply r) {
    if (c->closed || !c->waiting || c->request != seq)
      return;
    c->waiting = false;
    c->writing = true;
    c->out = encode_reply(r);
    asio::async_write(c->socket, asio::buffer(c->out),
                      [this, c](const asio::error_code& ec, std::size_t) {
                        c->writing = false;
                        if (c->closed)
                          return;
                        if (ec) {
                          close(c);
                          return;
                        }
                        arm_timer(c, cfg_.idle_timeout);
                        read(c);
                      });
  }

  void close(const conn_ptr& c) {
    if (c->closed)
      return;
    c->closed = true;
    asio::error_code ignored;
    c->timer.cancel();
    c->socket.close(ignored);
    conns_.erase(c->id);
  }

  admin_server_config cfg_;
  admin_handler handler_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  /// stop()'s wait for answers in flight (the I/O thread only).
  asio::steady_timer drain_timer_{io_};
  /// stop() drained once already.
  bool drained_ = false;
  std::shared_ptr<reply_gate> gate_;
  std::map<std::uint64_t, conn_ptr> conns_;
  std::uint64_t next_id_ = 1;
  std::uint16_t port_ = 0;
  std::shared_ptr<admin_server_stats> stats_;
  std::thread thread_;
};

admin_server::admin_server(std::shared_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

admin_server::~admin_server() { impl_->stop(); }

caf::expected<std::unique_ptr<admin_server>> admin_server::start(admin_server_config cfg,
                                                                 admin_handler handler) {
  auto ptr = std::make_shared<impl>(std::move(cfg), std::move(handler));
  if (auto ok = ptr->open(); !ok)
    return std::move(ok.error());
  return std::unique_ptr<admin_server>{new admin_server{std::move(ptr)}};
}

std::uint16_t admin_server::port() const noexcept { return impl_->port(); }

bool is_read_only_command(const std::vector<std::string>& args) {
  if (args.empty())
    return false;
  const auto& cmd = args.front();
  if (cmd == "keyring")
    return args.size() >= 2 && args[1] == "list";
  return cmd == "members" || cmd == "events" || cmd == "certs" || cmd == "stats" ||
         cmd == "services" || cmd == "routes" || cmd == "ping";
}

std::string runtime_cookie_name(std::uint16_t port) {
  return "admin-" + std::to_string(port) + ".cookie";
}

std::string admin_runtime_dir(const std::function<const char*(const char*)>& env) {
  auto get = [&](const char* name) -> std::string {
    const char* v = env(name);
    return v != nullptr ? std::string{v} : std::string{};
  };
  if (auto dir = get("STARLING_RUNTIME_DIR"); !dir.empty())
    return dir;
  if (auto dir = get("XDG_RUNTIME_DIR"); !dir.empty())
    return dir + "/starling";
  if (auto home = get("HOME"); !home.empty())
    return home + "/.starling/run";
  // No HOME in the environment (a bare service manager): the user's home from passwd.
  if (const auto* pw = ::getpwuid(::getuid());
      pw != nullptr && pw->pw_dir != nullptr && pw->pw_dir[0] == '/')
    return std::string{pw->pw_dir} + "/.starling/run";
  return {};
}

caf::expected<std::string> read_admin_cookie(const std::string& file) {
  auto text = identity::read_file(file, 1024);
  if (!text)
    return make_error(errc::request_failed,
                      "cannot read the admin credential: " + identity::render(text.error()));
  const auto first = text->find_first_not_of(" \t\r\n");
  if (first == std::string::npos)
    return make_error(errc::request_failed, file + " is empty");
  const auto last = text->find_last_not_of(" \t\r\n");
  return text->substr(first, last - first + 1);
}

const admin_server_stats& admin_server::stats() const noexcept { return impl_->stats(); }

caf::expected<admin_request> decode_admin_request(std::string_view body) {
  v1::AdminRequest msg;
  if (!msg.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(errc::request_failed, "malformed admin request");
  if (msg.version() != protocol_version)
    return make_error(errc::request_failed,
                      "unsupported admin protocol version " + std::to_string(msg.version()));
  if (msg.args_size() == 0 || static_cast<std::size_t>(msg.args_size()) > max_admin_args)
    return make_error(errc::request_failed, "an admin request needs 1 to 64 arguments");
  return admin_request{std::vector<std::string>(msg.args().begin(), msg.args().end()),
                       msg.credential()};
}

std::string encode_admin_request(const admin_request& req) {
  v1::AdminRequest msg;
  msg.set_version(protocol_version);
  for (const auto& a : req.args)
    msg.add_args(a);
  if (!req.credential.empty())
    msg.set_credential(req.credential);
  return msg.SerializeAsString();
}

// -- client -------------------------------------------------------------------------------

caf::expected<admin_reply> call_admin(const std::string& host, std::uint16_t port,
                                      const std::vector<std::string>& args,
                                      std::chrono::milliseconds timeout,
                                      const std::string& credential) {
  const auto request = wire::framed(encode_admin_request({args, credential}));
  const auto where = host + ":" + std::to_string(port);

  asio::io_context io;
  tcp::socket socket{io};
  tcp::resolver resolver{io};
  wire::frame_reader reader{max_reply};
  std::vector<char> buffer(read_chunk);
  std::optional<caf::expected<admin_reply>> result;
  auto fail = [&](errc code, std::string why) {
    if (!result)
      result = make_error(code, std::move(why));
    io.stop();
  };

  std::function<void()> read_reply = [&] {
    socket.async_read_some(asio::buffer(buffer), [&](const asio::error_code& ec, std::size_t n) {
      if (ec) {
        fail(errc::request_failed, "connection closed before the answer: " + ec.message());
        return;
      }
      reader.feed(std::string_view{buffer.data(), n});
      auto frame = reader.next();
      if (frame.what == wire::frame_reader::status::need_more) {
        read_reply();
        return;
      }
      v1::AdminResponse msg;
      if (frame.what != wire::frame_reader::status::frame || !msg.ParseFromString(frame.body) ||
          msg.status() > v1::AdminResponse::STATUS_USAGE) {
        fail(errc::request_failed, "malformed answer from " + where);
        return;
      }
      result = admin_reply{static_cast<admin_reply::status>(msg.status()), msg.body(), msg.error()};
      io.stop();
    });
  };
  resolver.async_resolve(
      host, std::to_string(port), [&](const asio::error_code& ec, tcp::resolver::results_type eps) {
        if (ec) {
          fail(errc::unreachable, "cannot resolve " + host + ": " + ec.message());
          return;
        }
        asio::async_connect(socket, eps, [&](const asio::error_code& cec, const tcp::endpoint&) {
          if (cec) {
            fail(errc::unreachable, "connection failed: " + cec.message());
            return;
          }
          asio::async_write(socket, asio::buffer(request),
                            [&](const asio::error_code& wec, std::size_t) {
                              if (wec)
                                fail(errc::unreachable, "sending failed: " + wec.message());
                              else
                                read_reply();
                            });
        });
      });
  io.run_for(timeout);
  if (!result)
    return make_error(errc::unreachable,
                      "no answer within " + std::to_string(timeout.count()) + "ms");
  return std::move(*result);
}

} // namespace starling::actors
