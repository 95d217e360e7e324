// The DNS responder's UDP socket on its own Asio thread (dns_server.hpp). The thread owns
// the socket and the answer-order generator; the snapshot and the options are swapped
// under a mutex by any thread and copied (a shared_ptr each) per query; counters are atomics.
#include "gossip/discovery/dns_server.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <random>
#include <span>
#include <thread>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <spdlog/spdlog.h>

#include "gossip/errc.hpp"
#include "proto/wire/address.hpp"

namespace starling::gossip::discovery {

namespace {

bool is_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

/// The table before the first set_snapshot: nothing is known.
const routing_snapshot& empty_snapshot() {
  static const routing_snapshot empty;
  return empty;
}

} // namespace

caf::error check_options(const dns_options& options) {
  std::string_view domain = options.domain;
  if (!domain.empty() && domain.back() == '.')
    domain.remove_suffix(1);
  if (domain.empty() || domain.size() > 253)
    return make_error(errc::invalid_field,
                      "domain: must be 1 to 253 characters, not \"" + options.domain + "\"");
  std::size_t label = 0;
  for (const char c : domain) {
    if (c == '.') {
      if (label == 0)
        return make_error(errc::invalid_field, "domain: empty label in \"" + options.domain + "\"");
      label = 0;
    } else if (!is_label_char(c)) {
      return make_error(errc::invalid_field,
                        "domain: only letters, digits, '-', '_' and '.' allowed in \"" +
                            options.domain + "\"");
    } else if (++label > 63) {
      return make_error(errc::invalid_field,
                        "domain: a label longer than 63 characters in \"" + options.domain + "\"");
    }
  }
  if (label == 0)
    return make_error(errc::invalid_field, "domain: empty label in \"" + options.domain + "\"");
  if (options.proxy_address) {
    std::error_code ec;
    asio::ip::make_address(*options.proxy_address, ec);
    if (ec)
      return make_error(errc::invalid_field,
                        "proxy_address: not an IP address: \"" + *options.proxy_address + "\"");
  }
  if (options.max_udp < 512 || options.max_udp > dns_server::max_datagram)
    return make_error(errc::invalid_field,
                      "max_udp: must be 512 to 4096 bytes, not " + std::to_string(options.max_udp));
  return {};
}

struct dns_server::impl {
  explicit impl(std::uint64_t seed) : rng(seed), options(std::make_shared<const dns_options>()) {}

  // --- the I/O thread's own ----------------------------------------------------------------
  asio::io_context io;
  /// Open from start() to stop(); used by the I/O thread only while it runs.
  asio::ip::udp::socket socket{io};
  asio::ip::udp::endpoint sender;
  /// One byte more than max_datagram: a datagram that fills it was longer than allowed.
  std::array<std::uint8_t, max_datagram + 1> buffer{};
  /// Draws one seed per query for dns_answer's shuffle.
  std::mt19937_64 rng;
  std::thread thread;

  // --- lifecycle: start() and stop(), serialized by `life` -----------------------------
  /// Held by start() and stop() only, never by the I/O thread (stop joins it holding this).
  std::mutex life;
  bool started = false;
  bool stopped = false;

  // --- shared with any thread, under `mutex` -------------------------------------------
  mutable std::mutex mutex;
  snapshot_ptr snapshot;
  std::shared_ptr<const dns_options> options; ///< never null
  std::string endpoint;                       ///< "HOST:PORT" once bound
  std::uint16_t port = 0;

  // --- counters: written by the I/O thread, read by anyone ---------------------------
  std::atomic<std::uint64_t> queries{0};
  std::atomic<std::uint64_t> answered{0};
  std::atomic<std::uint64_t> nxdomain{0};
  std::atomic<std::uint64_t> nodata{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::uint64_t> truncated{0};
  std::atomic<std::uint64_t> send_errors{0};

  static void bump(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

  void receive() {
    socket.async_receive_from(asio::buffer(buffer), sender,
                              [this](std::error_code ec, std::size_t n) {
                                if (ec == asio::error::operation_aborted || !socket.is_open())
                                  return;
                                if (ec)
                                  spdlog::debug("dns: receive: {}", ec.message());
                                else
                                  on_datagram(n);
                                receive();
                              });
  }

  void on_datagram(std::size_t n) {
    bump(queries);
    if (n > max_datagram) {
      bump(malformed);
      spdlog::debug("dns: datagram over {} bytes from {}", max_datagram,
                    sender.address().to_string());
      return;
    }
    snapshot_ptr snap;
    std::shared_ptr<const dns_options> opts;
    {
      std::lock_guard guard{mutex};
      snap = snapshot;
      opts = options;
    }
    const auto reply = dns_answer(std::span<const std::uint8_t>{buffer.data(), n},
                                  snap ? *snap : empty_snapshot(), *opts, rng());
    switch (reply.outcome) {
    case dns_outcome::answered:
      bump(answered);
      break;
    case dns_outcome::nodata:
      bump(nodata);
      break;
    case dns_outcome::nxdomain:
      bump(nxdomain);
      break;
    case dns_outcome::refused:
      bump(refused);
      break;
    case dns_outcome::malformed:
      bump(malformed);
      spdlog::debug("dns: malformed query ({} bytes) from {}", n, sender.address().to_string());
      break;
    }
    if (reply.truncated)
      bump(truncated);
    if (reply.bytes.empty())
      return;
    std::error_code ec;
    // Non-blocking socket: a full send buffer drops this reply (the client asks again)
    // instead of stalling every other query.
    socket.send_to(asio::buffer(reply.bytes), sender, 0, ec);
    if (ec) {
      bump(send_errors);
      spdlog::debug("dns: send to {}: {}", sender.address().to_string(), ec.message());
    }
  }
};

dns_server::dns_server(std::uint64_t seed) : impl_(std::make_unique<impl>(seed)) {}

dns_server::~dns_server() { stop(); }

caf::error dns_server::start(const std::string& host, std::uint16_t port) {
  std::lock_guard life{impl_->life};
  if (impl_->started)
    return make_error(errc::invalid_field,
                      "dns server: already started (a stopped server does not start again)");
  std::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    asio::ip::udp::resolver resolver{impl_->io};
    auto results = resolver.resolve(host, "0", ec);
    if (ec || results.empty())
      return make_error(errc::io_failure, "cannot resolve DNS bind host " + host + ": " +
                                              (ec ? ec.message() : std::string{"no address"}));
    addr = results.begin()->endpoint().address();
  }
  const asio::ip::udp::endpoint ep{addr, port};
  auto& socket = impl_->socket;
  socket.open(ep.protocol(), ec);
  if (!ec)
    socket.bind(ep, ec);
  if (!ec)
    socket.non_blocking(true, ec);
  if (ec) {
    std::error_code ignored;
    socket.close(ignored);
    return make_error(errc::io_failure, "cannot bind DNS UDP " +
                                            wire::join_host_port(addr.to_string(), port) + ": " +
                                            ec.message());
  }
  const auto local = socket.local_endpoint(ec);
  if (ec) {
    std::error_code ignored;
    socket.close(ignored);
    return make_error(errc::io_failure, "DNS UDP socket has no local address: " + ec.message());
  }
  {
    std::lock_guard guard{impl_->mutex};
    impl_->port = local.port();
    impl_->endpoint = wire::join_host_port(local.address().to_string(), local.port());
  }
  impl_->started = true;
  impl_->receive();
  impl_->thread = std::thread{[this] { impl_->io.run(); }};
  return {};
}

std::string dns_server::local_endpoint() const {
  std::lock_guard guard{impl_->mutex};
  return impl_->endpoint;
}

std::uint16_t dns_server::port() const {
  std::lock_guard guard{impl_->mutex};
  return impl_->port;
}

void dns_server::set_snapshot(snapshot_ptr snapshot) {
  std::lock_guard guard{impl_->mutex};
  impl_->snapshot = std::move(snapshot);
}

caf::error dns_server::set_options(dns_options options) {
  if (auto err = check_options(options))
    return err;
  auto next = std::make_shared<const dns_options>(std::move(options));
  std::lock_guard guard{impl_->mutex};
  impl_->options = std::move(next);
  return {};
}

dns_stats dns_server::stats() const {
  const auto get = [](const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  dns_stats s;
  s.queries = get(impl_->queries);
  s.answered = get(impl_->answered);
  s.nxdomain = get(impl_->nxdomain);
  s.nodata = get(impl_->nodata);
  s.refused = get(impl_->refused);
  s.malformed = get(impl_->malformed);
  s.truncated = get(impl_->truncated);
  s.send_errors = get(impl_->send_errors);
  return s;
}

void dns_server::stop() {
  std::lock_guard life{impl_->life};
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  impl_->started = true; // a stopped server does not start again
  impl_->io.stop();
  if (impl_->thread.joinable())
    impl_->thread.join();
  std::error_code ignored;
  impl_->socket.close(ignored);
}

} // namespace starling::gossip::discovery
