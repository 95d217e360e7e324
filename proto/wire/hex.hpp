// One hexadecimal digit's value, either case: shared by proxy/http1 (chunk sizes),
// proxy/grpc_health (grpc-message's percent-encoding) and identity/keyring (key ids).
// identity/revocation keeps its own, lower case only on purpose (one spelling per file).
// Header only.
#pragma once

namespace starling::wire {

/// The value of hex digit `c` (either case), or -1 when `c` is not one.
[[nodiscard]] constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace starling::wire
