// Admission (DESIGN.md "Trust model", steps 2-3; docs/decisions/0008): what an issuer node
// holds, a node's own credentials in its data dir, the issuer's side of an admission
// (redeem the token, sign the CSR) and the joiner's check of what it receives. Pure and
// I/O-free except for the files named here; the actors carry the bytes over TLS.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/endorsement.hpp"
#include "identity/pki.hpp"
#include "identity/token.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

// -- an issuer node's material ----------------------------------------------------------------

/// What `starling agent --issuer DIR` loads: the output of `starling ca issuer`.
struct issuer_material {
  private_key key;
  certificate cert;
  /// The roots the issuer trusts (bundle.crt); `cert` chains to one of them.
  trust_bundle bundle;
  /// The mesh (the bundle's).
  std::string mesh;
  /// The node name the issuer certificate names (spiffe://<mesh>/node/<node>).
  std::string node;
  /// Pin of the root `cert` chains to (what this issuer's tokens carry).
  sha256_digest pin{};
};

/// Loads <dir>/issuer.key, <dir>/issuer.crt and <dir>/bundle.crt and checks them at `now`:
/// the key matches the certificate, the certificate is a CA signed by a root of the bundle
/// and valid at `now`, and names a node of the bundle's mesh. Errors name the file:
/// io_failure (missing, unreadable), invalid_argument (not PEM, a key that does not match,
/// not an issuer certificate, a certificate of no root of the bundle), expired /
/// not_yet_valid.
[[nodiscard]] caf::expected<issuer_material> load_issuer(const std::filesystem::path& dir,
                                                         time_point now);

// -- a node's own credentials ----------------------------------------------------------------

/// A node's key, the chain it presents, and the roots it trusts.
struct node_credentials {
  private_key key;
  /// Leaf first, then its issuer.
  chain certs;
  trust_bundle bundle;
};

/// File names in the data dir.
inline constexpr std::string_view node_key_file = "node.key";      // 0600
inline constexpr std::string_view node_chain_file = "node.crt";    // leaf, then issuer
inline constexpr std::string_view node_bundle_file = "bundle.crt"; // roots

/// Loads the credentials stored in `data_dir`. std::nullopt when none are stored (no
/// node.key, no node.crt and no bundle.crt). Errors name the file: io_failure, or
/// invalid_argument for a partial set (some files missing), unparsable PEM, a key that
/// does not match the leaf, an empty chain. Expiry is not checked here (the caller decides
/// whether to renew).
[[nodiscard]] caf::expected<std::optional<node_credentials>>
load_node_credentials(const std::filesystem::path& data_dir);

/// Stores `creds` in `data_dir` (created 0700 if missing), each file replaced atomically,
/// the key 0600. Errors: io_failure naming the file, crypto_failure (encoding).
[[nodiscard]] caf::error store_node_credentials(const std::filesystem::path& data_dir,
                                                const node_credentials& creds);

/// An issuer node's own node certificate: a CSR for `key` naming `node`, signed by the
/// issuer (sign_node), with the issuer's bundle. Errors: as make_csr and sign_node.
[[nodiscard]] caf::expected<node_credentials>
self_issue(const issuer_material& issuer, std::string_view node, const private_key& key,
           time_point now, std::chrono::seconds validity = node_validity);

// -- the wire (proto/admission.proto) --------------------------------------------------------
// Admission is one kind of request of the node's identity channel: these messages travel
// inside IdentityRequest / IdentityResponse. Their encoders and decoders are defined in
// identity/channel.cpp with the rest of the channel's wire (channel.hpp also decodes a
// request of any kind).

/// Bounds on what an admission message may carry (untrusted input).
inline constexpr std::size_t max_admission_bytes = 64 * 1024;
inline constexpr std::size_t max_admission_tokens = 16;

/// What a joiner asks for.
struct admission_request {
  /// The node name asked for.
  std::string name;
  /// CSR for the joiner's key: make_csr(key, mesh, name).
  certificate_request csr;
  /// Join tokens (their text), one per issuer asked to endorse; at least one. The issuer
  /// of the first signs; a seed turns the others into `endorsements` before it forwards the
  /// request (then only the first token travels on).
  std::vector<std::string> tokens;
  /// Endorsements of the CSR's key for `name` by the issuers of the other tokens (admission
  /// quorum, identity/endorsement.hpp), collected by the seed; at most max_admission_quorum.
  std::vector<endorsement> endorsements{};
};

/// What a seed asks the issuer of one of a joiner's further tokens (admission quorum): redeem
/// `token` and endorse the CSR's key for `name`. Sent over mutual TLS by a member only.
struct endorse_request {
  /// The node name asked for.
  std::string name;
  /// The joiner's CSR (its key is what is endorsed; its names must ask for `name`).
  certificate_request csr;
  /// The join token (its text) made by the endorsing issuer.
  std::string token;
};

/// What an issuer answers.
struct admission_grant {
  /// The new node certificate, then its issuer.
  chain certs;
  /// The mesh's roots.
  trust_bundle bundle;
  /// The gossip keyring in the <data-dir>/keyring text form; empty if the mesh has none.
  /// A secret: never logged.
  std::string keyring;
  /// Node name of the issuer that signed.
  std::string issuer;
};

/// Encodes an IdentityRequest carrying an AdmissionRequest. Errors: crypto_failure (CSR
/// encoding).
[[nodiscard]] caf::expected<std::string> encode(const admission_request& req);

/// Decodes an untrusted IdentityRequest that must carry an AdmissionRequest: bad_request for
/// more than max_admission_bytes, unparsable protobuf, a version other than 1, another kind
/// of request, an invalid node name, no token or more than max_admission_tokens, an
/// unparsable CSR, more than max_admission_quorum endorsements or one that cannot be
/// represented (a key that is not 32 bytes, an oversized issuer or signature). The
/// endorsements are not verified here.
[[nodiscard]] caf::expected<admission_request> decode_admission_request(std::string_view bytes);

/// Encodes an IdentityResponse carrying an AdmissionResponse. Errors: crypto_failure (PEM
/// encoding).
[[nodiscard]] caf::expected<std::string> encode(const admission_grant& grant);

/// Decodes an untrusted IdentityResponse that must carry an AdmissionResponse: bad_request
/// for the same kinds of fault (size, protobuf, version, another kind, PEM that does not
/// parse, an empty chain or bundle).
[[nodiscard]] caf::expected<admission_grant> decode_admission_grant(std::string_view bytes);

/// Encodes an IdentityRequest carrying an EndorseRequest. Errors: crypto_failure (CSR).
[[nodiscard]] caf::expected<std::string> encode(const endorse_request& req);

/// Encodes an IdentityResponse carrying an EndorseResponse. Errors: invalid_argument (a
/// malformed endorsement).
[[nodiscard]] caf::expected<std::string> encode(const endorsement& e);

/// Decodes an untrusted IdentityResponse that must carry an EndorseResponse: bad_request for
/// more than max_admission_bytes, unparsable protobuf, a version other than 1, another
/// kind, no endorsement, a key of the wrong size. The endorsement is not verified here.
[[nodiscard]] caf::expected<endorsement> decode_endorse_response(std::string_view bytes);

/// The joiner's check of a grant before storing it: the bundle holds the root pinned by
/// its token (`pin`), the chain verifies against that bundle at `now` and names `name`,
/// the leaf certifies `key` (not someone else's), and it is vouched for by at least `quorum`
/// issuers (check_quorum). Returns the credentials to store. Errors: bad_request (bundle
/// without the pinned root, a leaf for another key), the verify_peer refusals
/// (untrusted_chain, name_mismatch, expired...), quorum_not_met.
[[nodiscard]] caf::expected<node_credentials>
accept_grant(const admission_grant& grant, const private_key& key, std::string_view name,
             const sha256_digest& pin, time_point now, std::size_t quorum = 1);

// -- renewal ---------------------------------------------------------------------------------

/// What a member asks an issuer for when its certificate is past 2/3 of its life: a new
/// certificate for the same key (docs/decisions/0008, "Renewal").
struct renewal_request {
  /// The asking node; the issuer requires it to be the TLS-verified peer.
  std::string name;
  /// CSR for the node's current key: make_csr(key, mesh, name).
  certificate_request csr;
  /// The node's current chain (leaf first): proves that the mesh certified the CSR's key
  /// for `name` and that the certificate is still valid and not revoked.
  chain current;
};

/// What an issuer answers to a renewal.
struct renewal_grant {
  /// The new node certificate, then its issuer.
  chain certs;
  /// Node name of the issuer that signed.
  std::string issuer;
};

/// Encodes an IdentityRequest carrying a RenewalRequest. Errors: crypto_failure (encoding).
[[nodiscard]] caf::expected<std::string> encode(const renewal_request& req);

/// Encodes an IdentityResponse carrying a RenewalResponse. Errors: crypto_failure.
[[nodiscard]] caf::expected<std::string> encode(const renewal_grant& grant);

/// Decodes an untrusted IdentityResponse that must carry a RenewalResponse: bad_request for
/// more than max_admission_bytes, unparsable protobuf, a version other than 1, another
/// kind, a chain that does not parse or is empty, an invalid issuer name.
[[nodiscard]] caf::expected<renewal_grant> decode_renewal_grant(std::string_view bytes);

/// The check shared by both ends of admission and renewal: `certs` verifies against
/// `bundle` and `revoked` at `now`, names node `name`, and its leaf certifies the key whose
/// SubjectPublicKeyInfo hashes to `key`. Errors: the verify_peer refusals (untrusted_chain,
/// name_mismatch, expired, revoked...), bad_request (a leaf for another key).
[[nodiscard]] caf::expected<peer_identity>
check_chain_for(const chain& certs, const trust_bundle& bundle, const revocation_set& revoked,
                time_point now, std::string_view name, const sha256_digest& key);

/// The renewing node's check of a grant before storing it: check_chain_for against the
/// node's own bundle, name and key, and check_quorum with `quorum`. Returns the credentials
/// to store: `current`'s key and bundle with the new chain. Errors: as check_chain_for,
/// quorum_not_met.
[[nodiscard]] caf::expected<node_credentials>
accept_renewal(const renewal_grant& grant, const node_credentials& current, std::string_view name,
               time_point now, const revocation_set& revoked = {}, std::size_t quorum = 1);

// -- the issuer's side -----------------------------------------------------------------------

/// A node certificate an issuer signed: what `starling revoke NODE` revokes.
struct issued_certificate {
  /// The node it names.
  std::string node;
  /// SHA-256 of its SubjectPublicKeyInfo (the revocation key).
  sha256_digest key{};
  /// Its notAfter; the record is dropped once it has passed.
  unix_time not_after{};

  friend bool operator==(const issued_certificate&, const issued_certificate&) = default;
};

/// Who holds which node names, as an issuer knows at an admission (issue 13, finding 1): a
/// joiner may not take a name an issuer or a live member holds.
struct name_holders {
  /// Node names of the mesh's issuers this node knows of (signers of verified statements,
  /// ledger records and endorsements; members that say they are issuers). The desk's own
  /// name is always taken.
  std::set<std::string> issuers;
  /// Members alive or suspect in this node's view of the membership.
  std::set<std::string> live;
};

/// Canonical bytes of an issued list (what sign_ledger covers with the ledger).
[[nodiscard]] std::vector<std::uint8_t> issued_bytes(const std::vector<issued_certificate>& issued);

/// Bound on the issued records another issuer may share in one sync.
inline constexpr std::size_t max_shared_issued = 50'000;

/// The issuer's side of admission: tokens created here, redemptions, signing, and the list
/// of the certificates it signed. Not thread-safe: owned by the node's identity actor.
/// Every change to the token store is persisted (tokens_file, atomic replace) before the
/// call returns its result, so a spend is never lost to a crash after a certificate went
/// out; so is the issued list (issued_file), so that a restarted issuer can still revoke
/// what it signed.
class issuer_desk {
public:
  /// Opens the desk of `issuer`, restoring the token store from `tokens_file` and the issued
  /// list from `issued_file` when they exist (a corrupt file is an error, never silently
  /// reset: invalid_argument naming it).
  [[nodiscard]] static caf::expected<issuer_desk> open(issuer_material issuer,
                                                       std::filesystem::path tokens_file,
                                                       std::filesystem::path issued_file);

  /// `starling token create`: a token for `uses` joins valid for `ttl`, pinned to this
  /// issuer's root. Returns its text. Errors: as token_store::create, io_failure.
  [[nodiscard]] caf::expected<std::string> create_token(time_point now, std::chrono::seconds ttl,
                                                        std::uint16_t uses, random_source& rng);

  /// Admits `req` with its first token, which must be redeemable here (created here, or
  /// known from the gossiped ledger): redeems it, then signs the CSR for req.name (valid
  /// for `validity`, capped at the issuer's expiry) and records the certificate in the
  /// issued list. The grant's keyring is left empty (the caller adds it).
  ///
  /// Quorum: every endorsement of req.endorsements is checked (verify_endorsement, for the
  /// CSR's key and req.name, issuer key not revoked); this issuer and the distinct issuers
  /// of the endorsements that pass must number at least `quorum`, else quorum_not_met and
  /// the token is not spent. When req carries endorsements, the leaf carries them all in
  /// the endorsements extension, with this issuer's own endorsement added (so that a
  /// renewal by any issuer keeps the count).
  ///
  /// Names: req.name must be free (check_name: name_taken otherwise, before the token is
  /// looked at).
  ///
  /// Errors: revoked (the CSR's key is in `revoked`; the token is not spent), name_taken,
  /// quorum_not_met, the redemption refusals (token_malformed, token_wrong_mesh,
  /// token_unknown, token_forged, token_expired, token_exhausted), bad_request (CSR), and
  /// io_failure if the spend or the issued list cannot be persisted (then no certificate is
  /// issued).
  [[nodiscard]] caf::expected<admission_grant> admit(const admission_request& req, time_point now,
                                                     const revocation_set& revoked = {},
                                                     std::chrono::seconds validity = node_validity,
                                                     std::size_t quorum = 1,
                                                     const name_holders& holders = {});

  /// name_taken unless node name `name` is free for the key `key` at `now`: it is not this
  /// issuer's or another issuer's of `holders`, no member holds it alive or suspect (unless
  /// this issuer certified `key` for it: the same node again), and no issuer this one knows
  /// of (itself, and those that shared their issued lists: learn_issued) signed a
  /// certificate for it that is still valid for another key and not in `revoked`. A name
  /// whose old key is revoked or expired is free again.
  [[nodiscard]] caf::error check_name(std::string_view name, const sha256_digest& key,
                                      time_point now, const revocation_set& revoked,
                                      const name_holders& holders) const;

  /// Endorses the CSR's key for req.name with req.token, which must be redeemable here:
  /// checks the CSR (check_csr for this issuer's mesh and req.name), redeems the token, and
  /// records the key in the issued list (as a certificate valid for `validity`, so that
  /// `starling revoke NODE` here finds it). Errors: revoked (the token is not spent),
  /// bad_request (CSR), name_taken (check_name), the redemption refusals, io_failure (then
  /// nothing goes out).
  [[nodiscard]] caf::expected<endorsement> endorse(const endorse_request& req, time_point now,
                                                   const revocation_set& revoked = {},
                                                   std::chrono::seconds validity = node_validity,
                                                   const name_holders& holders = {});

  /// Renews the certificate of member `peer` (its TLS-verified name): signs req.csr for
  /// req.name (valid for `validity`, capped at the issuer's expiry) and records it in the
  /// issued list. No token is involved. The endorsements of the current leaf are copied
  /// into the new one (they endorse the key, which a renewal keeps). Refusals, in this
  /// order: name_mismatch (req.name is not `peer`), bad_request (no CSR, no chain), revoked
  /// (the CSR's key is in `revoked`), check_chain_for's (req.current must be a valid chain
  /// of the mesh for req.name that certifies the CSR's key: the key is never changed by a
  /// renewal), check_quorum's for req.current with `quorum`, sign_node's, and io_failure
  /// if the issued list cannot be persisted (then no certificate goes out).
  [[nodiscard]] caf::expected<renewal_grant> renew(const renewal_request& req,
                                                   std::string_view peer, time_point now,
                                                   const revocation_set& revoked = {},
                                                   std::chrono::seconds validity = node_validity,
                                                   std::size_t quorum = 1);

  /// The keys of the certificates this issuer signed for `node` that have not expired at
  /// `now`, oldest first.
  [[nodiscard]] std::vector<sha256_digest> keys_issued_to(std::string_view node,
                                                          time_point now) const;

  /// Takes `list` as what issuer `issuer` has signed (its whole issued list, as it shared it
  /// in a verified sync), replacing what was known of it; expired records are dropped, and
  /// at most max_shared_issued kept. Held in memory: the next sync after a restart brings
  /// it back. This issuer's own list is never replaced.
  void learn_issued(const std::string& issuer, std::vector<issued_certificate> list,
                    time_point now);

  /// Every certificate signed here and not yet pruned (expired ones go at the next write).
  [[nodiscard]] const std::vector<issued_certificate>& issued() const noexcept { return issued_; }

  /// Merges the ledger another issuer sent (its seal checked by the caller: verify_ledger)
  /// and persists. Each record not known here with the same seal must carry the seal of
  /// the issuer that created it (verify_token_record); the others are dropped. Returns how
  /// many records were dropped. Errors: io_failure.
  [[nodiscard]] caf::expected<std::size_t> merge_ledger(const token_ledger& remote, time_point now);

  [[nodiscard]] const token_store& tokens() const noexcept { return store_; }
  [[nodiscard]] const issuer_material& material() const noexcept { return issuer_; }

private:
  issuer_desk(issuer_material issuer, std::filesystem::path tokens_file,
              std::filesystem::path issued_file, token_store store,
              std::vector<issued_certificate> issued);
  [[nodiscard]] caf::error persist() const;
  /// Signs `csr` (whose key is `key`) for `node` with the `extra` extensions, then records
  /// the certificate (record_issued) before the chain is returned. Errors: sign_node's,
  /// io_failure (then the list is unchanged).
  [[nodiscard]] caf::expected<chain> sign_and_record(const certificate_request& csr,
                                                     const std::string& node,
                                                     const sha256_digest& key, time_point now,
                                                     std::chrono::seconds validity,
                                                     const std::vector<raw_extension>& extra = {});
  /// Appends (node, key, until) to the issued list, dropping records expired at `now`, and
  /// persists the list. Errors: io_failure (then the list is unchanged).
  [[nodiscard]] caf::error record_issued(const std::string& node, const sha256_digest& key,
                                         time_point until, time_point now);
  /// The endorsements extension a leaf for `key` of `node` carries: `endorsed` (verified,
  /// one per issuer, not this one's) and this issuer's own endorsement, at most
  /// max_admission_quorum; none when `endorsed` is empty. Errors: crypto_failure.
  [[nodiscard]] caf::expected<std::vector<raw_extension>>
  endorsements_extension(std::vector<endorsement> endorsed, const sha256_digest& key,
                         const std::string& node, time_point now) const;

  issuer_material issuer_;
  std::filesystem::path tokens_file_;
  std::filesystem::path issued_file_;
  /// Mirrors tokens_file_ (memory never holds a spend the file lacks).
  token_store store_;
  /// Mirrors issued_file_, in signing order.
  std::vector<issued_certificate> issued_;
  /// What other issuers shared of their issued lists, by issuer node name.
  std::map<std::string, std::vector<issued_certificate>> known_issued_;
};

/// The issued list's text form (versioned, line based):
///   starling-issued 1
///   issued <node> <key hex64> <not_after unix seconds>
///   end <number of issued lines>
[[nodiscard]] std::string serialize_issued(const std::vector<issued_certificate>& issued);

/// Reads serialize_issued's output. All or nothing: invalid_argument naming the line.
[[nodiscard]] caf::expected<std::vector<issued_certificate>>
deserialize_issued(std::string_view text);

} // namespace starling::identity
