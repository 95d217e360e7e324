#include "proxy/circuit_breaker.hpp"

#include <algorithm>
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

bool within_equal_part(std::uint64_t total, std::uint64_t line, std::uint64_t held,
                       std::uint64_t holders, std::uint64_t floor) noexcept {
  if (total < line)
    return true;
  return held < std::max(floor, line / std::max<std::uint64_t>(holders, 1));
}

bool caller_shares::try_take(const std::string& caller, std::uint64_t cap, std::uint64_t total) {
  const auto it = held_.find(caller);
  const std::uint64_t held = it == held_.end() ? 0 : it->second;
  const std::uint64_t half = cap / 2 + cap % 2;
  if (held >= half)
    return false;
  const std::uint64_t holders = held_.size() + (it == held_.end() ? 1 : 0);
  if (!within_equal_part(total, cap - cap / 4, held, holders, 1))
    return false;
  if (it == held_.end())
    held_.emplace(caller, 1);
  else
    ++it->second; // below half of a 64-bit cap: cannot wrap
  return true;
}

void caller_shares::give_back(const std::string& caller) noexcept {
  const auto it = held_.find(caller);
  if (it != held_.end() && --it->second == 0)
    held_.erase(it);
}

std::uint64_t caller_shares::held(const std::string& caller) const {
  const auto it = held_.find(caller);
  return it == held_.end() ? 0 : it->second;
}

} // namespace starling::proxy
