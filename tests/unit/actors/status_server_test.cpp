// The metrics/status HTTP server (actors/status_server.hpp) over real sockets on 127.0.0.1
// (port 0): /metrics from the provider (answered from another thread, or never: 503),
// /healthz, /readyz, keep-alive and pipelining, 404 and 405, malformed and oversized heads
// refused with the connection closed, slow heads cut at the deadline, the connection bound.
// Every wait polls with a deadline.
#include <chrono>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actors/status_server.hpp"

namespace sa = starling::actors;
using namespace std::chrono_literals;

namespace {

/// A blocking client connection to the server under test.
class client {
public:
  explicit client(const std::string& endpoint) {
    const auto colon = endpoint.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      ADD_FAILURE() << "cannot connect to " << endpoint;
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

  /// Reads until `count` complete responses arrived (by content-length), the peer closed, or
  /// 10 s passed.
  std::string read_responses(std::size_t count = 1) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (complete_responses() < count && !closed_ && std::chrono::steady_clock::now() < deadline)
      read_some(100ms);
    return buffer_;
  }

  /// True once the peer closed the connection (within 10 s).
  bool wait_closed() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!closed_ && std::chrono::steady_clock::now() < deadline)
      read_some(100ms);
    return closed_;
  }

private:
  void read_some(std::chrono::milliseconds wait) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0)
      return;
    char buf[4096];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0)
      closed_ = true;
    else
      buffer_.append(buf, static_cast<std::size_t>(n));
  }

  std::size_t complete_responses() const {
    std::size_t count = 0;
    std::size_t at = 0;
    for (;;) {
      const auto end = buffer_.find("\r\n\r\n", at);
      if (end == std::string::npos)
        return count;
      const auto cl = buffer_.find("content-length: ", at);
      std::size_t body = 0;
      if (cl != std::string::npos && cl < end)
        body = std::stoul(buffer_.substr(cl + 16));
      if (buffer_.size() < end + 4 + body)
        return count;
      ++count;
      at = end + 4 + body;
    }
  }

  int fd_ = -1;
  std::string buffer_;
  bool closed_ = false;
};

struct fixture {
  explicit fixture(sa::status_server_options opts = {}) {
    if (!opts.metrics)
      opts.metrics = [](std::function<void(std::string)> reply) {
        // Answered from another thread, as the actors do.
        std::thread([reply] { reply("# TYPE up gauge\nup 1\n"); }).join();
      };
    if (!opts.ready)
      opts.ready = [this] { return ready.load(); };
    std::string error;
    server = sa::status_server::start("127.0.0.1", 0, std::move(opts), error);
    EXPECT_TRUE(server) << error;
  }
  ~fixture() {
    if (server)
      server->stop();
  }
  std::atomic<bool> ready{false};
  std::shared_ptr<sa::status_server> server;
};

TEST(status_server, serves_metrics_health_and_readiness_on_one_kept_alive_connection) {
  fixture f;
  client c{f.server->local_endpoint()};
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  auto text = c.read_responses(1);
  EXPECT_EQ(text.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << text;
  EXPECT_NE(text.find("content-type: text/plain; version=0.0.4"), std::string::npos) << text;
  EXPECT_NE(text.find("\r\n\r\n# TYPE up gauge\nup 1\n"), std::string::npos) << text;
  // Pipelined on the same connection: health, readiness (not yet), then ready.
  c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
  text = c.read_responses(3);
  EXPECT_NE(
      text.find("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("HTTP/1.1 503 Service Unavailable"), std::string::npos) << text;
  f.ready = true;
  c.send("GET /readyz?verbose HTTP/1.1\r\nHost: x\r\n\r\n");
  text = c.read_responses(4);
  EXPECT_NE(text.find("ready\n", text.find("503")), std::string::npos) << text;
  EXPECT_EQ(f.server->stats().requests.load(), 4u);
  EXPECT_EQ(f.server->stats().connections.load(), 1u);
}

TEST(status_server, unknown_paths_other_methods_and_head) {
  fixture f;
  client c{f.server->local_endpoint()};
  c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(c.read_responses(1).rfind("HTTP/1.1 404 Not Found", 0), 0u);
  client p{f.server->local_endpoint()};
  p.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(p.read_responses(1).rfind("HTTP/1.1 405 Method Not Allowed", 0), 0u);
  client h{f.server->local_endpoint()};
  h.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(h.wait_closed());
  const auto text = h.read_responses(1);
  EXPECT_NE(text.find("content-length: 3\r\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("ok\n"), std::string::npos) << "HEAD has no body: " << text;
  EXPECT_EQ(f.server->stats().not_found.load(), 1u);
}

TEST(status_server, malformed_and_oversized_heads_are_refused_and_the_connection_closed) {
  fixture f;
  client bad{f.server->local_endpoint()};
  bad.send("GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n"); // space before the colon
  ASSERT_TRUE(bad.wait_closed());
  const auto text = bad.read_responses(1);
  EXPECT_EQ(text.rfind("HTTP/1.1 400", 0), 0u) << text;
  EXPECT_NE(text.find("x-starling-error: space_before_colon"), std::string::npos) << text;
  client big{f.server->local_endpoint()};
  big.send("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  ASSERT_TRUE(big.wait_closed());
  EXPECT_EQ(big.read_responses(1).rfind("HTTP/1.1 431", 0), 0u);
  EXPECT_EQ(f.server->stats().malformed.load(), 2u);
  // The server still serves everyone else.
  client good{f.server->local_endpoint()};
  good.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(good.read_responses(1).rfind("HTTP/1.1 200", 0), 0u);
}

TEST(status_server, a_slow_head_is_cut_and_a_silent_provider_answers_503) {
  sa::status_server_options opts;
  opts.head_timeout = 200ms;
  opts.metrics_timeout = 200ms;
  opts.metrics = [](std::function<void(std::string)>) {}; // never answers
  fixture f{std::move(opts)};
  client slow{f.server->local_endpoint()};
  slow.send("GET /metr");
  EXPECT_TRUE(slow.wait_closed());
  EXPECT_EQ(f.server->stats().timeouts.load(), 1u);
  client c{f.server->local_endpoint()};
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(c.read_responses(1).rfind("HTTP/1.1 503", 0), 0u);
}

TEST(status_server, connections_beyond_the_bound_are_closed_at_accept) {
  sa::status_server_options opts;
  opts.max_connections = 2;
  fixture f{std::move(opts)};
  client a{f.server->local_endpoint()}, b{f.server->local_endpoint()};
  // Both held open and served (the server has accepted them).
  a.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  b.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(a.read_responses(1).rfind("HTTP/1.1 200", 0), 0u);
  ASSERT_EQ(b.read_responses(1).rfind("HTTP/1.1 200", 0), 0u);
  client third{f.server->local_endpoint()};
  EXPECT_TRUE(third.wait_closed());
  EXPECT_EQ(f.server->stats().refused_connections.load(), 1u);
}

TEST(status_server, a_taken_port_is_an_error) {
  fixture f;
  const auto endpoint = f.server->local_endpoint();
  std::string error;
  auto again = sa::status_server::start(
      "127.0.0.1", static_cast<std::uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1))),
      {}, error);
  EXPECT_FALSE(again);
  EXPECT_FALSE(error.empty());
}

} // namespace
