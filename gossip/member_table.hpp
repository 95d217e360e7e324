// The member table of the membership core: its storage engine, apart from the SWIM logic.
// Internal to gossip/ (the core and its tests use it). Pure: no I/O, clock reads or threads;
// the times it stores are the `now`s its caller passes.
//
// Compact because a simulated mesh of n nodes holds n * n rows (10^8 at n = 10,000;
// docs/membership.md has the measurements): a row is 32 bytes in a deque of slots; names,
// addresses and tags are interned cards (member_card) from a pool the cores share; a hash
// index maps names to slots; what only suspects and the departed need lives in a side
// record (row_extra). Lists that name members by slot (the core's probe order, the departed
// list here) stay meaningful because a reaped member's slot stays reserved for its name (a
// "ghost") until free_ghosts(): a name that returns meanwhile gets the same slot back.
// Iteration in name order is kept, because it decides the core's event, queue and RNG order.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/member_card.hpp"
#include "gossip/name_index.hpp"
#include "gossip/suspicion.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

/// True for the states of a member that is up as far as we know (alive, suspect).
inline bool is_live(member_state s) noexcept {
  return s == member_state::alive || s == member_state::suspect;
}

/// True for the states of a member that is down (dead, left).
inline bool is_gone(member_state s) noexcept {
  return s == member_state::dead || s == member_state::left;
}

/// The members one core knows, this node included (slot 0, never reaped), by slot and by
/// name, with per-state counts, the set of suspects and the list of departed members not
/// reaped yet. Keeps those derived views consistent with the rows; the protocol (who may
/// change what, and when) is the caller's. Single owner, not thread-safe.
class member_table {
public:
  /// Index of a row. Stable while the row is present or a ghost.
  using slot_t = std::uint32_t;
  static constexpr slot_t no_slot = name_index::npos;
  /// This node's own row: the first slot, never reaped.
  static constexpr slot_t self_slot = 0;

  /// What a row holds only while its member is not alive: who declared that, and the
  /// suspicion timer. Kept out of the row so that the common row (alive) stays small.
  struct row_extra {
    /// Who declared the current suspect/dead/left state (never empty in those states,
    /// except after a malformed update; empty while alive).
    std::string declared_by;
    /// Running while the row is suspect (never for this node itself).
    std::unique_ptr<suspicion> timer;
    /// Suspect only: our own probe failed on it (we hold evidence, not just hearsay).
    bool checked_by_us = false;
    /// Suspect only: its timer fired unconfirmed; our own probe of it decides (Lifeguard).
    bool verifying = false;
    /// Suspect only: the timer does not fire before this (grace after a stall of ours).
    time_point not_before{};

    /// When the suspicion timer fires.
    time_point suspicion_deadline() const { return std::max(timer->deadline(), not_before); }
  };

  /// One row: 32 bytes (name, address and tags are an interned card).
  struct row {
    /// The member's name, address and tags. Null: a free slot.
    member_card card;
    std::uint64_t incarnation = 0;
    /// When this node last saw the state change.
    time_point since{};
    /// Index of the row's row_extra, or 0 (none). Non-zero only while not alive (taken by
    /// the first non-alive transition, given back when alive again). An index rather than
    /// a pointer keeps the row at 32 bytes.
    std::uint32_t extra = 0;
    member_state state = member_state::alive;
    /// False for a ghost: a reaped member whose slot (and name) is kept until
    /// free_ghosts(), because the caller's lists and the departed list may still refer to
    /// the slot, and a name that returns meanwhile must get the same slot back.
    bool present = false;
  };

  /// A table holding only this node: `self` (its name, address and tags), alive at
  /// `incarnation` since `now`.
  member_table(member_card self, std::uint64_t incarnation, time_point now);

private:
  // Fields first (STYLE.md), then the helpers that use them; the public interface follows.

  /// Rows by slot (a deque: no 2x over-allocation when growing). Present rows are the known
  /// members; ghosts are reaped members whose slot is still reserved (row::present); free
  /// slots have a null card.
  std::deque<row> rows_;
  std::vector<slot_t> free_slots_;
  /// Name -> slot, for every present row and ghost.
  name_index index_;
  /// Every present row and ghost, sorted by name up to `sorted_prefix_`, then in insertion
  /// order: in_name_order() sorts the tail and merges it in lazily.
  mutable std::vector<slot_t> by_name_;
  mutable std::size_t sorted_prefix_ = 0;
  /// Side records of the rows not alive, by row::extra (index 0 unused); free indices.
  std::vector<std::unique_ptr<row_extra>> extras_ = std::vector<std::unique_ptr<row_extra>>(1);
  std::vector<std::uint32_t> free_extras_;
  /// Ghost slots, freed by the next free_ghosts().
  std::vector<slot_t> ghosts_;
  /// Member count per state (index = member_state value), this node included.
  std::array<std::size_t, 5> counts_{};
  /// Names of the members in suspect state (their suspicion timers are the ones to watch).
  std::set<std::string, std::less<>> suspects_;
  /// Dead or left members not reaped yet (may hold slots that came back, or the same slot
  /// twice: sweep_departed() and the caller check the row on use).
  std::vector<slot_t> departed_;
  /// departed_at_[i]: the row's `since` when departed_[i] was listed. Non-decreasing while
  /// `monotone_`, and then a lower bound of that row's `since` for as long as it stays gone,
  /// so earliest_departure() can stop early instead of reading every listed row (the core
  /// asks for it after every event; a 10% partition of 10,000 nodes lists 9,000 members
  /// on each far node).
  std::vector<time_point> departed_at_;
  /// Length of the prefix of departed_ that the last sweep left: no slot twice, every row
  /// present and gone then. listed_[s] marks the slots in that prefix.
  std::size_t swept_ = 0;
  std::vector<std::uint8_t> listed_;
  /// True once a listed row may have stopped being present and gone since the last sweep
  /// (it came back, or its slot was reused): the next sweep must read the whole list.
  bool departed_stale_ = false;
  /// False once a row's `since` was set to a time before one set earlier (a caller whose
  /// `now` went back): earliest_departure() then reads the whole list.
  bool monotone_ = true;
  time_point latest_since_{};
  /// Suspicion deadlines by slot, a min-heap (std::greater). An item is current while its
  /// row is a present suspect whose timer runs (not verifying) and whose
  /// suspicion_deadline() still equals `at`; other items are stale and dropped when met.
  /// Every current timer has a current item (note_suspicion() after each change), so the
  /// top current item is the earliest deadline without a scan of every suspect.
  struct deadline_item {
    time_point at;
    slot_t slot;
    friend bool operator>(const deadline_item& a, const deadline_item& b) noexcept {
      return a.at != b.at ? a.at > b.at : a.slot > b.slot;
    }
  };
  mutable std::vector<deadline_item> deadlines_;

  auto name_of() const {
    return [this](slot_t s) { return name_at(s); };
  }

  /// A present row for `card`'s name, which has no slot yet.
  slot_t new_slot(member_card card);

  /// Sorts the unsorted tail of by_name_ in.
  void sort_names() const;

  /// Records that a row's `since` became `now` (see monotone_).
  void note_since(time_point now) noexcept {
    if (now < latest_since_)
      monotone_ = false;
    else
      latest_since_ = now;
  }

  /// True when `h` still describes its row's running suspicion timer.
  [[nodiscard]] bool is_current(const deadline_item& h) const;

public:
  // -- lookups ------------------------------------------------------------------------------

  /// The row in slot `s` (present, ghost or free).
  [[nodiscard]] row& at(slot_t s) { return rows_[s]; }
  [[nodiscard]] const row& at(slot_t s) const { return rows_[s]; }

  /// The name in slot `s` (empty for a free slot).
  [[nodiscard]] std::string_view name_at(slot_t s) const { return rows_[s].card.name(); }

  /// This node's row.
  [[nodiscard]] row& self() { return rows_[self_slot]; }
  [[nodiscard]] const row& self() const { return rows_[self_slot]; }

  /// The slot of `name`, present or ghost, or no_slot.
  [[nodiscard]] slot_t find_slot(std::string_view name) const {
    return index_.find(name, name_of());
  }

  /// The row of a known (present) member, or nullptr.
  [[nodiscard]] row* find(std::string_view name) {
    auto s = find_slot(name);
    return s != no_slot && rows_[s].present ? &rows_[s] : nullptr;
  }
  [[nodiscard]] const row* find(std::string_view name) const {
    return const_cast<member_table*>(this)->find(name);
  }

  /// The slot of row `r`, which belongs to this table.
  [[nodiscard]] slot_t slot_of(const row& r) const {
    // Rows are only ever reached through the table: recover the slot by name.
    return find_slot(r.card.name());
  }

  /// Starts loading the index bucket of `name` (a hint, a few lookups ahead of a find).
  void prefetch(std::string_view name) const { index_.prefetch(name); }

  /// Starts loading the row `name` probably has (a hint before a find of it).
  void prefetch_row(std::string_view name) const {
    if (auto s = index_.guess(name); s != no_slot)
      __builtin_prefetch(&rows_[s]);
  }

  /// Number of slots (present, ghost or free): every slot is below it.
  [[nodiscard]] std::size_t slots() const noexcept { return rows_.size(); }

  /// Present rows and ghosts in name order (ghosts have row::present false).
  [[nodiscard]] const std::vector<slot_t>& in_name_order() const {
    if (sorted_prefix_ < by_name_.size())
      sort_names();
    return by_name_;
  }

  /// Number of present members in `s` (this node included when it matches).
  [[nodiscard]] std::size_t count(member_state s) const noexcept {
    auto i = static_cast<std::size_t>(s);
    return i < counts_.size() ? counts_[i] : 0;
  }

  /// Number of alive and suspect members, this node included.
  [[nodiscard]] std::size_t live_count() const noexcept {
    return count(member_state::alive) + count(member_state::suspect);
  }

  /// Names of the suspect members.
  [[nodiscard]] const std::set<std::string, std::less<>>& suspects() const noexcept {
    return suspects_;
  }

  /// Slots of the dead and left members not reaped yet (may be stale: check the row).
  [[nodiscard]] const std::vector<slot_t>& departed() const noexcept { return departed_; }

  /// The earliest `since` of a present, gone row listed in departed(), or time_point::max().
  /// Usually O(1): see departed_at_.
  [[nodiscard]] time_point earliest_departure() const;

  /// True when a sweep must read the whole departed list (see departed_stale_); false: only
  /// what was listed since the last sweep can need dropping.
  [[nodiscard]] bool is_departed_stale() const noexcept { return departed_stale_; }

  // -- suspicion deadlines ------------------------------------------------------------------

  /// Records the current deadline of `r`'s suspicion timer, if it is a suspect whose timer
  /// runs and is not verifying. The caller calls it after every change that starts a timer
  /// or moves its deadline (a new timer, a confirmation, row_extra::not_before); changes
  /// that stop one (another state, verifying) need no call.
  void note_suspicion(const row& r);

  /// The earliest deadline of a running, not verifying suspicion timer, or
  /// time_point::max(). Amortized O(log suspects).
  [[nodiscard]] time_point earliest_suspicion() const;

  /// Slots of the suspects whose running, not verifying timer has a deadline not after
  /// `now`, in no particular order, possibly repeated. Their records are taken out of the
  /// deadline index: the caller calls note_suspicion() for each afterwards.
  [[nodiscard]] std::vector<slot_t> take_due_suspicions(time_point now);

  // -- side records -------------------------------------------------------------------------

  /// The side record of `r`, or nullptr.
  [[nodiscard]] row_extra* extra(const row& r) const {
    return r.extra ? extras_[r.extra].get() : nullptr;
  }

  /// The side record of `r`, created if missing.
  row_extra& extra_of(row& r);

  /// Frees the side record of `r`, if any.
  void release_extra(row& r);

  /// Who declared `r`'s current state (empty while alive).
  [[nodiscard]] const std::string& declared_by(const row& r) const {
    static const std::string none;
    auto* e = extra(r);
    return e ? e->declared_by : none;
  }

  /// Sets who declared `r`'s state; an empty `who` creates no side record.
  void set_declared_by(row& r, const std::string& who) {
    if (!who.empty() || r.extra)
      extra_of(r).declared_by = who;
  }

  /// True when `r` is a suspect whose unconfirmed timer fired (see row_extra::verifying).
  [[nodiscard]] bool is_verifying(const row& r) const {
    auto* e = extra(r);
    return e && e->verifying;
  }

  /// True when `r` has a suspicion timer.
  [[nodiscard]] bool has_timer(const row& r) const {
    auto* e = extra(r);
    return e && e->timer;
  }

  // -- changes ------------------------------------------------------------------------------

  /// Adds `card`'s member, alive at `incarnation` since `now`; its name must not be
  /// present. A ghost of that name gets its slot back (see row::present). Returns the slot.
  slot_t add(member_card card, std::uint64_t incarnation, time_point now);

  /// Moves `r` to state `s` since `now`: counts, suspects and departed follow, a suspicion
  /// record is reset when `s` is not suspect, and the side record goes when `s` is alive
  /// and the caller cleared declared_by first.
  void set_state(row& r, member_state s, time_point now);

  /// Walks the departed list, each slot once: an entry whose row is no longer present and
  /// gone is dropped; for the others `reap(slot, row)` decides: true turns the member into a
  /// ghost (uncounted, side record freed; `reap` reads the row before that), false keeps
  /// it listed. List order is kept.
  ///
  /// `tail_only`: the caller knows `reap` returns false for every listed row (none is due)
  /// and is_departed_stale() is false. Then the prefix the last sweep left is kept as it is
  /// without reading it (its rows are still present and gone, each once, and none is
  /// reaped) and only the entries listed since are walked: the same result as a full walk
  /// at the cost of what changed.
  template <class Reap> void sweep_departed(Reap&& reap, bool tail_only = false) {
    if (listed_.size() < rows_.size())
      listed_.resize(rows_.size(), 0);
    std::size_t from = 0;
    if (tail_only && !departed_stale_) {
      from = swept_;
    } else {
      for (std::size_t i = 0; i < swept_; ++i)
        listed_[departed_[i]] = 0;
    }
    std::size_t out = from;
    for (std::size_t i = from; i < departed_.size(); ++i) {
      const auto s = departed_[i];
      if (listed_[s] != 0)
        continue;
      auto& r = rows_[s];
      if (!r.present || !is_gone(r.state))
        continue;
      if (!reap(s, static_cast<const row&>(r))) {
        listed_[s] = 1;
        departed_at_[out] = departed_at_[i];
        departed_[out++] = s;
        continue;
      }
      // A later entry of this slot is skipped: a ghost is not present. (No mark in listed_:
      // the compaction below overwrites entries, so a mark could outlive the sweep and
      // hide the slot's next member from every later one.)
      make_ghost(s);
    }
    departed_.resize(out);
    departed_at_.resize(out);
    swept_ = out;
    departed_stale_ = false;
  }

  /// Frees every ghost's slot: the caller calls this when no list of its own refers to
  /// their slots any more.
  void free_ghosts();

private:
  /// Turns the present member in slot `s` into a ghost.
  void make_ghost(slot_t s);
};

/// The member of row `r` as the public API shows it.
[[nodiscard]] member to_member(const member_table::row& r);

} // namespace starling::gossip
