// The dissemination queue of the membership core: membership updates waiting to be
// piggybacked on outgoing packets. Internal to gossip/ (the core and its tests use it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gossip/types.hpp"

namespace starling::gossip {

/// Updates to piggyback, at most one per member name (a newer one replaces the older).
/// Picks least-transmitted first, then newest; drops an entry once it was sent `limit`
/// times. Pure and single-owner, like the core that holds it.
class broadcast_queue {
public:
  /// Cost of one update in bytes, as charged against a packet's budget.
  using cost_fn = std::function<std::size_t(const member_update&)>;

  /// Queues `u`, replacing any queued update about the same member (its count restarts).
  void push(member_update u);

  /// Takes updates in priority order whose summed cost fits in `budget` bytes, skipping
  /// the ones that do not fit and any about `skip_name`. Each taken update counts one
  /// transmission and is dropped when it reaches `limit` transmissions.
  [[nodiscard]] std::vector<member_update> take(std::size_t budget, unsigned limit,
                                                const cost_fn& cost,
                                                std::string_view skip_name = {});

  /// Removes the update queued about `name`, if any.
  void erase(const std::string& name);

  /// The update queued about `name` and its transmission count, if any.
  [[nodiscard]] std::optional<std::pair<member_update, unsigned>>
  find(const std::string& name) const;

  /// Number of queued updates.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// True when nothing is queued.
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }

private:
  struct entry {
    member_update update;
    unsigned transmits = 0;
    /// Insertion stamp: higher is newer. Unique, so it also orders the index.
    std::uint64_t id = 0;
  };
  /// Priority index: (transmits, ~id) ascending = fewest sends first, then newest.
  using order_key = std::pair<unsigned, std::uint64_t>;

  static order_key key_of(const entry& e) noexcept { return {e.transmits, ~e.id}; }

  /// name -> entry. Invariant: order_ holds exactly one key per entry, mapping back here.
  std::map<std::string, entry, std::less<>> entries_;
  std::map<order_key, std::string> order_;
  /// Next insertion stamp; grows monotonically.
  std::uint64_t next_id_ = 1;
};

} // namespace starling::gossip
