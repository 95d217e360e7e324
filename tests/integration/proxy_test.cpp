// The data plane with real agents on 127.0.0.1 (issue 17): an issuer and two members with
// certificates; an HTTP app in two versions behind node c; traffic sent to node a's outbound
// listener crosses the mesh over pooled mutual TLS to c's inbound proxy; a split written on
// the issuer is followed per request; an authorization rule refuses a caller with 403 while
// another caller passes; a member flooding a slow service holds no more than half of its
// request cap while another is served; the counters show in `stats` and `/metrics`; a drained node
// takes no new work and no request fails. The data plane runs on the default back end, io_uring
// (`[proxy] io`, decision 0021), or on epoll where this process may not use io_uring, which
// `stats` then says; the drain test runs its agents on epoll, so that the other back end
// meets real agents too. Every wait polls with a deadline; every load loop is bounded in
// count.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "net/loop.hpp"
#include "tests/support/http_app.hpp"
#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

/// A gRPC app (python3-grpcio, Debian's; scripts/install-deps.sh installs it): `serve NAME
/// DOWN` serves echo.Echo (Say, a unary call answered "NAME:<request>" with the trailer
/// `x-server: NAME`; Count, a server stream; Chat, a bidirectional stream answering each
/// message as it comes; Fail, NOT_FOUND) and gRPC's grpc.health.v1.Health/Check (SERVING
/// for "" and "echo.Echo", NOT_SERVING while the file DOWN exists, NOT_FOUND for another
/// service) on 127.0.0.1:0 and prints the port; `call ADDRESS
/// N` makes N concurrent Say calls, one Count, one Chat (ping-pong: each message sent once
/// the last one's answer came) and one Fail through ADDRESS and prints what came back as
/// one JSON object; `load ADDRESS STOP S` makes Say calls, eight at a time, until the file
/// STOP exists (or S seconds, or 200,000 calls) and prints the calls answered and failed.
constexpr std::string_view grpc_app_py =
    R"py(# A gRPC app for Starling's integration test (python3-grpcio, generic handlers: the
# messages are raw bytes, no generated code).
#   serve NAME DOWN      serves echo.Echo and grpc.health.v1.Health (NOT_SERVING while the
#                        file DOWN exists) on 127.0.0.1:0, prints the port, runs until killed
#   call ADDRESS N       N concurrent Say calls, a Count stream, a Chat (each message
#                        sent once the answer to the one before came back) and a Fail call
#                        through ADDRESS; prints one JSON object with what came back
#   load ADDRESS STOP S  Say calls through ADDRESS, eight at a time, until the file STOP
#                        exists, S seconds passed or 200,000 calls were made; prints one
#                        JSON object: calls answered, failures (the first ten), by server
import json
import os
import queue
import sys
import time
from concurrent import futures

import grpc


def serve(name, down_file):
    def check(request, context):
        # HealthCheckRequest: field 1 (service), a string, is the only field; an empty
        # service is not on the wire.
        service = request[2:].decode() if request[:1] == b"\x0a" else ""
        if service not in ("", "echo.Echo"):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service " + service)
        # HealthCheckResponse: field 1 (status), a varint: SERVING 1, NOT_SERVING 2.
        return b"\x08\x02" if os.path.exists(down_file) else b"\x08\x01"

    def say(request, context):
        context.set_trailing_metadata((("x-server", name),))
        return name.encode() + b":" + request

    def count(request, context):
        for i in range(int(request)):
            yield str(i).encode()

    def chat(requests, context):
        for message in requests:
            yield name.encode() + b":" + message

    def fail(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    health = {"Check": grpc.unary_unary_rpc_method_handler(check)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),
                                     grpc.method_handlers_generic_handler("grpc.health.v1.Health",
                                                                          health)))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def call(address, n):
    out = {"ok": 0, "errors": [], "by_server": {}, "stream": [], "chat": [], "fail": None}
    with grpc.insecure_channel(address) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        pending = [say.future(b"m%d" % i, timeout=10) for i in range(n)]
        for i, f in enumerate(pending):
            try:
                body = f.result()
                server, _, rest = body.decode().partition(":")
                trailers = dict(f.trailing_metadata() or ())
                if rest != "m%d" % i or trailers.get("x-server") != server:
                    out["errors"].append("call %d: %r, trailers %r" % (i, body, trailers))
                    continue
                out["ok"] += 1
                out["by_server"][server] = out["by_server"].get(server, 0) + 1
            except grpc.RpcError as e:
                out["errors"].append("call %d: %s %s" % (i, e.code().name, e.details()))
        try:
            stream = channel.unary_stream("/echo.Echo/Count")
            out["stream"] = [m.decode() for m in stream(b"5", timeout=10)]
        except grpc.RpcError as e:
            out["errors"].append("stream: %s %s" % (e.code().name, e.details()))
        try:
            # Ping-pong: the next message goes only once the answer to the last one came,
            # so the call needs both directions open at once.
            outgoing = queue.Queue()

            def messages():
                while (m := outgoing.get()) is not None:
                    yield m

            answers = channel.stream_stream("/echo.Echo/Chat")(messages(), timeout=10)
            for i in range(3):
                outgoing.put(b"ping%d" % i)
                out["chat"].append(next(answers).decode())
            outgoing.put(None)
            out["chat"] += [m.decode() for m in answers]
        except grpc.RpcError as e:
            out["errors"].append("chat: %s %s" % (e.code().name, e.details()))
        try:
            channel.unary_unary("/echo.Echo/Fail")(b"x", timeout=10)
            out["errors"].append("fail: it succeeded")
        except grpc.RpcError as e:
            out["fail"] = {"code": e.code().name, "details": e.details()}
    print(json.dumps(out), flush=True)


def load(address, stop_file, seconds):
    out = {"ok": 0, "failed": 0, "errors": [], "by_server": {}}
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:
        say = channel.unary_unary("/echo.Echo/Say")
        made = 0
        while made < 200000 and time.monotonic() < deadline and not os.path.exists(stop_file):
            batch = [say.future(b"m%d" % (made + k), timeout=10) for k in range(8)]
            made += len(batch)
            for f in batch:
                try:
                    server = f.result().decode().partition(":")[0]
                    out["ok"] += 1
                    out["by_server"][server] = out["by_server"].get(server, 0) + 1
                except grpc.RpcError as e:
                    out["failed"] += 1
                    if len(out["errors"]) < 10:
                        out["errors"].append("%s %s" % (e.code().name, e.details()))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        call(sys.argv[2], int(sys.argv[3]))
)py";

class proxy_test : public st::mesh_test {
protected:
  proxy_test() : mesh_test("starling-it-proxy") {}

  /// Whether this process may use io_uring: a ring can be made (the agents fall back to
  /// epoll where it cannot). Made and closed by a thread of its own: a ring's maker gets a
  /// task-work signal when it closes, which would fail this thread's next blocking recv
  /// with a timeout with EINTR (decision 0021).
  static bool uring_here() {
    bool ok = false;
    std::thread{[&ok] {
      std::string why;
      auto l = starling::net::loop::make(starling::net::backend::uring, why);
      ok = l && why.empty();
    }}.join();
    return ok;
  }

  /// Starts issuer "a" and members b, c (certificates by token), all alive; their data plane
  /// on back end `io` ("epoll" or "io_uring"), or on the default without one.
  void start_mesh(const char* io = nullptr) {
    if (io != nullptr)
      std::ofstream{config_, std::ios::app} << "\n[proxy]\nio = \"" << io << "\"\n";
    const auto ca = make_root("it.mesh", "ca");
    auto& a = start("a", {}, {"--issuer", make_issuer(ca, "a").string(), "--gossip-key", key_});
    ASSERT_FALSE(HasFailure());
    const auto token = token_of(a, "2");
    for (const auto* name : {"b", "c"})
      start(name, {a.info.gossip}, {"--token", token});
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(3); })) << "3 nodes did not converge";
  }

  /// Registers `app` on `owner` as an instance of "api" with version `version`.
  void register_app(const std::string& owner, const st::http_app& app, const std::string& version) {
    auto reg = st::run_cli({"register", "--name", "api", "--id", "api-" + version, "--port",
                            std::to_string(app.port()), "--protocol", "http", "--version", version,
                            "--admin", nodes_.at(owner).info.admin});
    ASSERT_EQ(reg.exit_code, 0) << reg.err;
  }

  /// `n`'s outbound listener of `service` ("" while it has none).
  static std::string outbound_of(const node& n, const std::string& service) {
    return st::outbound_of(n.info.admin, service);
  }

  /// Routable instances of `service` in `n`'s view.
  static std::size_t routable_on(const node& n, const std::string& service) {
    auto view = st::cli_json({"services", "--json", "--admin", n.info.admin});
    std::size_t count = 0;
    if (view && view->contains("services"))
      for (const auto& s : view->at("services"))
        if (s.at("name") == service)
          for (const auto& i : s.at("instances"))
            count += i.at("healthy").get<bool>() ? 1 : 0;
    return count;
  }

  /// The back end `n`'s data plane runs on (`proxy_io` in its stats; "" while unavailable).
  static std::string io_of(const node& n) {
    auto stats = st::cli_json({"stats", "--json", "--admin", n.info.admin});
    return stats && stats->contains("proxy_io") && stats->at("proxy_io").is_string()
               ? stats->at("proxy_io").get<std::string>()
               : "";
  }

  /// The `proxy` group of `n`'s stats (null while unavailable).
  static nlohmann::json proxy_stats(const node& n) {
    auto view = st::cli_json({"stats", "--json", "--admin", n.info.admin});
    return view && view->contains("proxy") ? view->at("proxy") : nlohmann::json{};
  }

  /// Debian's Python with Debian's grpc module (another python3 on PATH may not have it),
  /// and the gRPC app's script written out (grpc_app_py): false when python3-grpcio is
  /// missing (scripts/install-deps.sh installs it; the test then skips).
  bool grpc_ready() {
    if (!std::filesystem::exists(python_) ||
        procs_.spawn({python_, "-c", "import grpc"}, "grpc-probe").wait(30s) !=
            std::optional<int>{0})
      return false;
    grpc_script_ = (tmp_.path() / "grpc_app.py").string();
    st::write_text(grpc_script_, std::string{grpc_app_py});
    return true;
  }

  /// Where the gRPC app `name` looks for its down file (grpc_app_py: NOT_SERVING while it
  /// exists).
  std::filesystem::path down_file(const std::string& name) const {
    return tmp_.path() / (name + ".down");
  }

  /// Starts the gRPC app `name` (echo.Echo) and registers it on `owner` as an instance
  /// `name` of the grpc service "echo", with `check` (flags); a test failure when either
  /// fails.
  void serve_grpc(const node& owner, const std::string& name, std::vector<std::string> check = {}) {
    auto& server = procs_.spawn({python_, grpc_script_, "serve", name, down_file(name).string()},
                                "grpc-" + name);
    grpc_apps_[name] = &server;
    std::string port;
    ASSERT_TRUE(st::poll_until(20s,
                               [&] {
                                 const auto out = server.stdout_text();
                                 if (out.find('\n') == std::string::npos)
                                   return false;
                                 port = out.substr(0, out.find('\n'));
                                 return true;
                               }))
        << "gRPC server " << name << " printed no port: " << server.stderr_text();
    std::vector<std::string> args{"register",      "--name", "echo",       "--id", name,
                                  "--port",        port,     "--protocol", "grpc", "--admin",
                                  owner.info.admin};
    args.insert(args.end(), check.begin(), check.end());
    auto reg = st::run_cli(args);
    ASSERT_EQ(reg.exit_code, 0) << reg.err;
  }

  const std::string python_ = "/usr/bin/python3";
  std::string grpc_script_;
  /// The gRPC apps serve_grpc started, by name (owned by procs_).
  std::map<std::string, st::child_process*> grpc_apps_;

  /// True when every response of `n` requests to `address` is 200; counts them by app.
  static bool all_ok(const std::string& address, int n, std::map<std::string, int>& by_app,
                     std::string& first_failure) {
    st::http_client client{address};
    for (int i = 0; i < n; ++i) {
      auto r = client.get("/hello");
      if (r.status != 200) {
        first_failure =
            "request " + std::to_string(i) + ": status " + std::to_string(r.status) + " " + r.error;
        return false;
      }
      ++by_app[r.app];
    }
    return true;
  }
};

TEST_F(proxy_test, traffic_crosses_the_mesh_over_mutual_tls_and_follows_a_split) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& c = nodes_.at("c");
  st::http_app v1{"v1"}, v2{"v2"};
  ASSERT_NE(v1.port(), 0);
  ASSERT_NE(v2.port(), 0);
  register_app("c", v1, "v1");
  register_app("c", v2, "v2");
  ASSERT_FALSE(HasFailure());

  // a learns both instances and opens an outbound listener for the service.
  std::string outbound;
  ASSERT_TRUE(st::poll_until(20s, [&] {
    outbound = outbound_of(a, "api");
    return !outbound.empty() && routable_on(a, "api") == 2;
  })) << "a has no outbound listener for api, or not both instances";
  EXPECT_EQ(outbound.rfind("127.0.0.1:", 0), 0u) << outbound;
  // The default back end, io_uring: the agent runs on it, or says it fell back.
  EXPECT_EQ(io_of(a), uring_here() ? "io_uring" : "epoll");

  // Plain traffic: every request answered through c's inbound proxy (peak-EWMA may send
  // sequential requests to one version only: it prefers the faster instance).
  std::map<std::string, int> by_app;
  std::string failure;
  ASSERT_TRUE(all_ok(outbound, 200, by_app, failure)) << failure;
  EXPECT_EQ(by_app["v1"] + by_app["v2"], 200);
  EXPECT_EQ(v1.requests() + v2.requests(), 200u);
  const auto pa = proxy_stats(a);
  const auto pc = proxy_stats(c);
  ASSERT_TRUE(pa.is_object() && pc.is_object()) << pa << pc;
  EXPECT_GE(pa.at("requests").get<std::uint64_t>(), 200u) << pa;
  EXPECT_GE(pa.at("responses_2xx").get<std::uint64_t>(), 200u) << pa;
  // Connections between the nodes are pooled: far fewer than one per request.
  EXPECT_GT(pa.at("upstream_reused").get<std::uint64_t>(), 150u) << pa;
  EXPECT_GE(pc.at("inbound_connections").get<std::uint64_t>(), 1u) << pc;
  EXPECT_LT(pc.at("inbound_connections").get<std::uint64_t>(), 50u) << pc;
  EXPECT_EQ(pc.at("inbound_refused_tls").get<std::uint64_t>(), 0u) << pc;
  // The instances' node counts what its inbound listener served; the caller counts per
  // instance (both run on c).
  EXPECT_TRUE(st::poll_until(10s, [&] {
    const auto p = proxy_stats(c);
    return p.is_object() && p.at("inbound_responses_2xx").get<std::uint64_t>() >= 200u;
  })) << proxy_stats(c);
  const auto detail = st::cli_json({"stats", "--json", "--admin", a.info.admin});
  ASSERT_TRUE(detail && detail->contains("proxy_services")) << (detail ? detail->dump() : "");
  std::uint64_t per_instance = 0;
  for (const auto& i : detail->at("proxy_services").at("instances"))
    if (i.at("service") == "api") {
      EXPECT_EQ(i.at("node"), "c") << i;
      per_instance += i.at("responses_2xx").get<std::uint64_t>();
    }
  EXPECT_EQ(per_instance, 200u) << detail->dump();

  // A split written on the issuer: the observed share follows it within 2 points over
  // 6,000 requests (binomial sigma 0.6 points at 30%).
  auto split = st::run_cli({"split", "api", "v1=70", "v2=30", "--admin", a.info.admin});
  ASSERT_EQ(split.exit_code, 0) << split.err;
  ASSERT_TRUE(st::poll_until(10s, [&] {
    auto view = st::cli_json({"routes", "--json", "--admin", a.info.admin});
    return view && view->dump().find("\"weight\":30") != std::string::npos;
  })) << "the split did not reach a";
  by_app.clear();
  constexpr int requests = 6000;
  ASSERT_TRUE(all_ok(outbound, requests, by_app, failure)) << failure;
  const double v2_share = static_cast<double>(by_app["v2"]) / requests;
  EXPECT_NEAR(v2_share, 0.30, 0.02) << "v1 " << by_app["v1"] << ", v2 " << by_app["v2"];

  // /metrics shows the service's requests and latency histogram, and promtool-valid names.
  const auto metrics = st::http_get(a.info.metrics, "/metrics");
  EXPECT_NE(metrics.find("starling_proxy_service_requests_total{service=\"api\"}"),
            std::string::npos);
  EXPECT_NE(metrics.find("starling_proxy_request_duration_seconds_bucket{service=\"api\",le="),
            std::string::npos);
  EXPECT_NE(metrics.find("starling_proxy_instance_requests_total{service=\"api\",instance="),
            std::string::npos);
  const auto on_c = st::http_get(c.info.metrics, "/metrics");
  EXPECT_NE(on_c.find("starling_proxy_inbound_service_requests_total{service=\"api\"}"),
            std::string::npos);
}

TEST_F(proxy_test, grpc_calls_cross_the_mesh_each_balanced_on_its_own_with_their_trailers) {
  if (!grpc_ready())
    GTEST_SKIP() << "no python3-grpcio (scripts/install-deps.sh installs it)";
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& c = nodes_.at("c");
  // Two gRPC servers behind c, registered as grpc (http2): c speaks HTTP/2 to them.
  for (const std::string name : {"g1", "g2"})
    serve_grpc(c, name);
  ASSERT_FALSE(HasFailure());
  std::string outbound;
  ASSERT_TRUE(st::poll_until(20s, [&] {
    outbound = outbound_of(a, "echo");
    return !outbound.empty() && routable_on(a, "echo") == 2;
  })) << "a has no outbound listener for echo, or not both instances";
  const auto services = st::cli_json({"services", "--json", "--admin", a.info.admin});
  ASSERT_TRUE(services.has_value());
  EXPECT_NE(services->dump().find("\"protocol\":\"http2\""), std::string::npos) << services->dump();

  // 64 concurrent calls on the client's one HTTP/2 connection to a: each is balanced on
  // its own, so both servers answer some (a connection-level balancer would send all 64 to
  // one); every answer comes with its trailers (gRPC's status is one).
  auto& client = procs_.spawn({python_, grpc_script_, "call", outbound, "64"}, "grpc-call");
  const auto code = client.wait(60s);
  ASSERT_EQ(code, std::optional<int>{0}) << client.stderr_text();
  const auto out = nlohmann::json::parse(client.stdout_text(), nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << client.stdout_text();
  std::cout << "the gRPC client saw: " << out.dump() << "\n";
  EXPECT_EQ(out.at("ok"), 64) << out.dump();
  EXPECT_TRUE(out.at("errors").empty()) << out.dump();
  const auto& by = out.at("by_server");
  EXPECT_GT(by.value("g1", 0), 0) << out.dump();
  EXPECT_GT(by.value("g2", 0), 0) << out.dump();
  // A server stream arrives whole; a failed call's status (trailers only) reaches the caller.
  EXPECT_EQ(out.at("stream"), nlohmann::json::parse(R"(["0","1","2","3","4"])")) << out.dump();
  // A bidirectional call in ping-pong: both directions open at once across both hops.
  ASSERT_EQ(out.at("chat").size(), 3u) << out.dump();
  for (int i = 0; i < 3; ++i) {
    const auto answer = out.at("chat").at(static_cast<std::size_t>(i)).get<std::string>();
    EXPECT_TRUE(answer == "g1:ping" + std::to_string(i) || answer == "g2:ping" + std::to_string(i))
        << out.dump();
  }
  ASSERT_TRUE(out.at("fail").is_object()) << out.dump();
  EXPECT_EQ(out.at("fail").at("code"), "NOT_FOUND") << out.dump();
  EXPECT_EQ(out.at("fail").at("details"), "no such thing") << out.dump();
  // The calls crossed the mesh: c's inbound served them.
  EXPECT_TRUE(st::poll_until(10s, [&] {
    const auto p = proxy_stats(c);
    return p.is_object() && p.at("inbound_responses_2xx").get<std::uint64_t>() >= 67u;
  })) << proxy_stats(c);
  // The failed call is an HTTP 200 whose gRPC status is NOT_FOUND: counted as a failure,
  // in `stats --json` and /metrics.
  const auto detail = st::cli_json({"stats", "--json", "--admin", a.info.admin});
  ASSERT_TRUE(detail && detail->contains("proxy_services")) << (detail ? detail->dump() : "");
  nlohmann::json echo;
  for (const auto& s : detail->at("proxy_services").at("outbound"))
    if (s.at("service") == "echo")
      echo = s;
  ASSERT_TRUE(echo.is_object()) << detail->dump();
  EXPECT_EQ(echo.at("responses_2xx"), 67) << echo;
  EXPECT_EQ(echo.at("grpc_failures"), 1) << echo;
  EXPECT_LT(echo.at("success_rate").get<double>(), 1.0) << echo;
  const auto metrics = st::http_get(a.info.metrics, "/metrics");
  EXPECT_NE(metrics.find("starling_proxy_service_grpc_failures_total{service=\"echo\"} 1\n"),
            std::string::npos);

  // An authorization rule that names node b alone: c's inbound proxy refuses a's calls, and
  // grpcio reads PERMISSION_DENIED with c's reason and why (decision 0026, amended).
  auto rule = st::run_cli(
      {"authz", "echo", "only-b", "--allow", "spiffe://it.mesh/node/b", "--admin", a.info.admin});
  ASSERT_EQ(rule.exit_code, 0) << rule.err;
  std::string seen;
  int attempt = 0;
  EXPECT_TRUE(st::poll_until(20s, [&] {
    auto& call = procs_.spawn({python_, grpc_script_, "call", outbound, "1"},
                              "grpc-denied-" + std::to_string(++attempt));
    if (call.wait(60s) != std::optional<int>{0})
      return false;
    const auto o = nlohmann::json::parse(call.stdout_text(), nullptr, false);
    if (o.is_discarded() || o.at("errors").empty())
      return false;
    seen = o.at("errors").at(0).get<std::string>();
    return seen.starts_with("call 0: PERMISSION_DENIED");
  })) << seen;
  EXPECT_EQ(seen,
            "call 0: PERMISSION_DENIED forbidden (no allow rule names spiffe://it.mesh/node/a)");
}

TEST_F(proxy_test, a_drained_node_loses_no_grpc_call) {
  if (!grpc_ready())
    GTEST_SKIP() << "no python3-grpcio (scripts/install-deps.sh installs it)";
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& b = nodes_.at("b");
  const auto& c = nodes_.at("c");
  // One gRPC server behind b, one behind c.
  const std::vector<std::string> check{"--check",         "tcp",  "--check-interval", "1s",
                                       "--check-timeout", "500ms"};
  serve_grpc(b, "gb", check);
  serve_grpc(c, "gc", check);
  ASSERT_FALSE(HasFailure());
  std::string outbound;
  ASSERT_TRUE(st::poll_until(20s, [&] {
    outbound = outbound_of(a, "echo");
    return !outbound.empty() && routable_on(a, "echo") == 2;
  }));
  const auto served_by = [](const nlohmann::json& p) {
    return p.is_object() ? p.at("inbound_responses_2xx").get<std::uint64_t>() : 0;
  };
  // Calls from one client on a, eight at a time, until the stop file appears (60 s at most).
  const auto stop_file = tmp_.path() / "stop-grpc-load";
  auto& client = procs_.spawn({python_, grpc_script_, "load", outbound, stop_file.string(), "60"},
                              "grpc-load");
  const auto stop_load = [&] {
    st::write_text(stop_file, "stop");
    return client.wait(30s);
  };
  if (!st::poll_until(
          20s, [&] { return served_by(proxy_stats(b)) > 50 && served_by(proxy_stats(c)) > 50; })) {
    (void)stop_load();
    GTEST_FAIL() << "no calls reached both servers: " << client.stdout_text()
                 << client.stderr_text();
  }
  auto drain = st::run_cli({"drain", "--admin", c.info.admin});
  EXPECT_EQ(drain.exit_code, 0) << drain.err;
  const bool withdrawn = st::poll_until(10s, [&] { return routable_on(a, "echo") == 1; });
  const bool refusing = st::poll_until(10s, [&] {
    auto p = proxy_stats(c);
    return p.is_object() && p.at("draining").get<std::uint64_t>() == 1 &&
           p.at("in_flight").get<std::uint64_t>() == 0;
  });
  const auto c_after = served_by(proxy_stats(c));
  const auto b_after = served_by(proxy_stats(b));
  std::this_thread::sleep_for(1s); // a window of load: c must serve none of it
  const auto c_later = served_by(proxy_stats(c));
  const auto b_later = served_by(proxy_stats(b));
  const auto code = stop_load();
  ASSERT_EQ(code, std::optional<int>{0}) << client.stderr_text();
  const auto out = nlohmann::json::parse(client.stdout_text(), nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << client.stdout_text();
  std::cout << "the gRPC load saw: " << out.dump() << "\n";
  EXPECT_TRUE(withdrawn) << "a still routes to c";
  EXPECT_TRUE(refusing);
  EXPECT_EQ(out.at("failed"), 0) << out.dump();
  EXPECT_GT(out.at("ok").get<int>(), 100) << out.dump();
  EXPECT_EQ(c_later, c_after) << "c still served calls after the drain";
  EXPECT_GT(b_later, b_after) << "b served no calls after the drain";
}

TEST_F(proxy_test, a_grpc_health_check_follows_the_apps_serving_status) {
  if (!grpc_ready())
    GTEST_SKIP() << "no python3-grpcio (scripts/install-deps.sh installs it)";
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& b = nodes_.at("b");
  const auto& c = nodes_.at("c");
  const std::vector<std::string> fast{"--check-interval", "1s", "--check-timeout", "500ms",
                                      "--rise",           "1",  "--fall",          "1"};
  const auto with = [&fast](std::vector<std::string> flags) {
    flags.insert(flags.end(), fast.begin(), fast.end());
    return flags;
  };
  // gb is asked about echo.Echo, gc about a service its app does not know.
  serve_grpc(b, "gb", with({"--check", "grpc", "--check-grpc-service", "echo.Echo"}));
  serve_grpc(c, "gc", with({"--check", "grpc", "--check-grpc-service", "nope.Nope"}));
  ASSERT_FALSE(HasFailure());
  // The last check's text, as the owner reports it, of instance `id`.
  const auto last_check = [](const node& owner, const std::string& id) {
    auto view = st::cli_json({"services", "--json", "--admin", owner.info.admin});
    if (view && view->contains("services"))
      for (const auto& s : view->at("services"))
        for (const auto& i : s.at("instances"))
          if (i.at("id") == id)
            return i.value("last_check", std::string{});
    return std::string{};
  };
  EXPECT_TRUE(st::poll_until(20s, [&] { return routable_on(a, "echo") == 1; }))
      << last_check(b, "gb") << " / " << last_check(c, "gc");
  EXPECT_EQ(last_check(b, "gb"), "SERVING");
  EXPECT_TRUE(st::poll_until(10s, [&] {
    return last_check(c, "gc").starts_with("gRPC status 5 NOT_FOUND");
  })) << last_check(c, "gc");
  // The app says NOT_SERVING: its instance leaves a's routable set; then back.
  st::write_text(down_file("gb"), "down");
  EXPECT_TRUE(st::poll_until(20s, [&] { return routable_on(a, "echo") == 0; }))
      << last_check(b, "gb");
  EXPECT_EQ(last_check(b, "gb"), "NOT_SERVING");
  std::filesystem::remove(down_file("gb"));
  EXPECT_TRUE(st::poll_until(20s, [&] { return routable_on(a, "echo") == 1; }))
      << last_check(b, "gb");
  EXPECT_EQ(last_check(b, "gb"), "SERVING");
  // NOT_SERVING again, then the app dies: the instance stays failing, and the views say
  // why now (a failing check's new text is written without a change of status).
  st::write_text(down_file("gb"), "down");
  EXPECT_TRUE(st::poll_until(20s, [&] { return last_check(b, "gb") == "NOT_SERVING"; }))
      << last_check(b, "gb");
  grpc_apps_.at("gb")->kill(SIGKILL);
  EXPECT_TRUE(st::poll_until(20s, [&] { return last_check(a, "gb") == "connection refused"; }))
      << last_check(a, "gb");
  EXPECT_EQ(routable_on(a, "echo"), 0u);
  // A call now: node a answers it itself, as a gRPC status grpcio reads (UNAVAILABLE, the
  // reason as its details), not an HTTP 503.
  auto& client =
      procs_.spawn({python_, grpc_script_, "call", outbound_of(a, "echo"), "1"}, "grpc-call");
  ASSERT_EQ(client.wait(60s), std::optional<int>{0}) << client.stderr_text();
  const auto out = nlohmann::json::parse(client.stdout_text(), nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << client.stdout_text();
  ASSERT_FALSE(out.at("errors").empty()) << out.dump();
  EXPECT_EQ(out.at("errors").at(0), "call 0: UNAVAILABLE no_upstream") << out.dump();
}

TEST_F(proxy_test, an_authorization_rule_refuses_a_caller_with_403_and_lets_another_pass) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& b = nodes_.at("b");
  st::http_app v1{"v1"};
  register_app("c", v1, "v1");
  ASSERT_FALSE(HasFailure());
  std::string from_a, from_b;
  ASSERT_TRUE(st::poll_until(20s, [&] {
    from_a = outbound_of(a, "api");
    from_b = outbound_of(b, "api");
    return !from_a.empty() && !from_b.empty() && routable_on(a, "api") == 1 &&
           routable_on(b, "api") == 1;
  })) << "no outbound listeners for api";
  std::map<std::string, int> by_app;
  std::string failure;
  ASSERT_TRUE(all_ok(from_a, 5, by_app, failure)) << failure;

  // Only node b may call api (the rule is enforced by c's inbound proxy).
  auto rule = st::run_cli(
      {"authz", "api", "only-b", "--allow", "spiffe://it.mesh/node/b", "--admin", a.info.admin});
  ASSERT_EQ(rule.exit_code, 0) << rule.err;
  st::http_result refused;
  ASSERT_TRUE(st::poll_until(10s,
                             [&] {
                               st::http_client client{from_a};
                               refused = client.get("/hello");
                               return refused.status == 403;
                             }))
      << "a was not refused: status " << refused.status << " " << refused.error;
  EXPECT_EQ(refused.error, "forbidden");
  st::http_client client{from_b};
  auto passed = client.get("/hello");
  EXPECT_EQ(passed.status, 200) << passed.error;
  EXPECT_EQ(passed.app, "v1");
  EXPECT_GE(proxy_stats(nodes_.at("c")).at("inbound_refused_authz").get<std::uint64_t>(), 1u);
}

// A member that turned hostile (here c, through its own proxy) floods a service on b with
// requests b's instance is slow to answer. b shares the service's request cap among the
// calling members (docs/proxy.md, "Circuit breaking"): with a cap of 4, c holds at most 2,
// its third gets 503 `overloaded` from b, and a is still served meanwhile.
TEST_F(proxy_test, a_member_flooding_a_slow_service_gets_no_more_than_half_its_request_cap) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& b = nodes_.at("b");
  const auto& c = nodes_.at("c");
  st::http_app slow{"v1"};
  register_app("b", slow, "v1");
  ASSERT_FALSE(HasFailure());
  auto policy = st::run_cli({"resilience", "api", "--max-requests", "4", "--admin", a.info.admin});
  ASSERT_EQ(policy.exit_code, 0) << policy.err;
  const auto cap_on = [](const node& n) {
    auto view = st::cli_json({"routes", "--json", "--admin", n.info.admin});
    if (view && view->contains("routes"))
      for (const auto& r : view->at("routes"))
        if (r.at("service") == "api" && r.at("resilience").is_object() &&
            r.at("resilience").at("max_requests").is_number())
          return r.at("resilience").at("max_requests").get<int>();
    return 0;
  };
  std::string from_a, from_c;
  ASSERT_TRUE(st::poll_until(30s, [&] {
    from_a = outbound_of(a, "api");
    from_c = outbound_of(c, "api");
    return !from_a.empty() && !from_c.empty() && routable_on(a, "api") == 1 &&
           routable_on(c, "api") == 1 && cap_on(b) == 4 && cap_on(c) == 4;
  })) << "api with its cap of 4 did not reach b and c";

  // c sends three held requests at once, again until b's data plane has the cap (it follows
  // the routing table a moment later): two held by the app, the third refused by b. While
  // c holds its two, a is served.
  std::string last;
  int a_status = 0;
  const bool shared = st::poll_until(30s, [&] {
    std::array<st::http_result, 3> got{};
    std::vector<std::thread> senders;
    for (auto& r : got)
      senders.emplace_back([&r, &from_c] { r = st::http_client{from_c}.get("/hold"); });
    // got is read only once the senders are joined.
    const auto refused = [&] {
      return std::count_if(got.begin(), got.end(), [](const st::http_result& r) {
        return r.status == 503 && r.error == "overloaded";
      });
    };
    const bool settled = st::poll_until(5s, [&] { return slow.held() >= 2; });
    bool ok = false;
    if (settled && slow.held() == 2) {
      a_status = st::http_client{from_a}.get("/hello").status;
      ok = true;
    }
    slow.release_held();
    for (auto& t : senders)
      t.join();
    ok = ok && refused() == 1 && a_status == 200;
    last = "held " + std::to_string(slow.held()) + ", statuses " + std::to_string(got[0].status) +
           " " + std::to_string(got[1].status) + " " + std::to_string(got[2].status) + ", a " +
           std::to_string(a_status);
    return ok;
  });
  EXPECT_TRUE(shared) << last;
  EXPECT_GE(proxy_stats(b).at("inbound_refused_share").get<std::uint64_t>(), 1u);
}

TEST_F(proxy_test, a_drained_node_stops_taking_work_and_no_request_fails) {
  start_mesh("epoll");
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  const auto& c = nodes_.at("c");
  for (const auto& [name, n] : nodes_)
    EXPECT_EQ(io_of(n), "epoll") << name;
  st::http_app on_b{"b"}, on_c{"c"};
  register_app("b", on_b, "v1");
  register_app("c", on_c, "v2");
  ASSERT_FALSE(HasFailure());
  std::string outbound;
  ASSERT_TRUE(st::poll_until(20s, [&] {
    outbound = outbound_of(a, "api");
    return !outbound.empty() && routable_on(a, "api") == 2;
  }));
  // Traffic to c only at first (a split to its version), so the drain has work to move.
  auto split = st::run_cli({"split", "api", "v1=50", "v2=50", "--admin", a.info.admin});
  ASSERT_EQ(split.exit_code, 0) << split.err;

  // Load from two clients on a, bounded in count, until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::mutex failure_mutex;
  auto load = [&] {
    st::http_client client{outbound};
    for (int i = 0; i < 50000 && !stop; ++i) {
      auto r = client.get("/work");
      if (r.status == 200) {
        ++ok;
        continue;
      }
      ++failed;
      std::lock_guard guard{failure_mutex};
      if (first_failure.empty())
        first_failure = std::to_string(r.status) + " " + r.error;
    }
  };
  std::thread l1{load}, l2{load};
  const auto stop_load = [&] {
    stop = true;
    l1.join();
    l2.join();
  };
  if (!st::poll_until(10s, [&] { return on_c.requests() > 50 && on_b.requests() > 50; })) {
    stop_load();
    GTEST_FAIL() << "no traffic to both instances: b " << on_b.requests() << ", c "
                 << on_c.requests();
  }

  auto drain = st::run_cli({"drain", "--admin", c.info.admin});
  EXPECT_EQ(drain.exit_code, 0) << drain.err;
  EXPECT_NE(drain.out.find("draining"), std::string::npos) << drain.out;
  // a withdraws c's instance, then c's inbound proxy refuses new work.
  const bool withdrawn = st::poll_until(10s, [&] { return routable_on(a, "api") == 1; });
  // After the 2 s grace c's inbound refuses new work, and what was in flight finishes.
  const bool refusing = st::poll_until(10s, [&] {
    auto p = proxy_stats(c);
    return p.is_object() && p.at("draining").get<std::uint64_t>() == 1 &&
           p.at("in_flight").get<std::uint64_t>() == 0;
  });
  const auto c_after_grace = on_c.requests();
  const auto b_after_grace = on_b.requests();
  std::this_thread::sleep_for(1s); // a window of load: c's app must see none of it
  const auto c_later = on_c.requests();
  const auto b_later = on_b.requests();
  stop_load();
  EXPECT_TRUE(withdrawn) << "a still routes to c";
  EXPECT_TRUE(refusing);
  EXPECT_EQ(failed.load(), 0) << "first failure: " << first_failure << " (" << ok.load() << " ok)";
  EXPECT_EQ(c_later, c_after_grace) << "c's app still got requests after the drain";
  EXPECT_GT(b_later, b_after_grace) << "b took no traffic after the drain";
  EXPECT_GT(ok.load(), 100);

  // Cancelled: c's instance is routable again everywhere.
  auto cancel = st::run_cli({"drain", "--cancel", "--admin", c.info.admin});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_TRUE(st::poll_until(10s, [&] { return routable_on(a, "api") == 2; }));
}

} // namespace
