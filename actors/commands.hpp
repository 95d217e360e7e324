// The `starling` subcommands, one function each. main.cpp parses the command line with
// CLI11 and dispatches here; every function returns the process exit code.
#pragma once

#include <chrono>
#include <string>

#include "actors/config.hpp"

namespace starling::actors {

/// Process exit codes (DESIGN.md): 0 ok, 1 operation failed, 2 usage or config error.
enum exit_code : int {
  exit_ok = 0,
  exit_failed = 1,
  exit_usage = 2,
};

/// `starling agent`: runs a node until it leaves (signal or `starling leave`) or fails.
/// Returns exit_ok after a graceful leave, exit_failed when binding or joining failed.
int run_agent(const agent_config& cfg);

/// Options shared by the one-shot commands that talk to an agent's admin actor.
struct client_options {
  /// Admin address of the agent ("HOST:PORT").
  std::string admin = "127.0.0.1:7947";
  /// Print the JSON view instead of a table.
  bool json = false;
  /// Bound on connecting and on each request.
  std::chrono::milliseconds timeout{std::chrono::seconds{5}};
};

/// `starling members`: prints the member table (or the JSON view with --json).
int run_members(const client_options& opts);

/// `starling leave`: asks the agent to leave the mesh gracefully and exit.
int run_leave(const client_options& opts);

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

} // namespace starling::actors
