// Local messages of the identity channel (never serialized: they carry callbacks). The
// gossip transport's TLS server hands a request (admission or sync, proto/admission.proto)
// to the membership actor's callback, which the supervisor routes to the identity actor
// (admission_msg); the identity actor asks the membership actor, through the supervisor, to
// send a request to a member by name (forward_admission_msg): an admission forwarded to the
// token's issuer, or a sync request.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/expected.hpp>

#include "gossip/transport.hpp"

namespace starling::actors {

/// A request that arrived on the identity channel of the gossip port.
struct admission_msg {
  /// Encoded IdentityRequest (proto/admission.proto): admission or sync.
  std::string request;
  /// The client's verified node name (a member forwarding), or std::nullopt (the joiner).
  std::optional<std::string> peer;
  /// Answers the client; call once, from any thread.
  gossip::admission_responder reply;
};

/// Send `request` to the member named `issuer` over TLS (expecting that member's
/// certificate) and hand its answer to `done`.
struct forward_admission_msg {
  /// The member's name: the token's issuer, or a sync peer.
  std::string issuer;
  /// Encoded IdentityRequest.
  std::string request;
  /// Runs once, on any thread: the member's encoded IdentityResponse, or an error
  /// (actors::errc::unreachable when `issuer` is not an alive member).
  std::function<void(caf::expected<std::string>)> done;
};

/// Hands an admission request to whoever serves it (the supervisor wires this).
using admission_handler = std::function<void(admission_msg)>;

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::admission_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::forward_admission_msg)
