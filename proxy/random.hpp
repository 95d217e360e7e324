// A small fast seeded random source for the data plane's pure cores (balancers, traffic
// splits, retry jitter): xoshiro256** seeded through splitmix64. Not cryptographic. Each I/O
// thread owns its own; nothing here is shared or locked.
#pragma once

#include <cstdint>
#include <limits>

namespace starling::proxy {

/// xoshiro256** (Blackman and Vigna) with its state filled by splitmix64 from one 64-bit
/// seed, so every seed (0 included) gives a well-mixed, non-zero state. Deterministic for a
/// given seed. Satisfies UniformRandomBitGenerator, so it can drive `<random>` distributions
/// and `wire::backoff::next_with`. Not thread-safe: one instance per I/O thread.
class random_source {
public:
  using result_type = std::uint64_t;

  /// Seeds the generator; the same seed always yields the same sequence.
  explicit constexpr random_source(std::uint64_t seed) noexcept {
    for (auto& word : s_)
      word = splitmix64(seed);
  }

  [[nodiscard]] static constexpr result_type min() noexcept { return 0; }
  [[nodiscard]] static constexpr result_type max() noexcept {
    return std::numeric_limits<result_type>::max();
  }

  /// The next 64 uniformly distributed bits.
  constexpr result_type operator()() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// A uniform integer in [0, n), without modulo bias (Lemire's multiply-and-reject);
  /// 0 when n is 0.
  constexpr std::uint64_t uniform(std::uint64_t n) noexcept {
    if (n == 0)
      return 0;
    unsigned __int128 m = static_cast<unsigned __int128>((*this)()) * n;
    auto low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n; // 2^64 mod n
      while (low < threshold) {
        m = static_cast<unsigned __int128>((*this)()) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

  /// A uniform double in [0, 1) with 53 random bits.
  constexpr double unit() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }
  static constexpr std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  /// The xoshiro256** state; never all zero (splitmix64 outputs cannot all be zero).
  std::uint64_t s_[4] = {};
};

} // namespace starling::proxy
