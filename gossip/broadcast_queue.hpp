// The dissemination queue of the membership core: membership updates waiting to be
// piggybacked on outgoing packets. Internal to gossip/ (the core and its tests use it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gossip/member_card.hpp"
#include "gossip/name_index.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

/// Updates to piggyback, at most one per member name (a newer one replaces the older).
/// Picks least-transmitted first, then newest; drops an entry once it was sent `limit`
/// times, or `keep` times when the caller lets entries past `limit` ride (see take()). Pure
/// and single-owner, like the core that holds it.
///
/// Compact: a joiner queues an update per member it learned, so with 10,000 members every
/// core of a simulated mesh holds ~10,000 entries for minutes. An entry is 40 bytes (interned
/// name/address/tags and `from`, see member_card), plus 16 in the priority heap and 8 in the
/// name index; the updates are rebuilt as member_update values only when taken.
class broadcast_queue {
public:
  /// Cost of one update in bytes, as charged against a packet's budget.
  using cost_fn = std::function<std::size_t(const member_update&)>;

  /// An empty queue that interns the updates given to push(member_update) in `cards`, which
  /// must outlive it (the core that owns both declares the pool first).
  explicit broadcast_queue(card_pool& cards) noexcept : cards_(&cards) {}

  /// Queues `u`, replacing any queued update about the same member (its count restarts).
  void push(const member_update& u);

  /// Queues the update {state, card's name, address and tags, incarnation, from's name}
  /// (`from` interned with an empty address and no tags), like push(member_update). Lets the
  /// core queue what it already holds interned without building strings.
  void push(member_card card, member_state state, std::uint64_t incarnation, member_card from);

  /// Takes updates in priority order whose summed cost fits in `budget` bytes, skipping
  /// the ones that do not fit and any about `skip_name`. Each taken update counts one
  /// transmission and is dropped when it reaches `limit` transmissions.
  [[nodiscard]] std::vector<member_update>
  take(std::size_t budget, unsigned limit, const cost_fn& cost, std::string_view skip_name = {}) {
    return take(budget, limit, limit, false, cost, skip_name);
  }

  /// Like take(), but an update is dropped only when it reaches `keep` transmissions (keep >=
  /// limit). One sent `limit` times or more is a rider: it comes after every other update,
  /// and is taken only when the packet holds another update already or `riders_alone` is
  /// set (the packet goes out anyway), so riders never cause a packet by themselves.
  [[nodiscard]] std::vector<member_update> take(std::size_t budget, unsigned limit, unsigned keep,
                                                bool riders_alone, const cost_fn& cost,
                                                std::string_view skip_name);

  /// True when an update sent fewer than `limit` times (not a rider) is queued.
  [[nodiscard]] bool has_below(unsigned limit);

  /// Number of queued updates sent fewer than `limit` times (riders not counted). O(size).
  [[nodiscard]] std::size_t count_below(unsigned limit) const;

  /// Removes the update queued about `name`, if any.
  void erase(std::string_view name);

  /// The update queued about `name` and its transmission count, if any.
  [[nodiscard]] std::optional<std::pair<member_update, unsigned>> find(std::string_view name) const;

  /// Number of queued updates.
  [[nodiscard]] std::size_t size() const noexcept { return index_.size(); }

  /// True when nothing is queued.
  [[nodiscard]] bool empty() const noexcept { return index_.size() == 0; }

private:
  struct entry {
    /// Name, address and tags of the update. Null card: a free slot.
    member_card card;
    /// The update's `from`, interned as a name alone.
    member_card from;
    std::uint64_t incarnation = 0;
    /// Insertion stamp: higher is newer, unique. 0 marks a free slot.
    std::uint64_t id = 0;
    unsigned transmits = 0;
    member_state state = member_state::alive;
  };

  /// One heap element: the priority of entry `slot` when it was pushed. Stale (and skipped
  /// when popped) once the entry was replaced, erased or sent again: its id or transmits no
  /// longer match.
  struct heap_item {
    std::uint64_t id;
    unsigned transmits;
    std::uint32_t slot;
    /// Heap order: the top is the fewest sends, then the newest (highest id).
    friend bool operator<(const heap_item& a, const heap_item& b) noexcept {
      return a.transmits != b.transmits ? a.transmits > b.transmits : a.id < b.id;
    }
  };

  /// Where push(member_update) interns its cards. Never null.
  card_pool* cards_;
  /// Entry slots (a deque: no 2x over-allocation, stable while growing). Free slots are
  /// listed in free_ and hold a null card.
  std::deque<entry> entries_;
  std::vector<std::uint32_t> free_;
  /// Name of the queued update -> slot. Invariant: exactly the live entries.
  name_index index_;
  /// Max-heap by heap_item::operator< (priority order). Holds one current item per live
  /// entry plus `stale_` stale ones.
  std::vector<heap_item> heap_;
  std::size_t stale_ = 0;
  /// Next insertion stamp; grows monotonically.
  std::uint64_t next_id_ = 1;
  /// Scratch of take() (kept to spare two allocations per datagram); empty between calls
  /// in meaning, not necessarily in capacity.
  std::vector<heap_item> passed_;
  std::vector<std::uint32_t> taken_;

  [[nodiscard]] member_update materialize(const entry& e) const;
  [[nodiscard]] bool is_current(const heap_item& h) const noexcept {
    const auto& e = entries_[h.slot];
    return e.id == h.id && e.transmits == h.transmits;
  }
  void heap_push(heap_item h);
  /// Frees entry `slot` (already removed from the index); its heap items become stale.
  void free_slot(std::uint32_t slot);
  /// Drops stale heap items once they outnumber the live ones, and all storage once empty.
  void compact();
};

} // namespace starling::gossip
