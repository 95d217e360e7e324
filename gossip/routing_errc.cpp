#include "gossip/routing_errc.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include "proto/wire/errors.hpp"

namespace starling::gossip {

namespace {

/// The name of code `x`, or nullptr for a code this category does not have.
const char* name_of(routing_errc x) noexcept {
  switch (x) {
  case routing_errc::malformed:
    return "malformed";
  case routing_errc::invalid_record:
    return "invalid_record";
  case routing_errc::not_owner:
    return "not_owner";
  case routing_errc::not_authorized:
    return "not_authorized";
  case routing_errc::unsigned_record:
    return "unsigned_record";
  case routing_errc::bad_signature:
    return "bad_signature";
  case routing_errc::unknown_key:
    return "unknown_key";
  case routing_errc::clock_skew:
    return "clock_skew";
  case routing_errc::expired:
    return "expired";
  case routing_errc::table_full:
    return "table_full";
  case routing_errc::invalid_policy:
    return "invalid_policy";
  case routing_errc::no_authority:
    return "no_authority";
  }
  return nullptr;
}

/// This category's names in the one renderer (docs/decisions/0015).
const bool registered =
    wire::register_error_category(routing_errc_category, [](std::uint8_t code) noexcept {
      return name_of(static_cast<routing_errc>(code));
    });

} // namespace

const char* to_string(routing_errc x) noexcept {
  const char* name = name_of(x);
  return name != nullptr ? name : "unknown";
}

caf::error make_error(routing_errc x, std::string context) {
  static_cast<void>(registered);
  return caf::error{static_cast<std::uint8_t>(x), routing_errc_category,
                    caf::make_message(std::move(context))};
}

bool is(const caf::error& err, routing_errc x) noexcept {
  return err && err.category() == routing_errc_category &&
         err.code() == static_cast<std::uint8_t>(x);
}

} // namespace starling::gossip
