// Routing-table scenarios on the simulator (issue 16): how fast one policy change reaches
// the nodes of a converged cluster (at 0% loss, at some loss, and after a partition heals),
// what the table costs a node in bytes per second at steady state, and a table's memory.
// Every node runs the real routing core, codec and spreading (gossip/routing_gossip.hpp) as
// a membership extension; what the simulator skips is cryptography: seals are the fake
// keyed hashes of tests/support/routing_fakes.hpp, and every key is known (no chain
// fetches), so the times are those of the gossip alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "tests/sim/scenarios.hpp"

namespace starling::sim {

/// When a change reached 99%, 99.9% and 100% of the running nodes (seconds after it was
/// written, or after the heal); unset when it did not within the deadline.
struct spread_times {
  std::optional<double> p99;
  std::optional<double> p999;
  std::optional<double> p100;
  std::size_t reached = 0;
  std::size_t nodes = 0;
};

/// One run of the routing scenario.
struct routing_result {
  convergence_result bootstrap;
  /// A split written on node 0 at 0% loss.
  spread_times clean;
  /// Another, written with every datagram lost with probability `loss`.
  spread_times lossy;
  /// Another, written on node 0 while the cluster is cut in two for `partition_for` (the far
  /// side holds the last `far_share` of the nodes); times counted from the heal, over the
  /// nodes of the far side.
  spread_times healed;
  /// Steady state, table converged and unchanging (`steady_owners` records of 10 instances
  /// and `steady_policies` policies on every node): bytes every node sent per second
  /// (datagrams and both directions of push-pulls), and of that the routing sections and
  /// payloads.
  double steady_bytes_per_node_second = 0;
  double steady_routing_bytes_per_node_second = 0;
  std::size_t steady_owners = 0;
  std::size_t steady_policies = 0;
  /// Records the tables refused (0 expected: every seal is valid).
  std::uint64_t refused = 0;
  /// Push-pulls asked because notes differed: in the whole run, and in the steady window
  /// (0 expected there: the tables are equal).
  std::uint64_t anti_entropy_asks = 0;
  std::uint64_t steady_anti_entropy_asks = 0;
};

/// Runs the routing scenario with `opt` (its size, seed, protocol), `loss` for the lossy
/// change and a partition of `partition_for` that cuts off the last `far_share` of the nodes
/// (0.5: two halves; node 0, the writer, is always on the near side). Without `steady` the
/// steady-state window (95 s of virtual time) is skipped and its figures stay 0: at 10,000 nodes it
/// is most of the run's wall time. Each phase's times go to stderr as soon as it ends.
routing_result run_routing(const scenario_options& opt, double loss, duration partition_for,
                           bool steady = true, double far_share = 0.5);

/// Heap bytes of one routing table holding `instances` instances (10 per owner) and
/// `policies` policies, and of its push-pull section (encoded).
struct routing_memory {
  std::size_t instances = 0;
  std::size_t policies = 0;
  std::size_t table_bytes = 0;
  std::size_t section_bytes = 0;
  /// The answer to a pull of every range with nothing held.
  std::size_t pull_answer_bytes = 0;
};
routing_memory measure_routing_memory(std::size_t instances, std::size_t policies);

} // namespace starling::sim
