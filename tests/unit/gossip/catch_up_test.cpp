// The catch-up push-pull of the membership core (issue 15, item 2): a push-pull that brings
// members we did not know brings the next push-pull forward, so a joiner whose join answer
// missed a member (news in flight while it joined, which gossip then stopped sending before
// anyone knew the joiner) repairs its view in seconds instead of at the first periodic
// push-pull (30 s after its start). Single cores fed hand-made state; time is passed in.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/membership.hpp"
#include "tests/support/core_packets.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;
using namespace test_support;

/// Defaults (gossip_interval 200 ms, retransmit_mult 4, push_pull_interval 30 s) with probing
/// out of the way: nobody answers in these tests, and the push-pull schedule is the subject.
swim_config config() {
  swim_config cfg;
  cfg.probe_interval = 24h;
  return cfg;
}

/// The state `sender` sends in a push-pull: itself and `others`, all alive.
push_pull state_of(const std::string& sender, const std::vector<std::string>& others,
                   bool join = false) {
  push_pull pp;
  pp.sender = sender;
  pp.sender_address = addr(sender);
  pp.join = join;
  pp.members.push_back(alive(sender));
  for (const auto& n : others)
    pp.members.push_back(alive(n));
  return pp;
}

/// Members p0..p(count-1).
std::vector<std::string> bystanders(std::size_t count) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i)
    out.push_back("p" + std::to_string(i));
  return out;
}

struct started_push_pull {
  time_point at;
  std::string address;
};

/// Ticks `m` from deadline to deadline until it starts a push-pull or `until` passes.
std::optional<started_push_pull> next_push_pull(membership& m, time_point from, time_point until) {
  for (auto now = std::max(from, m.next_deadline()); now <= until;
       now = std::max(now + 1ms, m.next_deadline())) {
    auto fx = m.on_tick(now);
    if (!fx.push_pull_to.empty())
      return started_push_pull{now, fx.push_pull_to.front()};
  }
  return std::nullopt;
}

bool knows(const membership& m, const std::string& name) {
  auto found = m.find(name);
  return found && found->state == member_state::alive;
}

TEST(catch_up, a_member_missing_from_the_join_answer_is_learned_within_seconds) {
  // x joins through seed s2, whose answer lacks m: m joined through another seed a moment
  // before, and its news had not reached s2 yet. By the time the rest of the mesh knows x,
  // every member has sent m's alive its retransmit_limit times and stopped: no datagram will
  // ever carry it to x (in the simulator, seeds 2, 10, 11, 15, 17, 19 and 20 at n = 100).
  membership x{"x", addr("x"), {}, config(), 1, t0};
  const auto others = bystanders(98); // with s2 and x: n = 100
  const auto joined_at = t0 + 10ms;
  (void)x.on_push_pull_response(state_of("s2", others, false), joined_at);
  ASSERT_FALSE(knows(x, "m"));
  ASSERT_EQ(x.count(member_state::alive), 100u);

  // retransmit_limit at n = 100: 4 * ceil(log10(101)) = 12 sends; at one gossip round per
  // 200 ms, 2.4 s: m's news, in flight at the join, has died out everywhere by then.
  const auto dissemination = 12 * config().gossip_interval;
  auto first = next_push_pull(x, joined_at, t0 + 29s);
  ASSERT_TRUE(first) << "no push-pull before the periodic one: the tail of issue 15";
  EXPECT_EQ(first->at, joined_at + dissemination);
  EXPECT_NE(first->address, addr("s2")) << "the catch-up asks another member than the seed";

  // Any settled member knows m: its answer repairs x's view.
  auto everyone = others;
  everyone.push_back("s2");
  everyone.push_back("m");
  const auto peer = first->address.substr(0, first->address.find(':'));
  auto fx = x.on_push_pull_response(state_of(peer, everyone), first->at + 1ms);
  EXPECT_TRUE(knows(x, "m"));
  ASSERT_EQ(fx.events.size(), 1u);
  EXPECT_EQ(fx.events.front().kind, member_event_kind::joined);

  // That exchange taught x a member: one more catch-up, at twice the delay.
  auto second = next_push_pull(x, first->at + 1ms, t0 + 29s);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->at, first->at + 1ms + 2 * dissemination);
  // Nothing new this time: x is caught up, and the periodic schedule resumes (90 s at
  // n = 101: 30 s x (ceil(log2(101 / 32)) + 1)).
  const auto peer2 = second->address.substr(0, second->address.find(':'));
  auto fx2 = x.on_push_pull_response(state_of(peer2, everyone), second->at + 1ms);
  EXPECT_TRUE(fx2.events.empty());
  auto third = next_push_pull(x, second->at + 1ms, second->at + 10min);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->at, second->at + 90s);
}

TEST(catch_up, a_joiner_request_teaching_only_the_joiner_adds_no_push_pull) {
  // A seed answers every joiner: a joiner's state holds only itself, which is not a gap in
  // the seed's view, so seeds do not push-pull more during a bootstrap.
  membership s{"s", addr("s"), {}, config(), 2, t0};
  (void)s.on_push_pull_response(state_of("p0", bystanders(20)), t0);
  auto first = next_push_pull(s, t0, t0 + 29s);
  ASSERT_TRUE(first); // the catch-up after s learned p0..p19
  (void)s.on_push_pull_response(state_of("p1", bystanders(20)), first->at);
  const auto quiet_from = first->at;
  (void)s.on_push_pull_request(state_of("j", {}, true), quiet_from + 1s);
  EXPECT_TRUE(knows(s, "j"));
  EXPECT_FALSE(next_push_pull(s, quiet_from + 1s, quiet_from + 29s));
}

TEST(catch_up, a_peer_request_that_teaches_us_members_brings_our_push_pull_forward) {
  // The repair goes both ways: a peer's catch-up push to a node that missed a member.
  membership s{"s", addr("s"), {}, config(), 3, t0};
  (void)s.on_push_pull_response(state_of("p0", bystanders(20)), t0);
  auto first = next_push_pull(s, t0, t0 + 29s);
  ASSERT_TRUE(first);
  (void)s.on_push_pull_response(state_of("p1", bystanders(20)), first->at);
  auto members = bystanders(20);
  members.push_back("m");
  (void)s.on_push_pull_request(state_of("p2", members), first->at + 1s);
  EXPECT_TRUE(knows(s, "m"));
  auto next = next_push_pull(s, first->at + 1s, first->at + 29s);
  ASSERT_TRUE(next);
  EXPECT_NE(next->address, addr("p2"));
}

TEST(catch_up, none_when_push_pull_is_off) {
  auto cfg = config();
  cfg.push_pull_interval = duration::zero();
  membership x{"x", addr("x"), {}, cfg, 4, t0};
  (void)x.on_push_pull_response(state_of("s2", bystanders(10)), t0);
  EXPECT_FALSE(next_push_pull(x, t0, t0 + 10min));
}

} // namespace
} // namespace starling::gossip
