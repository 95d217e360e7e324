// Errors of the actors module (agent runtime, config loading, one-shot commands).
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace starling::actors {

/// Why starting the agent or running a command failed.
enum class errc : std::uint8_t {
  invalid_config = 1, ///< a config key or flag has a bad value; context names the key
  io_failure,         ///< a file or socket operation failed
  bind_failed,        ///< a listener could not be bound
  join_failed,        ///< no seed answered within join_timeout
  unreachable,        ///< the admin actor could not be reached
  request_failed,     ///< the admin actor answered with an error, or not in time
  bad_request,        ///< an admin request with an unknown command or bad arguments
};

/// The CAF error category of this module.
constexpr caf::atom_value errc_category = caf::atom("actors");

/// Human-readable name of `x` ("invalid_config", ...).
const char* to_string(errc x) noexcept;

/// Makes a caf::error of category "actors" carrying `context`.
caf::error make_error(errc x, std::string context = {});

/// An admin request with bad arguments: make_error(errc::bad_request, why); the admin client
/// exits with code 2.
caf::error usage(std::string why);

/// The context string of `err` if it carries one, else a rendering of category and code.
/// Used to print one clear message to the user.
std::string message_of(const caf::error& err);

} // namespace starling::actors
