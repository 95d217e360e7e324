#include "actors/views.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "actors/errc.hpp"
#include "proto/wire/time_text.hpp"

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
           const std::vector<std::pair<std::string, std::optional<std::string>>>& fields) {
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
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
