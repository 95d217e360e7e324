#include "actors/service_notify.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace starling::actors {

std::optional<std::string> notify_service_manager(std::string_view socket_name,
                                                  std::string_view state) {
  if (socket_name.empty())
    return std::nullopt;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const bool path = socket_name.front() == '/';
  if (!path && socket_name.front() != '@')
    return "NOTIFY_SOCKET is neither a path nor an abstract name ('@...')";
  // A path ends with a NUL; an abstract name has none (its length says all).
  const std::size_t terminator = path ? 1 : 0;
  if (socket_name.size() > sizeof addr.sun_path - terminator)
    return "NOTIFY_SOCKET is too long for a socket address";
  std::memcpy(addr.sun_path, socket_name.data(), socket_name.size());
  if (!path)
    addr.sun_path[0] = '\0'; // the abstract namespace
  const auto length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_name.size() + terminator);
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return std::string{"cannot open a socket for NOTIFY_SOCKET: "} + std::strerror(errno);
  const auto sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&addr), length);
  const int err = errno;
  ::close(fd);
  if (sent < 0)
    return "cannot notify the service manager at " + std::string{socket_name} + ": " +
           std::strerror(err);
  return std::nullopt;
}

std::optional<std::string> notify_service_manager(std::string_view state) {
  const char* socket_name = std::getenv("NOTIFY_SOCKET");
  return notify_service_manager(socket_name != nullptr ? socket_name : "", state);
}

} // namespace starling::actors
