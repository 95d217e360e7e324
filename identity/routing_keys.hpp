// Signatures of the routing table (DESIGN.md "Routing state"): a node signs its own service
// instances with its node key, an issuer signs mesh-wide policies with its issuer key. A
// record travels in a small gossip payload, so it carries only a seal (the signer's key id
// and the signature); the signer's certificate chain travels apart, in sync exchanges, and
// each receiver keeps the signer keys it verified in a bounded cache, the key book. The
// gossip module does not depend on this file: actors/ adapts it to the gossip core's
// routing_trust interface. Pure: no I/O, no clock reads (`now` is passed in), no threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/pki.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

/// Context of a node's signature over its own service instances.
inline constexpr std::string_view routing_owner_context = "starling-routing-owner-1";
/// Context of an issuer's signature over a mesh-wide policy (split, route, authorization).
inline constexpr std::string_view routing_policy_context = "starling-routing-policy-1";

/// Largest signature verify looks at: a DER ECDSA P-256 signature is at most 72 bytes (P-384
/// 104); anything longer is refused before OpenSSL parses it.
inline constexpr std::size_t max_routing_signature_bytes = 160;
/// Most certificates in a chain the key book learns (a node chain is leaf, issuer and at
/// most a root; an issuer travels alone).
inline constexpr std::size_t max_routing_chain_certificates = 4;
/// Most DER bytes, all certificates together, of a chain the key book learns.
inline constexpr std::size_t max_routing_chain_bytes = 16 * 1024;
/// Default number of keys a routing_key_book holds.
inline constexpr std::size_t default_routing_key_capacity = 65'536;

/// The seal a routing record carries: who signed (by key) and the signature.
struct routing_signature {
  /// SHA-256 of the signer's DER SubjectPublicKeyInfo (spki_sha256): what the book is keyed
  /// by, and what a revocation names.
  sha256_digest key_id{};
  /// DER ECDSA-SHA256 signature over `context || 0x00 || bytes` (sign_routing).
  std::vector<std::uint8_t> signature;

  friend bool operator==(const routing_signature&, const routing_signature&) = default;
};

/// Who a key in the book belongs to, as its verified chain says.
struct routing_signer {
  /// The node name of the signer (spiffe://<mesh>/node/<node>): the node whose instances
  /// this key may sign, or the issuer node whose policies it signs.
  std::string node;
  /// True only when the trust bundle vouches for the key as an issuer's (an issuer
  /// certificate for this very key chains to a root): only such a key may sign policies.
  bool issuer = false;
  /// The key (spki_sha256).
  sha256_digest key_id{};
  /// Until when the key may sign: the earliest notAfter of the certificates it was learned
  /// with.
  time_point not_after;

  friend bool operator==(const routing_signer&, const routing_signer&) = default;
};

/// Signs `bytes` under `context` (routing_owner_context or routing_policy_context) with
/// `key` (a node or issuer key: ECDSA P-256, SHA-256 as identity/statement.cpp signs): the
/// signature covers `context`, one 0 byte, then `bytes`, so a signature of one context never
/// verifies under another. key_id is spki_sha256(key). Errors: invalid_argument (an empty
/// context or one holding a 0 byte), crypto_failure.
[[nodiscard]] caf::expected<routing_signature>
sign_routing(const private_key& key, std::string_view context, std::span<const std::uint8_t> bytes);

/// What a routing_key_book counts (monotonic, for metrics).
struct routing_key_counters {
  /// Chains accepted by learn (a refresh of a known key counts too).
  std::uint64_t learned = 0;
  /// Chains learn refused (any reason).
  std::uint64_t refused_chains = 0;
  /// Keys dropped to make room for another (the bound).
  std::uint64_t evicted = 0;
  /// Keys dropped by forget_revoked.
  std::uint64_t forgotten = 0;
  /// Signatures verify accepted.
  std::uint64_t verified = 0;
  /// verify refusals: a key not in the book (routing_unknown_key).
  std::uint64_t unknown_key = 0;
  /// verify refusals: a signature that does not verify or is oversized (bad_signature).
  std::uint64_t bad_signature = 0;
  /// verify refusals: a key (or a key of its chain) revoked since it was learned.
  std::uint64_t revoked = 0;
  /// verify refusals: a key past its not_after.
  std::uint64_t expired = 0;
  /// verify refusals: a policy signed by a key that is not an issuer's (not_an_issuer).
  std::uint64_t not_an_issuer = 0;

  friend bool operator==(const routing_key_counters&, const routing_key_counters&) = default;
};

/// The verified signer keys of the routing table, by key id: a bounded cache that learns a
/// key from its certificate chain (checked against the trust bundle and the revocations) and
/// then verifies the seals of routing records signed by it, and serves the chain on to peers
/// that lack it. Pure and deterministic; not thread-safe (one owner, an actor). Copies share
/// the (immutable) public keys.
///
/// Issuer authority comes from a key only. A key is an issuer's (`routing_signer::issuer`)
/// when it is learned from (a) an issuer certificate alone that verify_issuer accepts, or
/// (b) an issuer node's own node certificate: a node chain whose leaf certifies the very key
/// of the issuer certificate that signed it (peer_identity::issuer_keys.front(), the key the
/// root vouched for as an issuer) and names that issuer's node. Both prove the same key has
/// the root's vouching as an issuer, so (b) is as good as (a). A node chain whose leaf has
/// any other key gives issuer = false, whatever its name: a node admitted under an issuer's
/// name, or a compromised node, cannot sign policies.
///
/// One identity per key: a key learned again from another chain while its entry is unexpired
/// keeps the entry that is better for it (an issuer's over a non-issuer's, then the later
/// not_after; on a tie the new chain, to refresh what is served), and a chain that names
/// another node than that entry is refused (name_mismatch), so a key never signs for two
/// nodes at once. An expired entry is replaced by whatever chain is learned next.
///
/// The bound: when the book is full, learning a new key evicts the held key with the
/// earliest not_after (ties: the smallest key id), i.e. an expired key first, then the one
/// that would expire first; the key being learned is always kept. Least recently learned
/// was not chosen: node keys are re-learned on every renewal, so a key's not_after is the
/// better measure of how long it stays useful, and it does not depend on arrival order.
class routing_key_book {
public:
  /// An empty book of at most `capacity` keys (at least 1: 0 is taken as 1).
  explicit routing_key_book(std::size_t capacity = default_routing_key_capacity);

  /// Learns the signer key of `presented` (signer first, then its issuers; a root in it is
  /// ignored, as verify_peer does) at `now`, and returns who the book now holds the key for
  /// (the chain's signer, unless the book keeps a better entry for that key, as the class
  /// comment says). Accepted:
  /// - a node chain, checked exactly as a TLS peer's (verify_peer): issuer = false, or true
  ///   for an issuer node's own certificate of its issuer key (see the class comment);
  /// - one issuer certificate alone (verify_issuer, as revocations carry it): issuer = true,
  ///   node = the issuer's node name.
  /// Refusals (the book is unchanged): no_certificate (empty), bad_certificate (over
  /// max_routing_chain_certificates or max_routing_chain_bytes, checked before any verification; an
  /// issuer certificate followed by others; a CA leaf or a leaf without a node URI), verify_peer's
  /// and verify_issuer's (untrusted_chain, expired, not_yet_valid, name_constraint, revoked,
  /// foreign_mesh, not_an_issuer...), revoked (an issuer key in `revoked`), name_mismatch
  /// (an issuer key certified as another node; a key held for another node).
  [[nodiscard]] caf::expected<routing_signer> learn(const chain& presented,
                                                    const trust_bundle& bundle,
                                                    const revocation_set& revoked, time_point now);

  /// learn for a chain received as DER certificates (signer first): the count and the total
  /// size are checked before any certificate is parsed. Errors: as learn; bad_certificate
  /// for a certificate that does not parse.
  [[nodiscard]] caf::expected<routing_signer>
  learn(std::span<const std::vector<std::uint8_t>> presented_der, const trust_bundle& bundle,
        const revocation_set& revoked, time_point now);

  /// Checks the seal `sig` of `bytes` under `context` at `now`, in this order:
  /// invalid_argument (a context sign_routing would refuse; not counted: a caller's bug),
  /// bad_signature (empty or over max_routing_signature_bytes, before OpenSSL sees it),
  /// routing_unknown_key (the key id is not in the book: fetch its chain and learn it),
  /// revoked (the key or a key of its chain is in `revoked`), expired (past not_after),
  /// not_an_issuer (`context` is routing_policy_context and the key is not an issuer's: a
  /// policy never counts on a node key's signature, whatever the caller checks),
  /// bad_signature (it does not verify). Returns the signer; the caller still checks that
  /// it is the record's owner (routing_owner_context).
  [[nodiscard]] caf::expected<routing_signer>
  verify(std::string_view context, std::span<const std::uint8_t> bytes,
         const routing_signature& sig, const revocation_set& revoked, time_point now) const;

  /// The DER certificates `key_id` was learned with (signer first), to serve to a peer
  /// that lacks the key; std::nullopt when the key is not in the book.
  [[nodiscard]] std::optional<std::vector<std::vector<std::uint8_t>>>
  chain_of(const sha256_digest& key_id) const;

  /// Who `key_id` belongs to, when it is in the book (not checked against `now` or the
  /// revocations: verify does that).
  [[nodiscard]] std::optional<routing_signer> signer_of(const sha256_digest& key_id) const;

  /// True if `key_id` is in the book.
  [[nodiscard]] bool contains(const sha256_digest& key_id) const noexcept {
    return entries_.contains(key_id);
  }

  /// Number of keys held (at most capacity()).
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// Most keys held.
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  /// Drops every key that `revoked` revokes, or whose chain holds a revoked key; returns
  /// how many were dropped.
  std::size_t forget_revoked(const revocation_set& revoked);

  /// What the book counted so far.
  [[nodiscard]] const routing_key_counters& counters() const noexcept { return counters_; }

private:
  /// One learned key.
  struct entry {
    /// Who it is; signer.key_id is the map key.
    routing_signer signer;
    /// The public key (shared, never mutated).
    shared_handle<pkey_ptr> key;
    /// The DER certificates it was learned with, signer first (at most
    /// max_routing_chain_certificates, max_routing_chain_bytes in all).
    std::vector<std::vector<std::uint8_t>> chain_der;
    /// The SPKI SHA-256 of every certificate of the verified path (the signer's, its
    /// issuer's, the root's): revoking any of them withdraws the key.
    std::vector<sha256_digest> path_keys;
  };

  /// learn, the chain already bounded; `der` is its DER, in order.
  caf::expected<routing_signer> learn_checked(const chain& presented,
                                              std::vector<std::vector<std::uint8_t>> der,
                                              const trust_bundle& bundle,
                                              const revocation_set& revoked, time_point now);

  /// Inserts or merges `e` (verified) as the class comment says; returns the signer held.
  caf::expected<routing_signer> admit(entry e, time_point now);

  /// Removes the entry at `it` from both indexes.
  void erase(std::map<sha256_digest, entry>::iterator it);

  /// Most entries; at least 1.
  std::size_t capacity_;
  /// The keys, by key id; at most capacity_ entries.
  std::map<sha256_digest, entry> entries_;
  /// (not_after, key id) of every entry: the eviction order. Same size as entries_.
  std::set<std::pair<time_point, sha256_digest>> by_expiry_;
  /// Counted by const verify too: counting is not part of the book's observable state.
  mutable routing_key_counters counters_;
};

} // namespace starling::identity
