#include "tests/sim/scenarios.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include <malloc.h>

#include "gossip/errc.hpp"
#include "gossip/member_card.hpp"

namespace starling::sim {

namespace {

using gossip::member_event;
using gossip::member_event_kind;
using gossip::member_state;
using wall_clock = std::chrono::steady_clock;

double seconds(duration d) { return std::chrono::duration<double>(d).count(); }

/// Measures the cost of a phase: simulator counters and wall time since construction.
class cost_meter {
public:
  explicit cost_meter(const simulator& sim) : sim_(sim), s0_(sim.stats()), t0_(wall_clock::now()) {}

  [[nodiscard]] run_cost finish() const {
    const auto& s = sim_.stats();
    run_cost c;
    c.packets = s.packets_sent - s0_.packets_sent;
    c.bytes = s.bytes_sent - s0_.bytes_sent;
    c.push_pulls = s.push_pulls_started - s0_.push_pulls_started;
    c.push_pull_bytes = s.push_pull_bytes - s0_.push_pull_bytes;
    c.events = s.events - s0_.events;
    c.wall_seconds = std::chrono::duration<double>(wall_clock::now() - t0_).count();
    return c;
  }

private:
  const simulator& sim_;
  sim_stats s0_;
  wall_clock::time_point t0_;
};

duration uniform(std::mt19937_64& rng, duration lo, duration hi) {
  if (hi <= lo)
    return lo;
  std::uniform_int_distribution<duration::rep> d(lo.count(), hi.count());
  return duration(d(rng));
}

} // namespace

std::vector<std::string> flood_extension::take_payloads(const gossip::piggyback_request& req) {
  std::vector<std::string> out;
  const auto cost = gossip::extension_payload_bound(kind, bytes_);
  for (std::size_t used = cost; used <= req.budget && out.size() < req.max_count; used += cost)
    out.emplace_back(bytes_, 'f');
  return out;
}

gossip::extension_effects flood_extension::on_payload(std::string_view bytes, const std::string&,
                                                      time_point) {
  ++received;
  received_bytes += bytes.size();
  return {};
}

sim_config make_sim_config(const scenario_options& opt) {
  sim_config cfg;
  cfg.seed = opt.seed;
  cfg.swim = opt.swim;
  cfg.latency_base = opt.latency_base;
  cfg.latency_jitter = opt.latency_jitter;
  cfg.print_seed = opt.print_seed;
  cfg.real_codec = opt.real_codec;
  if (opt.flood_bytes > 0)
    cfg.on_core_start = [bytes = opt.flood_bytes](node_id, gossip::membership& core) {
      if (auto err = core.add_extension(flood_extension::kind, "flood",
                                        std::make_shared<flood_extension>(bytes)))
        throw std::logic_error("sim: " + gossip::render(err));
    };
  return cfg;
}

namespace {

/// Counts `failed` events about nodes that are still running (false deaths), from now on.
std::shared_ptr<std::uint64_t> count_false_deaths(simulator& sim) {
  auto false_deaths = std::make_shared<std::uint64_t>(0);
  sim.add_observer([&sim, false_deaths](node_id, const member_event& e, time_point) {
    if (e.kind != member_event_kind::failed)
      return;
    if (auto s = sim.find_name(e.subject.name); s && sim.is_running(*s))
      ++*false_deaths;
  });
  return false_deaths;
}

} // namespace

convergence_result bootstrap(simulator& sim, const scenario_options& opt) {
  convergence_result r;
  cost_meter meter(sim);
  const auto n = opt.n;
  const auto k = std::max<std::size_t>(1, std::min(opt.seeds, n));
  const node_id first = sim.add_nodes(n);
  const auto t0 = sim.now();

  const auto false_deaths = count_false_deaths(sim);

  auto& rng = sim.rng();
  time_point last_start = t0;
  for (std::size_t i = 0; i < n; ++i) {
    const node_id id = first + static_cast<node_id>(i);
    std::vector<node_id> seeds;
    time_point at = t0;
    if (i > 0) {
      at = t0 + uniform(rng, 1ms, std::max<duration>(opt.stagger, 1ms));
      if (i < k) {
        seeds = {first};
      } else {
        for (std::size_t s = 0; s < k; ++s)
          seeds.push_back(first + static_cast<node_id>(s));
        std::shuffle(seeds.begin(), seeds.end(), rng);
      }
    }
    last_start = std::max(last_start, at);
    sim.at(at, [&sim, id, seeds = std::move(seeds)] { sim.start(id, seeds); });
  }

  // The 99% mark: nodes whose view is all n alive (counts only; O(n) per check).
  std::optional<time_point> p99;
  auto done = sim.run_until(
      [&] {
        if (sim.running_count() != n || sim.now() < last_start)
          return false;
        if (!p99) {
          std::size_t full = 0;
          for (node_id i = first; i < first + n; ++i)
            full += sim.seen_count(i, member_state::alive) == n &&
                    sim.seen_count(i, member_state::suspect) == 0;
          if (full * 100 >= n * 99)
            p99 = sim.now();
        }
        return p99 && sim.all_see_running_alive();
      },
      last_start + opt.phase_deadline, opt.check_every);
  if (p99)
    r.p99_seconds_after_last_start = seconds(*p99 - last_start);
  r.converged = done.has_value();
  if (done) {
    r.seconds_after_last_start = seconds(*done - last_start);
    r.seconds_after_first_start = seconds(*done - t0);
    r.rounds = r.seconds_after_last_start / seconds(opt.swim.probe_interval);
  }
  r.false_deaths = *false_deaths;
  r.cost = meter.finish();
  return r;
}

convergence_result converged_start(simulator& sim, const scenario_options& opt) {
  convergence_result r;
  cost_meter meter(sim);
  const auto n = opt.n;
  const node_id first = sim.add_nodes(n);
  const auto t0 = sim.now();
  auto members = std::make_shared<std::vector<node_id>>(n);
  std::iota(members->begin(), members->end(), first);

  const auto false_deaths = count_false_deaths(sim);

  // Within one probe interval: a node's first probe (a probe interval after its start) finds
  // every node started. Gossip before that finds nothing to send (the queues are drained).
  auto& rng = sim.rng();
  const auto window = std::max<duration>(opt.swim.probe_interval - 1ms, 0ms);
  time_point last_start = t0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto at = t0 + uniform(rng, 0ms, window);
    last_start = std::max(last_start, at);
    sim.at(at, [&sim, id = (*members)[i], members] { sim.start_converged(id, *members); });
  }
  // The catch-up push-pull each start armed runs retransmit_limit gossip intervals after it.
  const auto limit =
      opt.swim.retransmit_mult *
      std::max(1u, static_cast<unsigned>(std::ceil(std::log10(static_cast<double>(n) + 1.0))));
  const auto settle = opt.swim.gossip_interval * static_cast<std::int64_t>(limit) + 1s;
  sim.run_until(last_start + settle);
  r.converged = sim.running_count() == n && sim.all_see_running_alive();
  if (r.converged) {
    r.seconds_after_last_start = seconds(sim.now() - last_start);
    r.seconds_after_first_start = seconds(sim.now() - t0);
    r.rounds = r.seconds_after_last_start / seconds(opt.swim.probe_interval);
  }
  r.false_deaths = *false_deaths;
  r.cost = meter.finish();
  return r;
}

convergence_result start_cluster(simulator& sim, const scenario_options& opt) {
  return opt.converged_start ? converged_start(sim, opt) : bootstrap(sim, opt);
}

convergence_result run_convergence(const scenario_options& opt) {
  simulator sim(make_sim_config(opt));
  auto r = bootstrap(sim, opt);
  r.view_mismatches = sim.verify_views();
  return r;
}

distribution summarize(std::vector<double> values) {
  distribution d;
  d.count = values.size();
  if (values.empty())
    return d;
  std::sort(values.begin(), values.end());
  const auto k = values.size();
  d.min = values.front();
  d.max = values.back();
  d.median = k % 2 == 1 ? values[k / 2] : (values[k / 2 - 1] + values[k / 2]) / 2;
  // Nearest rank: the smallest value with at least 90% of the sample at or below it.
  const auto rank = static_cast<std::size_t>(std::ceil(0.9 * static_cast<double>(k)));
  d.p90 = values[std::max<std::size_t>(rank, 1) - 1];
  return d;
}

std::vector<convergence_result> run_convergence_seeds(const scenario_options& opt,
                                                      const std::vector<std::uint64_t>& seeds) {
  std::vector<convergence_result> out;
  out.reserve(seeds.size());
  for (auto seed : seeds) {
    auto o = opt;
    o.seed = seed;
    out.push_back(run_convergence(o));
  }
  return out;
}

detection_result run_detection(const scenario_options& opt) {
  detection_result r;
  simulator sim(make_sim_config(opt));
  const auto boot = bootstrap(sim, opt);
  r.bootstrap = boot;
  r.converged = boot.converged;
  if (!boot.converged)
    return r;

  const auto k = std::max<std::size_t>(1, std::min(opt.seeds, opt.n));
  std::uniform_int_distribution<node_id> pick(static_cast<node_id>(k % opt.n),
                                              static_cast<node_id>(opt.n - 1));
  const node_id victim = pick(sim.rng());

  struct state {
    std::optional<time_point> first_suspect, first_dead, all_dead;
    std::uint64_t false_deaths = 0;
    bool active = false;
  };
  auto st = std::make_shared<state>();
  sim.add_observer([&sim, st, victim](node_id, const member_event& e, time_point now) {
    if (!st->active)
      return;
    auto s = sim.find_name(e.subject.name);
    if (!s)
      return;
    if (*s != victim) {
      if (e.kind == member_event_kind::failed && sim.is_running(*s))
        ++st->false_deaths;
      return;
    }
    if (e.kind == member_event_kind::suspected && !st->first_suspect)
      st->first_suspect = now;
    if (e.kind == member_event_kind::failed) {
      if (!st->first_dead)
        st->first_dead = now;
      if (!st->all_dead && sim.all_see(victim, member_state::dead))
        st->all_dead = now;
    }
  });

  cost_meter meter(sim);
  const auto t_kill = sim.now();
  st->active = true;
  sim.kill(victim);
  sim.run_until([&] { return st->all_dead.has_value(); }, t_kill + opt.phase_deadline,
                opt.check_every);
  r.detected = st->all_dead.has_value();
  if (st->first_suspect)
    r.first_suspect_seconds = seconds(*st->first_suspect - t_kill);
  if (st->first_dead)
    r.first_dead_seconds = seconds(*st->first_dead - t_kill);
  if (st->all_dead) {
    r.all_dead_seconds = seconds(*st->all_dead - t_kill);
    r.rounds = r.all_dead_seconds / seconds(opt.swim.probe_interval);
  }
  r.false_deaths = st->false_deaths;
  r.cost = meter.finish();
  return r;
}

false_positive_result run_false_positives(const scenario_options& opt,
                                          const false_positive_options& fp) {
  false_positive_result r;
  simulator sim(make_sim_config(opt));
  const auto boot = bootstrap(sim, opt);
  r.converged = boot.converged;
  if (!boot.converged)
    return r;
  const auto n = opt.n;

  struct state {
    bool active = false;
    std::vector<bool> sick;
    std::vector<bool> suspected;
    std::vector<bool> dead;
    std::uint64_t suspect_events = 0;
    std::uint64_t healthy_suspect_events = 0;
    std::uint64_t death_events = 0;
    std::uint64_t pauses = 0;
  };
  auto st = std::make_shared<state>();
  st->sick.assign(n, false);
  st->suspected.assign(n, false);
  st->dead.assign(n, false);

  if (fp.kind != disturbance::loss) {
    auto count = static_cast<std::size_t>(std::ceil(fp.paused_fraction * static_cast<double>(n)));
    count = std::clamp<std::size_t>(count, 1, n);
    std::vector<node_id> ids(n);
    std::iota(ids.begin(), ids.end(), node_id{0});
    std::shuffle(ids.begin(), ids.end(), sim.rng());
    for (std::size_t i = 0; i < count; ++i)
      st->sick[ids[i]] = true;
    r.sick_nodes = count;
  }

  sim.add_observer([&sim, st](node_id, const member_event& e, time_point) {
    if (!st->active)
      return;
    auto s = sim.find_name(e.subject.name);
    if (!s)
      return;
    if (e.kind == member_event_kind::suspected) {
      ++st->suspect_events;
      st->suspected[*s] = true;
      if (!st->sick[*s])
        ++st->healthy_suspect_events;
    } else if (e.kind == member_event_kind::failed && sim.is_running(*s)) {
      ++st->death_events;
      st->dead[*s] = true;
    }
  });

  const auto c0 = sim.core_stats_total();
  std::uint64_t sick0 = 0;
  for (node_id id = 0; id < n; ++id)
    if (st->sick[id])
      sick0 += sim.core(id).stats().suspicions;
  cost_meter meter(sim);
  const auto t_start = sim.now();
  const auto t_end = t_start + fp.window;
  st->active = true;

  if (fp.kind == disturbance::loss) {
    sim.set_loss(fp.loss);
    sim.at(t_end, [&sim] { sim.set_loss(0.0); });
  } else {
    // Each sick node stalls (or is slow) for an episode, then runs normally for a random gap,
    // until the window ends.
    struct pauser {
      simulator& sim;
      const false_positive_options& fp;
      std::shared_ptr<state> st;
      time_point end;
      void schedule(node_id id, time_point t) {
        if (t >= end)
          return;
        sim.at(t, [this, id] {
          const bool stall = fp.kind == disturbance::pauses;
          const auto len = stall ? fp.pause : fp.slow_episode;
          if (stall)
            sim.pause(id, len);
          else
            sim.slow(id, fp.slow_extra, len);
          ++st->pauses;
          schedule(id, sim.now() + len + uniform(sim.rng(), fp.gap_min, fp.gap_max));
        });
      }
    };
    // Every action it schedules runs before t_end, while `p` is alive.
    auto p = std::make_unique<pauser>(pauser{sim, fp, st, t_end});
    for (node_id id = 0; id < n; ++id)
      if (st->sick[id])
        p->schedule(id, t_start + uniform(sim.rng(), 0s, fp.gap_max));
    sim.run_until(t_end);
  }
  sim.run_until(t_end);
  r.cost = meter.finish();

  auto settled = sim.run_until([&sim] { return sim.all_see_running_alive(); },
                               sim.now() + fp.settle, opt.check_every);
  r.settled = settled.has_value();
  if (settled)
    r.settle_seconds = seconds(*settled - t_end);

  const auto c1 = sim.core_stats_total();
  r.suspicions_raised = c1.suspicions - c0.suspicions;
  for (node_id id = 0; id < n; ++id)
    if (st->sick[id])
      r.raised_by_sick += sim.core(id).stats().suspicions;
  r.raised_by_sick -= sick0;
  r.refutations = c1.refutations - c0.refutations;
  r.suspect_events = st->suspect_events;
  r.healthy_suspect_events = st->healthy_suspect_events;
  r.false_death_events = st->death_events;
  r.pauses = st->pauses;
  for (std::size_t i = 0; i < n; ++i) {
    r.suspected_members += st->suspected[i] ? 1 : 0;
    r.healthy_suspected += (st->suspected[i] && !st->sick[i]) ? 1 : 0;
    r.falsely_dead += st->dead[i] ? 1 : 0;
  }
  return r;
}

partition_result run_partition(const scenario_options& opt, duration split_for) {
  partition_result r;
  simulator sim(make_sim_config(opt));
  const auto boot = bootstrap(sim, opt);
  r.converged = boot.converged;
  if (!boot.converged)
    return r;
  const auto n = opt.n;
  const auto half = n / 2;

  auto deaths = std::make_shared<std::uint64_t>(0);
  auto active = std::make_shared<bool>(true);
  sim.add_observer([deaths, active](node_id, const member_event& e, time_point) {
    if (*active && e.kind == member_event_kind::failed)
      ++*deaths;
  });

  cost_meter meter(sim);
  std::vector<int> groups(n);
  for (std::size_t i = 0; i < n; ++i)
    groups[i] = i < half ? 0 : 1;
  sim.partition(groups);
  sim.run_for(split_for);
  *active = false;
  r.deaths_during_split = *deaths;
  for (node_id o = 0; o < n; ++o)
    for (node_id s = 0; s < n; ++s) {
      if (groups[o] == groups[s])
        continue;
      ++r.cross_pairs;
      const auto v = sim.seen(o, s);
      r.cross_dead += v == member_state::dead;
      r.cross_suspect += v == member_state::suspect;
    }
  r.split_detected = r.cross_dead + r.cross_suspect == r.cross_pairs;

  const auto t_heal = sim.now();
  sim.heal();
  auto healed = sim.run_until([&sim] { return sim.all_see_running_alive(); },
                              t_heal + opt.phase_deadline, opt.check_every);
  r.healed = healed.has_value();
  if (healed) {
    r.heal_seconds = seconds(*healed - t_heal);
    r.rounds = r.heal_seconds / seconds(opt.swim.probe_interval);
  }
  r.view_mismatches = sim.verify_views();
  r.cost = meter.finish();
  return r;
}

std::size_t heap_in_use() {
  const auto mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

namespace {

/// Heap growth of a core built, joined to `members` members and drained: (after join, after
/// drain). The core is handed to `keep` (so that the caller decides when it dies).
std::pair<std::size_t, std::size_t> measure_one_core(std::size_t members,
                                                     const gossip::swim_config& swim,
                                                     std::uint64_t seed,
                                                     std::unique_ptr<gossip::membership>& keep) {
  const auto now = time_point{} + std::chrono::hours(24);
  const auto before = heap_in_use();
  auto core = std::make_unique<gossip::membership>(node_name(0), node_address(0), gossip::tag_map{},
                                                   swim, seed, now);
  {
    gossip::push_pull pp;
    pp.sender = node_name(1);
    pp.sender_address = node_address(1);
    pp.members.reserve(members);
    for (std::size_t i = 1; i <= members; ++i) {
      gossip::member_update u;
      u.state = member_state::alive;
      u.name = node_name(static_cast<node_id>(i));
      u.address = node_address(static_cast<node_id>(i));
      pp.members.push_back(std::move(u));
    }
    auto fx = core->on_push_pull_response(pp, now);
  }
  const auto joined = heap_in_use();
  // Gossip rounds drain the queue (the datagrams are dropped: there is no network).
  auto t = now;
  for (int i = 0; i < 100000 && core->pending_broadcasts() > 0; ++i) {
    t = std::max(core->next_deadline(), t + 1ms);
    auto fx = core->on_tick(t);
  }
  const auto after = heap_in_use();
  keep = std::move(core);
  return {joined > before ? joined - before : 0, after > before ? after - before : 0};
}

} // namespace

memory_probe measure_core_memory(std::size_t members, const gossip::swim_config& swim) {
  memory_probe p;
  p.members = members;
  // Both cores share one interning pool, as a simulator's cores do; made before the first
  // measure, so the first core pays for the pool's table and the strings.
  auto shared = swim;
  if (!shared.cards)
    shared.cards = std::make_shared<gossip::card_pool>();
  std::unique_ptr<gossip::membership> first, second;
  std::tie(p.bytes_after_join, p.bytes_total) = measure_one_core(members, shared, 1, first);
  std::tie(p.next_bytes_after_join, p.next_bytes_total) =
      measure_one_core(members, shared, 2, second);
  const auto per = [members](std::size_t bytes) {
    return members ? static_cast<double>(bytes) / static_cast<double>(members) : 0.0;
  };
  p.bytes_per_member = per(p.bytes_total);
  p.next_bytes_per_member = per(p.next_bytes_total);
  return p;
}

} // namespace starling::sim
