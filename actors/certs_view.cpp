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
  if (auto from = identity::not_before(cert))
    out["not_before"] = iso8601_utc(*from);
  if (auto to = identity::not_after(cert)) {
    out["not_after"] = iso8601_utc(*to);
    out["expires_in_seconds"] = seconds_between(now, *to);
  }
  if (auto spki = identity::spki_sha256(cert))
    out["spki_sha256"] = identity::to_hex(*spki);
  return out;
}

std::string human_duration(std::int64_t secs) {
  if (secs <= 0)
    return "EXPIRED";
  std::ostringstream out;
  if (secs >= 86400 * 2)
    out << secs / 86400 << " days";
  else if (secs >= 3600)
    out << secs / 3600 << "h" << (secs % 3600) / 60 << "m";
  else
    out << secs / 60 << "m" << secs % 60 << "s";
  return out.str();
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

caf::expected<std::string> certs_text(std::string_view json) {
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("identity") ||
      !doc.contains("keyring"))
    return make_error(errc::request_failed, "the agent's answer is not a certs view");
  std::ostringstream out;
  auto str = [](const nlohmann::json& obj, const char* key) {
    return obj.contains(key) && obj[key].is_string() ? obj[key].get<std::string>()
                                                     : std::string{"-"};
  };
  auto expiry = [&](const nlohmann::json& c) {
    std::string s = str(c, "not_after");
    if (c.contains("expires_in_seconds") && c["expires_in_seconds"].is_number_integer())
      s += " (" + human_duration(c["expires_in_seconds"].get<std::int64_t>()) + ")";
    return s;
  };
  if (!doc["identity"].get<bool>()) {
    out << "no node certificate: TCP between nodes is not authenticated (start with "
           "--issuer or --token; docs/operations.md, Certificates)\n";
  } else {
    const auto& cert = doc.contains("certificate") ? doc["certificate"] : nlohmann::json{};
    out << "mesh         " << str(doc, "mesh") << '\n';
    out << "node         " << str(cert, "uri") << '\n';
    out << "expires      " << expiry(cert) << '\n';
    out << "key          sha256:" << str(cert, "spki_sha256") << '\n';
    out << "obtained     " << str(doc, "source") << '\n';
    if (cert.contains("endorsed_by") && cert["endorsed_by"].is_array() &&
        !cert["endorsed_by"].empty()) {
      out << "endorsed by ";
      const char* sep = " ";
      for (const auto& e : cert["endorsed_by"])
        if (e.is_string()) {
          out << sep << e.get<std::string>();
          sep = ", ";
        }
      out << '\n';
    }
    if (doc.contains("admission_quorum") && doc["admission_quorum"].is_number_unsigned() &&
        doc["admission_quorum"].get<std::size_t>() > 1)
      out << "quorum       " << doc["admission_quorum"].get<std::size_t>()
          << " issuers must vouch for every node\n";
    if (doc.contains("issuers") && doc["issuers"].is_array())
      for (const auto& i : doc["issuers"])
        out << "issued by    " << str(i, "uri") << ", expires " << expiry(i) << '\n';
    if (doc.value("is_issuer", false) && doc.contains("issuer")) {
      const auto& own = doc["issuer"];
      out << "issuer       yes, expires " << expiry(own);
      if (own.contains("active_tokens"))
        out << "; " << own["active_tokens"].get<std::size_t>() << " active token(s), "
            << own["admitted"].get<std::uint64_t>() << " admitted, "
            << own["refused"].get<std::uint64_t>() << " refused";
      if (own.value("endorsed", std::uint64_t{0}) > 0)
        out << ", " << own["endorsed"].get<std::uint64_t>() << " endorsed";
      out << '\n';
    }
    if (doc.contains("roots") && doc["roots"].is_array())
      for (const auto& r : doc["roots"])
        out << "root         sha256:" << str(r, "spki_sha256") << ", expires " << expiry(r) << '\n';
    if (doc.contains("handshake_refusals") && doc["handshake_refusals"].is_object() &&
        !doc["handshake_refusals"].empty()) {
      out << "refused     ";
      const char* sep = " ";
      for (const auto& [reason, n] : doc["handshake_refusals"].items())
        if (n.is_number_unsigned()) {
          out << sep << n.get<std::uint64_t>() << " " << reason;
          sep = ", ";
        }
      out << " (peers refused at TLS handshakes since start)\n";
    }
    auto n = doc.contains("revocations") && doc["revocations"].is_array()
                 ? doc["revocations"].size()
                 : 0;
    out << "revocations  " << n;
    if (doc.contains("sync") && doc["sync"].is_object() &&
        doc["sync"].value("statements_refused", std::uint64_t{0}) > 0)
      out << " (" << doc["sync"]["statements_refused"].get<std::uint64_t>()
          << " statement(s) refused)";
    out << '\n';
    if (n > 0)
      for (const auto& r : doc["revocations"])
        if (r.is_object())
          out << "  revoked    " << str(r, "node") << " key " << str(r, "key") << " by "
              << str(r, "issuer") << " at " << str(r, "revoked_at") << '\n';
  }
  const auto& ring = doc["keyring"];
  if (ring.value("enabled", false)) {
    out << "keyring      primary " << str(ring, "primary");
    if (ring.contains("ids") && ring["ids"].is_array() && ring["ids"].size() > 1)
      out << " (+" << ring["ids"].size() - 1 << " more)";
    out << '\n';
  } else {
    out << "keyring      none (gossip is not encrypted)\n";
  }
  return out.str();
}

} // namespace starling::actors
