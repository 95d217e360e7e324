// The routing actor (issue 16): owns this node's copy of the routing table (the CRDT of
// gossip/routing_table.hpp) and everything around it:
//   - spreads it through the membership core by the relay extension (actors/routing_relay),
//     checking every peer record's signature here, off the membership actor's thread;
//   - registers this node's services (config file, `register`, <data-dir>/services.json),
//     signs them with the node key, and runs their health checks (gossip/health.hpp and
//     the prober of gossip/discovery), republishing on every health change;
//   - learns who is alive from the membership actor: a dead node's instances leave the
//     routable set at once and come back when it rejoins;
//   - publishes an immutable snapshot after changes (coalesced) to its watchers and to the
//     DNS responder;
//   - answers the admin's routing commands: views (`services`, `routes`) and writes
//     (`register`, `deregister`, and the policies, signed with the issuer key).
//
// Protocol (local to the process):
//   handles (routing_input)                         a peer's payload or section (relay)
//           (member_changes)                        who is live (alive or suspect) and
//                                                   their hosts: everyone, or what changed
//           (routing_atom, args) -> std::string     an admin command
//           (stats_atom) -> (counter_list, std::string dns_address)
//           (watch_atom, caf::actor)                sends (snapshot_atom, snapshot_ptr) now
//                                                   and after every change, until it exits
//           (watch_atom, caf::actor, applied_atom)  the same for an applier (the proxy
//                                                   controller), which answers
//                                                   (applied_atom) -> applied_atom: this
//                                                   node's own record goes to its peers only
//                                                   once the appliers answered (or
//                                                   `apply_wait` passed)
//   sends to `parent`: (failed_atom, message) when its start fails (a services.json that
//   cannot be read).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include "actors/service_spec.hpp"
#include "gossip/routing_snapshot.hpp"

namespace starling::gossip::discovery {
class dns_server;
}

namespace starling::actors {

class directory;
class routing_relay;
struct node_identity;

/// Everything a routing actor starts from.
struct routing_params {
  /// This node's member name.
  std::string name;
  /// Where services.json lives; empty: registrations are not kept.
  std::filesystem::path data_dir;
  /// The config file's services.
  std::vector<service_spec> config_services;
  /// The node's identity; null: no certificates (the open trust, unsigned records).
  std::shared_ptr<const node_identity> id;
  /// The membership extension that carries the table (never null).
  std::shared_ptr<routing_relay> relay;
  /// The DNS responder to feed snapshots to; null: DNS disabled.
  std::shared_ptr<gossip::discovery::dns_server> dns;
  /// The data plane's outbound listeners by service ("host:port"), shown in `routes`;
  /// unset: no data plane (every `outbound` is null). Called on the actor's thread.
  std::function<std::map<std::string, std::string>()> outbound;
  /// Makes the data plane refuse (true) or take again (false) new inbound work
  /// (`starling drain`); unset: no data plane (drain is refused).
  std::function<void(bool)> set_draining;
  /// Time between withdrawing this node's instances and refusing new inbound work: peers
  /// learn of the withdrawal first, so none of their requests fails.
  std::chrono::milliseconds drain_grace = std::chrono::seconds{2};
  /// Stamps further ahead of this node's clock are refused.
  std::chrono::milliseconds max_clock_skew = std::chrono::minutes{10};
  /// Largest table a push-pull section carries whole (gossip::routing_gossip; the
  /// supervisor passes agent_config::inline_section_max).
  std::size_t inline_section_max = std::size_t{64} << 10;
  /// Housekeeping period: section refresh, garbage collection, record refresh.
  std::chrono::milliseconds tick = std::chrono::seconds{1};
  /// Delay that coalesces changes into one snapshot and one section.
  std::chrono::milliseconds coalesce = std::chrono::milliseconds{50};
  /// How long this node's own new record waits for the appliers (its data plane) before
  /// it goes to the peers anyway (a stalled or restarting proxy controller).
  std::chrono::milliseconds apply_wait = std::chrono::seconds{1};
  /// Seeds the health checks' jitter.
  std::uint64_t rng_seed = 0;
};

/// Spawns the routing actor, reporting to `parent` (may be invalid in tests).
[[nodiscard]] caf::actor spawn_routing_actor(caf::actor_system& sys, caf::actor parent,
                                             routing_params params);

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::gossip::snapshot_ptr)
