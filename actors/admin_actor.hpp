// The admin actor: what operators' tools talk to. The admin port (admin_server.hpp,
// docs/decisions/0007) hands it each request as (admin_atom, args) -> std::string, found in
// the directory. Thin: parses the command line, asks the actor whose job the command is
// (found in the directory at that moment), and renders `starling stats` from the counters
// it is given.
//
// Protocol: (admin_atom, std::vector<std::string> args) -> std::string (the command's
// answer) or an error (errc::bad_request: a usage error, exit code 2 in the CLI;
// errc::unreachable: the actor that serves the command is restarting).
#pragma once

#include <memory>

#include <caf/fwd.hpp>

namespace starling::proxy {
class dataplane;
}

namespace starling::actors {

class directory;
class keyring_sealer;
class transport_drop_counters;
struct admin_server_stats;

/// What the admin actor answers from.
struct admin_params {
  /// Where the membership, identity and supervisor actors are found. Never null.
  std::shared_ptr<const directory> dir;
  /// The gossip keyring (local `keyring` commands, the sealer's counters); null: plain
  /// gossip.
  std::shared_ptr<keyring_sealer> sealer;
  /// The counters every gossip transport of this agent adds to. Never null.
  std::shared_ptr<const transport_drop_counters> transport_counters;
  /// The admin port's counters; null: no admin port (the group reads null).
  std::shared_ptr<const admin_server_stats> admin_stats;
  /// "host:port" of the metrics/status server, shown as `metrics_address` in stats (empty:
  /// none, shown as null).
  std::string metrics_address;
  /// The data plane (its counters are the stats' `proxy` group, its inbound listener the
  /// `inbound_address`); null: none (both null).
  std::shared_ptr<const proxy::dataplane> proxy;
};

/// Spawns an admin actor.
[[nodiscard]] caf::actor spawn_admin_actor(caf::actor_system& sys, admin_params params);

} // namespace starling::actors
