#include "identity/keyring.hpp"

#include <algorithm>
#include <span>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "identity/errc.hpp"
#include "identity/pki.hpp"
#include "proto/wire/hex.hpp"

namespace starling::identity {

namespace {

constexpr std::string_view b64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 text length of a 32-byte key: 4 * ceil(32 / 3).
constexpr std::size_t key_text_size = 44;

int b64_value(char c) {
  auto pos = b64_alphabet.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

std::string_view trim(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

} // namespace

caf::expected<gossip_key> parse_gossip_key(std::string_view text) {
  text = trim(text);
  auto bad = [&](std::string why) {
    return make_error(errc::invalid_argument,
                      "expected a base64 key of 32 bytes (as `starling keyring generate` "
                      "prints), " +
                          why);
  };
  if (text.size() != key_text_size)
    return bad("got " + std::to_string(text.size()) + " characters instead of 44");
  // 44 characters: 10 full groups (30 bytes) and one group "xxx=" (2 bytes).
  if (text[43] != '=')
    return bad("the key does not end with '='");
  gossip_key key{};
  std::size_t out = 0;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < 43; ++i) {
    const int v = b64_value(text[i]);
    if (v < 0)
      return bad("it has a character outside the base64 alphabet");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (out == key.size())
        return bad("it decodes to more than 32 bytes");
      key[out++] = static_cast<std::uint8_t>((acc >> bits) & 0xff);
    }
  }
  // 43 * 6 = 258 bits: 32 bytes and 2 leftover bits, which canonical base64 sets to zero.
  if (out != key.size() || (acc & ((1u << bits) - 1)) != 0)
    return bad("it is not canonical base64 of 32 bytes");
  return key;
}

std::string to_base64(const gossip_key& key) {
  std::string out;
  out.reserve(key_text_size);
  std::size_t i = 0;
  for (; i + 3 <= key.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{key[i]} << 16) | (std::uint32_t{key[i + 1]} << 8) |
                            std::uint32_t{key[i + 2]};
    out += b64_alphabet[(v >> 18) & 63];
    out += b64_alphabet[(v >> 12) & 63];
    out += b64_alphabet[(v >> 6) & 63];
    out += b64_alphabet[v & 63];
  }
  // 32 = 10 * 3 + 2: two bytes remain.
  const std::uint32_t v = (std::uint32_t{key[i]} << 16) | (std::uint32_t{key[i + 1]} << 8);
  out += b64_alphabet[(v >> 18) & 63];
  out += b64_alphabet[(v >> 12) & 63];
  out += b64_alphabet[(v >> 6) & 63];
  out += '=';
  return out;
}

caf::expected<gossip_key> generate_gossip_key() {
  gossip_key key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1)
    return make_openssl_error(errc::crypto_failure, "RAND_bytes for a gossip key");
  return key;
}

key_id id_of(const gossip_key& key) {
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(key.data(), key.size(), digest.data());
  key_id id{};
  std::copy_n(digest.begin(), id.size(), id.begin());
  return id;
}

std::string to_hex(const key_id& id) { return to_hex(std::span<const std::uint8_t>{id}); }

caf::expected<key_id> parse_key_id(std::string_view hex) {
  hex = trim(hex);
  if (hex.size() != key_id_size * 2)
    return make_error(errc::invalid_argument, "expected a key id of 16 hex digits");
  key_id id{};
  for (std::size_t i = 0; i < id.size(); ++i) {
    const int hi = wire::hex_value(hex[2 * i]);
    const int lo = wire::hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return make_error(errc::invalid_argument, "expected a key id of 16 hex digits");
    id[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return id;
}

keyring::entry::~entry() { OPENSSL_cleanse(key.data(), key.size()); }

keyring::keyring(const gossip_key& primary) { entries_.emplace_back(id_of(primary), primary); }

caf::error keyring::install(const gossip_key& key) {
  const auto id = id_of(key);
  if (find(id) != nullptr)
    return {};
  if (entries_.size() >= max_keyring_keys)
    return make_error(errc::keyring_refused, "the keyring already holds " +
                                                 std::to_string(max_keyring_keys) +
                                                 " keys; remove one first");
  entries_.emplace_back(id, key);
  if (entries_.size() == 1)
    primary_ = 0;
  return {};
}

caf::error keyring::use(const key_id& id) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].id == id) {
      primary_ = i;
      return {};
    }
  }
  return make_error(errc::unknown_key, "key " + to_hex(id) + " is not installed; install it first");
}

caf::error keyring::remove(const key_id& id) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].id != id)
      continue;
    if (i == primary_)
      return make_error(errc::keyring_refused, "key " + to_hex(id) +
                                                   " is the primary key; make another key "
                                                   "primary (`keyring use`) before removing it");
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    if (primary_ > i)
      --primary_;
    return {};
  }
  return make_error(errc::unknown_key, "key " + to_hex(id) + " is not installed");
}

const gossip_key* keyring::find(const key_id& id) const noexcept {
  for (const auto& e : entries_)
    if (e.id == id)
      return &e.key;
  return nullptr;
}

std::optional<key_id> keyring::primary_id() const noexcept {
  if (entries_.empty())
    return std::nullopt;
  return entries_[primary_].id;
}

const gossip_key* keyring::primary() const noexcept {
  return entries_.empty() ? nullptr : &entries_[primary_].key;
}

std::vector<key_id> keyring::ids() const {
  std::vector<key_id> out;
  out.reserve(entries_.size());
  if (entries_.empty())
    return out;
  out.push_back(entries_[primary_].id);
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (i != primary_)
      out.push_back(entries_[i].id);
  return out;
}

caf::expected<key_id> keyring::resolve(std::string_view key_or_id) {
  auto trimmed = trim(key_or_id);
  if (trimmed.size() == key_id_size * 2)
    return parse_key_id(trimmed);
  if (trimmed.size() == key_text_size) {
    auto key = parse_gossip_key(trimmed);
    if (!key)
      return key.error();
    auto id = id_of(*key);
    OPENSSL_cleanse(key->data(), key->size());
    return id;
  }
  return make_error(errc::invalid_argument,
                    "expected a base64 key (44 characters) or a key id (16 hex digits)");
}

std::string keyring::to_text() const {
  std::string out = "# starling gossip keyring: the primary key seals, every key opens. "
                    "Secret: keep mode 0600.\n";
  if (entries_.empty())
    return out;
  out += "primary " + to_base64(entries_[primary_].key) + "\n";
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (i != primary_)
      out += "key " + to_base64(entries_[i].key) + "\n";
  return out;
}

caf::expected<keyring> keyring::from_text(std::string_view text) {
  keyring ring;
  std::optional<key_id> primary;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    auto line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#')
      continue;
    auto bad = [&](const std::string& why) {
      return make_error(errc::sealed_malformed,
                        "keyring line " + std::to_string(line_no) + ": " + why);
    };
    auto space = line.find(' ');
    if (space == std::string_view::npos)
      return bad("expected \"primary <base64 key>\" or \"key <base64 key>\"");
    auto word = line.substr(0, space);
    if (word != "primary" && word != "key")
      return bad("expected \"primary <base64 key>\" or \"key <base64 key>\"");
    auto key = parse_gossip_key(line.substr(space + 1));
    if (!key)
      return bad("not a base64 key of 32 bytes");
    if (word == "primary") {
      if (primary)
        return bad("a second primary key");
      primary = id_of(*key);
    }
    auto err = ring.install(*key);
    OPENSSL_cleanse(key->data(), key->size());
    if (err)
      return err;
  }
  if (ring.empty())
    return ring;
  if (!primary)
    return make_error(errc::keyring_refused, "the keyring names no primary key");
  if (auto err = ring.use(*primary))
    return err;
  return ring;
}

bool operator==(const keyring& a, const keyring& b) noexcept {
  if (a.entries_.size() != b.entries_.size() || a.primary_id() != b.primary_id())
    return false;
  for (const auto& e : a.entries_) {
    const auto* k = b.find(e.id);
    if (k == nullptr || *k != e.key)
      return false;
  }
  return true;
}

} // namespace starling::identity
