// The metrics/status HTTP server (DESIGN.md, "Ports": 7949, loopback by default): GET
// /metrics in the Prometheus text format, /healthz (the process answers) and /readyz (the
// agent is ready: joined, serving). HTTP/1.1 framing by the proxy's parser
// (proxy/http1.hpp), keep-alive, one request at a time per connection, bounded connections
// and heads, a deadline on every head. Its own Asio thread; no CAF: the supervisor hands it
// callbacks that ask the actors.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace starling::actors {

/// Answers one /metrics request: call `reply` once, from any thread, with the exposition
/// text (an empty string: 503, the metrics could not be gathered).
using metrics_provider = std::function<void(std::function<void(std::string)> reply)>;

/// How the status server runs.
struct status_server_options {
  /// Gathers /metrics.
  metrics_provider metrics;
  /// /readyz: true once the agent is ready. Called on the server's thread.
  std::function<bool()> ready;
  /// Most connections open at once; more are closed at accept (counted).
  std::size_t max_connections = 64;
  /// A request head must arrive within this; an idle keep-alive connection closes after it.
  std::chrono::milliseconds head_timeout{10000};
  /// /metrics answers 503 when the provider has not replied within this.
  std::chrono::milliseconds metrics_timeout{5000};
};

/// Counters of the status server.
struct status_server_stats {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> refused_connections{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> malformed{0}; ///< requests refused by the HTTP framing
  std::atomic<std::uint64_t> timeouts{0};  ///< heads that did not arrive in time
  std::atomic<std::uint64_t> not_found{0};
};

/// The running server. Thread-safe.
class status_server {
public:
  /// Binds `host`:`port` (0: a free port) and starts its thread. Returns null and sets
  /// `error` when it cannot.
  [[nodiscard]] static std::shared_ptr<status_server> start(const std::string& host,
                                                            std::uint16_t port,
                                                            status_server_options options,
                                                            std::string& error);
  virtual ~status_server() = default;

  /// "host:port" it listens on.
  [[nodiscard]] virtual std::string local_endpoint() const = 0;
  [[nodiscard]] virtual const status_server_stats& stats() const = 0;
  /// Closes the listener and every connection, joins the thread. Idempotent.
  virtual void stop() = 0;
};

} // namespace starling::actors
