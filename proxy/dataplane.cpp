// The data plane engine (proxy/dataplane.hpp) on its own I/O loops (net/loop.hpp, decision
// 0021; io_uring or epoll): N I/O threads, one loop each, every connection owned by the
// thread that accepted it.
//
// Preamble (outbound proxy -> peer's inbound proxy, once per connection, inside TLS when
// TLS is on): one frame, a 4-byte big-endian length (proto/wire/framing.hpp) and a protobuf
// starling.v1.ProxyPreamble {string service = 1; bool http = 2; string instance = 3;}
// (proto/proxy.proto) naming the target service (a DNS label: lowercase letters, digits, '-';
// 1 to 63 bytes) and the instance the sender picked. The whole frame is at most 1 KiB
// (max_preamble): the inbound side reads it within head_timeout, refuses a longer one at its length
// prefix (before buffering the body), an empty, unparsable or late one, or a bad service name, by
// closing; the bytes after the frame are the start of the service's stream (HTTP requests or TCP
// bytes). A pooled connection to a peer carries the preamble once: the pool is keyed by (upstream
// address, service, instance). Authorization rules are checked when the preamble arrives and again
// on every HTTP request (a rule written later applies to the next request of an open connection).
//
// Threads and ownership:
// - dataplane_impl owns the workers; each worker owns one loop and one thread, its
//   acceptors (inbound and one per outbound service, SO_REUSEPORT when threads > 1), its
//   connections, its idle pool, its balancers / outlier detectors / breakers / retry
//   budgets (per service, rebuilt by endpoint id when it sees a new config), its random
//   source, and its counters. Only the worker's thread touches its state; the counters are
//   relaxed atomics that stats() sums from any thread.
// - The config is a shared_ptr behind a mutex, read once per new connection and per
//   request; a request keeps the config it started with.
// - apply() opens new outbound acceptors on the caller's thread (bind, listen) and posts
//   them to the workers; closing is posted too. ban_peer / set_draining post or flip atomics.
// - Connections are shared_ptr objects kept alive by their pending handlers; a worker keeps
//   raw registries of them (for ban_peer and stop), entries removed by the destructors.
#include "proxy/dataplane.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/connection.hpp"
#include "proto/wire/framing.hpp"
#include "proxy.pb.h"
#include "proxy/circuit_breaker.hpp"
#include "proxy/h2_link.hpp"
#include "proxy/http_text.hpp"
#include "proxy/outlier.hpp"
#include "proxy/recycling_allocator.hpp"
#include "proxy/retry_budget.hpp"
#include "proxy/thread_cache.hpp"
#include "proxy/traffic_split.hpp"

namespace starling::proxy {

namespace {

using net::connection;

/// Bytes read at once from a socket (one buffer per direction of a connection).
constexpr std::size_t io_buffer_bytes = 16 * 1024;
/// Bytes a TCP tunnel moves at once per direction: up to four TLS records per read of a TLS
/// side, one write of them to a plain side (bulk measured in docs/bench-proxy.md).
constexpr std::size_t tunnel_buffer_bytes = 64 * 1024;
/// Longest preamble frame, length prefix included.
constexpr std::size_t max_preamble = 1024;
/// Request bodies up to this size are buffered so that the request can be retried.
constexpr std::uint64_t max_buffered_body = 64 * 1024;
/// Longest deadline a gRPC call's grpc-timeout sets when its service's policy sets no
/// timeout (the longest a policy may set).
constexpr std::chrono::milliseconds max_grpc_deadline = std::chrono::hours{1};
/// How much longer than a gRPC call's deadline the instance's node holds it: the calling
/// node's timer fires first.
constexpr std::chrono::milliseconds inbound_grpc_grace = std::chrono::seconds{1};
/// Upper bounds (seconds) of the latency histogram; a last +Inf bucket follows.
constexpr std::array<double, 14> latency_bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
/// Slots of the generated-response counters (http_error values).
constexpr std::size_t generated_slots = 64;

/// Whether `name` can be a service name in a preamble.
bool is_service_name(std::string_view name) {
  if (name.empty() || name.size() > 63)
    return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
  return true;
}

/// The preamble frame naming `service` and the `instance` picked (proto/proxy.proto).
std::string make_preamble(const std::string& service, bool http, const std::string& instance) {
  v1::ProxyPreamble msg;
  msg.set_service(service);
  msg.set_http(http);
  msg.set_instance(instance);
  std::string body;
  msg.SerializeToString(&body);
  return wire::framed(body);
}

/// A parsed preamble.
struct preamble_info {
  std::string service;
  bool http = false;
  std::string instance;
};

/// What a preamble body says, or nothing when it does not parse or names no valid service.
std::optional<preamble_info> parse_preamble(std::string_view body) {
  v1::ProxyPreamble msg;
  if (!msg.ParseFromArray(body.data(), static_cast<int>(body.size())) ||
      !is_service_name(msg.service()))
    return std::nullopt;
  return preamble_info{std::move(*msg.mutable_service()), msg.http(),
                       std::move(*msg.mutable_instance())};
}

/// A socket address (IPv4 or IPv6).
struct sock_address {
  sockaddr_storage storage{};
  socklen_t size = 0;
  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  [[nodiscard]] int family() const { return storage.ss_family; }
};

/// A numeric IPv4 or IPv6 address (no name lookup) and a port.
std::optional<sock_address> make_address(const std::string& host, std::uint16_t port) {
  sock_address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.size = sizeof(sockaddr_in);
    return a;
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.size = sizeof(sockaddr_in6);
    return a;
  }
  return std::nullopt;
}

/// Splits "host:port" (host may be "[v6]").
std::optional<sock_address> parse_endpoint(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  std::string host{text.substr(0, colon)};
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535)
      return std::nullopt;
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535)
    return std::nullopt;
  return make_address(host, static_cast<std::uint16_t>(port));
}

/// The address's host as text: IPv4 dotted (an IPv4-mapped IPv6 address too), IPv6 bare.
std::string host_text(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
    return text;
  }
  if (ss.ss_family != AF_INET6)
    return {};
  const auto& a6 = reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    in_addr v4{};
    std::memcpy(&v4, a6.s6_addr + 12, sizeof v4);
    ::inet_ntop(AF_INET, &v4, text, sizeof text);
    return text;
  }
  ::inet_ntop(AF_INET6, &a6, text, sizeof text);
  return text;
}

/// limit_source's IPv6 case: the /64 of an IPv6 address that counts by its prefix;
/// nothing for one that counts as itself (IPv4, IPv4-mapped, loopback, link-local).
std::optional<std::string> slash_64(const sockaddr_storage& ss) {
  if (ss.ss_family != AF_INET6)
    return std::nullopt;
  const auto& a6 = reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a6) || IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_LINKLOCAL(&a6))
    return std::nullopt;
  in6_addr prefix{};
  std::memcpy(prefix.s6_addr, a6.s6_addr, 8);
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET6, &prefix, text, sizeof text);
  return std::string{text} + "/64";
}

std::uint16_t port_of(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

void set_port(sock_address& a, std::uint16_t port) {
  if (a.family() == AF_INET)
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
  else
    reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
}

/// "host:port", "[v6]:port".
std::string render(const sock_address& a) {
  const auto port = port_of(a.storage);
  auto host = host_text(a.storage);
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

/// A listening socket on `at` (SO_REUSEADDR; SO_REUSEPORT when `shared`); its port in
/// `port`. -1 with `error` set on failure.
int open_listener(const sock_address& at, bool shared, std::uint16_t& port, std::string& error) {
  const int fd = ::socket(at.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  const int on = 1;
  sock_address bound;
  bound.size = sizeof bound.storage;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      (shared && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
      ::bind(fd, at.get(), at.size) != 0 || ::listen(fd, SOMAXCONN) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound.storage), &bound.size) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  port = port_of(bound.storage);
  return fd;
}

/// Appends `s` to `out` as the inside of a JSON string.
void json_escape(std::string_view s, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
}

using net::is_end;

/// Bytes read from a socket, not zero-filled: its pages become resident only as far as
/// reads fill them. (A std::vector<char> of 16 KiB touched all of them, for every client
/// and pooled connection: 4 MiB of an agent's RSS at 128 connections.)
///
/// Buffers of io_buffer_bytes come from a small cache per thread and go back to it: a
/// session is made per HTTP/2 stream, and a block this large is too big for the allocator's
/// per-thread cache (glibc's tcache stops at 1,032 bytes), so each one cost a search of its
/// bins and sometimes a consolidation (about 2% of both agents' CPU in a profile). The cache
/// keeps at most recycled_io_buffers blocks per thread (2 MiB); more go back to malloc.
///
/// The block is taken at the first data(), not before: the session serving an HTTP/2
/// stream whose request head came parsed (h2_stream::take_head) and had no body never
/// reads into its buffer, and at 128 streams in flight each such buffer was a malloc.
class io_buffer {
public:
  io_buffer() = default;
  explicit io_buffer(std::size_t n) : size_(n) {}
  ~io_buffer() { give(std::move(data_), size_); }
  io_buffer(io_buffer&& o) noexcept : data_(std::move(o.data_)), size_(std::exchange(o.size_, 0)) {}
  io_buffer& operator=(io_buffer&& o) noexcept {
    if (this != &o) {
      give(std::move(data_), size_);
      data_ = std::move(o.data_);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  io_buffer(const io_buffer&) = delete;
  io_buffer& operator=(const io_buffer&) = delete;

  [[nodiscard]] char* data() {
    if (!data_ && size_ > 0)
      data_ = take(size_);
    return data_.get();
  }
  [[nodiscard]] std::size_t size() const { return size_; }

private:
  using block = std::unique_ptr<char[]>;
  static constexpr std::size_t recycled_io_buffers = cached_streams_per_thread / 2;
  using cache = thread_cache<block, recycled_io_buffers>;
  static block take(std::size_t n) {
    if (n == io_buffer_bytes)
      if (auto b = cache::take())
        return b;
    return std::make_unique_for_overwrite<char[]>(n);
  }
  static void give(block b, std::size_t n) {
    if (b && n == io_buffer_bytes)
      cache::give(std::move(b));
  }

  block data_;
  std::size_t size_ = 0;
};
using stream_ptr = std::shared_ptr<connection>;

/// What a client_session reads requests from and writes responses to (an accepted
/// connection, or a stream of an HTTP/2 connection from a peer node: h2_server), and what
/// it sends requests on (a connection to an instance or a peer, or a stream of an HTTP/2
/// connection to a peer: h2_client). Decision 0022. `client_->read_some(...)` works on
/// either; what only a socket does (connect, TLS, splice) goes to `conn`.
struct byte_stream {
  stream_ptr conn;
  std::shared_ptr<h2_stream> h2;

  byte_stream* operator->() { return this; }
  void read_some(void* buf, std::size_t len, connection::io_handler h) {
    if (h2)
      h2->read_some(buf, len, std::move(h));
    else
      conn->read_some(buf, len, std::move(h));
  }
  void write(const void* buf, std::size_t len, connection::io_handler h,
             connection::completion how = connection::completion::deferred) {
    if (h2)
      h2->write(buf, len, std::move(h), how);
    else
      conn->write(buf, len, std::move(h), how);
  }
  void shutdown_send() {
    if (h2)
      h2->shutdown_send();
    else
      conn->shutdown_send();
  }
  void close() {
    if (h2)
      h2->close();
    else if (conn)
      conn->close();
  }
  [[nodiscard]] bool is_open() const { return h2 ? h2->is_open() : conn && conn->is_open(); }
  [[nodiscard]] net::loop& io() { return h2 ? h2->io() : conn->io(); }
};

/// Counters of one service on one worker. Written by the worker (relaxed), read by stats().
struct service_counters {
  std::atomic<std::uint64_t> requests{0}, r2{0}, r3{0}, r4{0}, r5{0}, grpc_failures{0}, retries{0},
      retries_refused{0}, timeouts{0}, breaker_refused{0}, ejections{0}, bytes_in{0}, bytes_out{0},
      latency_sum_ns{0};
  std::array<std::atomic<std::uint64_t>, latency_bounds.size() + 1> latency{};
};

/// Counters of one instance of a service on one worker: the outbound attempts sent to it.
/// Written by the worker (relaxed), read by stats(); the names are fixed at creation.
struct instance_counters {
  std::string service, instance, node;
  std::atomic<std::uint64_t> requests{0}, r2{0}, r3{0}, r4{0}, r5{0}, grpc_failures{0},
      connect_failures{0}, resets{0}, timeouts{0}, latency_sum_ns{0};
  std::array<std::atomic<std::uint64_t>, latency_bounds.size() + 1> latency{};
  /// worker::rebuild's count when an endpoint of the config last named it.
  std::uint64_t seen = 0;
};

/// Counts a duration in a latency histogram (`buckets` bounded by latency_bounds).
void observe(std::array<std::atomic<std::uint64_t>, latency_bounds.size() + 1>& buckets,
             std::atomic<std::uint64_t>& sum_ns, duration d) {
  const double secs = std::chrono::duration<double>(d).count();
  std::size_t b = 0;
  while (b < latency_bounds.size() && secs > latency_bounds[b])
    ++b;
  buckets[b].fetch_add(1, std::memory_order_relaxed);
  sum_ns.fetch_add(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()),
      std::memory_order_relaxed);
}

/// How an attempt to an instance ended, for its counters: the upstream's response status,
/// or 0 and why no response came (`none`: a TCP connection that ended normally); and
/// whether it was a gRPC call answered with a status other than OK (grpc_status_of).
struct try_end {
  enum class failure : std::uint8_t { none, connect, reset, timeout };
  std::uint16_t status = 0;
  failure why = failure::reset;
  bool grpc_failure = false;
};

/// Counters of one worker (relaxed atomics; summed by stats()).
struct worker_counters {
  std::atomic<std::uint64_t> outbound_connections{0}, inbound_connections{0},
      inbound_refused_tls{0}, inbound_refused_authz{0}, upstream_connects{0}, upstream_reused{0},
      upstream_connect_failures{0}, idle_pooled{0}, closed_by_ban{0}, connections_refused_fds{0},
      inbound_refused_source{0}, inbound_refused_peer{0}, inbound_refused_failing{0},
      inbound_refused_share{0};
  std::array<std::atomic<std::uint64_t>, generated_slots> generated{};
  std::atomic<std::int64_t> in_flight{0};
};

/// dataplane_options::max_descriptor when left 0: the soft RLIMIT_NOFILE less an eighth
/// of it (at least 128, at most 1,024 kept back for the control plane), or half of a limit
/// under 256.
std::size_t default_descriptor_ceiling() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
    return 1U << 20U; // no limit to protect
  const auto soft = static_cast<std::size_t>(lim.rlim_cur);
  if (soft < 256)
    return soft / 2;
  return soft - std::clamp<std::size_t>(soft / 8, 128, 1024);
}

/// TCP_NODELAY on a data-plane socket, and keepalive probes after `keepalive` without
/// traffic (dataplane_options::keepalive; zero: none): every third of it after that, the
/// third unanswered one ending the connection.
void tune_socket(int fd, std::chrono::seconds keepalive) {
  const int on = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (keepalive.count() <= 0)
    return;
  const int idle = static_cast<int>(std::min<std::int64_t>(keepalive.count(), 32767));
  const int interval = std::max(1, idle / 3);
  const int probes = 3;
  (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
  c.fetch_add(n, std::memory_order_relaxed);
}

/// Counts a response status in its class (r2..r5 of service or instance counters); 1xx in none.
template <class Counters> void count_status(Counters& c, std::uint16_t st) {
  if (st >= 200 && st < 300)
    bump(c.r2);
  else if (st >= 300 && st < 400)
    bump(c.r3);
  else if (st >= 400 && st < 500)
    bump(c.r4);
  else if (st >= 500)
    bump(c.r5);
}

/// One service as a worker sees it: its endpoints and the per-thread cores over them.
class client_session;

/// A request waiting for an upstream connection of its service (the service was at its
/// connection cap): the session, the attempt it waits in (a later attempt makes it stale),
/// and the pool key of the connection it needs. Holds one pending_requests unit.
struct pending_waiter {
  std::weak_ptr<client_session> session;
  std::uint64_t attempt = 0;
  std::string key;
};

struct target;
using target_ptr = std::shared_ptr<const target>;

/// Persistent across configs while the service exists (state carries over by id).
struct service_state {
  std::string name;
  gossip::service_protocol protocol = gossip::service_protocol::tcp;
  /// Routable instances, in snapshot order.
  std::vector<endpoint> endpoints;
  /// endpoint ids -> local? (node == self), aligned with endpoints.
  std::vector<std::uint8_t> non_local;
  /// 1 where the endpoint may not be picked by the outbound side: another node's instance
  /// whose node has no inbound proxy in the config while TLS between nodes is on. Reaching
  /// it straight at its address in plain TCP would skip mutual TLS, its authorization rules
  /// and bans; its inbound address leaves the config as soon as membership reports the node
  /// failed, which may be a moment before the routing table withdraws its instances.
  std::vector<std::uint8_t> unreachable;
  balancer lb;
  outlier_detector outlier;
  circuit_breaker breaker;
  /// What each calling peer holds of the breaker's cap on the inbound side: of
  /// active_requests (HTTP) or connections (TCP).
  caller_shares callers;
  retry_budget budget;
  std::optional<gossip::resilience_policy> resilience;
  traffic_policy policy;
  std::vector<gossip::authz_rule> authz;
  service_counters* counters = nullptr;
  /// HTTP requests waiting for a connection, oldest first (worker::wait_for_connection).
  std::deque<pending_waiter> pending;
  /// Inbound (the node's inbound listener serving its local instances).
  service_counters* inbound_counters = nullptr;
  /// Per-instance counters aligned with endpoints (null past max_tracked_instances).
  std::vector<instance_counters*> instances;
  /// Scratch exclusion mask of a pick.
  std::vector<std::uint8_t> mask;
  /// Where a pick of each endpoint goes, aligned with endpoints, made when the config is
  /// (no address to format and parse per request); null for an address that does not
  /// parse. `direct`: straight to the instance (the inbound side, local instances);
  /// `outbound`: through the node's inbound proxy when it is another node's and that proxy
  /// is known, else the same as `direct`.
  std::vector<target_ptr> direct, outbound;

  service_state(std::string n, const dataplane_options& o)
      : name(std::move(n)), lb(o.balancer), outlier(o.outlier), breaker(o.breaker) {}
};

using service_ptr = std::shared_ptr<service_state>;

/// The node's breaker caps with those the service's policy sets.
circuit_breaker_config breaker_config(const circuit_breaker_config& node,
                                      const std::optional<gossip::resilience_policy>& r) {
  auto cfg = node;
  if (r && r->max_connections)
    cfg.max_connections = *r->max_connections;
  if (r && r->max_requests)
    cfg.max_active_requests = *r->max_requests;
  if (r && r->max_pending)
    cfg.max_pending_requests = *r->max_pending;
  return cfg;
}

/// The node's outlier thresholds with those the service's policy sets.
outlier_config outlier_thresholds(const outlier_config& node,
                                  const std::optional<gossip::resilience_policy>& r) {
  auto cfg = node;
  if (r && r->eject_consecutive_5xx)
    cfg.consecutive_5xx = *r->eject_consecutive_5xx;
  if (r && r->eject_consecutive_connect_failures)
    cfg.consecutive_connect_failures = *r->eject_consecutive_connect_failures;
  if (r && r->ejection_time_ms)
    cfg.base_ejection_time = std::chrono::milliseconds{*r->ejection_time_ms};
  if (r && r->max_ejection_percent)
    cfg.max_ejection_percent = *r->max_ejection_percent;
  cfg.max_ejection_time = std::max(cfg.max_ejection_time, cfg.base_ejection_time);
  return cfg;
}

retry_budget_config budget_config(const std::optional<gossip::resilience_policy>& r) {
  retry_budget_config cfg;
  if (r && r->retry_budget_percent > 0)
    cfg.retry_ratio = r->retry_budget_percent / 100.0;
  if (r && r->retry_min_per_second > 0)
    cfg.min_retries_per_second = r->retry_min_per_second;
  return cfg;
}

/// Why the inbound side refuses `caller` for `rules`; nothing when allowed.
std::optional<std::string> authz_refusal(const std::vector<gossip::authz_rule>& rules,
                                         const peer_identity* caller) {
  if (rules.empty())
    return std::nullopt;
  if (!caller)
    return std::string{"no caller identity (authorization rules need mTLS)"};
  auto names = [&](const gossip::authz_rule& r) {
    for (const auto& f : r.from)
      if (f == "*" || f == caller->spiffe_id)
        return true;
    return false;
  };
  for (const auto& r : rules)
    if (!r.allow && names(r))
      return "denied by rule " + r.name;
  for (const auto& r : rules)
    if (r.allow && names(r))
      return std::nullopt;
  return "no allow rule names " + caller->spiffe_id;
}

/// Whether the TLS handshake of `ssl` settled on HTTP/2 by ALPN (decision 0022).
bool chose_h2(SSL* ssl) {
  const unsigned char* alpn = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &len);
  return std::string_view{reinterpret_cast<const char*>(alpn), len} == "h2";
}

class dataplane_impl;
class worker;
struct target;

/// A connection to an upstream (a local instance or a peer's inbound proxy), with the
/// response parser that lives as long as the connection. Pooled between requests.
struct upstream_conn {
  /// On the socket `fd` (new, to be connected).
  upstream_conn(net::loop& io, int fd, std::string key, std::string node,
                const http1_limits& limits);
  /// On a stream of an HTTP/2 connection to the peer `node` (never pooled: a stream
  /// carries one exchange).
  upstream_conn(std::shared_ptr<h2_stream> stream, std::string node, const http1_limits& limits);
  ~upstream_conn();
  upstream_conn(const upstream_conn&) = delete;
  upstream_conn& operator=(const upstream_conn&) = delete;

  byte_stream s;
  /// Pool key: "address|service".
  std::string key;
  /// Node at the other end (for ban_peer); empty for a local instance.
  std::string node;
  http1_parser parser;
  /// Bytes read from the upstream not yet parsed: buf[pos, end).
  io_buffer buf{io_buffer_bytes};
  std::size_t pos = 0, end = 0;
  /// Preamble to send before the first request (peer hops), then empty.
  std::string preamble;
  time_point idle_since{};
  /// The service whose connection cap this HTTP connection counts in (one `connections`
  /// unit of its breaker, given back by the destructor, which then lets a waiting request
  /// of the service go on); null for a TCP tunnel's (its session holds the unit).
  std::shared_ptr<service_state> counted;
  worker* owner = nullptr;
};

using upstream_ptr = std::shared_ptr<upstream_conn>;

/// One I/O thread and everything it owns.
class worker {
public:
  worker(dataplane_impl& dp, std::size_t index, std::uint64_t seed)
      : dp_(dp), index_(index), rng_(seed) {}

  /// Starts the thread, which makes its loop on `wanted` and runs it. False, with the
  /// reason in `note`, when no loop could be made (the thread has ended then); else `got`
  /// is the loop's back end and `note` says why it is not `wanted`, if it is not.
  ///
  /// The thread makes its own loop, and shuts it down before it ends: an io_uring ring
  /// keeps a node for every thread that made or used it, and closing the ring sends each
  /// such thread a task-work signal, which fails a blocking call with a timeout (a recv
  /// with SO_RCVTIMEO) with EINTR in that thread: the agent's and the tests' threads
  /// must never touch a ring.
  bool start(net::backend wanted, net::backend& got, std::string& note) {
    struct made {
      bool ok = false;
      net::backend kind = net::backend::epoll;
      std::string why;
    };
    auto promise = std::make_shared<std::promise<made>>();
    auto ready = promise->get_future();
    thread_ = std::thread([this, wanted, promise] {
      // Named for top -H, perf and /proc (else it keeps its creator's name).
      const auto name = "starling-io-" + std::to_string(index_);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      std::string why;
      auto l = net::loop::make(wanted, why);
      if (!l) {
        promise->set_value({false, wanted, why});
        return;
      }
      loop_ = std::move(l);
      sweep_.emplace(*loop_);
      promise->set_value({true, loop_->kind(), why});
      arm_sweep();
      loop_->run();
      // The turn whose posted task ran close_all() went on with its completions and due
      // timers, which may have made connections since (a dial that completed then put its
      // HTTP/2 connection in h2_peers_): closed again, now that nothing runs, which leaves
      // every registry empty while the loop exists (nothing that holds a connection or a
      // timer may outlive it: loop_ is destroyed before them). What the closes cancelled,
      // and everything else still pending, is dropped here, on this thread (see above);
      // dropping it may queue more, which the second shutdown drops.
      close_all();
      sweep_.reset();
      loop_->shutdown();
      release_cycles();
      pool_.clear();
      close_listeners();
      loop_->shutdown();
    });
    auto result = ready.get();
    got = result.kind;
    note = std::move(result.why);
    return result.ok;
  }

  void stop_and_join() {
    // Closes everything on the thread, then stops; the thread then shuts its loop down.
    if (loop_ && thread_.joinable())
      loop_->post([this] {
        stopping_ = true;
        close_all();
        loop_->stop();
      });
    if (thread_.joinable())
      thread_.join();
    stopping_ = true;
  }

  net::loop& io() { return *loop_; }
  [[nodiscard]] std::size_t index() const { return index_; }
  worker_counters& counters() { return counters_; }
  random_source& rng() { return rng_; }
  /// True when `fd` is below the descriptor ceiling (dataplane_options::max_descriptor);
  /// else counts the refusal: the caller closes it.
  bool below_ceiling(int fd) {
    if (static_cast<std::size_t>(fd) < options().max_descriptor)
      return true;
    bump(counters_.connections_refused_fds);
    return false;
  }
  /// A new TCP socket for `family` below the ceiling; -errno otherwise (EMFILE above it).
  int new_socket(int family) {
    const int fd = connection::new_socket(family);
    if (fd < 0 || below_ceiling(fd))
      return fd;
    ::close(fd);
    return -EMFILE;
  }
  /// Takes one of `source`'s slots for connections not yet authenticated; false (counted)
  /// when it has max_unauthenticated_per_source already.
  bool admit_unauthenticated(const std::string& source) {
    return take_slot(unauthenticated_, source, options().max_unauthenticated_per_source,
                     counters_.inbound_refused_source);
  }
  /// Gives back a slot admit_unauthenticated took.
  void authenticated(const std::string& source) { release_slot(unauthenticated_, source); }
  /// Whether a connection from `source` may try to authenticate: false (counted) when its
  /// recent connections ended without authenticating more often than
  /// max_failed_handshakes_per_source allows. A rate limit per address in the manner of
  /// GCRA: each failure moves the address's theoretical arrival time one
  /// failed_handshake_interval later (from now at the latest); a connection is let in while
  /// one more failure would still keep that time within the burst of the limit.
  /// An address from which a member holds a connection now is not limited: the failures
  /// of another caller behind the same address (a NAT) must not lock the member out.
  bool may_authenticate(const std::string& source) {
    const auto cap = options().max_failed_handshakes_per_source;
    if (cap == 0 || failing_.empty() || members_at_.contains(source))
      return true;
    const auto it = failing_.find(source);
    if (it == failing_.end())
      return true;
    const auto interval = options().failed_handshake_interval;
    const auto ahead = it->second - loop_->now();
    if (ahead <= interval * static_cast<std::int64_t>(cap - 1))
      return true;
    bump(counters_.inbound_refused_failing);
    return false;
  }
  /// A connection from `source` ended without authenticating (see may_authenticate).
  void failed_to_authenticate(const std::string& source) {
    const auto cap = options().max_failed_handshakes_per_source;
    if (cap == 0 || members_at_.contains(source))
      return;
    const auto now = loop_->now();
    auto it = failing_.find(source);
    if (it == failing_.end()) {
      if (failing_.size() >= max_failing_sources)
        std::erase_if(failing_, [&](const auto& kv) { return kv.second <= now; });
      if (failing_.size() >= max_failing_sources)
        return; // as many failing addresses as tracked: this one goes unlimited
      it = failing_.emplace(source, now).first;
    }
    // Only admitted connections fail, so the time runs at most `cap` intervals, plus one
    // per connection already in its handshake, ahead of now (both bounded at start).
    it->second = std::max(it->second, now) + options().failed_handshake_interval;
  }
  /// Takes one of peer `node`'s inbound connection slots; false (counted) when it holds
  /// max_connections_per_peer already. `source`: the connection's address, a member's
  /// while the connection lasts (may_authenticate).
  /// Once the members' inbound connections on this thread reach twice that share (half of
  /// the data plane's descriptors by default), a peer that holds an equal part of that line
  /// or more (the line divided among the peers holding connections here, this one counted;
  /// never below a quarter of the share or 16, whichever is smaller) gets no more either: a
  /// few members that turned hostile, each within its share, cannot take every descriptor
  /// together (docs/proxy.md, "Floods of connections").
  bool admit_peer(const std::string& node, const std::string& source) {
    if (!within_equal_part(node)) {
      bump(counters_.inbound_refused_peer);
      return false;
    }
    if (!take_slot(peer_connections_, node, options().max_connections_per_peer,
                   counters_.inbound_refused_peer))
      return false;
    if (peer_connections_.contains(node)) // (no entry when there is no bound)
      ++peer_connections_total_;
    ++members_at_[source];
    return true;
  }
  /// Gives back what admit_peer took.
  void peer_gone(const std::string& node, const std::string& source) {
    if (peer_connections_.contains(node))
      --peer_connections_total_;
    release_slot(peer_connections_, node);
    release_slot(members_at_, source);
  }
  dataplane_impl& dp() { return dp_; }
  const dataplane_options& options() const;

  /// The current config, refreshing the per-service states when it changed.
  /// A reference to the worker's own pointer (valid until the next call): a session that
  /// already holds this config copies nothing (no reference count moves).
  const std::shared_ptr<const dataplane_config>& config();
  /// The state of `name` under the config last returned by config(); null when unknown.
  /// A reference, as config()'s.
  const service_ptr& service(const std::string& name) {
    static const service_ptr none;
    auto it = services_.find(name);
    return it == services_.end() ? none : it->second;
  }

  /// Visits the service counters (any thread): f(name, inbound, counters).
  template <class F> void visit_services(F&& f) {
    std::lock_guard lock{counters_mu_};
    for (auto& [name, c] : service_counters_)
      f(name, false, *c);
    for (auto& [name, c] : inbound_counters_)
      f(name, true, *c);
  }
  /// Visits the instance counters (any thread).
  template <class F> void visit_instances(F&& f) {
    std::lock_guard lock{counters_mu_};
    for (auto& [key, c] : instance_counters_)
      f(*c);
  }

  void count_generated(http_error e) {
    auto i = static_cast<std::size_t>(e);
    if (i < generated_slots)
      bump(counters_.generated[i]);
  }

  /// Any thread: starts accepting on the listening socket `fd` (which the worker owns from
  /// now on) for `service` (empty: inbound).
  void adopt_listener(int fd, std::string service);
  void drop_listener(const std::string& service) {
    auto it = outbound_.find(service);
    if (it == outbound_.end())
      return;
    loop_->close(it->second);
    outbound_.erase(it);
  }

  // Pool.
  /// A pooled connection to `key`, or null. `retried_on_reset`: the request is retried if
  /// the connection turns out closed (see unchecked_reuse_window).
  upstream_ptr take_idle(const std::string& key, bool retried_on_reset);
  /// A connection to `key` taken from the pool failed (a reset, an early close): from now
  /// on take_idle checks every connection to `key` before reuse.
  void note_reused_failure(const std::string& key);
  void give_back(upstream_ptr c);
  /// Closes one idle pooled connection of `svc` (any instance), which gives back a unit of
  /// its connection cap; false when it has none.
  bool evict_idle(const service_state& svc);

  // Requests waiting for a connection (the service at its connection cap; Envoy's pending
  // requests). A waiter is woken with a pooled connection to its key, or with nothing when
  // a unit of the cap came free (it then connects); each holds one pending_requests unit.
  /// Queues `session`'s `attempt` for a connection to `key` (at the front when it was
  /// woken and lost the unit to a newer request); false when the pending cap refuses.
  bool wait_for_connection(const std::shared_ptr<service_state>& svc,
                           std::weak_ptr<client_session> session, std::uint64_t attempt,
                           std::string key, bool front);
  /// A connection of `svc` closed: wakes its oldest waiter, if any.
  void connection_released(const std::shared_ptr<service_state>& svc);
  void ban(const std::string& node);

  /// How h2_to() ended: a connection to use, a failure to connect, or a peer that does not
  /// speak HTTP/2 (it chose no `h2` by ALPN): use HTTP/1.1 with a preamble.
  enum class h2_result : std::uint8_t { ok, failed, http1 };
  /// Room inside for a session's continuation (its owner, the attempt, a flag).
  using h2_ready = net::callback<void(h2_result, const std::shared_ptr<h2_client>&), 48>;
  /// Whether requests to the peer inbound at `address` go over HTTP/2 (as far as known).
  [[nodiscard]] bool h2_for(const std::string& address) const {
    if (!options().h2_to_peers)
      return false;
    auto it = h1_peers_.find(address);
    return it == h1_peers_.end() || clock::now() >= it->second;
  }
  /// The HTTP/2 connection to the peer inbound `t` (t.via_peer), or to the instance `t`
  /// (t.h2_app, in plain text with prior knowledge): the one open if it takes another
  /// stream (`k` called now), else a new one (`k` called once it is ready; the requests
  /// that ask meanwhile wait for the same one).
  void h2_to(const target& t, h2_ready k);
  /// Connects `conn` (a new socket) to `t` and sets TCP_NODELAY and keepalive (tune_socket);
  /// to a peer's inbound with TLS configured, then handshakes as a client expecting
  /// `t.node`'s certificate (offering only `h2` by ALPN when `offer_h2`). `done(ok)` once;
  /// the connect and the handshake together within connect_timeout (closing the connection
  /// fails whichever is pending).
  void dial(const std::shared_ptr<connection>& conn, const target& t, bool offer_h2,
            std::function<void(bool)> done);
  void unban(const std::string& node) { banned_.erase(node); }
  [[nodiscard]] bool is_banned(const std::string& node) const { return banned_.count(node) > 0; }

  // Registries (this thread only).
  /// The sessions of this worker: the first, then each one's next_client().
  client_session*& clients() { return clients_; }
  /// Draining: each HTTP/2 connection from a peer says GOAWAY (h2_link::go_away); the
  /// apps' own connections to outbound listeners go on.
  void go_away_inbound() {
    for (auto& [weak, from] : h2_links_)
      if (auto s = weak.lock(); s && s->is_server() && !s->is_app() && s->is_open())
        s->go_away();
  }
  /// An HTTP/2 connection from the peer `node` (empty without TLS): ban() and close_all()
  /// close it.
  void adopt_h2(const std::shared_ptr<h2_link>& s, std::string node) {
    if (h2_links_.size() >= 2 * h2_pruned_at_ + 16) { // forget the closed ones now and then
      std::erase_if(h2_links_, [](const auto& e) { return e.first.expired(); });
      h2_pruned_at_ = h2_links_.size();
    }
    h2_links_.emplace_back(s, std::move(node));
  }

private:
  void accept(int fd, const std::string& service);
  /// Whether `fd` is still the listener of `service`.
  [[nodiscard]] bool listens(int fd, const std::string& service) const {
    if (service.empty())
      return inbound_ == fd;
    auto it = outbound_.find(service);
    return it != outbound_.end() && it->second == fd;
  }
  void close_listeners();
  void release_cycles();
  void arm_sweep();
  void sweep();
  void close_all();
  void rebuild(const dataplane_config& cfg);
  /// Appends the targets of `ep` (the next endpoint of `st`) to st.direct and st.outbound;
  /// `http2`: the instance speaks HTTP/2 (target::h2_app when reached directly).
  void add_targets(service_state& st, const endpoint& ep, const dataplane_config& cfg, bool http2);
  /// The counters of service `name` on this worker, one direction (created on first use).
  /// With counters_mu_ held.
  service_counters* counters_locked(const std::string& name, bool inbound) {
    auto& slot = (inbound ? inbound_counters_ : service_counters_)[name];
    if (!slot)
      slot = std::make_unique<service_counters>();
    return slot.get();
  }

  /// Hands `c` (open, reusable) to a waiter of its service that needs its key; or drops
  /// it when the service has waiters for other instances and is at its cap (the close
  /// frees a unit for them). True when `c` was taken.
  bool hand_to_waiter(upstream_ptr& c);
  /// Pops `svc`'s oldest live waiter (stale ones dropped, every popped one's pending unit
  /// given back); null when none.
  std::shared_ptr<client_session> pop_waiter(service_state& svc, std::uint64_t& attempt,
                                             const std::string* key = nullptr);
  /// Drops `svc`'s stale waiters (ended sessions, later attempts).
  void purge_waiters(service_state& svc);
  /// Wakes as many of `svc`'s waiters as its connection cap has room for (they connect).
  void wake_waiters(service_state& svc);

  dataplane_impl& dp_;
  /// stop_and_join started: nothing is woken any more (the loop is going away).
  bool stopping_ = false;
  std::size_t index_;
  random_source rng_;
  worker_counters counters_;
  /// Inbound connections not yet authenticated, by source address, and those of each peer
  /// node (entries go at zero).
  std::unordered_map<std::string, std::size_t> unauthenticated_, peer_connections_;
  /// The sum of peer_connections_.
  std::size_t peer_connections_total_ = 0;
  /// Source addresses of the peer connections admit_peer let in, with their count.
  std::unordered_map<std::string, std::size_t> members_at_;
  /// Source addresses whose connections failed to authenticate, with their theoretical
  /// arrival time (may_authenticate); dropped by sweep() once it has passed. At most
  /// max_failing_sources (about 100 bytes each).
  std::unordered_map<std::string, clock::time_point> failing_;
  static constexpr std::size_t max_failing_sources = 4096;
  /// admit_peer's rule under pressure: whether `node` holds less than its equal part.
  [[nodiscard]] bool within_equal_part(const std::string& node) const {
    const auto share = options().max_connections_per_peer;
    if (share == 0)
      return true;
    const auto line = share > SIZE_MAX / 2 ? SIZE_MAX : 2 * share;
    const auto it = peer_connections_.find(node);
    const std::size_t held = it == peer_connections_.end() ? 0 : it->second;
    const std::size_t peers = peer_connections_.size() + (it == peer_connections_.end() ? 1 : 0);
    return proxy::within_equal_part(peer_connections_total_, line, held, peers,
                                    std::clamp<std::size_t>(share / 4, 1, 16));
  }
  /// Takes one of `key`'s at most `cap` slots (0: no bound); false, counted in `refused`,
  /// when it holds them all.
  static bool take_slot(std::unordered_map<std::string, std::size_t>& slots, const std::string& key,
                        std::size_t cap, std::atomic<std::uint64_t>& refused) {
    if (cap == 0)
      return true;
    auto it = slots.try_emplace(key, 0).first;
    if (it->second >= cap) {
      bump(refused);
      return false;
    }
    ++it->second;
    return true;
  }
  static void release_slot(std::unordered_map<std::string, std::size_t>& slots,
                           const std::string& key) {
    auto it = slots.find(key);
    if (it != slots.end() && --it->second == 0)
      slots.erase(it);
  }
  std::mutex counters_mu_;
  /// Counters per service name; entries are never removed (counters are monotonic).
  std::map<std::string, std::unique_ptr<service_counters>> service_counters_;
  std::map<std::string, std::unique_ptr<service_counters>> inbound_counters_;
  /// Counters per instance, keyed "service\0node\0instance id" (an address change keeps
  /// them); rebuild drops those whose instance left the config. Guarded by counters_mu_.
  std::map<std::string, std::unique_ptr<instance_counters>> instance_counters_;
  std::uint64_t rebuilds_ = 0;
  /// Live connections of this thread (raw: entries removed by the destructors).
  /// A list through the sessions themselves (no node to allocate per session: one is made
  /// per HTTP/2 stream).
  client_session* clients_ = nullptr;
  std::vector<std::pair<std::weak_ptr<h2_link>, std::string>> h2_links_;
  /// HTTP/2 connections to peers' inbounds by address (to local HTTP/2 instances by
  /// target::pool_key), and the requests waiting for one being made.
  std::unordered_map<std::string, std::shared_ptr<h2_client>> h2_peers_;
  std::unordered_map<std::string, std::vector<h2_ready>> h2_connecting_;
  /// Peers' inbounds that chose no `h2` by ALPN, with when to ask them again: HTTP/1.1
  /// with a preamble until then. Forgotten when their address leaves the config.
  std::unordered_map<std::string, clock::time_point> h1_peers_;
  std::size_t h2_pruned_at_ = 0;
  std::set<std::string, std::less<>> banned_;
  std::shared_ptr<const dataplane_config> config_;
  /// dataplane_impl::config_version() when config_ was read.
  std::uint64_t config_version_ = 0;
  std::unordered_map<std::string, service_ptr> services_;
  std::thread thread_;
  // Declared after the registries: destroyed first, so that handlers (and the connections
  // they keep alive) die while the registries still exist.
  std::unique_ptr<net::loop> loop_;
  std::optional<net::timer> sweep_;
  /// Listening sockets: inbound (-1: none) and one per outbound service.
  int inbound_ = -1;
  std::map<std::string, int> outbound_;
  std::unordered_map<std::string, std::deque<upstream_ptr>> pool_;
  /// Upstreams (pool keys) a reused connection of which failed: their connections always
  /// get peer_closed()'s check (an app that closes without `connection: close` would else
  /// cost a retry per request). Cleared when it reaches max_checked_keys.
  std::unordered_set<std::string> always_checked_;
};

upstream_conn::upstream_conn(net::loop& io, int fd, std::string k, std::string n,
                             const http1_limits& limits)
    : s{std::make_shared<connection>(io, fd), nullptr}, key(std::move(k)), node(std::move(n)),
      parser(direction::response, limits) {
  // Pooled ones are in the worker's pool, in-flight ones reachable from their session
  // (ban_peer finds both there).
}

upstream_conn::upstream_conn(std::shared_ptr<h2_stream> stream, std::string n,
                             const http1_limits& limits)
    : s{nullptr, std::move(stream)}, node(std::move(n)), parser(direction::response, limits) {
  parser.trust_heads(); // the stream writes the response heads (h2::to_h1_response)
}

upstream_conn::~upstream_conn() {
  s->close();
  if (counted) {
    counted->breaker.release(breaker_resource::connections);
    owner->connection_released(counted);
  }
}

/// Copies bytes both ways between two streams with half-close: EOF from one side shuts
/// the other's sending side; when both directions ended (or one failed) both close. A
/// tunnel that moves no byte either way for `idle` (when not zero) closes both too
/// (dataplane_options::tunnel_idle_timeout).
///
/// Between two plain streams (a local instance: TLS on neither side) the bytes can move
/// through a pipe with splice(2) instead, never copied into the process (`splice`); the
/// bytes it starts with still go through a buffer. Either end may be a tunnel stream of an
/// HTTP/2 connection between nodes (h2_stream::is_tunnel), which is copied.
class tunnel : public std::enable_shared_from_this<tunnel> {
public:
  using done_fn = std::function<void()>;
  /// Spliced tunnels of one data plane, against its cap (dataplane_options).
  struct splice_slots {
    std::atomic<int> used{0};
    int max = 0;
    /// The data plane's descriptor ceiling (dataplane_options::max_descriptor).
    std::size_t max_fd = 0;
  };
  /// `slots`: splice when both streams are plain and a slot is free; null: always copy.
  tunnel(byte_stream a, byte_stream b, service_counters* counters, done_fn done,
         std::shared_ptr<splice_slots> slots = nullptr,
         std::chrono::milliseconds idle = std::chrono::milliseconds{0})
      : a_(std::move(a)), b_(std::move(b)), counters_(counters), done_(std::move(done)),
        slots_(std::move(slots)),
        splice_(slots_ && !a_.h2 && !b_.h2 && !a_.conn->is_tls() && !b_.conn->is_tls()),
        idle_(std::min(idle, max_tunnel_idle)), idle_timer_(a_.io()) {}
  ~tunnel() { drop_pipes(); }
  tunnel(const tunnel&) = delete;
  tunnel& operator=(const tunnel&) = delete;

  /// Starts with `to_b` already read from a (sent to b first) and `to_a` from b.
  void start(std::string_view to_b, std::string_view to_a) {
    if (idle_.count() > 0) {
      last_active_ = a_->io().now();
      watch_idle(last_active_ + idle_);
    }
    if (splice_)
      splice_ = open_pipes();
    // A spliced direction needs a buffer only for the bytes it starts with.
    dirs_[0].buf = io_buffer{splice_ ? to_b.size() : std::max(tunnel_buffer_bytes, to_b.size())};
    dirs_[1].buf = io_buffer{splice_ ? to_a.size() : std::max(tunnel_buffer_bytes, to_a.size())};
    if (!to_b.empty()) // (memcpy from a null view is undefined even for 0 bytes)
      std::memcpy(dirs_[0].buf.data(), to_b.data(), to_b.size());
    if (!to_a.empty())
      std::memcpy(dirs_[1].buf.data(), to_a.data(), to_a.size());
    if (to_b.empty())
      read(0);
    else
      write(0, to_b.size(), false);
    if (to_a.empty())
      read(1);
    else
      write(1, to_a.size(), false);
  }

  void abort() {
    a_->close();
    b_->close();
  }

private:
  struct dir {
    io_buffer buf;
    bool done = false;
    /// splice: the direction's pipe, and the bytes it holds (read, not yet written).
    int pipe_r = -1, pipe_w = -1;
    std::size_t held = 0;
  };
  // Direction 0: a -> b (client to upstream); 1: b -> a.
  byte_stream& from(int d) { return d == 0 ? a_ : b_; }
  byte_stream& to(int d) { return d == 0 ? b_ : a_; }

  /// The pipes of both directions (the sockets are non-blocking from the start); false
  /// when every slot is taken (each spliced tunnel holds four more descriptors; past the
  /// cap tunnels copy, as past HAProxy's maxpipes) or the process is out of descriptors:
  /// the tunnel copies then.
  bool open_pipes() {
    if (slots_->used.fetch_add(1, std::memory_order_relaxed) >= slots_->max) {
      slots_->used.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    holds_pipes_ = true;
    for (auto& d : dirs_) {
      int fds[2];
      if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        drop_pipes();
        return false;
      }
      d.pipe_r = fds[0];
      d.pipe_w = fds[1];
      if (static_cast<std::size_t>(std::max(fds[0], fds[1])) >= slots_->max_fd) {
        drop_pipes(); // at the descriptor ceiling: copy
        return false;
      }
    }
    return true;
  }
  /// Closes the pipes and gives the slot back.
  void drop_pipes() {
    for (auto& d : dirs_)
      for (int* fd : {&d.pipe_r, &d.pipe_w})
        if (*fd >= 0) {
          ::close(*fd);
          *fd = -1;
        }
    if (holds_pipes_)
      slots_->used.fetch_sub(1, std::memory_order_relaxed);
    holds_pipes_ = false;
  }

  /// The longest idle timeout honoured (a longer one would overflow the clock's sums).
  static constexpr std::chrono::milliseconds max_tunnel_idle{std::chrono::hours{24 * 365}};
  /// Bytes one splice call moves at most: a pipe's default capacity.
  static constexpr std::size_t splice_chunk = 64 * 1024;
  /// Chunks one direction moves before it lets the thread's other work run (posts itself).
  static constexpr int splice_turns = 16;

  /// splice: moves what the source has into the pipe and on to the destination, until the
  /// source has nothing, the destination is full (a wait for either), or the end.
  void splice_step(int d) {
    auto& dir = dirs_[d];
    for (int turn = 0; turn < splice_turns; ++turn) {
      if (dir.held > 0 && !splice_out(d))
        return;
      const auto n = ::splice(from(d).conn->fd(), nullptr, dir.pipe_w, nullptr, splice_chunk,
                              SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        dir.held = static_cast<std::size_t>(n);
        last_active_ = from(d).io().now();
        if (counters_)
          bump(d == 0 ? counters_->bytes_in : counters_->bytes_out, dir.held);
        continue;
      }
      if (n == 0) {
        ended(d);
        return;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        auto self = shared_from_this();
        from(d).conn->wait(net::loop::ready::readable, [self, d](const std::error_code& ec) {
          if (ec)
            self->fail();
          else
            self->splice_step(d);
        });
        return;
      }
      fail();
      return;
    }
    auto self = shared_from_this();
    from(d).io().defer([self, d] { self->splice_step(d); });
  }

  /// Writes what the pipe holds to the destination; false when it waits for room (and goes
  /// on from there) or failed.
  bool splice_out(int d) {
    auto& dir = dirs_[d];
    while (dir.held > 0) {
      const auto n = ::splice(dir.pipe_r, nullptr, to(d).conn->fd(), nullptr, dir.held,
                              SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        dir.held -= static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        auto self = shared_from_this();
        to(d).conn->wait(net::loop::ready::writable, [self, d](const std::error_code& ec) {
          if (ec)
            self->fail();
          else if (self->splice_out(d))
            self->splice_step(d);
        });
        return false;
      }
      fail();
      return false;
    }
    return true;
  }

  void read(int d) {
    if (splice_) {
      splice_step(d);
      return;
    }
    auto self = shared_from_this();
    from(d).read_some(dirs_[d].buf.data(), dirs_[d].buf.size(),
                      [self, d](const std::error_code& ec, std::size_t n) {
                        if (ec) {
                          if (is_end(ec))
                            self->ended(d);
                          else
                            self->fail();
                          return;
                        }
                        self->last_active_ = self->from(d).io().now();
                        self->write(d, n);
                      });
  }
  void write(int d, std::size_t n, bool count = true) {
    if (counters_ && count)
      bump(d == 0 ? counters_->bytes_in : counters_->bytes_out, n);
    auto self = shared_from_this();
    // Inline when the socket takes it all: the handler's read never completes inline, so
    // this nests one deep at most.
    to(d).write(
        dirs_[d].buf.data(), n,
        [self, d](const std::error_code& ec, std::size_t) {
          if (ec)
            self->fail();
          else
            self->read(d);
        },
        connection::completion::inline_when_done);
  }
  void ended(int d) {
    dirs_[d].done = true;
    to(d).shutdown_send();
    if (dirs_[0].done && dirs_[1].done)
      finish();
  }
  void fail() { finish(); }
  /// The idle timer, moved lazily: bytes only stamp last_active_; the timer, when it fires
  /// before the tunnel has been idle for idle_, waits again for the rest.
  void watch_idle(net::loop::clock::time_point when) {
    std::weak_ptr<tunnel> weak = shared_from_this();
    idle_timer_.start_at(when, [weak] {
      auto self = weak.lock();
      if (!self || self->finished_)
        return;
      const auto due = self->last_active_ + self->idle_;
      if (self->a_->io().now() < due) {
        self->watch_idle(due);
        return;
      }
      if (self->counters_)
        bump(self->counters_->timeouts);
      self->finish();
    });
  }
  void finish() {
    if (finished_)
      return;
    finished_ = true;
    idle_timer_.cancel();
    a_->close();
    b_->close();
    if (done_)
      done_();
  }

  byte_stream a_, b_;
  service_counters* counters_;
  done_fn done_;
  std::array<dir, 2> dirs_;
  std::shared_ptr<splice_slots> slots_;
  bool splice_;
  /// Holds one of slots_.
  bool holds_pipes_ = false;
  bool finished_ = false;
  std::chrono::milliseconds idle_;
  net::timer idle_timer_;
  /// The loop's time when bytes last arrived from either side.
  net::loop::clock::time_point last_active_{};
};

/// How a chosen upstream is reached.
struct target {
  /// The endpoint chosen (its id for balancer/outlier bookkeeping).
  std::string endpoint_id;
  std::size_t index = 0;
  /// Where to connect.
  sock_address address;
  std::string address_text;
  /// Node of the instance; `peer` when going through that node's inbound proxy.
  std::string node;
  bool via_peer = false;
  /// The idle pool's key of connections to it: "address|service", and "|instance" through
  /// a peer's inbound proxy (whose preamble names the instance, so that a connection serves
  /// that instance only).
  std::string pool_key;
  /// Reached directly (not via_peer), the instance speaks HTTP/2 (protocol http2, decision
  /// 0025): its requests go as streams of one connection (worker::h2_to), not HTTP/1.1.
  bool h2_app = false;
};
/// A session's target before its first pick: an empty one.
const target_ptr& no_target() {
  static const target_ptr empty = std::make_shared<const target>();
  return empty;
}

/// The data plane.
class dataplane_impl final : public dataplane {
public:
  explicit dataplane_impl(dataplane_options options) : options_(std::move(options)) {
    if (options_.threads == 0)
      options_.threads = 1;
    splice_slots_->max =
        static_cast<int>(std::min<std::size_t>(options_.splice_max_tunnels, 1U << 20U));
    if (options_.max_descriptor == 0)
      options_.max_descriptor = default_descriptor_ceiling();
    if (options_.max_connections_per_peer == 0)
      options_.max_connections_per_peer =
          std::max<std::size_t>(64, options_.max_descriptor / 4 / options_.threads);
    splice_slots_->max_fd = options_.max_descriptor;
  }

  ~dataplane_impl() override { stop(); }

  /// The I/O threads, one loop each, on the back end the options ask for (io_uring falls
  /// back to epoll where this process may not use it: io_note() says why).
  bool start_workers(std::string& error) {
    for (std::size_t i = 0; i < options_.threads; ++i) {
      workers_.push_back(std::make_unique<worker>(*this, i, options_.seed + i * 0x9e3779b9ULL));
      net::backend got = options_.io;
      std::string note;
      if (!workers_.back()->start(options_.io, got, note)) {
        error = "dataplane: cannot make an I/O loop: " + note;
        return false;
      }
      if (i == 0) {
        io_backend_ = got;
        io_note_ = note;
      }
    }
    return true;
  }

  bool bind_inbound(std::string& error) {
    auto at = make_address(options_.inbound_host, options_.inbound_port);
    if (!at) {
      error = "dataplane: bad inbound_host '" + options_.inbound_host + "'";
      return false;
    }
    std::vector<int> fds;
    if (!open_listeners(*at, fds, error)) {
      error = "dataplane: cannot listen on " + options_.inbound_host + ":" +
              std::to_string(options_.inbound_port) + ": " + error;
      return false;
    }
    inbound_address_ = render(*at);
    for (std::size_t i = 0; i < workers_.size(); ++i)
      workers_[i]->adopt_listener(fds[i], "");
    return true;
  }

  void apply(std::shared_ptr<const dataplane_config> config) override {
    if (!config)
      return;
    if (!config->routes) {
      auto copy = std::make_shared<dataplane_config>(*config);
      copy->routes = std::make_shared<const gossip::routing_snapshot>();
      config = std::move(copy);
    }
    std::lock_guard apply_lock{apply_mu_};
    {
      std::lock_guard lock{config_mu_};
      config_ = config;
      config_version_.fetch_add(1, std::memory_order_release);
    }
    if (stopped_)
      return;
    std::set<std::string> names;
    for (const auto& s : config->routes->services)
      names.insert(s.name);
    for (auto it = outbound_ports_.begin(); it != outbound_ports_.end();) {
      if (names.count(it->first)) {
        ++it;
        continue;
      }
      for (auto& w : workers_)
        w->io().post([wp = w.get(), name = it->first] { wp->drop_listener(name); });
      {
        std::lock_guard lock{addresses_mu_};
        outbound_addresses_.erase(it->first);
      }
      it = outbound_ports_.erase(it);
    }
    for (const auto& name : names) {
      if (outbound_ports_.count(name))
        continue;
      auto at = make_address(options_.outbound_host, 0);
      if (!at)
        return;
      std::vector<int> fds;
      std::string error;
      if (!open_listeners(*at, fds, error))
        continue; // retried on the next apply
      outbound_ports_[name] = port_of(at->storage);
      {
        std::lock_guard lock{addresses_mu_};
        outbound_addresses_[name] = render(*at);
      }
      for (std::size_t i = 0; i < workers_.size(); ++i)
        workers_[i]->adopt_listener(fds[i], name);
    }
  }

  std::string inbound_address() const override { return inbound_address_; }

  std::map<std::string, std::string> outbound_addresses() const override {
    std::lock_guard lock{addresses_mu_};
    return outbound_addresses_;
  }

  void ban_peer(const std::string& node) override {
    for (auto& w : workers_)
      w->io().post([wp = w.get(), node] { wp->ban(node); });
  }
  void unban_peer(const std::string& node) override {
    for (auto& w : workers_)
      w->io().post([wp = w.get(), node] { wp->unban(node); });
  }

  void set_draining(bool draining) override {
    draining_.store(draining, std::memory_order_relaxed);
    if (draining) // peers' HTTP/2 connections: GOAWAY, so that they open no new streams here
      for (auto& w : workers_)
        w->io().post([wp = w.get()] { wp->go_away_inbound(); });
  }
  [[nodiscard]] bool is_draining() const { return draining_.load(std::memory_order_relaxed); }
  [[nodiscard]] bool draining() const override { return is_draining(); }
  /// What a new tunnel splices with: null when splice is off.
  [[nodiscard]] std::shared_ptr<tunnel::splice_slots> splice_slots() const {
    return options_.splice ? splice_slots_ : nullptr;
  }

  std::size_t in_flight() const override {
    std::int64_t sum = 0;
    for (const auto& w : workers_)
      sum += w->counters().in_flight.load(std::memory_order_relaxed);
    return sum > 0 ? static_cast<std::size_t>(sum) : 0;
  }

  dataplane_stats stats() const override {
    dataplane_stats out;
    std::set<std::string> local; // services with an instance on this node
    {
      std::lock_guard lock{config_mu_};
      if (config_ && config_->routes) {
        out.config_generation = config_->routes->generation;
        for (const auto& svc : config_->routes->services)
          for (const auto& inst : svc.instances)
            if (inst.node == options_.self)
              local.insert(svc.name);
      }
    }
    std::map<std::string, service_stats> per, per_inbound;
    std::map<std::string, instance_stats> per_instance;
    auto load = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    // Adds a histogram into (bounds, counts, sum).
    auto add_latency = [&](const auto& buckets, const std::atomic<std::uint64_t>& sum_ns,
                           std::vector<double>& bounds, std::vector<std::uint64_t>& counts,
                           double& sum) {
      if (counts.empty()) {
        bounds.assign(latency_bounds.begin(), latency_bounds.end());
        bounds.push_back(std::numeric_limits<double>::infinity());
        counts.assign(latency_bounds.size() + 1, 0);
      }
      for (std::size_t i = 0; i < buckets.size(); ++i)
        counts[i] += load(buckets[i]);
      sum += static_cast<double>(load(sum_ns)) / 1e9;
    };
    for (const auto& w : workers_) {
      auto& c = w->counters();
      out.outbound_connections += load(c.outbound_connections);
      out.inbound_connections += load(c.inbound_connections);
      out.inbound_refused_tls += load(c.inbound_refused_tls);
      out.inbound_refused_authz += load(c.inbound_refused_authz);
      out.upstream_connects += load(c.upstream_connects);
      out.upstream_reused += load(c.upstream_reused);
      out.upstream_connect_failures += load(c.upstream_connect_failures);
      out.upstream_idle += load(c.idle_pooled);
      out.closed_by_ban += load(c.closed_by_ban);
      out.connections_refused_fds += load(c.connections_refused_fds);
      out.inbound_refused_source += load(c.inbound_refused_source);
      out.inbound_refused_peer += load(c.inbound_refused_peer);
      out.inbound_refused_failing += load(c.inbound_refused_failing);
      out.inbound_refused_share += load(c.inbound_refused_share);
      for (std::size_t i = 0; i < generated_slots; ++i)
        if (auto n = load(c.generated[i]))
          out.generated[std::string{name(static_cast<http_error>(i))}] += n;
      w->visit_services([&](const std::string& svc, bool inbound, const service_counters& sc) {
        auto& s = (inbound ? per_inbound : per)[svc];
        s.service = svc;
        s.requests += load(sc.requests);
        s.responses_2xx += load(sc.r2);
        s.responses_3xx += load(sc.r3);
        s.responses_4xx += load(sc.r4);
        s.responses_5xx += load(sc.r5);
        s.grpc_failures += load(sc.grpc_failures);
        s.retries += load(sc.retries);
        s.retries_refused += load(sc.retries_refused);
        s.timeouts += load(sc.timeouts);
        s.breaker_refused += load(sc.breaker_refused);
        s.ejections += load(sc.ejections);
        s.bytes_in += load(sc.bytes_in);
        s.bytes_out += load(sc.bytes_out);
        add_latency(sc.latency, sc.latency_sum_ns, s.latency_bounds, s.latency_counts,
                    s.latency_sum_seconds);
      });
      w->visit_instances([&](const instance_counters& ic) {
        auto& s = per_instance[ic.service + '\0' + ic.instance + '\0' + ic.node];
        s.service = ic.service;
        s.instance = ic.instance;
        s.node = ic.node;
        s.requests += load(ic.requests);
        s.responses_2xx += load(ic.r2);
        s.responses_3xx += load(ic.r3);
        s.responses_4xx += load(ic.r4);
        s.responses_5xx += load(ic.r5);
        s.grpc_failures += load(ic.grpc_failures);
        s.connect_failures += load(ic.connect_failures);
        s.resets += load(ic.resets);
        s.timeouts += load(ic.timeouts);
        add_latency(ic.latency, ic.latency_sum_ns, s.latency_bounds, s.latency_counts,
                    s.latency_sum_seconds);
      });
    }
    for (auto& [n, s] : per)
      out.services.push_back(std::move(s));
    // Inbound: the services this node has an instance of, and any that served before.
    for (auto& [n, s] : per_inbound)
      if (local.contains(n) || s.requests > 0 || s.responses_4xx > 0 || s.responses_5xx > 0)
        out.inbound_services.push_back(std::move(s));
    for (auto& [k, s] : per_instance)
      out.instances.push_back(std::move(s));
    return out;
  }

  void stop() override {
    {
      std::lock_guard apply_lock{apply_mu_};
      if (stopped_)
        return;
      stopped_ = true;
    }
    for (auto& w : workers_)
      w->stop_and_join();
  }

  net::backend io_backend() const override { return io_backend_; }
  std::string io_note() const override { return io_note_; }

  std::shared_ptr<const dataplane_config> current() const {
    std::lock_guard lock{config_mu_};
    return config_;
  }
  /// Bumped by every apply(): a worker takes the lock of current() only when it moved.
  [[nodiscard]] std::uint64_t config_version() const noexcept {
    return config_version_.load(std::memory_order_acquire);
  }
  const dataplane_options& options() const { return options_; }

private:
  /// One listening socket per worker on `at` (port 0: a free one, the same for all),
  /// `at` updated to the port bound; false (none left open) with `error` on failure.
  bool open_listeners(sock_address& at, std::vector<int>& fds, std::string& error) {
    const bool shared = workers_.size() > 1;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      std::uint16_t port = 0;
      const int fd = open_listener(at, shared, port, error);
      if (fd < 0) {
        for (int f : fds)
          ::close(f);
        fds.clear();
        return false;
      }
      if (i == 0) // the others bind the same port (SO_REUSEPORT)
        set_port(at, port);
      fds.push_back(fd);
    }
    return true;
  }

  dataplane_options options_;
  std::vector<std::unique_ptr<worker>> workers_;
  mutable std::mutex config_mu_;
  std::shared_ptr<const dataplane_config> config_ = std::make_shared<const dataplane_config>();
  std::atomic<std::uint64_t> config_version_{0};
  /// Serialises apply() and stop(); guards outbound_ports_ and stopped_.
  std::mutex apply_mu_;
  std::map<std::string, std::uint16_t> outbound_ports_;
  bool stopped_ = false;
  mutable std::mutex addresses_mu_;
  std::map<std::string, std::string> outbound_addresses_;
  std::string inbound_address_;
  net::backend io_backend_ = net::backend::epoll;
  std::string io_note_;
  std::atomic<bool> draining_{false};
  std::shared_ptr<tunnel::splice_slots> splice_slots_ = std::make_shared<tunnel::splice_slots>();
};

const dataplane_options& worker::options() const { return dp_.options(); }

const std::shared_ptr<const dataplane_config>& worker::config() {
  // Each new request asks: the common case (no apply since) is one atomic load.
  const auto version = dp_.config_version();
  if (config_ && version == config_version_)
    return config_;
  auto cfg = dp_.current();
  config_version_ = version;
  if (cfg != config_) {
    config_ = std::move(cfg);
    rebuild(*config_);
  }
  return config_;
}

void worker::add_targets(service_state& st, const endpoint& ep, const dataplane_config& cfg,
                         bool http2) {
  auto make = [&](std::string address_text, bool via_peer) -> target_ptr {
    auto addr = parse_endpoint(address_text);
    if (!addr)
      return nullptr;
    auto t = std::make_shared<target>();
    t->endpoint_id = ep.id;
    t->index = st.endpoints.size();
    t->node = ep.node;
    t->via_peer = via_peer;
    t->address = *addr;
    t->address_text = std::move(address_text);
    t->pool_key = t->address_text + "|" + st.name + (via_peer ? "|" + ep.id : "");
    t->h2_app = http2 && !via_peer;
    return t;
  };
  auto direct = make(ep.address + ":" + std::to_string(ep.port), false);
  auto peer = cfg.inbound.find(ep.node);
  auto outbound =
      ep.node != options().self && peer != cfg.inbound.end() ? make(peer->second, true) : direct;
  st.direct.push_back(std::move(direct));
  st.outbound.push_back(std::move(outbound));
}

void worker::rebuild(const dataplane_config& cfg) {
  const auto& self = options().self;
  std::unordered_map<std::string, service_ptr> next;
  std::lock_guard counters_lock{counters_mu_}; // (counter maps; stats() reads them)
  ++rebuilds_;
  for (const auto& view : cfg.routes->services) {
    auto it = services_.find(view.name);
    auto st =
        it != services_.end() ? it->second : std::make_shared<service_state>(view.name, options());
    if (!st->counters) {
      st->counters = counters_locked(view.name, false);
      st->inbound_counters = counters_locked(view.name, true);
    }
    if (!view.instances.empty())
      st->protocol = view.instances.front().protocol;
    st->endpoints.clear();
    st->non_local.clear();
    st->unreachable.clear();
    st->instances.clear();
    st->direct.clear();
    st->outbound.clear();
    std::size_t tracked = 0;
    for (const auto& inst : view.instances) {
      // Every instance of the config keeps its counters (an unhealthy one too), up to the cap.
      instance_counters* ic = nullptr;
      if (tracked < max_tracked_instances) {
        ++tracked;
        auto& slot = instance_counters_[view.name + '\0' + inst.node + '\0' + inst.id];
        if (!slot) {
          slot = std::make_unique<instance_counters>();
          slot->service = view.name;
          slot->instance = inst.id;
          slot->node = inst.node;
        }
        slot->seen = rebuilds_;
        ic = slot.get();
      }
      if (!inst.routable())
        continue;
      st->instances.push_back(ic);
      endpoint ep;
      ep.id = inst.node + "/" + inst.id + "/" + inst.address + ":" + std::to_string(inst.port);
      ep.address = inst.address;
      ep.port = inst.port;
      ep.node = inst.node;
      ep.version = inst.version;
      ep.weight = std::max<std::uint32_t>(inst.weight, 1);
      ep.healthy = true;
      add_targets(*st, ep, cfg, inst.protocol == gossip::service_protocol::http2);
      st->endpoints.push_back(std::move(ep));
      st->non_local.push_back(inst.node == self ? 0 : 1);
      st->unreachable.push_back(
          inst.node != self && options().tls && !cfg.inbound.contains(inst.node) ? 1 : 0);
    }
    if (st->resilience != view.policies.resilience || it == services_.end()) {
      st->resilience = view.policies.resilience;
      st->budget = retry_budget{budget_config(st->resilience)};
      st->breaker.reconfigure(breaker_config(options().breaker, st->resilience));
      wake_waiters(*st); // a raised connection cap has room for waiting requests now
      st->outlier.reconfigure(outlier_thresholds(options().outlier, st->resilience));
    }
    st->lb.update(st->endpoints);
    st->outlier.update(st->endpoints);
    st->policy = {};
    for (const auto& r : view.policies.routes)
      st->policy.routes.push_back({r.header, r.value, r.version});
    if (view.policies.split)
      for (const auto& w : *view.policies.split)
        st->policy.split.push_back({w.version, w.weight});
    st->authz = view.policies.authz;
    next.emplace(view.name, std::move(st));
  }
  // A session of a service gone keeps its state: it must not reach dropped counters.
  for (auto& [name, st] : services_)
    if (!next.contains(name))
      st->instances.clear();
  std::erase_if(instance_counters_, [&](const auto& kv) { return kv.second->seen != rebuilds_; });
  services_.swap(next);
  // A peer inbound gone from the config is forgotten: the address may come back as an
  // upgraded node, or another node's.
  std::erase_if(h1_peers_, [&](const auto& kv) {
    return std::none_of(cfg.inbound.begin(), cfg.inbound.end(),
                        [&](const auto& in) { return in.second == kv.first; });
  });
}

void worker::adopt_listener(int fd, std::string service) {
  if (!loop_) {
    ::close(fd);
    return;
  }
  loop_->post([this, fd, service = std::move(service)] {
    if (stopping_) {
      ::close(fd);
      return;
    }
    if (service.empty())
      inbound_ = fd;
    else
      outbound_[service] = fd;
    accept(fd, service);
  });
}

void worker::arm_sweep() {
  auto period = std::clamp(options().idle_timeout / 4, std::chrono::milliseconds{20},
                           std::chrono::milliseconds{1000});
  sweep_->start(period, [this] {
    sweep();
    arm_sweep();
  });
}

void worker::sweep() {
  auto now = io().now();
  std::erase_if(failing_, [&](const auto& kv) { return kv.second <= now; });
  auto limit = options().idle_timeout;
  for (auto it = pool_.begin(); it != pool_.end();) {
    auto& q = it->second;
    while (!q.empty() && now - q.front()->idle_since >= limit) {
      q.pop_front();
      counters_.idle_pooled.fetch_sub(1, std::memory_order_relaxed);
    }
    it = q.empty() ? pool_.erase(it) : std::next(it);
  }
}

/// Whether an idle pooled connection was closed by its upstream (an app closing idle
/// keep-alive connections sooner than idle_timeout), seen without blocking: EOF or an error;
/// for plain HTTP also any unsolicited byte (the stream is out of step). A TLS stream may
/// hold records (session tickets): only EOF and errors count.
bool peer_closed(upstream_conn& c) {
  char byte = 0;
  auto n = ::recv(c.s.conn->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0)
    return errno != EAGAIN && errno != EWOULDBLOCK;
  return n == 0 || !c.s.conn->is_tls();
}

/// A connection given back this recently, for a request that a reset would retry, is taken
/// without peer_closed()'s recv: under load connections come back and go out again within
/// microseconds, and the check cost one system call per request and hop. An app closes
/// idle keep-alive connections after seconds (nginx 75 s, Node 5 s) and a close it
/// announces (`connection: close`) never pools the connection; one that closes without
/// notice costs one request a retry (under the route's policy and budget), and from then
/// on that upstream's connections always get the check (note_reused_failure). A request
/// that is not retried on a reset (POST, a body not buffered) always gets the check.
constexpr auto unchecked_reuse_window = std::chrono::milliseconds{100};

/// Bound on worker::always_checked_ (cleared when reached).
constexpr std::size_t max_checked_keys = 4096;

void worker::note_reused_failure(const std::string& key) {
  if (always_checked_.size() >= max_checked_keys)
    always_checked_.clear();
  always_checked_.insert(key);
}

upstream_ptr worker::take_idle(const std::string& key, bool retried_on_reset) {
  auto it = pool_.find(key);
  if (it == pool_.end())
    return nullptr;
  if (retried_on_reset && always_checked_.contains(key))
    retried_on_reset = false;
  auto now = io().now();
  auto& q = it->second;
  upstream_ptr out;
  while (!q.empty() && !out) {
    auto c = std::move(q.back());
    q.pop_back();
    counters_.idle_pooled.fetch_sub(1, std::memory_order_relaxed);
    const auto idle = now - c->idle_since;
    if (idle < options().idle_timeout && c->s->is_open() && !is_banned(c->node) &&
        ((retried_on_reset && idle < unchecked_reuse_window) || !peer_closed(*c)))
      out = std::move(c);
  }
  if (q.empty())
    pool_.erase(it);
  return out;
}

void worker::give_back(upstream_ptr c) {
  if (!c->s->is_open() || is_banned(c->node))
    return;
  if (c->counted && !c->counted->pending.empty() && hand_to_waiter(c))
    return;
  if (options().max_idle_per_upstream == 0)
    return;
  c->idle_since = io().now();
  auto& q = pool_[c->key];
  if (q.size() >= options().max_idle_per_upstream) {
    q.pop_front();
    counters_.idle_pooled.fetch_sub(1, std::memory_order_relaxed);
  }
  q.push_back(std::move(c));
  counters_.idle_pooled.fetch_add(1, std::memory_order_relaxed);
}

/// A peer's inbound connection slot (worker::admit_peer) that an HTTP/2 connection holds
/// for its whole life, given back when the connection (its last holder) goes.
class peer_slot {
public:
  peer_slot(worker& w, std::string node, std::string source)
      : w_(w), node_(std::move(node)), source_(std::move(source)) {}
  ~peer_slot() { w_.peer_gone(node_, source_); }
  peer_slot(const peer_slot&) = delete;
  peer_slot& operator=(const peer_slot&) = delete;

private:
  worker& w_;
  std::string node_;
  std::string source_;
};

class client_session : public std::enable_shared_from_this<client_session> {
public:
  /// On the accepted socket `fd`, which the session owns from now on.
  client_session(worker& w, int fd, std::string service)
      : w_(w), client_{std::make_shared<connection>(w.io(), fd), nullptr},
        service_name_(std::move(service)), inbound_(service_name_.empty()), cbuf_(io_buffer_bytes),
        parser_(direction::request, w.options().limits), deadline_timer_(w.io()),
        try_timer_(w.io()), pending_timer_(w.io()) {
    link_client();
    take_buffers();
    sockaddr_storage peer{};
    socklen_t size = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) == 0) {
      client_addr_text_ = host_text(peer);
      if (inbound_) { // limit_source, without formatting the address twice
        auto prefix = slash_64(peer);
        source_ = prefix ? std::move(*prefix) : client_addr_text_;
      }
    }
  }
  /// A request stream of an HTTP/2 connection from the peer `peer` (h2_server), for
  /// `service`; `instance`: the one the sender picked (empty: pick here).
  client_session(worker& w, std::shared_ptr<h2_stream> stream, std::string_view service,
                 std::string_view instance, std::shared_ptr<const peer_identity> peer,
                 std::string_view source)
      : w_(w), client_{nullptr, std::move(stream)}, inbound_(true), peer_(std::move(peer)),
        preamble_http_(!client_.h2->is_tunnel()), cbuf_(io_buffer_bytes),
        parser_(direction::request, w.options().limits), deadline_timer_(w.io()),
        try_timer_(w.io()), pending_timer_(w.io()) {
    link_client();
    take_buffers();
    name_strings::assign(service_name_, service);
    name_strings::assign(preamble_instance_, instance);
    if (client_.h2->is_tunnel())
      source_ = source; // the connection's: a tunnel takes a slot of its peer (begin_service)
  }
  /// Tags the constructor for a request stream of an app's HTTP/2 connection.
  struct from_app_t {};
  /// A request stream of an app's HTTP/2 connection to the outbound listener of `service`
  /// (h2_server::make_for_app, decision 0025); `client_address`: the app's.
  client_session(worker& w, from_app_t, std::shared_ptr<h2_stream> stream, std::string_view service,
                 std::string_view client_address)
      : w_(w), client_{nullptr, std::move(stream)}, inbound_(false), cbuf_(io_buffer_bytes),
        parser_(direction::request, w.options().limits), deadline_timer_(w.io()),
        try_timer_(w.io()), pending_timer_(w.io()) {
    link_client();
    take_buffers();
    name_strings::assign(service_name_, service);
    client_addr_text_ = client_address;
  }
  ~client_session() {
    if (unauthenticated_)
      w_.failed_to_authenticate(source_);
    authenticated();
    if (counted_peer_)
      w_.peer_gone(peer_->node, source_);
    unlink_client();
    give_buffers();
    if (counted_in_flight_)
      w_.counters().in_flight.fetch_sub(1, std::memory_order_relaxed);
    client_->close();
  }
  client_session(const client_session&) = delete;
  client_session& operator=(const client_session&) = delete;

  void start() {
    if (inbound_) {
      bump(w_.counters().inbound_connections);
      if (dp().is_draining()) {
        client_->close();
        return;
      }
      if (!w_.may_authenticate(source_)) {
        client_->close(); // this address failed too many handshakes lately: none spent on it
        return;
      }
      if (!w_.admit_unauthenticated(source_)) {
        client_->close(); // this address holds enough connections without a certificate
        return;
      }
      unauthenticated_ = true;
      set_client_deadline(w_.options().head_timeout);
      if (auto& tls = w_.options().tls) {
        std::string err;
        SSL* ssl = tls->new_session(true, "", err);
        if (!ssl || !client_.conn->start_tls(ssl)) {
          bump(w_.counters().inbound_refused_tls);
          client_->close();
          return;
        }
        auto self = shared_from_this();
        client_.conn->handshake(
            true, [self](const std::error_code& ec) { self->on_server_handshake(ec); });
        return;
      }
      read_preamble();
      return;
    }
    bump(w_.counters().outbound_connections);
    begin_service();
  }

  /// Starts serving an HTTP/2 stream (the constructor for streams): its head is there.
  void start_stream() {
    parser_.trust_heads(); // the stream wrote the request head (h2::to_h1_request)
    begin_service();
  }

  /// ban_peer: the connection comes from `node` or is forwarding to it.
  [[nodiscard]] bool involves(const std::string& node) const {
    return (peer_ && peer_->node == node) || (up_ && up_->node == node);
  }
  /// After the thread stopped: drops the tunnel (which refers back to this session).
  void release() { tunnel_.reset(); }
  /// The worker's next session (worker::clients()).
  [[nodiscard]] client_session* next_client() const { return next_client_; }

  void abort() {
    ++attempt_;
    if (tunnel_)
      tunnel_->abort();
    if (up_)
      up_->s->close();
    // A peer's connection goes whole (a banned peer, the data plane stopping); of an app's
    // HTTP/2 connection, this stream alone (its calls to other nodes go on).
    if (client_.h2 && inbound_)
      client_.h2->close_connection();
    client_->close();
    cancel_timers();
  }

private:
  void link_client() {
    auto& head = w_.clients();
    next_client_ = head;
    if (head)
      head->prev_client_ = this;
    head = this;
  }
  /// The buffers of forwarded heads come from the thread's cache (a session is made per
  /// HTTP/2 stream) and go back to it unless a body grew them past a common head's size:
  /// what a peer's large bodies grow is freed, so the cache holds at most 768 x 4 KiB
  /// (three per stream session: cached_streams_per_thread sessions' worth).
  using text_cache = thread_cache<std::string, 3 * cached_streams_per_thread>;
  static constexpr std::size_t max_cached_text_bytes = 4 * 1024;
  void take_buffers() {
    for (auto* text : {&out_, &up_out_, &req_.forwarded_head}) {
      *text = text_cache::take();
      text->clear();
    }
  }
  void give_buffers() {
    for (auto* text : {&out_, &up_out_, &req_.forwarded_head})
      if (text->capacity() <= max_cached_text_bytes)
        text_cache::give(std::move(*text));
    name_strings::give(service_name_);
    name_strings::give(preamble_instance_);
  }
  /// A new request's state, keeping the capacity of its text buffers (one session serves
  /// every request of a keep-alive connection), at most max_cached_text_bytes of body: an
  /// idle connection holds no large buffer.
  void reset_request() {
    auto head = std::move(req_.forwarded_head);
    auto path = std::move(req_.path);
    auto body = std::move(req_.body);
    req_ = {};
    head.clear();
    path.clear();
    body.clear();
    req_.forwarded_head = std::move(head);
    req_.path = std::move(path);
    if (body.capacity() <= max_cached_text_bytes)
      req_.body = std::move(body);
  }
  void unlink_client() {
    if (prev_client_)
      prev_client_->next_client_ = next_client_;
    else
      w_.clients() = next_client_;
    if (next_client_)
      next_client_->prev_client_ = prev_client_;
  }

  dataplane_impl& dp() { return w_.dp(); }
  /// The counters of this session's direction of svc_ (which is set).
  service_counters& sc() const { return inbound_ ? *svc_->inbound_counters : *svc_->counters; }

  // ---------------------------------------------------------------- inbound preamble
  /// The caller showed its certificate (without TLS: its preamble): its address's slot for
  /// connections not yet authenticated is free again.
  void authenticated() {
    if (unauthenticated_) {
      unauthenticated_ = false;
      w_.authenticated(source_);
    }
  }

  void on_server_handshake(const std::error_code& ec) {
    if (ec) {
      bump(w_.counters().inbound_refused_tls);
      close_client();
      return;
    }
    auto id = w_.options().tls->peer_of(client_.conn->session());
    if (!id || w_.is_banned(id->node)) {
      bump(w_.counters().inbound_refused_tls);
      close_client();
      return;
    }
    peer_ = std::make_shared<const peer_identity>(std::move(*id));
    authenticated();
    if (!w_.admit_peer(peer_->node, source_)) {
      close_client(); // this node holds its share of the inbound connections
      return;
    }
    counted_peer_ = true;
    if (chose_h2(client_.conn->session())) {
      start_h2(); // chosen by ALPN: the client preface comes next
      return;
    }
    read_preamble();
  }

  void read_preamble() {
    if (cend_ >= h2_prefix.size() &&
        std::string_view{cbuf_.data(), h2_prefix.size()} == h2_prefix) {
      start_h2();
      return;
    }
    if (cend_ >= wire::length_prefix_size) {
      std::size_t length = wire::read_length(cbuf_.data());
      if (length == 0 || length > max_preamble - wire::length_prefix_size) {
        close_client();
        return;
      }
      std::size_t total = wire::length_prefix_size + length;
      if (cend_ >= total) {
        auto service = parse_preamble({cbuf_.data() + wire::length_prefix_size, length});
        if (!service) {
          close_client();
          return;
        }
        service_name_ = std::move(service->service);
        preamble_http_ = service->http;
        preamble_instance_ = std::move(service->instance);
        cpos_ = total;
        clear_client_deadline();
        authenticated(); // without TLS, the preamble is all a caller shows
        begin_service();
        return;
      }
    }
    auto self = shared_from_this();
    client_->read_some(cbuf_.data() + cend_, max_preamble - cend_,
                       [self](const std::error_code& ec, std::size_t n) {
                         if (ec) {
                           self->close_client();
                           return;
                         }
                         self->cend_ += n;
                         self->read_preamble();
                       });
  }

  /// The start of the HTTP/2 client preface where a preamble's length would be (as a
  /// length, 1.3 GB: never a preamble).
  static constexpr std::string_view h2_prefix = "PRI ";
  static_assert(h2_prefix.size() == wire::length_prefix_size);

  /// The peer speaks HTTP/2 (decision 0022): the connection goes to an h2_server, whose
  /// streams each get a session of their own; this one ends here.
  void start_h2() {
    clear_client_deadline();
    authenticated();
    h2_link::options o;
    o.http = w_.options().limits;
    // As an HTTP/1.1 connection from a peer: idle longer than the peer's pool keeps it.
    o.idle_timeout = 2 * w_.options().idle_timeout;
    auto* w = &w_;
    auto peer = peer_;
    // The connection, not this session (which ends here), holds the peer's slot from now on.
    std::shared_ptr<peer_slot> slot;
    if (counted_peer_) {
      counted_peer_ = false;
      slot = std::make_shared<peer_slot>(w_, peer_->node, source_);
    }
    auto server = h2_server::make(
        std::exchange(client_.conn, nullptr), o, &is_service_name,
        [w, peer, slot, source = source_](std::shared_ptr<h2_stream> stream,
                                          std::string_view service, std::string_view instance) {
          (void)slot; // kept for the connection's life
          auto s =
              make_recycled<client_session>(*w, std::move(stream), service, instance, peer, source);
          s->start_stream();
        });
    w_.adopt_h2(server, peer_ ? peer_->node : std::string{});
    server->start({cbuf_.data(), cend_});
    cancel_timers();
  }

  /// An app speaks HTTP/2 with prior knowledge (a gRPC client; decision 0025): the
  /// connection goes to an h2_server for this listener's service, whose streams each get a
  /// session of their own, as requests; this one ends here. (Only as a connection's first
  /// bytes: a preface after a request is answered as before, GOAWAY HTTP_1_1_REQUIRED.)
  void start_app_h2() {
    clear_client_deadline();
    h2_link::options o;
    o.http = w_.options().limits;
    o.idle_timeout = w_.options().idle_timeout; // as an HTTP/1.1 client's keep-alive
    auto* w = &w_;
    auto server = h2_server::make_for_app(
        std::exchange(client_.conn, nullptr), o, service_name_,
        [w, address = client_addr_text_](std::shared_ptr<h2_stream> stream,
                                         std::string_view service, std::string_view) {
          auto s =
              make_recycled<client_session>(*w, from_app_t{}, std::move(stream), service, address);
          s->start_stream();
        });
    w_.adopt_h2(server, {});
    server->start({cbuf_.data(), cend_});
    cancel_timers();
  }

  // ---------------------------------------------------------------- service dispatch
  void begin_service() {
    cfg_ = w_.config();
    svc_ = w_.service(service_name_);
    if (!svc_) {
      if (inbound_ && preamble_http_)
        next_request(); // each request gets 503 no_upstream (on_request_head)
      else
        close_client();
      return;
    }
    if (inbound_) {
      if (auto why = authz_refusal(svc_->authz, peer_.get())) {
        bump(w_.counters().inbound_refused_authz);
        if (gossip::is_http(svc_->protocol)) {
          w_.count_generated(http_error::forbidden);
          bump(sc().r4);
          out_.clear();
          write_error_response(http_error::forbidden, out_, true, *why);
          write_then_close();
        } else {
          if (client_.h2) // a tunnel: 403, so that the caller neither retries nor ejects
            client_.h2->refuse_tunnel(403);
          close_client();
        }
        return;
      }
    }
    // A stream from a peer carries a request of an HTTP service, or a tunnel to a TCP
    // service (CONNECT); the other way round it is refused (a reset: the sender's attempt
    // fails and goes elsewhere).
    const bool tcp = svc_->protocol == gossip::service_protocol::tcp;
    if (client_.h2 && client_.h2->is_tunnel() != tcp) {
      close_client();
      return;
    }
    if (client_.h2 && tcp && peer_) {
      // A tunnel holds a descriptor here for its life, as a connection of its own did: it
      // takes one of its peer's inbound slots (decision 0024), so that a member's tunnels
      // stay within its share as its connections do.
      if (!w_.admit_peer(peer_->node, source_)) {
        close_client();
        return;
      }
      counted_peer_ = true;
    }
    if (tcp)
      start_tcp();
    else
      next_request();
  }

  // ---------------------------------------------------------------- picking and connecting
  /// Picks an endpoint of the service (version `version` if given; local ones only on the
  /// inbound side) and says how to reach it.
  target_ptr pick(std::optional<std::string_view> version) {
    auto& s = *svc_;
    auto now = w_.io().now();
    auto ejected = s.outlier.ejection_mask(now);
    s.mask.assign(s.endpoints.size(), 0);
    for (std::size_t i = 0; i < s.endpoints.size(); ++i) {
      bool skip = (i < ejected.size() && ejected[i]) || w_.is_banned(s.endpoints[i].node) ||
                  (inbound_ ? s.non_local[i] : s.unreachable[i]);
      s.mask[i] = skip ? 1 : 0;
    }
    if (!inbound_ && !req_.tried.empty()) {
      // A retry goes elsewhere when anything else is left (Envoy's previous-hosts rule).
      auto without = s.mask;
      bool left = false;
      for (std::size_t i = 0; i < s.endpoints.size(); ++i) {
        if (std::find(req_.tried.begin(), req_.tried.end(), s.endpoints[i].id) != req_.tried.end())
          without[i] = 1;
        left = left || without[i] == 0;
      }
      if (left)
        s.mask = std::move(without);
    }
    std::optional<std::size_t> idx;
    if (inbound_ && !preamble_instance_.empty()) {
      // The sender's balancer and split chose this instance: serve it while it is here.
      if (auto i = s.lb.index_of(preamble_instance_); i && *i < s.mask.size() && !s.mask[*i])
        idx = *i;
    }
    if (!idx)
      idx = s.lb.pick(w_.rng(), now, {s.mask, version});
    if (!idx && version) // the chosen version has no endpoint left: any version serves
      idx = s.lb.pick(w_.rng(), now, {s.mask, std::nullopt});
    if (!idx)
      return nullptr;
    return (inbound_ ? s.direct : s.outbound)[*idx];
  }

  /// Connects a new upstream connection to `t`; `k(ok)` with up_ set on success. `counted`:
  /// the caller took a unit of the service's connection cap, which the connection now
  /// holds for its whole life (HTTP; a TCP tunnel's session holds its own).
  void connect(const target& t, std::function<void(bool)> k, bool counted = false) {
    const int fd = w_.new_socket(t.address.family());
    if (fd < 0) { // out of descriptors: a connect failure, reported on the next turn
      w_.io().defer([k = std::move(k)] { k(false); });
      return;
    }
    auto c = std::make_shared<upstream_conn>(
        w_.io(), fd, t.pool_key, t.via_peer ? t.node : std::string{}, w_.options().limits);
    if (counted) {
      c->counted = svc_;
      c->owner = &w_;
    }
    if (t.via_peer)
      c->preamble = make_preamble(service_name_, gossip::is_http(svc_->protocol), t.endpoint_id);
    bump(w_.counters().upstream_connects);
    auto id = attempt_;
    auto self = shared_from_this();
    up_ = c;
    up_pooled_ = false;
    // c lives until the connect ends, as its unit of the connection cap does.
    w_.dial(c->s.conn, t, false, [self, c, id, k = std::move(k)](bool ok) {
      if (id == self->attempt_) // else this attempt was given up (a timeout, say)
        k(ok);
    });
  }

  // ---------------------------------------------------------------- TCP services
  void start_tcp() {
    if (!counted_in_flight_) {
      counted_in_flight_ = true;
      w_.counters().in_flight.fetch_add(1, std::memory_order_relaxed);
    }
    bump(sc().requests);
    started_ = w_.io().now();
    svc_->budget.on_request(started_);
    tcp_attempt();
  }

  void tcp_attempt() {
    auto t = pick(std::nullopt);
    if (!t) {
      close_client();
      return;
    }
    target_ = t;
    if (!acquire(breaker_resource::connections)) {
      close_client();
      return;
    }
    holds_connection_ = true;
    if (t->via_peer && w_.h2_for(t->address_text)) {
      tcp_h2_attempt();
      return;
    }
    auto self = shared_from_this();
    connect(*t, [self](bool ok) { self->on_tcp_connected(ok); });
  }

  /// A tunnel on the worker's HTTP/2 connection to the peer (decision 0024): no handshake
  /// per TCP connection. Connected once the peer answers 200, after connecting to its
  /// instance; any other end before that (a refusal, a reset, connect_timeout) is a connect
  /// failure, and no byte reached any app. A peer that speaks HTTP/1.1 only gets its own
  /// connection with a preamble, as before.
  void tcp_h2_attempt() {
    auto self = shared_from_this();
    auto id = attempt_;
    w_.h2_to(*target_, [self, id](worker::h2_result r, const std::shared_ptr<h2_client>& link) {
      if (id != self->attempt_)
        return;
      if (r == worker::h2_result::http1) {
        self->connect(*self->target_, [self](bool ok) { self->on_tcp_connected(ok); });
        return;
      }
      auto stream = r == worker::h2_result::ok
                        ? link->open_stream(self->service_name_, self->target_->endpoint_id, true)
                        : nullptr;
      if (!stream) {
        self->on_tcp_connected(false);
        return;
      }
      self->up_ =
          make_recycled<upstream_conn>(stream, self->target_->node, self->w_.options().limits);
      self->up_pooled_ = false;
      // The peer connects to its instance within its own connect_timeout and answers; a
      // peer that never answers is given up after ours (the close fails open_tunnel).
      std::weak_ptr<h2_stream> weak = stream;
      self->pending_timer_.start(self->w_.options().connect_timeout, [weak] {
        if (auto s = weak.lock())
          s->close();
      });
      stream->open_tunnel([self, id](const std::error_code& ec, std::size_t) {
        if (id != self->attempt_)
          return;
        self->pending_timer_.cancel();
        if (ec == std::errc::permission_denied) { // the peer's rules refuse this caller
          self->close_client();
          return;
        }
        self->on_tcp_connected(!ec);
      });
    });
  }

  void on_tcp_connected(bool ok) {
    auto& s = *svc_;
    auto now = w_.io().now();
    auto idx = s.lb.index_of(target_->endpoint_id);
    if (!ok) {
      bump(w_.counters().upstream_connect_failures);
      release_connection();
      if (idx && s.outlier.on_result(*idx, attempt_result::connect_failure, now))
        bump(sc().ejections);
      count_attempt(idx, {0, try_end::failure::connect}, std::nullopt);
      up_.reset();
      if (!retries_)
        retries_.emplace(retry_policy_of());
      auto d = retries_->on_failure("CONNECT", attempt_failure::connect_failure, s.budget, w_.rng(),
                                    now);
      if (d.verdict == retry_verdict::retry) {
        bump(sc().retries);
        later(d.delay, [](client_session& cs) { cs.tcp_attempt(); });
      } else {
        if (d.verdict == retry_verdict::budget_exhausted)
          bump(sc().retries_refused);
        close_client();
      }
      return;
    }
    if (idx)
      (void)s.outlier.on_result(*idx, attempt_result::success, now);
    if (client_.h2 && client_.h2->accept_tunnel()) { // a peer's tunnel, gone meanwhile
      close_client();
      return;
    }
    std::string first = std::move(up_->preamble);
    first.append(cbuf_.data() + cpos_, cend_ - cpos_);
    // The client's bytes read before the tunnel (with the preamble on the inbound side):
    // the tunnel does not count what it starts with.
    bump(sc().bytes_in, cend_ - cpos_);
    cpos_ = cend_ = 0;
    auto self = shared_from_this();
    tunnel_ = std::make_shared<tunnel>(
        client_, up_->s, &sc(), [self] { self->on_tunnel_done(); }, dp().splice_slots(),
        w_.options().tunnel_idle_timeout);
    tunnel_->start(first, {});
  }

  void on_tunnel_done() {
    release_connection();
    if (svc_ && svc_->protocol == gossip::service_protocol::tcp) {
      auto d = w_.io().now() - started_;
      record_latency(d);
      if (!inbound_) {
        count_attempt(svc_->lb.index_of(target_->endpoint_id), {0, try_end::failure::none}, d);
        if (w_.options().access_log && w_.rng().unit() < w_.options().access_log_sample)
          write_access_log(nullptr, 0, d);
      }
    }
    auto t = std::move(tunnel_); // breaks the cycle tunnel -> done -> self
    up_.reset();
    if (counted_in_flight_) {
      counted_in_flight_ = false;
      w_.counters().in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    cancel_timers();
    w_.io().defer([t] {}); // the tunnel dies after its handler returned
  }

  void release_connection() {
    if (holds_connection_) {
      holds_connection_ = false;
      release(breaker_resource::connections);
    }
  }

  /// Takes a unit of `r` from svc_'s breaker (a request's `active_requests`, a TCP
  /// connection's `connections`); false when refused, counted in the service's
  /// breaker_refused. From a peer, within that peer's share of the cap (caller_shares):
  /// a member that turned hostile cannot take a local service's whole cap from the other
  /// members (`inbound_refused_share`).
  bool acquire(breaker_resource r) {
    auto& b = svc_->breaker;
    const bool shared = inbound_ && peer_;
    if (shared && !svc_->callers.try_take(peer_->node, b.limit(r), b.in_use(r))) {
      bump(sc().breaker_refused);
      bump(w_.counters().inbound_refused_share);
      return false;
    }
    if (!b.try_acquire(r)) {
      if (shared)
        svc_->callers.give_back(peer_->node);
      bump(sc().breaker_refused);
      return false;
    }
    holds_share_ = shared;
    return true;
  }
  /// Gives back what acquire(r) took.
  void release(breaker_resource r) {
    svc_->breaker.release(r);
    if (holds_share_) {
      holds_share_ = false;
      svc_->callers.give_back(peer_->node);
    }
  }

  retry_policy retry_policy_of() const {
    retry_policy p;
    if (svc_->resilience && svc_->resilience->retries > 0)
      p.max_retries = svc_->resilience->retries;
    return p;
  }

  template <class F> void later(std::chrono::milliseconds delay, F f) {
    auto self = shared_from_this();
    auto id = attempt_;
    try_timer_.start(delay, [self, id, f] {
      if (id == self->attempt_)
        f(*self);
    });
  }

  // ---------------------------------------------------------------- HTTP: requests
  void next_request() {
    // Idle keep-alive wait, then head_timeout once the first byte came.
    reset_request();
    if (cend_ > cpos_ || parser_.messages() == 0)
      set_client_deadline(w_.options().head_timeout);
    else
      // A peer proxy's pooled connection idles here: wait longer than its pool keeps it
      // (idle_timeout), so that the pool, not this side, closes it (no request is ever sent
      // on a connection this side is closing).
      set_client_deadline(inbound_ ? 2 * w_.options().idle_timeout : w_.options().idle_timeout);
    parse_head();
  }

  void parse_head() {
    while (true) {
      parse_result r;
      if (cpos_ == cend_ && client_.h2 && client_.h2->take_head(parser_, r)) {
        // A peer's request head, split as the stream wrote it: not read nor split again.
        if (svc_ && r.status == parse_status::head)
          bump(sc().bytes_in, parser_.head().raw.size());
      } else {
        r = parser_.parse(std::span<const char>{cbuf_.data() + cpos_, cend_ - cpos_});
      }
      cpos_ += r.consumed;
      if (r.status == parse_status::head) {
        clear_client_deadline();
        on_request_head();
        return;
      }
      if (r.status == parse_status::error) {
        if (r.error == http_error::http2_preface && !inbound_ && client_.conn &&
            parser_.messages() == 0) {
          start_app_h2();
          return;
        }
        client_error(r.error);
        return;
      }
      if (r.status != parse_status::need_more) {
        close_client(); // complete/upgrade without a head: cannot happen; be safe
        return;
      }
      if (cpos_ == cend_)
        cpos_ = cend_ = 0;
      if (cend_ == cbuf_.size()) {
        std::memmove(cbuf_.data(), cbuf_.data() + cpos_, cend_ - cpos_);
        cend_ -= cpos_;
        cpos_ = 0;
      }
      if (cend_ > 0 && !head_started_) {
        head_started_ = true;
        set_client_deadline(w_.options().head_timeout);
      }
      read_client([](client_session& s) { s.parse_head(); }, true);
      return;
    }
  }

  /// Reads more client bytes into cbuf_, then `k`. On EOF: parser finish (error) or close.
  template <class K> void read_client(K k, bool between_messages) {
    auto self = shared_from_this();
    client_reading_ = true;
    client_->read_some(cbuf_.data() + cend_, cbuf_.size() - cend_,
                       [self, k, between_messages](const std::error_code& ec, std::size_t n) {
                         self->client_reading_ = false;
                         if (ec) {
                           if (is_end(ec) && between_messages) {
                             auto r = self->parser_.finish();
                             if (r.status == parse_status::error && self->cend_ + n > 0 &&
                                 r.error != http_error::truncated)
                               self->client_error(r.error);
                             else
                               self->close_client();
                             return;
                           }
                           self->close_client();
                           return;
                         }
                         self->cend_ += n;
                         if (self->svc_)
                           bump(self->sc().bytes_in, n);
                         k(*self);
                       });
  }

  void client_error(http_error e) {
    w_.count_generated(e);
    if (svc_)
      bump(status_of(e) >= 500 ? sc().r5 : sc().r4);
    out_.clear();
    write_error_response(e, out_, true);
    write_then_close();
  }

  struct request_state {
    std::string method;
    std::string path;
    /// The head as forwarded on HTTP/1.1 (written when a try goes over HTTP/1.1: to an
    /// HTTP/2 peer the parsed head goes as it is, h2_stream::write_head).
    std::string forwarded_head;
    /// How the head is forwarded (write_forward_head, h2_stream::write_head).
    forward_options forward;
    std::string body;     ///< Buffered raw body (when buffered).
    bool buffered = true; ///< Whole request in the parser's head + body: retryable.
    bool client_keep_alive = true;
    std::uint8_t version_minor = 1; ///< The client's HTTP version: 1.0 or 1.1.
    bool upgrade = false;
    bool sent_to_client = false; ///< Response bytes reached the client: no 5xx any more.
    bool counted = false;
    bool complete = false;     ///< The request parser returned its `complete` step.
    bool reading_body = false; ///< Buffering the body (the client read is pending).
    /// Full duplex: the body is still being streamed while the response is read.
    bool streaming_body = false;
    std::uint16_t status = 0;
    /// A gRPC answer's status (grpc_status_of), when the response was one and it could be
    /// seen.
    std::optional<std::uint16_t> grpc_status;
    /// An app's gRPC call (on its HTTP/2 stream to this outbound listener): the proxy's own
    /// answers go as gRPC statuses (write_grpc_error_response).
    bool grpc_call = false;
    /// The request timeout is the call's own deadline (grpc-timeout): its expiry is
    /// DEADLINE_EXCEEDED.
    bool grpc_own_deadline = false;
    std::optional<http_error> generated;
    std::string version;
    /// Endpoints a failed try of this request went to: a retry picks another if it can.
    std::vector<std::string> tried;
    time_point started{};
    std::optional<request_retries> retries;
    /// Backoff before the retry last granted.
    std::chrono::milliseconds last_delay{0};
  };

  void on_request_head() {
    head_started_ = false;
    const auto& h = parser_.head();
    // req_ was reset when this request's head was awaited (next_request, the only way here).
    req_.started = w_.io().now();
    req_.method.assign(h.method);
    req_.path.assign(h.target);
    req_.client_keep_alive = h.keep_alive;
    req_.version_minor = h.version_minor;
    req_.upgrade = h.upgrade;
    // gRPC needs HTTP/2: only an HTTP/2 stream's request is looked at.
    const auto grpc = client_.h2 ? grpc_info(h) : grpc_request_info{};
    req_.grpc_call = !inbound_ && grpc.grpc;
    req_.counted = true;
    upgrading_ = false;
    counted_in_flight_ = true;
    w_.counters().in_flight.fetch_add(1, std::memory_order_relaxed);
    cfg_ = w_.config(); // a request uses the config current when it started
    svc_ = w_.service(service_name_);
    if (!svc_) {
      finish_with(http_error::no_upstream);
      return;
    }
    bump(sc().requests);
    svc_->budget.on_request(req_.started);
    if (inbound_ && dp().is_draining()) {
      req_.client_keep_alive = false;
      finish_with(http_error::draining);
      return;
    }
    if (inbound_) {
      // Rules are checked per request, under the config of this request: a rule written
      // while a pooled connection stays open applies to its next request.
      if (auto why = authz_refusal(svc_->authz, peer_.get())) {
        bump(w_.counters().inbound_refused_authz);
        req_.client_keep_alive = false; // its body, if any, is not read
        finish_with(http_error::forbidden, *why);
        return;
      }
    }
    auto& fo = req_.forward;
    if (!inbound_)
      fo.client_address = client_addr_text_;
    else
      fo.proto = {};
    // An HTTP/1.0 request keeps its version (the app may then not answer chunked, which a
    // 1.0 client cannot read), but the hop stays open whatever the client wants of its own
    // connection: a pooled connection to a peer is not lost to each 1.0 request.
    fo.keep_alive = h.version_minor == 0;
    // Version choice from the headers (views valid until the next message).
    if (!inbound_ && (!svc_->policy.routes.empty() || !svc_->policy.split.empty())) {
      fields_.clear(); // scratch kept across requests: no allocation in the steady state
      for (const auto& f : h.headers)
        fields_.push_back({f.name, f.value});
      auto choice = choose_version(svc_->policy, fields_, w_.rng());
      if (choice.is_specific())
        req_.version = std::string{choice.version};
    }
    req_.buffered = h.body == body_kind::none ||
                    (h.body == body_kind::content_length && h.content_length <= max_buffered_body);
    // A request that came whole on an app's HTTP/2 stream (a unary gRPC call: its HEADERS
    // and DATA with END_STREAM in one read) is buffered too, chunked as the stream gives
    // it, so that a refused stream or a peer's refusal can send it again elsewhere. One
    // still coming (a streaming call) is streamed: waiting for its end could wait for ever.
    if (!req_.buffered && client_.h2 && h.body == body_kind::chunked)
      if (const auto n = client_.h2->whole_request_bytes(); n && *n <= max_buffered_body)
        req_.buffered = true;
    auto timeout = w_.options().request_timeout;
    const bool policy_timeout = svc_->resilience && svc_->resilience->timeout_ms > 0;
    if (policy_timeout)
      timeout = std::chrono::milliseconds{svc_->resilience->timeout_ms};
    // A gRPC call's own deadline (grpc-timeout): it replaces the default, up to an hour,
    // or shortens the policy's timeout. The instance's node holds the call a little longer
    // than the calling node, which answers the app when the deadline passes
    // (DEADLINE_EXCEEDED).
    if (grpc.timeout) {
      const std::chrono::milliseconds d =
          *grpc.timeout + (inbound_ ? inbound_grpc_grace : std::chrono::milliseconds{0});
      timeout = policy_timeout ? std::min(timeout, d) : std::min(d, max_grpc_deadline);
      req_.grpc_own_deadline = timeout == d;
    }
    set_request_deadline(timeout);
    if (h.expect_continue && h.body != body_kind::none) {
      // The client waits for a 100 before sending its body, and the proxy reads the body
      // (buffered) or streams it before it reads the upstream's answer: answer 100 here
      // (as Envoy does). A 100 from the upstream too is forwarded: clients accept extra 1xx.
      static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
      req_.reading_body = true; // a request timeout now just closes
      auto self = shared_from_this();
      auto cid = attempt_;
      client_->write(continue_line.data(), continue_line.size(),
                     [self, cid](const std::error_code& ec, std::size_t) {
                       if (cid != self->attempt_)
                         return;
                       self->req_.reading_body = false;
                       if (ec)
                         self->close_client();
                       else
                         self->after_request_head();
                     });
      return;
    }
    after_request_head();
  }

  void after_request_head() {
    if (req_.buffered && !req_.complete && parser_.head().body != body_kind::none)
      buffer_body();
    else
      attempt();
  }

  void buffer_body() {
    while (true) {
      auto r = parser_.parse(std::span<const char>{cbuf_.data() + cpos_, cend_ - cpos_});
      cpos_ += r.consumed;
      switch (r.status) {
      case parse_status::body:
        req_.body.append(r.body.data(), r.body.size());
        continue;
      case parse_status::complete:
        req_.complete = true;
        req_.reading_body = false;
        attempt();
        return;
      case parse_status::error:
        clear_request_deadline();
        client_error(r.error);
        return;
      case parse_status::upgrade:
        req_.reading_body = false;
        attempt();
        return;
      default:
        break;
      }
      if (cpos_ == cend_)
        cpos_ = cend_ = 0;
      req_.reading_body = true;
      read_client([](client_session& s) { s.buffer_body(); }, false);
      return;
    }
  }

  // ---------------------------------------------------------------- HTTP: attempts
  void attempt() {
    ++attempt_;
    auto t =
        pick(req_.version.empty() ? std::nullopt : std::optional<std::string_view>{req_.version});
    if (!t) {
      finish_with(http_error::no_upstream);
      return;
    }
    target_ = t;
    if (!acquire(breaker_resource::active_requests)) {
      finish_with(http_error::overloaded);
      return;
    }
    holds_active_ = true;
    if (auto idx = svc_->lb.index_of(target_->endpoint_id))
      svc_->lb.on_start(*idx);
    lb_started_ = true;
    try_started_ = w_.io().now();
    if (svc_->resilience && svc_->resilience->per_try_timeout_ms > 0) {
      auto self = shared_from_this();
      auto id = attempt_;
      try_timer_.start(std::chrono::milliseconds{svc_->resilience->per_try_timeout_ms}, [self, id] {
        if (id == self->attempt_)
          self->on_try_failed(attempt_failure::reset, true);
      });
    }
    acquire_upstream(false);
  }

  /// A connection to target_ for the current attempt: a pooled one; else a new one within
  /// the service's connection cap (closing an idle one of another instance to make room);
  /// else a wait in the service's pending queue, refused with 503 `overloaded` beyond the
  /// pending cap or after connect_timeout. `front`: this request was woken and lost the
  /// free unit to a newer one, so it waits first in line again. To a peer that may speak
  /// HTTP/2, a stream instead, unless `h1` (the peer has just chosen HTTP/1.1).
  void acquire_upstream(bool front, bool h1 = false) {
    if (!h1 && !req_.upgrade && req_.method != "CONNECT" &&
        (target_->via_peer ? w_.h2_for(target_->address_text) : target_->h2_app)) {
      acquire_h2_stream(front);
      return;
    }
    if (auto c = w_.take_idle(target_->pool_key, req_.buffered && is_idempotent(req_.method))) {
      bump(w_.counters().upstream_reused);
      up_ = std::move(c);
      up_pooled_ = true;
      send_request();
      return;
    }
    auto& b = svc_->breaker;
    if (!b.try_acquire(breaker_resource::connections) &&
        !(w_.evict_idle(*svc_) && b.try_acquire(breaker_resource::connections))) {
      if (!w_.wait_for_connection(svc_, weak_from_this(), attempt_, target_->pool_key, front)) {
        bump(sc().breaker_refused);
        end_attempt(std::nullopt);
        finish_with(http_error::overloaded, "pending_requests");
        return;
      }
      auto self = shared_from_this();
      auto id = attempt_;
      pending_timer_.start(w_.options().connect_timeout, [self, id] {
        if (id != self->attempt_)
          return;
        bump(self->sc().timeouts);
        self->end_attempt(std::nullopt);
        self->finish_with(http_error::overloaded, "no connection came free in time");
      });
      return;
    }
    auto self = shared_from_this();
    connect(
        *target_,
        [self](bool ok) {
          if (!ok) {
            bump(self->w_.counters().upstream_connect_failures);
            self->on_try_failed(attempt_failure::connect_failure, false);
            return;
          }
          self->send_request();
        },
        true);
  }

  /// A stream of the worker's HTTP/2 connection to the peer (decision 0022): no pool, no
  /// connection cap (one connection per peer carries every request); the request's
  /// `active_requests` unit is its breaker.
  void acquire_h2_stream(bool front) {
    auto self = shared_from_this();
    auto id = attempt_;
    w_.h2_to(
        *target_, [self, id, front](worker::h2_result r, const std::shared_ptr<h2_client>& link) {
          if (id != self->attempt_)
            return;
          if (r == worker::h2_result::http1) { // the peer speaks HTTP/1.1 only: that way
            self->acquire_upstream(front, true);
            return;
          }
          auto stream = r == worker::h2_result::ok
                            ? link->open_stream(self->service_name_, self->target_->endpoint_id)
                            : nullptr;
          if (!stream) {
            bump(self->w_.counters().upstream_connect_failures);
            self->on_try_failed(attempt_failure::connect_failure, false);
            return;
          }
          self->up_ = make_recycled<upstream_conn>(std::move(stream), self->target_->node,
                                                   self->w_.options().limits);
          self->up_pooled_ = false;
          self->send_request();
        });
  }

public:
  /// The attempt now in progress (a waiter of an older one is stale).
  [[nodiscard]] std::uint64_t current_attempt() const { return attempt_; }
  /// From the pending queue, for `attempt`: `c`, a pooled connection to the target, or
  /// null when a unit of the connection cap came free.
  void on_connection_free(std::uint64_t attempt, upstream_ptr c) {
    if (attempt != attempt_) {
      if (c)
        w_.give_back(std::move(c));
      return;
    }
    pending_timer_.cancel();
    if (!c) {
      acquire_upstream(true);
      return;
    }
    bump(w_.counters().upstream_reused);
    up_ = std::move(c);
    up_pooled_ = false; // handed over as it came back: nothing to check
    send_request();
  }

private:
  /// Inline completions can nest: a write's handler may start the next write at once (the
  /// next pipelined request's, say). Reads never complete inline, so in practice the depth
  /// stays at one or two; past this bound a write's handler is posted, which unwinds the
  /// stack whatever a peer sends.
  static constexpr int max_inline_writes = 8;

  /// Starts `write(how)`, a write that is this call's last step, with its handler run inline
  /// when the socket takes every byte at once, unless max_inline_writes such handlers are on
  /// the stack already (connection::completion).
  template <class Write> void write_last(Write&& write) {
    auto how = inline_writes_ < max_inline_writes ? connection::completion::inline_when_done
                                                  : connection::completion::deferred;
    ++inline_writes_;
    write(how);
    --inline_writes_;
  }

  /// The handler of a write to the upstream in this attempt: a failed write fails the
  /// attempt (as a reset), a done one calls `next(*this)`; a later attempt's start makes it
  /// a no-op.
  template <class Next> auto after_upstream_write(Next next) {
    return
        [self = shared_from_this(), id = attempt_, next](const std::error_code& ec, std::size_t) {
          if (id != self->attempt_)
            return;
          if (ec) {
            self->on_try_failed(self->failure_of(ec), false);
            return;
          }
          next(*self);
        };
  }

  /// How an upstream error ends the attempt: a stream the peer refused (REFUSED_STREAM,
  /// GOAWAY) reached no app, so a request whole in hand goes again as after a refused
  /// connection, whatever its method; anything else is a reset.
  attempt_failure failure_of(const std::error_code& ec) const {
    return ec == refused_stream_error() && req_.buffered ? attempt_failure::connect_failure
                                                         : attempt_failure::reset;
  }

  void send_request() {
    auto& c = *up_;
    c.parser.expect_response_to(req_.method);
    out_.clear(); // gathers the response's first bytes (read_response)
    std::string_view bytes;
    if (c.s.h2) {
      // A stream to a peer takes the head as parsed (the client's parser keeps it until
      // the next request starts), then the body.
      if (auto ec = c.s.h2->write_head(parser_.head(), req_.forward)) {
        on_try_failed(failure_of(ec), false);
        return;
      }
      bytes = req_.body;
    } else {
      if (req_.forwarded_head.empty())
        write_forward_head(parser_.head(), req_.forward, req_.forwarded_head);
      up_out_ = std::move(c.preamble);
      c.preamble.clear();
      up_out_ += req_.forwarded_head;
      up_out_ += req_.body;
      bytes = up_out_;
    }
    if (bytes.empty()) {
      request_sent();
      return;
    }
    write_last([&](connection::completion how) {
      up_->s->write(bytes.data(), bytes.size(),
                    after_upstream_write([](client_session& s) { s.request_sent(); }), how);
    });
  }

  /// The request's head and buffered body are with the upstream: the rest of its body
  /// next, or its response; both at once on an HTTP/2 stream (full_duplex).
  void request_sent() {
    if (req_.buffered) {
      read_response();
      return;
    }
    if (!full_duplex()) {
      stream_body();
      return;
    }
    req_.streaming_body = true;
    const auto id = attempt_;
    stream_body();
    if (id == attempt_ && up_)
      read_response();
  }

  /// Whether a streamed request body and its response move at once: on a stream of an
  /// HTTP/2 connection (an app's, or a peer's) and on a peer's HTTP/1.1 connection, as
  /// gRPC's bidirectional calls need (the server answers each message as it comes). On an
  /// app's HTTP/1.1 connection the response is read once the body has gone, as before (an
  /// early answer there would close a connection the client is still sending on).
  [[nodiscard]] bool full_duplex() const {
    return (client_.h2 != nullptr || inbound_) && !req_.upgrade;
  }

  /// Streams the rest of a large or chunked request body to the upstream.
  void stream_body() {
    while (true) {
      auto r = parser_.parse(std::span<const char>{cbuf_.data() + cpos_, cend_ - cpos_});
      if (r.status == parse_status::body) {
        cpos_ += r.consumed;
        up_->s->write(
            r.body.data(), r.body.size(),
            [self = shared_from_this(), id = attempt_](const std::error_code& ec, std::size_t) {
              if (id != self->attempt_)
                return;
              if (!ec) {
                self->stream_body();
              } else if (self->req_.streaming_body) {
                // Full duplex: the upstream took no more (it answered early and
                // closed, or reset the stream). No more body goes; its answer or
                // its end, read meanwhile, decides how the request ends (the
                // connection, its body cut, is not pooled: streaming_body stays).
              } else {
                self->on_try_failed(self->failure_of(ec), false);
              }
            });
        return;
      }
      cpos_ += r.consumed;
      if (r.status == parse_status::complete || r.status == parse_status::upgrade) {
        req_.complete = req_.complete || r.status == parse_status::complete;
        if (std::exchange(req_.streaming_body, false))
          return; // full duplex: the response is being read already
        read_response();
        return;
      }
      if (r.status == parse_status::error) {
        // The client broke framing mid-body: nothing sensible can follow on either side.
        w_.count_generated(r.error);
        ++attempt_;
        end_attempt(std::nullopt);
        finish_request(false);
        return;
      }
      if (cpos_ == cend_)
        cpos_ = cend_ = 0;
      auto id = attempt_;
      read_client(
          [id](client_session& s) {
            if (id == s.attempt_)
              s.stream_body();
          },
          false);
      return;
    }
  }

  // ---------------------------------------------------------------- HTTP: responses
  void read_response() {
    auto& c = *up_;
    while (true) {
      auto r = c.parser.parse(std::span<const char>{c.buf.data() + c.pos, c.end - c.pos});
      c.pos += r.consumed;
      switch (r.status) {
      case parse_status::head: {
        const auto& h = c.parser.head();
        forward_options fo;
        fo.proto = {};
        bool last = !h.is_interim();
        if (last && h.status == 503 && target_->via_peer && req_.buffered && !req_.sent_to_client &&
            refused_by_peer(h)) {
          // The peer's inbound proxy refused the request without handing it to an app (it
          // drains, or its own table no longer routes to the instance: the caller's table
          // lags behind): as safe to send elsewhere as a refused connection.
          on_try_failed(attempt_failure::connect_failure, false);
          return;
        }
        if (last && h.status >= 500 && should_retry_5xx()) {
          // Discard this answer (and its connection) and try again. (`h` lives in the
          // connection's parser: read it before the connection goes.)
          const auto status = h.status;
          ++attempt_;
          up_->s->close();
          up_.reset();
          end_attempt(attempt_result::http_5xx, {status});
          bump(sc().retries);
          later(req_.last_delay, [](client_session& s) { s.attempt(); });
          return;
        }
        if (last && req_.grpc_call && h.status >= 400 && target_->via_peer &&
            !req_.sent_to_client) {
          if (const auto reason = peer_error(h)) {
            // The instance's node answered the call itself (it could not reach the app, it
            // refused the caller, ...): the app gets that as a gRPC status too. (`h` lives in
            // the connection's parser: read it before the connection goes.)
            const auto status = h.status;
            const std::string why{*reason};
            const std::string detail{error_detail_of(h)};
            ++attempt_;
            up_->s->close();
            up_.reset();
            end_attempt(status >= 500 ? attempt_result::http_5xx : attempt_result::success,
                        {status});
            finish_with_peer_error(status, why, detail);
            return;
          }
        }
        // HTTP/1.1 downstream: the status line says 1.1 and an until-close body (an
        // HTTP/1.0 app's usual answer) is sent chunked, so the client's connection, a
        // pooled one between proxies, stays open. HTTP/1.0 downstream: keep-alive only
        // when the client asked for it and the body has a length.
        fo.as_http11 = req_.version_minor == 1;
        rechunk_ = false;
        if (last) {
          req_.status = h.status;
          if (h.body == body_kind::until_close && !h.upgrade) {
            if (req_.version_minor == 1)
              rechunk_ = fo.chunked = true;
            else
              req_.client_keep_alive = false;
          }
          if (!req_.client_keep_alive || (inbound_ && dp().is_draining()))
            fo.close = !h.upgrade;
          else
            fo.keep_alive = req_.version_minor == 0;
        }
        if (client_.h2) {
          // A stream from a peer takes the head as parsed; the body follows (decision 0022).
          req_.sent_to_client = true;
          bump(sc().bytes_out, h.raw.size());
          if (client_.h2->write_head(h, fo)) {
            abort_request();
            return;
          }
        } else {
          // Heads (and the body bytes already read behind them) are gathered in out_ and
          // written at once: one write for a small response.
          write_forward_head(h, fo, out_);
        }
        if (last && h.upgrade && req_.upgrade) {
          upgrading_ = true;
        }
        continue;
      }
      case parse_status::body:
        if (rechunk_) {
          append_chunk(out_, r.body);
          continue;
        }
        if (!out_.empty()) {
          out_.append(r.body.data(), r.body.size());
          continue;
        }
        write_client(std::string_view{r.body.data(), r.body.size()}, after_write::read);
        return;
      case parse_status::complete:
        if (upgrading_)
          continue; // the upgrade step follows
        if (c.parser.head().is_interim())
          continue;
        if (!out_.empty())
          write_client(out_, after_write::complete);
        else
          on_response_complete();
        return;
      case parse_status::upgrade:
        if (upgrading_) {
          if (!out_.empty())
            write_client(out_, after_write::tunnel);
          else
            start_upgrade_tunnel();
          return;
        }
        c.parser.resume_after_upgrade();
        continue;
      case parse_status::error:
        if (!req_.sent_to_client) {
          ++attempt_;
          end_attempt(attempt_result::http_5xx);
          finish_with(http_error::upstream_malformed);
        } else {
          abort_request();
        }
        return;
      case parse_status::need_more:
        break;
      }
      if (!out_.empty()) {
        write_client(out_, after_write::read); // then parse (need_more) and read
        return;
      }
      if (c.pos == c.end)
        c.pos = c.end = 0;
      read_upstream();
      return;
    }
  }

  void read_upstream() {
    auto& c = *up_;
    auto self = shared_from_this();
    auto id = attempt_;
    c.s->read_some(c.buf.data() + c.end, c.buf.size() - c.end,
                   [self, id](const std::error_code& ec, std::size_t n) {
                     if (id != self->attempt_)
                       return;
                     auto& cc = *self->up_;
                     if (ec) {
                       if (is_end(ec)) {
                         auto r = cc.parser.finish();
                         if (r.status == parse_status::complete) {
                           cc.s->close(); // until-close body: not reusable
                           if (self->rechunk_) {
                             self->out_.append(last_chunk);
                             self->write_client(self->out_, after_write::complete);
                             return;
                           }
                           self->on_response_complete();
                           return;
                         }
                       }
                       if (self->req_.sent_to_client)
                         self->abort_request();
                       else
                         self->on_try_failed(self->failure_of(ec), false);
                       return;
                     }
                     cc.end += n;
                     self->read_response();
                   });
  }

  /// What follows a write of response bytes to the client.
  enum class after_write : std::uint8_t { read, complete, tunnel };

  /// Writes response bytes (out_, or a view into the upstream's buffer) to the client.
  void write_client(std::string_view bytes, after_write next) {
    req_.sent_to_client = true;
    bump(sc().bytes_out, bytes.size());
    auto self = shared_from_this();
    auto id = attempt_;
    bool owned = bytes.data() == out_.data();
    // `bytes` may lie in the upstream's buffer: the handler keeps the upstream alive.
    write_last([&](connection::completion how) {
      client_->write(
          bytes.data(), bytes.size(),
          [self, id, next, owned, keep = up_](const std::error_code& ec, std::size_t) {
            if (id != self->attempt_)
              return;
            if (ec) {
              self->abort_request();
              return;
            }
            if (owned)
              self->out_.clear();
            switch (next) {
            case after_write::read:
              self->read_response();
              break;
            case after_write::complete:
              self->on_response_complete();
              break;
            case after_write::tunnel:
              self->start_upgrade_tunnel();
              break;
            }
          },
          how);
    });
  }

  void start_upgrade_tunnel() {
    auto& c = *up_;
    ++attempt_;
    end_attempt(attempt_result::success, {req_.status});
    record_request_end();
    std::string to_up{cbuf_.data() + cpos_, cend_ - cpos_};
    std::string to_client{c.buf.data() + c.pos, c.end - c.pos};
    cpos_ = cend_ = 0;
    clear_request_deadline();
    auto self = shared_from_this();
    tunnel_ = std::make_shared<tunnel>(
        client_, c.s, nullptr, [self] { self->on_tunnel_done(); }, dp().splice_slots(),
        w_.options().tunnel_idle_timeout);
    counted_in_flight_ = true;
    w_.counters().in_flight.fetch_add(1, std::memory_order_relaxed);
    tunnel_->start(to_up, to_client);
  }

  void on_response_complete() {
    ++attempt_;
    // An HTTP/1.1 app makes no gRPC call: its answers are not looked at for one.
    if (up_ && (inbound_ || client_.h2))
      req_.grpc_status = grpc_status_of(*up_);
    const bool grpc_failure = req_.grpc_status && *req_.grpc_status != 0;
    // A gRPC status that says the server failed counts as a 5xx for outlier ejection.
    const bool server_failure =
        req_.status >= 500 || (req_.grpc_status && is_grpc_server_failure(*req_.grpc_status));
    end_attempt(server_failure ? attempt_result::http_5xx : attempt_result::success,
                {req_.status, try_end::failure::none, grpc_failure});
    auto c = std::move(up_);
    // Not with a request body half sent (full duplex: the answer came first).
    if (c && c->parser.head().keep_alive && !c->parser.head().upgrade && c->s->is_open() &&
        c->pos == c->end && !req_.streaming_body)
      w_.give_back(std::move(c));
    finish_request(req_.client_keep_alive && !(inbound_ && dp().is_draining()));
  }

  /// The status of the gRPC call `c` answered (decision 0025): when the response is one
  /// (content-type application/grpc, or application/grpc+proto and the like), its
  /// grpc-status from a trailers-only head, else from the trailers an HTTP/2 stream saw or,
  /// over an HTTP/1.1 hop between nodes, from the trailer section of the chunked body; a
  /// gRPC answer that ended without any counts as INTERNAL (13), a failed call. Nothing
  /// for another response, or for one whose body could carry no trailers (not chunked).
  static std::optional<std::uint16_t> grpc_status_of(const upstream_conn& c) {
    const auto& h = c.parser.head();
    const auto* type = h.find("content-type");
    if (type == nullptr || !h2::is_grpc_content_type(type->value))
      return std::nullopt;
    if (const auto* f = h.find("grpc-status"))
      return text::grpc_status_number(f->value);
    if (c.s.h2)
      return c.s.h2->grpc_status().value_or(13);
    if (h.body != body_kind::chunked)
      return std::nullopt;
    return c.parser.trailer_grpc_status().value_or(13);
  }

  /// What a request says of gRPC: whether its content-type is gRPC's, and then the
  /// deadline it carries (`grpc-timeout`; nullopt when absent or unreadable). One pass over
  /// the fields (both names have 12 bytes).
  struct grpc_request_info {
    bool grpc = false;
    std::optional<std::chrono::milliseconds> timeout;
  };
  static grpc_request_info grpc_info(const message_head& h) {
    const header* type = nullptr;
    const header* deadline = nullptr;
    for (const auto& f : h.headers) {
      if (f.name.size() != 12)
        continue;
      if (text::iequals(f.name, "content-type"))
        type = type != nullptr ? type : &f;
      else if (text::iequals(f.name, "grpc-timeout"))
        deadline = deadline != nullptr ? deadline : &f;
    }
    grpc_request_info out;
    out.grpc = type != nullptr && h2::is_grpc_content_type(type->value);
    if (out.grpc && deadline != nullptr)
      out.timeout = h2::grpc_timeout_value(deadline->value);
    return out;
  }

  /// gRPC statuses that say the server failed, not the call: UNKNOWN (2),
  /// DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE (14), DATA_LOSS
  /// (15), and codes gRPC does not define (above 16): the ones Envoy's grpcToHttpStatus
  /// maps to a 5xx. NOT_FOUND, INVALID_ARGUMENT and the like are the caller's business.
  static bool is_grpc_server_failure(std::uint16_t status) {
    return status == 2 || status == 4 || (status >= 12 && status <= 15) || status > 16;
  }

  /// Ends the current attempt's bookkeeping (balancer, breaker, outlier, the instance's
  /// counters: `how` it ended).
  void end_attempt(std::optional<attempt_result> result, try_end how = {}) {
    try_timer_.cancel();
    if (!svc_)
      return;
    auto now = w_.io().now();
    auto idx = svc_->lb.index_of(target_->endpoint_id);
    if (lb_started_ && idx)
      svc_->lb.on_finish(*idx, now - try_started_, now);
    if (lb_started_)
      count_attempt(idx, how, now - try_started_);
    lb_started_ = false;
    if (holds_active_) {
      holds_active_ = false;
      release(breaker_resource::active_requests);
    }
    if (result && idx && svc_->outlier.on_result(*idx, *result, now))
      bump(sc().ejections);
  }

  /// Counts an outbound attempt that ended on the instance at `idx` of svc_->endpoints
  /// (status 0: `how.why` no response came), its time `d` if known.
  void count_attempt(std::optional<std::size_t> idx, try_end how, std::optional<duration> d) {
    if (inbound_ || !idx || *idx >= svc_->instances.size() || !svc_->instances[*idx])
      return;
    auto& c = *svc_->instances[*idx];
    bump(c.requests);
    if (how.status != 0)
      count_status(c, how.status);
    if (how.grpc_failure)
      bump(c.grpc_failures);
    else if (how.why == try_end::failure::connect)
      bump(c.connect_failures);
    else if (how.why == try_end::failure::timeout)
      bump(c.timeouts);
    else if (how.why == try_end::failure::reset)
      bump(c.resets);
    if (d)
      observe(c.latency, c.latency_sum_ns, *d);
  }

  /// The reason a peer proxy gave for an answer it made itself (its x-starling-error), if
  /// `h` is one.
  static std::optional<std::string_view> peer_error(const message_head& h) {
    if (const auto* f = h.find("x-starling-error"))
      return f->value;
    return std::nullopt;
  }

  /// True when `h` is a peer proxy's own 503 for a request no app saw
  /// (x-starling-error: draining or no_upstream).
  static bool refused_by_peer(const message_head& h) {
    static constexpr std::string_view name = "x-starling-error";
    for (const auto& f : h.headers)
      if (f.name.size() == name.size() && (f.value == "draining" || f.value == "no_upstream") &&
          std::equal(f.name.begin(), f.name.end(), name.begin(), [](char a, char b) {
            return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
          }))
        return true;
    return false;
  }

  /// A 5xx answer is retried (before any byte of it reaches the client) only when the
  /// service's resilience policy asks for retries, the request is idempotent and whole in
  /// hand, and the request's retries and the budget allow one. Consumes the retry.
  bool should_retry_5xx() {
    if (!svc_->resilience || svc_->resilience->retries == 0 || !req_.buffered ||
        req_.sent_to_client)
      return false;
    if (!req_.retries)
      req_.retries.emplace(retry_policy_of());
    auto d = req_.retries->on_failure(req_.method, attempt_failure::http_5xx, svc_->budget,
                                      w_.rng(), w_.io().now());
    if (d.verdict == retry_verdict::budget_exhausted)
      bump(sc().retries_refused);
    req_.last_delay = d.delay;
    return d.verdict == retry_verdict::retry;
  }

  void on_try_failed(attempt_failure failure, bool per_try_timeout) {
    ++attempt_;
    if (!target_->endpoint_id.empty() && req_.tried.size() < 8)
      req_.tried.push_back(target_->endpoint_id);
    if (up_ && up_pooled_ && failure == attempt_failure::reset && !per_try_timeout)
      w_.note_reused_failure(target_->pool_key);
    if (up_)
      up_->s->close();
    up_.reset();
    up_pooled_ = false;
    const bool connect = failure == attempt_failure::connect_failure;
    end_attempt(connect ? std::optional{attempt_result::connect_failure} : std::nullopt,
                {0, connect           ? try_end::failure::connect
                    : per_try_timeout ? try_end::failure::timeout
                                      : try_end::failure::reset});
    if (per_try_timeout)
      bump(sc().timeouts);
    bool can = failure == attempt_failure::connect_failure || req_.buffered;
    if (can) {
      if (!req_.retries)
        req_.retries.emplace(retry_policy_of());
      auto d =
          req_.retries->on_failure(req_.method, failure, svc_->budget, w_.rng(), w_.io().now());
      if (d.verdict == retry_verdict::retry) {
        bump(sc().retries);
        later(d.delay, [](client_session& s) { s.attempt(); });
        return;
      }
      if (d.verdict == retry_verdict::budget_exhausted)
        bump(sc().retries_refused);
    }
    finish_with(per_try_timeout                               ? http_error::upstream_timeout
                : failure == attempt_failure::connect_failure ? http_error::upstream_connect
                                                              : http_error::upstream_reset);
  }

  void on_request_timeout() {
    if (req_.reading_body) { // the client is slow to send its body: nothing to answer
      if (svc_)
        bump(sc().timeouts);
      close_client();
      return;
    }
    ++attempt_;
    if (up_)
      up_->s->close();
    up_.reset();
    end_attempt(std::nullopt, {0, try_end::failure::timeout});
    if (svc_)
      bump(sc().timeouts);
    if (req_.sent_to_client) {
      abort_request();
      return;
    }
    finish_with(http_error::upstream_timeout);
  }

  /// Answers the current request with a generated response.
  void finish_with(http_error e, std::string_view detail = {}) {
    ++attempt_;
    w_.count_generated(e);
    req_.generated = e;
    req_.status = status_of(e);
    out_.clear();
    bool keep = req_.client_keep_alive && !is_framing_error(e) && e != http_error::draining &&
                !req_.sent_to_client;
    // The request body may still be unread (a streamed body): the connection cannot go on.
    if (!req_.buffered)
      keep = false;
    if (req_.grpc_call && !is_framing_error(e)) {
      // Counted and logged as the HTTP status it stands for, with its gRPC status.
      req_.grpc_status = e == http_error::upstream_timeout && req_.grpc_own_deadline
                             ? std::uint16_t{4} // DEADLINE_EXCEEDED: the call's own deadline
                             : grpc_status_for_http(req_.status);
      write_grpc_error_response(name(e), *req_.grpc_status, out_, detail);
    } else {
      write_error_response(e, out_, !keep, detail);
    }
    send_answer(keep);
  }

  /// Answers an app's gRPC call with what the instance's node answered itself (HTTP
  /// `status`, x-starling-error `reason`, x-starling-error-detail `detail`), as a gRPC
  /// status (decision 0026). Counted and logged as that HTTP status, as the answer passed on
  /// would have been.
  void finish_with_peer_error(std::uint16_t status, std::string_view reason,
                              std::string_view detail) {
    ++attempt_;
    req_.status = status;
    req_.grpc_status = grpc_status_for_http(status);
    out_.clear();
    write_grpc_error_response(reason, *req_.grpc_status, out_, detail);
    send_answer(req_.client_keep_alive && req_.buffered);
  }

  /// Writes out_, the proxy's own answer to the current request; then the next request
  /// (`keep`) or the connection's graceful end.
  void send_answer(bool keep) {
    req_.sent_to_client = true;
    auto self = shared_from_this();
    auto id = attempt_;
    client_->write(out_.data(), out_.size(),
                   [self, id, keep](const std::error_code& ec, std::size_t) {
                     if (id != self->attempt_)
                       return;
                     if (keep || ec) {
                       self->finish_request(keep && !ec);
                       return;
                     }
                     // connection: close was said: end gracefully (write_then_close).
                     self->record_request_end();
                     if (self->up_) {
                       self->up_->s->close();
                       self->up_.reset();
                     }
                     self->linger();
                   });
  }

  void abort_request() {
    ++attempt_;
    if (up_)
      up_->s->close();
    up_.reset();
    end_attempt(std::nullopt);
    finish_request(false);
  }

  void record_latency(duration d) { observe(sc().latency, sc().latency_sum_ns, d); }

  void record_request_end() {
    if (!req_.counted)
      return;
    req_.counted = false;
    clear_request_deadline();
    if (counted_in_flight_) {
      counted_in_flight_ = false;
      w_.counters().in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    if (!svc_)
      return;
    auto st = req_.status;
    count_status(sc(), st);
    // gRPC failures are the HTTP 2xx answers whose gRPC status is not OK (the proxy's own
    // answers count as the HTTP status they stand for).
    if (req_.grpc_status && *req_.grpc_status != 0 && st >= 200 && st < 300)
      bump(sc().grpc_failures);
    auto d = w_.io().now() - req_.started;
    record_latency(d);
    if (!inbound_ && w_.options().access_log && w_.rng().unit() < w_.options().access_log_sample)
      write_access_log(&req_, st, d);
  }

  /// One JSON line to the access log: an HTTP request (`req` set) or a TCP connection.
  void write_access_log(const request_state* req, std::uint16_t status, duration d) {
    std::string line;
    line.reserve(256);
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::array<char, 96> ts{};
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::snprintf(ts.data(), ts.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    line += "{\"time\":\"";
    line += ts.data();
    line += "\",\"service\":\"";
    json_escape(service_name_, line);
    if (req) {
      line += "\",\"method\":\"";
      json_escape(req->method, line);
      line += "\",\"path\":\"";
      json_escape(req->path, line);
      line += "\",\"status\":";
      line += std::to_string(status);
      if (req->grpc_status) {
        line += ",\"grpc_status\":";
        line += std::to_string(*req->grpc_status);
      }
    } else {
      line += "\",\"protocol\":\"tcp\"";
    }
    line += ",\"duration_ms\":";
    std::array<char, 32> dur{};
    std::snprintf(dur.data(), dur.size(), "%.3f",
                  std::chrono::duration<double, std::milli>(d).count());
    line += dur.data();
    line += ",\"upstream_node\":\"";
    json_escape(target_->node, line);
    line += "\"";
    if (req && req->generated) {
      line += ",\"error\":\"";
      line += name(*req->generated);
      line += "\"";
    }
    line += "}";
    w_.options().access_log(line);
  }

  /// The request is over: next one (keep) or close.
  void finish_request(bool keep) {
    record_request_end();
    if (up_) {
      up_->s->close();
      up_.reset();
    }
    if (!keep || !client_->is_open()) {
      close_client();
      return;
    }
    // A request without a body has its `complete` step pending: take it before the next
    // head. Anything else (an unread body) means the connection cannot go on.
    if (!req_.complete) {
      auto r = parser_.parse(std::span<const char>{cbuf_.data() + cpos_, cend_ - cpos_});
      cpos_ += r.consumed;
      if (r.status != parse_status::complete) {
        close_client();
        return;
      }
    }
    if (req_.upgrade)
      parser_.resume_after_upgrade(); // the upstream declined the switch
    next_request();
  }

  // ---------------------------------------------------------------- timers and closing
  // The client's deadline (keep-alive idle, head, linger) and the request's (its timeout)
  // share one timer that moves lazily: setting a deadline later, or clearing it, changes a
  // field only; the timer, when it fires before the earliest deadline, waits again for the
  // rest. Re-arming at every request would leave a cancelled entry in the loop's timer heap
  // each time (under Asio it cost two trips through the I/O loop per request:
  // docs/bench-proxy.md, Run F). The fields are the truth; a stale firing finds nothing due
  // and waits again.
  void set_client_deadline(std::chrono::milliseconds d) {
    client_deadline_ = w_.io().now() + d;
    arm_deadline();
  }
  void clear_client_deadline() { client_deadline_ = time_point::max(); }
  void set_request_deadline(std::chrono::milliseconds d) {
    request_deadline_ = w_.io().now() + d;
    arm_deadline();
  }
  void clear_request_deadline() { request_deadline_ = time_point::max(); }

  /// Arms the timer for the earliest deadline unless it fires by then already.
  void arm_deadline() {
    auto next = std::min(client_deadline_, request_deadline_);
    if (next == time_point::max() || (deadline_armed_ && deadline_armed_at_ <= next))
      return;
    deadline_armed_ = true;
    deadline_armed_at_ = next;
    auto self = shared_from_this();
    deadline_timer_.start_at(next, [self] { self->on_deadline(); }); // replaces an earlier one
  }
  void on_deadline() {
    deadline_armed_ = false;
    auto now = w_.io().now();
    if (client_deadline_ <= now) {
      client_deadline_ = time_point::max();
      close_client();
      return;
    }
    if (request_deadline_ <= now) {
      request_deadline_ = time_point::max();
      on_request_timeout();
    }
    arm_deadline();
  }

  void cancel_timers() {
    clear_client_deadline();
    clear_request_deadline();
    deadline_armed_ = false;
    deadline_timer_.cancel();
    try_timer_.cancel();
    pending_timer_.cancel();
  }

  /// Writes out_ (a generated response with connection: close), then closes gracefully:
  /// closing a socket with unread input sends a reset, which can destroy the response
  /// before the client reads it. So: half-close, discard what the client still sends until
  /// it closes too (or 1 s, head_timeout at most), then close.
  void write_then_close() {
    auto self = shared_from_this();
    ++attempt_;
    client_->write(out_.data(), out_.size(), [self](const std::error_code& ec, std::size_t) {
      if (ec) {
        self->close_client();
        return;
      }
      self->linger();
    });
  }

  /// Half-closes, then discards what the client still sends until it closes too (1 s,
  /// head_timeout at most), then closes.
  void linger() {
    if (client_reading_) { // a read is pending already (a streamed body): no second one
      close_client();
      return;
    }
    ++attempt_;
    client_->shutdown_send();
    set_client_deadline(std::min(w_.options().head_timeout, std::chrono::milliseconds{1000}));
    drain_client();
  }

  void drain_client() {
    auto self = shared_from_this();
    client_->read_some(cbuf_.data(), cbuf_.size(), [self](const std::error_code& ec, std::size_t) {
      if (ec)
        self->close_client();
      else
        self->drain_client();
    });
  }

  void close_client() {
    ++attempt_;
    record_request_end();
    release_connection();
    if (holds_active_) {
      holds_active_ = false;
      release(breaker_resource::active_requests);
    }
    if (up_) {
      up_->s->close();
      up_.reset();
    }
    client_->close();
    cancel_timers();
  }

  worker& w_;
  byte_stream client_;
  std::string service_name_;
  /// Accepted on the inbound listener (from a peer proxy); else on an outbound one.
  bool inbound_;
  std::string client_addr_text_;
  /// What an inbound connection counts under for the limits per source (limit_source).
  std::string source_;
  /// Inbound with TLS: the peer's identity (shared by the streams of its HTTP/2 connection).
  std::shared_ptr<const peer_identity> peer_;
  /// Inbound: the preamble said the service speaks HTTP.
  bool preamble_http_ = false;
  /// Inbound: the instance the sender picked (empty: pick here).
  std::string preamble_instance_;
  /// A read_client() read is pending (a TLS stream allows one read at a time).
  bool client_reading_ = false;
  std::shared_ptr<const dataplane_config> cfg_;
  service_ptr svc_;
  /// Client bytes read, not yet consumed: cbuf_[cpos_, cend_).
  io_buffer cbuf_;
  std::size_t cpos_ = 0, cend_ = 0;
  http1_parser parser_;
  /// The deadlines on deadline_timer_ (arm_deadline); max: none.
  time_point client_deadline_ = time_point::max();
  time_point request_deadline_ = time_point::max();
  net::timer deadline_timer_;
  /// A wait on deadline_timer_ is pending, for deadline_armed_at_.
  bool deadline_armed_ = false;
  time_point deadline_armed_at_{};
  bool head_started_ = false;
  net::timer try_timer_;
  /// A wait in the service's pending queue (acquire_upstream).
  net::timer pending_timer_;
  /// Grows whenever an attempt (upstream operation chain) ends: stale handlers compare.
  std::uint64_t attempt_ = 0;
  request_state req_;
  target_ptr target_ = no_target();
  upstream_ptr up_;
  /// up_ came from the pool (take_idle) for the current attempt.
  bool up_pooled_ = false;
  bool upgrading_ = false;
  /// The response being forwarded arrived until-close and goes out chunked.
  bool rechunk_ = false;
  bool holds_active_ = false;
  bool holds_connection_ = false;
  /// The unit holds_active_ or holds_connection_ stands for counts in peer_'s share of
  /// svc_'s cap (acquire).
  bool holds_share_ = false;
  bool lb_started_ = false;
  bool counted_in_flight_ = false;
  /// Holds one of its source address's slots for connections not yet authenticated
  /// (worker::admit_unauthenticated), given back by authenticated().
  bool unauthenticated_ = false;
  /// Holds one of peer_'s inbound connection slots (worker::admit_peer).
  bool counted_peer_ = false;
  time_point try_started_{};
  time_point started_{};
  std::optional<request_retries> retries_;
  std::shared_ptr<tunnel> tunnel_;
  /// Scratch: the request's headers as the traffic policy reads them.
  std::vector<header_field> fields_;
  /// Bytes being written to the client (generated responses, forwarded heads).
  std::string out_;
  /// Bytes being written to the upstream (preamble, forwarded head, buffered body).
  std::string up_out_;
  /// Handlers of writes completed inline now on the stack (write_how()).
  int inline_writes_ = 0;
  /// Neighbours in the worker's list of sessions.
  client_session* prev_client_ = nullptr;
  client_session* next_client_ = nullptr;
};

bool worker::evict_idle(const service_state& svc) {
  for (auto it = pool_.begin(); it != pool_.end(); ++it) {
    auto& q = it->second;
    for (auto c = q.begin(); c != q.end(); ++c)
      if ((*c)->counted.get() == &svc) {
        q.erase(c); // its destructor gives the unit back
        counters_.idle_pooled.fetch_sub(1, std::memory_order_relaxed);
        if (q.empty())
          pool_.erase(it);
        return true;
      }
  }
  return false;
}

void worker::purge_waiters(service_state& svc) {
  std::erase_if(svc.pending, [&svc](const pending_waiter& w) {
    auto s = w.session.lock();
    if (s && s->current_attempt() == w.attempt)
      return false;
    svc.breaker.release(breaker_resource::pending_requests);
    return true;
  });
}

bool worker::wait_for_connection(const service_ptr& svc, std::weak_ptr<client_session> session,
                                 std::uint64_t attempt, std::string key, bool front) {
  if (svc->breaker.is_open(breaker_resource::pending_requests))
    purge_waiters(*svc); // count live waiters only
  if (!svc->breaker.try_acquire(breaker_resource::pending_requests))
    return false;
  pending_waiter w{std::move(session), attempt, std::move(key)};
  if (front)
    svc->pending.push_front(std::move(w));
  else
    svc->pending.push_back(std::move(w));
  return true;
}

std::shared_ptr<client_session> worker::pop_waiter(service_state& svc, std::uint64_t& attempt,
                                                   const std::string* key) {
  for (auto it = svc.pending.begin(); it != svc.pending.end();) {
    auto s = it->session.lock();
    const bool live = s && s->current_attempt() == it->attempt;
    if (live && key && it->key != *key) {
      ++it;
      continue;
    }
    attempt = it->attempt;
    it = svc.pending.erase(it);
    svc.breaker.release(breaker_resource::pending_requests);
    if (live)
      return s;
  }
  return nullptr;
}

bool worker::hand_to_waiter(upstream_ptr& c) {
  auto& svc = *c->counted;
  std::uint64_t attempt = 0;
  if (auto s = pop_waiter(svc, attempt, &c->key)) {
    loop_->defer(
        [s, attempt, c = std::move(c)]() mutable { s->on_connection_free(attempt, std::move(c)); });
    return true;
  }
  purge_waiters(svc);
  // Waiters for other instances, and no room for their connections: this one closes (its
  // destructor wakes the oldest of them).
  return !svc.pending.empty() && svc.breaker.is_open(breaker_resource::connections);
}

void worker::connection_released(const service_ptr& svc) {
  if (!stopping_)
    wake_waiters(*svc);
}

void worker::wake_waiters(service_state& svc) {
  const auto& b = svc.breaker;
  const auto cap = b.limit(breaker_resource::connections);
  const auto used = b.in_use(breaker_resource::connections);
  std::uint64_t attempt = 0;
  for (auto room = used < cap ? cap - used : 0; room > 0 && !svc.pending.empty(); --room)
    if (auto s = pop_waiter(svc, attempt))
      loop_->defer([s, attempt] { s->on_connection_free(attempt, nullptr); });
}

/// A failed accept other than a connection that went away before it was taken (out of
/// descriptors, say) is tried again after this: the listener stays readable, and trying at
/// once would spin the thread.
constexpr auto accept_retry_delay = std::chrono::milliseconds{100};

void worker::accept(int fd, const std::string& service) {
  loop_->accept(fd, [this, fd, service](int r) {
    if (r == -ECANCELED || r == -EBUSY)
      return; // the listener closed (or is another's, whose accept is pending)
    if (!listens(fd, service)) {
      // Closed after this accept completed, in the same turn (a removed service, the
      // stop): the connection it took goes too, or its client would wait for ever.
      if (r >= 0)
        ::close(r);
      return;
    }
    if (r >= 0 && !below_ceiling(r)) {
      ::close(r); // at the ceiling: the control plane keeps its descriptors
    } else if (r >= 0) {
      tune_socket(r, options().keepalive);
      auto s = std::make_shared<client_session>(*this, r, service);
      s->start();
    } else if (r != -ECONNABORTED && r != -EINTR && r != -EAGAIN) {
      // By then the listener may have closed and its number gone to another listener:
      // listens() asks again.
      loop_->after(accept_retry_delay, [this, fd, service] {
        if (listens(fd, service))
          accept(fd, service);
      });
      return;
    }
    accept(fd, service);
  });
}

void worker::close_listeners() {
  if (inbound_ >= 0)
    loop_->close(inbound_);
  inbound_ = -1;
  for (auto& [name, fd] : outbound_)
    loop_->close(fd);
  outbound_.clear();
}

void worker::ban(const std::string& node) {
  banned_.insert(node);
  for (auto it = pool_.begin(); it != pool_.end();) {
    auto& q = it->second;
    for (auto qi = q.begin(); qi != q.end();) {
      if ((*qi)->node == node) {
        qi = q.erase(qi);
        counters_.idle_pooled.fetch_sub(1, std::memory_order_relaxed);
        counters_.closed_by_ban.fetch_add(1, std::memory_order_relaxed);
      } else {
        ++qi;
      }
    }
    it = q.empty() ? pool_.erase(it) : std::next(it);
  }
  for (auto& [weak, from] : h2_links_)
    if (from == node)
      if (auto s = weak.lock(); s && s->is_open()) {
        counters_.closed_by_ban.fetch_add(1, std::memory_order_relaxed);
        s->close();
      }
  std::vector<std::shared_ptr<client_session>> victims;
  for (auto* c = clients_; c != nullptr; c = c->next_client())
    if (c->involves(node))
      if (auto sp = c->weak_from_this().lock())
        victims.push_back(std::move(sp));
  counters_.closed_by_ban.fetch_add(victims.size(), std::memory_order_relaxed);
  for (auto& v : victims)
    v->abort();
}

void worker::h2_to(const target& t, h2_ready k) {
  // A peer's inbound carries every service; an app's connection its service's requests.
  const auto& key = t.via_peer ? t.address_text : t.pool_key;
  if (auto it = h2_peers_.find(key); it != h2_peers_.end()) {
    if (it->second->usable()) {
      bump(counters_.upstream_reused);
      k(h2_result::ok, it->second);
      return;
    }
    h2_peers_.erase(it); // full, going away or closed: its streams finish, new ones go anew
  }
  auto& waiting = h2_connecting_[key];
  waiting.push_back(std::move(k));
  if (waiting.size() > 1)
    return; // a connection is being made
  const int fd = new_socket(t.address.family());
  auto conn = fd >= 0 ? std::make_shared<connection>(*loop_, fd) : nullptr;
  // Ends the wait: the connection (null on failure) to every request that asked.
  auto finish = [this, key](h2_result r, std::shared_ptr<h2_client> link) {
    auto node = h2_connecting_.extract(key);
    if (r == h2_result::ok) {
      bump(counters_.upstream_connects);
      h2_peers_[key] = link;
      h1_peers_.erase(key); // upgraded since it was last asked
    }
    if (r == h2_result::http1)
      h1_peers_.insert_or_assign(key, clock::now() + options().h1_peer_recheck);
    if (node.empty())
      return;
    for (auto& w : node.mapped())
      w(r, link);
  };
  if (!conn) { // out of descriptors: a connect failure, reported on the next turn
    loop_->defer([finish] { finish(h2_result::failed, nullptr); });
    return;
  }
  // The link, once made: started, known to ban() and close_all().
  auto made = [this, conn, node = t.node, to_app = !t.via_peer, finish] {
    h2_link::options o;
    o.http = options().limits;
    o.idle_timeout = options().idle_timeout; // as the pool's idle connections
    auto link = h2_client::make(conn, o, to_app);
    adopt_h2(link, to_app ? std::string{} : node); // ban(node) closes a peer's, not an app's
    link->start();
    finish(h2_result::ok, link);
  };
  dial(conn, t, true, [conn, finish, made](bool ok) {
    if (!ok)
      finish(h2_result::failed, nullptr);
    else if (conn->session() != nullptr && !chose_h2(conn->session())) {
      conn->close(); // a peer without HTTP/2: its requests go the HTTP/1.1 way
      finish(h2_result::http1, nullptr);
    } else {
      made(); // h2 by ALPN, or by prior knowledge without TLS between nodes
    }
  });
}

void worker::dial(const std::shared_ptr<connection>& conn, const target& t, bool offer_h2,
                  std::function<void(bool)> done) {
  const auto timer = loop_->after(options().connect_timeout, [conn] { conn->close(); });
  conn->connect(t.address.get(), t.address.size,
                [this, conn, timer, via = t.via_peer, node = t.node, offer_h2,
                 done = std::move(done)](const std::error_code& ec) mutable {
                  const auto end = [&](bool ok) {
                    loop_->cancel(timer);
                    done(ok);
                  };
                  if (ec)
                    return end(false);
                  tune_socket(conn->fd(), options().keepalive);
                  auto& tls = options().tls;
                  if (!via || !tls)
                    return end(true);
                  std::string err;
                  SSL* ssl = tls->new_session(false, node, err);
                  static constexpr unsigned char alpn[] = {2, 'h', '2'};
                  if (ssl && offer_h2 && SSL_set_alpn_protos(ssl, alpn, sizeof alpn) != 0) {
                    SSL_free(ssl);
                    ssl = nullptr;
                  }
                  if (!ssl || !conn->start_tls(ssl))
                    return end(false);
                  conn->handshake(false, [this, conn, timer,
                                          done = std::move(done)](const std::error_code& hec) {
                    loop_->cancel(timer);
                    done(!hec);
                  });
                });
}

void worker::release_cycles() {
  std::vector<std::shared_ptr<client_session>> all;
  for (auto* c = clients_; c != nullptr; c = c->next_client())
    if (auto sp = c->weak_from_this().lock())
      all.push_back(std::move(sp));
  for (auto& c : all)
    c->release();
}

void worker::close_all() {
  sweep_->cancel();
  close_listeners();
  pool_.clear();
  counters_.idle_pooled.store(0, std::memory_order_relaxed);
  for (auto& [weak, from] : h2_links_)
    if (auto s = weak.lock())
      s->close();
  h2_links_.clear();
  h2_peers_.clear();
  std::vector<std::shared_ptr<client_session>> all;
  for (auto* c = clients_; c != nullptr; c = c->next_client())
    if (auto sp = c->weak_from_this().lock())
      all.push_back(std::move(sp));
  for (auto& c : all)
    c->abort();
  // The requests waiting for a peer connection being made: the dial's completion will
  // never run now, and they must not outlive the loop (worker::loop_ goes first).
  h2_connecting_.clear();
}

} // namespace

std::string limit_source(const sockaddr_storage& address) {
  auto prefix = slash_64(address);
  return prefix ? std::move(*prefix) : host_text(address);
}

std::unique_ptr<dataplane> dataplane::start(dataplane_options options, std::string& error) {
  if (options.self.empty()) {
    error = "dataplane: options.self (this node's name) is empty";
    return nullptr;
  }
  if (options.access_log_sample < 0 || options.access_log_sample > 1) {
    error = "dataplane: access_log_sample must be within 0 and 1";
    return nullptr;
  }
  // Bounded so that the limit's times (interval x burst) stay far from overflowing.
  if (options.max_failed_handshakes_per_source > 100'000 ||
      options.failed_handshake_interval < std::chrono::milliseconds::zero() ||
      options.failed_handshake_interval > std::chrono::hours{1}) {
    error = "dataplane: max_failed_handshakes_per_source must be at most 100,000 and "
            "failed_handshake_interval within 0 and 1h";
    return nullptr;
  }
  auto dp = std::make_unique<dataplane_impl>(std::move(options));
  if (!dp->start_workers(error) || !dp->bind_inbound(error))
    return nullptr;
  return dp;
}

} // namespace starling::proxy
