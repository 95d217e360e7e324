// The routing table's admin side without actors (issue 16): the `services` and `routes` JSON
// views (contracts of DESIGN.md, documented in docs/operations.md) built from a snapshot,
// and the parsing of the policy commands (`split`, `route`, `resilience`, `authz`) into a
// register write. Pure: no CAF actor headers, no clock.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "gossip/routing_snapshot.hpp"
#include "gossip/routing_table.hpp"

namespace starling::actors {

/// {"services":[{"name","instances":[{"node","id","address","port","protocol","tags",
/// "version","weight","health","last_check","node_alive","healthy"}]}]}; services sorted by
/// name, only those with instances.
[[nodiscard]] std::string services_json(const gossip::routing_snapshot& snap);

/// {"routes":[{"service","outbound","split","split_signer","routes","resilience","authz"}]}:
/// one entry per service with instances or policies; `outbound` is the local outbound
/// listener of the service ("HOST:PORT", from `outbound` by service name), null when it has
/// none (no data plane, or its listener is not open yet).
[[nodiscard]] std::string routes_json(const gossip::routing_snapshot& snap,
                                      const std::map<std::string, std::string>& outbound = {});

/// A policy write an operator asked for.
struct policy_command {
  gossip::policy_key key;
  /// std::monostate: delete (or clear).
  gossip::policy_value value;
};

/// Parses `split SVC V=W...|--clear`, `route SVC NAME header=H value=V version=V|--delete`,
/// `resilience SVC timeout=D per_try_timeout=D retries=N budget=P min_retries=N|--clear`,
/// `authz SVC NAME allow|deny FROM...|--delete` (args[0] is the command). Errors
/// (actors errc bad_request, exit 2) say what is wrong; what only the table can decide
/// (versions that exist, the sum for a peer) it decides.
[[nodiscard]] caf::expected<policy_command>
parse_policy_command(const std::vector<std::string>& args);

/// The operator's answer after a policy write: "split of web: v1 90%, v2 10% (signed by
/// node-a; spreading to the mesh)".
[[nodiscard]] std::string describe_write(const gossip::policy_record& p);

} // namespace starling::actors
