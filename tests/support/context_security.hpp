// gossip::stream_security over one identity::tls_context, for tests that speak the gossip
// port's TLS themselves (what the agent's actors/tls_security does with its current
// context).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "gossip/transport.hpp"
#include "identity/tls.hpp"

namespace starling::testing {

class context_security final : public gossip::stream_security {
public:
  explicit context_security(std::shared_ptr<const identity::tls_context> ctx)
      : ctx_(std::move(ctx)) {}

  caf::expected<SSL*> new_session(bool server, std::optional<std::string> expected) override {
    auto ssl = server ? ctx_->new_session(identity::tls_role::server)
                      : ctx_->new_session(identity::tls_role::client, std::move(expected));
    if (!ssl)
      return std::move(ssl.error());
    return ssl->release();
  }

  std::optional<std::string> peer_name(const SSL* ssl) override {
    const auto* peer = identity::tls_context::peer_of(ssl);
    if (peer == nullptr || !peer->identity)
      return std::nullopt;
    return peer->identity->node;
  }

  caf::error refusal(const SSL* ssl) override { return identity::tls_context::refusal_of(ssl); }

private:
  std::shared_ptr<const identity::tls_context> ctx_;
};

} // namespace starling::testing
