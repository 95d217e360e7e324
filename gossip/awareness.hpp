// Lifeguard local health awareness: a small score that rises when this node seems to be
// the slow one (missed nacks, having to refute) and slows its own probing accordingly.
// Internal to gossip/.
#pragma once

#include <algorithm>

#include "gossip/types.hpp"

namespace starling::gossip {

/// Local health score in [0, max]; 0 is healthy.
class awareness {
public:
  /// A score capped at `max`.
  explicit awareness(unsigned max) noexcept : max_(max) {}

  /// Adds `delta` (negative lowers it), clamped to [0, max].
  void apply(int delta) noexcept {
    auto next = static_cast<long>(score_) + delta;
    score_ = static_cast<unsigned>(std::clamp<long>(next, 0, static_cast<long>(max_)));
  }

  /// The score: 0 is healthy.
  [[nodiscard]] unsigned score() const noexcept { return score_; }

  /// `d` scaled by (1 + score): how much longer an unhealthy node waits.
  [[nodiscard]] duration scale(duration d) const noexcept { return d * (1 + score_); }

private:
  unsigned max_;
  /// Invariant: score_ <= max_.
  unsigned score_ = 0;
};

} // namespace starling::gossip
