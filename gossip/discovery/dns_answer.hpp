// Service discovery over DNS, the message half: one query's bytes plus the routing table's
// snapshot in, the reply's bytes out (nghttp2's "does not perform any I/O"). ldns parses and
// builds every message; nothing here writes DNS wire format by hand. dns_server carries the
// bytes on a UDP socket.
//
// Names (case-insensitive; the domain is dns_options::domain, "starling" by default):
//   <service>.service.<domain>        every routable instance of the service
//   <tag>.<service>.service.<domain>  the routable instances carrying the tag (Consul's form)
//   <node>.node.<domain>              the addresses of that node's instances (any health)
// A answers with the IPv4 addresses (distinct), AAAA with the IPv6 ones, SRV with one record
// per routable instance (priority 1, weight = the instance's weight, its port, target
// <node>.node.<domain>.) and the targets' A/AAAA records in the additional section.
//
// Rcodes, decided here (Consul answers much the same):
// - NXDOMAIN, with the domain's SOA in authority: a name under the domain that matches no
//   form, an unknown service, a tag no instance of the service carries, a node no instance
//   names.
// - NOERROR with no answer and the SOA in authority (NODATA): a name that exists but has no
//   record of the asked type: a known service (or tag) with no routable instance, A for a
//   service whose routable instances are all IPv6, ANY, TXT, MX, ... The domain itself and
//   `service.<domain>` / `node.<domain>` exist too (SOA at the apex answers with the SOA).
// - REFUSED: a name outside the domain (this is not a recursive resolver), a class other than
//   IN, an EDNS version other than 0 (answered BADVERS, RFC 6891).
// - NOTIMP: an opcode other than QUERY. FORMERR: bytes that do not parse, or not exactly one
//   question. No reply at all: fewer bytes than a header, or a response (QR set).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gossip/routing_snapshot.hpp"

namespace starling::gossip::discovery {

/// How the responder answers. Checked by dns_server (check_options); dns_answer itself
/// never fails on odd options (an unparsable proxy_address gives no address record).
struct dns_options {
  /// The zone we are authoritative for, without the trailing dot ("starling", or
  /// "mesh.example" for several labels). Matched case-insensitively.
  std::string domain = "starling";
  /// TTL of every record, seconds. 0 (Consul's default): clients ask again each time, so
  /// they follow the routing table as it changes. Also the SOA's negative-caching minimum.
  std::uint32_t ttl = 0;
  /// When set (an IP literal), every service's A/AAAA answer is this one address instead of
  /// the instances' own: the local outbound proxy (issue 17), which balances over the
  /// instances itself. Only A/AAAA of service and tag names change: SRV still lists the
  /// instances, and node names their own addresses.
  std::optional<std::string> proxy_address;
  /// Largest reply, bytes, to a query without EDNS0 (RFC 1035's 512; used clamped to
  /// 512..4096). A query with EDNS0 gets the payload size it advertises, clamped to
  /// 512..4096, instead.
  std::size_t max_udp = 512;
};

/// What dns_answer did with one query; dns_server counts it in dns_stats.
enum class dns_outcome : std::uint8_t {
  answered = 1, ///< NOERROR with at least one answer record
  nodata,       ///< NOERROR, no answer record, SOA in authority
  nxdomain,     ///< NXDOMAIN, SOA in authority
  refused,      ///< REFUSED (outside the domain, not class IN), NOTIMP, or EDNS BADVERS
  malformed,    ///< FORMERR, or no reply at all (too short to answer, or a response)
};

/// "answered" / "nodata" / "nxdomain" / "refused" / "malformed".
[[nodiscard]] const char* to_string(dns_outcome x) noexcept;

/// The reply to one query.
struct dns_reply {
  /// The reply datagram, at most the query's size limit (dns_options::max_udp or its EDNS0
  /// payload size); empty when nothing is to be sent back.
  std::vector<std::uint8_t> bytes;
  dns_outcome outcome = dns_outcome::malformed;
  /// Not every record fitted: TC is set, or (only) additional records were left out. A
  /// client that sees TC retries over TCP, which this responder does not serve (UDP only):
  /// it then keeps the records that came over UDP or fails, as with any UDP-only server.
  bool truncated = false;
};

/// Counters of a responder; a plain copy (dns_server::stats()).
struct dns_stats {
  std::uint64_t queries = 0;     ///< datagrams received, whatever they held
  std::uint64_t answered = 0;    ///< dns_outcome::answered
  std::uint64_t nxdomain = 0;    ///< dns_outcome::nxdomain
  std::uint64_t nodata = 0;      ///< dns_outcome::nodata
  std::uint64_t refused = 0;     ///< dns_outcome::refused
  std::uint64_t malformed = 0;   ///< dns_outcome::malformed, and datagrams over 4096 bytes
  std::uint64_t truncated = 0;   ///< replies with dns_reply::truncated (also counted above)
  std::uint64_t send_errors = 0; ///< replies the socket did not take (dns_server only)
};

/// Answers one DNS query from `snapshot`. Pure: no I/O, no clock, no shared state; the
/// order of the answers (shuffled so that clients spread their load) comes from `seed`, so
/// the same inputs give the same bytes. Never fails: any input gives a reply (or none) as
/// the file comment says. Thread-safe (reentrant).
[[nodiscard]] dns_reply dns_answer(std::span<const std::uint8_t> query,
                                   const routing_snapshot& snapshot, const dns_options& options,
                                   std::uint64_t seed);

} // namespace starling::gossip::discovery
