// The agent's TLS for the gossip transport's TCP exchanges: gossip::stream_security over the
// node's identity::tls_context_holder, so a renewed certificate (a replaced context) applies
// to the next connection while open ones keep theirs. No I/O and no actors here.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "gossip/transport.hpp"
#include "identity/tls.hpp"

namespace starling::actors {

/// TLS sessions for the gossip transport from the node's current TLS context. Thread-safe
/// (the transport's I/O thread and a joiner's thread call it): the holder is.
class tls_security final : public gossip::stream_security {
public:
  /// Sessions come from `contexts->current()` at each new connection. `contexts` must not
  /// be null.
  explicit tls_security(std::shared_ptr<identity::tls_context_holder> contexts);

  /// The security of a joiner: `pinned`, a context made in pinned-root mode (no certificate;
  /// client sessions only), for gossip::admission_exchange. Errors: invalid_argument
  /// (identity) for a null context.
  [[nodiscard]] static caf::expected<std::shared_ptr<tls_security>>
  joiner(std::shared_ptr<const identity::tls_context> pinned);

  /// A session of the current context; the caller owns the SSL*. Servers pass no expected
  /// peer (the transport binds the client's name to the member it claims). Errors: those
  /// of identity::tls_context::new_session (invalid_argument when a joiner would serve).
  [[nodiscard]] caf::expected<SSL*> new_session(bool server,
                                                std::optional<std::string> expected_peer) override;

  /// The peer's verified node name; std::nullopt for an anonymous client (or a session not
  /// made by a tls_context, or one whose handshake has not verified the peer).
  [[nodiscard]] std::optional<std::string> peer_name(const SSL* ssl) override;

  /// identity::tls_context::refusal_of(ssl): untrusted_chain, expired, revoked,
  /// name_mismatch, no_certificate...; empty for a failure of TLS itself.
  [[nodiscard]] caf::error refusal(const SSL* ssl) override;

private:
  /// Never null.
  std::shared_ptr<identity::tls_context_holder> contexts_;
};

} // namespace starling::actors
