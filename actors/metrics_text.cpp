#include "actors/metrics_text.hpp"

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace starling::actors {

namespace {

/// One metric family: its type, help text and samples (label text, value).
struct family {
  std::string type;
  std::string help;
  std::vector<std::pair<std::string, std::string>> samples;
};

using families = std::map<std::string, family>;

/// Counters of the stats view that are levels, not totals (rendered as gauges, no _total).
const std::map<std::string, std::set<std::string>>& gauges() {
  static const std::map<std::string, std::set<std::string>> g{
      {"transport", {"inbound_buffered"}},
      {"sealer", {"tracked_senders"}},
      {"membership", {"health_score", "pending_broadcasts"}},
      {"routing", {"owners", "policies", "own_services", "records_pending"}},
  };
  return g;
}

/// A metric name part: [a-zA-Z0-9_] only (anything else becomes '_').
std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    out += ok ? c : '_';
  }
  return out;
}

/// A label value, escaped as the text format requires.
std::string escape_label(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(const nlohmann::json& v) {
  if (v.is_number_unsigned())
    return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_integer())
    return std::to_string(v.get<std::int64_t>());
  return nlohmann::json(v.get<double>()).dump();
}

void add(families& out, const std::string& name, const std::string& type, const std::string& help,
         std::string labels, std::string value) {
  auto& f = out[name];
  f.type = type;
  f.help = help;
  f.samples.emplace_back(std::move(labels), std::move(value));
}

/// The groups of the stats view.
void add_stats(families& out, const nlohmann::json& stats) {
  if (!stats.is_object())
    return;
  for (const auto& [group, counters] : stats.items()) {
    if (!counters.is_object())
      continue; // a top-level address, or a group whose actor restarts
    const auto g = sanitize(group);
    const auto known = gauges().find(group);
    for (const auto& [key, value] : counters.items()) {
      if (!value.is_number())
        continue;
      const auto k = sanitize(key);
      const auto text = number(value);
      // Labelled families where the stats view spells a label into the name.
      if (group == "membership" && k.rfind("members_", 0) == 0) {
        add(out, "starling_membership_members", "gauge",
            "Members of this node's view by state (starling stats: membership.members_*).",
            "state=\"" + escape_label(k.substr(8)) + "\"", text);
        continue;
      }
      if (group == "routing" && k.rfind("refused_", 0) == 0) {
        add(out, "starling_routing_records_refused_total", "counter",
            "Routing records refused, by reason (docs/routing.md).",
            "reason=\"" + escape_label(k.substr(8)) + "\"", text);
        continue;
      }
      if (group == "routing" && k == "records_refused")
        continue; // the sum of the family above
      if (group == "routing" && k.rfind("dns_", 0) == 0) {
        add(out, "starling_dns_" + k.substr(4) + "_total", "counter",
            "DNS responder: " + k.substr(4) + " (starling stats: routing." + k + ").", "", text);
        continue;
      }
      const bool gauge = known != gauges().end() && known->second.contains(key);
      const auto name = "starling_" + g + "_" + k + (gauge ? "" : "_total");
      add(out, name, gauge ? "gauge" : "counter",
          std::string{gauge ? "Level" : "Count"} + " " + g + "." + k +
              " (starling stats, docs/operations.md).",
          "", text);
    }
  }
}

/// Certificate expiry and handshake refusals of the certs view.
void add_identity(families& out, const nlohmann::json& certs) {
  if (!certs.is_object() || !certs.value("identity", false))
    return;
  const std::string expiry = "starling_identity_certificate_expiration_timestamp_seconds";
  const std::string help = "When a certificate of this node's chain, its issuer certificate "
                           "or a trusted root expires (unix seconds).";
  const auto cert = [&](const nlohmann::json& c, const std::string& kind) {
    if (!c.is_object() || !c.contains("not_after_unix") || !c["not_after_unix"].is_number())
      return;
    const auto spki = c.value("spki_sha256", std::string{}).substr(0, 16);
    add(out, expiry, "gauge", help, "kind=\"" + kind + "\",spki=\"" + escape_label(spki) + "\"",
        number(c["not_after_unix"]));
  };
  if (certs.contains("certificate"))
    cert(certs["certificate"], "node");
  if (certs.contains("issuers") && certs["issuers"].is_array())
    for (const auto& c : certs["issuers"])
      cert(c, "issuer");
  if (certs.contains("issuer"))
    cert(certs["issuer"], "own_issuer");
  if (certs.contains("roots") && certs["roots"].is_array())
    for (const auto& c : certs["roots"])
      cert(c, "root");
  auto& refused = out["starling_identity_handshake_refusals_total"];
  refused.type = "counter";
  refused.help = "TLS handshakes this node refused, by reason (docs/identity.md).";
  if (certs.contains("handshake_refusals") && certs["handshake_refusals"].is_object())
    for (const auto& [reason, n] : certs["handshake_refusals"].items())
      if (n.is_number())
        refused.samples.emplace_back("reason=\"" + escape_label(reason) + "\"", number(n));
  if (certs.contains("sync") && certs["sync"].is_object())
    for (const auto& [key, n] : certs["sync"].items())
      if (n.is_number())
        add(out, "starling_identity_sync_" + sanitize(key) + "_total", "counter",
            "Identity channel anti-entropy: " + key + " (starling certs: sync).", "", number(n));
}

} // namespace

std::string render_metrics(const nlohmann::json& stats, const nlohmann::json& certs,
                           std::string_view version) {
  families out;
  add(out, "starling_build_info", "gauge", "The running binary's version (always 1).",
      "version=\"" + escape_label(version) + "\"", "1");
  add_stats(out, stats);
  add_identity(out, certs);
  std::string text;
  for (const auto& [name, f] : out) {
    text += "# HELP " + name + " " + f.help + "\n";
    text += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, value] : f.samples)
      text += name + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
  }
  return text;
}

} // namespace starling::actors
