// Spreading the routing table (gossip/routing_gossip.hpp) over real membership cores in
// memory (tests/support/core_harness.hpp): piggybacked records reach every node, a push-pull
// converges two tables in one exchange and brings the chains of unknown signers, a partition
// heals to identical tables, and forged records stop at the first node.
#include <gtest/gtest.h>

#include "gossip/codec.hpp"
#include "gossip/routing_errc.hpp"
#include "gossip/routing_gossip.hpp"
#include "tests/support/core_harness.hpp"
#include "tests/support/routing_fakes.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;
using test_support::cluster_config;
using test_support::core_cluster;
using test_support::fake_chain;
using test_support::fake_sealer;
using test_support::fake_trust;

constexpr std::uint64_t wall0 = 1'800'000'000'000;

service_registration instance(std::string service, std::string version) {
  service_registration r;
  r.service = std::move(service);
  r.id = r.service + "-" + version;
  r.address = "10.0.0.1";
  r.port = 8080;
  r.version = std::move(version);
  return r;
}

/// A cluster whose nodes each run a routing extension. Keys: every node knows only its own
/// key and the issuer's at the start, so chains must travel (knows_everyone = false).
struct routing_cluster {
  explicit routing_cluster(std::vector<std::string> names, std::uint64_t seed = 71,
                           bool knows_everyone = false,
                           std::size_t inline_max = default_inline_section_max)
      : names(std::move(names)), net(cluster_config(), seed) {
    for (const auto& n : this->names) {
      net.add(n);
      auto trust = std::make_shared<fake_trust>(knows_everyone, std::set<std::string>{"i1"});
      static_cast<void>(trust->learn(fake_chain(n, n == "i1"), wall0));
      routing_config cfg;
      cfg.self = n;
      auto table = std::make_shared<routing_table>(cfg, trust);
      exts[n] = std::make_shared<routing_extension>(table, net.now(), wall0, payload_queue_config{},
                                                    inline_max);
      EXPECT_FALSE(net.core(n).add_extension(routing_extension_kind, "routing", exts[n]));
    }
    for (std::size_t i = 1; i < this->names.size(); ++i)
      net.join(this->names[i], this->names[0]);
  }

  routing_table& table(const std::string& n) { return exts[n]->table(); }

  /// Registers `instances` on node `n` and queues the record.
  void register_on(const std::string& n, std::vector<service_registration> instances) {
    fake_sealer sealer(n, n == "i1");
    auto r = table(n).set_instances(std::move(instances), exts[n]->wall_ms(net.now()), sealer);
    ASSERT_TRUE(r) << to_string(r.error());
    exts[n]->publish(*r);
  }

  bool all_equal() {
    for (const auto& n : names)
      if (table(n).digest() != table(names[0]).digest())
        return false;
    return true;
  }

  std::vector<std::string> names;
  core_cluster net;
  std::map<std::string, std::shared_ptr<routing_extension>> exts;
};

TEST(routing_gossip, a_policy_reaches_every_node_by_piggybacking_alone) {
  routing_cluster c{{"i1", "n2", "n3", "n4", "n5", "n6"}, 71, true};
  c.net.run_for(5s);
  c.register_on("n3", {instance("web", "v1"), instance("api", "v1")});
  c.register_on("n4", {instance("web", "v2")});
  c.net.run_for(3s);
  // Push-pull (30 s) has not run since the joins: only piggybacking spread this.
  fake_sealer issuer("i1", true);
  auto split = c.table("i1").set_policy({policy_kind::split, "web", ""},
                                        std::vector<split_weight>{{"v1", 90}, {"v2", 10}},
                                        c.exts["i1"]->wall_ms(c.net.now()), issuer);
  ASSERT_TRUE(split) << to_string(split.error());
  c.exts["i1"]->publish(*split);
  c.net.run_for(3s);
  for (const auto& n : c.names) {
    SCOPED_TRACE(n);
    const auto* p = c.table(n).policy({policy_kind::split, "web", ""});
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, *split);
    EXPECT_NE(c.table(n).owner("n3"), nullptr);
    EXPECT_NE(c.table(n).owner("n4"), nullptr);
  }
  EXPECT_TRUE(c.all_equal());
}

TEST(routing_gossip, unknown_signers_chains_arrive_by_push_pull) {
  // Nobody knows anyone's key at first: a piggybacked record waits, its receiver asks the
  // sender for a push-pull, and the section brings the chain.
  routing_cluster c{{"i1", "n2", "n3", "n4"}};
  c.net.run_for(5s);
  c.register_on("n2", {instance("web", "v1")});
  c.net.run_for(10s);
  for (const auto& n : c.names) {
    SCOPED_TRACE(n);
    EXPECT_NE(c.table(n).owner("n2"), nullptr);
    EXPECT_TRUE(c.table(n).wanted_keys().empty());
  }
  EXPECT_TRUE(c.all_equal());
  EXPECT_GT(c.table("n4").stats().chains_learned + c.table("n3").stats().chains_learned, 0u);
}

TEST(routing_gossip, one_push_pull_converges_two_tables) {
  routing_config cfg;
  cfg.self = "a";
  auto ta = std::make_shared<routing_table>(
      cfg, std::make_shared<fake_trust>(true, std::set<std::string>{"a"}));
  cfg.self = "b";
  auto tb = std::make_shared<routing_table>(
      cfg, std::make_shared<fake_trust>(true, std::set<std::string>{"a"}));
  fake_sealer sa("a", true), sb("b");
  ASSERT_TRUE(ta->set_instances({instance("web", "v1")}, wall0, sa));
  ASSERT_TRUE(tb->set_instances({instance("api", "v1")}, wall0, sb));
  ASSERT_TRUE(ta->set_policy({policy_kind::split, "web", ""},
                             std::vector<split_weight>{{"v1", 100}}, wall0, sa));
  routing_gossip ga(*ta), gb(*tb);
  // a's section to b (the request), b's merged section back (the answer).
  auto res_b = gb.on_section(ga.make_section(), "a", wall0 + 1);
  EXPECT_EQ(res_b.applied, 2u);
  auto res_a = ga.on_section(gb.make_section(), "b", wall0 + 1);
  EXPECT_EQ(res_a.applied, 1u);
  EXPECT_EQ(ta->digest(), tb->digest());
  EXPECT_EQ(ta->owners(), tb->owners());
  EXPECT_EQ(ta->policies(), tb->policies());
}

/// Cuts `c` in two halves, registers an instance on each side, heals, and checks that every
/// table holds both and all are identical.
void partition_and_heal(routing_cluster& c) {
  c.net.run_for(5s);
  const std::set<std::string> left{"i1", "n2", "n3"};
  c.net.set_cut([&](const std::string& from, const std::string& to) {
    return left.contains(from) != left.contains(to);
  });
  c.register_on("n2", {instance("web", "v1")});
  c.register_on("n5", {instance("web", "v2")});
  c.net.run_for(8s);
  EXPECT_EQ(c.table("n4").owner("n2"), nullptr); // cut off
  c.net.set_cut({});
  c.net.run_for(120s); // members come back, push-pulls run
  EXPECT_TRUE(c.all_equal());
  for (const auto& n : c.names) {
    EXPECT_NE(c.table(n).owner("n2"), nullptr) << n;
    EXPECT_NE(c.table(n).owner("n5"), nullptr) << n;
    EXPECT_TRUE(c.table(n).wanted_keys().empty()) << n;
  }
}

TEST(routing_gossip, a_partition_heals_to_identical_tables) {
  routing_cluster c{{"i1", "n2", "n3", "n4", "n5", "n6"}, 5, true};
  partition_and_heal(c);
}

TEST(routing_gossip, a_partition_heals_by_pulling_ranges_when_sections_carry_digests_alone) {
  // inline_section_max 0: every section is the digest alone, so records cross only in the
  // answers to pulls; chains of unknown signers too (nobody knows anyone's key at first).
  routing_cluster c{{"i1", "n2", "n3", "n4", "n5", "n6"}, 9, false, 0};
  partition_and_heal(c);
  std::uint64_t pulls = 0, digest_only = 0;
  for (const auto& n : c.names) {
    pulls += c.exts[n]->spreader().stats().pulls_in;
    digest_only += c.exts[n]->spreader().stats().sections_digest_only;
  }
  EXPECT_GT(pulls, 0u);
  EXPECT_GT(digest_only, 0u); // every section of a non-empty table
  EXPECT_GT(c.net.extension_requests(), 0u);
}

/// Two tables of `owners` owner records each, `shared` of them the same on both sides.
struct two_tables {
  two_tables(std::size_t owners, std::size_t shared, std::size_t inline_max = 0,
             std::size_t max_section = max_extension_section_bytes) {
    routing_config cfg;
    cfg.self = "a";
    ta = std::make_shared<routing_table>(cfg, std::make_shared<fake_trust>(true));
    cfg.self = "b";
    tb = std::make_shared<routing_table>(cfg, std::make_shared<fake_trust>(true));
    for (std::size_t k = 0; k < owners; ++k) {
      owner_record r;
      r.owner = "n" + std::to_string(k);
      r.version = 1;
      r.stamp = {wall0, 0};
      r.instances = {instance("svc" + std::to_string(k), "v1")};
      r.seal = *fake_sealer(r.owner).seal(routing_context::owner, canonical_bytes(r));
      EXPECT_EQ(ta->merge(r, wall0).outcome, merge_outcome::applied);
      if (k < shared) {
        EXPECT_EQ(tb->merge(r, wall0).outcome, merge_outcome::applied);
      }
    }
    ga = std::make_unique<routing_gossip>(*ta, max_section, inline_max);
    gb = std::make_unique<routing_gossip>(*tb, max_section, inline_max);
  }
  std::shared_ptr<routing_table> ta, tb;
  std::unique_ptr<routing_gossip> ga, gb;
};

TEST(routing_pull, a_large_table_sends_its_digest_and_the_peer_pulls_only_what_differs) {
  two_tables t{300, 299};
  // The section b receives is the digest alone (far smaller than the table)...
  const auto section = t.ga->make_section();
  EXPECT_LT(section.size(), 1024u);
  EXPECT_EQ(t.ga->stats().sections_digest_only, 1u);
  auto res = t.gb->on_section(section, "a", wall0 + 1);
  EXPECT_EQ(res.applied, 0u);
  ASSERT_EQ(res.pulls.size(), 1u);
  EXPECT_EQ(res.pulls[0].to, "a");
  // ...b pulls the one differing range, with its summaries of that range...
  auto pull = decode_routing_pull(res.pulls[0].body);
  ASSERT_TRUE(pull);
  EXPECT_EQ(pull->ranges.size(), 1u);
  // ...and the answer holds the one record b lacks.
  auto answer = t.ga->answer_pull(res.pulls[0].body, "b");
  ASSERT_TRUE(answer);
  auto decoded = decode_routing_section(*answer);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->owners.size(), 1u);
  EXPECT_FALSE(decoded->partial);
  auto merged = t.gb->on_pull_answer(*answer, "a", wall0 + 1);
  EXPECT_EQ(merged.applied, 1u);
  EXPECT_TRUE(merged.pulls.empty());
  EXPECT_EQ(t.ta->digest(), t.tb->digest());
  EXPECT_EQ(t.gb->stats().pulls_out, 1u);
  EXPECT_EQ(t.ga->stats().pulls_in, 1u);
  EXPECT_EQ(t.gb->stats().pull_answers_in, 1u);
}

TEST(routing_pull, equal_tables_pull_nothing_and_small_tables_travel_whole) {
  two_tables same{50, 50};
  EXPECT_TRUE(same.gb->on_section(same.ga->make_section(), "a", wall0).pulls.empty());
  two_tables small{5, 0, default_inline_section_max};
  auto res = small.gb->on_section(small.ga->make_section(), "a", wall0);
  EXPECT_EQ(res.applied, 5u);
  EXPECT_TRUE(res.pulls.empty());
  EXPECT_EQ(small.ga->stats().sections_digest_only, 0u);
}

TEST(routing_pull, an_empty_table_pulls_everything_and_a_partial_answer_pulls_the_rest) {
  // Answers of at most 8 KiB: the 300 records arrive over several pulls, each asked because
  // the previous answer was partial and brought news.
  two_tables t{300, 0, 0, 16u << 10};
  auto res = t.gb->on_section(t.ga->make_section(), "a", wall0);
  ASSERT_EQ(res.pulls.size(), 1u);
  std::size_t rounds = 0;
  while (!res.pulls.empty() && rounds < 100) {
    ++rounds;
    auto answer = t.ga->answer_pull(res.pulls[0].body, "b");
    ASSERT_TRUE(answer);
    EXPECT_LE(answer->size(), 16u << 10);
    res = t.gb->on_pull_answer(*answer, "a", wall0);
  }
  EXPECT_GT(rounds, 1u);
  EXPECT_LT(rounds, 100u);
  EXPECT_EQ(t.ta->digest(), t.tb->digest());
}

TEST(routing_pull, malformed_pulls_are_refused_and_counted) {
  two_tables t{10, 0};
  routing_pull bad_range;
  bad_range.ranges = {64};
  routing_pull repeated;
  repeated.ranges = {3, 3};
  routing_pull long_key;
  long_key.ranges = {1};
  long_key.have = {{std::string(max_summary_key_bytes + 1, 'k'), 1}};
  for (const auto& bytes :
       {std::string("\xff\xff\xff"), encode_routing(bad_range), encode_routing(repeated),
        encode_routing(long_key), std::string(max_pull_bytes + 1, '\0')}) {
    auto answer = t.ga->answer_pull(bytes, "b");
    ASSERT_FALSE(answer);
    EXPECT_EQ(answer.error().code(), static_cast<std::uint8_t>(routing_errc::malformed));
  }
  EXPECT_EQ(t.ga->stats().pulls_malformed, 5u);
  EXPECT_EQ(t.ga->stats().pulls_in, 0u);
  // A partial answer that brings nothing new does not pull again (no pull loop).
  two_tables same{300, 300, 0, 16u << 10};
  routing_section s;
  s.digest = routing_digest{}; // claims to differ everywhere
  s.partial = true;
  EXPECT_TRUE(same.gb->on_pull_answer(encode_routing(s), "a", wall0).pulls.empty());
}

TEST(routing_gossip, a_forged_record_stops_at_the_first_node) {
  routing_cluster c{{"i1", "n2", "n3", "n4"}, 9, true};
  c.net.run_for(5s);
  c.register_on("n2", {instance("web", "v1")});
  c.net.run_for(3s);
  // n3 turned hostile: it writes instances of n2 (to reroute web) and a split, signed with
  // its own key, straight into its table and out by gossip.
  owner_record forged = *c.table("n2").owner("n2");
  forged.version += 10;
  forged.instances[0].address = "10.6.6.6";
  fake_sealer rogue("n3");
  rogue.sign_anything = true;
  forged.seal = *rogue.seal(routing_context::owner, canonical_bytes(forged));
  policy_record split;
  split.key = {policy_kind::split, "web", ""};
  split.value = std::vector<split_weight>{{"v1", 100}};
  split.writer = "n3";
  split.stamp = {c.exts["n3"]->wall_ms(c.net.now()), 0};
  split.seal = *rogue.seal(routing_context::policy, canonical_bytes(split));
  // Straight into n3's piggyback queue (publish does not merge): every neighbour hears it.
  c.exts["n3"]->publish(forged);
  c.exts["n3"]->publish(split);
  ASSERT_EQ(c.exts["n3"]->queue().size(), 2u);
  c.net.run_for(10s);
  for (const auto& n : {"i1", "n2", "n4"}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(c.table(n).owner("n2")->instances[0].address, "10.0.0.1");
    EXPECT_EQ(c.table(n).policy({policy_kind::split, "web", ""}), nullptr);
    const auto& refused = c.table(n).stats().refused;
    EXPECT_GT(refused[static_cast<int>(routing_errc::not_owner)] +
                  refused[static_cast<int>(routing_errc::not_authorized)],
              0u);
  }
}

TEST(routing_gossip, records_too_large_to_piggyback_are_counted_and_spread_by_push_pull) {
  routing_config cfg;
  cfg.self = "a";
  routing_table t{cfg, std::make_shared<fake_trust>(true)};
  routing_gossip g(t);
  std::vector<service_registration> many;
  for (int k = 0; k < 30; ++k)
    many.push_back(instance("svc" + std::to_string(k), "v1"));
  fake_sealer s("a");
  auto r = t.set_instances(many, wall0, s);
  ASSERT_TRUE(r);
  EXPECT_FALSE(g.publication(*r));
  EXPECT_EQ(g.stats().too_large_to_piggyback, 1u);
  routing_config cfg2;
  cfg2.self = "b";
  routing_table other{cfg2, std::make_shared<fake_trust>(true)};
  routing_gossip g2(other);
  EXPECT_EQ(g2.on_section(g.make_section(), "a", wall0).applied, 1u);
}

TEST(routing_gossip, malformed_bytes_are_refused_and_counted) {
  routing_config cfg;
  cfg.self = "a";
  routing_table t{cfg, std::make_shared<fake_trust>(true)};
  routing_gossip g(t);
  EXPECT_TRUE(g.on_payload("\xff\xff\xff", "x", wall0).error);
  EXPECT_TRUE(g.on_section("\x0a\x05zz", "x", wall0).error);
  EXPECT_EQ(g.stats().payloads_malformed, 1u);
  EXPECT_EQ(g.stats().sections_malformed, 1u);
}

} // namespace
} // namespace starling::gossip

namespace starling::gossip {
namespace {

routing_table open_table(const std::string& self) {
  routing_config cfg;
  cfg.self = self;
  return routing_table{cfg, std::make_shared<fake_trust>(true)};
}

std::string note_of(std::uint64_t hash, std::uint32_t records) {
  routing_payload p;
  p.note = routing_note{hash, records};
  return encode_routing(p);
}

TEST(routing_notes, a_table_that_stays_different_asks_for_a_push_pull) {
  auto t = open_table("a");
  routing_gossip g(t);
  // The same table: nothing to do.
  EXPECT_TRUE(g.on_payload(g.note_payload(), "b", wall0).push_pull_with.empty());
  // A different one: the first note starts the wait, a later one past the hold asks.
  const auto other = note_of(42, 1);
  EXPECT_TRUE(g.on_payload(other, "b", wall0).push_pull_with.empty());
  EXPECT_TRUE(g.on_payload(other, "b", wall0 + 1999).push_pull_with.empty());
  EXPECT_EQ(g.on_payload(other, "b", wall0 + 2000).push_pull_with, std::vector<std::string>{"b"});
  // At most one ask per hold, and again while it stays different (an ask the membership
  // core dropped for a dead peer is not the end of it).
  EXPECT_TRUE(g.on_payload(other, "c", wall0 + 3000).push_pull_with.empty());
  EXPECT_EQ(g.on_payload(other, "c", wall0 + 4000).push_pull_with, std::vector<std::string>{"c"});
  EXPECT_EQ(g.stats().anti_entropy_asks, 2u);
  EXPECT_EQ(g.stats().notes_in, 6u);
  EXPECT_EQ(g.stats().notes_differing, 5u);
}

TEST(routing_notes, a_changing_table_waits_for_the_change_to_arrive) {
  auto t = open_table("a");
  routing_gossip g(t);
  fake_sealer s("a");
  const auto other = note_of(42, 1);
  EXPECT_TRUE(g.on_payload(other, "b", wall0).push_pull_with.empty());
  // Our table changes (a change is spreading): the wait starts again.
  ASSERT_TRUE(t.set_instances({instance("web", "v1")}, wall0 + 1500, s));
  EXPECT_TRUE(g.on_payload(other, "b", wall0 + 2500).push_pull_with.empty());
  EXPECT_TRUE(g.on_payload(other, "b", wall0 + 4000).push_pull_with.empty());
  EXPECT_EQ(g.on_payload(other, "b", wall0 + 4500).push_pull_with, std::vector<std::string>{"b"});
  // Equal again: the wait is over.
  EXPECT_TRUE(g.on_payload(g.note_payload(), "b", wall0 + 9000).push_pull_with.empty());
  EXPECT_TRUE(g.on_payload(other, "b", wall0 + 9001).push_pull_with.empty());
}

TEST(routing_notes, notes_ride_once_a_second_within_the_budget) {
  note_pacer pacer;
  piggyback_request req;
  req.budget = 1000;
  req.max_count = 8;
  req.now = time_point{} + std::chrono::hours{1};
  std::vector<std::string> payloads;
  const auto note = note_of(1, 2);
  pacer.add(payloads, req, note);
  EXPECT_EQ(payloads.size(), 1u);
  req.now += 999ms;
  pacer.add(payloads, req, note);
  EXPECT_EQ(payloads.size(), 1u);
  req.now += 1ms;
  req.budget = extension_payload_bound(routing_extension_kind, note.size()) - 1;
  std::vector<std::string> none;
  pacer.add(none, req, note);
  EXPECT_TRUE(none.empty()); // does not fit
  req.budget = 1000;
  req.max_count = 0;
  pacer.add(none, req, note);
  EXPECT_TRUE(none.empty()); // no room in the count
  req.max_count = 1;
  pacer.add(none, req, note);
  EXPECT_EQ(none.size(), 1u);
  auto back = decode_routing_payload(none.front());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->note, (routing_note{1, 2}));
}

} // namespace
} // namespace starling::gossip
