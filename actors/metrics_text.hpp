// /metrics in the Prometheus text exposition format (version 0.0.4), rendered from the same
// counters `starling stats --json` and `starling certs --json` show (docs/operations.md,
// "Metrics"): one place gathers them, two renderings. Names follow Prometheus' conventions
// as DESIGN.md asks: prefix `starling_`, `_total` on counters, base units in the name,
// bounded labels only, a `starling_build_info` gauge, certificate expiry as
// `..._expiration_timestamp_seconds`. Pure: no I/O, no clock reads.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace starling::proxy {
struct dataplane_stats;
}

namespace starling::actors {

/// What `starling_build_info` labels: the project's version and the source revision.
struct build_labels {
  std::string_view version;
  std::string_view revision;
};

/// The exposition text of `stats` (the stats JSON view) and `certs` (the certs JSON view;
/// null or without an identity: no identity metrics), for the binary `build`, with the
/// data plane's per-service families from `proxy` (null: no data plane): requests,
/// responses by class, retries, timeouts, breaker refusals, ejections and a request
/// duration histogram per service, and the proxy's own responses by reason.
/// Non-numeric fields are skipped; a group that is null (its actor restarts) is left out.
[[nodiscard]] std::string render_metrics(const nlohmann::json& stats, const nlohmann::json& certs,
                                         const build_labels& build,
                                         const proxy::dataplane_stats* proxy = nullptr);

} // namespace starling::actors
