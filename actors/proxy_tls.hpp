// The agent's TLS for the data plane (proxy/dataplane.hpp): proxy::peer_tls over the node's
// identity::tls_context_holder, so a renewed certificate (a replaced context) applies to the
// next proxy connection while open ones keep theirs. No I/O and no actors here.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "identity/tls.hpp"
#include "proxy/dataplane.hpp"

namespace starling::actors {

/// TLS sessions between proxies from the node's current TLS context. Thread-safe (the data
/// plane's I/O threads call it): the holder is, and the rest is read-only.
class proxy_tls final : public proxy::peer_tls {
public:
  /// Sessions come from `contexts->current()` at each new connection. `contexts` must not be
  /// null.
  explicit proxy_tls(std::shared_ptr<identity::tls_context_holder> contexts);

  /// A session of the current context (the caller owns it); a client names the node it
  /// expects. Null with `error` set when there is no context or OpenSSL fails.
  [[nodiscard]] SSL* new_session(bool server, const std::string& expected_peer,
                                 std::string& error) override;

  /// The peer's verified node and its SPIFFE id "spiffe://<mesh>/node/<node>"; nothing for
  /// a session whose peer did not verify (or one not made by a tls_context).
  [[nodiscard]] std::optional<proxy::peer_identity> peer_of(const SSL* ssl) override;

private:
  /// Never null.
  std::shared_ptr<identity::tls_context_holder> contexts_;
};

} // namespace starling::actors
