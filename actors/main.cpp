// `starling`: one binary, one subcommand per function of actors/commands.hpp.
// Exit codes: 0 ok, 1 operation failed, 2 usage or config error (one clear message).
#include <iostream>

#include <CLI/CLI.hpp>

#include "actors/commands.hpp"
#include "actors/config.hpp"
#include "actors/errc.hpp"
#include "actors/logging.hpp"

namespace sa = starling::actors;

namespace {

/// Adds --admin and a timeout to a one-shot command.
void add_client_flags(CLI::App& cmd, sa::client_options& opts, bool with_json) {
  cmd.add_option("--admin", opts.admin, "admin HOST:PORT of the agent (default 127.0.0.1:7947)")
    ->type_name("");
  if (with_json)
    cmd.add_flag("--json", opts.json, "print the JSON view");
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"starling: a service mesh with no central control plane", "starling"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every command");

  sa::agent_flags agent_flags;
  auto* agent = app.add_subcommand("agent", "run a node (docs/operations.md)");
  sa::add_agent_flags(*agent, agent_flags);

  sa::client_options members_opts;
  auto* members = app.add_subcommand("members", "list the members this node knows");
  add_client_flags(*members, members_opts, true);

  sa::client_options leave_opts;
  auto* leave = app.add_subcommand("leave", "make the agent leave the mesh and exit");
  add_client_flags(*leave, leave_opts, false);

  sa::demo_options demo_opts;
  unsigned demo_seconds = 0;
  auto* demo = app.add_subcommand("demo", "run a local 3-node mesh and show it working");
  demo->add_option("--duration", demo_seconds,
                   "seconds of live view after the scripted part (default: until Ctrl-C)");
  demo->add_flag("--keep", demo_opts.keep, "keep the demo's temporary directory");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "starling: " << e.what() << " (see starling --help)\n";
    return sa::exit_usage;
  }

  if (agent->parsed()) {
    auto cfg = sa::load_agent_config(agent_flags);
    if (!cfg) {
      std::cerr << "config error: " << sa::message_of(cfg.error()) << '\n';
      return sa::exit_usage;
    }
    return sa::run_agent(*cfg);
  }
  // One-shot commands: keep library logs quiet on stderr.
  sa::setup_logging(sa::log_level::warn, sa::log_format::text);
  if (members->parsed())
    return sa::run_members(members_opts);
  if (leave->parsed())
    return sa::run_leave(leave_opts);
  if (demo->parsed()) {
    demo_opts.duration = std::chrono::seconds{demo_seconds};
    return sa::run_demo(demo_opts);
  }
  return sa::exit_usage;
}
