#include "proto/wire/address.hpp"

namespace starling::wire {

std::string host_port::to_string() const { return join_host_port(host, port); }

parsed_host_port parse_host_port(std::string_view text) {
  auto bad = [](std::string_view why) { return parsed_host_port{std::nullopt, why}; };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      return bad("missing ']'");
    host = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      return bad("missing port");
    port = rest.substr(1);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad("missing port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return bad("unbracketed IPv6 host");
  }
  if (host.empty())
    return bad("empty host");
  if (port.empty() || port.size() > 5)
    return bad("invalid port");
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9')
      return bad("invalid port");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535)
    return bad("port out of range");
  return {host_port{std::string{host}, static_cast<std::uint16_t>(value)}, {}};
}

std::string join_host_port(std::string_view host, std::uint16_t port) {
  std::string out;
  out.reserve(host.size() + 8);
  const bool bracket = host.find(':') != std::string_view::npos && host.front() != '[';
  if (bracket)
    out += '[';
  out += host;
  if (bracket)
    out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

} // namespace starling::wire
