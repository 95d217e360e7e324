#include "gossip/broadcast_queue.hpp"

#include <algorithm>

namespace starling::gossip {

namespace {

/// Once a packet holds something, take() gives up after this many queued updates in a row
/// did not fit: the packet is as good as full, and scanning a queue of thousands (a joiner
/// queues every member it learned) for every datagram was half the CPU of a 1,000-node
/// simulation. Misses before the first fit do not count, so updates too large for any
/// packet cannot starve the ones behind them.
constexpr unsigned max_consecutive_misses = 16;

} // namespace

void broadcast_queue::push(const member_update& u) {
  push(cards_->intern(u.name, u.address, u.tags), u.state, u.incarnation,
       cards_->intern(u.from, {}, {}));
}

void broadcast_queue::push(member_card card, member_state state, std::uint64_t incarnation,
                           member_card from) {
  auto name_of = [this](std::uint32_t s) { return entries_[s].card.name(); };
  std::uint32_t slot = index_.find(card.name(), name_of);
  // A fresh entry for this news, under a new id (the newest is sent first).
  auto fill = [&](entry& e) {
    e.card = std::move(card);
    e.from = std::move(from);
    e.incarnation = incarnation;
    e.id = next_id_++;
    e.transmits = 0;
    e.state = state;
  };
  if (slot != name_index::npos && index_.size() > 1) {
    // Replace in place: what erase() then a fresh slot would do (the freed slot is the one
    // reused), without touching the index. A sole entry takes the erase path, which gives
    // the drained queue's storage back first.
    auto& e = entries_[slot];
    fill(e);
    ++stale_; // the old heap item
    compact();
    heap_push(heap_item{e.id, 0, slot});
    return;
  }
  if (slot != name_index::npos) {
    index_.erase_slot(card.name(), slot);
    free_slot(slot);
    ++stale_;
    compact();
  }
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  auto& e = entries_[slot];
  fill(e);
  index_.insert(slot, name_of);
  heap_push(heap_item{e.id, 0, slot});
}

bool broadcast_queue::has_below(unsigned limit) {
  while (!heap_.empty() && !is_current(heap_.front())) {
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.pop_back();
    --stale_;
  }
  return !heap_.empty() && entries_[heap_.front().slot].transmits < limit;
}

std::size_t broadcast_queue::count_below(unsigned limit) const {
  std::size_t n = 0;
  for (const auto& e : entries_)
    n += e.id != 0 && e.transmits < limit ? 1 : 0;
  return n;
}

std::vector<member_update> broadcast_queue::take(std::size_t budget, unsigned limit, unsigned keep,
                                                 bool riders_alone, const cost_fn& cost,
                                                 std::string_view skip_name) {
  std::vector<member_update> out;
  // Popped but not taken: pushed back unchanged. Taken: pushed back one send older.
  auto& passed = passed_;
  auto& taken = taken_;
  passed.clear();
  taken.clear();
  std::size_t used = 0;
  unsigned misses = 0;
  while (!heap_.empty() && misses < max_consecutive_misses) {
    std::pop_heap(heap_.begin(), heap_.end());
    const auto h = heap_.back();
    heap_.pop_back();
    if (!is_current(h)) {
      --stale_;
      continue;
    }
    const auto& e = entries_[h.slot];
    if (e.transmits >= limit && out.empty() && !riders_alone) {
      // Only riders left (the heap yields the fewest transmissions first), and nothing
      // for them to ride with.
      passed.push_back(h);
      break;
    }
    if (!skip_name.empty() && e.card.name() == skip_name) {
      passed.push_back(h);
      continue;
    }
    auto u = materialize(e);
    auto c = cost(u);
    // Skip what does not fit but keep looking: a smaller update may still fit.
    if (used + c > budget) {
      if (!out.empty())
        ++misses;
      passed.push_back(h);
      continue;
    }
    misses = 0;
    used += c;
    out.push_back(std::move(u));
    taken.push_back(h.slot);
  }
  for (const auto& h : passed)
    heap_push(h);
  for (auto slot : taken) {
    auto& e = entries_[slot];
    if (++e.transmits >= keep) {
      index_.erase_slot(e.card.name(), slot);
      free_slot(slot);
      continue;
    }
    heap_push(heap_item{e.id, e.transmits, slot});
  }
  compact();
  return out;
}

void broadcast_queue::erase(std::string_view name) {
  auto name_of = [this](std::uint32_t s) { return entries_[s].card.name(); };
  auto slot = index_.find(name, name_of);
  if (slot == name_index::npos)
    return;
  index_.erase_slot(name, slot);
  free_slot(slot);
  ++stale_; // its heap item
  compact();
}

std::optional<std::pair<member_update, unsigned>>
broadcast_queue::find(std::string_view name) const {
  auto slot = index_.find(name, [this](std::uint32_t s) { return entries_[s].card.name(); });
  if (slot == name_index::npos)
    return std::nullopt;
  const auto& e = entries_[slot];
  return std::pair{materialize(e), e.transmits};
}

member_update broadcast_queue::materialize(const entry& e) const {
  return member_update{
      e.state,       std::string(e.card.name()), std::string(e.card.address()), e.incarnation,
      e.card.tags(), std::string(e.from.name())};
}

void broadcast_queue::heap_push(heap_item h) {
  heap_.push_back(h);
  std::push_heap(heap_.begin(), heap_.end());
}

void broadcast_queue::free_slot(std::uint32_t slot) {
  auto& e = entries_[slot];
  e.card = {};
  e.from = {};
  e.id = 0;
  free_.push_back(slot);
}

void broadcast_queue::compact() {
  if (index_.size() == 0) {
    // Drained (the usual steady state): give the bootstrap-sized storage back.
    std::deque<entry>{}.swap(entries_);
    std::vector<std::uint32_t>{}.swap(free_);
    std::vector<heap_item>{}.swap(heap_);
    index_ = name_index{};
    stale_ = 0;
    return;
  }
  if (stale_ <= heap_.size() / 2 + 64)
    return;
  std::erase_if(heap_, [this](const heap_item& h) { return !is_current(h); });
  std::make_heap(heap_.begin(), heap_.end());
  stale_ = 0;
}

} // namespace starling::gossip
