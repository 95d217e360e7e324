// Signed revocation statements and the grow-only log of them that every node keeps
// (DESIGN.md "Trust model" step 5, docs/decisions/0008 "Identity sync and revocation"). An
// issuer revokes a node's key (by the SHA-256 of its SubjectPublicKeyInfo, decision 0004)
// with a statement signed by its issuer key; any node checks the statement against its
// trust bundle before believing it, so statements can travel through any member. Pure: no
// I/O but the log's own file, no clock reads (`now` is passed in).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/pki.hpp"
#include "identity/token.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

struct issuer_material;

/// Most statements a revocation_log holds (and a sync message carries).
inline constexpr std::size_t max_revocations = 10'000;
/// Bound on the DER of the issuer certificate a statement carries.
inline constexpr std::size_t max_revocation_issuer_bytes = 4096;
/// The longest a node certificate may live (cert_ttl's upper bound, actors/config.hpp):
/// every certificate of a key issued before its revocation has expired this long after it.
inline constexpr std::chrono::seconds max_node_certificate_lifetime{std::chrono::hours{24 * 30}};
/// Bound on a statement's signature (a DER ECDSA P-256 signature is at most 72 bytes).
inline constexpr std::size_t max_revocation_signature_bytes = 128;

/// "Key `key`, issued to node `node`, is revoked as of `revoked_at`", signed by an issuer.
/// Ordered field by field (the log keeps the smallest of two statements for the same key
/// and issuer, so that every replica keeps the same one).
struct revocation {
  /// SHA-256 of the revoked key's SubjectPublicKeyInfo.
  sha256_digest key{};
  /// The node the key was issued to (a valid node name).
  std::string node;
  /// When the issuer revoked it.
  unix_time revoked_at{};
  /// DER of the revoking issuer's certificate (a CA of the mesh, signed by a root).
  std::vector<std::uint8_t> issuer;
  /// DER ECDSA-SHA256 signature by the issuer's key over the canonical encoding of the
  /// fields above (revocation.cpp, signed_bytes).
  std::vector<std::uint8_t> signature;

  friend auto operator<=>(const revocation&, const revocation&) = default;
  friend bool operator==(const revocation&, const revocation&) = default;
};

/// Who an issuer certificate names: the signer of a statement, or the sender of a ledger.
struct issuer_identity {
  /// Node name of the issuer (spiffe://<mesh>/node/<node>).
  std::string node;
  /// SHA-256 of the issuer certificate's SubjectPublicKeyInfo.
  sha256_digest key{};
  /// notAfter of the issuer certificate (revocation_log::prune keeps a statement at least
  /// until the latest notAfter of the issuers the log knows).
  time_point not_after;

  friend bool operator==(const issuer_identity&, const issuer_identity&) = default;
};

/// Makes and signs the statement revoking `key` of node `node` at `now`, by `issuer`.
/// Refuses (revokes_ca_key) the key of a root of the issuer's bundle and the issuer's own
/// key: an issuer revokes node keys only. Errors: invalid_argument (node name),
/// revokes_ca_key, crypto_failure.
[[nodiscard]] caf::expected<revocation> make_revocation(const issuer_material& issuer,
                                                        const sha256_digest& key,
                                                        std::string_view node, time_point now);

/// Checks an issuer certificate (DER, untrusted) at `now`: bad_certificate (does not parse,
/// names no node), not_an_issuer (not a CA: a node certificate cannot speak for an issuer),
/// verify_path's refusals for the certificate alone against `bundle` (untrusted_chain for
/// an issuer of another mesh, expired, not_yet_valid...), foreign_mesh (it names another
/// mesh than the bundle's). Returns who it names.
[[nodiscard]] caf::expected<issuer_identity>
verify_issuer(std::span<const std::uint8_t> issuer_der, const trust_bundle& bundle, time_point now);

/// Checks an untrusted statement at `now`, in this order:
/// - bad_request: malformed (invalid node name, no or oversized issuer or signature);
/// - verify_issuer's refusals for the statement's issuer certificate;
/// - bad_signature: the signature does not verify with the certificate's key;
/// - bad_request: revoked_at lies more than clock_skew_allowance after `now`;
/// - revokes_ca_key: the revoked key is a CA key this node knows of: a root of `bundle`,
///   the statement's own issuer, or one of `known_ca_keys` (issuer keys seen elsewhere).
///   An issuer key never seen here cannot be told from a node key (the statement names a
///   hash): that limit is documented in decision 0008.
/// Returns who signed it.
[[nodiscard]] caf::expected<issuer_identity>
verify_revocation(const revocation& stmt, const trust_bundle& bundle, time_point now,
                  const std::set<sha256_digest>& known_ca_keys = {});

/// The statements a node holds: a grow-only set keyed by (revoked key, issuer key), so
/// gossip from any peer in any order converges. Two statements for one key and issuer (an
/// issuer that revoked twice) resolve to the smaller. Bounded: past max_revocations the
/// entries with the largest keys are dropped (deterministic, so merge stays commutative,
/// associative and idempotent). Not thread-safe: owned by the identity actor.
class revocation_log {
public:
  /// One statement and what verification learned of its issuer.
  struct entry {
    revocation statement;
    issuer_identity issuer;
    friend bool operator==(const entry&, const entry&) = default;
  };
  /// (revoked key, issuer key).
  using entry_key = std::pair<sha256_digest, sha256_digest>;

  /// Verifies `stmt` (verify_revocation) and inserts it. Returns true if the log changed.
  /// Errors: verify_revocation's refusals (the log is unchanged).
  [[nodiscard]] caf::expected<bool> add(const revocation& stmt, const trust_bundle& bundle,
                                        time_point now,
                                        const std::set<sha256_digest>& known_ca_keys = {});

  /// Inserts an entry already verified (or read back from this node's own file). Returns
  /// true if the log changed (the entry is new, replaces a larger one, and survives the
  /// bound).
  bool insert(entry e);

  /// Joins `other` into this log; returns how many entries changed.
  std::size_t merge(const revocation_log& other);

  /// Drops the statements that can no longer matter at `now`; returns how many.
  ///
  /// A statement revokes a key, not a certificate, and the key may be certified by any
  /// issuer of the mesh, not only by the one that revoked it: dropping the statement when
  /// the revoking issuer's certificate expires (as before) let a key certified longer by
  /// another issuer back in. The rule: a statement is kept while `now` is before
  ///   max(revoked_at + max_node_certificate_lifetime,
  ///       the latest notAfter of the issuer certificates of every statement in the log).
  /// Why it is sound: no issuer certifies or renews a key while it holds a statement
  /// revoking it, so the certificates of the key that exist were signed before the
  /// statement (they expire within max_node_certificate_lifetime of revoked_at), or by an
  /// issuer that had not heard of it yet (they expire with that issuer's certificate, covered
  /// by the second term for every issuer the log knows of). Deterministic in the log's
  /// contents and `now`, so replicas stay equal; max_revocations still bounds the log.
  /// Limitation: a statement whose issuer certificate has expired no longer verifies at a
  /// node that did not have it yet (verify_revocation refuses it as expired), so nodes that
  /// join later learn it only until the revoking issuer's certificate expires.
  std::size_t prune(time_point now);

  /// When prune drops the statement `e` (the rule above, for this log's contents).
  [[nodiscard]] time_point retained_until(const entry& e) const;

  /// Every revoked key (what handshakes refuse).
  [[nodiscard]] revocation_set revoked() const;

  /// True if a statement revokes `key`.
  [[nodiscard]] bool revokes(const sha256_digest& key) const;

  /// True if the log holds exactly `stmt` (a receiver skips verifying what it already has).
  [[nodiscard]] bool contains(const revocation& stmt) const;

  /// SHA-256 over the entries in key order (each: revoked key, issuer key, SHA-256 of the
  /// statement's signature): two logs with the same statements have the same digest, so a
  /// sync can skip sending them (proto/admission.proto, SyncRequest.digest). The empty log
  /// has the digest of no bytes.
  [[nodiscard]] sha256_digest digest() const;

  /// Entries in key order.
  [[nodiscard]] const std::map<entry_key, entry>& entries() const noexcept { return entries_; }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// The persisted text form (versioned, line based, every line ending in '\n'):
  ///   starling-revocations 1
  ///   revocation <key hex64> <node> <revoked_at> <issuer DER hex> <signature hex>
  ///   end <number of revocation lines>
  [[nodiscard]] std::string serialize() const;

  /// Reads serialize()'s output. All or nothing: a bad header, field, certificate, duplicate,
  /// more than max_revocations lines, a missing `end` or text after it fails with
  /// invalid_argument naming the line. Signatures are not checked again (the file is this
  /// node's own, written after verification).
  [[nodiscard]] static caf::expected<revocation_log> deserialize(std::string_view text);

  /// Reads the log from `file`; an empty log if it does not exist. Errors: io_failure,
  /// invalid_argument naming the file (a corrupt file is never silently reset).
  [[nodiscard]] static caf::expected<revocation_log> load(const std::filesystem::path& file);

  /// Replaces `file` atomically with serialize() (mode 0600). Errors: io_failure.
  [[nodiscard]] caf::error save(const std::filesystem::path& file) const;

  friend bool operator==(const revocation_log&, const revocation_log&) = default;

private:
  /// Drops the largest entries past max_revocations.
  void trim();

  /// At most max_revocations entries, each verified once.
  std::map<entry_key, entry> entries_;
};

/// What an issuer certificate (DER) names, without checking its path or profile: for
/// statements read back from this node's own file, and inside the checks that do.
/// Errors: bad_certificate (unparsable, no node SPIFFE ID).
[[nodiscard]] caf::expected<issuer_identity>
describe_issuer(std::span<const std::uint8_t> issuer_der);

} // namespace starling::identity
