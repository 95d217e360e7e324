// Real `starling agent` processes on 127.0.0.1 with port 0: joining, failure detection,
// graceful leave, restart, and the start-up errors. Every wait polls with a deadline.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "tests/support/agents.hpp"

namespace st = starling::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

class membership_test : public ::testing::Test {
protected:
  using node = st::agent_node;

  void SetUp() override {
    config_ = tmp_.path() / "agent.toml";
    st::write_text(config_, st::fast_agent_config("2s"));
  }

  /// Starts agent `name` (joining through `seeds`) and waits for its agent.json.
  node& start(const std::string& name, const std::vector<std::string>& seeds) {
    const auto data_dir = tmp_.path() / "data" / name;
    auto argv = st::agent_argv(config_, name, data_dir, seeds, {"--tag", "role=test"});
    nodes_[name] = st::start_agent(procs_, argv, name, data_dir);
    return nodes_[name];
  }

  /// Starts `count` agents node-1..node-N, all joining through node-1.
  void start_cluster(int count) {
    auto& seed = start("node-1", {});
    for (int i = 2; i <= count; ++i)
      start("node-" + std::to_string(i), {seed.info.gossip});
  }

  /// `starling members --json` against `n`; std::nullopt if the command failed.
  static std::optional<nlohmann::json> view_of(const node& n) {
    return st::members_view(n.info.admin);
  }

  /// The entry for `name` in a members view, if present.
  static std::optional<nlohmann::json> entry(const nlohmann::json& view, const std::string& name) {
    for (const auto& m : view.at("members"))
      if (m.at("name") == name)
        return m;
    return std::nullopt;
  }

  /// Every node in `observers` sees `name` in `state` (and `pred` holds on the entry).
  bool all_see(const std::vector<std::string>& observers, const std::string& name,
               const std::string& state,
               const std::function<bool(const nlohmann::json&)>& pred = {}) {
    for (const auto& o : observers) {
      auto view = view_of(nodes_.at(o));
      if (!view)
        return false;
      auto e = entry(*view, name);
      if (!e || e->at("state") != state || (pred && !pred(*e)))
        return false;
    }
    return true;
  }

  std::vector<std::string> names_except(std::initializer_list<std::string> skip) const {
    std::vector<std::string> out;
    for (const auto& [name, n] : nodes_)
      if (std::find(skip.begin(), skip.end(), name) == skip.end())
        out.push_back(name);
    return out;
  }

  st::temp_dir tmp_{"starling-it"};
  st::process_group procs_{tmp_.path() / "logs"};
  fs::path config_;
  std::map<std::string, node> nodes_;
};

TEST_F(membership_test, five_agents_join_through_one_seed) {
  start_cluster(5);
  ASSERT_FALSE(HasFailure());
  std::vector<std::string> all = names_except({});
  bool converged = st::poll_until(15s, [&] {
    for (const auto& o : all) {
      auto view = view_of(nodes_.at(o));
      if (!view || view->at("members").size() != 5)
        return false;
      for (const auto& m : view->at("members"))
        if (m.at("state") != "alive")
          return false;
    }
    return true;
  });
  ASSERT_TRUE(converged) << "not every node sees 5 alive members";
  // The JSON view has the documented fields.
  auto view = view_of(nodes_.at("node-3"));
  ASSERT_TRUE(view);
  auto e = entry(*view, "node-2");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->at("address"), nodes_.at("node-2").info.gossip);
  EXPECT_TRUE(e->at("incarnation").is_number_unsigned());
  EXPECT_EQ(e->at("tags").at("role"), "test");
  EXPECT_TRUE(e->at("last_change").is_string());
  // The table view too.
  auto table = st::run_cli({"members", "--admin", nodes_.at("node-1").info.admin});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_EQ(table.out.rfind("NAME", 0), 0u) << table.out;
  EXPECT_NE(table.out.find("node-5"), std::string::npos);
  // The seed's event log recorded the others joining, as JSON lines.
  auto events = st::read_text(nodes_.at("node-1").data_dir / "events.jsonl");
  int joined = 0;
  std::istringstream lines{events};
  for (std::string line; std::getline(lines, line);) {
    auto ev = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(ev.is_discarded()) << line;
    EXPECT_TRUE(ev.at("ts").is_number_float());
    if (ev.at("event") == "joined")
      ++joined;
  }
  EXPECT_GE(joined, 4) << events;
}

TEST_F(membership_test, killed_agent_is_declared_dead_everywhere) {
  start_cluster(5);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(15s, [&] { return all_see(names_except({}), "node-5", "alive"); }));
  nodes_.at("node-3").proc->kill(SIGKILL);
  ASSERT_TRUE(nodes_.at("node-3").proc->wait(5s));
  EXPECT_TRUE(st::poll_until(20s, [&] {
    return all_see(names_except({"node-3"}), "node-3", "dead");
  })) << "node-3 not dead everywhere";
}

TEST_F(membership_test, sigterm_and_leave_command_mark_agents_left) {
  start_cluster(5);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(15s, [&] { return all_see(names_except({}), "node-5", "alive"); }));
  // SIGTERM: graceful leave, exit 0.
  auto& n4 = nodes_.at("node-4");
  n4.proc->kill(SIGTERM);
  auto code = n4.proc->wait(10s);
  ASSERT_TRUE(code) << "node-4 did not exit after SIGTERM";
  EXPECT_EQ(*code, 0);
  // `starling leave`: answers, then the agent leaves and exits 0.
  auto& n5 = nodes_.at("node-5");
  auto res = st::run_cli({"leave", "--admin", n5.info.admin});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  code = n5.proc->wait(10s);
  ASSERT_TRUE(code) << "node-5 did not exit after `starling leave`";
  EXPECT_EQ(*code, 0);
  auto observers = names_except({"node-4", "node-5"});
  EXPECT_TRUE(st::poll_until(10s, [&] {
    return all_see(observers, "node-4", "left") && all_see(observers, "node-5", "left");
  })) << "node-4/node-5 not left everywhere";
  // A stopped agent's admin address is unreachable: clear message, exit 1.
  res = st::run_cli({"members", "--admin", n5.info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("cannot reach"), std::string::npos) << res.err;
}

TEST_F(membership_test, restarted_agent_rejoins_with_higher_incarnation) {
  start_cluster(4);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(15s, [&] { return all_see(names_except({}), "node-4", "alive"); }));
  auto before =
      entry(*view_of(nodes_.at("node-1")), "node-2")->at("incarnation").get<std::uint64_t>();
  nodes_.at("node-2").proc->kill(SIGKILL);
  ASSERT_TRUE(nodes_.at("node-2").proc->wait(5s));
  auto others = names_except({"node-2"});
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_see(others, "node-2", "dead"); }));
  // Same name and data dir.
  start("node-2", {nodes_.at("node-1").info.gossip});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(st::poll_until(
      15s,
      [&] {
        return all_see(names_except({}), "node-2", "alive", [&](const nlohmann::json& e) {
          return e.at("incarnation").get<std::uint64_t>() > before;
        });
      }))
      << "node-2 not alive everywhere with an incarnation above " << before;
}

TEST(membership_startup, bad_config_exits_2_naming_the_key) {
  st::temp_dir tmp{"starling-it"};
  auto config = tmp.path() / "bad.toml";
  st::write_text(config, "[gossip]\nprobe_interval = \"fast\"\n");
  auto res = st::run_cli({"agent", "--config", config.string(), "--name", "x", "--data-dir",
                          (tmp.path() / "d").string()});
  EXPECT_EQ(res.exit_code, 2);
  EXPECT_NE(res.err.find("config error: gossip.probe_interval: expected a duration like "
                         "\"500ms\", got \"fast\""),
            std::string::npos)
      << res.err;
  st::write_text(config, "name = \"x\"\nbogus = 1\n");
  res = st::run_cli({"agent", "--config", config.string()});
  EXPECT_EQ(res.exit_code, 2);
  EXPECT_NE(res.err.find("bogus"), std::string::npos) << res.err;
  res = st::run_cli({"agent", "--no-such-flag"});
  EXPECT_EQ(res.exit_code, 2);
}

TEST(membership_startup, unreachable_seed_exits_1_after_join_timeout) {
  st::temp_dir tmp{"starling-it"};
  auto seed = "127.0.0.1:" + std::to_string(st::closed_port());
  auto started = st::test_clock::now();
  auto res = st::run_cli({"agent", "--name", "lonely", "--data-dir", (tmp.path() / "d").string(),
                          "--gossip", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--dns",
                          "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--inbound", "127.0.0.1:0",
                          "--join", seed, "--join-timeout", "1s"},
                         15s);
  auto took = st::test_clock::now() - started;
  EXPECT_EQ(res.exit_code, 1) << res.err;
  EXPECT_NE(res.err.find("could not join"), std::string::npos) << res.err;
  EXPECT_NE(res.err.find(seed), std::string::npos) << res.err;
  EXPECT_LT(took, 10s);
}

} // namespace
