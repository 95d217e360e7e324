// The connection cap of an HTTP service and its pending requests (Envoy's max_connections and
// max_pending_requests): a request that needs a new upstream connection while the service
// holds its cap waits for one to come free, up to the pending cap and the connect timeout.
// Real sockets on 127.0.0.1 (tests/support/proxy_support.hpp); conditions are polled with
// a deadline, nothing sleeps to wait.
#include <gtest/gtest.h>

#include "proxy/dataplane.hpp"
#include "tests/support/proxy_support.hpp"

namespace {

using namespace starling::testing::proxy_support;

constexpr const char* get_request = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";

TEST(dataplane_pending, at_the_connection_cap_a_request_waits_and_takes_the_freed_connection) {
  http_backend web("web-1", backend_mode::hold);
  auto o = options("a");
  o.breaker.max_connections = 1;
  auto dp = start(o);
  dp->apply(config({service("web", {instance("a", "web", "1", web.port())})}));
  client first(outbound(*dp, "web"));
  ASSERT_TRUE(first.send(get_request));
  ASSERT_TRUE(eventually([&] { return web.requests() == 1; }));
  client second(outbound(*dp, "web"));
  ASSERT_TRUE(second.send(get_request));
  // The second request waits: no second connection, no 503.
  EXPECT_FALSE(eventually([&] { return web.connections() > 1; }, std::chrono::milliseconds{200}));
  web.release();
  EXPECT_EQ(first.read_response().status, 200);
  EXPECT_EQ(second.read_response().status, 200);
  const auto st = dp->stats();
  EXPECT_EQ(st.upstream_connects, 1u); // the second got the first's connection
  EXPECT_EQ(st.upstream_reused, 1u);
  EXPECT_EQ(web.connections(), 1);
  EXPECT_EQ(find_service(st, "web")->breaker_refused, 0u);
}

TEST(dataplane_pending, beyond_the_pending_cap_a_request_is_refused_with_503) {
  http_backend web("web-1", backend_mode::hold);
  auto o = options("a");
  o.breaker.max_connections = 1;
  o.breaker.max_pending_requests = 1;
  auto dp = start(o);
  dp->apply(config({service("web", {instance("a", "web", "1", web.port())})}));
  client first(outbound(*dp, "web")), second(outbound(*dp, "web")), third(outbound(*dp, "web"));
  ASSERT_TRUE(first.send(get_request));
  ASSERT_TRUE(eventually([&] { return web.requests() == 1; }));
  ASSERT_TRUE(second.send(get_request)); // waits
  auto refused = third.get();            // finds the queue full
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.headers["x-starling-error"], "overloaded");
  web.release();
  EXPECT_EQ(first.read_response().status, 200);
  EXPECT_EQ(second.read_response().status, 200);
  EXPECT_EQ(find_service(dp->stats(), "web")->breaker_refused, 1u);
  EXPECT_EQ(third.get().status, 200); // the units were given back
}

TEST(dataplane_pending, a_waiting_request_gets_503_when_no_connection_comes_free_in_time) {
  http_backend web("web-1", backend_mode::hold);
  auto o = options("a");
  o.breaker.max_connections = 1;
  o.connect_timeout = std::chrono::milliseconds{150};
  auto dp = start(o);
  dp->apply(config({service("web", {instance("a", "web", "1", web.port())})}));
  client first(outbound(*dp, "web")), second(outbound(*dp, "web"));
  ASSERT_TRUE(first.send(get_request));
  ASSERT_TRUE(eventually([&] { return web.requests() == 1; }));
  auto late = second.get();
  EXPECT_EQ(late.status, 503);
  EXPECT_EQ(late.headers["x-starling-error"], "overloaded");
  EXPECT_EQ(find_service(dp->stats(), "web")->timeouts, 1u);
  web.release();
  EXPECT_EQ(first.read_response().status, 200);
  EXPECT_EQ(web.connections(), 1);
}

// Idle pooled connections count in the cap too: a request for another instance closes one
// to make room instead of waiting for a connection that nobody will give back.
TEST(dataplane_pending, an_idle_connection_to_another_instance_is_closed_to_make_room) {
  http_backend v1("v1"), v2("v2");
  auto o = options("a");
  o.breaker.max_connections = 1;
  auto dp = start(o);
  auto svc = service("web", {instance("a", "web", "1", v1.port(), "v1"),
                             instance("a", "web", "2", v2.port(), "v2")});
  svc.policies.split = std::vector<sg::split_weight>{{"v1", 100}};
  svc.policies.routes.push_back({"canary", "x-canary", "yes", "v2"});
  dp->apply(config({svc}));
  client c(outbound(*dp, "web"));
  auto r1 = c.get();
  ASSERT_EQ(r1.status, 200);
  EXPECT_EQ(r1.body, "v1");
  ASSERT_TRUE(eventually([&] { return dp->stats().upstream_idle == 1; }));
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nhost: x\r\nx-canary: yes\r\n\r\n"));
  auto r2 = c.read_response();
  EXPECT_EQ(r2.status, 200);
  EXPECT_EQ(r2.body, "v2");
  EXPECT_TRUE(eventually([&] { return dp->stats().upstream_idle == 1; })); // v2's only
  EXPECT_EQ(dp->stats().upstream_connects, 2u);
}

// A connection given back while the only waiter needs another instance closes, so that the
// waiter can open its own.
TEST(dataplane_pending, a_freed_connection_to_another_instance_makes_room_for_the_waiter) {
  http_backend v1("v1", backend_mode::hold), v2("v2");
  auto o = options("a");
  o.breaker.max_connections = 1;
  auto dp = start(o);
  auto svc = service("web", {instance("a", "web", "1", v1.port(), "v1"),
                             instance("a", "web", "2", v2.port(), "v2")});
  svc.policies.split = std::vector<sg::split_weight>{{"v1", 100}};
  svc.policies.routes.push_back({"canary", "x-canary", "yes", "v2"});
  dp->apply(config({svc}));
  client first(outbound(*dp, "web")), second(outbound(*dp, "web"));
  ASSERT_TRUE(first.send(get_request));
  ASSERT_TRUE(eventually([&] { return v1.requests() == 1; }));
  ASSERT_TRUE(second.send("GET / HTTP/1.1\r\nhost: x\r\nx-canary: yes\r\n\r\n"));
  EXPECT_FALSE(eventually([&] { return v2.connections() > 0; }, std::chrono::milliseconds{200}));
  v1.release();
  EXPECT_EQ(first.read_response().body, "v1");
  auto r = second.read_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "v2");
  EXPECT_EQ(find_service(dp->stats(), "web")->breaker_refused, 0u);
}

// The service's resilience policy sets its own pending cap over the node's.
TEST(dataplane_pending, a_service_policy_sets_its_pending_cap) {
  http_backend web("web-1", backend_mode::hold);
  auto dp = start(options("a"));
  auto svc = service("web", {instance("a", "web", "1", web.port())});
  svc.policies.resilience = sg::resilience_policy{};
  svc.policies.resilience->max_connections = 1;
  svc.policies.resilience->max_pending = 1;
  dp->apply(config({svc}));
  client first(outbound(*dp, "web")), second(outbound(*dp, "web")), third(outbound(*dp, "web"));
  ASSERT_TRUE(first.send(get_request));
  ASSERT_TRUE(eventually([&] { return web.requests() == 1; }));
  ASSERT_TRUE(second.send(get_request)); // waits
  EXPECT_EQ(third.get().status, 503);    // the policy's cap, not the node's 1,024
  web.release();
  EXPECT_EQ(first.read_response().status, 200);
  EXPECT_EQ(second.read_response().status, 200);
}

// A raised cap (a new policy) lets the waiting requests connect at once.
TEST(dataplane_pending, raising_the_cap_wakes_the_waiting_requests) {
  http_backend web("web-1", backend_mode::hold);
  auto o = options("a");
  o.connect_timeout = std::chrono::milliseconds{10'000};
  auto dp = start(o);
  auto svc = service("web", {instance("a", "web", "1", web.port())});
  svc.policies.resilience = sg::resilience_policy{};
  svc.policies.resilience->max_connections = 1;
  dp->apply(config({svc}));
  client first(outbound(*dp, "web")), second(outbound(*dp, "web"));
  ASSERT_TRUE(first.send(get_request));
  ASSERT_TRUE(eventually([&] { return web.requests() == 1; }));
  ASSERT_TRUE(second.send(get_request));
  EXPECT_FALSE(eventually([&] { return web.requests() > 1; }, std::chrono::milliseconds{200}));
  svc.policies.resilience->max_connections = 4;
  dp->apply(config({svc}));
  // Applied when the worker next reads its config: a third request does that.
  client third(outbound(*dp, "web"));
  ASSERT_TRUE(third.send(get_request));
  EXPECT_TRUE(eventually([&] { return web.requests() == 3; }));
  web.release();
  EXPECT_EQ(first.read_response().status, 200);
  EXPECT_EQ(second.read_response().status, 200);
  EXPECT_EQ(third.read_response().status, 200);
}

} // namespace
