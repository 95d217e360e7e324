// The converged start (simulator::start_converged, converged_start()): a cluster that starts
// already converged must be what a bootstrap converges to (every node sees all n alive,
// nothing suspect, nothing left to gossip), and a routing change must then spread to all.
#include <cstdint>
#include <memory>

#include <gtest/gtest.h>

#include "tests/sim/routing_scenarios.hpp"
#include "tests/sim/scenarios.hpp"

namespace starling::sim {
namespace {

using gossip::member_state;
using namespace std::chrono_literals;

scenario_options options(std::size_t n, std::uint64_t seed) {
  scenario_options opt;
  opt.n = n;
  opt.seed = seed;
  opt.real_codec = true;
  opt.converged_start = true;
  return opt;
}

class converged_start_test : public ::testing::TestWithParam<std::size_t> {};

TEST_P(converged_start_test, every_node_sees_all_alive_as_after_a_bootstrap) {
  const auto n = GetParam();
  const auto opt = options(n, 7);
  simulator sim(make_sim_config(opt));
  // Member updates that ride on datagrams from the first start on: the cluster learned
  // them long ago, so none is left to gossip (a start that left its queue full sends n).
  auto carried = std::make_shared<std::uint64_t>(0);
  sim.add_packet_observer([carried](node_id, node_id, const gossip::packet& p, time_point) {
    *carried += p.updates.size();
  });
  const auto r = converged_start(sim, opt);
  ASSERT_TRUE(r.converged);
  EXPECT_EQ(r.false_deaths, 0u);
  ASSERT_EQ(sim.running_count(), n);
  EXPECT_TRUE(sim.all_see_running_alive());
  EXPECT_EQ(sim.verify_views(), 0u);
  for (node_id i = 0; i < n; ++i) {
    SCOPED_TRACE(sim.name(i));
    EXPECT_TRUE(sim.is_joined(i));
    EXPECT_EQ(sim.seen_count(i, member_state::alive), n);
    EXPECT_EQ(sim.seen_count(i, member_state::suspect), 0u);
    const auto& core = sim.core(i);
    EXPECT_EQ(core.count(member_state::alive), n);
    EXPECT_EQ(core.count(member_state::suspect), 0u);
    EXPECT_EQ(core.count(member_state::dead), 0u);
    EXPECT_EQ(core.pending_broadcasts(), 0u);
    // Every member as it would announce itself: incarnation 0, its own address.
    for (node_id j = 0; j < n; ++j) {
      const auto m = core.find(sim.name(j));
      ASSERT_TRUE(m.has_value()) << sim.name(j);
      EXPECT_EQ(m->state, member_state::alive);
      EXPECT_EQ(m->incarnation, 0u);
      EXPECT_EQ(m->address, sim.address(j));
    }
  }
  const auto totals = sim.core_stats_total();
  EXPECT_EQ(totals.suspicions, 0u);
  EXPECT_EQ(totals.refutations, 0u);
  EXPECT_EQ(*carried, 0u);
  // The queues were drained (at least one answer per node), and each start's catch-up
  // push-pull ran and was answered.
  EXPECT_GE(sim.stats().converged_drain_answers, n);
  EXPECT_GE(sim.stats().push_pulls_completed, n);
  EXPECT_EQ(sim.stats().push_pulls_failed, 0u);
  EXPECT_EQ(sim.stats().codec_refused, 0u);

  // And the cluster stays so: a further probe period of probes changes nothing.
  sim.run_for(10s);
  EXPECT_TRUE(sim.all_see_running_alive());
  EXPECT_EQ(sim.core_stats_total().suspicions, 0u);
  EXPECT_EQ(*carried, 0u);
}

TEST_P(converged_start_test, the_same_view_as_a_bootstrap) {
  const auto n = GetParam();
  auto opt = options(n, 11);
  opt.converged_start = false;
  simulator booted(make_sim_config(opt));
  ASSERT_TRUE(bootstrap(booted, opt).converged);
  opt.converged_start = true;
  simulator started(make_sim_config(opt));
  ASSERT_TRUE(start_cluster(started, opt).converged);
  // Same members, states and addresses everywhere; only the incarnations of a bootstrap
  // may be above 0 (a node that refuted a suspicion during the joins).
  for (node_id i = 0; i < n; ++i) {
    const auto a = booted.core(i).members();
    const auto b = started.core(i).members();
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t k = 0; k < a.size(); ++k) {
      EXPECT_EQ(a[k].name, b[k].name);
      EXPECT_EQ(a[k].address, b[k].address);
      EXPECT_EQ(a[k].state, b[k].state);
      EXPECT_EQ(a[k].tags, b[k].tags);
    }
  }
}

TEST_P(converged_start_test, a_routing_change_then_reaches_every_node) {
  const auto n = GetParam();
  const auto r = run_routing(options(n, 3), 0.10, 2s, false);
  ASSERT_TRUE(r.bootstrap.converged);
  EXPECT_EQ(r.bootstrap.false_deaths, 0u);
  EXPECT_EQ(r.clean.reached, n);
  EXPECT_EQ(r.clean.nodes, n);
  EXPECT_TRUE(r.clean.p100.has_value());
  EXPECT_EQ(r.lossy.reached, n);
  EXPECT_TRUE(r.lossy.p100.has_value());
  EXPECT_EQ(r.healed.reached, n - n / 2);
  EXPECT_TRUE(r.healed.p100.has_value());
  EXPECT_EQ(r.refused, 0u);
  // Fast, as after a bootstrap: well under a second at 0% loss at these sizes.
  ASSERT_TRUE(r.clean.p999.has_value());
  EXPECT_LT(*r.clean.p999, 1.0);
}

INSTANTIATE_TEST_SUITE_P(sizes, converged_start_test, ::testing::Values(50, 200));

} // namespace
} // namespace starling::sim
