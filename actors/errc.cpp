#include "actors/errc.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include "gossip/errc.hpp"

namespace starling::actors {

const char* to_string(errc x) noexcept {
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
  return "unknown";
}

caf::error make_error(errc x, std::string context) {
  return caf::error{static_cast<std::uint8_t>(x), errc_category,
                    caf::make_message(std::move(context))};
}

std::string message_of(const caf::error& err) {
  if (!err)
    return "no error";
  const auto& ctx = err.context();
  if (err.category() == errc_category && ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  if (err.category() == gossip::errc_category)
    return gossip::render(err);
  return caf::to_string(err);
}

} // namespace starling::actors
