// Real `starling agent` processes for integration tests: the command line on 127.0.0.1 with
// port 0, spawning and waiting until ready, and the CLI's JSON views. Every wait polls with
// a deadline.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/process.hpp"

namespace starling::testing {

/// One started agent.
struct agent_node {
  std::string name;
  std::filesystem::path data_dir;
  /// Owned by the process_group that spawned it.
  child_process* proc = nullptr;
  /// What its agent.json said once it was ready.
  agent_json info;
};

/// The command line of `starling agent` named `name`: `config`, `data_dir`, gossip and
/// admin on 127.0.0.1 port 0, an event log in the data dir, `--join` for each seed, then
/// `extra` arguments.
[[nodiscard]] std::vector<std::string> agent_argv(const std::filesystem::path& config,
                                                  const std::string& name,
                                                  const std::filesystem::path& data_dir,
                                                  const std::vector<std::string>& seeds,
                                                  const std::vector<std::string>& extra = {});

/// Spawns `argv` (an agent command line for `name` using `data_dir`) in `procs` and waits
/// until its agent.json carries its pid and it printed its ready line. Records a test
/// failure if that takes longer than `timeout` (the node is returned either way).
agent_node start_agent(process_group& procs, const std::vector<std::string>& argv,
                       const std::string& name, const std::filesystem::path& data_dir,
                       test_clock::duration timeout = 15s);

/// Runs `starling <args>` and parses its output as JSON; std::nullopt if the command failed
/// or printed something else.
[[nodiscard]] std::optional<nlohmann::json> cli_json(const std::vector<std::string>& args);

/// The outbound listener of `service` in `starling routes --json` of the agent at admin
/// address `admin`; "" while it has none.
[[nodiscard]] std::string outbound_of(const std::string& admin, const std::string& service);

/// `starling members --json` against the agent at admin address `admin`.
[[nodiscard]] std::optional<nlohmann::json> members_view(const std::string& admin);

/// An agent config for tests: debug log, 10 s join timeout, fast failure detection
/// (probes every 200 ms, suspicion_mult 3), push-pull every `push_pull_interval`, reaping
/// after 10 minutes so that dead and left members stay visible.
[[nodiscard]] std::string fast_agent_config(const std::string& push_pull_interval = "1s");

/// Every node of `nodes` sees exactly `count` members, all alive.
[[nodiscard]] bool all_alive(const std::map<std::string, agent_node>& nodes, std::size_t count);

} // namespace starling::testing
