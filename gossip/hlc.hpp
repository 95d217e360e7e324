// A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): timestamps that
// follow wall time when the clocks agree and stay causal when they do not. The routing table
// orders policy writes by them (last writer wins, node id breaks ties). A node whose clock is
// behind still writes after everything it has seen; a stamp too far ahead of this node's
// wall clock is refused, so one node with a clock minutes fast cannot pin a policy forever.
// Pure: wall time is passed in (unix milliseconds), nothing is read.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <string>

#include <caf/error.hpp>

namespace starling::gossip {

/// One HLC timestamp: the largest wall time (unix ms) known when it was made, and a counter
/// ordering events within that millisecond. Ordered lexicographically.
struct hlc_stamp {
  std::uint64_t wall_ms = 0;
  std::uint32_t logical = 0;

  friend constexpr auto operator<=>(const hlc_stamp&, const hlc_stamp&) = default;
};

/// "1733212800123.4" (wall ms, dot, logical): how logs and errors print a stamp.
[[nodiscard]] std::string to_string(hlc_stamp s);

/// Default bound on how far ahead of the local wall clock a received stamp may be: wide
/// enough that a node whose clock is minutes off (NTP broken on an edge box) still takes
/// and gives writes, narrow enough that a stamp from a clock years ahead cannot pin every
/// node's clock (the HLC would then follow it). The HLC keeps the order either way.
inline constexpr std::chrono::milliseconds default_max_clock_skew = std::chrono::minutes{10};

/// The clock of one node. Not thread-safe: owned by one actor (or one simulated node).
class hybrid_clock {
public:
  /// `max_skew`: received stamps more than this ahead of the wall clock are refused.
  explicit hybrid_clock(std::chrono::milliseconds max_skew = default_max_clock_skew) noexcept
      : max_skew_(max_skew) {}

  /// A stamp for a local event (a write) at wall time `wall_ms`: greater than every stamp
  /// this clock made or observed before.
  [[nodiscard]] hlc_stamp tick(std::uint64_t wall_ms) noexcept;

  /// Takes in a stamp received at wall time `wall_ms`, so that later ticks come after it.
  /// Refused (routing_errc::clock_skew, nothing changes) when it is more than max_skew
  /// ahead of `wall_ms`.
  [[nodiscard]] caf::error observe(hlc_stamp remote, std::uint64_t wall_ms);

  /// The error observe gives for `remote`, without taking it in (none when acceptable).
  [[nodiscard]] caf::error check(hlc_stamp remote, std::uint64_t wall_ms) const;

  /// The last stamp made or observed.
  [[nodiscard]] hlc_stamp last() const noexcept { return last_; }

  [[nodiscard]] std::chrono::milliseconds max_skew() const noexcept { return max_skew_; }

private:
  /// Largest stamp made or observed; ticks are strictly greater.
  hlc_stamp last_{};
  std::chrono::milliseconds max_skew_;
};

} // namespace starling::gossip
