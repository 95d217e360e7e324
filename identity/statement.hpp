// Internal to the identity module: what the two kinds of signed statements share. A
// revocation ("key K of node N is revoked", identity/revocation.hpp) and an endorsement
// ("key K is node N's", identity/endorsement.hpp) have the same shape: a key, a node, a
// time, the issuer certificate (DER) and the issuer key's signature over a canonical
// encoding that starts with a context string of the kind, so that a signature of one kind
// is never valid as one of the other. Pure: no I/O, no clock reads.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/endorsement.hpp"
#include "identity/pki.hpp"
#include "identity/revocation.hpp"
#include "identity/token.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

struct issuer_material;

/// `t` in whole seconds (how statements, tokens and certificates store time).
[[nodiscard]] inline unix_time unix_seconds(time_point t) {
  return std::chrono::floor<std::chrono::seconds>(t);
}

/// A kind of signed statement.
struct statement_kind {
  /// Starts every signed encoding of the kind (domain separation).
  std::string_view context;
  /// What messages call one, with its article: "a revocation", "an endorsement".
  std::string_view name;
};

/// The fields of one statement, borrowed from a revocation or an endorsement (which must
/// outlive the view).
struct statement_view {
  statement_kind kind;
  sha256_digest key{};
  std::string_view node;
  unix_time at{};
  std::span<const std::uint8_t> issuer;
  std::span<const std::uint8_t> signature;
};

/// The fields of a revocation (defined in identity/revocation.cpp, under the context
/// "starling-revocation-1").
[[nodiscard]] statement_view view_of(const revocation& stmt);

/// The fields of an endorsement (defined in identity/endorsement.cpp, under the context
/// "starling-endorsement-1").
[[nodiscard]] statement_view view_of(const endorsement& e);

/// The canonical bytes an issuer signs: the kind's context, a 0 byte, the key (32 bytes),
/// the node name's length (1 byte) and bytes, the time (8 bytes, big-endian two's
/// complement), and the SHA-256 of the issuer certificate's DER (binds the statement to the
/// certificate that travels with it). `s.signature` is not part of it.
[[nodiscard]] std::vector<std::uint8_t> signed_bytes(const statement_view& s);

/// What signing adds to a statement's key, node and time.
struct statement_seal {
  /// DER of the signing issuer's certificate.
  std::vector<std::uint8_t> issuer;
  /// ECDSA-SHA256 signature by the issuer's key over signed_bytes.
  std::vector<std::uint8_t> signature;
};

/// Signs the statement of `s`'s kind, key, node and time by `issuer` (`s.issuer` and
/// `s.signature` are ignored). Errors: crypto_failure.
[[nodiscard]] caf::expected<statement_seal> seal_statement(const issuer_material& issuer,
                                                           const statement_view& s);

/// `s` (a revocation or an endorsement whose key, node and time are set) signed by `issuer`:
/// seal_statement's issuer certificate and signature put in. Errors: crypto_failure.
template <class Statement>
caf::expected<Statement> sealed(const issuer_material& issuer, Statement s) {
  auto seal = seal_statement(issuer, view_of(s));
  if (!seal)
    return seal.error();
  s.issuer = std::move(seal->issuer);
  s.signature = std::move(seal->signature);
  return s;
}

/// bad_request unless the fields other than the certificate and the signature's validity
/// are well formed: a valid node name, an issuer certificate of 1 to
/// max_revocation_issuer_bytes, a signature of 1 to max_revocation_signature_bytes, a time
/// not before 1970.
[[nodiscard]] caf::error check_statement_shape(const statement_view& s);

/// How messages name the statement: "the <kind> of sha256:... (node N)".
[[nodiscard]] std::string describe_statement(const statement_view& s);

/// The checks of an untrusted statement at `now` common to all kinds, in this order:
/// check_statement_shape, verify_issuer's refusals for its certificate, bad_signature,
/// bad_request (dated more than clock_skew_allowance after `now`). Returns who signed it.
[[nodiscard]] caf::expected<issuer_identity>
verify_statement(const statement_view& s, const trust_bundle& bundle, time_point now);

// -- the wire: Revocation and Endorsement messages (proto/admission.proto) --------------------

/// The statement a Revocation or Endorsement message carries, its time taken from `at`
/// (unix seconds) into `at_field`; std::nullopt when it cannot be represented (a key that
/// is not 32 bytes, an issuer certificate or a signature over the bounds). Verification
/// refuses everything else.
template <class Statement, class Message>
std::optional<Statement> statement_from_proto(const Message& msg, std::int64_t at,
                                              unix_time Statement::*at_field) {
  Statement out;
  if (msg.key().size() != out.key.size() || msg.issuer().size() > max_revocation_issuer_bytes ||
      msg.signature().size() > max_revocation_signature_bytes)
    return std::nullopt;
  std::copy(msg.key().begin(), msg.key().end(), out.key.begin());
  out.node = msg.node();
  out.*at_field = unix_time{std::chrono::seconds{at}};
  out.issuer.assign(msg.issuer().begin(), msg.issuer().end());
  out.signature.assign(msg.signature().begin(), msg.signature().end());
  return out;
}

/// Fills the fields of a Revocation or Endorsement message but the time (the caller's).
template <class Statement, class Message>
void statement_to_proto(const Statement& s, Message& msg) {
  msg.set_key(s.key.data(), s.key.size());
  msg.set_node(s.node);
  msg.set_issuer(s.issuer.data(), s.issuer.size());
  msg.set_signature(s.signature.data(), s.signature.size());
}

/// The endorsement an Endorsement message carries; std::nullopt as statement_from_proto.
template <class Message> std::optional<endorsement> endorsement_from_proto(const Message& msg) {
  return statement_from_proto(msg, msg.endorsed_at(), &endorsement::endorsed_at);
}

/// Fills an Endorsement message.
template <class Message> void endorsement_to_proto(const endorsement& e, Message& msg) {
  statement_to_proto(e, msg);
  msg.set_endorsed_at(e.endorsed_at.time_since_epoch().count());
}

// -- endorsements: the quorum count (defined in identity/endorsement.cpp) ----------------------

/// One endorsement that passed, with who signed it.
struct vouching_endorsement {
  endorsement statement;
  issuer_identity issuer;
};

/// The endorsements of `set` that count towards a quorum for `key` of node `node`: they
/// verify at `now`, endorse `key` for `node`, their issuer key is not in `revoked`, and
/// their issuer is not `except` (the signer, counted on its own); the first of each issuer
/// only, in order. The others are dropped silently (untrusted input that does not count).
[[nodiscard]] std::vector<vouching_endorsement>
vouching_endorsements(std::span<const endorsement> set, const sha256_digest& key,
                      std::string_view node, const trust_bundle& bundle,
                      const revocation_set& revoked, time_point now, std::string_view except);

/// quorum_not_met unless `vouchers` (distinct issuer node names) number at least `quorum`;
/// the message names node `node`, how many vouched and who.
[[nodiscard]] caf::error
check_vouchers(std::string_view node, const std::vector<std::string>& vouchers, std::size_t quorum);

} // namespace starling::identity
