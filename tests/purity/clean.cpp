// Purity probe (tests/purity/CMakeLists.txt): what a core may use. Built with the core rules,
// it must compile and pass the symbol check: the control that keeps the failing probes honest
// (they must fail for the rule they test, not because the rules break everything).
#include <chrono>
#include <mutex>
#include <string>

#include <caf/error.hpp>
#include <openssl/evp.h>

#include "gossip/membership.hpp"

namespace starling::purity_probe {

/// Time comes in as a parameter; types of the standard clocks are fine.
std::chrono::system_clock::time_point later(std::chrono::system_clock::time_point now) {
  return now + std::chrono::seconds(1);
}

/// Locks, CAF errors and OpenSSL are fine in a core.
std::size_t digest_size() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  return static_cast<std::size_t>(EVP_MD_get_size(EVP_sha256()));
}

} // namespace starling::purity_probe
