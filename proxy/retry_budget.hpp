// Retries as a first-class route policy (DESIGN.md, "Retries"): a Linkerd-style retry budget
// that caps retries at a fraction of recent requests, the rule of which requests may be
// retried at all, and the per-request retry state with the project's jittered backoff.
// A pure core: time and randomness are passed in.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proto/wire/backoff.hpp"
#include "proxy/endpoints.hpp"
#include "proxy/random.hpp"

namespace starling::proxy {

/// Limits of a retry budget (Linkerd's defaults and semantics).
struct retry_budget_config {
  /// Retries allowed per request in the window: 0.2 means retries add at most 20% load.
  /// Negative or NaN counts as 0 (only the floor below then allows retries).
  double retry_ratio = 0.2;
  /// A floor of retries per second allowed whatever the request count, so that a service
  /// with little traffic can still retry: min_retries_per_second * ttl per window.
  std::uint32_t min_retries_per_second = 10;
  /// Length of the sliding window over which requests and retries are counted. Counted in
  /// 10 buckets of ttl / 10, so the window covers between 0.9 and 1 ttl of history.
  /// Zero or negative: nothing is remembered and no retry is ever allowed.
  duration ttl = std::chrono::seconds{10};
};

/// Requests and retries in the window, and what they allow.
struct retry_budget_window {
  std::uint64_t requests = 0;
  std::uint64_t retries = 0;
  /// floor(ratio * requests) + min_retries_per_second * ttl; saturating.
  std::uint64_t allowance = 0;
};

/// The retry budget of one route on one I/O thread (no locks). Retries are allowed while
/// retries in the window stay below the allowance. Time going backwards is taken as no time
/// passing. All counters saturate at 2^64 - 1 instead of wrapping.
class retry_budget {
public:
  /// Number of buckets of the sliding window.
  static constexpr std::size_t bucket_count = 10;

  explicit retry_budget(retry_budget_config cfg = {}) noexcept;

  /// Counts `count` original requests (not retries) at `now`: they earn retry allowance.
  void on_request(time_point now, std::uint64_t count = 1) noexcept;

  /// Asks to retry once at `now`: true (and the retry is counted) if the window's retries
  /// are below its allowance, false otherwise.
  [[nodiscard]] bool try_retry(time_point now) noexcept;

  /// The window as of `now`.
  [[nodiscard]] retry_budget_window window(time_point now) noexcept;

  /// Retries allowed since construction; saturating (metric label outcome="allowed").
  [[nodiscard]] std::uint64_t retries_allowed() const noexcept { return allowed_; }

  /// Retries refused for lack of budget since construction; saturating.
  [[nodiscard]] std::uint64_t retries_refused() const noexcept { return refused_; }

  [[nodiscard]] const retry_budget_config& config() const noexcept { return cfg_; }

private:
  struct bucket {
    /// Which bucket-width interval of the clock this bucket counts.
    std::int64_t epoch = 0;
    std::uint64_t requests = 0;
    std::uint64_t retries = 0;
  };

  /// Moves the window to `now`, clearing buckets that fell out of it; returns the current
  /// bucket, or nullptr when the window is disabled (ttl <= 0).
  bucket* advance(time_point now) noexcept;
  [[nodiscard]] retry_budget_window sums() const noexcept;

  /// The limits; fixed at construction.
  retry_budget_config cfg_;
  /// ttl / bucket_count in clock ticks, at least 1; 0 when the window is disabled.
  duration::rep width_ = 0;
  /// min_retries_per_second * ttl, saturating.
  std::uint64_t reserve_ = 0;
  /// Ring of buckets; bucket e lives at e mod bucket_count. Only buckets with epoch in
  /// (head_ - bucket_count, head_] hold counts.
  std::array<bucket, bucket_count> ring_{};
  /// Epoch of the newest bucket; never decreases.
  std::int64_t head_ = 0;
  /// Whether head_ was set by a first call.
  bool started_ = false;
  std::uint64_t allowed_ = 0;
  std::uint64_t refused_ = 0;
};

/// How a failed attempt failed, as far as retrying is concerned.
enum class attempt_failure : std::uint8_t {
  /// No connection, and not one byte of the request sent: safe to retry any method.
  connect_failure = 1,
  /// Connection reset, closed or timed out after (part of) the request was sent, with no
  /// response: the upstream may have acted on it.
  reset,
  /// A 5xx response.
  http_5xx,
};

/// Whether `method` is idempotent by RFC 9110 (GET, HEAD, OPTIONS, PUT, DELETE, TRACE).
/// Methods are case-sensitive: "get" is not GET. Unknown methods are not idempotent.
[[nodiscard]] bool is_idempotent(std::string_view method) noexcept;

/// Whether an attempt that failed this way may be retried: any method after a connect
/// failure (nothing was sent), only idempotent methods after a reset or a 5xx (so POST and
/// PATCH are never retried once sent).
[[nodiscard]] bool retryable(std::string_view method, attempt_failure failure) noexcept;

/// Per-request retry limits of a route.
struct retry_policy {
  /// Retries per request at most (attempts after the first), besides the budget: bounds
  /// the latency one request can accumulate. 2 (Envoy's default is 1; Linkerd relies on the
  /// budget only): most transient failures clear within two more attempts.
  std::uint32_t max_retries = 2;
  /// Delay before each retry: Envoy's 25 ms doubling to a 250 ms cap, with the wire
  /// backoff's jitter (delays in [d/2, d)) so that clients do not retry in lockstep.
  wire::backoff_policy backoff{std::chrono::milliseconds{25}, std::chrono::milliseconds{250}, 0.5};
};

/// The answer to "may this request be retried now?".
enum class retry_verdict : std::uint8_t {
  /// Retry after `delay`.
  retry = 1,
  /// The method and failure do not allow a retry (POST after sending, ...).
  not_retryable,
  /// The request used all of max_retries.
  attempts_exhausted,
  /// The route's retry budget is spent.
  budget_exhausted,
};

/// Stable snake_case name of a verdict (metric label, access log).
[[nodiscard]] std::string_view to_string(retry_verdict v) noexcept;

/// A retry decision: the verdict, and the delay before the retry when it is `retry`.
struct retry_decision {
  retry_verdict verdict = retry_verdict::not_retryable;
  std::chrono::milliseconds delay{0};
};

/// The retry state of one request: how many retries it made and its backoff. Owned by the
/// request on its I/O thread.
class request_retries {
public:
  explicit request_retries(const retry_policy& policy = {}) noexcept;

  /// After a failed attempt at `now`: decides whether to retry. Checks, in order, that the
  /// failure is retryable for `method`, that the request has retries left, and that the
  /// route's `budget` allows one (consuming it only then); on `retry` the delay is drawn
  /// from `rng` by the jittered backoff.
  [[nodiscard]] retry_decision on_failure(std::string_view method, attempt_failure failure,
                                          retry_budget& budget, random_source& rng,
                                          time_point now) noexcept;

  /// Retries granted so far.
  [[nodiscard]] std::uint32_t retries() const noexcept { return retries_; }

private:
  /// Retries allowed per request; fixed.
  std::uint32_t max_retries_;
  /// Retries granted; never above max_retries_.
  std::uint32_t retries_ = 0;
  /// The delays between attempts.
  wire::backoff backoff_;
};

} // namespace starling::proxy
