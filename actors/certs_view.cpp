#include "actors/certs_view.hpp"

#include <sstream>

#include <nlohmann/json.hpp>

#include "actors/errc.hpp"
#include "actors/views.hpp"
#include "identity/endorsement.hpp"
#include "identity/pki.hpp"

namespace starling::actors {

namespace {

using nlohmann::ordered_json;

std::int64_t seconds_between(identity::time_point from, identity::time_point to) {
  return std::chrono::duration_cast<std::chrono::seconds>(to - from).count();
}

/// Validity and key of one certificate.
ordered_json describe_cert(const identity::certificate& cert, identity::time_point now) {
  ordered_json out = ordered_json::object();
  if (auto uri = identity::spiffe_id_of(cert))
    out["uri"] = uri->to_uri();
  if (auto from = identity::not_before(cert)) {
    out["not_before"] = iso8601_utc(*from);
    out["not_before_unix"] =
        std::chrono::duration_cast<std::chrono::seconds>(from->time_since_epoch()).count();
  }
  if (auto to = identity::not_after(cert)) {
    out["not_after"] = iso8601_utc(*to);
    out["not_after_unix"] =
        std::chrono::duration_cast<std::chrono::seconds>(to->time_since_epoch()).count();
    out["expires_in_seconds"] = seconds_between(now, *to);
  }
  if (auto spki = identity::spki_sha256(cert))
    out["spki_sha256"] = identity::to_hex(*spki);
  return out;
}

} // namespace

std::string certs_json(const node_identity* id, const keyring_view* keyring,
                       const issuer_summary* issuer, const std::vector<revocation_row>* revocations,
                       const sync_summary* sync, identity::time_point now) {
  ordered_json doc = ordered_json::object();
  doc["identity"] = id != nullptr;
  if (id != nullptr) {
    doc["mesh"] = id->creds.bundle.mesh();
    doc["source"] = id->source;
    doc["admission_quorum"] = id->trust ? id->trust->current()->quorum : std::size_t{1};
    // Peers this node refused at TLS handshakes since start, by reason.
    auto refused = ordered_json::object();
    if (id->trust)
      for (const auto& [reason, n] : id->trust->refusals())
        refused[reason] = n;
    doc["handshake_refusals"] = std::move(refused);
    if (!id->creds.certs.empty()) {
      auto leaf = describe_cert(id->creds.certs.front(), now);
      // Who endorsed this node's key (admission quorum); checked when the node started.
      auto endorsements = identity::endorsements_of(id->creds.certs.front());
      auto endorsers = ordered_json::array();
      if (endorsements)
        for (const auto& e : *endorsements)
          if (auto who = identity::describe_issuer(e.issuer))
            endorsers.push_back(who->node);
      leaf["endorsed_by"] = std::move(endorsers);
      doc["certificate"] = std::move(leaf);
    }
    auto chain_issuers = ordered_json::array();
    for (std::size_t i = 1; i < id->creds.certs.size(); ++i)
      chain_issuers.push_back(describe_cert(id->creds.certs[i], now));
    doc["issuers"] = std::move(chain_issuers);
    doc["is_issuer"] = id->issuer.has_value();
    if (id->issuer) {
      auto own = describe_cert(id->issuer->cert, now);
      if (issuer != nullptr) {
        own["active_tokens"] = issuer->active_tokens;
        own["known_tokens"] = issuer->known_tokens;
        own["admitted"] = issuer->admitted;
        own["refused"] = issuer->refused;
        own["names_refused"] = issuer->names_refused;
        own["keyring_rotations"] = issuer->keyring_rotations;
        own["endorsed"] = issuer->endorsed;
      }
      doc["issuer"] = std::move(own);
    }
    auto roots = ordered_json::array();
    for (const auto& root : id->creds.bundle.roots())
      roots.push_back(describe_cert(root, now));
    doc["roots"] = std::move(roots);
    auto revoked = ordered_json::array();
    if (revocations != nullptr)
      for (const auto& row : *revocations) {
        ordered_json r = ordered_json::object();
        r["node"] = row.node;
        r["key"] = identity::format_pin(row.key);
        r["issuer"] = row.issuer;
        r["revoked_at"] = iso8601_utc(row.revoked_at);
        revoked.push_back(std::move(r));
      }
    doc["revocations"] = std::move(revoked);
    const sync_summary counters = sync != nullptr ? *sync : sync_summary{};
    ordered_json s = ordered_json::object();
    s["exchanges"] = counters.exchanges;
    s["failures"] = counters.failures;
    s["statements_learned"] = counters.statements_learned;
    s["statements_refused"] = counters.statements_refused;
    s["ledgers_merged"] = counters.ledgers_merged;
    s["ledgers_refused"] = counters.ledgers_refused;
    s["records_refused"] = counters.records_refused;
    s["keyring_refused"] = counters.keyring_refused;
    s["in_step"] = counters.in_step;
    s["pushes"] = counters.pushes;
    doc["sync"] = std::move(s);
  }
  ordered_json ring = ordered_json::object();
  ring["enabled"] = keyring != nullptr && keyring->enabled;
  ring["primary"] = keyring != nullptr ? keyring->primary : std::string{};
  ring["ids"] = keyring != nullptr ? keyring->ids : std::vector<std::string>{};
  doc["keyring"] = std::move(ring);
  return doc.dump();
}

} // namespace starling::actors
