// The DNS responder's socket: one UDP socket on its own Asio thread, answering each query
// with dns_answer from the routing table's latest snapshot. No CAF actors here: the routing
// actor hands it snapshots (set_snapshot) and reads its counters (stats). UDP only: a reply
// that does not fit is truncated with TC set (dns_answer.hpp), and TCP is not served.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "gossip/discovery/dns_answer.hpp"
#include "gossip/routing_snapshot.hpp"

namespace starling::gossip::discovery {

/// Checks `options` as dns_server::set_options does. Errors are gossip errc::invalid_field
/// naming the key: `domain` (1 to 253 characters of labels of 1 to 63 letters, digits, '-'
/// or '_'; one trailing dot allowed), `proxy_address` (an IPv4 or IPv6 literal), `max_udp`
/// (512 to 4096).
[[nodiscard]] caf::error check_options(const dns_options& options);

/// The DNS responder. Owns one Asio io_context and the thread that runs it; every public
/// method is thread-safe. Answers from the last snapshot given (none yet: an empty table, so
/// every service is NXDOMAIN).
class dns_server {
public:
  /// Largest datagram read, bytes. A longer one is cut by the kernel and counted as
  /// malformed, without a reply.
  static constexpr std::size_t max_datagram = 4096;

  /// A stopped server. `seed` seeds the generator that shuffles the answers (one draw per
  /// query), so a test can replay an order.
  explicit dns_server(std::uint64_t seed);

  /// Stops (as stop()) and joins the thread.
  ~dns_server();

  dns_server(const dns_server&) = delete;
  dns_server& operator=(const dns_server&) = delete;

  /// Binds UDP on `host` (an IP literal, or a name resolved once now; "127.0.0.1" for the
  /// agent's loopback default) and `port` (0 picks a free one) and starts answering. Fails
  /// with gossip errc::io_failure naming the address when it cannot resolve or bind (the
  /// port taken, an address not ours), and with errc::invalid_field when called twice (a
  /// stopped server does not start again: make a new one).
  [[nodiscard]] caf::error start(const std::string& host, std::uint16_t port);

  /// The bound address as "HOST:PORT" ("[::1]:PORT" for IPv6), the real port when started
  /// with 0; empty before start().
  [[nodiscard]] std::string local_endpoint() const;

  /// The bound port; 0 before start().
  [[nodiscard]] std::uint16_t port() const;

  /// Answers from `snapshot` from the next query on (null: an empty table). Any thread.
  void set_snapshot(snapshot_ptr snapshot);

  /// Answers with `options` from the next query on. Refuses options that fail
  /// check_options (the previous ones stay). Any thread.
  [[nodiscard]] caf::error set_options(dns_options options);

  /// A copy of the counters. Any thread.
  [[nodiscard]] dns_stats stats() const;

  /// Stops answering, closes the socket and joins the thread. Idempotent; any thread but the
  /// server's own (no callback runs on it anyway).
  void stop();

private:
  struct impl;
  /// Never null; the socket, its thread and the shared state (see dns_server.cpp).
  std::unique_ptr<impl> impl_;
};

} // namespace starling::gossip::discovery
