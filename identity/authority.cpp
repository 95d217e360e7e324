// Signed issuer actions (identity/authority.hpp): keyring changes, ledgers, token records.
// Each is a statement of identity/statement.hpp whose key field is the SHA-256 of what the
// action says, under a context of its own.
#include "identity/authority.hpp"

#include "identity/admission.hpp"
#include "identity/errc.hpp"
#include "identity/names.hpp"
#include "identity/statement.hpp"

namespace starling::identity {

namespace {

constexpr statement_kind keyring_kind{"starling-keyring-change-1", "a keyring change"};
constexpr statement_kind ledger_kind{"starling-token-ledger-1", "a token ledger"};
constexpr statement_kind record_kind{"starling-token-record-1", "a token record"};

/// SHA-256 of "op", 0, "key".
caf::expected<sha256_digest> keyring_digest(std::string_view op, std::string_view key) {
  std::vector<std::uint8_t> bytes(op.begin(), op.end());
  bytes.push_back(0);
  bytes.insert(bytes.end(), key.begin(), key.end());
  return sha256_of(bytes);
}

caf::expected<issuer_seal> seal_action(const issuer_material& issuer, statement_kind kind,
                                       const caf::expected<sha256_digest>& what,
                                       std::string_view node, time_point now) {
  if (!what)
    return what.error();
  if (!is_valid_node_name(node))
    return make_error(errc::invalid_argument, std::string{kind.name} + " for an invalid node name");
  statement_view view{kind, *what, node, unix_seconds(now), {}, {}};
  auto seal = seal_statement(issuer, view);
  if (!seal)
    return seal.error();
  return issuer_seal{view.at, std::move(seal->issuer), std::move(seal->signature)};
}

caf::expected<issuer_identity> verify_action(statement_kind kind,
                                             const caf::expected<sha256_digest>& what,
                                             std::string_view node, const issuer_seal& seal,
                                             const trust_bundle& bundle, time_point now) {
  if (!what)
    return what.error();
  if (seal.issuer.empty() || seal.signature.empty())
    return make_error(errc::not_an_issuer,
                      std::string{kind.name} + " without an issuer's signature");
  statement_view view{kind, *what, node, seal.at, seal.issuer, seal.signature};
  auto who = verify_statement(view, bundle, now);
  if (!who)
    return who.error();
  const auto t = unix_seconds(now);
  if (seal.at + issuer_action_window < t || seal.at > t + issuer_action_window)
    return make_error(errc::stale_statement,
                      std::string{kind.name} + " by '" + who->node + "' dated " +
                          std::to_string(seal.at.time_since_epoch().count()) + ", outside the " +
                          std::to_string(issuer_action_window.count()) + " s window around now (" +
                          std::to_string(t.time_since_epoch().count()) + ")");
  return who;
}

} // namespace

caf::expected<issuer_seal> sign_keyring_change(const issuer_material& issuer, std::string_view op,
                                               std::string_view key, std::string_view target,
                                               time_point now) {
  return seal_action(issuer, keyring_kind, keyring_digest(op, key), target, now);
}

caf::expected<issuer_identity> verify_keyring_change(std::string_view op, std::string_view key,
                                                     const issuer_seal& seal, std::string_view self,
                                                     const trust_bundle& bundle, time_point now) {
  return verify_action(keyring_kind, keyring_digest(op, key), self, seal, bundle, now);
}

namespace {

/// SHA-256 of a ledger's and an issued list's canonical bytes.
caf::expected<sha256_digest> ledger_digest(const token_ledger& ledger,
                                           const std::vector<issued_certificate>& issued) {
  auto bytes = ledger.canonical_bytes();
  auto more = issued_bytes(issued);
  bytes.insert(bytes.end(), more.begin(), more.end());
  return sha256_of(bytes);
}

} // namespace

caf::expected<issuer_seal> sign_ledger(const issuer_material& issuer, const token_ledger& ledger,
                                       const std::vector<issued_certificate>& issued,
                                       std::string_view target, time_point now) {
  return seal_action(issuer, ledger_kind, ledger_digest(ledger, issued), target, now);
}

caf::expected<issuer_identity> verify_ledger(const token_ledger& ledger,
                                             const std::vector<issued_certificate>& issued,
                                             const issuer_seal& seal, std::string_view self,
                                             const trust_bundle& bundle, time_point now) {
  return verify_action(ledger_kind, ledger_digest(ledger, issued), self, seal, bundle, now);
}

caf::error seal_token_record(const issuer_material& issuer, const token_id& id,
                             token_entry& entry) {
  if (entry.issuer != issuer.node)
    return make_error(errc::invalid_argument, "sealing a token record of issuer '" + entry.issuer +
                                                  "' as '" + issuer.node + "'");
  auto what = sha256_of(record_bytes(id, entry));
  if (!what)
    return what.error();
  statement_view view{record_kind, *what, entry.issuer, entry.created, {}, {}};
  auto seal = seal_statement(issuer, view);
  if (!seal)
    return seal.error();
  entry.seal_issuer = std::move(seal->issuer);
  entry.seal_signature = std::move(seal->signature);
  return {};
}

caf::expected<issuer_identity> verify_token_record(const token_id& id, const token_entry& entry,
                                                   const trust_bundle& bundle, time_point now) {
  if (entry.seal_issuer.empty() || entry.seal_signature.empty())
    return make_error(errc::not_an_issuer,
                      "a token record of '" + entry.issuer + "' without its issuer's signature");
  auto what = sha256_of(record_bytes(id, entry));
  if (!what)
    return what.error();
  statement_view view{record_kind,         *what, entry.issuer, entry.created, entry.seal_issuer,
                      entry.seal_signature};
  auto who = verify_statement(view, bundle, now);
  if (!who)
    return who.error();
  if (who->node != entry.issuer)
    return make_error(errc::name_mismatch, "a token record of '" + entry.issuer +
                                               "' signed by issuer '" + who->node + "'");
  return who;
}

} // namespace starling::identity
