// Outlier ejection (passive health checking), as Envoy's: an endpoint that fails several
// times in a row is taken out of its service's balancing for a while, longer each time it
// is ejected again. A pure core: results and `now` in, an ejection mask out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/endpoints.hpp"

namespace starling::proxy {

/// How an attempt on an endpoint ended, as far as outlier detection is concerned.
enum class attempt_result : std::uint8_t {
  /// A response that is not a 5xx (the endpoint works, even if it said 4xx).
  success = 1,
  /// A 5xx response.
  http_5xx,
  /// No connection: refused, timed out or reset during the handshake.
  connect_failure,
};

/// Thresholds of outlier detection for one service.
struct outlier_config {
  /// Consecutive 5xx responses that eject an endpoint (Envoy's default 5). 0 disables.
  std::uint32_t consecutive_5xx = 5;
  /// Consecutive connect failures that eject an endpoint (default 5). 0 disables.
  std::uint32_t consecutive_connect_failures = 5;
  /// Ejection time of a first ejection; the n-th ejection lasts n times this (Envoy: 30 s).
  duration base_ejection_time = std::chrono::seconds{30};
  /// Longest ejection, however often an endpoint was ejected (Envoy: 300 s), so that a
  /// repeat offender is still retried every few minutes.
  duration max_ejection_time = std::chrono::seconds{300};
  /// Largest share of the service's endpoints ejected at once, in percent (values above
  /// 100 count as 100). 50 rather than Envoy's 10: a mesh service often has only a few
  /// instances, and 10% of them rounds down to none; 50 keeps at least half serving. 0 disables
  /// ejection. Whatever the percentage, one ejection is allowed when the service has at
  /// least two endpoints and none is ejected, and a single-endpoint service is never
  /// ejected (there would be nothing to send its traffic to).
  std::uint32_t max_ejection_percent = 50;
};

/// Outlier detection for one service on one I/O thread (no locks). Indices are positions in
/// the snapshot last given to update(); per-endpoint state carries over by endpoint id.
class outlier_detector {
public:
  explicit outlier_detector(outlier_config cfg = {});

  /// Changes the thresholds (a service's policy changed). Ejections in progress keep their
  /// end; counts of failures in a row are kept and judged by the new thresholds.
  void reconfigure(const outlier_config& cfg) noexcept { cfg_ = cfg; }

  /// Installs a new snapshot. Ejections, ejection counts and consecutive-failure counts
  /// carry over by endpoint id; removed endpoints are forgotten. Allocates.
  void update(std::span<const endpoint> endpoints);

  /// Records the result of an attempt on endpoint `idx` at `now` (also returning expired
  /// ejections first). Returns true if this result ejected the endpoint. Results for an
  /// ejected endpoint (requests still in flight when it was ejected) are ignored; an
  /// out-of-range index is ignored.
  bool on_result(std::size_t idx, attempt_result result, time_point now) noexcept;

  /// Returns endpoints whose ejection time is up at `now` to service. Cheap when nothing
  /// expires: call before each pick (ejection_mask does).
  void refresh(time_point now) noexcept;

  /// The ejection flags as of `now` (refreshed), aligned with the snapshot, for
  /// pick_filter::excluded. Valid until the next non-const call.
  [[nodiscard]] exclusion_mask ejection_mask(time_point now) noexcept;

  /// Whether endpoint `idx` is ejected (as of the last refresh).
  [[nodiscard]] bool is_ejected(std::size_t idx) const noexcept;

  /// When endpoint `idx`'s current ejection ends; time_point::min() if not ejected.
  [[nodiscard]] time_point ejected_until(std::size_t idx) const noexcept;

  /// How many times endpoint `idx` has been ejected (drives the ejection time).
  [[nodiscard]] std::uint32_t times_ejected(std::size_t idx) const noexcept;

  /// Endpoints ejected now (as of the last refresh).
  [[nodiscard]] std::size_t ejected_count() const noexcept { return ejected_count_; }

  /// Ejections since construction; saturating. Metric starling_proxy_outlier_ejections_total.
  [[nodiscard]] std::uint64_t ejections() const noexcept { return ejections_; }

  /// Ejections that were due but refused by max_ejection_percent; saturating.
  [[nodiscard]] std::uint64_t ejections_refused() const noexcept { return refused_; }

  /// How many endpoints may be ejected at once with `n` endpoints in the service.
  [[nodiscard]] std::size_t max_ejected(std::size_t n) const noexcept;

  [[nodiscard]] const outlier_config& config() const noexcept { return cfg_; }

private:
  struct slot {
    /// The endpoint's id; key of the carry-over.
    std::string id;
    /// 5xx responses in a row since the last success; reset by success and ejection.
    std::uint32_t consecutive_5xx = 0;
    /// Connect failures in a row; reset by any response and by ejection.
    std::uint32_t consecutive_connect = 0;
    /// Ejections so far; saturating. Reset after a success once the endpoint has served
    /// for max_ejection_time since its return.
    std::uint32_t times_ejected = 0;
    /// End of the current ejection (min() when not ejected).
    time_point until = time_point::min();
    /// When the endpoint last came back from an ejection.
    time_point returned = time_point::min();
  };

  [[nodiscard]] duration ejection_time(std::uint32_t times) const noexcept;
  bool try_eject(std::size_t idx, time_point now) noexcept;

  /// The thresholds; set at construction and by reconfigure().
  outlier_config cfg_;
  /// State per endpoint, in snapshot order.
  std::vector<slot> slots_;
  /// 1 where the endpoint is ejected; same order and size as slots_.
  std::vector<std::uint8_t> ejected_;
  /// Number of nonzero entries of ejected_.
  std::size_t ejected_count_ = 0;
  /// Earliest `until` among ejected endpoints (max() when none): refresh() is O(1) before.
  time_point next_expiry_ = time_point::max();
  /// Ejections so far; saturating.
  std::uint64_t ejections_ = 0;
  /// Ejections refused by the percentage cap; saturating.
  std::uint64_t refused_ = 0;
};

} // namespace starling::proxy
