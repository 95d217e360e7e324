// What a node trusts: the mesh's roots (a bundle that may hold several during a rotation),
// the revoked public keys (a grow-only set spread by gossip), and the check of a peer's
// certificate chain against both. Pure: `now` is passed in, no I/O. Every refusal is its
// own errc (identity/errc.hpp) so it can be counted; untrusted chains never crash.
#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/pki.hpp"

namespace starling::identity {

/// The roots of one mesh that a node accepts chains up to. Immutable once made except by
/// `add`; copies are cheap (certificates are shared).
class trust_bundle {
public:
  /// Makes a bundle of `roots` (at least one). Each must be a self-signed CA certificate
  /// whose URI SAN is spiffe://<mesh>, all of the same mesh. Duplicates are dropped.
  /// Errors: invalid_argument (empty), bad_certificate (not a Starling root),
  /// foreign_mesh (roots of two meshes).
  [[nodiscard]] static caf::expected<trust_bundle> make(const chain& roots);

  /// Reads the PEM certificates of a bundle file and calls make. Errors: as make and
  /// certificates_from_pem.
  [[nodiscard]] static caf::expected<trust_bundle> from_pem(std::string_view pem);

  /// The roots as concatenated PEM, in order (the bundle file's content).
  [[nodiscard]] caf::expected<std::string> to_pem() const;

  /// Adds a root of the same mesh (the new root of a rotation). Adding a root already
  /// present does nothing. Errors: as make.
  [[nodiscard]] caf::error add(const certificate& root);

  /// The mesh every root names.
  [[nodiscard]] const std::string& mesh() const noexcept { return mesh_; }

  /// The roots, in the order given.
  [[nodiscard]] const chain& roots() const noexcept { return roots_; }

  /// The distinct pins (SPKI SHA-256) of the roots, in root order. A root re-issued with
  /// the same key has the same pin.
  [[nodiscard]] const std::vector<sha256_digest>& pins() const noexcept { return pins_; }

  /// True if a root of the bundle has pin `pin` (a join token's pin check).
  [[nodiscard]] bool contains_pin(const sha256_digest& pin) const noexcept;

private:
  trust_bundle() = default;

  /// Mesh of all roots.
  std::string mesh_;
  /// At least one root; no two equal certificates.
  chain roots_;
  /// Distinct pins of roots_.
  std::vector<sha256_digest> pins_;
};

/// Revoked public keys, by SPKI SHA-256: a grow-only set, so merging gossip from any peer
/// in any order converges. Revoking a key refuses every certificate for it, whatever its
/// serial or fingerprint, including ones re-issued later.
class revocation_set {
public:
  /// Adds `spki`; returns true if it was new.
  bool insert(const sha256_digest& spki);

  /// Adds every key of `other`; returns how many were new.
  std::size_t merge(const revocation_set& other);

  /// True if `spki` is revoked.
  [[nodiscard]] bool contains(const sha256_digest& spki) const noexcept {
    return keys_.contains(spki);
  }

  /// Number of revoked keys.
  [[nodiscard]] std::size_t size() const noexcept { return keys_.size(); }

  /// True when nothing is revoked.
  [[nodiscard]] bool empty() const noexcept { return keys_.empty(); }

  /// The keys in ascending byte order (stable for digests and gossip).
  [[nodiscard]] auto begin() const noexcept { return keys_.begin(); }
  [[nodiscard]] auto end() const noexcept { return keys_.end(); }

  friend bool operator==(const revocation_set&, const revocation_set&) = default;

private:
  /// Only grows.
  std::set<sha256_digest> keys_;
};

/// Who a verified peer is.
struct peer_identity {
  /// The mesh (that of the trust bundle).
  std::string mesh;
  /// The node name of spiffe://<mesh>/node/<node>.
  std::string node;
  /// SPKI SHA-256 of the peer's key (what revoking it would name).
  sha256_digest spki_sha256{};
  /// notAfter of the peer's certificate.
  time_point not_after;
  /// Node names of the issuers between the peer and the root, nearest first.
  std::vector<std::string> issuers;
  /// SPKI SHA-256 of the issuers' keys, in the order of `issuers`. An issuer node's own
  /// certificate certifies its issuer key (spki_sha256 == issuer_keys.front()): that, not
  /// the name, is what makes a peer that issuer (check_quorum, authenticate_issuer).
  std::vector<sha256_digest> issuer_keys;
  /// Pin of the root the chain ends at.
  sha256_digest root_pin{};
};

/// The path validation verify_peer starts with, alone: builds the path from `presented`
/// (leaf first, then intermediates) to a root of `bundle` and checks it at `now`, with
/// OpenSSL's X.509 strict rules and no partial chains. Returns the verified path, leaf
/// first and the bundle's root last. Checks nothing of the leaf's profile, so it also
/// serves to check an issuer's own (CA) certificate (load_issuer). Refusals: no_certificate,
/// bad_certificate (too many certificates), then OpenSSL's as listed on verify_peer
/// (expired, not_yet_valid, name_constraint, untrusted_chain).
[[nodiscard]] caf::expected<chain> verify_path(const chain& presented, const trust_bundle& bundle,
                                               time_point now);

/// Checks the chain a peer presented and says who it is. `presented` is leaf first, then
/// intermediates (a root in it is ignored in favour of the bundle's). Checked at `now`, with
/// OpenSSL's X.509 strict rules and no partial chains. `expected_node`, when given, is the
/// member the peer claims to be.
///
/// Refusals, in the order they are checked:
/// - no_certificate: `presented` is empty.
/// - bad_certificate: more than max_pem_certificates certificates.
/// - from OpenSSL's path validation, whichever it meets first:
///   expired / not_yet_valid (any certificate of the chain at `now`); name_constraint (an
///   issuer signed outside the mesh it is constrained to); untrusted_chain (no path to a root
///   of the bundle: unknown issuer, a chain of another mesh's root, a bad signature, a leaf or
///   other non-CA used as an issuer, a path too long).
/// - revoked: the SPKI of any certificate of the verified chain is in `revoked`.
/// - bad_certificate: the leaf is a CA, lacks digitalSignature or serverAuth+clientAuth, or
///   its URI SAN is not spiffe://<mesh>/node/<name>; an intermediate has no node URI.
/// - foreign_mesh: the chain verifies up to a root of the bundle but a certificate of it
///   names another mesh (only possible for certificates a root signed directly: issuers are
///   name-constrained to their mesh).
/// - name_mismatch: the leaf names a node other than `expected_node`.
[[nodiscard]] caf::expected<peer_identity>
verify_peer(const chain& presented, const trust_bundle& bundle, const revocation_set& revoked,
            time_point now, std::optional<std::string_view> expected_node = std::nullopt);

/// The chain a TLS peer presented, as libssl hands it to the callback set with
/// SSL_CTX_set_cert_verify_callback: the leaf (X509_STORE_CTX_get0_cert), then the other
/// certificates the peer sent (X509_STORE_CTX_get0_untrusted). Empty if there is no leaf.
[[nodiscard]] chain presented_chain(X509_STORE_CTX& ctx);

/// verify_peer on presented_chain(ctx), for use inside an SSL_CTX_set_cert_verify_callback
/// (which replaces OpenSSL's own verification). Also records the outcome in `ctx`
/// (X509_STORE_CTX_set_error: X509_V_OK, or the closest X509_V_ERR_* so that the TLS alert
/// fits: CERT_HAS_EXPIRED, CERT_NOT_YET_VALID, CERT_REVOKED, PERMITTED_VIOLATION,
/// UNABLE_TO_GET_ISSUER_CERT_LOCALLY, else APPLICATION_VERIFICATION). The callback returns 1
/// on success, 0 otherwise; the caller keeps the peer_identity for the connection.
[[nodiscard]] caf::expected<peer_identity>
verify_peer(X509_STORE_CTX& ctx, const trust_bundle& bundle, const revocation_set& revoked,
            time_point now, std::optional<std::string_view> expected_node = std::nullopt);

/// Records a verification's outcome in `ctx` the way the overload above does
/// (X509_STORE_CTX_set_error: X509_V_OK, or the X509_V_ERR_* that fits the refusal).
void record_outcome(X509_STORE_CTX& ctx, const caf::expected<peer_identity>& outcome);

/// verify_peer's last check alone: name_mismatch when `expected_node` is given and `id`
/// names another node; no error otherwise.
[[nodiscard]] caf::error check_expected_node(const peer_identity& id,
                                             std::optional<std::string_view> expected_node);

} // namespace starling::identity
