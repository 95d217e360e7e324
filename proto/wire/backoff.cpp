#include "proto/wire/backoff.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace starling::wire {

std::chrono::milliseconds backoff::ceiling(unsigned n) const {
  const std::int64_t cap = std::max<std::int64_t>(0, policy_.cap.count());
  std::int64_t d = std::clamp<std::int64_t>(policy_.base.count(), 0, cap);
  // Doubles until the cap: at most log2(cap / base) + 1 rounds, whatever n is.
  for (unsigned i = 0; i < n && d < cap && d > 0; ++i)
    d = d > cap / 2 ? cap : d * 2;
  return std::chrono::milliseconds{d};
}

std::chrono::milliseconds backoff::next(double unit) {
  const double jitter = std::clamp(policy_.jitter, 0.0, 1.0);
  const double u = std::clamp(unit, 0.0, 1.0);
  const std::int64_t top = ceiling(attempts_).count();
  if (attempts_ < std::numeric_limits<unsigned>::max())
    ++attempts_;
  // The factor is at most 1, so scaled <= top; near 2^63 the double rounds up to top's
  // own rounding, and converting that back would overflow: take top itself then.
  const double scaled = static_cast<double>(top) * (1.0 - jitter + jitter * u);
  const std::int64_t ms =
      scaled >= static_cast<double>(top) ? top : static_cast<std::int64_t>(scaled);
  return std::chrono::milliseconds{std::max<std::int64_t>(1, ms)};
}

} // namespace starling::wire
