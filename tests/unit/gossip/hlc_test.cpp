// The hybrid logical clock (gossip/hlc.hpp): monotonic whatever the wall clock does, causal
// across nodes with skewed clocks, and refusing stamps too far ahead.
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include "gossip/hlc.hpp"
#include "gossip/routing_errc.hpp"

namespace starling::gossip {
namespace {

constexpr std::uint64_t t0 = 1'800'000'000'000;

TEST(hlc, ticks_grow_even_when_the_wall_clock_goes_back) {
  hybrid_clock c;
  auto a = c.tick(t0);
  auto b = c.tick(t0);
  auto back = c.tick(t0 - 5000); // NTP stepped the clock back
  auto fwd = c.tick(t0 + 10);
  EXPECT_EQ(a, (hlc_stamp{t0, 0}));
  EXPECT_EQ(b, (hlc_stamp{t0, 1}));
  EXPECT_EQ(back, (hlc_stamp{t0, 2}));
  EXPECT_EQ(fwd, (hlc_stamp{t0 + 10, 0}));
}

TEST(hlc, a_slow_node_writes_after_what_it_observed) {
  hybrid_clock fast, slow;
  auto sent = fast.tick(t0 + 300'000); // 5 minutes fast
  ASSERT_FALSE(slow.observe(sent, t0));
  auto reply = slow.tick(t0 + 1);
  EXPECT_GT(reply, sent);
  ASSERT_FALSE(fast.observe(reply, t0 + 300'001));
  EXPECT_GT(fast.tick(t0 + 300'001), reply);
}

TEST(hlc, stamps_too_far_ahead_are_refused_and_change_nothing) {
  hybrid_clock c{std::chrono::minutes{10}};
  auto before = c.tick(t0);
  auto err = c.observe({t0 + 600'001, 0}, t0);
  EXPECT_TRUE(is(err, routing_errc::clock_skew));
  EXPECT_EQ(c.last(), before);
  EXPECT_FALSE(c.observe({t0 + 600'000, 0}, t0));
  // A stamp at the end of time with a wall clock near it does not wrap.
  hybrid_clock edge;
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  EXPECT_FALSE(edge.observe({max - 1, 0}, max - 2));
}

TEST(hlc, logical_counter_overflow_moves_to_the_next_millisecond) {
  hybrid_clock c;
  ASSERT_FALSE(c.observe({t0, std::numeric_limits<std::uint32_t>::max()}, t0));
  EXPECT_EQ(c.tick(t0), (hlc_stamp{t0 + 1, 0}));
}

TEST(hlc, random_exchanges_between_skewed_nodes_stay_causal) {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    std::vector<hybrid_clock> nodes(5);
    std::vector<std::int64_t> skew{0, -300'000, 300'000, 1500, -20};
    std::vector<hlc_stamp> last_seen(5);
    std::uint64_t wall = t0;
    for (int step = 0; step < 500; ++step) {
      wall += rng() % 50;
      auto from = rng() % 5, to = rng() % 5;
      auto local = [&](std::size_t n) { return static_cast<std::uint64_t>(wall + skew[n]); };
      auto sent = nodes[from].tick(local(from));
      ASSERT_GT(sent, last_seen[from]); // monotonic per node
      last_seen[from] = sent;
      ASSERT_FALSE(nodes[to].observe(sent, local(to)));
      auto next = nodes[to].tick(local(to));
      ASSERT_GT(next, sent); // causal: after what it received
      last_seen[to] = next;
    }
  }
}

} // namespace
} // namespace starling::gossip
