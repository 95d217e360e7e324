// A real agent under a service manager's notification socket (systemd's Type=notify): it
// says READY=1 once it is ready (its agent.json written, its ready line printed), with its
// pid and a status line, and STOPPING=1 when SIGTERM makes it leave. Every wait polls with a
// deadline.
#include <cstddef>
#include <cstring>
#include <string>

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/support/agents.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

/// Receives datagrams on the socket `fd` until one holds `what` or `timeout`
/// passes; returns that datagram ("" if none).
std::string datagram_with(int fd, const std::string& what, st::test_clock::duration timeout) {
  const auto deadline = st::test_clock::now() + timeout;
  while (st::test_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) != 1)
      continue;
    char buf[4096];
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      continue;
    std::string datagram{buf, static_cast<std::size_t>(n)};
    if (datagram.find(what) != std::string::npos)
      return datagram;
  }
  return {};
}

TEST(notify, an_agent_tells_its_service_manager_it_is_ready_then_that_it_stops) {
  st::temp_dir tmp{"starling-it-notify"};
  const auto socket_path = (tmp.path() / "notify").string();
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);

  const auto config = tmp.path() / "agent.toml";
  st::write_text(config, st::fast_agent_config());
  const auto data_dir = tmp.path() / "data" / "n1";
  st::process_group procs{tmp.path() / "logs"};
  auto& agent = procs.spawn(st::agent_argv(config, "n1", data_dir, {}), "n1",
                            {"NOTIFY_SOCKET=" + socket_path});

  const auto ready = datagram_with(fd, "READY=1", 30s);
  ASSERT_FALSE(ready.empty()) << "no READY=1 from the agent";
  EXPECT_NE(ready.find("MAINPID=" + std::to_string(agent.pid())), std::string::npos) << ready;
  EXPECT_NE(ready.find("STATUS=ready: gossip 127.0.0.1:"), std::string::npos) << ready;
  // Ready means usable: agent.json names it already.
  auto info = st::read_agent_json(data_dir);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->pid, agent.pid());
  EXPECT_NE(ready.find(info->admin), std::string::npos) << ready;

  agent.kill(SIGTERM);
  const auto stopping = datagram_with(fd, "STOPPING=1", 30s);
  EXPECT_NE(stopping.find("STATUS=leaving the mesh"), std::string::npos) << stopping;
  EXPECT_EQ(agent.wait(30s), 0);
  ::close(fd);
}

} // namespace
