// Issuer authority beyond TLS handshakes (issue 13, finding 1): every act of an issuer that
// another node acts upon — a change of the gossip keyring pushed to a member, the token ledger
// sent to another issuer, each token record in that ledger — carries a signature by the
// issuer's private key, checked against the issuer certificate and the trust bundle. The TLS
// peer's name is never enough: a name is what a joiner asks for, a key is what the root
// vouched for. Signed with the statement encoding of identity/statement.hpp, each kind under
// its own context, so that no signature of one kind passes for another. Pure: no I/O, no
// clock reads.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/revocation.hpp"
#include "identity/token.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

struct issuer_material;
struct issued_certificate;

/// How far from the receiver's clock a signed action may be dated: the push is immediate,
/// so this only absorbs clock skew and queueing. Older (or later) actions are refused as
/// stale_statement: a captured action cannot be replayed after it.
inline constexpr std::chrono::seconds issuer_action_window = std::chrono::minutes{2};

/// An issuer's signature over one action.
struct issuer_seal {
  /// When the issuer signed (unix seconds).
  unix_time at{};
  /// DER of the signing issuer's certificate.
  std::vector<std::uint8_t> issuer;
  /// ECDSA-SHA256 signature by the issuer's key.
  std::vector<std::uint8_t> signature;
};

// -- keyring changes ---------------------------------------------------------------------------

/// Signs the keyring change `op` ("install", "use", "remove") of `key` (the base64 key or a
/// key id) for member `target` at `now`. The signature covers the operation, the key and the
/// target, so the change cannot be replayed to another member. Errors: crypto_failure,
/// invalid_argument (target not a node name).
[[nodiscard]] caf::expected<issuer_seal>
sign_keyring_change(const issuer_material& issuer, std::string_view op, std::string_view key,
                    std::string_view target, time_point now);

/// Checks a keyring change received by member `self`: the seal's issuer certificate is an
/// issuer of `bundle` at `now` (verify_issuer's refusals), the signature verifies for this
/// op, key and `self` (bad_signature: forged, or signed for another member), it is dated
/// within issuer_action_window of `now` (stale_statement). Returns who signed.
[[nodiscard]] caf::expected<issuer_identity>
verify_keyring_change(std::string_view op, std::string_view key, const issuer_seal& seal,
                      std::string_view self, const trust_bundle& bundle, time_point now);

// -- the token ledger -------------------------------------------------------------------------

/// Signs `ledger` and the sender's `issued` list (their canonical bytes) as sent to issuer
/// `target` at `now`: proves to the receiver that an issuer sends them, which lets the
/// spends and the issued records in. Errors: crypto_failure, invalid_argument.
[[nodiscard]] caf::expected<issuer_seal> sign_ledger(const issuer_material& issuer,
                                                     const token_ledger& ledger,
                                                     const std::vector<issued_certificate>& issued,
                                                     std::string_view target, time_point now);

/// Checks a ledger received by issuer `self`, as verify_keyring_change checks a change.
[[nodiscard]] caf::expected<issuer_identity>
verify_ledger(const token_ledger& ledger, const std::vector<issued_certificate>& issued,
              const issuer_seal& seal, std::string_view self, const trust_bundle& bundle,
              time_point now);

/// Seals the record `id` of `entry` (created by `issuer`: entry.issuer must be its node):
/// sets entry.seal_issuer and entry.seal_signature. Errors: invalid_argument (a record of
/// another issuer), crypto_failure.
[[nodiscard]] caf::error seal_token_record(const issuer_material& issuer, const token_id& id,
                                           token_entry& entry);

/// Checks the seal of a record another issuer relayed: signed by the key of an issuer
/// certificate of `bundle` valid at `now`, over this very record, and that certificate names
/// the record's issuer (name_mismatch otherwise). Refusals: not_an_issuer (no seal),
/// verify_issuer's, bad_signature, name_mismatch.
[[nodiscard]] caf::expected<issuer_identity> verify_token_record(const token_id& id,
                                                                 const token_entry& entry,
                                                                 const trust_bundle& bundle,
                                                                 time_point now);

} // namespace starling::identity
