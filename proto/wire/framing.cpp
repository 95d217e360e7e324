#include "proto/wire/framing.hpp"

namespace starling::wire {

void put_length(std::uint32_t n, char* out) noexcept {
  out[0] = static_cast<char>((n >> 24) & 0xff);
  out[1] = static_cast<char>((n >> 16) & 0xff);
  out[2] = static_cast<char>((n >> 8) & 0xff);
  out[3] = static_cast<char>(n & 0xff);
}

std::uint32_t read_length(const char* in) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(in);
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

std::string framed(std::string_view body) {
  std::string out(length_prefix_size + body.size(), '\0');
  put_length(static_cast<std::uint32_t>(body.size()), out.data());
  body.copy(out.data() + length_prefix_size, body.size());
  return out;
}

frame_reader::frame_reader(std::size_t max_body) : max_body_(max_body) {
  // Nothing else: the buffer grows as bytes arrive.
}

void frame_reader::feed(std::string_view bytes) {
  if (failed_)
    return;
  buffer_.append(bytes.data(), bytes.size());
}

frame_reader::result frame_reader::next() {
  if (buffer_.size() < length_prefix_size)
    return {};
  const std::uint32_t length = read_length(buffer_.data());
  if (length == 0 || length > max_body_) {
    // Keep exactly the offending prefix, so every later call reports the same failure.
    failed_ = true;
    buffer_.resize(length_prefix_size);
    return {length == 0 ? status::empty : status::oversized, {}, length};
  }
  if (buffer_.size() - length_prefix_size < length) {
    // One allocation of the final size rather than doublings (and their copies).
    buffer_.reserve(length_prefix_size + length);
    return {};
  }
  result out{status::frame, {}, length};
  if (buffer_.size() == length_prefix_size + length) {
    // The usual case, one frame per exchange: hand the buffer over, no copy of the body.
    out.body = std::move(buffer_);
    out.body.erase(0, length_prefix_size);
    buffer_.clear();
  } else {
    out.body = buffer_.substr(length_prefix_size, length);
    buffer_.erase(0, length_prefix_size + length);
  }
  return out;
}

std::optional<std::size_t> frame_reader::announced() const {
  if (buffer_.size() < length_prefix_size)
    return std::nullopt;
  return read_length(buffer_.data());
}

} // namespace starling::wire
