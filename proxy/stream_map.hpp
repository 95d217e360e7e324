// Open HTTP/2 streams by id: a vector sorted by id. A hash map allocated a node per stream;
// this allocates only while the number of streams open at once grows past what it held
// before. Stream ids only grow on a connection (RFC 9113 5.1.1), so an insert lands at the
// end.
//
// An erase leaves a tombstone (the id negated: stream ids are positive) instead of moving
// every later entry down: with 128 streams in flight that move was about 2% of a node's
// CPU (docs/bench-proxy.md, Run NA: h2::session::release). Streams mostly end in the order
// they began, so tombstones gather at the front, where they are skipped; the vector is
// compacted once the tombstones outnumber the live entries (and 32), so that it holds at
// most about twice the streams open at once and each erase moves at most two entries on
// average.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace starling::proxy {

template <class T> class stream_map {
public:
  using value_type = std::pair<std::int32_t, T>;
  using iterator = typename std::vector<value_type>::iterator;
  using const_iterator = typename std::vector<value_type>::const_iterator;

  /// What find() returns for an id that is not there.
  [[nodiscard]] iterator end() { return items_.end(); }
  [[nodiscard]] const_iterator end() const { return items_.end(); }
  /// Live entries.
  [[nodiscard]] std::size_t size() const { return live_; }
  [[nodiscard]] bool empty() const { return live_ == 0; }
  /// Entries held, tombstones included: at most size() + max(32, size()).
  [[nodiscard]] std::size_t slots() const { return items_.size(); }

  /// The live entry of `id` (> 0), or end().
  [[nodiscard]] iterator find(std::int32_t id) {
    auto it = lower(id);
    return it != items_.end() && it->first == id ? it : items_.end();
  }
  [[nodiscard]] const_iterator find(std::int32_t id) const {
    return const_cast<stream_map*>(this)->find(id);
  }
  /// The entry of `id` (> 0), made (value-initialized) if there is none.
  T& operator[](std::int32_t id) {
    auto it = lower(id);
    if (it != items_.end() && it->first == id)
      return it->second;
    if (it != items_.end() && it->first == -id) { // its tombstone: live again
      it->first = id;
      it->second = T{};
    } else {
      it = items_.insert(it, value_type{id, T{}});
    }
    ++live_;
    return it->second;
  }
  /// Erases a live entry (from find): its value is reset at once.
  void erase(iterator it) {
    it->second = T{};
    it->first = -it->first;
    --live_;
    tidy();
  }
  std::size_t erase(std::int32_t id) {
    auto it = find(id);
    if (it == items_.end())
      return 0;
    erase(it);
    return 1;
  }
  /// f(id, value&) for each live entry, in id order. `f` must not insert nor erase.
  template <class F> void for_each(F&& f) {
    for (auto it = items_.begin() + static_cast<std::ptrdiff_t>(head_); it != items_.end(); ++it)
      if (it->first > 0)
        f(it->first, it->second);
  }

private:
  static std::int32_t key(const value_type& v) { return v.first < 0 ? -v.first : v.first; }

  iterator lower(std::int32_t id) {
    // The newest stream is the usual one asked for: look at the end first.
    if (!items_.empty() && key(items_.back()) < id)
      return items_.end();
    return std::lower_bound(items_.begin() + static_cast<std::ptrdiff_t>(head_), items_.end(), id,
                            [](const value_type& v, std::int32_t k) { return key(v) < k; });
  }

  /// Drops tombstones at the back, skips those at the front, and compacts when they
  /// outnumber the live entries.
  void tidy() {
    while (!items_.empty() && items_.back().first < 0)
      items_.pop_back();
    if (live_ == 0) {
      items_.clear();
      head_ = 0;
      return;
    }
    while (items_[head_].first < 0) // a live entry lies ahead
      ++head_;
    const std::size_t dead = items_.size() - live_;
    if (dead > 32 && dead > live_) {
      std::erase_if(items_, [](const value_type& v) { return v.first < 0; });
      head_ = 0;
    }
  }

  std::vector<value_type> items_;
  /// items_[0, head_) are tombstones.
  std::size_t head_ = 0;
  std::size_t live_ = 0;
};

} // namespace starling::proxy
