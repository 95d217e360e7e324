#include "tests/sim/routing_scenarios.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "gossip/errc.hpp"
#include "gossip/routing_gossip.hpp"
#include "tests/support/routing_fakes.hpp"

namespace starling::sim {

namespace {

using gossip::routing_extension;
using gossip::routing_table;

/// Wall time (unix ms) of every simulated node at the simulator's epoch: clocks agree.
constexpr std::uint64_t wall_base = 1'800'000'000'000;

double seconds_of(duration d) { return std::chrono::duration<double>(d).count(); }

/// Every node's routing extension, and the arrival of the change being watched.
struct routing_world {
  simulator* sim = nullptr;
  time_point epoch{};
  std::shared_ptr<gossip::test_support::fake_trust> trust;
  std::vector<std::shared_ptr<routing_extension>> ext;
  /// The policy write being watched, and when each node applied it.
  gossip::policy_key key{gossip::policy_kind::split, "web", ""};
  gossip::hlc_stamp stamp{};
  std::vector<std::optional<time_point>> arrived;
  bool tracking = false;

  bool has_target(node_id id) const {
    const auto* p = ext[id]->table().policy(key);
    return p != nullptr && p->stamp >= stamp;
  }
};

gossip::service_registration instance_of(std::string service, std::string version,
                                         std::uint16_t port) {
  gossip::service_registration r;
  r.service = std::move(service);
  r.id = r.service + "-" + version;
  r.address = "10.0.0.1";
  r.port = port;
  r.version = std::move(version);
  return r;
}

/// Node 0 writes a split of `v1` percent to v1, the rest to v2; the watch restarts.
void write_change(routing_world& w, std::uint32_t v1) {
  auto& ext = *w.ext[0];
  auto& table = ext.table();
  const auto now = w.sim->now();
  gossip::test_support::fake_sealer issuer(w.sim->name(0), true);
  if (table.owner(w.sim->name(0)) == nullptr) {
    auto own = table.set_instances({instance_of("web", "v1", 8080), instance_of("web", "v2", 8081)},
                                   ext.wall_ms(now), issuer);
    if (!own)
      throw std::logic_error("sim: cannot write node 0's instances");
    ext.publish(*own);
  }
  auto rec =
      table.set_policy(w.key, std::vector<gossip::split_weight>{{"v1", v1}, {"v2", 100 - v1}},
                       ext.wall_ms(now), issuer);
  if (!rec)
    throw std::logic_error("sim: cannot write the split: " + gossip::render(rec.error()));
  ext.publish(*rec);
  w.sim->extension_news(0); // as the agent's relay does after a local write
  w.stamp = rec->stamp;
  std::fill(w.arrived.begin(), w.arrived.end(), std::nullopt);
  w.arrived[0] = now;
  w.tracking = true;
}

/// Runs until every node of `nodes` applied the watched change (or `deadline`); times from
/// `from`.
spread_times watch(routing_world& w, const std::vector<node_id>& nodes, time_point from,
                   duration deadline, duration check_every) {
  auto& sim = *w.sim;
  sim.run_until(
      [&] {
        return std::all_of(nodes.begin(), nodes.end(), [&](node_id id) { return w.arrived[id]; });
      },
      sim.now() + deadline, check_every);
  spread_times out;
  out.nodes = nodes.size();
  std::vector<double> times;
  for (auto id : nodes)
    if (w.arrived[id])
      times.push_back(seconds_of(std::max(*w.arrived[id], from) - from));
  std::sort(times.begin(), times.end());
  out.reached = times.size();
  const auto rank = [&](double fraction) -> std::optional<double> {
    const auto k =
        static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(nodes.size())));
    if (k == 0 || k > times.size())
      return std::nullopt;
    return times[k - 1];
  };
  out.p99 = rank(0.99);
  out.p999 = rank(0.999);
  out.p100 = rank(1.0);
  w.tracking = false;
  return out;
}

std::vector<node_id> all_nodes(const simulator& sim) {
  std::vector<node_id> out;
  for (node_id i = 0; i < sim.size(); ++i)
    if (sim.is_running(i))
      out.push_back(i);
  return out;
}

/// The same converged content in every table: `owners` records of 10 instances and
/// `policies` resilience policies, merged directly (no gossip).
void populate(routing_world& w, std::size_t owners, std::size_t policies) {
  const auto wall = w.ext[0]->wall_ms(w.sim->now());
  std::vector<gossip::owner_record> recs;
  for (std::size_t o = 0; o < owners; ++o) {
    const auto name = "static-" + std::to_string(o);
    gossip::owner_record r;
    r.owner = name;
    r.version = 1;
    r.stamp = {wall, 0};
    for (int i = 0; i < 10; ++i)
      r.instances.push_back(instance_of("svc" + std::to_string(o), "v" + std::to_string(i),
                                        static_cast<std::uint16_t>(9000 + i)));
    std::sort(r.instances.begin(), r.instances.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    gossip::test_support::fake_sealer s(name);
    r.seal = *s.seal(gossip::routing_context::owner, gossip::canonical_bytes(r));
    recs.push_back(std::move(r));
  }
  std::vector<gossip::policy_record> pols;
  gossip::test_support::fake_sealer issuer(w.sim->name(0), true);
  for (std::size_t k = 0; k < policies; ++k) {
    gossip::policy_record p;
    p.key = {gossip::policy_kind::resilience, "svc" + std::to_string(k), ""};
    p.stamp = {wall, static_cast<std::uint32_t>(k)};
    p.writer = w.sim->name(0);
    p.value = gossip::resilience_policy{2000, 500, 2, 20, 10};
    p.seal = *issuer.seal(gossip::routing_context::policy, gossip::canonical_bytes(p));
    pols.push_back(std::move(p));
  }
  for (auto id : all_nodes(*w.sim)) {
    auto& t = w.ext[id]->table();
    for (const auto& r : recs)
      static_cast<void>(t.merge(r, wall));
    for (const auto& p : pols)
      static_cast<void>(t.merge(p, wall));
  }
}

/// Bytes of routing sections built and routing payloads sent by every running node.
std::uint64_t routing_bytes(const routing_world& w) {
  // Every extension request of the run is a routing pull.
  std::uint64_t sum = w.sim->stats().extension_request_bytes;
  for (auto id : all_nodes(*w.sim)) {
    sum += w.ext[id]->spreader().stats().section_bytes_out;
    for (const auto& x : w.sim->core(id).extensions())
      if (x.kind == gossip::routing_extension_kind)
        sum += x.stats.payload_bytes_sent;
  }
  return sum;
}

/// Fills every table with the same content, then measures a window of steady state.
void measure_steady(routing_world& w, routing_result& r, const std::vector<node_id>& nodes) {
  auto& sim = *w.sim;
  r.steady_owners = 10;
  r.steady_policies = 20;
  populate(w, r.steady_owners, r.steady_policies);
  sim.run_for(30s);
  const auto before = sim.stats();
  const auto routing_before = routing_bytes(w);
  const auto window = 60s;
  std::uint64_t asks_before = 0;
  for (auto id : nodes)
    asks_before += w.ext[id]->spreader().stats().anti_entropy_asks;
  sim.run_for(window);
  for (auto id : nodes)
    r.steady_anti_entropy_asks += w.ext[id]->spreader().stats().anti_entropy_asks;
  r.steady_anti_entropy_asks -= asks_before;
  const auto after = sim.stats();
  const double per = static_cast<double>(nodes.size()) * seconds_of(window);
  r.steady_bytes_per_node_second =
      static_cast<double>((after.bytes_sent - before.bytes_sent) +
                          (after.push_pull_bytes - before.push_pull_bytes) +
                          (after.extension_request_bytes - before.extension_request_bytes)) /
      per;
  r.steady_routing_bytes_per_node_second =
      static_cast<double>(routing_bytes(w) - routing_before) / per;
}

/// One phase's times on stderr, with the wall time since the run began.
void report_phase(const char* phase, const scenario_options& opt, const spread_times& t,
                  std::chrono::steady_clock::time_point began) {
  const auto show = [](const std::optional<double>& v) { return v ? *v : -1.0; };
  std::fprintf(stderr,
               "routing n=%zu seed=%llu %s: 99%% %.2f 99.9%% %.2f 100%% %.2f s (%zu/%zu) "
               "after %.0f s wall\n",
               opt.n, static_cast<unsigned long long>(opt.seed), phase, show(t.p99), show(t.p999),
               show(t.p100), t.reached, t.nodes,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
}

} // namespace

routing_result run_routing(const scenario_options& opt, double loss, duration partition_for,
                           bool steady, double far_share) {
  if (!(far_share > 0 && far_share < 1))
    throw std::invalid_argument("sim: the far side's share of a partition must be in (0, 1)");
  const auto began = std::chrono::steady_clock::now();
  auto world = std::make_shared<routing_world>();
  world->trust = std::make_shared<gossip::test_support::fake_trust>(true);
  auto cfg = make_sim_config(opt);
  auto flood = cfg.on_core_start;
  cfg.on_core_start = [world, flood](node_id id, gossip::membership& core) {
    if (flood)
      flood(id, core);
    auto& sim = *world->sim;
    gossip::routing_config rc;
    rc.self = sim.name(id);
    auto table = std::make_shared<routing_table>(rc, world->trust);
    const auto since =
        std::chrono::duration_cast<std::chrono::milliseconds>(sim.now() - world->epoch);
    auto ext = std::make_shared<routing_extension>(
        table, sim.now(), wall_base + static_cast<std::uint64_t>(since.count()));
    // A plain pointer: world holds ext, so capturing the shared_ptr made a cycle that
    // leaked every node's table (ASan's leak check, docs/testing.md). world outlives the
    // simulator that calls this.
    ext->on_change([w_ptr = world.get(), id](time_point now) {
      auto& w = *w_ptr;
      if (w.tracking && !w.arrived[id] && w.has_target(id))
        w.arrived[id] = now;
    });
    if (world->ext.size() <= id)
      world->ext.resize(id + 1);
    world->ext[id] = ext;
    if (auto err = core.add_extension(gossip::routing_extension_kind, "routing", ext))
      throw std::logic_error("sim: " + gossip::render(err));
  };
  simulator sim(cfg);
  world->sim = &sim;
  world->epoch = sim.now();
  // Node 0 is the issuer of the fake trust.
  world->trust =
      std::make_shared<gossip::test_support::fake_trust>(true, std::set<std::string>{node_name(0)});

  routing_result r;
  r.bootstrap = start_cluster(sim, opt);
  std::fprintf(stderr, "routing n=%zu seed=%llu: %s %s after %.0f s wall\n", opt.n,
               static_cast<unsigned long long>(opt.seed),
               opt.converged_start ? "converged start" : "bootstrap",
               r.bootstrap.converged ? "converged" : "did not converge",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
  world->arrived.assign(sim.size(), std::nullopt);
  if (!r.bootstrap.converged)
    return r;
  sim.run_for(2s);
  const auto deadline = std::chrono::duration_cast<duration>(std::chrono::seconds{120});
  const auto nodes = all_nodes(sim);

  // 1. At 0% loss.
  auto t = sim.now();
  write_change(*world, 90);
  r.clean = watch(*world, nodes, t, deadline, opt.check_every);
  report_phase("0% loss", opt, r.clean, began);

  // 2. Steady state: a converged, unchanging table.
  if (steady)
    measure_steady(*world, r, nodes);
  // 3. With loss.
  sim.run_for(5s);
  sim.set_loss(loss);
  t = sim.now();
  write_change(*world, 80);
  r.lossy = watch(*world, nodes, t, deadline, opt.check_every);
  report_phase("lossy", opt, r.lossy, began);
  sim.set_loss(0);

  // 4. Across a partition: written on the near side, measured on the far side from the heal.
  sim.run_for(5s);
  std::vector<int> group(sim.size(), 0);
  std::vector<node_id> far;
  const auto first_far = std::max<std::size_t>(
      1, sim.size() - static_cast<std::size_t>(static_cast<double>(sim.size()) * far_share));
  for (auto id : nodes)
    if (id >= first_far) {
      group[id] = 1;
      far.push_back(id);
    }
  sim.partition(group);
  sim.run_for(1s);
  write_change(*world, 70);
  sim.run_for(partition_for);
  sim.heal();
  t = sim.now();
  world->tracking = true;
  r.healed = watch(*world, far, t, deadline, opt.check_every);
  report_phase("healed", opt, r.healed, began);

  for (const auto& e : world->ext)
    if (e) {
      r.refused += e->table().stats().refused_total();
      r.anti_entropy_asks += e->spreader().stats().anti_entropy_asks;
    }
  return r;
}

routing_memory measure_routing_memory(std::size_t instances, std::size_t policies) {
  routing_memory m;
  m.instances = instances;
  m.policies = policies;
  const auto before = heap_in_use();
  {
    gossip::routing_config rc;
    rc.self = "n0";
    // The open trust keeps what it is given without checking: the seals below have the
    // sizes of real ones (a 32-byte key id, a 72-byte DER ECDSA signature).
    routing_table t{rc, std::make_shared<gossip::open_routing_trust>()};
    const gossip::routing_seal seal{std::string(32, 'k'), std::string(72, 's')};
    for (std::size_t o = 0; o * 10 < instances; ++o) {
      gossip::owner_record r;
      r.owner = "node-" + std::to_string(o);
      r.version = 1;
      r.stamp = {wall_base, 0};
      for (std::size_t i = 0; i < 10 && o * 10 + i < instances; ++i)
        r.instances.push_back(instance_of("svc" + std::to_string(o % 500), "v" + std::to_string(i),
                                          static_cast<std::uint16_t>(9000 + i)));
      std::sort(r.instances.begin(), r.instances.end(), [](const auto& a, const auto& b) {
        return std::tie(a.service, a.id) < std::tie(b.service, b.id);
      });
      r.seal = seal;
      static_cast<void>(t.merge(r, wall_base));
    }
    for (std::size_t k = 0; k < policies; ++k) {
      gossip::policy_record p;
      p.key = {gossip::policy_kind::route, "svc" + std::to_string(k % 500),
               "rule" + std::to_string(k)};
      p.stamp = {wall_base, static_cast<std::uint32_t>(k)};
      p.writer = "issuer";
      p.value = gossip::header_route{p.key.name, "x-user-group", "beta", "v1"};
      p.seal = seal;
      static_cast<void>(t.merge(p, wall_base));
    }
    const auto filled = heap_in_use();
    m.table_bytes = filled > before ? filled - before : 0;
    gossip::routing_gossip g(t);
    m.section_bytes = g.make_section().size();
    gossip::routing_pull all;
    for (std::uint32_t r = 0; r < gossip::digest_ranges; ++r)
      all.ranges.push_back(r);
    if (auto answer = g.answer_pull(gossip::encode_routing(all), "joiner"))
      m.pull_answer_bytes = answer->size();
  }
  return m;
}

} // namespace starling::sim
