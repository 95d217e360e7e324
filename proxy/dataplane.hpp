// The data plane (issue 17; DESIGN.md, "Data plane = its own I/O threads"): Starling's
// proxy on its own I/O threads, one loop per thread (net/loop.hpp: io_uring or epoll,
// decision 0021), listeners with SO_REUSEPORT.
// Bytes never pass through an actor mailbox. The proxy controller actor (actors/) hands it
// immutable configurations (dataplane_config: the routing snapshot and where each node's
// inbound proxy listens) and swaps them atomically; the I/O threads keep serving on the last
// one whatever happens to the actors.
//
//   app -> 127.0.0.1:<outbound of svc> -> [this node] == mTLS ==> [node B inbound :7948] -> app
//
// - One outbound listener per service of the snapshot, on `outbound_host` (loopback): an
//   app connects to it (or to the address DNS gives) and the proxy picks an instance.
// - One inbound listener (mTLS between nodes): a peer's proxy names the target service in a
//   preamble; the inbound side checks the caller's certificate and the service's
//   authorization rules and forwards to the local instance only.
// - HTTP/1.1 services (gossip::service_protocol::http) are proxied request by request
//   (proxy/http1.hpp): splits and header routes, balancers, timeouts, retries under a budget,
//   breakers, outlier ejection. TCP services are copied both ways (half-close kept).
// No CAF headers: the agent adapts identity's TLS contexts to peer_tls.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "gossip/routing_snapshot.hpp"
#include "net/loop.hpp"
#include "proxy/balancer.hpp"
#include "proxy/circuit_breaker.hpp"
#include "proxy/http1.hpp"
#include "proxy/outlier.hpp"

namespace starling::proxy {

/// A peer proxy as its verified certificate names it.
struct peer_identity {
  /// Node name (the certificate's node binding).
  std::string node;
  /// Its SPIFFE id ("spiffe://<mesh>/node/<node>").
  std::string spiffe_id;
};

/// TLS between nodes, provided by the agent from the node's current identity (a renewed
/// certificate applies to the next session: existing connections keep theirs). Called from
/// the I/O threads: implementations are thread-safe.
class peer_tls {
public:
  virtual ~peer_tls() = default;
  /// A new OpenSSL session (TLS 1.3, mutual). A client names the node it expects
  /// (`expected_peer`): a server presenting another node's certificate fails the handshake.
  /// A server passes an empty name. Returns null and sets `error` when no session can be
  /// made. The caller owns the session.
  [[nodiscard]] virtual SSL* new_session(bool server, const std::string& expected_peer,
                                         std::string& error) = 0;
  /// After a completed handshake: who the peer is, or nothing if its chain did not verify.
  [[nodiscard]] virtual std::optional<peer_identity> peer_of(const SSL* ssl) = 0;
};

/// The source an inbound connection counts under for the limits per source address
/// (dataplane_options::max_unauthenticated_per_source, max_failed_handshakes_per_source,
/// and the exemption of an address a member connects from): an IPv4 address (an
/// IPv4-mapped IPv6 one too) as itself; any other IPv6 address as its /64
/// ("2001:db8:1:2::/64"), since a host commonly holds a whole /64 and would otherwise get a
/// burst from each of its addresses; except loopback and link-local IPv6 addresses, as
/// themselves (every link's link-local addresses share fe80::/64). Empty for another family.
[[nodiscard]] std::string limit_source(const sockaddr_storage& address);

/// Where a node's inbound proxy listens, by node name.
using inbound_map = std::map<std::string, std::string, std::less<>>;

/// What the data plane serves: immutable once handed over, swapped whole.
struct dataplane_config {
  /// The routing table at one moment (services, instances, policies). Never null.
  gossip::snapshot_ptr routes = std::make_shared<const gossip::routing_snapshot>();
  /// "host:port" of each node's inbound proxy (from the members' tags). This node's
  /// instances are reached directly at their address and port. Another node's instance is
  /// reached through that node's entry here; with no entry it is not routable when TLS is
  /// on (a failed node, or one running no data plane), and reached directly without TLS
  /// (development).
  inbound_map inbound;
};

/// How the data plane runs. Fixed at start.
struct dataplane_options {
  /// This node's name (its own instances are served directly, and through inbound).
  std::string self;
  /// I/O threads (one loop each).
  std::size_t threads = 1;
  /// The loops' back end. io_uring falls back to epoll where this process may not use it
  /// (dataplane::io_note() says why).
  net::backend io = net::backend::epoll;
  /// Inbound listener (mTLS from peers). Port 0 picks a free port.
  std::string inbound_host = "0.0.0.0";
  std::uint16_t inbound_port = 7948;
  /// Host the outbound listeners bind (one free port per service, kept while the service
  /// exists).
  std::string outbound_host = "127.0.0.1";
  /// TLS between nodes; null: plain TCP between nodes (development mode, no certificates),
  /// and the inbound side accepts any caller (authorization rules then cannot match
  /// SPIFFE ids: a service with allow rules refuses everyone, 403).
  std::shared_ptr<peer_tls> tls;
  /// Limits of HTTP/1.1 framing (head size, header count...).
  http1_limits limits;
  /// Balancer of every service.
  balancer_config balancer;
  /// Circuit breaker caps of every service, per I/O thread.
  circuit_breaker_config breaker;
  /// Outlier ejection thresholds of every service, per I/O thread.
  outlier_config outlier;
  /// Connect timeout to an upstream (an instance or a peer's inbound).
  std::chrono::milliseconds connect_timeout{2000};
  /// Whole-request timeout when the service's resilience policy sets none.
  std::chrono::milliseconds request_timeout{15000};
  /// A client must send a complete request head within this (slowloris).
  std::chrono::milliseconds head_timeout{10000};
  /// Idle keep-alive connections (client side and pooled upstream ones) close after this.
  std::chrono::milliseconds idle_timeout{60000};
  /// A TCP tunnel (a TCP service's connection, an HTTP Upgrade) that moves no byte either
  /// way for this long is closed, both sides; counted as a timeout of a TCP service.
  /// Zero: never.
  std::chrono::milliseconds tunnel_idle_timeout{std::chrono::hours{1}};
  /// TCP keepalive on every data-plane connection: probes after this long without
  /// traffic, then every third of it, three unanswered ones ending the connection, so that
  /// a peer that vanished (powered off, cut off without a reset) frees its connections,
  /// tunnels among them, in about twice this. Zero: off.
  std::chrono::seconds keepalive{10};
  /// Pooled idle connections kept per upstream (peer inbound or local instance).
  /// As many as the breaker lets be busy at once by default: with a lower cap, a load of more
  /// concurrent requests than the cap closed connections after use and opened new ones (a
  /// TLS handshake each) all the time: 0.2x HAProxy's rate at 128 connections with 64.
  std::size_t max_idle_per_upstream = 1024;
  /// Access log: one JSON line per request (HTTP) or connection (TCP), to `access_log`;
  /// unset: none. Called from the I/O threads.
  std::function<void(std::string_view line)> access_log;
  /// Share of requests logged, 0 to 1.
  double access_log_sample = 1.0;
  /// TCP tunnels between two plain sockets (a local instance: TCP services, and HTTP
  /// Upgrade) move their bytes with splice(2) through a pipe, never copying them into the
  /// process. Off by default: on loopback it measured slower than the copy
  /// (docs/bench-proxy.md, "splice").
  bool splice = false;
  /// HTTP requests to peers' inbound proxies go over HTTP/2, one connection per peer and
  /// I/O thread shared by all requests (decision 0022): under TLS when the peer chooses
  /// `h2` by ALPN (a peer that does not gets HTTP/1.1 with a preamble, as before), without
  /// TLS by prior knowledge. False: HTTP/1.1 with a preamble, one connection per request
  /// in flight.
  bool h2_to_peers = true;
  /// A peer inbound that chose no `h2` (a node of an older version) gets HTTP/1.1 for this
  /// long, then is asked again by the next request's handshake (the node may have been
  /// upgraded). A peer that leaves the config is forgotten at once.
  std::chrono::milliseconds h1_peer_recheck{5 * 60 * 1000};
  /// Tunnels that splice at once, at most (each holds two pipes: four descriptors); more
  /// copy through their buffers.
  std::size_t splice_max_tunnels = 512;
  /// The data plane takes no descriptor numbered at or above this. The kernel gives out the
  /// lowest free number, so the data plane then holds fewer descriptors than this, and the
  /// rest of the process's RLIMIT_NOFILE stays for the control plane (gossip, admin, DNS,
  /// state files): a flood of connections cannot starve the agent. A connection accepted
  /// above it is closed at once, a connect above it fails, a tunnel above it copies
  /// instead of splicing (`connections_refused_fds`). 0: the soft RLIMIT_NOFILE at start,
  /// less an eighth of it kept back (at least 128, at most 1,024; half of a limit under
  /// 256).
  std::size_t max_descriptor = 0;
  /// Inbound connections from one source address (limit_source: an IPv6 address counts
  /// by its /64, here and below) that have not finished their TLS
  /// handshake (without TLS: sent their preamble), per I/O thread; another one is closed
  /// at accept (`inbound_refused_source`). Bounds what one address can hold, for up to
  /// head_timeout each, without a certificate. 0: no bound.
  std::size_t max_unauthenticated_per_source = 64;
  /// Inbound connections from one source address that may end without authenticating (a
  /// failed or refused TLS handshake, a wrong preamble, a client that left or timed out
  /// before either) in a burst, per I/O thread; after that one more per
  /// `failed_handshake_interval`, and other connections from the address are closed at
  /// accept (`inbound_refused_failing`) before the node spends a handshake on them (its
  /// key exchange and signature come before the caller shows any certificate). A peer
  /// whose handshakes succeed never uses any, nor does an address from which a member
  /// holds a connection. 0: no bound; at most 100,000, the interval at most 1 h.
  std::size_t max_failed_handshakes_per_source = 32;
  std::chrono::milliseconds failed_handshake_interval{1000};
  /// Inbound connections from one peer node (by its certificate), per I/O thread; another
  /// one is closed after its handshake (`inbound_refused_peer`), so that one member cannot
  /// take the whole descriptor share from the others. 0: a quarter of max_descriptor,
  /// divided among the I/O threads (at least 64). Without TLS (no identity): no bound.
  std::size_t max_connections_per_peer = 0;
  /// Seeds the balancers' and the splits' random sources (one per thread).
  std::uint64_t seed = 1;
};

/// Counters of one service in one direction, summed over threads. Latencies in a fixed
/// log-scale histogram. Outbound (dataplane_stats::services): what this node's outbound
/// listeners served its apps. Inbound (dataplane_stats::inbound_services): what this node's
/// inbound listener served callers, for its local instances; latency from the request head
/// received to the response's last byte written (HTTP), or a TCP connection's life.
struct service_stats {
  std::string service;
  std::uint64_t requests = 0; ///< HTTP requests or TCP connections started
  std::uint64_t responses_2xx = 0;
  std::uint64_t responses_3xx = 0;
  std::uint64_t responses_4xx = 0;
  std::uint64_t responses_5xx = 0;
  /// gRPC calls (among the 2xx, as gRPC answers in HTTP 200) whose status was not OK: a
  /// grpc-status other than 0 in the trailers or a trailers-only head, or none at all
  /// (decision 0025). Counted where the trailers are seen: on HTTP/2 (not through an
  /// HTTP/1.1 hop between nodes).
  std::uint64_t grpc_failures = 0;
  std::uint64_t retries = 0;
  std::uint64_t retries_refused = 0; ///< the budget said no
  std::uint64_t timeouts = 0;
  std::uint64_t breaker_refused = 0;
  std::uint64_t ejections = 0;
  std::uint64_t bytes_in = 0;  ///< from clients
  std::uint64_t bytes_out = 0; ///< to clients
  /// Bucket upper bounds in seconds (the last is +Inf) and counts, for p50/p95/p99.
  std::vector<double> latency_bounds;
  std::vector<std::uint64_t> latency_counts;
  double latency_sum_seconds = 0;
};

/// Counters of one instance of a service as this node's outbound side used it, summed over
/// threads: every attempt sent to it (a retry is another attempt), counted when it ends.
/// Kept while the instance is in the config (at most max_tracked_instances per service and
/// thread); counters of an instance that left the config are dropped at the next config.
struct instance_stats {
  std::string service;
  std::string instance;       ///< The instance id of the routing table.
  std::string node;           ///< The node that runs it.
  std::uint64_t requests = 0; ///< attempts: responses of every class plus the failures below
  std::uint64_t responses_2xx = 0;
  std::uint64_t responses_3xx = 0;
  std::uint64_t responses_4xx = 0;
  std::uint64_t responses_5xx = 0;
  /// Attempts answered with a gRPC status other than OK (as service_stats::grpc_failures).
  std::uint64_t grpc_failures = 0;
  /// Attempts that got no response: no connection (refused, connect timeout, failed
  /// handshake; also a peer proxy's 503 for a request no app saw), ...
  std::uint64_t connect_failures = 0;
  /// ... the connection closed or reset, or a malformed or partial response, ...
  std::uint64_t resets = 0;
  /// ... or no response in time (per-try or request timeout).
  std::uint64_t timeouts = 0;
  /// Time of each attempt (same buckets as service_stats); TCP: the connection's life.
  std::vector<double> latency_bounds;
  std::vector<std::uint64_t> latency_counts;
  double latency_sum_seconds = 0;
};

/// Instances of one service whose counters a worker keeps (the rest count in the service's).
inline constexpr std::size_t max_tracked_instances = 256;

/// Counters of the whole data plane, summed over threads.
struct dataplane_stats {
  std::uint64_t config_generation = 0; ///< routes->generation of the config in use
  std::uint64_t outbound_connections = 0;
  std::uint64_t inbound_connections = 0;
  std::uint64_t inbound_refused_tls = 0;   ///< handshakes that failed (wrong or revoked cert)
  std::uint64_t inbound_refused_authz = 0; ///< 403 by an authorization rule
  std::uint64_t upstream_connects = 0;     ///< new upstream connections (not from the pool)
  std::uint64_t upstream_reused = 0;       ///< requests on a pooled connection
  std::uint64_t upstream_connect_failures = 0;
  std::uint64_t upstream_idle = 0; ///< pooled idle upstream connections now (a gauge)
  /// Connections to or from a banned (revoked) node that ban_peer closed, pooled or in use.
  std::uint64_t closed_by_ban = 0;
  /// Connections closed at accept, or not opened, at the descriptor ceiling
  /// (dataplane_options::max_descriptor).
  std::uint64_t connections_refused_fds = 0;
  /// Inbound connections closed at accept: their source address had
  /// max_unauthenticated_per_source connections still in their handshake.
  std::uint64_t inbound_refused_source = 0;
  /// Inbound connections closed at accept: their source address's recent connections ended
  /// without authenticating more often than max_failed_handshakes_per_source allows.
  std::uint64_t inbound_refused_failing = 0;
  /// Inbound connections closed after their handshake: their node had
  /// max_connections_per_peer connections already.
  std::uint64_t inbound_refused_peer = 0;
  /// Requests (503) and TCP connections (closed; a tunnel reset) from peers refused because
  /// their node held its share of the service's breaker cap on this node already: half of
  /// it, or an equal part of three quarters of it once that much is held
  /// (caller_shares, docs/proxy.md).
  std::uint64_t inbound_refused_share = 0;
  /// Responses the proxy made itself, by reason code (http_error names).
  std::map<std::string, std::uint64_t> generated;
  /// Outbound, by service name (what this node's apps called).
  std::vector<service_stats> services;
  /// Inbound, by service name (what this node's inbound listener served for its instances).
  std::vector<service_stats> inbound_services;
  /// Outbound, by (service, instance, node).
  std::vector<instance_stats> instances;
};

/// The running data plane. Every method is thread-safe.
class dataplane {
public:
  /// Binds the inbound listener and starts the I/O threads. Returns null and sets `error`
  /// when it cannot (the port is taken, bad options).
  [[nodiscard]] static std::unique_ptr<dataplane> start(dataplane_options options,
                                                        std::string& error);
  virtual ~dataplane() = default;

  /// Serves `config` from now on: new requests and connections use it, requests in flight
  /// finish on the one they started with. Opens an outbound listener for each new service
  /// and closes those of services gone. Never blocks on the I/O threads.
  virtual void apply(std::shared_ptr<const dataplane_config> config) = 0;

  /// "host:port" of the inbound listener.
  [[nodiscard]] virtual std::string inbound_address() const = 0;
  /// "host:port" of each service's outbound listener, by service name.
  [[nodiscard]] virtual std::map<std::string, std::string> outbound_addresses() const = 0;

  /// Closes every connection to and from `node` (its certificate was revoked), pooled and
  /// in flight, and refuses new ones from it until unban_peer.
  virtual void ban_peer(const std::string& node) = 0;
  virtual void unban_peer(const std::string& node) = 0;

  /// Draining: the inbound side accepts no new requests or connections (new connections are
  /// closed; a request on a kept-alive one gets 503 `draining` with connection: close), and
  /// requests in flight finish.
  virtual void set_draining(bool draining) = 0;
  /// True while draining.
  [[nodiscard]] virtual bool draining() const = 0;
  /// Requests and TCP connections in flight (both sides).
  [[nodiscard]] virtual std::size_t in_flight() const = 0;

  [[nodiscard]] virtual dataplane_stats stats() const = 0;

  /// The back end the I/O loops run on.
  [[nodiscard]] virtual net::backend io_backend() const = 0;
  /// Why it is not the one the options asked for (io_uring denied here); empty when it is.
  [[nodiscard]] virtual std::string io_note() const = 0;

  /// Stops the listeners and the threads, closing every connection. Idempotent.
  virtual void stop() = 0;
};

} // namespace starling::proxy
