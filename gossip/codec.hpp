// Wire codec of the gossip protocol: core structs <-> protobuf (proto/gossip.proto) bytes.
// An edge adapter: never trusts its input, never throws, never aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <caf/expected.hpp>

#include "gossip/types.hpp"
#include "proto/wire/framing.hpp"

namespace starling::gossip {

/// First byte of every gossip datagram.
enum class frame_type : std::uint8_t {
  plain = 0x01,  ///< a Packet follows, unencrypted
  sealed = 0x02, ///< reserved: AES-256-GCM sealed Packet (identity issue)
};

/// Encoded bytes of the smallest valid member update inside a Packet or PushPull: the
/// entry's tag and length (2), a state (2) and a one-byte name (3).
inline constexpr std::size_t min_encoded_update = 7;

/// The most valid member updates a datagram of `max_datagram` bytes can carry: the per-datagram
/// limit of codec_limits::max_updates for that datagram size (the agent derives it from
/// gossip.max_datagram).
[[nodiscard]] constexpr std::size_t datagram_updates_bound(std::size_t max_datagram) noexcept {
  return max_datagram / min_encoded_update;
}

/// Limits applied when decoding untrusted bytes. A message breaking one is refused. Counts
/// of repeated fields (updates, members, tags of each member, extension payloads and
/// sections) are read from the wire bytes before protobuf builds anything, so a message
/// packed with many tiny entries is refused before it costs memory.
struct codec_limits {
  std::size_t max_datagram = 1400;   ///< bytes, frame byte included
  std::size_t max_frame = 16u << 20; ///< bytes of one TCP frame (length prefix excluded)
  std::size_t max_name = 128;        ///< bytes of a member name
  std::size_t max_address = 256;     ///< bytes of "host:port"
  std::size_t max_tags = 64;         ///< tags per member
  std::size_t max_tag_bytes = 512;   ///< bytes of one tag key or value
  /// Member updates in one datagram: the most a datagram of max_datagram bytes can carry
  /// (datagram_updates_bound; 200 at 1,400 bytes). Counted on the wire before parsing.
  std::size_t max_updates = datagram_updates_bound(1400);
  /// Members in one push-pull (a full state: decision 0017). Counted on the wire before
  /// parsing; the bytes are bounded by max_frame, so a state also needs
  /// members x encoded row size <= max_frame (about 40 bytes a row without tags).
  std::size_t max_push_pull_members = 65536;
  /// Tag entries of all the members of one push-pull, counted on the wire before parsing.
  /// A decoded tag costs about 30 times its wire bytes, so the frame bound alone would let
  /// one push-pull cost hundreds of MB (16.6 MB of tags: 377 MB). 4,096 x 64: the most the
  /// old members limit of 4,096 allowed.
  std::size_t max_push_pull_tags = 262144;
  /// Extension payloads piggybacked on one datagram.
  std::size_t max_extension_payloads = gossip::max_extension_payloads;
  /// Bytes of one piggybacked extension payload.
  std::size_t max_extension_payload_bytes = gossip::max_extension_payload_bytes;
  /// Extension sections in one push-pull.
  std::size_t max_extension_sections = gossip::max_extension_sections;
  /// Bytes of one push-pull extension section.
  std::size_t max_extension_section_bytes = gossip::max_extension_section_bytes;
};

/// Encodes `p` as one datagram: the frame byte `plain`, then the Packet.
[[nodiscard]] std::string encode_datagram(const packet& p);

/// Decodes one datagram. Errors: truncated (empty), unknown_frame, malformed,
/// unsupported_version, invalid_field (empty sender, unknown kind or state, extension kind 0,
/// limits: counts and sizes are checked before anything is copied), oversized. Extension
/// payloads of any non-zero kind are kept: whether this node runs that kind is the
/// membership core's business.
[[nodiscard]] caf::expected<packet> decode_datagram(std::string_view bytes,
                                                    const codec_limits& limits = {});

/// Encodes a push-pull as one TCP frame: 4-byte big-endian length, then a Frame message.
[[nodiscard]] std::string encode_frame(const push_pull& pp);

/// Encodes a push-pull as the bytes of one PushPull message (no frame around it): the body
/// of request type 1 on the transport's request channel.
[[nodiscard]] std::string encode_push_pull(const push_pull& pp);

/// Decodes the bytes of one PushPull message, checked as decode_frame checks a push-pull
/// frame (oversized over limits.max_frame, malformed, invalid_field).
[[nodiscard]] caf::expected<push_pull> decode_push_pull(std::string_view bytes,
                                                        const codec_limits& limits = {});

/// Encodes an error answer as one TCP frame (the peer refused the request).
[[nodiscard]] std::string encode_error_frame(std::string_view reason);

/// Encodes admission bytes (an encoded IdentityRequest or IdentityResponse of
/// proto/admission.proto, opaque here) as one TCP frame: length prefix, then a Frame.
[[nodiscard]] std::string encode_admission_frame(std::string_view body);

/// Decodes the body of one TCP frame (length prefix already removed) as a push-pull.
/// Extension sections are checked like datagram payloads (kind 0, count, size, and two
/// sections of one kind are invalid_field). An error frame from the peer yields errc::peer_refused
/// with its reason; an admission frame is refused with invalid_field.
[[nodiscard]] caf::expected<push_pull> decode_frame(std::string_view body,
                                                    const codec_limits& limits = {});

/// The bytes an admission frame carries: an encoded IdentityRequest or IdentityResponse,
/// not parsed by the gossip codec.
struct admission_payload {
  std::string bytes;

  friend bool operator==(const admission_payload&, const admission_payload&) = default;
};

/// What one TCP frame carries: a push-pull or admission bytes.
using frame_body = std::variant<push_pull, admission_payload>;

/// Decodes the body of one TCP frame (length prefix already removed), whatever it carries.
/// Errors as decode_frame: an error frame yields errc::peer_refused with its reason;
/// oversized, malformed, invalid_field (no body, push-pull fields breaking `limits`).
[[nodiscard]] caf::expected<frame_body> decode_any_frame(std::string_view body,
                                                         const codec_limits& limits = {});

/// Splits a TCP byte stream into frame bodies. Feed bytes as they arrive; pull complete
/// bodies with next(). A length over `max_frame` puts the reader in a failed state.
class frame_reader {
public:
  explicit frame_reader(std::size_t max_frame = codec_limits{}.max_frame);

  /// Appends received bytes.
  void feed(std::string_view bytes);

  /// The next complete frame body, if one is buffered; an error once the stream is bad
  /// (oversized length). Returns std::nullopt while more bytes are needed; once a valid
  /// length prefix is in, the buffer is sized for the whole frame at once.
  [[nodiscard]] std::optional<caf::expected<std::string>> next();

  /// The body length (bytes) the next frame announces, once its 4-byte length prefix is
  /// buffered (std::nullopt before): lets the caller refuse a frame before buffering it.
  [[nodiscard]] std::optional<std::size_t> announced() const;

private:
  /// The shared framing (proto/wire); this class adds the gossip errors.
  wire::frame_reader reader_;
};

} // namespace starling::gossip
