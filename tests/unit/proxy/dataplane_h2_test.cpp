// HTTP/2 on the data plane's inbound listener (node B; decision 0022): a connection whose
// first bytes are the client preface is HTTP/2 (prior knowledge here, plain text; ALPN "h2"
// under TLS). Each stream names its service in `x-starling-service` (and may pin an instance
// with `x-starling-instance`), both removed before the app sees the request, and is served
// as an HTTP/1.1 request through the preamble path is. Real sockets on 127.0.0.1: node "b"
// alone, a blocking test client (tests/support/h2_client.hpp), and a blocking local app that
// records what it received. The client is checked first against an h2::session server in
// this process (suite h2_client), so that a failure in dataplane_h2 is the data plane's.
// Conditions are polled with a deadline; nothing sleeps to wait.
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "proxy/dataplane.hpp"
#include "proxy/h2.hpp"
#include "tests/support/h2_client.hpp"
#include "tests/support/proxy_support.hpp"

namespace {

using namespace starling::testing::proxy_support;
using namespace starling::testing::h2_support;

// ------------------------------------------------------------------ helpers

/// `n` bytes in which a lost, repeated or shifted frame shows (23 is prime to every frame
/// and window size).
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>('a' + i % 23);
  return s;
}

/// The endpoint id the caller's balancer names an instance by (dataplane.cpp:
/// "node/id/host:port"), as the preamble's `instance` field carries it.
std::string endpoint_id(const std::string& node, const std::string& id, std::uint16_t port) {
  return node + "/" + id + "/127.0.0.1:" + std::to_string(port);
}

/// A listening socket on 127.0.0.1:0; -1 on failure.
int listen_loopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(sa.sin_port);
  return fd;
}

/// Accepts one connection within `wait`; -1 when none came. Its receives time out after
/// `recv_timeout`, its sends after 10 s.
int accept_within(int listen_fd, std::chrono::milliseconds wait,
                  std::chrono::milliseconds recv_timeout) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0)
    return -1;
  const int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd < 0)
    return -1;
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(recv_timeout).count();
  timeval rcv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  timeval snd{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
  return fd;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// `s` as an unsigned number in `base`, or nothing.
std::optional<std::size_t> number(std::string_view s, int base = 10) {
  std::size_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (r.ec != std::errc{} || r.ptr == s.data())
    return std::nullopt;
  return v;
}

/// A field of a response, "" when absent.
std::string field_of(const stream_result& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? std::string{} : it->second;
}

// ------------------------------------------------------------------ the local app

/// One request as the local app received it.
struct app_request {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers; ///< lower-case names; repeats joined with ", "
  std::string body;                           ///< the payload, chunked framing removed
  bool chunked = false;                       ///< it came with transfer-encoding: chunked
};

/// An HTTP/1.1 app on 127.0.0.1:0 that records every request (head and decoded body) and
/// answers 200 with headers X-Backend, Connection: keep-alive and Keep-Alive (the last two
/// hop-by-hop: the proxy must drop them), and:
/// - target "/big/<n>": n bytes of pattern(n) under a content-length;
/// - target "/chunked": the usual body below, chunked in three pieces;
/// - else the body "<name> <method> <target> <request body bytes>" under a content-length.
/// Blocking: an accept thread and one thread per connection, each checking a stop flag
/// every 100 ms; the destructor joins them all.
class app_backend {
public:
  explicit app_backend(std::string name) : name_(std::move(name)) {
    listen_fd_ = listen_loopback(port_);
    EXPECT_GE(listen_fd_, 0);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~app_backend() {
    stop_ = true;
    accept_thread_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock{mu_};
      threads = std::move(threads_);
    }
    for (auto& t : threads)
      t.join();
    if (listen_fd_ >= 0)
      ::close(listen_fd_);
  }
  app_backend(const app_backend&) = delete;
  app_backend& operator=(const app_backend&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  /// Every request received so far, in arrival order (recorded before it is answered).
  [[nodiscard]] std::vector<app_request> requests() const {
    std::lock_guard lock{mu_};
    return requests_;
  }
  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock{mu_};
    return requests_.size();
  }

private:
  void accept_loop() {
    while (!stop_) {
      const int fd = accept_within(listen_fd_, 100ms, 100ms);
      if (fd < 0)
        continue;
      std::lock_guard lock{mu_};
      threads_.emplace_back([this, fd] {
        serve(fd);
        ::close(fd);
      });
    }
  }

  /// Appends what the connection gives to `in`; false on EOF, error or stop.
  bool read_more(int fd, std::string& in) const {
    char buf[16384];
    while (!stop_) {
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        in.append(buf, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return false;
    }
    return false;
  }

  /// Requests of one connection, one after the other, until it closes.
  void serve(int fd) {
    std::string in;
    while (true) {
      std::size_t end = 0;
      while ((end = in.find("\r\n\r\n")) == std::string::npos)
        if (!read_more(fd, in))
          return;
      app_request req = parse_head(std::string_view{in}.substr(0, end));
      std::size_t pos = end + 4;
      if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
        const auto length = number(it->second);
        if (!length)
          return;
        while (in.size() < pos + *length)
          if (!read_more(fd, in))
            return;
        req.body = in.substr(pos, *length);
        pos += *length;
      } else if (auto te = req.headers.find("transfer-encoding");
                 te != req.headers.end() && te->second.find("chunked") != std::string::npos) {
        req.chunked = true;
        while (true) {
          std::size_t eol = 0;
          while ((eol = in.find("\r\n", pos)) == std::string::npos)
            if (!read_more(fd, in))
              return;
          const auto size = number(std::string_view{in}.substr(pos, eol - pos), 16);
          if (!size)
            return;
          pos = eol + 2;
          if (*size == 0) { // the trailer section: lines up to an empty one
            while (true) {
              while ((eol = in.find("\r\n", pos)) == std::string::npos)
                if (!read_more(fd, in))
                  return;
              const bool last = eol == pos;
              pos = eol + 2;
              if (last)
                break;
            }
            break;
          }
          while (in.size() < pos + *size + 2)
            if (!read_more(fd, in))
              return;
          req.body.append(in, pos, *size);
          pos += *size + 2;
        }
      }
      in.erase(0, pos);
      const std::string answer = answer_to(req);
      {
        std::lock_guard lock{mu_};
        requests_.push_back(std::move(req));
      }
      if (!send_all(fd, answer))
        return;
    }
  }

  static app_request parse_head(std::string_view head) {
    app_request req;
    auto line_end = head.find("\r\n");
    const auto request_line = head.substr(0, line_end);
    const auto sp1 = request_line.find(' ');
    const auto sp2 = request_line.find(' ', sp1 + 1);
    req.method = std::string(request_line.substr(0, sp1));
    req.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
    while (line_end != std::string_view::npos) {
      const auto start = line_end + 2;
      line_end = head.find("\r\n", start);
      const auto line = head.substr(
          start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
      const auto colon = line.find(':');
      if (colon == std::string_view::npos)
        continue;
      std::string name;
      for (char ch : line.substr(0, colon))
        name += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
      auto& v = req.headers[name];
      v += v.empty() ? std::string(value) : ", " + std::string(value);
    }
    return req;
  }

  [[nodiscard]] std::string answer_to(const app_request& req) const {
    std::string head = "HTTP/1.1 200 OK\r\nX-Backend: " + name_ +
                       "\r\nConnection: keep-alive\r\n"
                       "Keep-Alive: timeout=5\r\n";
    if (req.target.starts_with("/big/")) {
      const auto n = number(std::string_view{req.target}.substr(5)).value_or(0);
      return head + "Content-Length: " + std::to_string(n) + "\r\n\r\n" + pattern(n);
    }
    const std::string body =
        name_ + " " + req.method + " " + req.target + " " + std::to_string(req.body.size());
    if (req.target == "/chunked") {
      std::string out = head + "Transfer-Encoding: chunked\r\n\r\n";
      const std::size_t third = body.size() / 3;
      for (const auto piece :
           {std::string_view{body}.substr(0, third), std::string_view{body}.substr(third, third),
            std::string_view{body}.substr(2 * third)}) {
        char size[16];
        const auto r = std::to_chars(size, size + sizeof size, piece.size(), 16);
        out.append(size, r.ptr).append("\r\n").append(piece).append("\r\n");
      }
      return out + "0\r\n\r\n";
    }
    return head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  std::string name_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<app_request> requests_; ///< guarded by mu_
  std::vector<std::thread> threads_;  ///< guarded by mu_; joined by the destructor
  std::thread accept_thread_;
};

// ------------------------------------------------------------------ node b

/// Node "b" alone: the inbound listener the tests speak HTTP/2 to (no TLS), serving
/// services whose instances run on b (the tests' apps).
struct node_b {
  node_b() = default;
  explicit node_b(sp::dataplane_options o) : dp(start(std::move(o))) {}
  std::unique_ptr<sp::dataplane> dp = start(options("b"));
  /// Serves `services` and waits until the I/O threads use them.
  void apply(std::vector<sg::service_view> services, std::uint64_t generation = 1) {
    dp->apply(config(std::move(services), {{"b", dp->inbound_address()}}, generation));
    ASSERT_TRUE(eventually([&] { return dp->stats().config_generation == generation; }));
  }
  [[nodiscard]] std::string address() const { return dp->inbound_address(); }
};

/// The client's stream failed to get a usable response: a reset, or a 4xx.
bool refused_by_proxy(const stream_result& r) {
  return r.reset.has_value() || (r.status >= 400 && r.status < 500);
}

// ------------------------------------------------------------------ the client, checked

/// An HTTP/2 server on 127.0.0.1:0 made of h2::session (role::server, default limits), one
/// connection at a time, on one thread: answers each request, once its stream ended, with
/// 200, `x-server: <name>` and "ok <path> <request body bytes>", or for a path "/big/<n>"
/// pattern(n), or for a path "/grpc/..." as a gRPC server does: at once `content-type:
/// application/grpc` and no length, then each DATA of the request echoed as it arrives (a
/// bidirectional call), and once the request ended, trailers `grpc-status: 0`,
/// `grpc-message: echoed` (`grpc-status: 5` for a path ending in "/Fail"; a path ending in
/// "/Unavailable", or any gRPC path once `unavailable` is set, gets a trailers-only answer
/// at once, `grpc-status: 14`); a protocol error gets the session's GOAWAY,
/// then the connection closes. Checks the test client against the project's own HTTP/2
/// core, without a data plane; serves as an app that speaks HTTP/2 (decision 0025) too.
class h2_session_server : private starling::proxy::h2::listener {
public:
  explicit h2_session_server(std::string name = "h2") : name_(std::move(name)) {
    listen_fd_ = listen_loopback(port_);
    EXPECT_GE(listen_fd_, 0);
    thread_ = std::thread([this] { run(); });
  }
  ~h2_session_server() override {
    stop_ = true;
    thread_.join();
    if (listen_fd_ >= 0)
      ::close(listen_fd_);
  }
  h2_session_server(const h2_session_server&) = delete;
  h2_session_server& operator=(const h2_session_server&) = delete;

  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  /// Connections accepted so far.
  [[nodiscard]] std::size_t connections() const { return connections_.load(); }
  /// gRPC requests of every path are answered UNAVAILABLE (a server that is going down).
  std::atomic<bool> unavailable{false};
  /// Request heads received so far.
  [[nodiscard]] std::size_t heads() const {
    std::lock_guard lock{mu_};
    return requests_.size();
  }
  /// The regular fields of each request head received so far (lower-case names; repeats
  /// joined with ", "), in order of arrival.
  [[nodiscard]] std::vector<std::map<std::string, std::string>> requests() const {
    std::lock_guard lock{mu_};
    return requests_;
  }

private:
  struct stream {
    std::string path;
    std::size_t received = 0;
    std::string out;      ///< the response body
    std::size_t sent = 0; ///< bytes of `out` handed to the session
    bool answered = false;
    bool grpc = false;
    bool fail = false;       ///< gRPC: answer NOT_FOUND
    bool peer_ended = false; ///< gRPC: the request ended
    bool ended = false;      ///< gRPC: END_STREAM (with trailers) submitted
  };

  void run() {
    while (!stop_) {
      const int fd = accept_within(listen_fd_, 100ms, 20ms);
      if (fd < 0)
        continue;
      ++connections_;
      h2::session s(h2::role::server, {}, *this);
      session_ = &s;
      serve(fd, s);
      session_ = nullptr;
      streams_.clear();
      ::close(fd);
    }
  }

  void serve(int fd, h2::session& s) {
    std::string out;
    char buf[16384];
    while (!stop_) {
      for (auto& [id, st] : streams_) {
        if (!st.answered || st.sent == st.out.size())
          continue;
        const auto piece = std::string_view{st.out}.substr(st.sent, s.room(id));
        if (piece.empty())
          continue;
        const bool last = st.sent + piece.size() == st.out.size();
        if (s.send_data(id, std::span<const char>(piece.data(), piece.size()), last && !st.grpc) ==
            h2::errc::ok)
          st.sent += piece.size();
      }
      for (auto& [id, st] : streams_) {
        if (!st.grpc || !st.peer_ended || st.ended || st.sent != st.out.size())
          continue;
        const std::vector<h2::field> trailers{
            {"grpc-status", st.fail ? "5" : "0"},
            {"grpc-message", st.fail ? "no such thing" : "echoed"}};
        EXPECT_EQ(s.end_stream(id, trailers), h2::errc::ok);
        st.ended = true;
      }
      out.clear();
      s.take_output(out);
      if (!send_all(fd, out) || s.is_done())
        return;
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        if (s.receive(std::span<const char>(buf, static_cast<std::size_t>(n))) != h2::errc::ok) {
          out.clear();
          s.take_output(out); // the GOAWAY
          send_all(fd, out);
          return;
        }
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        return;
      }
    }
  }

  void on_head(std::int32_t id, const h2::head& h) override {
    auto& st = streams_[id];
    st.path = std::string(h.path);
    st.grpc = st.path.starts_with("/grpc/");
    std::map<std::string, std::string> fields;
    for (const auto& f : h.fields) {
      auto& v = fields[std::string(f.name)];
      v += (v.empty() ? "" : ", ") + std::string(f.value);
    }
    {
      std::lock_guard lock{mu_};
      requests_.push_back(std::move(fields));
    }
    if (st.grpc && (unavailable || st.path.ends_with("/Unavailable"))) {
      const std::vector<h2::field> only{{":status", "200"},
                                        {"content-type", "application/grpc"},
                                        {"grpc-status", "14"},
                                        {"grpc-message", "try later"}};
      EXPECT_EQ(session_->submit_response(id, only, true), h2::errc::ok);
      st.answered = st.ended = true;
    } else if (st.grpc) {
      st.fail = st.path.ends_with("/Fail");
      const std::vector<h2::field> response{
          {":status", "200"}, {"content-type", "application/grpc"}, {"x-server", name_}};
      EXPECT_EQ(session_->submit_response(id, response, false), h2::errc::ok);
      st.answered = true;
    }
  }
  void on_data(std::int32_t id, std::span<const char> bytes) override {
    auto& st = streams_[id];
    st.received += bytes.size();
    if (st.grpc)
      st.out.append(bytes.data(), bytes.size());
    session_->consumed(id, bytes.size());
  }
  void on_end(std::int32_t id) override {
    auto& st = streams_[id];
    if (st.grpc) {
      st.peer_ended = true;
      return;
    }
    st.out = st.path.starts_with("/big/")
                 ? pattern(number(std::string_view{st.path}.substr(5)).value_or(0))
                 : "ok " + st.path + " " + std::to_string(st.received);
    const std::string length = std::to_string(st.out.size());
    const std::vector<h2::field> fields{
        {":status", "200"}, {"content-length", length}, {"x-server", name_}};
    EXPECT_EQ(session_->submit_response(id, fields, st.out.empty()), h2::errc::ok);
    st.answered = true;
  }
  void on_reset(std::int32_t id, std::uint32_t /*code*/) override { streams_.erase(id); }
  void on_close(std::int32_t id) override { streams_.erase(id); }

  const std::string name_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<std::size_t> connections_{0};
  mutable std::mutex mu_;
  std::vector<std::map<std::string, std::string>> requests_; ///< guarded by mu_
  std::atomic<bool> stop_{false};
  h2::session* session_ = nullptr;                   ///< the connection being served; server thread
  std::unordered_map<std::int32_t, stream> streams_; ///< server thread only
  std::thread thread_;
};

/// A header list above 64 KiB as HTTP/2 counts it (names + values + 32 per field, RFC 9113
/// 6.5.2): 2,000 fields of 10-byte values, 94,000 bytes. Not one 70,000-byte value: nghttp2
/// refuses to send a header block whose uncompressed size may exceed 64 KiB
/// (max_send_header_block_length, not settable through h2::session), so such a request never
/// leaves the client; nghttp2 estimates 12 + name + value per field, 54,000 bytes here.
std::vector<owned_field> oversized_fields(std::string service) {
  std::vector<owned_field> extra;
  for (int i = 0; i < 2000; ++i)
    extra.emplace_back("x-pad", "0123456789");
  return request_fields("GET", "/too-big", std::move(service), std::move(extra));
}

TEST(h2_client, exchanges_with_an_h2_session_server) {
  h2_session_server server;
  h2_client c(server.address());
  ASSERT_TRUE(c.connected());
  const auto get = c.exchange(request_fields("GET", "/a", "web"));
  ASSERT_NE(get, 0);
  EXPECT_EQ(c.result(get).status, 200);
  EXPECT_EQ(c.result(get).body, "ok /a 0");
  EXPECT_EQ(field_of(c.result(get), "content-length"), "7");
  EXPECT_TRUE(c.result(get).ended);

  std::vector<std::int32_t> ids;
  for (int i = 0; i < 16; ++i)
    ids.push_back(c.submit(request_fields("GET", "/s/" + std::to_string(i), "web")));
  ASSERT_TRUE(c.wait(ids));
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(c.result(ids[static_cast<std::size_t>(i)]).body, "ok /s/" + std::to_string(i) + " 0");

  const auto post = c.submit(request_fields("POST", "/up", "web"), false);
  ASSERT_TRUE(c.send_data(post, "first-", false));
  ASSERT_TRUE(c.send_data(post, pattern(300 * 1024), true)); // above the 256 KiB window
  ASSERT_TRUE(c.wait(post));
  EXPECT_EQ(c.result(post).body, "ok /up " + std::to_string(6 + 300 * 1024));

  const auto big = c.exchange(request_fields("GET", "/big/1048576", "web"));
  EXPECT_EQ(c.result(big).body, pattern(1024 * 1024));

  const auto too_big = c.exchange(oversized_fields("web"));
  ASSERT_NE(too_big, 0);
  // PROTOCOL_ERROR from the server: the block left the client (a block nghttp2 will not
  // send is reset locally with REFUSED_STREAM instead).
  EXPECT_EQ(c.result(too_big).reset, h2::protocol_error);
  EXPECT_EQ(c.result(too_big).status, 0);
  const auto after = c.exchange(request_fields("GET", "/after", "web"));
  EXPECT_EQ(c.result(after).body, "ok /after 0");
  EXPECT_EQ(c.receive_error(), h2::errc::ok);
  EXPECT_FALSE(c.goaway().has_value());
}

TEST(h2_client, sees_the_goaway_and_the_close_after_garbage) {
  h2_session_server server;
  h2_client c(server.address());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send_bytes(std::string(client_preface) + std::string(64, 'x')));
  EXPECT_TRUE(c.wait_closed());
  ASSERT_TRUE(c.goaway().has_value());
  EXPECT_EQ(c.goaway()->second, h2::protocol_error);
}

// ------------------------------------------------------------------ the data plane

TEST(dataplane_h2, a_get_reaches_the_app_and_its_answer_comes_back_on_the_stream) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto s = c.exchange(request_fields(
      "GET", "/hello?x=1", "web",
      {{"x-starling-instance", endpoint_id("b", "w1", web.port())}, {"x-custom", "kept"}}));
  ASSERT_NE(s, 0);
  const auto& r = c.result(s);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(is_whole(r)) << describe(r);
  EXPECT_EQ(r.body, "web-1 GET /hello?x=1 0");
  EXPECT_EQ(field_of(r, "x-backend"), "web-1"); // the app's "X-Backend", lower case
  EXPECT_EQ(field_of(r, "content-length"), std::to_string(r.body.size()));
  EXPECT_NE(field_of(r, "via").find("starling"), std::string::npos) << field_of(r, "via");
  EXPECT_EQ(r.headers.count("connection"), 0u); // hop-by-hop
  EXPECT_EQ(r.headers.count("keep-alive"), 0u);
  EXPECT_EQ(r.headers.count("transfer-encoding"), 0u);

  ASSERT_EQ(web.count(), 1u);
  auto seen = web.requests().front();
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/hello?x=1");
  EXPECT_EQ(seen.headers["host"], "app.test"); // from :authority
  EXPECT_EQ(seen.headers["x-custom"], "kept");
  EXPECT_EQ(seen.headers.count("x-starling-service"), 0u); // removed before the app
  EXPECT_EQ(seen.headers.count("x-starling-instance"), 0u);
  EXPECT_NE(seen.headers["via"].find("starling"), std::string::npos) << seen.headers["via"];
  EXPECT_TRUE(seen.body.empty());
  EXPECT_FALSE(seen.chunked);

  // Counted like any inbound request.
  EXPECT_TRUE(eventually([&] {
    auto st = n.dp->stats();
    const auto* in = find_inbound(st, "web");
    return in != nullptr && in->requests == 1 && in->responses_2xx == 1;
  }));
  const auto st = n.dp->stats();
  EXPECT_EQ(st.inbound_connections, 1u);
  EXPECT_GT(find_inbound(st, "web")->bytes_out, 0u);
}

TEST(dataplane_h2, a_connect_stream_tunnels_to_a_tcp_service_and_carries_the_half_close) {
  echo_backend echo;
  node_b n;
  n.apply(
      {service("echo", {instance("b", "echo", "e1", echo.port(), "", sg::service_protocol::tcp)})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto s = c.submit(tunnel_fields("echo"), false);
  ASSERT_NE(s, 0);
  // 200 once b reached the instance; no byte before.
  ASSERT_TRUE(c.wait_for([&] { return c.result(s).status != 0 || c.result(s).is_done(); }));
  EXPECT_EQ(c.result(s).status, 200) << describe(c.result(s));
  EXPECT_FALSE(c.result(s).is_done()) << describe(c.result(s));
  // Bytes both ways as they are, in pieces.
  ASSERT_TRUE(c.send_data(s, "hello", false));
  ASSERT_TRUE(c.wait_for([&] { return c.result(s).body.size() >= 5 || c.result(s).is_done(); }));
  EXPECT_EQ(c.result(s).body, "hello");
  // More than a stream's window, then our FIN (END_STREAM): the echo's answer arrives
  // whole and its FIN ends the stream.
  const auto big = pattern(300 * 1024);
  ASSERT_TRUE(c.send_data(s, big, true));
  ASSERT_TRUE(c.wait(s)) << describe(c.result(s));
  EXPECT_TRUE(is_whole(c.result(s))) << describe(c.result(s));
  EXPECT_EQ(c.result(s).body.size(), 5 + big.size());
  EXPECT_TRUE(c.result(s).body == "hello" + big);
  EXPECT_TRUE(eventually([&] {
    const auto st = n.dp->stats();
    const auto* in = find_inbound(st, "echo");
    return in != nullptr && in->requests == 1 && in->bytes_in == 5 + big.size() &&
           in->bytes_out == 5 + big.size();
  }));
}

TEST(dataplane_h2, a_tunnel_whose_caller_stops_reading_stalls_at_its_window_and_a_reset_ends_it) {
  echo_backend echo;
  node_b n;
  n.apply(
      {service("echo", {instance("b", "echo", "e1", echo.port(), "", sg::service_protocol::tcp)})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const std::size_t window = h2::limits{}.initial_stream_window;
  const auto big = pattern(600 * 1024);
  // A tunnel whose answer we hold (what arrives is not passed on: the stream's window
  // closes), `big` sent to the echo: b frames what the window lets through and the rest
  // waits in its tunnel's buffer (lent to the session, h2::session::lend_data) and in the
  // sockets.
  auto stalled = [&] {
    c.consume = false;
    const auto s = c.submit(tunnel_fields("echo"), false);
    EXPECT_NE(s, 0);
    EXPECT_TRUE(c.wait_for([&] { return c.result(s).status != 0 || c.result(s).is_done(); }));
    EXPECT_EQ(c.result(s).status, 200) << describe(c.result(s));
    EXPECT_TRUE(c.send_data(s, big, false));
    EXPECT_TRUE(c.wait_for([&] { return c.result(s).body.size() >= window; }))
        << describe(c.result(s));
    EXPECT_EQ(c.result(s).body.size(), window); // more would break flow control
    EXPECT_TRUE(c.result(s).body == big.substr(0, window));
    EXPECT_FALSE(c.result(s).is_done()) << describe(c.result(s));
    c.consume = true;
    return s;
  };
  // Passed on at last: the rest arrives whole and in order. (A tunnel that read on before
  // its lent bytes were framed would overwrite them, or find its stream still holding a
  // loan and fail it.)
  const auto s = stalled();
  ASSERT_FALSE(HasFailure());
  c.session().consumed(s, window);
  ASSERT_TRUE(c.send_data(s, {}, true)); // our FIN: the echo's follows its last byte
  ASSERT_TRUE(c.wait(s)) << describe(c.result(s));
  EXPECT_TRUE(is_whole(c.result(s))) << describe(c.result(s));
  EXPECT_EQ(c.result(s).body.size(), big.size());
  EXPECT_TRUE(c.result(s).body == big);
  // Given up on: b drops what it had lent and closes the tunnel; the connection serves on.
  const auto dropped = stalled();
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(c.session().reset(dropped, h2::cancel), h2::errc::ok);
  ASSERT_TRUE(c.flush());
  const auto ok = c.submit(tunnel_fields("echo"), false);
  ASSERT_NE(ok, 0);
  ASSERT_TRUE(c.send_data(ok, "ping", true));
  ASSERT_TRUE(c.wait(ok)) << describe(c.result(ok));
  EXPECT_EQ(c.result(ok).status, 200);
  EXPECT_EQ(c.result(ok).body, "ping");
  EXPECT_TRUE(is_whole(c.result(ok))) << describe(c.result(ok));
  EXPECT_FALSE(c.goaway().has_value());
  // All three counted; out: the whole first answer, at least the window's worth of the
  // second (what b had read from the echo counts, sent or not) and the pong; in: at most
  // what we sent (the rest of the second never left the sockets before the reset).
  EXPECT_TRUE(eventually([&] {
    const auto st = n.dp->stats();
    const auto* in = find_inbound(st, "echo");
    return in != nullptr && in->requests == 3 && in->bytes_out >= big.size() + window + 4 &&
           in->bytes_in >= big.size() + window + 4 && in->bytes_in <= 2 * big.size() + 4;
  }));
}

TEST(dataplane_h2, a_tunnel_nobody_can_serve_is_reset_before_any_byte_and_the_connection_goes_on) {
  echo_backend echo;
  app_backend web("web-1");
  std::uint16_t dead_port = 0;
  ::close(listen_loopback(dead_port)); // nothing listens there any more
  node_b n;
  n.apply(
      {service("echo", {instance("b", "echo", "e1", echo.port(), "", sg::service_protocol::tcp)}),
       service("dead", {instance("b", "dead", "d1", dead_port, "", sg::service_protocol::tcp)}),
       service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  // A service nobody serves; an HTTP service; an instance that refuses the connection;
  // and an HTTP request to a TCP service.
  const auto nobody = c.submit(tunnel_fields("nosuch"), false);
  const auto http = c.submit(tunnel_fields("web"), false);
  const auto refused = c.submit(tunnel_fields("dead"), false);
  const auto get = c.submit(request_fields("GET", "/", "echo"));
  for (const auto s : {nobody, http, refused, get}) {
    ASSERT_NE(s, 0);
    ASSERT_TRUE(c.wait(s)) << describe(c.result(s));
    EXPECT_TRUE(c.result(s).reset.has_value()) << describe(c.result(s));
    EXPECT_EQ(c.result(s).status, 0) << describe(c.result(s));
  }
  EXPECT_EQ(web.count(), 0u);
  // The connection serves on.
  const auto ok = c.submit(tunnel_fields("echo"), false);
  ASSERT_TRUE(c.send_data(ok, "ping", true));
  ASSERT_TRUE(c.wait(ok));
  EXPECT_EQ(c.result(ok).status, 200);
  EXPECT_EQ(c.result(ok).body, "ping");
  EXPECT_TRUE(is_whole(c.result(ok))) << describe(c.result(ok));
  EXPECT_FALSE(c.goaway().has_value());
}

TEST(dataplane_h2, sixteen_concurrent_streams_on_one_connection_all_get_their_answer) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 16; ++i) // all queued before one byte is written
    ids.push_back(c.submit(request_fields("GET", "/s/" + std::to_string(i), "web")));
  for (auto id : ids)
    ASSERT_NE(id, 0);
  ASSERT_TRUE(c.wait(ids));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto& r = c.result(ids[i]);
    EXPECT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.body, "web-1 GET /s/" + std::to_string(i) + " 0") << i;
    EXPECT_TRUE(is_whole(r)) << i << ": " << describe(r);
  }
  EXPECT_EQ(web.count(), 16u);
  EXPECT_TRUE(eventually([&] {
    auto st = n.dp->stats();
    const auto* in = find_inbound(st, "web");
    return in != nullptr && in->requests == 16 && in->responses_2xx == 16 &&
           samples(in->latency_counts) == 16;
  }));
  EXPECT_EQ(n.dp->stats().inbound_connections, 1u); // one connection, sixteen streams
}

TEST(dataplane_h2, a_post_with_content_length_delivers_its_body_to_the_app) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const std::string body = pattern(10 * 1024);
  const auto s = c.submit(
      request_fields("POST", "/upload", "web", {{"content-length", std::to_string(body.size())}}),
      false);
  ASSERT_NE(s, 0);
  ASSERT_TRUE(c.send_data(s, body, true));
  ASSERT_TRUE(c.wait(s));
  EXPECT_EQ(c.result(s).status, 200);
  EXPECT_EQ(c.result(s).body, "web-1 POST /upload 10240");
  EXPECT_TRUE(is_whole(c.result(s))) << describe(c.result(s));
  ASSERT_EQ(web.count(), 1u);
  auto seen = web.requests().front();
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.headers["content-length"], "10240");
  EXPECT_FALSE(seen.chunked);
  EXPECT_EQ(seen.body, body);
  EXPECT_TRUE(eventually([&] {
    auto st = n.dp->stats();
    const auto* in = find_inbound(st, "web");
    return in != nullptr && in->responses_2xx == 1 && in->bytes_in >= body.size();
  }));
}

TEST(dataplane_h2, a_post_without_content_length_arrives_chunked_and_whole) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto s = c.submit(request_fields("POST", "/stream", "web"), false);
  ASSERT_NE(s, 0);
  ASSERT_TRUE(c.flush()); // the head alone first
  // One DATA frame per call (each flushes), END_STREAM on the last.
  ASSERT_TRUE(c.send_data(s, "first-", false));
  ASSERT_TRUE(c.send_data(s, "second-", false));
  ASSERT_TRUE(c.send_data(s, "third", true));
  ASSERT_TRUE(c.wait(s));
  EXPECT_EQ(c.result(s).status, 200);
  EXPECT_EQ(c.result(s).body, "web-1 POST /stream 18");
  EXPECT_TRUE(is_whole(c.result(s))) << describe(c.result(s));
  ASSERT_EQ(web.count(), 1u);
  auto seen = web.requests().front();
  EXPECT_TRUE(seen.chunked); // no length known: chunked toward the app
  EXPECT_EQ(seen.headers.count("content-length"), 0u);
  EXPECT_EQ(seen.body, "first-second-third");
  // And the connection goes on.
  const auto next = c.exchange(request_fields("GET", "/next", "web"));
  EXPECT_EQ(c.result(next).status, 200);
}

TEST(dataplane_h2, a_chunked_answer_of_the_app_arrives_as_data_without_its_framing) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto s = c.exchange(request_fields("GET", "/chunked", "web"));
  const auto& r = c.result(s);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(is_whole(r)) << describe(r);
  EXPECT_EQ(r.body, "web-1 GET /chunked 0");
  EXPECT_EQ(r.headers.count("transfer-encoding"), 0u);
  EXPECT_EQ(r.headers.count("connection"), 0u);
}

TEST(dataplane_h2, an_unknown_service_is_503_no_upstream_on_its_stream_only) {
  app_backend web("web-1");
  node_b n;
  // "api" runs on node a only: b has no local instance of it.
  n.apply({service("web", {instance("b", "web", "w1", web.port())}),
           service("api", {instance("a", "api", "a1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto nope = c.submit(request_fields("GET", "/", "nope"));
  const auto api = c.submit(request_fields("GET", "/", "api"));
  const auto ok = c.submit(request_fields("GET", "/ok", "web"));
  ASSERT_TRUE(c.wait({nope, api, ok}));
  for (auto s : {nope, api}) {
    EXPECT_EQ(c.result(s).status, 503) << s;
    EXPECT_EQ(field_of(c.result(s), "x-starling-error"), "no_upstream") << s;
    EXPECT_TRUE(is_whole(c.result(s))) << s << ": " << describe(c.result(s));
  }
  EXPECT_EQ(c.result(ok).status, 200);
  EXPECT_EQ(c.result(ok).body, "web-1 GET /ok 0");
  EXPECT_TRUE(is_whole(c.result(ok))) << describe(c.result(ok));
  // The connection goes on, each stream on its own.
  const auto again = c.exchange(request_fields("GET", "/", "nope"));
  EXPECT_EQ(c.result(again).status, 503);
  const auto ok2 = c.exchange(request_fields("GET", "/ok2", "web"));
  EXPECT_EQ(c.result(ok2).status, 200);
  EXPECT_FALSE(c.goaway().has_value());
  EXPECT_EQ(web.count(), 2u);
  EXPECT_TRUE(eventually([&] { return generated(n.dp->stats(), "no_upstream") == 3; }))
      << generated(n.dp->stats(), "no_upstream");
}

TEST(dataplane_h2, authz_rules_without_tls_are_403_forbidden_on_each_stream) {
  app_backend web("web-1");
  node_b n;
  auto svc = service("web", {instance("b", "web", "w1", web.port())});
  svc.policies.authz.push_back({"allow-all", {"*"}, true});
  n.apply({svc});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto first = c.submit(request_fields("GET", "/1", "web"));
  const auto second = c.submit(request_fields("GET", "/2", "web"));
  ASSERT_TRUE(c.wait({first, second}));
  for (auto s : {first, second}) {
    const auto& r = c.result(s);
    EXPECT_EQ(r.status, 403) << s;
    EXPECT_EQ(field_of(r, "x-starling-error"), "forbidden") << s;
    EXPECT_NE(r.body.find("identity"), std::string::npos) << r.body; // says why
    EXPECT_TRUE(is_whole(r)) << s << ": " << describe(r);
  }
  EXPECT_EQ(web.count(), 0u);
  EXPECT_TRUE(eventually([&] { return n.dp->stats().inbound_refused_authz == 2; }))
      << n.dp->stats().inbound_refused_authz;
}

TEST(dataplane_h2, authz_rules_without_tls_refuse_a_tunnel_with_403) {
  echo_backend echo;
  node_b n;
  auto svc =
      service("echo", {instance("b", "echo", "e1", echo.port(), "", sg::service_protocol::tcp)});
  svc.policies.authz.push_back({"allow-all", {"*"}, true});
  n.apply({svc});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto s = c.submit(tunnel_fields("echo"), false);
  ASSERT_NE(s, 0);
  ASSERT_TRUE(c.wait(s)) << describe(c.result(s));
  // 403 ends the stream (no byte moved): the caller neither retries nor ejects.
  EXPECT_EQ(c.result(s).status, 403) << describe(c.result(s));
  EXPECT_TRUE(c.result(s).ended) << describe(c.result(s));
  EXPECT_TRUE(c.result(s).body.empty());
  EXPECT_TRUE(eventually([&] { return n.dp->stats().inbound_refused_authz == 1; }));
}

TEST(dataplane_h2, a_stream_without_a_valid_service_is_refused_and_the_connection_goes_on) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto missing = c.submit(request_fields("GET", "/missing", ""));
  const auto upper = c.submit(request_fields("GET", "/upper", "Web_1"));
  const auto empty = c.submit(request_fields("GET", "/empty", "", {{"x-starling-service", ""}}));
  const auto too_long = c.submit(request_fields("GET", "/long", std::string(64, 'a')));
  const std::vector<std::int32_t> bad{missing, upper, empty, too_long};
  for (auto s : bad)
    ASSERT_NE(s, 0);
  ASSERT_TRUE(c.wait(bad));
  for (auto s : bad) {
    EXPECT_TRUE(refused_by_proxy(c.result(s))) << s << ": " << describe(c.result(s));
    EXPECT_NE(c.result(s).status, 200) << s;
  }
  EXPECT_FALSE(c.peer_closed());
  const auto good = c.exchange(request_fields("GET", "/good", "web"));
  EXPECT_EQ(c.result(good).status, 200);
  EXPECT_EQ(c.result(good).body, "web-1 GET /good 0");
  ASSERT_EQ(web.count(), 1u); // no app saw the refused ones
  EXPECT_EQ(web.requests().front().target, "/good");
}

TEST(dataplane_h2, garbage_after_the_preface_ends_the_connection) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  {
    // Right after the preface, where SETTINGS must come.
    h2_client c(n.address());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send_bytes(std::string(client_preface) + std::string(2000, 'x')));
    EXPECT_TRUE(c.wait_closed());
    // The GOAWAY is read before the close (the node wrote it, then closed).
    EXPECT_TRUE(c.goaway().has_value());
  }
  {
    // On a connection that served a request: garbage where the next frame should be.
    h2_client c(n.address());
    ASSERT_TRUE(c.connected());
    const auto s = c.exchange(request_fields("GET", "/", "web"));
    ASSERT_EQ(c.result(s).status, 200);
    ASSERT_TRUE(c.send_bytes(std::string(2000, 'x')));
    EXPECT_TRUE(c.wait_closed());
    EXPECT_TRUE(c.goaway().has_value());
  }
  EXPECT_EQ(web.count(), 1u);
  // The listener still serves new connections.
  h2_client fresh(n.address());
  const auto s = fresh.exchange(request_fields("GET", "/fresh", "web"));
  EXPECT_EQ(fresh.result(s).status, 200);
}

TEST(dataplane_h2, a_peers_head_past_the_http1_limits_gets_431_or_414_and_the_next_is_served) {
  // Within HTTP/2's header list limit, past the node's HTTP/1.1 limits: the head the
  // session is given split (http1_parser::adopt_head) is held to them as a head read
  // from a socket is, before the app sees anything.
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  std::vector<owned_field> many;
  for (int i = 0; i < 150; ++i) // 100 header lines at most (http1_limits::max_headers)
    many.emplace_back("x-f" + std::to_string(i), "v");
  const auto crowded = c.exchange(request_fields("GET", "/crowded", "web", std::move(many)));
  EXPECT_EQ(c.result(crowded).status, 431) << describe(c.result(crowded));
  const auto far = c.exchange(request_fields("GET", "/" + std::string(9000, 'a'), "web"));
  EXPECT_EQ(c.result(far).status, 414) << describe(c.result(far)); // target over 8 KiB
  EXPECT_TRUE(eventually([&] {
    const auto st = n.dp->stats();
    return generated(st, "too_many_headers") == 1 && generated(st, "target_too_long") == 1;
  }));
  const auto next = c.exchange(request_fields("GET", "/next", "web"));
  EXPECT_EQ(c.result(next).status, 200);
  ASSERT_EQ(web.count(), 1u);
  EXPECT_EQ(web.requests().front().target, "/next");
}

TEST(dataplane_h2, an_oversized_header_list_resets_its_stream_and_the_next_is_served) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto big = c.exchange(oversized_fields("web"));
  ASSERT_NE(big, 0) << h2::name(c.last_submit_error());
  const auto& r = c.result(big);
  EXPECT_TRUE(r.reset.has_value() || r.status == 431) << describe(r);
  EXPECT_NE(r.status, 200);
  const auto next = c.exchange(request_fields("GET", "/next", "web"));
  EXPECT_EQ(c.result(next).status, 200);
  EXPECT_EQ(c.result(next).body, "web-1 GET /next 0");
  ASSERT_EQ(web.count(), 1u);
  EXPECT_EQ(web.requests().front().target, "/next");
}

TEST(dataplane_h2, a_response_larger_than_the_windows_arrives_whole) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  constexpr std::size_t size = 1024 * 1024; // 4x the 256 KiB stream window, = the connection's
  const auto s = c.exchange(request_fields("GET", "/big/" + std::to_string(size), "web"));
  const auto& r = c.result(s);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(is_whole(r)) << describe(r);
  EXPECT_EQ(field_of(r, "content-length"), std::to_string(size));
  ASSERT_EQ(r.body.size(), size);
  EXPECT_TRUE(r.body == pattern(size)); // not EXPECT_EQ: a mismatch would print 2 MiB
  // The windows reopened: the connection goes on.
  const auto next = c.exchange(request_fields("GET", "/big/" + std::to_string(size), "web"));
  EXPECT_EQ(c.result(next).body.size(), size);
  EXPECT_TRUE(eventually([&] {
    auto st = n.dp->stats();
    const auto* in = find_inbound(st, "web");
    return in != nullptr && in->responses_2xx == 2 && in->bytes_out >= 2 * size;
  }));
}

// A peer that opens streams and cancels them in a loop (rapid reset, CVE-2023-44487), as a
// member holding a valid certificate could, loses its connection once the burst of 1,000
// resets is spent (h2::limits); the node holds nothing for those streams and serves on.
TEST(dataplane_h2, opening_and_cancelling_streams_in_a_loop_costs_the_peer_its_connection) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  // Each request names a service B does not have, and its body never comes, so no app is
  // involved and B's side of the stream stays open until the reset.
  int cancelled = 0;
  for (int i = 0; i < 1500 && !c.peer_closed(); ++i) {
    const auto id = c.submit(request_fields("POST", "/r", "nosuch"), false);
    if (id == 0 || !c.flush())
      break;
    if (c.session().reset(id, h2::cancel) != h2::errc::ok || !c.flush())
      break;
    ++cancelled;
  }
  EXPECT_GE(cancelled, 1000); // the burst is let through
  // B closes the connection. (It sends GOAWAY first, but closing with our later frames
  // unread makes its kernel answer with a reset, which may discard the GOAWAY here before
  // we read it; h2_test's RapidResetBeyondTheBucketCostsThePeerItsConnection checks it.)
  EXPECT_TRUE(c.wait_closed());
  EXPECT_TRUE(eventually([&] { return n.dp->in_flight() == 0; }));
  EXPECT_EQ(web.count(), 0u);
  // Another connection is served as before.
  h2_client fresh(n.address());
  const auto s = fresh.exchange(request_fields("GET", "/after", "web"));
  EXPECT_EQ(fresh.result(s).status, 200);
  EXPECT_EQ(fresh.result(s).body, "web-1 GET /after 0");
}

// A peer that sends PINGs (or SETTINGS, or anything else that asks for an answer) and
// never reads the answers (CVE-2019-9512 and -9515's shape), as a member holding a valid
// certificate could: the answers pile up behind a full socket. B must not queue them
// without a bound: once its output is stuck and the peer's unanswered frames pass
// nghttp2's limit, the connection ends. Bounded: at most 64 MiB of PINGs (4M frames),
// pushed without blocking, until the connection ends or nothing moves for 5 s.
TEST(dataplane_h2, pings_from_a_peer_that_never_reads_cost_it_its_connection) {
  app_backend web("web-1");
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  const auto address = n.address();
  const auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ASSERT_EQ(::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr), 1);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(fd, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ASSERT_EQ(errno, EINPROGRESS);
  }
  pollfd connected{fd, POLLOUT, 0};
  ASSERT_EQ(::poll(&connected, 1, 5000), 1);

  // The preface and an empty SETTINGS frame, then PING frames (8 bytes of payload each),
  // a thousand to a send.
  std::string start = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  start.append("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  std::string pings;
  for (int i = 0; i < 1000; ++i)
    pings.append("\x00\x00\x08\x06\x00\x00\x00\x00\x00"
                 "pingpong",
                 17);
  constexpr std::size_t most = 64U << 20;
  std::size_t pushed = 0;
  bool ended = false;
  std::string_view left = start;
  auto last_progress = std::chrono::steady_clock::now();
  while (pushed < most && !ended &&
         std::chrono::steady_clock::now() - last_progress < std::chrono::seconds{5}) {
    if (left.empty())
      left = pings;
    const auto sent = ::send(fd, left.data(), left.size(), MSG_NOSIGNAL);
    if (sent > 0) {
      left.remove_prefix(static_cast<std::size_t>(sent));
      pushed += static_cast<std::size_t>(sent);
      last_progress = std::chrono::steady_clock::now();
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd p{fd, POLLOUT, 0};
      (void)::poll(&p, 1, 100); // room, an error, or 100 ms: the loop's deadline decides
      if ((p.revents & (POLLERR | POLLHUP)) != 0)
        ended = true;
      continue;
    }
    ended = true; // EPIPE, ECONNRESET: B closed the connection
  }
  ::close(fd);
  std::printf("B ended the connection after %zu bytes of PINGs\n", pushed);
  EXPECT_TRUE(ended) << "B took " << pushed << " bytes of PINGs from a peer that read none of "
                     << "its answers, and the connection is still open";
  // Another connection is served as before.
  h2_client fresh(n.address());
  const auto s = fresh.exchange(request_fields("GET", "/after", "web"));
  EXPECT_EQ(fresh.result(s).status, 200);
}

// A peer that asks for a large answer and then reads nothing (its TCP window stays shut):
// B's write to it never completes. B closes such a connection once a write has been
// pending for a whole idle period (here 2 x 200 ms, the inbound's HTTP/2 idle timeout),
// instead of holding the stream and its upstream connection for ever.
TEST(dataplane_h2, a_peer_that_stops_reading_is_closed_after_an_idle_period) {
  app_backend web("web-1");
  auto o = options("b");
  o.idle_timeout = 200ms;
  node_b n(std::move(o));
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  // Windows as large as HTTP/2 allows: flow control does not stop B, the socket does.
  h2::limits open_windows;
  open_windows.initial_stream_window = 0x7fffffff;
  open_windows.connection_window = 0x7fffffff;
  h2_client c(n.address(), 10s, open_windows);
  ASSERT_TRUE(c.connected());
  // 32 MiB: more than every socket buffer between B and this client can hold.
  const auto s = c.submit(request_fields("GET", "/big/33554432", "web"));
  ASSERT_NE(s, 0);
  ASSERT_TRUE(c.flush());
  ASSERT_TRUE(eventually([&] { return web.count() == 1; }));
  // Nothing is read from here on: B's connection ends (a reset or a close shows as an error
  // or a hang-up on this socket without reading it) and its stream with it.
  EXPECT_TRUE(eventually([&] {
    pollfd p{c.fd(), 0, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
  })) << "B still holds a connection whose peer read nothing";
  EXPECT_TRUE(eventually([&] { return n.dp->in_flight() == 0; }));
  // Another connection is served as before.
  h2_client fresh(n.address());
  const auto after = fresh.exchange(request_fields("GET", "/after", "web"));
  EXPECT_EQ(fresh.result(after).status, 200);
}

TEST(dataplane_h2, x_starling_instance_pins_the_local_instance) {
  app_backend one("web-1"), two("web-2");
  node_b n;
  n.apply({service(
      "web", {instance("b", "web", "w1", one.port()), instance("b", "web", "w2", two.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 8; ++i)
    ids.push_back(
        c.submit(request_fields("GET", "/" + std::to_string(i), "web",
                                {{"x-starling-instance", endpoint_id("b", "w2", two.port())}})));
  ASSERT_TRUE(c.wait(ids));
  for (auto s : ids) {
    EXPECT_EQ(c.result(s).status, 200) << s;
    EXPECT_TRUE(is_whole(c.result(s))) << s << ": " << describe(c.result(s));
    EXPECT_EQ(field_of(c.result(s), "x-backend"), "web-2") << s;
  }
  EXPECT_EQ(one.count(), 0u);
  EXPECT_EQ(two.count(), 8u);
}

TEST(dataplane_h2, draining_says_goaway_lets_the_open_stream_finish_then_closes) {
  // A draining node tells each peer's HTTP/2 connection GOAWAY (NO_ERROR, naming the last
  // stream it took): the peer opens no new stream on it and sends new requests elsewhere,
  // the stream in flight gets its whole answer, and the connection then closes.
  http_backend web("web-1", backend_mode::hold);
  node_b n;
  n.apply({service("web", {instance("b", "web", "w1", web.port())})});
  h2_client c(n.address());
  ASSERT_TRUE(c.connected());
  const auto s = c.submit(request_fields("GET", "/held", "web"));
  ASSERT_NE(s, 0);
  ASSERT_TRUE(c.flush());
  ASSERT_TRUE(eventually([&] { return web.requests() == 1; }));

  n.dp->set_draining(true);
  ASSERT_TRUE(c.wait_goaway());
  EXPECT_EQ(c.goaway()->first, s) << "the last stream B took";
  EXPECT_EQ(c.goaway()->second, h2::no_error);
  EXPECT_FALSE(c.peer_closed()) << "closed with a stream still open";
  EXPECT_FALSE(c.result(s).is_done());

  web.release();
  ASSERT_TRUE(c.wait(s));
  const auto& r = c.result(s);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(is_whole(r)) << describe(r);
  EXPECT_EQ(r.body, "web-1");
  EXPECT_TRUE(c.wait_closed()) << "the connection stays open after its last stream";
}

// A request waiting for an HTTP/2 connection to a peer that is still being made when the
// data plane stops ends with the stop: nothing of it is left for after the I/O thread's
// loop is gone (the revoked node of proxy_nginx_test stopped this way under traffic, its
// requests waiting for connections its peers would no longer take). The peer here is a
// listener whose queue is full: the kernel answers no SYN, so the connect stays pending.
// (With STARLING_TEST_HOP=http1, the same for an HTTP/1.1 connection to the peer.)
TEST(dataplane_h2, a_request_waiting_for_a_peer_connection_ends_with_the_stop) {
  std::uint16_t port = 0;
  const int full = listen_loopback(port);
  ASSERT_GE(full, 0);
  ASSERT_EQ(::listen(full, 0), 0); // one queued connection fills it
  const int filler = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(filler, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  ASSERT_EQ(::connect(filler, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);

  auto o = options("a");
  o.connect_timeout = 60s; // the stop, not the timeout, ends the wait
  auto dp = start(o);
  dp->apply(config({service("web", {instance("b", "web", "1", 8080)})},
                   {{"a", dp->inbound_address()}, {"b", "127.0.0.1:" + std::to_string(port)}}));
  client c(outbound(*dp, "web"));
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return dp->in_flight() == 1; }));
  if (test_h2_hop())
    EXPECT_FALSE(eventually([&] { return dp->stats().upstream_connects > 0; }, 200ms))
        << "the peer took the connection: the request is not waiting for it";
  else // HTTP/1.1 counts a connection when its connect starts: the request still waits
    EXPECT_FALSE(eventually([&] { return dp->in_flight() != 1; }, 200ms))
        << "the request did not wait for the peer's connection";
  dp->stop();
  EXPECT_EQ(dp->in_flight(), 0u) << "a request outlived the data plane's stop";
  ::close(filler);
  ::close(full);
}

// Stopping while connections to a peer are made and lost all the time (a peer that closes
// each one after its first bytes, as the peers of a revoked node do): whatever the I/O
// thread's last turn made is closed with the rest, and nothing outlives the stop. Before,
// an HTTP/2 connection whose dial completed in the turn that ran the stop stayed in the
// worker's registry, and destroying the data plane then closed it through the destroyed
// loop: a crash (SIGSEGV, or "pure virtual method called") of the revoked node in
// proxy_nginx_test (2 of 45 runs here, three at a time). Each round stops at another moment of
// the churn; the crash, when the bug is back, ends this test binary. After each round no
// descriptor of the data plane is left open: an accept that completed in the kernel just as
// its listener closed made one that nobody took, and its client waited until its timeout.
// ------------------------------------------------------------------ apps that speak HTTP/2

// Decision 0025: an app's HTTP/2 connection (prior knowledge, as gRPC clients make it) to an
// outbound listener is served stream by stream, each a request balanced on its own; an
// instance registered as http2 gets its requests as streams of one connection.

/// Node a's and node b's data planes, both serving `services`; a reaches b's inbound.
struct two_nodes {
  explicit two_nodes(sp::dataplane_options ao = options("a")) : a(start(std::move(ao))) {}
  std::unique_ptr<sp::dataplane> a;
  node_b b;
  void apply(const std::vector<sg::service_view>& services) {
    b.apply(services);
    a->apply(config(services, {{"a", a->inbound_address()}, {"b", b.address()}}));
    ASSERT_TRUE(eventually([&] { return a->stats().config_generation == 1; }));
  }
};

/// One gRPC-like app ("grpc-1") behind node b, the only instance of the http2 service
/// "echo" that both nodes serve (beside `more`); node a made with `ao`.
struct echo_behind_b {
  explicit echo_behind_b(sp::dataplane_options ao = options("a"),
                         std::vector<sg::service_view> more = {})
      : n(std::move(ao)) {
    more.push_back(
        service("echo", {instance("b", "echo", "1", app.port(), "", sg::service_protocol::http2)}));
    n.apply(more);
  }
  h2_session_server app{"grpc-1"};
  two_nodes n;
};

/// A gRPC-like call's fields to an outbound listener (no x-starling-service: the listener
/// names the service).
std::vector<owned_field> grpc_fields(std::vector<owned_field> extra = {},
                                     const std::string& method = "Say") {
  extra.emplace_back("content-type", "application/grpc");
  extra.emplace_back("te", "trailers");
  return request_fields("POST", "/grpc/echo.Echo/" + method, "", std::move(extra));
}

TEST(dataplane_h2_apps, an_apps_calls_reach_an_http2_instance_on_a_peer_with_their_trailers) {
  echo_behind_b e;
  auto& n = e.n;
  auto& app = e.app;
  h2_client c(outbound(*n.a, "echo"));
  ASSERT_TRUE(c.connected());
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 8; ++i) {
    // The app's own names for the hop's fields are dropped: it cannot pick the service
    // or instance through them.
    const auto id = c.submit(
        grpc_fields({{"x-starling-service", "other"}, {"x-starling-instance", "b/9/127.0.0.1:1"}}),
        false);
    ASSERT_NE(id, 0);
    ASSERT_TRUE(c.send_data(id, "message-" + std::to_string(i), true));
    ids.push_back(id);
  }
  ASSERT_TRUE(c.wait(ids));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto& r = c.result(ids[i]);
    ASSERT_TRUE(is_whole(r)) << describe(r);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "message-" + std::to_string(i));
    EXPECT_EQ(field_of(r, "content-type"), "application/grpc");
    EXPECT_EQ(field_of(r, "x-server"), "grpc-1");
    ASSERT_TRUE(r.trailers.contains("grpc-status")) << "the trailers were lost on the way";
    EXPECT_EQ(r.trailers.at("grpc-status"), "0");
    EXPECT_EQ(r.trailers.at("grpc-message"), "echoed");
  }
  // Node b carried every call to the app on one HTTP/2 connection.
  EXPECT_EQ(app.connections(), 1u);
  const auto seen = app.requests();
  ASSERT_EQ(seen.size(), 8u);
  for (const auto& f : seen) {
    EXPECT_EQ(f.count("te") ? f.at("te") : "", "trailers"); // gRPC servers require it
    EXPECT_FALSE(f.contains("x-starling-service"));
    EXPECT_FALSE(f.contains("x-starling-instance"));
    EXPECT_EQ(f.count("x-forwarded-for") ? f.at("x-forwarded-for") : "", "127.0.0.1");
    EXPECT_EQ(f.count("content-type") ? f.at("content-type") : "", "application/grpc");
  }
  const auto st = n.a->stats();
  const auto* out = find_service(st, "echo");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->responses_2xx, 8u);
  EXPECT_EQ(st.outbound_connections, 1u); // one app connection, eight requests
  EXPECT_TRUE(eventually([&] {            // counted once the answer's last byte left node b
    const auto bst = n.b.dp->stats();
    const auto* in = find_inbound(bst, "echo");
    return in != nullptr && in->responses_2xx == 8u;
  }));
}

TEST(dataplane_h2_apps, a_bidirectional_call_gets_each_answer_before_it_sends_the_next_message) {
  echo_behind_b e;
  auto& n = e.n;
  // Each wait below is bounded by 3 s: with a request body streamed before the response is
  // read (half duplex), the first answer never comes while the call is open.
  h2_client c(outbound(*n.a, "echo"), 3s);
  ASSERT_TRUE(c.connected());
  const auto id = c.submit(grpc_fields(), false);
  ASSERT_NE(id, 0);
  std::string sent;
  for (int i = 0; i < 4; ++i) {
    const auto message = "ping-" + std::to_string(i) + ";";
    ASSERT_TRUE(c.send_data(id, message, false));
    sent += message;
    ASSERT_TRUE(c.wait_for([&] { return c.result(id).body == sent; }))
        << "message " << i << " got no answer while the call is open: " << describe(c.result(id));
    EXPECT_EQ(c.result(id).status, 200);
    EXPECT_FALSE(c.result(id).ended);
  }
  ASSERT_TRUE(c.send_data(id, "", true)); // the client's half-close
  ASSERT_TRUE(c.wait(id));
  const auto& r = c.result(id);
  ASSERT_TRUE(is_whole(r)) << describe(r);
  EXPECT_EQ(r.body, sent);
  ASSERT_TRUE(r.trailers.contains("grpc-status"));
  EXPECT_EQ(r.trailers.at("grpc-status"), "0");
  // A second call on the same connection after it.
  const auto next = c.exchange(grpc_fields());
  ASSERT_NE(next, 0);
  EXPECT_TRUE(is_whole(c.result(next))) << describe(c.result(next));
}

TEST(dataplane_h2_apps, a_calls_grpc_timeout_replaces_the_default_request_timeout) {
  // Node a's default request timeout is 600 ms here. A call whose grpc-timeout is 5 s is
  // still open after it: each message of a bidirectional call, sent every 150 ms for
  // 1.2 s, gets its answer, and the call ends whole. (Each wait is bounded by 3 s.)
  auto o = options("a");
  o.request_timeout = 600ms;
  echo_behind_b e{std::move(o)};
  h2_client c(outbound(*e.n.a, "echo"), 3s);
  ASSERT_TRUE(c.connected());
  const auto id = c.submit(grpc_fields({{"grpc-timeout", "5S"}}), false);
  ASSERT_NE(id, 0);
  std::string sent;
  for (int i = 0; i < 8; ++i) {
    const auto message = "m" + std::to_string(i) + ";";
    ASSERT_TRUE(c.send_data(id, message, false));
    sent += message;
    ASSERT_TRUE(c.wait_for([&] { return c.result(id).body == sent || c.result(id).is_done(); }));
    ASSERT_EQ(c.result(id).body, sent) << "message " << i << ": " << describe(c.result(id));
    std::this_thread::sleep_for(150ms); // the call's age passes the default timeout
  }
  ASSERT_TRUE(c.send_data(id, "", true));
  ASSERT_TRUE(c.wait(id));
  EXPECT_TRUE(is_whole(c.result(id))) << describe(c.result(id));
  // A call without grpc-timeout keeps the default: it ends (reset, its answer begun) at
  // 600 ms, well before the client's 3 s wait.
  const auto plain = c.submit(grpc_fields(), false);
  ASSERT_NE(plain, 0);
  ASSERT_TRUE(c.send_data(plain, "x", false));
  ASSERT_TRUE(c.wait(plain));
  EXPECT_FALSE(is_whole(c.result(plain))) << describe(c.result(plain));
}

TEST(dataplane_h2_apps, a_short_grpc_timeout_ends_the_call_before_the_default) {
  // The default request timeout is 10 s (options); a call with grpc-timeout 300 ms that the
  // app keeps open ends long before it: the client's wait is bounded by 3 s.
  echo_behind_b e;
  h2_client c(outbound(*e.n.a, "echo"), 3s);
  ASSERT_TRUE(c.connected());
  const auto id = c.submit(grpc_fields({{"grpc-timeout", "300m"}}), false);
  ASSERT_NE(id, 0);
  ASSERT_TRUE(c.send_data(id, "ping;", false));
  ASSERT_TRUE(c.wait(id)) << "the call outlived its grpc-timeout: " << describe(c.result(id));
  EXPECT_FALSE(is_whole(c.result(id))) << describe(c.result(id));
  // Node a ends it (node b holds the call a second longer).
  const auto st = e.n.a->stats();
  const auto* out = find_service(st, "echo");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->timeouts, 1u);
  // A grpc-timeout on a request that is not gRPC's changes nothing; nor does an unreadable
  // one (the default applies: both answered whole at once).
  for (const auto& fields : {request_fields("GET", "/plain", "", {{"grpc-timeout", "1n"}}),
                             grpc_fields({{"grpc-timeout", "soon"}})}) {
    const auto r = c.exchange(fields);
    ASSERT_NE(r, 0);
    EXPECT_TRUE(is_whole(c.result(r))) << describe(c.result(r));
  }
}

TEST(dataplane_h2_apps, the_proxys_own_answers_to_a_grpc_call_are_grpc_statuses) {
  // Node a's default request timeout is 600 ms here. The app answers "/hold" only at the
  // end of the request, which these calls never send; "far" is an instance on a node
  // nobody can reach (its address unknown); "gone" is an instance nobody listens on, behind
  // node b; "guarded" one whose authorization rules node b cannot apply without TLS between
  // the nodes (it refuses every caller, saying why).
  auto o = options("a");
  o.request_timeout = 600ms;
  auto guarded = service(
      "guarded", {instance("b", "guarded", "1", dead_port(), "", sg::service_protocol::http2)});
  guarded.policies.authz.push_back({"allow-all", {"*"}, true});
  echo_behind_b e{
      std::move(o),
      {service("far", {instance("z", "far", "1", 1, "", sg::service_protocol::http2)}),
       service("gone", {instance("b", "gone", "1", dead_port(), "", sg::service_protocol::http2)}),
       guarded}};
  auto& n = e.n;
  // A trailers-only answer that ends the stream; the proxy may then reset the request's
  // side with NO_ERROR (RFC 9113 8.1: the request was not whole).
  const auto trailers_only = [](const stream_result& r) {
    return r.ended && r.body.empty() && (!r.reset || *r.reset == 0);
  };
  const auto held = [](std::vector<owned_field> extra) {
    extra.emplace_back("content-type", "application/grpc");
    return request_fields("POST", "/hold", "", std::move(extra));
  };
  h2_client c(outbound(*n.a, "echo"), 3s);
  ASSERT_TRUE(c.connected());
  // The call's own deadline passed: DEADLINE_EXCEEDED, in a trailers-only answer.
  const auto own = c.submit(held({{"grpc-timeout", "200m"}}), false);
  // The proxy's timeout passed: UNAVAILABLE (HTTP 504's gRPC status).
  const auto proxy = c.submit(held({}), false);
  // Not a gRPC call: the HTTP answer as before.
  const auto plain = c.submit(request_fields("POST", "/hold", ""), false);
  ASSERT_TRUE(own != 0 && proxy != 0 && plain != 0);
  ASSERT_TRUE(c.wait({own, proxy, plain}));
  for (const auto id : {own, proxy}) {
    const auto& r = c.result(id);
    EXPECT_TRUE(trailers_only(r)) << describe(r);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(field_of(r, "content-type"), "application/grpc");
    EXPECT_EQ(field_of(r, "grpc-message"), "upstream_timeout");
    EXPECT_EQ(field_of(r, "x-starling-error"), "upstream_timeout");
  }
  EXPECT_EQ(field_of(c.result(own), "grpc-status"), "4");
  EXPECT_EQ(field_of(c.result(proxy), "grpc-status"), "14");
  EXPECT_EQ(c.result(plain).status, 504) << describe(c.result(plain));
  EXPECT_EQ(field_of(c.result(plain), "grpc-status"), "");
  // A held call on `client` that a proxy answers itself: trailers-only, HTTP 200, with
  // grpc-status `status` and grpc-message `message`.
  const auto expect_answer = [&](h2_client& client, std::string_view status,
                                 std::string_view message) {
    const auto id = client.exchange(held({}));
    ASSERT_NE(id, 0);
    const auto& r = client.result(id);
    EXPECT_TRUE(trailers_only(r)) << describe(r);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(field_of(r, "grpc-status"), status);
    EXPECT_EQ(field_of(r, "grpc-message"), message);
  };
  // No instance node a can reach: UNAVAILABLE, the reason in grpc-message.
  h2_client none(outbound(*n.a, "far"), 3s);
  ASSERT_TRUE(none.connected());
  expect_answer(none, "14", "upstream_connect");
  // What node b answered itself (its instance refuses connections: 502) reaches the app
  // as a gRPC status too; counted on node a as the 502 it was.
  h2_client g(outbound(*n.a, "gone"), 3s);
  ASSERT_TRUE(g.connected());
  expect_answer(g, "14", "upstream_connect");
  // Not a gRPC request: node b's 502 passes as it is.
  const auto plain_refused = g.exchange(request_fields("POST", "/hold", ""));
  ASSERT_NE(plain_refused, 0);
  EXPECT_EQ(g.result(plain_refused).status, 502) << describe(g.result(plain_refused));
  EXPECT_EQ(field_of(g.result(plain_refused), "x-starling-error"), "upstream_connect");
  // Node b refused the caller: PERMISSION_DENIED, with b's reason and its detail (the
  // field b's answer carries it in), as an HTTP client reads them in b's 403.
  h2_client d(outbound(*n.a, "guarded"), 3s);
  ASSERT_TRUE(d.connected());
  expect_answer(d, "7", "forbidden (no caller identity (authorization rules need mTLS))");
  const auto plain_denied = d.exchange(request_fields("POST", "/hold", ""));
  ASSERT_NE(plain_denied, 0);
  EXPECT_EQ(d.result(plain_denied).status, 403);
  EXPECT_EQ(field_of(d.result(plain_denied), "x-starling-error-detail"),
            "no caller identity (authorization rules need mTLS)");
  const auto ast = n.a->stats();
  const auto* gone = find_service(ast, "gone");
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->responses_5xx, 2u);
  EXPECT_EQ(gone->grpc_failures, 0u);
  // Counted as the HTTP statuses they stand for, not as failed calls answered 200.
  const auto st = n.a->stats();
  const auto* echo = find_service(st, "echo");
  ASSERT_NE(echo, nullptr);
  EXPECT_EQ(echo->responses_5xx, 3u);
  EXPECT_EQ(echo->grpc_failures, 0u);
  EXPECT_EQ(echo->timeouts, 3u);
}

TEST(dataplane_h2_apps, failed_grpc_calls_are_counted_by_their_status_not_their_http_200) {
  access_log_lines log;
  auto o = options("a");
  o.access_log = log.sink();
  h2_session_server app("grpc-1");
  two_nodes n(std::move(o));
  n.apply(
      {service("echo", {instance("b", "echo", "1", app.port(), "", sg::service_protocol::http2)})});
  h2_client c(outbound(*n.a, "echo"));
  ASSERT_TRUE(c.connected());
  const auto ok = c.exchange(grpc_fields());
  const auto failed = c.exchange(grpc_fields({}, "Fail"));
  const auto unavailable = c.exchange(grpc_fields({}, "Unavailable"));
  ASSERT_TRUE(ok != 0 && failed != 0 && unavailable != 0);
  EXPECT_EQ(c.result(ok).trailers.at("grpc-status"), "0");
  EXPECT_EQ(c.result(failed).status, 200);
  EXPECT_EQ(c.result(failed).trailers.at("grpc-status"), "5");
  // A trailers-only answer: its status in the head, the stream ended with it.
  EXPECT_TRUE(is_whole(c.result(unavailable))) << describe(c.result(unavailable));
  EXPECT_EQ(c.result(unavailable).status, 200);
  EXPECT_EQ(field_of(c.result(unavailable), "grpc-status"), "14");
  // Three HTTP 200s, two of them failed calls: on the caller's node (service and
  // instance) and on the instance's. (Over an HTTP/1.1 hop between the nodes, the caller
  // reads the trailers at the end of the chunked body.)
  const auto st = n.a->stats();
  const auto* out = find_service(st, "echo");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->responses_2xx, 3u);
  EXPECT_EQ(out->grpc_failures, 2u);
  ASSERT_EQ(st.instances.size(), 1u);
  EXPECT_EQ(st.instances[0].responses_2xx, 3u);
  EXPECT_EQ(st.instances[0].grpc_failures, 2u);
  // The instance's node counts a call once it wrote the answer's last byte, which the
  // client may read first.
  EXPECT_TRUE(eventually([&] {
    const auto bst = n.b.dp->stats();
    const auto* in = find_inbound(bst, "echo");
    return in != nullptr && in->grpc_failures == 2u;
  }));
  // The access log names each call's gRPC status.
  std::lock_guard lock{log.mu};
  ASSERT_EQ(log.lines.size(), 3u);
  EXPECT_NE(log.lines[0].find("\"status\":200,\"grpc_status\":0,"), std::string::npos)
      << log.lines[0];
  EXPECT_NE(log.lines[1].find("\"grpc_status\":5,"), std::string::npos) << log.lines[1];
  EXPECT_NE(log.lines[2].find("\"grpc_status\":14,"), std::string::npos) << log.lines[2];
}

TEST(dataplane_h2_apps, a_unary_call_a_peer_refused_goes_to_another_node) {
  // Node b's table lags: it no longer serves echo, which a still routes to it. b answers
  // 503 no_upstream without handing the call to any app; a unary call came whole (HEADERS
  // and DATA with END_STREAM in one read), so a sends it again to c instead of failing it.
  h2_session_server on_b("grpc-b"), on_c("grpc-c");
  auto o = options("a");
  o.balancer.kind = sp::balancer_kind::round_robin;
  auto a = start(std::move(o));
  auto b = start(options("b"));
  auto c = start(options("c"));
  const auto echo = [&](bool with_b) {
    std::vector<sg::instance_view> in;
    if (with_b)
      in.push_back(instance("b", "echo", "1", on_b.port(), "", sg::service_protocol::http2));
    in.push_back(instance("c", "echo", "1", on_c.port(), "", sg::service_protocol::http2));
    return std::vector<sg::service_view>{service("echo", std::move(in))};
  };
  const sp::inbound_map inbound{
      {"a", a->inbound_address()}, {"b", b->inbound_address()}, {"c", c->inbound_address()}};
  a->apply(config(echo(true), inbound));
  b->apply(config(echo(false), inbound));
  c->apply(config(echo(true), inbound));
  ASSERT_TRUE(eventually([&] {
    return a->stats().config_generation == 1 && b->stats().config_generation == 1 &&
           c->stats().config_generation == 1;
  }));
  h2_client cl(outbound(*a, "echo"));
  ASSERT_TRUE(cl.connected());
  for (int i = 0; i < 6; ++i) {
    const auto id = cl.submit(grpc_fields(), false);
    ASSERT_NE(id, 0);
    ASSERT_TRUE(cl.send_data(id, "call-" + std::to_string(i), true));
    ASSERT_TRUE(cl.wait(id));
    const auto& r = cl.result(id);
    ASSERT_TRUE(is_whole(r)) << describe(r);
    EXPECT_EQ(r.status, 200) << "call " << i << ": " << field_of(r, "x-starling-error");
    EXPECT_EQ(field_of(r, "x-server"), "grpc-c");
    EXPECT_EQ(r.body, "call-" + std::to_string(i));
  }
  const auto st = a->stats();
  const auto* out = find_service(st, "echo");
  ASSERT_NE(out, nullptr);
  EXPECT_GE(out->retries, 3u); // every other call went to b first
  EXPECT_EQ(on_b.connections(), 0u);
}

TEST(dataplane_h2_apps, an_instance_answering_unavailable_is_ejected_though_its_answers_are_200s) {
  h2_session_server good("grpc-good"), bad("grpc-bad");
  bad.unavailable = true;
  auto o = options("a");
  o.outlier.consecutive_5xx = 3;
  o.balancer.kind = sp::balancer_kind::round_robin;
  auto a = start(std::move(o));
  a->apply(config({service(
      "echo", {instance("a", "echo", "1", good.port(), "", sg::service_protocol::http2),
               instance("a", "echo", "2", bad.port(), "", sg::service_protocol::http2)})}));
  h2_client c(outbound(*a, "echo"));
  ASSERT_TRUE(c.connected());
  int unavailable = 0;
  for (int i = 0; i < 20; ++i) {
    const auto id = c.exchange(grpc_fields());
    ASSERT_NE(id, 0);
    const auto& r = c.result(id);
    ASSERT_TRUE(is_whole(r)) << describe(r);
    EXPECT_EQ(r.status, 200);
    unavailable += field_of(r, "grpc-status") == "14" ? 1 : 0;
  }
  // Three UNAVAILABLE answers in a row from instance 2 eject it; the rest go to 1.
  EXPECT_EQ(unavailable, 3);
  EXPECT_EQ(bad.heads(), 3u);
  const auto st = a->stats();
  const auto* out = find_service(st, "echo");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->ejections, 1u);
  EXPECT_EQ(out->responses_5xx, 0u);
  EXPECT_EQ(out->grpc_failures, 3u);
}

TEST(dataplane_h2_apps, an_apps_broken_http2_gets_goaway_and_the_listener_serves_on) {
  echo_behind_b e;
  auto& n = e.n;
  const auto address = outbound(*n.a, "echo");
  {
    // Garbage right after the preface, where SETTINGS must come.
    h2_client c(address);
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send_bytes(std::string(client_preface) + std::string(2000, 'x')));
    EXPECT_TRUE(c.wait_closed());
    EXPECT_TRUE(c.goaway().has_value());
  }
  {
    // A header list over the limit: its stream is refused, the connection goes on.
    h2_client c(address);
    ASSERT_TRUE(c.connected());
    const auto big = c.exchange(oversized_fields(""));
    ASSERT_NE(big, 0);
    EXPECT_TRUE(c.result(big).reset.has_value()) << describe(c.result(big));
    const auto next = c.exchange(grpc_fields());
    ASSERT_NE(next, 0);
    EXPECT_TRUE(is_whole(c.result(next))) << describe(c.result(next));
    // Then garbage where the next frame should be.
    ASSERT_TRUE(c.send_bytes(std::string(2000, 'x')));
    EXPECT_TRUE(c.wait_closed());
    EXPECT_TRUE(c.goaway().has_value());
  }
  // The listener still serves new connections.
  h2_client fresh(address);
  const auto s = fresh.exchange(grpc_fields());
  ASSERT_NE(s, 0);
  EXPECT_TRUE(is_whole(fresh.result(s))) << describe(fresh.result(s));
  EXPECT_EQ(e.app.heads(), 2u); // the two calls; nothing of the broken ones
}

TEST(dataplane_h2_apps, each_call_on_one_app_connection_is_balanced_on_its_own) {
  h2_session_server one("grpc-1"), two("grpc-2");
  auto o = options("a");
  o.balancer.kind = sp::balancer_kind::round_robin;
  two_nodes n(std::move(o));
  n.apply(
      {service("echo", {instance("b", "echo", "1", one.port(), "", sg::service_protocol::http2),
                        instance("b", "echo", "2", two.port(), "", sg::service_protocol::http2)})});
  h2_client c(outbound(*n.a, "echo"));
  ASSERT_TRUE(c.connected());
  std::map<std::string, int> served;
  for (int i = 0; i < 20; ++i) {
    const auto id = c.exchange(grpc_fields());
    ASSERT_NE(id, 0);
    const auto& r = c.result(id);
    ASSERT_TRUE(is_whole(r)) << describe(r);
    ++served[field_of(r, "x-server")];
  }
  // Per connection (a tcp service), all twenty would have gone to one instance.
  EXPECT_EQ(served["grpc-1"], 10);
  EXPECT_EQ(served["grpc-2"], 10);
  EXPECT_EQ(one.connections(), 1u);
  EXPECT_EQ(two.connections(), 1u);
}

TEST(dataplane_h2_apps, an_apps_http2_connection_to_an_http1_service_is_served_request_by_request) {
  app_backend web("web-1");
  two_nodes n;
  n.apply({service("web", {instance("b", "web", "1", web.port())})});
  h2_client c(outbound(*n.a, "web"));
  ASSERT_TRUE(c.connected());
  const auto get = c.exchange(request_fields("GET", "/hello", ""));
  ASSERT_NE(get, 0);
  const auto& r = c.result(get);
  ASSERT_TRUE(is_whole(r)) << describe(r);
  EXPECT_EQ(r.status, 200);
  const auto post = c.submit(request_fields("POST", "/up", ""), false);
  ASSERT_TRUE(c.send_data(post, "hello body", true));
  ASSERT_TRUE(c.wait(post));
  EXPECT_EQ(c.result(post).status, 200);
  const auto got = web.requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].target, "/hello");
  EXPECT_EQ(got[1].body, "hello body");
}

TEST(dataplane_h2_apps,
     a_call_nobody_serves_gets_unavailable_on_its_stream_and_the_connection_goes_on) {
  h2_session_server app("grpc-1");
  two_nodes n;
  n.apply(
      {service("echo", {instance("b", "echo", "1", app.port(), "", sg::service_protocol::http2,
                                 sg::health_status::failing)}),
       service("live", {instance("b", "live", "1", app.port(), "", sg::service_protocol::http2)})});
  h2_client c(outbound(*n.a, "echo"));
  ASSERT_TRUE(c.connected());
  // A gRPC call gets UNAVAILABLE (HTTP 503's gRPC status) as gRPC clients read it; another
  // request the 503 itself.
  const auto first = c.exchange(grpc_fields());
  ASSERT_NE(first, 0);
  EXPECT_EQ(c.result(first).status, 200);
  EXPECT_EQ(field_of(c.result(first), "grpc-status"), "14");
  EXPECT_EQ(field_of(c.result(first), "x-starling-error"), "no_upstream");
  const auto second = c.exchange(request_fields("GET", "/x", ""));
  ASSERT_NE(second, 0);
  EXPECT_EQ(c.result(second).status, 503);
  EXPECT_FALSE(c.peer_closed());
  EXPECT_FALSE(c.goaway().has_value());
  // A CONNECT on an HTTP service's listener is refused on its stream alone.
  h2_client l(outbound(*n.a, "live"));
  ASSERT_TRUE(l.connected());
  const auto tunnel = l.exchange(tunnel_fields("live"));
  ASSERT_NE(tunnel, 0);
  EXPECT_TRUE(l.result(tunnel).reset.has_value()) << describe(l.result(tunnel));
  const auto call = l.exchange(grpc_fields());
  ASSERT_NE(call, 0);
  EXPECT_TRUE(is_whole(l.result(call))) << describe(l.result(call));
  EXPECT_EQ(l.result(call).status, 200);
}

TEST(dataplane_h2_apps, a_draining_node_keeps_serving_its_apps_http2_connections) {
  echo_behind_b e;
  auto& n = e.n;
  h2_client c(outbound(*n.a, "echo"));
  ASSERT_TRUE(c.connected());
  const auto before = c.exchange(grpc_fields());
  ASSERT_NE(before, 0);
  EXPECT_EQ(c.result(before).status, 200);
  // Draining says GOAWAY to the peers' connections into a node, not to its own apps.
  n.a->set_draining(true);
  ASSERT_TRUE(n.a->draining());
  for (int i = 0; i < 4; ++i) {
    const auto id = c.exchange(grpc_fields());
    ASSERT_NE(id, 0);
    EXPECT_TRUE(is_whole(c.result(id))) << describe(c.result(id));
    EXPECT_EQ(c.result(id).status, 200);
  }
  EXPECT_FALSE(c.goaway().has_value());
  EXPECT_FALSE(c.peer_closed());
}

TEST(dataplane_h2_apps,
     a_local_http2_instance_that_is_down_is_a_connect_failure_retried_elsewhere) {
  h2_session_server app("grpc-2");
  auto o = options("a");
  o.balancer.kind = sp::balancer_kind::round_robin;
  auto a = start(std::move(o));
  a->apply(config({service(
      "echo", {instance("a", "echo", "1", dead_port(), "", sg::service_protocol::http2),
               instance("a", "echo", "2", app.port(), "", sg::service_protocol::http2)})}));
  h2_client c(outbound(*a, "echo"));
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 6; ++i) {
    const auto id = c.exchange(request_fields("GET", "/ping", ""));
    ASSERT_NE(id, 0);
    const auto& r = c.result(id);
    ASSERT_TRUE(is_whole(r)) << describe(r);
    EXPECT_EQ(r.status, 200) << "call " << i;
    EXPECT_EQ(field_of(r, "x-server"), "grpc-2");
  }
  EXPECT_GE(a->stats().upstream_connect_failures, 1u); // instance 1 was tried, and skipped
  EXPECT_EQ(app.connections(), 1u);
}

TEST(dataplane_h2, stopping_while_peer_connections_churn_leaves_nothing_behind) {
  const auto open_descriptors = [] {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator{"/proc/self/fd"})
      ++n;
    return n;
  };
  http_backend peer("peer", backend_mode::reset);
  const std::string peer_address = "127.0.0.1:" + std::to_string(peer.port());
  const auto before = open_descriptors();
  for (int round = 0; round < 12; ++round) {
    auto dp = start(options("a"));
    dp->apply(config({service("web", {instance("b", "web", "1", 8080)})},
                     {{"a", dp->inbound_address()}, {"b", peer_address}}));
    const auto address = outbound(*dp, "web");
    std::atomic<bool> done{false};
    std::vector<std::thread> callers;
    for (int i = 0; i < 4; ++i)
      callers.emplace_back([&] {
        for (int n = 0; n < 2000 && !done.load(); ++n) {
          client c(address);
          if (c.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n"))
            (void)c.read_response(); // a 502 (the peer closed), or nothing once stopped
        }
      });
    const auto wanted = static_cast<std::uint64_t>(8 + 3 * round);
    const bool churned = eventually([&] { return dp->stats().upstream_connects >= wanted; });
    dp->stop();
    done = true;
    for (auto& t : callers)
      t.join();
    EXPECT_TRUE(churned) << "round " << round << ": only " << dp->stats().upstream_connects
                         << " connections to the peer were made";
    EXPECT_EQ(dp->in_flight(), 0u) << "round " << round;
    dp.reset(); // the crash, had a connection outlived the loop
    // The peer closes its ends when it reads their end of stream (its own thread).
    EXPECT_TRUE(eventually([&] { return open_descriptors() <= before; }))
        << "round " << round << ": " << open_descriptors() - before
        << " descriptor(s) left open after the data plane's stop";
  }
}

} // namespace
