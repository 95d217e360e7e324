// Open HTTP/2 streams by id: a vector sorted by id. A hash map allocated a node per stream;
// this allocates only while the number of streams open at once grows past what it held
// before. Stream ids only grow on a connection (RFC 9113 5.1.1), so an insert lands at the
// end; an erase moves the entries after it, which SETTINGS_MAX_CONCURRENT_STREAMS bounds.
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

  [[nodiscard]] iterator begin() { return items_.begin(); }
  [[nodiscard]] iterator end() { return items_.end(); }
  [[nodiscard]] const_iterator begin() const { return items_.begin(); }
  [[nodiscard]] const_iterator end() const { return items_.end(); }
  [[nodiscard]] std::size_t size() const { return items_.size(); }
  [[nodiscard]] bool empty() const { return items_.empty(); }

  [[nodiscard]] iterator find(std::int32_t id) {
    auto it = lower(id);
    return it != items_.end() && it->first == id ? it : items_.end();
  }
  [[nodiscard]] const_iterator find(std::int32_t id) const {
    return const_cast<stream_map*>(this)->find(id);
  }
  /// The entry of `id`, made (value-initialized) if there is none.
  T& operator[](std::int32_t id) {
    auto it = lower(id);
    if (it == items_.end() || it->first != id)
      it = items_.insert(it, value_type{id, T{}});
    return it->second;
  }
  iterator erase(iterator it) { return items_.erase(it); }
  std::size_t erase(std::int32_t id) {
    auto it = find(id);
    if (it == items_.end())
      return 0;
    items_.erase(it);
    return 1;
  }

private:
  iterator lower(std::int32_t id) {
    // The newest stream is the usual one asked for: look at the end first.
    if (!items_.empty() && items_.back().first < id)
      return items_.end();
    return std::lower_bound(items_.begin(), items_.end(), id,
                            [](const value_type& v, std::int32_t key) { return v.first < key; });
  }

  std::vector<value_type> items_;
};

} // namespace starling::proxy
