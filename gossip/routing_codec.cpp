#include "gossip/routing_codec.hpp"

#include <array>
#include <limits>
#include <span>
#include <utility>

#include "gossip/wire_scan.hpp"
#include "routing.pb.h"

namespace starling::gossip {

namespace {

caf::error malformed(std::string what) {
  return make_error(routing_errc::malformed, std::move(what));
}

// -- counting on the wire ----------------------------------------------------------------------

/// A repeated (or nested) field the scan bounds: at most `max` entries of at most
/// `max_bytes` each (0: any size), each checked by `nested` rules when given.
struct scan_rule {
  int field;
  std::size_t max;
  std::size_t max_bytes;
  std::span<const scan_rule> nested;
};

caf::error scan(std::string_view bytes, std::span<const scan_rule> rules, const char* what) {
  std::array<std::size_t, 8> counts{};
  return walk_fields(
      bytes, [what] { return malformed(std::string{what} + " is not protobuf wire format"); },
      [&](int field, std::string_view content) -> caf::error {
        for (std::size_t k = 0; k < rules.size() && k < counts.size(); ++k) {
          const auto& rule = rules[k];
          if (rule.field != field)
            continue;
          if (++counts[k] > rule.max)
            return malformed(std::string{what} + ": more than " + std::to_string(rule.max) +
                             " entries of field " + std::to_string(field));
          if (rule.max_bytes != 0 && content.size() > rule.max_bytes)
            return malformed(std::string{what} + ": an entry of field " + std::to_string(field) +
                             " over " + std::to_string(rule.max_bytes) + " bytes");
          if (!rule.nested.empty())
            return scan(content, rule.nested, what);
        }
        return {};
      });
}

// ServiceInstance.tags; OwnerRecord.instances; PolicyRecord.split and .authz (AuthzRule.from).
constexpr std::array<scan_rule, 1> instance_rules{{{6, max_tags, 0, {}}}};
constexpr std::array<scan_rule, 1> owner_rules{{{5, max_instances_per_owner, 0, instance_rules}}};
constexpr std::array<scan_rule, 1> authz_rules{{{2, max_authz_sources, 0, {}}}};
constexpr std::array<scan_rule, 2> policy_rules{
    {{8, max_split_versions, 0, {}}, {11, 1, 0, authz_rules}}};

// -- values ------------------------------------------------------------------------------------

caf::error out_of_range(const char* what) {
  return make_error(routing_errc::invalid_record, std::string{what} + " out of range");
}

void to_proto(const routing_seal& s, starling::v1::RoutingSeal& out) {
  out.set_key_id(s.key_id);
  out.set_signature(s.signature);
}

routing_seal from_proto(const starling::v1::RoutingSeal& s) { return {s.key_id(), s.signature()}; }

void to_proto(const owner_record& r, starling::v1::OwnerRecord& out) {
  out.set_owner(r.owner);
  out.set_version(r.version);
  out.set_wall_ms(r.stamp.wall_ms);
  out.set_logical(r.stamp.logical);
  for (const auto& i : r.instances) {
    auto& m = *out.add_instances();
    m.set_service(i.service);
    m.set_id(i.id);
    m.set_address(i.address);
    m.set_port(i.port);
    m.set_protocol(static_cast<std::uint32_t>(i.protocol));
    for (const auto& t : i.tags)
      m.add_tags(t);
    m.set_version(i.version);
    m.set_weight(i.weight);
    m.set_health(static_cast<std::uint32_t>(i.health));
    m.set_last_check(i.last_check);
  }
  if (!r.seal.empty())
    to_proto(r.seal, *out.mutable_seal());
}

caf::expected<owner_record> from_proto(const starling::v1::OwnerRecord& m) {
  owner_record r;
  r.owner = m.owner();
  r.version = m.version();
  r.stamp = {m.wall_ms(), m.logical()};
  r.instances.reserve(static_cast<std::size_t>(m.instances_size()));
  for (const auto& i : m.instances()) {
    service_registration s;
    s.service = i.service();
    s.id = i.id();
    s.address = i.address();
    if (i.port() > std::numeric_limits<std::uint16_t>::max())
      return out_of_range("instance port");
    s.port = static_cast<std::uint16_t>(i.port());
    if (i.protocol() < 1 || i.protocol() > 3)
      return out_of_range("instance protocol");
    s.protocol = static_cast<service_protocol>(i.protocol());
    s.tags.assign(i.tags().begin(), i.tags().end());
    s.version = i.version();
    s.weight = i.weight();
    if (i.health() > 2)
      return out_of_range("instance health");
    s.health = static_cast<health_status>(i.health());
    s.last_check = i.last_check();
    r.instances.push_back(std::move(s));
  }
  r.seal = from_proto(m.seal());
  return r;
}

void to_proto(const policy_record& p, starling::v1::PolicyRecord& out) {
  out.set_kind(static_cast<std::uint32_t>(p.key.kind));
  out.set_service(p.key.service);
  out.set_name(p.key.name);
  out.set_wall_ms(p.stamp.wall_ms);
  out.set_logical(p.stamp.logical);
  out.set_writer(p.writer);
  out.set_deleted(p.deleted);
  if (const auto* split = std::get_if<std::vector<split_weight>>(&p.value)) {
    for (const auto& w : *split) {
      auto& m = *out.add_split();
      m.set_version(w.version);
      m.set_weight(w.weight);
    }
  } else if (const auto* route = std::get_if<header_route>(&p.value)) {
    auto& m = *out.mutable_route();
    m.set_name(route->name);
    m.set_header(route->header);
    m.set_value(route->value);
    m.set_version(route->version);
  } else if (const auto* res = std::get_if<resilience_policy>(&p.value)) {
    auto& m = *out.mutable_resilience();
    m.set_timeout_ms(res->timeout_ms);
    m.set_per_try_timeout_ms(res->per_try_timeout_ms);
    m.set_retries(res->retries);
    m.set_retry_budget_percent(res->retry_budget_percent);
    m.set_retry_min_per_second(res->retry_min_per_second);
    if (res->max_connections)
      m.set_max_connections(*res->max_connections);
    if (res->max_requests)
      m.set_max_requests(*res->max_requests);
    if (res->eject_consecutive_5xx)
      m.set_eject_consecutive_5xx(*res->eject_consecutive_5xx);
    if (res->eject_consecutive_connect_failures)
      m.set_eject_consecutive_connect_failures(*res->eject_consecutive_connect_failures);
    if (res->ejection_time_ms)
      m.set_ejection_time_ms(*res->ejection_time_ms);
    if (res->max_ejection_percent)
      m.set_max_ejection_percent(*res->max_ejection_percent);
    if (res->max_pending)
      m.set_max_pending(*res->max_pending);
  } else if (const auto* rule = std::get_if<authz_rule>(&p.value)) {
    auto& m = *out.mutable_authz();
    m.set_name(rule->name);
    for (const auto& f : rule->from)
      m.add_from(f);
    m.set_allow(rule->allow);
  }
  if (!p.seal.empty())
    to_proto(p.seal, *out.mutable_seal());
}

caf::expected<policy_record> from_proto(const starling::v1::PolicyRecord& m) {
  policy_record p;
  if (m.kind() < 1 || m.kind() > 4)
    return out_of_range("policy kind");
  p.key = {static_cast<policy_kind>(m.kind()), m.service(), m.name()};
  p.stamp = {m.wall_ms(), m.logical()};
  p.writer = m.writer();
  p.deleted = m.deleted();
  if (!p.deleted) {
    switch (p.key.kind) {
    case policy_kind::split: {
      std::vector<split_weight> split;
      split.reserve(static_cast<std::size_t>(m.split_size()));
      for (const auto& w : m.split())
        split.push_back({w.version(), w.weight()});
      p.value = std::move(split);
      break;
    }
    case policy_kind::route:
      p.value = header_route{m.route().name(), m.route().header(), m.route().value(),
                             m.route().version()};
      break;
    case policy_kind::resilience: {
      const auto& r = m.resilience();
      resilience_policy res{r.timeout_ms(), r.per_try_timeout_ms(), r.retries(),
                            r.retry_budget_percent(), r.retry_min_per_second()};
      if (r.has_max_connections())
        res.max_connections = r.max_connections();
      if (r.has_max_requests())
        res.max_requests = r.max_requests();
      if (r.has_eject_consecutive_5xx())
        res.eject_consecutive_5xx = r.eject_consecutive_5xx();
      if (r.has_eject_consecutive_connect_failures())
        res.eject_consecutive_connect_failures = r.eject_consecutive_connect_failures();
      if (r.has_ejection_time_ms())
        res.ejection_time_ms = r.ejection_time_ms();
      if (r.has_max_ejection_percent())
        res.max_ejection_percent = r.max_ejection_percent();
      if (r.has_max_pending())
        res.max_pending = r.max_pending();
      p.value = res;
      break;
    }
    case policy_kind::authz:
      p.value = authz_rule{
          m.authz().name(), {m.authz().from().begin(), m.authz().from().end()}, m.authz().allow()};
      break;
    }
  }
  p.seal = from_proto(m.seal());
  return p;
}

template <class Message> caf::error parse(Message& m, std::string_view bytes, const char* what) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return malformed(std::string{what} + " does not parse");
  return {};
}

template <class Out, class Records>
caf::error convert_all(const Records& in, std::vector<Out>& out) {
  out.reserve(static_cast<std::size_t>(in.size()));
  for (const auto& m : in) {
    auto r = from_proto(m);
    if (!r)
      return std::move(r.error());
    out.push_back(std::move(*r));
  }
  return {};
}

} // namespace

std::string encode_routing(const routing_payload& p) {
  starling::v1::RoutingPayload m;
  for (const auto& r : p.owners)
    to_proto(r, *m.add_owners());
  for (const auto& r : p.policies)
    to_proto(r, *m.add_policies());
  if (p.note) {
    m.mutable_note()->set_table_hash(p.note->table_hash);
    m.mutable_note()->set_records(p.note->records);
  }
  return m.SerializeAsString();
}

std::string encode_routing(const routing_section& s) {
  starling::v1::RoutingSection m;
  auto& d = *m.mutable_digest();
  for (auto h : s.digest.hashes)
    d.add_hashes(h);
  for (auto c : s.digest.counts)
    d.add_counts(c);
  for (const auto& r : s.owners)
    to_proto(r, *m.add_owners());
  for (const auto& r : s.policies)
    to_proto(r, *m.add_policies());
  for (const auto& c : s.chains) {
    auto& mc = *m.add_chains();
    mc.set_key_id(c.key_id);
    for (const auto& cert : c.certificates)
      mc.add_certificates(cert);
  }
  m.set_partial(s.partial);
  return m.SerializeAsString();
}

caf::expected<routing_payload> decode_routing_payload(std::string_view bytes,
                                                      const routing_codec_limits& limits) {
  if (bytes.size() > limits.max_bytes)
    return malformed("routing payload of " + std::to_string(bytes.size()) + " bytes");
  const std::array<scan_rule, 2> rules{
      {{1, limits.max_owners, 0, owner_rules}, {2, limits.max_policies, 0, policy_rules}}};
  if (auto err = scan(bytes, rules, "routing payload"))
    return err;
  starling::v1::RoutingPayload m;
  if (auto err = parse(m, bytes, "routing payload"))
    return err;
  routing_payload out;
  if (auto err = convert_all(m.owners(), out.owners))
    return err;
  if (auto err = convert_all(m.policies(), out.policies))
    return err;
  if (m.has_note())
    out.note = routing_note{m.note().table_hash(), m.note().records()};
  return out;
}

caf::expected<routing_section> decode_routing_section(std::string_view bytes,
                                                      const routing_codec_limits& limits) {
  if (bytes.size() > limits.max_bytes)
    return malformed("routing section of " + std::to_string(bytes.size()) + " bytes");
  const std::array<scan_rule, 2> chain_rules{
      {{1, 1, 32, {}}, {2, limits.max_certificates, limits.max_certificate_bytes, {}}}};
  // The digest's two packed fields: 64 fixed64 and 64 varints of at most 5 bytes.
  static constexpr std::array<scan_rule, 2> digest_rules{
      {{1, 1, digest_ranges * 8, {}}, {2, 1, digest_ranges * 5, {}}}};
  const std::array<scan_rule, 4> rules{{{1, 1, 0, digest_rules},
                                        {2, limits.max_owners, 0, owner_rules},
                                        {3, limits.max_policies, 0, policy_rules},
                                        {4, limits.max_chains, 0, chain_rules}}};
  if (auto err = scan(bytes, rules, "routing section"))
    return err;
  starling::v1::RoutingSection m;
  if (auto err = parse(m, bytes, "routing section"))
    return err;
  routing_section out;
  const auto& d = m.digest();
  if (d.hashes_size() != 0 || d.counts_size() != 0) {
    if (d.hashes_size() != static_cast<int>(digest_ranges) ||
        d.counts_size() != static_cast<int>(digest_ranges))
      return malformed("routing digest without exactly " + std::to_string(digest_ranges) +
                       " ranges");
    for (std::size_t k = 0; k < digest_ranges; ++k) {
      out.digest.hashes[k] = d.hashes(static_cast<int>(k));
      out.digest.counts[k] = d.counts(static_cast<int>(k));
    }
  }
  if (auto err = convert_all(m.owners(), out.owners))
    return err;
  if (auto err = convert_all(m.policies(), out.policies))
    return err;
  out.chains.reserve(static_cast<std::size_t>(m.chains_size()));
  for (const auto& c : m.chains())
    out.chains.push_back({c.key_id(), {c.certificates().begin(), c.certificates().end()}});
  out.partial = m.partial();
  return out;
}

std::string encode_routing(const routing_pull& p) {
  starling::v1::RoutingPull m;
  for (auto r : p.ranges)
    m.add_ranges(r);
  for (const auto& e : p.have) {
    auto& me = *m.add_have();
    me.set_key(e.key);
    me.set_hash(e.hash);
  }
  return m.SerializeAsString();
}

caf::expected<routing_pull> decode_routing_pull(std::string_view bytes,
                                                const routing_codec_limits& limits) {
  if (bytes.size() > limits.max_bytes)
    return malformed("routing pull of " + std::to_string(bytes.size()) + " bytes");
  static constexpr std::array<scan_rule, 1> summary_rules{{{1, 1, max_summary_key_bytes, {}}}};
  const std::array<scan_rule, 2> rules{
      {{1, 1, digest_ranges * 5, {}},
       {2, limits.max_owners + limits.max_policies, 0, summary_rules}}};
  if (auto err = scan(bytes, rules, "routing pull"))
    return err;
  starling::v1::RoutingPull m;
  if (auto err = parse(m, bytes, "routing pull"))
    return err;
  if (m.ranges_size() > static_cast<int>(digest_ranges))
    return malformed("routing pull of more than " + std::to_string(digest_ranges) + " ranges");
  routing_pull out;
  std::array<bool, digest_ranges> seen{};
  for (auto r : m.ranges()) {
    if (r >= digest_ranges || seen[r])
      return malformed("routing pull range " + std::to_string(r) + " out of range or repeated");
    seen[r] = true;
    out.ranges.push_back(r);
  }
  out.have.reserve(static_cast<std::size_t>(m.have_size()));
  for (const auto& e : m.have())
    out.have.push_back({e.key(), e.hash()});
  return out;
}

std::size_t encoded_size(const owner_record& r) {
  starling::v1::RoutingPayload m;
  to_proto(r, *m.add_owners());
  return m.ByteSizeLong();
}

std::size_t encoded_size(const policy_record& p) {
  starling::v1::RoutingPayload m;
  to_proto(p, *m.add_policies());
  return m.ByteSizeLong();
}

} // namespace starling::gossip
