#include "actors/cli/views.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/errc.hpp"

namespace starling::cli {

using actors::errc;
using actors::make_error;
using ojson = nlohmann::ordered_json;
using nlohmann::ordered_json;

namespace {

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

/// Rows as left-aligned columns two spaces apart, trailing blanks trimmed, one line each.
std::string render_columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (std::size_t i = 0; i < r.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size())
        line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

} // namespace

caf::expected<std::string> members_table(std::string_view json) {
  auto doc = ojson::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("members") ||
      !doc["members"].is_array())
    return make_error(errc::request_failed, "the agent sent an unexpected members view");
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NAME", "ADDRESS", "STATE", "INCARNATION", "TAGS"});
  for (const auto& m : doc["members"]) {
    auto str = [&m](const char* key) -> std::string {
      if (!m.contains(key))
        return "";
      const auto& v = m[key];
      return v.is_string() ? v.get<std::string>() : v.dump();
    };
    std::string tags;
    if (m.contains("tags") && m["tags"].is_object()) {
      for (const auto& [k, v] : m["tags"].items()) {
        if (!tags.empty())
          tags += ',';
        tags += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      }
    }
    rows.push_back({str("name"), str("address"), str("state"), str("incarnation"), tags});
  }
  return render_columns(rows);
}

caf::expected<std::string> stats_table(std::string_view json) {
  auto doc = ojson::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("transport") ||
      !doc.contains("membership"))
    return make_error(errc::request_failed, "the agent sent an unexpected stats view");
  std::vector<std::vector<std::string>> rows;
  for (const auto& [group, counters] : doc.items()) {
    if (counters.is_null()) {
      rows.push_back({group, "(none)"});
      continue;
    }
    if (!counters.is_object())
      continue; // addresses and later scalar fields are not counter groups
    rows.push_back({group});
    for (const auto& [name, value] : counters.items())
      rows.push_back({"  " + name, value.is_string() ? value.get<std::string>() : value.dump()});
  }
  return render_columns(rows);
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

caf::expected<std::string> keyring_table(std::string_view json) {
  auto doc = nlohmann::json::parse(json, nullptr, false);
  auto bad = [] {
    return make_error(errc::request_failed, "the agent's answer is not a keyring view");
  };
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("enabled") ||
      !doc["enabled"].is_boolean() || !doc.contains("keys") || !doc["keys"].is_array() ||
      !doc.contains("counters") || !doc["counters"].is_object())
    return bad();
  std::ostringstream out;
  if (!doc["enabled"].get<bool>()) {
    out << "gossip encryption is off on this node (no gossip_key or keyring configured)\n";
    return out.str();
  }
  out << "KEY ID            PRIMARY\n";
  for (const auto& k : doc["keys"]) {
    if (!k.is_object() || !k.contains("id") || !k["id"].is_string() || !k.contains("primary") ||
        !k["primary"].is_boolean())
      return bad();
    out << k["id"].get<std::string>() << "  " << (k["primary"].get<bool>() ? "yes" : "") << '\n';
  }
  const auto& c = doc["counters"];
  auto n = [&](const char* name) -> std::string {
    return c.contains(name) && c[name].is_number_unsigned()
               ? std::to_string(c[name].get<std::uint64_t>())
               : std::string{"?"};
  };
  out << "\nsealed " << n("sealed") << ", opened " << n("opened") << "; refused: tampered "
      << n("tampered") << ", replayed " << n("replayed") << ", unknown_key " << n("unknown_key")
      << ", unsealed " << n("unsealed") << ", malformed " << n("malformed") << ", wrong_receiver "
      << n("wrong_receiver") << '\n';
  if (doc.contains("dropped") && doc["dropped"].is_object()) {
    const auto& d = doc["dropped"];
    auto m = [&](const char* name) -> std::string {
      return d.contains(name) && d[name].is_number_unsigned()
                 ? std::to_string(d[name].get<std::uint64_t>())
                 : std::string{"?"};
    };
    out << "dropped by the transport: undecodable " << m("malformed") << ", oversized "
        << m("oversized") << ", binding_refused " << m("binding_refused") << '\n';
  }
  return out.str();
}

} // namespace starling::cli
