#include "actors/views.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "actors/errc.hpp"

namespace starling::actors {

using ojson = nlohmann::ordered_json;

std::string iso8601_utc(wall_clock::time_point t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  auto frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    --secs;
  }
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(frac));
  return out;
}

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

namespace {

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

std::string stats_json(const std::vector<counter_group>& groups) {
  ojson doc = ojson::object();
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
