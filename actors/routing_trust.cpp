#include "actors/routing_trust.hpp"

#include <algorithm>
#include <span>

#include "identity/errc.hpp"
#include "identity/pki.hpp"
#include "proto/wire/errors.hpp"

namespace starling::actors {

namespace {

std::string_view context_of(gossip::routing_context ctx) {
  return ctx == gossip::routing_context::policy ? identity::routing_policy_context
                                                : identity::routing_owner_context;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::optional<identity::sha256_digest> digest_of(std::string_view key_id) {
  identity::sha256_digest d{};
  if (key_id.size() != d.size())
    return std::nullopt;
  std::copy(key_id.begin(), key_id.end(), d.begin());
  return d;
}

bool is_identity(const caf::error& err, identity::errc x) {
  return err.category() == identity::errc_category && err.code() == static_cast<std::uint8_t>(x);
}

/// The routing error a key book refusal stands for. An expired key is treated as unknown:
/// its owner renewed its certificate, and the fresh chain is what to fetch.
caf::error routing_error_of(const caf::error& err) {
  const auto text = wire::render_error(err);
  if (is_identity(err, identity::errc::routing_unknown_key) ||
      is_identity(err, identity::errc::expired))
    return gossip::make_error(gossip::routing_errc::unknown_key, text);
  if (is_identity(err, identity::errc::not_an_issuer))
    return gossip::make_error(gossip::routing_errc::not_authorized, text);
  return gossip::make_error(gossip::routing_errc::bad_signature, text);
}

} // namespace

identity::time_point identity_time(std::uint64_t wall_ms) {
  return identity::time_point{std::chrono::milliseconds{
      static_cast<std::int64_t>(std::min<std::uint64_t>(wall_ms, std::uint64_t{1} << 62))}};
}

key_book_trust::key_book_trust(std::shared_ptr<identity::trust_state> trust,
                               const identity::node_credentials& own,
                               const std::optional<identity::issuer_material>& issuer,
                               std::uint64_t wall_ms)
    : trust_(std::move(trust)), last_wall_ms_(wall_ms) {
  refresh_own(own, wall_ms);
  if (issuer) {
    auto snap = trust_->current();
    static_cast<void>(book_.learn(identity::chain{issuer->cert}, snap->bundle, snap->revoked,
                                  identity_time(wall_ms)));
  }
}

void key_book_trust::refresh_own(const identity::node_credentials& own, std::uint64_t wall_ms) {
  auto snap = trust_->current();
  static_cast<void>(book_.learn(own.certs, snap->bundle, snap->revoked, identity_time(wall_ms)));
}

caf::expected<gossip::routing_signer> key_book_trust::verify(gossip::routing_context ctx,
                                                             std::string_view bytes,
                                                             const gossip::routing_seal& seal,
                                                             std::uint64_t wall_ms) {
  last_wall_ms_ = wall_ms;
  auto key = digest_of(seal.key_id);
  if (!key)
    return gossip::make_error(gossip::routing_errc::bad_signature, "a key id of the wrong size");
  identity::routing_signature sig{*key, {seal.signature.begin(), seal.signature.end()}};
  auto snap = trust_->current();
  auto who =
      book_.verify(context_of(ctx), bytes_of(bytes), sig, snap->revoked, identity_time(wall_ms));
  if (!who)
    return routing_error_of(who.error());
  return gossip::routing_signer{who->node, who->issuer};
}

caf::expected<gossip::routing_signer> key_book_trust::learn(const gossip::signer_chain& chain,
                                                            std::uint64_t wall_ms) {
  last_wall_ms_ = wall_ms;
  auto key = digest_of(chain.key_id);
  if (!key)
    return gossip::make_error(gossip::routing_errc::bad_signature, "a key id of the wrong size");
  std::vector<std::vector<std::uint8_t>> der;
  der.reserve(chain.certificates.size());
  for (const auto& c : chain.certificates)
    der.emplace_back(c.begin(), c.end());
  auto snap = trust_->current();
  auto who = book_.learn(std::span<const std::vector<std::uint8_t>>{der}, snap->bundle,
                         snap->revoked, identity_time(wall_ms));
  if (!who)
    return gossip::make_error(gossip::routing_errc::bad_signature,
                              "chain refused: " + wire::render_error(who.error()));
  if (who->key_id != *key)
    return gossip::make_error(gossip::routing_errc::bad_signature,
                              "a chain handed on under another key's id");
  return gossip::routing_signer{who->node, who->issuer};
}

std::optional<gossip::signer_chain> key_book_trust::chain_of(std::string_view key_id) const {
  auto key = digest_of(key_id);
  if (!key)
    return std::nullopt;
  auto signer = book_.signer_of(*key);
  if (!signer || signer->not_after <= identity_time(last_wall_ms_))
    return std::nullopt;
  auto der = book_.chain_of(*key);
  if (!der)
    return std::nullopt;
  gossip::signer_chain out;
  out.key_id = std::string{key_id};
  for (const auto& c : *der)
    out.certificates.emplace_back(c.begin(), c.end());
  return out;
}

node_key_sealer::node_key_sealer(identity::private_key node_key,
                                 std::optional<identity::private_key> issuer_key, std::string node)
    : node_key_(std::move(node_key)), issuer_key_(std::move(issuer_key)), node_(std::move(node)) {}

caf::expected<gossip::routing_seal> node_key_sealer::seal(gossip::routing_context ctx,
                                                          std::string_view bytes) {
  const identity::private_key* key = &node_key_;
  if (ctx == gossip::routing_context::policy) {
    if (!issuer_key_)
      return gossip::make_error(gossip::routing_errc::no_authority,
                                "node " + node_ +
                                    " holds no issuer key: policies are signed by an issuer "
                                    "(run the command against an issuer's admin port)");
    key = &*issuer_key_;
  }
  auto sig = identity::sign_routing(*key, context_of(ctx), bytes_of(bytes));
  if (!sig)
    return gossip::make_error(gossip::routing_errc::no_authority,
                              "signing failed: " + wire::render_error(sig.error()));
  gossip::routing_seal out;
  out.key_id.assign(sig->key_id.begin(), sig->key_id.end());
  out.signature.assign(sig->signature.begin(), sig->signature.end());
  return out;
}

} // namespace starling::actors
