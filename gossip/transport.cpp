// The gossip transport (see transport.hpp): one UDP socket and one TCP acceptor on the same
// port, served by one Asio io_context on one thread. Every handler runs on that thread, so
// the state below needs no locks; other threads only post into the io_context.
//
// Lifetime: stop() detaches the reply gate, stops the io_context and joins the thread; after
// that no handler runs again, and pending handlers (which own the connection objects) are
// destroyed with the io_context.
#include "gossip/transport.hpp"

#include <array>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "gossip/errc.hpp"

namespace starling::gossip {

namespace {

using asio::ip::tcp;
using asio::ip::udp;
using namespace std::chrono_literals;

/// Receive buffer of the UDP socket: larger than any UDP payload, so an oversized datagram
/// is seen whole (and counted as oversized) rather than truncated.
constexpr std::size_t udp_buffer_size = 64 * 1024;

/// Bytes read from a TCP connection per read call.
constexpr std::size_t tcp_read_chunk = 16 * 1024;

/// Inbound push-pull connections served at once; more are closed right after accept.
constexpr std::size_t max_inbound_connections = 64;

/// Tries of "UDP on port 0, then TCP on the same port" before giving up.
constexpr int bind_attempts = 8;

/// Resolved host names are reused this long.
constexpr auto resolve_ttl = 60s;

/// Bound on cached host names (the cache is cleared when full).
constexpr std::size_t max_cached_hosts = 1024;

/// Pause before re-arming accept or receive after an unexpected error (no busy loop on,
/// say, EMFILE).
constexpr auto error_backoff = 50ms;

/// "host:port" of an endpoint; IPv4-mapped IPv6 shows as IPv4, IPv6 is bracketed.
std::string render_endpoint(const asio::ip::address& addr, std::uint16_t port) {
  if (addr.is_v6()) {
    const auto v6 = addr.to_v6();
    if (v6.is_v4_mapped())
      return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string() + ":" +
             std::to_string(port);
    return "[" + v6.to_string() + "]:" + std::to_string(port);
  }
  return addr.to_string() + ":" + std::to_string(port);
}

/// "host:port" with brackets around an IPv6 host (unless already bracketed).
std::string join_host_port(const std::string& host, std::uint16_t port) {
  if (host.find(':') != std::string::npos && host.front() != '[')
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

/// The first non-loopback IPv4 address of an interface that is up; 127.0.0.1 if none.
std::string first_ipv4_address() {
  ifaddrs* list = nullptr;
  std::string result = "127.0.0.1";
  if (getifaddrs(&list) != 0)
    return result;
  for (auto* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET)
      continue;
    if ((it->ifa_flags & IFF_LOOPBACK) != 0 || (it->ifa_flags & IFF_UP) == 0)
      continue;
    const auto* sin = reinterpret_cast<const sockaddr_in*>(it->ifa_addr);
    std::array<char, INET_ADDRSTRLEN> buf{};
    if (inet_ntop(AF_INET, &sin->sin_addr, buf.data(), buf.size()) != nullptr) {
      result = buf.data();
      break;
    }
  }
  freeifaddrs(list);
  return result;
}

/// Runs an owner callback; an exception from it is logged, never propagated into Asio.
template <class F, class... Args>
void invoke_callback(const char* what, const F& f, Args&&... args) noexcept {
  if (!f)
    return;
  try {
    f(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    spdlog::warn("gossip transport: {} callback threw: {}", what, e.what());
  } catch (...) {
    spdlog::warn("gossip transport: {} callback threw", what);
  }
}

caf::error io_error(std::string what, const asio::error_code& ec) {
  return make_error(errc::io_failure, std::move(what) + ": " + ec.message());
}

/// Calls sealer.seal; an exception becomes an error (never propagated into Asio).
caf::expected<std::string> seal_with(datagram_sealer& sealer, std::string plain) noexcept {
  try {
    return sealer.seal(std::move(plain));
  } catch (...) {
    return make_error(errc::malformed, "sealer threw while sealing");
  }
}

/// Calls sealer.open; an exception becomes a malformed error.
caf::expected<std::string> open_with(datagram_sealer& sealer, std::string_view wire) noexcept {
  try {
    return sealer.open(wire);
  } catch (...) {
    return make_error(errc::malformed, "sealer threw while opening");
  }
}

/// True when a sealer refusal means unauthenticated input rather than malformed bytes
/// (see datagram_sealer).
bool is_refusal(const caf::error& err) {
  return err.category() != errc_category;
}

/// Prefixes `body` with its 4-byte big-endian length (a TCP frame).
std::string frame_of(std::string_view body) {
  std::string out;
  out.reserve(4 + body.size());
  const auto n = static_cast<std::uint32_t>(body.size());
  out += static_cast<char>((n >> 24) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out.append(body);
  return out;
}

/// Seals the body of an encoded TCP frame (length prefix + body) when a sealer is set.
caf::expected<std::string> seal_frame(const std::shared_ptr<datagram_sealer>& sealer,
                                      std::string frame) {
  if (!sealer)
    return frame;
  if (frame.size() < 4)
    return make_error(errc::malformed, "frame shorter than its length prefix");
  auto sealed = seal_with(*sealer, frame.substr(4));
  if (!sealed)
    return sealed.error();
  return frame_of(*sealed);
}

} // namespace

/// Lets push-pull responders reach the transport from any thread until stop() cuts them off.
struct reply_gate {
  std::mutex mutex;
  /// The live transport; null once stopping (guarded by `mutex`).
  transport::impl* owner = nullptr;
};

class transport::impl {
public:
  impl(transport_config cfg, transport_callbacks cbs)
      : cfg_(std::move(cfg)), cbs_(std::move(cbs)), work_(asio::make_work_guard(io_)), udp_(io_),
        acceptor_(io_), accept_retry_(io_), udp_retry_(io_), resolver_(io_),
        udp_buffer_(udp_buffer_size), gate_(std::make_shared<reply_gate>()) {
    // Sockets are bound by bind(), the thread started by run().
  }

  ~impl() {
    stop();
    if (thread_.joinable()) {
      // Only reached when stop() ran on the I/O thread itself (from a callback); the
      // owner must not destroy the transport there, but do not abort if it does.
      if (thread_.get_id() == std::this_thread::get_id())
        thread_.detach();
      else
        thread_.join();
    }
  }

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  /// Binds UDP and then TCP on the same port; with port 0 retries with fresh UDP ports.
  caf::error bind() {
    asio::error_code ec;
    auto addr = asio::ip::make_address(cfg_.bind_host, ec);
    if (ec) {
      tcp::resolver resolver{io_};
      auto results = resolver.resolve(cfg_.bind_host, "0", ec);
      if (ec || results.empty())
        return make_error(errc::io_failure,
                          "cannot resolve bind host " + cfg_.bind_host + ": " + ec.message());
      addr = results.begin()->endpoint().address();
    }
    const int attempts = cfg_.port == 0 ? bind_attempts : 1;
    std::string last_error;
    for (int i = 0; i < attempts; ++i) {
      udp::endpoint uep{addr, cfg_.port};
      udp_.open(uep.protocol(), ec);
      if (!ec)
        udp_.bind(uep, ec);
      if (ec) {
        asio::error_code ignored;
        udp_.close(ignored);
        return make_error(errc::io_failure, "cannot bind UDP " + render_endpoint(addr, cfg_.port) +
                                                ": " + ec.message());
      }
      const auto port = udp_.local_endpoint(ec).port();
      tcp::endpoint tep{addr, port};
      acceptor_.open(tep.protocol(), ec);
      if (!ec)
        acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec)
        acceptor_.bind(tep, ec);
      if (!ec)
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) {
        port_ = port;
        udp_v6_ = addr.is_v6();
        return {};
      }
      last_error = "cannot bind TCP " + render_endpoint(addr, port) + ": " + ec.message();
      asio::error_code ignored;
      acceptor_.close(ignored);
      udp_.close(ignored);
    }
    return make_error(errc::io_failure, last_error);
  }

  /// Computes the advertise address, arms the receive and accept loops, starts the thread.
  void run() {
    std::string host = cfg_.advertise_host;
    if (host.empty()) {
      asio::error_code ec;
      auto addr = asio::ip::make_address(cfg_.bind_host, ec);
      if (!ec && addr.is_unspecified())
        host = first_ipv4_address();
      else
        host = cfg_.bind_host;
    }
    advertise_ = join_host_port(host, port_);
    {
      std::lock_guard guard{gate_->mutex};
      gate_->owner = this;
    }
    arm_receive();
    arm_accept();
    thread_ = std::thread{[this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("gossip transport: handler threw: {}", e.what());
        } catch (...) {
          spdlog::error("gossip transport: handler threw");
        }
      }
    }};
  }

  void stop() {
    std::lock_guard lock{stop_mutex_};
    if (stopped_)
      return;
    stopped_ = true;
    {
      std::lock_guard guard{gate_->mutex};
      gate_->owner = nullptr;
    }
    work_.reset();
    io_.stop();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
      thread_.join();
    // The I/O thread is gone (or is the caller): closing here races with nothing. The
    // aborted completions are queued in the stopped io_context and never run.
    asio::error_code ignored;
    udp_.close(ignored);
    acceptor_.close(ignored);
    accept_retry_.cancel();
    udp_retry_.cancel();
    resolver_.cancel();
    for (auto& [id, conn] : inbound_) {
      conn->closed = true;
      conn->socket.close(ignored);
      conn->deadline.cancel();
    }
    inbound_.clear();
  }

  std::string advertise_address() const { return advertise_; }
  std::uint16_t port() const { return port_; }
  const transport_stats& stats() const { return stats_; }

  void send(const std::string& address, const packet& msg) {
    asio::post(io_, [this, address, msg] { do_send(address, msg); });
  }

  void push_pull_with(const std::string& address, push_pull local,
                      std::function<void(caf::expected<push_pull>)> done) {
    // Encoding and sealing need no I/O state: do them on the caller's thread.
    auto bytes = seal_frame(cfg_.sealer, encode_frame(local));
    if (!bytes) {
      asio::post(io_, [this, err = bytes.error(), done = std::move(done)]() mutable {
        stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
        invoke_callback("push_pull done", done, caf::expected<push_pull>{std::move(err)});
      });
      return;
    }
    asio::post(io_, [this, address, bytes = std::move(*bytes), done = std::move(done)]() mutable {
      start_outbound(address, std::move(bytes), std::move(done));
    });
  }

private:
  // -- name resolution (I/O thread) ------------------------------------------------------

  using resolve_handler = std::function<void(caf::expected<asio::ip::address>)>;

  struct cache_entry {
    asio::ip::address address;
    std::chrono::steady_clock::time_point expires;
  };

  /// Resolves `host` (numeric addresses directly, names through the cache or the resolver).
  void resolve(const std::string& host, resolve_handler k) {
    asio::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) {
      k(addr);
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (auto i = cache_.find(host); i != cache_.end()) {
      if (i->second.expires > now) {
        k(i->second.address);
        return;
      }
      cache_.erase(i);
    }
    auto& waiting = pending_[host];
    waiting.push_back(std::move(k));
    if (waiting.size() > 1)
      return; // a lookup is already under way
    resolver_.async_resolve(
        host, "0", [this, host](const asio::error_code& ec, udp::resolver::results_type results) {
          auto node = pending_.extract(host);
          if (node.empty())
            return;
          auto handlers = std::move(node.mapped());
          caf::expected<asio::ip::address> result{
              make_error(errc::io_failure, "cannot resolve " + host + ": " + ec.message())};
          if (!ec && !results.empty()) {
            // Prefer the family of our UDP socket (a v6 socket also reaches v4 via mapping).
            result = results.begin()->endpoint().address();
            for (const auto& entry : results) {
              if (entry.endpoint().address().is_v6() == udp_v6_) {
                result = entry.endpoint().address();
                break;
              }
            }
            if (cache_.size() >= max_cached_hosts)
              cache_.clear();
            cache_[host] = cache_entry{*result, std::chrono::steady_clock::now() + resolve_ttl};
          }
          for (auto& handler : handlers)
            handler(result);
        });
  }

  // -- UDP (I/O thread) ------------------------------------------------------------------

  void arm_receive() {
    udp_.async_receive_from(
        asio::buffer(udp_buffer_), udp_from_,
        [this](const asio::error_code& ec, std::size_t n) { on_datagram(ec, n); });
  }

  void on_datagram(const asio::error_code& ec, std::size_t n) {
    if (ec == asio::error::operation_aborted || !udp_.is_open())
      return;
    if (ec) {
      spdlog::debug("gossip transport: UDP receive: {}", ec.message());
      udp_retry_.expires_after(error_backoff);
      udp_retry_.async_wait([this](const asio::error_code& e) {
        if (!e)
          arm_receive();
      });
      return;
    }
    stats_.datagrams_in.fetch_add(1, std::memory_order_relaxed);
    stats_.bytes_in.fetch_add(n, std::memory_order_relaxed);
    const auto from = render_endpoint(udp_from_.address(), udp_from_.port());
    handle_datagram(std::string_view{udp_buffer_.data(), n}, from);
    arm_receive();
  }

  void handle_datagram(std::string_view wire, const std::string& from) {
    if (wire.size() > cfg_.limits.max_datagram) {
      stats_.dropped_oversized.fetch_add(1, std::memory_order_relaxed);
      drop(make_error(errc::oversized, "datagram of " + std::to_string(wire.size()) +
                                           " bytes exceeds " +
                                           std::to_string(cfg_.limits.max_datagram)),
           from);
      return;
    }
    std::string opened;
    if (cfg_.sealer) {
      auto plain = open_with(*cfg_.sealer, wire);
      if (!plain) {
        if (is_refusal(plain.error()))
          stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
        else
          stats_.dropped_malformed.fetch_add(1, std::memory_order_relaxed);
        drop(plain.error(), from);
        return;
      }
      opened = std::move(*plain);
      wire = opened;
    }
    auto msg = decode_datagram(wire, cfg_.limits);
    if (!msg) {
      stats_.dropped_malformed.fetch_add(1, std::memory_order_relaxed);
      drop(msg.error(), from);
      return;
    }
    invoke_callback("on_packet", cbs_.on_packet, std::move(*msg), from);
  }

  void do_send(const std::string& address, const packet& msg) {
    auto hp = split_host_port(address);
    if (!hp) {
      stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("gossip transport: send: {}", render(hp.error()));
      return;
    }
    auto bytes = encode_datagram(msg);
    if (cfg_.sealer) {
      auto sealed = seal_with(*cfg_.sealer, std::move(bytes));
      if (!sealed) {
        stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("gossip transport: cannot seal a datagram to {}: {}", address,
                      render(sealed.error()));
        return;
      }
      bytes = std::move(*sealed);
    }
    if (bytes.size() > cfg_.limits.max_datagram) {
      stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("gossip transport: not sending a {} byte datagram to {}", bytes.size(),
                    address);
      return;
    }
    auto buf = std::make_shared<std::string>(std::move(bytes));
    const auto port = hp->second;
    resolve(hp->first, [this, buf, port](caf::expected<asio::ip::address> addr) {
      if (!addr) {
        stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("gossip transport: send: {}", render(addr.error()));
        return;
      }
      auto target = *addr;
      if (udp_v6_ && target.is_v4()) {
        target = asio::ip::make_address_v6(asio::ip::v4_mapped, target.to_v4());
      } else if (!udp_v6_ && target.is_v6()) {
        const auto v6 = target.to_v6();
        if (!v6.is_v4_mapped()) {
          stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        target = asio::ip::make_address_v4(asio::ip::v4_mapped, v6);
      }
      udp_.async_send_to(asio::buffer(*buf), udp::endpoint{target, port},
                         [this, buf](const asio::error_code& ec, std::size_t n) {
                           if (ec) {
                             if (ec != asio::error::operation_aborted)
                               stats_.send_errors.fetch_add(1, std::memory_order_relaxed);
                             return;
                           }
                           stats_.datagrams_out.fetch_add(1, std::memory_order_relaxed);
                           stats_.bytes_out.fetch_add(n, std::memory_order_relaxed);
                         });
    });
  }

  // -- TCP inbound (I/O thread) ----------------------------------------------------------

  /// One peer-initiated push-pull exchange.
  struct inbound_conn {
    inbound_conn(std::uint64_t id, tcp::socket s, std::size_t max_frame)
        : id(id), socket(std::move(s)), deadline(socket.get_executor()), reader(max_frame),
          buffer(tcp_read_chunk) {
      // Fields only.
    }
    std::uint64_t id;
    tcp::socket socket;
    /// Closes the connection when the whole exchange took longer than tcp_timeout.
    asio::steady_timer deadline;
    frame_reader reader;
    std::vector<char> buffer;
    std::string remote;
    /// The answer being written; kept alive until the write completes.
    std::string out;
    /// A whole request frame arrived (the exchange is under way, not merely connected).
    bool requested = false;
    /// An answer was queued (replies after the first are ignored).
    bool answered = false;
    /// Closed and removed from inbound_.
    bool closed = false;
  };
  using inbound_ptr = std::shared_ptr<inbound_conn>;

  void arm_accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket socket) {
      on_accept(ec, std::move(socket));
    });
  }

  void on_accept(const asio::error_code& ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open())
      return;
    if (ec) {
      spdlog::debug("gossip transport: accept: {}", ec.message());
      accept_retry_.expires_after(error_backoff);
      accept_retry_.async_wait([this](const asio::error_code& e) {
        if (!e)
          arm_accept();
      });
      return;
    }
    asio::error_code ep_ec;
    const auto ep = socket.remote_endpoint(ep_ec);
    const auto remote = ep_ec ? std::string{"?"} : render_endpoint(ep.address(), ep.port());
    // Full: make room by closing the oldest connection that has not sent a whole request
    // yet. Real push-pulls send theirs within a round trip, so a peer holding connections
    // open half-way (slowloris) only ever evicts its own.
    if (inbound_.size() >= max_inbound_connections) {
      for (const auto& entry : inbound_) {
        if (!entry.second->requested) {
          auto old = entry.second; // a copy: closing erases the map entry
          fail_inbound(old, make_error(errc::io_failure, "evicted: connection limit reached "
                                                         "before a whole request arrived"),
                       false);
          break;
        }
      }
    }
    if (inbound_.size() >= max_inbound_connections) {
      stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
      asio::error_code ignored;
      socket.close(ignored);
      drop(make_error(errc::io_failure, "too many push-pull connections"), remote);
    } else {
      const auto id = next_conn_id_++;
      auto conn = std::make_shared<inbound_conn>(id, std::move(socket), cfg_.limits.max_frame);
      conn->remote = remote;
      inbound_.emplace(id, conn);
      conn->deadline.expires_after(cfg_.tcp_timeout);
      conn->deadline.async_wait([this, conn](const asio::error_code& e) {
        if (e || conn->closed)
          return;
        fail_inbound(conn, make_error(errc::timeout, "push-pull not completed in time"), false);
      });
      read_inbound(conn);
    }
    arm_accept();
  }

  void read_inbound(const inbound_ptr& conn) {
    conn->socket.async_read_some(asio::buffer(conn->buffer),
                                 [this, conn](const asio::error_code& ec, std::size_t n) {
                                   if (conn->closed)
                                     return;
                                   if (ec) {
                                     fail_inbound(conn, io_error("push-pull read", ec), false);
                                     return;
                                   }
                                   conn->reader.feed(std::string_view{conn->buffer.data(), n});
                                   auto body = conn->reader.next();
                                   if (!body) {
                                     read_inbound(conn);
                                     return;
                                   }
                                   if (!*body) {
                                     fail_inbound(conn, body->error(), true);
                                     return;
                                   }
                                   on_body(conn, std::move(**body));
                                 });
  }

  /// Opens (when sealing) and decodes the request body of an inbound exchange.
  void on_body(const inbound_ptr& conn, std::string body) {
    if (cfg_.sealer) {
      auto plain = open_with(*cfg_.sealer, body);
      if (!plain) {
        if (is_refusal(plain.error())) {
          stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
        } else if (decode_frame(body, cfg_.limits)) {
          // A well-formed plain push-pull: unauthenticated rather than malformed. Say so,
          // so that the operator of a node without the key learns why.
          stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
          fail_inbound(conn,
                       make_error(errc::peer_refused,
                                  "unsealed push-pull, but gossip encryption is on here: the "
                                  "sender has no gossip key"),
                       true);
          return;
        }
        // Answered with a plain error frame: the peer cannot open anything we seal.
        fail_inbound(conn, plain.error(), true);
        return;
      }
      body = std::move(*plain);
    }
    on_request(conn, decode_frame(body, cfg_.limits));
  }

  void on_request(const inbound_ptr& conn, caf::expected<push_pull> request) {
    conn->requested = true;
    if (!request) {
      // A peer that sends us an error frame as a request gets no answer.
      const bool answer = request.error().code() != static_cast<std::uint8_t>(errc::peer_refused);
      fail_inbound(conn, request.error(), answer);
      return;
    }
    stats_.push_pulls_in.fetch_add(1, std::memory_order_relaxed);
    if (!cbs_.on_push_pull) {
      conn->answered = true;
      stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
      write_and_close(conn, encode_error_frame("push-pull not served"), false);
      return;
    }
    push_pull_responder reply = [gate = gate_, id = conn->id,
                                 sealer = cfg_.sealer](caf::expected<push_pull> answer) {
      bool refused = !answer;
      // Encoding and sealing are pure: do them on the replier's thread.
      auto framed = seal_frame(sealer, refused ? encode_error_frame(render(answer.error()))
                                               : encode_frame(*answer));
      std::string bytes;
      if (framed) {
        bytes = std::move(*framed);
      } else {
        refused = true;
        bytes = encode_error_frame("cannot seal the answer");
      }
      std::lock_guard guard{gate->mutex};
      if (auto* owner = gate->owner) {
        asio::post(owner->io_, [owner, id, refused, bytes = std::move(bytes)]() mutable {
          owner->on_reply(id, std::move(bytes), refused);
        });
      }
    };
    invoke_callback("on_push_pull", cbs_.on_push_pull, std::move(*request), std::move(reply));
  }

  void on_reply(std::uint64_t id, std::string bytes, bool refused) {
    auto i = inbound_.find(id);
    if (i == inbound_.end())
      return; // timed out or closed meanwhile
    auto conn = i->second;
    if (conn->answered || conn->closed)
      return;
    conn->answered = true;
    if (refused)
      stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
    write_and_close(conn, std::move(bytes), !refused);
  }

  /// Counts a failed inbound exchange, answers an error frame if `answer`, then closes.
  void fail_inbound(const inbound_ptr& conn, const caf::error& why, bool answer) {
    stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
    drop(why, conn->remote);
    if (answer && !conn->answered) {
      conn->answered = true;
      write_and_close(conn, encode_error_frame(render(why)), false);
    } else {
      close_inbound(conn);
    }
  }

  void write_and_close(const inbound_ptr& conn, std::string bytes, bool count_failure) {
    conn->out = std::move(bytes);
    asio::async_write(conn->socket, asio::buffer(conn->out),
                      [this, conn, count_failure](const asio::error_code& ec, std::size_t) {
                        if (conn->closed)
                          return;
                        if (ec && count_failure) {
                          stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
                          drop(io_error("push-pull answer write", ec), conn->remote);
                        }
                        close_inbound(conn);
                      });
  }

  void close_inbound(const inbound_ptr& conn) {
    if (conn->closed)
      return;
    conn->closed = true;
    conn->deadline.cancel();
    asio::error_code ignored;
    conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
    conn->socket.close(ignored);
    inbound_.erase(conn->id);
  }

  // -- TCP outbound (I/O thread) ---------------------------------------------------------

  /// One push-pull exchange we started.
  struct outbound_op {
    outbound_op(asio::io_context& io, std::string address, std::string out,
                std::function<void(caf::expected<push_pull>)> done, std::size_t max_frame)
        : socket(io), deadline(io), reader(max_frame), buffer(tcp_read_chunk),
          address(std::move(address)), out(std::move(out)), done(std::move(done)) {
      // Fields only.
    }
    tcp::socket socket;
    asio::steady_timer deadline;
    frame_reader reader;
    std::vector<char> buffer;
    std::string address;
    /// Our encoded frame; kept alive until the write completes.
    std::string out;
    std::function<void(caf::expected<push_pull>)> done;
    /// `done` ran (it runs exactly once).
    bool finished = false;
  };
  using outbound_ptr = std::shared_ptr<outbound_op>;

  void start_outbound(const std::string& address, std::string bytes,
                      std::function<void(caf::expected<push_pull>)> done) {
    auto op = std::make_shared<outbound_op>(io_, address, std::move(bytes), std::move(done),
                                            cfg_.limits.max_frame);
    auto hp = split_host_port(address);
    if (!hp) {
      finish(op, hp.error());
      return;
    }
    op->deadline.expires_after(cfg_.tcp_timeout);
    op->deadline.async_wait([this, op](const asio::error_code& ec) {
      if (!ec)
        finish(op, make_error(errc::timeout, "push-pull with " + op->address + " timed out"));
    });
    const auto port = hp->second;
    resolve(hp->first, [this, op, port](caf::expected<asio::ip::address> addr) {
      if (op->finished)
        return;
      if (!addr) {
        finish(op, addr.error());
        return;
      }
      op->socket.async_connect(tcp::endpoint{*addr, port}, [this, op](const asio::error_code& ec) {
        if (op->finished)
          return;
        if (ec) {
          finish(op, io_error("connect to " + op->address, ec));
          return;
        }
        asio::async_write(op->socket, asio::buffer(op->out),
                          [this, op](const asio::error_code& e, std::size_t) {
                            if (op->finished)
                              return;
                            if (e) {
                              finish(op, io_error("write to " + op->address, e));
                              return;
                            }
                            read_outbound(op);
                          });
      });
    });
  }

  void read_outbound(const outbound_ptr& op) {
    op->socket.async_read_some(asio::buffer(op->buffer),
                               [this, op](const asio::error_code& ec, std::size_t n) {
                                 if (op->finished)
                                   return;
                                 if (ec) {
                                   finish(op, io_error("read from " + op->address, ec));
                                   return;
                                 }
                                 op->reader.feed(std::string_view{op->buffer.data(), n});
                                 auto body = op->reader.next();
                                 if (!body) {
                                   read_outbound(op);
                                   return;
                                 }
                                 if (!*body) {
                                   finish(op, body->error());
                                   return;
                                 }
                                 finish(op, open_answer(op, **body));
                               });
  }

  /// Opens (when sealing) and decodes the answer of an exchange we started. A plain error
  /// frame is accepted unsealed: a peer that could not open our request cannot seal its
  /// refusal for us, and its reason is what the operator needs to see.
  caf::expected<push_pull> open_answer(const outbound_ptr& op, const std::string& body) {
    if (!cfg_.sealer)
      return decode_frame(body, cfg_.limits);
    auto plain = open_with(*cfg_.sealer, body);
    if (plain)
      return decode_frame(*plain, cfg_.limits);
    auto as_plain = decode_frame(body, cfg_.limits);
    if (!as_plain && as_plain.error().category() == errc_category &&
        as_plain.error().code() == static_cast<std::uint8_t>(errc::peer_refused))
      return as_plain.error();
    if (is_refusal(plain.error()))
      stats_.dropped_refused.fetch_add(1, std::memory_order_relaxed);
    drop(plain.error(), op->address);
    return plain.error();
  }

  void finish(const outbound_ptr& op, caf::expected<push_pull> result) {
    if (op->finished)
      return;
    op->finished = true;
    op->deadline.cancel();
    asio::error_code ignored;
    op->socket.close(ignored);
    if (result) {
      stats_.push_pulls_out.fetch_add(1, std::memory_order_relaxed);
    } else {
      stats_.push_pull_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("gossip transport: push-pull with {}: {}", op->address, render(result.error()));
    }
    auto done = std::move(op->done);
    invoke_callback("push_pull done", done, std::move(result));
  }

  // -- helpers ---------------------------------------------------------------------------

  void drop(const caf::error& why, const std::string& from) {
    spdlog::debug("gossip transport: dropped input from {}: {}", from, render(why));
    invoke_callback("on_drop", cbs_.on_drop, why, from);
  }

  /// Immutable after start().
  transport_config cfg_;
  transport_callbacks cbs_;
  transport_stats stats_;
  /// Declared before every I/O object so that it is destroyed after them.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  udp::socket udp_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  asio::steady_timer udp_retry_;
  udp::resolver resolver_;
  /// Receive buffer and source of the one outstanding UDP receive.
  std::vector<char> udp_buffer_;
  udp::endpoint udp_from_;
  /// True when the UDP socket is IPv6 (destinations are then v4-mapped).
  bool udp_v6_ = false;
  /// Open inbound connections, by id; at most max_inbound_connections.
  std::map<std::uint64_t, inbound_ptr> inbound_;
  std::uint64_t next_conn_id_ = 1;
  /// Resolved host names and lookups under way (with who waits for them).
  std::unordered_map<std::string, cache_entry> cache_;
  std::unordered_map<std::string, std::vector<resolve_handler>> pending_;
  std::shared_ptr<reply_gate> gate_;
  std::string advertise_;
  std::uint16_t port_ = 0;
  /// Guards stop(); `stopped_` makes it idempotent.
  std::mutex stop_mutex_;
  bool stopped_ = false;
  std::thread thread_;
};

caf::expected<std::unique_ptr<transport>> transport::start(transport_config cfg,
                                                           transport_callbacks cbs) {
  std::unique_ptr<impl> p;
  try {
    p = std::make_unique<impl>(std::move(cfg), std::move(cbs));
    if (auto err = p->bind())
      return err;
    p->run();
  } catch (const std::exception& e) {
    return make_error(errc::io_failure, std::string{"cannot start gossip transport: "} + e.what());
  }
  return std::unique_ptr<transport>{new transport(std::move(p))};
}

transport::transport(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  // The impl is bound and running.
}

transport::~transport() {
  if (impl_)
    impl_->stop();
}

std::string transport::advertise_address() const { return impl_->advertise_address(); }

std::uint16_t transport::port() const { return impl_->port(); }

void transport::send(const std::string& address, const packet& msg) { impl_->send(address, msg); }

void transport::push_pull_with(const std::string& address, push_pull local,
                               std::function<void(caf::expected<push_pull>)> done) {
  impl_->push_pull_with(address, std::move(local), std::move(done));
}

void transport::stop() { impl_->stop(); }

const transport_stats& transport::stats() const { return impl_->stats(); }

caf::expected<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view address) {
  auto bad = [&](const char* why) {
    return make_error(errc::invalid_field,
                      std::string{why} + " in address \"" + std::string{address} + "\"");
  };
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string_view::npos)
      return bad("missing ']'");
    host = address.substr(1, close - 1);
    const auto rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      return bad("missing port");
    port = rest.substr(1);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos)
      return bad("missing port");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return bad("unbracketed IPv6 host");
  }
  if (host.empty())
    return bad("empty host");
  if (port.empty() || port.size() > 5)
    return bad("invalid port");
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9')
      return bad("invalid port");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535)
    return bad("port out of range");
  return std::pair<std::string, std::uint16_t>{std::string{host},
                                               static_cast<std::uint16_t>(value)};
}

} // namespace starling::gossip
