#include "gossip/routing_table.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <set>
#include <utility>

namespace starling::gossip {

routing_trust::~routing_trust() = default;
routing_sealer::~routing_sealer() = default;

caf::expected<routing_signer> open_routing_trust::verify(routing_context, std::string_view,
                                                         const routing_seal&, std::uint64_t) {
  return routing_signer{};
}

caf::expected<routing_signer> open_routing_trust::learn(const signer_chain&, std::uint64_t) {
  return make_error(routing_errc::unknown_key, "this mesh has no certificates to learn");
}

std::string_view to_string(policy_kind k) noexcept {
  switch (k) {
  case policy_kind::split:
    return "split";
  case policy_kind::route:
    return "route";
  case policy_kind::resilience:
    return "resilience";
  case policy_kind::authz:
    return "authz";
  }
  return "unknown";
}

std::uint64_t routing_table_stats::refused_total() const noexcept {
  return std::accumulate(refused.begin(), refused.end(), std::uint64_t{0});
}

// -- checks ------------------------------------------------------------------------------------

namespace {

bool is_dns_label(std::string_view s) noexcept {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-')
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

/// [A-Za-z0-9._-], 1 to `max` (0 allowed when `may_be_empty`).
bool is_token(std::string_view s, std::size_t max, bool may_be_empty = false) noexcept {
  if (s.empty())
    return may_be_empty;
  if (s.size() > max)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

/// Printable ASCII without spaces, 1 to `max`.
bool is_printable_word(std::string_view s, std::size_t max) noexcept {
  if (s.empty() || s.size() > max)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

bool is_ipv4(std::string_view s) noexcept {
  int parts = 0;
  std::size_t at = 0;
  while (at <= s.size()) {
    auto dot = s.find('.', at);
    auto part = s.substr(at, dot == std::string_view::npos ? std::string_view::npos : dot - at);
    if (part.empty() || part.size() > 3 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    if (part.size() > 1 && part.front() == '0')
      return false;
    int v = 0;
    for (char c : part)
      v = v * 10 + (c - '0');
    if (v > 255)
      return false;
    ++parts;
    if (dot == std::string_view::npos)
      break;
    at = dot + 1;
  }
  return parts == 4;
}

bool is_ipv6(std::string_view s) noexcept {
  if (s.size() < 2 || s.size() > 45 || std::count(s.begin(), s.end(), ':') < 2)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
  });
}

caf::error invalid(std::string what) {
  return make_error(routing_errc::invalid_record, std::move(what));
}

caf::error check_seal(const routing_seal& s) {
  if (!(s.key_id.empty() || s.key_id.size() == 32))
    return invalid("a seal's key id must be 32 bytes");
  if (s.signature.size() > max_seal_bytes)
    return invalid("a seal's signature is over " + std::to_string(max_seal_bytes) + " bytes");
  if (s.key_id.empty() != s.signature.empty())
    return invalid("a seal with a key id but no signature, or the other way round");
  return {};
}

bool is_node_name(std::string_view s) noexcept {
  return is_printable_word(s, 128) && s.find('/') == std::string_view::npos;
}

bool is_spiffe_id(std::string_view s) noexcept {
  return s.size() <= max_spiffe_id_bytes && s.starts_with("spiffe://") && s.size() > 9 &&
         is_printable_word(s, max_spiffe_id_bytes);
}

template <class T> bool sorted_distinct(const std::vector<T>& v) {
  return std::adjacent_find(v.begin(), v.end(), [](const T& a, const T& b) { return !(a < b); }) ==
         v.end();
}

} // namespace

caf::error check_registration(const service_registration& r) {
  if (!is_dns_label(r.service))
    return invalid("service name '" + r.service.substr(0, 64) +
                   "': use 1 to 63 lowercase letters, digits and '-' (a DNS label)");
  if (!is_token(r.id, 64))
    return invalid("instance id of " + r.service + ": use 1 to 64 of [A-Za-z0-9._-]");
  if (!r.address.empty() && !is_ipv4(r.address) && !is_ipv6(r.address))
    return invalid("address of " + r.service + " must be an IP literal (or empty for the node's)");
  if (r.port == 0)
    return invalid("port of " + r.service + " must be 1 to 65535");
  if (r.protocol != service_protocol::tcp && !is_http(r.protocol))
    return invalid("protocol of " + r.service + " must be tcp, http or http2");
  if (r.tags.size() > max_tags)
    return invalid(r.service + " has more than " + std::to_string(max_tags) + " tags");
  for (const auto& t : r.tags)
    if (!is_printable_word(t, max_tag_bytes))
      return invalid("a tag of " + r.service + " is empty, over " + std::to_string(max_tag_bytes) +
                     " bytes, or has spaces or control characters");
  if (!sorted_distinct(r.tags))
    return invalid("tags of " + r.service + " must be sorted and distinct");
  if (!is_token(r.version, 32, true))
    return invalid("version of " + r.service + ": use at most 32 of [A-Za-z0-9._-]");
  if (r.weight < 1 || r.weight > 1000)
    return invalid("weight of " + r.service + " must be 1 to 1000");
  if (r.health != health_status::none && r.health != health_status::passing &&
      r.health != health_status::failing)
    return invalid("health of " + r.service + " is not none, passing or failing");
  if (r.last_check.size() > max_check_text)
    return invalid("check text of " + r.service + " is over " + std::to_string(max_check_text) +
                   " bytes");
  return {};
}

caf::error check_owner_record(const owner_record& r) {
  if (!is_node_name(r.owner))
    return invalid("owner name: 1 to 128 printable characters without '/'");
  if (r.version == 0)
    return invalid("owner record of " + r.owner + " with version 0");
  if (r.instances.size() > max_instances_per_owner)
    return invalid("owner record of " + r.owner + " has more than " +
                   std::to_string(max_instances_per_owner) + " instances");
  for (const auto& i : r.instances)
    if (auto err = check_registration(i))
      return err;
  for (std::size_t k = 1; k < r.instances.size(); ++k) {
    const auto& a = r.instances[k - 1];
    const auto& b = r.instances[k];
    if (!(std::tie(a.service, a.id) < std::tie(b.service, b.id)))
      return invalid("owner record of " + r.owner +
                     ": instances not sorted by (service, id) or not distinct");
  }
  return check_seal(r.seal);
}

caf::error check_policy_record(const policy_record& p) {
  const auto& k = p.key;
  if (!is_dns_label(k.service))
    return invalid("policy for service '" + k.service.substr(0, 64) + "': not a DNS label");
  const bool named = k.kind == policy_kind::route || k.kind == policy_kind::authz;
  if (k.kind != policy_kind::split && k.kind != policy_kind::route &&
      k.kind != policy_kind::resilience && k.kind != policy_kind::authz)
    return invalid("policy of unknown kind " + std::to_string(static_cast<int>(k.kind)));
  if (named ? !is_token(k.name, 64) : !k.name.empty())
    return invalid(
        std::string{to_string(k.kind)} + " policy of " + k.service +
        (named ? ": a rule name of 1 to 64 of [A-Za-z0-9._-] is needed" : ": takes no rule name"));
  if (!is_node_name(p.writer))
    return invalid("policy writer: 1 to 128 printable characters without '/'");
  if (p.deleted != std::holds_alternative<std::monostate>(p.value))
    return invalid("policy of " + k.service + ": a value without a delete, or neither");
  if (auto err = check_seal(p.seal))
    return err;
  if (p.deleted)
    return {};
  const auto expected = static_cast<std::size_t>(k.kind);
  if (p.value.index() != expected)
    return invalid("policy of " + k.service + ": the value is not a " +
                   std::string{to_string(k.kind)});
  const auto bad_policy = [&](std::string what) {
    return make_error(routing_errc::invalid_policy,
                      std::string{to_string(k.kind)} + " of " + k.service + ": " + what);
  };
  switch (k.kind) {
  case policy_kind::split: {
    const auto& split = std::get<std::vector<split_weight>>(p.value);
    if (split.empty() || split.size() > max_split_versions)
      return bad_policy("name 1 to " + std::to_string(max_split_versions) + " versions");
    std::uint64_t sum = 0;
    std::set<std::string_view> seen;
    for (const auto& w : split) {
      if (!is_token(w.version, 32))
        return bad_policy("version '" + w.version.substr(0, 32) +
                          "': use 1 to 32 of [A-Za-z0-9._-]");
      if (!seen.insert(w.version).second)
        return bad_policy("version " + w.version + " named twice");
      if (w.weight > 100)
        return bad_policy("weight of " + w.version + " over 100");
      sum += w.weight;
    }
    if (sum != 100)
      return bad_policy("weights sum to " + std::to_string(sum) + ", not 100");
    if (!std::is_sorted(split.begin(), split.end(),
                        [](const auto& a, const auto& b) { return a.version < b.version; }))
      return bad_policy("versions not sorted");
    return {};
  }
  case policy_kind::route: {
    const auto& r = std::get<header_route>(p.value);
    if (r.name != k.name)
      return bad_policy("the rule's name differs from its key");
    if (r.header.empty() || r.header.size() > max_header_bytes ||
        !std::all_of(r.header.begin(), r.header.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        }))
      return bad_policy("header name: 1 to " + std::to_string(max_header_bytes) +
                        " lowercase letters, digits, '-' or '_'");
    if (r.value.size() > max_header_bytes ||
        !std::all_of(r.value.begin(), r.value.end(), [](char c) { return c >= ' ' && c < 0x7f; }))
      return bad_policy("header value: at most " + std::to_string(max_header_bytes) +
                        " printable characters");
    if (!is_token(r.version, 32))
      return bad_policy("a route needs a version: 1 to 32 of [A-Za-z0-9._-]");
    return {};
  }
  case policy_kind::resilience: {
    const auto& r = std::get<resilience_policy>(p.value);
    constexpr std::uint32_t hour_ms = 3'600'000;
    if (r.timeout_ms > hour_ms || r.per_try_timeout_ms > hour_ms)
      return bad_policy("timeouts are at most one hour");
    if (r.retries > 10)
      return bad_policy("at most 10 retries");
    if (r.retry_budget_percent > 100)
      return bad_policy("retry budget over 100 percent");
    if (r.retry_min_per_second > 10'000)
      return bad_policy("retry floor over 10000 per second");
    for (const auto& cap : {r.max_connections, r.max_requests, r.max_pending})
      if (cap && (*cap == 0 || *cap > max_breaker_cap))
        return bad_policy("circuit breaker caps are 1 to " + std::to_string(max_breaker_cap));
    for (const auto& n : {r.eject_consecutive_5xx, r.eject_consecutive_connect_failures})
      if (n && *n > 1000)
        return bad_policy("ejection after at most 1000 failures in a row");
    if (r.ejection_time_ms && (*r.ejection_time_ms == 0 || *r.ejection_time_ms > hour_ms))
      return bad_policy("ejection time is 1 ms to one hour");
    if (r.max_ejection_percent && *r.max_ejection_percent > 100)
      return bad_policy("ejected share over 100 percent");
    return {};
  }
  case policy_kind::authz: {
    const auto& a = std::get<authz_rule>(p.value);
    if (a.name != k.name)
      return bad_policy("the rule's name differs from its key");
    if (a.from.empty() || a.from.size() > max_authz_sources)
      return bad_policy("name 1 to " + std::to_string(max_authz_sources) + " callers");
    for (const auto& id : a.from)
      if (!is_spiffe_id(id))
        return bad_policy("caller '" + id.substr(0, 64) + "' is not a spiffe:// id");
    if (!sorted_distinct(a.from))
      return bad_policy("callers must be sorted and distinct");
    return {};
  }
  }
  return invalid("policy of unknown kind");
}

// -- canonical bytes ---------------------------------------------------------------------------

namespace {

/// Appends fixed-width big-endian integers and length-prefixed strings.
struct canonical_writer {
  std::string out;

  void u8(std::uint8_t v) { out.push_back(static_cast<char>(v)); }
  void u16(std::uint16_t v) {
    u8(static_cast<std::uint8_t>(v >> 8));
    u8(static_cast<std::uint8_t>(v));
  }
  void u32(std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8)
      u8(static_cast<std::uint8_t>(v >> s));
  }
  void u64(std::uint64_t v) {
    for (int s = 56; s >= 0; s -= 8)
      u8(static_cast<std::uint8_t>(v >> s));
  }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out.append(s);
  }
};

} // namespace

std::string canonical_bytes(const owner_record& r) {
  canonical_writer w;
  w.u8('O');
  w.str(r.owner);
  w.u64(r.version);
  w.u64(r.stamp.wall_ms);
  w.u32(r.stamp.logical);
  w.u32(static_cast<std::uint32_t>(r.instances.size()));
  for (const auto& i : r.instances) {
    w.str(i.service);
    w.str(i.id);
    w.str(i.address);
    w.u16(i.port);
    w.u8(static_cast<std::uint8_t>(i.protocol));
    w.u32(static_cast<std::uint32_t>(i.tags.size()));
    for (const auto& t : i.tags)
      w.str(t);
    w.str(i.version);
    w.u32(i.weight);
    w.u8(static_cast<std::uint8_t>(i.health));
    w.str(i.last_check);
  }
  return std::move(w.out);
}

std::string canonical_bytes(const policy_record& p) {
  canonical_writer w;
  w.u8('P');
  w.u8(static_cast<std::uint8_t>(p.key.kind));
  w.str(p.key.service);
  w.str(p.key.name);
  w.u64(p.stamp.wall_ms);
  w.u32(p.stamp.logical);
  w.str(p.writer);
  w.u8(p.deleted ? 1 : 0);
  w.u8(static_cast<std::uint8_t>(p.value.index()));
  if (const auto* split = std::get_if<std::vector<split_weight>>(&p.value)) {
    w.u32(static_cast<std::uint32_t>(split->size()));
    for (const auto& s : *split) {
      w.str(s.version);
      w.u32(s.weight);
    }
  } else if (const auto* route = std::get_if<header_route>(&p.value)) {
    w.str(route->name);
    w.str(route->header);
    w.str(route->value);
    w.str(route->version);
  } else if (const auto* res = std::get_if<resilience_policy>(&p.value)) {
    w.u32(res->timeout_ms);
    w.u32(res->per_try_timeout_ms);
    w.u32(res->retries);
    w.u32(res->retry_budget_percent);
    w.u32(res->retry_min_per_second);
    for (const auto& f : {res->max_connections, res->max_requests, res->eject_consecutive_5xx,
                          res->eject_consecutive_connect_failures, res->ejection_time_ms,
                          res->max_ejection_percent}) {
      w.u8(f ? 1 : 0);
      w.u32(f.value_or(0));
    }
    // Fields added later go last, and only when set: a policy without them keeps the bytes
    // (and the signature) it had before they existed.
    if (res->max_pending) {
      w.u8(13); // its proto field number, as a tag
      w.u32(*res->max_pending);
    }
  } else if (const auto* rule = std::get_if<authz_rule>(&p.value)) {
    w.str(rule->name);
    w.u32(static_cast<std::uint32_t>(rule->from.size()));
    for (const auto& f : rule->from)
      w.str(f);
    w.u8(rule->allow ? 1 : 0);
  }
  return std::move(w.out);
}

// -- the table ---------------------------------------------------------------------------------

namespace {

/// FNV-1a over `s`, finished with splitmix64's mixer (FNV alone mixes high bits poorly).
std::uint64_t hash64(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ULL) noexcept {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

/// Total order of two records with the same key and the same precedence (the same version,
/// or the same stamp and writer): only an equivocating signer or a bug makes them differ,
/// and every node must still pick the same one.
template <class Record> bool wins_tie(const Record& a, const Record& b) {
  auto ca = canonical_bytes(a);
  auto cb = canonical_bytes(b);
  if (ca != cb)
    return ca > cb;
  return std::tie(a.seal.key_id, a.seal.signature) > std::tie(b.seal.key_id, b.seal.signature);
}

/// Rough encoded size of a record, for answer budgets.
template <class Record> std::size_t size_estimate(const Record& r) {
  return canonical_bytes(r).size() + r.seal.key_id.size() + r.seal.signature.size() + 32;
}

std::chrono::milliseconds::rep ms(std::chrono::milliseconds d) noexcept {
  return std::max<std::chrono::milliseconds::rep>(0, d.count());
}

/// True when a record stamped `stamp` is older than `ttl` at `wall_ms`.
bool is_older_than(hlc_stamp stamp, std::chrono::milliseconds ttl, std::uint64_t wall_ms) {
  const auto t = static_cast<std::uint64_t>(ms(ttl));
  return wall_ms > t && stamp.wall_ms < wall_ms - t;
}

} // namespace

std::uint32_t routing_table::range_of(std::string_view key) noexcept {
  return static_cast<std::uint32_t>(hash64(key) % digest_ranges);
}

std::string routing_table::key_of(const owner_record& r) { return "n/" + r.owner; }

std::string routing_table::key_of(const policy_key& k) {
  return "p/" + std::string{to_string(k.kind)} + "/" + k.service + "/" + k.name;
}

std::uint64_t routing_table::hash_of(const owner_record& r) {
  return hash64(r.seal.signature, hash64(r.seal.key_id, hash64(canonical_bytes(r))));
}

std::uint64_t routing_table::hash_of(const policy_record& p) {
  return hash64(p.seal.signature, hash64(p.seal.key_id, hash64(canonical_bytes(p))));
}

routing_table::routing_table(routing_config cfg, std::shared_ptr<routing_trust> trust)
    : cfg_(std::move(cfg)), trust_(std::move(trust)), clock_(cfg_.max_clock_skew) {
  if (!trust_)
    trust_ = std::make_shared<open_routing_trust>();
}

merge_result routing_table::refuse(caf::error err) {
  const std::size_t code = err.category() == routing_errc_category ? err.code() : 0;
  if (code < stats_.refused.size())
    ++stats_.refused[code];
  return {merge_outcome::refused, std::move(err)};
}

merge_result routing_table::hold_pending(any_record rec) {
  const auto& seal = std::visit([](const auto& r) -> const routing_seal& { return r.seal; }, rec);
  if (pending_count_ >= cfg_.max_pending) {
    ++stats_.pending_dropped;
    return refuse(make_error(routing_errc::unknown_key, "signed by an unknown key, and " +
                                                            std::to_string(cfg_.max_pending) +
                                                            " records already wait for chains"));
  }
  auto& list = pending_[seal.key_id];
  // The same record twice waits once.
  if (std::find(list.begin(), list.end(), rec) == list.end()) {
    list.push_back(std::move(rec));
    ++pending_count_;
  }
  ++stats_.pending;
  return {merge_outcome::pending, {}};
}

caf::expected<routing_signer> routing_table::verify(routing_context ctx, const std::string& bytes,
                                                    const routing_seal& seal,
                                                    std::uint64_t wall_ms) {
  if (!trust_->requires_signatures())
    return routing_signer{};
  if (seal.empty())
    return make_error(routing_errc::unsigned_record, "a record without a signature");
  return trust_->verify(ctx, bytes, seal, wall_ms);
}

merge_result routing_table::merge(const owner_record& r, std::uint64_t wall_ms) {
  if (auto err = check_owner_record(r))
    return refuse(std::move(err));
  if (auto err = clock_.check(r.stamp, wall_ms))
    return refuse(std::move(err));
  if (is_older_than(r.stamp, cfg_.record_ttl, wall_ms))
    return refuse(make_error(routing_errc::expired, "instances of " + r.owner + " written " +
                                                        to_string(r.stamp) +
                                                        ", older than the record ttl"));
  auto held = owners_.find(r.owner);
  if (held != owners_.end()) {
    if (held->second == r) {
      ++stats_.duplicates;
      return {merge_outcome::duplicate, {}};
    }
    if (r.version < held->second.version ||
        (r.version == held->second.version && !wins_tie(r, held->second))) {
      ++stats_.stale;
      return {merge_outcome::stale, {}};
    }
  } else if (owners_.size() >= cfg_.max_owners) {
    return refuse(make_error(routing_errc::table_full,
                             "already " + std::to_string(owners_.size()) + " owners"));
  }
  auto signer = verify(routing_context::owner, canonical_bytes(r), r.seal, wall_ms);
  if (!signer) {
    if (is(signer.error(), routing_errc::unknown_key))
      return hold_pending(r);
    return refuse(std::move(signer.error()));
  }
  if (trust_->requires_signatures() && signer->node != r.owner)
    return refuse(make_error(routing_errc::not_owner,
                             "instances of " + r.owner + " signed by the key of " + signer->node));
  static_cast<void>(clock_.observe(r.stamp, wall_ms));
  if (r.owner == cfg_.self)
    own_version_floor_ = std::max(own_version_floor_, r.version);
  put(r);
  ++stats_.applied;
  return {merge_outcome::applied, {}};
}

merge_result routing_table::merge(const policy_record& p, std::uint64_t wall_ms) {
  if (auto err = check_policy_record(p))
    return refuse(std::move(err));
  if (auto err = clock_.check(p.stamp, wall_ms))
    return refuse(std::move(err));
  if (p.deleted && is_older_than(p.stamp, cfg_.tombstone_ttl, wall_ms))
    return refuse(make_error(routing_errc::expired,
                             "a delete of " + key_of(p.key) + " older than the tombstone ttl"));
  auto held = policies_.find(p.key);
  if (held != policies_.end()) {
    const auto& h = held->second;
    if (h == p) {
      ++stats_.duplicates;
      return {merge_outcome::duplicate, {}};
    }
    if (std::tie(p.stamp, p.writer) < std::tie(h.stamp, h.writer) ||
        (std::tie(p.stamp, p.writer) == std::tie(h.stamp, h.writer) && !wins_tie(p, h))) {
      ++stats_.stale;
      return {merge_outcome::stale, {}};
    }
  } else if (policies_.size() >= cfg_.max_policies) {
    return refuse(make_error(routing_errc::table_full,
                             "already " + std::to_string(policies_.size()) + " policies"));
  }
  auto signer = verify(routing_context::policy, canonical_bytes(p), p.seal, wall_ms);
  if (!signer) {
    if (is(signer.error(), routing_errc::unknown_key))
      return hold_pending(p);
    return refuse(std::move(signer.error()));
  }
  if (trust_->requires_signatures()) {
    if (!signer->issuer)
      return refuse(make_error(routing_errc::not_authorized,
                               "a " + std::string{to_string(p.key.kind)} + " of " + p.key.service +
                                   " signed by " + signer->node +
                                   ", whose key has no issuer authority"));
    if (signer->node != p.writer)
      return refuse(
          make_error(routing_errc::not_authorized,
                     "a policy that names " + p.writer + " as writer, signed by " + signer->node));
  }
  static_cast<void>(clock_.observe(p.stamp, wall_ms));
  put(p);
  ++stats_.applied;
  return {merge_outcome::applied, {}};
}

caf::expected<std::vector<std::variant<owner_record, policy_record>>>
routing_table::learn_chain(const signer_chain& chain, std::uint64_t wall_ms) {
  auto pending = pending_.extract(chain.key_id);
  auto learned = trust_->learn(chain, wall_ms);
  if (!learned) {
    ++stats_.chains_refused;
    if (!pending.empty()) {
      pending_count_ -= pending.mapped().size();
      stats_.pending_dropped += pending.mapped().size();
    }
    return std::move(learned.error());
  }
  ++stats_.chains_learned;
  std::vector<std::variant<owner_record, policy_record>> applied;
  if (pending.empty())
    return applied;
  pending_count_ -= pending.mapped().size();
  for (auto& rec : pending.mapped()) {
    auto res = std::visit([&](const auto& r) { return merge(r, wall_ms); }, rec);
    if (res.outcome == merge_outcome::applied)
      applied.push_back(std::move(rec));
  }
  return applied;
}

std::vector<std::string> routing_table::wanted_keys() const {
  std::vector<std::string> out;
  out.reserve(pending_.size());
  for (const auto& [key, _] : pending_)
    out.push_back(key);
  return out;
}

std::uint64_t routing_table::table_hash() const noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t r = 0; r < digest_ranges; ++r) {
    h = hash64(std::string_view{reinterpret_cast<const char*>(&digest_.hashes[r]),
                                sizeof digest_.hashes[r]},
               h ^ digest_.counts[r]);
  }
  return h;
}

void routing_table::digest_add(const std::string& key, std::uint64_t hash) {
  ++changes_;
  const auto r = range_of(key);
  digest_.hashes[r] ^= hash;
  ++digest_.counts[r];
}

void routing_table::digest_remove(const std::string& key, std::uint64_t hash) {
  ++changes_;
  const auto r = range_of(key);
  digest_.hashes[r] ^= hash;
  --digest_.counts[r];
}

void routing_table::put(owner_record r) {
  const auto key = key_of(r);
  if (auto it = owners_.find(r.owner); it != owners_.end()) {
    digest_remove(key, hash_of(it->second));
    digest_add(key, hash_of(r));
    it->second = std::move(r);
    return;
  }
  digest_add(key, hash_of(r));
  auto name = r.owner;
  owners_.emplace(std::move(name), std::move(r));
}

void routing_table::put(policy_record p) {
  const auto key = key_of(p.key);
  if (auto it = policies_.find(p.key); it != policies_.end()) {
    digest_remove(key, hash_of(it->second));
    digest_add(key, hash_of(p));
    it->second = std::move(p);
    return;
  }
  digest_add(key, hash_of(p));
  auto k = p.key;
  policies_.emplace(std::move(k), std::move(p));
}

caf::expected<owner_record>
routing_table::set_instances(std::vector<service_registration> instances, std::uint64_t wall_ms,
                             routing_sealer& sealer) {
  for (auto& i : instances) {
    if (i.id.empty())
      i.id = i.service;
    std::sort(i.tags.begin(), i.tags.end());
    i.tags.erase(std::unique(i.tags.begin(), i.tags.end()), i.tags.end());
  }
  std::sort(instances.begin(), instances.end(), [](const auto& a, const auto& b) {
    return std::tie(a.service, a.id) < std::tie(b.service, b.id);
  });
  for (std::size_t k = 1; k < instances.size(); ++k)
    if (instances[k - 1].service == instances[k].service && instances[k - 1].id == instances[k].id)
      return invalid("instance " + instances[k].id + " of " + instances[k].service +
                     " registered twice");
  owner_record r;
  r.owner = cfg_.self;
  auto current = owners_.find(cfg_.self);
  const auto held = current != owners_.end() ? current->second.version : 0;
  const auto base = std::max(held, own_version_floor_);
  if (base == std::numeric_limits<std::uint64_t>::max())
    return invalid("this node's record version is spent");
  r.version = base + 1;
  r.stamp = clock_.tick(wall_ms);
  r.instances = std::move(instances);
  if (auto err = check_owner_record(r))
    return err;
  auto seal = sealer.seal(routing_context::owner, canonical_bytes(r));
  if (!seal)
    return std::move(seal.error());
  r.seal = std::move(*seal);
  if (auto err = check_seal(r.seal))
    return err;
  own_version_floor_ = r.version;
  put(r);
  ++stats_.applied;
  return r;
}

bool routing_table::needs_refresh(std::uint64_t wall_ms) const noexcept {
  auto it = owners_.find(cfg_.self);
  if (it == owners_.end())
    return false;
  return is_older_than(it->second.stamp, cfg_.record_ttl / 3, wall_ms);
}

void routing_table::restore_own_version(std::uint64_t version) noexcept {
  own_version_floor_ = std::max(own_version_floor_, version);
}

caf::expected<policy_record> routing_table::set_policy(policy_key key, policy_value value,
                                                       std::uint64_t wall_ms,
                                                       routing_sealer& sealer) {
  policy_record p;
  p.deleted = std::holds_alternative<std::monostate>(value);
  if (p.deleted) {
    auto held = policies_.find(key);
    if (held == policies_.end() || held->second.deleted)
      return make_error(routing_errc::invalid_policy,
                        "no " + std::string{to_string(key.kind)} + " policy of " + key.service +
                            (key.name.empty() ? "" : " named " + key.name) + " to delete");
  }
  if (auto* split = std::get_if<std::vector<split_weight>>(&value))
    std::sort(split->begin(), split->end(),
              [](const auto& a, const auto& b) { return a.version < b.version; });
  if (auto* rule = std::get_if<authz_rule>(&value)) {
    std::sort(rule->from.begin(), rule->from.end());
    rule->from.erase(std::unique(rule->from.begin(), rule->from.end()), rule->from.end());
  }
  // A split or a route may only name versions some instance of the service has now.
  std::vector<std::string> named;
  if (const auto* split = std::get_if<std::vector<split_weight>>(&value))
    for (const auto& w : *split)
      named.push_back(w.version);
  if (const auto* route = std::get_if<header_route>(&value))
    named.push_back(route->version);
  if (!named.empty()) {
    std::set<std::string_view> known;
    for (const auto& [_, rec] : owners_)
      for (const auto& i : rec.instances)
        if (i.service == key.service)
          known.insert(i.version);
    for (const auto& v : named)
      if (!known.contains(v))
        return make_error(routing_errc::invalid_policy,
                          "service " + key.service + " has no instance of version '" + v + "'" +
                              (known.empty() ? " (it has no instances)" : ""));
  }
  p.key = std::move(key);
  p.value = std::move(value);
  p.writer = cfg_.self;
  p.stamp = clock_.tick(wall_ms);
  if (auto err = check_policy_record(p))
    return err;
  auto seal = sealer.seal(routing_context::policy, canonical_bytes(p));
  if (!seal)
    return std::move(seal.error());
  p.seal = std::move(*seal);
  if (auto err = check_seal(p.seal))
    return err;
  put(p);
  ++stats_.applied;
  return p;
}

std::size_t routing_table::collect_garbage(std::uint64_t wall_ms) {
  std::size_t dropped = 0;
  for (auto it = owners_.begin(); it != owners_.end();) {
    if (it->first != cfg_.self && is_older_than(it->second.stamp, cfg_.record_ttl, wall_ms)) {
      digest_remove(key_of(it->second), hash_of(it->second));
      it = owners_.erase(it);
      ++stats_.collected_owners;
      ++dropped;
    } else {
      ++it;
    }
  }
  for (auto it = policies_.begin(); it != policies_.end();) {
    if (it->second.deleted && is_older_than(it->second.stamp, cfg_.tombstone_ttl, wall_ms)) {
      digest_remove(key_of(it->first), hash_of(it->second));
      it = policies_.erase(it);
      ++stats_.collected_tombstones;
      ++dropped;
    } else {
      ++it;
    }
  }
  return dropped;
}

const owner_record* routing_table::owner(std::string_view name) const {
  auto it = owners_.find(name);
  return it != owners_.end() ? &it->second : nullptr;
}

const policy_record* routing_table::policy(const policy_key& key) const {
  auto it = policies_.find(key);
  return it != policies_.end() ? &it->second : nullptr;
}

routing_snapshot routing_table::snapshot(const member_lookup& members,
                                         std::uint64_t generation) const {
  std::map<std::string, service_view, std::less<>> services;
  for (const auto& [owner, rec] : owners_) {
    auto member = members ? members(owner) : std::optional<member_view>{};
    for (const auto& i : rec.instances) {
      auto& svc = services[i.service];
      svc.name = i.service;
      instance_view v;
      v.node = owner;
      v.service = i.service;
      v.id = i.id;
      v.address = !i.address.empty() ? i.address : member ? member->host : std::string{};
      v.port = i.port;
      v.protocol = i.protocol;
      v.tags = i.tags;
      v.version = i.version;
      v.weight = i.weight;
      v.health = i.health;
      v.last_check = i.last_check;
      v.node_alive = member && member->alive && !v.address.empty();
      svc.instances.push_back(std::move(v));
    }
  }
  for (const auto& [key, p] : policies_) {
    if (p.deleted)
      continue;
    auto& svc = services[key.service];
    svc.name = key.service;
    auto& pol = svc.policies;
    if (const auto* split = std::get_if<std::vector<split_weight>>(&p.value)) {
      pol.split = *split;
      pol.split_origin = policy_origin{p.writer, p.stamp.wall_ms, p.stamp.logical};
    } else if (const auto* route = std::get_if<header_route>(&p.value)) {
      pol.routes.push_back(*route);
    } else if (const auto* res = std::get_if<resilience_policy>(&p.value)) {
      pol.resilience = *res;
    } else if (const auto* rule = std::get_if<authz_rule>(&p.value)) {
      pol.authz.push_back(*rule);
    }
  }
  routing_snapshot snap;
  snap.generation = generation;
  snap.services.reserve(services.size());
  for (auto& [_, svc] : services) {
    std::sort(svc.instances.begin(), svc.instances.end(), [](const auto& a, const auto& b) {
      return std::tie(a.node, a.id) < std::tie(b.node, b.id);
    });
    snap.services.push_back(std::move(svc));
  }
  return snap;
}

std::vector<std::uint32_t> routing_table::differing_ranges(const routing_digest& other) const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t r = 0; r < digest_ranges; ++r)
    if (other.hashes[r] != digest_.hashes[r] || other.counts[r] != digest_.counts[r])
      out.push_back(r);
  return out;
}

std::vector<entry_summary>
routing_table::summaries(const std::vector<std::uint32_t>& ranges) const {
  std::vector<bool> want(digest_ranges, false);
  for (auto r : ranges)
    if (r < digest_ranges)
      want[r] = true;
  std::vector<entry_summary> out;
  for (const auto& [_, rec] : owners_) {
    auto key = key_of(rec);
    if (want[range_of(key)])
      out.push_back({std::move(key), hash_of(rec)});
  }
  for (const auto& [k, p] : policies_) {
    auto key = key_of(k);
    if (want[range_of(key)])
      out.push_back({std::move(key), hash_of(p)});
  }
  return out;
}

routing_table::range_records routing_table::records_for(const std::vector<std::uint32_t>& ranges,
                                                        const std::vector<entry_summary>& theirs,
                                                        std::size_t max_bytes) const {
  std::vector<bool> want(digest_ranges, false);
  for (auto r : ranges)
    if (r < digest_ranges)
      want[r] = true;
  std::map<std::string_view, std::uint64_t> held;
  for (const auto& s : theirs)
    held.emplace(s.key, s.hash);
  const auto lacks = [&](const std::string& key, std::uint64_t hash) {
    auto it = held.find(key);
    return it == held.end() || it->second != hash;
  };
  range_records out;
  std::size_t used = 0;
  const auto fits = [&](std::size_t n) {
    if (used + n > max_bytes) {
      out.truncated = true;
      return false;
    }
    used += n;
    return true;
  };
  for (const auto& [_, rec] : owners_) {
    auto key = key_of(rec);
    if (want[range_of(key)] && lacks(key, hash_of(rec)) && fits(size_estimate(rec)))
      out.owners.push_back(rec);
  }
  for (const auto& [k, p] : policies_) {
    auto key = key_of(k);
    if (want[range_of(key)] && lacks(key, hash_of(p)) && fits(size_estimate(p)))
      out.policies.push_back(p);
  }
  return out;
}

} // namespace starling::gossip
