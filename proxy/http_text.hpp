// The character rules of HTTP field syntax (RFC 9110 section 5), shared by the HTTP/1.1 codec
// (http1.cpp) and the HTTP/2 conversions (h2.cpp). Pure and allocation-free.
#pragma once

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace starling::proxy::text {

constexpr char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality (HTTP field names, tokens).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i]))
      return false;
  return true;
}

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

/// The classes of a byte, one bit each, in a table (`char_class`): one load per byte where
/// a field name or token is checked, on every field of every head.
inline constexpr std::uint8_t tchar_bit = 1; ///< RFC 9110 tchar.
inline constexpr std::uint8_t upper_bit = 2; ///< 'A'..'Z'.

inline constexpr std::array<std::uint8_t, 256> char_classes = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c)
    t[static_cast<std::size_t>(c)] = tchar_bit;
  for (int c = 'a'; c <= 'z'; ++c)
    t[static_cast<std::size_t>(c)] = tchar_bit;
  for (int c = 'A'; c <= 'Z'; ++c)
    t[static_cast<std::size_t>(c)] = tchar_bit | upper_bit;
  for (const char c : std::string_view("!#$%&'*+-.^_`|~"))
    t[static_cast<unsigned char>(c)] = tchar_bit;
  return t;
}();

constexpr std::uint8_t char_class(char c) noexcept {
  return char_classes[static_cast<unsigned char>(c)];
}

/// RFC 9110 tchar.
constexpr bool is_tchar(char c) noexcept { return (char_class(c) & tchar_bit) != 0; }

/// A byte allowed in a field value or reason phrase: HT, SP, VCHAR, obs-text.
constexpr bool is_field_byte(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

/// Every byte of `s` is a tchar (false for none: a token is never empty). A loop, not
/// std::all_of over a function pointer, which the compiler did not inline (a call per byte
/// in the profile of bench/h2_core.cpp).
constexpr bool is_token(std::string_view s) noexcept {
  std::uint8_t all = tchar_bit;
  for (const char c : s)
    all &= char_class(c);
  return !s.empty() && all != 0;
}

/// A token without upper-case letters: what an HTTP/2 field name may be and HTTP/1.1 can
/// carry.
constexpr bool is_lower_token(std::string_view s) noexcept {
  bool ok = !s.empty();
  for (const char c : s)
    ok &= (char_class(c) & (tchar_bit | upper_bit)) == tchar_bit;
  return ok;
}

/// Every byte of `s` may be in a field value (is_field_byte): HT, SP, VCHAR, obs-text.
/// Without a branch per byte, so that the compiler can take several at once.
constexpr bool all_field_bytes(std::string_view s) noexcept {
  bool ok = true;
  for (const char c : s)
    ok &= is_field_byte(c);
  return ok;
}

constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back()))
    s.remove_suffix(1);
  return s;
}

/// Calls f(token) for each comma-separated, trimmed, non-empty token of `value`.
template <class F> constexpr void for_each_token(std::string_view value, F&& f) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    const auto token = trim(value.substr(0, comma));
    if (!token.empty())
      f(token);
    if (comma == std::string_view::npos)
      break;
    value.remove_prefix(comma + 1);
  }
}

/// A grpc-status field's value as gRPC reads it (in HTTP/2 trailers or a head, or in an
/// HTTP/1.1 trailer section): a number from 0 to 999; anything else reads as 2 (UNKNOWN).
inline std::uint16_t grpc_status_number(std::string_view value) noexcept {
  unsigned v = 0;
  const auto* end = value.data() + value.size();
  const auto r = std::from_chars(value.data(), end, v);
  return r.ec == std::errc{} && r.ptr == end && v <= 999 ? static_cast<std::uint16_t>(v)
                                                         : std::uint16_t{2};
}

} // namespace starling::proxy::text
