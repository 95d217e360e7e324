// Helpers of the TLS connection tests (net::stream's, net::connection's, the proxy's): a
// node's TLS context from the test PKI, and byte patterns with a checksum for transfers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "identity/tls.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::testing {

/// The TLS context of node `name` of `pki`, trusting `pki`, on the PKI's fixed clock (its
/// certificates are issued relative to that instant, not to the real time).
inline std::shared_ptr<const identity::tls_context> tls_context_of(const test_pki& pki,
                                                                   std::string_view name) {
  auto node = pki.node(name);
  identity::tls_options opts;
  opts.key = node.key;
  opts.certs = node.chain;
  opts.trust = std::make_shared<identity::trust_state>(pki.bundle());
  opts.clock = [now = pki.now()] { return now; };
  return must(identity::tls_context::make(std::move(opts)), "tls_context::make");
}

/// FNV-1a over `data`: a checksum for the large transfers.
inline std::uint64_t fnv1a(std::string_view data) {
  std::uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

/// `n` bytes of a pattern that does not repeat with a period of a record or a socket buffer,
/// so that a lost, repeated or reordered chunk changes the checksum.
inline std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 0x9e3779b9U;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xffU);
  }
  return s;
}

} // namespace starling::testing
