// Extension points of the membership core, like memberlist's Delegate: other cores (the
// routing-state CRDT first) register an `extension` on a gossip::membership object to
//   - piggyback bounded payloads on its datagrams (ping, ping_req, ack, nack, gossip rounds),
//     in the space member updates leave, and receive the payloads of peers;
//   - add a section to its push-pull full-state exchanges and merge the peers' sections.
// Pure, like the core: no I/O, no clock reads. An extension is called by the core's owner's
// thread only (the membership actor, or the simulator). docs/extending-gossip.md has a
// worked example; docs/membership.md ("Extension points") the budget rule and the limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/types.hpp"

namespace starling::gossip {

/// What the core asks of a piggyback source for one datagram.
struct piggyback_request {
  /// Bytes the returned payloads may fill: the sum of extension_payload_bound(kind, size) over
  /// them must not exceed it. Payloads beyond it are dropped by the core (and counted in
  /// extension_stats::payloads_refused), never sent: take only what fits.
  std::size_t budget = 0;
  /// Most payloads that may be returned for this datagram (the rest is dropped and counted).
  std::size_t max_count = 0;
  /// Name of the member the datagram goes to (possibly a member we do not know yet).
  std::string_view to;
  /// The state this node holds `to` in: `dead` also for a member it does not know or has
  /// banned. payload_queue counts a transmission only to a member held alive, and gives a
  /// payload once to each live (alive or suspect) member per pass (see its class comment).
  member_state to_state = member_state::alive;
  /// True when this node holds the member so named live (alive or suspect), for a source
  /// that remembers whom it gave a payload to (payload_queue: to tell when every live member
  /// has it, which ends a pass). Valid during the call only; when empty, every member is taken for
  /// live.
  std::function<bool(std::string_view)> is_live;
  /// Kind of the datagram; gossip rounds are acks with seq 0.
  packet_kind kind = packet_kind::ping;
  /// The core's transmit limit for one member update right now:
  /// retransmit_mult * ceil(log10(live members + 1)). A sensible default for "send each
  /// payload N log n times" (payload_queue uses it).
  unsigned retransmit_limit = 1;
  /// Live (alive or suspect) members, this node included.
  std::size_t live_members = 1;
  /// Core time of the input that builds the datagram.
  time_point now{};
  /// Number of the datagram being packed, from 1, growing: the same in both calls for one
  /// datagram, so a source does not hand the same payload twice to it (payload_queue
  /// checks it).
  std::uint64_t datagram = 0;
};

/// A direct request an extension wants sent to one member (e.g. "send me the records of
/// these digest ranges"). The core's owner carries it on the gossip TCP port as the
/// extension's request type (docs/extending-gossip.md, "Adding a request type"); the answer
/// comes back through membership::on_extension_answer.
struct extension_request {
  /// The member (by name) to ask.
  std::string to;
  /// The request body, opaque to the core.
  std::string body;
};

/// What an extension asks of the core after it handled a peer's payload or section.
struct extension_effects {
  /// Members (by name) to start a full push-pull exchange with, e.g. because a piggybacked
  /// digest differs from ours. The core adds each alive or suspect, unbanned member other
  /// than itself to effects::push_pull_to (once per input) and ignores the other names.
  std::vector<std::string> push_pull_with;
  /// Requests to send, each to one member. The core keeps those to an alive or suspect,
  /// unbanned member other than itself (effects::extension_requests) and ignores the
  /// others.
  std::vector<extension_request> requests;
};

/// An extension of the membership core. Every method has a default that does nothing, so an
/// extension overrides only what it uses. Registered with membership::add_extension under
/// one kind; the core calls it from its inputs, on its owner's thread, never concurrently.
/// Untrusted input: `bytes` and `sender` come from the network (sealed with the mesh keyring
/// when one is installed, but any member holding the key can send anything): an extension
/// checks what it receives (signatures, sizes) and never aborts on it.
class extension {
public:
  virtual ~extension();

  /// Piggyback source: payloads (opaque bytes) for one outgoing datagram, in the order they
  /// should be sent, within `req.budget` bytes (extension_payload_bound each) and
  /// `req.max_count` payloads. Called once or twice per datagram (see docs/membership.md,
  /// "Extension points": first for the share reserved to extensions, then for what member
  /// updates left); retransmission and priority are the extension's own policy.
  [[nodiscard]] virtual std::vector<std::string> take_payloads(const piggyback_request& req);

  /// True while the source has payloads waiting: the core then runs its gossip rounds even
  /// when it has no member update to spread. Must be cheap (called every gossip interval).
  [[nodiscard]] virtual bool has_payloads() const;

  /// Piggyback sink: a payload of this extension's kind arrived from member `sender` (its
  /// name as the packet states it; the packet's member updates are already applied).
  [[nodiscard]] virtual extension_effects on_payload(std::string_view bytes,
                                                     const std::string& sender, time_point now);

  /// Push-pull source: this extension's section of a full-state exchange, or nothing.
  /// `join` is true in the joiner's first exchange. At most max_extension_section_bytes: a
  /// longer section is dropped by the core (and counted), never sent. The answer to a
  /// peer's push-pull is built after the peer's sections were merged (on_section), so it
  /// carries the merged state back.
  [[nodiscard]] virtual std::optional<std::string> make_section(bool join);

  /// Push-pull sink: the section of this kind in a peer's push-pull, both on a request (from
  /// the initiator, `join` set when it joins) and on the answer to ours (`join` false).
  /// Called after the peer's member state was merged.
  [[nodiscard]] virtual extension_effects
  on_section(std::string_view bytes, const std::string& sender, bool join, time_point now);

  /// Request server, for an owner that answers on its own thread (the simulator): the answer
  /// to member `sender`'s request `bytes` (extension_effects::requests on its side), or
  /// nothing to refuse it. The agent's extensions answer through a transport handler of
  /// their own instead (the table they serve lives in another actor); the default refuses.
  [[nodiscard]] virtual std::optional<std::string>
  on_request(std::string_view bytes, const std::string& sender, time_point now);

  /// Effects the extension holds outside of its sinks (an extension fed from another
  /// thread, like the agent's relay, queues asks there): collected by
  /// membership::on_extension_news, which the owner calls when told of news.
  [[nodiscard]] virtual extension_effects take_effects();

  /// Request sink: member `sender` answered a request this extension asked for.
  [[nodiscard]] virtual extension_effects on_answer(std::string_view bytes,
                                                    const std::string& sender, time_point now);
};

/// Counters of one registered extension, kept by the core.
struct extension_stats {
  std::uint64_t payloads_sent = 0;      ///< payloads piggybacked on outgoing datagrams
  std::uint64_t payload_bytes_sent = 0; ///< their bytes (payload only)
  std::uint64_t payloads_received = 0;  ///< payloads of this kind handed to on_payload
  /// Payloads the source returned that broke the request (over the budget, the count or
  /// max_extension_payload_bytes): dropped, not sent.
  std::uint64_t payloads_refused = 0;
  std::uint64_t sections_sent = 0;     ///< sections added to outgoing push-pulls
  std::uint64_t sections_received = 0; ///< sections of this kind handed to on_section
  /// Sections over max_extension_section_bytes: dropped, not sent.
  std::uint64_t sections_refused = 0;
  /// Names in extension_effects::push_pull_with that led to an exchange.
  std::uint64_t push_pulls_asked = 0;
  /// Requests in extension_effects::requests handed to the owner to send.
  std::uint64_t requests_asked = 0;
  /// Answers handed to on_answer.
  std::uint64_t answers_received = 0;
};

/// A registered extension as membership::extensions() lists it.
struct extension_info {
  extension_kind kind = 0;
  std::string name;
  extension_stats stats;
};

/// Upper bound of the encoded size of an extension payload of `kind` with `size` bytes inside
/// a Packet (or a section inside a PushPull): what the core charges against a datagram's
/// budget. The codec test checks it is a bound.
/// (Not an overload of encoded_size_bound, which callers pass as a function.)
[[nodiscard]] std::size_t extension_payload_bound(extension_kind kind, std::size_t size) noexcept;

} // namespace starling::gossip
