// The `starling` subcommands, one function each. main.cpp parses the command line with
// CLI11 and dispatches here; every function returns the process exit code (actors/agent.hpp;
// `starling agent` itself is actors::run_agent).
#pragma once

#include <chrono>
#include <string>

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

/// `starling members`: prints the member table (or the JSON view with --json).
int run_members(const client_options& opts);

/// `starling stats`: the node's counters (transport, admin port, sealer, membership), one
/// block per group, or the JSON view with --json.
int run_stats(const client_options& opts);

/// `starling leave`: asks the agent to leave the mesh gracefully and exit.
int run_leave(const client_options& opts);

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
