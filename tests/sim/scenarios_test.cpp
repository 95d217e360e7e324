// The report helpers of tests/sim/scenarios.hpp that starling-sim prints with.
#include <gtest/gtest.h>

#include "tests/sim/scenarios.hpp"

namespace starling::sim {
namespace {

TEST(scenarios, seed_distributions_give_min_median_p90_max) {
  // Ten runs: the median is the mean of the 5th and 6th, p90 the 9th (nearest rank).
  const auto d = summarize({9, 1, 8, 2, 7, 3, 6, 4, 5, 30});
  EXPECT_EQ(d.count, 10u);
  EXPECT_DOUBLE_EQ(d.min, 1);
  EXPECT_DOUBLE_EQ(d.median, 5.5);
  EXPECT_DOUBLE_EQ(d.p90, 9);
  EXPECT_DOUBLE_EQ(d.max, 30);
  const auto odd = summarize({3, 1, 2});
  EXPECT_DOUBLE_EQ(odd.median, 2);
  EXPECT_DOUBLE_EQ(odd.p90, 3);
  EXPECT_EQ(summarize({}).count, 0u);
}

} // namespace
} // namespace starling::sim
