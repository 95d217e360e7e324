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
    const auto h = hash(name);
    const auto frag = fragment(h);
    for (auto i = h & mask(); ; i = (i + 1) & mask()) {
      const auto& b = buckets_[i];
      if (b.slot == npos)
        return npos;
      if (b.frag == frag && name_of(b.slot) == name)
        return b.slot;
    }
  }

  /// Indexes `slot` under `name_of(slot)`, which must not be indexed yet.
  template <class NameOf>
  void insert(std::uint32_t slot, const NameOf& name_of) {
    if ((size_ + 1) * 4 > buckets_.size() * 3)
      grow(name_of);
    place(slot, hash(name_of(slot)));
    ++size_;
  }

  /// Removes the entry of `name`, if any (backward-shift deletion: no tombstones).
  template <class NameOf>
  void erase(std::string_view name, const NameOf& name_of) {
    if (buckets_.empty())
      return;
    const auto h = hash(name);
    const auto frag = fragment(h);
    std::size_t i = h & mask();
    for (;; i = (i + 1) & mask()) {
      const auto& b = buckets_[i];
      if (b.slot == npos)
        return;
      if (b.frag == frag && name_of(b.slot) == name)
        break;
    }
    // Shift later members of the probe run back over the hole when their home allows.
    for (std::size_t j = (i + 1) & mask();; j = (j + 1) & mask()) {
      auto& b = buckets_[j];
      if (b.slot == npos)
        break;
      const auto home = hash(name_of(b.slot)) & mask();
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

  /// Number of indexed slots.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
  struct bucket {
    std::uint32_t slot = npos;
    /// High bits of the name's hash: most mismatches are rejected without reading the name.
    std::uint32_t frag = 0;
  };

  static std::size_t hash(std::string_view s) noexcept { return std::hash<std::string_view>{}(s); }
  static std::uint32_t fragment(std::size_t h) noexcept {
    return static_cast<std::uint32_t>(h >> 32);
  }
  std::size_t mask() const noexcept { return buckets_.size() - 1; }

  void place(std::uint32_t slot, std::size_t h) {
    auto i = h & mask();
    while (buckets_[i].slot != npos)
      i = (i + 1) & mask();
    buckets_[i] = bucket{slot, fragment(h)};
  }

  template <class NameOf>
  void grow(const NameOf& name_of) {
    auto old = std::move(buckets_);
    buckets_.assign(old.empty() ? 16 : old.size() * 2, bucket{});
    for (const auto& b : old)
      if (b.slot != npos)
        place(b.slot, hash(name_of(b.slot)));
  }

  /// Size is a power of two (or 0). Invariant: every indexed slot sits in the probe run
  /// that starts at its home bucket (hash & mask) with no empty bucket in between.
  std::vector<bucket> buckets_;
  std::size_t size_ = 0;
};

} // namespace starling::gossip
