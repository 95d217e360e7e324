// The health prober: runs the TCP connect, HTTP GET and gRPC Health/Check checks of
// gossip/health.hpp against service instances, on one Asio io_context on its own thread. It
// decides nothing: each probe reports pass or fail with a text, and the owner (the routing
// actor) feeds that to its health_scheduler. No CAF actors here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "gossip/health.hpp"

namespace starling::gossip::discovery {

/// The outcome of one probe.
struct probe_result {
  /// The check passed.
  bool ok = false;
  /// What was found, at most health_max_result_bytes: "connected", "HTTP 200",
  /// "HTTP 503 (expected 2xx)", "SERVING", "NOT_SERVING", "gRPC status 12 UNIMPLEMENTED",
  /// "connection refused", "timed out after 2s",
  /// "malformed response", "too many checks in flight", "prober stopped", ...
  std::string text;
  /// From the call of probe() to the result (0 when refused at once).
  std::chrono::nanoseconds took{0};
  /// The prober, not the instance, failed this probe ("too many checks in flight", "prober
  /// stopped"): says nothing about the instance's health, so the owner may report it with
  /// health_scheduler::on_skipped() instead of counting it against `fall`. Implies !ok.
  bool inconclusive = false;
};

/// Receives a probe's result. Called exactly once per probe(); see health_prober::probe for
/// the thread. Must not block, and must not call health_prober::stop() or destroy the prober.
using probe_callback = std::function<void(probe_result)>;

/// Counters of a health_prober, readable from any thread. Every started probe ends as ok or
/// failed; timed_out counts the failures by timeout (a subset of failed).
struct health_prober_counters {
  /// Probes accepted (in flight at some point).
  std::atomic<std::uint64_t> probes_started{0};
  /// Started probes that passed.
  std::atomic<std::uint64_t> probes_ok{0};
  /// Started probes that failed, for any reason (stop included).
  std::atomic<std::uint64_t> probes_failed{0};
  /// Failed probes that hit their timeout.
  std::atomic<std::uint64_t> probes_timed_out{0};
  /// Probes refused at once because max_in_flight probes were running (not started).
  std::atomic<std::uint64_t> probes_refused_busy{0};
};

/// Runs health probes on one Asio io_context on its own thread. Public methods are
/// thread-safe (an actor thread calls probe()); results come back through callbacks on the
/// prober's thread.
class health_prober {
public:
  /// Most probes in flight by default.
  static constexpr std::size_t default_max_in_flight = 64;

  /// A stopped prober that will run at most `max_in_flight` probes at once (0 counts as 1).
  explicit health_prober(std::size_t max_in_flight = default_max_in_flight);

  /// Stops (as stop()) and joins the thread.
  ~health_prober();

  health_prober(const health_prober&) = delete;
  health_prober& operator=(const health_prober&) = delete;

  /// Starts the I/O thread. True when running after the call (also when it already was);
  /// false only when the thread could not be created (logged). A stopped prober may be
  /// started again.
  bool start();

  /// Stops: every probe in flight fails at once with "prober stopped" (its callback runs on
  /// the prober's thread before stop() returns), then the thread is joined. Idempotent; safe
  /// with probes in flight and concurrently with probe(). Not from a callback (it would join
  /// its own thread): there it is ignored and logged.
  void stop();

  /// Probes `host` (an IPv4 or IPv6 literal, an IPv6 one with or without brackets; no name
  /// is resolved) at `port` with `spec`, and calls `done` exactly once with the result:
  /// - on the prober's thread, while it runs: the probe's result, "too many checks in
  ///   flight" (at once, when max_in_flight probes are running), or "prober stopped" when
  ///   stop() ends it first;
  /// - on the calling thread, before probe() returns, with "prober stopped" when the prober
  ///   is not running (never started, or stopped).
  /// A host that is not an IP literal, or an invalid spec (check_health_spec), fails with a
  /// text saying so. Thread-safe.
  void probe(std::string host, std::uint16_t port, const health_check_spec& spec,
             probe_callback done);

  /// Probes in flight now (any thread).
  [[nodiscard]] std::size_t in_flight() const;

  /// Counters (any thread).
  [[nodiscard]] const health_prober_counters& counters() const noexcept { return counters_; }

  /// Most probes in flight at once.
  [[nodiscard]] std::size_t max_in_flight() const noexcept { return max_in_flight_; }

  /// Most response bytes an HTTP check reads looking for the status line.
  static constexpr std::size_t max_response_bytes = 8 * 1024;

private:
  struct state;
  /// At least 1.
  std::size_t max_in_flight_;
  /// Written by the I/O thread and probe(), read by anyone.
  health_prober_counters counters_;
  /// The io_context, its thread and the probes in flight (pimpl: no Asio in this header).
  std::unique_ptr<state> state_;
};

} // namespace starling::gossip::discovery
