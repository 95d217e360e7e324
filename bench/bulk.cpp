// starling-bulk: a TCP bulk source and sink for bench/proxy_vs_haproxy.sh ("L4 bulk MB/s";
// neither socat nor netcat is among the packages scripts/install-deps.sh installs).
//
//   starling-bulk sink --listen 127.0.0.1:0
//     prints "listening 127.0.0.1:PORT" on stdout, then serves each connection on its own
//     thread: reads and discards until end of stream, answers the byte count it read as one
//     decimal line, and closes. Runs until killed.
//   starling-bulk source --connect HOST:PORT [--seconds 5] [--chunk 65536]
//     writes for `seconds`, half-closes, and waits for the sink's count: the time runs from
//     before connect to that answer, so bytes still buffered in proxies are in it. Prints
//     "bytes=N seconds=T mb_per_s=X" (MB = 10^6 bytes); exit 1 when the sink's count differs
//     from the bytes written (something lost or cut the stream).
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;

bool split_address(const std::string& s, sockaddr_in& addr) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos)
    return false;
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(s.c_str() + colon + 1)));
  return ::inet_pton(AF_INET, s.substr(0, colon).c_str(), &addr.sin_addr) == 1;
}

void serve(int fd) {
  std::vector<char> buf(256 * 1024);
  std::uint64_t total = 0;
  for (;;) {
    const auto n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n > 0) {
      total += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  const auto line = std::to_string(total) + "\n";
  [[maybe_unused]] auto w = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
  ::close(fd);
}

int run_sink(const std::string& listen_at) {
  sockaddr_in addr{};
  if (!split_address(listen_at, addr)) {
    std::fprintf(stderr, "starling-bulk: bad --listen %s\n", listen_at.c_str());
    return 2;
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::fprintf(stderr, "starling-bulk: cannot listen on %s: %s\n", listen_at.c_str(),
                 std::strerror(errno));
    return 1;
  }
  char host[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
  std::printf("listening %s:%u\n", host, ntohs(addr.sin_port));
  std::fflush(stdout);
  for (;;) {
    const int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      std::perror("starling-bulk: accept");
      return 1;
    }
    std::thread(serve, c).detach();
  }
}

int run_source(const std::string& target, double seconds, std::size_t chunk) {
  sockaddr_in addr{};
  if (!split_address(target, addr) || seconds <= 0 || chunk == 0) {
    std::fprintf(stderr, "starling-bulk: bad --connect, --seconds or --chunk\n");
    return 2;
  }
  std::vector<char> buf(chunk, 'x');
  const auto start = clock_type::now();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "starling-bulk: cannot connect to %s: %s\n", target.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const auto until = start + std::chrono::duration_cast<clock_type::duration>(
                                 std::chrono::duration<double>(seconds));
  std::uint64_t sent = 0;
  while (clock_type::now() < until) {
    const auto n = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      std::fprintf(stderr, "starling-bulk: send: %s after %llu bytes\n", std::strerror(errno),
                   static_cast<unsigned long long>(sent));
      return 1;
    }
    sent += static_cast<std::uint64_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char small[64];
  for (;;) {
    const auto n = ::recv(fd, small, sizeof small, 0);
    if (n > 0) {
      answer.append(small, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  ::close(fd);
  const auto received = std::strtoull(answer.c_str(), nullptr, 10);
  std::printf("bytes=%llu seconds=%.3f mb_per_s=%.1f sink_bytes=%llu\n",
              static_cast<unsigned long long>(sent), elapsed,
              static_cast<double>(sent) / elapsed / 1e6, static_cast<unsigned long long>(received));
  if (answer.empty() || received != sent) {
    std::fprintf(stderr, "starling-bulk: the sink read %s bytes of %llu sent\n",
                 answer.empty() ? "an unknown number of" : std::to_string(received).c_str(),
                 static_cast<unsigned long long>(sent));
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: starling-bulk sink --listen HOST:PORT | source --connect "
                         "HOST:PORT [--seconds S] [--chunk BYTES]\n");
    return 2;
  }
  const std::string_view mode = argv[1];
  std::string listen_at, target;
  double seconds = 5;
  std::size_t chunk = 64 * 1024;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string_view a = argv[i];
    if (a == "--listen")
      listen_at = argv[i + 1];
    else if (a == "--connect")
      target = argv[i + 1];
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--chunk")
      chunk = static_cast<std::size_t>(std::atoll(argv[i + 1]));
    else {
      std::fprintf(stderr, "starling-bulk: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (mode == "sink")
    return run_sink(listen_at);
  if (mode == "source")
    return run_source(target, seconds, chunk);
  std::fprintf(stderr, "starling-bulk: mode is sink or source\n");
  return 2;
}
