// The text the `starling` views print, rendered from the agent's JSON views (the JSON is
// the contract, docs/operations.md; the text is for people). Pure: JSON in, text out.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace starling::cli {

/// `text` with control characters (terminal escapes from a hostile answer, or typed by
/// mistake) shown as '?'.
[[nodiscard]] std::string printable(std::string text);

/// The table printed by `starling members` from the JSON view: columns NAME ADDRESS STATE
/// INCARNATION TAGS. Errors: request_failed when `json` is not a members view.
[[nodiscard]] caf::expected<std::string> members_table(std::string_view json);

/// The text printed by `starling stats` from the JSON view: one block per group, a
/// "NAME  VALUE" line per counter. Errors: request_failed when `json` is not a stats view.
[[nodiscard]] caf::expected<std::string> stats_table(std::string_view json);

/// The text printed by `starling certs` from the JSON view. Errors: request_failed when
/// `json` is not a certs view.
[[nodiscard]] caf::expected<std::string> certs_text(std::string_view json);

/// Warnings about certificate expiry in a certs view, one line each ("warning: ..."), the
/// most urgent kinds first: the node's certificate with under a quarter of its lifetime left
/// (renewal, due at a third, has not happened) or expired; an issuer's (in the chain, or the
/// node's own) or a root's with under 30 days or a tenth of its lifetime left, whichever is
/// later, or expired. Empty when none, when the view has no identity, or when it is not a
/// certs view (untrusted input: a field of the wrong type is skipped).
[[nodiscard]] std::vector<std::string> expiry_warnings(std::string_view json);

/// The text printed by `starling keyring list` from the JSON view. Errors: request_failed
/// when `json` is not a keyring view.
[[nodiscard]] caf::expected<std::string> keyring_table(std::string_view json);

/// The table printed by `starling services` from the JSON view: columns NAME, INSTANCE
/// (node/id), ADDRESS:PORT, PROTO, VERSION, HEALTH; one line per instance in the view's order
/// (services sorted by name, so grouped), "no services registered" when there are none.
/// HEALTH is "passing", "failing: <last check>", "no check" or "node dead". Untrusted input:
/// a field of the wrong type shows as "?". Errors: request_failed when `json` is not a
/// services view.
[[nodiscard]] caf::expected<std::string> services_table(std::string_view json);

/// The text printed by `starling routes` from the JSON view: per service a line with its
/// local outbound listener, then one indented line for the traffic split, each header
/// route, the resilience settings (those not zero: zero is the proxy's default) and each
/// authorization rule; "no routes" when empty.
/// Errors: request_failed when `json` is not a routes view.
[[nodiscard]] caf::expected<std::string> routes_text(std::string_view json);

/// What `starling register` prints from the agent's answer (the JSON of the registered
/// service): "registered web (id web) on port 8080: spreading to the mesh" and, with a
/// check, "health check: http GET /healthz every 10s". Errors: request_failed when `json`
/// is not a registered service.
[[nodiscard]] caf::expected<std::string> registered_text(std::string_view json);

/// One frame of the console's `top` from the stats view `current` and, `seconds` earlier,
/// `previous` (empty on the first frame: no rates yet). Lines: members by state; the
/// outbound proxy's requests, answers by class and connections; the inbound proxy's; the
/// routing table's size and refusals; then a table of the proxy's services (SERVICE, DIR,
/// REQUESTS, RATE/S, SUCCESS, P50 MS, P99 MS). A rate is the counter's rise over `seconds`,
/// "-" without a previous value, or when the counter fell (the agent restarted) or
/// `seconds` is not positive. Untrusted input: a field of the wrong type shows as "?".
/// Errors: request_failed when `current` is not a stats view.
[[nodiscard]] caf::expected<std::string> top_frame(std::string_view current,
                                                   std::string_view previous, double seconds);

} // namespace starling::cli
