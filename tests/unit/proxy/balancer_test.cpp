#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/balancer.hpp"

namespace sp = starling::proxy;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t seed_count = 200;

sp::endpoint ep(std::string id, std::uint32_t weight = 1, bool healthy = true,
                std::string version = "") {
  sp::endpoint e;
  e.id = id;
  e.address = "10.0.0." + std::to_string(id.size());
  e.port = 8080;
  e.node = "node-" + id;
  e.version = std::move(version);
  e.weight = weight;
  e.healthy = healthy;
  return e;
}

sp::balancer make(sp::balancer_kind kind, const std::vector<sp::endpoint>& eps) {
  sp::balancer b{{kind}};
  b.update(eps);
  return b;
}

const sp::balancer_kind all_kinds[] = {
    sp::balancer_kind::round_robin, sp::balancer_kind::least_request, sp::balancer_kind::peak_ewma};

// A closed loop: `clients` clients each send a request, wait for its latency (per endpoint)
// and send the next. Each latency is drawn uniformly in [latency / 2, 3 * latency / 2) so that
// clients do not move in lockstep. Returns how many requests each endpoint got.
std::vector<std::uint64_t> closed_loop(sp::balancer& b, sp::random_source& rng,
                                       const std::vector<sp::duration>& latency, int clients,
                                       int requests) {
  struct request {
    sp::time_point done;
    std::size_t idx;
    sp::duration took;
    bool operator>(const request& o) const { return done > o.done; }
  };
  std::priority_queue<request, std::vector<request>, std::greater<>> in_flight;
  std::vector<std::uint64_t> counts(b.size());
  sp::time_point now{};
  auto send = [&] {
    auto idx = b.pick(rng, now);
    if (!idx) {
      ADD_FAILURE() << "no endpoint";
      return;
    }
    b.on_start(*idx);
    ++counts[*idx];
    const auto took = std::chrono::duration_cast<sp::duration>(latency[*idx] * (0.5 + rng.unit()));
    in_flight.push({now + took, *idx, took});
  };
  for (int c = 0; c < clients; ++c)
    send();
  for (int r = clients; r < requests && !in_flight.empty(); ++r) {
    const request done = in_flight.top();
    in_flight.pop();
    now = done.done;
    b.on_finish(done.idx, done.took, now);
    send();
  }
  return counts;
}

std::vector<double> shares(const std::vector<std::uint64_t>& counts) {
  double total = 0;
  for (auto c : counts)
    total += static_cast<double>(c);
  std::vector<double> out;
  for (auto c : counts)
    out.push_back(total > 0 ? static_cast<double>(c) / total : 0.0);
  return out;
}

} // namespace

TEST(balancer, names_are_stable) {
  EXPECT_EQ(sp::to_string(sp::balancer_kind::round_robin), "round_robin");
  EXPECT_EQ(sp::to_string(sp::balancer_kind::least_request), "least_request");
  EXPECT_EQ(sp::to_string(sp::balancer_kind::peak_ewma), "peak_ewma");
}

TEST(balancer, nothing_to_pick_from_gives_nothing) {
  sp::random_source rng{1};
  const std::uint8_t all[] = {1, 1, 1};
  for (auto kind : all_kinds) {
    SCOPED_TRACE(sp::to_string(kind));
    sp::balancer empty{{kind}};
    EXPECT_FALSE(empty.pick(rng, {}));
    empty.update({});
    EXPECT_FALSE(empty.pick(rng, {}));
    EXPECT_FALSE(make(kind, {ep("a", 1, false), ep("b", 3, false)}).pick(rng, {}));
    EXPECT_FALSE(make(kind, {ep("a", 0), ep("b", 0)}).pick(rng, {}));
    auto b = make(kind, {ep("a"), ep("b"), ep("c")});
    EXPECT_FALSE(b.pick(rng, {}, {all}));
    EXPECT_FALSE(b.pick(rng, {}, {{}, "v9"}));
    EXPECT_TRUE(b.pick(rng, {}, {{}, ""}));
  }
}

TEST(balancer, smooth_round_robin_interleaves_like_nginx) {
  auto b = make(sp::balancer_kind::round_robin, {ep("a", 5), ep("b", 1), ep("c", 1)});
  sp::random_source rng{1};
  std::string seq;
  for (int i = 0; i < 14; ++i)
    seq += static_cast<char>('a' + *b.pick(rng, {}));
  EXPECT_EQ(seq, "aabacaaaabacaa");
}

TEST(balancer, round_robin_gives_exact_shares_over_each_cycle) {
  for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
    SCOPED_TRACE(seed);
    sp::random_source gen{seed};
    std::vector<sp::endpoint> eps;
    const auto n = 1 + gen.uniform(8);
    std::uint64_t total = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      eps.push_back(ep("e" + std::to_string(i), static_cast<std::uint32_t>(gen.uniform(11)),
                       gen.uniform(5) != 0));
      if (eps.back().healthy)
        total += eps.back().weight;
    }
    auto b = make(sp::balancer_kind::round_robin, eps);
    if (total == 0) {
      EXPECT_FALSE(b.pick(gen, {}));
      continue;
    }
    for (int cycle = 0; cycle < 3; ++cycle) {
      std::vector<std::uint64_t> counts(n);
      for (std::uint64_t i = 0; i < total; ++i)
        ++counts[*b.pick(gen, {})];
      for (std::uint64_t i = 0; i < n; ++i)
        EXPECT_EQ(counts[i], eps[i].healthy ? eps[i].weight : 0u) << "endpoint " << i;
    }
  }
}

TEST(balancer, round_robin_resumes_an_excluded_endpoint_where_it_was) {
  auto b = make(sp::balancer_kind::round_robin, {ep("a", 2), ep("b", 1)});
  sp::random_source rng{1};
  const std::uint8_t skip_a[] = {1, 0};
  EXPECT_EQ(*b.pick(rng, {}), 0u);
  EXPECT_EQ(*b.pick(rng, {}, {skip_a}), 1u);
  EXPECT_EQ(*b.pick(rng, {}, {skip_a}), 1u);
  std::vector<std::uint64_t> counts(2);
  for (int i = 0; i < 300; ++i)
    ++counts[*b.pick(rng, {})];
  EXPECT_EQ(counts[0], 200u);
  EXPECT_EQ(counts[1], 100u);
}

TEST(balancer, never_picks_an_unhealthy_drained_excluded_or_other_version_endpoint) {
  for (auto kind : all_kinds) {
    for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
      SCOPED_TRACE(testing::Message() << sp::to_string(kind) << " seed " << seed);
      sp::random_source gen{seed};
      std::vector<sp::endpoint> eps;
      std::vector<std::uint8_t> excluded;
      const auto n = 1 + gen.uniform(10);
      for (std::uint64_t i = 0; i < n; ++i) {
        eps.push_back(ep("e" + std::to_string(i), static_cast<std::uint32_t>(gen.uniform(4)),
                         gen.uniform(3) != 0, gen.uniform(2) != 0 ? "v1" : "v2"));
        excluded.push_back(gen.uniform(4) == 0 ? 1 : 0);
      }
      auto b = make(kind, eps);
      sp::time_point now{};
      bool any_v1 = false;
      for (std::uint64_t i = 0; i < n; ++i)
        any_v1 = any_v1 ||
                 (eps[i].healthy && eps[i].weight > 0 && !excluded[i] && eps[i].version == "v1");
      for (int r = 0; r < 200; ++r) {
        auto idx = b.pick(gen, now, {excluded, "v1"});
        ASSERT_EQ(idx.has_value(), any_v1);
        if (!idx)
          break;
        EXPECT_TRUE(eps[*idx].healthy);
        EXPECT_GT(eps[*idx].weight, 0u);
        EXPECT_EQ(excluded[*idx], 0);
        EXPECT_EQ(eps[*idx].version, "v1");
        b.on_start(*idx);
        now += 1ms;
        if (gen.uniform(2) == 0)
          b.on_finish(*idx, std::chrono::milliseconds{1 + gen.uniform(50)}, now);
      }
    }
  }
}

TEST(balancer, every_policy_is_deterministic_for_a_seed) {
  std::vector<sp::endpoint> eps{ep("a", 3), ep("b", 1), ep("c", 2), ep("d", 1)};
  const std::vector<sp::duration> latency{5ms, 20ms, 7ms, 40ms};
  for (auto kind : all_kinds) {
    for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
      SCOPED_TRACE(testing::Message() << sp::to_string(kind) << " seed " << seed);
      auto a = make(kind, eps), b = make(kind, eps);
      sp::random_source ra{seed}, rb{seed};
      EXPECT_EQ(closed_loop(a, ra, latency, 8, 500), closed_loop(b, rb, latency, 8, 500));
    }
  }
}

TEST(balancer, least_request_at_rest_follows_the_weights) {
  const std::vector<sp::endpoint> eps{ep("a", 5), ep("b", 1), ep("c", 1), ep("d", 3)};
  const double weights[] = {0.5, 0.1, 0.1, 0.3};
  std::vector<std::uint64_t> all(eps.size());
  for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
    SCOPED_TRACE(seed);
    auto b = make(sp::balancer_kind::least_request, eps);
    sp::random_source rng{seed};
    std::vector<std::uint64_t> counts(eps.size());
    for (int i = 0; i < 5000; ++i)
      ++counts[*b.pick(rng, {})];
    auto s = shares(counts);
    for (std::size_t i = 0; i < eps.size(); ++i) {
      EXPECT_NEAR(s[i], weights[i], 0.035) << eps[i].id; // sd <= 0.0071 per seed
      all[i] += counts[i];
    }
  }
  auto s = shares(all);
  std::printf("least_request at rest, 200 seeds x 5000 picks: shares %.4f %.4f %.4f %.4f "
              "(weights 0.5 0.1 0.1 0.3)\n",
              s[0], s[1], s[2], s[3]);
  for (std::size_t i = 0; i < eps.size(); ++i)
    EXPECT_NEAR(s[i], weights[i], 0.003); // sd <= 0.0005 over all seeds
}

TEST(balancer, least_request_under_load_follows_the_weights) {
  const std::vector<sp::endpoint> eps{ep("a", 5), ep("b", 1), ep("c", 1)};
  const std::vector<sp::duration> latency{10ms, 10ms, 10ms};
  const double weights[] = {5.0 / 7, 1.0 / 7, 1.0 / 7};
  std::vector<std::uint64_t> all(eps.size());
  for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
    SCOPED_TRACE(seed);
    auto b = make(sp::balancer_kind::least_request, eps);
    sp::random_source rng{seed};
    auto counts = closed_loop(b, rng, latency, 21, 7000);
    auto s = shares(counts);
    for (std::size_t i = 0; i < eps.size(); ++i) {
      EXPECT_NEAR(s[i], weights[i], 0.05) << eps[i].id;
      all[i] += counts[i];
    }
  }
  auto s = shares(all);
  std::printf("least_request, 21 clients, 200 seeds x 7000 requests: shares %.4f %.4f %.4f "
              "(weights %.4f %.4f %.4f)\n",
              s[0], s[1], s[2], weights[0], weights[1], weights[2]);
  for (std::size_t i = 0; i < eps.size(); ++i)
    EXPECT_NEAR(s[i], weights[i], 0.02);
}

TEST(balancer, least_request_avoids_a_busy_endpoint) {
  for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
    SCOPED_TRACE(seed);
    auto b = make(sp::balancer_kind::least_request, {ep("a"), ep("b"), ep("c")});
    sp::random_source rng{seed};
    for (int i = 0; i < 100; ++i)
      b.on_start(0);
    // Whichever pair is drawn, the other candidate has fewer active requests.
    for (int i = 0; i < 100; ++i)
      EXPECT_NE(*b.pick(rng, {}), 0u);
  }
}

TEST(balancer, peak_ewma_prefers_the_faster_endpoint) {
  const std::vector<sp::endpoint> eps{ep("fast"), ep("mid"), ep("slow")};
  const std::vector<sp::duration> latency{5ms, 25ms, 100ms};
  std::vector<std::uint64_t> all(eps.size());
  for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
    SCOPED_TRACE(seed);
    auto b = make(sp::balancer_kind::peak_ewma, eps);
    sp::random_source rng{seed};
    auto counts = closed_loop(b, rng, latency, 4, 5000);
    auto s = shares(counts);
    // Two uniform candidates out of three: the fastest is a candidate in 2/3 of the picks,
    // so 2/3 is its ceiling; the slowest wins only when the other candidate is loaded.
    EXPECT_GT(s[0], 0.6);
    EXPECT_GT(s[0], s[1]);
    EXPECT_GT(s[1], s[2]);
    EXPECT_LT(s[2], 0.05);
    for (std::size_t i = 0; i < eps.size(); ++i)
      all[i] += counts[i];
  }
  auto s = shares(all);
  std::printf("peak_ewma, latencies 5/25/100 ms, 4 clients, 200 seeds x 5000 requests: shares "
              "%.4f %.4f %.4f\n",
              s[0], s[1], s[2]);
  // For contrast: round robin over the same set spreads evenly whatever the latency.
  auto rr = make(sp::balancer_kind::round_robin, eps);
  sp::random_source rng{1};
  auto even = shares(closed_loop(rr, rng, latency, 4, 3000));
  EXPECT_NEAR(even[2], 1.0 / 3, 0.01);
}

TEST(balancer, peak_ewma_weights_shift_load_at_equal_latency) {
  const std::vector<sp::endpoint> eps{ep("heavy", 3), ep("light", 1)};
  const std::vector<sp::duration> latency{10ms, 10ms};
  std::vector<std::uint64_t> all(eps.size());
  for (std::uint64_t seed = 1; seed <= seed_count; ++seed) {
    SCOPED_TRACE(seed);
    auto b = make(sp::balancer_kind::peak_ewma, eps);
    sp::random_source rng{seed};
    auto counts = closed_loop(b, rng, latency, 8, 4000);
    auto s = shares(counts);
    EXPECT_GT(s[0], 0.6);
    EXPECT_LT(s[0], 0.9);
    all[0] += counts[0];
    all[1] += counts[1];
  }
  auto s = shares(all);
  std::printf("peak_ewma, equal latency, weights 3/1, 8 clients: shares %.4f %.4f\n", s[0], s[1]);
}

TEST(balancer, peak_ewma_takes_peaks_at_once_and_decays_with_tau) {
  sp::balancer b{{sp::balancer_kind::peak_ewma, 10s, 30ms}};
  b.update(std::vector<sp::endpoint>{ep("a")});
  const sp::time_point t0{std::chrono::hours{1}};
  EXPECT_EQ(b.latency_estimate(0, t0), 30ms); // default before any observation
  b.on_start(0);
  b.on_finish(0, 10ms, t0); // the first observation replaces the default
  EXPECT_EQ(b.latency_estimate(0, t0), 10ms);
  b.on_finish(0, 200ms, t0 + 1ms); // a peak is taken at once, whatever the elapsed time
  EXPECT_EQ(b.latency_estimate(0, t0 + 1ms), 200ms);
  b.on_finish(0, 10ms, t0 + 1ms); // no time elapsed: a lower sample has no weight
  EXPECT_EQ(b.latency_estimate(0, t0 + 1ms), 200ms);
  b.on_finish(0, 10ms, t0 + 1ms + 10s); // one tau later: 1/e of the old value remains
  const double expected_ms = 200 * std::exp(-1.0) + 10 * (1 - std::exp(-1.0));
  const double got_ms =
      std::chrono::duration<double, std::milli>(b.latency_estimate(0, t0 + 1ms + 10s)).count();
  EXPECT_NEAR(got_ms, expected_ms, 1e-6);
  // With no observation the estimate decays toward zero: 1/e after one more tau.
  const double later_ms =
      std::chrono::duration<double, std::milli>(b.latency_estimate(0, t0 + 1ms + 20s)).count();
  EXPECT_NEAR(later_ms, expected_ms * std::exp(-1.0), 1e-6);
  EXPECT_EQ(b.active(0), 0u); // one start, four finishes: never below zero
}

TEST(balancer, peak_ewma_without_decay_keeps_the_last_sample) {
  sp::balancer b{{sp::balancer_kind::peak_ewma, 0s, 30ms}};
  b.update(std::vector<sp::endpoint>{ep("a")});
  b.on_finish(0, 200ms, {});
  b.on_finish(0, 10ms, sp::time_point{} + 1s);
  EXPECT_EQ(b.latency_estimate(0, sp::time_point{} + 1h), 10ms);
}

TEST(balancer, peak_ewma_retries_an_idle_slow_endpoint_once_its_estimate_decays) {
  auto b = make(sp::balancer_kind::peak_ewma, {ep("slow"), ep("fast")});
  sp::random_source rng{7};
  SCOPED_TRACE(7);
  const sp::time_point t0{};
  b.on_finish(0, 500ms, t0);
  b.on_finish(1, 5ms, t0);
  EXPECT_EQ(*b.pick(rng, t0 + 1s), 1u);
  b.on_finish(1, 5ms, t0 + 99s); // the fast one keeps getting fresh observations
  // slow: 500 ms * e^-10 = 0.023 ms; fast: 5 ms * e^-0.1 = 4.5 ms.
  EXPECT_EQ(*b.pick(rng, t0 + 100s), 0u);
}

TEST(balancer, peak_ewma_tries_a_new_endpoint_at_the_default_penalty) {
  sp::random_source rng{3};
  SCOPED_TRACE(3);
  auto b = make(sp::balancer_kind::peak_ewma, {ep("known"), ep("new")});
  b.on_finish(0, 1ms, {});
  EXPECT_EQ(*b.pick(rng, {}), 0u); // 1 ms beats the 30 ms default
  b.on_finish(0, 100ms, {});
  EXPECT_EQ(*b.pick(rng, {}), 1u); // 100 ms loses to it
  // Load counts too: 30 ms * (3 + 1) = 120 ms > 100 ms.
  for (int i = 0; i < 3; ++i)
    b.on_start(1);
  EXPECT_EQ(*b.pick(rng, {}), 0u);
}

TEST(balancer, state_carries_over_by_id_when_a_snapshot_changes) {
  for (auto kind : all_kinds) {
    SCOPED_TRACE(sp::to_string(kind));
    auto b = make(kind, {ep("a"), ep("b"), ep("c")});
    b.on_start(0);
    b.on_start(0);
    b.on_start(2);
    b.on_finish(2, 80ms, {});
    b.on_start(2);
    // b removed, d added, order changed, a reweighted, a duplicated.
    b.update(std::vector<sp::endpoint>{ep("d"), ep("c"), ep("a", 4), ep("a")});
    ASSERT_EQ(b.size(), 4u);
    EXPECT_EQ(*b.index_of("a"), 2u);
    EXPECT_FALSE(b.index_of("b"));
    EXPECT_EQ(b.active(0), 0u);
    EXPECT_EQ(b.active(1), 1u);
    EXPECT_EQ(b.active(2), 2u);
    EXPECT_EQ(b.active(3), 0u); // the duplicate starts fresh
    EXPECT_EQ(b.latency_estimate(1, {}), 80ms);
    EXPECT_EQ(b.latency_estimate(0, {}), 30ms);
    // Out-of-range indices (a request from an older, larger snapshot) are ignored.
    b.on_start(17);
    b.on_finish(17, 1ms, {});
    EXPECT_EQ(b.active(17), 0u);
    EXPECT_EQ(b.latency_estimate(17, {}), 0ms);
  }
}

TEST(balancer, round_robin_position_carries_over_a_reweight) {
  auto b = make(sp::balancer_kind::round_robin, {ep("a", 5), ep("b", 1), ep("c", 1)});
  sp::random_source rng{1};
  std::string seq;
  for (int i = 0; i < 3; ++i)
    seq += static_cast<char>('a' + *b.pick(rng, {}));
  // Same weights, another order: the sequence continues instead of restarting at "a".
  b.update(std::vector<sp::endpoint>{ep("c", 1), ep("b", 1), ep("a", 5)});
  const char names[] = {'c', 'b', 'a'};
  for (int i = 0; i < 4; ++i)
    seq += names[*b.pick(rng, {})];
  EXPECT_EQ(seq, "aabacaa");
}
