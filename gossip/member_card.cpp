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

} // namespace

// -- card_pool ------------------------------------------------------------------------------

card_pool::~card_pool() {
  // Handles that outlive their pool (a caller's mistake, but not one worth a crash) keep
  // their rep: detached, it is freed by its last handle with no pool to update.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto* r : table_)
    if (r)
      r->pool = nullptr;
}

void card_pool::place(rep* r) {
  auto i = r->hash & mask();
  while (table_[i])
    i = (i + 1) & mask();
  table_[i] = r;
}

void card_pool::insert(rep* r) {
  if ((size_ + 1) * 4 > table_.size() * 3) {
    auto old = std::move(table_);
    table_.assign(old.empty() ? 64 : old.size() * 2, nullptr);
    for (auto* o : old)
      if (o)
        place(o);
  }
  place(r);
  ++size_;
}

void card_pool::erase(rep* r) {
  auto i = r->hash & mask();
  while (table_[i] != r)
    i = (i + 1) & mask();
  // Backward-shift deletion: move later members of the run into the hole when their home
  // bucket allows it, so that lookups never need tombstones.
  for (auto j = (i + 1) & mask(); table_[j]; j = (j + 1) & mask()) {
    const auto home = table_[j]->hash & mask();
    const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = nullptr;
  --size_;
}

member_card card_pool::intern(std::string_view name, std::string_view address,
                              const tag_map& tags) {
  if (name.empty() && address.empty() && tags.empty())
    return member_card{};
  const auto h = hash_of(name, address, tags);
  std::lock_guard<std::mutex> lock(mu_);
  if (!table_.empty())
    for (auto i = h & mask(); table_[i]; i = (i + 1) & mask())
      if (auto* r = table_[i]; holds(*r, h, name, address, tags)) {
        r->refs.fetch_add(1, std::memory_order_relaxed);
        return member_card{r};
      }
  auto* r = make_rep(name, address, tags, h);
  r->pool = this;
  insert(r);
  return member_card{r};
}

std::size_t card_pool::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return size_;
}

// -- member_card ----------------------------------------------------------------------------

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
  auto* p = r->pool;
  if (!p) {
    // Detached (its pool is gone): nobody can look the rep up any more.
    if (r->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      destroy_rep(r);
    return;
  }
  std::lock_guard<std::mutex> lock(p->mu_);
  if (r->refs.fetch_sub(1, std::memory_order_acq_rel) != 1)
    return; // an intern() took a new reference meanwhile
  p->erase(r);
  destroy_rep(r);
}

} // namespace starling::gossip
