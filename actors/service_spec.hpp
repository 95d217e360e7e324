// A service this node registers (issue 16): where the instance listens and how its health is
// checked, as the agent's config file (`[[service]]` tables), the admin command `register`
// and the data dir's `services.json` give it. One form, three sources: the config's
// services are static (changed by editing the file and restarting), `register`ed ones are
// kept in `<data-dir>/services.json` across restarts until `deregister`ed.
//
// The text forms (docs/operations.md, "Services"):
// - admin request: {"register", "name=web", "port=8080", "protocol=http", "tags=a,b",
//   "version=v1", "weight=100", "address=10.0.0.5", "id=web-1", "check=http",
//   "check_path=/healthz", "check_expect=200", "check_interval=10s", "check_timeout=2s",
//   "check_rise=2", "check_fall=3", "check_grpc_service=echo.Echo" (check=grpc only)}: every
//   key but name and port optional, each at most once;
// - JSON (services.json entries, the answer to `register`): {"name","id","address","port",
//   "protocol","tags":[...],"version","weight","check":null|{"type","path","expect",
//   "interval","timeout","rise","fall","grpc_service"}} with durations as "10s" / "500ms".
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "gossip/health.hpp"
#include "gossip/routing_table.hpp"

namespace starling::actors {

/// One service instance this node owns, with its optional health check.
struct service_spec {
  /// `reg.health` is none here (the routing actor sets it from the check); `reg.id`
  /// defaults to the service name.
  gossip::service_registration reg;
  std::optional<gossip::health_check_spec> check;
  /// True for a `[[service]]` of the config file: `deregister` refuses it.
  bool from_config = false;

  friend bool operator==(const service_spec&, const service_spec&) = default;
};

/// Parses the key=value arguments of an admin `register` request (args[0] == "register"
/// excluded). An absent id is the name; tags=a,b is split on commas, sorted, deduplicated.
/// Errors (errc::bad_request, the admin's usage error; one message naming the key, as in
/// `register: port: '0' is not 1 to 65535`): more than 32 arguments or one over 512 bytes,
/// an unknown or repeated key, a missing name or port, a bad value (gossip::check_registration
/// and gossip::check_health_spec decide; a tag with ',' and check_path / check_expect on a
/// tcp check are refused too), check_* keys without check=.
[[nodiscard]] caf::expected<service_spec> parse_service_args(const std::vector<std::string>& kv);

/// The key=value arguments that parse_service_args reads back as `spec` (a valid spec in
/// its complete form; one whose tags join to over 507 bytes gives a tags= argument
/// parse_service_args refuses as too long).
[[nodiscard]] std::vector<std::string> service_args(const service_spec& spec);

/// The JSON form of `spec` (see above).
[[nodiscard]] nlohmann::json service_json(const service_spec& spec);

/// Reads the JSON form (unknown fields refused; an absent id is the name, tags are sorted
/// and deduplicated), checked like parse_service_args. Errors: invalid_config naming the
/// field, after `where` when given: `service[0].check.interval: ...` for where =
/// "service[0]" (the config's [[service]] tables are read through this function too).
[[nodiscard]] caf::expected<service_spec> service_from_json(const nlohmann::json& j,
                                                            std::string_view where = {});

/// What `<data-dir>/services.json` holds: the `register`ed services and the last version
/// of this node's owner record (so a restart continues above it).
struct service_store {
  std::vector<service_spec> services;
  std::uint64_t last_version = 0;
};

/// Reads `<data_dir>/services.json`; an absent file is an empty store. Errors: io_failure
/// (unreadable, not a regular file, over 1 MiB: refused before it is read), invalid_config
/// (not JSON, another format version, a bad entry, two entries of one (name, id), more than
/// gossip::max_instances_per_owner). The file is never half-read: all, or an error naming
/// the entry. Loaded services have from_config false.
[[nodiscard]] caf::expected<service_store>
load_service_store(const std::filesystem::path& data_dir);

/// Writes `<data_dir>/services.json` atomically (temporary file, fsync, rename), mode 0600.
/// Services with from_config are left out (the config file gives them at each start), and
/// so are reg.health and reg.last_check (run-time state). Each kept service must be valid
/// and in its complete form (as the parsers return it), with distinct (name, id), at most
/// gossip::max_instances_per_owner of them, so that the file always loads back. Errors:
/// invalid_config naming the entry, io_failure naming the file.
[[nodiscard]] caf::error save_service_store(const std::filesystem::path& data_dir,
                                            const service_store& store);

} // namespace starling::actors
