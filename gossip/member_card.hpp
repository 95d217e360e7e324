// Interned, immutable (name, address, tags) triples shared by every membership core of the
// process. Internal to gossip/ (the core, its broadcast queue and their tests use it).
//
// Why: every core holds a row per member and, while news spreads, a queued update per member.
// As plain std::strings and maps that is ~450 bytes per member per core, and a simulator with
// 10,000 cores holds 10^8 of them. The same few strings ("n42", "10.0.0.43:7946", the empty
// tag map) recur in every core, so each core keeps an 8-byte handle instead and the process
// keeps one copy of each distinct triple, freed when no handle refers to it any more.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "gossip/types.hpp"

namespace starling::gossip {

/// A refcounted handle to one interned (name, address, tags) triple, or to nothing (null).
/// Copying is an atomic increment; the value it refers to never changes. Handles may be
/// created, copied and destroyed from any thread: the pool is guarded by a mutex and the
/// last handle of a triple removes it under that mutex.
class member_card {
public:
  /// The null handle: empty name, address and tags.
  member_card() noexcept = default;
  member_card(const member_card& other) noexcept;
  member_card(member_card&& other) noexcept : rep_(other.rep_) { other.rep_ = nullptr; }
  member_card& operator=(const member_card& other) noexcept;
  member_card& operator=(member_card&& other) noexcept;
  ~member_card() { release(); }

  /// The handle of (name, address, tags), interning the triple if it is new. A triple of
  /// three empty values gives the null handle (nothing is allocated for it).
  [[nodiscard]] static member_card intern(std::string_view name, std::string_view address,
                                          const tag_map& tags);

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

  /// Handles compare by identity, which is value equality: equal triples share one rep.
  friend bool operator==(const member_card& a, const member_card& b) noexcept {
    return a.rep_ == b.rep_;
  }

  /// Number of distinct triples alive in the process (for tests and memory reports).
  [[nodiscard]] static std::size_t pool_size();

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
    /// 32 bits keep this header at 24 bytes: with a short name and address the whole rep
    /// fits a 48-byte allocation.
    std::uint32_t hash = 0;
    /// Null when the tag map is empty (most members publish none).
    std::unique_ptr<const tag_map> tags;

    const char* text() const noexcept { return reinterpret_cast<const char*>(this + 1); }
    char* text() noexcept { return reinterpret_cast<char*>(this + 1); }
  };

private:
  static const tag_map& empty_tags() noexcept;
  explicit member_card(rep* r) noexcept : rep_(r) {}
  void release() noexcept;

  /// Owned reference (counted in rep::refs), or nullptr.
  rep* rep_ = nullptr;
};

} // namespace starling::gossip
