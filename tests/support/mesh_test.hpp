// A GoogleTest fixture for integration tests of a mesh with certificates: `starling ca`
// roots and issuers in a temporary directory, agents started on 127.0.0.1 with a shared
// test config and gossip key, join tokens, the certs view, agents that must be refused.
// Every wait polls with a deadline.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/agents.hpp"

namespace starling::testing {

class mesh_test : public ::testing::Test {
protected:
  using node = agent_node;

  /// Temporary files go under a directory named after `prefix`.
  explicit mesh_test(const std::string& prefix);

  /// Writes the agent config (fast_agent_config) and makes the gossip key.
  void SetUp() override;

  /// The first line `starling <args>` prints; records a failure if it fails.
  static std::string cli_line(const std::vector<std::string>& args);

  /// `starling ca init` for `mesh` into <tmp>/<dir>; returns the directory.
  std::filesystem::path make_root(const std::string& mesh, const std::string& dir);

  /// `starling ca issuer` for node `name` from the root in `ca`, into <tmp>/issuer-<name>.
  std::filesystem::path make_issuer(const std::filesystem::path& ca, const std::string& name);

  /// The agent command line of `name` joining `seeds`, then `extra`.
  std::vector<std::string> argv_of(const std::string& name, const std::vector<std::string>& seeds,
                                   std::vector<std::string> extra);

  /// <tmp>/data/<name>.
  std::filesystem::path data_dir(const std::string& name) const;

  /// Starts agent `name` and waits until it is ready (a test failure after 20 s).
  node& start(const std::string& name, const std::vector<std::string>& seeds,
              std::vector<std::string> extra);

  /// Sends `sig` to agent `name`, waits (up to 15 s) for it to exit and forgets it.
  /// Returns its exit code, std::nullopt if it did not exit in time.
  std::optional<int> stop(const std::string& name, int sig);

  /// `starling token create` on `issuer`: the token is the last line printed.
  std::string token_of(const node& issuer, const std::string& uses, const std::string& ttl = "");

  /// Every running node sees exactly `count` members, all alive.
  bool all_alive(std::size_t count) const;

  /// `starling certs --json` of `n`.
  static std::optional<nlohmann::json> certs_of(const node& n);

  /// Runs an agent that must fail to start (exit 1, within a 3 s join timeout); returns its
  /// stderr.
  std::string expect_refused(const std::string& name, const std::vector<std::string>& seeds,
                             std::vector<std::string> extra);

  temp_dir tmp_;
  process_group procs_{tmp_.path() / "logs"};
  std::filesystem::path config_;
  /// A gossip key for the mesh (`starling keyring generate`).
  std::string key_;
  std::map<std::string, node> nodes_;
};

} // namespace starling::testing
