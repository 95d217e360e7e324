#include "actors/routing_views.hpp"

#include <algorithm>
#include <charconv>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "gossip/routing_table.hpp"

namespace starling::actors {

using nlohmann::json;

namespace {

json optional_json(const std::optional<std::uint32_t>& v) { return v ? json(*v) : json(nullptr); }

} // namespace

std::string services_json(const gossip::routing_snapshot& snap) {
  json services = json::array();
  for (const auto& s : snap.services) {
    if (s.instances.empty())
      continue;
    json instances = json::array();
    for (const auto& i : s.instances)
      instances.push_back({{"node", i.node},
                           {"id", i.id},
                           {"address", i.address},
                           {"port", i.port},
                           {"protocol", gossip::to_string(i.protocol)},
                           {"tags", i.tags},
                           {"version", i.version},
                           {"weight", i.weight},
                           {"health", gossip::to_string(i.health)},
                           {"last_check", i.last_check},
                           {"node_alive", i.node_alive},
                           {"healthy", i.routable()}});
    services.push_back({{"name", s.name}, {"instances", std::move(instances)}});
  }
  return json{{"services", std::move(services)}}.dump();
}

std::string routes_json(const gossip::routing_snapshot& snap,
                        const std::map<std::string, std::string>& outbound) {
  json routes = json::array();
  for (const auto& s : snap.services) {
    const auto& p = s.policies;
    const auto out = outbound.find(s.name);
    json entry{{"service", s.name},
               {"outbound", out != outbound.end() ? json(out->second) : json(nullptr)}};
    if (p.split) {
      json split = json::array();
      for (const auto& w : *p.split)
        split.push_back({{"version", w.version}, {"weight", w.weight}});
      entry["split"] = std::move(split);
      entry["split_signer"] = p.split_origin ? json(p.split_origin->signer) : json(nullptr);
    } else {
      entry["split"] = nullptr;
      entry["split_signer"] = nullptr;
    }
    json header_routes = json::array();
    for (const auto& r : p.routes)
      header_routes.push_back(
          {{"name", r.name}, {"header", r.header}, {"value", r.value}, {"version", r.version}});
    entry["routes"] = std::move(header_routes);
    if (p.resilience)
      entry["resilience"] = {
          {"timeout_ms", p.resilience->timeout_ms},
          {"per_try_timeout_ms", p.resilience->per_try_timeout_ms},
          {"retries", p.resilience->retries},
          {"retry_budget_percent", p.resilience->retry_budget_percent},
          {"retry_min_per_second", p.resilience->retry_min_per_second},
          {"max_connections", optional_json(p.resilience->max_connections)},
          {"max_requests", optional_json(p.resilience->max_requests)},
          {"max_pending", optional_json(p.resilience->max_pending)},
          {"eject_consecutive_5xx", optional_json(p.resilience->eject_consecutive_5xx)},
          {"eject_consecutive_connect_failures",
           optional_json(p.resilience->eject_consecutive_connect_failures)},
          {"ejection_time_ms", optional_json(p.resilience->ejection_time_ms)},
          {"max_ejection_percent", optional_json(p.resilience->max_ejection_percent)}};
    else
      entry["resilience"] = nullptr;
    json authz = json::array();
    for (const auto& a : p.authz)
      authz.push_back({{"name", a.name}, {"from", a.from}, {"allow", a.allow}});
    entry["authz"] = std::move(authz);
    routes.push_back(std::move(entry));
  }
  return json{{"routes", std::move(routes)}}.dump();
}

namespace {

/// A whole number in [0, max]; nothing otherwise.
std::optional<std::uint32_t> number(std::string_view s, std::uint32_t max) {
  std::uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty() || v > max)
    return std::nullopt;
  return v;
}

/// Splits "key=value"; nothing when there is no '='.
std::optional<std::pair<std::string, std::string>> key_value(const std::string& arg) {
  auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    return std::nullopt;
  return std::pair{arg.substr(0, eq), arg.substr(eq + 1)};
}

caf::expected<std::uint32_t> millis(const std::string& text, const std::string& key) {
  auto d = parse_duration(text, key);
  if (!d)
    return usage(message_of(d.error()));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
  if (ms < 0 || ms > 3'600'000)
    return usage(key + ": at most 1h");
  return static_cast<std::uint32_t>(ms);
}

} // namespace

caf::expected<policy_command> parse_policy_command(const std::vector<std::string>& args) {
  if (args.empty())
    return usage("empty policy command");
  const auto& cmd = args[0];
  if (args.size() > 80)
    return usage(cmd + ": too many arguments");
  for (const auto& a : args)
    if (a.size() > 512)
      return usage(cmd + ": an argument over 512 bytes");
  if (args.size() < 2)
    return usage(cmd + " needs a service name");
  policy_command out;
  out.key.service = args[1];
  const bool clearing = args.size() >= 3 && (args.back() == "--clear" || args.back() == "--delete");
  if (cmd == "split") {
    out.key.kind = gossip::policy_kind::split;
    if (clearing) {
      if (args.size() != 3)
        return usage("split SVC --clear takes nothing else");
      return out;
    }
    if (args.size() < 3)
      return usage("split needs VERSION=PERCENT pairs, e.g. split web v1=90 v2=10");
    std::vector<gossip::split_weight> weights;
    for (std::size_t k = 2; k < args.size(); ++k) {
      auto kv = key_value(args[k]);
      auto w = kv ? number(kv->second, 100) : std::nullopt;
      if (!kv || !w)
        return usage("split: '" + args[k] + "' is not VERSION=PERCENT (0 to 100)");
      weights.push_back({kv->first, *w});
    }
    out.value = std::move(weights);
    return out;
  }
  if (cmd == "route" || cmd == "authz") {
    if (args.size() < 3)
      return usage(cmd + " needs a service and a rule name");
    out.key.name = args[2];
    out.key.kind = cmd == "route" ? gossip::policy_kind::route : gossip::policy_kind::authz;
    if (clearing) {
      if (args.size() != 4)
        return usage(cmd + " SVC NAME --delete takes nothing else");
      return out;
    }
    if (cmd == "route") {
      gossip::header_route r;
      r.name = out.key.name;
      std::set<std::string> seen;
      for (std::size_t k = 3; k < args.size(); ++k) {
        auto kv = key_value(args[k]);
        if (!kv || !seen.insert(kv->first).second)
          return usage("route: '" + args[k] + "' is not header=, value= or version= (once each)");
        if (kv->first == "header") {
          r.header = kv->second;
          std::transform(r.header.begin(), r.header.end(), r.header.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        } else if (kv->first == "value") {
          r.value = kv->second;
        } else if (kv->first == "version") {
          r.version = kv->second;
        } else {
          return usage("route: unknown key '" + kv->first + "' (header=, value=, version=)");
        }
      }
      if (r.header.empty() || r.version.empty())
        return usage("route needs header=NAME value=VALUE version=VERSION");
      out.value = std::move(r);
      return out;
    }
    if (args.size() < 5 || (args[3] != "allow" && args[3] != "deny"))
      return usage("authz needs allow|deny and at least one spiffe:// caller");
    gossip::authz_rule rule;
    rule.name = out.key.name;
    rule.allow = args[3] == "allow";
    for (std::size_t k = 4; k < args.size(); ++k) {
      if (!args[k].starts_with("spiffe://"))
        return usage("authz: caller '" + args[k] + "' is not a spiffe:// id");
      rule.from.push_back(args[k]);
    }
    std::sort(rule.from.begin(), rule.from.end());
    rule.from.erase(std::unique(rule.from.begin(), rule.from.end()), rule.from.end());
    out.value = std::move(rule);
    return out;
  }
  if (cmd == "resilience") {
    out.key.kind = gossip::policy_kind::resilience;
    if (clearing) {
      if (args.size() != 3)
        return usage("resilience SVC --clear takes nothing else");
      return out;
    }
    if (args.size() < 3)
      return usage(
          "resilience needs at least one of timeout=, per_try_timeout=, retries=, "
          "budget=, min_retries=, max_connections=, max_requests=, max_pending=, eject_5xx=, "
          "eject_connect_failures=, ejection_time=, max_ejected=");
    gossip::resilience_policy r;
    std::set<std::string> seen;
    for (std::size_t k = 2; k < args.size(); ++k) {
      auto kv = key_value(args[k]);
      if (!kv || !seen.insert(kv->first).second)
        return usage("resilience: '" + args[k] + "' is not KEY=VALUE (each key once)");
      const auto& [key, value] = *kv;
      if (key == "timeout" || key == "per_try_timeout") {
        auto ms = millis(value, "resilience " + key);
        if (!ms)
          return ms.error();
        (key == "timeout" ? r.timeout_ms : r.per_try_timeout_ms) = *ms;
      } else if (key == "retries" || key == "min_retries") {
        auto n = number(value, key == "retries" ? 10 : 10'000);
        if (!n)
          return usage("resilience " + key + ": '" + value + "' is not a whole number in range");
        (key == "retries" ? r.retries : r.retry_min_per_second) = *n;
      } else if (key == "budget" || key == "max_ejected") {
        auto text = value;
        if (!text.empty() && text.back() == '%')
          text.pop_back();
        auto n = number(text, 100);
        if (!n)
          return usage("resilience " + key + ": '" + value + "' is not a percent (0 to 100)");
        if (key == "budget")
          r.retry_budget_percent = *n;
        else
          r.max_ejection_percent = *n;
      } else if (key == "max_connections" || key == "max_requests" || key == "max_pending") {
        auto n = number(value, gossip::max_breaker_cap);
        if (!n || *n == 0)
          return usage("resilience " + key + ": '" + value + "' is not a number from 1 to " +
                       std::to_string(gossip::max_breaker_cap));
        (key == "max_connections" ? r.max_connections
         : key == "max_requests"  ? r.max_requests
                                  : r.max_pending) = *n;
      } else if (key == "eject_5xx" || key == "eject_connect_failures") {
        auto n = number(value, 1000);
        if (!n)
          return usage("resilience " + key + ": '" + value +
                       "' is not a number of failures in a row (0 to 1000, 0: off)");
        (key == "eject_5xx" ? r.eject_consecutive_5xx : r.eject_consecutive_connect_failures) = *n;
      } else if (key == "ejection_time") {
        auto ms = millis(value, "resilience " + key);
        if (!ms)
          return ms.error();
        if (*ms == 0)
          return usage("resilience ejection_time: at least 1ms");
        r.ejection_time_ms = *ms;
      } else {
        return usage("resilience: unknown key '" + key + "'");
      }
    }
    out.value = r;
    return out;
  }
  return usage("unknown policy command '" + cmd + "'");
}

std::string describe_write(const gossip::policy_record& p) {
  std::string what = std::string{gossip::to_string(p.key.kind)} + " of " + p.key.service;
  if (!p.key.name.empty())
    what += " '" + p.key.name + "'";
  std::string body;
  if (p.deleted) {
    body = "removed";
  } else if (const auto* split = std::get_if<std::vector<gossip::split_weight>>(&p.value)) {
    for (const auto& w : *split)
      body += (body.empty() ? "" : ", ") + w.version + " " + std::to_string(w.weight) + "%";
  } else if (const auto* r = std::get_if<gossip::header_route>(&p.value)) {
    body = r->header + " = " + r->value + " -> " + r->version;
  } else if (const auto* res = std::get_if<gossip::resilience_policy>(&p.value)) {
    body = "timeout " + std::to_string(res->timeout_ms) + "ms, per try " +
           std::to_string(res->per_try_timeout_ms) + "ms, retries " + std::to_string(res->retries) +
           ", budget " + std::to_string(res->retry_budget_percent) + "% (min " +
           std::to_string(res->retry_min_per_second) + "/s)";
    const auto set = [&body](const char* what, const std::optional<std::uint32_t>& v,
                             const char* unit) {
      if (v)
        body += std::string{", "} + what + " " + std::to_string(*v) + unit;
    };
    set("max connections", res->max_connections, "");
    set("max requests", res->max_requests, "");
    set("max pending", res->max_pending, "");
    set("eject after 5xx", res->eject_consecutive_5xx, "");
    set("eject after connect failures", res->eject_consecutive_connect_failures, "");
    set("ejection time", res->ejection_time_ms, "ms");
    set("max ejected", res->max_ejection_percent, "%");
  } else if (const auto* a = std::get_if<gossip::authz_rule>(&p.value)) {
    body = std::string{a->allow ? "allow" : "deny"};
    for (const auto& f : a->from)
      body += " " + f;
  }
  return what + ": " + body + " (signed by " + p.writer + "; spreading to the mesh)";
}

} // namespace starling::actors
