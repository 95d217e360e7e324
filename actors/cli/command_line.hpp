// The `starling` command line, one parser for the process (main.cpp) and for each line of
// `starling console` (console.cpp).
#pragma once

#include <functional>

#include "actors/cli/commands.hpp"

namespace CLI {
class App;
} // namespace CLI

namespace starling::cli {

/// Builds the `starling` command line, with every command that talks to an agent defaulting
/// to `base`'s admin address and credential (flags on the line override them), and calls
/// `parse` on it: `parse` parses (CLI11 throws on a usage error; help is printed and its exit
/// code returned) and returns true to run the command parsed, or false to run nothing (to
/// read the command set, e.g. for completion). Returns the command's exit code. `in_console`:
/// logging is left as set and usage errors point at `help` (the console itself refuses
/// `agent`, `demo` and `console` before parsing).
int with_command_line(const client_options& base, bool in_console,
                      const std::function<bool(CLI::App&)>& parse);

} // namespace starling::cli
