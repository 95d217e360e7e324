// The gossip keyring (Serf/Consul style): 32-byte AES-256 keys, one primary that seals, all
// of them open. A pure value type: no I/O, no clock, no threads. Its text form is what the
// agent persists in <data-dir>/keyring; keys are shown as base64 (like `serf keygen`) and
// named by a short id that reveals nothing about the key.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace starling::identity {

/// Bytes of a gossip key (AES-256).
constexpr std::size_t gossip_key_size = 32;

/// Bytes of a key id: the first 8 bytes of SHA-256(key).
constexpr std::size_t key_id_size = 8;

/// Bound on the keys of one keyring; installing more is refused (keyring_refused).
constexpr std::size_t max_keyring_keys = 32;

/// A raw gossip key. Secret: never log it.
using gossip_key = std::array<std::uint8_t, gossip_key_size>;

/// The public name of a key: first 8 bytes of SHA-256(key), shown as 16 hex digits.
using key_id = std::array<std::uint8_t, key_id_size>;

/// Decodes a key from its base64 text (standard alphabet, padded, 44 characters; surrounding
/// whitespace is ignored). Errors: invalid_argument, without echoing the input (a secret).
[[nodiscard]] caf::expected<gossip_key> parse_gossip_key(std::string_view base64);

/// The base64 text of `key` (44 characters), as `starling keyring generate` prints it.
[[nodiscard]] std::string to_base64(const gossip_key& key);

/// A fresh random key from OpenSSL's CSPRNG. Errors: crypto_failure.
[[nodiscard]] caf::expected<gossip_key> generate_gossip_key();

/// The id of `key`: first 8 bytes of SHA-256(key).
[[nodiscard]] key_id id_of(const gossip_key& key);

/// 16 lowercase hex digits.
[[nodiscard]] std::string to_hex(const key_id& id);

/// Parses 16 hex digits (either case). Errors: invalid_argument.
[[nodiscard]] caf::expected<key_id> parse_key_id(std::string_view hex);

/// A set of gossip keys with one primary. Invariants: ids are unique; the primary, when the
/// ring is not empty, is one of the installed keys; at most max_keyring_keys keys. Keys are
/// wiped from memory (OPENSSL_cleanse) when an entry is destroyed.
class keyring {
public:
  /// An empty keyring: nothing can be sealed or opened.
  keyring() = default;

  /// A keyring holding `primary` only.
  explicit keyring(const gossip_key& primary);

  /// True when no key is installed.
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }

  /// Number of installed keys.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// Adds `key` (idempotent). The first key of an empty ring becomes primary.
  /// Errors: keyring_refused when the ring already holds max_keyring_keys keys.
  [[nodiscard]] caf::error install(const gossip_key& key);

  /// Makes the installed key `id` the primary. Errors: unknown_key when not installed.
  [[nodiscard]] caf::error use(const key_id& id);

  /// Removes the key `id`. Errors: keyring_refused for the primary (use another key
  /// first), unknown_key when not installed.
  [[nodiscard]] caf::error remove(const key_id& id);

  /// The key named `id`, or null.
  [[nodiscard]] const gossip_key* find(const key_id& id) const noexcept;

  /// The primary key and its id, or std::nullopt when empty.
  [[nodiscard]] std::optional<key_id> primary_id() const noexcept;

  /// The primary key, or null when empty.
  [[nodiscard]] const gossip_key* primary() const noexcept;

  /// Installed ids, primary first, then in installation order.
  [[nodiscard]] std::vector<key_id> ids() const;

  /// Resolves an operator's KEY_OR_ID: a base64 key, or 16 hex digits of an id. The key
  /// need not be installed. Errors: invalid_argument.
  [[nodiscard]] static caf::expected<key_id> resolve(std::string_view key_or_id);

  /// Text form, one key per line: "primary <base64>" first, then "key <base64>", after a
  /// comment line. Contains the secret keys.
  [[nodiscard]] std::string to_text() const;

  /// Parses to_text()'s form; blank lines and lines starting with '#' are ignored. Errors:
  /// sealed_malformed naming the line (never the key), keyring_refused when there are more
  /// than max_keyring_keys keys or no primary.
  [[nodiscard]] static caf::expected<keyring> from_text(std::string_view text);

  friend bool operator==(const keyring& a, const keyring& b) noexcept;

private:
  struct entry {
    key_id id{};
    gossip_key key{};
    entry() = default;
    entry(const key_id& i, const gossip_key& k) : id(i), key(k) {}
    entry(const entry&) = default;
    entry& operator=(const entry&) = default;
    ~entry();
  };
  /// Index of the primary in entries_ (0 when empty). Entries stay in installation order.
  std::size_t primary_ = 0;
  std::vector<entry> entries_;
};

} // namespace starling::identity
