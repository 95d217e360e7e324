#include "actors/proxy_tls.hpp"

#include <utility>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "gossip/errc.hpp"

namespace starling::actors {

proxy_tls::proxy_tls(std::shared_ptr<identity::tls_context_holder> contexts)
    : contexts_(std::move(contexts)) {
  // Fields only.
}

SSL* proxy_tls::new_session(bool server, const std::string& expected_peer, std::string& error) {
  auto ctx = contexts_ ? contexts_->current() : nullptr;
  if (!ctx) {
    error = "no TLS context";
    return nullptr;
  }
  auto ssl = server ? ctx->new_session(identity::tls_role::server)
                    : ctx->new_session(identity::tls_role::client, expected_peer);
  if (!ssl) {
    error = gossip::render(ssl.error());
    return nullptr;
  }
  return ssl->release();
}

std::optional<proxy::peer_identity> proxy_tls::peer_of(const SSL* ssl) {
  const auto* peer = identity::tls_context::peer_of(ssl);
  if (peer == nullptr || !peer->identity)
    return std::nullopt;
  proxy::peer_identity out;
  out.node = peer->identity->node;
  out.spiffe_id = "spiffe://" + peer->identity->mesh + "/node/" + peer->identity->node;
  return out;
}

} // namespace starling::actors
