// Lifeguard suspicion timers ("dogpile"): a suspicion starts with a long timeout that
// shrinks as independent members confirm it. Internal to gossip/.
#pragma once

#include <cstddef>
#include <set>
#include <string>

#include "gossip/types.hpp"

namespace starling::gossip {

/// Minimum suspicion timeout for a mesh of `n` members (alive + suspect, self included):
/// mult * max(1, log10(max(1, n))) * interval, as memberlist computes it.
[[nodiscard]] duration suspicion_min_timeout(unsigned mult, std::size_t n,
                                             duration interval) noexcept;

/// Confirmations a suspicion waits for before reaching its minimum timeout:
/// mult - 2, lowered to n - 2 (floor 0) in a small mesh where fewer members can confirm.
[[nodiscard]] std::size_t suspicion_expected_confirmations(unsigned mult, std::size_t n) noexcept;

/// Lifeguard timeout after `c` of `k` expected confirmations:
/// max(min, max - (max - min) * log(c + 1) / log(k + 1)); `min` when k == 0 or c >= k.
[[nodiscard]] duration suspicion_timeout(std::size_t k, std::size_t c, duration min,
                                         duration max) noexcept;

/// One running suspicion about one member at one incarnation.
class suspicion {
public:
  /// Starts at `start`, raised by `from`; `k` confirmations expected, timeout shrinking
  /// from `max` to `min`. With k == 0 the timeout is `min` from the start.
  suspicion(std::string from, std::size_t k, duration min, duration max, time_point start);

  /// Counts `from` as an independent confirmation. False (and no change) when `from`
  /// raised the suspicion, already confirmed it, or k confirmations are already in.
  bool confirm(const std::string& from);

  /// When the suspected member is to be declared dead.
  [[nodiscard]] time_point deadline() const noexcept {
    return start_ + suspicion_timeout(k_, confirmed_.size(), min_, max_);
  }

  /// Independent confirmations counted so far.
  [[nodiscard]] std::size_t confirmations() const noexcept { return confirmed_.size(); }

  /// Who raised it.
  [[nodiscard]] const std::string& from() const noexcept { return from_; }

  /// When it was raised (the timeout is measured from here).
  [[nodiscard]] time_point start() const noexcept { return start_; }

private:
  std::string from_;
  std::size_t k_;
  duration min_;
  duration max_;
  time_point start_;
  /// Distinct confirmers, never containing from_; size() <= k_.
  std::set<std::string> confirmed_;
};

} // namespace starling::gossip
