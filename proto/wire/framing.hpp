// The TCP framing every Starling protocol shares: a body behind its 4-byte big-endian
// length. Pure: bytes in, bytes out; no CAF, no sockets, so the gossip transport, the admin
// channel and the proxy use the same code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace starling::wire {

/// Bytes of the length prefix in front of every TCP frame body.
inline constexpr std::size_t length_prefix_size = 4;

/// Largest body a length prefix can announce.
inline constexpr std::size_t max_framed_body = 0xffffffffu;

/// Writes `n` as the 4-byte big-endian prefix at `out` (which holds at least 4 bytes).
void put_length(std::uint32_t n, char* out) noexcept;

/// The length announced by the 4-byte big-endian prefix at `in` (at least 4 bytes).
[[nodiscard]] std::uint32_t read_length(const char* in) noexcept;

/// `body` behind its length prefix. The caller keeps bodies under max_framed_body (every
/// protocol's own limit is far below it).
[[nodiscard]] std::string framed(std::string_view body);

/// Splits a TCP byte stream into frame bodies. Feed bytes as they arrive; pull complete
/// bodies with next(). A zero or oversized length puts the reader in a failed state for
/// good (the stream has lost its framing). Not thread-safe: one connection owns it.
class frame_reader {
public:
  /// What next() found.
  enum class status : std::uint8_t {
    need_more = 1, ///< no complete frame buffered yet
    frame,         ///< `body` holds the next frame
    empty,         ///< the stream announced a frame of length 0 (failed)
    oversized,     ///< the stream announced more than `max_body` bytes (failed)
  };

  /// One result of next(): a frame body, or why there is none. `length` is the announced
  /// length for `empty` and `oversized`.
  struct result {
    status what = status::need_more;
    std::string body;
    std::uint32_t length = 0;
  };

  /// A reader that refuses frames above `max_body` bytes before buffering them.
  explicit frame_reader(std::size_t max_body);

  /// Appends received bytes; ignored once failed (nothing more is kept).
  void feed(std::string_view bytes);

  /// The next complete frame body, or need_more, or the failure (repeated on every later
  /// call). Once a valid length prefix is in, the buffer is sized for the whole frame at
  /// once; a frame that fills the buffer exactly is handed over without a copy.
  [[nodiscard]] result next();

  /// The body length the next frame announces, once its prefix is buffered: lets the owner
  /// refuse a frame (by its own rules) before buffering it.
  [[nodiscard]] std::optional<std::size_t> announced() const;

  /// True once the stream announced an empty or oversized frame.
  [[nodiscard]] bool failed() const noexcept { return failed_; }

  /// The bound this reader enforces.
  [[nodiscard]] std::size_t max_body() const noexcept { return max_body_; }

private:
  /// Largest body accepted; set at construction.
  std::size_t max_body_;
  /// Bytes received and not yet handed out; in the failed state exactly the bad prefix.
  std::string buffer_;
  /// Set for good by the first empty or oversized announcement.
  bool failed_ = false;
};

} // namespace starling::wire
