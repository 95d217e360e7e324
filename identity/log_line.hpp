// A line for the node's log, as the identity protocol cores return it (they log nothing
// themselves: the actor that owns a core writes its lines with spdlog).
#pragma once

#include <cstdint>
#include <string>

namespace starling::identity {

/// How loud a log_line is (spdlog's levels of the same names).
enum class log_level : std::uint8_t { debug = 1, info, warn, error };

/// One line a core asks its owner to log.
struct log_line {
  log_level level = log_level::info;
  std::string text;

  friend bool operator==(const log_line&, const log_line&) = default;
};

} // namespace starling::identity
