#include "gossip/suspicion.hpp"

#include <algorithm>
#include <cmath>

namespace starling::gossip {

duration suspicion_min_timeout(unsigned mult, std::size_t n, duration interval) noexcept {
  auto scale = std::max(1.0, std::log10(std::max(1.0, static_cast<double>(n))));
  auto ns =
      static_cast<double>(mult) * scale *
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count());
  return std::chrono::duration_cast<duration>(
      std::chrono::nanoseconds{static_cast<std::int64_t>(ns)});
}

std::size_t suspicion_expected_confirmations(unsigned mult, std::size_t n) noexcept {
  auto k = static_cast<std::int64_t>(mult) - 2;
  auto peers = static_cast<std::int64_t>(n) - 2;
  if (peers < k)
    k = peers;
  return static_cast<std::size_t>(std::max<std::int64_t>(0, k));
}

duration suspicion_timeout(std::size_t k, std::size_t c, duration min, duration max) noexcept {
  if (k == 0 || c >= k || max <= min)
    return min;
  auto frac = std::log(static_cast<double>(c) + 1.0) / std::log(static_cast<double>(k) + 1.0);
  auto span = std::chrono::duration<double, std::nano>(max - min).count();
  auto raw =
      std::chrono::duration_cast<duration>(std::chrono::nanoseconds{static_cast<std::int64_t>(
          std::chrono::duration<double, std::nano>(max).count() - frac * span)});
  return std::max(min, raw);
}

suspicion::suspicion(std::string from, std::size_t k, duration min, duration max, time_point start)
    : from_(std::move(from)), k_(k), min_(min), max_(max), start_(start) {}

bool suspicion::confirm(const std::string& from) {
  if (confirmed_.size() >= k_ || from == from_)
    return false;
  return confirmed_.insert(from).second;
}

} // namespace starling::gossip
