// What a parsed HTTP/1.x head says, as one string (the fuzz targets compare heads with it).
#pragma once

#include <string>

#include "proxy/http1.hpp"

namespace starling::proxy::fuzz {

/// The start line, the fields, the framing and the flags of `h`.
inline std::string describe(const message_head& h) {
  std::string s(h.raw.substr(0, h.raw.find('\r')));
  s += "/" + std::to_string(h.headers.size());
  for (const auto& f : h.headers) {
    s += '|';
    s += f.name;
    s += '=';
    s += f.value;
  }
  s += "/" + std::to_string(static_cast<int>(h.body)) + "/" + std::to_string(h.content_length);
  s += h.keep_alive ? "k" : "-";
  s += h.expect_continue ? "e" : "-";
  s += h.upgrade ? "u" : "-";
  s += h.is_connect ? "c" : "-";
  return s;
}

} // namespace starling::proxy::fuzz
