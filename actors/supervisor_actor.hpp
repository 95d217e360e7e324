// The node supervisor: spawns, monitors and restarts the agent's child actors (membership,
// identity, admin; later routing, proxy controller), lists each in the agent's directory
// (actors/directory.hpp) where the others find it, runs the admin port, announces
// readiness (agent.json + the ready line), and runs the graceful leave and shutdown. It
// forwards nothing: children talk to each other directly.
//
// Protocol (lifecycle only):
//   (leave_atom)          leave the mesh gracefully, then shut down with exit code 0
//   (stop_atom)           shut down now (second signal)
//   from the membership actor: (bound_atom, address, port), (joined_atom, ok, message),
//   (peers_atom, alive peers, incarnation), (failed_atom, message); from the identity
//   actor: (failed_atom, message)
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/config.hpp"

namespace starling::actors {

class keyring_sealer;
struct node_identity;

/// What the supervisor leaves behind for run_agent: the process exit code.
struct agent_outcome {
  /// exit_ok unless something failed; set once, before the supervisor quits.
  std::atomic<int> exit_code{0};
};

/// Everything the supervisor starts from.
struct supervisor_params {
  agent_config cfg;
  /// Incarnation the membership actor starts with.
  std::uint64_t incarnation = 0;
  /// Shared with run_agent, which reads it after the supervisor is down. Never null.
  std::shared_ptr<agent_outcome> outcome;
  /// The gossip keyring, shared with every gossip transport this agent starts (also after
  /// a membership restart); null: plain gossip.
  std::shared_ptr<keyring_sealer> sealer;
  /// The node's certificate and trust; null: no identity (plain TCP between nodes).
  std::shared_ptr<const node_identity> id;
};

/// Spawns the supervisor, which immediately spawns its children.
[[nodiscard]] caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_params params);

} // namespace starling::actors
