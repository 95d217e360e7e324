// Admission quorum (issue 3, docs/decisions/0009): a node's certificate counts only with
// endorsements from `admission_quorum` distinct issuers, so that no single issuer can admit
// a node on its own. An endorsement is a statement "key K is node N's", signed by an
// issuer's key, with that issuer's certificate attached (the same shape as a revocation
// statement, under its own signing context). The issuer that signs a node certificate puts
// every endorsement, its own included, in a non-critical extension of the leaf, so that
// every TLS handshake carries them and any peer can count them. Pure: no I/O, no clock
// reads (`now` is passed in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/pki.hpp"
#include "identity/revocation.hpp"
#include "identity/token.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

struct issuer_material;

/// Largest admission quorum (and most endorsements a certificate carries): the most tokens
/// an admission request may hold.
inline constexpr std::size_t max_admission_quorum = 16;

/// The object identifier of the endorsements extension: an OID derived from a UUID (ITU-T
/// X.667, arc 2.25), so no registration is needed.
inline constexpr std::string_view endorsements_oid = "2.25.11904290387259312728731920947643027227";

/// "Key `key` is node `node`'s", signed by an issuer at `endorsed_at`. Valid while its
/// issuer certificate is (revoking the key ends it, as for a certificate).
struct endorsement {
  /// SHA-256 of the endorsed key's SubjectPublicKeyInfo.
  sha256_digest key{};
  /// The node the key belongs to (a valid node name).
  std::string node;
  /// When the issuer endorsed it.
  unix_time endorsed_at{};
  /// DER of the endorsing issuer's certificate (a CA of the mesh, signed by a root).
  std::vector<std::uint8_t> issuer;
  /// DER ECDSA-SHA256 signature by the issuer's key over the canonical encoding of the
  /// fields above, under the context "starling-endorsement-1" (never valid as a revocation).
  std::vector<std::uint8_t> signature;

  friend bool operator==(const endorsement&, const endorsement&) = default;
};

/// Makes and signs the endorsement of `key` for node `node` at `now`, by `issuer`.
/// Errors: invalid_argument (node name), crypto_failure.
[[nodiscard]] caf::expected<endorsement> make_endorsement(const issuer_material& issuer,
                                                          const sha256_digest& key,
                                                          std::string_view node, time_point now);

/// Checks an untrusted endorsement at `now`, in this order: bad_request (malformed: invalid
/// node name, no or oversized issuer or signature, dated before 1970), verify_issuer's
/// refusals for its issuer certificate (not_an_issuer, untrusted_chain, expired,
/// foreign_mesh...), bad_signature, bad_request (dated more than clock_skew_allowance after
/// `now`). Returns who endorsed.
[[nodiscard]] caf::expected<issuer_identity>
verify_endorsement(const endorsement& e, const trust_bundle& bundle, time_point now);

/// The extension's value: a DER OCTET STRING holding the protobuf EndorsementSet
/// (proto/admission.proto) of `set`. Errors: invalid_argument (empty, or more than
/// max_admission_quorum endorsements).
[[nodiscard]] caf::expected<std::vector<std::uint8_t>>
encode_endorsement_extension(std::span<const endorsement> set);

/// The endorsements a certificate carries in the extension (empty if it has none), not yet
/// verified. Errors: bad_certificate (the extension is critical, present twice, does not
/// parse, or holds more than max_admission_quorum endorsements).
[[nodiscard]] caf::expected<std::vector<endorsement>> endorsements_of(const certificate& cert);

/// True if `id` (from verify_peer) is an issuer node's own certificate: a leaf that names
/// its signing issuer's node AND certifies that issuer's key. The name alone is never
/// enough (a name is what a joiner asks for; the key is what the root vouched for).
[[nodiscard]] bool is_issuer_own_leaf(const peer_identity& id) noexcept;

/// The quorum check of a verified peer (`leaf` and `id` from verify_peer or
/// check_chain_for): who vouches for it. An issuer node's own certificate
/// (is_issuer_own_leaf: the root admitted that node when it signed the issuer) meets any
/// quorum. Otherwise the vouchers are the signing issuer (id.issuers.front()) and
/// the issuer of every endorsement in the leaf that verifies at `now`, endorses this leaf's
/// key (id.spki_sha256) for this node (id.node), and whose issuer key is not in `revoked`;
/// each issuer counts once, whatever number of endorsements it signed. Endorsements that do
/// not pass are ignored (not an error on their own). Returns the distinct vouchers' node
/// names, the signer first. Errors: quorum_not_met (fewer than `quorum` vouchers, naming how
/// many and who), endorsements_of's.
[[nodiscard]] caf::expected<std::vector<std::string>>
check_quorum(const certificate& leaf, const peer_identity& id, const trust_bundle& bundle,
             const revocation_set& revoked, time_point now, std::size_t quorum);

} // namespace starling::identity
