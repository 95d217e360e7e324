// The character rules of HTTP field syntax (RFC 9110 section 5), shared by the HTTP/1.1 codec
// (http1.cpp) and the HTTP/2 conversions (h2.cpp). Pure and allocation-free.
#pragma once

#include <cstddef>
#include <string_view>

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

/// RFC 9110 tchar.
constexpr bool is_tchar(char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return true;
  switch (c) {
  case '!':
  case '#':
  case '$':
  case '%':
  case '&':
  case '\'':
  case '*':
  case '+':
  case '-':
  case '.':
  case '^':
  case '_':
  case '`':
  case '|':
  case '~':
    return true;
  default:
    return false;
  }
}

/// A byte allowed in a field value or reason phrase: HT, SP, VCHAR, obs-text.
constexpr bool is_field_byte(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

/// Every byte of `s` is a tchar (false for none: a token is never empty). A loop, not
/// std::all_of over a function pointer, which the compiler did not inline (a call per byte
/// in the profile of bench/h2_core.cpp).
constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty())
    return false;
  for (const char c : s)
    if (!is_tchar(c))
      return false;
  return true;
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

} // namespace starling::proxy::text
