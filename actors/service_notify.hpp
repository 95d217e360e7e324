// Readiness for a service manager: systemd's notification protocol (sd_notify(3)), so that a
// unit with `Type=notify` starts its dependents once the agent is ready, and shows the
// agent's status line in `systemctl status`. The protocol is one datagram of "KEY=VALUE"
// lines to the unix socket named by $NOTIFY_SOCKET; it is written here rather than linking
// libsystemd, whose pages (and its compression and crypto libraries') would count in every
// agent's RSS (docs/decisions/0020-notify-systemd-without-libsystemd.md).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace starling::actors {

/// Sends `state` (lines such as "READY=1", "STATUS=...", "STOPPING=1") as one datagram to the
/// unix datagram socket `socket_name`: a path (starting with '/') or, starting with '@', a
/// name in the abstract namespace. Returns nullopt when sent, or when `socket_name` is empty
/// (no service manager asked: nothing to do); else what went wrong (a name that is neither
/// form or too long for a socket address, a socket or send error), for a log line. Never
/// blocks: the send is non-blocking.
[[nodiscard]] std::optional<std::string> notify_service_manager(std::string_view socket_name,
                                                                std::string_view state);

/// notify_service_manager to $NOTIFY_SOCKET; nullopt when it is unset.
[[nodiscard]] std::optional<std::string> notify_service_manager(std::string_view state);

} // namespace starling::actors
