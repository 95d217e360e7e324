// The `certs` view (DESIGN.md "JSON views"): the node's own certificate with its spiffe://
// URI and expiry, the issuers above it, whether the node is an issuer (and its issuer
// certificate's expiry), the roots it trusts, the revoked keys it knows, and the gossip
// keyring ids. Pure: `now` is passed in; no CAF actor headers.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "actors/keyring_sealer.hpp"
#include "actors/node_identity.hpp"

namespace starling::actors {

/// Issuer-side counts shown in the view.
struct issuer_summary {
  /// Tokens in the ledger that are neither expired nor exhausted at `now`.
  std::size_t active_tokens = 0;
  /// Tokens known (created here or learned), and admissions this issuer made.
  std::size_t known_tokens = 0;
  std::uint64_t admitted = 0;
  /// Admission requests refused (any reason) since start.
  std::uint64_t refused = 0;
};

/// The certs JSON view, one line. `id` null: the node runs without an identity
/// ({"identity":false,...}). `keyring` null: plain gossip.
[[nodiscard]] std::string certs_json(const node_identity* id, const keyring_view* keyring,
                                     const issuer_summary* issuer, identity::time_point now);

/// The text printed by `starling certs` from the JSON view. Errors: request_failed when
/// `json` is not a certs view.
[[nodiscard]] caf::expected<std::string> certs_text(std::string_view json);

} // namespace starling::actors
