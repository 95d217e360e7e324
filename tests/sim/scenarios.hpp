// Membership scenarios on the simulator, shared by tests/sim/membership_sim_test.cpp and the
// `starling-sim` report tool. Each scenario builds its own simulator from a seed, so a result
// is a pure function of its options. Times are virtual unless named wall_*.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/membership.hpp"
#include "tests/sim/simulator.hpp"

namespace starling::sim {

/// Options common to every scenario.
struct scenario_options {
  /// Cluster size.
  std::size_t n = 100;
  /// Seed of the simulator (and so of every core).
  std::uint64_t seed = 1;
  /// Protocol configuration (defaults unless a scenario says otherwise).
  gossip::swim_config swim;
  /// Network latency: base + uniform jitter, one way.
  duration latency_base = 500us;
  duration latency_jitter = 500us;
  /// Seed nodes (ids 0..seeds-1); the others join through them.
  std::size_t seeds = 3;
  /// Nodes start at uniformly random times within this window.
  duration stagger = 5s;
  /// Give-up bound of every phase that waits for a condition.
  duration phase_deadline = 600s;
  /// Resolution of condition checks.
  duration check_every = 10ms;
  /// Prints the simulator seed to stderr.
  bool print_seed = false;
  /// > 0: every node runs a flooding extension (flood_extension) with payloads of this many
  /// bytes, to measure what a busy extension costs the membership protocol.
  std::size_t flood_bytes = 0;
  /// Every datagram and push-pull goes through the real wire codec and its limits
  /// (sim_config::real_codec); bytes are then the encoded sizes.
  bool real_codec = false;
  /// Scenarios that start from a converged cluster (the routing scenario) start it with
  /// converged_start() instead of bootstrap(): no joins. See converged_start().
  bool converged_start = false;
};

/// An extension that always has payloads: it fills whatever space the core offers with
/// payloads of `bytes` bytes (kind flood_extension::kind), and counts what it receives.
/// The worst case for the budget rule (docs/membership.md, "Extension points").
class flood_extension : public gossip::extension {
public:
  static constexpr gossip::extension_kind kind = 0xF100D;

  explicit flood_extension(std::size_t bytes) : bytes_(bytes) {}

  [[nodiscard]] std::vector<std::string>
  take_payloads(const gossip::piggyback_request& req) override;
  [[nodiscard]] bool has_payloads() const override { return true; }
  [[nodiscard]] gossip::extension_effects
  on_payload(std::string_view bytes, const std::string& sender, time_point now) override;

  /// Payloads and their bytes received from peers.
  std::uint64_t received = 0;
  std::uint64_t received_bytes = 0;

private:
  std::size_t bytes_;
};

/// Packets, bytes and wall time spent by a scenario (or a phase of it).
struct run_cost {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t push_pulls = 0;
  std::uint64_t push_pull_bytes = 0;
  std::uint64_t events = 0;
  double wall_seconds = 0;
};

/// Scenario 1: n nodes start (staggered) and join; until everyone sees all n alive.
struct convergence_result {
  bool converged = false;
  /// From the last node's start to the converged view.
  double seconds_after_last_start = 0;
  /// From the first node's start (the whole bootstrap).
  double seconds_after_first_start = 0;
  /// seconds_after_last_start / probe_interval.
  double rounds = 0;
  /// From the last start until 99% of the nodes see all n alive (the epidemic part; the tail
  /// is repaired by periodic push-pull).
  double p99_seconds_after_last_start = 0;
  /// Event-derived views that disagree with the cores' own tables at the end (0 expected).
  std::size_t view_mismatches = 0;
  /// False deaths during bootstrap (failed events about running nodes).
  std::uint64_t false_deaths = 0;
  run_cost cost;
};

/// Starts a cluster per `opt` in `sim` (which must have no nodes yet) and runs until it
/// converged or the deadline. Used by every scenario as its first phase.
convergence_result bootstrap(simulator& sim, const scenario_options& opt);

/// Starts a cluster per `opt` in `sim` (which must have no nodes yet) already converged,
/// without the join storm of bootstrap(): each node starts with a core that knows all n
/// members alive at incarnation 0 (simulator::start_converged), at a uniformly random time
/// within one probe interval (so that no node probes one not started yet, and their timers
/// are not in step), and the cluster then runs until every node made the catch-up push-pull
/// its start armed (retransmit_limit gossip intervals) and one second more. `converged` says
/// every node then sees all n alive and nothing else; seconds_after_last_start is that
/// settling time, p99 is 0 (there is no epidemic to time), false_deaths counts failed events
/// as in bootstrap(). Used by scenarios whose subject is not the membership bootstrap.
convergence_result converged_start(simulator& sim, const scenario_options& opt);

/// bootstrap() or converged_start(), as opt.converged_start says.
convergence_result start_cluster(simulator& sim, const scenario_options& opt);

/// A simulator configured from `opt`.
sim_config make_sim_config(const scenario_options& opt);

convergence_result run_convergence(const scenario_options& opt);

/// Min, median, 90th percentile and max of a sample (over seeds). The median of an even
/// count is the mean of the two middle values; p90 is the nearest rank (the
/// ceil(0.9 k)-th smallest of k values), so with 10 seeds it is the 9th. Empty sample: all 0.
struct distribution {
  std::size_t count = 0;
  double min = 0;
  double median = 0;
  double p90 = 0;
  double max = 0;
};

/// The distribution of `values` (in any order).
[[nodiscard]] distribution summarize(std::vector<double> values);

/// The convergence scenario once per seed (`opt.seed` replaced by each), in order.
std::vector<convergence_result> run_convergence_seeds(const scenario_options& opt,
                                                      const std::vector<std::uint64_t>& seeds);

/// Scenario 2: a node of a converged cluster is killed.
struct detection_result {
  bool converged = false;
  bool detected = false; ///< every live node marked it dead before the deadline
  /// From the kill to the first suspicion of the victim (any node).
  double first_suspect_seconds = 0;
  /// From the kill to the first node marking it dead.
  double first_dead_seconds = 0;
  /// From the kill to every live node marking it dead.
  double all_dead_seconds = 0;
  double rounds = 0; ///< all_dead_seconds / probe_interval
  /// Failed events about live nodes after the kill (0 expected).
  std::uint64_t false_deaths = 0;
  run_cost cost; ///< of the detection phase only
  /// The bootstrap phase before the kill: the same as run_convergence() with the same
  /// options (minus view_mismatches, not checked here), so a report can print both from one
  /// run. Bootstrapping 10,000 nodes takes a quarter of an hour.
  convergence_result bootstrap;
};

detection_result run_detection(const scenario_options& opt);

/// What disturbs the cluster in the false-positive scenario.
enum class disturbance : std::uint8_t {
  loss = 1,   ///< uniform datagram loss
  pauses = 2, ///< a subset of nodes stalls repeatedly (frozen: handles nothing)
  slow = 3,   ///< a subset of nodes handles its input late, repeatedly (timers on time)
};

/// Parameters of scenario 3.
struct false_positive_options {
  disturbance kind = disturbance::loss;
  /// Length of the disturbed window.
  duration window = 120s;
  /// Datagram loss probability (kind == loss).
  double loss = 0.10;
  /// Fraction of nodes that stall (kind == pauses), at least one node.
  double paused_fraction = 0.05;
  /// Length of one stall.
  duration pause = 2s;
  /// Gap between two stalls of one node: uniform in [gap_min, gap_max].
  duration gap_min = 3s;
  duration gap_max = 13s;
  /// Length of one slow episode and the input delay during it (kind == slow).
  duration slow_episode = 20s;
  duration slow_extra = 1s;
  /// After the window: time allowed for every view to become all-alive again.
  duration settle = 120s;
};

/// Scenario 3: suspicions and false deaths in a disturbed but fully live cluster.
struct false_positive_result {
  bool converged = false;
  std::size_t sick_nodes = 0;               ///< nodes that stall (pauses)
  std::uint64_t suspicions_raised = 0;      ///< sum of membership_stats::suspicions
  std::uint64_t raised_by_sick = 0;         ///< of those, raised by the disturbed nodes
  std::uint64_t suspect_events = 0;         ///< suspected events in all views
  std::uint64_t healthy_suspect_events = 0; ///< of those, about nodes that never stall
  std::size_t healthy_suspected = 0;        ///< distinct never-stalling nodes ever suspected
  std::size_t suspected_members = 0;        ///< distinct nodes ever suspected
  std::uint64_t refutations = 0;            ///< sum of membership_stats::refutations
  std::uint64_t false_death_events = 0;     ///< failed events (every node is alive)
  std::size_t falsely_dead = 0;             ///< distinct nodes some view marked dead
  std::uint64_t pauses = 0;                 ///< stalls (or slow episodes) injected
  /// All views alive again after the window (within `settle`).
  bool settled = false;
  double settle_seconds = 0;
  run_cost cost; ///< of the disturbed window only
};

false_positive_result run_false_positives(const scenario_options& opt,
                                          const false_positive_options& fp);

/// Scenario 4: the cluster is split in two halves, then healed.
struct partition_result {
  bool converged = false;
  /// At the heal, no node still saw anyone across the cut alive (suspect or dead).
  bool split_detected = false;
  /// (observer, subject) pairs across the cut, and how many were dead / suspect at the heal.
  std::size_t cross_pairs = 0;
  std::size_t cross_dead = 0;
  std::size_t cross_suspect = 0;
  /// Failed events during the split (about nodes across the cut).
  std::uint64_t deaths_during_split = 0;
  /// Views equal (all alive) again after the heal, before the deadline.
  bool healed = false;
  double heal_seconds = 0; ///< from the heal to equal views
  double rounds = 0;
  std::size_t view_mismatches = 0; ///< event views vs cores' tables at the end
  run_cost cost;                   ///< from the split to the end
};

partition_result run_partition(const scenario_options& opt, duration split_for = 30s);

/// Memory held by one core's member table, measured with the allocator's in-use bytes.
/// Names, addresses and tags are interned once per pool (gossip/member_card.hpp) and the two
/// cores measured share one pool, as a simulator's cores do: the first core pays for the
/// strings and every further core only for its own table. Both are measured, the second with
/// a second core holding the same members.
struct memory_probe {
  std::size_t members = 0;
  /// Heap growth of the first core right after a join merge of `members` members (the
  /// broadcast queue then holds an update per member). Interned names included.
  std::size_t bytes_after_join = 0;
  /// Heap growth of the first core once the broadcast queue drained (steady state): the
  /// table itself plus the interned names.
  std::size_t bytes_total = 0;
  double bytes_per_member = 0; ///< bytes_total / members
  /// The same for a second core with the same members, while the first one lives (the
  /// interned names are shared): what each further core of a simulated mesh costs.
  std::size_t next_bytes_after_join = 0;
  std::size_t next_bytes_total = 0;
  double next_bytes_per_member = 0; ///< next_bytes_total / members
};

/// Builds one core, merges a push-pull with `members` alive members into it, then ticks it
/// (its datagrams go nowhere) until its broadcast queue is empty; then a second core the
/// same way while the first is kept.
memory_probe measure_core_memory(std::size_t members, const gossip::swim_config& swim = {});

/// Heap bytes in use right now (glibc mallinfo2).
std::size_t heap_in_use();

} // namespace starling::sim
