// starling-paced-client: an open-loop HTTP/1.1 load generator at a fixed request rate, for
// bench/proxy_vs_haproxy.sh ("latency added at 1,000 requests/s"). wrk cannot pace; wrk2 is
// not packaged on Debian 12.
//
// Request i is *scheduled* at t0 + i / rate, whatever happened to earlier requests, and its
// latency runs from that scheduled time to the last byte of its response, so a stall delays
// every request scheduled during it and shows in the percentiles (no coordinated omission).
// Requests go over `--connections` keep-alive connections, one request in flight per
// connection (no pipelining); a request due while every connection is busy waits in a queue,
// its wait counted in its latency. One thread: epoll plus a timerfd armed at the next
// scheduled time (absolute, CLOCK_MONOTONIC). Samples are kept whole (bounded by
// --max-samples) and sorted for exact percentiles.
//
// Usage: starling-paced-client --target 127.0.0.1:PORT [--rate 1000] [--seconds 10]
//          [--warmup-seconds 1] [--connections 16] [--path /] [--max-samples 2000000]
// Prints one line of key=value pairs (latencies in microseconds):
//   requests=.. ok=.. errors=.. unfinished=.. queued=.. rate=.. p50_us=.. p90_us=.. p99_us=..
//   p999_us=.. max_us=..
// Exit code 0 when every measured request got a 200, 1 otherwise, 2 on bad arguments.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace {

using ns = std::int64_t;

/// Monotonic time in nanoseconds.
ns now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<ns>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Command-line options.
struct options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  double rate = 1000;
  double seconds = 10;
  double warmup_seconds = 1;
  int connections = 16;
  std::string path = "/";
  std::size_t max_samples = 2'000'000;
};

/// One keep-alive connection. Invariant: `busy` iff a request was sent and its response is
/// not complete; `scheduled` is that request's scheduled time.
struct connection {
  int fd = -1;
  bool busy = false;
  ns scheduled = 0;
  std::string in;  ///< bytes received, not yet consumed
  std::string out; ///< bytes still to send (a partial send)
  bool reconnect = false;
};

int connect_to(const options& opt) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(opt.port);
  if (::inet_pton(AF_INET, opt.host.c_str(), &addr.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/// Case-insensitive search of a header's value in a response head; -1 when absent.
long long header_value(std::string_view head, std::string_view name) {
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    if (head.size() - pos < name.size() + 1)
      return -1;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(head[pos + i])) == name[i];
    if (same && head[pos + name.size()] == ':')
      return std::strtoll(head.data() + pos + name.size() + 1, nullptr, 10);
  }
  return -1;
}

/// Complete responses at the front of `in`: the status and the bytes it takes; 0 bytes when
/// incomplete; status -1 when it cannot be framed (no content-length).
struct framed {
  int status = 0;
  std::size_t size = 0;
};

framed frame(const std::string& in) {
  const auto end = in.find("\r\n\r\n");
  if (end == std::string::npos)
    return {};
  const std::string_view head(in.data(), end + 2);
  int status = -1;
  if (head.size() > 12 && head.substr(0, 5) == "HTTP/")
    status = std::atoi(head.data() + 9);
  const auto length = header_value(head, "content-length");
  if (length < 0)
    return {-1, end + 4};
  const auto total = end + 4 + static_cast<std::size_t>(length);
  if (in.size() < total)
    return {};
  return {status, total};
}

double percentile(const std::vector<ns>& sorted, double q) {
  if (sorted.empty())
    return 0;
  auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

bool parse(int argc, char** argv, options& opt) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i + 1 >= argc)
      return false;
    const char* v = argv[++i];
    if (a == "--target") {
      const std::string t = v;
      const auto colon = t.rfind(':');
      if (colon == std::string::npos)
        return false;
      opt.host = t.substr(0, colon);
      opt.port = static_cast<std::uint16_t>(std::atoi(t.c_str() + colon + 1));
    } else if (a == "--rate") {
      opt.rate = std::atof(v);
    } else if (a == "--seconds") {
      opt.seconds = std::atof(v);
    } else if (a == "--warmup-seconds") {
      opt.warmup_seconds = std::atof(v);
    } else if (a == "--connections") {
      opt.connections = std::atoi(v);
    } else if (a == "--path") {
      opt.path = v;
    } else if (a == "--max-samples") {
      opt.max_samples = static_cast<std::size_t>(std::atoll(v));
    } else {
      return false;
    }
  }
  return opt.port != 0 && opt.rate > 0 && opt.seconds > 0 && opt.warmup_seconds >= 0 &&
         opt.connections > 0 && opt.connections <= 1024;
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  if (!parse(argc, argv, opt)) {
    std::fprintf(stderr, "usage: starling-paced-client --target HOST:PORT [--rate R] "
                         "[--seconds S] [--warmup-seconds W] [--connections C] [--path P] "
                         "[--max-samples N]\n");
    return 2;
  }
  const std::string request = "GET " + opt.path + " HTTP/1.1\r\nHost: " + opt.host +
                              "\r\nUser-Agent: starling-paced\r\n\r\n";
  const auto interval = static_cast<ns>(1e9 / opt.rate);
  const auto total = static_cast<std::uint64_t>((opt.warmup_seconds + opt.seconds) * opt.rate);
  const auto warmup = static_cast<std::uint64_t>(opt.warmup_seconds * opt.rate);
  if (total - warmup > opt.max_samples) {
    std::fprintf(stderr, "starling-paced-client: %llu samples exceed --max-samples %zu\n",
                 static_cast<unsigned long long>(total - warmup), opt.max_samples);
    return 2;
  }

  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  const int timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (ep < 0 || timer < 0) {
    std::perror("starling-paced-client: epoll/timerfd");
    return 1;
  }
  std::vector<connection> conns(static_cast<std::size_t>(opt.connections));
  std::deque<std::size_t> idle;
  auto watch = [&](std::size_t i, std::uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = i;
    return ::epoll_ctl(ep, op, conns[i].fd, &ev) == 0;
  };
  for (std::size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = connect_to(opt);
    if (conns[i].fd < 0 || !watch(i, EPOLLIN, EPOLL_CTL_ADD)) {
      std::fprintf(stderr, "starling-paced-client: cannot connect to %s:%u: %s\n", opt.host.c_str(),
                   opt.port, std::strerror(errno));
      return 1;
    }
    idle.push_back(i);
  }
  {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = UINT64_MAX;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev);
  }

  std::vector<ns> samples;
  samples.reserve(static_cast<std::size_t>(total - warmup));
  std::deque<ns> queue;        // scheduled times waiting for a free connection
  std::uint64_t scheduled = 0; // requests whose time has come
  std::uint64_t completed = 0, ok = 0, errors = 0, queued = 0;
  const ns t0 = now_ns() + 10'000'000; // first request 10 ms from now
  const ns measure_from = t0 + static_cast<ns>(warmup) * interval;
  const ns hard_end = t0 + static_cast<ns>(total) * interval + 5'000'000'000LL;

  auto arm = [&](ns at) {
    itimerspec its{};
    its.it_value.tv_sec = at / 1'000'000'000;
    its.it_value.tv_nsec = at % 1'000'000'000;
    ::timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, nullptr);
  };
  auto send_on = [&](std::size_t i, ns when) {
    auto& c = conns[i];
    c.busy = true;
    c.scheduled = when;
    const auto n = ::send(c.fd, request.data(), request.size(), MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(request.size()))
      return;
    c.out = request.substr(n > 0 ? static_cast<std::size_t>(n) : 0);
    if (n < 0 && errno != EAGAIN) {
      c.reconnect = true;
      return;
    }
    watch(i, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
  };
  auto finish = [&](std::size_t i, bool good) {
    auto& c = conns[i];
    ++completed;
    if (c.scheduled >= measure_from) {
      good ? ++ok : ++errors;
      if (samples.size() < opt.max_samples)
        samples.push_back(now_ns() - c.scheduled);
    }
    c.busy = false;
    if (!queue.empty()) {
      const auto when = queue.front();
      queue.pop_front();
      send_on(i, when);
    } else {
      idle.push_back(i);
    }
  };
  auto reopen = [&](std::size_t i) { // the peer closed or failed: count it, connect again
    auto& c = conns[i];
    ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.in.clear();
    c.out.clear();
    c.reconnect = false;
    c.fd = connect_to(opt);
    const bool was_busy = c.busy;
    if (c.fd < 0 || !watch(i, EPOLLIN, EPOLL_CTL_ADD)) {
      std::fprintf(stderr, "starling-paced-client: reconnect failed: %s\n", std::strerror(errno));
      std::exit(1);
    }
    if (was_busy)
      finish(i, false);
    else
      idle.push_back(i);
  };

  arm(t0);
  std::vector<epoll_event> events(conns.size() + 1);
  std::vector<char> buf(64 * 1024);
  while (completed < total && now_ns() < hard_end) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0 && errno != EINTR) {
      std::perror("starling-paced-client: epoll_wait");
      return 1;
    }
    for (int k = 0; k < n; ++k) {
      const auto id = events[k].data.u64;
      if (id == UINT64_MAX) {
        std::uint64_t expirations = 0;
        [[maybe_unused]] auto r = ::read(timer, &expirations, sizeof expirations);
        const ns now = now_ns();
        while (scheduled < total && t0 + static_cast<ns>(scheduled) * interval <= now) {
          const ns when = t0 + static_cast<ns>(scheduled) * interval;
          ++scheduled;
          if (!idle.empty()) {
            const auto i = idle.front();
            idle.pop_front();
            send_on(i, when);
          } else {
            queue.push_back(when);
            ++queued;
          }
        }
        if (scheduled < total)
          arm(t0 + static_cast<ns>(scheduled) * interval);
        continue;
      }
      const auto i = static_cast<std::size_t>(id);
      auto& c = conns[i];
      if ((events[k].events & EPOLLOUT) && !c.out.empty()) {
        const auto w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (w > 0)
          c.out.erase(0, static_cast<std::size_t>(w));
        else if (errno != EAGAIN)
          c.reconnect = true;
        if (c.out.empty())
          watch(i, EPOLLIN, EPOLL_CTL_MOD);
      }
      if (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          const auto r = ::recv(c.fd, buf.data(), buf.size(), 0);
          if (r > 0) {
            c.in.append(buf.data(), static_cast<std::size_t>(r));
            continue;
          }
          if (r == 0 || errno != EAGAIN)
            c.reconnect = true;
          break;
        }
        for (auto f = frame(c.in); f.size > 0 && c.busy; f = frame(c.in)) {
          c.in.erase(0, f.size);
          if (f.status < 0) {
            c.reconnect = true;
            break;
          }
          finish(i, f.status == 200);
        }
      }
      if (c.reconnect)
        reopen(i);
    }
  }

  const std::uint64_t unfinished = total - completed;
  std::sort(samples.begin(), samples.end());
  const double measured_seconds = static_cast<double>(total - warmup) / opt.rate;
  std::printf("requests=%llu ok=%llu errors=%llu unfinished=%llu queued=%llu rate=%.1f "
              "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
              static_cast<unsigned long long>(total - warmup), static_cast<unsigned long long>(ok),
              static_cast<unsigned long long>(errors), static_cast<unsigned long long>(unfinished),
              static_cast<unsigned long long>(queued), static_cast<double>(ok) / measured_seconds,
              percentile(samples, 0.50), percentile(samples, 0.90), percentile(samples, 0.99),
              percentile(samples, 0.999),
              samples.empty() ? 0.0 : static_cast<double>(samples.back()) / 1000.0);
  for (auto& c : conns)
    ::close(c.fd);
  return errors == 0 && unfinished == 0 ? 0 : 1;
}
