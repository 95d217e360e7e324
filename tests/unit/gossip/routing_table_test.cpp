// The routing table CRDT (gossip/routing_table.hpp): the merge laws over many seeds, who may
// write what (signatures through the fake trust of tests/support/routing_fakes.hpp), clock
// skew, ages and bounds, and the snapshot readers get.
#include <algorithm>
#include <random>
#include <variant>

#include <gtest/gtest.h>

#include "gossip/routing_table.hpp"
#include "tests/support/routing_fakes.hpp"

namespace starling::gossip {
namespace {

using test_support::fake_chain;
using test_support::fake_key_id;
using test_support::fake_sealer;
using test_support::fake_signature;
using test_support::fake_trust;

constexpr std::uint64_t t0 = 1'800'000'000'000; // a wall time (unix ms)

std::vector<std::uint64_t> test_seeds() {
  std::vector<std::uint64_t> seeds;
  for (std::uint64_t s = 1; s <= 200; ++s)
    seeds.push_back(s);
  return seeds;
}

const std::set<std::string> issuers{"i1", "i2"};

routing_table make_table(std::string self = "self") {
  routing_config cfg;
  cfg.self = std::move(self);
  return routing_table{cfg, std::make_shared<fake_trust>(true, issuers)};
}

service_registration instance(std::string service, std::string version = "v1",
                              std::uint16_t port = 8080) {
  service_registration r;
  r.service = std::move(service);
  r.id = r.service;
  r.address = "10.0.0.1";
  r.port = port;
  r.version = std::move(version);
  return r;
}

/// An owner record of `owner`, signed by `signer` (its owner by default).
owner_record signed_owner(std::string owner, std::uint64_t version,
                          std::vector<service_registration> instances, hlc_stamp stamp = {t0, 0},
                          std::string signer = {}) {
  owner_record r;
  r.owner = std::move(owner);
  r.version = version;
  r.stamp = stamp;
  std::sort(instances.begin(), instances.end(), [](const auto& a, const auto& b) {
    return std::tie(a.service, a.id) < std::tie(b.service, b.id);
  });
  r.instances = std::move(instances);
  r.seal.key_id = fake_key_id(signer.empty() ? r.owner : signer);
  r.seal.signature = fake_signature(routing_context::owner, r.seal.key_id, canonical_bytes(r));
  return r;
}

policy_record signed_policy(policy_key key, policy_value value, hlc_stamp stamp, std::string writer,
                            std::string signer = {}) {
  policy_record p;
  p.key = std::move(key);
  p.deleted = std::holds_alternative<std::monostate>(value);
  p.value = std::move(value);
  p.stamp = stamp;
  p.writer = std::move(writer);
  p.seal.key_id = fake_key_id(signer.empty() ? p.writer : signer);
  p.seal.signature = fake_signature(routing_context::policy, p.seal.key_id, canonical_bytes(p));
  return p;
}

policy_value split(std::vector<split_weight> w) { return policy_value{std::move(w)}; }

using any_record = std::variant<owner_record, policy_record>;

/// A random pool of valid, signed records: several versions of a few owners' records and
/// concurrent writes of a few policy keys (ties included), deletes among them.
std::vector<any_record> random_pool(std::uint64_t seed, std::size_t n) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::size_t k) { return static_cast<std::size_t>(rng() % k); };
  const std::vector<std::string> owners{"a", "b", "c", "d"};
  const std::vector<std::string> services{"web", "api", "db"};
  std::vector<any_record> out;
  for (std::size_t k = 0; k < n; ++k) {
    if (pick(2) == 0) {
      std::vector<service_registration> inst;
      std::set<std::string> used;
      for (std::size_t j = pick(3); j > 0; --j) {
        auto svc = services[pick(services.size())];
        if (used.insert(svc).second)
          inst.push_back(
              instance(svc, pick(2) ? "v1" : "v2", static_cast<std::uint16_t>(1000 + pick(5))));
      }
      out.emplace_back(signed_owner(owners[pick(owners.size())], 1 + pick(4), std::move(inst),
                                    {t0 + pick(3), static_cast<std::uint32_t>(pick(2))}));
    } else {
      policy_key key{policy_kind::split, services[pick(2)], ""};
      policy_value value;
      if (pick(4) != 0)
        value = split({{"v1", static_cast<std::uint32_t>(pick(101))}, {"v2", 0}});
      if (auto* s = std::get_if<std::vector<split_weight>>(&value))
        (*s)[1].weight = 100 - (*s)[0].weight;
      out.emplace_back(signed_policy(key, std::move(value),
                                     {t0 + pick(3), static_cast<std::uint32_t>(pick(2))},
                                     pick(2) ? "i1" : "i2"));
    }
  }
  return out;
}

void merge_all(routing_table& t, const std::vector<any_record>& recs) {
  for (const auto& r : recs)
    std::visit([&](const auto& x) { static_cast<void>(t.merge(x, t0 + 1000)); }, r);
}

/// Every record of `from`, as a list.
std::vector<any_record> records_of(const routing_table& from) {
  std::vector<any_record> out;
  for (const auto& [_, r] : from.owners())
    out.emplace_back(r);
  for (const auto& [_, p] : from.policies())
    out.emplace_back(p);
  return out;
}

bool same_content(const routing_table& a, const routing_table& b) {
  return a.owners() == b.owners() && a.policies() == b.policies() && a.digest() == b.digest();
}

/// A table holding `a`'s records merged with `b`'s.
routing_table merged(const routing_table& a, const routing_table& b) {
  auto t = make_table();
  merge_all(t, records_of(a));
  merge_all(t, records_of(b));
  return t;
}

routing_table table_of(const std::vector<any_record>& recs) {
  auto t = make_table();
  merge_all(t, recs);
  return t;
}

// -- the laws ----------------------------------------------------------------------------------

TEST(routing_table_laws, merge_is_commutative_associative_and_idempotent) {
  for (auto seed : test_seeds()) {
    SCOPED_TRACE(seed);
    auto a = table_of(random_pool(seed, 12));
    auto b = table_of(random_pool(seed + 1000, 12));
    auto c = table_of(random_pool(seed + 2000, 12));
    EXPECT_TRUE(same_content(merged(a, b), merged(b, a)));
    EXPECT_TRUE(same_content(merged(merged(a, b), c), merged(a, merged(b, c))));
    EXPECT_TRUE(same_content(merged(a, a), a));
  }
}

TEST(routing_table_laws, any_delivery_order_gives_the_same_table) {
  for (auto seed : test_seeds()) {
    SCOPED_TRACE(seed);
    auto pool = random_pool(seed, 30);
    auto reference = table_of(pool);
    std::mt19937_64 rng(seed);
    for (int k = 0; k < 4; ++k) {
      auto shuffled = pool;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      // Duplicates delivered again change nothing either.
      shuffled.insert(shuffled.end(), pool.begin(), pool.begin() + 5);
      EXPECT_TRUE(same_content(table_of(shuffled), reference));
    }
  }
}

TEST(routing_table_laws, digest_tracks_content_and_ranges_find_the_difference) {
  for (auto seed : test_seeds()) {
    SCOPED_TRACE(seed);
    auto pool = random_pool(seed, 20);
    auto full = table_of(pool);
    auto part = table_of(std::vector<any_record>(pool.begin(), pool.begin() + 10));
    auto ranges = part.differing_ranges(full.digest());
    if (same_content(part, full)) {
      EXPECT_TRUE(ranges.empty());
      continue;
    }
    ASSERT_FALSE(ranges.empty());
    // What full sends for those ranges brings part level.
    auto sent = full.records_for(ranges, part.summaries(ranges), 1 << 20);
    EXPECT_FALSE(sent.truncated);
    for (const auto& r : sent.owners)
      static_cast<void>(part.merge(r, t0 + 1000));
    for (const auto& p : sent.policies)
      static_cast<void>(part.merge(p, t0 + 1000));
    EXPECT_TRUE(same_content(part, full));
    EXPECT_TRUE(part.differing_ranges(full.digest()).empty());
  }
}

// -- owner records -----------------------------------------------------------------------------

TEST(routing_table_owner, newer_version_wins_and_older_is_stale) {
  auto t = make_table();
  auto v2 = signed_owner("a", 2, {instance("web")});
  auto v1 = signed_owner("a", 1, {instance("web"), instance("api")});
  EXPECT_EQ(t.merge(v2, t0).outcome, merge_outcome::applied);
  EXPECT_EQ(t.merge(v1, t0).outcome, merge_outcome::stale);
  EXPECT_EQ(t.merge(v2, t0).outcome, merge_outcome::duplicate);
  ASSERT_NE(t.owner("a"), nullptr);
  EXPECT_EQ(t.owner("a")->version, 2u);
  EXPECT_EQ(t.stats().applied, 1u);
  EXPECT_EQ(t.stats().stale, 1u);
  EXPECT_EQ(t.stats().duplicates, 1u);
}

TEST(routing_table_owner, a_node_cannot_write_another_nodes_instances) {
  auto t = make_table();
  auto forged = signed_owner("victim", 9, {instance("web")}, {t0, 0}, "attacker");
  auto res = t.merge(forged, t0);
  EXPECT_EQ(res.outcome, merge_outcome::refused);
  EXPECT_TRUE(is(res.error, routing_errc::not_owner)) << to_string(res.error);
  EXPECT_EQ(t.owner("victim"), nullptr);
  EXPECT_EQ(t.stats().refused[static_cast<int>(routing_errc::not_owner)], 1u);
}

TEST(routing_table_owner, tampered_or_unsigned_records_are_refused) {
  auto t = make_table();
  auto r = signed_owner("a", 1, {instance("web")});
  auto tampered = r;
  tampered.instances[0].port = 9999; // rerouted to another port, old signature kept
  auto res = t.merge(tampered, t0);
  EXPECT_TRUE(is(res.error, routing_errc::bad_signature)) << to_string(res.error);
  auto unsigned_ = r;
  unsigned_.seal = {};
  res = t.merge(unsigned_, t0);
  EXPECT_TRUE(is(res.error, routing_errc::unsigned_record)) << to_string(res.error);
  EXPECT_EQ(t.merge(r, t0).outcome, merge_outcome::applied);
}

TEST(routing_table_owner, malformed_registrations_are_refused_with_the_field_named) {
  auto t = make_table();
  struct bad_case {
    const char* what;
    std::function<void(service_registration&)> spoil;
  };
  std::vector<bad_case> cases{
      {"service name", [](auto& r) { r.service = "Web_Service"; }},
      {"service name", [](auto& r) { r.service = std::string(64, 'a'); }},
      {"instance id", [](auto& r) { r.id = "a b"; }},
      {"address", [](auto& r) { r.address = "example.com"; }},
      {"address", [](auto& r) { r.address = "300.1.1.1"; }},
      {"port", [](auto& r) { r.port = 0; }},
      {"protocol", [](auto& r) { r.protocol = static_cast<service_protocol>(7); }},
      {"tag", [](auto& r) { r.tags = {std::string(65, 't')}; }},
      {"tags", [](auto& r) { r.tags = std::vector<std::string>(17, "t"); }},
      {"sorted",
       [](auto& r) {
         r.tags = {"b", "a"};
       }},
      {"version", [](auto& r) { r.version = "v 1"; }},
      {"weight", [](auto& r) { r.weight = 0; }},
      {"weight", [](auto& r) { r.weight = 1001; }},
      {"check text", [](auto& r) { r.last_check = std::string(201, 'x'); }},
  };
  for (const auto& c : cases) {
    auto inst = instance("web");
    c.spoil(inst);
    auto err = check_registration(inst);
    ASSERT_TRUE(is(err, routing_errc::invalid_record)) << c.what;
    EXPECT_NE(to_string(err).find(c.what), std::string::npos) << to_string(err);
    auto res = t.merge(signed_owner("a", 1, {inst}), t0);
    EXPECT_TRUE(is(res.error, routing_errc::invalid_record)) << c.what;
  }
  std::vector<service_registration> many;
  for (int k = 0; k < 65; ++k)
    many.push_back(instance("s" + std::to_string(k)));
  auto res = t.merge(signed_owner("a", 1, many), t0);
  EXPECT_TRUE(is(res.error, routing_errc::invalid_record));
  EXPECT_TRUE(t.owners().empty());
}

TEST(routing_table_owner, set_instances_versions_signs_and_survives_a_restart) {
  auto t = make_table("a");
  fake_sealer sealer("a");
  auto r1 = t.set_instances({instance("web"), instance("api")}, t0, sealer);
  ASSERT_TRUE(r1) << to_string(r1.error());
  EXPECT_EQ(r1->version, 1u);
  EXPECT_EQ(r1->instances.front().service, "api"); // sorted
  auto r2 = t.set_instances({instance("web")}, t0 + 1, sealer);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->version, 2u);
  // Another node accepts both, the newer one last.
  auto other = make_table("b");
  EXPECT_EQ(other.merge(*r2, t0 + 5).outcome, merge_outcome::applied);
  EXPECT_EQ(other.merge(*r1, t0 + 5).outcome, merge_outcome::stale);
  // After a restart with an empty table, the node continues above what it restored, or
  // above what peers still hold of it.
  auto restarted = make_table("a");
  restarted.restore_own_version(2);
  auto r3 = restarted.set_instances({}, t0 + 10, sealer);
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->version, 3u);
  auto amnesic = make_table("a");
  EXPECT_EQ(amnesic.merge(*r2, t0 + 5).outcome, merge_outcome::applied);
  auto r3b = amnesic.set_instances({}, t0 + 10, sealer);
  ASSERT_TRUE(r3b);
  EXPECT_EQ(r3b->version, 3u);
  // Twice the same (service, id) is refused.
  auto dup = t.set_instances({instance("web"), instance("web", "v2", 81)}, t0 + 20, sealer);
  EXPECT_TRUE(is(dup.error(), routing_errc::invalid_record));
}

TEST(routing_table_owner, records_age_out_and_cannot_come_back) {
  routing_config cfg;
  cfg.self = "self";
  cfg.record_ttl = std::chrono::hours{1};
  routing_table t{cfg, std::make_shared<fake_trust>(true, issuers)};
  auto r = signed_owner("gone", 1, {instance("web")}, {t0, 0});
  ASSERT_EQ(t.merge(r, t0).outcome, merge_outcome::applied);
  const auto later = t0 + 3'600'001;
  EXPECT_EQ(t.collect_garbage(later), 1u);
  EXPECT_EQ(t.owner("gone"), nullptr);
  // A peer that still holds it cannot revive it.
  auto res = t.merge(r, later);
  EXPECT_TRUE(is(res.error, routing_errc::expired));
  EXPECT_EQ(t.stats().collected_owners, 1u);
}

TEST(routing_table_owner, own_record_needs_refresh_before_it_ages) {
  routing_config cfg;
  cfg.self = "a";
  cfg.record_ttl = std::chrono::hours{3};
  routing_table t{cfg, std::make_shared<fake_trust>(true, issuers)};
  fake_sealer sealer("a");
  ASSERT_TRUE(t.set_instances({instance("web")}, t0, sealer));
  EXPECT_FALSE(t.needs_refresh(t0 + 3'599'000));
  EXPECT_TRUE(t.needs_refresh(t0 + 3'600'001));
}

// -- keys learned on demand --------------------------------------------------------------------

TEST(routing_table_keys, unknown_key_waits_for_its_chain) {
  routing_config cfg;
  cfg.self = "self";
  auto trust = std::make_shared<fake_trust>(false);
  routing_table t{cfg, trust};
  auto r = signed_owner("a", 1, {instance("web")});
  EXPECT_EQ(t.merge(r, t0).outcome, merge_outcome::pending);
  EXPECT_EQ(t.merge(r, t0).outcome, merge_outcome::pending); // held once
  ASSERT_EQ(t.wanted_keys(), std::vector<std::string>{fake_key_id("a")});
  auto applied = t.learn_chain(fake_chain("a"), t0);
  ASSERT_TRUE(applied);
  ASSERT_EQ(applied->size(), 1u);
  EXPECT_NE(t.owner("a"), nullptr);
  EXPECT_TRUE(t.wanted_keys().empty());
}

TEST(routing_table_keys, refused_chain_drops_its_pending_records) {
  routing_config cfg;
  cfg.self = "self";
  auto trust = std::make_shared<fake_trust>(false);
  trust->rogues.insert("rogue");
  routing_table t{cfg, trust};
  ASSERT_EQ(t.merge(signed_owner("rogue", 1, {instance("web")}), t0).outcome,
            merge_outcome::pending);
  EXPECT_FALSE(t.learn_chain(fake_chain("rogue"), t0));
  EXPECT_EQ(t.owner("rogue"), nullptr);
  EXPECT_TRUE(t.wanted_keys().empty());
  EXPECT_EQ(t.stats().pending_dropped, 1u);
  EXPECT_EQ(t.stats().chains_refused, 1u);
}

TEST(routing_table_keys, pending_records_are_bounded) {
  routing_config cfg;
  cfg.self = "self";
  cfg.max_pending = 3;
  routing_table t{cfg, std::make_shared<fake_trust>(false)};
  for (int k = 0; k < 3; ++k)
    EXPECT_EQ(t.merge(signed_owner("n" + std::to_string(k), 1, {}), t0).outcome,
              merge_outcome::pending);
  auto res = t.merge(signed_owner("n9", 1, {}), t0);
  EXPECT_EQ(res.outcome, merge_outcome::refused);
  EXPECT_EQ(t.stats().pending_dropped, 1u);
}

// -- policies ----------------------------------------------------------------------------------

const policy_key web_split{policy_kind::split, "web", ""};

TEST(routing_table_policy, only_issuer_keys_may_write_policies) {
  auto t = make_table();
  auto by_issuer = signed_policy(web_split, split({{"v1", 90}, {"v2", 10}}), {t0, 0}, "i1");
  EXPECT_EQ(t.merge(by_issuer, t0).outcome, merge_outcome::applied);
  // A plain member signs with its own key: refused, however new its stamp.
  auto by_member = signed_policy(web_split, split({{"v2", 100}}), {t0 + 50, 0}, "rogue");
  auto res = t.merge(by_member, t0 + 60);
  EXPECT_TRUE(is(res.error, routing_errc::not_authorized)) << to_string(res.error);
  // An issuer's name as writer, signed by the member's key: refused too.
  auto impersonating = signed_policy(web_split, split({{"v2", 100}}), {t0 + 50, 0}, "i1", "rogue");
  res = t.merge(impersonating, t0 + 60);
  EXPECT_TRUE(is(res.error, routing_errc::not_authorized)) << to_string(res.error);
  EXPECT_EQ(std::get<std::vector<split_weight>>(t.policy(web_split)->value).front().weight, 90u);
  // A member's own table refuses to sign one.
  auto member_table = make_table("rogue");
  fake_sealer member("rogue");
  static_cast<void>(
      member_table.merge(signed_owner("a", 1, {instance("web", "v1"), instance("web2")}), t0));
  auto w = member_table.set_policy(web_split, split({{"v1", 100}}), t0, member);
  EXPECT_TRUE(is(w.error(), routing_errc::no_authority));
}

TEST(routing_table_policy, last_writer_wins_with_node_name_breaking_ties) {
  auto t = make_table();
  auto early = signed_policy(web_split, split({{"v1", 100}}), {t0, 5}, "i2");
  auto late = signed_policy(web_split, split({{"v2", 100}}), {t0, 6}, "i1");
  auto tie_low = signed_policy(web_split, split({{"v1", 50}, {"v2", 50}}), {t0, 6}, "i0");
  EXPECT_EQ(t.merge(late, t0).outcome, merge_outcome::applied);
  EXPECT_EQ(t.merge(early, t0).outcome, merge_outcome::stale);
  // "i0" < "i1": same stamp, lower writer loses. (i0 is not an issuer in the fake trust,
  // but a losing write is decided before its signature is even checked.)
  EXPECT_EQ(t.merge(tie_low, t0).outcome, merge_outcome::stale);
  EXPECT_EQ(t.policy(web_split)->writer, "i1");
}

TEST(routing_table_policy, bad_splits_and_routes_are_refused) {
  auto t = make_table("i1");
  fake_sealer issuer("i1", true);
  ASSERT_EQ(t.merge(signed_owner("a", 1, {instance("web", "v1")}), t0).outcome,
            merge_outcome::applied);
  ASSERT_EQ(t.merge(signed_owner("b", 1, {instance("web", "v2")}), t0).outcome,
            merge_outcome::applied);
  auto not_100 = t.set_policy(web_split, split({{"v1", 90}, {"v2", 20}}), t0, issuer);
  EXPECT_TRUE(is(not_100.error(), routing_errc::invalid_policy));
  EXPECT_NE(to_string(not_100.error()).find("sum to 110"), std::string::npos);
  auto unknown_version = t.set_policy(web_split, split({{"v1", 50}, {"v3", 50}}), t0, issuer);
  EXPECT_TRUE(is(unknown_version.error(), routing_errc::invalid_policy));
  EXPECT_NE(to_string(unknown_version.error()).find("v3"), std::string::npos);
  policy_key route{policy_kind::route, "web", "beta"};
  auto bad_route =
      t.set_policy(route, header_route{"beta", "x-user-group", "beta", "v9"}, t0, issuer);
  EXPECT_TRUE(is(bad_route.error(), routing_errc::invalid_policy));
  auto ok_route =
      t.set_policy(route, header_route{"beta", "x-user-group", "beta", "v2"}, t0, issuer);
  ASSERT_TRUE(ok_route) << to_string(ok_route.error());
  auto ok = t.set_policy(web_split, split({{"v2", 10}, {"v1", 90}}), t0, issuer);
  ASSERT_TRUE(ok) << to_string(ok.error());
  EXPECT_EQ(std::get<std::vector<split_weight>>(ok->value).front().version, "v1"); // sorted
  auto nothing = t.set_policy({policy_kind::resilience, "web", ""}, std::monostate{}, t0, issuer);
  EXPECT_TRUE(is(nothing.error(), routing_errc::invalid_policy));
  // The same checks refuse a peer's record (the sum; a version a peer may not know yet is
  // only checked where the operator writes).
  auto peer_bad = signed_policy(web_split, split({{"v1", 99}}), {t0 + 10, 0}, "i2");
  EXPECT_TRUE(is(t.merge(peer_bad, t0 + 10).error, routing_errc::invalid_policy));
}

TEST(routing_table_policy, out_of_range_breaker_and_ejection_settings_are_refused) {
  auto t = make_table("i1");
  fake_sealer issuer("i1", true);
  const policy_key key{policy_kind::resilience, "web", ""};
  struct bad {
    resilience_policy value;
    const char* says;
  };
  std::vector<bad> cases(6);
  cases[0] = {{}, "caps are 1 to"};
  cases[0].value.max_requests = 0;
  cases[5] = {{}, "caps are 1 to"};
  cases[5].value.max_pending = 0;
  cases[1] = {{}, "caps are 1 to"};
  cases[1].value.max_connections = max_breaker_cap + 1;
  cases[2] = {{}, "1000 failures"};
  cases[2].value.eject_consecutive_connect_failures = 1001;
  cases[3] = {{}, "ejection time"};
  cases[3].value.ejection_time_ms = 0;
  cases[4] = {{}, "share over 100"};
  cases[4].value.max_ejection_percent = 101;
  for (const auto& c : cases) {
    auto res = t.set_policy(key, c.value, t0, issuer);
    ASSERT_FALSE(res) << c.says;
    EXPECT_TRUE(is(res.error(), routing_errc::invalid_policy));
    EXPECT_NE(to_string(res.error()).find(c.says), std::string::npos) << to_string(res.error());
    // A peer's record with the same value is refused as well.
    auto peer = signed_policy(key, c.value, {t0 + 10, 0}, "i2");
    EXPECT_TRUE(is(t.merge(peer, t0 + 10).error, routing_errc::invalid_policy)) << c.says;
  }
  resilience_policy fine;
  fine.max_requests = max_breaker_cap;
  fine.max_pending = 1;
  fine.eject_consecutive_5xx = 0;
  fine.max_ejection_percent = 0;
  EXPECT_TRUE(t.set_policy(key, fine, t0, issuer));
}

// max_pending came after the other fields: a policy without it must keep the canonical
// bytes (so the signature) an agent before it computed; with it, they differ.
TEST(routing_table_policy, max_pending_is_signed_only_when_set_and_keeps_older_bytes) {
  policy_record p;
  p.key = {policy_kind::resilience, "web", ""};
  p.stamp = {t0, 0};
  p.writer = "i1";
  resilience_policy r{2000, 500, 2, 20, 10};
  r.max_requests = 100;
  p.value = r;
  const auto before = canonical_bytes(p);
  // The layout before max_pending ends the record: its last four (presence, value) pairs
  // are the unset ejection settings, five zero bytes each.
  ASSERT_GE(before.size(), 20u);
  EXPECT_EQ(before.substr(before.size() - 20), std::string(20, '\0'));
  r.max_pending = 7;
  p.value = r;
  const auto after = canonical_bytes(p);
  EXPECT_EQ(after.size(), before.size() + 5);
  EXPECT_EQ(after.substr(0, before.size()), before);
  r.max_pending = 8;
  p.value = r;
  EXPECT_NE(canonical_bytes(p), after); // the value is signed
}

TEST(routing_table_policy, deletes_are_tombstones_collected_after_their_ttl) {
  routing_config cfg;
  cfg.self = "i1";
  cfg.tombstone_ttl = std::chrono::hours{1};
  routing_table t{cfg, std::make_shared<fake_trust>(true, issuers)};
  fake_sealer issuer("i1", true);
  ASSERT_EQ(t.merge(signed_owner("a", 1, {instance("web", "v1")}), t0).outcome,
            merge_outcome::applied);
  auto set = t.set_policy(web_split, split({{"v1", 100}}), t0, issuer);
  ASSERT_TRUE(set);
  auto del = t.set_policy(web_split, std::monostate{}, t0 + 1, issuer);
  ASSERT_TRUE(del) << to_string(del.error());
  EXPECT_TRUE(t.policy(web_split)->deleted);
  // The older value arriving late does not revive it.
  auto other = make_table();
  EXPECT_EQ(other.merge(*del, t0 + 2).outcome, merge_outcome::applied);
  EXPECT_EQ(other.merge(*set, t0 + 2).outcome, merge_outcome::stale);
  auto snap = other.snapshot({}, 1);
  EXPECT_EQ(snap.find("web"), nullptr);
  // Collected after the ttl; an old tombstone is refused afterwards.
  EXPECT_EQ(t.collect_garbage(t0 + 3'600'002), 1u);
  EXPECT_EQ(t.policy(web_split), nullptr);
  EXPECT_TRUE(is(t.merge(*del, t0 + 3'600'002).error, routing_errc::expired));
}

TEST(routing_table_policy, policies_are_bounded) {
  routing_config cfg;
  cfg.self = "self";
  cfg.max_policies = 2;
  routing_table t{cfg, std::make_shared<fake_trust>(true, issuers)};
  for (const char* svc : {"a", "b"})
    ASSERT_EQ(t.merge(signed_policy({policy_kind::resilience, svc, ""},
                                    resilience_policy{1000, 0, 1, 20, 10}, {t0, 0}, "i1"),
                      t0)
                  .outcome,
              merge_outcome::applied);
  auto res = t.merge(signed_policy({policy_kind::resilience, "c", ""},
                                   resilience_policy{1000, 0, 1, 20, 10}, {t0, 0}, "i1"),
                     t0);
  EXPECT_TRUE(is(res.error, routing_errc::table_full));
}

// -- clocks ------------------------------------------------------------------------------------

TEST(routing_table_clock, a_stamp_far_in_the_future_is_refused) {
  auto t = make_table();
  auto ahead = signed_policy(web_split, split({{"v1", 100}}), {t0 + 60 * 60'000, 0}, "i1");
  auto res = t.merge(ahead, t0);
  EXPECT_TRUE(is(res.error, routing_errc::clock_skew)) << to_string(res.error);
  EXPECT_EQ(t.policy(web_split), nullptr);
  // A clock 5 minutes fast is within the allowance: taken, and this node's clock follows.
  auto slightly = signed_policy(web_split, split({{"v1", 100}}), {t0 + 300'000, 0}, "i1");
  EXPECT_EQ(t.merge(slightly, t0).outcome, merge_outcome::applied);
  EXPECT_EQ(t.clock().last(), slightly.stamp);
}

TEST(routing_table_clock, a_node_five_minutes_behind_still_writes_after_what_it_saw) {
  // i2's wall clock is 5 minutes slow; it saw i1's write and overrides it.
  auto i1 = make_table("i1");
  auto i2 = make_table("i2");
  fake_sealer s1("i1", true), s2("i2", true);
  for (auto* t : {&i1, &i2})
    ASSERT_EQ(
        t->merge(signed_owner("a", 1, {instance("web", "v1"), instance("web2", "v2")}), t0).outcome,
        merge_outcome::applied);
  auto first = i1.set_policy({policy_kind::resilience, "web", ""},
                             resilience_policy{1000, 0, 1, 20, 10}, t0, s1);
  ASSERT_TRUE(first);
  ASSERT_EQ(i2.merge(*first, t0 - 300'000).outcome, merge_outcome::applied);
  auto second = i2.set_policy({policy_kind::resilience, "web", ""},
                              resilience_policy{2000, 0, 2, 20, 10}, t0 - 299'000, s2);
  ASSERT_TRUE(second);
  EXPECT_GT(second->stamp, first->stamp);
  EXPECT_EQ(i1.merge(*second, t0 + 1000).outcome, merge_outcome::applied);
  EXPECT_EQ(std::get<resilience_policy>(i1.policy({policy_kind::resilience, "web", ""})->value)
                .timeout_ms,
            2000u);
}

// -- the snapshot ------------------------------------------------------------------------------

TEST(routing_table_snapshot, membership_decides_what_is_routable) {
  auto t = make_table();
  auto healthy = instance("web", "v1");
  auto failing = instance("web", "v2", 8081);
  failing.id = "web-2";
  failing.health = health_status::failing;
  auto no_address = instance("api");
  no_address.address.clear();
  ASSERT_EQ(t.merge(signed_owner("a", 1, {healthy, failing, no_address}), t0).outcome,
            merge_outcome::applied);
  ASSERT_EQ(t.merge(signed_owner("dead", 1, {instance("web", "v1", 9000)}), t0).outcome,
            merge_outcome::applied);
  member_lookup members = [](std::string_view node) -> std::optional<member_view> {
    if (node == "a")
      return member_view{true, "10.1.1.1"};
    if (node == "dead")
      return member_view{false, "10.9.9.9"};
    return std::nullopt;
  };
  auto snap = t.snapshot(members, 7);
  EXPECT_EQ(snap.generation, 7u);
  ASSERT_EQ(snap.services.size(), 2u);
  const auto* web = snap.find("web");
  ASSERT_NE(web, nullptr);
  ASSERT_EQ(web->instances.size(), 3u);
  auto routable = web->routable();
  ASSERT_EQ(routable.size(), 1u);
  EXPECT_EQ(routable.front()->node, "a");
  EXPECT_EQ(routable.front()->port, 8080);
  const auto* api = snap.find("api");
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->instances.front().address, "10.1.1.1"); // the node's own host
  EXPECT_TRUE(api->instances.front().routable());
  EXPECT_EQ(snap.find("nope"), nullptr);
}

} // namespace
} // namespace starling::gossip
