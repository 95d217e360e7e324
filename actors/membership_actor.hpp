// The membership actor: a thin shell around gossip::membership (the pure SWIM core) and
// the gossip network (gossip_io, the Asio transport in the agent). It feeds the core with
// packets, push-pull exchanges and ticks, sends what the core returns, reports events
// (log, event-log file, admin), joins through seeds and leaves gracefully.
//
// Protocol (all local to the process):
//   handles (members_atom) -> std::string   members JSON view (docs/operations.md)
//           (events_atom) -> std::string    recent events JSON
//           (forward_admission_msg)          forwards to the named alive member over TLS
//           (alive_atom) -> (names, addresses, issuers)   alive members (atoms.hpp)
//           (leave_atom) -> left_atom        once the leave news has spread (or ~2 s)
//           (ban_atom, std::string name)     a member whose certificate was revoked (from
//                                            the identity actor): gossip::membership::ban
//   sends to `parent`:
//           (bound_atom, std::string advertise_address, uint16_t port)  once, at start
//           (failed_atom, std::string message)    start failed; the actor then exits
//           (joined_atom, bool ok, std::string message)  join outcome when it had seeds
//           (peers_atom, std::vector<std::string> alive_addresses, uint64_t incarnation)
//                                                  after membership changes (restart seeds)
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "actors/admission_msgs.hpp"
#include "actors/gossip_io.hpp"
#include "gossip/membership.hpp"
#include "gossip/types.hpp"

namespace starling::actors {

/// The tag issuer nodes publish (value "true"): where the identity actor finds the issuers
/// to exchange the token ledger with. Only a hint: a peer's certificate says whether it is
/// an issuer.
inline constexpr std::string_view issuer_tag = "starling.issuer";
/// The member tag naming where a node's data-plane inbound listener is: "PORT" (on the
/// node's gossip host) or "HOST:PORT".
inline constexpr std::string_view inbound_tag = "starling.inbound";

/// An extension of the membership core to register at start (gossip/extension.hpp,
/// docs/extending-gossip.md). Its hooks run inside the membership actor, on its thread: an
/// extension that serves another actor talks to it by messages only.
struct membership_extension {
  gossip::extension_kind kind = 0;
  std::string name;
  std::shared_ptr<gossip::extension> ext;
  /// The request type its requests (gossip::extension_effects::requests) travel as on the
  /// gossip TCP port; 0: it sends none (any it asks are dropped).
  gossip::request_type request_type = 0;
  /// How that type is carried and served (docs/extending-gossip.md, "Adding a request
  /// type"); registered with the transport at start. Its handler runs on the transport
  /// thread and answers from wherever the extension's state lives.
  std::optional<gossip::request_spec> request_spec;
};

/// Whether one member is live (alive or suspect) now, its host, and where its data plane's
/// inbound listener is.
struct member_liveness {
  std::string name;
  std::string host;
  bool live = false;
  /// "host:port" of its inbound listener (from its inbound_tag); empty: it runs none, or
  /// its tag is malformed.
  std::string inbound = {};
};

/// "host:port" of a member's inbound listener from its inbound_tag's value and its gossip
/// host: "PORT" means that host, "HOST:PORT" is taken as it is. Empty for no tag or a
/// malformed one (a port that is not 1 to 65535).
[[nodiscard]] std::string inbound_of(const gossip::tag_map& tags, const std::string& host);

/// A report of who is live: every live member (`full`), or the members whose liveness or
/// host changed since the last report.
struct member_changes {
  bool full = false;
  std::vector<member_liveness> members;
};

/// Everything a membership actor starts from.
struct membership_params {
  /// Member name of this node.
  std::string name;
  gossip::tag_map tags;
  gossip::swim_config swim;
  /// Seeds to join through ("host:port"); empty starts a new mesh alone.
  std::vector<std::string> seeds;
  /// True: failing to join within join_timeout is reported as (joined_atom, false, msg).
  /// False (rejoin after a restart): the node gives up quietly and stays alone.
  bool join_required = false;
  /// Bound on joining.
  std::chrono::milliseconds join_timeout{std::chrono::seconds{60}};
  /// First retry delay of the join backoff (doubling, with jitter, up to join_backoff_max).
  std::chrono::milliseconds join_backoff{200};
  std::chrono::milliseconds join_backoff_max{5000};
  /// Bound on a graceful leave: stop waiting for the news to drain after this long.
  std::chrono::milliseconds leave_timeout{2000};
  /// Starting incarnation of this node.
  std::uint64_t incarnation = 0;
  /// Event log file (JSON lines, appended); empty disables it.
  std::filesystem::path event_log;
  /// Data directory where the incarnation is persisted; empty disables persistence.
  std::filesystem::path data_dir;
  /// Seeds the core's RNG and the join jitter.
  std::uint64_t rng_seed = 0;
  /// True when the transport authenticates push-pulls (TLS: it checks the peer's
  /// certificate against the current revocations and binds the push-pull sender to the
  /// certificate's node name). Then a push-pull from a banned member proves it was
  /// admitted again with a new, unrevoked certificate, and lifts its ban. False (plain
  /// mode, the default): no such proof exists, and a banned member's push-pull is refused.
  /// Set by the supervisor when it configures TLS.
  bool authenticated_push_pull = false;
  /// Admission requests arriving on the gossip port go here (the supervisor routes them
  /// to the identity actor); unset: refused.
  admission_handler on_admission;
  /// Starts the network side. Required.
  gossip_io_factory make_io;
  /// Extensions registered with the core before anything is sent or received. One that the
  /// core refuses (kind 0 or taken, no name) fails the start like a bind failure.
  std::vector<membership_extension> extensions;
  /// Told who is live (alive or suspect, this node included) and their hosts: all of them at
  /// start, then the members each batch of member events is about (work in proportion to
  /// the change, not to the mesh). Called on the membership actor's thread (the supervisor
  /// hands it on to the routing actor). Unset: nobody is told.
  std::function<void(member_changes)> on_members;
};

/// Spawns a membership actor reporting to `parent` (may be invalid in tests).
[[nodiscard]] caf::actor spawn_membership_actor(caf::actor_system& sys, caf::actor parent,
                                                membership_params params);

} // namespace starling::actors
