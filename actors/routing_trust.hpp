// The routing table's trust, backed by the identity module (issue 16): seals are checked by
// the key book (identity/routing_keys.hpp) against the node's trust bundle and revocations of
// the moment (identity::trust_state, shared with the TLS handshakes), and this node signs its
// own instances with its node key and policies with its issuer key. A node without
// certificates runs the open trust instead (gossip::open_routing_trust: no signatures,
// development only). Single owner: the routing actor.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gossip/routing_table.hpp"
#include "identity/admission.hpp"
#include "identity/routing_keys.hpp"
#include "identity/tls.hpp"

namespace starling::actors {

/// gossip::routing_trust over an identity::routing_key_book.
class key_book_trust final : public gossip::routing_trust {
public:
  /// `trust`: the node's bundle and revocations (never null). `own`: this node's
  /// credentials, whose chain is learned at once (and served to peers); `issuer`: its issuer
  /// certificate, learned too when the node is an issuer.
  key_book_trust(std::shared_ptr<identity::trust_state> trust,
                 const identity::node_credentials& own,
                 const std::optional<identity::issuer_material>& issuer, std::uint64_t wall_ms);

  [[nodiscard]] bool requires_signatures() const override { return true; }
  [[nodiscard]] caf::expected<gossip::routing_signer> verify(gossip::routing_context ctx,
                                                             std::string_view bytes,
                                                             const gossip::routing_seal& seal,
                                                             std::uint64_t wall_ms) override;
  [[nodiscard]] caf::expected<gossip::routing_signer> learn(const gossip::signer_chain& chain,
                                                            std::uint64_t wall_ms) override;
  [[nodiscard]] std::optional<gossip::signer_chain>
  chain_of(std::string_view key_id) const override;

  /// Learns this node's renewed chain (the key stays, the certificate changes).
  void refresh_own(const identity::node_credentials& own, std::uint64_t wall_ms);

  [[nodiscard]] const identity::routing_key_book& book() const noexcept { return book_; }

private:
  std::shared_ptr<identity::trust_state> trust_;
  identity::routing_key_book book_;
  /// Wall time of the last call: chain_of serves no chain that has expired by then.
  std::uint64_t last_wall_ms_ = 0;
};

/// gossip::routing_sealer with this node's keys: the node key for its instances, the issuer
/// key for policies (no_authority on a node that is not an issuer).
class node_key_sealer final : public gossip::routing_sealer {
public:
  node_key_sealer(identity::private_key node_key, std::optional<identity::private_key> issuer_key,
                  std::string node);
  [[nodiscard]] caf::expected<gossip::routing_seal> seal(gossip::routing_context ctx,
                                                         std::string_view bytes) override;

private:
  identity::private_key node_key_;
  std::optional<identity::private_key> issuer_key_;
  std::string node_;
};

/// The sealer of a node without certificates: empty seals for everything (the open trust
/// takes them).
class unsigned_sealer final : public gossip::routing_sealer {
public:
  [[nodiscard]] caf::expected<gossip::routing_seal> seal(gossip::routing_context,
                                                         std::string_view) override {
    return gossip::routing_seal{};
  }
};

/// Wall time (unix ms) as the identity module's time_point.
[[nodiscard]] identity::time_point identity_time(std::uint64_t wall_ms);

} // namespace starling::actors
