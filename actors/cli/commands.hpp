// The `starling` subcommands, one function each. main.cpp parses the command line with
// CLI11 and dispatches here; every function returns the process exit code (actors/agent.hpp;
// `starling agent` itself is actors::run_agent).
#pragma once

#include <chrono>
#include <string>
#include <variant>
#include <vector>

#include <caf/expected.hpp>

#include "actors/agent.hpp"
#include "actors/config.hpp"

namespace starling::cli {

using actors::exit_code;
using actors::exit_failed;
using actors::exit_ok;
using actors::exit_usage;

/// Options shared by the one-shot commands that talk to an agent's admin actor.
struct client_options {
  /// Admin address of the agent ("HOST:PORT").
  std::string admin = "127.0.0.1:7947";
  /// Print the JSON view instead of a table.
  bool json = false;
  /// Bound on connecting and on each request.
  std::chrono::milliseconds timeout{std::chrono::seconds{5}};
  /// File holding the agent's admin credential (--admin-cookie). Empty: $STARLING_ADMIN_COOKIE,
  /// else the copy the agent left in its user's runtime dir for its admin port, if any.
  std::string admin_cookie;
};

/// Sends `args` to the admin port at opts.admin, with the admin credential if there is one;
/// returns the answer's body, or prints one message on stderr and returns the exit code:
/// exit_usage for a bad address or credential file or the agent's usage refusal,
/// exit_failed when the agent is unreachable or refuses.
std::variant<std::string, int> ask_agent(const client_options& opts,
                                         const std::vector<std::string>& args);

/// `starling members`: prints the member table (or the JSON view with --json).
int run_members(const client_options& opts);

/// `starling stats`: the node's counters (transport, admin port, sealer, membership), one
/// block per group, or the JSON view with --json.
int run_stats(const client_options& opts);

/// `starling leave`: asks the agent to leave the mesh gracefully and exit.
int run_leave(const client_options& opts);

/// `starling drain [--cancel]`: withdraws the node's instances from every routable set,
/// then makes its inbound proxy refuse new work (docs/proxy.md, "Draining").
int run_drain(const client_options& opts, bool cancel);

/// `starling keyring list|install|use|remove`: one keyring request to the agent at
/// opts.admin. `op` is "list" (prints the table, or the JSON view with opts.json),
/// "install" (arg: base64 key), "use" or "remove" (arg: base64 key or key id). Exit 1 when
/// the agent refuses (e.g. removing the primary key) or is unreachable. install, use and
/// remove act on every alive member of the mesh, pushed by the agent (an issuer) over the
/// identity channel (docs/decisions/0010), unless `local`: then on that agent alone. A mesh
/// change prints one summary line and, on stderr, each member that refused; exit 1 if any
/// did.
int run_keyring(const client_options& opts, const std::string& op, const std::string& arg,
                bool local = false);

/// `starling keyring generate`: prints a fresh random base64 gossip key. Local only.
int run_keyring_generate();

/// `starling certs [--json]`: the node's certificate, issuers, roots, revocations, keyring.
int run_certs(const client_options& opts);

/// `starling token create [--ttl 1h] [--uses 1]` on an issuer node: prints the token as the
/// last line.
int run_token_create(const client_options& opts, const std::string& ttl, const std::string& uses);

/// `starling revoke NODE [--key sha256:HEX]` on an issuer node: revokes every unexpired key
/// that issuer issued to NODE (or the key given), spreads the signed statement to every
/// member, and prints the revoked key ids. Exit 1 when the agent refuses (not an issuer, no
/// certificate issued to NODE, NODE is the agent itself), 2 on usage errors.
int run_revoke(const client_options& opts, const std::string& node, const std::string& key);

/// `starling services [--json]`: every service the mesh knows, one line per instance with its
/// health (the table of services_table), or the JSON view.
int run_services(const client_options& opts);

/// `starling routes [--json]`: per service the local outbound listener and the routing
/// policies (split, header routes, resilience, authorization; routes_text), or the JSON view.
int run_routes(const client_options& opts);

/// The flags of `starling register`, as given: an empty string is a flag not given (the
/// agent's default). The agent checks every value (actors/service_spec.hpp).
struct register_options {
  std::string name;               ///< --name: the service (required)
  std::string port;               ///< --port: where the instance listens (required)
  std::string protocol;           ///< --protocol tcp|http|http2 (grpc: http2)
  std::string tags;               ///< --tags a,b
  std::string version;            ///< --version v1
  std::string weight;             ///< --weight 100
  std::string address;            ///< --address: the instance's address (default: the node's)
  std::string id;                 ///< --id: instance id (default: the name)
  std::string check;              ///< --check tcp|http|grpc
  std::string check_path;         ///< --check-path /healthz (http)
  std::string check_expect;       ///< --check-expect 200 (http)
  std::string check_interval;     ///< --check-interval 10s
  std::string check_timeout;      ///< --check-timeout 2s
  std::string rise;               ///< --rise: passes in a row to become passing
  std::string fall;               ///< --fall: failures in a row to become failing
  std::string check_grpc_service; ///< --check-grpc-service echo.Echo (grpc)
};

/// The admin request of `starling register`: {"register", "name=web", "port=8080", ...}, one
/// key=value per flag given, in register_options' order (check_rise/check_fall for --rise and
/// --fall). Errors (invalid_config, the message names the flag): no --name or --port,
/// --check other than tcp|http|grpc, check flags without --check.
[[nodiscard]] caf::expected<std::vector<std::string>> register_args(const register_options& svc);

/// `starling register ...`: registers a service instance on the agent (kept across restarts,
/// spread to the mesh) and prints what was registered (registered_text). Exit 2 on a usage
/// error (before sending, or the agent's), 1 when the agent refuses.
int run_register(const client_options& opts, const register_options& svc);

/// The operands of `starling deregister`: SVC [ID] given positionally or as --name SVC
/// [--id ID]; empty when not given.
struct deregister_options {
  std::string service; ///< SVC
  std::string id;      ///< ID
  std::string name;    ///< --name
  std::string id_flag; ///< --id
};

/// The admin request of `starling deregister`: {"deregister", SVC} or {"deregister", SVC, ID}.
/// Errors (invalid_config): no service, or the positional and flag forms disagree.
[[nodiscard]] caf::expected<std::vector<std::string>>
deregister_args(const deregister_options& what);

/// `starling deregister SVC [ID]`: removes this node's instance(s) of SVC; prints the agent's
/// answer.
int run_deregister(const client_options& opts, const deregister_options& what);

/// The admin request of `starling split SVC v1=90 v2=10` ({"split", SVC, "v1=90", "v2=10"}) or,
/// with `clear`, of `starling split SVC --clear` ({"split", SVC, "--clear"}). Errors
/// (invalid_config, one message): no service; no VERSION=WEIGHT or weights with --clear; a
/// version given twice; a weight that is not an integer 0..100; weights not summing to 100.
[[nodiscard]] caf::expected<std::vector<std::string>>
split_args(const std::string& service, const std::vector<std::string>& weights, bool clear);

/// `starling split`: sets (or clears) the traffic split of a service between its versions;
/// checks the weights before sending (exit 2) and prints the agent's answer.
int run_split(const client_options& opts, const std::string& service,
              const std::vector<std::string>& weights, bool clear);

/// The flags of `starling route SVC NAME`.
struct route_options {
  std::string header;  ///< --header NAME=VALUE: the request header that selects the route
  std::string to;      ///< --to VERSION: where matching requests go
  bool remove = false; ///< --delete: remove the route NAME instead
};

/// The admin request of `starling route`: {"route", SVC, NAME, "header=H", "value=V",
/// "version=X"} or {"route", SVC, NAME, "--delete"}. Errors (invalid_config): no service or
/// name; --delete with --header or --to; without --delete, no --header NAME=VALUE (NAME
/// non-empty; the agent lowercases it) or no --to.
[[nodiscard]] caf::expected<std::vector<std::string>>
route_args(const std::string& service, const std::string& name, const route_options& route);

/// `starling route SVC NAME --header H=V --to VERSION` / `--delete`: sets or removes a header
/// route; prints the agent's answer.
int run_route(const client_options& opts, const std::string& service, const std::string& name,
              const route_options& route);

/// The flags of `starling resilience SVC`, as given (empty: not given).
struct resilience_options {
  std::string timeout;                ///< --timeout 2s: whole request, retries included
  std::string per_try_timeout;        ///< --per-try-timeout 500ms
  std::string retries;                ///< --retries 2
  std::string retry_budget;           ///< --retry-budget 20% (the '%' is optional)
  std::string min_retries;            ///< --min-retries 10: retries per second always allowed
  std::string max_connections;        ///< --max-connections 100: connections open (breaker)
  std::string max_requests;           ///< --max-requests 100: HTTP requests in flight (breaker)
  std::string max_pending;            ///< --max-pending 100: HTTP requests waiting (breaker)
  std::string eject_5xx;              ///< --eject-after-5xx 5: 5xx in a row that eject (0: off)
  std::string eject_connect_failures; ///< --eject-after-connect-failures 5 (0: off)
  std::string ejection_time;          ///< --ejection-time 30s: the first ejection's length
  std::string max_ejected;            ///< --max-ejected 50%: share ejected at once (0: off)
  bool clear = false;                 ///< --clear: back to the defaults
};

/// The admin request of `starling resilience`: {"resilience", SVC, "timeout=2s",
/// "per_try_timeout=500ms", "retries=2", "budget=20", "min_retries=10", "max_connections=N",
/// "max_requests=N", "max_pending=N", "eject_5xx=N", "eject_connect_failures=N",
/// "ejection_time=30s", "max_ejected=P"} (the options given, in that order) or {"resilience", SVC,
/// "--clear"}. A write replaces the service's whole resilience policy: options not given take the
/// proxy's defaults. Errors (invalid_config, naming the
/// flag): no service; no option and no --clear; --clear with an option; a timeout that is
/// not a duration ("500ms", "2s"); retries or min retries not a non-negative integer; a
/// budget or max ejected share not an integer percentage 0..100; a breaker cap not 1 to
/// 1000000; failures in a row not 0 to 1000.
[[nodiscard]] caf::expected<std::vector<std::string>>
resilience_args(const std::string& service, const resilience_options& res);

/// `starling resilience SVC [--timeout D] [--per-try-timeout D] [--retries N]
/// [--retry-budget P%] [--min-retries N]` / `--clear`: sets the timeouts and retries of calls
/// to SVC; prints the agent's answer.
int run_resilience(const client_options& opts, const std::string& service,
                   const resilience_options& res);

/// The flags of `starling authz SVC NAME`.
struct authz_options {
  std::vector<std::string> allow; ///< --allow spiffe://MESH/...: callers the rule allows
  std::vector<std::string> deny;  ///< --deny spiffe://MESH/...: callers the rule denies
  bool remove = false;            ///< --delete: remove the rule NAME instead
};

/// The admin request of `starling authz`: {"authz", SVC, NAME, "allow"|"deny", FROM...} or
/// {"authz", SVC, NAME, "--delete"}. Errors (invalid_config): no service or name; both --allow
/// and --deny; neither (without --delete); --delete with either; a FROM that is not a
/// spiffe:// URI.
[[nodiscard]] caf::expected<std::vector<std::string>>
authz_args(const std::string& service, const std::string& name, const authz_options& rule);

/// `starling authz SVC NAME --allow FROM... | --deny FROM... | --delete`: sets or removes an
/// authorization rule of calls to SVC; prints the agent's answer.
int run_authz(const client_options& opts, const std::string& service, const std::string& name,
              const authz_options& rule);

/// Options of `starling ca init`.
struct ca_init_options {
  /// Mesh name (identity::is_valid_mesh_name).
  std::string mesh;
  /// Directory receiving root.key (0600) and root.crt; created 0700 if missing.
  std::string out;
};

/// `starling ca init`: creates the mesh root offline and prints the mesh, the root's expiry
/// and its pin (sha256:<hex>). Never overwrites: exit 1 if a file exists, 2 on a bad name.
int run_ca_init(const ca_init_options& opts);

/// Options of `starling ca issuer`.
struct ca_issuer_options {
  /// Directory of root.key and root.crt (and bundle.crt during a root rotation).
  std::string ca;
  /// Node name of the issuer (identity::is_valid_node_name).
  std::string name;
  /// Directory receiving issuer.key (0600), issuer.crt and bundle.crt (the roots).
  std::string out;
};

/// `starling ca issuer`: signs an issuer certificate for node `name` with the root.
/// Never overwrites: exit 1 if a file exists or the CA is unusable, 2 on a bad name.
int run_ca_issuer(const ca_issuer_options& opts);

/// `starling console [--admin HOST:PORT]`: the interactive console on that agent. Each line
/// is a `starling` command (without the `starling`) whose --admin and --admin-cookie default
/// to the console's; also `help [COMMAND]`, `top [--interval 1s] [--count N]` (a live view of
/// members, proxy and routing counters and per-service rates and latencies) and `quit`. On a
/// terminal: libedit's line editing, history (~/.starling_history, or $STARLING_HISTORY) and
/// completion of commands, subcommands and flags, when libedit.so.2 loads. From a pipe: one
/// command a line, '#' lines skipped, every line run; exit code 0 when all succeeded, else the
/// first failing line's; `top` shows one frame unless --count says more.
int run_console(const client_options& opts);

/// Options of `starling demo`.
struct demo_options {
  /// How long the live view runs after the scripted part; 0 = until Ctrl-C.
  std::chrono::seconds duration{0};
  /// Keep the temporary directory (agents' data, logs, event logs) afterwards.
  bool keep = false;
};

/// `starling demo`: starts a local 3-node mesh (real agents on 127.0.0.1), shows joining,
/// failure detection and rejoin, then a live member table; tears everything down on Ctrl-C.
int run_demo(const demo_options& opts);

} // namespace starling::cli
