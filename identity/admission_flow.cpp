#include "identity/admission_flow.hpp"

#include <iterator>
#include <utility>

#include <openssl/x509.h>

#include "identity/errc.hpp"
#include "identity/openssl.hpp"

namespace starling::identity {

namespace {

/// A copy of a CSR (certificate_request is move-only).
caf::expected<certificate_request> copy_of(const certificate_request& csr) {
  x509_req_ptr dup{X509_REQ_dup(csr.native())};
  if (!dup)
    return make_openssl_error(errc::crypto_failure, "copying a CSR");
  return certificate_request{std::move(dup)};
}

template <class T> void move_append(std::vector<T>& to, std::vector<T>& from) {
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

admission_effects refusal(admission_ticket ticket, std::string who, caf::error err) {
  admission_effects fx;
  fx.refuse.push_back({ticket, std::move(who), std::move(err), {}});
  return fx;
}

} // namespace

void admission_effects::append(admission_effects&& other) {
  move_append(log, other.log);
  move_append(ask, other.ask);
  move_append(forward, other.forward);
  move_append(endorse_here, other.endorse_here);
  move_append(admit, other.admit);
  move_append(refuse, other.refuse);
  move_append(relay, other.relay);
}

admission_effects admission_flow::on_request(admission_ticket ticket, admission_request req,
                                             std::string raw,
                                             std::optional<std::string> forwarded_by,
                                             const std::optional<local_issuer>& self) {
  if (req.tokens.size() > 1) {
    if (forwarded_by)
      return refusal(ticket, "'" + req.name + "' forwarded by " + *forwarded_by,
                     make_error(errc::bad_request,
                                "a forwarded admission carries one token (the seed collects the "
                                "endorsements of the others)"));
    return collect(ticket, std::move(req), self);
  }
  if (req.tokens.empty()) // decode_admission_request never lets one through
    return refusal(ticket, "'" + req.name + "'", make_error(errc::bad_request, "no token"));
  auto token = decode(req.tokens.front());
  if (!token)
    return refusal(ticket, "'" + req.name + "'", token.error());
  auto token_id = token->id_hex();
  const bool holds_record = self && self->ledger->find(token->id) != nullptr;
  admission_effects fx;
  if (self && token->issuer == self->name) {
    fx.admit.push_back({ticket, std::move(req), std::move(token_id)});
    return fx;
  }
  if (forwarded_by) {
    // Forwarded to us, but the token is not ours: never forward twice (no loops).
    if (holds_record) {
      fx.admit.push_back({ticket, std::move(req), std::move(token_id)});
      return fx;
    }
    return refusal(
        ticket, "'" + req.name + "' forwarded by " + *forwarded_by,
        make_error(errc::token_unknown, "token " + token_id + " was not made by this issuer"));
  }
  // A joiner's request for another issuer: forward it there.
  fx.log.push_back({log_level::info, "forwarding the admission of '" + req.name + "' (token " +
                                         token_id + ") to issuer " + token->issuer});
  fx.forward.push_back({ticket, token->issuer, std::move(raw)});
  auto& f = forwards_[ticket];
  f.token_id = std::move(token_id);
  if (holds_record)
    f.fallback = std::move(req);
  return fx;
}

admission_effects admission_flow::on_forward_answer(admission_ticket ticket,
                                                    caf::expected<std::string> answer,
                                                    bool issuer_unreachable) {
  admission_effects fx;
  auto it = forwards_.find(ticket);
  if (it == forwards_.end())
    return fx;
  auto f = std::move(it->second);
  forwards_.erase(it);
  if (!answer && issuer_unreachable && f.fallback) {
    fx.log.push_back({log_level::info, "the token's issuer is not reachable: redeeming token " +
                                           f.token_id + " here"});
    fx.admit.push_back({ticket, std::move(*f.fallback), std::move(f.token_id)});
    return fx;
  }
  fx.relay.push_back({ticket, std::move(answer)});
  return fx;
}

admission_effects admission_flow::collect(admission_ticket ticket, admission_request req,
                                          const std::optional<local_issuer>& self) {
  if (req.tokens.size() > max_admission_quorum)
    return refusal(ticket, "'" + req.name + "'",
                   make_error(errc::bad_request,
                              "more than " + std::to_string(max_admission_quorum) + " tokens"));
  std::vector<join_token> tokens;
  for (const auto& text : req.tokens) {
    auto t = decode(text);
    if (!t)
      return refusal(ticket, "'" + req.name + "'", t.error());
    tokens.push_back(std::move(*t));
  }
  const auto further = req.tokens.size() - 1;
  auto& c = collections_[ticket];
  c.req = std::move(req);
  c.got.resize(further);
  c.answered.resize(further, false);
  c.pending = further;
  admission_effects fx;
  fx.log.push_back({log_level::info, "admission of '" + c.req.name + "' with " +
                                         std::to_string(c.req.tokens.size()) + " tokens: asking " +
                                         std::to_string(further) + " issuer(s) to endorse it"});
  std::vector<std::pair<std::size_t, caf::error>> failed;
  for (std::size_t i = 0; i < further; ++i) {
    const auto& token = tokens[i + 1];
    c.issuers.push_back(token.issuer);
    auto csr = copy_of(c.req.csr);
    if (!csr) {
      failed.emplace_back(i, csr.error());
      continue;
    }
    endorse_request er{c.req.name, std::move(*csr), c.req.tokens[i + 1]};
    if (self && token.issuer == self->name) {
      fx.endorse_here.push_back({ticket, i, std::move(er)});
      continue;
    }
    auto bytes = encode(er);
    if (!bytes) {
      failed.emplace_back(i, bytes.error());
      continue;
    }
    fx.ask.push_back({ticket, i, token.issuer, std::move(*bytes)});
  }
  for (auto& [i, err] : failed)
    fx.append(on_endorsement(ticket, i, std::move(err), self));
  return fx;
}

admission_effects admission_flow::on_endorsement(admission_ticket ticket, std::size_t index,
                                                 caf::expected<endorsement> result,
                                                 const std::optional<local_issuer>& self) {
  auto it = collections_.find(ticket);
  if (it == collections_.end() || index >= it->second.got.size() || it->second.answered[index])
    return {};
  auto& c = it->second;
  c.answered[index] = true;
  --c.pending;
  admission_effects fx;
  if (result) {
    c.got[index] = std::move(*result);
  } else if (!c.failure) {
    fx.log.push_back({log_level::debug, "endorsement of '" + c.req.name + "' by " +
                                            c.issuers[index] +
                                            " failed: " + render(result.error())});
    c.failure = std::move(result.error());
    c.failed_issuer = c.issuers[index];
  }
  if (c.pending > 0)
    return fx;
  fx.append(finish(ticket, self));
  return fx;
}

admission_effects admission_flow::finish(admission_ticket ticket,
                                         const std::optional<local_issuer>& self) {
  auto node = collections_.extract(ticket);
  auto& c = node.mapped();
  if (c.failure) {
    admission_effects fx;
    fx.refuse.push_back(
        {ticket, "'" + c.req.name + "'", std::move(*c.failure), std::move(c.failed_issuer)});
    return fx;
  }
  c.req.tokens.resize(1);
  for (auto& e : c.got)
    c.req.endorsements.push_back(std::move(*e));
  auto bytes = encode(c.req);
  if (!bytes)
    return refusal(ticket, "'" + c.req.name + "'", bytes.error());
  return on_request(ticket, std::move(c.req), std::move(*bytes), std::nullopt, self);
}

} // namespace starling::identity
