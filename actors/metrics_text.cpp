#include "actors/metrics_text.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "proxy/dataplane.hpp"

namespace starling::actors {

namespace {

/// One sample: a suffix of the family's name ("_bucket" of a histogram; usually empty),
/// its label text and its value.
using sample = std::tuple<std::string, std::string, std::string>;

/// One metric family: its type, help text and samples.
struct family {
  std::string type;
  std::string help;
  std::vector<sample> samples;
};

using families = std::map<std::string, family>;

/// Counters of the stats view that are levels, not totals (rendered as gauges, no _total).
const std::map<std::string, std::set<std::string>>& gauges() {
  static const std::map<std::string, std::set<std::string>> g{
      {"transport", {"inbound_buffered"}},
      {"sealer", {"tracked_senders"}},
      {"membership", {"health_score", "pending_broadcasts"}},
      {"routing", {"owners", "policies", "own_services", "records_pending"}},
      {"proxy", {"config_generation", "services", "in_flight", "draining", "upstream_idle"}},
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
  f.samples.emplace_back(std::string{}, std::move(labels), std::move(value));
}

/// The groups of the stats view.
void add_stats(families& out, const nlohmann::json& stats) {
  if (!stats.is_object())
    return;
  for (const auto& [group, counters] : stats.items()) {
    if (!counters.is_object() || group == "proxy_services")
      continue; // a top-level address, a group whose actor restarts, or add_proxy's detail
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
        refused.samples.emplace_back(std::string{}, "reason=\"" + escape_label(reason) + "\"",
                                     number(n));
  if (certs.contains("sync") && certs["sync"].is_object())
    for (const auto& [key, n] : certs["sync"].items())
      if (n.is_number())
        add(out, "starling_identity_sync_" + sanitize(key) + "_total", "counter",
            "Identity channel anti-entropy: " + key + " (starling certs: sync).", "", number(n));
}

/// A double as the text format writes it ("+Inf" for infinity).
std::string real(double x) {
  if (x == std::numeric_limits<double>::infinity())
    return "+Inf";
  return nlohmann::json(x).dump();
}

/// A histogram family's samples for one label set: cumulative buckets, then sum and count.
void add_histogram(families& out, const std::string& name, const std::string& help,
                   const std::string& labels, const std::vector<double>& bounds,
                   const std::vector<std::uint64_t>& counts, double sum) {
  auto& f = out[name];
  f.type = "histogram";
  f.help = help;
  std::uint64_t cumulative = 0;
  const auto n = std::min(bounds.size(), counts.size());
  for (std::size_t i = 0; i < n; ++i) {
    cumulative += counts[i];
    f.samples.emplace_back("_bucket", labels + ",le=\"" + real(bounds[i]) + "\"",
                           std::to_string(cumulative));
  }
  if (n == 0 || bounds[n - 1] != std::numeric_limits<double>::infinity())
    f.samples.emplace_back("_bucket", labels + ",le=\"+Inf\"", std::to_string(cumulative));
  f.samples.emplace_back("_sum", labels, real(sum));
  f.samples.emplace_back("_count", labels, std::to_string(cumulative));
}

/// The data plane's per-service (outbound and inbound) and per-instance families.
void add_proxy(families& out, const proxy::dataplane_stats& p) {
  const auto counter = [&](const std::string& name, const std::string& help,
                           const std::string& labels, std::uint64_t n) {
    add(out, name, "counter", help, labels, std::to_string(n));
  };
  const auto classes = [&](const std::string& name, const std::string& help,
                           const std::string& labels, const auto& s) {
    const std::pair<const char*, std::uint64_t> by_class[] = {{"2xx", s.responses_2xx},
                                                              {"3xx", s.responses_3xx},
                                                              {"4xx", s.responses_4xx},
                                                              {"5xx", s.responses_5xx}};
    for (const auto& [cls, n] : by_class)
      counter(name, help, labels + ",class=\"" + cls + "\"", n);
  };
  for (const auto& s : p.services) {
    const auto svc = "service=\"" + escape_label(s.service) + "\"";
    counter("starling_proxy_service_requests_total",
            "HTTP requests or TCP connections this node's outbound proxy started, by service.", svc,
            s.requests);
    classes("starling_proxy_service_responses_total",
            "HTTP responses to this node's clients, by service and status class.", svc, s);
    counter("starling_proxy_service_grpc_failures_total",
            "gRPC calls of this node's clients answered with a status other than OK (HTTP 200s "
            "among the responses), by service.",
            svc, s.grpc_failures);
    counter("starling_proxy_service_retries_total", "Retries made, by service.", svc, s.retries);
    counter("starling_proxy_service_retries_refused_total",
            "Retries the retry budget refused, by service.", svc, s.retries_refused);
    counter("starling_proxy_service_timeouts_total", "Requests that timed out, by service.", svc,
            s.timeouts);
    counter("starling_proxy_service_breaker_refused_total",
            "Requests the circuit breaker refused, by service.", svc, s.breaker_refused);
    counter("starling_proxy_service_ejections_total", "Outlier ejections of instances, by service.",
            svc, s.ejections);
    counter("starling_proxy_service_received_bytes_total", "Bytes from clients, by service.", svc,
            s.bytes_in);
    counter("starling_proxy_service_sent_bytes_total", "Bytes to clients, by service.", svc,
            s.bytes_out);
    add_histogram(out, "starling_proxy_request_duration_seconds",
                  "Time from a request's first byte to its response's last (HTTP), or a TCP "
                  "connection's life, by service.",
                  svc, s.latency_bounds, s.latency_counts, s.latency_sum_seconds);
  }
  for (const auto& s : p.inbound_services) {
    const auto svc = "service=\"" + escape_label(s.service) + "\"";
    counter("starling_proxy_inbound_service_requests_total",
            "HTTP requests or TCP connections this node's inbound proxy served for its local "
            "instances, by service.",
            svc, s.requests);
    classes("starling_proxy_inbound_service_responses_total",
            "HTTP responses of this node's inbound proxy to its callers, by service and status "
            "class.",
            svc, s);
    counter("starling_proxy_inbound_service_grpc_failures_total",
            "gRPC calls this node's inbound proxy served with a status other than OK, by "
            "service.",
            svc, s.grpc_failures);
    counter("starling_proxy_inbound_service_received_bytes_total",
            "Bytes from callers through this node's inbound proxy, by service.", svc, s.bytes_in);
    counter("starling_proxy_inbound_service_sent_bytes_total",
            "Bytes to callers through this node's inbound proxy, by service.", svc, s.bytes_out);
    add_histogram(out, "starling_proxy_inbound_request_duration_seconds",
                  "Time from a request's head received to its response's last byte on this "
                  "node's inbound proxy (HTTP), or a TCP connection's life, by service.",
                  svc, s.latency_bounds, s.latency_counts, s.latency_sum_seconds);
  }
  for (const auto& i : p.instances) {
    const auto who = "service=\"" + escape_label(i.service) + "\",instance=\"" +
                     escape_label(i.instance) + "\",node=\"" + escape_label(i.node) + "\"";
    counter("starling_proxy_instance_requests_total",
            "Attempts this node's outbound proxy sent to an instance (a retry is another), "
            "counted when each ends.",
            who, i.requests);
    classes("starling_proxy_instance_responses_total",
            "Responses of an instance to this node's outbound proxy, by status class.", who, i);
    counter("starling_proxy_instance_grpc_failures_total",
            "gRPC calls an instance answered this node's outbound proxy with a status other "
            "than OK.",
            who, i.grpc_failures);
    const std::string failures = "starling_proxy_instance_failures_total";
    const std::string help = "Attempts to an instance that got no response, by reason "
                             "(connect_failure, reset, timeout).";
    counter(failures, help, who + ",reason=\"connect_failure\"", i.connect_failures);
    counter(failures, help, who + ",reason=\"reset\"", i.resets);
    counter(failures, help, who + ",reason=\"timeout\"", i.timeouts);
    add_histogram(out, "starling_proxy_instance_request_duration_seconds",
                  "Time of each attempt this node's outbound proxy sent to an instance (HTTP), "
                  "or a TCP connection's life.",
                  who, i.latency_bounds, i.latency_counts, i.latency_sum_seconds);
  }
  for (const auto& [reason, n] : p.generated)
    add(out, "starling_proxy_generated_responses_total", "counter",
        "Responses the proxy made itself (400, 403, 431, 502, 503, 504), by reason code "
        "(docs/proxy.md).",
        "reason=\"" + escape_label(reason) + "\"", std::to_string(n));
}

} // namespace

std::string render_metrics(const nlohmann::json& stats, const nlohmann::json& certs,
                           const build_labels& build, const proxy::dataplane_stats* proxy) {
  families out;
  add(out, "starling_build_info", "gauge",
      "The running binary's version and source revision (always 1).",
      "version=\"" + escape_label(build.version) + "\",revision=\"" + escape_label(build.revision) +
          "\"",
      "1");
  add_stats(out, stats);
  add_identity(out, certs);
  if (proxy)
    add_proxy(out, *proxy);
  std::string text;
  for (const auto& [name, f] : out) {
    text += "# HELP " + name + " " + f.help + "\n";
    text += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& [suffix, labels, value] : f.samples)
      text += name + suffix + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
  }
  return text;
}

} // namespace starling::actors
