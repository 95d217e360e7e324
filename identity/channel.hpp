// The node's identity channel (proto/admission.proto, docs/decisions/0008): requests and
// answers that travel over TLS on the gossip TCP port, opaque to the transport. Two kinds
// today: admission (identity/admission.hpp has its encoders and decoders; they are defined
// in channel.cpp with the rest of the wire) and sync, the anti-entropy of revocation
// statements among all members and of the token ledger among issuers. Pure: bytes in,
// values out; no I/O, no clock reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/admission.hpp"
#include "identity/authority.hpp"
#include "identity/revocation.hpp"
#include "identity/token.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

/// Bound on an encoded sync request or response: under the gossip transport's 16 MiB frame
/// (gossip::codec_limits::max_frame), with room for max_revocations statements (about
/// 0.8 KiB each with their issuer certificate) and max_sync_tokens ledger entries (about
/// 0.8 KiB each with their creator's seal; a token's spends add 0.05 KiB each).
inline constexpr std::size_t max_sync_bytes = std::size_t{15} << 20;
/// Bound on the ledger entries of one sync message.
inline constexpr std::size_t max_sync_tokens = 16'000;

/// What each side of a sync sends: the same content in both directions.
struct sync_message {
  /// Every revocation statement the sender holds (at most max_revocations), unverified
  /// until the receiver checks each one.
  std::vector<revocation> revocations;
  /// The sender's token ledger: issuers only, sent to a peer they believe is an issuer.
  std::optional<token_ledger> ledger;
  /// The sender's issuer seal over `ledger` for the receiver (sign_ledger): its issuer
  /// certificate, time and signature. The receiver merges the ledger only once
  /// verify_ledger accepted it, and each record only with its creator's seal.
  issuer_seal ledger_seal;
  /// With `ledger`: the sender's own issued list (covered by `ledger_seal`), at most
  /// max_shared_issued records; the receiver refuses a name certified there for another
  /// key (issuer_desk::learn_issued).
  std::vector<issued_certificate> issued;
  /// revocation_log::digest of the sender's statements (whether it sends them or not). A
  /// server answers a request whose digest equals its own without statements. Decoding: a
  /// digest of another size than 32 bytes is ignored (std::nullopt) and counted in
  /// `malformed`.
  std::optional<sha256_digest> digest;
  /// Decoding only: statements and ledger entries dropped because they could not even be
  /// represented (a key of the wrong size...). Counted by the receiver with the refusals.
  std::size_t malformed = 0;
};

/// A change of the gossip keyring that an issuer pushes to every member (`starling keyring
/// install|use|remove` for the mesh, docs/decisions/0010).
struct keyring_change {
  /// "install", "use" or "remove".
  std::string op;
  /// install: the base64 key (a secret: never logged); use, remove: a key or a key id.
  std::string key;
  /// The sending issuer's seal over op, key and the receiving member (sign_keyring_change):
  /// a member applies the change only once verify_keyring_change accepted it.
  issuer_seal seal;
};

/// Bound on keyring_change::key (a base64 key is 44 bytes, an id 16).
inline constexpr std::size_t max_keyring_key_bytes = 256;

/// What a client asked on the identity channel.
using identity_request =
    std::variant<admission_request, sync_message, renewal_request, endorse_request, keyring_change>;

/// Decodes an untrusted IdentityRequest of any kind. bad_request for more than
/// max_sync_bytes (or an admission or renewal request over max_admission_bytes), unparsable
/// protobuf, a version other than 1, no body or a kind this node does not know (a later
/// version's request), for an admission request the refusals of decode_admission_request,
/// for a renewal request an invalid node name, a CSR or chain that does not parse, for an
/// endorse request (at most max_admission_bytes) an invalid node name, a CSR that does not
/// parse, no token, for a keyring change (at most max_admission_bytes) an op other than
/// install, use or remove, an empty key or one over max_keyring_key_bytes, an issuer
/// certificate over max_revocation_issuer_bytes. A sync
/// request with more than max_revocations statements or max_sync_tokens tokens is refused
/// whole; single statements or entries that cannot be represented are dropped and counted
/// in `malformed`.
[[nodiscard]] caf::expected<identity_request> decode_identity_request(std::string_view bytes);

/// Encodes an IdentityRequest carrying a SyncRequest. Errors: invalid_argument (more than
/// max_revocations statements, max_sync_tokens tokens, or max_sync_bytes in all).
[[nodiscard]] caf::expected<std::string> encode_sync_request(const sync_message& msg);

/// Encodes an IdentityResponse carrying a SyncResponse. Errors: as encode_sync_request.
[[nodiscard]] caf::expected<std::string> encode_sync_response(const sync_message& msg);

/// Decodes an untrusted IdentityResponse that must carry a SyncResponse; refusals as for
/// decode_identity_request.
[[nodiscard]] caf::expected<sync_message> decode_sync_response(std::string_view bytes);

/// Bound on the reason of a refusal (IdentityRefusal.reason): longer ones are cut when encoded and
/// refused when decoded.
inline constexpr std::size_t max_refusal_reason_bytes = 4096;

/// Encodes an IdentityResponse carrying an IdentityRefusal: `err`'s category and code (what the
/// asker decides on) and its context text (cut at max_refusal_reason_bytes). `err` must be
/// an error.
[[nodiscard]] std::string encode_refusal(const caf::error& err);

/// The refusal an untrusted IdentityResponse carries, as the refusing node's error
/// (category, code, reason as its context); nothing when `bytes` is no refusal (any
/// other answer, or bytes that do not parse: the caller's decoder says why). A refusal
/// with a category that is no CAF atom, a code outside 1..255 or a reason over
/// max_refusal_reason_bytes is bad_request. Every decode_*_response / decode_*_grant /
/// decode_keyring_answer returns this error when the answer is a refusal.
[[nodiscard]] std::optional<caf::error> decode_refusal(std::string_view bytes);

/// True for a refusal of an admission that asking again cannot change: the tokens are
/// malformed, unknown, forged, expired, spent or for another mesh, or too few issuers
/// endorse (quorum_not_met). Decided on the code, never on the text. An unreachable seed
/// or issuer, a timeout, a name held by a live member: false (worth a retry).
[[nodiscard]] bool is_final_admission_refusal(const caf::error& err) noexcept;

/// Encodes an IdentityRequest carrying a KeyringRequest. Errors: invalid_argument (an op
/// other than install, use or remove).
[[nodiscard]] caf::expected<std::string> encode(const keyring_change& change);

/// Encodes an IdentityResponse carrying a KeyringResponse for key id `id`.
[[nodiscard]] std::string encode_keyring_answer(std::string_view id);

/// Decodes an untrusted IdentityResponse that must carry a KeyringResponse: its key id.
/// bad_request for more than max_admission_bytes, unparsable protobuf, a version other
/// than 1, another kind, an id that is not 16 hex digits.
[[nodiscard]] caf::expected<std::string> decode_keyring_answer(std::string_view bytes);

} // namespace starling::identity
