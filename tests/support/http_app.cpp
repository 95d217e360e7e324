#include "tests/support/http_app.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace starling::testing {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

/// The value of header `name` (lower case) in `head` ("" when absent).
std::string header_of(const std::string& head, const std::string& name) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    const auto end = head.find("\r\n", pos + 2);
    const auto line =
        head.substr(pos + 2, end == std::string::npos ? std::string::npos : end - pos - 2);
    const auto colon = line.find(':');
    if (colon != std::string::npos && lower(line.substr(0, colon)) == name) {
      auto v = line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ')
        v.erase(v.begin());
      while (!v.empty() && (v.back() == ' ' || v.back() == '\r'))
        v.pop_back();
      return v;
    }
    pos = end;
  }
  return {};
}

bool send_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const auto n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads into `buf` until it holds `want` bytes; false on close, error or `timeout_ms`.
bool read_until(int fd, std::string& buf, const std::function<bool()>& done, int timeout_ms) {
  char chunk[16384];
  while (!done()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0)
      return false;
    const auto n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0)
      return false;
    buf.append(chunk, static_cast<std::size_t>(n));
    if (buf.size() > (1u << 20))
      return false;
  }
  return true;
}

} // namespace

http_app::http_app(std::string name) : name_(std::move(name)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return;
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread{[this] { accept_loop(); }};
}

http_app::~http_app() { close(); }

void http_app::close() {
  if (stopping_.exchange(true))
    return;
  if (listen_fd_ >= 0)
    ::shutdown(listen_fd_, SHUT_RDWR);
  {
    std::lock_guard guard{mutex_};
    for (int fd : conns_)
      ::shutdown(fd, SHUT_RDWR);
  }
  released_.notify_all(); // stopping_ was set before the lock: a held request sees it or this
  if (acceptor_.joinable())
    acceptor_.join();
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
  if (listen_fd_ >= 0)
    ::close(listen_fd_);
  listen_fd_ = -1;
}

void http_app::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0)
      continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    std::lock_guard guard{mutex_};
    if (stopping_ || conns_.size() >= max_connections) {
      ::close(fd);
      continue;
    }
    conns_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void http_app::serve(int fd) {
  std::string buf;
  while (!stopping_) {
    const auto head_done = [&] { return buf.find("\r\n\r\n") != std::string::npos; };
    if (!read_until(fd, buf, head_done, 60000))
      break;
    const auto end = buf.find("\r\n\r\n") + 4;
    const auto head = buf.substr(0, end);
    const auto length = header_of(head, "content-length");
    const std::size_t body = length.empty() ? 0 : std::stoul(length);
    if (!read_until(
            fd, buf, [&] { return buf.size() >= end + body; }, 60000))
      break;
    buf.erase(0, end + body);
    if (head.rfind("GET /hold", 0) == 0) {
      std::unique_lock lock{mutex_};
      ++held_;
      const auto release = releases_;
      released_.wait(lock, [&] { return stopping_ || releases_ != release; });
      --held_;
      if (stopping_)
        break;
    }
    ++requests_;
    const auto text = name_ + "\n";
    const bool close_after = lower(header_of(head, "connection")) == "close";
    const auto response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-app: " + name_ +
                          "\r\ncontent-length: " + std::to_string(text.size()) + "\r\n" +
                          (close_after ? "connection: close\r\n" : "") + "\r\n" + text;
    if (!send_all(fd, response) || close_after)
      break;
  }
  ::shutdown(fd, SHUT_RDWR);
  std::lock_guard guard{mutex_};
  conns_.erase(std::remove(conns_.begin(), conns_.end(), fd), conns_.end());
  ::close(fd);
}

std::size_t http_app::held() {
  std::lock_guard guard{mutex_};
  return held_;
}

void http_app::release_held() {
  {
    std::lock_guard guard{mutex_};
    ++releases_;
  }
  released_.notify_all();
}

http_client::http_client(std::string address) : address_(std::move(address)) {}

http_client::~http_client() {
  if (fd_ >= 0)
    ::close(fd_);
}

bool http_client::connect() {
  const auto colon = address_.rfind(':');
  if (colon == std::string::npos)
    return false;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address_.substr(colon + 1))));
  if (fd_ < 0 || ::inet_pton(AF_INET, address_.substr(0, colon).c_str(), &addr.sin_addr) != 1 ||
      ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

http_result http_client::get(const std::string& path, const std::vector<std::string>& headers) {
  http_result out;
  // A kept connection the server closed meanwhile fails on first use: one fresh retry.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool fresh = fd_ < 0;
    if (fd_ < 0 && !connect())
      return out;
    std::string req = "GET " + path + " HTTP/1.1\r\nhost: test\r\n";
    for (const auto& h : headers)
      req += h + "\r\n";
    req += "\r\n";
    std::string buf;
    bool ok = send_all(fd_, req) &&
              read_until(
                  fd_, buf, [&] { return buf.find("\r\n\r\n") != std::string::npos; }, 10000);
    if (ok) {
      const auto end = buf.find("\r\n\r\n") + 4;
      const auto head = buf.substr(0, end);
      const auto length = header_of(head, "content-length");
      const std::size_t body = length.empty() ? 0 : std::stoul(length);
      ok = read_until(
          fd_, buf, [&] { return buf.size() >= end + body; }, 10000);
      if (ok && head.size() > 12 && head.rfind("HTTP/1.", 0) == 0) {
        out.status = std::atoi(head.substr(9, 3).c_str());
        out.app = header_of(head, "x-app");
        out.error = header_of(head, "x-starling-error");
        if (lower(header_of(head, "connection")) == "close") {
          ::close(fd_);
          fd_ = -1;
        }
        return out;
      }
    }
    ::close(fd_);
    fd_ = -1;
    if (fresh)
      return out;
  }
  return out;
}

} // namespace starling::testing
