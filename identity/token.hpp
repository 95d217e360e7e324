// Join tokens, as a pure core: the token's text form, the issuer's token store, and the
// ledger of tokens and spends that issuers gossip among themselves (a state-based CRDT).
// No I/O, no clock reads (every call takes `now`), randomness injected (random_source).
// See docs/decisions/0006-join-tokens.md for the format and the double-spend discussion.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

namespace starling::identity {

// -- values ---------------------------------------------------------------------------------

/// Wall-clock time in whole seconds since the Unix epoch: tokens carry absolute expiries, so
/// their time is system time, not steady time. The core never reads a clock.
using unix_time = std::chrono::sys_seconds;

/// The public half of a token: names its record in logs and in the ledger. Not secret.
using token_id = std::array<std::uint8_t, 8>;

/// The secret half of a token. Never logged, never stored: issuers keep only its SHA-256.
using token_secret = std::array<std::uint8_t, 16>;

/// A SHA-256 digest: the mesh root pin (of the root certificate's SubjectPublicKeyInfo DER)
/// or the hash of a token secret. The same alias as in pki.hpp (a redeclaration, allowed),
/// so that this pure header needs no certificate code.
using sha256_digest = std::array<std::uint8_t, 32>;

/// Prefix of a token's text form; the digit is the version of the binary layout.
constexpr std::string_view token_text_prefix = "stl1.";

/// Lifetime of a token when the operator gives no --ttl: short, as a token is a bearer secret.
constexpr std::chrono::seconds default_token_ttl = std::chrono::hours{1};

/// Uses of a token when the operator gives no --uses.
constexpr std::uint16_t default_token_uses = 1;

/// Longest lifetime `token_store::create` accepts.
constexpr std::chrono::seconds max_token_ttl = std::chrono::hours{24 * 7};

/// Most uses `token_store::create` accepts (and `decode` reads) for one token.
constexpr std::uint16_t max_token_uses = 1000;

/// Longest issuer node name a token carries (as identity::is_valid_node_name).
constexpr std::size_t max_token_issuer_size = 64;

/// How long `token_store::prune` keeps the record of an expired token: long enough that a late
/// attempt is refused as expired (not unknown) and that issuers with skewed clocks agree.
constexpr std::chrono::seconds token_prune_grace = std::chrono::hours{24};

/// A decoded join token. A bearer secret until spent or expired: never log it, log id_hex().
struct join_token {
  /// Random id; the key of the issuer's record.
  token_id id{};
  /// Random secret; its SHA-256 is in the issuer's record.
  token_secret secret{};
  /// The token is refused from this second on.
  unix_time expiry{};
  /// How many joins the token admits, 1 to max_token_uses.
  std::uint16_t uses = 0;
  /// SHA-256 of the mesh root's SubjectPublicKeyInfo DER: the joiner verifies the seed's
  /// chain against it, issuers refuse a token of another mesh.
  sha256_digest pin{};
  /// Node name of the issuer that created the token (a valid node name, at most 64 bytes): a
  /// seed that is not an issuer forwards the admission request there.
  std::string issuer;

  /// The id as 16 lowercase hex digits: the only part of a token fit for logs.
  [[nodiscard]] std::string id_hex() const;

  friend bool operator==(const join_token&, const join_token&) = default;
};

/// The text form: "stl1." + base64url without padding of the version-1 binary layout
/// (version byte 1, id, secret, expiry as big-endian u64, uses as big-endian u16, pin, issuer
/// name length as one byte, issuer name). Fails with invalid_argument if `token` has fields
/// `decode` would refuse (uses out of range, invalid issuer name, negative expiry).
[[nodiscard]] caf::expected<std::string> encode(const join_token& token);

/// Parses the text form. Untrusted input: never crashes, bounds every length, accepts exactly
/// one spelling of each token (canonical base64url) and fails with token_malformed naming the
/// reason otherwise.
[[nodiscard]] caf::expected<join_token> decode(std::string_view text);

/// SHA-256 of `in`. Errors: crypto_failure (OpenSSL's digest failed).
[[nodiscard]] caf::expected<sha256_digest> sha256_of(std::span<const std::uint8_t> in);

// -- randomness -----------------------------------------------------------------------------

/// A source of unpredictable bytes, injected so that the token core is deterministic in tests.
class random_source {
public:
  virtual ~random_source() = default;

  /// Fills all of `out`; fails with crypto_failure if no good randomness is available.
  [[nodiscard]] virtual caf::expected<void> fill(std::span<std::uint8_t> out) = 0;
};

/// The production random_source: OpenSSL's RAND_bytes (a CSPRNG). Thread-safe.
class openssl_random final : public random_source {
public:
  /// Fills `out` with RAND_bytes; fails with crypto_failure carrying OpenSSL's error queue.
  [[nodiscard]] caf::expected<void> fill(std::span<std::uint8_t> out) override;
};

// -- the ledger (gossiped among issuers) ------------------------------------------------------

/// One redemption of a token: by issuer `redeemer`, for one node (its key and name, hashed
/// into `use` by the issuer desk). A spend names what it admitted so that the same
/// redemption seen through two issuers counts once, and a retry by the same node (a grant
/// lost on the way) is not a second use.
struct token_spend {
  /// Node name of the redeeming issuer.
  std::string redeemer;
  /// What was admitted: SHA-256 of the key's SPKI digest and the node name.
  sha256_digest use{};

  friend auto operator<=>(const token_spend&, const token_spend&) = default;
  friend bool operator==(const token_spend&, const token_spend&) = default;
};

/// Most spends one ledger entry keeps (the smallest, so that replicas agree): above any
/// token's uses, so a token at its bound is exhausted everywhere.
constexpr std::size_t max_spends_per_token = 2 * std::size_t{max_token_uses};

/// What issuers know of one token: its record (immutable once created, signed by its
/// creator) and its spends.
struct token_entry {
  /// Node name of the creating issuer.
  std::string issuer;
  /// SHA-256 of the token's secret; the secret itself is never stored.
  sha256_digest secret_hash{};
  /// When the creating issuer made the token (for operators and `token list`).
  unix_time created{};
  /// As in the token: refused from this second on.
  unix_time expiry{};
  /// As in the token: how many joins it admits.
  std::uint16_t uses = 0;
  /// DER of the creating issuer's certificate, and that issuer key's signature over the
  /// record (identity/authority.hpp: seal_token_record, verify_token_record). Another
  /// issuer accepts a record only when it verifies (issue 13, finding 2). Empty only for a
  /// record read from a version-1 store and not sealed again yet.
  std::vector<std::uint8_t> seal_issuer;
  std::vector<std::uint8_t> seal_signature;
  /// Redemptions: a grow-only set merged by union (never fewer after a merge), at most
  /// max_spends_per_token (the smallest ones).
  std::set<token_spend> spends;

  /// Redemptions seen, over all issuers.
  [[nodiscard]] std::uint32_t spent() const noexcept {
    return static_cast<std::uint32_t>(spends.size());
  }

  /// True if some issuer already redeemed the token for `use` (token_spend::use).
  [[nodiscard]] bool spent_for(const sha256_digest& use) const noexcept;

  /// True if both entries describe the same token (every record field is equal; the seal
  /// and the spends are not compared).
  [[nodiscard]] bool same_record(const token_entry& other) const noexcept;

  friend bool operator==(const token_entry&, const token_entry&) = default;
};

/// Canonical bytes of a record (id and every record field, fixed layout): what the creating
/// issuer signs (identity/authority.hpp hashes them).
[[nodiscard]] std::vector<std::uint8_t> record_bytes(const token_id& id, const token_entry& e);

/// Every known token and its spends: a state-based CRDT (merge is commutative, associative
/// and idempotent, and never lowers a spend count), kept bounded by pruning entries past
/// their expiry and a grace period. Issuers exchange it so that a token spent at one is
/// refused at every other. Not thread-safe; owned by one actor.
class token_ledger {
public:
  /// Adds a new token's entry; false (and no change) if `id` is already known.
  bool insert(const token_id& id, token_entry entry);

  /// Counts one redemption of `id` by `redeemer` for key `use`; returns the new total, 0 if
  /// `id` is unknown. A spend already recorded changes nothing.
  std::uint32_t spend(const token_id& id, const std::string& redeemer, const sha256_digest& use);

  /// Sets the creator's seal of the record `id`; false if `id` is unknown.
  bool seal(const token_id& id, std::vector<std::uint8_t> issuer,
            std::vector<std::uint8_t> signature);

  /// Joins `remote` into this ledger. Per id: spends merge by union (bounded as
  /// max_spends_per_token says); the same record keeps this ledger's seal; two different
  /// records under one id (only a broken or hostile creator makes them, as records are
  /// signed) resolve to this ledger's when `self` created it (a record an issuer created is
  /// never replaced by another's copy), else deterministically to the smaller record, so
  /// that replicas converge.
  void merge(const token_ledger& remote, std::string_view self = {});

  /// Drops the entries whose expiry lies `grace` or more before `now`; returns how many.
  std::size_t prune(unix_time now, std::chrono::seconds grace);

  /// The entry of `id`, or nullptr.
  [[nodiscard]] const token_entry* find(const token_id& id) const;

  /// Every entry, ordered by id.
  [[nodiscard]] const std::map<token_id, token_entry>& entries() const noexcept { return entries_; }

  /// Canonical bytes of the whole ledger (every entry, seal and spend, in order): what an
  /// issuer signs when it sends its ledger (identity/authority.hpp, sign_ledger).
  [[nodiscard]] std::vector<std::uint8_t> canonical_bytes() const;

  friend bool operator==(const token_ledger&, const token_ledger&) = default;

private:
  /// Invariant: every entry satisfies token_entry's invariants.
  std::map<token_id, token_entry> entries_;
};

// -- the issuer's store ---------------------------------------------------------------------

/// A successful redemption.
struct redemption {
  /// The redeemed token.
  token_id id{};
  /// Which use this was, counting from 1 (as far as this issuer's ledger knows).
  std::uint32_t use = 0;
  /// Node name of the issuer that created the token.
  std::string issuer;
};

/// The tokens of one issuer node: creates them, redeems them, merges other issuers' ledgers,
/// persists across restarts. Pure: every input carries `now`. Not thread-safe: owned by the
/// admission actor of the node.
class token_store {
public:
  /// A store for issuer node `self`; fails with invalid_argument if it is no valid node name.
  [[nodiscard]] static caf::expected<token_store> make(std::string self);

  /// Creates a token valid for `ttl` from `now`, for `uses` joins, pinning the mesh root
  /// `pin`, and records it. Fails with invalid_argument if ttl is not in (0, max_token_ttl],
  /// uses not in [1, max_token_uses] or `now` before the epoch or past year 9999; with
  /// crypto_failure if `rng` fails or repeats an id.
  [[nodiscard]] caf::expected<join_token> create(unix_time now, std::chrono::seconds ttl,
                                                 std::uint16_t uses, random_source& rng,
                                                 const sha256_digest& pin);

  /// Redeems the token in `text` for one join of `use` (token_spend::use), given
  /// this mesh's root pin `pin`. Checks, in order: token_malformed, token_wrong_mesh,
  /// token_unknown, token_forged (secret hash or any field disagreeing with the record),
  /// token_expired (`now` >= expiry), token_exhausted (unless the token was already spent
  /// for `use`: a retry of the same node is not a second use). On success records the spend.
  [[nodiscard]] caf::expected<redemption>
  redeem(std::string_view text, unix_time now, const sha256_digest& pin, const sha256_digest& use);

  /// Sets the creator's seal of this issuer's record `id` (issuer_desk signs it). False if
  /// `id` is unknown.
  bool seal(const token_id& id, std::vector<std::uint8_t> issuer,
            std::vector<std::uint8_t> signature) {
    return ledger_.seal(id, std::move(issuer), std::move(signature));
  }

  /// Merges another issuer's ledger, then prunes at `now`. Only pass records whose seal
  /// verified (issuer_desk::merge_ledger checks them): a record admits whoever knows its
  /// secret. A record this issuer created is never replaced.
  void merge_spent(const token_ledger& remote, unix_time now);

  /// Drops records expired for token_prune_grace or longer; returns how many.
  std::size_t prune(unix_time now);

  /// The ledger, to gossip to the other issuers.
  [[nodiscard]] const token_ledger& ledger() const noexcept { return ledger_; }

  /// This issuer's node name.
  [[nodiscard]] const std::string& self() const noexcept { return self_; }

  /// The persisted text form (version 2, line based, no secrets): every record with its
  /// seal, and every spend.
  [[nodiscard]] std::string serialize() const;

  /// Restores a store of issuer `self` from serialize()'s output, or from a version-1 store
  /// (spend counts per redeemer become that many spends under derived keys; records come
  /// unsealed: issuer_desk::open seals its own again). All or nothing: any malformed,
  /// truncated or out-of-range line fails with invalid_argument naming the line.
  [[nodiscard]] static caf::expected<token_store> deserialize(std::string_view text,
                                                              std::string self);

private:
  explicit token_store(std::string self) : self_(std::move(self)) {}

  /// This node's name (valid node name): the slot its redemptions count in.
  std::string self_;
  /// Every known token, created here or learned from other issuers.
  token_ledger ledger_;
};

} // namespace starling::identity
