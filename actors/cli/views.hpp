// The text the `starling` views print, rendered from the agent's JSON views (the JSON is
// the contract, docs/operations.md; the text is for people). Pure: JSON in, text out.
#pragma once

#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace starling::cli {

/// The table printed by `starling members` from the JSON view: columns NAME ADDRESS STATE
/// INCARNATION TAGS. Errors: request_failed when `json` is not a members view.
[[nodiscard]] caf::expected<std::string> members_table(std::string_view json);

/// The text printed by `starling stats` from the JSON view: one block per group, a
/// "NAME  VALUE" line per counter. Errors: request_failed when `json` is not a stats view.
[[nodiscard]] caf::expected<std::string> stats_table(std::string_view json);

/// The text printed by `starling certs` from the JSON view. Errors: request_failed when
/// `json` is not a certs view.
[[nodiscard]] caf::expected<std::string> certs_text(std::string_view json);

/// The text printed by `starling keyring list` from the JSON view. Errors: request_failed
/// when `json` is not a keyring view.
[[nodiscard]] caf::expected<std::string> keyring_table(std::string_view json);

} // namespace starling::cli
