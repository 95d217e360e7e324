#include "gossip/member_table.hpp"

#include <functional>
#include <utility>

namespace starling::gossip {

member_table::member_table(member_card self, std::uint64_t incarnation, time_point now) {
  auto& me = rows_[new_slot(std::move(self))];
  me.incarnation = incarnation;
  me.since = now;
  note_since(now);
  counts_[static_cast<std::size_t>(member_state::alive)] = 1;
}

member_table::slot_t member_table::new_slot(member_card card) {
  slot_t s;
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
  } else {
    s = static_cast<slot_t>(rows_.size());
    rows_.emplace_back();
  }
  rows_[s].card = std::move(card);
  rows_[s].present = true;
  index_.insert(s, name_of());
  by_name_.push_back(s);
  return s;
}

void member_table::sort_names() const {
  auto less = [this](slot_t a, slot_t b) { return name_at(a) < name_at(b); };
  auto mid = by_name_.begin() + static_cast<std::ptrdiff_t>(sorted_prefix_);
  std::sort(mid, by_name_.end(), less);
  std::inplace_merge(by_name_.begin(), mid, by_name_.end(), less);
  sorted_prefix_ = by_name_.size();
}

member_table::row_extra& member_table::extra_of(row& r) {
  if (!r.extra) {
    if (free_extras_.empty()) {
      free_extras_.push_back(static_cast<std::uint32_t>(extras_.size()));
      extras_.emplace_back();
    }
    r.extra = free_extras_.back();
    free_extras_.pop_back();
    extras_[r.extra] = std::make_unique<row_extra>();
  }
  return *extras_[r.extra];
}

void member_table::release_extra(row& r) {
  if (!r.extra)
    return;
  extras_[r.extra].reset();
  free_extras_.push_back(r.extra);
  r.extra = 0;
}

member_table::slot_t member_table::add(member_card card, std::uint64_t incarnation,
                                       time_point now) {
  auto s = find_slot(card.name());
  if (s == no_slot) {
    s = new_slot(std::move(card));
  } else {
    rows_[s].card = std::move(card);
    rows_[s].present = true;
  }
  auto& r = rows_[s];
  r.state = member_state::alive;
  r.incarnation = incarnation;
  r.since = now;
  note_since(now);
  ++counts_[static_cast<std::size_t>(member_state::alive)];
  return s;
}

void member_table::set_state(row& r, member_state s, time_point now) {
  // A listed row that is no longer gone: the next sweep must read the whole list.
  if (is_gone(r.state) && !is_gone(s))
    departed_stale_ = true;
  note_since(now);
  --counts_[static_cast<std::size_t>(r.state)];
  ++counts_[static_cast<std::size_t>(s)];
  r.state = s;
  r.since = now;
  if (s == member_state::suspect)
    suspects_.emplace(r.card.name());
  else if (auto it = suspects_.find(r.card.name()); it != suspects_.end())
    suspects_.erase(it);
  if (auto* e = extra(r); e && s != member_state::suspect) {
    e->timer.reset();
    e->checked_by_us = false;
    e->verifying = false;
    e->not_before = time_point{};
  }
  // Alive again: declared_by was cleared by the caller; the side record goes.
  if (auto* e = extra(r); e && s == member_state::alive && e->declared_by.empty())
    release_extra(r);
  if (is_gone(s) && &r != &self()) {
    departed_.push_back(slot_of(r));
    departed_at_.push_back(now);
  }
}

time_point member_table::earliest_departure() const {
  auto t = time_point::max();
  for (std::size_t i = 0; i < departed_.size(); ++i) {
    // Every later entry was listed no earlier, and a row's `since` only grows: none of
    // them can be earlier than `t`.
    if (monotone_ && departed_at_[i] >= t)
      break;
    const auto& r = rows_[departed_[i]];
    if (r.present && is_gone(r.state))
      t = std::min(t, r.since);
  }
  return t;
}

bool member_table::is_current(const deadline_item& h) const {
  if (h.slot >= rows_.size())
    return false;
  const auto& r = rows_[h.slot];
  if (!r.present || r.state != member_state::suspect)
    return false;
  const auto* e = extra(r);
  return e != nullptr && e->timer && !e->verifying && e->suspicion_deadline() == h.at;
}

void member_table::note_suspicion(const row& r) {
  const auto* e = extra(r);
  if (!r.present || r.state != member_state::suspect || e == nullptr || !e->timer || e->verifying)
    return;
  // Stale items outnumber the suspects: drop them all (amortized O(1) per note).
  if (deadlines_.size() > 2 * suspects_.size() + 64) {
    std::erase_if(deadlines_, [this](const deadline_item& h) { return !is_current(h); });
    std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
  }
  deadlines_.push_back(deadline_item{e->suspicion_deadline(), slot_of(r)});
  std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
}

time_point member_table::earliest_suspicion() const {
  while (!deadlines_.empty() && !is_current(deadlines_.front())) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
    deadlines_.pop_back();
  }
  return deadlines_.empty() ? time_point::max() : deadlines_.front().at;
}

std::vector<member_table::slot_t> member_table::take_due_suspicions(time_point now) {
  std::vector<slot_t> due;
  while (earliest_suspicion() <= now) {
    due.push_back(deadlines_.front().slot);
    std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>{});
    deadlines_.pop_back();
  }
  return due;
}

void member_table::make_ghost(slot_t s) {
  auto& r = rows_[s];
  --counts_[static_cast<std::size_t>(r.state)];
  r.present = false;
  release_extra(r);
  ghosts_.push_back(s);
}

void member_table::free_ghosts() {
  if (ghosts_.empty())
    return;
  for (auto s : ghosts_) {
    auto& r = rows_[s];
    if (r.present || r.card.is_null())
      continue; // came back meanwhile, or listed twice
    index_.erase(r.card.name(), name_of());
    r = row{};
    free_slots_.push_back(s);
  }
  ghosts_.clear();
  // Rare (once per probe pass, only after reaping): re-sort everything rather than track
  // how much of the sorted prefix survived.
  std::erase_if(by_name_, [this](slot_t s) { return rows_[s].card.is_null(); });
  sorted_prefix_ = 0;
}

member to_member(const member_table::row& r) {
  return member{std::string(r.card.name()),
                std::string(r.card.address()),
                r.state,
                r.incarnation,
                r.card.tags(),
                r.since};
}

} // namespace starling::gossip
