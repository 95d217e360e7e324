// A compact hash index from member name to a slot number of some table. Internal to gossip/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string_view>
#include <vector>

namespace starling::gossip {

/// Open-addressing (linear probing) index of slots by name. The names live in the owner's
/// table: every call that needs one takes `name_of(slot) -> string_view`, so the index holds
/// 8 bytes per bucket (slot and a hash fragment) and never dangles when the owner moves.
/// Load factor at most 3/4. Not thread-safe.
class name_index {
public:
  static constexpr std::uint32_t npos = std::numeric_limits<std::uint32_t>::max();

  /// The slot indexed under `name`, or npos.
  template <class NameOf>
  [[nodiscard]] std::uint32_t find(std::string_view name, const NameOf& name_of) const {
    if (buckets_.empty())
      return npos;
    const auto frag = fragment(hash(name));
    for (auto i = frag & mask();; i = (i + 1) & mask()) {
      const auto& b = buckets_[i];
      if (b.slot == npos)
        return npos;
      if (b.frag == frag && name_of(b.slot) == name)
        return b.slot;
    }
  }

  /// Indexes `slot` under `name_of(slot)`, which must not be indexed yet.
  template <class NameOf> void insert(std::uint32_t slot, const NameOf& name_of) {
    if ((size_ + 1) * 4 > buckets_.size() * 3)
      grow();
    place(slot, fragment(hash(name_of(slot))));
    ++size_;
  }

  /// Removes the entry of `name`, if any (backward-shift deletion: no tombstones).
  template <class NameOf> void erase(std::string_view name, const NameOf& name_of) {
    if (buckets_.empty())
      return;
    const auto frag = fragment(hash(name));
    for (auto i = frag & mask();; i = (i + 1) & mask()) {
      const auto& b = buckets_[i];
      if (b.slot == npos)
        return;
      if (b.frag == frag && name_of(b.slot) == name)
        return erase_at(i);
    }
  }

  /// Removes `slot`, which must be indexed under `name`. Reads no other name.
  void erase_slot(std::string_view name, std::uint32_t slot) {
    const auto frag = fragment(hash(name));
    auto i = frag & mask();
    while (buckets_[i].slot != slot)
      i = (i + 1) & mask();
    erase_at(i);
  }

  /// Starts loading the bucket where a lookup of `name` begins: a hint, for callers that
  /// know which names they will look up next (the misses then overlap).
  void prefetch(std::string_view name) const noexcept {
    if (!buckets_.empty())
      __builtin_prefetch(&buckets_[fragment(hash(name)) & mask()]);
  }

  /// The first slot whose hash fragment matches `name`'s, or npos: a guess (the name is not
  /// compared) for prefetching the slot's data.
  [[nodiscard]] std::uint32_t guess(std::string_view name) const noexcept {
    if (buckets_.empty())
      return npos;
    const auto frag = fragment(hash(name));
    for (auto i = frag & mask();; i = (i + 1) & mask()) {
      const auto& b = buckets_[i];
      if (b.slot == npos || b.frag == frag)
        return b.slot;
    }
  }

  /// Number of indexed slots.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
  struct bucket {
    std::uint32_t slot = npos;
    /// Low 32 bits of the name's hash: the home bucket, and most mismatches are rejected
    /// without reading the name.
    std::uint32_t frag = 0;
  };

  static std::size_t hash(std::string_view s) noexcept { return std::hash<std::string_view>{}(s); }
  /// The low bits of the hash: they give the home bucket (the table has at most 2^32
  /// buckets), so growing and erasing never hash a name again.
  static std::uint32_t fragment(std::size_t h) noexcept { return static_cast<std::uint32_t>(h); }
  std::size_t mask() const noexcept { return buckets_.size() - 1; }

  void place(std::uint32_t slot, std::uint32_t frag) {
    auto i = frag & mask();
    while (buckets_[i].slot != npos)
      i = (i + 1) & mask();
    buckets_[i] = bucket{slot, frag};
  }

  void grow() {
    auto old = std::move(buckets_);
    buckets_.assign(old.empty() ? 16 : old.size() * 2, bucket{});
    for (const auto& b : old)
      if (b.slot != npos)
        place(b.slot, b.frag);
  }

  /// Empties bucket `i`, shifting later members of its probe run back over the hole when
  /// their home allows.
  void erase_at(std::size_t i) {
    for (std::size_t j = (i + 1) & mask();; j = (j + 1) & mask()) {
      auto& b = buckets_[j];
      if (b.slot == npos)
        break;
      const std::size_t home = b.frag & mask();
      // Move b into the hole at i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!stays) {
        buckets_[i] = b;
        i = j;
      }
    }
    buckets_[i] = bucket{};
    --size_;
  }

  /// Size is a power of two (or 0). Invariant: every indexed slot sits in the probe run
  /// that starts at its home bucket (hash & mask) with no empty bucket in between.
  std::vector<bucket> buckets_;
  std::size_t size_ = 0;
};

} // namespace starling::gossip
