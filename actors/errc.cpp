#include "actors/errc.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include "proto/wire/errors.hpp"

namespace starling::actors {

namespace {

/// The name of code `x`, or nullptr for a code this module does not have.
const char* name_of(errc x) noexcept {
  switch (x) {
  case errc::invalid_config:
    return "invalid_config";
  case errc::io_failure:
    return "io_failure";
  case errc::bind_failed:
    return "bind_failed";
  case errc::join_failed:
    return "join_failed";
  case errc::unreachable:
    return "unreachable";
  case errc::request_failed:
    return "request_failed";
  case errc::bad_request:
    return "bad_request";
  }
  return nullptr;
}

/// This module's names in the one renderer (docs/decisions/0015).
const bool registered = wire::register_error_category(
    errc_category, [](std::uint8_t code) noexcept { return name_of(static_cast<errc>(code)); });

} // namespace

const char* to_string(errc x) noexcept {
  const char* name = name_of(x);
  return name != nullptr ? name : "unknown";
}

caf::error make_error(errc x, std::string context) {
  return caf::error{static_cast<std::uint8_t>(x), errc_category,
                    caf::make_message(std::move(context))};
}

caf::error usage(std::string why) { return make_error(errc::bad_request, std::move(why)); }

std::string message_of(const caf::error& err) {
  static_cast<void>(registered);
  // The agent's own refusals are worded for the operator already: the text alone.
  const auto& ctx = err.context();
  if (err && err.category() == errc_category && ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return wire::render_error(err);
}

} // namespace starling::actors
