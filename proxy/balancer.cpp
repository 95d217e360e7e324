#include "proxy/balancer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

namespace starling::proxy {

namespace {

double to_ns(duration d) noexcept { return std::chrono::duration<double, std::nano>(d).count(); }

} // namespace

std::string_view to_string(balancer_kind kind) noexcept {
  switch (kind) {
  case balancer_kind::round_robin:
    return "round_robin";
  case balancer_kind::least_request:
    return "least_request";
  case balancer_kind::peak_ewma:
    return "peak_ewma";
  }
  return "unknown";
}

balancer::balancer(balancer_config cfg) : cfg_(cfg) {}

void balancer::update(std::span<const endpoint> endpoints) {
  std::unordered_map<std::string_view, std::size_t> previous;
  previous.reserve(slots_.size());
  for (std::size_t i = 0; i < slots_.size(); ++i)
    previous.emplace(slots_[i].id, i); // keeps the first of duplicate ids
  std::vector<slot> next;
  next.reserve(endpoints.size());
  std::vector<std::string> versions;
  for (const auto& ep : endpoints) {
    slot s;
    if (auto it = previous.find(ep.id); it != previous.end()) {
      s = std::move(slots_[it->second]);
      previous.erase(it); // a duplicate id in the new snapshot starts fresh
    }
    s.id = ep.id;
    s.weight = ep.weight;
    s.healthy = ep.healthy;
    auto v = std::find(versions.begin(), versions.end(), ep.version);
    s.version = static_cast<std::uint32_t>(v - versions.begin());
    if (v == versions.end())
      versions.push_back(ep.version);
    next.push_back(std::move(s));
  }
  slots_ = std::move(next);
  versions_ = std::move(versions);
  eligible_.reserve(slots_.size());
}

bool balancer::is_eligible(std::size_t idx, const pick_filter& filter,
                           std::optional<std::uint32_t> version) const noexcept {
  const slot& s = slots_[idx];
  if (!s.healthy || s.weight == 0)
    return false;
  if (idx < filter.excluded.size() && filter.excluded[idx] != 0)
    return false;
  return !version || s.version == *version;
}

std::optional<std::size_t> balancer::pick(random_source& rng, time_point now,
                                          const pick_filter& filter) {
  std::optional<std::uint32_t> version;
  if (filter.version) {
    auto v = std::find(versions_.begin(), versions_.end(), *filter.version);
    if (v == versions_.end())
      return std::nullopt;
    version = static_cast<std::uint32_t>(v - versions_.begin());
  }
  eligible_.clear();
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (is_eligible(i, filter, version))
      eligible_.push_back(static_cast<std::uint32_t>(i));
  if (eligible_.empty())
    return std::nullopt;
  switch (cfg_.kind) {
  case balancer_kind::round_robin:
    return pick_round_robin();
  case balancer_kind::least_request:
    return pick_least_request(rng);
  case balancer_kind::peak_ewma:
    return pick_peak_ewma(rng, now);
  }
  return std::nullopt;
}

std::size_t balancer::pick_round_robin() noexcept {
  // Smooth weighted round robin: every candidate gains its weight, the richest is chosen
  // and pays the total. Over sum(weights) picks each endpoint is chosen exactly `weight`
  // times, interleaved (5/1/1 gives a a b a c a a). Endpoints outside this pick keep their
  // position, so an ejected endpoint resumes where it was.
  std::int64_t total = 0;
  slot* best = nullptr;
  std::size_t best_idx = 0;
  for (auto i : eligible_) {
    slot& s = slots_[i];
    s.current += s.weight;
    total += s.weight;
    if (best == nullptr || s.current > best->current) {
      best = &s;
      best_idx = i;
    }
  }
  best->current -= total;
  return best_idx;
}

std::size_t balancer::pick_least_request(random_source& rng) noexcept {
  if (eligible_.size() == 1)
    return eligible_.front();
  // Two distinct candidates, each drawn in proportion to its weight. At rest (no active
  // requests) the first draw wins ties, so shares equal the weights exactly; under load the
  // one with fewer active requests per unit of weight wins.
  std::uint64_t total = 0;
  for (auto i : eligible_)
    total += slots_[i].weight; // < 2^32 * 2^32: cannot overflow
  auto draw = [&](std::uint64_t sum, std::size_t skip) {
    std::uint64_t r = rng.uniform(sum);
    for (auto i : eligible_) {
      if (i == skip)
        continue;
      if (r < slots_[i].weight)
        return static_cast<std::size_t>(i);
      r -= slots_[i].weight;
    }
    return static_cast<std::size_t>(eligible_.back()); // unreachable: r < sum
  };
  const std::size_t a = draw(total, slots_.size());
  const std::size_t b = draw(total - slots_[a].weight, a);
  // active_a / w_a <= active_b / w_b, cross-multiplied in 128 bits (exact, no overflow).
  const auto lhs = static_cast<unsigned __int128>(slots_[a].active) * slots_[b].weight;
  const auto rhs = static_cast<unsigned __int128>(slots_[b].active) * slots_[a].weight;
  return lhs <= rhs ? a : b;
}

double balancer::estimate_ns(const slot& s, time_point now) const noexcept {
  if (!s.observed)
    return std::max(0.0, to_ns(cfg_.default_rtt));
  if (cfg_.decay <= duration::zero() || now <= s.stamp)
    return s.ewma_ns;
  // Decays toward zero while no new observation arrives, so an endpoint that was slow once
  // and then got no traffic is eventually tried again instead of starving for ever.
  const double elapsed = to_ns(now - s.stamp);
  return s.ewma_ns * std::exp(-elapsed / to_ns(cfg_.decay));
}

std::size_t balancer::pick_peak_ewma(random_source& rng, time_point now) noexcept {
  const std::size_t n = eligible_.size();
  if (n == 1)
    return eligible_.front();
  const std::size_t i = rng.uniform(n);
  std::size_t j = rng.uniform(n - 1);
  if (j >= i)
    ++j;
  auto cost = [&](std::size_t idx) {
    const slot& s = slots_[idx];
    // active + 1 in double: exact below 2^53, monotonic beyond.
    return estimate_ns(s, now) * (static_cast<double>(s.active) + 1.0) /
           static_cast<double>(s.weight);
  };
  const std::size_t a = eligible_[i];
  const std::size_t b = eligible_[j];
  return cost(a) <= cost(b) ? a : b;
}

void balancer::on_start(std::size_t idx) noexcept {
  if (idx >= slots_.size())
    return;
  auto& active = slots_[idx].active;
  if (active != std::numeric_limits<std::uint64_t>::max())
    ++active;
}

void balancer::on_finish(std::size_t idx, duration latency, time_point now) noexcept {
  if (idx >= slots_.size())
    return;
  slot& s = slots_[idx];
  if (s.active > 0)
    --s.active;
  const double rtt = std::max(0.0, to_ns(latency));
  const bool first = !s.observed;
  if (first || rtt >= s.ewma_ns || cfg_.decay <= duration::zero()) {
    // The first observation replaces the default; a new peak is taken at once.
    s.ewma_ns = rtt;
  } else {
    const double elapsed = now > s.stamp ? to_ns(now - s.stamp) : 0.0;
    const double keep = std::exp(-elapsed / to_ns(cfg_.decay));
    s.ewma_ns = s.ewma_ns * keep + rtt * (1.0 - keep);
  }
  s.observed = true;
  s.stamp = first ? now : std::max(s.stamp, now); // a late report does not rewind time
}

std::optional<std::size_t> balancer::index_of(std::string_view id) const noexcept {
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].id == id)
      return i;
  return std::nullopt;
}

std::uint64_t balancer::active(std::size_t idx) const noexcept {
  return idx < slots_.size() ? slots_[idx].active : 0;
}

duration balancer::latency_estimate(std::size_t idx, time_point now) const noexcept {
  if (idx >= slots_.size())
    return duration::zero();
  const double ns = estimate_ns(slots_[idx], now);
  if (ns >= static_cast<double>(std::numeric_limits<duration::rep>::max()))
    return duration::max();
  return std::chrono::duration_cast<duration>(std::chrono::duration<double, std::nano>(ns));
}

} // namespace starling::proxy
