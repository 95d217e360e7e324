// Garbage on every port of a real agent: random datagrams, random and hostile TCP streams on
// the gossip port, random bytes on the admin port, random and hostile HTTP on the metrics
// port, random bytes and hostile preambles on the data plane's inbound port. The agent must
// keep running, keep
// answering its admin commands and keep admitting members. Every loop is bounded.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/agents.hpp"

namespace st = starling::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* fast_config = R"(
join_timeout = "10s"

[gossip]
probe_interval = "200ms"
probe_timeout = "100ms"
gossip_interval = "50ms"
push_pull_interval = "2s"
)";

/// "127.0.0.1:PORT" → sockaddr_in.
sockaddr_in endpoint_of(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(host_port.substr(colon + 1))));
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &sa.sin_addr);
  return sa;
}

std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string out(n, '\0');
  for (auto& c : out)
    c = static_cast<char>(rng() & 0xff);
  return out;
}

/// Sends `datagrams` over UDP to `to`.
void send_datagrams(const std::string& to, const std::vector<std::string>& datagrams) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  auto sa = endpoint_of(to);
  for (const auto& d : datagrams)
    (void)::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  ::close(fd);
}

/// Opens a TCP connection to `to`, writes `bytes`, and closes it (or keeps it open, for
/// connections that hang half-way). Returns the socket when kept, else -1.
int send_stream(const std::string& to, const std::string& bytes, bool keep_open = false) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  auto sa = endpoint_of(to);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ::close(fd);
    return -1;
  }
  (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (keep_open)
    return fd;
  ::close(fd);
  return -1;
}

/// A big-endian 4-byte length prefix.
std::string length_prefix(std::uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
          static_cast<char>(n)};
}

class garbage_test : public ::testing::Test {
protected:
  using node = st::agent_node;

  node start(const std::string& name, const std::vector<std::string>& seeds) {
    const auto data_dir = tmp_.path() / name;
    return st::start_agent(procs_, st::agent_argv(config_, name, data_dir, seeds), name, data_dir,
                           10s);
  }

  /// Number of alive members `n` lists, or -1 if `starling members` failed.
  static int alive_seen_by(const node& n) {
    auto doc = st::members_view(n.info.admin);
    if (!doc)
      return -1;
    int alive = 0;
    for (const auto& m : doc->at("members"))
      alive += m.at("state") == "alive";
    return alive;
  }

  void SetUp() override {
    config_ = tmp_.path() / "agent.toml";
    st::write_text(config_, fast_config);
  }

  st::temp_dir tmp_{"starling-garbage"};
  st::process_group procs_{tmp_.path() / "logs"};
  fs::path config_;
};

TEST_F(garbage_test, agent_survives_garbage_on_every_port_and_still_admits_members) {
  auto seed = start("seed", {});
  ASSERT_FALSE(HasFailure());
  auto first = start("first", {seed.info.gossip});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(10s, [&] { return alive_seen_by(seed) == 2; }));

  std::mt19937_64 rng{20261125};
  // UDP: every length 0..1500 of random bytes, then random bytes behind each frame byte we
  // know (plain, sealed) and one we do not, then datagrams far over the limit.
  std::vector<std::string> datagrams;
  for (std::size_t len = 0; len <= 1500; ++len)
    datagrams.push_back(random_bytes(rng, len));
  for (char frame : {'\x01', '\x02', '\x7f'})
    for (std::size_t len = 1; len <= 200; ++len)
      datagrams.push_back(frame + random_bytes(rng, len));
  for (int i = 0; i < 20; ++i)
    datagrams.push_back(random_bytes(rng, 60000));
  send_datagrams(seed.info.gossip, datagrams);

  // TCP gossip port: random streams; huge and zero length prefixes; a prefix with a short
  // body; a valid-length frame of random bytes; connections held open half-way, more than the
  // transport's connection limit.
  for (int i = 0; i < 50; ++i)
    send_stream(seed.info.gossip, random_bytes(rng, 1 + rng() % 4096));
  send_stream(seed.info.gossip, length_prefix(0xffffffffu) + random_bytes(rng, 100));
  send_stream(seed.info.gossip, length_prefix(0));
  send_stream(seed.info.gossip, length_prefix(1000) + random_bytes(rng, 10));
  send_stream(seed.info.gossip, length_prefix(500) + random_bytes(rng, 500));
  std::vector<int> held;
  for (int i = 0; i < 80; ++i)
    if (int fd = send_stream(seed.info.gossip, length_prefix(64) + "x", true); fd >= 0)
      held.push_back(fd);

  // Admin port (CAF's BASP): random streams, and one held open.
  for (int i = 0; i < 30; ++i)
    send_stream(seed.info.admin, random_bytes(rng, 1 + rng() % 2048));
  if (int fd = send_stream(seed.info.admin, random_bytes(rng, 7), true); fd >= 0)
    held.push_back(fd);

  // Metrics/status port (HTTP/1.1): random streams, a smuggling attempt, a huge head, and
  // one held open; it still answers /healthz afterwards.
  ASSERT_FALSE(seed.info.metrics.empty());
  for (int i = 0; i < 30; ++i)
    send_stream(seed.info.metrics, random_bytes(rng, 1 + rng() % 2048));
  send_stream(seed.info.metrics, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  send_stream(seed.info.metrics, "GET /metrics HTTP/1.1\r\nX: " + std::string(70000, 'a'));
  if (int fd = send_stream(seed.info.metrics, "GET /metr", true); fd >= 0)
    held.push_back(fd);
  EXPECT_EQ(st::http_get(seed.info.metrics, "/healthz").rfind("HTTP/1.1 200", 0), 0u);

  // Data-plane inbound port (plain TCP here: no certificates): random streams, a preamble
  // length over the 1 KiB bound, an empty one, a preamble naming no valid service, and one
  // held open mid-preamble. Each is closed; the agent keeps running.
  ASSERT_FALSE(seed.info.inbound.empty());
  for (int i = 0; i < 30; ++i)
    send_stream(seed.info.inbound, random_bytes(rng, 1 + rng() % 2048));
  send_stream(seed.info.inbound, std::string{"\x7f\xff\xff\xff", 4} + std::string(64, 'x'));
  send_stream(seed.info.inbound, std::string{"\0\0\0\0", 4});
  send_stream(seed.info.inbound,
              std::string{"\0\0\0\x05\x0a\x03B:D", 9} + "GET / HTTP/1.1\r\n\r\n");
  if (int fd = send_stream(seed.info.inbound, std::string{"\0\0\x01", 3}, true); fd >= 0)
    held.push_back(fd);

  // The agent still runs, answers, keeps its member, and admits a new one while the
  // half-open connections are still held.
  EXPECT_TRUE(seed.proc->running());
  EXPECT_TRUE(st::poll_until(10s, [&] { return alive_seen_by(seed) == 2; }))
      << "seed no longer answers or lost its member";
  auto late = start("late", {seed.info.gossip});
  EXPECT_TRUE(st::poll_until(15s, [&] {
    return alive_seen_by(seed) == 3 && alive_seen_by(late) == 3;
  })) << "a member could not join after the garbage";
  for (int fd : held)
    ::close(fd);
  EXPECT_TRUE(seed.proc->running());
  EXPECT_TRUE(first.proc->running());
}

} // namespace
