// Atoms of the agent's actors. At most 10 characters (CAF 0.17). Atoms with equal text are
// the same type, so `leave_atom` here is caf::leave_atom; that is fine.
//
// Admin protocol (local only: the admin port speaks proto/admin.proto, docs/decisions/0007,
// and hands each request to the admin actor it finds in the directory as (admin_atom,
// args)): (admin_atom, std::vector<std::string>) -> std::string, or an error (bad_request
// for usage errors). The admin actor answers ping, stats and local keyring changes
// (actors/keyring_sealer.hpp) itself and asks the others: the membership actor
// (members_atom) / (events_atom) / (stats_atom) -> JSON or counters; the identity actor
// (keyring_atom, op, arg, mesh_atom) -> std::string JSON report of the change pushed to
// every alive member, (token_atom, std::int64_t ttl_seconds, std::int64_t uses) ->
// std::string token, (certs_atom) -> std::string JSON, (revoke_atom, std::string node,
// std::string key) -> std::string revoked key ids (actors/identity_actor.hpp); the
// supervisor (leave_atom).
#pragma once

#include <caf/atom.hpp>

namespace starling::actors {

using admin_atom = caf::atom_constant<caf::atom("admin")>;
using members_atom = caf::atom_constant<caf::atom("members")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using events_atom = caf::atom_constant<caf::atom("events")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using keyring_atom = caf::atom_constant<caf::atom("keyring")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using token_atom = caf::atom_constant<caf::atom("token")>;
using certs_atom = caf::atom_constant<caf::atom("certs")>;
using revoke_atom = caf::atom_constant<caf::atom("revoke")>;
using mesh_atom = caf::atom_constant<caf::atom("mesh")>;

// Identity actor <-> membership actor, through the supervisor (local only).
/// (alive_atom) -> (std::vector<std::string> names, std::vector<std::string> addresses,
///                  std::vector<std::string> issuers): alive members other than this node,
///                  and the names of those tagged as issuers (tag starling.issuer=true).
using alive_atom = caf::atom_constant<caf::atom("alive")>;
/// (live_atom) -> (std::vector<std::string> live, std::vector<std::string> issuers): members
///                 alive or suspect other than this node (names a joiner may not take), and
///                 the alive ones tagged as issuers.
using live_atom = caf::atom_constant<caf::atom("live")>;
/// (ban_atom, std::string name): a member whose certificate was revoked.
using ban_atom = caf::atom_constant<caf::atom("ban")>;

// Identity actor timers (local only).
/// (sync_atom): time for one anti-entropy exchange on the identity channel.
using sync_atom = caf::atom_constant<caf::atom("idsync")>;

// Membership actor <-> supervisor (local only).
using bound_atom = caf::atom_constant<caf::atom("bound")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using joined_atom = caf::atom_constant<caf::atom("joined")>;
using peers_atom = caf::atom_constant<caf::atom("peers")>;
using left_atom = caf::atom_constant<caf::atom("left")>;

// Membership actor timers (local only).
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using retry_atom = caf::atom_constant<caf::atom("jretry")>;
using deadline_atom = caf::atom_constant<caf::atom("jdeadline")>;

// The routing actor (actors/routing_actor.hpp).
/// (routing_atom, std::vector<std::string> args) -> std::string: an admin command of the
/// routing table (services, routes, register, deregister, split, route, resilience, authz).
using routing_atom = caf::atom_constant<caf::atom("routing")>;
/// (watch_atom, caf::actor) subscribes to routing snapshots: (snapshot_atom, snapshot_ptr).
using watch_atom = caf::atom_constant<caf::atom("watch")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
/// (watch_atom, caf::actor, applied_atom) subscribes an applier (the proxy controller): it
/// also answers (applied_atom) -> applied_atom once it applied the snapshots sent before.
using applied_atom = caf::atom_constant<caf::atom("applied")>;
/// Routing actor timers (local only): housekeeping, and the coalesced publication.
using rtick_atom = caf::atom_constant<caf::atom("rtick")>;
using flush_atom = caf::atom_constant<caf::atom("rflush")>;
using hcheck_atom = caf::atom_constant<caf::atom("hcheck")>;
/// (news_atom) to the membership actor: an extension has fresh payloads: gossip now.
using news_atom = caf::atom_constant<caf::atom("news")>;

} // namespace starling::actors
