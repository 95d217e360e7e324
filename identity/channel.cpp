// The identity channel's wire (identity/channel.hpp, and the admission codecs declared in
// identity/admission.hpp). Decoding treats every byte as hostile: sizes are bounded before
// parsing, protobuf's logging is silenced (invalid UTF-8 would flood stderr), every refusal
// is bad_request with its reason.
#include "identity/channel.hpp"

#include <algorithm>
#include <utility>

#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <google/protobuf/stubs/logging.h>

#include "admission.pb.h"
#include "identity/errc.hpp"
#include "identity/statement.hpp"
#include "proto/wire/errors.hpp"

namespace starling::identity {

namespace {

/// Version written in and required of every envelope.
constexpr std::uint32_t channel_version = 1;

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

/// Parses an untrusted envelope (IdentityRequest or IdentityResponse): bounded by `limit`,
/// silent, versioned.
template <class Envelope>
caf::expected<Envelope> parse_envelope(std::string_view bytes, std::size_t limit,
                                       const char* what) {
  if (bytes.size() > limit)
    return bad_request(std::string{what} + " of " + std::to_string(bytes.size()) +
                       " bytes exceeds " + std::to_string(limit));
  Envelope msg;
  google::protobuf::LogSilencer silence;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return bad_request(std::string{what} + " does not parse");
  if (msg.version() != channel_version)
    return bad_request(std::string{what} + " of version " + std::to_string(msg.version()) +
                       ", expected " + std::to_string(channel_version));
  return msg;
}

/// The refusal in a parsed IdentityResponse as an error (see decode_refusal).
caf::error refusal_of(const v1::IdentityRefusal& r) {
  const auto& cat = r.category();
  const bool atom_text =
      !cat.empty() && cat.size() <= 10 && std::all_of(cat.begin(), cat.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == ' ';
      });
  if (!atom_text || r.code() == 0 || r.code() > 255)
    return bad_request("a refusal with an invalid code (category of " + std::to_string(cat.size()) +
                       " bytes, code " + std::to_string(r.code()) + ")");
  if (r.reason().size() > max_refusal_reason_bytes)
    return bad_request("a refusal whose reason of " + std::to_string(r.reason().size()) +
                       " bytes exceeds " + std::to_string(max_refusal_reason_bytes));
  return caf::error{static_cast<std::uint8_t>(r.code()), caf::atom_from_string(cat),
                    caf::make_message(r.reason())};
}

// -- requests that name a node and carry its CSR (admission, endorsement, renewal) -------------

/// The CSR of an AdmissionRequest, EndorseRequest or RenewalRequest, once its node name is
/// checked; `what` names the request in messages. Errors: bad_request.
template <class Body>
caf::expected<certificate_request> named_csr_of(const Body& msg, const char* what) {
  if (!is_valid_node_name(msg.name()))
    return bad_request(std::string{what} + " for an invalid node name (" +
                       std::to_string(msg.name().size()) + " bytes): use " +
                       std::string{node_name_rule});
  return certificate_request_from_der(bytes_of(msg.csr()));
}

/// Sets the node name and the CSR (DER) of an AdmissionRequest, EndorseRequest or
/// RenewalRequest. Errors: crypto_failure.
template <class Body>
caf::error set_named_csr(Body& msg, const std::string& name, const certificate_request& csr) {
  auto der = to_der(csr);
  if (!der)
    return der.error();
  msg.set_name(name);
  msg.set_csr(der->data(), der->size());
  return {};
}

caf::expected<admission_request> from_proto(const v1::AdmissionRequest& msg) {
  auto csr = named_csr_of(msg, "an admission request");
  if (!csr)
    return csr.error();
  const auto tokens = static_cast<std::size_t>(msg.tokens_size());
  if (tokens == 0 || tokens > max_admission_tokens)
    return bad_request("an admission request with " + std::to_string(tokens) +
                       " join tokens, expected 1 to " + std::to_string(max_admission_tokens));
  const auto endorsements = static_cast<std::size_t>(msg.endorsements_size());
  if (endorsements > max_admission_quorum)
    return bad_request("an admission request with " + std::to_string(endorsements) +
                       " endorsements, at most " + std::to_string(max_admission_quorum));
  std::vector<std::string> tokens_of(msg.tokens().begin(), msg.tokens().end());
  admission_request out{msg.name(), std::move(*csr), std::move(tokens_of), {}};
  for (const auto& e : msg.endorsements()) {
    auto got = endorsement_from_proto(e);
    if (!got)
      return bad_request("an admission request with a malformed endorsement (a key of " +
                         std::to_string(e.key().size()) + " bytes, or oversized)");
    out.endorsements.push_back(std::move(*got));
  }
  return out;
}

caf::expected<endorse_request> from_proto(const v1::EndorseRequest& msg) {
  auto csr = named_csr_of(msg, "an endorse request");
  if (!csr)
    return csr.error();
  if (msg.token().empty())
    return bad_request("an endorse request without a join token");
  return endorse_request{msg.name(), std::move(*csr), msg.token()};
}

caf::expected<renewal_request> from_proto(const v1::RenewalRequest& msg) {
  auto csr = named_csr_of(msg, "a renewal request");
  if (!csr)
    return csr.error();
  auto current = certificates_from_pem(msg.chain());
  if (!current || current->empty())
    return bad_request("a renewal request without a readable current chain");
  return renewal_request{msg.name(), std::move(*csr), std::move(*current)};
}

/// Refuses an admission, endorse or renewal request over max_admission_bytes.
caf::error check_admission_size(std::string_view bytes, const char* what) {
  if (bytes.size() > max_admission_bytes)
    return bad_request(std::string{what} + " of " + std::to_string(bytes.size()) +
                       " bytes exceeds " + std::to_string(max_admission_bytes));
  return {};
}

/// True for the keyring operations a keyring change may carry.
bool is_keyring_op(std::string_view op) { return op == "install" || op == "use" || op == "remove"; }

caf::expected<keyring_change> from_proto(const v1::KeyringRequest& msg) {
  if (!is_keyring_op(msg.op()))
    return bad_request("a keyring change with an unknown operation (" +
                       std::to_string(msg.op().size()) + " bytes)");
  if (msg.key().empty() || msg.key().size() > max_keyring_key_bytes)
    return bad_request("a keyring change with a key of " + std::to_string(msg.key().size()) +
                       " bytes (1 to " + std::to_string(max_keyring_key_bytes) + ")");
  if (msg.issuer().size() > max_revocation_issuer_bytes ||
      msg.signature().size() > max_revocation_signature_bytes)
    return bad_request("a keyring change with an issuer certificate of " +
                       std::to_string(msg.issuer().size()) + " bytes or a signature of " +
                       std::to_string(msg.signature().size()) + " bytes");
  return keyring_change{
      msg.op(), msg.key(),
      issuer_seal{unix_time{std::chrono::seconds{msg.at()}},
                  std::vector<std::uint8_t>(msg.issuer().begin(), msg.issuer().end()),
                  std::vector<std::uint8_t>(msg.signature().begin(), msg.signature().end())}};
}

// -- sync ------------------------------------------------------------------------------------

/// A statement as it travels; std::nullopt if it cannot be represented (verification
/// refuses everything else).
std::optional<revocation> from_proto(const v1::Revocation& msg) {
  return statement_from_proto(msg, msg.revoked_at(), &revocation::revoked_at);
}

void to_proto(const revocation& stmt, v1::Revocation& msg) {
  statement_to_proto(stmt, msg);
  msg.set_revoked_at(stmt.revoked_at.time_since_epoch().count());
}

/// A ledger entry as it travels; std::nullopt if it cannot be represented. Entries no
/// issuer could have made (uses out of range, bad names) are dropped later by
/// token_store::merge_spent, records without their creator's seal by
/// issuer_desk::merge_ledger.
std::optional<std::pair<token_id, token_entry>> from_proto(const v1::TokenRecord& msg) {
  token_id id{};
  token_entry e;
  if (msg.id().size() != id.size() || msg.secret_hash().size() != e.secret_hash.size() ||
      msg.uses() > 0xffff || msg.seal_issuer().size() > max_revocation_issuer_bytes ||
      msg.seal_signature().size() > max_revocation_signature_bytes ||
      static_cast<std::size_t>(msg.spend_set_size()) > max_spends_per_token)
    return std::nullopt;
  std::copy(msg.id().begin(), msg.id().end(), id.begin());
  std::copy(msg.secret_hash().begin(), msg.secret_hash().end(), e.secret_hash.begin());
  e.issuer = msg.issuer();
  e.created = unix_time{std::chrono::seconds{msg.created()}};
  e.expiry = unix_time{std::chrono::seconds{msg.expiry()}};
  e.uses = static_cast<std::uint16_t>(msg.uses());
  e.seal_issuer.assign(msg.seal_issuer().begin(), msg.seal_issuer().end());
  e.seal_signature.assign(msg.seal_signature().begin(), msg.seal_signature().end());
  for (const auto& spend : msg.spend_set()) {
    token_spend out{spend.redeemer(), {}};
    if (spend.use().size() != out.use.size())
      return std::nullopt;
    std::copy(spend.use().begin(), spend.use().end(), out.use.begin());
    e.spends.insert(std::move(out));
  }
  return std::pair{id, std::move(e)};
}

void to_proto(const token_id& id, const token_entry& e, v1::TokenRecord& msg) {
  msg.set_id(id.data(), id.size());
  msg.set_issuer(e.issuer);
  msg.set_secret_hash(e.secret_hash.data(), e.secret_hash.size());
  msg.set_created(e.created.time_since_epoch().count());
  msg.set_expiry(e.expiry.time_since_epoch().count());
  msg.set_uses(e.uses);
  msg.set_seal_issuer(e.seal_issuer.data(), e.seal_issuer.size());
  msg.set_seal_signature(e.seal_signature.data(), e.seal_signature.size());
  for (const auto& spend : e.spends) {
    auto* out = msg.add_spend_set();
    out->set_redeemer(spend.redeemer);
    out->set_use(spend.use.data(), spend.use.size());
  }
}

/// SyncRequest or SyncResponse (the same fields) to a sync_message.
template <class Sync> caf::expected<sync_message> from_proto_sync(const Sync& msg) {
  if (static_cast<std::size_t>(msg.revocations_size()) > max_revocations)
    return bad_request("a sync with " + std::to_string(msg.revocations_size()) +
                       " revocations, at most " + std::to_string(max_revocations));
  if (static_cast<std::size_t>(msg.ledger().tokens_size()) > max_sync_tokens)
    return bad_request("a sync with " + std::to_string(msg.ledger().tokens_size()) +
                       " tokens, at most " + std::to_string(max_sync_tokens));
  sync_message out;
  for (const auto& r : msg.revocations()) {
    if (auto stmt = from_proto(r))
      out.revocations.push_back(std::move(*stmt));
    else
      ++out.malformed;
  }
  if (msg.has_ledger()) {
    token_ledger ledger;
    for (const auto& t : msg.ledger().tokens()) {
      auto entry = from_proto(t);
      if (!entry || !ledger.insert(entry->first, std::move(entry->second)))
        ++out.malformed; // unrepresentable, or a second record under one id
    }
    out.ledger = std::move(ledger);
  }
  if (static_cast<std::size_t>(msg.issued_size()) > max_shared_issued)
    return bad_request("a sync with " + std::to_string(msg.issued_size()) +
                       " issued records, at most " + std::to_string(max_shared_issued));
  for (const auto& r : msg.issued()) {
    issued_certificate c;
    c.node = r.node();
    if (!is_valid_node_name(c.node) || r.key().size() != c.key.size() || r.not_after() < 0) {
      ++out.malformed;
      continue;
    }
    std::copy(r.key().begin(), r.key().end(), c.key.begin());
    c.not_after = unix_time{std::chrono::seconds{r.not_after()}};
    out.issued.push_back(std::move(c));
  }
  if (msg.issuer().size() <= max_revocation_issuer_bytes &&
      msg.ledger_signature().size() <= max_revocation_signature_bytes) {
    out.ledger_seal.at = unix_time{std::chrono::seconds{msg.ledger_at()}};
    out.ledger_seal.issuer.assign(msg.issuer().begin(), msg.issuer().end());
    out.ledger_seal.signature.assign(msg.ledger_signature().begin(), msg.ledger_signature().end());
  } else {
    ++out.malformed;
  }
  if (msg.digest().size() == sha256_digest{}.size()) {
    sha256_digest d{};
    std::copy(msg.digest().begin(), msg.digest().end(), d.begin());
    out.digest = d;
  } else if (!msg.digest().empty()) {
    ++out.malformed;
  }
  return out;
}

template <class Sync> caf::error to_proto_sync(const sync_message& in, Sync& msg) {
  if (in.revocations.size() > max_revocations)
    return make_error(errc::invalid_argument,
                      "more than " + std::to_string(max_revocations) + " revocations to send");
  for (const auto& stmt : in.revocations)
    to_proto(stmt, *msg.add_revocations());
  if (in.ledger) {
    if (in.ledger->entries().size() > max_sync_tokens)
      return make_error(errc::invalid_argument,
                        "a ledger of " + std::to_string(in.ledger->entries().size()) +
                            " tokens exceeds " + std::to_string(max_sync_tokens));
    auto* ledger = msg.mutable_ledger();
    for (const auto& [id, e] : in.ledger->entries())
      to_proto(id, e, *ledger->add_tokens());
  }
  if (in.ledger) {
    msg.set_issuer(in.ledger_seal.issuer.data(), in.ledger_seal.issuer.size());
    msg.set_ledger_at(in.ledger_seal.at.time_since_epoch().count());
    msg.set_ledger_signature(in.ledger_seal.signature.data(), in.ledger_seal.signature.size());
    if (in.issued.size() > max_shared_issued)
      return make_error(errc::invalid_argument, "more than " + std::to_string(max_shared_issued) +
                                                    " issued records to send");
    for (const auto& c : in.issued) {
      auto* r = msg.add_issued();
      r->set_node(c.node);
      r->set_key(c.key.data(), c.key.size());
      r->set_not_after(c.not_after.time_since_epoch().count());
    }
  }
  if (in.digest)
    msg.set_digest(in.digest->data(), in.digest->size());
  return {};
}

/// Encodes `sync` in an envelope (IdentityRequest or IdentityResponse), refusing more than
/// max_sync_bytes.
template <class Envelope> caf::expected<std::string> encode_sync(const sync_message& sync) {
  Envelope msg;
  msg.set_version(channel_version);
  if (auto err = to_proto_sync(sync, *msg.mutable_sync()))
    return err;
  auto out = msg.SerializeAsString();
  if (out.size() > max_sync_bytes)
    return make_error(errc::invalid_argument, "a sync message of " + std::to_string(out.size()) +
                                                  " bytes exceeds " +
                                                  std::to_string(max_sync_bytes));
  return out;
}

} // namespace

// -- admission (declared in identity/admission.hpp) -------------------------------------------

caf::expected<std::string> encode(const admission_request& req) {
  v1::IdentityRequest msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_admission();
  if (auto err = set_named_csr(*body, req.name, req.csr))
    return err;
  for (const auto& token : req.tokens)
    body->add_tokens(token);
  for (const auto& e : req.endorsements)
    endorsement_to_proto(e, *body->add_endorsements());
  return msg.SerializeAsString();
}

caf::expected<admission_request> decode_admission_request(std::string_view bytes) {
  auto msg =
      parse_envelope<v1::IdentityRequest>(bytes, max_admission_bytes, "an admission request");
  if (!msg)
    return msg.error();
  if (!msg->has_admission())
    return bad_request("an identity request that is not an admission request");
  return from_proto(msg->admission());
}

caf::expected<std::string> encode(const admission_grant& grant) {
  auto chain_pem = to_pem(grant.certs);
  if (!chain_pem)
    return chain_pem.error();
  auto bundle_pem = grant.bundle.to_pem();
  if (!bundle_pem)
    return bundle_pem.error();
  v1::IdentityResponse msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_admission();
  body->set_chain(std::move(*chain_pem));
  body->set_bundle(std::move(*bundle_pem));
  body->set_keyring(grant.keyring);
  body->set_issuer(grant.issuer);
  return msg.SerializeAsString();
}

caf::expected<admission_grant> decode_admission_grant(std::string_view bytes) {
  auto msg =
      parse_envelope<v1::IdentityResponse>(bytes, max_admission_bytes, "an admission response");
  if (!msg)
    return msg.error();
  if (msg->has_refusal())
    return refusal_of(msg->refusal());
  if (!msg->has_admission())
    return bad_request("an identity response that is not an admission response");
  auto* body = msg->mutable_admission();
  auto certs = certificates_from_pem(body->chain());
  if (!certs)
    return bad_request("the admission response's chain: " + render(certs.error()));
  auto bundle = trust_bundle::from_pem(body->bundle());
  if (!bundle)
    return bad_request("the admission response's bundle: " + render(bundle.error()));
  if (!is_valid_node_name(body->issuer()))
    return bad_request("the admission response names an invalid issuer");
  return admission_grant{std::move(*certs), std::move(*bundle), std::move(*body->mutable_keyring()),
                         body->issuer()};
}

// -- renewal (declared in identity/admission.hpp) ----------------------------------------------

caf::expected<std::string> encode(const renewal_request& req) {
  auto chain_pem = to_pem(req.current);
  if (!chain_pem)
    return chain_pem.error();
  v1::IdentityRequest msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_renewal();
  if (auto err = set_named_csr(*body, req.name, req.csr))
    return err;
  body->set_chain(std::move(*chain_pem));
  return msg.SerializeAsString();
}

caf::expected<std::string> encode(const renewal_grant& grant) {
  auto chain_pem = to_pem(grant.certs);
  if (!chain_pem)
    return chain_pem.error();
  v1::IdentityResponse msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_renewal();
  body->set_chain(std::move(*chain_pem));
  body->set_issuer(grant.issuer);
  return msg.SerializeAsString();
}

caf::expected<renewal_grant> decode_renewal_grant(std::string_view bytes) {
  auto msg = parse_envelope<v1::IdentityResponse>(bytes, max_admission_bytes, "a renewal response");
  if (!msg)
    return msg.error();
  if (msg->has_refusal())
    return refusal_of(msg->refusal());
  if (!msg->has_renewal())
    return bad_request("an identity response that is not a renewal response");
  auto certs = certificates_from_pem(msg->renewal().chain());
  if (!certs || certs->empty())
    return bad_request("the renewal response's chain does not parse or is empty");
  if (!is_valid_node_name(msg->renewal().issuer()))
    return bad_request("the renewal response names an invalid issuer");
  return renewal_grant{std::move(*certs), msg->renewal().issuer()};
}

// -- endorsement (declared in identity/admission.hpp) -------------------------------------------

caf::expected<std::string> encode(const endorse_request& req) {
  v1::IdentityRequest msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_endorse();
  if (auto err = set_named_csr(*body, req.name, req.csr))
    return err;
  body->set_token(req.token);
  return msg.SerializeAsString();
}

caf::expected<std::string> encode(const endorsement& e) {
  if (auto err = check_statement_shape(view_of(e)))
    return make_error(errc::invalid_argument, "not sending " + render(err));
  v1::IdentityResponse msg;
  msg.set_version(channel_version);
  endorsement_to_proto(e, *msg.mutable_endorse()->mutable_endorsement());
  return msg.SerializeAsString();
}

caf::expected<endorsement> decode_endorse_response(std::string_view bytes) {
  auto msg =
      parse_envelope<v1::IdentityResponse>(bytes, max_admission_bytes, "an endorse response");
  if (!msg)
    return msg.error();
  if (msg->has_refusal())
    return refusal_of(msg->refusal());
  if (!msg->has_endorse())
    return bad_request("an identity response that is not an endorse response");
  if (!msg->endorse().has_endorsement())
    return bad_request("an endorse response without an endorsement");
  auto e = endorsement_from_proto(msg->endorse().endorsement());
  if (!e)
    return bad_request("an endorse response with a malformed endorsement (a key of " +
                       std::to_string(msg->endorse().endorsement().key().size()) +
                       " bytes, or oversized)");
  return std::move(*e);
}

// -- any request, and sync ---------------------------------------------------------------------

caf::expected<identity_request> decode_identity_request(std::string_view bytes) {
  auto msg = parse_envelope<v1::IdentityRequest>(bytes, max_sync_bytes, "an identity request");
  if (!msg)
    return msg.error();
  // Admission, endorsement and renewal requests: bounded tighter than a sync.
  auto bounded = [&](const auto& body, const char* what) -> caf::expected<identity_request> {
    if (auto err = check_admission_size(bytes, what))
      return err;
    auto req = from_proto(body);
    if (!req)
      return req.error();
    return identity_request{std::move(*req)};
  };
  switch (msg->body_case()) {
  case v1::IdentityRequest::kAdmission:
    return bounded(msg->admission(), "an admission request");
  case v1::IdentityRequest::kRenewal:
    return bounded(msg->renewal(), "a renewal request");
  case v1::IdentityRequest::kEndorse:
    return bounded(msg->endorse(), "an endorse request");
  case v1::IdentityRequest::kKeyring:
    return bounded(msg->keyring(), "a keyring change");
  case v1::IdentityRequest::kSync: {
    auto sync = from_proto_sync(msg->sync());
    if (!sync)
      return sync.error();
    return identity_request{std::move(*sync)};
  }
  default:
    return bad_request("an identity request of no kind this node knows");
  }
}

caf::expected<std::string> encode_sync_request(const sync_message& sync) {
  return encode_sync<v1::IdentityRequest>(sync);
}

caf::expected<std::string> encode_sync_response(const sync_message& sync) {
  return encode_sync<v1::IdentityResponse>(sync);
}

caf::expected<sync_message> decode_sync_response(std::string_view bytes) {
  auto msg = parse_envelope<v1::IdentityResponse>(bytes, max_sync_bytes, "a sync response");
  if (!msg)
    return msg.error();
  if (msg->has_refusal())
    return refusal_of(msg->refusal());
  if (!msg->has_sync())
    return bad_request("an identity response that is not a sync response");
  return from_proto_sync(msg->sync());
}

caf::expected<std::string> encode(const keyring_change& change) {
  if (!is_keyring_op(change.op))
    return make_error(errc::invalid_argument, "unknown keyring operation '" + change.op + "'");
  v1::IdentityRequest msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_keyring();
  body->set_op(change.op);
  body->set_key(change.key);
  body->set_issuer(change.seal.issuer.data(), change.seal.issuer.size());
  body->set_at(change.seal.at.time_since_epoch().count());
  body->set_signature(change.seal.signature.data(), change.seal.signature.size());
  return msg.SerializeAsString();
}

std::string encode_refusal(const caf::error& err) {
  v1::IdentityResponse msg;
  msg.set_version(channel_version);
  auto* body = msg.mutable_refusal();
  body->set_category(caf::to_string(err.category()));
  body->set_code(err.code());
  const auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    body->set_reason(ctx.get_as<std::string>(0).substr(0, max_refusal_reason_bytes));
  return msg.SerializeAsString();
}

std::optional<caf::error> decode_refusal(std::string_view bytes) {
  auto msg = parse_envelope<v1::IdentityResponse>(bytes, max_sync_bytes, "an identity response");
  if (!msg || !msg->has_refusal())
    return std::nullopt;
  return refusal_of(msg->refusal());
}

bool is_final_admission_refusal(const caf::error& err) noexcept {
  if (!err || err.category() != errc_category)
    return false;
  switch (static_cast<errc>(err.code())) {
  case errc::token_malformed:
  case errc::token_unknown:
  case errc::token_forged:
  case errc::token_expired:
  case errc::token_exhausted:
  case errc::token_wrong_mesh:
  case errc::quorum_not_met:
    return true;
  default:
    return false;
  }
}

std::string encode_keyring_answer(std::string_view id) {
  v1::IdentityResponse msg;
  msg.set_version(channel_version);
  msg.mutable_keyring()->set_id(std::string{id});
  return msg.SerializeAsString();
}

caf::expected<std::string> decode_keyring_answer(std::string_view bytes) {
  auto msg = parse_envelope<v1::IdentityResponse>(bytes, max_admission_bytes, "a keyring answer");
  if (!msg)
    return msg.error();
  if (msg->has_refusal())
    return refusal_of(msg->refusal());
  if (!msg->has_keyring())
    return bad_request("an identity response that is not a keyring answer");
  const auto& id = msg->keyring().id();
  if (id.size() != 16 || !std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      }))
    return bad_request("a keyring answer whose key id is not 16 hex digits");
  return id;
}

} // namespace starling::identity
