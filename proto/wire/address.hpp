// The "host:port" form every Starling address takes on the wire, in the config and on the
// command line: an IPv6 host in brackets ("[::1]:7946"). Pure string handling: names are not
// resolved here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace starling::wire {

/// A host and a port. An IPv6 host is kept without brackets.
struct host_port {
  std::string host;
  std::uint16_t port = 0;

  /// "host:port", with brackets around an IPv6 host (one that contains ':').
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const host_port&, const host_port&) = default;
};

/// The outcome of parse_host_port: the address, or a short phrase saying what is wrong
/// ("missing port", "port out of range", ...) for the caller to put in its own error.
struct parsed_host_port {
  std::optional<host_port> address;
  std::string_view problem;

  explicit operator bool() const noexcept { return address.has_value(); }
};

/// Parses "host:port" or "[v6-host]:port". The host must be non-empty and, unless
/// bracketed, free of ':'; the port is 1 to 5 decimal digits up to 65535 (0 allowed: "pick
/// a free one" where binding). Host names are not checked beyond that.
[[nodiscard]] parsed_host_port parse_host_port(std::string_view text);

/// "host:port" for `host` (bracketed when it is an IPv6 address not already bracketed).
[[nodiscard]] std::string join_host_port(std::string_view host, std::uint16_t port);

} // namespace starling::wire
