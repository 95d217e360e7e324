#include "identity/errc.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <openssl/err.h>

#include "proto/wire/errors.hpp"

namespace starling::identity {

namespace {

/// The name of code `x`, or nullptr for a code this module does not have.
const char* name_of(errc x) noexcept {
  switch (x) {
  case errc::no_certificate:
    return "no_certificate";
  case errc::untrusted_chain:
    return "untrusted_chain";
  case errc::foreign_mesh:
    return "foreign_mesh";
  case errc::expired:
    return "expired";
  case errc::not_yet_valid:
    return "not_yet_valid";
  case errc::revoked:
    return "revoked";
  case errc::name_mismatch:
    return "name_mismatch";
  case errc::bad_certificate:
    return "bad_certificate";
  case errc::name_constraint:
    return "name_constraint";
  case errc::bad_request:
    return "bad_request";
  case errc::token_malformed:
    return "token_malformed";
  case errc::token_unknown:
    return "token_unknown";
  case errc::token_forged:
    return "token_forged";
  case errc::token_expired:
    return "token_expired";
  case errc::token_exhausted:
    return "token_exhausted";
  case errc::token_wrong_mesh:
    return "token_wrong_mesh";
  case errc::unknown_key:
    return "unknown_key";
  case errc::tampered:
    return "tampered";
  case errc::replayed:
    return "replayed";
  case errc::keyring_refused:
    return "keyring_refused";
  case errc::crypto_failure:
    return "crypto_failure";
  case errc::io_failure:
    return "io_failure";
  case errc::already_exists:
    return "already_exists";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::sealed_malformed:
    return "sealed_malformed";
  case errc::bad_signature:
    return "bad_signature";
  case errc::not_an_issuer:
    return "not_an_issuer";
  case errc::revokes_ca_key:
    return "revokes_ca_key";
  case errc::quorum_not_met:
    return "quorum_not_met";
  case errc::name_taken:
    return "name_taken";
  case errc::stale_statement:
    return "stale_statement";
  case errc::wrong_receiver:
    return "wrong_receiver";
  case errc::routing_unknown_key:
    return "routing_unknown_key";
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

caf::error bad_request(std::string reason) {
  return make_error(errc::bad_request, std::move(reason));
}

caf::error make_openssl_error(errc x, std::string context) {
  char buf[256];
  while (auto code = ERR_get_error()) {
    ERR_error_string_n(code, buf, sizeof(buf));
    context += context.empty() ? "" : "; ";
    context += buf;
  }
  return make_error(x, std::move(context));
}

bool is(const caf::error& err, errc x) noexcept {
  return err && err.category() == errc_category && err.code() == static_cast<std::uint8_t>(x);
}

std::string render(const caf::error& err) {
  static_cast<void>(registered);
  return wire::render_error(err);
}

} // namespace starling::identity
