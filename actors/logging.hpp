// Logging setup: spdlog on stderr (stdout carries the ready line and command output),
// as text or as JSON lines.
#pragma once

#include "actors/config.hpp"

namespace starling::actors {

/// Installs the default spdlog logger on stderr with `level` and `format`. Call once, on
/// the main thread, before any other thread logs.
void setup_logging(log_level level, log_format format);

} // namespace starling::actors
