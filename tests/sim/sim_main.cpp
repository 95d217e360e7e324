// starling-sim: runs the membership scenarios on simulated clusters and prints markdown
// tables (virtual times, counters, and the wall time of each run).
//
//   starling-sim --sizes 100,1000 --seed 1 [--scenarios convergence,detection,loss,pauses,
//                slow,partition,memory] [--window 120] [--no-swim] [--flood BYTES]
//                [--real-codec] [--seeds 1-10]
//
// --seeds LIST (ranges and commas: 1-10, 1,4,7, 1-5,9): the convergence scenario runs once
// per seed and size, and the report gives a row per run plus min, median, p90 and max over
// the seeds (one lucky seed hid a long tail once: issue 15). The other scenarios still run
// with --seed.
//
// --flood BYTES: every node runs an extension that always has payloads of BYTES bytes and
// fills every byte the budget rule gives it (tests/sim/scenarios.hpp, flood_extension).
// --real-codec: every datagram and push-pull is encoded and decoded by the real wire codec
// with an agent's limits (sim_config::real_codec); byte counts are then encoded sizes.
// --converged-start: the routing scenario starts from converged membership (every node
// knows all n alive, tests/sim/scenarios.hpp converged_start) instead of n joins through
// the seeds; the membership scenarios ignore it (their subject is the bootstrap).
// --partition-share F: the routing scenario's partition cuts off the last F of the nodes
// (default 0.5, two halves); the change is written on node 0, on the near side.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/routing_scenarios.hpp"
#include "tests/sim/scenarios.hpp"

namespace {

using namespace starling::sim;
using namespace std::chrono_literals;

struct args {
  std::vector<std::size_t> sizes{100};
  std::uint64_t seed = 1;
  std::vector<std::string> scenarios{"convergence", "detection", "loss",  "pauses",
                                     "slow",        "partition", "memory"};
  double window_s = 120;
  bool swim_too = true; // false-positive scenarios also with lifeguard off
  std::size_t flood_bytes = 0;
  bool real_codec = false; // every message through the real wire codec and its limits
  /// --seeds: the convergence scenario over these seeds (empty: once, with `seed`).
  std::vector<std::uint64_t> seeds;
  /// The routing scenario: loss of its lossy change, length of its partition.
  double routing_loss = 0.10;
  double partition_s = 10;
  double partition_share = 0.5; // --partition-share: the far side's share of the nodes
  bool routing_steady = true;   // --no-steady skips the routing steady-state window
  bool converged_start = false; // --converged-start: no bootstrap before the routing scenario
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty())
      out.push_back(item);
  return out;
}

/// "1-10", "1,4,7" or "1-5,9" -> the seeds in that order. Throws on a malformed item.
std::vector<std::uint64_t> parse_seeds(const std::string& s) {
  std::vector<std::uint64_t> out;
  for (const auto& item : split(s)) {
    const auto dash = item.find('-');
    if (dash == std::string::npos) {
      out.push_back(std::stoull(item));
      continue;
    }
    const auto lo = std::stoull(item.substr(0, dash));
    const auto hi = std::stoull(item.substr(dash + 1));
    if (hi < lo || hi - lo >= 100000)
      throw std::invalid_argument("bad seed range");
    for (auto v = lo; v <= hi; ++v)
      out.push_back(v);
  }
  return out;
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(
      stderr,
      "starling-sim: %s\nusage: starling-sim [--sizes N,N...] [--seed S] "
      "[--scenarios convergence,detection,loss,pauses,slow,partition,memory] "
      "[--window SECONDS] [--no-swim] [--flood BYTES] [--real-codec] [--seeds LIST]\n"
      "  routing scenarios: --scenarios routing,routing-memory [--routing-loss 0.1] "
      "[--partition-for SECONDS] [--partition-share F] [--no-steady] [--converged-start]; the "
      "routing scenario runs "
      "over --seeds when given; --no-steady skips its steady-state window (0 in its columns); "
      "--converged-start starts it from converged membership instead of n joins\n"
      "  --seeds LIST  convergence over several seeds (1-10, 1,4,7, 1-5,9): a row per "
      "run, then min / median / p90 / max per size\n",
      msg);
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    try {
      if (k == "--sizes") {
        a.sizes.clear();
        for (auto& s : split(value()))
          a.sizes.push_back(std::stoul(s));
      } else if (k == "--seed") {
        a.seed = std::stoull(value());
      } else if (k == "--seeds") {
        a.seeds = parse_seeds(value());
        if (a.seeds.empty())
          usage("--seeds is empty");
      } else if (k == "--scenarios") {
        a.scenarios = split(value());
      } else if (k == "--window") {
        a.window_s = std::stod(value());
      } else if (k == "--flood") {
        a.flood_bytes = std::stoul(value());
      } else if (k == "--routing-loss") {
        a.routing_loss = std::stod(value());
      } else if (k == "--partition-for") {
        a.partition_s = std::stod(value());
      } else if (k == "--partition-share") {
        a.partition_share = std::stod(value());
        if (!(a.partition_share > 0 && a.partition_share < 1))
          usage("--partition-share must be between 0 and 1 (exclusive)");
      } else if (k == "--real-codec") {
        a.real_codec = true;
      } else if (k == "--no-steady") {
        a.routing_steady = false;
      } else if (k == "--converged-start") {
        a.converged_start = true;
      } else if (k == "--no-swim") {
        a.swim_too = false;
      } else if (k == "--help" || k == "-h") {
        usage("help");
      } else {
        usage(("unknown option " + k).c_str());
      }
    } catch (const std::exception&) {
      usage(("bad value for " + k).c_str());
    }
  }
  if (a.sizes.empty())
    usage("--sizes is empty");
  return a;
}

bool wants(const args& a, const std::string& s) {
  for (auto& x : a.scenarios)
    if (x == s)
      return true;
  return false;
}

double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

std::string yes(bool b) { return b ? "yes" : "**no**"; }

} // namespace

double ms(starling::gossip::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

void print_config(const scenario_options& o) {
  const auto& c = o.swim;
  std::printf("swim_config (defaults): probe_interval %.0f ms, probe_timeout %.0f ms, "
              "gossip_interval %.0f ms, gossip_fanout %u, indirect_checks %u, retransmit_mult "
              "%u, suspicion_mult %u, suspicion_max_mult %u, awareness_max %u, "
              "push_pull_interval %.0f s, gossip_to_dead %.0f s, max_datagram %zu.\n",
              ms(c.probe_interval), ms(c.probe_timeout), ms(c.gossip_interval), c.gossip_fanout,
              c.indirect_checks, c.retransmit_mult, c.suspicion_mult, c.suspicion_max_mult,
              c.awareness_max, ms(c.push_pull_interval) / 1000, ms(c.gossip_to_dead) / 1000,
              c.max_datagram);
  std::printf("network: one-way latency %.1f ms + uniform [0, %.1f] ms; %zu seeds; starts "
              "staggered over %.0f s; condition checks every %.0f ms.\n",
              ms(o.latency_base), ms(o.latency_jitter), o.seeds, ms(o.stagger) / 1000,
              ms(o.check_every));
  if (o.converged_start)
    std::printf("start of the routing scenario: converged membership (--converged-start): every "
                "node starts knowing all n members alive, at a random time within one probe "
                "interval; no joins.\n\n");
  else
    std::printf("start of the routing scenario: bootstrap (n joins through the seeds).\n\n");
}

/// A value of a run that did not converge: prints as "inf" and sorts last.
constexpr double not_converged = HUGE_VAL;

/// The convergence scenario over a.seeds for each size: a row per run, then the
/// distribution over the seeds per size.
void print_convergence_over_seeds(const args& a, const scenario_options& base) {
  struct summary {
    std::size_t n;
    std::size_t converged;
    distribution p99, all, push_pulls, packets, mib, pp_mib;
    double wall;
  };
  std::vector<summary> sums;
  std::printf(
      "## Convergence over %zu seeds (n nodes start, join via seeds; until all see n "
      "alive)\n\n"
      "| n | seed | converged | 99%% of nodes s | s after last start | push-pulls | "
      "push-pull MiB | datagrams | MiB | wall s |\n|---|---|---|---|---|---|---|---|---|---|\n",
      a.seeds.size());
  std::fflush(stdout);
  for (auto n : a.sizes) {
    std::vector<double> p99, all, pps, packets, mib, pp_mib;
    std::size_t converged = 0;
    double wall = 0;
    for (auto seed : a.seeds) {
      auto o = base;
      o.n = n;
      const auto r = run_convergence_seeds(o, {seed}).front();
      converged += r.converged ? 1 : 0;
      p99.push_back(r.p99_seconds_after_last_start > 0 || r.converged
                        ? r.p99_seconds_after_last_start
                        : not_converged);
      all.push_back(r.converged ? r.seconds_after_last_start : not_converged);
      pps.push_back(static_cast<double>(r.cost.push_pulls));
      packets.push_back(static_cast<double>(r.cost.packets));
      mib.push_back(static_cast<double>(r.cost.bytes) / (1024.0 * 1024.0));
      pp_mib.push_back(static_cast<double>(r.cost.push_pull_bytes) / (1024.0 * 1024.0));
      wall += r.cost.wall_seconds;
      std::printf("| %zu | %llu | %s | %.2f | %.2f | %llu | %.1f | %llu | %.1f | %.1f |\n", n,
                  static_cast<unsigned long long>(seed), yes(r.converged).c_str(), p99.back(),
                  all.back(), static_cast<unsigned long long>(r.cost.push_pulls), pp_mib.back(),
                  static_cast<unsigned long long>(r.cost.packets), mib.back(), r.cost.wall_seconds);
      std::fflush(stdout);
    }
    sums.push_back(summary{n, converged, summarize(p99), summarize(all), summarize(pps),
                           summarize(packets), summarize(mib), summarize(pp_mib), wall});
  }
  std::printf("\nOver the seeds (median of an even count: mean of the two middle runs; p90: "
              "nearest rank; inf: not converged within the deadline):\n\n"
              "| n | seeds | converged | 99%% of nodes s: min / median / p90 / max | s after last "
              "start: min / median / p90 / max | max / median | push-pulls median | push-pull "
              "MiB median | datagrams median | MiB median | wall s (all seeds) "
              "|\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& m : sums) {
    const double ratio = m.all.median > 0 ? m.all.max / m.all.median : 0;
    std::printf("| %zu | %zu | %zu | %.2f / %.2f / %.2f / %.2f | %.2f / %.2f / %.2f / %.2f | "
                "%.2f | %.0f | %.1f | %.0f | %.1f | %.1f |\n",
                m.n, m.all.count, m.converged, m.p99.min, m.p99.median, m.p99.p90, m.p99.max,
                m.all.min, m.all.median, m.all.p90, m.all.max, ratio, m.push_pulls.median,
                m.pp_mib.median, m.packets.median, m.mib.median, m.wall);
  }
  std::printf("\n");
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  const auto a = parse(argc, argv);
  std::printf("# starling-sim\n\ncommand:");
  for (int i = 0; i < argc; ++i)
    std::printf(" %s", argv[i]);
  std::printf("\nseed: %llu\n", static_cast<unsigned long long>(a.seed));
  if (!a.seeds.empty())
    std::printf("convergence seeds: %zu (%llu..%llu as listed)\n", a.seeds.size(),
                static_cast<unsigned long long>(a.seeds.front()),
                static_cast<unsigned long long>(a.seeds.back()));
  scenario_options base;
  base.seed = a.seed;
  base.flood_bytes = a.flood_bytes;
  base.real_codec = a.real_codec;
  base.converged_start = a.converged_start;
  print_config(base);
  if (a.real_codec)
    std::printf("codec: every message encoded and decoded by gossip/codec with an agent's "
                "limits.\n\n");
  if (a.flood_bytes > 0)
    std::printf("extension: every node floods payloads of %zu bytes into every datagram "
                "(extension_share %zu bytes).\n\n",
                a.flood_bytes, base.swim.extension_share);
  std::fflush(stdout);

  // Detection starts with the same bootstrap as the convergence scenario (same options,
  // same seed, so the same run): when both are wanted, one run per size gives both tables.
  std::vector<detection_result> detections;
  std::vector<double> detection_walls;
  if (wants(a, "detection")) {
    for (auto n : a.sizes) {
      auto o = base;
      o.n = n;
      const auto w0 = std::chrono::steady_clock::now();
      detections.push_back(run_detection(o));
      detection_walls.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
    }
  }

  if (wants(a, "convergence") && !a.seeds.empty())
    print_convergence_over_seeds(a, base);

  if (wants(a, "convergence") && a.seeds.empty()) {
    std::printf("## Convergence (n nodes start, join via seeds; until all see n alive)\n\n"
                "| n | converged | 99%% of nodes s | s after last start | rounds | s from first "
                "start | datagrams | MiB | push-pulls | push-pull MiB | false deaths | wall s |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    for (std::size_t i = 0; i < a.sizes.size(); ++i) {
      const auto n = a.sizes[i];
      auto o = base;
      o.n = n;
      const auto r = detections.empty() ? run_convergence(o) : detections[i].bootstrap;
      std::printf("| %zu | %s | %.2f | %.2f | %.1f | %.2f | %llu | %.1f | %llu | %.1f | %llu | "
                  "%.1f |\n",
                  n, yes(r.converged).c_str(), r.p99_seconds_after_last_start,
                  r.seconds_after_last_start, r.rounds, r.seconds_after_first_start,
                  static_cast<unsigned long long>(r.cost.packets), mib(r.cost.bytes),
                  static_cast<unsigned long long>(r.cost.push_pulls), mib(r.cost.push_pull_bytes),
                  static_cast<unsigned long long>(r.false_deaths), r.cost.wall_seconds);
      std::fflush(stdout);
    }
    std::printf("\n");
  }

  if (wants(a, "detection")) {
    std::printf("## Detection (one node of a converged cluster killed)\n\n"
                "| n | detected | first suspicion s | first dead s | all dead s | rounds | "
                "false deaths | datagrams | wall s |\n"
                "|---|---|---|---|---|---|---|---|---|\n");
    for (std::size_t i = 0; i < a.sizes.size(); ++i) {
      const auto& r = detections[i];
      std::printf("| %zu | %s | %.2f | %.2f | %.2f | %.1f | %llu | %llu | %.1f |\n", a.sizes[i],
                  yes(r.converged && r.detected).c_str(), r.first_suspect_seconds,
                  r.first_dead_seconds, r.all_dead_seconds, r.rounds,
                  static_cast<unsigned long long>(r.false_deaths),
                  static_cast<unsigned long long>(r.cost.packets), detection_walls[i]);
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  for (const char* kind : {"loss", "pauses", "slow"}) {
    if (!wants(a, kind))
      continue;
    false_positive_options fp;
    const std::string k = kind;
    fp.kind =
        k == "loss" ? disturbance::loss : (k == "pauses" ? disturbance::pauses : disturbance::slow);
    fp.window = std::chrono::duration_cast<starling::gossip::duration>(
        std::chrono::duration<double>(a.window_s));
    if (fp.kind == disturbance::loss)
      std::printf("## False positives: %.0f%% uniform datagram loss for %.0f s\n\n", fp.loss * 100,
                  a.window_s);
    else if (fp.kind == disturbance::slow)
      std::printf("## False positives: %.0f%% of nodes handle input %.0f ms late for %.0f s "
                  "episodes (gaps uniform %.0f-%.0f s; timers on time) for %.0f s\n\n",
                  fp.paused_fraction * 100, ms(fp.slow_extra), ms(fp.slow_episode) / 1000,
                  ms(fp.gap_min) / 1000, ms(fp.gap_max) / 1000, a.window_s);
    else
      std::printf("## False positives: %.0f%% of nodes stall %.0f s at a time (gaps uniform "
                  "%.0f-%.0f s) for %.0f s\n\n",
                  fp.paused_fraction * 100, ms(fp.pause) / 1000, ms(fp.gap_min) / 1000,
                  ms(fp.gap_max) / 1000, a.window_s);
    std::printf("| n | lifeguard | episodes | suspicions raised (by disturbed nodes) | suspect "
                "events | healthy suspect events | members suspected (healthy) | refutations | "
                "false deaths (events / members) | settled s | datagrams | wall s |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    for (auto n : a.sizes) {
      for (bool lg : {true, false}) {
        if (!lg && !a.swim_too)
          continue;
        auto o = base;
        o.n = n;
        o.swim.lifeguard = lg;
        const auto w0 = std::chrono::steady_clock::now();
        const auto r = run_false_positives(o, fp);
        const double wall =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
        std::printf("| %zu | %s | %llu | %llu (%llu) | %llu | %llu | %zu (%zu) | %llu | %llu / "
                    "%zu | %s | %llu | %.1f |\n",
                    n, lg ? "on" : "off", static_cast<unsigned long long>(r.pauses),
                    static_cast<unsigned long long>(r.suspicions_raised),
                    static_cast<unsigned long long>(r.raised_by_sick),
                    static_cast<unsigned long long>(r.suspect_events),
                    static_cast<unsigned long long>(r.healthy_suspect_events), r.suspected_members,
                    r.healthy_suspected, static_cast<unsigned long long>(r.refutations),
                    static_cast<unsigned long long>(r.false_death_events), r.falsely_dead,
                    r.settled ? std::to_string(r.settle_seconds).substr(0, 5).c_str() : "**never**",
                    static_cast<unsigned long long>(r.cost.packets), wall);
        std::fflush(stdout);
      }
    }
    std::printf("\n");
  }

  if (wants(a, "partition")) {
    std::printf("## Partition heal (two halves cut for 30 s, then healed)\n\n"
                "| n | cross pairs dead / suspect / all at heal | deaths during split | healed | "
                "s to equal views | rounds | view mismatches | wall s |\n"
                "|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    for (auto n : a.sizes) {
      auto o = base;
      o.n = n;
      const auto w0 = std::chrono::steady_clock::now();
      const auto r = run_partition(o, 30s);
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
      std::printf("| %zu | %zu / %zu / %zu | %llu | %s | %.2f | %.1f | %zu | %.1f |\n", n,
                  r.cross_dead, r.cross_suspect, r.cross_pairs,
                  static_cast<unsigned long long>(r.deaths_during_split), yes(r.healed).c_str(),
                  r.heal_seconds, r.rounds, r.view_mismatches, wall);
      std::fflush(stdout);
    }
    std::printf("\n");
  }

  if (wants(a, "memory")) {
    std::printf("## Memory of one core's member table\n\n"
                "First core of an interning pool (pays for the names too) and a second core "
                "with the same members (the names are shared: what each further core of a "
                "simulated mesh costs). Heap bytes, measured.\n\n"
                "| members | first core after join | first core, queue drained | bytes per "
                "member | next core after join | next core, queue drained | bytes per member | "
                "projected full views at this n (n x next core) |\n"
                "|---|---|---|---|---|---|---|---|\n");
    for (auto n : a.sizes) {
      const auto p = measure_core_memory(n);
      const double projected =
          p.next_bytes_per_member * static_cast<double>(n) * static_cast<double>(n);
      std::printf("| %zu | %zu | %zu | %.0f | %zu | %zu | %.0f | %.2f GiB |\n", n,
                  p.bytes_after_join, p.bytes_total, p.bytes_per_member, p.next_bytes_after_join,
                  p.next_bytes_total, p.next_bytes_per_member,
                  projected / (1024.0 * 1024.0 * 1024.0));
      std::fflush(stdout);
    }
    std::printf("\n");
  }
  if (wants(a, "routing")) {
    const auto seeds = a.seeds.empty() ? std::vector<std::uint64_t>{a.seed} : a.seeds;
    std::printf("## Routing: one policy change (a split written on node 0)\n\n"
                "Seconds until 99%% / 99.9%% / 100%% of the running nodes applied it: at 0%% "
                "loss, at %.0f%% loss, and from the heal of a %.0f s partition that cut off "
                "the last %.0f%% of the nodes (over that far side). Steady state: bytes each node "
                "sends per second with a converged table "
                "(10 owners x 10 instances, 20 policies), all traffic and routing's part. Real "
                "routing core, codec and spreading; seals are fake (no cryptography) and every "
                "key is known.\n\n"
                "| n | seed | 0%% loss 99%% | 99.9%% | 100%% | %.0f%% loss 99%% | 99.9%% | 100%% | "
                "healed 99%% | 99.9%% | 100%% | steady B/node/s | routing B/node/s | refused | "
                "anti-entropy asks (steady) | wall s |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                a.routing_loss * 100, a.partition_s, a.partition_share * 100, a.routing_loss * 100);
    std::fflush(stdout);
    auto cell = [](const std::optional<double>& v) {
      char buf[32];
      if (v)
        std::snprintf(buf, sizeof buf, "%.2f", *v);
      else
        std::snprintf(buf, sizeof buf, "**no**");
      return std::string{buf};
    };
    for (auto n : a.sizes) {
      std::vector<double> clean999, lossy999, healed100;
      for (auto seed : seeds) {
        auto o = base;
        o.n = n;
        o.seed = seed;
        const auto w0 = std::chrono::steady_clock::now();
        const auto r = run_routing(
            o, a.routing_loss,
            std::chrono::duration_cast<duration>(std::chrono::duration<double>(a.partition_s)),
            a.routing_steady, a.partition_share);
        const double wall =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
        if (!r.bootstrap.converged) {
          std::printf("| %zu | %llu | bootstrap did not converge |\n", n,
                      static_cast<unsigned long long>(seed));
          continue;
        }
        std::printf("| %zu | %llu | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f | "
                    "%llu | %llu (%llu) | %.0f |\n",
                    n, static_cast<unsigned long long>(seed), cell(r.clean.p99).c_str(),
                    cell(r.clean.p999).c_str(), cell(r.clean.p100).c_str(),
                    cell(r.lossy.p99).c_str(), cell(r.lossy.p999).c_str(),
                    cell(r.lossy.p100).c_str(), cell(r.healed.p99).c_str(),
                    cell(r.healed.p999).c_str(), cell(r.healed.p100).c_str(),
                    r.steady_bytes_per_node_second, r.steady_routing_bytes_per_node_second,
                    static_cast<unsigned long long>(r.refused),
                    static_cast<unsigned long long>(r.anti_entropy_asks),
                    static_cast<unsigned long long>(r.steady_anti_entropy_asks), wall);
        std::fflush(stdout);
        if (r.clean.p999)
          clean999.push_back(*r.clean.p999);
        if (r.lossy.p999)
          lossy999.push_back(*r.lossy.p999);
        if (r.healed.p100)
          healed100.push_back(*r.healed.p100);
      }
      if (seeds.size() > 1) {
        const auto c = summarize(clean999), l = summarize(lossy999), h = summarize(healed100);
        std::printf("\nn = %zu over %zu seeds (min / median / p90 / max): 99.9%% at 0%% loss "
                    "%.2f / %.2f / %.2f / %.2f s; 99.9%% at %.0f%% loss %.2f / %.2f / %.2f / "
                    "%.2f s; 100%% after the heal %.2f / %.2f / %.2f / %.2f s\n\n",
                    n, seeds.size(), c.min, c.median, c.p90, c.max, a.routing_loss * 100, l.min,
                    l.median, l.p90, l.max, h.min, h.median, h.p90, h.max);
      }
    }
    std::printf("\n");
  }

  if (wants(a, "routing-memory")) {
    std::printf("## Memory of one routing table\n\nHeap bytes of one table (10 instances per "
                "owner, route policies; seals of real size), its encoded push-pull section "
                "(the digest alone beyond 64 KiB of records), and the answer to a pull of "
                "every range by an empty table (what a joiner fetches).\n\n| instances | "
                "policies | table bytes | bytes per record | section bytes | full pull answer "
                "bytes |\n|---|---|---|---|---|---|\n");
    for (auto [inst, pol] : {std::pair<std::size_t, std::size_t>{1'000, 100},
                             std::pair<std::size_t, std::size_t>{10'000, 1'000}}) {
      const auto m = measure_routing_memory(inst, pol);
      std::printf("| %zu | %zu | %zu | %.0f | %zu | %zu |\n", m.instances, m.policies,
                  m.table_bytes,
                  static_cast<double>(m.table_bytes) / static_cast<double>(inst / 10 + pol),
                  m.section_bytes, m.pull_answer_bytes);
    }
    std::printf("\n");
  }
  return 0;
}
