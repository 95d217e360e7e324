// Plain value types of the gossip membership protocol, shared by the pure core
// (membership.hpp), the wire codec (codec.hpp), the network transport and the simulator.
// No I/O, no CAF, no protobuf here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace starling::gossip {

/// Time as seen by the core. Only the type is taken from steady_clock: the core never
/// reads a clock; every input carries `now`.
using time_point = std::chrono::steady_clock::time_point;
/// Durations in the core (nanosecond resolution).
using duration = std::chrono::steady_clock::duration;

/// The state of a member as one node believes it.
enum class member_state : std::uint8_t {
  alive = 1,
  suspect = 2,
  dead = 3,
  left = 4,
};

/// Stable lower-case name of a state ("alive", "suspect", "dead", "left"): used in JSON.
std::string_view to_string(member_state s) noexcept;

/// Free-form metadata a member publishes about itself (role, zone, version...).
using tag_map = std::map<std::string, std::string>;

/// One membership fact. Spread piggybacked on probes and carried in push-pull full state.
/// `address` and `tags` are meaningful for alive (and carried for the others in push-pull);
/// `from` names who declared a suspect/dead state.
struct member_update {
  member_state state = member_state::alive;
  std::string name;
  std::string address;
  std::uint64_t incarnation = 0;
  tag_map tags;
  std::string from;

  friend bool operator==(const member_update&, const member_update&) = default;
};

/// Names an extension of the membership core on the wire (docs/extending-gossip.md): the kind
/// of its piggybacked payloads and of its push-pull section. 0 is invalid. Kinds are assigned
/// in docs/extending-gossip.md ("Kinds"); a node ignores (and counts) kinds it does not run.
using extension_kind = std::uint32_t;

/// Wire bounds of extension data that every encoder keeps and every decoder enforces (the
/// defaults of codec_limits; the membership core never packs more, so a peer never refuses
/// a datagram or push-pull because of a local extension).
/// Piggybacked payloads in one datagram.
inline constexpr std::size_t max_extension_payloads = 64;
/// Bytes of one piggybacked payload (a datagram holds 1,400 bytes at most anyway).
inline constexpr std::size_t max_extension_payload_bytes = 1024;
/// Sections in one push-pull (at most one per kind).
inline constexpr std::size_t max_extension_sections = 64;
/// Bytes of one push-pull section.
inline constexpr std::size_t max_extension_section_bytes = std::size_t{8} << 20;

/// One extension's opaque bytes: a payload piggybacked on a datagram, or a section of a
/// push-pull. The membership core never looks inside `bytes`.
struct extension_payload {
  extension_kind kind = 0;
  std::string bytes;

  friend bool operator==(const extension_payload&, const extension_payload&) = default;
};

/// Kind of a probe-protocol packet.
enum class packet_kind : std::uint8_t {
  ping = 1,     ///< direct probe; answered with ack
  ping_req = 2, ///< ask the receiver to probe `target` at `target_address` for us
  ack = 3,      ///< answer to ping (or forwarded answer of an indirect probe)
  nack = 4,     ///< Lifeguard: indirect prober got no answer from the target in time
};

/// One UDP datagram's content: a probe-protocol message plus piggybacked gossip.
struct packet {
  packet_kind kind = packet_kind::ping;
  /// Sequence number chosen by whoever expects the ack; echoed in ack/nack.
  std::uint32_t seq = 0;
  /// Name and receive address of the sender (lets a node answer a stranger).
  std::string sender;
  std::string sender_address;
  /// ping: the name the sender believes lives at the destination (a ping to a reused
  /// address is ignored); ping_req: the member to probe.
  std::string target;
  /// ping_req: where to probe `target`.
  std::string target_address;
  /// Piggybacked membership updates, newest and least-sent first.
  std::vector<member_update> updates;
  /// Piggybacked extension payloads (at most max_extension_payloads), after the updates.
  std::vector<extension_payload> extensions;

  friend bool operator==(const packet&, const packet&) = default;
};

/// A full-state anti-entropy exchange (TCP). Sent by the initiator and answered in kind.
struct push_pull {
  std::string sender;
  std::string sender_address;
  /// True when the sender is joining (its first exchange with this mesh).
  bool join = false;
  /// Every member the sender knows, itself included, dead and left ones too (until reaped).
  std::vector<member_update> members;
  /// Extension sections: at most one per kind, at most max_extension_sections.
  std::vector<extension_payload> extensions;

  friend bool operator==(const push_pull&, const push_pull&) = default;
};

/// A datagram the core wants sent to `address` ("host:port").
struct outgoing {
  std::string address;
  packet message;
};

/// What happened to a member, as reported to the outside (logs, admin, routing, metrics).
enum class member_event_kind : std::uint8_t {
  joined = 1,  ///< first seen alive, or alive again after dead/left
  updated = 2, ///< alive with new address or tags
  suspected = 3,
  recovered = 4, ///< suspect -> alive (refuted)
  failed = 5,    ///< declared dead
  left = 6,      ///< left gracefully
  reaped = 7,    ///< a dead or left member forgotten after `reap_after`
};

/// Stable lower-case name of an event kind ("joined", "failed", ...).
std::string_view to_string(member_event_kind k) noexcept;

/// A member as one node sees it right now.
struct member {
  std::string name;
  std::string address;
  member_state state = member_state::alive;
  std::uint64_t incarnation = 0;
  tag_map tags;
  /// When this node last saw the state change (core time).
  time_point since{};

  friend bool operator==(const member&, const member&) = default;
};

/// A change to one member, as decided by the core.
struct member_event {
  member_event_kind kind;
  member subject;
};

} // namespace starling::gossip
