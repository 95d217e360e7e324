// Sealing of gossip datagrams and push-pull frames under the keyring: AES-256-GCM with the
// header authenticated, and replay protection by timestamp window plus a per-sender sliding
// bitmap of counters (as IPsec and WireGuard do). A pure core: the wall-clock time is passed
// in, the per-process randomness (salt, first counter) is given to the constructor; no
// threads, no locks (the agent's adapter serialises calls). docs/decisions/0005.
//
// Wire (all integers big-endian):
//   0x02 | version (2) | key id (8) | nonce (12) = salt (4) + counter (8) |
//   timestamp, ms since the Unix epoch (8) | receiver tag (8) | ciphertext | GCM tag (16)
// The GCM additional authenticated data is the 38-byte header followed by the receiver
// string. The receiver (the address or name the sender sends to, as the receiver knows
// itself) is not on the wire: only its tag, the first 8 bytes of
// SHA-256("starling-receiver-1" 0x00 receiver), so that a receiver refuses a message bound to
// another one (wrong_receiver) before decrypting. A datagram captured on its way to member X
// thus opens at X only, not at Y within the replay window (issue 13). Version 1 (no receiver)
// is refused as malformed.
#pragma once

#include <bitset>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include <caf/expected.hpp>

#include "identity/keyring.hpp"

namespace starling::identity {

/// Wall-clock time, as the sender stamps it and the receiver checks it.
using wall_time = std::chrono::system_clock::time_point;

/// First byte of a sealed datagram (gossip::frame_type::sealed).
constexpr std::uint8_t sealed_frame_byte = 0x02;

/// First byte of a plain gossip datagram (gossip::frame_type::plain): refused as unsealed.
constexpr std::uint8_t plain_frame_byte = 0x01;

/// Version of the sealed format.
constexpr std::uint8_t sealed_version = 2;

/// Bytes of the receiver tag in the header.
constexpr std::size_t receiver_tag_size = 8;

/// Bytes of the authenticated header: frame, version, key id, nonce, timestamp, receiver tag.
constexpr std::size_t sealed_header_size = 1 + 1 + key_id_size + 12 + 8 + receiver_tag_size;

/// Bytes of the GCM tag.
constexpr std::size_t sealed_tag_size = 16;

/// Bytes sealing adds to a message.
constexpr std::size_t sealed_overhead = sealed_header_size + sealed_tag_size;

/// Width of the per-salt replay bitmap, in counters.
constexpr std::size_t replay_window_width = 1024;

/// Tunables of the sealer.
struct sealer_config {
  /// A message stamped further than this from the receiver's clock, either way, is refused
  /// as replayed. It also bounds the clock skew tolerated between two nodes.
  std::chrono::milliseconds window{std::chrono::seconds{30}};
  /// Bound on senders (salts) tracked for replay; the least recently seen is forgotten first.
  std::size_t max_salts = 4096;
};

/// What the sealer did, by outcome. Every refusal of input has its own counter.
struct sealer_counters {
  std::uint64_t sealed = 0;         ///< messages sealed
  std::uint64_t opened = 0;         ///< messages opened (authentic, fresh, not seen before)
  std::uint64_t tampered = 0;       ///< authentication failed (errc::tampered)
  std::uint64_t replayed = 0;       ///< outside the time window, or a counter seen or too old
  std::uint64_t unknown_key = 0;    ///< sealed under a key id not in the keyring
  std::uint64_t unsealed = 0;       ///< a plain (unencrypted) frame: the sender has no key
  std::uint64_t malformed = 0;      ///< not a sealed message: garbage, truncated, other version
  std::uint64_t salts_evicted = 0;  ///< senders forgotten early because max_salts was reached
  std::uint64_t wrong_receiver = 0; ///< bound to another receiver than this one
};

/// Seals and opens messages under a keyring. Not thread-safe: one caller at a time.
class sealer {
public:
  /// `salt` and `first_counter` must be random per process (they make the GCM nonces unique
  /// across restarts); a first_counter below 2^63 leaves room for 2^63 messages.
  sealer(keyring ring, std::uint32_t salt, std::uint64_t first_counter, sealer_config cfg = {});

  /// Seals `plain` under the primary key, stamped `now`, for `receiver` (the receiver's
  /// gossip address "host:port" as it advertises it; empty: not bound to a receiver, opened
  /// only by open() with an empty `self`). Errors: keyring_refused when the keyring is
  /// empty, crypto_failure (OpenSSL, or the counter is exhausted).
  [[nodiscard]] caf::expected<std::string> seal(std::string_view plain, wall_time now,
                                                std::string_view receiver = {});

  /// Opens a sealed message received at `now` by `self` (what senders bind to this node;
  /// see seal). Errors, each counted: sealed_malformed, unknown_key (also for an unsealed
  /// plain frame, counted as `unsealed`), wrong_receiver, tampered, replayed,
  /// crypto_failure. Replay state changes only for authentic messages.
  [[nodiscard]] caf::expected<std::string> open(std::string_view wire, wall_time now,
                                                std::string_view self = {});

  /// Forgets senders not seen for 2 x window (open() also does this as it goes).
  void prune(wall_time now);

  /// The keyring in use.
  [[nodiscard]] const keyring& ring() const noexcept { return ring_; }

  /// Replaces the keyring (rotation). Replay state is kept: it is per sender, not per key.
  void set_ring(keyring ring);

  /// Counters since construction.
  [[nodiscard]] const sealer_counters& counters() const noexcept { return counters_; }

  /// Senders currently tracked for replay protection.
  [[nodiscard]] std::size_t tracked_salts() const noexcept { return salts_.size(); }

  /// The configuration in use.
  [[nodiscard]] const sealer_config& config() const noexcept { return cfg_; }

private:
  /// Replay state of one sender (one salt). Invariant: bit (c % width) of `seen` is set iff
  /// counter c in (top - width, top] was accepted.
  struct salt_state {
    std::uint64_t top = 0;
    std::bitset<replay_window_width> seen;
    wall_time last_seen{};
  };

  /// Accepts `counter` of `salt` if it is new and within the window; records it.
  bool accept_counter(std::uint32_t salt, std::uint64_t counter, wall_time now);

  keyring ring_;
  sealer_config cfg_;
  std::uint32_t salt_;
  /// Next counter to seal with; strictly increasing.
  std::uint64_t next_counter_;
  sealer_counters counters_;
  std::unordered_map<std::uint32_t, salt_state> salts_;
  /// When open() next prunes expired salts.
  wall_time next_prune_{};
};

} // namespace starling::identity
