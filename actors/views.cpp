#include "actors/views.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "actors/errc.hpp"
#include "proto/wire/time_text.hpp"
#include "proxy/dataplane.hpp"

namespace starling::actors {

using ojson = nlohmann::ordered_json;

std::string iso8601_utc(wall_clock::time_point t) { return wire::iso8601_utc(t); }

wall_clock::time_point to_wall(gossip::time_point t, gossip::time_point now,
                               wall_clock::time_point wall_now) {
  auto age = std::chrono::duration_cast<wall_clock::duration>(now - t);
  return wall_now - age;
}

std::string members_json(const std::vector<gossip::member>& members, gossip::time_point now,
                         wall_clock::time_point wall_now) {
  auto list = ojson::array();
  for (const auto& m : members) {
    ojson tags = ojson::object();
    for (const auto& [k, v] : m.tags)
      tags[k] = v;
    list.push_back(ojson{{"name", m.name},
                         {"address", m.address},
                         {"state", std::string{gossip::to_string(m.state)}},
                         {"incarnation", m.incarnation},
                         {"tags", std::move(tags)},
                         {"last_change", iso8601_utc(to_wall(m.since, now, wall_now))}});
  }
  ojson doc{{"members", std::move(list)}};
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string
stats_json(const std::vector<counter_group>& groups,
           const std::vector<std::pair<std::string, std::optional<std::string>>>& fields,
           std::string_view detail) {
  ojson doc = ojson::object();
  for (const auto& [name, value] : fields)
    doc[name] = value ? ojson(*value) : ojson(nullptr);
  for (const auto& g : groups) {
    if (!g.counters) {
      doc[g.name] = nullptr;
      continue;
    }
    ojson counters = ojson::object();
    for (const auto& [name, value] : *g.counters)
      counters[name] = value;
    doc[g.name] = std::move(counters);
  }
  if (!detail.empty())
    if (auto d = ojson::parse(detail, nullptr, false); !d.is_discarded())
      doc["proxy_services"] = std::move(d);
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<double> histogram_quantile(const std::vector<double>& bounds,
                                         const std::vector<std::uint64_t>& counts, double q) {
  const auto n = std::min(bounds.size(), counts.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i)
    total += counts[i];
  if (total == 0)
    return std::nullopt;
  const double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(total);
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (counts[i] == 0 || static_cast<double>(below + counts[i]) < rank) {
      below += counts[i];
      continue;
    }
    if (std::isinf(bounds[i])) // no upper bound: the last finite one
      return i > 0 ? bounds[i - 1] : 0.0;
    const double lower = i > 0 ? bounds[i - 1] : 0.0;
    const double share = (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
    return lower + (bounds[i] - lower) * share;
  }
  return std::nullopt; // (unreachable: rank <= total)
}

std::string proxy_services_json(const proxy::dataplane_stats& st) {
  // Milliseconds rounded to microseconds, or null.
  const auto ms = [](std::optional<double> secs) {
    return secs ? ojson(std::round(*secs * 1e6) / 1e3) : ojson(nullptr);
  };
  const auto rate = [](std::uint64_t good, std::uint64_t all) {
    return all ? ojson(std::round(1e4 * static_cast<double>(good) / static_cast<double>(all)) / 1e4)
               : ojson(nullptr);
  };
  const auto latency = [&](ojson& o, const auto& s) {
    o["p50_ms"] = ms(histogram_quantile(s.latency_bounds, s.latency_counts, 0.50));
    o["p95_ms"] = ms(histogram_quantile(s.latency_bounds, s.latency_counts, 0.95));
    o["p99_ms"] = ms(histogram_quantile(s.latency_bounds, s.latency_counts, 0.99));
  };
  const auto service = [&](const proxy::service_stats& s, bool outbound) {
    ojson o{{"service", s.service},
            {"requests", s.requests},
            {"responses_2xx", s.responses_2xx},
            {"responses_3xx", s.responses_3xx},
            {"responses_4xx", s.responses_4xx},
            {"responses_5xx", s.responses_5xx},
            {"grpc_failures", s.grpc_failures}};
    const auto answered = s.responses_2xx + s.responses_3xx + s.responses_4xx + s.responses_5xx;
    // A failed gRPC call is an HTTP 200 with a status other than OK: a failure (as Linkerd
    // counts it).
    const auto failed = s.responses_5xx + std::min(s.grpc_failures, s.responses_2xx);
    o["success_rate"] = rate(answered - failed, answered);
    latency(o, s);
    if (outbound) {
      o["retries"] = s.retries;
      o["retries_refused"] = s.retries_refused;
      o["breaker_refused"] = s.breaker_refused;
      o["ejections"] = s.ejections;
    }
    o["timeouts"] = s.timeouts;
    o["bytes_in"] = s.bytes_in;
    o["bytes_out"] = s.bytes_out;
    return o;
  };
  ojson out{
      {"outbound", ojson::array()}, {"inbound", ojson::array()}, {"instances", ojson::array()}};
  for (const auto& s : st.services)
    out["outbound"].push_back(service(s, true));
  for (const auto& s : st.inbound_services)
    out["inbound"].push_back(service(s, false));
  for (const auto& i : st.instances) {
    ojson o{{"service", i.service},
            {"instance", i.instance},
            {"node", i.node},
            {"requests", i.requests},
            {"responses_2xx", i.responses_2xx},
            {"responses_3xx", i.responses_3xx},
            {"responses_4xx", i.responses_4xx},
            {"responses_5xx", i.responses_5xx},
            {"grpc_failures", i.grpc_failures},
            {"connect_failures", i.connect_failures},
            {"resets", i.resets},
            {"timeouts", i.timeouts}};
    o["success_rate"] = rate(i.responses_2xx - std::min(i.grpc_failures, i.responses_2xx) +
                                 i.responses_3xx + i.responses_4xx,
                             i.requests);
    latency(o, i);
    out["instances"].push_back(std::move(o));
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

double unix_seconds(wall_clock::time_point t) {
  using namespace std::chrono;
  return static_cast<double>(duration_cast<microseconds>(t.time_since_epoch()).count()) / 1e6;
}

} // namespace

std::string event_log_line(const event_record& ev) {
  ojson doc{{"ts", unix_seconds(ev.ts)},
            {"event", std::string{gossip::to_string(ev.kind)}},
            {"member", ev.member}};
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string events_json(const std::vector<event_record>& events) {
  auto list = ojson::array();
  for (const auto& ev : events)
    list.push_back(ojson{{"ts", unix_seconds(ev.ts)},
                         {"event", std::string{gossip::to_string(ev.kind)}},
                         {"member", ev.member},
                         {"address", ev.address},
                         {"incarnation", ev.incarnation}});
  ojson doc{{"events", std::move(list)}};
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string describe(const event_record& ev) {
  std::string out = "member ";
  out += ev.member;
  out += ' ';
  out += gossip::to_string(ev.kind);
  out += " (";
  out += ev.address;
  out += ')';
  return out;
}

} // namespace starling::actors
