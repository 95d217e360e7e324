// The data plane with mutual TLS between nodes, through the agent's proxy_tls over contexts
// of the run-time test PKI: two dataplanes ("a" and "b") in this process, a's outbound going
// to b's inbound over TLS. Pooled TLS connections are reused (no handshake per request),
// authorization rules match the caller's SPIFFE id, and callers without a valid certificate
// or banned are refused. Real sockets on 127.0.0.1 with port 0; waits are polled with a
// deadline.
#include <csignal>
#include <memory>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "actors/proxy_tls.hpp"
#include "identity/tls.hpp"
#include "tests/support/proxy_support.hpp"
#include "tests/support/test_pki.hpp"
#include "tests/support/tls_support.hpp"

namespace starling::actors {
namespace {

using namespace starling::testing::proxy_support;
using starling::testing::mesh;
using starling::testing::must;
using starling::testing::other_mesh;
using starling::testing::test_pki;

/// The proxy TLS of node `name` of `pki`, trusting `pki` and reading its fixed clock.
std::shared_ptr<proxy::peer_tls> tls_of(const test_pki& pki, std::string_view name) {
  auto ctx = starling::testing::tls_context_of(pki, name);
  return std::make_shared<proxy_tls>(std::make_shared<identity::tls_context_holder>(ctx));
}

/// Nodes "a" and "b" of our mesh with TLS between them.
struct tls_nodes {
  std::unique_ptr<sp::dataplane> a = start_with(tls_of(mesh(), "a"), "a");
  std::unique_ptr<sp::dataplane> b = start_with(tls_of(mesh(), "b"), "b");

  static std::unique_ptr<sp::dataplane> start_with(std::shared_ptr<proxy::peer_tls> tls,
                                                   std::string self) {
    auto o = options(std::move(self));
    o.tls = std::move(tls);
    o.head_timeout = 5s;
    return start(std::move(o));
  }
  /// Starts b again, allowing each peer node `share` inbound connections.
  void limit_peers_on_b(std::size_t share) {
    auto o = options("b");
    o.tls = tls_of(mesh(), "b");
    o.max_connections_per_peer = share;
    b = start(std::move(o));
  }
  /// Starts a again without HTTP/2 toward peers: each TCP connection through it is a TLS
  /// connection of its own to b (as from a node without HTTP/2).
  void http1_from_a() {
    auto o = options("a");
    o.tls = tls_of(mesh(), "a");
    o.h2_to_peers = false;
    a = start(std::move(o));
  }
  void apply(std::vector<sg::service_view> services, std::uint64_t generation = 1) {
    sp::inbound_map inbound{{"a", a->inbound_address()}, {"b", b->inbound_address()}};
    a->apply(config(services, inbound, generation));
    b->apply(config(services, inbound, generation));
  }
};

TEST(proxy_tls, peer_of_names_the_node_and_its_spiffe_id) {
  auto tls = tls_of(mesh(), "a");
  std::string error;
  SSL* ssl = tls->new_session(false, "b", error);
  ASSERT_NE(ssl, nullptr) << error;
  EXPECT_FALSE(tls->peer_of(ssl)); // no handshake yet
  SSL_free(ssl);
}

TEST(proxy_tls, http_two_hops_over_mtls_reuse_one_tls_connection) {
  http_backend web("web-b");
  tls_nodes n;
  n.apply({service("web", {instance("b", "web", "1", web.port())})});
  client c(outbound(*n.a, "web"));
  for (int i = 0; i < 5; ++i) {
    auto r = c.get();
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.body, "web-b");
  }
  EXPECT_EQ(n.b->stats().inbound_connections, 1u);
  EXPECT_EQ(n.a->stats().upstream_connects, 1u);
  EXPECT_EQ(n.a->stats().upstream_reused, 4u);
  EXPECT_EQ(n.b->stats().inbound_refused_tls, 0u);
}

TEST(proxy_tls, tcp_echo_with_half_close_over_mtls) {
  echo_backend echo;
  tls_nodes n;
  n.apply({service("db", {instance("b", "db", "1", echo.port(), "", sg::service_protocol::tcp)})});
  client c(outbound(*n.a, "db"));
  ASSERT_TRUE(c.send("over tls"));
  c.shutdown_send();
  EXPECT_EQ(c.read_all(), "over tls");
  // Over HTTP/2 (decision 0024) every TCP connection to b is a tunnel on one TLS
  // connection: no handshake per TCP connection. Over HTTP/1.1, one TLS connection each.
  for (int i = 0; i < 3; ++i) {
    client more(outbound(*n.a, "db"));
    ASSERT_TRUE(more.send("again " + std::to_string(i)));
    more.shutdown_send();
    EXPECT_EQ(more.read_all(), "again " + std::to_string(i));
  }
  EXPECT_TRUE(eventually([&] {
    return n.b->stats().inbound_connections == (test_h2_hop() ? 1u : 4u);
  })) << n.b->stats().inbound_connections;
}

// One peer node holds at most max_connections_per_peer inbound connections (per I/O
// thread): the next is closed after its handshake and counted, so that one member cannot
// take every descriptor of the data plane from the others; a closed one frees its slot.
// Each TCP connection through a's outbound listener is one TLS connection to b when a
// speaks no HTTP/2 (else they are tunnels on one connection: decision 0024).
/// With b serving the TCP service "db" (an echo) and a's share on b full after two TCP
/// connections through a: a third is refused (closed before it echoes anything, counted);
/// once the first ends, its slot serves the next one.
void two_fill_the_share_and_a_freed_slot_serves_the_next(tls_nodes& n) {
  auto first = std::make_unique<client>(outbound(*n.a, "db"));
  client second(outbound(*n.a, "db"));
  for (auto* c : {first.get(), &second}) {
    ASSERT_TRUE(c->send("ping"));
    ASSERT_TRUE(c->read_until([](const std::string& in) { return in.size() >= 4; }));
  }
  client third(outbound(*n.a, "db"));
  (void)third.send("ping");
  EXPECT_TRUE(third.closed());
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_peer >= 1; }));
  first->shutdown_send();
  EXPECT_EQ(first->read_all(), "ping");
  first.reset();
  ASSERT_TRUE(eventually([&] { return n.b->in_flight() == 1; })); // the second's alone
  client next(outbound(*n.a, "db"));
  ASSERT_TRUE(next.send("pong"));
  EXPECT_TRUE(next.read_until([](const std::string& in) { return in.size() >= 4; }));
}

TEST(proxy_tls, a_peer_holds_at_most_its_share_of_inbound_connections) {
  echo_backend echo;
  tls_nodes n;
  n.limit_peers_on_b(2);
  n.http1_from_a();
  n.apply({service("db", {instance("b", "db", "1", echo.port(), "", sg::service_protocol::tcp)})});
  two_fill_the_share_and_a_freed_slot_serves_the_next(n);
  EXPECT_EQ(n.b->stats().inbound_refused_peer, 1u); // the third's connection, once
}

/// A blocking TLS connection to `address` as the node whose proxy TLS is `tls` (its
/// certificate), with the HTTP/2 client preface and an empty SETTINGS frame sent; what
/// a peer's own HTTP/2 connection starts with.
struct raw_h2_peer {
  client tcp;
  SSL* ssl = nullptr;
  raw_h2_peer(proxy::peer_tls& tls, const std::string& address) : tcp(address) {
    // OpenSSL's socket BIO writes with write(): a write to a connection b closed would
    // raise SIGPIPE and end the test process.
    ::signal(SIGPIPE, SIG_IGN);
    std::string error;
    if (!tcp.connected() || (ssl = tls.new_session(false, "b", error)) == nullptr ||
        SSL_set_fd(ssl, tcp.fd()) != 1 || SSL_connect(ssl) != 1)
      return;
    const std::string start = std::string{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"} +
                              std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
    (void)SSL_write(ssl, start.data(), static_cast<int>(start.size()));
  }
  ~raw_h2_peer() {
    if (ssl != nullptr)
      SSL_free(ssl); // then tcp closes the socket
  }
  raw_h2_peer(const raw_h2_peer&) = delete;
  raw_h2_peer& operator=(const raw_h2_peer&) = delete;
  /// The server answered (its SETTINGS): the connection was taken, not closed.
  bool answered() {
    char buf[256];
    return ssl != nullptr && SSL_read(ssl, buf, sizeof buf) > 0;
  }
};

// The same share holds for HTTP/2 connections, which a node's own streams share: the
// connection keeps its slot for its life (the session that took it hands it over).
TEST(proxy_tls, a_peers_http2_connections_count_in_its_share) {
  tls_nodes n;
  n.limit_peers_on_b(2);
  n.apply({});
  auto as_a = tls_of(mesh(), "a");
  auto first = std::make_unique<raw_h2_peer>(*as_a, n.b->inbound_address());
  raw_h2_peer second(*as_a, n.b->inbound_address());
  EXPECT_TRUE(first->answered());
  EXPECT_TRUE(second.answered());
  raw_h2_peer third(*as_a, n.b->inbound_address());
  EXPECT_FALSE(third.answered());
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_peer == 1; }));
  first.reset();
  // b sees the close, drops that connection and its slot: the next one is taken.
  EXPECT_TRUE(eventually([&] {
    raw_h2_peer next(*as_a, n.b->inbound_address());
    return next.answered();
  }));
}

// A TCP tunnel on a's HTTP/2 connection (decision 0024) holds a descriptor on b as a
// connection of its own did: it takes one of a's slots there, next to the connection's.
TEST(proxy_tls, a_peers_tunnels_count_in_its_share) {
  if (!test_h2_hop())
    GTEST_SKIP() << "tunnels travel on HTTP/2 only";
  echo_backend echo;
  tls_nodes n;
  n.limit_peers_on_b(3); // the connection and two tunnels
  n.apply({service("db", {instance("b", "db", "1", echo.port(), "", sg::service_protocol::tcp)})});
  // The third tunnel is refused before any byte, on every try.
  two_fill_the_share_and_a_freed_slot_serves_the_next(n);
  EXPECT_EQ(n.b->stats().inbound_connections, 1u);
}

// Under pressure (the members' connections on a thread at twice the share), a peer gets no
// more than an equal part of that line, even below its share. With a share of 4 (a line
// of 8): a holds 4, c 3, d 1. Then c, below its share, is refused (3 is above 8 / 3);
// d gets a second (its part is 2) and no third; e, a newcomer, gets one. Once a's
// connections end (the line's use back to 6), c's fourth is taken.
TEST(proxy_tls, under_pressure_a_peer_gets_no_more_than_an_equal_part) {
  tls_nodes n;
  n.limit_peers_on_b(4);
  n.apply({});
  auto as_a = tls_of(mesh(), "a"), as_c = tls_of(mesh(), "c"), as_d = tls_of(mesh(), "d"),
       as_e = tls_of(mesh(), "e");
  std::vector<std::unique_ptr<raw_h2_peer>> held;
  auto open = [&](proxy::peer_tls& tls) {
    held.push_back(std::make_unique<raw_h2_peer>(tls, n.b->inbound_address()));
    return held.back()->answered();
  };
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(open(*as_a)) << i;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(open(*as_c)) << i;
  ASSERT_TRUE(open(*as_d));
  EXPECT_EQ(n.b->stats().inbound_refused_peer, 0u);
  EXPECT_FALSE(open(*as_c));
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_peer == 1; }));
  EXPECT_TRUE(open(*as_d));
  EXPECT_FALSE(open(*as_d));
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_peer == 2; }));
  EXPECT_TRUE(open(*as_e));
  for (std::size_t i = 0; i < 4; ++i)
    held[i].reset();
  EXPECT_TRUE(eventually([&] { return open(*as_c); }));
}

// A local service's breaker cap on b is shared among the members calling it
// (caller_shares): one caller holds at most half of it, so that a member that turned
// hostile cannot take the whole cap from the others. With max_requests 4 on web (a's own
// cap too): a's third concurrent request is refused by b with 503, while c's first is
// served; once a's requests are answered, a is served again.
TEST(proxy_tls, a_caller_holds_at_most_half_of_a_local_services_request_cap) {
  http_backend held("held", backend_mode::hold);
  tls_nodes n;
  auto c_node = tls_nodes::start_with(tls_of(mesh(), "c"), "c");
  auto web = service("web", {instance("b", "web", "1", held.port())});
  web.policies.resilience = sg::resilience_policy{};
  web.policies.resilience->max_requests = 4;
  n.apply({web});
  c_node->apply(config({web}, {{"b", n.b->inbound_address()}}));
  client a1(outbound(*n.a, "web")), a2(outbound(*n.a, "web"));
  ASSERT_TRUE(a1.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  ASSERT_TRUE(a2.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return held.requests() == 2; }));
  client a3(outbound(*n.a, "web"));
  ASSERT_TRUE(a3.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  auto refused = a3.read_response();
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.headers["x-starling-error"], "overloaded");
  EXPECT_EQ(n.b->stats().inbound_refused_share, 1u);
  client c1(outbound(*c_node, "web"));
  ASSERT_TRUE(c1.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return held.requests() == 3; }));
  held.release();
  for (auto* c : {&a1, &a2, &c1})
    EXPECT_EQ(c->read_response().status, 200);
  ASSERT_TRUE(a3.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  EXPECT_EQ(a3.read_response().status, 200);
  EXPECT_EQ(n.b->stats().inbound_refused_share, 1u);
  const auto stats = n.b->stats(); // outlives the lookup
  const auto* inbound = find_inbound(stats, "web");
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->breaker_refused, 1u);
}

// The same for a TCP service's connection cap: with max_connections 2 on db, a's second
// connection (a tunnel, or a TLS connection of its own toward b) is closed by b before it
// echoes anything, while c's first is served.
TEST(proxy_tls, a_caller_holds_at_most_half_of_a_local_tcp_services_connection_cap) {
  echo_backend echo;
  tls_nodes n;
  auto c_node = tls_nodes::start_with(tls_of(mesh(), "c"), "c");
  auto db = service("db", {instance("b", "db", "1", echo.port(), "", sg::service_protocol::tcp)});
  db.policies.resilience = sg::resilience_policy{};
  db.policies.resilience->max_connections = 2;
  n.apply({db});
  c_node->apply(config({db}, {{"b", n.b->inbound_address()}}));
  const auto echoed = [](const std::string& in) { return in.size() >= 4; };
  client first(outbound(*n.a, "db"));
  ASSERT_TRUE(first.send("ping"));
  ASSERT_TRUE(first.read_until(echoed));
  client second(outbound(*n.a, "db"));
  (void)second.send("ping");
  EXPECT_TRUE(second.closed());
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_share >= 1; }));
  client from_c(outbound(*c_node, "db"));
  ASSERT_TRUE(from_c.send("pong"));
  EXPECT_TRUE(from_c.read_until(echoed));
}

TEST(proxy_tls, authorization_rules_match_the_callers_spiffe_id) {
  http_backend web("web-b");
  tls_nodes n;
  auto allowed = service("web", {instance("b", "web", "1", web.port())});
  allowed.policies.authz.push_back({"from-a", {"spiffe://test.mesh/node/a"}, true});
  auto denied = service("api", {instance("b", "api", "1", web.port())});
  denied.policies.authz.push_back({"anyone", {"*"}, true});
  denied.policies.authz.push_back({"not-a", {"spiffe://test.mesh/node/a"}, false});
  n.apply({allowed, denied});
  client ok(outbound(*n.a, "web"));
  EXPECT_EQ(ok.get().status, 200);
  client refused(outbound(*n.a, "api"));
  auto r = refused.get();
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.headers["x-starling-error"], "forbidden");
  EXPECT_NE(r.body.find("not-a"), std::string::npos) << r.body;
  EXPECT_EQ(n.b->stats().inbound_refused_authz, 1u);
}

TEST(proxy_tls, a_tcp_service_refusing_the_caller_closes_the_connection) {
  echo_backend echo;
  tls_nodes n;
  auto db = service("db", {instance("b", "db", "1", echo.port(), "", sg::service_protocol::tcp)});
  db.policies.authz.push_back({"only-c", {"spiffe://test.mesh/node/c"}, true});
  n.apply({db});
  client c(outbound(*n.a, "db"));
  ASSERT_TRUE(c.send("hello"));
  EXPECT_EQ(c.read_all(), "");
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_authz == 1; }));
}

TEST(proxy_tls, callers_without_a_valid_certificate_are_refused) {
  http_backend web("web-b");
  tls_nodes n;
  n.apply({service("web", {instance("b", "web", "1", web.port())})});
  // Plain TCP to a TLS inbound: the handshake fails.
  client plain(n.b->inbound_address());
  ASSERT_TRUE(plain.send(preamble("web") + "GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  EXPECT_TRUE(plain.closed());
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_tls == 1; }));
  // A proxy of another mesh claiming to be "a".
  auto o = options("a");
  o.tls = tls_of(other_mesh(), "a");
  auto impostor = start(o);
  impostor->apply(config({service("web", {instance("b", "web", "1", web.port())})},
                         {{"b", n.b->inbound_address()}}));
  client c(outbound(*impostor, "web"));
  EXPECT_EQ(c.get().status, 502);
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_tls >= 2; }));
  EXPECT_EQ(web.requests(), 0);
  // The real "a" is still served.
  client good(outbound(*n.a, "web"));
  EXPECT_EQ(good.get().status, 200);
}

// Callers whose TLS handshakes fail (here, plain TCP to the TLS port) are limited per
// source address: past max_failed_handshakes_per_source, the next connection is closed at
// accept, before the node spends a handshake (its key exchange and signature) on it. While
// a member holds a connection from the same address (here, as behind a NAT: everything is
// 127.0.0.1), nothing from that address is limited, so that a stranger's failures there
// cannot lock the member out.
TEST(proxy_tls, failing_handshakes_are_limited_per_address_unless_a_member_is_there) {
  tls_nodes n;
  auto o = options("b");
  o.tls = tls_of(mesh(), "b");
  o.max_failed_handshakes_per_source = 3;
  o.failed_handshake_interval = std::chrono::hours{1}; // no allowance comes back in the test
  n.b = start(std::move(o));
  n.apply({});
  const auto stranger = [&] {
    client plain(n.b->inbound_address());
    (void)plain.send("not a TLS client hello\r\n\r\n");
    return plain.closed();
  };
  auto as_a = tls_of(mesh(), "a");
  auto member = std::make_unique<raw_h2_peer>(*as_a, n.b->inbound_address());
  ASSERT_TRUE(member->answered());
  for (int i = 0; i < 6; ++i)
    EXPECT_TRUE(stranger()) << i;
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_tls == 6; }));
  EXPECT_EQ(n.b->stats().inbound_refused_failing, 0u) << "limited while a member is there";
  // The member leaves: three more failures, then refusals at accept.
  member.reset();
  EXPECT_TRUE(eventually([&] {
    (void)stranger();
    return n.b->stats().inbound_refused_failing >= 1;
  }));
  const auto handshakes = n.b->stats().inbound_refused_tls;
  EXPECT_GE(handshakes, 9u);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(stranger()) << i;
  EXPECT_TRUE(eventually([&] { return n.b->stats().inbound_refused_failing >= 4; }));
  EXPECT_EQ(n.b->stats().inbound_refused_tls, handshakes) << "a refused caller got a handshake";
}

TEST(proxy_tls, a_banned_peer_is_cut_off_and_refused) {
  http_backend web("web-b");
  tls_nodes n;
  n.apply({service("web", {instance("b", "web", "1", web.port())})});
  {
    client c(outbound(*n.a, "web"));
    ASSERT_EQ(c.get().status, 200);
  }
  // HTTP/1.1 between the nodes: the connection waits in a's idle pool; HTTP/2: it stays
  // open, shared, outside the pool.
  if (!test_h2_hop()) {
    EXPECT_TRUE(eventually([&] { return n.a->stats().upstream_idle == 1; }));
  }
  n.b->ban_peer("a");
  // b closed a's connection (pooled, or HTTP/2) and refuses new ones: a's requests fail.
  client c(outbound(*n.a, "web"));
  EXPECT_EQ(c.get().status, 502);
  EXPECT_GE(n.b->stats().inbound_refused_tls, 1u);
  n.b->unban_peer("a");
  EXPECT_TRUE(eventually([&] {
    client d(outbound(*n.a, "web"));
    return d.get().status == 200;
  }));
}

/// Nodes "a" and "b" where b chooses no protocol by ALPN, as a node of a version before
/// HTTP/2 between nodes (decision 0022) does; a asks again after `recheck`.
struct old_peer_nodes {
  explicit old_peer_nodes(std::chrono::milliseconds recheck) {
    auto ctx = starling::testing::tls_context_of(mesh(), "b");
    SSL_CTX_set_alpn_select_cb(ctx->native(), nullptr, nullptr);
    auto ob = options("b");
    ob.tls = std::make_shared<proxy_tls>(std::make_shared<identity::tls_context_holder>(ctx));
    b = start(std::move(ob));
    auto oa = options("a");
    oa.tls = tls_of(mesh(), "a");
    oa.h2_to_peers = true; // whatever the hop this run tests: a offers h2 and learns
    oa.h1_peer_recheck = recheck;
    a = start(std::move(oa));
  }
  void apply(std::vector<sg::service_view> services, std::uint64_t generation, bool with_b) {
    sp::inbound_map inbound{{"a", a->inbound_address()}};
    if (with_b)
      inbound.emplace("b", b->inbound_address());
    a->apply(config(services, inbound, generation));
    b->apply(config(services, inbound, generation));
    EXPECT_TRUE(eventually([&] { return b->stats().config_generation == generation; }));
  }
  std::unique_ptr<sp::dataplane> b, a;
};

// Each handshake that finds no h2 is one connection to b that a closes at once; the
// requests then take HTTP/1.1 with a preamble over a pooled connection. a remembers the
// answer until its recheck time, and forgets it when b's inbound leaves the config.
TEST(proxy_tls, a_peer_that_chooses_no_h2_gets_http1_and_is_asked_again_later) {
  http_backend web("web-b");
  const std::vector<sg::service_view> services{
      service("web", {instance("b", "web", "1", web.port())})};
  {
    old_peer_nodes n(std::chrono::minutes{5});
    n.apply(services, 1, true);
    client c(outbound(*n.a, "web"));
    for (int i = 0; i < 4; ++i)
      ASSERT_EQ(c.get().body, "web-b") << i;
    EXPECT_EQ(n.b->stats().inbound_connections, 2u); // the handshake that asked, the pooled
    n.apply(services, 2, false);
    EXPECT_EQ(c.get().status, 503); // b unreachable: a's request takes the new config
    n.apply(services, 3, true);
    ASSERT_EQ(c.get().body, "web-b");
    EXPECT_EQ(n.b->stats().inbound_connections, 3u); // asked once more, then the pooled
    EXPECT_EQ(n.b->stats().inbound_refused_tls, 0u);
  }
  {
    old_peer_nodes n(std::chrono::milliseconds{0}); // ask at every request
    n.apply(services, 1, true);
    client c(outbound(*n.a, "web"));
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(c.get().body, "web-b") << i;
    EXPECT_EQ(n.b->stats().inbound_connections, 4u); // three handshakes that asked, the pooled
  }
}

} // namespace
} // namespace starling::actors

namespace starling::actors {
namespace {

// A node whose inbound address left the config (membership reported it failed, a moment
// before the routing table withdraws its instances) is not reached straight at its app's
// address in plain TCP: that would skip mutual TLS, its authorization rules and bans.
TEST(proxy_tls, an_instance_whose_node_has_no_inbound_proxy_is_not_reached_in_plain_tcp) {
  http_backend web("web-b");
  tls_nodes n;
  const std::vector<sg::service_view> services{
      service("web", {instance("b", "web", "1", web.port())})};
  n.apply(services);
  client c(outbound(*n.a, "web"));
  ASSERT_EQ(c.get().status, 200);
  n.a->apply(config(services, {{"a", n.a->inbound_address()}}, 2)); // b's entry is gone
  ASSERT_TRUE(eventually([&] { return n.a->stats().config_generation == 2; }));
  auto r = c.get();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["x-starling-error"], "no_upstream");
  EXPECT_EQ(web.requests(), 1);
  // A local instance still needs no entry.
  http_backend local("web-a");
  n.a->apply(config({service("web", {instance("a", "web", "2", local.port())})}, {}, 3));
  ASSERT_TRUE(eventually([&] { return n.a->stats().config_generation == 3; }));
  EXPECT_EQ(c.get().body, "web-a");
}

} // namespace
} // namespace starling::actors
