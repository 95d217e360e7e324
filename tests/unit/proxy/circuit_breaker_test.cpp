#include <cstdint>
#include <limits>

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
