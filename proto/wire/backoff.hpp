// Exponential backoff with jitter, the one retry schedule of every Starling client: joins
// through seeds, admission, and (issue 17) the proxy's retries. Pure: the caller draws the
// randomness and owns the clock.
#pragma once

#include <chrono>
#include <random>

namespace starling::wire {

/// Delays of a backoff: attempt n (from 0) waits min(base * 2^n, cap) times a factor drawn
/// uniformly in [1 - jitter, 1), and at least 1 ms.
struct backoff_policy {
  /// Delay before the first retry, before jitter.
  std::chrono::milliseconds base{200};
  /// Largest delay, before jitter.
  std::chrono::milliseconds cap{5000};
  /// Fraction of the delay taken off at random (0 = none, 0.5 = delays in [d/2, d)).
  /// Values outside [0, 1] are clamped.
  double jitter = 0.5;
};

/// A running backoff: each next() is the delay before the following attempt. Not
/// thread-safe: the retrying owner holds it.
class backoff {
public:
  explicit backoff(backoff_policy policy = {}) : policy_(policy) {}

  /// The delay before the next attempt, given `unit`, a uniform draw in [0, 1); counts
  /// the attempt. Never overflows, however many attempts.
  [[nodiscard]] std::chrono::milliseconds next(double unit);

  /// next() with a draw from `rng`.
  template <class URBG> [[nodiscard]] std::chrono::milliseconds next_with(URBG& rng) {
    std::uniform_real_distribution<double> unit{0.0, 1.0};
    return next(unit(rng));
  }

  /// The delay of attempt `n` before jitter: min(base * 2^n, cap).
  [[nodiscard]] std::chrono::milliseconds ceiling(unsigned n) const;

  /// Starts over at `base` (after a success).
  void reset() noexcept { attempts_ = 0; }

  /// Delays handed out since construction or reset().
  [[nodiscard]] unsigned attempts() const noexcept { return attempts_; }

  [[nodiscard]] const backoff_policy& policy() const noexcept { return policy_; }

private:
  /// The schedule; fixed at construction.
  backoff_policy policy_;
  /// Number of next() calls since the last reset; saturates, never wraps.
  unsigned attempts_ = 0;
};

} // namespace starling::wire
