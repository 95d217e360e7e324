#include "actors/tls_security.hpp"

#include <utility>

#include "identity/errc.hpp"

namespace starling::actors {

tls_security::tls_security(std::shared_ptr<identity::tls_context_holder> contexts)
    : contexts_(std::move(contexts)) {
  // Fields only.
}

caf::expected<std::shared_ptr<tls_security>>
tls_security::joiner(std::shared_ptr<const identity::tls_context> pinned) {
  if (!pinned)
    return identity::make_error(identity::errc::invalid_argument,
                                "a joiner needs a pinned-root TLS context");
  return std::make_shared<tls_security>(
      std::make_shared<identity::tls_context_holder>(std::move(pinned)));
}

caf::expected<SSL*> tls_security::new_session(bool server,
                                              std::optional<std::string> expected_peer) {
  auto ctx = contexts_ ? contexts_->current() : nullptr;
  if (!ctx)
    return identity::make_error(identity::errc::invalid_argument, "no TLS context");
  auto ssl = server ? ctx->new_session(identity::tls_role::server)
                    : ctx->new_session(identity::tls_role::client, std::move(expected_peer));
  if (!ssl)
    return std::move(ssl.error());
  return ssl->release();
}

std::optional<std::string> tls_security::peer_name(const SSL* ssl) {
  const auto* peer = identity::tls_context::peer_of(ssl);
  if (peer == nullptr || !peer->identity)
    return std::nullopt;
  return peer->identity->node;
}

caf::error tls_security::refusal(const SSL* ssl) { return identity::tls_context::refusal_of(ssl); }

} // namespace starling::actors
