#include <cstdint>
#include <limits>
#include <string_view>

#include <gtest/gtest.h>

#include "proxy/retry_budget.hpp"

namespace sp = starling::proxy;
using namespace std::chrono_literals;
using fail = sp::attempt_failure;

namespace {

constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();
const sp::time_point t0{std::chrono::hours{5}};

// Retries granted in a row at `now` until the first refusal (at most `limit`).
std::uint64_t drain(sp::retry_budget& b, sp::time_point now, std::uint64_t limit = 100000) {
  std::uint64_t n = 0;
  while (n < limit && b.try_retry(now))
    ++n;
  return n;
}

} // namespace

TEST(retry_budget, defaults_are_linkerds) {
  sp::retry_budget b;
  EXPECT_DOUBLE_EQ(b.config().retry_ratio, 0.2);
  EXPECT_EQ(b.config().min_retries_per_second, 10u);
  EXPECT_EQ(b.config().ttl, 10s);
  // With no traffic at all the floor allows 10/s over the 10 s window.
  EXPECT_EQ(b.window(t0).allowance, 100u);
}

TEST(retry_budget, retries_are_allowed_up_to_ratio_times_requests_plus_the_floor) {
  sp::retry_budget b{{0.2, 1, 10s}}; // floor: 10 retries per window
  b.on_request(t0, 100);
  const auto w = b.window(t0);
  EXPECT_EQ(w.requests, 100u);
  EXPECT_EQ(w.allowance, 30u);
  EXPECT_EQ(drain(b, t0), 30u);
  EXPECT_EQ(b.retries_allowed(), 30u);
  EXPECT_EQ(b.retries_refused(), 1u);
  EXPECT_FALSE(b.try_retry(t0));
  EXPECT_EQ(b.retries_refused(), 2u);
  // Five more requests earn one more retry.
  b.on_request(t0 + 1s, 5);
  EXPECT_TRUE(b.try_retry(t0 + 1s));
  EXPECT_FALSE(b.try_retry(t0 + 1s));
  EXPECT_EQ(b.window(t0 + 1s).retries, 31u);
}

TEST(retry_budget, counts_expire_as_the_window_slides) {
  sp::retry_budget b{{0.5, 0, 10s}}; // buckets of 1 s
  b.on_request(t0, 10);              // bucket [t0, t0 + 1s)
  b.on_request(t0 + 5s, 10);
  EXPECT_EQ(drain(b, t0 + 5s), 10u);
  EXPECT_EQ(b.window(t0 + 9s + 999ms).requests, 20u);
  // At t0 + 10s the first bucket leaves: 10 requests allow 5, but 10 retries are counted.
  auto w = b.window(t0 + 10s);
  EXPECT_EQ(w.requests, 10u);
  EXPECT_EQ(w.retries, 10u);
  EXPECT_FALSE(b.try_retry(t0 + 10s));
  // The retries were counted at t0 + 5s, with the second requests: both leave at t0 + 15s.
  w = b.window(t0 + 15s);
  EXPECT_EQ(w.requests, 0u);
  EXPECT_EQ(w.retries, 0u);
  EXPECT_EQ(w.allowance, 0u);
  b.on_request(t0 + 15s, 2);
  EXPECT_EQ(drain(b, t0 + 15s), 1u);
  // A jump far beyond the window clears everything.
  w = b.window(t0 + 1000h);
  EXPECT_EQ(w.requests, 0u);
  EXPECT_EQ(w.retries, 0u);
}

TEST(retry_budget, time_going_backwards_counts_in_the_newest_bucket) {
  sp::retry_budget b{{1.0, 0, 10s}};
  b.on_request(t0 + 20s, 1);
  b.on_request(t0, 1); // earlier than what was seen: no rewind, no loss
  EXPECT_EQ(b.window(t0).requests, 2u);
  EXPECT_EQ(drain(b, t0), 2u);
  EXPECT_EQ(b.window(t0 + 29s).requests, 2u);
  EXPECT_EQ(b.window(t0 + 30s).requests, 0u);
}

TEST(retry_budget, ratio_zero_leaves_only_the_floor) {
  sp::retry_budget b{{0.0, 2, 10s}};
  b.on_request(t0, 1000000);
  EXPECT_EQ(b.window(t0).allowance, 20u);
  EXPECT_EQ(drain(b, t0), 20u);
  sp::retry_budget none{{0.0, 0, 10s}};
  none.on_request(t0, 1000000);
  EXPECT_FALSE(none.try_retry(t0));
  EXPECT_EQ(none.retries_refused(), 1u);
  sp::retry_budget negative{{-3.0, 0, 10s}};
  negative.on_request(t0, 100);
  EXPECT_FALSE(negative.try_retry(t0));
  sp::retry_budget nan{{std::numeric_limits<double>::quiet_NaN(), 1, 10s}};
  nan.on_request(t0, 100);
  EXPECT_EQ(drain(nan, t0), 10u);
}

TEST(retry_budget, a_zero_or_negative_ttl_allows_no_retry) {
  for (auto ttl : {sp::duration::zero(), -sp::duration{5s}}) {
    sp::retry_budget b{{0.2, 10, ttl}};
    b.on_request(t0, 1000);
    EXPECT_FALSE(b.try_retry(t0));
    EXPECT_EQ(b.window(t0).allowance, 0u);
    EXPECT_EQ(b.window(t0).requests, 0u);
  }
}

TEST(retry_budget, a_tiny_ttl_still_works) {
  sp::retry_budget b{{1.0, 0, sp::duration{3}}}; // 3 ticks: buckets of 1 tick
  b.on_request(t0, 1);
  EXPECT_TRUE(b.try_retry(t0));
  EXPECT_FALSE(b.try_retry(t0));
  b.on_request(t0 + sp::duration{3}, 1);
  EXPECT_TRUE(b.try_retry(t0 + sp::duration{3}));
}

TEST(retry_budget, counters_saturate_near_two_to_the_64) {
  sp::retry_budget b{{0.5, 0, 10s}};
  b.on_request(t0, u64_max);
  auto w = b.window(t0);
  EXPECT_EQ(w.requests, u64_max);
  EXPECT_EQ(w.allowance, u64_max / 2 + 1); // floor(0.5 * 2^64 rounded) as a double
  b.on_request(t0, 1);                     // saturates within the bucket
  b.on_request(t0 + 1s, u64_max);          // and across buckets
  w = b.window(t0 + 1s);
  EXPECT_EQ(w.requests, u64_max);
  EXPECT_TRUE(b.try_retry(t0 + 1s));

  sp::retry_budget big{{1e30, std::numeric_limits<std::uint32_t>::max(), 1000000h}};
  big.on_request(t0, u64_max);
  EXPECT_EQ(big.window(t0).allowance, u64_max); // ratio and floor both saturate
  EXPECT_TRUE(big.try_retry(t0));
}

TEST(retry_budget, near_the_clock_limits) {
  sp::retry_budget b{{1.0, 0, 10s}};
  b.on_request(sp::time_point::min(), 3);
  EXPECT_EQ(b.window(sp::time_point::min()).requests, 3u);
  EXPECT_EQ(b.window(sp::time_point::max()).requests, 0u); // the widest possible jump
  b.on_request(sp::time_point::max(), 2);
  EXPECT_EQ(drain(b, sp::time_point::max()), 2u);
  sp::retry_budget c{{1.0, 0, 10s}};
  c.on_request(sp::time_point{} - 1ns, 1); // negative epochs fall in their own bucket
  EXPECT_EQ(c.window(sp::time_point{} + 8s).requests, 1u);
  EXPECT_EQ(c.window(sp::time_point{} + 9s).requests, 0u);
}

TEST(retry_budget, idempotent_methods) {
  for (std::string_view m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) {
    SCOPED_TRACE(m);
    EXPECT_TRUE(sp::is_idempotent(m));
    EXPECT_TRUE(sp::retryable(m, fail::http_5xx));
    EXPECT_TRUE(sp::retryable(m, fail::reset));
    EXPECT_TRUE(sp::retryable(m, fail::connect_failure));
  }
  for (std::string_view m : {"POST", "PATCH", "CONNECT", "get", "", "PROPFIND"}) {
    SCOPED_TRACE(m);
    EXPECT_FALSE(sp::is_idempotent(m));
    EXPECT_FALSE(sp::retryable(m, fail::http_5xx));
    EXPECT_FALSE(sp::retryable(m, fail::reset));
    EXPECT_TRUE(sp::retryable(m, fail::connect_failure)); // nothing was sent
  }
}

TEST(retry_budget, verdict_names_are_stable) {
  EXPECT_EQ(sp::to_string(sp::retry_verdict::retry), "retry");
  EXPECT_EQ(sp::to_string(sp::retry_verdict::not_retryable), "not_retryable");
  EXPECT_EQ(sp::to_string(sp::retry_verdict::attempts_exhausted), "attempts_exhausted");
  EXPECT_EQ(sp::to_string(sp::retry_verdict::budget_exhausted), "budget_exhausted");
}

TEST(request_retries, walks_through_every_verdict_with_jittered_backoff) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    sp::random_source rng{seed};
    sp::retry_budget budget{{0.0, 1, 2s}}; // 2 retries per window
    sp::request_retries r;                 // max 2 retries, 25 ms doubling to 250 ms, jitter 0.5
    auto d = r.on_failure("POST", fail::http_5xx, budget, rng, t0);
    EXPECT_EQ(d.verdict, sp::retry_verdict::not_retryable);
    EXPECT_EQ(budget.retries_allowed(), 0u); // no budget spent on a refusal
    d = r.on_failure("POST", fail::connect_failure, budget, rng, t0);
    ASSERT_EQ(d.verdict, sp::retry_verdict::retry);
    EXPECT_GE(d.delay, 12ms);
    EXPECT_LT(d.delay, 25ms);
    d = r.on_failure("POST", fail::connect_failure, budget, rng, t0);
    ASSERT_EQ(d.verdict, sp::retry_verdict::retry);
    EXPECT_GE(d.delay, 25ms);
    EXPECT_LT(d.delay, 50ms);
    d = r.on_failure("POST", fail::connect_failure, budget, rng, t0);
    EXPECT_EQ(d.verdict, sp::retry_verdict::attempts_exhausted);
    EXPECT_EQ(d.delay, 0ms);
    EXPECT_EQ(r.retries(), 2u);
    EXPECT_EQ(budget.retries_allowed(), 2u);
    // Another request on the same route finds the budget spent.
    sp::request_retries other;
    d = other.on_failure("GET", fail::http_5xx, budget, rng, t0);
    EXPECT_EQ(d.verdict, sp::retry_verdict::budget_exhausted);
    EXPECT_EQ(other.retries(), 0u);
    // Once the window has slid past, it may retry again.
    d = other.on_failure("GET", fail::reset, budget, rng, t0 + 2s);
    EXPECT_EQ(d.verdict, sp::retry_verdict::retry);
  }
}

TEST(request_retries, zero_max_retries_never_retries) {
  sp::random_source rng{1};
  sp::retry_budget budget;
  sp::retry_policy policy;
  policy.max_retries = 0;
  sp::request_retries r{policy};
  EXPECT_EQ(r.on_failure("GET", fail::connect_failure, budget, rng, t0).verdict,
            sp::retry_verdict::attempts_exhausted);
  EXPECT_EQ(budget.retries_allowed(), 0u);
}

TEST(request_retries, a_budget_under_sustained_failure_caps_extra_load_at_the_ratio) {
  // 1000 requests/s for 60 s, every attempt fails with a 5xx: retries add at most 20%
  // plus the floor, whatever each request's own max_retries allows.
  sp::retry_budget budget; // 0.2, 10/s, 10 s
  sp::random_source rng{11};
  SCOPED_TRACE(11);
  std::uint64_t retries = 0;
  const std::uint64_t requests = 60000;
  for (std::uint64_t i = 0; i < requests; ++i) {
    const auto now = t0 + std::chrono::milliseconds{i};
    budget.on_request(now);
    sp::request_retries r{{5, {}}};
    while (r.on_failure("GET", fail::http_5xx, budget, rng, now).verdict ==
           sp::retry_verdict::retry)
      ++retries;
  }
  const double extra = static_cast<double>(retries) / requests;
  std::printf("retry budget under total failure: %.4f retries per request\n", extra);
  EXPECT_LE(extra, 0.2 + 100.0 / 10000 + 0.01);
  EXPECT_GE(extra, 0.19);
}
