// The data plane's view of one service's instances: what a balancer picks from. The proxy's
// own type: the proxy knows routing snapshots, not gossip (DESIGN.md, "Dependency direction");
// an adapter translates routing-table instances into these.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

namespace starling::proxy {

/// The data plane's clock type. Pure cores never read it: `now` is always passed in.
using clock = std::chrono::steady_clock;
/// A point on the data plane's clock.
using time_point = clock::time_point;
/// A span of the data plane's clock.
using duration = clock::duration;

/// One instance of a service as the data plane sees it. Plain data, copied into immutable
/// snapshots that the proxy controller actor hands to the I/O threads.
struct endpoint {
  /// Stable identity across snapshots (for example "node/address:port"): per-endpoint state
  /// of balancers and outlier detection carries over from one snapshot to the next by id.
  std::string id;
  /// Host address to connect to (IP literal or name), without port.
  std::string address;
  /// TCP port.
  std::uint16_t port = 0;
  /// Name of the node that runs the instance.
  std::string node;
  /// Version label of the instance, matched by traffic splits ("" = unversioned).
  std::string version;
  /// Relative share of traffic from the routing table. 0 means drained: never picked.
  std::uint32_t weight = 1;
  /// Health as reported by the control plane (health checks, membership). An unhealthy
  /// endpoint is never picked.
  bool healthy = true;
};

/// Per-endpoint flags aligned with a snapshot's endpoints (index i flags endpoint i), nonzero
/// meaning "skip this endpoint" (ejected by outlier detection, or excluded by the caller). A
/// shorter span flags nothing beyond its end; an empty span excludes nothing.
using exclusion_mask = std::span<const std::uint8_t>;

/// Returns `t + d`, saturating at the clock's bounds instead of overflowing.
[[nodiscard]] constexpr time_point saturating_add(time_point t, duration d) noexcept {
  using rep = duration::rep;
  const rep a = t.time_since_epoch().count();
  const rep b = d.count();
  rep sum = 0;
  if (__builtin_add_overflow(a, b, &sum))
    return b > 0 ? time_point::max() : time_point::min();
  return time_point{duration{sum}};
}

} // namespace starling::proxy
