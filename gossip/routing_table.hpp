// The routing table every node agrees on, without a server: a state-based CRDT of
//   - owner records: the service instances of one node, written only by that node, versioned
//     by its counter (higher wins) and signed with its node key; a deregistration is a new
//     version without the instance, so instances need no tombstones;
//   - policy records: mesh-wide traffic splits, header routes, resilience settings and
//     authorization rules, one last-writer-wins register per (kind, service, name) under
//     hybrid logical clocks with the writer's node name breaking ties, each signed by a key
//     with issuer authority; a delete is a tombstone, collected after tombstone_ttl.
// Merge is commutative, associative and idempotent (tests/unit/gossip/routing_table_test.cpp
// checks it over many seeds): two nodes that have seen the same records hold the same table,
// whatever the order. Who may write what is decided by signatures checked through
// `routing_trust` (the agent plugs in the identity module's key book), never by a name a peer
// chose. Pure: no I/O, no clock reads; wall time (unix ms) is passed in. docs/routing.md.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "gossip/hlc.hpp"
#include "gossip/routing_errc.hpp"
#include "gossip/routing_snapshot.hpp"

namespace starling::gossip {

// -- records -----------------------------------------------------------------------------------

/// A signature over a record's canonical bytes: the signer's key id (SHA-256 of its
/// SubjectPublicKeyInfo, 32 bytes) and the signature. Both empty: unsigned (a mesh without
/// certificates). The signer's certificate chain travels apart (signer_chain).
struct routing_seal {
  std::string key_id;
  std::string signature;

  [[nodiscard]] bool empty() const noexcept { return key_id.empty() && signature.empty(); }
  friend bool operator==(const routing_seal&, const routing_seal&) = default;
};

/// A signer's certificate chain (DER, signer first), as peers hand it on so that a receiver
/// can learn the key a seal names.
struct signer_chain {
  std::string key_id;
  std::vector<std::string> certificates;
  friend bool operator==(const signer_chain&, const signer_chain&) = default;
};

/// One service instance as its owner registers it.
struct service_registration {
  /// DNS label: lowercase letters, digits, '-'; 1 to 63; not starting or ending with '-'.
  std::string service;
  /// Unique among the owner's instances of the service: [A-Za-z0-9._-], 1 to 64.
  std::string id;
  /// IP literal, or empty for the owner's advertised address.
  std::string address;
  /// 1 to 65535.
  std::uint16_t port = 0;
  service_protocol protocol = service_protocol::tcp;
  /// Sorted, distinct; at most max_tags of 1 to max_tag_bytes printable characters.
  std::vector<std::string> tags;
  /// [A-Za-z0-9._-], at most 32; may be empty.
  std::string version;
  /// 1 to 1000.
  std::uint32_t weight = 100;
  health_status health = health_status::none;
  /// Last check result text, at most max_check_text bytes.
  std::string last_check;

  friend bool operator==(const service_registration&, const service_registration&) = default;
};

/// The instances of one node: the CRDT entry keyed by the owner's name.
struct owner_record {
  std::string owner;
  /// The owner's counter; a higher version replaces a lower one. At least 1.
  std::uint64_t version = 0;
  /// When the owner wrote it (its HLC): how old it is (record_ttl).
  hlc_stamp stamp;
  /// Sorted by (service, id), distinct.
  std::vector<service_registration> instances;
  routing_seal seal;

  friend bool operator==(const owner_record&, const owner_record&) = default;
};

/// The kinds of mesh-wide policy.
enum class policy_kind : std::uint8_t {
  split = 1,      ///< weighted traffic split between versions (name empty)
  route = 2,      ///< header-match route (name: the rule's)
  resilience = 3, ///< timeouts and retries (name empty)
  authz = 4,      ///< authorization rule (name: the rule's)
};

/// "split", "route", "resilience", "authz".
[[nodiscard]] std::string_view to_string(policy_kind k) noexcept;

/// Which register a policy record writes.
struct policy_key {
  policy_kind kind = policy_kind::split;
  std::string service;
  /// The rule name for route and authz ([A-Za-z0-9._-], 1 to 64); empty for the others.
  std::string name;

  friend auto operator<=>(const policy_key&, const policy_key&) = default;
};

/// The value of a policy: none for a tombstone, else the kind's.
using policy_value = std::variant<std::monostate, std::vector<split_weight>, header_route,
                                  resilience_policy, authz_rule>;

/// One write of a policy register.
struct policy_record {
  policy_key key;
  /// The writer's HLC at the write; with `writer`, orders writes (last writer wins).
  hlc_stamp stamp;
  /// Node name of the issuer whose key signed it (checked against the seal).
  std::string writer;
  /// A delete: `value` holds std::monostate.
  bool deleted = false;
  policy_value value;
  routing_seal seal;

  friend bool operator==(const policy_record&, const policy_record&) = default;
};

// -- limits ------------------------------------------------------------------------------------

/// Bounds every record is checked against before anything is allocated for it or verified.
inline constexpr std::size_t max_instances_per_owner = 64;
inline constexpr std::size_t max_tags = 16;
inline constexpr std::size_t max_tag_bytes = 64;
inline constexpr std::size_t max_check_text = 200;
inline constexpr std::size_t max_split_versions = 16;
inline constexpr std::size_t max_authz_sources = 64;
inline constexpr std::size_t max_spiffe_id_bytes = 256;
inline constexpr std::size_t max_header_bytes = 128;
inline constexpr std::size_t max_seal_bytes = 160; ///< a signature (DER ECDSA P-256: ~72)
/// Largest circuit breaker cap a resilience policy may set.
inline constexpr std::uint32_t max_breaker_cap = 1'000'000;

/// bad unless `r` is a well-formed registration (names, port, weight, sizes). The error
/// (routing_errc::invalid_record) names the field.
[[nodiscard]] caf::error check_registration(const service_registration& r);

/// invalid_record unless `r` is well-formed: a node name of 1 to 128 characters, version
/// >= 1, at most max_instances_per_owner instances, each check_registration-valid, sorted
/// and distinct by (service, id), a seal of 0 or 32 key-id bytes and at most max_seal_bytes.
[[nodiscard]] caf::error check_owner_record(const owner_record& r);

/// invalid_record or invalid_policy unless `p` is well-formed: the key's service a DNS
/// label, its name as its kind needs, a value of the key's kind (none iff deleted), a split
/// of 1 to max_split_versions distinct versions whose weights sum to 100, a route with a
/// lowercase header name and a version, resilience values within bounds, authz sources that
/// are spiffe:// ids, a writer name, a seal as for owner records.
[[nodiscard]] caf::error check_policy_record(const policy_record& p);

/// The bytes an owner signs: every field of `r` but the seal, in a fixed layout.
[[nodiscard]] std::string canonical_bytes(const owner_record& r);
/// The bytes an issuer signs: every field of `p` but the seal, in a fixed layout.
[[nodiscard]] std::string canonical_bytes(const policy_record& p);

// -- trust -------------------------------------------------------------------------------------

/// What a seal signs: an owner's instances or a policy (domain separation is the trust's).
enum class routing_context : std::uint8_t { owner = 1, policy = 2 };

/// Who a verified seal belongs to.
struct routing_signer {
  /// Node name the key's certificate names.
  std::string node;
  /// The key has issuer authority (an issuer certificate the trust bundle vouches for).
  bool issuer = false;
};

/// Checks seals and keeps the signers' chains. The agent's implementation is the identity
/// module's key book (actors/); tests and the simulator use their own. Called on the
/// table's owner's thread only.
class routing_trust {
public:
  virtual ~routing_trust();

  /// False for a mesh without certificates: every record is taken unsigned, and any member
  /// may write anything (development only; docs/routing.md). Then verify is not called.
  [[nodiscard]] virtual bool requires_signatures() const = 0;

  /// Who signed `bytes` under `ctx` with `seal`, at wall time `wall_ms`. Errors:
  /// routing_errc::unknown_key when the key is not learned yet (the table keeps the
  /// record pending and asks for the chain), bad_signature (forged, revoked, expired).
  [[nodiscard]] virtual caf::expected<routing_signer> verify(routing_context ctx,
                                                             std::string_view bytes,
                                                             const routing_seal& seal,
                                                             std::uint64_t wall_ms) = 0;

  /// Learns a signer's chain (verified against the trust bundle). Errors: the chain's.
  [[nodiscard]] virtual caf::expected<routing_signer> learn(const signer_chain& chain,
                                                            std::uint64_t wall_ms) = 0;

  /// The chain of a learned key, to hand on to peers; nothing when unknown.
  [[nodiscard]] virtual std::optional<signer_chain> chain_of(std::string_view key_id) const = 0;
};

/// Signs this node's writes. The agent's uses its node key for owner records and its
/// issuer key (when it is an issuer) for policies.
class routing_sealer {
public:
  virtual ~routing_sealer();
  /// The seal of `bytes` under `ctx`. Errors: routing_errc::no_authority when this node
  /// holds no key for `ctx` (a policy on a node that is not an issuer).
  [[nodiscard]] virtual caf::expected<routing_seal> seal(routing_context ctx,
                                                         std::string_view bytes) = 0;
};

/// A routing_trust for a mesh without certificates: requires no signatures.
class open_routing_trust final : public routing_trust {
public:
  [[nodiscard]] bool requires_signatures() const override { return false; }
  [[nodiscard]] caf::expected<routing_signer> verify(routing_context, std::string_view,
                                                     const routing_seal&, std::uint64_t) override;
  [[nodiscard]] caf::expected<routing_signer> learn(const signer_chain&, std::uint64_t) override;
  [[nodiscard]] std::optional<signer_chain> chain_of(std::string_view) const override {
    return std::nullopt;
  }
};

// -- the table ---------------------------------------------------------------------------------

/// Tunables of a routing table.
struct routing_config {
  /// This node's name (the owner of its own record).
  std::string self;
  /// Received stamps further ahead of the local wall clock are refused (clock_skew).
  std::chrono::milliseconds max_clock_skew = default_max_clock_skew;
  /// Owner records older than this are dropped, and refused when received: an owner
  /// rewrites its record every record_ttl / 3, so only a node gone for good ages out, and
  /// no stale sync can bring its instances back after that.
  std::chrono::milliseconds record_ttl = std::chrono::hours{72};
  /// Policy tombstones are collected this long after the delete.
  std::chrono::milliseconds tombstone_ttl = std::chrono::hours{72};
  /// Distinct owners held at most (the membership's own bound).
  std::size_t max_owners = 65'536;
  /// Distinct policy keys held at most, tombstones included.
  std::size_t max_policies = 4'096;
  /// Records held while their signer's chain is fetched, at most.
  std::size_t max_pending = 256;
};

/// What merging one record did.
enum class merge_outcome : std::uint8_t {
  applied,   ///< new or newer: the table changed (spread it on)
  duplicate, ///< the very record held already
  stale,     ///< older than the record held (or a losing concurrent write)
  pending,   ///< its signer's key is not known yet: held until the chain arrives
  refused,   ///< invalid, unauthorized, forged, too far ahead, expired, or the table is full
};

/// A merge's outcome and, when refused, why.
struct merge_result {
  merge_outcome outcome = merge_outcome::refused;
  caf::error error;
};

/// Number of digest ranges: a key belongs to range hash(key) % digest_ranges.
inline constexpr std::size_t digest_ranges = 64;

/// A summary of a whole table: per range, an order-independent hash of its entries and
/// their count. Two tables with the same digest hold the same records (up to 64-bit hash
/// collisions); the ranges that differ are the ones to exchange.
struct routing_digest {
  std::array<std::uint64_t, digest_ranges> hashes{};
  std::array<std::uint32_t, digest_ranges> counts{};
  friend bool operator==(const routing_digest&, const routing_digest&) = default;
};

/// One entry as a sync request lists it: its key and its hash.
struct entry_summary {
  std::string key;
  std::uint64_t hash = 0;
  friend bool operator==(const entry_summary&, const entry_summary&) = default;
};

/// Counters of a routing table.
struct routing_table_stats {
  std::uint64_t applied = 0;         ///< records that changed the table
  std::uint64_t duplicates = 0;      ///< records already held
  std::uint64_t stale = 0;           ///< older records, losing concurrent writes
  std::uint64_t pending = 0;         ///< records held for a key's chain
  std::uint64_t pending_dropped = 0; ///< pending records dropped (bound, or chain refused)
  /// Refusals by routing_errc code (index = code; 0 unused).
  std::array<std::uint64_t, 16> refused{};
  std::uint64_t chains_learned = 0;
  std::uint64_t chains_refused = 0;
  std::uint64_t collected_owners = 0;     ///< owner records aged out (record_ttl)
  std::uint64_t collected_tombstones = 0; ///< tombstones aged out (tombstone_ttl)

  /// Sum of `refused`.
  [[nodiscard]] std::uint64_t refused_total() const noexcept;
};

/// How the snapshot learns about members: for a node name, whether it is alive (or
/// suspect) and its advertised host; nothing for a node membership does not know.
struct member_view {
  bool alive = false;
  std::string host;
};
using member_lookup = std::function<std::optional<member_view>(std::string_view node)>;

/// The routing table of one node. Single owner (the routing actor or a simulated node).
class routing_table {
public:
  /// `trust` checks every received record (shared with whoever learns chains for it).
  routing_table(routing_config cfg, std::shared_ptr<routing_trust> trust);

  // -- receiving -------------------------------------------------------------------------------

  /// Merges a received owner record at wall time `wall_ms`. Cheap checks first (shape,
  /// clock skew, age, newer than held), the signature last, so a duplicate or stale record
  /// costs no cryptography.
  [[nodiscard]] merge_result merge(const owner_record& r, std::uint64_t wall_ms);
  /// Merges a received policy record at wall time `wall_ms`; as above.
  [[nodiscard]] merge_result merge(const policy_record& p, std::uint64_t wall_ms);

  /// Learns a signer's chain, then merges the records pending on its key. Returns the
  /// records that it applied (to spread on). Errors: the chain's refusal (its pending
  /// records are dropped).
  [[nodiscard]] caf::expected<std::vector<std::variant<owner_record, policy_record>>>
  learn_chain(const signer_chain& chain, std::uint64_t wall_ms);

  /// Key ids of the pending records' signers (to ask a peer for their chains).
  [[nodiscard]] std::vector<std::string> wanted_keys() const;

  // -- writing (this node) -------------------------------------------------------------------

  /// Replaces this node's instances (validated, sorted; ids defaulted to the service name)
  /// with a new version signed by `sealer`, at wall time `wall_ms`. Returns the record to
  /// spread. Errors: invalid_record (duplicate (service, id) among them, too many, a bad
  /// field), the sealer's.
  [[nodiscard]] caf::expected<owner_record>
  set_instances(std::vector<service_registration> instances, std::uint64_t wall_ms,
                routing_sealer& sealer);

  /// True when this node's record should be rewritten to stay younger than record_ttl.
  [[nodiscard]] bool needs_refresh(std::uint64_t wall_ms) const noexcept;

  /// Makes this node's next version start above `version` (the last one it wrote before a
  /// restart, kept in the data dir).
  void restore_own_version(std::uint64_t version) noexcept;

  /// Writes policy `key` with `value` (std::monostate deletes it), signed by `sealer`.
  /// Checks beyond check_policy_record, which only a local write can make: a split or a
  /// route naming a version that no instance of the service has is refused
  /// (invalid_policy), and so is deleting a policy that does not exist. Errors: those,
  /// the sealer's (no_authority on a node that is not an issuer).
  [[nodiscard]] caf::expected<policy_record>
  set_policy(policy_key key, policy_value value, std::uint64_t wall_ms, routing_sealer& sealer);

  /// Drops owner records older than record_ttl and tombstones older than tombstone_ttl.
  /// Returns how many entries it dropped.
  std::size_t collect_garbage(std::uint64_t wall_ms);

  // -- reading ---------------------------------------------------------------------------------

  /// The record of `owner`, or null.
  [[nodiscard]] const owner_record* owner(std::string_view owner) const;
  /// The current write of `key` (a tombstone too), or null.
  [[nodiscard]] const policy_record* policy(const policy_key& key) const;
  /// All owner records, by owner name.
  [[nodiscard]] const std::map<std::string, owner_record, std::less<>>& owners() const noexcept {
    return owners_;
  }
  /// All policy records (tombstones included), by key.
  [[nodiscard]] const std::map<policy_key, policy_record>& policies() const noexcept {
    return policies_;
  }

  /// The table as readers see it: services with their instances (alive and address from
  /// `members`: an instance without its own address takes its node's host) and live
  /// (non-deleted) policies. `generation` is stamped on it.
  [[nodiscard]] routing_snapshot snapshot(const member_lookup& members,
                                          std::uint64_t generation) const;

  /// The digest of the whole table (kept up to date at every change).
  [[nodiscard]] const routing_digest& digest() const noexcept { return digest_; }
  /// One 64-bit hash of the digest: equal tables give equal hashes.
  [[nodiscard]] std::uint64_t table_hash() const noexcept;
  /// Records held (owners and policies, tombstones included).
  [[nodiscard]] std::size_t size() const noexcept { return owners_.size() + policies_.size(); }
  /// Grows with every change of the table (applied records, local writes, collections).
  [[nodiscard]] std::uint64_t changes() const noexcept { return changes_; }
  /// The ranges where `other` differs from this table's digest.
  [[nodiscard]] std::vector<std::uint32_t> differing_ranges(const routing_digest& other) const;
  /// The summaries of this table's entries in `ranges`.
  [[nodiscard]] std::vector<entry_summary>
  summaries(const std::vector<std::uint32_t>& ranges) const;
  /// The records of `ranges` that a peer holding `theirs` (its summaries of those ranges)
  /// lacks or holds differently, at most `max_bytes` of encoded size estimate.
  struct range_records {
    std::vector<owner_record> owners;
    std::vector<policy_record> policies;
    /// Not everything fitted max_bytes.
    bool truncated = false;
  };
  [[nodiscard]] range_records records_for(const std::vector<std::uint32_t>& ranges,
                                          const std::vector<entry_summary>& theirs,
                                          std::size_t max_bytes) const;

  /// The HLC of this table (policy stamps are observed into it).
  [[nodiscard]] const hybrid_clock& clock() const noexcept { return clock_; }
  [[nodiscard]] const routing_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const routing_table_stats& stats() const noexcept { return stats_; }
  [[nodiscard]] routing_trust& trust() noexcept { return *trust_; }

  /// The digest range of a key string (entry_summary::key).
  [[nodiscard]] static std::uint32_t range_of(std::string_view key) noexcept;
  /// The key string of an owner record / a policy record.
  [[nodiscard]] static std::string key_of(const owner_record& r);
  [[nodiscard]] static std::string key_of(const policy_key& k);
  /// The digest hash of a record (over its canonical bytes and its seal).
  [[nodiscard]] static std::uint64_t hash_of(const owner_record& r);
  [[nodiscard]] static std::uint64_t hash_of(const policy_record& p);

private:
  using any_record = std::variant<owner_record, policy_record>;

  merge_result refuse(caf::error err);
  merge_result hold_pending(any_record rec);
  /// Verifies the seal of a record that passed the cheap checks; the signer's authority
  /// (owner or issuer) is checked by the callers.
  caf::expected<routing_signer> verify(routing_context ctx, const std::string& bytes,
                                       const routing_seal& seal, std::uint64_t wall_ms);
  void put(owner_record r);
  void put(policy_record p);
  void digest_remove(const std::string& key, std::uint64_t hash);
  void digest_add(const std::string& key, std::uint64_t hash);

  routing_config cfg_;
  std::shared_ptr<routing_trust> trust_;
  hybrid_clock clock_;
  /// Owner records by owner. Invariant: each passed check_owner_record and its seal.
  std::map<std::string, owner_record, std::less<>> owners_;
  /// Policy records by key (tombstones included).
  std::map<policy_key, policy_record> policies_;
  /// Per-range XOR of hash_of over the entries above, and their counts.
  routing_digest digest_;
  /// Records waiting for their signer's chain, by key id; at most cfg_.max_pending in all.
  std::map<std::string, std::vector<any_record>> pending_;
  std::size_t pending_count_ = 0;
  /// This node's next version is above this (restore_own_version, and its own record).
  std::uint64_t own_version_floor_ = 0;
  /// See changes().
  std::uint64_t changes_ = 0;
  routing_table_stats stats_;
};

} // namespace starling::gossip
