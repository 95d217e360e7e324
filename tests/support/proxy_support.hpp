// Helpers of the data plane tests (tests/unit/proxy/dataplane_test.cpp and
// tests/unit/actors/proxy_tls_test.cpp): tiny in-test backends on 127.0.0.1 (an HTTP/1.1
// server answering with its own name, a TCP echo server), a blocking client with receive
// timeouts, and routing snapshot builders. Header-only: the including test links
// starling_proxy (for Asio).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <asio.hpp>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "proto/wire/framing.hpp"
#include "proxy.pb.h"
#include "proxy/dataplane.hpp"
#include "tests/support/loopback_socket.hpp"

namespace starling::testing::proxy_support {

namespace sp = starling::proxy;
namespace sg = starling::gossip;
using namespace std::chrono_literals;
using asio::ip::tcp;

/// Polls `pred` every 5 ms until it holds or `limit` passes.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// ------------------------------------------------------------------ backends

/// What an HTTP backend does with a request.
enum class backend_mode {
  answer,        ///< 200 with its name as the body
  silent,        ///< reads requests, never answers
  hold,          ///< answers once release() is called
  reset,         ///< closes the connection after reading a request
  fail,          ///< 500 with its name as the body
  partial,       ///< a 200 head promising 100 bytes, 5 of them, then a close
  upgrade,       ///< 101 Switching Protocols, then echoes every byte
  one_shot,      ///< answers like `answer` (keep-alive), then closes the connection
  http10,        ///< an HTTP/1.0 200 with no content-length (body until close), then closes
  http10_length, ///< an HTTP/1.0 200 with a content-length, then closes
  chunks,        ///< a 200 whose chunked body is its name repeated to 4,000 bytes, one byte
                 ///< per chunk, all written at once
  interim,       ///< a 103 Early Hints (with a link field) before each `answer`
  trailers,      ///< a 200 whose chunked body is its name, then trailers grpc-status and x-sum
};

/// An HTTP/1.1 server on 127.0.0.1:0 with one Asio thread. Answers
/// "200, body = name" with headers x-backend and x-seen-xff (the x-forwarded-for it got).
class http_backend {
public:
  explicit http_backend(std::string name, backend_mode mode = backend_mode::answer)
      : name_(std::move(name)), mode_(mode),
        acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~http_backend() {
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
      for (auto& c : conns_)
        if (auto s = c.lock())
          s->sock.close(ignored);
      held_.clear();
    });
    io_.stop();
    thread_.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] int connections() const { return accepted_.load(); }
  [[nodiscard]] int requests() const { return requests_.load(); }
  /// Connections this backend closed itself (mode one_shot).
  [[nodiscard]] int closed() const { return closed_.load(); }
  /// Answers every held request (mode hold).
  void release() {
    asio::post(io_, [this] {
      released_ = true;
      auto held = std::move(held_);
      for (auto& h : held)
        h();
    });
  }

private:
  struct conn {
    explicit conn(tcp::socket s) : sock(std::move(s)) {}
    tcp::socket sock;
    std::string in;
    std::array<char, 4096> buf{};
    std::string out;
  };

  void accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket s) {
      if (ec)
        return;
      ++accepted_;
      auto c = std::make_shared<conn>(std::move(s));
      conns_.push_back(c);
      read(c);
      accept();
    });
  }

  void read(const std::shared_ptr<conn>& c) {
    c->sock.async_read_some(asio::buffer(c->buf),
                            [this, c](const asio::error_code& ec, std::size_t n) {
                              if (ec)
                                return;
                              c->in.append(c->buf.data(), n);
                              serve(c);
                            });
  }

  /// Upgraded: echoes what is left in `in` (n bytes), then every byte read.
  void echo(const std::shared_ptr<conn>& c, std::size_t n) {
    if (n > 0) {
      c->out = c->in;
      c->in.clear();
      asio::async_write(c->sock, asio::buffer(c->out),
                        [this, c](const asio::error_code& ec, std::size_t) {
                          if (!ec)
                            echo(c, 0);
                        });
      return;
    }
    c->sock.async_read_some(asio::buffer(c->buf),
                            [this, c](const asio::error_code& ec, std::size_t got) {
                              if (ec)
                                return;
                              c->in.append(c->buf.data(), got);
                              echo(c, got);
                            });
  }

  void serve(const std::shared_ptr<conn>& c) {
    auto end = c->in.find("\r\n\r\n");
    if (end == std::string::npos) {
      read(c);
      return;
    }
    std::string head = c->in.substr(0, end + 4);
    std::size_t length = 0;
    std::string xff;
    std::string lower;
    for (char ch : head)
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (auto p = lower.find("\r\ncontent-length:"); p != std::string::npos)
      length = std::stoul(lower.substr(p + 17));
    if (auto p = lower.find("\r\nx-forwarded-for:"); p != std::string::npos) {
      auto e = head.find("\r\n", p + 2);
      xff = head.substr(p + 18, e - p - 18);
      while (!xff.empty() && xff.front() == ' ')
        xff.erase(0, 1);
    }
    if (lower.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
      // Test bodies hold no "\r\n0\r\n" of their own: the last chunk starts the body or
      // follows a chunk's CRLF, and its trailer section ends with an empty line. The
      // answer echoes the raw chunks.
      auto last =
          c->in.compare(end + 4, 3, "0\r\n") == 0 ? end + 4 : c->in.find("\r\n0\r\n", end + 4);
      if (last != std::string::npos && last != end + 4)
        last += 2;
      const auto section_end = last == std::string::npos ? last : c->in.find("\r\n\r\n", last + 1);
      if (section_end == std::string::npos) {
        read(c);
        return;
      }
      length = section_end + 4 - (end + 4);
    }
    if (c->in.size() < end + 4 + length) {
      read(c);
      return;
    }
    std::string body = c->in.substr(end + 4, length);
    c->in.erase(0, end + 4 + length);
    ++requests_;
    if (mode_ == backend_mode::silent) {
      read(c);
      return;
    }
    if (mode_ == backend_mode::partial || mode_ == backend_mode::upgrade) {
      c->out = mode_ == backend_mode::partial
                   ? "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello"
                   : "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
                     "upgrade: test\r\n\r\n";
      auto partial = mode_ == backend_mode::partial;
      asio::async_write(c->sock, asio::buffer(c->out),
                        [this, c, partial](const asio::error_code& ec, std::size_t) {
                          asio::error_code ignored;
                          if (ec || partial)
                            c->sock.close(ignored);
                          else
                            echo(c, c->in.size());
                        });
      return;
    }
    if (mode_ == backend_mode::reset) {
      asio::error_code ignored;
      c->sock.close(ignored);
      return;
    }
    std::string answer = name_ + body;
    if (mode_ == backend_mode::trailers) {
      c->out = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-backend: " + name_ + "\r\n\r\n" +
               std::to_string(name_.size()) + "\r\n" + name_ +
               "\r\n0\r\ngrpc-status: 0\r\nx-sum: 7\r\n\r\n";
      asio::async_write(c->sock, asio::buffer(c->out),
                        [this, c](const asio::error_code& ec, std::size_t) {
                          if (!ec)
                            serve(c);
                        });
      return;
    }
    if (mode_ == backend_mode::chunks) {
      c->out = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-backend: " + name_ + "\r\n\r\n";
      for (std::size_t i = 0; i < 4000; ++i)
        c->out += std::string{"1\r\n"} + name_[i % name_.size()] + "\r\n";
      c->out += "0\r\n\r\n";
      asio::async_write(c->sock, asio::buffer(c->out),
                        [this, c](const asio::error_code& ec, std::size_t) {
                          if (!ec)
                            serve(c);
                        });
      return;
    }
    // A HEAD is answered with the length its GET would have, and no body.
    const bool head_request = head.starts_with("HEAD ");
    auto respond = [this, c, answer, xff, head_request] {
      const bool http10 = mode_ == backend_mode::http10 || mode_ == backend_mode::http10_length;
      c->out =
          std::string{mode_ == backend_mode::interim
                          ? "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
                          : ""} +
          std::string{mode_ == backend_mode::fail ? "HTTP/1.1 500 Oops"
                      : http10                    ? "HTTP/1.0 200 OK"
                                                  : "HTTP/1.1 200 OK"} +
          (mode_ == backend_mode::http10 ? std::string{}
                                         : "\r\ncontent-length: " + std::to_string(answer.size())) +
          "\r\nx-backend: " + name_ + "\r\nx-seen-xff: " + xff + "\r\n\r\n" +
          (head_request ? std::string{} : answer);
      asio::async_write(c->sock, asio::buffer(c->out),
                        [this, c, http10](const asio::error_code& ec, std::size_t) {
                          if (!ec && (mode_ == backend_mode::one_shot || http10)) {
                            asio::error_code ignored;
                            c->sock.close(ignored);
                            ++closed_;
                            return;
                          }
                          if (!ec)
                            serve(c);
                        });
    };
    if (mode_ == backend_mode::hold && !released_)
      held_.push_back(respond);
    else
      respond();
  }

  std::string name_;
  backend_mode mode_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<int> accepted_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> closed_{0};
  std::vector<std::weak_ptr<conn>> conns_;
  std::vector<std::function<void()>> held_;
  bool released_ = false;
};

/// A TCP echo server: echoes bytes; when the client half-closes, echoes the rest and
/// half-closes too.
class echo_backend {
public:
  echo_backend() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~echo_backend() {
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
    });
    io_.stop();
    thread_.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

private:
  struct conn {
    explicit conn(tcp::socket s) : sock(std::move(s)) {}
    tcp::socket sock;
    std::array<char, 4096> buf{};
  };
  void accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket s) {
      if (ec)
        return;
      read(std::make_shared<conn>(std::move(s)));
      accept();
    });
  }
  void read(const std::shared_ptr<conn>& c) {
    c->sock.async_read_some(
        asio::buffer(c->buf), [c, this](const asio::error_code& ec, std::size_t n) {
          if (ec) {
            asio::error_code ignored;
            c->sock.shutdown(tcp::socket::shutdown_send, ignored);
            return;
          }
          asio::async_write(c->sock, asio::buffer(c->buf.data(), n),
                            [c, this](const asio::error_code& wec, std::size_t) {
                              if (!wec)
                                read(c);
                            });
        });
  }
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

/// The frame an outbound proxy sends first to a peer's inbound (proto/proxy.proto).
inline std::string preamble(const std::string& service, bool http = false) {
  starling::v1::ProxyPreamble msg;
  msg.set_service(service);
  msg.set_http(http);
  return starling::wire::framed(msg.SerializeAsString());
}

/// A port on 127.0.0.1 where nothing listens: a connect to it is refused. The port stays
/// bound (never listening, no SO_REUSEADDR) until the process exits, so that no other
/// socket gets it meanwhile: neither another test's server binding port 0 (one released at
/// once was once taken by a server of a test running beside it, which then answered 200),
/// nor a connect's own ephemeral port.
inline std::uint16_t dead_port() {
  static std::mutex mu;
  static std::vector<int> held; // closed when the process exits
  std::uint16_t port = 0;
  const int fd = starling::test::bound_loopback_socket(port);
  if (fd < 0) {
    ADD_FAILURE() << "dead_port: " << std::strerror(errno);
    return 1; // tcpmux: not served on loopback here either
  }
  std::lock_guard lock{mu};
  held.push_back(fd);
  return port;
}

// ------------------------------------------------------------------ clients

/// A blocking client with a 10 s receive timeout (a bug fails the test, never hangs it).
class client {
public:
  explicit client(const std::string& address) {
    auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~client() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  [[nodiscard]] bool connected() const { return connected_; }
  [[nodiscard]] int fd() const { return fd_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  void shutdown_send() { ::shutdown(fd_, SHUT_WR); }

  /// Reads until `pred(buffer)` holds; false on EOF, error or timeout.
  bool read_until(const std::function<bool(const std::string&)>& pred) {
    while (!pred(in_)) {
      char buf[4096];
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        return false;
      in_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  /// What has been read and not yet taken.
  std::string take() { return std::exchange(in_, {}); }

  /// Everything until EOF (or timeout).
  std::string read_all() {
    read_until([](const std::string&) { return false; });
    return std::exchange(in_, {});
  }

  /// True when the peer closed (EOF or reset) within the receive timeout.
  bool closed() {
    char buf[256];
    while (true) {
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0)
        return true;
      if (n < 0)
        return errno == ECONNRESET;
      in_.append(buf, static_cast<std::size_t>(n));
    }
  }

  struct response {
    int status = 0;
    std::string version;                        ///< "HTTP/1.1" or "HTTP/1.0"
    std::map<std::string, std::string> headers; ///< lower-case names
    std::string body;
  };

  /// One response with a content-length or chunked body (chunks decoded, no trailers), or
  /// without a body whatever its head says (`head_request`: the answer to a HEAD); status
  /// 0 on failure.
  response read_response(bool head_request = false) {
    response r;
    if (!read_until([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }))
      return r;
    auto end = in_.find("\r\n\r\n");
    std::string head = in_.substr(0, end);
    std::size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      auto e = head.find("\r\n", pos);
      if (e == std::string::npos)
        e = head.size();
      auto line = head.substr(pos, e - pos);
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name;
        for (char ch : line.substr(0, colon))
          name += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        auto value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ')
          value.erase(0, 1);
        r.headers[name] = value;
      }
      pos = e + 2;
    }
    in_.erase(0, end + 4);
    if (head_request) {
      // no body
    } else if (r.headers.count("transfer-encoding") != 0) {
      while (true) {
        if (!read_until([](const std::string& s) { return s.find("\r\n") != std::string::npos; }))
          return r;
        const auto line_end = in_.find("\r\n");
        const auto size = std::stoul(in_.substr(0, line_end), nullptr, 16);
        if (!read_until([&](const std::string& s) { return s.size() >= line_end + 2 + size + 2; }))
          return r;
        r.body += in_.substr(line_end + 2, size);
        in_.erase(0, line_end + 2 + size + 2);
        if (size == 0)
          break;
      }
    } else {
      std::size_t length = 0;
      if (auto it = r.headers.find("content-length"); it != r.headers.end())
        length = std::stoul(it->second);
      if (!read_until([&](const std::string& s) { return s.size() >= length; }))
        return r;
      r.body = in_.substr(0, length);
      in_.erase(0, length);
    }
    r.version = status_line.substr(0, 8);
    r.status = std::stoi(status_line.substr(9, 3));
    return r;
  }

  /// Sends a GET and reads its response.
  response get(const std::string& path = "/", const std::string& extra_headers = "") {
    if (!send("GET " + path + " HTTP/1.1\r\nhost: test\r\n" + extra_headers + "\r\n"))
      return {};
    return read_response();
  }

private:
  int fd_ = -1;
  bool connected_ = false;
  std::string in_;
};

// ------------------------------------------------------------------ snapshots

inline sg::instance_view instance(std::string node, std::string service, std::string id,
                                  std::uint16_t port, std::string version = "",
                                  sg::service_protocol protocol = sg::service_protocol::http,
                                  sg::health_status health = sg::health_status::passing) {
  sg::instance_view i;
  i.node = std::move(node);
  i.service = std::move(service);
  i.id = std::move(id);
  i.address = "127.0.0.1";
  i.port = port;
  i.protocol = protocol;
  i.version = std::move(version);
  i.health = health;
  i.node_alive = true;
  return i;
}

inline sg::service_view service(std::string name, std::vector<sg::instance_view> instances) {
  sg::service_view s;
  s.name = std::move(name);
  s.instances = std::move(instances);
  return s;
}

inline std::shared_ptr<const sp::dataplane_config> config(std::vector<sg::service_view> services,
                                                          sp::inbound_map inbound = {},
                                                          std::uint64_t generation = 1) {
  auto snap = std::make_shared<sg::routing_snapshot>();
  snap->generation = generation;
  std::sort(services.begin(), services.end(),
            [](const auto& x, const auto& y) { return x.name < y.name; });
  snap->services = std::move(services);
  auto cfg = std::make_shared<sp::dataplane_config>();
  cfg->routes = std::move(snap);
  cfg->inbound = std::move(inbound);
  return cfg;
}

/// The I/O back end the data plane tests run on: io_uring when STARLING_TEST_IO says so
/// (tests/CMakeLists.txt runs the proxy tests once per back end), else epoll.
inline net::backend test_io() {
  const char* io = std::getenv("STARLING_TEST_IO");
  return io != nullptr && std::string_view{io} == "io_uring" ? net::backend::uring
                                                             : net::backend::epoll;
}

/// Whether requests between the test's nodes go over HTTP/2 (the default, decision 0022),
/// or over HTTP/1.1 with a preamble when STARLING_TEST_HOP says "http1" (tests/CMakeLists.txt
/// runs the data plane tests once that way too: the path to a peer without HTTP/2).
inline bool test_h2_hop() {
  const char* hop = std::getenv("STARLING_TEST_HOP");
  return !(hop != nullptr && std::string_view{hop} == "http1");
}

inline sp::dataplane_options options(std::string self, std::size_t threads = 1) {
  sp::dataplane_options o;
  o.self = std::move(self);
  o.threads = threads;
  o.io = test_io();
  o.h2_to_peers = test_h2_hop();
  o.inbound_host = "127.0.0.1";
  o.inbound_port = 0;
  o.connect_timeout = 2s;
  o.request_timeout = 10s;
  return o;
}

inline std::unique_ptr<sp::dataplane> start(sp::dataplane_options o) {
  std::string error;
  auto dp = sp::dataplane::start(std::move(o), error);
  EXPECT_TRUE(dp) << error;
  return dp;
}

/// Keeps every line of a data plane's access log (dataplane_options::access_log = sink()).
/// The data plane's threads write; lock `mu` to read `lines`.
struct access_log_lines {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view line) {
      std::lock_guard lock{mu};
      lines.emplace_back(line);
    };
  }
};

inline std::string outbound(const sp::dataplane& dp, const std::string& svc) {
  std::string out;
  eventually([&] {
    auto all = dp.outbound_addresses();
    auto it = all.find(svc);
    if (it == all.end())
      return false;
    out = it->second;
    return true;
  });
  return out;
}

inline std::uint64_t generated(const sp::dataplane_stats& s, const std::string& reason) {
  auto it = s.generated.find(reason);
  return it == s.generated.end() ? 0 : it->second;
}

inline const sp::service_stats* find_service(const sp::dataplane_stats& s,
                                             const std::string& name) {
  for (const auto& x : s.services)
    if (x.service == name)
      return &x;
  return nullptr;
}

/// The inbound counters of service `name` (what this node's inbound listener served).
inline const sp::service_stats* find_inbound(const sp::dataplane_stats& s,
                                             const std::string& name) {
  for (const auto& x : s.inbound_services)
    if (x.service == name)
      return &x;
  return nullptr;
}

/// The outbound counters of instance `id` of `service`.
inline const sp::instance_stats* find_instance(const sp::dataplane_stats& s,
                                               const std::string& service, const std::string& id) {
  for (const auto& x : s.instances)
    if (x.service == service && x.instance == id)
      return &x;
  return nullptr;
}

/// Samples in a latency histogram.
inline std::uint64_t samples(const std::vector<std::uint64_t>& counts) {
  std::uint64_t n = 0;
  for (auto c : counts)
    n += c;
  return n;
}

} // namespace starling::testing::proxy_support
