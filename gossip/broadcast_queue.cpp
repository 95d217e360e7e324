#include "gossip/broadcast_queue.hpp"

namespace starling::gossip {

namespace {

/// Once a packet holds something, take() gives up after this many queued updates in a row
/// did not fit: the packet is as good as full, and scanning a queue of thousands (a joiner
/// queues every member it learned) for every datagram was half the CPU of a 1,000-node
/// simulation. Misses before the first fit do not count, so updates too large for any
/// packet cannot starve the ones behind them.
constexpr unsigned max_consecutive_misses = 16;

} // namespace

void broadcast_queue::push(member_update u) {
  erase(u.name);
  entry e{std::move(u), 0, next_id_++};
  order_.emplace(key_of(e), e.update.name);
  auto name = e.update.name;
  entries_.emplace(std::move(name), std::move(e));
}

std::vector<member_update> broadcast_queue::take(std::size_t budget, unsigned limit,
                                                 const cost_fn& cost,
                                                 std::string_view skip_name) {
  std::vector<member_update> out;
  std::vector<std::string> taken;
  std::size_t used = 0;
  unsigned misses = 0;
  for (const auto& [key, name] : order_) {
    if (misses >= max_consecutive_misses)
      break;
    if (!skip_name.empty() && name == skip_name)
      continue;
    const auto& e = entries_.find(name)->second;
    auto c = cost(e.update);
    // Skip what does not fit but keep looking: a smaller update may still fit.
    if (used + c > budget) {
      if (!out.empty())
        ++misses;
      continue;
    }
    misses = 0;
    used += c;
    out.push_back(e.update);
    taken.push_back(name);
  }
  for (const auto& name : taken) {
    auto it = entries_.find(name);
    order_.erase(key_of(it->second));
    if (++it->second.transmits >= limit) {
      entries_.erase(it);
      continue;
    }
    order_.emplace(key_of(it->second), name);
  }
  return out;
}

void broadcast_queue::erase(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end())
    return;
  order_.erase(key_of(it->second));
  entries_.erase(it);
}

std::optional<std::pair<member_update, unsigned>>
broadcast_queue::find(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    return std::nullopt;
  return std::pair{it->second.update, it->second.transmits};
}

} // namespace starling::gossip
