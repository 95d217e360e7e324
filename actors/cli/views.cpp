#include "actors/cli/views.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/errc.hpp"

namespace starling::cli {

using actors::errc;
using actors::make_error;
using ojson = nlohmann::ordered_json;
using nlohmann::ordered_json;

std::string printable(std::string text) {
  for (auto& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = '?';
  return text;
}

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

/// The string at `key` of `obj`, printable; nullopt when absent, not a string, or `obj` is
/// not an object.
std::optional<std::string> string_at(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object())
    return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string())
    return std::nullopt;
  return printable(it->get<std::string>());
}

/// The string at `key`, or `missing` when there is none.
std::string text_at(const nlohmann::json& obj, const char* key, const char* missing = "?") {
  auto s = string_at(obj, key);
  return s ? std::move(*s) : std::string{missing};
}

/// The positive integer at `key` of `obj`; nullopt when absent, zero (a resilience setting
/// left to the proxy's default) or anything else.
std::optional<std::uint64_t> set_at(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object())
    return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_unsigned() || it->get<std::uint64_t>() == 0)
    return std::nullopt;
  return it->get<std::uint64_t>();
}

/// The non-negative integer at `key` of `obj`; nullopt when absent or anything else.
std::optional<std::uint64_t> unsigned_at(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object())
    return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_unsigned())
    return std::nullopt;
  return it->get<std::uint64_t>();
}

/// The number at `key` as text, "?" when it is not a non-negative integer.
std::string number_at(const nlohmann::json& obj, const char* key) {
  auto n = unsigned_at(obj, key);
  return n ? std::to_string(*n) : std::string{"?"};
}

/// The list at `key` of `obj`: nullptr when absent or null; `bad` set when it is there but
/// is not an array of objects.
const nlohmann::json* objects_at(const nlohmann::json& obj, const char* key, bool& bad) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null())
    return nullptr;
  if (!it->is_array()) {
    bad = true;
    return nullptr;
  }
  for (const auto& item : *it)
    if (!item.is_object()) {
      bad = true;
      return nullptr;
    }
  return &*it;
}

/// Milliseconds as an operator writes them: "500ms", "2s", "1m30s", "1500ms".
std::string millis_text(std::uint64_t ms) {
  if (ms == 0 || ms % 1000 != 0)
    return std::to_string(ms) + "ms";
  auto s = ms / 1000;
  std::string out;
  if (s >= 3600)
    out += std::to_string(s / 3600) + "h";
  if (s % 3600 >= 60)
    out += std::to_string(s % 3600 / 60) + "m";
  if (s % 60 != 0)
    out += std::to_string(s % 60) + "s";
  return out;
}

/// The HEALTH column of one instance of the services view.
std::string health_text(const nlohmann::json& inst) {
  auto alive = inst.find("node_alive");
  if (alive != inst.end() && alive->is_boolean() && !alive->get<bool>())
    return "node dead";
  auto health = string_at(inst, "health");
  if (!health)
    return "?";
  if (*health == "failing") {
    auto why = string_at(inst, "last_check");
    return why && !why->empty() ? "failing: " + *why : std::string{"failing"};
  }
  if (*health == "none")
    return "no check";
  return *health;
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

namespace {

/// One line per service and direction and per instance of the stats view's proxy_services:
/// "  outbound web" "requests 10  success 100%  p50/p95/p99 0.41/0.9/1.2 ms".
void proxy_service_rows(const ojson& detail, std::vector<std::vector<std::string>>& rows) {
  const auto num = [](const ojson& o, const char* key) {
    if (!o.contains(key) || o[key].is_null())
      return std::string{"-"};
    if (!o[key].is_number_float())
      return o[key].dump();
    std::ostringstream s;
    s << o[key].get<double>();
    return s.str();
  };
  const auto summary = [&](const ojson& o) {
    std::string line = "requests " + num(o, "requests");
    if (o.contains("success_rate") && o["success_rate"].is_number()) {
      std::ostringstream pct;
      pct << 100.0 * o["success_rate"].get<double>();
      line += "  success " + pct.str() + "%";
    }
    if (o.contains("connect_failures")) {
      const auto failed = o.value("connect_failures", std::uint64_t{0}) +
                          o.value("resets", std::uint64_t{0}) +
                          o.value("timeouts", std::uint64_t{0});
      line += "  no answer " + std::to_string(failed);
    }
    return line + "  p50/p95/p99 " + num(o, "p50_ms") + "/" + num(o, "p95_ms") + "/" +
           num(o, "p99_ms") + " ms";
  };
  rows.push_back({"proxy services"});
  for (const char* dir : {"outbound", "inbound"})
    if (detail.contains(dir) && detail[dir].is_array())
      for (const auto& s : detail[dir])
        rows.push_back({"  " + std::string{dir} + " " + s.value("service", ""), summary(s)});
  if (detail.contains("instances") && detail["instances"].is_array())
    for (const auto& i : detail["instances"])
      rows.push_back({"  instance " + i.value("service", "") + "/" + i.value("instance", "") + "@" +
                          i.value("node", ""),
                      summary(i)});
}

} // namespace

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
    if (group == "proxy_services") {
      proxy_service_rows(counters, rows);
      continue;
    }
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
  for (const auto& warning : expiry_warnings(json))
    out << warning << '\n';
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

caf::expected<std::string> services_table(std::string_view json) {
  auto bad = [] {
    return make_error(errc::request_failed, "the agent's answer is not a services view");
  };
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return bad();
  bool malformed = false;
  const auto* services = objects_at(doc, "services", malformed);
  if (malformed || services == nullptr)
    return bad();
  if (services->empty())
    return std::string{"no services registered\n"};
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NAME", "INSTANCE", "ADDRESS:PORT", "PROTO", "VERSION", "HEALTH"});
  for (const auto& svc : *services) {
    const auto name = text_at(svc, "name");
    const auto* instances = objects_at(svc, "instances", malformed);
    if (malformed)
      return bad();
    if (instances == nullptr || instances->empty()) {
      rows.push_back({name, "-", "-", "-", "-", "no instances"});
      continue;
    }
    for (const auto& inst : *instances) {
      auto address = text_at(inst, "address");
      if (address.find(':') != std::string::npos)
        address = "[" + address + "]"; // IPv6
      auto version = text_at(inst, "version", "");
      rows.push_back({name, text_at(inst, "node") + "/" + text_at(inst, "id"),
                      address + ":" + number_at(inst, "port"), text_at(inst, "protocol"),
                      version.empty() ? "-" : version, health_text(inst)});
    }
  }
  return render_columns(rows);
}

caf::expected<std::string> routes_text(std::string_view json) {
  auto bad = [] {
    return make_error(errc::request_failed, "the agent's answer is not a routes view");
  };
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return bad();
  bool malformed = false;
  const auto* routes = objects_at(doc, "routes", malformed);
  if (malformed || routes == nullptr)
    return bad();
  if (routes->empty())
    return std::string{"no routes\n"};
  std::ostringstream out;
  for (const auto& svc : *routes) {
    out << text_at(svc, "service");
    if (auto outbound = string_at(svc, "outbound"))
      out << "  outbound " << *outbound << '\n';
    else
      out << "  outbound: none\n";
    if (const auto* split = objects_at(svc, "split", malformed); split && !split->empty()) {
      out << "  split: ";
      const char* sep = "";
      for (const auto& leg : *split) {
        out << sep << text_at(leg, "version") << ' ' << number_at(leg, "weight") << '%';
        sep = ", ";
      }
      if (auto signer = string_at(svc, "split_signer"))
        out << " (by " << *signer << ')';
      out << '\n';
    }
    if (const auto* list = objects_at(svc, "routes", malformed))
      for (const auto& r : *list)
        out << "  route " << text_at(r, "name") << ": " << text_at(r, "header") << " = "
            << text_at(r, "value") << " -> " << text_at(r, "version") << '\n';
    if (auto res = svc.find("resilience"); res != svc.end() && res->is_object()) {
      std::vector<std::string> timeouts;
      if (auto t = set_at(*res, "timeout_ms"))
        timeouts.push_back(millis_text(*t) + " total");
      if (auto t = set_at(*res, "per_try_timeout_ms"))
        timeouts.push_back(millis_text(*t) + " per try");
      std::string retries;
      if (auto n = set_at(*res, "retries"))
        retries = "retries: " + std::to_string(*n);
      if (auto n = set_at(*res, "retry_budget_percent"))
        retries += (retries.empty() ? "retry budget " : ", budget ") + std::to_string(*n) + "%";
      if (auto n = set_at(*res, "retry_min_per_second"))
        retries += retries.empty() ? "retries at least " + std::to_string(*n) + "/s"
                                   : " (min " + std::to_string(*n) + "/s)";
      std::string line;
      if (!timeouts.empty()) {
        line = "timeouts: " + timeouts[0];
        for (std::size_t i = 1; i < timeouts.size(); ++i)
          line += ", " + timeouts[i];
      }
      if (!retries.empty())
        line += (line.empty() ? "" : "; ") + retries;
      if (!line.empty())
        out << "  " << line << '\n';
      // Circuit breaking and outlier ejection: null when left to the proxy's default.
      std::string limits;
      auto add = [&](const char* key, const std::string& text) {
        if (unsigned_at(*res, key))
          limits += (limits.empty() ? "" : ", ") + text;
      };
      auto value = [&](const char* key) {
        return std::to_string(unsigned_at(*res, key).value_or(0));
      };
      add("max_connections", "max " + value("max_connections") + " connections");
      add("max_requests", "max " + value("max_requests") + " requests");
      add("max_pending", "max " + value("max_pending") + " waiting");
      add("eject_consecutive_5xx", "eject after " + value("eject_consecutive_5xx") + " 5xx");
      add("eject_consecutive_connect_failures",
          "eject after " + value("eject_consecutive_connect_failures") + " connect failures");
      if (auto t = unsigned_at(*res, "ejection_time_ms"))
        add("ejection_time_ms", "for " + millis_text(*t));
      add("max_ejection_percent", "at most " + value("max_ejection_percent") + "% ejected");
      if (!limits.empty())
        out << "  limits: " << limits << '\n';
    } else if (res != svc.end() && !res->is_null()) {
      return bad();
    }
    if (const auto* rules = objects_at(svc, "authz", malformed))
      for (const auto& rule : *rules) {
        auto allow = rule.find("allow");
        out << "  authz " << text_at(rule, "name") << ": "
            << (allow == rule.end() || !allow->is_boolean() ? "?"
                : allow->get<bool>()                        ? "allow"
                                                            : "deny");
        const char* sep = " ";
        if (auto from = rule.find("from"); from != rule.end() && from->is_array())
          for (const auto& f : *from) {
            out << sep << (f.is_string() ? printable(f.get<std::string>()) : "?");
            sep = ", ";
          }
        out << '\n';
      }
    if (malformed)
      return bad();
  }
  return out.str();
}

caf::expected<std::string> registered_text(std::string_view json) {
  auto doc = nlohmann::json::parse(json, nullptr, false);
  auto name = string_at(doc, "name");
  auto port = unsigned_at(doc, "port");
  if (!name || !port)
    return make_error(errc::request_failed, "the agent's answer is not a registered service");
  std::ostringstream out;
  out << "registered " << *name << " (id " << text_at(doc, "id", name->c_str()) << ") on port "
      << *port << ": spreading to the mesh\n";
  if (auto check = doc.find("check"); check != doc.end() && check->is_object()) {
    const auto type = text_at(*check, "type");
    out << "health check: " << type;
    if (type == "http")
      out << " GET " << text_at(*check, "path", "/");
    else if (type == "tcp")
      out << " connect";
    else if (type == "grpc") {
      const auto asked = text_at(*check, "grpc_service", "");
      out << " grpc.health.v1 Check of "
          << (asked.empty() ? std::string{"the whole server"} : "'" + asked + "'");
    }
    if (auto every = string_at(*check, "interval"))
      out << " every " << *every;
    out << '\n';
  }
  return out.str();
}

} // namespace starling::cli

namespace starling::cli {

namespace {

/// The counter `key` of the group `group` in a stats view; nullopt when absent or not a
/// non-negative integer.
std::optional<std::uint64_t> counter_of(const nlohmann::json& view, const char* group,
                                        const char* key) {
  if (!view.is_object())
    return std::nullopt;
  auto it = view.find(group);
  return it == view.end() ? std::nullopt : unsigned_at(*it, key);
}

/// The rise of a counter per second, one decimal; "-" when it cannot be told.
std::string rate_text(std::optional<std::uint64_t> now, std::optional<std::uint64_t> before,
                      double seconds) {
  if (!now || !before || *now < *before || !(seconds > 0))
    return "-";
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(1);
  out << static_cast<double>(*now - *before) / seconds;
  return out.str();
}

/// A number of the view as text with `digits` decimals (a share scaled by `scale`, with
/// `suffix`); "-" when null or absent, "?" when not a number.
std::string decimal_at(const nlohmann::json& obj, const char* key, int digits, double scale = 1,
                       const char* suffix = "") {
  if (!obj.is_object())
    return "?";
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null())
    return "-";
  if (!it->is_number())
    return "?";
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << it->get<double>() * scale << suffix;
  return out.str();
}

/// The entry of `list` (an array of objects) whose "service" is `service`; null if none.
const nlohmann::json* service_entry(const nlohmann::json& list, const std::string& service) {
  if (!list.is_array())
    return nullptr;
  for (const auto& e : list)
    if (e.is_object() && string_at(e, "service") == service)
      return &e;
  return nullptr;
}

} // namespace

caf::expected<std::string> top_frame(std::string_view current, std::string_view previous,
                                     double seconds) {
  auto now = nlohmann::json::parse(current, nullptr, false);
  if (now.is_discarded() || !now.is_object() || !now.contains("membership") ||
      !now.contains("proxy"))
    return make_error(errc::request_failed, "the agent sent an unexpected stats view");
  auto before =
      previous.empty() ? nlohmann::json{} : nlohmann::json::parse(previous, nullptr, false);
  if (before.is_discarded())
    before = nlohmann::json{};
  const auto count = [&](const char* group, const char* key) {
    auto n = counter_of(now, group, key);
    return n ? std::to_string(*n) : std::string{"?"};
  };
  const auto rate = [&](const char* group, const char* key) {
    return rate_text(counter_of(now, group, key), counter_of(before, group, key), seconds);
  };
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"members", "alive " + count("membership", "members_alive") + "  suspect " +
                                 count("membership", "members_suspect") + "  dead " +
                                 count("membership", "members_dead") + "  left " +
                                 count("membership", "members_left") + "  health score " +
                                 count("membership", "health_score")});
  rows.push_back({"outbound",
                  "requests " + count("proxy", "requests") + " (" + rate("proxy", "requests") +
                      "/s)  in flight " + count("proxy", "in_flight") + "  2xx " +
                      count("proxy", "responses_2xx") + "  4xx " + count("proxy", "responses_4xx") +
                      "  5xx " + count("proxy", "responses_5xx") + " (" +
                      rate("proxy", "responses_5xx") + "/s)"});
  rows.push_back({"", "connections " + count("proxy", "outbound_connections") + "  pooled " +
                          count("proxy", "upstream_idle") + "  retries " +
                          count("proxy", "retries") + "  timeouts " + count("proxy", "timeouts") +
                          "  breaker refused " + count("proxy", "breaker_refused") +
                          "  ejections " + count("proxy", "ejections")});
  rows.push_back(
      {"inbound", "requests " + count("proxy", "inbound_requests") + " (" +
                      rate("proxy", "inbound_requests") + "/s)  connections " +
                      count("proxy", "inbound_connections") + "  5xx " +
                      count("proxy", "inbound_responses_5xx") + "  refused: tls " +
                      count("proxy", "inbound_refused_tls") + ", authz " +
                      count("proxy", "inbound_refused_authz") +
                      (counter_of(now, "proxy", "draining").value_or(0) != 0 ? "  DRAINING" : "")});
  rows.push_back({"routing", "owners " + count("routing", "owners") + "  policies " +
                                 count("routing", "policies") + "  own services " +
                                 count("routing", "own_services") + "  records refused " +
                                 count("routing", "records_refused")});
  std::string out = render_columns(rows);
  rows.clear();
  rows.push_back({"SERVICE", "DIR", "REQUESTS", "RATE/S", "SUCCESS", "P50 MS", "P99 MS"});
  const auto& services = now.contains("proxy_services") ? now["proxy_services"] : nlohmann::json{};
  const auto& services_before = before.is_object() && before.contains("proxy_services")
                                    ? before["proxy_services"]
                                    : nlohmann::json{};
  for (const char* dir : {"outbound", "inbound"}) {
    if (!services.is_object() || !services.contains(dir) || !services[dir].is_array())
      continue;
    for (const auto& s : services[dir]) {
      const auto name = string_at(s, "service");
      if (!name)
        continue;
      const auto* old = services_before.is_object() && services_before.contains(dir)
                            ? service_entry(services_before[dir], *name)
                            : nullptr;
      rows.push_back({*name, dir, number_at(s, "requests"),
                      rate_text(unsigned_at(s, "requests"),
                                old ? unsigned_at(*old, "requests") : std::nullopt, seconds),
                      decimal_at(s, "success_rate", 1, 100, "%"), decimal_at(s, "p50_ms", 2),
                      decimal_at(s, "p99_ms", 2)});
    }
  }
  if (rows.size() == 1)
    return out + "no proxied services yet\n";
  return out + render_columns(rows);
}

} // namespace starling::cli

namespace starling::cli {

std::vector<std::string> expiry_warnings(std::string_view json) {
  std::vector<std::string> out;
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return out;
  if (auto id = doc.find("identity"); id == doc.end() || !id->is_boolean() || !id->get<bool>())
    return out;
  constexpr std::int64_t day = 86400;
  // `renewed`: the node's own certificate, renewed by the agent at a third of its life left.
  const auto check = [&](const nlohmann::json& cert, const std::string& what, bool renewed,
                         const char* advice) {
    if (!cert.is_object())
      return;
    auto left_at = cert.find("expires_in_seconds");
    if (left_at == cert.end() || !left_at->is_number_integer())
      return;
    const auto left = left_at->get<std::int64_t>();
    std::optional<std::int64_t> life;
    auto from = cert.find("not_before_unix");
    auto to = cert.find("not_after_unix");
    if (from != cert.end() && to != cert.end() && from->is_number_integer() &&
        to->is_number_integer() && to->get<std::int64_t>() > from->get<std::int64_t>())
      life = to->get<std::int64_t>() - from->get<std::int64_t>();
    std::int64_t threshold = 0;
    if (renewed) {
      if (!life)
        return;
      threshold = *life / 4;
    } else {
      threshold = std::max(30 * day, life ? *life / 10 : std::int64_t{0});
    }
    if (left >= threshold)
      return;
    const auto until = text_at(cert, "not_after");
    out.push_back("warning: " + what +
                  (left <= 0 ? " has EXPIRED (" + until + ")"
                             : " expires in " + human_duration(left) + " (" + until + ")") +
                  "; " + advice);
  };
  if (auto cert = doc.find("certificate"); cert != doc.end())
    check(*cert, "this node's certificate", true,
          "its renewal, due at a third of its life, has not happened: is an issuer alive and "
          "reachable? (docs/operations.md, \"Renewal\")");
  if (auto own = doc.find("issuer"); own != doc.end())
    check(*own, "this node's issuer certificate", false,
          "sign a new one with `starling ca issuer` and restart this node with it");
  if (auto chain = doc.find("issuers"); chain != doc.end() && chain->is_array())
    for (const auto& cert : *chain)
      check(cert, "the certificate of issuer " + text_at(cert, "uri"), false,
            "that issuer needs a new one from `starling ca issuer`");
  if (auto roots = doc.find("roots"); roots != doc.end() && roots->is_array())
    for (const auto& cert : *roots) {
      auto pin = text_at(cert, "spki_sha256");
      check(cert, "the mesh root sha256:" + pin.substr(0, 16), false,
            "rotate it: both roots in bundle.crt, new issuers, then drop the old one "
            "(docs/operations.md, \"Revocation and root rotation\")");
    }
  return out;
}

} // namespace starling::cli
