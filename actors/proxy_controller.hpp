// The proxy controller (issue 17; DESIGN.md, "Data plane = its own I/O threads"): turns
// what the actors know into the data plane's configuration. It watches the routing actor's
// snapshots and hears who is live from the membership actor (each member's inbound
// listener, from its `starling.inbound` tag), and hands the data plane an immutable
// proxy::dataplane_config whenever either changes; the data plane swaps it in atomically.
//
// The supervisor owns the data plane, not this actor: the I/O threads keep serving on the
// last configuration while the controller, the routing actor or the membership actor
// restart, stall or crash. A restarted controller starts from the relay's last list of
// inbound listeners and the routing actor's current snapshot, and re-watches a routing
// actor that restarted.
//
// Protocol (local to the process):
//   handles (snapshot_atom, snapshot_ptr)   a routing snapshot (the watch)
//           (member_changes)                who is live, and their inbound listeners
// The data plane's own counters (stats' `proxy` group) are read from it directly.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

namespace starling::proxy {
class dataplane;
}

namespace starling::actors {

class directory;
class routing_relay;

/// Everything a proxy controller starts from.
struct proxy_controller_params {
  /// This node's member name (its own inbound is never used: local instances are reached
  /// directly).
  std::string name;
  /// The running data plane (never null; owned by the supervisor, outlives the actor).
  std::shared_ptr<proxy::dataplane> dataplane;
  /// Who is live and their inbound listeners, as last reported (never null).
  std::shared_ptr<const routing_relay> relay;
  /// Where the routing actor of the moment is found (never null).
  std::shared_ptr<const directory> dir;
  /// How often it looks for a routing actor to watch while there is none.
  std::chrono::milliseconds rewatch = std::chrono::milliseconds{200};
};

/// Spawns a proxy controller.
[[nodiscard]] caf::actor spawn_proxy_controller(caf::actor_system& sys,
                                                proxy_controller_params params);

} // namespace starling::actors
