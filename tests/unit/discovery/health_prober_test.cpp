// Unit tests of the health prober (gossip/discovery/health_prober.hpp) against real loopback
// servers the test runs itself (Asio, on a thread of their own, port 0). Results are awaited
// with a condition variable and a generous deadline; no assertion depends on how long a
// probe took.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <gtest/gtest.h>

#include "gossip/discovery/health_prober.hpp"
#include "grpc_health.pb.h"
#include "proxy/h2.hpp"

namespace starling::gossip::discovery {
namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

/// How long a test waits for a callback before it fails (never reached when all is well).
constexpr auto patience = 10s;

/// What a test server does with each connection it accepts.
enum class behaviour {
  answer,          ///< read the request, write `response`, close
  answer_and_hold, ///< read the request, write `response`, keep the connection open
  silent,          ///< accept, never read or write
  reset,           ///< read the request, then close with an RST
  half_close,      ///< read the request, then shut down its sending side (keeps reading)
  drip,            ///< read the request, then write a status line's start one byte at a time
};

/// A TCP server on a loopback address and a free port, run by its own thread.
class test_server {
public:
  explicit test_server(behaviour b, std::string response = {}, const char* address = "127.0.0.1")
      : behaviour_(b), response_(std::move(response)), work_(asio::make_work_guard(io_)),
        acceptor_(io_, tcp::endpoint{asio::ip::make_address(address), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread{[this] { io_.run(); }};
  }

  ~test_server() {
    io_.stop();
    thread_.join();
  }

  test_server(const test_server&) = delete;
  test_server& operator=(const test_server&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }

  /// Requests read so far (the bytes up to and including the blank line).
  [[nodiscard]] std::vector<std::string> requests() const {
    std::lock_guard guard{mutex_};
    return requests_;
  }

  /// Connections accepted so far.
  [[nodiscard]] std::size_t accepted() const { return accepted_.load(); }

private:
  struct connection {
    explicit connection(asio::io_context& io) : socket(io), timer(io) {}
    tcp::socket socket;
    asio::steady_timer timer;
    std::string in;
    std::size_t dripped = 0;
  };
  using connection_ptr = std::shared_ptr<connection>;

  void accept() {
    auto c = std::make_shared<connection>(io_);
    acceptor_.async_accept(c->socket, [this, c](const asio::error_code& ec) {
      if (ec)
        return;
      ++accepted_;
      held_.push_back(c); // kept open until the server goes
      if (behaviour_ != behaviour::silent)
        read_request(c);
      accept();
    });
  }

  void read_request(const connection_ptr& c) {
    asio::async_read_until(c->socket, asio::dynamic_buffer(c->in, 64 * 1024), "\r\n\r\n",
                           [this, c](const asio::error_code& ec, std::size_t n) {
                             if (ec)
                               return;
                             {
                               std::lock_guard guard{mutex_};
                               requests_.push_back(c->in.substr(0, n));
                             }
                             on_request(c);
                           });
  }

  void on_request(const connection_ptr& c) {
    asio::error_code ignored;
    switch (behaviour_) {
    case behaviour::answer:
    case behaviour::answer_and_hold:
      asio::async_write(c->socket, asio::buffer(response_),
                        [this, c](const asio::error_code&, std::size_t) {
                          asio::error_code ignored_too;
                          if (behaviour_ == behaviour::answer)
                            c->socket.close(ignored_too);
                        });
      break;
    case behaviour::reset:
      c->socket.set_option(asio::socket_base::linger{true, 0}, ignored);
      c->socket.close(ignored);
      break;
    case behaviour::half_close:
      c->socket.shutdown(tcp::socket::shutdown_send, ignored);
      break;
    case behaviour::drip:
      drip(c);
      break;
    case behaviour::silent:
      break;
    }
  }

  /// Writes "HTTP/1.1 200 " and then 'a' forever, one byte every 20 ms: bytes keep coming,
  /// a status line never completes.
  void drip(const connection_ptr& c) {
    static const std::string start = "HTTP/1.1 200 ";
    char byte = c->dripped < start.size() ? start[c->dripped] : 'a';
    ++c->dripped;
    asio::error_code ec;
    asio::write(c->socket, asio::buffer(&byte, 1), ec);
    if (ec)
      return;
    c->timer.expires_after(20ms);
    c->timer.async_wait([this, c](const asio::error_code& wait_ec) {
      if (!wait_ec)
        drip(c);
    });
  }

  behaviour behaviour_;
  std::string response_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  /// Server thread only.
  std::vector<connection_ptr> held_;
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::atomic<std::size_t> accepted_{0};
  std::thread thread_;
};

/// A gRPC server on 127.0.0.1 and a free port, run by its own thread: each connection is an
/// HTTP/2 server session (proxy::h2) answering grpc.health.v1.Health/Check with the serving
/// status of the service asked about (`statuses`; an unknown service gets NOT_FOUND, as
/// gRPC's health servers answer), or never answering with `answer` false.
class grpc_test_server {
public:
  explicit grpc_test_server(std::map<std::string, int> statuses, bool answer = true)
      : statuses_(std::move(statuses)), answer_(answer), work_(asio::make_work_guard(io_)),
        acceptor_(io_, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread{[this] { io_.run(); }};
  }

  ~grpc_test_server() {
    io_.stop();
    thread_.join();
  }

  grpc_test_server(const grpc_test_server&) = delete;
  grpc_test_server& operator=(const grpc_test_server&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }

  /// The paths of the calls that reached the server.
  [[nodiscard]] std::vector<std::string> paths() const {
    std::lock_guard guard{mutex_};
    return paths_;
  }

private:
  struct connection final : proxy::h2::listener {
    connection(grpc_test_server& server, asio::io_context& io) : owner(server), socket(io) {}

    void on_head(std::int32_t, const proxy::h2::head& h) override {
      std::lock_guard guard{owner.mutex_};
      owner.paths_.emplace_back(h.path);
    }
    void on_data(std::int32_t stream, std::span<const char> bytes) override {
      body.append(bytes.data(), bytes.size());
      session.consumed(stream, bytes.size());
    }
    void on_end(std::int32_t stream) override {
      if (!owner.answer_)
        return;
      grpc::health::v1::HealthCheckRequest request;
      (void)request.ParseFromString(body.size() >= 5 ? body.substr(5) : std::string{});
      const auto it = owner.statuses_.find(request.service());
      if (it == owner.statuses_.end()) {
        const std::vector<proxy::h2::field> head{{":status", "200"},
                                                 {"content-type", "application/grpc"},
                                                 {"grpc-status", "5"},
                                                 {"grpc-message", "unknown service"}};
        (void)session.submit_response(stream, head, true);
        return;
      }
      grpc::health::v1::HealthCheckResponse response;
      response.set_status(
          static_cast<grpc::health::v1::HealthCheckResponse_ServingStatus>(it->second));
      const auto message = response.SerializeAsString();
      std::string data{'\0', '\0', '\0', '\0', static_cast<char>(message.size())};
      data += message;
      const std::vector<proxy::h2::field> head{{":status", "200"},
                                               {"content-type", "application/grpc"}};
      const std::vector<proxy::h2::field> trailers{{"grpc-status", "0"}};
      (void)session.submit_response(stream, head, false);
      (void)session.send_data(stream, data);
      (void)session.end_stream(stream, trailers);
    }
    void on_reset(std::int32_t, std::uint32_t) override {}

    grpc_test_server& owner;
    tcp::socket socket;
    proxy::h2::session session{proxy::h2::role::server, proxy::h2::limits{}, *this};
    std::array<char, 16 * 1024> in{};
    std::string body;
  };
  using connection_ptr = std::shared_ptr<connection>;

  void accept() {
    auto c = std::make_shared<connection>(*this, io_);
    acceptor_.async_accept(c->socket, [this, c](const asio::error_code& ec) {
      if (ec)
        return;
      held_.push_back(c);
      read(c);
      accept();
    });
  }

  void read(const connection_ptr& c) {
    c->socket.async_read_some(
        asio::buffer(c->in), [this, c](const asio::error_code& ec, std::size_t n) {
          if (ec)
            return;
          if (c->session.receive(std::span<const char>{c->in.data(), n}) != proxy::h2::errc::ok)
            return;
          std::string out;
          c->session.take_output(out);
          asio::error_code write_ec;
          asio::write(c->socket, asio::buffer(out), write_ec);
          if (!write_ec)
            read(c);
        });
  }

  std::map<std::string, int> statuses_;
  bool answer_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  /// Server thread only.
  std::vector<connection_ptr> held_;
  mutable std::mutex mutex_;
  std::vector<std::string> paths_;
  std::thread thread_;
};

/// A port on 127.0.0.1 that nobody listens on (bound, then closed).
std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
  auto port = a.local_endpoint().port();
  a.close();
  return port;
}

/// Collects the results of probes and the threads they came on.
class results {
public:
  /// A callback that records into this collector (which must outlive the probe).
  probe_callback callback() {
    return [this](probe_result r) {
      std::lock_guard guard{mutex_};
      got_.push_back(std::move(r));
      threads_.push_back(std::this_thread::get_id());
      cv_.notify_all();
    };
  }

  /// Waits until `n` results are in (at most `patience`); true when they are.
  bool wait_for(std::size_t n) {
    std::unique_lock guard{mutex_};
    return cv_.wait_for(guard, patience, [&] { return got_.size() >= n; });
  }

  /// Waits for the first result and returns it (a failing result when none came).
  probe_result first() {
    if (!wait_for(1))
      return probe_result{false, "<no callback within the test's patience>", {}};
    std::lock_guard guard{mutex_};
    return got_.front();
  }

  [[nodiscard]] std::vector<probe_result> all() const {
    std::lock_guard guard{mutex_};
    return got_;
  }

  [[nodiscard]] std::vector<std::thread::id> threads() const {
    std::lock_guard guard{mutex_};
    return threads_;
  }

private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<probe_result> got_;
  std::vector<std::thread::id> threads_;
};

health_check_spec tcp_spec(std::chrono::milliseconds timeout = 2s) {
  health_check_spec s;
  s.timeout = timeout;
  return s;
}

health_check_spec http_spec(std::string path = "/healthz", std::uint16_t expected = 0,
                            std::chrono::milliseconds timeout = 2s) {
  health_check_spec s;
  s.kind = health_check_kind::http;
  s.path = std::move(path);
  s.expected_status = expected;
  s.timeout = timeout;
  return s;
}

health_check_spec grpc_spec(std::string service = {}, std::chrono::milliseconds timeout = 2s) {
  health_check_spec s;
  s.kind = health_check_kind::grpc;
  s.grpc_service = std::move(service);
  s.timeout = timeout;
  return s;
}

/// Every started probe ended exactly once, as ok or failed.
void expect_balanced(const health_prober& p) {
  const auto& c = p.counters();
  EXPECT_EQ(c.probes_started.load(), c.probes_ok.load() + c.probes_failed.load());
  EXPECT_LE(c.probes_timed_out.load(), c.probes_failed.load());
  EXPECT_EQ(p.in_flight(), 0u);
}

/// Runs one probe on a fresh prober and returns its result.
probe_result probe_once(const std::string& host, std::uint16_t port,
                        const health_check_spec& spec) {
  health_prober prober;
  EXPECT_TRUE(prober.start());
  results r;
  prober.probe(host, port, spec, r.callback());
  auto out = r.first();
  prober.stop();
  EXPECT_EQ(r.all().size(), 1u);
  expect_balanced(prober);
  return out;
}

TEST(health_prober, tcp_connect_passes) {
  test_server server{behaviour::silent};
  health_prober prober;
  ASSERT_TRUE(prober.start());
  results r;
  prober.probe("127.0.0.1", server.port(), tcp_spec(), r.callback());
  auto got = r.first();
  EXPECT_TRUE(got.ok) << got.text;
  EXPECT_EQ(got.text, "connected");
  EXPECT_FALSE(got.inconclusive);
  EXPECT_NE(r.threads().front(), std::this_thread::get_id()) << "on the prober's thread";
  prober.stop();
  EXPECT_EQ(prober.counters().probes_started.load(), 1u);
  EXPECT_EQ(prober.counters().probes_ok.load(), 1u);
  EXPECT_EQ(prober.counters().probes_failed.load(), 0u);
  expect_balanced(prober);
}

TEST(health_prober, connection_refused_fails) {
  auto got = probe_once("127.0.0.1", closed_port(), tcp_spec());
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "connection refused");
  got = probe_once("127.0.0.1", closed_port(), http_spec());
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "connection refused");
}

TEST(health_prober, http_200_passes_and_the_request_is_exact) {
  test_server server{behaviour::answer, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"};
  auto got = probe_once("127.0.0.1", server.port(), http_spec("/healthz?full=1"));
  EXPECT_TRUE(got.ok) << got.text;
  EXPECT_EQ(got.text, "HTTP 200");
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0],
            "GET /healthz?full=1 HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(server.port()) +
                "\r\nUser-Agent: starling-health/1\r\nConnection: close\r\n\r\n");
}

TEST(health_prober, http_503_fails_with_its_status) {
  test_server server{behaviour::answer,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"};
  auto got = probe_once("127.0.0.1", server.port(), http_spec());
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "HTTP 503 (expected 2xx)");
  EXPECT_FALSE(got.inconclusive) << "the instance's answer";
}

TEST(health_prober, expected_status_is_exact) {
  test_server server{behaviour::answer, "HTTP/1.0 204 No Content\r\n\r\n"};
  auto got = probe_once("127.0.0.1", server.port(), http_spec("/", 204));
  EXPECT_TRUE(got.ok) << got.text;
  EXPECT_EQ(got.text, "HTTP 204");
  got = probe_once("127.0.0.1", server.port(), http_spec("/", 200));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "HTTP 204 (expected 200)");
  got = probe_once("127.0.0.1", server.port(), http_spec("/", 0));
  EXPECT_TRUE(got.ok) << "any 2xx";
}

TEST(health_prober, a_silent_server_times_out) {
  test_server server{behaviour::silent};
  health_prober prober;
  ASSERT_TRUE(prober.start());
  results r;
  prober.probe("127.0.0.1", server.port(), http_spec("/", 0, 200ms), r.callback());
  auto got = r.first();
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "timed out after 200ms");
  prober.stop();
  EXPECT_EQ(prober.counters().probes_timed_out.load(), 1u);
  EXPECT_EQ(prober.counters().probes_failed.load(), 1u);
  expect_balanced(prober);
}

TEST(health_prober, a_slow_drip_still_times_out) {
  test_server server{behaviour::drip};
  auto got = probe_once("127.0.0.1", server.port(), http_spec("/", 0, 300ms));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "timed out after 300ms");
}

TEST(health_prober, garbage_is_a_malformed_response) {
  test_server server{behaviour::answer, "SSH-2.0-OpenSSH_9.2\r\n"};
  auto got = probe_once("127.0.0.1", server.port(), http_spec());
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "malformed response");
}

TEST(health_prober, nine_kib_of_headers_without_a_status_line_is_malformed) {
  std::string headers;
  while (headers.size() < 9 * 1024)
    headers += "X-Filler: " + std::string(100, 'f') + "\r\n";
  test_server server{behaviour::answer_and_hold, headers};
  // A long timeout: only the content, not the clock, may end this probe.
  auto got = probe_once("127.0.0.1", server.port(), http_spec("/", 0, 5s));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "malformed response");
}

TEST(health_prober, a_status_line_longer_than_8_kib_is_malformed) {
  test_server server{behaviour::answer_and_hold, "HTTP/1.1 200 " + std::string(9 * 1024, 'a')};
  auto got = probe_once("127.0.0.1", server.port(), http_spec("/", 0, 5s));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "malformed response") << "the read is bounded, the connection still open";
}

TEST(health_prober, peer_resets_and_closes_fail_cleanly) {
  {
    test_server server{behaviour::reset};
    auto got = probe_once("127.0.0.1", server.port(), http_spec());
    EXPECT_FALSE(got.ok);
    EXPECT_FALSE(got.text.empty());
  }
  {
    test_server server{behaviour::half_close};
    auto got = probe_once("127.0.0.1", server.port(), http_spec());
    EXPECT_FALSE(got.ok);
    EXPECT_EQ(got.text, "connection closed without a response");
  }
  {
    test_server server{behaviour::answer, "HTTP/1.1 20"};
    auto got = probe_once("127.0.0.1", server.port(), http_spec());
    EXPECT_FALSE(got.ok);
    EXPECT_EQ(got.text, "connection closed before the status line");
  }
}

TEST(health_prober, grpc_passes_on_serving_and_fails_on_anything_else) {
  grpc_test_server server{{{"", 1}, {"echo.Echo", 2}}};
  auto got = probe_once("127.0.0.1", server.port(), grpc_spec());
  EXPECT_TRUE(got.ok) << got.text;
  EXPECT_EQ(got.text, "SERVING");
  got = probe_once("127.0.0.1", server.port(), grpc_spec("echo.Echo"));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "NOT_SERVING");
  EXPECT_FALSE(got.inconclusive) << "the instance's answer";
  got = probe_once("127.0.0.1", server.port(), grpc_spec("other.Service"));
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "gRPC status 5 NOT_FOUND: unknown service");
  const std::vector<std::string> three(3, "/grpc.health.v1.Health/Check");
  EXPECT_EQ(server.paths(), three);
}

TEST(health_prober, grpc_against_an_http1_server_or_a_silent_one_fails_clearly) {
  {
    test_server server{behaviour::answer, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"};
    auto got = probe_once("127.0.0.1", server.port(), grpc_spec());
    EXPECT_FALSE(got.ok);
    EXPECT_EQ(got.text, "an HTTP/1.1 answer: the instance does not speak HTTP/2");
  }
  {
    // Speaks HTTP/2 (its SETTINGS come back), never answers the call.
    grpc_test_server server{{{"", 1}}, false};
    auto got = probe_once("127.0.0.1", server.port(), grpc_spec({}, 300ms));
    EXPECT_FALSE(got.ok);
    EXPECT_EQ(got.text, "timed out after 300ms");
    EXPECT_EQ(server.paths().size(), 1u);
  }
  {
    test_server server{behaviour::half_close};
    auto got = probe_once("127.0.0.1", server.port(), grpc_spec());
    EXPECT_FALSE(got.ok);
    EXPECT_EQ(got.text, "connection closed before the response");
  }
  {
    test_server server{behaviour::reset};
    auto got = probe_once("127.0.0.1", server.port(), grpc_spec());
    EXPECT_FALSE(got.ok);
    EXPECT_FALSE(got.text.empty());
  }
}

TEST(health_prober, hosts_must_be_ip_literals) {
  auto got = probe_once("localhost", 80, tcp_spec());
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.text, "host is not an IP address: localhost");
}

TEST(health_prober, an_invalid_spec_fails_without_connecting) {
  test_server server{behaviour::answer, "HTTP/1.1 200 OK\r\n\r\n"};
  auto got = probe_once("127.0.0.1", server.port(), http_spec("/a b"));
  EXPECT_FALSE(got.ok);
  EXPECT_NE(got.text.find("invalid check"), std::string::npos) << got.text;
  EXPECT_NE(got.text.find("path"), std::string::npos) << got.text;
  EXPECT_EQ(server.accepted(), 0u);
}

TEST(health_prober, ipv6_literals_work) {
  std::unique_ptr<test_server> server;
  try {
    server = std::make_unique<test_server>(behaviour::answer, "HTTP/1.1 200 OK\r\n\r\n", "::1");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  auto got = probe_once("::1", server->port(), http_spec());
  EXPECT_TRUE(got.ok) << got.text;
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_NE(requests[0].find("Host: [::1]:" + std::to_string(server->port()) + "\r\n"),
            std::string::npos)
      << requests[0];
  got = probe_once("[::1]", server->port(), tcp_spec());
  EXPECT_TRUE(got.ok) << "brackets are accepted too: " << got.text;
}

TEST(health_prober, refuses_probes_beyond_its_bound_at_once) {
  test_server server{behaviour::silent};
  health_prober prober{1};
  ASSERT_TRUE(prober.start());
  results r;
  prober.probe("127.0.0.1", server.port(), http_spec("/", 0, 1s), r.callback());
  prober.probe("127.0.0.1", server.port(), http_spec("/", 0, 1s), r.callback());
  ASSERT_TRUE(r.wait_for(2));
  auto all = r.all();
  // The refusal comes first: the other waits for its timeout.
  EXPECT_FALSE(all[0].ok);
  EXPECT_EQ(all[0].text, "too many checks in flight");
  EXPECT_TRUE(all[0].inconclusive) << "the prober's limit, not the instance's fault";
  EXPECT_EQ(all[0].took, std::chrono::nanoseconds{0});
  EXPECT_FALSE(all[1].inconclusive);
  EXPECT_FALSE(all[1].ok);
  EXPECT_EQ(all[1].text, "timed out after 1s");
  for (auto id : r.threads())
    EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_EQ(prober.counters().probes_refused_busy.load(), 1u);
  EXPECT_EQ(prober.counters().probes_started.load(), 1u);
  // Room again once the first is done.
  prober.probe("127.0.0.1", server.port(), tcp_spec(), r.callback());
  ASSERT_TRUE(r.wait_for(3));
  EXPECT_TRUE(r.all()[2].ok) << r.all()[2].text;
  prober.stop();
  expect_balanced(prober);
}

TEST(health_prober, stop_ends_probes_in_flight_exactly_once) {
  test_server server{behaviour::silent};
  results r;
  {
    health_prober prober;
    ASSERT_TRUE(prober.start());
    for (int i = 0; i < 5; ++i)
      prober.probe("127.0.0.1", server.port(), http_spec("/", 0, 5s), r.callback());
    EXPECT_EQ(prober.in_flight(), 5u);
    prober.stop();
    auto all = r.all();
    ASSERT_EQ(all.size(), 5u) << "every callback ran before stop() returned";
    for (const auto& got : all) {
      EXPECT_FALSE(got.ok);
      EXPECT_EQ(got.text, "prober stopped");
      EXPECT_TRUE(got.inconclusive);
    }
    EXPECT_EQ(prober.counters().probes_failed.load(), 5u);
    EXPECT_EQ(prober.counters().probes_timed_out.load(), 0u);
    expect_balanced(prober);
    prober.stop(); // idempotent
  }
  EXPECT_EQ(r.all().size(), 5u) << "and never again, destructor included";
}

TEST(health_prober, destroying_a_running_prober_ends_its_probes) {
  test_server server{behaviour::silent};
  results r;
  {
    health_prober prober;
    ASSERT_TRUE(prober.start());
    prober.probe("127.0.0.1", server.port(), tcp_spec(5s), r.callback());
    prober.probe("127.0.0.1", server.port(), http_spec("/", 0, 5s), r.callback());
  }
  auto all = r.all();
  ASSERT_EQ(all.size(), 2u);
  // The TCP probe may have connected before the destructor stopped it.
  for (const auto& got : all)
    EXPECT_TRUE(got.text == "prober stopped" || (got.ok && got.text == "connected")) << got.text;
}

TEST(health_prober, probes_when_not_running_fail_at_once_on_the_calling_thread) {
  health_prober prober;
  results r;
  prober.probe("127.0.0.1", 9, tcp_spec(), r.callback());
  ASSERT_EQ(r.all().size(), 1u) << "before probe() returned";
  EXPECT_EQ(r.all()[0].text, "prober stopped");
  EXPECT_TRUE(r.all()[0].inconclusive);
  EXPECT_EQ(r.all()[0].took, std::chrono::nanoseconds{0});
  EXPECT_EQ(r.threads()[0], std::this_thread::get_id());
  ASSERT_TRUE(prober.start());
  prober.stop();
  prober.probe("127.0.0.1", 9, tcp_spec(), r.callback());
  ASSERT_EQ(r.all().size(), 2u);
  EXPECT_EQ(r.all()[1].text, "prober stopped");
  EXPECT_EQ(prober.counters().probes_started.load(), 0u);
}

TEST(health_prober, stop_from_a_callback_is_ignored) {
  test_server server{behaviour::silent};
  health_prober prober;
  ASSERT_TRUE(prober.start());
  results r;
  auto record = r.callback();
  prober.probe("127.0.0.1", server.port(), tcp_spec(), [&prober, record](probe_result res) {
    prober.stop(); // would join its own thread: ignored
    record(std::move(res));
  });
  ASSERT_TRUE(r.wait_for(1));
  prober.probe("127.0.0.1", server.port(), tcp_spec(), r.callback());
  ASSERT_TRUE(r.wait_for(2));
  EXPECT_TRUE(r.all()[1].ok) << "still running: " << r.all()[1].text;
  prober.stop();
  expect_balanced(prober);
}

TEST(health_prober, can_be_started_again_after_stop) {
  test_server server{behaviour::answer, "HTTP/1.1 200 OK\r\n\r\n"};
  health_prober prober;
  results r;
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(prober.start());
    EXPECT_TRUE(prober.start()) << "already running";
    prober.probe("127.0.0.1", server.port(), http_spec(), r.callback());
    ASSERT_TRUE(r.wait_for(static_cast<std::size_t>(round) + 1));
    EXPECT_TRUE(r.all().back().ok) << r.all().back().text;
    prober.stop();
  }
  EXPECT_EQ(prober.counters().probes_ok.load(), 2u);
}

TEST(health_prober, many_concurrent_probes_and_callbacks_that_probe_again) {
  test_server server{behaviour::answer, "HTTP/1.1 200 OK\r\n\r\n"};
  health_prober prober{16};
  ASSERT_TRUE(prober.start());
  results r;
  // Each callback of the first wave starts one more probe from the prober's thread.
  std::atomic<int> chained{0};
  auto record = r.callback();
  auto spec = http_spec();
  for (int i = 0; i < 16; ++i)
    prober.probe("127.0.0.1", server.port(), spec, [&, record](probe_result res) {
      if (chained.fetch_add(1) < 16)
        prober.probe("127.0.0.1", server.port(), spec, record);
      record(std::move(res));
    });
  ASSERT_TRUE(r.wait_for(32));
  prober.stop();
  auto all = r.all();
  EXPECT_EQ(all.size(), 32u);
  for (const auto& got : all)
    EXPECT_TRUE(got.ok) << got.text;
  EXPECT_EQ(prober.counters().probes_ok.load(), 32u);
  EXPECT_EQ(prober.counters().probes_refused_busy.load(), 0u)
      << "a finished probe leaves room before its callback runs";
  expect_balanced(prober);
}

} // namespace
} // namespace starling::gossip::discovery
