// A small HTTP/1.1 app for integration tests of the data plane: listens on 127.0.0.1 port 0,
// keeps connections alive, answers every request with 200, a `x-app: <name>` header and the
// body "<name>\n" (request bodies by Content-Length are read and dropped). Counts requests.
// A request whose path starts with "/hold" is answered only at the next release_held() (an
// app slow to answer), or not at all if the app closes first.
// A thread per connection, at most max_connections at once; everything stops and joins on
// destruction or close().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace starling::testing {

class http_app {
public:
  static constexpr std::size_t max_connections = 256;

  explicit http_app(std::string name);
  ~http_app();
  http_app(const http_app&) = delete;
  http_app& operator=(const http_app&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Requests answered so far.
  [[nodiscard]] std::uint64_t requests() const noexcept { return requests_.load(); }
  /// Stops listening and closes every connection (the app is gone, as if killed).
  void close();
  /// "/hold" requests waiting now for release_held().
  [[nodiscard]] std::size_t held();
  /// Answers every "/hold" request waiting now (later ones wait for the next call).
  void release_held();

private:
  void accept_loop();
  void serve(int fd);

  std::string name_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> requests_{0};
  std::mutex mutex_;
  /// Under mutex_: "/hold" requests waiting, and release_held() calls so far.
  std::size_t held_ = 0;
  std::uint64_t releases_ = 0;
  std::condition_variable released_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

/// One HTTP/1.1 GET over a fresh or kept connection: see http_client.
struct http_result {
  int status = 0;    ///< 0: no response (connection refused, closed, timed out)
  std::string app;   ///< the x-app header, if any
  std::string error; ///< the x-starling-error header, if any
};

/// A keep-alive HTTP/1.1 client to one "host:port" (reconnects when the server closed).
class http_client {
public:
  explicit http_client(std::string address);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// GET `path` with `headers` ("name: value" lines); waits at most 10 s for the response.
  http_result get(const std::string& path, const std::vector<std::string>& headers = {});

private:
  bool connect();
  std::string address_;
  int fd_ = -1;
};

} // namespace starling::testing
