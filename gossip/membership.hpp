// SWIM membership with Lifeguard, as a pure state machine. No I/O, clock reads or threads:
// every input carries `now`, every output is a returned value, randomness comes from a
// seeded generator. The membership actor (actors/) and the simulator (tests/sim/) drive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "gossip/extension.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

using namespace std::chrono_literals;

class card_pool;

/// Largest step above the incarnation this node knows for a member (its own for itself, the
/// row's, a reaped member's remembered one, 0 for a stranger) that an update may take; one
/// that jumps further is refused (membership_stats::incarnation_refused). A member raises
/// its incarnation by one per refutation, tags change or leave, and a restart resumes from
/// the persisted one: 2^32 such steps are centuries of churn, so only a forged update jumps
/// that far, and a forged one can no longer push an incarnation to the top of the range in
/// one datagram (where its refutation, max + 1, wrapped to 0 and lost to the accusation for
/// good). A stranger's first incarnation is therefore at most 2^32.
inline constexpr std::uint64_t max_incarnation_jump = std::uint64_t{1} << 32;

/// Highest incarnation accepted from the network, whatever this node knows: a refutation
/// (theirs + 1) and every local increment stay far from wrapping. Local increments saturate
/// at the top of the range as a last resort.
inline constexpr std::uint64_t max_incarnation = std::uint64_t{1} << 62;

/// Tunables of the protocol. Defaults are chosen for a LAN (see docs/membership.md).
struct swim_config {
  /// Time between two probes of this node (before Lifeguard scaling).
  duration probe_interval = 500ms;
  /// How long a direct ping waits for an ack before indirect probes start.
  duration probe_timeout = 250ms;
  /// Time between two gossip rounds (broadcasts sent to `gossip_fanout` random members).
  duration gossip_interval = 200ms;
  /// Time between two gossip rounds while an extension has payloads waiting (and no faster
  /// than gossip_interval otherwise): the routing table's changes spread in a fraction of a
  /// second (docs/routing.md, "Spreading"). A payload is sent its transmit limit times and
  /// then dropped, so the fast rounds last a few rounds after each change.
  duration extension_gossip_interval = 50ms;
  /// Members a gossip round sends to.
  unsigned gossip_fanout = 3;
  /// Dead members still gossiped to for this long (so a wrongly killed node can refute).
  duration gossip_to_dead = 30s;
  /// Members asked to probe indirectly (k of SWIM).
  unsigned indirect_checks = 3;
  /// An update causes datagrams until it was sent retransmit_mult * ceil(log10(n + 1)) times
  /// (the retransmit limit); then it only rides in the spare room of datagrams that go out
  /// anyway, until it was sent twice the limit (docs/membership.md, "Convergence over seeds").
  unsigned retransmit_mult = 4;
  /// Minimum suspicion timeout = suspicion_mult * max(1, log10(n)) * probe_interval.
  unsigned suspicion_mult = 4;
  /// Maximum suspicion timeout = suspicion_max_mult * minimum (Lifeguard dogpile).
  unsigned suspicion_max_mult = 6;
  /// Lifeguard local health awareness ceiling: intervals scale by (1 + score), score <= max.
  unsigned awareness_max = 8;
  /// Enables Lifeguard (local health awareness, nacks, dogpile suspicion, buddy system).
  /// Off gives plain SWIM with a fixed suspicion timeout (the minimum above), for comparison.
  bool lifeguard = true;
  /// Time between two periodic push-pull exchanges with a random member (0 = never).
  /// Scaled up for big meshes like memberlist: interval * max(1, ceil(log2(n / 32)) + 1).
  /// A push-pull that brought members this node did not know (a join's answer, say) brings
  /// the next one forward to retransmit_limit gossip intervals later, then at doubling
  /// delays while they keep teaching it members (the catch-up, docs/membership.md).
  duration push_pull_interval = 30s;
  /// Dead and left members are removed from the table this long after the transition.
  duration reap_after = 15min;
  /// A reaped member's last incarnation is remembered this long, so that a stale
  /// full-state sync from a third party cannot revive it.
  duration reaped_memory = 6h;
  /// Upper bound on the number of remembered reaped members (oldest forgotten first).
  std::size_t reaped_memory_max = 10000;
  /// Upper bound on the number of banned names (oldest ban lifted first). See ban().
  std::size_t banned_max = 65536;
  /// Datagrams are packed to at most this many bytes (encoded size bound, frame included).
  std::size_t max_datagram = 1400;
  /// Bytes of each datagram that registered extensions may fill before member updates take
  /// their pick (see docs/membership.md, "Extension points"): member updates then fill
  /// what is left, and extensions get whatever the updates leave after that. Space the
  /// extensions do not use goes to member updates. Without extensions it changes nothing.
  std::size_t extension_share = 256;
  /// Where the core interns member names, addresses and tags (gossip/member_card.hpp).
  /// Null (the default): the core makes its own pool. Cores given the same pool share one
  /// copy of each string: the simulator gives one to all its cores. Thread-safe, so cores on
  /// different threads may share it too.
  std::shared_ptr<card_pool> cards;
};

/// Counters the core keeps; exported as metrics by the actor.
struct membership_stats {
  std::uint64_t probes = 0;          ///< direct pings sent as prober
  std::uint64_t probe_failures = 0;  ///< probes that ended with no ack at all
  std::uint64_t indirect_probes = 0; ///< ping_req sent
  std::uint64_t nacks_received = 0;
  std::uint64_t suspicions = 0;      ///< suspect states this node raised itself
  std::uint64_t refutations = 0;     ///< times this node refuted a suspicion of itself
  std::uint64_t updates_applied = 0; ///< gossip updates that changed the table
  std::uint64_t updates_ignored = 0; ///< stale or invalid updates
  std::uint64_t packets_sent = 0;
  std::uint64_t packets_received = 0;
  std::uint64_t push_pulls = 0; ///< full-state merges (both directions)
  /// Datagrams dropped and push-pulls refused or ignored because their sender is banned.
  std::uint64_t banned_refused = 0;
  /// Updates (gossip or push-pull entries) refused because their incarnation is implausible:
  /// more than max_incarnation_jump above what this node knows of their subject, or above
  /// max_incarnation. Not counted in updates_ignored.
  std::uint64_t incarnation_refused = 0;
  /// Extension payloads and push-pull sections of a kind no registered extension has:
  /// dropped (per-extension counters are in membership::extensions()).
  std::uint64_t extensions_unknown = 0;
};

/// Everything an input produced: datagrams to send, push-pull exchanges to start,
/// and member events to report. Returned by every input.
/// A request an extension asked to send (extension_effects::requests), resolved to the
/// member's address.
struct outgoing_request {
  extension_kind kind = 0;
  /// The member asked (its name: with TLS, the certificate the answer must come from).
  std::string member;
  std::string address;
  std::string body;
};

struct effects {
  std::vector<outgoing> packets;
  /// Addresses to start a push-pull exchange with (answer goes to on_push_pull_response).
  std::vector<std::string> push_pull_to;
  std::vector<member_event> events;
  /// Extension requests to send (their answers go to on_extension_answer).
  std::vector<outgoing_request> extension_requests;

  /// Appends `other` to this.
  void append(effects&& other);
};

/// Answer to a peer-initiated push-pull: our state, plus what merging theirs produced.
struct push_pull_reply {
  push_pull state;
  effects fx;
  /// Set when the request is refused (its sender is banned): nothing was merged, `state`
  /// is empty, and the owner answers the peer with this error (gossip.peer_refused, whose
  /// context becomes the error frame's reason) instead of `state`.
  caf::error refusal;
};

/// SWIM membership of one node. Pure: no I/O, clock reads or threads. Not thread-safe:
/// one owner (the membership actor, or the simulator) calls it.
class membership {
public:
  /// Creates the local node `name`, reachable at `address` ("host:port"), alive with
  /// incarnation `incarnation`. `seed` seeds the RNG (probe order, targets, jitter).
  membership(std::string name, std::string address, tag_map tags, swim_config cfg,
             std::uint64_t seed, time_point now, std::uint64_t incarnation = 0);
  ~membership();
  membership(membership&&) noexcept;
  membership& operator=(membership&&) noexcept;

  // -- inputs ------------------------------------------------------------------------------

  /// Runs every timer due at `now`: probe rounds, probe and indirect timeouts, suspicion
  /// timeouts, gossip rounds, periodic push-pull, reaping.
  [[nodiscard]] effects on_tick(time_point now);

  /// An extension has fresh payloads (a local change to spread) or asks (push-pulls,
  /// requests) waiting in extension::take_effects: the asks are carried out, and the next
  /// gossip round runs now rather than at its time, and then every extension_gossip_interval
  /// while payloads wait. Returns what the timers due now send, as on_tick, and the asks.
  [[nodiscard]] effects on_extension_news(time_point now);

  /// Handles one decoded datagram.
  [[nodiscard]] effects on_packet(const packet& msg, time_point now);

  /// A peer started a push-pull with us: merge its state and return ours.
  [[nodiscard]] push_pull_reply on_push_pull_request(const push_pull& remote, time_point now);

  /// Our push-pull (join or periodic) was answered: merge the peer's state.
  [[nodiscard]] effects on_push_pull_response(const push_pull& remote, time_point now);

  /// Member `member` answered a request of the extension of `kind` (effects::
  /// extension_requests): hands it to that extension's on_answer. An unknown kind is counted
  /// in extensions_unknown; an answer from a banned member is ignored.
  [[nodiscard]] effects on_extension_answer(extension_kind kind, const std::string& member,
                                            std::string_view bytes, time_point now);

  /// Member `member` sent a request to the extension of `kind`: its on_request answer, or
  /// nothing (refused: unknown kind, banned member, or the extension declined).
  [[nodiscard]] std::optional<std::string> on_extension_request(extension_kind kind,
                                                                const std::string& member,
                                                                std::string_view bytes,
                                                                time_point now);

  /// Our full state, to open a push-pull exchange (`join` marks the first one).
  [[nodiscard]] push_pull make_push_pull(bool join) const;

  /// Graceful leave: marks this node left and queues the news for every member.
  /// The caller keeps feeding ticks for a short propagation delay, then stops.
  [[nodiscard]] effects leave(time_point now);

  /// Publishes new tags for this node (alive with a higher incarnation).
  [[nodiscard]] effects set_tags(tag_map tags, time_point now);

  /// Bans the member `name` (its certificate was revoked; the membership actor calls this
  /// for the identity actor). A live member is declared dead now by this node: a `failed`
  /// event, and the dead update queued first for every member. From then on nothing it
  /// sends is heard and nobody can make it alive or suspect here again, at any incarnation:
  /// its datagrams are dropped unanswered, its push-pulls refused (push_pull_reply::refusal)
  /// and their answers ignored, updates making it alive ignored; it is never probed (not
  /// even for a ping_req), gossiped to, asked to probe or picked for push-pull. It is
  /// reaped like any dead member and stays banned. An unknown name is banned too, so it
  /// can never join; a dead or left member keeps its state. Idempotent.
  /// Banning this node itself is refused (no effects): a node learns of its own revocation
  /// from the identity side (its certificate, refused handshakes), not from its member
  /// table, where its own row is never dead (it refutes its death; leave() is the way out).
  /// The ban list is local (never sent) and holds at most swim_config::banned_max names,
  /// the oldest dropped first.
  [[nodiscard]] effects ban(const std::string& name, time_point now);

  // -- extensions (gossip/extension.hpp, docs/extending-gossip.md) ------------------------

  /// Registers `ext` under `kind`, named `name` (in extensions(), for stats and logs): from
  /// now on it piggybacks payloads on this core's datagrams, receives the peers' payloads
  /// of that kind, and adds a section to and merges sections of push-pulls. The core shares
  /// ownership. Errors (gossip.invalid_field): kind 0, an empty name, a null `ext`, a kind
  /// already registered, or more than max_extension_sections extensions.
  [[nodiscard]] caf::error add_extension(extension_kind kind, std::string name,
                                         std::shared_ptr<extension> ext);

  /// Unregisters the extension of `kind`; its payloads and sections count as unknown from
  /// then on. Returns false if none was registered.
  bool remove_extension(extension_kind kind);

  /// The registered extensions with their counters, by kind.
  [[nodiscard]] std::vector<extension_info> extensions() const;

  /// Lifts the ban of `name`, if any (the node was admitted again with a new certificate).
  /// Changes no state: the member rejoins as any dead member does, with an alive above the
  /// incarnation it died at (once reaped, also by talking to us directly).
  void unban(const std::string& name);

  // -- views -------------------------------------------------------------------------------

  /// The earliest time at which on_tick has work to do.
  [[nodiscard]] time_point next_deadline() const;

  /// Every known member, this node included, sorted by name.
  [[nodiscard]] std::vector<member> members() const;

  /// The member `name`, if known.
  [[nodiscard]] std::optional<member> find(const std::string& name) const;

  /// True while `name` is banned (see ban()).
  [[nodiscard]] bool banned(const std::string& name) const;

  /// Number of members in `s` (this node included when it matches).
  [[nodiscard]] std::size_t count(member_state s) const;

  /// This node's view of itself.
  [[nodiscard]] const member& self() const;

  /// Lifeguard local health score: 0 is healthy, up to awareness_max.
  [[nodiscard]] unsigned health_score() const;

  /// Updates still queued for piggybacking.
  [[nodiscard]] std::size_t pending_broadcasts() const;

  [[nodiscard]] const membership_stats& stats() const;
  [[nodiscard]] const swim_config& config() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Upper bound of the encoded size of `u` inside a Packet (protobuf field overhead
/// included). The core packs datagrams with it; the codec test checks it is a bound.
[[nodiscard]] std::size_t encoded_size_bound(const member_update& u) noexcept;

/// Upper bound of the encoded size of `p` without its updates and extension payloads (frame
/// byte included).
[[nodiscard]] std::size_t encoded_header_bound(const packet& p) noexcept;

} // namespace starling::gossip
