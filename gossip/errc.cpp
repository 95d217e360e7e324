#include "gossip/errc.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include "proto/wire/errors.hpp"

namespace starling::gossip {

namespace {

/// The name of code `x`, or nullptr for a code this module does not have.
const char* name_of(errc x) noexcept {
  switch (x) {
  case errc::malformed:
    return "malformed";
  case errc::truncated:
    return "truncated";
  case errc::oversized:
    return "oversized";
  case errc::unsupported_version:
    return "unsupported_version";
  case errc::unknown_frame:
    return "unknown_frame";
  case errc::invalid_field:
    return "invalid_field";
  case errc::peer_refused:
    return "peer_refused";
  case errc::io_failure:
    return "io_failure";
  case errc::timeout:
    return "timeout";
  case errc::join_failed:
    return "join_failed";
  case errc::unknown_request:
    return "unknown_request";
  case errc::unauthenticated:
    return "unauthenticated";
  case errc::busy:
    return "busy";
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

std::string render(const caf::error& err) {
  static_cast<void>(registered);
  return wire::render_error(err);
}

std::string refusal_reason(const caf::error& err) {
  if (err.category() == errc_category &&
      err.code() == static_cast<std::uint8_t>(errc::peer_refused) &&
      err.context().match_elements<std::string>())
    return err.context().get_as<std::string>(0);
  return render(err);
}

} // namespace starling::gossip
