// Interned, immutable (name, address, tags) triples, kept in a card_pool that one or more
// membership cores share. Internal to gossip/ (the core, its table, its broadcast queue and
// their tests use it).
//
// Why: every core holds a row per member and, while news spreads, a queued update per member.
// As plain std::strings and maps that is ~450 bytes per member per core, and a simulator with
// 10,000 cores holds 10^8 of them. The same few strings ("n42", "10.0.0.43:7946", the empty
// tag map) recur in every core, so each core keeps an 8-byte handle instead and the pool
// keeps one copy of each distinct triple, freed when no handle refers to it any more.
// The pool is an explicit object, not a process-wide global: a core owns one by default
// (swim_config::cards), and the simulator hands one pool to all its cores.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/types.hpp"

namespace starling::gossip {

class card_pool;

/// A refcounted handle to one interned (name, address, tags) triple, or to nothing (null).
/// Copying is an atomic increment; the value it refers to never changes. Handles may be
/// created, copied and destroyed from any thread: their pool is guarded by a mutex and the
/// last handle of a triple removes it from the pool under that mutex.
class member_card {
public:
  /// The null handle: empty name, address and tags.
  member_card() noexcept = default;
  member_card(const member_card& other) noexcept;
  member_card(member_card&& other) noexcept : rep_(other.rep_) { other.rep_ = nullptr; }
  member_card& operator=(const member_card& other) noexcept;
  member_card& operator=(member_card&& other) noexcept;
  ~member_card() { release(); }

  /// Views into the interned triple: valid while this handle (or a copy) lives.
  [[nodiscard]] std::string_view name() const noexcept {
    return rep_ ? std::string_view{rep_->text(), rep_->name_len} : std::string_view{};
  }
  [[nodiscard]] std::string_view address() const noexcept {
    return rep_ ? std::string_view{rep_->text() + rep_->name_len, rep_->address_len}
                : std::string_view{};
  }
  [[nodiscard]] const tag_map& tags() const noexcept {
    return rep_ && rep_->tags ? *rep_->tags : empty_tags();
  }

  /// True for the null handle.
  [[nodiscard]] bool is_null() const noexcept { return rep_ == nullptr; }

  /// Handles compare by identity, which is value equality for handles of one pool: equal
  /// triples share one rep there. Handles of two pools never compare equal (but null ones).
  friend bool operator==(const member_card& a, const member_card& b) noexcept {
    return a.rep_ == b.rep_;
  }

  /// The interned triple: one allocation holding this header, then the name and address
  /// characters. Exposed so that the accessors above inline (they sit on the core's hottest
  /// paths); only member_card.cpp creates and destroys reps.
  struct rep {
    /// Handles referring to this rep. Only ever raised from 0 (a lookup) under the pool's
    /// mutex, and only ever lowered to 0 under it too: see release().
    std::atomic<std::uint32_t> refs{1};
    std::uint32_t name_len = 0;
    std::uint32_t address_len = 0;
    /// Low 32 bits of the triple's hash (the pool's key; its table has < 2^32 buckets).
    std::uint32_t hash = 0;
    /// Null when the tag map is empty (most members publish none).
    std::unique_ptr<const tag_map> tags;
    /// The pool holding this rep, where the last handle removes it; null once the pool was
    /// destroyed before this rep's handles (the rep is then simply freed with the last one).
    /// 8 bytes per distinct triple, not per row: a pool holds one rep per member.
    card_pool* pool = nullptr;

    const char* text() const noexcept { return reinterpret_cast<const char*>(this + 1); }
    char* text() noexcept { return reinterpret_cast<char*>(this + 1); }
  };

private:
  friend class card_pool;

  static const tag_map& empty_tags() noexcept;
  explicit member_card(rep* r) noexcept : rep_(r) {}
  void release() noexcept;

  /// Owned reference (counted in rep::refs), or nullptr.
  rep* rep_ = nullptr;
};

/// The interning pool of member cards: an open-addressing (linear probing) set of reps keyed
/// by their stored hash, at most 3/4 full. One pool is shared by the cores that should share
/// strings (all the cores of a simulator); a core given none owns its own. Thread-safe:
/// intern() and the release of handles may run on any thread. Neither copyable nor movable
/// (reps point back to it). Should outlive its handles; if it does not, the handles left
/// stay valid and free their rep themselves.
class card_pool {
public:
  card_pool() = default;
  card_pool(const card_pool&) = delete;
  card_pool& operator=(const card_pool&) = delete;
  ~card_pool();

  /// The handle of (name, address, tags), interning the triple if it is new. A triple of
  /// three empty values gives the null handle (nothing is allocated for it).
  [[nodiscard]] member_card intern(std::string_view name, std::string_view address,
                                   const tag_map& tags);

  /// Number of distinct triples alive in this pool (for tests and memory reports).
  [[nodiscard]] std::size_t size() const;

private:
  friend class member_card;
  using rep = member_card::rep;

  /// Guards everything below, and every rep's count reaching 0 (see member_card::release).
  mutable std::mutex mu_;
  /// Size a power of two (or 0); nullptr marks an empty bucket.
  std::vector<rep*> table_;
  /// Reps in table_.
  std::size_t size_ = 0;

  std::size_t mask() const noexcept { return table_.size() - 1; }
  void place(rep* r);
  void insert(rep* r);
  /// Removes `r` (present) from the table; mu_ held.
  void erase(rep* r);
};

} // namespace starling::gossip
