// The agent's entry point and the process exit codes it shares with every `starling`
// command (DESIGN.md: 0 ok, 1 operation failed, 2 usage or config error).
#pragma once

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

} // namespace starling::actors
