// JSON and text views of membership: the `members` JSON view (a stable contract, see
// docs/operations.md), the table of `starling members`, and event-log lines. Pure: no
// clock reads (times are passed in), no CAF actor headers.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/expected.hpp>

#include "gossip/types.hpp"

namespace starling::proxy {
struct dataplane_stats;
}

namespace starling::actors {

using wall_clock = std::chrono::system_clock;

/// "2024-05-01T12:00:03.250Z" (UTC, milliseconds).
[[nodiscard]] std::string iso8601_utc(wall_clock::time_point t);

/// Converts a core (steady) time to wall time, given both clocks' "now".
[[nodiscard]] wall_clock::time_point to_wall(gossip::time_point t, gossip::time_point now,
                                             wall_clock::time_point wall_now);

/// The members JSON view, one line:
/// {"members":[{"name","address","state","incarnation","tags":{..},"last_change"}..]}.
[[nodiscard]] std::string members_json(const std::vector<gossip::member>& members,
                                       gossip::time_point now, wall_clock::time_point wall_now);

/// Named counters in display order: one group of the stats view.
using counter_list = std::vector<std::pair<std::string, std::uint64_t>>;

/// One group of the stats view ("transport", "admin", "sealer", "membership"). An absent
/// group (no keyring: no sealer; the membership actor restarting) is shown as null.
struct counter_group {
  std::string name;
  std::optional<counter_list> counters;
};

/// The stats JSON view, one line: {"dns_address":"..","transport":{"datagrams_in":N,..},
/// "admin":{..},..}: first the top-level `fields` (strings, or null), then the groups and
/// their counters in the given order, an absent group as null, then `detail` (a JSON
/// object's text, such as proxy_services_json's; empty: none) under the key "proxy_services".
[[nodiscard]] std::string
stats_json(const std::vector<counter_group>& groups,
           const std::vector<std::pair<std::string, std::optional<std::string>>>& fields = {},
           std::string_view detail = {});

/// The data plane's per-service and per-instance view of `starling stats --json`, as a JSON
/// object's text: {"outbound":[{"service","requests","responses_2xx",..,"success_rate",
/// "p50_ms","p95_ms","p99_ms"}..],"inbound":[..],"instances":[{"service","instance","node",
/// "requests","responses_2xx",..,"connect_failures","resets","timeouts",..}..]}. The
/// percentiles are estimated from the latency histogram (linear within a bucket), null with
/// no samples; success_rate is the share of non-5xx responses (per instance: of attempts,
/// failures included), null with none.
[[nodiscard]] std::string proxy_services_json(const proxy::dataplane_stats& stats);

/// The `q` quantile (0 to 1) in seconds of a histogram with bucket upper `bounds` (the
/// last may be +Inf) and per-bucket `counts`, interpolated linearly within its bucket (as
/// Prometheus' histogram_quantile); nothing with no samples. A quantile in the +Inf bucket
/// is the last finite bound.
[[nodiscard]] std::optional<double> histogram_quantile(const std::vector<double>& bounds,
                                                       const std::vector<std::uint64_t>& counts,
                                                       double q);

/// One member event as recorded for the event log and the admin.
struct event_record {
  wall_clock::time_point ts;
  gossip::member_event_kind kind;
  std::string member;
  std::string address;
  std::uint64_t incarnation = 0;
};

/// One event-log line (no newline): {"ts": 1714564803.25, "event": "joined", "member": "b"}.
[[nodiscard]] std::string event_log_line(const event_record& ev);

/// The events JSON view: {"events":[{"ts","event","member","address","incarnation"}..]}.
[[nodiscard]] std::string events_json(const std::vector<event_record>& events);

/// The log line of an event: "member node-b joined (127.0.0.1:4001)".
[[nodiscard]] std::string describe(const event_record& ev);

} // namespace starling::actors

// A membership actor's answer to stats_atom (a local message).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::counter_list)
