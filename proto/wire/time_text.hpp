// The one text form of a wall-clock instant in Starling's JSON views and logs: ISO 8601,
// UTC, milliseconds ("2031-05-06T07:08:09.000Z"). Pure: the instant is passed in.
#pragma once

#include <chrono>
#include <string>

namespace starling::wire {

/// "2031-05-06T07:08:09.000Z" for `t` (UTC, milliseconds; instants before 1970 too).
[[nodiscard]] std::string iso8601_utc(std::chrono::system_clock::time_point t);

} // namespace starling::wire
