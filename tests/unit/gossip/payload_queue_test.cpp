// Tests of the ready-made extension helpers (gossip/payload_queue.hpp): the payload queue's
// order, transmit limit, replacement by key, bounds and refusals, and queued_extension.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/errc.hpp"
#include "gossip/membership.hpp"
#include "gossip/payload_queue.hpp"

namespace starling::gossip {
namespace {

constexpr extension_kind kind = 7;

piggyback_request room(std::size_t budget, unsigned limit = 3, std::size_t count = 64) {
  piggyback_request r;
  r.budget = budget;
  r.max_count = count;
  r.retransmit_limit = limit;
  return r;
}

TEST(payload_queue, least_sent_then_newest_first) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("old"));
  ASSERT_FALSE(q.push("new"));
  const auto one = extension_payload_bound(kind, 3);
  EXPECT_EQ(q.take(room(one)), (std::vector<std::string>{"new"}));
  EXPECT_EQ(q.take(room(one)), (std::vector<std::string>{"old"})) << "new was sent once";
  ASSERT_FALSE(q.push("fresh"));
  EXPECT_EQ(q.take(room(10 * one)), (std::vector<std::string>{"fresh", "new", "old"}));
}

TEST(payload_queue, each_payload_is_sent_the_transmit_limit_then_dropped) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(q.take(room(100, 4)).size(), 1u) << i;
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.take(room(100, 4)).empty());
  EXPECT_EQ(q.stats().sends, 4u);
  EXPECT_EQ(q.stats().completed, 1u);
  // A fixed limit overrides the core's.
  payload_queue fixed{kind, payload_queue_config{16, 2}};
  ASSERT_FALSE(fixed.push("p"));
  EXPECT_EQ(fixed.take(room(100, 50)).size(), 1u);
  EXPECT_EQ(fixed.take(room(100, 50)).size(), 1u);
  EXPECT_TRUE(fixed.empty());
}

TEST(payload_queue, respects_budget_and_count_and_skips_what_does_not_fit) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push(std::string(100, 'b')));
  ASSERT_FALSE(q.push("small"));
  ASSERT_FALSE(q.push(std::string(500, 'B')));
  const auto big = extension_payload_bound(kind, 500);
  const auto small = extension_payload_bound(kind, 5);
  // The newest (500 bytes) does not fit: the smaller ones behind it still go.
  auto got = q.take(room(small + extension_payload_bound(kind, 100)));
  EXPECT_EQ(got, (std::vector<std::string>{"small", std::string(100, 'b')}));
  EXPECT_EQ(q.take(room(big, 3, 0)).size(), 0u) << "count 0";
  EXPECT_EQ(q.take(room(big - 1)).size(), 2u) << "all but the big one";
  EXPECT_EQ(q.take(room(big)), (std::vector<std::string>{std::string(500, 'B')}));
}

TEST(payload_queue, never_hands_a_payload_twice_to_one_datagram) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  auto first = room(100, 10);
  first.datagram = 5;
  EXPECT_EQ(q.take(first).size(), 1u);
  EXPECT_TRUE(q.take(first).empty()) << "the second call for datagram 5";
  first.datagram = 6;
  EXPECT_EQ(q.take(first).size(), 1u);
  first.datagram = 0; // no datagram number: no check
  EXPECT_EQ(q.take(first).size(), 1u);
  EXPECT_EQ(q.take(first).size(), 1u);
}

/// A datagram to member `to`, held in `state`, with `live` live members (us included), each
/// name in `alive_set` live, and a limit of 4.
piggyback_request datagram_to(const std::string& to, member_state state, std::size_t live,
                              const std::set<std::string>* alive_set = nullptr) {
  auto r = room(1000, 4);
  r.to = to;
  r.to_state = state;
  r.live_members = live;
  if (alive_set)
    r.is_live = [alive_set](std::string_view n) { return alive_set->contains(std::string(n)); };
  return r;
}

TEST(payload_queue, gives_a_payload_once_to_each_live_member_and_counts_only_the_alive) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  constexpr auto alive = member_state::alive, suspect = member_state::suspect,
                 dead = member_state::dead;
  // 20 live members: the limit (4) ends it before a pass does.
  EXPECT_EQ(q.take(datagram_to("a", alive, 20)).size(), 1u);
  EXPECT_TRUE(q.take(datagram_to("a", alive, 20)).empty()) << "a has it";
  EXPECT_EQ(q.take(datagram_to("s", suspect, 20)).size(), 1u) << "rides to a suspect once";
  EXPECT_TRUE(q.take(datagram_to("s", suspect, 20)).empty());
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(q.take(datagram_to("x", dead, 20)).size(), 1u) << "rides to the dead " << i;
  EXPECT_EQ(q.stats().uncounted, 4u);
  for (const auto* n : {"b", "c"})
    EXPECT_EQ(q.take(datagram_to(n, alive, 20)).size(), 1u) << n;
  EXPECT_FALSE(q.empty()) << "3 alive members were given it";
  EXPECT_EQ(q.take(datagram_to("d", alive, 20)).size(), 1u);
  EXPECT_TRUE(q.empty()) << "the fourth";
  EXPECT_EQ(q.stats().sends, 8u);
  EXPECT_EQ(q.stats().completed, 1u);
}

TEST(payload_queue, datagrams_to_cut_members_cannot_use_a_payload_up) {
  // tests/integration/routing_partition_test.cpp in miniature: c, with a and b cut off and
  // d its one reachable peer. In one tick c probes a (alive: not noticed yet), reminds b (a
  // suspect) and gossips to a and b before d. Before, that was 4 sends: the payload was
  // gone before d's datagram.
  payload_queue q{kind};
  ASSERT_FALSE(q.push("api"));
  const std::set<std::string> live{"a", "b", "d"};
  constexpr auto alive = member_state::alive, suspect = member_state::suspect;
  EXPECT_EQ(q.take(datagram_to("a", alive, 4, &live)).size(), 1u);   // probe
  EXPECT_EQ(q.take(datagram_to("b", suspect, 4, &live)).size(), 1u); // reminder
  EXPECT_TRUE(q.take(datagram_to("a", alive, 4, &live)).empty());    // gossip
  EXPECT_TRUE(q.take(datagram_to("b", suspect, 4, &live)).empty());  // gossip
  ASSERT_FALSE(q.empty());
  EXPECT_EQ(q.take(datagram_to("d", alive, 4, &live)), (std::vector<std::string>{"api"}));
  // Every live member has it, 2 counted sends of 4: a second pass, as many copies as the
  // limit allows (a datagram may be lost).
  EXPECT_EQ(q.take(datagram_to("b", suspect, 4, &live)).size(), 1u);
  EXPECT_EQ(q.take(datagram_to("d", alive, 4, &live)).size(), 1u);
  EXPECT_TRUE(q.take(datagram_to("d", alive, 4, &live)).empty()) << "d has it in this pass";
  EXPECT_EQ(q.take(datagram_to("a", alive, 4, &live)).size(), 1u);
  EXPECT_TRUE(q.empty()) << "4 counted sends";
  EXPECT_EQ(q.stats().completed, 1u);
}

TEST(payload_queue, a_member_given_it_that_died_since_does_not_count_for_the_pass) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  std::set<std::string> live{"a", "b", "d"};
  EXPECT_EQ(q.take(datagram_to("a", member_state::alive, 4, &live)).size(), 1u);
  EXPECT_EQ(q.take(datagram_to("b", member_state::suspect, 4, &live)).size(), 1u);
  live.erase("b"); // b is dead now: 3 live members with us, and d still lacks the payload
  EXPECT_EQ(q.take(datagram_to("b", member_state::dead, 3, &live)).size(), 1u) << "a ride";
  EXPECT_TRUE(q.take(datagram_to("a", member_state::alive, 3, &live)).empty()) << "d first";
  EXPECT_EQ(q.take(datagram_to("d", member_state::alive, 3, &live)).size(), 1u);
  // Only a is live now: each datagram to it carries the payload, up to the limit.
  ASSERT_FALSE(q.empty());
  live.erase("d");
  EXPECT_EQ(q.take(datagram_to("a", member_state::alive, 2, &live)).size(), 1u);
  EXPECT_EQ(q.take(datagram_to("a", member_state::alive, 2, &live)).size(), 1u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.stats().completed, 1u);
}

TEST(payload_queue, a_pass_that_reaches_no_alive_member_is_the_last) {
  // Nobody live: one ride to the dead.
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  const std::set<std::string> none;
  EXPECT_EQ(q.take(datagram_to("x", member_state::dead, 1, &none)).size(), 1u);
  EXPECT_TRUE(q.empty());
  // Only suspects: each is given it once.
  ASSERT_FALSE(q.push("q"));
  const std::set<std::string> suspects{"s", "t"};
  EXPECT_EQ(q.take(datagram_to("s", member_state::suspect, 3, &suspects)).size(), 1u);
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.take(datagram_to("t", member_state::suspect, 3, &suspects)).size(), 1u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.stats().uncounted, 3u);
  EXPECT_EQ(q.stats().completed, 2u);
}

TEST(payload_queue, a_newer_payload_with_the_same_key_replaces_the_older) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("split web 90/10", "split/web"));
  ASSERT_FALSE(q.push("route api", "route/api"));
  (void)q.take(room(1000));
  ASSERT_FALSE(q.push("split web 50/50", "split/web"));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.stats().replaced, 1u);
  auto got = q.take(room(1000));
  EXPECT_EQ(got.front(), "split web 50/50") << "never sent: first";
  EXPECT_EQ(std::count(got.begin(), got.end(), "split web 90/10"), 0);
}

TEST(payload_queue, is_bounded_dropping_the_most_sent_first) {
  payload_queue q{kind, payload_queue_config{3, 10}};
  ASSERT_FALSE(q.push("a"));
  (void)q.take(room(extension_payload_bound(kind, 1))); // a sent once
  ASSERT_FALSE(q.push("b"));
  ASSERT_FALSE(q.push("c"));
  ASSERT_FALSE(q.push("d")); // full: a (sent once) goes
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.stats().overflow, 1u);
  ASSERT_FALSE(q.push("e")); // all unsent: the oldest (b) goes
  EXPECT_EQ(q.take(room(1000)), (std::vector<std::string>{"e", "d", "c"}));
}

TEST(payload_queue, refuses_empty_and_oversized_payloads) {
  payload_queue q{kind};
  auto empty = q.push("");
  EXPECT_EQ(empty.code(), static_cast<int>(errc::invalid_field));
  auto huge = q.push(std::string(max_extension_payload_bytes + 1, 'x'));
  EXPECT_EQ(huge.code(), static_cast<int>(errc::invalid_field));
  EXPECT_NE(render(huge).find("1025 bytes"), std::string::npos) << render(huge);
  EXPECT_FALSE(q.push(std::string(max_extension_payload_bytes, 'x')));
  EXPECT_EQ(q.stats().refused, 2u);
  EXPECT_EQ(q.size(), 1u);
}

TEST(queued_extension, forwards_to_its_callbacks_and_does_nothing_without_them) {
  std::vector<std::string> heard;
  queued_extension ext{
      kind,
      {},
      [&](std::string_view bytes, const std::string& sender, time_point) {
        heard.push_back(sender + ":" + std::string(bytes));
        return extension_effects{{sender}, {}};
      },
      [](bool join) -> std::optional<std::string> { return join ? "j" : "s"; },
      [&](std::string_view bytes, const std::string& sender, bool join, time_point) {
        heard.push_back(sender + (join ? "+" : "-") + std::string(bytes));
        return extension_effects{};
      }};
  EXPECT_FALSE(ext.has_payloads());
  ASSERT_FALSE(ext.queue().push("x"));
  EXPECT_TRUE(ext.has_payloads());
  EXPECT_EQ(ext.take_payloads(room(100)), (std::vector<std::string>{"x"}));
  EXPECT_EQ(ext.on_payload("p", "b", {}).push_pull_with, (std::vector<std::string>{"b"}));
  EXPECT_EQ(ext.make_section(true), "j");
  (void)ext.on_section("s", "c", false, {});
  EXPECT_EQ(heard, (std::vector<std::string>{"b:p", "c-s"}));

  queued_extension bare{kind};
  EXPECT_TRUE(bare.on_payload("p", "b", {}).push_pull_with.empty());
  EXPECT_FALSE(bare.make_section(false));
  EXPECT_TRUE(bare.on_section("s", "b", true, {}).push_pull_with.empty());
}

} // namespace
} // namespace starling::gossip
