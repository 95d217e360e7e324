// Simulated membership clusters: the simulator's own mechanics, then the protocol's
// properties (convergence, detection bound, no false deaths under loss, Lifeguard under
// stalls, partition heal). Asserts on virtual time and counters only, never on wall time.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/membership.hpp"
#include "tests/sim/scenarios.hpp"
#include "tests/sim/simulator.hpp"

namespace starling::sim {
namespace {

using gossip::member_state;

sim_config test_config(std::uint64_t seed) {
  sim_config cfg;
  cfg.seed = seed;
  return cfg;
}

/// Starts `n` nodes at once, all joining through node 0, and runs until converged.
void start_cluster(simulator& sim, std::size_t n) {
  sim.add_nodes(n);
  sim.start(0, {});
  for (node_id i = 1; i < n; ++i)
    sim.start(i, {0});
  auto done = sim.run_until([&] { return sim.all_see_running_alive(); }, sim.now() + 120s);
  ASSERT_TRUE(done) << "cluster of " << n << " did not converge";
}

double seconds(duration d) { return std::chrono::duration<double>(d).count(); }

/// Minimum suspicion timeout of the core for a cluster of n (swim_config's formula).
duration min_suspicion(const gossip::swim_config& c, std::size_t n) {
  const double f = std::max(1.0, std::log10(static_cast<double>(n)));
  return std::chrono::duration_cast<duration>(c.suspicion_mult * f * c.probe_interval);
}

/// Periodic push-pull period of the core for a cluster of n (swim_config's formula).
duration push_pull_period(const gossip::swim_config& c, std::size_t n) {
  if (n <= 32)
    return c.push_pull_interval;
  const auto mult = std::ceil(std::log2(static_cast<double>(n) / 32.0)) + 1.0;
  return c.push_pull_interval * static_cast<std::int64_t>(mult);
}

// -- the simulator -------------------------------------------------------------------------

TEST(simulator, names_and_addresses_map_to_ids) {
  simulator sim(test_config(1));
  sim.add_nodes(300);
  EXPECT_EQ(sim.name(0), "n0");
  EXPECT_EQ(sim.address(0), "10.0.0.1:7946");
  EXPECT_EQ(sim.address(255), "10.0.1.0:7946");
  for (node_id i : {0u, 1u, 255u, 299u}) {
    EXPECT_EQ(sim.find_name(sim.name(i)), i);
    EXPECT_EQ(sim.find_address(sim.address(i)), i);
  }
  EXPECT_FALSE(sim.find_address("10.9.9.9:1"));
}

TEST(simulator, same_seed_gives_same_trace) {
  auto run = [](std::uint64_t seed) {
    simulator sim(test_config(seed));
    sim.set_loss(0.05);
    start_cluster(sim, 20);
    sim.pause(3, 2s);
    sim.after(5s, [&] { sim.kill(7); });
    sim.after(20s, [&] { sim.restart(7, {0}); });
    sim.run_for(40s);
    return std::pair{sim.trace_hash(), sim.stats().packets_sent};
  };
  const auto a = run(42), b = run(42), c = run(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a.first, c.first);
}

// The real codec round-trips every message exactly and draws no random numbers: the same
// script gives the same trace with structs or with encoded bytes, and nothing is refused.
TEST(simulator, real_codec_changes_only_the_byte_counts) {
  auto run = [](bool real_codec) {
    auto cfg = test_config(42);
    cfg.real_codec = real_codec;
    simulator sim(cfg);
    sim.set_loss(0.05);
    start_cluster(sim, 20);
    sim.pause(3, 2s);
    sim.after(5s, [&] { sim.kill(7); });
    sim.after(20s, [&] { sim.restart(7, {0}); });
    sim.run_for(40s);
    EXPECT_EQ(sim.stats().codec_refused, 0u);
    return std::pair{sim.trace_hash(), sim.stats()};
  };
  const auto [structs_hash, structs] = run(false);
  const auto [codec_hash, codec] = run(true);
  EXPECT_EQ(structs_hash, codec_hash);
  EXPECT_EQ(structs.packets_sent, codec.packets_sent);
  EXPECT_EQ(structs.push_pulls_completed, codec.push_pulls_completed);
  EXPECT_EQ(structs.max_push_pull_bytes, 0u);
  EXPECT_GT(codec.max_push_pull_bytes, 0u);
  // The core's size bounds are bounds: real bytes never exceed the estimate.
  EXPECT_LE(codec.bytes_sent, structs.bytes_sent);
  EXPECT_LE(codec.max_datagram_bytes, structs.max_datagram_bytes);
}

// In real-codec mode the decoder's limits apply: with a members limit below the cluster's
// size, the seeds' full states are refused as an agent would refuse them.
TEST(simulator, real_codec_enforces_the_codec_limits) {
  auto cfg = test_config(5);
  cfg.real_codec = true;
  cfg.limits.max_push_pull_members = 16;
  simulator sim(cfg);
  sim.add_nodes(40);
  sim.start(0, {});
  for (node_id i = 1; i < 40; ++i)
    sim.after(std::chrono::milliseconds(100 * i), [&sim, i] { sim.start(i, {0}); });
  sim.run_for(20s);
  EXPECT_GT(sim.stats().codec_refused, 0u);
  EXPECT_GE(sim.stats().push_pulls_failed, sim.stats().codec_refused);
}

TEST(simulator, time_only_moves_forward_and_actions_run_in_order) {
  simulator sim(test_config(1));
  std::vector<int> order;
  const auto t0 = sim.now();
  sim.at(t0 + 2s, [&] { order.push_back(2); });
  sim.at(t0 + 1s, [&] { order.push_back(1); });
  sim.at(t0 + 2s, [&] { order.push_back(3); }); // same time: insertion order
  sim.run_until(t0 + 10s);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(sim.now(), t0 + 10s);
}

TEST(simulator, killed_node_receives_nothing_and_is_declared_dead) {
  simulator sim(test_config(3));
  start_cluster(sim, 10);
  sim.kill(4);
  EXPECT_FALSE(sim.is_running(4));
  EXPECT_EQ(sim.running_count(), 9u);
  const auto dropped = sim.stats().dropped_down;
  auto t = sim.run_until([&] { return sim.all_see(4, member_state::dead); }, sim.now() + 120s);
  EXPECT_TRUE(t);
  EXPECT_GT(sim.stats().dropped_down, dropped);
}

TEST(simulator, paused_node_handles_its_input_at_resume) {
  simulator sim(test_config(4));
  start_cluster(sim, 10);
  const auto received = sim.core(5).stats().packets_received;
  const auto ticks = sim.stats().ticks;
  sim.pause(5, 3s);
  EXPECT_TRUE(sim.is_paused(5));
  sim.run_for(2900ms);
  EXPECT_EQ(sim.core(5).stats().packets_received, received) << "a paused node handled input";
  EXPECT_GT(sim.stats().ticks, ticks);
  sim.run_for(200ms);
  EXPECT_FALSE(sim.is_paused(5));
  EXPECT_GT(sim.core(5).stats().packets_received, received) << "buffered input was lost";
}

TEST(simulator, partitions_cut_links_symmetric_or_one_way) {
  simulator sim(test_config(1));
  sim.add_nodes(4);
  sim.partition({0, 0, 1, 1});
  EXPECT_FALSE(sim.is_cut(0, 1));
  EXPECT_TRUE(sim.is_cut(0, 2));
  EXPECT_TRUE(sim.is_cut(2, 0));
  sim.partition({0, 0, 1, 1}, /*one_way=*/true);
  EXPECT_TRUE(sim.is_cut(0, 2));
  EXPECT_FALSE(sim.is_cut(2, 0));
  sim.heal();
  EXPECT_FALSE(sim.is_cut(0, 2));
}

TEST(simulator, restarted_node_is_alive_again_everywhere) {
  simulator sim(test_config(5));
  start_cluster(sim, 12);
  sim.kill(6);
  ASSERT_TRUE(sim.run_until([&] { return sim.all_see(6, member_state::dead); }, sim.now() + 120s));
  sim.restart(6, {0});
  auto t = sim.run_until([&] { return sim.all_see_running_alive(); }, sim.now() + 120s);
  EXPECT_TRUE(t) << "the restarted node was not seen alive by everyone";
  EXPECT_EQ(sim.verify_views(), 0u);
}

TEST(simulator, left_node_is_seen_left) {
  simulator sim(test_config(6));
  start_cluster(sim, 12);
  sim.leave(3);
  auto t = sim.run_until([&] { return sim.all_see(3, member_state::left); }, sim.now() + 60s);
  EXPECT_TRUE(t);
  sim.run_for(5s);
  EXPECT_EQ(sim.status(3), node_status::stopped);
}

// -- the protocol --------------------------------------------------------------------------

TEST(membership_sim, converges_at_small_sizes) {
  for (std::size_t n : {20u, 50u, 200u}) {
    SCOPED_TRACE(n);
    scenario_options opt;
    opt.n = n;
    opt.seed = 7;
    const auto r = run_convergence(opt);
    ASSERT_TRUE(r.converged);
    EXPECT_EQ(r.view_mismatches, 0u) << "event views disagree with the cores' tables";
    EXPECT_EQ(r.false_deaths, 0u);
    // Bound: gossip reaches nearly everyone in O(log n) rounds, but with a limited number of
    // retransmissions a node that joins while another's news is spreading can miss it; the
    // periodic push-pull repairs that. So: one (scaled) push-pull period plus slack.
    EXPECT_LT(r.seconds_after_last_start,
              seconds(push_pull_period(opt.swim, n) + 10 * opt.swim.probe_interval));
  }
}

TEST(membership_sim, datagrams_respect_max_datagram) {
  simulator sim(test_config(8));
  scenario_options opt;
  opt.n = 100;
  ASSERT_TRUE(bootstrap(sim, opt).converged);
  EXPECT_LE(sim.stats().max_datagram_bytes, sim.config().swim.max_datagram);
  EXPECT_EQ(sim.stats().tick_spins, 0u) << "a core kept a deadline in the past";
}

// Issue 15: the simulator used to pass structs, so no simulated message ever met the wire's
// limits. At n = 1,000 every datagram and push-pull goes through the real codec with an
// agent's limits, and the cluster converges with nothing refused.
TEST(membership_sim, converges_at_1000_through_the_real_codec) {
  scenario_options opt;
  opt.n = 1000;
  opt.seed = 1;
  opt.real_codec = true;
  simulator sim(make_sim_config(opt));
  ASSERT_TRUE(sim.config().real_codec);
  const auto r = bootstrap(sim, opt);
  ASSERT_TRUE(r.converged);
  EXPECT_EQ(r.view_mismatches, 0u);
  EXPECT_EQ(r.false_deaths, 0u);
  const auto& st = sim.stats();
  EXPECT_EQ(st.codec_refused, 0u) << "a core sent what a real peer refuses";
  EXPECT_LE(st.max_datagram_bytes, sim.config().limits.max_datagram);
  EXPECT_GE(st.push_pulls_completed, opt.n - 1) << "every joiner got a full state";
  // A join answer holds the seed's whole view: hundreds of members in one frame.
  EXPECT_GT(st.max_push_pull_bytes, 100u * gossip::min_encoded_update);
  EXPECT_LE(st.max_push_pull_bytes, sim.config().limits.max_frame);
}

TEST(membership_sim, every_live_node_marks_a_killed_node_dead_within_bound) {
  // Bound: one probe round for some node to probe the victim and suspect it (a few rounds
  // of slack, since probe order is random), then at most the maximum (Lifeguard) suspicion
  // timeout, then dissemination (a few gossip rounds).
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    scenario_options opt;
    opt.n = 50;
    opt.seed = seed;
    const auto max_susp = opt.swim.suspicion_max_mult * min_suspicion(opt.swim, opt.n);
    const double bound = seconds(max_susp + 10 * opt.swim.probe_interval);
    const auto r = run_detection(opt);
    ASSERT_TRUE(r.converged);
    ASSERT_TRUE(r.detected);
    EXPECT_LE(r.first_suspect_seconds, seconds(5 * opt.swim.probe_interval));
    EXPECT_GE(r.first_dead_seconds, seconds(min_suspicion(opt.swim, opt.n)) * 0.99)
        << "declared dead before the minimum suspicion timeout";
    EXPECT_LE(r.all_dead_seconds, bound);
    EXPECT_EQ(r.false_deaths, 0u);
  }
}

TEST(membership_sim, no_false_deaths_under_ten_percent_loss_with_lifeguard) {
  for (std::uint64_t seed : {1u, 2u}) {
    SCOPED_TRACE(seed);
    scenario_options opt;
    opt.n = 50;
    opt.seed = seed;
    false_positive_options fp;
    fp.kind = disturbance::loss;
    fp.loss = 0.10;
    fp.window = 120s;
    const auto r = run_false_positives(opt, fp);
    ASSERT_TRUE(r.converged);
    EXPECT_EQ(r.false_death_events, 0u) << r.falsely_dead << " live nodes declared dead";
    EXPECT_TRUE(r.settled);
  }
}

/// Lifeguard on and off over the same seeds; sums of the false-positive counters.
struct lifeguard_comparison {
  false_positive_result on, off;
};

lifeguard_comparison compare_lifeguard(disturbance kind, std::size_t n,
                                       std::initializer_list<std::uint64_t> seeds) {
  lifeguard_comparison c;
  auto add = [](false_positive_result& sum, const false_positive_result& r) {
    EXPECT_TRUE(r.converged);
    EXPECT_GT(r.pauses, 0u);
    EXPECT_TRUE(r.settled) << "views did not return to all-alive after the window";
    sum.suspicions_raised += r.suspicions_raised;
    sum.raised_by_sick += r.raised_by_sick;
    sum.healthy_suspect_events += r.healthy_suspect_events;
    sum.false_death_events += r.false_death_events;
  };
  for (auto seed : seeds) {
    SCOPED_TRACE(seed);
    scenario_options opt;
    opt.n = n;
    opt.seed = seed;
    false_positive_options fp;
    fp.kind = kind;
    fp.window = 120s;
    opt.swim.lifeguard = true;
    add(c.on, run_false_positives(opt, fp));
    opt.swim.lifeguard = false;
    add(c.off, run_false_positives(opt, fp));
  }
  return c;
}

// 5% of the nodes freeze for 2 s at random times. The suspicions are nearly all raised by
// healthy probers about the frozen nodes, which really are unresponsive; Lifeguard does not
// (and should not) suppress those, and a frozen node has almost never a probe in flight, so it
// raises hardly any itself. Measured over 30 seeds at n = 60: 793 suspicions with Lifeguard,
// 782 without, so "on <= off" on the total is a coin toss per seed set and is not asserted.
// Asserted: what Lifeguard is for, no more suspicions raised by the stalled nodes and no more
// false deaths than plain SWIM. Over ten seeds: a false death is rare either way (seeds 1-30
// at n = 60, 2026-12-03: 3 false-death events with Lifeguard and 68 without, one run
// without it having a death that reached every view; 4 and 12 before the catch-up
// push-pull), so three seeds compared single events, and the catch-up (issue 15), which
// shifts every later random draw, turned seed 2 into a run with one under Lifeguard.
TEST(membership_sim, lifeguard_vs_swim_under_pauses) {
  const auto c = compare_lifeguard(disturbance::pauses, 60, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  RecordProperty("suspicions_lifeguard", static_cast<int>(c.on.suspicions_raised));
  RecordProperty("suspicions_swim", static_cast<int>(c.off.suspicions_raised));
  EXPECT_LE(c.on.raised_by_sick, c.off.raised_by_sick);
  EXPECT_LE(c.on.false_death_events, c.off.false_death_events);
}

// 5% of the nodes handle their input 1 s late for 20 s episodes (timers on time): the
// degraded observer Lifeguard was designed for. It must raise fewer suspicions overall, far
// fewer from the slow nodes, and suspect fewer healthy members.
TEST(membership_sim, lifeguard_raises_fewer_suspicions_than_swim_with_slow_nodes) {
  const auto c = compare_lifeguard(disturbance::slow, 60, {1, 2, 3});
  RecordProperty("suspicions_lifeguard", static_cast<int>(c.on.suspicions_raised));
  RecordProperty("suspicions_swim", static_cast<int>(c.off.suspicions_raised));
  EXPECT_LE(c.on.suspicions_raised, c.off.suspicions_raised);
  EXPECT_LE(c.on.raised_by_sick, c.off.raised_by_sick);
  EXPECT_LE(c.on.healthy_suspect_events, c.off.healthy_suspect_events);
  EXPECT_LE(c.on.false_death_events, c.off.false_death_events);
}

TEST(membership_sim, views_converge_after_a_partition_heals) {
  scenario_options opt;
  opt.n = 40;
  opt.seed = 1;
  const auto r = run_partition(opt, 30s);
  ASSERT_TRUE(r.converged);
  // 30 s exceeds the minimum suspicion timeout, but a pair without confirmations may still
  // be suspect (the maximum is 6x longer): asserted is that nobody still sees across alive.
  EXPECT_TRUE(r.split_detected) << r.cross_dead << " dead, " << r.cross_suspect << " suspect of "
                                << r.cross_pairs;
  EXPECT_GT(r.cross_dead, r.cross_pairs / 2);
  ASSERT_TRUE(r.healed);
  // After the heal, dead members are still gossiped to for gossip_to_dead and refute;
  // periodic push-pull repairs the rest: bounded by push_pull_interval plus slack.
  EXPECT_LE(r.heal_seconds, seconds(opt.swim.push_pull_interval + 30s));
  EXPECT_EQ(r.view_mismatches, 0u);
}

} // namespace
} // namespace starling::sim
