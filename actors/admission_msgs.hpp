// Local messages of admission (never serialized: they carry callbacks). The gossip
// transport's TLS server hands an admission request to the membership actor's callback,
// which the supervisor routes to the identity actor (admission_msg); the identity actor asks
// the membership actor, through the supervisor, to forward a request to the token's issuer
// (forward_admission_msg).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/expected.hpp>

#include "gossip/transport.hpp"

namespace starling::actors {

/// An admission request that arrived on the gossip port.
struct admission_msg {
  /// Encoded AdmissionRequest (proto/admission.proto).
  std::string request;
  /// The client's verified node name (a member forwarding), or std::nullopt (the joiner).
  std::optional<std::string> peer;
  /// Answers the client; call once, from any thread.
  gossip::admission_responder reply;
};

/// Forward `request` to the member named `issuer` and hand its answer to `done`.
struct forward_admission_msg {
  std::string issuer;
  std::string request;
  /// Runs once, on any thread: the issuer's encoded AdmissionResponse, or an error
  /// (actors::errc::unreachable when `issuer` is not an alive member).
  std::function<void(caf::expected<std::string>)> done;
};

/// Hands an admission request to whoever serves it (the supervisor wires this).
using admission_handler = std::function<void(admission_msg)>;

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::admission_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::forward_admission_msg)
