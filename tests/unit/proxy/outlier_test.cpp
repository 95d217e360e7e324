#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/balancer.hpp"
#include "proxy/outlier.hpp"

namespace sp = starling::proxy;
using namespace std::chrono_literals;
using res = sp::attempt_result;

namespace {

std::vector<sp::endpoint> endpoints(std::size_t n) {
  std::vector<sp::endpoint> eps;
  for (std::size_t i = 0; i < n; ++i) {
    sp::endpoint e;
    e.id = "e" + std::to_string(i);
    e.address = "10.0.0.1";
    e.port = static_cast<std::uint16_t>(9000 + i);
    eps.push_back(e);
  }
  return eps;
}

sp::outlier_detector detector(std::size_t n, sp::outlier_config cfg = {}) {
  sp::outlier_detector d{cfg};
  d.update(endpoints(n));
  return d;
}

// Feeds `count` results of one kind; returns how many of them ejected.
int feed(sp::outlier_detector& d, std::size_t idx, res r, int count, sp::time_point now) {
  int ejected = 0;
  for (int i = 0; i < count; ++i)
    ejected += d.on_result(idx, r, now) ? 1 : 0;
  return ejected;
}

const sp::time_point t0{std::chrono::hours{1000}};

} // namespace

TEST(outlier, five_consecutive_5xx_eject_for_the_base_time_then_the_endpoint_returns) {
  auto d = detector(4);
  EXPECT_EQ(feed(d, 1, res::http_5xx, 4, t0), 0);
  EXPECT_FALSE(d.is_ejected(1));
  EXPECT_TRUE(d.on_result(1, res::http_5xx, t0));
  EXPECT_TRUE(d.is_ejected(1));
  EXPECT_EQ(d.ejected_count(), 1u);
  EXPECT_EQ(d.ejections(), 1u);
  EXPECT_EQ(d.times_ejected(1), 1u);
  EXPECT_EQ(d.ejected_until(1), t0 + 30s);
  auto mask = d.ejection_mask(t0 + 30s - 1ns);
  ASSERT_EQ(mask.size(), 4u);
  EXPECT_EQ(mask[0] + mask[2] + mask[3], 0);
  EXPECT_NE(mask[1], 0);
  mask = d.ejection_mask(t0 + 30s);
  EXPECT_EQ(mask[1], 0);
  EXPECT_FALSE(d.is_ejected(1));
  EXPECT_EQ(d.ejected_count(), 0u);
  EXPECT_EQ(d.ejected_until(1), sp::time_point::min());
}

TEST(outlier, five_consecutive_connect_failures_eject) {
  auto d = detector(3);
  EXPECT_EQ(feed(d, 0, res::connect_failure, 4, t0), 0);
  EXPECT_TRUE(d.on_result(0, res::connect_failure, t0));
  EXPECT_TRUE(d.is_ejected(0));
}

TEST(outlier, a_success_resets_the_consecutive_counts) {
  auto d = detector(3);
  feed(d, 0, res::http_5xx, 4, t0);
  d.on_result(0, res::success, t0);
  EXPECT_EQ(feed(d, 0, res::http_5xx, 4, t0), 0);
  feed(d, 0, res::connect_failure, 4, t0);
  d.on_result(0, res::success, t0);
  EXPECT_EQ(feed(d, 0, res::connect_failure, 4, t0), 0);
  EXPECT_FALSE(d.is_ejected(0));
  EXPECT_EQ(d.ejections(), 0u);
}

TEST(outlier, a_response_resets_connect_failures_but_not_5xx_counts) {
  auto d = detector(3);
  feed(d, 0, res::connect_failure, 4, t0);
  d.on_result(0, res::http_5xx, t0); // it answered: connect failures start over
  EXPECT_EQ(feed(d, 0, res::connect_failure, 4, t0), 0);
  // A connect failure does not reset the 5xx streak: 1 so far, 4 more eject.
  EXPECT_EQ(feed(d, 0, res::http_5xx, 3, t0), 0);
  EXPECT_TRUE(d.on_result(0, res::http_5xx, t0));
}

TEST(outlier, ejection_time_grows_with_each_ejection_up_to_the_cap) {
  auto d = detector(2);
  sp::time_point now = t0;
  const sp::duration expected[] = {30s,  60s,  90s,  120s, 150s, 180s,
                                   210s, 240s, 270s, 300s, 300s, 300s};
  for (std::size_t n = 0; n < std::size(expected); ++n) {
    SCOPED_TRACE(n);
    EXPECT_EQ(feed(d, 0, res::http_5xx, 5, now), 1);
    EXPECT_EQ(d.times_ejected(0), n + 1);
    EXPECT_EQ(d.ejected_until(0), now + expected[n]);
    now += expected[n];
    EXPECT_EQ(d.ejection_mask(now)[0], 0);
  }
}

TEST(outlier, results_while_ejected_are_ignored) {
  auto d = detector(2);
  feed(d, 0, res::http_5xx, 5, t0);
  EXPECT_EQ(feed(d, 0, res::http_5xx, 20, t0 + 1s), 0);
  d.on_result(0, res::success, t0 + 1s);
  EXPECT_EQ(d.ejections(), 1u);
  EXPECT_EQ(d.ejected_until(0), t0 + 30s);
}

TEST(outlier, the_multiplier_is_forgiven_after_serving_well_for_the_max_ejection_time) {
  auto d = detector(2);
  feed(d, 0, res::http_5xx, 5, t0);
  const auto back = t0 + 30s;
  feed(d, 0, res::http_5xx, 5, back); // second ejection: 60 s
  EXPECT_EQ(d.times_ejected(0), 2u);
  const auto back2 = back + 60s;
  d.on_result(0, res::success, back2 + 299s);
  EXPECT_EQ(d.times_ejected(0), 2u);
  d.on_result(0, res::success, back2 + 300s);
  EXPECT_EQ(d.times_ejected(0), 0u);
  feed(d, 0, res::http_5xx, 5, back2 + 301s);
  EXPECT_EQ(d.ejected_until(0), back2 + 301s + 30s);
}

TEST(outlier, max_ejected_follows_the_percentage_with_a_floor_of_one_from_two_endpoints) {
  sp::outlier_detector d; // 50%
  EXPECT_EQ(d.max_ejected(0), 0u);
  EXPECT_EQ(d.max_ejected(1), 0u);
  EXPECT_EQ(d.max_ejected(2), 1u);
  EXPECT_EQ(d.max_ejected(3), 1u);
  EXPECT_EQ(d.max_ejected(4), 2u);
  EXPECT_EQ(d.max_ejected(101), 50u);
  sp::outlier_detector ten{{5, 5, 30s, 300s, 10}};
  EXPECT_EQ(ten.max_ejected(3), 1u);
  EXPECT_EQ(ten.max_ejected(25), 2u);
  sp::outlier_detector all{{5, 5, 30s, 300s, 250}}; // clamped to 100
  EXPECT_EQ(all.max_ejected(7), 7u);
  EXPECT_EQ(all.max_ejected(1), 0u);
  sp::outlier_detector none{{5, 5, 30s, 300s, 0}};
  EXPECT_EQ(none.max_ejected(10), 0u);
  const auto big = std::numeric_limits<std::size_t>::max();
  EXPECT_EQ(all.max_ejected(big), big); // no overflow in n * percent
  EXPECT_EQ(d.max_ejected(big), big / 2);
}

TEST(outlier, never_more_than_the_cap_ejected_at_once) {
  auto d = detector(4);
  EXPECT_EQ(feed(d, 0, res::http_5xx, 5, t0), 1);
  EXPECT_EQ(feed(d, 1, res::connect_failure, 5, t0), 1);
  EXPECT_EQ(feed(d, 2, res::http_5xx, 5, t0), 0); // 2 of 4 already out
  EXPECT_FALSE(d.is_ejected(2));
  EXPECT_EQ(d.ejections_refused(), 1u);
  EXPECT_EQ(feed(d, 2, res::http_5xx, 1, t0 + 1s), 0); // still refused, counted again
  EXPECT_EQ(d.ejections_refused(), 2u);
  // Once one returns, the next failure of the endpoint at the threshold ejects it.
  EXPECT_TRUE(d.on_result(2, res::http_5xx, t0 + 30s));
  EXPECT_TRUE(d.is_ejected(2));
  EXPECT_FALSE(d.is_ejected(0));
  EXPECT_FALSE(d.is_ejected(1)); // ejected at t0 for 30 s too
  EXPECT_EQ(d.ejected_count(), 1u);
}

TEST(outlier, degenerate_services_and_configs) {
  sp::outlier_detector empty;
  empty.update({});
  EXPECT_FALSE(empty.on_result(0, res::http_5xx, t0));
  EXPECT_TRUE(empty.ejection_mask(t0).empty());

  auto single = detector(1);
  EXPECT_EQ(feed(single, 0, res::http_5xx, 50, t0), 0); // nothing to fail over to
  EXPECT_EQ(single.ejections_refused(), 46u);

  auto disabled = detector(4, {0, 0, 30s, 300s, 50});
  EXPECT_EQ(feed(disabled, 0, res::http_5xx, 100, t0), 0);
  EXPECT_EQ(feed(disabled, 0, res::connect_failure, 100, t0), 0);

  auto one = detector(2, {1, 1, 30s, 300s, 50});
  EXPECT_TRUE(one.on_result(0, res::connect_failure, t0));

  // Zero ejection time: the ejection counts but is over at once.
  auto instant = detector(2, {5, 5, 0s, 300s, 50});
  EXPECT_EQ(feed(instant, 0, res::http_5xx, 5, t0), 1);
  EXPECT_EQ(instant.ejection_mask(t0)[0], 0);

  // A cap below the base time wins; huge times saturate instead of overflowing.
  auto capped = detector(2, {5, 5, 30s, 10s, 50});
  feed(capped, 0, res::http_5xx, 5, t0);
  EXPECT_EQ(capped.ejected_until(0), t0 + 10s);
  auto huge = detector(2, {5, 5, sp::duration::max(), sp::duration::max(), 50});
  feed(huge, 0, res::http_5xx, 5, t0);
  EXPECT_EQ(huge.ejected_until(0), sp::time_point::max());
  EXPECT_TRUE(huge.ejection_mask(sp::time_point::max() - 1ns)[0]);
  feed(huge, 1, res::http_5xx, 5, t0); // 1 of 2 already ejected
  EXPECT_FALSE(huge.is_ejected(1));

  // Out-of-range indices are ignored.
  EXPECT_FALSE(huge.on_result(99, res::http_5xx, t0));
  EXPECT_FALSE(huge.is_ejected(99));
  EXPECT_EQ(huge.times_ejected(99), 0u);
}

TEST(outlier, state_carries_over_by_id_when_a_snapshot_changes) {
  auto d = detector(4);
  feed(d, 1, res::http_5xx, 5, t0); // e1 ejected
  feed(d, 2, res::http_5xx, 3, t0); // e2 three in a row
  auto eps = endpoints(4);
  std::vector<sp::endpoint> next{eps[2], eps[1], eps[3]}; // e0 removed, reordered
  d.update(next);
  EXPECT_TRUE(d.is_ejected(1));
  EXPECT_EQ(d.ejected_until(1), t0 + 30s);
  EXPECT_EQ(d.ejected_count(), 1u);
  EXPECT_EQ(feed(d, 0, res::http_5xx, 1, t0), 0); // e2: 4 in a row
  d.update(endpoints(4));                         // e0 back fresh; e1 still ejected
  EXPECT_TRUE(d.is_ejected(1));
  EXPECT_FALSE(d.is_ejected(0));
  EXPECT_EQ(d.ejection_mask(t0 + 30s)[1], 0);
}

TEST(outlier, the_balancer_skips_ejected_endpoints) {
  // Policies that spread load whatever the latency, so the bad endpoint gets traffic (peak
  // EWMA may never try an endpoint at its default penalty when others are known fast).
  for (auto kind : {sp::balancer_kind::round_robin, sp::balancer_kind::least_request})
    for (std::uint64_t seed = 1; seed <= 200; ++seed) {
      SCOPED_TRACE(testing::Message() << sp::to_string(kind) << " seed " << seed);
      sp::random_source rng{seed};
      const auto eps = endpoints(6);
      sp::balancer b{{kind}};
      b.update(eps);
      sp::outlier_detector d;
      d.update(eps);
      const std::size_t bad = rng.uniform(6);
      sp::time_point now = t0;
      std::uint64_t picks_of_bad_while_ejected = 0;
      for (int i = 0; i < 300; ++i) {
        now += 100ms;
        auto mask = d.ejection_mask(now);
        auto idx = b.pick(rng, now, {mask});
        ASSERT_TRUE(idx);
        if (*idx == bad && d.is_ejected(bad))
          ++picks_of_bad_while_ejected;
        b.on_start(*idx);
        b.on_finish(*idx, 5ms, now);
        d.on_result(*idx, *idx == bad ? res::http_5xx : res::success, now);
      }
      EXPECT_EQ(picks_of_bad_while_ejected, 0u);
      EXPECT_GE(d.ejections(), 1u);
    }
}
