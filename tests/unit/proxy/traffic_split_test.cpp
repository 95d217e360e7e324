#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/http_text.hpp"
#include "proxy/traffic_split.hpp"

namespace sp = starling::proxy;

namespace {

sp::traffic_policy canary() {
  sp::traffic_policy p;
  p.routes = {{"X-Canary", "yes", "v2"}, {"x-user", "alice", "v3"}};
  p.split = {{"v1", 90}, {"v2", 10}};
  return p;
}

} // namespace

TEST(traffic_split, names_are_stable) {
  EXPECT_EQ(sp::to_string(sp::version_source::header_route), "header_route");
  EXPECT_EQ(sp::to_string(sp::version_source::split), "split");
  EXPECT_EQ(sp::to_string(sp::version_source::any), "any");
  EXPECT_EQ(sp::to_string(sp::traffic_policy_error::split_weights_not_100),
            "split_weights_not_100");
}

TEST(traffic_split, header_routes_match_names_case_insensitively_and_values_exactly) {
  const auto p = canary();
  sp::random_source rng{1};
  SCOPED_TRACE(1);
  const sp::header_field h1[] = {{"host", "svc"}, {"x-CANARY", "yes"}};
  auto c = sp::choose_version(p, h1, rng);
  EXPECT_EQ(c.source, sp::version_source::header_route);
  EXPECT_EQ(c.version, "v2");
  EXPECT_TRUE(c.is_specific());
  const sp::header_field h2[] = {{"x-canary", "YES"}}; // the value is case-sensitive
  EXPECT_EQ(sp::choose_version(p, h2, rng).source, sp::version_source::split);
  const sp::header_field h3[] = {{"x-canary", "yes "}};
  EXPECT_EQ(sp::choose_version(p, h3, rng).source, sp::version_source::split);
  const sp::header_field h4[] = {{"x-canar", "yes"}};
  EXPECT_EQ(sp::choose_version(p, h4, rng).source, sp::version_source::split);
}

TEST(traffic_split, the_first_matching_route_wins_and_any_repeat_of_a_header_counts) {
  const auto p = canary();
  sp::random_source rng{1};
  const sp::header_field both[] = {{"X-User", "alice"}, {"x-canary", "yes"}};
  EXPECT_EQ(sp::choose_version(p, both, rng).version, "v2"); // route order, not header order
  const sp::header_field repeated[] = {{"x-user", "bob"}, {"x-user", "alice"}};
  EXPECT_EQ(sp::choose_version(p, repeated, rng).version, "v3");
}

TEST(traffic_split, routes_do_not_draw_from_the_random_source) {
  const auto p = canary();
  sp::random_source a{9}, b{9};
  const sp::header_field h[] = {{"x-canary", "yes"}};
  (void)sp::choose_version(p, h, a);
  EXPECT_EQ(a(), b());
}

TEST(traffic_split, weighted_split_follows_the_weights_over_many_seeds) {
  sp::traffic_policy p;
  p.split = {{"v1", 70}, {"v2", 25}, {"v3", 5}, {"v4", 0}};
  std::map<std::string, std::uint64_t> all;
  constexpr int draws = 10000;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    sp::random_source rng{seed};
    std::map<std::string, int> counts;
    for (int i = 0; i < draws; ++i) {
      auto c = sp::choose_version(p, {}, rng);
      ASSERT_EQ(c.source, sp::version_source::split);
      ++counts[std::string{c.version}];
    }
    EXPECT_NEAR(counts["v1"] / double(draws), 0.70, 0.025); // sd 0.0046
    EXPECT_NEAR(counts["v2"] / double(draws), 0.25, 0.025); // sd 0.0043
    EXPECT_NEAR(counts["v3"] / double(draws), 0.05, 0.012); // sd 0.0022
    EXPECT_EQ(counts["v4"], 0);
    for (auto& [v, n] : counts)
      all[v] += static_cast<std::uint64_t>(n);
  }
  const double total = 200.0 * draws;
  std::printf("traffic_split 70/25/5/0, 200 seeds x 10000: %.4f %.4f %.4f %.4f\n",
              all["v1"] / total, all["v2"] / total, all["v3"] / total, all["v4"] / total);
  EXPECT_NEAR(all["v1"] / total, 0.70, 0.002);
  EXPECT_NEAR(all["v3"] / total, 0.05, 0.001);
}

TEST(traffic_split, no_split_or_an_all_zero_split_means_any_version) {
  sp::random_source rng{1};
  sp::traffic_policy none;
  auto c = sp::choose_version(none, {}, rng);
  EXPECT_EQ(c.source, sp::version_source::any);
  EXPECT_EQ(c.version, "");
  EXPECT_FALSE(c.is_specific());
  sp::traffic_policy zero;
  zero.split = {{"v1", 0}, {"v2", 0}};
  EXPECT_EQ(sp::choose_version(zero, {}, rng).source, sp::version_source::any);
  sp::traffic_policy only_routes;
  only_routes.routes = {{"x-canary", "yes", "v2"}};
  EXPECT_EQ(sp::choose_version(only_routes, {}, rng).source, sp::version_source::any);
}

TEST(traffic_split, a_split_not_summing_to_100_is_reported_and_still_applied_proportionally) {
  sp::traffic_policy p;
  p.split = {{"v1", 1}, {"v2", 3}};
  EXPECT_EQ(sp::validate(p), sp::traffic_policy_error::split_weights_not_100);
  sp::random_source rng{5};
  SCOPED_TRACE(5);
  int v2 = 0;
  for (int i = 0; i < 4000; ++i)
    v2 += sp::choose_version(p, {}, rng).version == "v2";
  EXPECT_NEAR(v2 / 4000.0, 0.75, 0.03);
}

TEST(traffic_split, validation) {
  EXPECT_FALSE(sp::validate(canary()));
  EXPECT_FALSE(sp::validate({}));
  sp::traffic_policy p = canary();
  p.routes.push_back({"", "x", "v1"});
  EXPECT_EQ(sp::validate(p), sp::traffic_policy_error::empty_header_name);
  sp::random_source rng{1};
  const sp::header_field h[] = {{"", "x"}};
  EXPECT_NE(sp::choose_version(p, h, rng).source, sp::version_source::header_route);
  sp::traffic_policy dup;
  dup.split = {{"v1", 50}, {"v1", 50}};
  EXPECT_EQ(sp::validate(dup), sp::traffic_policy_error::duplicate_split_version);
  sp::traffic_policy big;
  big.split = {{"v1", 0xffffffffu}, {"v2", 0xffffffffu}}; // sums past 2^32 without wrapping
  EXPECT_EQ(sp::validate(big), sp::traffic_policy_error::split_weights_not_100);
  EXPECT_EQ(sp::choose_version(big, {}, rng).source, sp::version_source::split);
}

TEST(traffic_split, iequals_is_ascii_case_insensitive) {
  EXPECT_TRUE(sp::text::iequals("Content-Type", "content-type"));
  EXPECT_FALSE(sp::text::iequals("a", "ab"));
  EXPECT_FALSE(sp::text::iequals("[", "{")); // not a letter: no case folding
  EXPECT_TRUE(sp::text::iequals("", ""));
  EXPECT_TRUE(sp::text::iequals("x-canary", "X-Canary")); // either side in any case
}
