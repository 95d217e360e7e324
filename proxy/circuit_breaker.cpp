#include "proxy/circuit_breaker.hpp"

#include <limits>

namespace starling::proxy {

namespace {

constexpr std::string_view names[breaker_resource_count] = {"connections", "pending_requests",
                                                            "active_requests"};

std::size_t index(breaker_resource r) noexcept {
  return static_cast<std::size_t>(r) % breaker_resource_count;
}

void saturating_increment(std::uint64_t& x) noexcept {
  if (x != std::numeric_limits<std::uint64_t>::max())
    ++x;
}

} // namespace

std::string_view to_string(breaker_resource r) noexcept { return names[index(r)]; }

std::optional<breaker_resource> breaker_resource_from(std::string_view name) noexcept {
  for (std::size_t i = 0; i < breaker_resource_count; ++i)
    if (names[i] == name)
      return static_cast<breaker_resource>(i);
  return std::nullopt;
}

circuit_breaker::circuit_breaker(circuit_breaker_config cfg) noexcept { reconfigure(cfg); }

void circuit_breaker::reconfigure(circuit_breaker_config cfg) noexcept {
  limits_ = {cfg.max_connections, cfg.max_pending_requests, cfg.max_active_requests};
}

bool circuit_breaker::try_acquire(breaker_resource r) noexcept {
  const auto i = index(r);
  if (in_use_[i] >= limits_[i]) {
    saturating_increment(refusals_[i]);
    return false;
  }
  ++in_use_[i]; // below a 64-bit cap: cannot wrap
  return true;
}

bool circuit_breaker::release(breaker_resource r) noexcept {
  const auto i = index(r);
  if (in_use_[i] == 0) {
    saturating_increment(unmatched_);
    return false;
  }
  --in_use_[i];
  return true;
}

std::uint64_t circuit_breaker::in_use(breaker_resource r) const noexcept {
  return in_use_[index(r)];
}

bool circuit_breaker::is_open(breaker_resource r) const noexcept {
  return in_use_[index(r)] >= limits_[index(r)];
}

std::uint64_t circuit_breaker::refusals(breaker_resource r) const noexcept {
  return refusals_[index(r)];
}

std::uint64_t circuit_breaker::limit(breaker_resource r) const noexcept {
  return limits_[index(r)];
}

} // namespace starling::proxy
