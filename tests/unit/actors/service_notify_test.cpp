// systemd's notification protocol without libsystemd (actors/service_notify.hpp): a datagram
// to a path or an abstract socket, nothing without NOTIFY_SOCKET, clear errors otherwise.
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "actors/service_notify.hpp"
#include "tests/support/process.hpp"

namespace sa = starling::actors;

namespace {

/// A service manager's end: a unix datagram socket bound to `name` (a path, or '@' for the
/// abstract namespace).
class manager_socket {
public:
  explicit manager_socket(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name.front() == '@')
      addr.sun_path[0] = '\0';
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                               (name.front() == '/' ? 1 : 0));
    bound_ = ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), length) == 0;
  }
  ~manager_socket() { ::close(fd_); }
  manager_socket(const manager_socket&) = delete;
  manager_socket& operator=(const manager_socket&) = delete;

  [[nodiscard]] bool bound() const { return bound_; }

  /// The next datagram, waiting up to 2 s; nullopt if none came.
  std::optional<std::string> next() const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1)
      return std::nullopt;
    char buf[4096];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0)
      return std::nullopt;
    return std::string{buf, static_cast<std::size_t>(n)};
  }

  /// True when a datagram is waiting now.
  [[nodiscard]] bool pending() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

private:
  int fd_ = -1;
  bool bound_ = false;
};

} // namespace

TEST(service_notify, a_path_socket_gets_the_state_as_one_datagram) {
  starling::testing::temp_dir tmp{"starling-notify"};
  const auto path = (tmp.path() / "notify").string();
  manager_socket manager{path};
  ASSERT_TRUE(manager.bound());
  EXPECT_EQ(sa::notify_service_manager(path, "READY=1\nSTATUS=ready"), std::nullopt);
  EXPECT_EQ(manager.next(), "READY=1\nSTATUS=ready");
}

TEST(service_notify, an_abstract_socket_is_reached_by_its_at_name) {
  const auto name = "@starling-notify-test-" + std::to_string(::getpid());
  manager_socket manager{name};
  ASSERT_TRUE(manager.bound());
  EXPECT_EQ(sa::notify_service_manager(name, "STOPPING=1"), std::nullopt);
  EXPECT_EQ(manager.next(), "STOPPING=1");
}

TEST(service_notify, without_a_socket_name_nothing_is_sent_and_nothing_fails) {
  starling::testing::temp_dir tmp{"starling-notify"};
  const auto path = (tmp.path() / "notify").string();
  manager_socket manager{path};
  ASSERT_TRUE(manager.bound());
  EXPECT_EQ(sa::notify_service_manager("", "READY=1"), std::nullopt);
  EXPECT_FALSE(manager.pending());
}

TEST(service_notify, bad_names_and_absent_managers_are_errors_with_a_reason) {
  auto relative = sa::notify_service_manager("run/notify", "READY=1");
  ASSERT_TRUE(relative);
  EXPECT_NE(relative->find("neither a path nor an abstract name"), std::string::npos) << *relative;
  auto long_path = sa::notify_service_manager("/" + std::string(200, 'x'), "READY=1");
  ASSERT_TRUE(long_path);
  EXPECT_NE(long_path->find("too long"), std::string::npos) << *long_path;
  // The longest path a socket address holds (107 bytes and the NUL) is not refused for its
  // length: it fails because nobody listens there.
  auto longest = sa::notify_service_manager("/" + std::string(106, 'x'), "READY=1");
  ASSERT_TRUE(longest);
  EXPECT_EQ(longest->find("too long"), std::string::npos) << *longest;
  starling::testing::temp_dir tmp{"starling-notify"};
  auto nobody = sa::notify_service_manager((tmp.path() / "nobody").string(), "READY=1");
  ASSERT_TRUE(nobody);
  EXPECT_NE(nobody->find("cannot notify the service manager at"), std::string::npos) << *nobody;
}
