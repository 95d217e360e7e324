#include "gossip/member_card.hpp"

#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <vector>

namespace starling::gossip {

namespace {

using rep = member_card::rep;

std::uint32_t hash_of(std::string_view name, std::string_view address, const tag_map& tags) {
  std::hash<std::string_view> h;
  std::size_t seed = h(name);
  auto mix = [&](std::size_t v) { seed ^= v + 0x9e3779b97f4a7c15ull + (seed << 6) + (seed >> 2); };
  mix(h(address));
  for (const auto& [k, v] : tags) {
    mix(h(k));
    mix(h(v));
  }
  return static_cast<std::uint32_t>(seed ^ (seed >> 32));
}

std::string_view name_of(const rep& r) { return {r.text(), r.name_len}; }
std::string_view address_of(const rep& r) { return {r.text() + r.name_len, r.address_len}; }

bool holds(const rep& r, std::uint32_t h, std::string_view name, std::string_view address,
           const tag_map& tags) {
  return r.hash == h && name_of(r) == name && address_of(r) == address &&
         (r.tags ? *r.tags == tags : tags.empty());
}

rep* make_rep(std::string_view name, std::string_view address, const tag_map& tags,
              std::uint32_t h) {
  void* mem = ::operator new(sizeof(rep) + name.size() + address.size());
  auto* r = new (mem) rep;
  r->name_len = static_cast<std::uint32_t>(name.size());
  r->address_len = static_cast<std::uint32_t>(address.size());
  r->hash = h;
  if (!tags.empty())
    r->tags = std::make_unique<const tag_map>(tags);
  // An empty string_view may have a null data(), which memcpy must never see.
  if (!name.empty())
    std::memcpy(r->text(), name.data(), name.size());
  if (!address.empty())
    std::memcpy(r->text() + name.size(), address.data(), address.size());
  return r;
}

void destroy_rep(rep* r) noexcept {
  r->~rep();
  ::operator delete(r);
}

/// The process-wide pool: an open-addressing (linear probing) set of reps keyed by their
/// stored hash, at most 3/4 full. Leaked on purpose so that handles destroyed during static
/// destruction (a core held by a static) never outlive it.
struct pool {
  std::mutex mu;
  /// Size a power of two (or 0); nullptr marks an empty bucket.
  std::vector<rep*> table;
  std::size_t size = 0;

  std::size_t mask() const noexcept { return table.size() - 1; }

  void place(rep* r) {
    auto i = r->hash & mask();
    while (table[i])
      i = (i + 1) & mask();
    table[i] = r;
  }

  void insert(rep* r) {
    if ((size + 1) * 4 > table.size() * 3) {
      auto old = std::move(table);
      table.assign(old.empty() ? 64 : old.size() * 2, nullptr);
      for (auto* o : old)
        if (o)
          place(o);
    }
    place(r);
    ++size;
  }

  void erase(rep* r) {
    auto i = r->hash & mask();
    while (table[i] != r)
      i = (i + 1) & mask();
    // Backward-shift deletion: move later members of the run into the hole when their
    // home bucket allows it, so that lookups never need tombstones.
    for (auto j = (i + 1) & mask(); table[j]; j = (j + 1) & mask()) {
      const auto home = table[j]->hash & mask();
      const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!stays) {
        table[i] = table[j];
        i = j;
      }
    }
    table[i] = nullptr;
    --size;
  }
};

pool& the_pool() {
  static auto* p = new pool;
  return *p;
}

} // namespace

const tag_map& member_card::empty_tags() noexcept {
  static const tag_map none;
  return none;
}

member_card::member_card(const member_card& other) noexcept : rep_(other.rep_) {
  // The source holds a reference, so the count is at least 1 and cannot reach 0 meanwhile.
  if (rep_)
    rep_->refs.fetch_add(1, std::memory_order_relaxed);
}

member_card& member_card::operator=(const member_card& other) noexcept {
  if (rep_ != other.rep_) {
    member_card copy(other);
    *this = std::move(copy);
  }
  return *this;
}

member_card& member_card::operator=(member_card&& other) noexcept {
  if (this != &other) {
    release();
    rep_ = other.rep_;
    other.rep_ = nullptr;
  }
  return *this;
}

void member_card::release() noexcept {
  auto* r = rep_;
  rep_ = nullptr;
  if (!r)
    return;
  // Not the last reference: a plain decrement. The last one is dropped under the mutex, so
  // that a concurrent intern() cannot find the rep between its count reaching 0 and its
  // removal.
  auto n = r->refs.load(std::memory_order_relaxed);
  while (n > 1)
    if (r->refs.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel))
      return;
  auto& p = the_pool();
  std::lock_guard<std::mutex> lock(p.mu);
  if (r->refs.fetch_sub(1, std::memory_order_acq_rel) != 1)
    return; // an intern() took a new reference meanwhile
  p.erase(r);
  destroy_rep(r);
}

member_card member_card::intern(std::string_view name, std::string_view address,
                                const tag_map& tags) {
  if (name.empty() && address.empty() && tags.empty())
    return member_card{};
  const auto h = hash_of(name, address, tags);
  auto& p = the_pool();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.table.empty())
    for (auto i = h & p.mask(); p.table[i]; i = (i + 1) & p.mask())
      if (auto* r = p.table[i]; holds(*r, h, name, address, tags)) {
        r->refs.fetch_add(1, std::memory_order_relaxed);
        return member_card{r};
      }
  auto* r = make_rep(name, address, tags, h);
  p.insert(r);
  return member_card{r};
}

std::size_t member_card::pool_size() {
  auto& p = the_pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.size;
}

} // namespace starling::gossip
