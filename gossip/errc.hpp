// Errors of the gossip module.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace starling::gossip {

/// Why a gossip operation or an input was refused.
enum class errc : std::uint8_t {
  malformed = 1,       ///< bytes that do not parse as the expected message
  truncated,           ///< a frame shorter than its header or length prefix says
  oversized,           ///< a datagram or frame over the configured limit
  unsupported_version, ///< a protocol version this node does not speak
  unknown_frame,       ///< a frame type byte this node does not know
  invalid_field,       ///< parses, but a field is missing or out of range
  peer_refused,        ///< the peer answered with an error frame
  io_failure,          ///< connect, read or write failed
  timeout,             ///< no answer in time
  join_failed,         ///< no seed answered within the join bound
  unknown_request,     ///< the peer serves no request of this type (decision 0014)
  unauthenticated,     ///< the peer does not accept who we are for this request: no
                       ///< certificate for a members-only type, a sender our certificate
                       ///< does not name, a frame not sealed with its key
  busy,                ///< the peer's inbound limits are spent for now: try later
};

/// The CAF error category of this module.
constexpr caf::atom_value errc_category = caf::atom("gossip");

/// Human-readable name of `x` ("malformed", ...).
const char* to_string(errc x) noexcept;

/// Makes a caf::error of category "gossip" carrying `context` (what, and which input).
caf::error make_error(errc x, std::string context = {});

/// Renders a gossip error for logs: "gossip.malformed: <context>". Works for any error.
std::string render(const caf::error& err);

/// The reason to put in an error frame for the peer: the context of a peer_refused error
/// verbatim (a refusal decided, or relayed, by the owner: "identity.token_expired: ..."),
/// else render(err).
std::string refusal_reason(const caf::error& err);

} // namespace starling::gossip
