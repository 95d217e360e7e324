#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "proxy/circuit_breaker.hpp"

namespace sp = starling::proxy;
using r = sp::breaker_resource;

namespace {

const r all[] = {r::connections, r::pending_requests, r::active_requests};

} // namespace

TEST(circuit_breaker, names_are_stable_snake_case_and_parse_back) {
  EXPECT_EQ(sp::to_string(r::connections), "connections");
  EXPECT_EQ(sp::to_string(r::pending_requests), "pending_requests");
  EXPECT_EQ(sp::to_string(r::active_requests), "active_requests");
  for (auto x : all)
    EXPECT_EQ(sp::breaker_resource_from(sp::to_string(x)), x);
  EXPECT_FALSE(sp::breaker_resource_from("Connections"));
  EXPECT_FALSE(sp::breaker_resource_from(""));
}

TEST(circuit_breaker, defaults_are_envoys) {
  sp::circuit_breaker b;
  EXPECT_EQ(b.limit(r::connections), 1024u);
  EXPECT_EQ(b.limit(r::pending_requests), 1024u);
  EXPECT_EQ(b.limit(r::active_requests), 1024u);
}

TEST(circuit_breaker, closed_then_open_at_the_cap_then_closed_after_a_release) {
  sp::circuit_breaker b{{4, 3, 2}};
  for (auto x : all) {
    SCOPED_TRACE(sp::to_string(x));
    const auto cap = b.limit(x);
    for (std::uint64_t i = 0; i < cap; ++i) {
      EXPECT_FALSE(b.is_open(x));
      EXPECT_TRUE(b.try_acquire(x));
    }
    EXPECT_EQ(b.in_use(x), cap);
    EXPECT_TRUE(b.is_open(x));
    EXPECT_FALSE(b.try_acquire(x));
    EXPECT_FALSE(b.try_acquire(x));
    EXPECT_EQ(b.refusals(x), 2u);
    EXPECT_EQ(b.in_use(x), cap);
    EXPECT_TRUE(b.release(x));
    EXPECT_FALSE(b.is_open(x));
    EXPECT_TRUE(b.try_acquire(x));
    EXPECT_EQ(b.refusals(x), 2u);
  }
}

TEST(circuit_breaker, resources_are_independent) {
  sp::circuit_breaker b{{1, 1, 1}};
  EXPECT_TRUE(b.try_acquire(r::active_requests));
  EXPECT_FALSE(b.try_acquire(r::active_requests));
  EXPECT_TRUE(b.try_acquire(r::connections));
  EXPECT_TRUE(b.try_acquire(r::pending_requests));
  EXPECT_EQ(b.refusals(r::active_requests), 1u);
  EXPECT_EQ(b.refusals(r::connections), 0u);
  EXPECT_EQ(b.refusals(r::pending_requests), 0u);
}

TEST(circuit_breaker, zero_caps_refuse_everything) {
  sp::circuit_breaker b{{0, 0, 0}};
  for (auto x : all) {
    SCOPED_TRACE(sp::to_string(x));
    EXPECT_TRUE(b.is_open(x));
    EXPECT_FALSE(b.try_acquire(x));
    EXPECT_EQ(b.in_use(x), 0u);
    EXPECT_EQ(b.refusals(x), 1u);
  }
}

TEST(circuit_breaker, an_unmatched_release_is_counted_and_never_wraps) {
  sp::circuit_breaker b{{1, 1, 1}};
  EXPECT_FALSE(b.release(r::connections));
  EXPECT_EQ(b.in_use(r::connections), 0u);
  EXPECT_EQ(b.unmatched_releases(), 1u);
  EXPECT_TRUE(b.try_acquire(r::connections));
  EXPECT_TRUE(b.release(r::connections));
  EXPECT_FALSE(b.release(r::connections));
  EXPECT_EQ(b.unmatched_releases(), 2u);
  EXPECT_TRUE(b.try_acquire(r::connections)); // the cap still holds at 1
  EXPECT_FALSE(b.try_acquire(r::connections));
}

TEST(circuit_breaker, the_largest_cap_is_usable) {
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  sp::circuit_breaker b{{max, max, max}};
  for (auto x : all) {
    EXPECT_TRUE(b.try_acquire(x));
    EXPECT_FALSE(b.is_open(x));
    EXPECT_EQ(b.in_use(x), 1u);
  }
}

TEST(circuit_breaker, lowering_a_cap_keeps_what_is_held_and_refuses_new_work) {
  sp::circuit_breaker b{{10, 10, 10}};
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(b.try_acquire(r::active_requests));
  b.reconfigure({10, 10, 2});
  EXPECT_EQ(b.in_use(r::active_requests), 5u);
  EXPECT_TRUE(b.is_open(r::active_requests));
  EXPECT_FALSE(b.try_acquire(r::active_requests));
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(b.release(r::active_requests));
  EXPECT_TRUE(b.is_open(r::active_requests)); // 2 held, cap 2
  EXPECT_TRUE(b.release(r::active_requests));
  EXPECT_TRUE(b.try_acquire(r::active_requests));
  b.reconfigure({10, 10, 100});
  EXPECT_FALSE(b.is_open(r::active_requests));
}

TEST(equal_part, below_the_line_anyone_gets_more_past_it_only_below_an_equal_part) {
  EXPECT_TRUE(sp::within_equal_part(5, 6, 5, 1, 1));  // below the line, whatever it holds
  EXPECT_TRUE(sp::within_equal_part(6, 6, 2, 2, 1));  // 2 < 6 / 2
  EXPECT_FALSE(sp::within_equal_part(6, 6, 3, 2, 1)); // 3 is its part
  EXPECT_TRUE(sp::within_equal_part(6, 6, 0, 7, 1));  // a part of 0: the floor lets one in
  EXPECT_FALSE(sp::within_equal_part(6, 6, 1, 7, 1));
  EXPECT_TRUE(sp::within_equal_part(6, 6, 3, 7, 4)); // the floor rules over a smaller part
  EXPECT_TRUE(sp::within_equal_part(6, 6, 5, 0, 0)); // no holder counted: the whole line
  EXPECT_FALSE(sp::within_equal_part(6, 6, 6, 0, 0));
}

// One caller holds at most half of the cap (rounded up); from three quarters of the cap
// held (by anyone), a caller gets more only below an equal part of those three quarters.
TEST(caller_shares, one_caller_holds_at_most_half_of_the_cap) {
  sp::caller_shares s;
  std::uint64_t total = 0;
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(s.try_take("a", 8, total++)) << i;
  EXPECT_FALSE(s.try_take("a", 8, total));
  EXPECT_EQ(s.held("a"), 4u);
  EXPECT_TRUE(s.try_take("b", 8, total++)); // 4 < 6
  EXPECT_TRUE(s.try_take("b", 8, total++)); // 5 < 6
  EXPECT_TRUE(s.try_take("b", 8, total++)); // at 6: b holds 2 < 6 / 2
  EXPECT_FALSE(s.try_take("b", 8, total));  // b holds 3, its part
  EXPECT_TRUE(s.try_take("c", 8, total++)); // a newcomer: 0 < 6 / 3
  EXPECT_EQ(s.callers(), 3u);
  s.give_back("a");
  --total;
  EXPECT_FALSE(s.try_take("a", 8, total)); // 3 of a is above its part of 2
  for (int i = 0; i < 3; ++i)
    s.give_back("a");
  total -= 3;
  EXPECT_EQ(s.held("a"), 0u);
  EXPECT_EQ(s.callers(), 2u);
  EXPECT_TRUE(s.try_take("a", 8, total)); // 4 held in all: below the line again
  s.give_back("nobody");                  // holds nothing: nothing changes
  EXPECT_EQ(s.callers(), 3u);
}

TEST(caller_shares, small_caps_still_serve_one_caller) {
  sp::caller_shares s;
  EXPECT_TRUE(s.try_take("a", 1, 0)); // half of 1 rounded up
  EXPECT_FALSE(s.try_take("a", 1, 1));
  EXPECT_TRUE(s.try_take("a", 3, 1)); // half of 3 rounded up: 2
  EXPECT_FALSE(s.try_take("a", 3, 2));
  EXPECT_TRUE(s.try_take("b", 3, 2));  // 2 held, below the line of 3 (3 less a quarter of 3)
  EXPECT_FALSE(s.try_take("c", 0, 0)); // a cap of 0 serves nobody
}

// Ten members that turned hostile, each taking all it can in turn, against a cap of 1,024:
// each stops at its share; then one whose requests ended cannot take back more than its
// part, and a newcomer still gets one.
TEST(caller_shares, many_hostile_callers_leave_a_newcomer_room_while_the_cap_has_it) {
  sp::caller_shares s;
  std::uint64_t total = 0;
  const std::uint64_t cap = 1024;
  for (int m = 0; m < 10; ++m)
    while (total < cap && s.try_take("m" + std::to_string(m), cap, total))
      ++total;
  EXPECT_EQ(s.held("m0"), 512u);
  EXPECT_EQ(s.held("m1"), 384u); // 768 / 2
  EXPECT_EQ(s.held("m2"), 128u); // the cap is full
  EXPECT_EQ(total, cap);
  for (int i = 0; i < 300; ++i)
    s.give_back("m0");
  total -= 300;
  // m0 (212) is below its part, 768 / 3 = 256: it takes 44 more and stops.
  while (s.try_take("m0", cap, total))
    ++total;
  EXPECT_EQ(s.held("m0"), 256u);
  EXPECT_TRUE(s.try_take("newcomer", cap, total));
}
