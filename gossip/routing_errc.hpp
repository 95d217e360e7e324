// Errors of the routing table (the CRDT of gossip/routing_table.hpp): their own CAF category
// "routing", registered in the one renderer (docs/decisions/0015), so a refusal reads
// "routing.not_owner: ..." in logs, counters and answers to the operator.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace starling::gossip {

/// Why the routing table refused a record, a write or a message.
enum class routing_errc : std::uint8_t {
  malformed = 1,   ///< bytes that do not decode as a routing message
  invalid_record,  ///< decodes, but a field is out of range (name, port, weight, sizes)
  not_owner,       ///< instances of a node signed by another node's key
  not_authorized,  ///< a policy not signed by a key with issuer authority
  unsigned_record, ///< a record without a seal where signatures are required
  bad_signature,   ///< the seal does not verify (forged, tampered, revoked or expired key)
  unknown_key,     ///< signed by a key this node has not learned yet (its chain is fetched)
  clock_skew,      ///< a stamp too far ahead of this node's clock
  expired,         ///< a record older than the table keeps (record_ttl, tombstone_ttl)
  table_full,      ///< a new key beyond max_owners or max_policies
  invalid_policy,  ///< a split not summing to 100, a route to a version no instance has
  no_authority,    ///< this node holds no key that may sign the write
};

/// The CAF error category of the routing table.
constexpr caf::atom_value routing_errc_category = caf::atom("routing");

/// Name of `x` ("not_owner", ...).
const char* to_string(routing_errc x) noexcept;

/// A caf::error of category "routing" carrying `context`.
caf::error make_error(routing_errc x, std::string context = {});

/// True when `err` is routing error `x`.
[[nodiscard]] bool is(const caf::error& err, routing_errc x) noexcept;

} // namespace starling::gossip
