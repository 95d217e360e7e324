#include "gossip/hlc.hpp"

#include <algorithm>
#include <limits>

#include "gossip/routing_errc.hpp"

namespace starling::gossip {

std::string to_string(hlc_stamp s) {
  return std::to_string(s.wall_ms) + "." + std::to_string(s.logical);
}

namespace {

/// The stamp right after `s`: the next logical count, or the next millisecond when the
/// count is spent (2^32 events in one millisecond: never in practice, but a peer can send
/// a stamp with logical = max, and the clock must not wrap back below it).
hlc_stamp successor(hlc_stamp s) noexcept {
  if (s.logical == std::numeric_limits<std::uint32_t>::max())
    return {s.wall_ms + 1, 0};
  return {s.wall_ms, s.logical + 1};
}

} // namespace

hlc_stamp hybrid_clock::tick(std::uint64_t wall_ms) noexcept {
  last_ = wall_ms > last_.wall_ms ? hlc_stamp{wall_ms, 0} : successor(last_);
  return last_;
}

caf::error hybrid_clock::check(hlc_stamp remote, std::uint64_t wall_ms) const {
  const auto skew = static_cast<std::uint64_t>(std::max<std::int64_t>(0, max_skew_.count()));
  const auto limit = wall_ms > std::numeric_limits<std::uint64_t>::max() - skew
                         ? std::numeric_limits<std::uint64_t>::max()
                         : wall_ms + skew;
  if (remote.wall_ms > limit)
    return make_error(routing_errc::clock_skew, "stamp " + to_string(remote) + " is " +
                                                    std::to_string(remote.wall_ms - wall_ms) +
                                                    " ms ahead of this node's clock (at most " +
                                                    std::to_string(max_skew_.count()) +
                                                    " ms allowed)");
  return {};
}

caf::error hybrid_clock::observe(hlc_stamp remote, std::uint64_t wall_ms) {
  if (auto err = check(remote, wall_ms))
    return err;
  last_ = std::max(last_, remote);
  return {};
}

} // namespace starling::gossip
