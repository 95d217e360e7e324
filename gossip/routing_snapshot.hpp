// What the routing table looks like to its readers: an immutable snapshot of the services
// every node agrees on, their instances (where they run, whether they are healthy and
// routable) and the mesh-wide policies of each service. Plain values, no behaviour beyond
// lookups: the routing actor builds one after each change and hands it by shared_ptr to its
// watchers (the DNS responder, the console's views, the proxy controller of issue 17), who
// never see it change. Depends on nothing but the standard library, so the data plane can
// read it without knowing gossip (DESIGN.md, "Folders").
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace starling::gossip {

/// How an instance speaks: plain TCP (the proxy forwards bytes), HTTP/1.1 or HTTP/2 (the
/// proxy reads requests: header routes, retries, per-request metrics). HTTP/2 (gRPC
/// services): the instance's node speaks HTTP/2 to it with prior knowledge, one connection
/// carrying many requests (decision 0025); callers see no difference from http.
enum class service_protocol : std::uint8_t { tcp = 1, http = 2, http2 = 3 };

/// The proxy reads the instance's traffic request by request (http or http2).
[[nodiscard]] constexpr bool is_http(service_protocol p) noexcept {
  return p == service_protocol::http || p == service_protocol::http2;
}

/// An instance's health as its owner's checks last found it.
enum class health_status : std::uint8_t {
  none = 0,    ///< no check configured: routable while its node is alive (Consul's default)
  passing = 1, ///< the check passed `rise` times in a row since it last failed
  failing = 2, ///< not yet passed `rise` times (a new check starts here), or failed `fall` times
};

/// "tcp" / "http" / "http2".
[[nodiscard]] constexpr std::string_view to_string(service_protocol p) noexcept {
  switch (p) {
  case service_protocol::http:
    return "http";
  case service_protocol::http2:
    return "http2";
  default:
    return "tcp";
  }
}

/// The protocol named `text` ("tcp", "http", "http2"; "grpc" is http2), or nothing.
[[nodiscard]] constexpr std::optional<service_protocol>
service_protocol_named(std::string_view text) noexcept {
  if (text == "tcp")
    return service_protocol::tcp;
  if (text == "http")
    return service_protocol::http;
  if (text == "http2" || text == "grpc")
    return service_protocol::http2;
  return std::nullopt;
}

/// "none" / "passing" / "failing".
[[nodiscard]] constexpr std::string_view to_string(health_status h) noexcept {
  switch (h) {
  case health_status::passing:
    return "passing";
  case health_status::failing:
    return "failing";
  default:
    return "none";
  }
}

/// One instance of a service, as the snapshot shows it.
struct instance_view {
  /// Node that owns (registered, checks and signs) it.
  std::string node;
  /// Service name (a DNS label: lowercase letters, digits and '-', 1 to 63 characters).
  std::string service;
  /// Instance id, unique among the owner's instances of the service.
  std::string id;
  /// IP address it listens on, as other nodes reach it (the owner's advertised address
  /// when the registration gave none).
  std::string address;
  std::uint16_t port = 0;
  service_protocol protocol = service_protocol::tcp;
  /// Sorted, distinct.
  std::vector<std::string> tags;
  /// Version label traffic splits and routes name ("v1", "canary"); may be empty.
  std::string version;
  /// Relative load-balancing weight, 1 to 1000.
  std::uint32_t weight = 100;
  health_status health = health_status::none;
  /// Text of the owner's last check result ("HTTP 200", "connection refused"); empty with
  /// no check.
  std::string last_check;
  /// The owner is alive (or suspect) in this node's membership view.
  bool node_alive = false;

  /// Traffic may go here: the node is alive and the instance is not failing its checks.
  [[nodiscard]] bool routable() const noexcept {
    return node_alive && health != health_status::failing;
  }
};

/// One version's share of a weighted traffic split.
struct split_weight {
  std::string version;
  /// Percent; the weights of a split sum to 100.
  std::uint32_t weight = 0;

  friend bool operator==(const split_weight&, const split_weight&) = default;
};

/// A header-match route (A/B): requests whose `header` equals `value` go to `version`.
struct header_route {
  /// Rule name, unique per service.
  std::string name;
  /// Lowercase header name.
  std::string header;
  std::string value;
  std::string version;

  friend bool operator==(const header_route&, const header_route&) = default;
};

/// Per-service timeouts, retries, circuit breaking and outlier ejection. For the first five
/// fields zero means "not set"; the others are unset when empty. Unset fields take the
/// proxy's default.
struct resilience_policy {
  /// Whole request, retries included.
  std::uint32_t timeout_ms = 0;
  /// One attempt.
  std::uint32_t per_try_timeout_ms = 0;
  /// Most retries of one request.
  std::uint32_t retries = 0;
  /// Retry budget: retries may add at most this percent of the requests (Linkerd's
  /// retryRatio), and always at least retry_min_per_second.
  std::uint32_t retry_budget_percent = 0;
  std::uint32_t retry_min_per_second = 0;
  /// Circuit breaker caps per I/O thread of each caller's proxy (1 to max_breaker_cap): open
  /// connections to the service's instances, requests in flight of an HTTP service. Beyond
  /// the connection cap an HTTP request waits for a connection (max_pending and the connect
  /// timeout bound the wait) and a TCP connection is closed; beyond the request cap
  /// the proxy answers 503 `overloaded` (docs/proxy.md, "Circuit breaking").
  std::optional<std::uint32_t> max_connections{};
  std::optional<std::uint32_t> max_requests{};
  /// Outlier ejection: consecutive 5xx answers or connect failures that eject an instance
  /// (0 turns that trigger off), the first ejection's time (the n-th lasts n times as long),
  /// and the largest share of the service's instances ejected at once (0 turns ejection off).
  std::optional<std::uint32_t> eject_consecutive_5xx{};
  std::optional<std::uint32_t> eject_consecutive_connect_failures{};
  std::optional<std::uint32_t> ejection_time_ms{};
  std::optional<std::uint32_t> max_ejection_percent{};
  /// Requests that may wait for a connection of the service, per I/O thread (1 to
  /// max_breaker_cap; the node's default is 1,024).
  std::optional<std::uint32_t> max_pending{};

  friend bool operator==(const resilience_policy&, const resilience_policy&) = default;
};

/// An authorization rule: which callers (SPIFFE ids, spiffe://<mesh>/svc/<service> or
/// spiffe://<mesh>/node/<node>) may or may not call the service.
struct authz_rule {
  /// Rule name, unique per service (a refused request names it in x-starling-error).
  std::string name;
  /// Sorted, distinct SPIFFE ids.
  std::vector<std::string> from;
  bool allow = true;

  friend bool operator==(const authz_rule&, const authz_rule&) = default;
};

/// Who signed a policy and when (as the routes view shows it).
struct policy_origin {
  /// Node name of the issuer whose key signed it.
  std::string signer;
  /// Its hybrid logical clock stamp, wall milliseconds part (unix ms) and logical part.
  std::uint64_t wall_ms = 0;
  std::uint32_t logical = 0;

  friend bool operator==(const policy_origin&, const policy_origin&) = default;
};

/// Mesh-wide policies of one service, each optional.
struct service_policies {
  std::optional<std::vector<split_weight>> split;
  std::optional<policy_origin> split_origin;
  /// Sorted by name.
  std::vector<header_route> routes;
  std::optional<resilience_policy> resilience;
  /// Sorted by name.
  std::vector<authz_rule> authz;
};

/// A service: its instances (sorted by node, then id) and its policies.
struct service_view {
  std::string name;
  std::vector<instance_view> instances;
  service_policies policies;

  /// The instances traffic may go to.
  [[nodiscard]] std::vector<const instance_view*> routable() const {
    std::vector<const instance_view*> out;
    for (const auto& i : instances)
      if (i.routable())
        out.push_back(&i);
    return out;
  }
};

/// The whole table at one moment. Immutable once published.
struct routing_snapshot {
  /// Grows by one with every published snapshot of a node (0: the empty start).
  std::uint64_t generation = 0;
  /// Sorted by name. A service appears once it has an instance or a policy.
  std::vector<service_view> services;

  /// The service named `name`, or null.
  [[nodiscard]] const service_view* find(std::string_view name) const {
    auto it =
        std::lower_bound(services.begin(), services.end(), name,
                         [](const service_view& s, std::string_view n) { return s.name < n; });
    return it != services.end() && it->name == name ? &*it : nullptr;
  }
};

/// How snapshots are handed around.
using snapshot_ptr = std::shared_ptr<const routing_snapshot>;

} // namespace starling::gossip
