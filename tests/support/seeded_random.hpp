// A deterministic identity::random_source for tests: a test never depends on real
// randomness, and a failure replays from its seed.
#pragma once

#include <cstdint>
#include <random>
#include <span>

#include "identity/token.hpp"

namespace starling::testing {

/// Deterministic bytes from a seed (std::mt19937_64). Not thread-safe.
class seeded_random final : public identity::random_source {
public:
  explicit seeded_random(std::uint64_t seed) : gen_(seed) {}

  caf::expected<void> fill(std::span<std::uint8_t> out) override {
    for (auto& b : out)
      b = static_cast<std::uint8_t>(gen_());
    return caf::unit;
  }

private:
  std::mt19937_64 gen_;
};

} // namespace starling::testing
