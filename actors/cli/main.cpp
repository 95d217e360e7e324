// `starling`: one binary, one subcommand per function of actors/cli/commands.hpp, parsed in
// actors/cli/command_line.cpp. Exit codes: 0 ok, 1 operation failed, 2 usage or config error
// (one clear message).
#include <CLI/CLI.hpp>

#include "actors/cli/command_line.hpp"

int main(int argc, char** argv) {
  return starling::cli::with_command_line({}, false, [&](CLI::App& app) {
    app.parse(argc, argv);
    return true;
  });
}
