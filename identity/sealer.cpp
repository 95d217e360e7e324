#include "identity/sealer.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <memory>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "identity/errc.hpp"

namespace starling::identity {

namespace {

using cipher_ctx_ptr = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

constexpr std::size_t nonce_size = 12;
constexpr std::size_t offset_key_id = 2;
constexpr std::size_t offset_nonce = offset_key_id + key_id_size;
constexpr std::size_t offset_timestamp = offset_nonce + nonce_size;
constexpr std::size_t offset_receiver = offset_timestamp + 8;

/// Domain separation of the receiver tag.
constexpr std::string_view receiver_tag_context{"starling-receiver-1\0", 20};

using receiver_tag = std::array<char, receiver_tag_size>;

receiver_tag tag_of(std::string_view receiver) {
  std::string input{receiver_tag_context};
  input.append(receiver);
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest.data());
  receiver_tag out{};
  std::copy_n(digest.begin(), out.size(), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

void put_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i)
    out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint64_t get_be(std::string_view in, std::size_t offset, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v = (v << 8) | static_cast<std::uint8_t>(in[offset + static_cast<std::size_t>(i)]);
  return v;
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::int64_t to_ms(wall_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

} // namespace

sealer::sealer(keyring ring, std::uint32_t salt, std::uint64_t first_counter, sealer_config cfg)
    : ring_(std::move(ring)), cfg_(cfg), salt_(salt), next_counter_(first_counter) {
  if (cfg_.max_salts == 0)
    cfg_.max_salts = 1;
  if (cfg_.window <= std::chrono::milliseconds::zero())
    cfg_.window = sealer_config{}.window;
}

void sealer::set_ring(keyring ring) { ring_ = std::move(ring); }

caf::expected<std::string> sealer::seal(std::string_view plain, wall_time now,
                                        std::string_view receiver) {
  const auto* key = ring_.find(ring_.primary_id().value_or(key_id{}));
  if (ring_.empty() || key == nullptr)
    return make_error(errc::keyring_refused, "the gossip keyring is empty: nothing to seal with");
  if (next_counter_ == std::numeric_limits<std::uint64_t>::max())
    return make_error(errc::crypto_failure, "the sealing counter is exhausted; restart the agent");
  if (plain.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) - 64)
    return make_error(errc::invalid_argument, "message too large to seal");
  if (receiver.size() > 1024)
    return make_error(errc::invalid_argument, "receiver name too long to seal for");
  const auto counter = next_counter_++;
  const auto id = *ring_.primary_id();
  std::string out;
  out.reserve(sealed_overhead + plain.size());
  out += static_cast<char>(sealed_frame_byte);
  out += static_cast<char>(sealed_version);
  out.append(reinterpret_cast<const char*>(id.data()), id.size());
  put_be(out, salt_, 4);
  put_be(out, counter, 8);
  put_be(out, static_cast<std::uint64_t>(to_ms(now)), 8);
  const auto tag = tag_of(receiver);
  out.append(tag.data(), tag.size());
  const std::string_view header{out.data(), sealed_header_size};
  cipher_ctx_ptr ctx{EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free};
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_size),
                          nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key->data(),
                         bytes_of(header.substr(offset_nonce, nonce_size))) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes_of(header),
                        static_cast<int>(header.size())) != 1 ||
      (!receiver.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes_of(receiver),
                                              static_cast<int>(receiver.size())) != 1))
    return make_openssl_error(errc::crypto_failure, "AES-256-GCM seal setup");
  out.resize(sealed_header_size + plain.size() + sealed_tag_size);
  auto* body = reinterpret_cast<unsigned char*>(out.data()) + sealed_header_size;
  int written = 0;
  if (!plain.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), body, &len, bytes_of(plain), static_cast<int>(plain.size())) !=
        1)
      return make_openssl_error(errc::crypto_failure, "AES-256-GCM seal");
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), body + written, &len) != 1)
    return make_openssl_error(errc::crypto_failure, "AES-256-GCM seal final");
  written += len;
  if (static_cast<std::size_t>(written) != plain.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(sealed_tag_size),
                          body + written) != 1)
    return make_openssl_error(errc::crypto_failure, "AES-256-GCM tag");
  ++counters_.sealed;
  return out;
}

caf::expected<std::string> sealer::open(std::string_view wire, wall_time now,
                                        std::string_view self) {
  if (now >= next_prune_) {
    prune(now);
    next_prune_ = now + cfg_.window / 4;
  }
  if (!wire.empty() && static_cast<std::uint8_t>(wire[0]) == plain_frame_byte) {
    ++counters_.unsealed;
    return make_error(errc::unknown_key,
                      "an unsealed (plain) message, but gossip encryption is on here: "
                      "the sender has no gossip key");
  }
  if (wire.empty() || static_cast<std::uint8_t>(wire[0]) != sealed_frame_byte) {
    ++counters_.malformed;
    return make_error(errc::sealed_malformed, "not a sealed message");
  }
  if (wire.size() < sealed_overhead) {
    ++counters_.malformed;
    return make_error(errc::sealed_malformed,
                      "sealed message truncated at " + std::to_string(wire.size()) + " bytes");
  }
  if (static_cast<std::uint8_t>(wire[1]) != sealed_version) {
    ++counters_.malformed;
    return make_error(errc::sealed_malformed,
                      "sealed message of unknown version " +
                          std::to_string(static_cast<std::uint8_t>(wire[1])));
  }
  key_id id{};
  for (std::size_t i = 0; i < id.size(); ++i)
    id[i] = static_cast<std::uint8_t>(wire[offset_key_id + i]);
  const auto* key = ring_.find(id);
  if (key == nullptr) {
    ++counters_.unknown_key;
    return make_error(errc::unknown_key,
                      "sealed under key " + to_hex(id) + ", which is not in this node's keyring");
  }
  // Bound to another receiver: a datagram captured on its way to another member. Refused
  // before decrypting; a forged tag fails authentication anyway (the AAD holds `self`).
  const auto expected_tag = tag_of(self);
  if (wire.substr(offset_receiver, receiver_tag_size) !=
      std::string_view{expected_tag.data(), expected_tag.size()}) {
    ++counters_.wrong_receiver;
    return make_error(errc::wrong_receiver,
                      "sealed for another receiver than this node (" + std::string{self} +
                          "): replayed from another member, or the sender reached this node "
                          "by another address than the one it advertises");
  }
  const auto header = wire.substr(0, sealed_header_size);
  const auto cipher = wire.substr(sealed_header_size, wire.size() - sealed_overhead);
  const auto tag = wire.substr(wire.size() - sealed_tag_size);
  cipher_ctx_ptr ctx{EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free};
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_size),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key->data(),
                         bytes_of(header.substr(offset_nonce, nonce_size))) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes_of(header),
                        static_cast<int>(header.size())) != 1 ||
      (!self.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes_of(self),
                                          static_cast<int>(self.size())) != 1))
    return make_openssl_error(errc::crypto_failure, "AES-256-GCM open setup");
  std::string plain(cipher.size(), '\0');
  int written = 0;
  if (!cipher.empty()) {
    if (EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &len,
                          bytes_of(cipher), static_cast<int>(cipher.size())) != 1)
      return make_openssl_error(errc::crypto_failure, "AES-256-GCM open");
    written = len;
  }
  std::array<unsigned char, sealed_tag_size> tag_copy{};
  std::copy(tag.begin(), tag.end(), tag_copy.begin());
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(sealed_tag_size),
                          tag_copy.data()) != 1)
    return make_openssl_error(errc::crypto_failure, "AES-256-GCM set tag");
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()) + written,
                          &len) != 1) {
    ERR_clear_error();
    ++counters_.tampered;
    return make_error(errc::tampered,
                      "authentication of a message sealed under key " + to_hex(id) + " failed");
  }
  // Authentic from here on: the replay checks may change state.
  const auto sent_ms = static_cast<std::int64_t>(get_be(wire, offset_timestamp, 8));
  const auto skew_ms = to_ms(now) - sent_ms;
  const auto window_ms = cfg_.window.count();
  if (sent_ms < 0 || skew_ms > window_ms || skew_ms < -window_ms) {
    ++counters_.replayed;
    return make_error(errc::replayed, "message stamped " + std::to_string(skew_ms) +
                                          " ms away from this node's clock (window " +
                                          std::to_string(window_ms) +
                                          " ms): replayed, or the clocks are skewed");
  }
  const auto salt = static_cast<std::uint32_t>(get_be(wire, offset_nonce, 4));
  const auto counter = get_be(wire, offset_nonce + 4, 8);
  if (!accept_counter(salt, counter, now)) {
    ++counters_.replayed;
    return make_error(errc::replayed, "message counter seen before or too old");
  }
  ++counters_.opened;
  return plain;
}

bool sealer::accept_counter(std::uint32_t salt, std::uint64_t counter, wall_time now) {
  const auto expiry = 2 * cfg_.window;
  auto it = salts_.find(salt);
  if (it != salts_.end() && now - it->second.last_seen > expiry) {
    // Forgotten: every message it sent before is now outside the time window.
    salts_.erase(it);
    it = salts_.end();
  }
  if (it == salts_.end()) {
    if (salts_.size() >= cfg_.max_salts) {
      prune(now);
      if (salts_.size() >= cfg_.max_salts) {
        auto oldest = salts_.begin();
        for (auto i = salts_.begin(); i != salts_.end(); ++i)
          if (i->second.last_seen < oldest->second.last_seen)
            oldest = i;
        salts_.erase(oldest);
        ++counters_.salts_evicted;
      }
    }
    salt_state st;
    st.top = counter;
    st.seen.set(counter % replay_window_width);
    st.last_seen = now;
    salts_.emplace(salt, st);
    return true;
  }
  auto& st = it->second;
  if (counter > st.top) {
    const auto advance = counter - st.top;
    if (advance >= replay_window_width) {
      st.seen.reset();
    } else {
      for (std::uint64_t c = st.top + 1; c <= counter; ++c)
        st.seen.reset(c % replay_window_width);
    }
    st.top = counter;
    st.seen.set(counter % replay_window_width);
    st.last_seen = std::max(st.last_seen, now);
    return true;
  }
  if (st.top - counter >= replay_window_width)
    return false; // too old to tell
  const auto bit = counter % replay_window_width;
  if (st.seen.test(bit))
    return false;
  st.seen.set(bit);
  st.last_seen = std::max(st.last_seen, now);
  return true;
}

void sealer::prune(wall_time now) {
  const auto expiry = 2 * cfg_.window;
  for (auto i = salts_.begin(); i != salts_.end();) {
    if (now - i->second.last_seen > expiry)
      i = salts_.erase(i);
    else
      ++i;
  }
}

} // namespace starling::identity
