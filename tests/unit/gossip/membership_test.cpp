// Unit tests of the SWIM + Lifeguard membership core (gossip/membership.hpp): single cores
// fed hand-made packets, and small in-memory clusters (tests/support/core_harness.hpp).
// Time is always passed in; nothing sleeps.
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <gtest/gtest.h>

#include "gossip/errc.hpp"
#include "gossip/membership.hpp"
#include "tests/support/core_harness.hpp"
#include "tests/support/core_packets.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;
using test_support::core_cluster;
using namespace test_support;

member_update suspect(const std::string& name, std::uint64_t inc, const std::string& from) {
  return member_update{member_state::suspect, name, {}, inc, {}, from};
}

member_update dead(const std::string& name, std::uint64_t inc, const std::string& from) {
  return member_update{member_state::dead, name, {}, inc, {}, from};
}

member_update left(const std::string& name, std::uint64_t inc) {
  return member_update{member_state::left, name, {}, inc, {}, name};
}

packet make(packet_kind kind, std::uint32_t seq, const std::string& sender,
            const std::string& target = {}, const std::string& target_address = {}) {
  packet p;
  p.kind = kind;
  p.seq = seq;
  p.sender = sender;
  p.sender_address = addr(sender);
  p.target = target;
  p.target_address = target_address;
  return p;
}

/// The timing every expectation below is computed from, pinned here so that a change of
/// the library's defaults does not silently change what the tests check.
swim_config base_config() {
  swim_config cfg;
  cfg.probe_interval = 1s;
  cfg.probe_timeout = 400ms;
  return cfg;
}

/// Config where only probing runs on its own (gossip rounds and push-pull out of the way).
swim_config quiet_config() {
  swim_config cfg = base_config();
  cfg.gossip_interval = 24h;
  cfg.push_pull_interval = duration::zero();
  return cfg;
}

membership make_core(const std::string& name = "a", swim_config cfg = quiet_config(),
                     std::uint64_t seed = 1) {
  return membership{name, addr(name), {}, cfg, seed, t0};
}

/// Teaches `m` that `names` are alive (incarnation 0), as gossip from the first of them.
void add_members(membership& m, const std::vector<std::string>& names, time_point now = t0) {
  std::vector<member_update> ups;
  for (const auto& n : names)
    ups.push_back(alive(n, 0));
  (void)m.on_packet(gossip_from(names.front(), ups), now);
}

std::vector<member_event_kind> kinds(const effects& fx) {
  std::vector<member_event_kind> out;
  for (const auto& e : fx.events)
    out.push_back(e.kind);
  return out;
}

std::vector<outgoing> packets_of(const effects& fx, packet_kind kind) {
  std::vector<outgoing> out;
  for (const auto& o : fx.packets)
    if (o.message.kind == kind)
      out.push_back(o);
  return out;
}

bool carries(const packet& p, const member_update& u) {
  return std::find(p.updates.begin(), p.updates.end(), u) != p.updates.end();
}

// -- names -----------------------------------------------------------------------------------

TEST(types, to_string_names_are_stable) {
  EXPECT_EQ(to_string(member_state::alive), "alive");
  EXPECT_EQ(to_string(member_state::suspect), "suspect");
  EXPECT_EQ(to_string(member_state::dead), "dead");
  EXPECT_EQ(to_string(member_state::left), "left");
  EXPECT_EQ(to_string(member_event_kind::joined), "joined");
  EXPECT_EQ(to_string(member_event_kind::updated), "updated");
  EXPECT_EQ(to_string(member_event_kind::suspected), "suspected");
  EXPECT_EQ(to_string(member_event_kind::recovered), "recovered");
  EXPECT_EQ(to_string(member_event_kind::failed), "failed");
  EXPECT_EQ(to_string(member_event_kind::left), "left");
  EXPECT_EQ(to_string(member_event_kind::reaped), "reaped");
}

// -- state transitions -------------------------------------------------------------------------

TEST(membership, starts_alone_and_alive_with_its_own_alive_queued) {
  auto m = make_core();
  EXPECT_EQ(m.self().name, "a");
  EXPECT_EQ(m.self().state, member_state::alive);
  EXPECT_EQ(m.self().incarnation, 0u);
  EXPECT_EQ(m.members().size(), 1u);
  EXPECT_EQ(m.count(member_state::alive), 1u);
  EXPECT_EQ(m.pending_broadcasts(), 1u);
  EXPECT_GT(m.next_deadline(), t0);
  EXPECT_EQ(m.health_score(), 0u);
}

TEST(membership, alive_about_unknown_member_joins_it) {
  auto m = make_core();
  auto fx = m.on_packet(gossip_from("b", {alive("b", 3, {{"zone", "z1"}})}), t0);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  auto b = m.find("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->state, member_state::alive);
  EXPECT_EQ(b->incarnation, 3u);
  EXPECT_EQ(b->address, addr("b"));
  EXPECT_EQ(b->tags.at("zone"), "z1");
  EXPECT_EQ(b->since, t0);
  EXPECT_EQ(m.count(member_state::alive), 2u);
  EXPECT_EQ(m.stats().updates_applied, 1u);
}

TEST(membership, alive_incarnation_rules) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 3)}), t0);
  auto ignored = m.stats().updates_ignored;

  // Same incarnation, same data: a no-op, not an error.
  auto fx = m.on_packet(gossip_from("c", {alive("b", 3)}), t0);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.stats().updates_ignored, ignored);

  // Older, or same incarnation with other data: stale.
  fx = m.on_packet(gossip_from("c", {alive("b", 2), alive("b", 3, {{"x", "y"}})}), t0);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.stats().updates_ignored, ignored + 2);
  EXPECT_TRUE(m.find("b")->tags.empty());

  // Newer with the same data: applied silently.
  fx = m.on_packet(gossip_from("c", {alive("b", 4)}), t0 + 1s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.find("b")->incarnation, 4u);
  EXPECT_EQ(m.find("b")->since, t0) << "no state change";

  // Newer with new tags: updated.
  fx = m.on_packet(gossip_from("c", {alive("b", 5, {{"v", "2"}})}), t0 + 2s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::updated});
  EXPECT_EQ(fx.events[0].subject.tags.at("v"), "2");
}

TEST(membership, suspect_rules_and_recovery) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 2)}), t0);
  auto ignored = m.stats().updates_ignored;

  auto fx = m.on_packet(gossip_from("c", {suspect("b", 1, "c")}), t0);
  EXPECT_TRUE(fx.events.empty()) << "older incarnation";
  EXPECT_EQ(m.stats().updates_ignored, ignored + 1);

  fx = m.on_packet(gossip_from("c", {suspect("b", 2, "c")}), t0 + 1s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::suspected});
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  EXPECT_EQ(m.find("b")->since, t0 + 1s);
  EXPECT_EQ(m.count(member_state::suspect), 1u);

  // Suspect with a higher incarnation while suspect: takes the incarnation.
  fx = m.on_packet(gossip_from("c", {suspect("b", 3, "c")}), t0 + 2s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.find("b")->incarnation, 3u);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);

  // Alive at the same incarnation does not clear a suspicion; a higher one does.
  fx = m.on_packet(gossip_from("c", {alive("b", 3)}), t0 + 3s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  fx = m.on_packet(gossip_from("b", {alive("b", 4)}), t0 + 3s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::recovered});
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  EXPECT_EQ(m.count(member_state::suspect), 0u);

  // Unknown member: ignored.
  ignored = m.stats().updates_ignored;
  fx = m.on_packet(gossip_from("c", {suspect("zz", 0, "c")}), t0 + 4s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.stats().updates_ignored, ignored + 1);
}

TEST(membership, dead_rules_and_rejoin) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 2)}), t0);
  auto ignored = m.stats().updates_ignored;

  auto fx = m.on_packet(gossip_from("c", {dead("b", 1, "c")}), t0);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.stats().updates_ignored, ignored + 1);

  fx = m.on_packet(gossip_from("c", {dead("b", 2, "c")}), t0 + 1s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::failed});
  EXPECT_EQ(m.find("b")->state, member_state::dead);
  EXPECT_EQ(m.count(member_state::dead), 1u);
  EXPECT_EQ(m.count(member_state::alive), 1u);

  // Dead is final for that incarnation: suspect, dead, left, alive <= incarnation ignored.
  ignored = m.stats().updates_ignored;
  fx = m.on_packet(
      gossip_from("c", {suspect("b", 5, "c"), dead("b", 5, "c"), left("b", 5), alive("b", 2)}),
      t0 + 2s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.find("b")->state, member_state::dead);
  EXPECT_EQ(m.stats().updates_ignored, ignored + 4);

  // Alive with a higher incarnation brings it back.
  fx = m.on_packet(gossip_from("b", {alive("b", 3)}), t0 + 3s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  EXPECT_EQ(m.count(member_state::dead), 0u);
}

TEST(membership, left_is_a_graceful_dead) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 1), alive("c", 1)}), t0);
  auto fx = m.on_packet(gossip_from("b", {left("b", 2)}), t0);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::left});
  EXPECT_EQ(m.find("b")->state, member_state::left);
  // A dead declared by the member itself is a leave too.
  fx = m.on_packet(gossip_from("c", {dead("c", 1, "c")}), t0);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::left});
  EXPECT_EQ(m.find("c")->state, member_state::left);
  EXPECT_EQ(m.count(member_state::left), 2u);
}

TEST(membership, suspected_member_is_declared_dead_when_its_timer_fires) {
  auto m = make_core();
  add_members(m, {"b", "c", "d"});
  // n = 4 live: min = 4 s, max = 24 s, k = 2.
  auto fx = m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  (void)m.on_packet(gossip_from("d", {suspect("b", 0, "d")}), t0);
  EXPECT_EQ(m.next_deadline(), t0 + 1s) << "the probe comes first";
  auto deadline = t0 + std::chrono::duration_cast<duration>(std::chrono::duration<double>(
                           24.0 - 20.0 * std::log(2.0) / std::log(3.0)));
  fx = m.on_tick(deadline - 1ms);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  fx = m.on_tick(deadline + 1us);
  EXPECT_EQ(m.find("b")->state, member_state::dead);
  auto evs = kinds(fx);
  EXPECT_NE(std::find(evs.begin(), evs.end(), member_event_kind::failed), evs.end());
  EXPECT_EQ(m.find("b")->since, deadline + 1us);
}

// -- refutation --------------------------------------------------------------------------------

TEST(membership, refutes_suspect_and_dead_about_itself) {
  auto m = make_core();
  auto fx = m.on_packet(gossip_from("b", {suspect("a", 0, "b")}), t0);
  EXPECT_TRUE(fx.events.empty()) << "no events about self";
  EXPECT_EQ(m.self().incarnation, 1u);
  EXPECT_EQ(m.self().state, member_state::alive);
  EXPECT_EQ(m.stats().refutations, 1u);
  EXPECT_EQ(m.health_score(), 1u) << "having to refute is a sign of local trouble";

  (void)m.on_packet(gossip_from("b", {dead("a", 5, "b")}), t0);
  EXPECT_EQ(m.self().incarnation, 6u);
  EXPECT_EQ(m.stats().refutations, 2u);

  // Stale accusations are ignored.
  auto ignored = m.stats().updates_ignored;
  (void)m.on_packet(gossip_from("b", {suspect("a", 5, "b"), dead("a", 2, "b")}), t0);
  EXPECT_EQ(m.self().incarnation, 6u);
  EXPECT_EQ(m.stats().updates_ignored, ignored + 2);

  // A forged leave is refuted too.
  (void)m.on_packet(gossip_from("b", {left("a", 6)}), t0);
  EXPECT_EQ(m.self().incarnation, 7u);
  EXPECT_EQ(m.self().state, member_state::alive);

  // An alive of ours from a previous life (higher incarnation) is outbid.
  (void)m.on_packet(gossip_from("b", {alive("a", 10)}), t0);
  EXPECT_EQ(m.self().incarnation, 11u);
  EXPECT_EQ(m.stats().refutations, 4u);

  // The refutation is what we gossip next.
  auto pp = m.make_push_pull(false);
  auto self_entry = std::find_if(pp.members.begin(), pp.members.end(),
                                 [](const member_update& u) { return u.name == "a"; });
  ASSERT_NE(self_entry, pp.members.end());
  EXPECT_EQ(self_entry->incarnation, 11u);
  EXPECT_EQ(self_entry->state, member_state::alive);
}

TEST(membership, refutation_is_piggybacked_on_the_next_ack) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 0), suspect("a", 0, "b")}), t0);
  auto fx = m.on_packet(make(packet_kind::ping, 7, "b", "a"), t0);
  auto acks = packets_of(fx, packet_kind::ack);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_TRUE(carries(acks[0].message, alive("a", 1)));
}

// -- suspicion timers (Lifeguard dogpile) -------------------------------------------------------

class suspicion_timer : public ::testing::Test {
protected:
  /// a knows b..e: n = 5 live, min = 4 s, max = 24 s, k = 2.
  membership m = [] {
    auto cfg = quiet_config();
    cfg.probe_interval = 1s;
    auto m = make_core("a", cfg);
    add_members(m, {"b", "c", "d", "e"});
    return m;
  }();

  /// Ticks just before and at `deadline`, expecting b to die exactly then.
  void expect_death_at(time_point deadline) {
    (void)m.on_tick(deadline - 1ms);
    EXPECT_EQ(m.find("b")->state, member_state::suspect);
    (void)m.on_tick(deadline);
    EXPECT_EQ(m.find("b")->state, member_state::dead);
  }

  /// Lifeguard: an unconfirmed timer running out at `deadline` does not kill b by itself:
  /// our own probe of b (with the suspicion first in it) decides. Ticks from `deadline`
  /// until b's verification ping and returns it; nobody answers anything here.
  outgoing expect_verification_at(time_point deadline) {
    (void)m.on_tick(deadline - 1ms);
    EXPECT_EQ(m.find("b")->state, member_state::suspect);
    (void)m.on_tick(deadline);
    EXPECT_EQ(m.find("b")->state, member_state::suspect) << "hearsay alone does not kill";
    EXPECT_GT(m.next_deadline(), deadline);
    for (auto now = m.next_deadline(); now < deadline + 10s; now = m.next_deadline()) {
      auto fx = m.on_tick(now);
      for (auto& o : packets_of(fx, packet_kind::ping))
        if (o.message.target == "b") {
          EXPECT_EQ(o.message.updates.front(), suspect("b", m.find("b")->incarnation, "a"));
          return o;
        }
    }
    ADD_FAILURE() << "no verification probe of b";
    return {};
  }

  /// Ticks until b's verification probe fails; b must then be dead.
  void expect_death_after_verification(time_point deadline) {
    (void)expect_verification_at(deadline);
    for (auto now = m.next_deadline(); now < deadline + 20s; now = m.next_deadline()) {
      (void)m.on_tick(now);
      if (m.find("b")->state == member_state::dead)
        return;
    }
    ADD_FAILURE() << "b not declared dead after a failed verification";
  }
};

TEST_F(suspicion_timer, unconfirmed_lasts_the_maximum_then_our_probe_decides) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  expect_death_after_verification(t0 + 24s);
}

TEST_F(suspicion_timer, verification_answered_with_a_refutation_recovers) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  auto ping = expect_verification_at(t0 + 24s);
  auto ack = make(packet_kind::ack, ping.message.seq, "b");
  ack.updates = {alive("b", 1)};
  auto fx = m.on_packet(ack, t0 + 26s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::recovered});
}

TEST_F(suspicion_timer, verification_answered_without_refutation_restarts_the_timer) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  auto ping = expect_verification_at(t0 + 24s);
  auto answered = t0 + 26s;
  (void)m.on_packet(make(packet_kind::ack, ping.message.seq, "b"), answered);
  for (auto now = m.next_deadline(); now < answered + 24s - 1ms; now = m.next_deadline()) {
    (void)m.on_tick(std::min(now, answered + 24s - 1ms));
    ASSERT_EQ(m.find("b")->state, member_state::suspect);
  }
}

TEST_F(suspicion_timer, confirmation_during_verification_kills_at_once) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  (void)m.on_tick(t0 + 24s);
  ASSERT_EQ(m.find("b")->state, member_state::suspect);
  auto fx = m.on_packet(gossip_from("d", {suspect("b", 0, "d")}), t0 + 24s + 10ms);
  EXPECT_EQ(m.find("b")->state, member_state::dead);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::failed});
}

TEST_F(suspicion_timer, our_own_suspicion_needs_no_verification) {
  // A full probe round of ours failed on b: we raised it, so the timer alone decides.
  for (auto now = t0 + 1s; now < t0 + 10s; now = m.next_deadline()) {
    auto fx = m.on_tick(now);
    for (const auto& o : packets_of(fx, packet_kind::ping))
      if (o.message.target != "b")
        (void)m.on_packet(make(packet_kind::ack, o.message.seq, o.message.target), now);
    if (m.find("b")->state == member_state::suspect)
      break;
  }
  auto b = m.find("b");
  ASSERT_EQ(b->state, member_state::suspect);
  // Confirmations and the minimum do not matter: only that no probe is needed to kill.
  auto fx = m.on_tick(b->since + 24s);
  EXPECT_EQ(m.find("b")->state, member_state::dead);
}

TEST_F(suspicion_timer, one_confirmation_shrinks_it_logarithmically) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  (void)m.on_packet(gossip_from("d", {suspect("b", 0, "d")}), t0 + 1s);
  // Duplicates, the starter and ourselves do not count.
  (void)m.on_packet(
      gossip_from("d", {suspect("b", 0, "d"), suspect("b", 0, "c"), suspect("b", 0, "a")}),
      t0 + 1s);
  auto expected = 24.0 - 20.0 * std::log(2.0) / std::log(3.0);
  auto deadline =
      t0 + std::chrono::duration_cast<duration>(std::chrono::duration<double>(expected));
  // Rounding of the double arithmetic: allow one microsecond.
  (void)m.on_tick(deadline - 1ms);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  (void)m.on_tick(deadline + 1us);
  EXPECT_EQ(m.find("b")->state, member_state::dead);
}

TEST_F(suspicion_timer, k_confirmations_reach_the_minimum) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  (void)m.on_packet(gossip_from("d", {suspect("b", 0, "d")}), t0);
  (void)m.on_packet(gossip_from("e", {suspect("b", 0, "e")}), t0);
  expect_death_at(t0 + 4s);
}

TEST_F(suspicion_timer, confirmation_at_another_incarnation_does_not_count) {
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  (void)m.on_packet(gossip_from("d", {alive("b", 1)}), t0 + 1s); // refuted
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  (void)m.on_packet(gossip_from("d", {suspect("b", 1, "d")}), t0 + 2s);
  (void)m.on_packet(gossip_from("e", {suspect("b", 0, "e")}), t0 + 2s);
  expect_death_after_verification(t0 + 2s + 24s);
}

TEST(membership, without_lifeguard_suspicion_is_the_fixed_minimum) {
  auto cfg = quiet_config();
  cfg.lifeguard = false;
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c", "d", "e"});
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  (void)m.on_tick(t0 + 4s - 1ms);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  (void)m.on_tick(t0 + 4s);
  EXPECT_EQ(m.find("b")->state, member_state::dead);
}

TEST(membership, suspicion_minimum_scales_with_mesh_size) {
  auto m = make_core();
  std::vector<std::string> names;
  for (int i = 0; i < 99; ++i)
    names.push_back("n" + std::to_string(i));
  add_members(m, names);
  // n = 100: min = 4 * 2 * 1 s = 8 s, max = 48 s.
  (void)m.on_packet(gossip_from("n1", {suspect("n0", 0, "n1")}), t0);
  for (auto from : {"n2", "n3"})
    (void)m.on_packet(gossip_from(from, {suspect("n0", 0, from)}), t0);
  (void)m.on_tick(t0 + 8s - 1ms);
  EXPECT_EQ(m.find("n0")->state, member_state::suspect);
  (void)m.on_tick(t0 + 8s);
  EXPECT_EQ(m.find("n0")->state, member_state::dead);
}

// -- probing and local health awareness ----------------------------------------------------

/// Runs one probe of `m` from its tick at `start`; returns the ping sent.
outgoing start_probe(membership& m, time_point start) {
  auto fx = m.on_tick(start);
  auto pings = packets_of(fx, packet_kind::ping);
  EXPECT_EQ(pings.size(), 1u);
  return pings.empty() ? outgoing{} : pings.front();
}

TEST(membership, probe_pings_a_member_and_an_ack_clears_it) {
  auto m = make_core();
  add_members(m, {"b"});
  EXPECT_EQ(m.next_deadline(), t0 + 1s);
  auto ping = start_probe(m, t0 + 1s);
  EXPECT_EQ(ping.address, addr("b"));
  EXPECT_EQ(ping.message.target, "b");
  EXPECT_EQ(ping.message.sender, "a");
  EXPECT_EQ(ping.message.sender_address, addr("a"));
  EXPECT_NE(ping.message.seq, 0u);
  EXPECT_EQ(m.stats().probes, 1u);
  EXPECT_EQ(m.next_deadline(), t0 + 1s + 400ms) << "indirect probe deadline";

  (void)m.on_packet(make(packet_kind::ack, ping.message.seq, "b"), t0 + 1s + 10ms);
  EXPECT_EQ(m.next_deadline(), t0 + 2s);
  auto fx = m.on_tick(t0 + 2s);
  EXPECT_EQ(m.stats().probe_failures, 0u);
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  EXPECT_EQ(packets_of(fx, packet_kind::ping).size(), 1u) << "next round";
}

TEST(membership, probes_every_member_once_per_pass) {
  auto m = make_core();
  std::vector<std::string> names{"b", "c", "d", "e", "f"};
  add_members(m, names);
  for (int pass = 0; pass < 3; ++pass) {
    SCOPED_TRACE(pass);
    std::vector<std::string> seen;
    for (int i = 0; i < 5; ++i) {
      auto now = t0 + 1s + std::chrono::seconds{pass * 5 + i};
      auto ping = start_probe(m, now);
      seen.push_back(ping.message.target);
      (void)m.on_packet(make(packet_kind::ack, ping.message.seq, ping.message.target), now);
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, names);
  }
}

TEST(membership, failed_probe_goes_indirect_then_suspects_and_raises_health_score) {
  auto m = make_core();
  add_members(m, {"b", "c", "d"});
  auto ping = start_probe(m, t0 + 1s);
  auto target = ping.message.target;

  auto fx = m.on_tick(t0 + 1s + 400ms);
  auto reqs = packets_of(fx, packet_kind::ping_req);
  ASSERT_EQ(reqs.size(), 2u) << "all alive members but self and target";
  for (const auto& r : reqs) {
    EXPECT_EQ(r.message.seq, ping.message.seq);
    EXPECT_EQ(r.message.target, target);
    EXPECT_EQ(r.message.target_address, addr(target));
    EXPECT_NE(r.address, addr(target));
  }
  EXPECT_EQ(m.stats().indirect_probes, 2u);

  // One helper nacks; the other is silent: we are partly to blame.
  auto helper = reqs[0].message.target == target ? reqs[0].address : reqs[0].address;
  (void)helper;
  (void)m.on_packet(make(packet_kind::nack, ping.message.seq, "c"), t0 + 1s + 700ms);
  EXPECT_EQ(m.stats().nacks_received, 1u);

  fx = m.on_tick(t0 + 2s);
  EXPECT_EQ(m.stats().probe_failures, 1u);
  EXPECT_EQ(m.stats().suspicions, 1u);
  EXPECT_EQ(m.find(target)->state, member_state::suspect);
  EXPECT_EQ(m.health_score(), 1u) << "expected 2 nacks, got 1";
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::suspected});

  // Scaled timers: probe timeout and interval times (1 + 1).
  EXPECT_EQ(m.next_deadline(), t0 + 2s + 800ms);
  fx = m.on_tick(t0 + 2s + 800ms);
  EXPECT_FALSE(packets_of(fx, packet_kind::ping_req).empty());
  EXPECT_EQ(m.next_deadline(), t0 + 4s);
}

TEST(membership, missing_nacks_weigh_on_health_and_success_lowers_it) {
  auto m = make_core();
  add_members(m, {"b", "c", "d"});
  (void)start_probe(m, t0 + 1s);
  (void)m.on_tick(t0 + 1s + 400ms);
  auto fx = m.on_tick(t0 + 2s); // no ack, no nack at all; the next probe starts
  EXPECT_EQ(m.health_score(), 2u);
  auto pings = packets_of(fx, packet_kind::ping);
  ASSERT_EQ(pings.size(), 1u);
  // This one succeeds: one step back.
  (void)m.on_packet(make(packet_kind::ack, pings[0].message.seq, pings[0].message.target), t0 + 2s);
  EXPECT_EQ(m.health_score(), 1u);
}

TEST(membership, health_score_is_capped_and_scales_the_probe_interval) {
  auto cfg = quiet_config();
  cfg.awareness_max = 3;
  auto m = make_core("a", cfg);
  add_members(m, {"b"});
  auto now = t0 + 1s;
  for (unsigned i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    // Ends the previous probe (a failure: no helpers, so +1), starts the next one.
    auto fx = m.on_tick(now);
    ASSERT_EQ(packets_of(fx, packet_kind::ping).size(), 1u);
    auto h = m.health_score();
    EXPECT_EQ(h, std::min(i, 3u));
    EXPECT_EQ(m.next_deadline(), now + 400ms * (1 + h)) << "scaled probe timeout";
    fx = m.on_tick(m.next_deadline());
    EXPECT_TRUE(fx.packets.empty()) << "nobody to ask for an indirect probe";
    EXPECT_EQ(m.next_deadline(), now + 1s * (1 + h)) << "scaled probe interval";
    now = m.next_deadline();
    // Keep b alive in our eyes so it is probed again.
    (void)m.on_packet(gossip_from("b", {alive("b", i + 1)}), now);
  }
  EXPECT_EQ(m.health_score(), 3u);
}

TEST(membership, without_lifeguard_health_never_moves) {
  auto cfg = quiet_config();
  cfg.lifeguard = false;
  auto m = make_core("a", cfg);
  add_members(m, {"b"});
  (void)m.on_tick(t0 + 1s);
  (void)m.on_tick(t0 + 2s);
  EXPECT_EQ(m.stats().probe_failures, 1u);
  EXPECT_EQ(m.health_score(), 0u);
  (void)m.on_packet(gossip_from("b", {suspect("a", 0, "b")}), t0 + 2s);
  EXPECT_EQ(m.health_score(), 0u);
  EXPECT_EQ(m.next_deadline(), t0 + 2s + 400ms);
}

TEST(membership, indirect_probe_path_forwards_ack_or_nacks) {
  // a probes b through helper h.
  auto a = make_core("a");
  auto hcfg = quiet_config();
  hcfg.probe_interval = 24h; // the helper does not probe on its own here
  auto h = make_core("h", hcfg, 2);
  add_members(a, {"b", "h"});
  add_members(h, {"b", "a"});
  outgoing ping;
  auto now = t0 + 1s;
  // Make sure a's probe targets b (the order is random): ack anything else.
  for (int i = 0; i < 4; ++i, now += 1s) {
    ping = start_probe(a, now);
    if (ping.message.target == "b")
      break;
    (void)a.on_packet(make(packet_kind::ack, ping.message.seq, "h"), now);
  }
  ASSERT_EQ(ping.message.target, "b");
  auto fx = a.on_tick(now + 400ms);
  auto reqs = packets_of(fx, packet_kind::ping_req);
  ASSERT_EQ(reqs.size(), 1u);
  ASSERT_EQ(reqs[0].address, addr("h"));

  // The helper pings b with its own seq.
  auto hfx = h.on_packet(reqs[0].message, now + 400ms);
  auto hpings = packets_of(hfx, packet_kind::ping);
  ASSERT_EQ(hpings.size(), 1u);
  EXPECT_EQ(hpings[0].address, addr("b"));
  EXPECT_EQ(hpings[0].message.target, "b");
  EXPECT_EQ(hpings[0].message.sender, "h");
  auto hseq = hpings[0].message.seq;

  // b answers the helper; the helper forwards the ack with a's seq to a.
  hfx = h.on_packet(make(packet_kind::ack, hseq, "b"), now + 500ms);
  auto fwd = packets_of(hfx, packet_kind::ack);
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].address, addr("a"));
  EXPECT_EQ(fwd[0].message.seq, ping.message.seq);
  EXPECT_EQ(fwd[0].message.sender, "h");

  (void)a.on_packet(fwd[0].message, now + 500ms);
  (void)a.on_tick(now + 1s);
  EXPECT_EQ(a.stats().probe_failures, 0u);
  EXPECT_EQ(a.find("b")->state, member_state::alive);

  // Second time b stays silent: the helper nacks at 80 % of its probe timeout.
  hfx = h.on_packet(reqs[0].message, now + 2s);
  ASSERT_EQ(packets_of(hfx, packet_kind::ping).size(), 1u);
  EXPECT_EQ(h.next_deadline(), now + 2s + 320ms);
  hfx = h.on_tick(now + 2s + 320ms);
  auto nacks = packets_of(hfx, packet_kind::nack);
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].address, addr("a"));
  EXPECT_EQ(nacks[0].message.seq, ping.message.seq);
}

TEST(membership, helper_without_lifeguard_sends_no_nack) {
  auto cfg = quiet_config();
  cfg.lifeguard = false;
  auto h = make_core("h", cfg);
  add_members(h, {"b", "a"});
  (void)h.on_packet(make(packet_kind::ping_req, 9, "a", "b", addr("b")), t0);
  auto fx = h.on_tick(t0 + 400ms);
  EXPECT_TRUE(packets_of(fx, packet_kind::nack).empty());
}

TEST(membership, buddy_system_puts_the_suspicion_first_in_the_ping) {
  auto m = make_core();
  add_members(m, {"b"});
  (void)m.on_packet(gossip_from("c", {alive("c", 0), suspect("b", 0, "c")}), t0);
  // Probe until b is the target.
  for (auto now = t0 + 1s; now < t0 + 10s; now += 1s) {
    auto fx = m.on_tick(now);
    auto pings = packets_of(fx, packet_kind::ping);
    ASSERT_EQ(pings.size(), 1u);
    if (pings[0].message.target != "b") {
      (void)m.on_packet(make(packet_kind::ack, pings[0].message.seq, "c"), now);
      continue;
    }
    ASSERT_FALSE(pings[0].message.updates.empty());
    EXPECT_EQ(pings[0].message.updates.front(), suspect("b", 0, "a"));
    // b refutes at once.
    auto b = make_core("b", quiet_config(), 3);
    auto bfx = b.on_packet(pings[0].message, now);
    EXPECT_EQ(b.self().incarnation, 1u);
    auto acks = packets_of(bfx, packet_kind::ack);
    ASSERT_EQ(acks.size(), 1u);
    (void)m.on_packet(acks[0].message, now);
    EXPECT_EQ(m.find("b")->state, member_state::alive);
    return;
  }
  GTEST_FAIL() << "b never probed";
}

// -- acks and malformed input ----------------------------------------------------------------

TEST(membership, answers_pings_with_acks_carrying_the_same_seq) {
  auto m = make_core();
  auto fx = m.on_packet(make(packet_kind::ping, 42, "b", "a"), t0);
  // The answer first; b is a stranger, so a ping asking who it is follows (stranger_test).
  ASSERT_EQ(fx.packets.size(), 2u);
  EXPECT_EQ(fx.packets[0].address, addr("b"));
  EXPECT_EQ(fx.packets[0].message.kind, packet_kind::ack);
  EXPECT_EQ(fx.packets[0].message.seq, 42u);
  EXPECT_EQ(fx.packets[0].message.sender, "a");
  EXPECT_TRUE(carries(fx.packets[0].message, alive("a", 0)));
  // An empty target is fine (a stranger does not know our name yet).
  fx = m.on_packet(make(packet_kind::ping, 43, "b"), t0);
  EXPECT_EQ(packets_of(fx, packet_kind::ack).size(), 1u);
  EXPECT_EQ(m.stats().packets_received, 2u);
  EXPECT_EQ(m.stats().packets_sent, 3u); // two acks, one question to b (asked once)
}

TEST(membership, malformed_and_stale_inputs_are_ignored_and_counted) {
  auto m = make_core();
  add_members(m, {"b"});
  auto ignored = m.stats().updates_ignored;
  auto members = m.members();

  struct bad_case {
    const char* what;
    packet p;
  };
  auto no_sender = make(packet_kind::ping, 1, "b", "a");
  no_sender.sender.clear();
  auto wrong_target = make(packet_kind::ping, 1, "b", "someone-else");
  auto unknown_target = make(packet_kind::ping_req, 1, "b", "zz", addr("zz"));
  auto req_no_address = make(packet_kind::ping_req, 1, "b", "b");
  auto unknown_ack = make(packet_kind::ack, 777, "b");
  auto unknown_nack = make(packet_kind::nack, 777, "b");
  auto bad_kind = make(packet_kind::ping, 1, "b", "a");
  bad_kind.kind = static_cast<packet_kind>(99);
  auto ping_no_reply = make(packet_kind::ping, 1, "b", "a");
  ping_no_reply.sender_address.clear();
  for (auto& c :
       {bad_case{"no sender", no_sender}, bad_case{"wrong target", wrong_target},
        bad_case{"unknown ping_req target", unknown_target},
        bad_case{"ping_req without address", req_no_address},
        bad_case{"ack with unknown seq", unknown_ack},
        bad_case{"nack with unknown seq", unknown_nack}, bad_case{"unknown kind", bad_kind},
        bad_case{"ping without reply address", ping_no_reply}}) {
    SCOPED_TRACE(c.what);
    auto fx = m.on_packet(c.p, t0);
    EXPECT_TRUE(fx.packets.empty());
    EXPECT_EQ(m.stats().updates_ignored, ++ignored);
  }

  // Bad updates inside an otherwise fine packet.
  auto no_name = alive("", 1);
  auto no_addr = alive("c", 1);
  no_addr.address.clear();
  auto bad_state = alive("d", 1);
  bad_state.state = static_cast<member_state>(0);
  auto anonymous_suspect = suspect("b", 0, "");
  auto fx = m.on_packet(gossip_from("b", {no_name, no_addr, bad_state, anonymous_suspect}), t0);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.stats().updates_ignored, ignored + 4);
  EXPECT_EQ(m.members(), members);

  // Push-pull without a sender.
  push_pull pp;
  pp.members.push_back(alive("x", 0));
  auto reply = m.on_push_pull_request(pp, t0);
  EXPECT_FALSE(m.find("x"));
  EXPECT_EQ(reply.state.sender, "a");
  EXPECT_EQ(m.stats().updates_ignored, ignored + 5);
}

// -- dissemination ------------------------------------------------------------------------------

TEST(membership, an_update_is_sent_exactly_the_retransmit_limit_then_dropped) {
  swim_config cfg = base_config();
  cfg.probe_interval = 24h; // only gossip rounds send
  cfg.push_pull_interval = duration::zero();
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c"});
  // n = 3: limit = 4 * ceil(log10(4)) = 4.
  auto u = alive("d", 7);
  (void)m.on_packet(gossip_from("b", {u}), t0);
  std::size_t sent = 0;
  for (auto now = t0 + 200ms; now < t0 + 10s; now += 200ms) {
    auto fx = m.on_tick(now);
    for (const auto& o : fx.packets) {
      EXPECT_EQ(o.message.kind, packet_kind::ack);
      EXPECT_EQ(o.message.seq, 0u);
      if (carries(o.message, u))
        ++sent;
    }
  }
  // n is now 4 (d joined): limit = 4 * ceil(log10(5)) = 4.
  EXPECT_EQ(sent, 4u);
  EXPECT_EQ(m.pending_broadcasts(), 0u);
  // An empty queue skips gossip rounds entirely.
  auto before = m.stats().packets_sent;
  (void)m.on_tick(t0 + 11s);
  EXPECT_EQ(m.stats().packets_sent, before);
}

TEST(membership, newer_update_replaces_the_queued_older_one) {
  swim_config cfg = quiet_config();
  auto m = make_core("a", cfg);
  (void)m.on_packet(gossip_from("b", {alive("b", 0), alive("c", 0)}), t0);
  (void)m.on_packet(gossip_from("b", {suspect("c", 0, "b")}), t0);
  auto fx = m.on_packet(make(packet_kind::ping, 1, "b", "a"), t0);
  ASSERT_EQ(fx.packets.size(), 1u);
  const auto& ups = fx.packets[0].message.updates;
  EXPECT_TRUE(carries(fx.packets[0].message, suspect("c", 0, "b")));
  EXPECT_FALSE(carries(fx.packets[0].message, alive("c", 0)));
  EXPECT_EQ(
      std::count_if(ups.begin(), ups.end(), [](const member_update& u) { return u.name == "c"; }),
      1);
}

TEST(membership, gossip_goes_to_live_and_recently_dead_members_only) {
  swim_config cfg = base_config();
  cfg.probe_interval = 24h;
  cfg.push_pull_interval = duration::zero();
  cfg.gossip_fanout = 10;
  cfg.gossip_to_dead = 5s;
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c", "d"});
  (void)m.on_packet(gossip_from("b", {dead("c", 0, "b"), left("d", 0)}), t0);
  auto fx = m.on_tick(t0 + 200ms);
  std::set<std::string> to;
  for (const auto& o : fx.packets)
    to.insert(o.address);
  EXPECT_EQ(to, (std::set<std::string>{addr("b"), addr("c")}));
  // The dead member hears of its death first, so it can refute.
  for (const auto& o : fx.packets)
    if (o.address == addr("c")) {
      EXPECT_EQ(o.message.updates.front(), dead("c", 0, "b"));
    }
  // Past gossip_to_dead, only b (if anything is still queued).
  (void)m.on_packet(gossip_from("b", {alive("e", 0)}), t0 + 6s);
  fx = m.on_tick(t0 + 6s);
  for (const auto& o : fx.packets)
    EXPECT_NE(o.address, addr("c"));
}

TEST(membership, packing_never_exceeds_max_datagram) {
  for (std::size_t max : {200u, 512u, 1400u}) {
    SCOPED_TRACE(max);
    swim_config cfg = quiet_config();
    cfg.max_datagram = max;
    auto m = make_core("a", cfg);
    std::vector<member_update> ups;
    for (int i = 0; i < 120; ++i) {
      tag_map tags;
      for (int t = 0; t < i % 5; ++t)
        tags["key" + std::to_string(t)] = std::string(static_cast<std::size_t>(i), 'v');
      // Multi-byte incarnations, up to a stranger's ceiling (max_incarnation_jump).
      ups.push_back(
          alive("member-" + std::to_string(i), static_cast<std::uint64_t>(i) << 25, tags));
    }
    // Gossip packets are bounded by max_datagram too; feed them in small packets.
    for (std::size_t i = 0; i < ups.size(); i += 3)
      (void)m.on_packet(gossip_from("member-0", {ups.begin() + static_cast<std::ptrdiff_t>(i),
                                                 ups.begin() + static_cast<std::ptrdiff_t>(
                                                                   std::min(ups.size(), i + 3))}),
                        t0);
    ASSERT_GT(m.pending_broadcasts(), 100u);
    std::size_t carried = 0;
    for (int i = 0; i < 40; ++i) {
      auto fx = m.on_packet(
          make(packet_kind::ping, static_cast<std::uint32_t>(i + 1), "member-1", "a"), t0);
      ASSERT_EQ(fx.packets.size(), 1u);
      const auto& p = fx.packets[0].message;
      std::size_t size = encoded_header_bound(p);
      for (const auto& u : p.updates)
        size += encoded_size_bound(u);
      EXPECT_LE(size, max);
      carried += p.updates.size();
      if (max >= 1400u) {
        EXPECT_GT(p.updates.size(), 3u) << "packs several updates per datagram";
      }
    }
    EXPECT_GT(carried, 40u);
  }
}

TEST(membership, encoded_bounds_grow_with_content) {
  auto small = alive("b", 0);
  auto big = alive("b", std::numeric_limits<std::uint64_t>::max(), {{"k", "v"}});
  EXPECT_GT(encoded_size_bound(big), encoded_size_bound(small));
  // Hand count of `small`: field tag + length + body.
  // body: state 2, name 1+1+1, address 1+1+6 ("b:7946"), incarnation 2, from 1+1+0 = 17.
  EXPECT_EQ(encoded_size_bound(small), 19u);
  // Each tag entry: tag + len + (1+1+1) + (1+1+1) = 8 bytes; incarnation 1 + 10.
  EXPECT_EQ(encoded_size_bound(big), 19u + 9u + 8u);
  packet p = make(packet_kind::ping, 1, "a", "b");
  // frame 1, version 2, kind 2, seq 2, sender 1+1+1, address 1+1+6, target 1+1+1, taddr 1+1.
  // = 23; a 32-bit seq takes up to 5 varint bytes.
  EXPECT_EQ(encoded_header_bound(p), 23u);
  p.seq = std::numeric_limits<std::uint32_t>::max();
  EXPECT_EQ(encoded_header_bound(p), 27u);
  std::string long_name(300, 'n');
  auto long_update = alive(long_name, 0);
  EXPECT_GE(encoded_size_bound(long_update), 2 * long_name.size());
}

// -- push-pull -------------------------------------------------------------------------------

TEST(membership, push_pull_state_holds_everyone_not_reaped) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 1, {{"r", "x"}}), alive("c", 2), alive("d", 0)}),
                    t0);
  (void)m.on_packet(gossip_from("b", {dead("c", 2, "b"), left("d", 0)}), t0);
  auto pp = m.make_push_pull(true);
  EXPECT_EQ(pp.sender, "a");
  EXPECT_EQ(pp.sender_address, addr("a"));
  EXPECT_TRUE(pp.join);
  ASSERT_EQ(pp.members.size(), 4u);
  EXPECT_EQ(pp.members[0], alive("a", 0));
  EXPECT_EQ(pp.members[1], alive("b", 1, {{"r", "x"}}));
  auto c = member_update{member_state::dead, "c", addr("c"), 2, {}, "b"};
  EXPECT_EQ(pp.members[2], c);
  auto d = member_update{member_state::left, "d", addr("d"), 0, {}, "d"};
  EXPECT_EQ(pp.members[3], d);
}

TEST(membership, push_pull_merge_applies_dead_as_suspect_and_left_as_left) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 0), alive("c", 0), alive("d", 0)}), t0);
  push_pull remote;
  remote.sender = "b";
  remote.sender_address = addr("b");
  remote.members = {alive("b", 0), member_update{member_state::dead, "c", addr("c"), 0, {}, "b"},
                    left("d", 0), alive("e", 4),
                    member_update{member_state::dead, "f", addr("f"), 0, {}, "b"}};
  auto reply = m.on_push_pull_request(remote, t0);
  EXPECT_EQ(reply.state.members.size(), 5u) << "our state after the merge: a b c d e";
  EXPECT_EQ(m.find("c")->state, member_state::suspect) << "a remote death is a suspicion";
  EXPECT_EQ(m.find("d")->state, member_state::left);
  EXPECT_EQ(m.find("e")->state, member_state::alive);
  EXPECT_FALSE(m.find("f")) << "unknown dead members are not learnt";
  EXPECT_EQ(m.stats().push_pulls, 1u);
  auto evs = kinds(reply.fx);
  EXPECT_EQ(evs, (std::vector{member_event_kind::suspected, member_event_kind::left,
                              member_event_kind::joined}));

  // The same through the response path.
  push_pull back = remote;
  back.members = {alive("g", 0)};
  auto fx = m.on_push_pull_response(back, t0);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  EXPECT_EQ(m.stats().push_pulls, 2u);
}

TEST(membership, push_pull_about_ourselves_triggers_refutation) {
  auto m = make_core();
  push_pull remote;
  remote.sender = "b";
  remote.sender_address = addr("b");
  remote.members = {alive("b", 0), member_update{member_state::dead, "a", addr("a"), 0, {}, "b"}};
  (void)m.on_push_pull_response(remote, t0);
  EXPECT_EQ(m.self().incarnation, 1u);
  EXPECT_EQ(m.stats().refutations, 1u);
  remote.members = {left("a", 3)};
  (void)m.on_push_pull_response(remote, t0);
  EXPECT_EQ(m.self().incarnation, 4u);
  remote.members = {suspect("a", 2, "b")};
  (void)m.on_push_pull_response(remote, t0);
  EXPECT_EQ(m.self().incarnation, 4u) << "stale";
}

TEST(membership, periodic_push_pull_picks_an_alive_member_but_not_at_start) {
  swim_config cfg = base_config();
  cfg.push_pull_interval = 30s;
  auto m = make_core("a", cfg);
  add_members(m, {"b"});
  auto fx = m.on_tick(t0);
  EXPECT_TRUE(fx.push_pull_to.empty());
  std::vector<std::string> to;
  for (auto now = t0; now <= t0 + 61s; now = m.next_deadline()) {
    auto f = m.on_tick(now);
    to.insert(to.end(), f.push_pull_to.begin(), f.push_pull_to.end());
    (void)m.on_packet(gossip_from("b", {}), now);
    for (const auto& o : f.packets)
      if (o.message.kind == packet_kind::ping)
        (void)m.on_packet(make(packet_kind::ack, o.message.seq, "b"), now);
  }
  EXPECT_EQ(to, (std::vector<std::string>{addr("b"), addr("b")}));
}

// -- reaping and rejoin ---------------------------------------------------------------------

swim_config reap_config() {
  auto cfg = quiet_config();
  cfg.reap_after = 60s;
  cfg.reaped_memory = 1h;
  return cfg;
}

TEST(membership, dead_and_left_members_are_reaped_and_remembered) {
  auto m = make_core("a", reap_config());
  (void)m.on_packet(gossip_from("b", {alive("b", 3), alive("c", 0), alive("d", 0)}), t0);
  (void)m.on_packet(gossip_from("c", {dead("b", 3, "c"), left("d", 0)}), t0);
  EXPECT_LE(m.next_deadline(), t0 + 60s);
  (void)m.on_tick(t0 + 59s);
  EXPECT_TRUE(m.find("b"));
  auto fx = m.on_tick(t0 + 60s);
  auto evs = kinds(fx);
  EXPECT_EQ(std::count(evs.begin(), evs.end(), member_event_kind::reaped), 2);
  EXPECT_FALSE(m.find("b"));
  EXPECT_FALSE(m.find("d"));
  EXPECT_EQ(m.count(member_state::dead), 0u);
  EXPECT_EQ(m.make_push_pull(false).members.size(), 2u);

  // A stale full-state sync from a third party does not revive b or d.
  auto ignored = m.stats().updates_ignored;
  push_pull stale;
  stale.sender = "c";
  stale.sender_address = addr("c");
  stale.members = {alive("b", 3), alive("b", 2), alive("d", 0)};
  fx = m.on_push_pull_response(stale, t0 + 61s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_FALSE(m.find("b"));
  EXPECT_EQ(m.stats().updates_ignored, ignored + 3);
  (void)m.on_packet(gossip_from("c", {alive("b", 3)}), t0 + 61s);
  EXPECT_FALSE(m.find("b"));

  // A really newer incarnation is a real rejoin.
  fx = m.on_packet(gossip_from("c", {alive("b", 4)}), t0 + 62s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  EXPECT_EQ(m.find("b")->incarnation, 4u);

  // After reaped_memory, d is forgotten: anything about it is news again.
  fx = m.on_packet(gossip_from("c", {alive("d", 0)}), t0 + 60s + 1h);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
}

TEST(membership, reaped_memory_is_bounded_oldest_first) {
  auto cfg = reap_config();
  cfg.reaped_memory_max = 2;
  auto m = make_core("a", cfg);
  for (int i = 0; i < 3; ++i) {
    auto name = "m" + std::to_string(i);
    auto at = t0 + std::chrono::seconds{i};
    (void)m.on_packet(gossip_from(name, {alive(name, 5)}), at);
    (void)m.on_packet(gossip_from("x", {dead(name, 5, "x")}), at);
  }
  for (int i = 0; i < 3; ++i)
    (void)m.on_tick(t0 + 60s + std::chrono::seconds{i});
  EXPECT_EQ(m.members().size(), 1u);
  auto fx =
      m.on_packet(gossip_from("x", {alive("m0", 5), alive("m1", 5), alive("m2", 5)}), t0 + 70s);
  ASSERT_EQ(fx.events.size(), 1u) << "only the oldest was forgotten";
  EXPECT_EQ(fx.events[0].subject.name, "m0");
}

TEST(membership, reaped_member_rejoining_directly_is_made_to_outbid_its_old_life) {
  auto cfg = reap_config();
  auto a = make_core("a", cfg);
  (void)a.on_packet(gossip_from("c", {alive("c", 3)}), t0);
  (void)a.on_packet(gossip_from("x", {dead("c", 3, "x")}), t0);
  (void)a.on_tick(t0 + 60s);
  ASSERT_FALSE(a.find("c"));

  // c restarts at incarnation 0 and joins through a.
  auto c = membership{"c", addr("c"), {}, cfg, 9, t0 + 70s};
  auto reply = a.on_push_pull_request(c.make_push_pull(true), t0 + 70s);
  EXPECT_EQ(kinds(reply.fx), std::vector{member_event_kind::joined});
  auto told = std::find_if(reply.state.members.begin(), reply.state.members.end(),
                           [](const member_update& u) { return u.name == "c"; });
  ASSERT_NE(told, reply.state.members.end());
  EXPECT_EQ(told->state, member_state::dead);
  EXPECT_EQ(told->incarnation, 3u);

  (void)c.on_push_pull_response(reply.state, t0 + 70s);
  EXPECT_EQ(c.self().incarnation, 4u);
  EXPECT_EQ(c.self().state, member_state::alive);

  // Until c's new alive arrives, whatever a sends c carries c's death first.
  auto fx = a.on_packet(make(packet_kind::ping, 5, "c", "a"), t0 + 71s);
  ASSERT_EQ(fx.packets.size(), 1u);
  EXPECT_EQ(fx.packets[0].message.updates.front(), dead("c", 3, "a"));
  (void)a.on_packet(gossip_from("c", {alive("c", 4)}), t0 + 72s);
  EXPECT_EQ(a.find("c")->incarnation, 4u);
  fx = a.on_packet(make(packet_kind::ping, 6, "c", "a"), t0 + 73s);
  ASSERT_EQ(fx.packets.size(), 1u);
  for (const auto& u : fx.packets[0].message.updates)
    EXPECT_NE(u.state, member_state::dead);
}

TEST(membership, ping_from_a_reaped_member_is_accepted_as_a_direct_rejoin) {
  auto a = make_core("a", reap_config());
  (void)a.on_packet(gossip_from("c", {alive("c", 2)}), t0);
  (void)a.on_packet(gossip_from("x", {dead("c", 2, "x")}), t0);
  (void)a.on_tick(t0 + 60s);
  auto ping = make(packet_kind::ping, 1, "c", "a");
  ping.updates = {alive("c", 0)};
  auto fx = a.on_packet(ping, t0 + 61s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  ASSERT_EQ(fx.packets.size(), 1u);
  EXPECT_EQ(fx.packets[0].message.updates.front(), dead("c", 2, "a"));
  // The same alive relayed by someone else would have been ignored.
  auto b = make_core("b", reap_config());
  (void)b.on_packet(gossip_from("c", {alive("c", 2)}), t0);
  (void)b.on_packet(gossip_from("x", {dead("c", 2, "x")}), t0);
  (void)b.on_tick(t0 + 60s);
  fx = b.on_packet(gossip_from("a", {alive("c", 0)}), t0 + 61s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_FALSE(b.find("c"));
}

// -- leave and tags ------------------------------------------------------------------------------

TEST(membership, leave_marks_self_left_and_stops_probing) {
  auto m = make_core();
  add_members(m, {"b"});
  auto fx = m.leave(t0 + 500ms);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.self().state, member_state::left);
  EXPECT_EQ(m.self().incarnation, 1u);
  // Top priority: the next packet carries the leave first.
  fx = m.on_packet(make(packet_kind::ping, 3, "b", "a"), t0 + 600ms);
  ASSERT_EQ(fx.packets.size(), 1u) << "still answers pings";
  EXPECT_EQ(fx.packets[0].message.updates.front(),
            (member_update{member_state::left, "a", addr("a"), 1, {}, "a"}));
  for (auto now = t0 + 1s; now < t0 + 5s; now += 100ms) {
    fx = m.on_tick(now);
    EXPECT_TRUE(packets_of(fx, packet_kind::ping).empty());
    EXPECT_TRUE(fx.push_pull_to.empty());
  }
  EXPECT_EQ(m.stats().probes, 0u);
  // No refutation once gone.
  (void)m.on_packet(gossip_from("b", {dead("a", 1, "b"), suspect("a", 1, "b")}), t0 + 5s);
  EXPECT_EQ(m.self().state, member_state::left);
  EXPECT_EQ(m.self().incarnation, 1u);
  EXPECT_EQ(m.stats().refutations, 0u);
  auto pp = m.make_push_pull(false);
  EXPECT_EQ(pp.members[0], (member_update{member_state::left, "a", addr("a"), 1, {}, "a"}));
  // Leaving twice is harmless.
  (void)m.leave(t0 + 6s);
  EXPECT_EQ(m.self().incarnation, 1u);
}

TEST(membership, set_tags_raises_the_incarnation_and_queues_an_alive) {
  auto m = make_core();
  auto fx = m.set_tags({{"role", "edge"}}, t0);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.self().incarnation, 1u);
  EXPECT_EQ(m.self().tags.at("role"), "edge");
  fx = m.on_packet(make(packet_kind::ping, 1, "b", "a"), t0);
  ASSERT_EQ(packets_of(fx, packet_kind::ack).size(), 1u); // and a ping asking stranger b
  EXPECT_TRUE(carries(fx.packets[0].message, alive("a", 1, {{"role", "edge"}})));
  // The receiver reports it as an update.
  auto b = make_core("b");
  (void)b.on_packet(gossip_from("a", {alive("a", 0)}), t0);
  auto bfx = b.on_packet(fx.packets[0].message, t0);
  EXPECT_EQ(kinds(bfx), std::vector{member_event_kind::updated});
  EXPECT_EQ(b.find("a")->tags.at("role"), "edge");
}

// -- robustness additions (beyond memberlist) ------------------------------------------------

TEST(membership, stale_accusation_is_answered_with_our_alive) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 0), suspect("a", 0, "b")}), t0);
  ASSERT_EQ(m.self().incarnation, 1u);
  // Someone pings us still carrying the old suspicion (buddy system): the ack answers it.
  auto ping = make(packet_kind::ping, 5, "c", "a");
  ping.updates = {suspect("a", 0, "c")};
  auto fx = m.on_packet(ping, t0 + 5s);
  auto acks = packets_of(fx, packet_kind::ack);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].message.updates.front(), alive("a", 1));
  EXPECT_EQ(m.self().incarnation, 1u) << "no new refutation for old news";
  // Plain gossip carrying it gets one gossip packet back.
  fx = m.on_packet(gossip_from("d", {dead("a", 0, "d")}), t0 + 6s);
  ASSERT_EQ(packets_of(fx, packet_kind::ack).size(), 1u); // and a ping asking stranger d
  EXPECT_EQ(fx.packets[0].address, addr("d"));
  EXPECT_EQ(fx.packets[0].message.seq, 0u);
  EXPECT_EQ(fx.packets[0].message.updates.front(), alive("a", 1));
  // Our own (current) alive coming back gets no answer.
  fx = m.on_packet(gossip_from("d", {alive("a", 1)}), t0 + 7s);
  EXPECT_TRUE(packets_of(fx, packet_kind::ack).empty());
}

TEST(membership, fresh_refutation_goes_straight_back_to_the_accuser) {
  // Issue 15 (30% loss): the packet that tells us we are suspect (or dead) comes from a
  // member that holds us so; our refutation goes back to it at once, first in one gossip
  // packet, instead of waiting for a random gossip round to reach it.
  auto m = make_core();
  (void)m.on_packet(gossip_from("b", {alive("b", 0), alive("c", 0)}), t0);
  auto fx = m.on_packet(gossip_from("b", {suspect("a", 0, "c")}), t0 + 1s);
  ASSERT_EQ(m.self().incarnation, 1u);
  ASSERT_EQ(fx.packets.size(), 1u);
  EXPECT_EQ(fx.packets[0].address, addr("b"));
  EXPECT_EQ(fx.packets[0].message.kind, packet_kind::ack);
  EXPECT_EQ(fx.packets[0].message.seq, 0u);
  EXPECT_EQ(fx.packets[0].message.updates.front(), alive("a", 1));
  fx = m.on_packet(gossip_from("c", {dead("a", 1, "c")}), t0 + 2s);
  ASSERT_EQ(m.self().incarnation, 2u);
  ASSERT_EQ(fx.packets.size(), 1u);
  EXPECT_EQ(fx.packets[0].address, addr("c"));
  EXPECT_EQ(fx.packets[0].message.updates.front(), alive("a", 2));
  // A ping accusing us is answered by its ack, with the refutation first: no extra packet.
  auto ping = make(packet_kind::ping, 9, "b", "a");
  ping.updates = {suspect("a", 2, "b")};
  fx = m.on_packet(ping, t0 + 3s);
  ASSERT_EQ(fx.packets.size(), 1u);
  EXPECT_EQ(fx.packets[0].message.seq, 9u);
  EXPECT_EQ(fx.packets[0].message.updates.front(), alive("a", 3));
}

TEST(membership, a_suspect_hears_of_its_suspicion_every_gossip_round) {
  // Issue 15 (30% loss): a view that learnt a suspicion after the refutation's
  // retransmissions had run out everywhere must still hear the refutation before its timer
  // fires. Lifeguard: every gossip round, one suspect we hold gets a packet from us with its
  // suspicion first (buddy system), even when we have nothing else to gossip, so it answers
  // us directly. Probing is out of the way (probe interval 1 h).
  auto cfg = base_config();
  cfg.probe_interval = 1h;
  cfg.gossip_interval = 200ms;
  cfg.push_pull_interval = duration::zero();
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c", "d", "e"});
  (void)m.on_packet(gossip_from("c", {suspect("b", 0, "c")}), t0);
  ASSERT_EQ(m.find("b")->state, member_state::suspect);
  std::size_t rounds = 0, reminded = 0;
  for (auto t = t0 + 200ms; t <= t0 + 10s; t += 200ms) {
    auto fx = m.on_tick(t);
    ++rounds;
    auto to_b = std::count_if(fx.packets.begin(), fx.packets.end(), [](const outgoing& o) {
      return o.address == addr("b") && o.message.kind == packet_kind::ack && o.message.seq == 0 &&
             !o.message.updates.empty() && o.message.updates.front() == suspect("b", 0, "a");
    });
    reminded += to_b > 0 ? 1 : 0;
  }
  ASSERT_EQ(m.find("b")->state, member_state::suspect) << "its timer is far away";
  EXPECT_EQ(m.pending_broadcasts(), 0u) << "nothing else left to gossip";
  EXPECT_EQ(reminded, rounds);
  // Its refutation ends the reminders.
  (void)m.on_packet(gossip_from("b", {alive("b", 1)}), t0 + 10s + 100ms);
  ASSERT_EQ(m.find("b")->state, member_state::alive);
  for (auto t = t0 + 10s + 200ms; t <= t0 + 20s; t += 200ms) {
    auto fx = m.on_tick(t);
    for (const auto& o : fx.packets)
      EXPECT_FALSE(carries(o.message, suspect("b", 0, "a"))) << "no suspect left to remind";
  }
}

TEST(membership, late_tick_does_not_blame_the_probe_target) {
  auto m = make_core();
  add_members(m, {"b", "c", "d"});
  auto ping = start_probe(m, t0 + 1s);
  // We stall for 3 s: the next tick comes long after the probe's end (t0 + 2 s).
  auto fx = m.on_tick(t0 + 5s);
  EXPECT_EQ(packets_of(fx, packet_kind::ping_req).size(), 2u) << "the indirect step still runs";
  EXPECT_TRUE(packets_of(fx, packet_kind::ping).empty()) << "no new probe yet";
  EXPECT_EQ(m.health_score(), 1u) << "a late timer is a sign of local trouble";
  // The answer was waiting in our input.
  (void)m.on_packet(make(packet_kind::ack, ping.message.seq, ping.message.target), t0 + 5s);
  fx = m.on_tick(m.next_deadline());
  EXPECT_EQ(m.stats().probe_failures, 0u);
  EXPECT_EQ(m.count(member_state::suspect), 0u);
  EXPECT_EQ(packets_of(fx, packet_kind::ping).size(), 1u);
}

TEST(membership, late_tick_without_answer_still_fails_the_probe) {
  auto m = make_core();
  add_members(m, {"b"});
  (void)start_probe(m, t0 + 1s);
  (void)m.on_tick(t0 + 5s);
  EXPECT_EQ(m.count(member_state::suspect), 0u);
  (void)m.on_tick(m.next_deadline());
  EXPECT_EQ(m.stats().probe_failures, 1u);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
}

TEST(membership, late_tick_reads_input_before_a_suspicion_fires) {
  auto cfg = quiet_config();
  cfg.probe_interval = 1s;
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c", "d", "e"});
  for (auto from : {"c", "d", "e"})
    (void)m.on_packet(gossip_from(from, {suspect("b", 0, from)}), t0);
  // Due at t0 + 4 s; we only wake at t0 + 9 s, with b's refutation waiting.
  (void)m.on_tick(t0 + 9s);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  (void)m.on_packet(gossip_from("b", {alive("b", 1)}), t0 + 9s);
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  // Without a refutation it dies after the grace.
  (void)m.on_packet(gossip_from("c", {suspect("b", 1, "c")}), t0 + 10s);
  for (auto from : {"d", "e"})
    (void)m.on_packet(gossip_from(from, {suspect("b", 1, from)}), t0 + 10s);
  (void)m.on_tick(t0 + 20s);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  (void)m.on_tick(t0 + 20s + cfg.probe_timeout);
  EXPECT_EQ(m.find("b")->state, member_state::dead);
}

TEST(membership, recently_dead_hear_of_their_death_even_when_nothing_is_queued) {
  swim_config cfg = base_config();
  cfg.probe_interval = 24h;
  cfg.push_pull_interval = duration::zero();
  cfg.gossip_to_dead = 10s;
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c"});
  (void)m.on_packet(gossip_from("b", {dead("c", 0, "b")}), t0);
  // Drain the queue.
  for (auto now = t0; now < t0 + 5s; now += 200ms)
    (void)m.on_tick(now);
  ASSERT_EQ(m.pending_broadcasts(), 0u);
  auto fx = m.on_tick(t0 + 5s);
  ASSERT_EQ(fx.packets.size(), 1u);
  EXPECT_EQ(fx.packets[0].address, addr("c"));
  EXPECT_EQ(fx.packets[0].message.updates.front(), dead("c", 0, "b"));
  fx = m.on_tick(t0 + 10s);
  EXPECT_TRUE(fx.packets.empty()) << "past gossip_to_dead";
}

TEST(membership, periodic_push_pull_also_reconnects_to_dead_members) {
  swim_config cfg = base_config();
  cfg.push_pull_interval = 30s;
  cfg.gossip_interval = 24h;
  cfg.probe_interval = 24h;
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c", "d"});
  (void)m.on_packet(gossip_from("b", {dead("c", 0, "b"), dead("d", 0, "b")}), t0);
  // dead (2) >= alive (2): a dead member is tried every round.
  auto fx = m.on_tick(t0 + 30s);
  ASSERT_EQ(fx.push_pull_to.size(), 2u);
  EXPECT_EQ(fx.push_pull_to[0], addr("b"));
  EXPECT_TRUE(fx.push_pull_to[1] == addr("c") || fx.push_pull_to[1] == addr("d"));
}

TEST(membership, push_pull_reply_carries_our_refutation) {
  auto m = make_core();
  push_pull remote;
  remote.sender = "b";
  remote.sender_address = addr("b");
  remote.members = {alive("b", 0), member_update{member_state::dead, "a", addr("a"), 0, {}, "b"}};
  auto reply = m.on_push_pull_request(remote, t0);
  auto self_entry = std::find_if(reply.state.members.begin(), reply.state.members.end(),
                                 [](const member_update& u) { return u.name == "a"; });
  ASSERT_NE(self_entry, reply.state.members.end());
  EXPECT_EQ(*self_entry, alive("a", 1));
}

// -- deadlines -----------------------------------------------------------------------------------

TEST(membership, next_deadline_is_never_in_the_past_after_a_tick) {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    swim_config cfg = base_config();
    cfg.reap_after = 20s;
    auto m = make_core("a", cfg, seed);
    add_members(m, {"b", "c", "d"});
    (void)m.on_packet(gossip_from("b", {suspect("c", 0, "b")}), t0);
    auto now = t0;
    for (int i = 0; i < 400; ++i) {
      auto next = m.next_deadline();
      ASSERT_GE(next, now);
      now = next;
      auto fx = m.on_tick(now);
      ASSERT_GT(m.next_deadline(), now) << "an idle core has nothing due";
      // Answer some pings so the run is not all failures.
      for (const auto& o : fx.packets)
        if (o.message.kind == packet_kind::ping && o.message.seq % 2 == 0)
          (void)m.on_packet(make(packet_kind::ack, o.message.seq, o.message.target), now);
    }
    EXPECT_GT(now, t0 + 60s);
  }
}

TEST(membership, move_keeps_the_core_usable) {
  auto m = make_core();
  add_members(m, {"b"});
  membership moved = std::move(m);
  EXPECT_EQ(moved.self().name, "a");
  EXPECT_EQ(moved.members().size(), 2u);
  (void)moved.on_tick(t0 + 1s);
  EXPECT_EQ(moved.stats().probes, 1u);
}

// -- bans (revoked certificates) -------------------------------------------------------------

/// A push-pull from `sender` whose state is `members`.
push_pull push_pull_from(const std::string& sender, std::vector<member_update> members,
                         bool join = false) {
  push_pull pp;
  pp.sender = sender;
  pp.sender_address = addr(sender);
  pp.join = join;
  pp.members = std::move(members);
  return pp;
}

TEST(membership_ban, kills_a_live_member_once_and_spreads_its_death) {
  auto m = make_core();
  add_members(m, {"b", "c"});
  (void)m.on_packet(gossip_from("c", {suspect("b", 2, "c")}), t0);
  ASSERT_EQ(m.find("b")->state, member_state::suspect);

  auto fx = m.ban("b", t0 + 1s);
  ASSERT_EQ(kinds(fx), std::vector{member_event_kind::failed});
  EXPECT_EQ(fx.events[0].subject.name, "b");
  EXPECT_EQ(fx.events[0].subject.state, member_state::dead);
  EXPECT_TRUE(fx.packets.empty()) << "the death is queued, not sent on its own";
  EXPECT_TRUE(m.banned("b"));
  EXPECT_FALSE(m.banned("c"));
  EXPECT_EQ(m.find("b")->state, member_state::dead);
  EXPECT_EQ(m.find("b")->since, t0 + 1s);
  EXPECT_EQ(m.count(member_state::suspect), 0u) << "its suspicion timer is gone";
  // Declared by us, at the incarnation we knew: it leads the next packet to anyone.
  auto ack = m.on_packet(make(packet_kind::ping, 5, "c", "a"), t0 + 1s);
  ASSERT_EQ(ack.packets.size(), 1u);
  EXPECT_EQ(ack.packets[0].message.updates.front(), dead("b", 2, "a"));

  // Idempotent.
  fx = m.ban("b", t0 + 2s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_TRUE(fx.packets.empty());
  EXPECT_EQ(m.find("b")->since, t0 + 1s);
  EXPECT_TRUE(m.banned("b"));

  // Dead or left members keep their state (no second death), but are banned all the same.
  (void)m.on_packet(gossip_from("c", {left("c", 0)}), t0 + 2s);
  fx = m.ban("c", t0 + 3s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.find("c")->state, member_state::left);
  EXPECT_TRUE(m.banned("c"));
}

TEST(membership_ban, of_itself_is_refused) {
  auto m = make_core();
  add_members(m, {"b"});
  auto before = m.self();
  auto fx = m.ban("a", t0 + 1s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_TRUE(fx.packets.empty());
  EXPECT_FALSE(m.banned("a"));
  EXPECT_EQ(m.self(), before);
  EXPECT_TRUE(m.ban("", t0 + 1s).events.empty());
  EXPECT_FALSE(m.banned(""));
}

TEST(membership_ban, banned_sender_gets_no_answer_and_is_not_heard) {
  auto m = make_core();
  add_members(m, {"b", "c"});
  (void)m.ban("b", t0);
  const auto members = m.members();
  const auto ignored = m.stats().updates_ignored;

  auto ping = make(packet_kind::ping, 7, "b", "a");
  ping.updates = {alive("b", 9), alive("x", 0), dead("c", 0, "b")};
  for (const auto& p : {ping, make(packet_kind::ping_req, 8, "b", "c", addr("c")),
                        gossip_from("b", {alive("b", 9)}), make(packet_kind::ack, 0, "b"),
                        make(packet_kind::nack, 8, "b")}) {
    auto fx = m.on_packet(p, t0 + 1s);
    EXPECT_TRUE(fx.packets.empty());
    EXPECT_TRUE(fx.events.empty());
  }
  EXPECT_EQ(m.stats().banned_refused, 5u);
  EXPECT_EQ(m.members(), members) << "none of its news was applied";
  EXPECT_EQ(m.next_deadline(), t0 + 1s) << "no probe on its behalf";

  // Nobody else can make it alive or suspect, at any incarnation.
  auto fx = m.on_packet(gossip_from("c", {alive("b", 99), suspect("b", 99, "c")}), t0 + 1s);
  EXPECT_TRUE(fx.events.empty());
  fx =
      m.on_push_pull_response(push_pull_from("c", {alive("b", 100), dead("b", 100, "c")}), t0 + 1s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.stats().updates_ignored, ignored + 4);
  EXPECT_EQ(m.members(), members);
}

TEST(membership_ban, banned_push_pull_is_refused_and_its_answer_ignored) {
  auto m = make_core();
  add_members(m, {"b", "c"});
  (void)m.ban("b", t0);
  const auto members = m.members();
  auto reply =
      m.on_push_pull_request(push_pull_from("b", {alive("b", 5), alive("x", 0)}, true), t0 + 1s);
  ASSERT_TRUE(reply.refusal);
  EXPECT_EQ(reply.refusal.category(), errc_category);
  EXPECT_EQ(reply.refusal.code(), static_cast<std::uint8_t>(errc::peer_refused));
  EXPECT_NE(refusal_reason(reply.refusal).find("b is banned"), std::string::npos)
      << render(reply.refusal);
  EXPECT_TRUE(reply.state.members.empty()) << "nothing of ours goes to it";
  EXPECT_TRUE(reply.fx.events.empty());
  // A join seed's address may lead to a banned node: its answer is not merged either.
  auto fx = m.on_push_pull_response(push_pull_from("b", {alive("b", 5), alive("x", 0)}), t0 + 1s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_EQ(m.members(), members);
  EXPECT_EQ(m.stats().banned_refused, 2u);
  EXPECT_EQ(m.stats().push_pulls, 0u);
  // Anybody else's push-pull is answered as always.
  reply = m.on_push_pull_request(push_pull_from("c", {alive("c", 0)}), t0 + 1s);
  EXPECT_FALSE(reply.refusal);
  EXPECT_EQ(reply.state.sender, "a");
}

TEST(membership_ban, banned_member_is_never_probed_gossiped_to_or_picked) {
  swim_config cfg = base_config();
  cfg.push_pull_interval = 30s;
  cfg.gossip_to_dead = 60s;
  cfg.reap_after = 10min;
  auto m = make_core("a", cfg);
  add_members(m, {"b", "c", "d"});
  (void)m.ban("b", t0);
  // d is dead too (not banned): it still hears of its death and is tried for push-pull,
  // so the loop below shows that only the ban keeps b out.
  (void)m.on_packet(gossip_from("c", {dead("d", 0, "c")}), t0);
  std::set<std::string> to;
  for (auto now = t0; now <= t0 + 5min; now = m.next_deadline()) {
    auto fx = m.on_tick(now);
    for (const auto& o : fx.packets) {
      to.insert(o.address);
      if (o.message.kind == packet_kind::ping)
        (void)m.on_packet(make(packet_kind::ack, o.message.seq, o.message.target), now);
    }
    to.insert(fx.push_pull_to.begin(), fx.push_pull_to.end());
  }
  EXPECT_TRUE(to.contains(addr("c")));
  EXPECT_TRUE(to.contains(addr("d")));
  EXPECT_FALSE(to.contains(addr("b")));
}

TEST(membership_ban, ping_req_for_a_banned_member_is_nacked_without_probing_it) {
  auto m = make_core();
  add_members(m, {"b", "c"});
  (void)m.ban("b", t0);
  // c has not heard of the ban yet and asks us to probe b.
  auto fx = m.on_packet(make(packet_kind::ping_req, 9, "c", "b", addr("b")), t0 + 1s);
  EXPECT_TRUE(packets_of(fx, packet_kind::ping).empty());
  fx = m.on_tick(t0 + 1s + 320ms);
  auto nacks = packets_of(fx, packet_kind::nack);
  ASSERT_EQ(nacks.size(), 1u);
  EXPECT_EQ(nacks[0].address, addr("c"));
  EXPECT_EQ(nacks[0].message.seq, 9u);
}

TEST(membership_ban, probe_in_flight_ends_without_a_verdict) {
  auto m = make_core();
  add_members(m, {"b"});
  auto ping = start_probe(m, t0 + 1s);
  ASSERT_EQ(ping.message.target, "b");
  (void)m.ban("b", t0 + 1s + 100ms);
  auto fx = m.on_tick(t0 + 1s + 400ms);
  EXPECT_TRUE(packets_of(fx, packet_kind::ping_req).empty());
  fx = m.on_tick(t0 + 2s);
  EXPECT_TRUE(fx.packets.empty()) << "nobody left to probe";
  EXPECT_EQ(m.stats().probe_failures, 0u);
  EXPECT_EQ(m.health_score(), 0u);
}

TEST(membership_ban, unknown_name_can_never_join_until_unbanned) {
  auto m = make_core();
  add_members(m, {"c"});
  auto fx = m.ban("z", t0);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_TRUE(m.banned("z"));
  fx = m.on_packet(gossip_from("c", {alive("z", 0)}), t0 + 1s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_FALSE(m.find("z"));
  EXPECT_TRUE(m.on_push_pull_request(push_pull_from("z", {alive("z", 0)}, true), t0 + 1s).refusal);
  EXPECT_FALSE(m.find("z"));
  // The ban list is never on the wire.
  for (const auto& u : m.make_push_pull(false).members)
    EXPECT_NE(u.name, "z");

  m.unban("z");
  EXPECT_FALSE(m.banned("z"));
  m.unban("z"); // no-op
  auto reply = m.on_push_pull_request(push_pull_from("z", {alive("z", 0)}, true), t0 + 2s);
  EXPECT_FALSE(reply.refusal);
  EXPECT_EQ(kinds(reply.fx), std::vector{member_event_kind::joined});
}

TEST(membership_ban, banned_member_is_reaped_and_stays_banned) {
  auto m = make_core("a", reap_config());
  add_members(m, {"b", "c"});
  (void)m.ban("b", t0);
  auto fx = m.on_tick(t0 + 60s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::reaped});
  EXPECT_FALSE(m.find("b"));
  EXPECT_TRUE(m.banned("b"));
  // Neither a direct rejoin nor a newer incarnation from a third party brings it back.
  auto ping = make(packet_kind::ping, 1, "b", "a");
  ping.updates = {alive("b", 0)};
  fx = m.on_packet(ping, t0 + 61s);
  EXPECT_TRUE(fx.packets.empty());
  fx = m.on_packet(gossip_from("c", {alive("b", 7)}), t0 + 61s);
  EXPECT_TRUE(fx.events.empty());
  EXPECT_FALSE(m.find("b"));
}

TEST(membership_ban, unbanned_member_rejoins_with_a_higher_incarnation) {
  auto m = make_core();
  (void)m.on_packet(gossip_from("c", {alive("c", 0), alive("b", 2)}), t0);
  (void)m.ban("b", t0);
  m.unban("b");
  EXPECT_FALSE(m.banned("b"));
  EXPECT_EQ(m.find("b")->state, member_state::dead) << "unban changes no state";
  auto fx = m.on_packet(gossip_from("c", {alive("b", 2)}), t0 + 1s);
  EXPECT_TRUE(fx.events.empty()) << "the incarnation it died at is stale";
  fx = m.on_packet(gossip_from("b", {alive("b", 3)}), t0 + 1s);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  // And it is heard and answered again.
  fx = m.on_packet(make(packet_kind::ping, 4, "b", "a"), t0 + 2s);
  EXPECT_EQ(packets_of(fx, packet_kind::ack).size(), 1u);
}

TEST(membership_ban, list_is_bounded_oldest_first) {
  auto cfg = quiet_config();
  cfg.banned_max = 2;
  auto m = make_core("a", cfg);
  (void)m.ban("x", t0);
  (void)m.ban("y", t0);
  (void)m.ban("x", t0); // already banned: still the oldest
  (void)m.ban("z", t0);
  EXPECT_FALSE(m.banned("x"));
  EXPECT_TRUE(m.banned("y"));
  EXPECT_TRUE(m.banned("z"));
  // A lifted ban leaves room: nothing else is dropped.
  m.unban("y");
  (void)m.ban("w", t0);
  EXPECT_TRUE(m.banned("z"));
  EXPECT_TRUE(m.banned("w"));
  (void)m.ban("v", t0);
  EXPECT_FALSE(m.banned("z"));
  EXPECT_TRUE(m.banned("w"));
  EXPECT_TRUE(m.banned("v"));
}

// -- hostile incarnations (issue 13, finding 4) -------------------------------------------------

constexpr std::uint64_t top = std::numeric_limits<std::uint64_t>::max();

/// What a forger can claim about `name` at incarnation `inc`: each accusation, from "c".
std::vector<std::pair<const char*, member_update>> accusations(const std::string& name,
                                                               std::uint64_t inc) {
  return {{"left", left(name, inc)},
          {"dead", dead(name, inc, "c")},
          {"suspect", suspect(name, inc, "c")}};
}

/// A push-pull from "c" carrying `members`.
push_pull push_pull_from_c(std::vector<member_update> members) {
  push_pull pp;
  pp.sender = "c";
  pp.sender_address = addr("c");
  pp.members = std::move(members);
  return pp;
}

TEST(membership_incarnation, accusation_at_the_top_about_a_member_is_refused_and_counted) {
  for (const auto& [what, u] : accusations("b", top)) {
    SCOPED_TRACE(what);
    auto m = make_core();
    add_members(m, {"b", "c"});
    auto ignored = m.stats().updates_ignored;
    auto fx = m.on_packet(gossip_from("c", {u}), t0);
    EXPECT_TRUE(fx.events.empty());
    EXPECT_EQ(m.find("b")->state, member_state::alive);
    EXPECT_EQ(m.find("b")->incarnation, 0u);
    EXPECT_EQ(m.stats().incarnation_refused, 1u);
    EXPECT_EQ(m.stats().updates_ignored, ignored) << "counted once, as a refusal";

    // The same in a push-pull, both directions.
    auto reply = m.on_push_pull_request(push_pull_from_c({alive("c", 0), u}), t0);
    EXPECT_TRUE(reply.fx.events.empty());
    EXPECT_FALSE(reply.refusal);
    fx = m.on_push_pull_response(push_pull_from_c({alive("c", 0), u}), t0);
    EXPECT_TRUE(fx.events.empty());
    EXPECT_EQ(m.find("b")->state, member_state::alive);
    EXPECT_EQ(m.find("b")->incarnation, 0u);
    EXPECT_EQ(m.stats().incarnation_refused, 3u);
  }
}

TEST(membership_incarnation, accusation_at_the_top_about_itself_is_refused_without_wrapping) {
  auto cases = accusations("a", top);
  cases.emplace_back("alive of a previous life", alive("a", top));
  for (const auto& [what, u] : cases) {
    SCOPED_TRACE(what);
    auto m = make_core();
    add_members(m, {"b", "c"});
    (void)m.on_packet(gossip_from("c", {u}), t0);
    (void)m.on_push_pull_response(push_pull_from_c({alive("c", 0), u}), t0);
    EXPECT_EQ(m.self().state, member_state::alive);
    EXPECT_EQ(m.self().incarnation, 0u) << "nothing to refute, nothing wrapped";
    EXPECT_EQ(m.stats().refutations, 0u);
    EXPECT_EQ(m.stats().incarnation_refused, 2u);
  }
}

TEST(membership_incarnation, a_jump_up_to_the_bound_is_taken_and_refuted_without_wrapping) {
  auto m = make_core();
  add_members(m, {"b", "c"});
  // About a member: exactly the bound is plausible, one more is not.
  (void)m.on_packet(gossip_from("c", {suspect("b", max_incarnation_jump + 1, "c")}), t0);
  EXPECT_EQ(m.find("b")->state, member_state::alive);
  EXPECT_EQ(m.stats().incarnation_refused, 1u);
  (void)m.on_packet(gossip_from("c", {suspect("b", max_incarnation_jump, "c")}), t0);
  EXPECT_EQ(m.find("b")->state, member_state::suspect);
  EXPECT_EQ(m.find("b")->incarnation, max_incarnation_jump);
  // The member's refutation is one step above what we know now.
  (void)m.on_packet(gossip_from("b", {alive("b", max_incarnation_jump + 1)}), t0);
  EXPECT_EQ(m.find("b")->state, member_state::alive);

  // About itself: refuted one above the accusation.
  (void)m.on_packet(gossip_from("c", {dead("a", max_incarnation_jump, "c")}), t0);
  EXPECT_EQ(m.self().incarnation, max_incarnation_jump + 1);
  EXPECT_EQ(m.stats().refutations, 1u);
  EXPECT_EQ(m.stats().incarnation_refused, 1u);
}

TEST(membership_incarnation, a_stranger_above_the_ceiling_is_not_learnt) {
  auto m = make_core();
  auto fx = m.on_packet(
      gossip_from("c", {alive("z", max_incarnation_jump + 1), alive("y", max_incarnation_jump)}),
      t0);
  EXPECT_EQ(kinds(fx), std::vector{member_event_kind::joined});
  EXPECT_FALSE(m.find("z"));
  EXPECT_TRUE(m.find("y"));
  EXPECT_EQ(m.stats().incarnation_refused, 1u);
}

TEST(membership_incarnation, nothing_above_the_ceiling_is_accepted_even_one_step_up) {
  // A node already at the ceiling (no real one gets there): one step above it is refused,
  // an accusation at it is refuted one above, without wrapping.
  membership m{"a", addr("a"), {}, quiet_config(), 1, t0, max_incarnation};
  (void)m.on_packet(gossip_from("c", {alive("c", 0), alive("a", max_incarnation + 1)}), t0);
  EXPECT_EQ(m.self().incarnation, max_incarnation);
  EXPECT_EQ(m.stats().incarnation_refused, 1u);
  (void)m.on_packet(gossip_from("c", {suspect("a", max_incarnation, "c")}), t0);
  EXPECT_EQ(m.self().incarnation, max_incarnation + 1);
  EXPECT_EQ(m.stats().refutations, 1u);
}

TEST(membership_incarnation, own_increments_saturate_at_the_top) {
  // A persisted incarnation at the top (a corrupt file, say) must not wrap to 0 either.
  membership m{"a", addr("a"), {}, quiet_config(), 1, t0, top};
  (void)m.set_tags({{"role", "db"}}, t0);
  EXPECT_EQ(m.self().incarnation, top);
  (void)m.leave(t0);
  EXPECT_EQ(m.self().incarnation, top);
  EXPECT_EQ(m.self().state, member_state::left);
}

// -- small clusters --------------------------------------------------------------------------

swim_config cluster_config() {
  swim_config cfg = base_config();
  cfg.reap_after = 60s;
  cfg.reaped_memory = 1h;
  return cfg;
}

core_cluster make_cluster(const std::vector<std::string>& names, std::uint64_t seed,
                          swim_config cfg = cluster_config()) {
  core_cluster net{cfg, seed};
  for (const auto& n : names)
    net.add(n);
  for (std::size_t i = 1; i < names.size(); ++i)
    net.join(names[i], names[0]);
  return net;
}

void expect_everyone_sees(core_cluster& net, const std::string& subject, member_state s) {
  for (const auto& observer : net.running()) {
    if (observer == subject)
      continue;
    SCOPED_TRACE(observer + " about " + subject);
    EXPECT_EQ(net.state_at(observer, subject), s);
  }
}

TEST(membership_cluster, five_nodes_converge) {
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    SCOPED_TRACE(seed);
    std::vector<std::string> names{"n1", "n2", "n3", "n4", "n5"};
    auto net = make_cluster(names, seed);
    net.run_for(10s);
    for (const auto& n : names) {
      SCOPED_TRACE(n);
      EXPECT_EQ(net.core(n).count(member_state::alive), 5u);
      EXPECT_EQ(net.core(n).count(member_state::suspect), 0u);
      EXPECT_EQ(net.core(n).stats().probe_failures, 0u);
    }
    net.run_for(60s);
    for (const auto& n : names)
      EXPECT_EQ(net.core(n).pending_broadcasts(), 0u) << n;
  }
}

TEST(membership_cluster, accusation_at_the_top_incarnation_cannot_evict_a_healthy_node) {
  // Issue 13: one forged datagram saying `left` at 2^64-1 about d, received by two members,
  // listed d as left for good (d's refutation, max + 1, wrapped to 0). Every accusation,
  // delivered to two members and to d itself.
  for (const auto& [what, u] : accusations("d", top)) {
    SCOPED_TRACE(what);
    auto net = make_cluster({"a", "b", "c", "d"}, 51);
    net.run_for(5s);
    for (const auto* to : {"a", "b", "d"})
      net.feed(to, net.core(to).on_packet(gossip_from("c", {u}), net.now()));
    net.run_for(60s);
    expect_everyone_sees(net, "d", member_state::alive);
    EXPECT_EQ(net.core("d").self().state, member_state::alive);
    EXPECT_LT(net.core("d").self().incarnation, max_incarnation_jump);
    for (const auto* n : {"a", "b", "d"}) {
      SCOPED_TRACE(n);
      EXPECT_EQ(net.core(n).stats().incarnation_refused, 1u);
      EXPECT_EQ(net.core(n).count(member_state::alive), 4u);
    }
  }
}

TEST(membership_cluster, silenced_node_is_detected_dead_by_all) {
  for (std::uint64_t seed : {21u, 22u}) {
    SCOPED_TRACE(seed);
    auto net = make_cluster({"a", "b", "c", "d"}, seed);
    net.run_for(5s);
    net.silence("c");
    net.run_for(40s);
    expect_everyone_sees(net, "c", member_state::dead);
    for (const auto& n : {"a", "b", "d"}) {
      SCOPED_TRACE(n);
      EXPECT_EQ(net.core(n).count(member_state::alive), 3u) << "no collateral deaths";
      EXPECT_EQ(net.core(n).health_score(), 0u);
      auto& evs = net.events(n);
      EXPECT_NE(std::find_if(evs.begin(), evs.end(),
                             [](const member_event& e) {
                               return e.kind == member_event_kind::failed && e.subject.name == "c";
                             }),
                evs.end());
    }
    // Dogpile: with confirmations the death comes well before the 6x maximum (24 s).
    auto death = net.core("a").find("c")->since;
    EXPECT_LT(death, net.now() - 40s + 24s);
    net.run_for(70s);
    for (const auto& n : {"a", "b", "d"})
      EXPECT_FALSE(net.core(n).find("c")) << "reaped at " << n;
  }
}

TEST(membership_cluster, false_suspicion_is_refuted_everywhere) {
  auto net = make_cluster({"a", "b", "c", "d"}, 31);
  net.run_for(5s);
  // b wrongly believes c is suspect (say, a lost ack) and spreads it.
  auto fx = net.core("b").on_packet(gossip_from("a", {suspect("c", 0, "a")}), net.now());
  net.feed("b", std::move(fx));
  net.run_for(30s);
  expect_everyone_sees(net, "c", member_state::alive);
  EXPECT_GE(net.core("c").self().incarnation, 1u);
  EXPECT_GE(net.core("c").stats().refutations, 1u);
  for (const auto& n : {"a", "b", "d"}) {
    EXPECT_EQ(net.core(n).find("c")->incarnation, net.core("c").self().incarnation) << n;
    EXPECT_EQ(net.core(n).count(member_state::dead), 0u) << n;
  }
}

TEST(membership_cluster, restarted_node_rejoins_after_being_reaped) {
  for (std::uint64_t seed : {41u, 42u}) {
    SCOPED_TRACE(seed);
    auto net = make_cluster({"a", "b", "c", "d"}, seed);
    net.run_for(5s);
    auto old_inc = net.core("c").self().incarnation;
    net.crash("c");
    net.run_for(120s);
    for (const auto& n : {"a", "b", "d"})
      ASSERT_FALSE(net.core(n).find("c")) << n;
    // A stale full state naming c alive does not bring it back.
    push_pull stale;
    stale.sender = "ghost";
    stale.sender_address = addr("ghost");
    stale.members = {alive("c", old_inc)};
    (void)net.core("b").on_push_pull_response(stale, net.now());
    EXPECT_FALSE(net.core("b").find("c"));

    // c restarts from incarnation 0 and joins through a.
    net.add("c");
    net.join("c", "a");
    net.run_for(20s);
    expect_everyone_sees(net, "c", member_state::alive);
    EXPECT_GT(net.core("c").self().incarnation, old_inc);
    for (const auto& n : {"a", "b", "d"}) {
      SCOPED_TRACE(n);
      EXPECT_EQ(net.core(n).find("c")->incarnation, net.core("c").self().incarnation);
    }
    EXPECT_EQ(net.core("c").count(member_state::alive), 4u);
  }
}

TEST(membership_cluster, restarted_node_rejoins_while_still_held_dead) {
  auto net = make_cluster({"a", "b", "c"}, 51);
  net.run_for(5s);
  net.crash("c");
  net.run_for(40s);
  expect_everyone_sees(net, "c", member_state::dead);
  net.add("c");
  net.join("c", "b");
  net.run_for(20s);
  expect_everyone_sees(net, "c", member_state::alive);
  EXPECT_GE(net.core("c").self().incarnation, 1u);
}

TEST(membership_cluster, leave_spreads_as_left_then_reaped) {
  auto net = make_cluster({"a", "b", "c", "d"}, 61);
  net.run_for(5s);
  net.feed("d", net.core("d").leave(net.now()));
  net.run_for(3s);
  expect_everyone_sees(net, "d", member_state::left);
  net.crash("d");
  net.run_for(30s);
  expect_everyone_sees(net, "d", member_state::left);
  for (const auto& n : {"a", "b", "c"})
    EXPECT_EQ(net.core(n).stats().suspicions, 0u) << "nobody probes a left member";
  net.run_for(40s);
  for (const auto& n : {"a", "b", "c"})
    EXPECT_FALSE(net.core(n).find("d")) << n;
}

TEST(membership_cluster, tags_update_spreads) {
  auto net = make_cluster({"a", "b", "c"}, 71);
  net.run_for(5s);
  net.feed("a", net.core("a").set_tags({{"zone", "eu-1"}}, net.now()));
  net.run_for(3s);
  for (const auto& n : {"b", "c"}) {
    auto a = net.core(n).find("a");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->tags.at("zone"), "eu-1") << n;
    EXPECT_EQ(a->incarnation, 1u);
  }
}

TEST(membership_cluster, partition_is_detected_and_heals) {
  for (std::uint64_t seed : {91u, 92u}) {
    SCOPED_TRACE(seed);
    std::vector<std::string> names{"a1", "a2", "a3", "b1", "b2", "b3"};
    auto net = make_cluster(names, seed);
    net.run_for(5s);
    auto side = [](const std::string& n) { return n[0]; };
    net.set_cut(
        [&](const std::string& from, const std::string& to) { return side(from) != side(to); });
    net.run_for(30s);
    for (const auto& o : names)
      for (const auto& x : names)
        if (side(o) != side(x)) {
          EXPECT_EQ(net.state_at(o, x), member_state::dead) << o << " about " << x;
        }
    net.set_cut(nullptr);
    net.run_for(10s);
    for (const auto& o : names)
      EXPECT_EQ(net.core(o).count(member_state::alive), names.size()) << o;
  }
}

TEST(membership_cluster, long_partition_heals_through_reconnects) {
  auto cfg = cluster_config();
  cfg.reap_after = 1h;
  std::vector<std::string> names{"a1", "a2", "a3", "b1", "b2", "b3"};
  auto net = make_cluster(names, 95, cfg);
  net.run_for(5s);
  auto side = [](const std::string& n) { return n[0]; };
  net.set_cut(
      [&](const std::string& from, const std::string& to) { return side(from) != side(to); });
  net.run_for(120s); // well past gossip_to_dead
  net.set_cut(nullptr);
  net.run_for(2 * cfg.push_pull_interval + 10s);
  for (const auto& o : names)
    EXPECT_EQ(net.core(o).count(member_state::alive), names.size()) << o;
}

TEST(membership_cluster, survives_packet_loss_without_false_deaths) {
  auto net = make_cluster({"a", "b", "c", "d", "e"}, 81);
  net.set_loss(0.05);
  net.run_for(120s);
  for (const auto& n : net.running()) {
    SCOPED_TRACE(n);
    EXPECT_EQ(net.core(n).count(member_state::dead), 0u);
    EXPECT_EQ(net.core(n).count(member_state::alive) + net.core(n).count(member_state::suspect),
              5u);
  }
}

TEST(membership_cluster, banned_node_is_cut_off_although_it_keeps_running) {
  for (std::uint64_t seed : {91u, 92u}) {
    SCOPED_TRACE(seed);
    auto net = make_cluster({"a", "b", "c", "d"}, seed);
    net.run_for(5s);
    // The revocation reaches a first, the others a little later (its own channel).
    net.feed("a", net.core("a").ban("c", net.now()));
    net.run_for(300ms);
    for (const auto& n : {"b", "d"})
      net.feed(n, net.core(n).ban("c", net.now()));
    net.run_for(1s);
    const auto heard = net.core("c").stats().packets_received;
    net.run_for(40s);
    // c keeps probing and refuting, but nobody answers it or believes it.
    expect_everyone_sees(net, "c", member_state::dead);
    EXPECT_EQ(net.core("c").stats().packets_received, heard) << "nothing is sent to c";
    for (const auto& n : {"a", "b", "d"}) {
      SCOPED_TRACE(n);
      EXPECT_EQ(net.core(n).count(member_state::alive), 3u) << "no collateral deaths";
      EXPECT_GT(net.core(n).stats().banned_refused, 0u);
    }
    net.run_for(30s);
    for (const auto& n : {"a", "b", "d"}) {
      EXPECT_FALSE(net.core(n).find("c")) << "reaped at " << n;
      EXPECT_TRUE(net.core(n).banned("c")) << n;
    }
  }
}

} // namespace
} // namespace starling::gossip
