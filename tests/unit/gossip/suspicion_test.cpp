// Unit tests of the Lifeguard suspicion timer arithmetic (gossip/suspicion.hpp).
#include <cmath>

#include <gtest/gtest.h>

#include "gossip/suspicion.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours{1};

TEST(suspicion, min_timeout_scales_with_log10_of_mesh_size) {
  EXPECT_EQ(suspicion_min_timeout(4, 0, 1s), 4s);
  EXPECT_EQ(suspicion_min_timeout(4, 1, 1s), 4s);
  EXPECT_EQ(suspicion_min_timeout(4, 10, 1s), 4s);
  EXPECT_EQ(suspicion_min_timeout(4, 100, 1s), 8s);
  EXPECT_EQ(suspicion_min_timeout(5, 1000, 200ms), 3s);
  auto t = suspicion_min_timeout(4, 20, 1s);
  EXPECT_NEAR(std::chrono::duration<double>(t).count(), 4 * std::log10(20.0), 1e-6);
}

TEST(suspicion, expected_confirmations_shrink_in_small_meshes) {
  EXPECT_EQ(suspicion_expected_confirmations(4, 100), 2u);
  EXPECT_EQ(suspicion_expected_confirmations(4, 4), 2u);
  EXPECT_EQ(suspicion_expected_confirmations(4, 3), 1u);
  EXPECT_EQ(suspicion_expected_confirmations(4, 2), 0u);
  EXPECT_EQ(suspicion_expected_confirmations(4, 1), 0u);
  EXPECT_EQ(suspicion_expected_confirmations(6, 100), 4u);
  EXPECT_EQ(suspicion_expected_confirmations(1, 100), 0u);
}

TEST(suspicion, timeout_goes_from_max_to_min_logarithmically) {
  EXPECT_EQ(suspicion_timeout(2, 0, 4s, 24s), 24s);
  auto one = suspicion_timeout(2, 1, 4s, 24s);
  auto expected = 24.0 - 20.0 * std::log(2.0) / std::log(3.0);
  EXPECT_NEAR(std::chrono::duration<double>(one).count(), expected, 1e-6);
  EXPECT_EQ(suspicion_timeout(2, 2, 4s, 24s), 4s);
  EXPECT_EQ(suspicion_timeout(2, 5, 4s, 24s), 4s);
  EXPECT_EQ(suspicion_timeout(0, 0, 4s, 24s), 4s) << "nobody can confirm: minimum";
}

TEST(suspicion, confirmations_count_distinct_members_other_than_the_starter) {
  suspicion s{"a", 2, 4s, 24s, t0};
  EXPECT_EQ(s.deadline(), t0 + 24s);
  EXPECT_FALSE(s.confirm("a")) << "the starter does not confirm itself";
  EXPECT_TRUE(s.confirm("b"));
  EXPECT_FALSE(s.confirm("b")) << "one confirmation per member";
  EXPECT_EQ(s.confirmations(), 1u);
  EXPECT_LT(s.deadline(), t0 + 24s);
  EXPECT_GT(s.deadline(), t0 + 4s);
  EXPECT_TRUE(s.confirm("c"));
  EXPECT_EQ(s.deadline(), t0 + 4s);
  EXPECT_FALSE(s.confirm("d")) << "saturated at k";
  EXPECT_EQ(s.confirmations(), 2u);
  EXPECT_EQ(s.from(), "a");
  EXPECT_EQ(s.start(), t0);
}

TEST(suspicion, without_expected_confirmations_the_minimum_applies) {
  suspicion s{"a", 0, 4s, 24s, t0};
  EXPECT_EQ(s.deadline(), t0 + 4s);
  EXPECT_FALSE(s.confirm("b"));
}

} // namespace
} // namespace starling::gossip
