// The `certs` view (DESIGN.md "JSON views"): the node's own certificate with its spiffe://
// URI and expiry, the issuers above it, whether the node is an issuer (and its issuer
// certificate's expiry), the roots it trusts, the revocations it knows (node, key, issuer,
// when) with the identity sync's counters, and the gossip keyring ids. Pure: `now` is
// passed in; no CAF actor headers.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

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
  /// Admission and renewal requests refused (any reason) since start.
  std::uint64_t refused = 0;
  /// Endorsements of joiners' keys this issuer gave (admission quorum) since start.
  std::uint64_t endorsed = 0;
  /// Admissions and endorsements refused because the name was taken (an issuer's, a live
  /// member's, or certified for another key) since start; counted in `refused` too.
  std::uint64_t names_refused = 0;
  /// Gossip keyring rotations this issuer completed after a revocation since start.
  std::uint64_t keyring_rotations = 0;
};

/// One revocation statement as the view shows it.
struct revocation_row {
  /// The node the key was issued to.
  std::string node;
  /// SHA-256 of the revoked key's SubjectPublicKeyInfo.
  identity::sha256_digest key{};
  /// Node name of the issuer that signed the statement.
  std::string issuer;
  /// When the issuer revoked it.
  identity::time_point revoked_at;
};

/// Counters of the identity channel's anti-entropy, since start.
struct sync_summary {
  /// Exchanges completed, started here or by a peer.
  std::uint64_t exchanges = 0;
  /// Exchanges started here that failed (unreachable peer, refusal, bad answer).
  std::uint64_t failures = 0;
  /// Revocation statements received and refused (bad signature, unknown issuer,
  /// malformed...), and statements learned.
  std::uint64_t statements_refused = 0;
  std::uint64_t statements_learned = 0;
  /// Token ledgers merged from authenticated issuers, and ledgers refused (no valid issuer
  /// signature for this node over the ledger: identity::verify_ledger).
  std::uint64_t ledgers_merged = 0;
  std::uint64_t ledgers_refused = 0;
  /// Records of merged ledgers dropped: not signed by the issuer that created them.
  std::uint64_t records_refused = 0;
  /// Keyring changes refused (no valid issuer signature for this node, stale, or the
  /// change itself refused by the keyring).
  std::uint64_t keyring_refused = 0;
  /// Periodic exchanges started here in which both sides held the same statements (only
  /// digests travelled), and pushes of every statement to a peer found to lack some.
  std::uint64_t in_step = 0;
  std::uint64_t pushes = 0;
};

/// The certs JSON view, one line. `id` null: the node runs without an identity
/// ({"identity":false,...}). `keyring` null: plain gossip. `issuer` null: not an issuer.
/// `revocations` and `sync` are shown with an identity (null: none, zero counters).
[[nodiscard]] std::string certs_json(const node_identity* id, const keyring_view* keyring,
                                     const issuer_summary* issuer,
                                     const std::vector<revocation_row>* revocations,
                                     const sync_summary* sync, identity::time_point now);

} // namespace starling::actors
