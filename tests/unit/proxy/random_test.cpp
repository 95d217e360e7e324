#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "proto/wire/backoff.hpp"
#include "proxy/random.hpp"

namespace sp = starling::proxy;

TEST(random_source, is_deterministic_for_a_seed_and_differs_between_seeds) {
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    SCOPED_TRACE(seed);
    sp::random_source a{seed}, b{seed}, c{seed + 1};
    bool differs = false;
    for (int i = 0; i < 64; ++i) {
      const auto x = a();
      EXPECT_EQ(x, b());
      differs = differs || x != c();
    }
    EXPECT_TRUE(differs);
  }
}

TEST(random_source, seed_zero_is_not_degenerate) {
  sp::random_source r{0};
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i)
    seen.insert(r());
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(random_source, uniform_stays_in_range_and_covers_it_evenly) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    sp::random_source r{seed};
    EXPECT_EQ(r.uniform(0), 0u);
    EXPECT_EQ(r.uniform(1), 0u);
    std::array<int, 7> counts{};
    for (int i = 0; i < 7000; ++i) {
      const auto x = r.uniform(7);
      ASSERT_LT(x, 7u);
      ++counts[x];
    }
    for (int c : counts) { // 1000 expected, sd about 29
      EXPECT_GT(c, 850);
      EXPECT_LT(c, 1150);
    }
    const std::uint64_t huge = (std::uint64_t{1} << 63) + 12345;
    for (int i = 0; i < 100; ++i)
      EXPECT_LT(r.uniform(huge), huge);
  }
}

TEST(random_source, unit_is_in_the_half_open_interval_with_the_right_mean) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    sp::random_source r{seed};
    double sum = 0;
    for (int i = 0; i < 10000; ++i) {
      const double u = r.unit();
      ASSERT_GE(u, 0.0);
      ASSERT_LT(u, 1.0);
      sum += u;
    }
    EXPECT_NEAR(sum / 10000, 0.5, 0.02); // sd of the mean about 0.003
  }
}

TEST(random_source, drives_std_distributions_and_the_wire_backoff) {
  static_assert(std::uniform_random_bit_generator<sp::random_source>);
  sp::random_source r{42};
  SCOPED_TRACE(42);
  std::uniform_int_distribution<int> d{1, 6};
  for (int i = 0; i < 100; ++i) {
    const int x = d(r);
    EXPECT_GE(x, 1);
    EXPECT_LE(x, 6);
  }
  starling::wire::backoff b{{std::chrono::milliseconds{100}, std::chrono::milliseconds{800}, 0.5}};
  for (unsigned n = 0; n < 10; ++n) {
    const auto top = b.ceiling(n);
    const auto delay = b.next_with(r);
    EXPECT_GE(delay, top / 2);
    EXPECT_LT(delay, top);
  }
}
