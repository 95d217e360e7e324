// Gossip encryption with real `starling agent` processes on 127.0.0.1 (port 0): agents with
// one key converge; another key (or none) cannot join and the seed counts the refusals; a
// Serf-style rotation (install, use, remove on every node) keeps every member alive; a node
// restarted with only the old config key rejoins because its persisted keyring wins, while
// a fresh node with the old key is refused. Every wait polls with a deadline.
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "identity/keyring.hpp"
#include "tests/support/agents.hpp"

namespace st = starling::testing;
namespace si = starling::identity;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// A fresh key from `starling keyring generate` (the CLI path, no agent needed).
std::string generate_key() {
  auto res = st::run_cli({"keyring", "generate"});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  auto key = res.out.substr(0, res.out.find('\n'));
  EXPECT_TRUE(si::parse_gossip_key(key)) << key;
  return key;
}

std::string id_of(const std::string& key) {
  auto k = si::parse_gossip_key(key);
  return k ? si::to_hex(si::id_of(*k)) : std::string{};
}

class keyring_test : public ::testing::Test {
protected:
  using node = st::agent_node;

  void SetUp() override {
    config_ = tmp_.path() / "agent.toml";
    st::write_text(config_, st::fast_agent_config("1s"));
  }

  std::vector<std::string> agent_argv(const std::string& name, const fs::path& data_dir,
                                      const std::string& key,
                                      const std::vector<std::string>& seeds) {
    std::vector<std::string> extra;
    if (!key.empty())
      extra = {"--gossip-key", key};
    return st::agent_argv(config_, name, data_dir, seeds, extra);
  }

  /// Starts agent `name` with `key`, joining through `seeds`, and waits for its agent.json.
  node& start(const std::string& name, const std::string& key,
              const std::vector<std::string>& seeds) {
    const auto data_dir = tmp_.path() / "data" / name;
    nodes_[name] = st::start_agent(procs_, agent_argv(name, data_dir, key, seeds), name, data_dir);
    return nodes_[name];
  }

  void start_cluster(int count, const std::string& key) {
    auto& seed = start("node-1", key, {});
    for (int i = 2; i <= count; ++i)
      start("node-" + std::to_string(i), key, {seed.info.gossip});
  }

  static std::optional<nlohmann::json> json_of(const std::vector<std::string>& args) {
    return st::cli_json(args);
  }

  static std::optional<nlohmann::json> keyring_of(const node& n) {
    return json_of({"keyring", "list", "--json", "--admin", n.info.admin});
  }

  /// Every running node sees exactly `count` members, all alive.
  bool all_alive(std::size_t count) const { return st::all_alive(nodes_, count); }

  /// `starling keyring <op> <arg>` on every node, each must succeed.
  /// `starling keyring OP ARG --local` on each node (a mesh without certificates has no
  /// issuer to push a change to every member, decision 0010).
  void on_every_node(const std::string& op, const std::string& arg) {
    for (const auto& [name, n] : nodes_) {
      auto res = st::run_cli({"keyring", op, arg, "--local", "--admin", n.info.admin});
      EXPECT_EQ(res.exit_code, 0) << name << ": keyring " << op << ": " << res.err;
    }
  }

  /// Events of kind `kind` in a node's event log.
  static int events_of(const node& n, const std::string& kind) {
    std::istringstream lines{st::read_text(n.data_dir / "events.jsonl")};
    int count = 0;
    for (std::string line; std::getline(lines, line);) {
      auto ev = nlohmann::json::parse(line, nullptr, false);
      if (!ev.is_discarded() && ev.value("event", "") == kind)
        ++count;
    }
    return count;
  }

  /// Runs an agent that must fail to join `seed` (exit 1, "could not join").
  void expect_cannot_join(const std::string& name, const std::string& key,
                          const std::string& seed) {
    auto argv = agent_argv(name, tmp_.path() / "data" / name, key, {seed});
    argv.erase(argv.begin()); // run_cli adds the binary
    argv.push_back("--join-timeout");
    argv.push_back("2s");
    auto res = st::run_cli(argv, 20s);
    EXPECT_EQ(res.exit_code, 1) << name << " joined although it should not: " << res.err;
    EXPECT_NE(res.err.find("could not join"), std::string::npos) << res.err;
    last_err_ = res.err;
  }

  /// stderr of the last expect_cannot_join.
  std::string last_err_;

  st::temp_dir tmp_{"starling-it-keyring"};
  st::process_group procs_{tmp_.path() / "logs"};
  fs::path config_;
  std::map<std::string, node> nodes_;
};

TEST_F(keyring_test, same_key_converges_other_key_or_none_cannot_join) {
  const auto key = generate_key();
  start_cluster(3, key);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }))
      << "3 keyed agents did not converge";
  auto& seed = nodes_.at("node-1");
  auto ring = keyring_of(seed);
  ASSERT_TRUE(ring);
  EXPECT_EQ(ring->at("enabled"), true);
  EXPECT_EQ(ring->at("primary"), id_of(key));
  EXPECT_GT(ring->at("counters").at("opened").get<std::uint64_t>(), 0u);
  // The persisted keyring is private.
  EXPECT_EQ(fs::status(seed.data_dir / "keyring").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  // Another key: refused (unknown key id), the agent exits 1 like with an unreachable seed.
  expect_cannot_join("intruder", generate_key(), seed.info.gossip);
  ring = keyring_of(seed);
  ASSERT_TRUE(ring);
  EXPECT_GT(ring->at("counters").at("unknown_key").get<std::uint64_t>(), 0u) << ring->dump();
  // No key at all: refused (its push-pull is not sealed: the sealer counts it malformed, and
  // the answer tells the joiner why).
  const auto malformed_before = ring->at("counters").at("malformed").get<std::uint64_t>();
  expect_cannot_join("plain", "", seed.info.gossip);
  ring = keyring_of(seed);
  ASSERT_TRUE(ring);
  EXPECT_GT(ring->at("counters").at("malformed").get<std::uint64_t>(), malformed_before)
      << ring->dump();
  EXPECT_NE(last_err_.find("gossip encryption is on"), std::string::npos) << last_err_;
  // The mesh never saw them.
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
  // The table view.
  auto table = st::run_cli({"keyring", "list", "--admin", seed.info.admin});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find(id_of(key)), std::string::npos) << table.out;

  // The stats view: what the transport, the sealer and the membership core counted.
  auto stats = st::cli_json({"stats", "--admin", seed.info.admin, "--json"});
  ASSERT_TRUE(stats);
  const auto& s = *stats;
  EXPECT_GT(s.at("transport").at("datagrams_in").get<std::uint64_t>(), 0u) << s.dump();
  EXPECT_GT(s.at("transport").at("push_pulls_in").get<std::uint64_t>(), 0u) << s.dump();
  EXPECT_GT(s.at("transport").at("dropped_refused").get<std::uint64_t>(), 0u) << s.dump();
  EXPECT_GE(s.at("sealer").at("opened").get<std::uint64_t>(),
            ring->at("counters").at("opened").get<std::uint64_t>())
      << s.dump();
  EXPECT_GT(s.at("sealer").at("unknown_key").get<std::uint64_t>(), 0u) << s.dump();
  EXPECT_EQ(s.at("membership").at("members_alive").get<std::uint64_t>(), 3u) << s.dump();
  EXPECT_GT(s.at("membership").at("probes").get<std::uint64_t>(), 0u) << s.dump();
  EXPECT_GT(s.at("admin").at("requests").get<std::uint64_t>(), 0u) << s.dump();
  auto text = st::run_cli({"stats", "--admin", seed.info.admin});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("transport\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("  members_alive"), std::string::npos) << text.out;
}

TEST_F(keyring_test, rotation_keeps_everyone_alive_and_persisted_keyring_wins_on_restart) {
  const auto old_key = generate_key();
  const auto new_key = generate_key();
  start_cluster(3, old_key);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));

  // Refusals on one node: removing the primary, using a key not installed.
  auto& n1 = nodes_.at("node-1");
  auto res =
      st::run_cli({"keyring", "remove", id_of(old_key), "--local", "--admin", n1.info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("primary"), std::string::npos) << res.err;
  // A failed status with the refusal's code, not an ok answer: nothing on stdout.
  EXPECT_NE(res.err.find("identity.keyring_refused"), std::string::npos) << res.err;
  EXPECT_TRUE(res.out.empty()) << res.out;
  res = st::run_cli({"keyring", "use", new_key, "--local", "--admin", n1.info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("not installed"), std::string::npos) << res.err;
  // Without --local the change is for the whole mesh, which only an issuer pushes.
  res = st::run_cli({"keyring", "install", new_key, "--admin", n1.info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("only an issuer"), std::string::npos) << res.err;

  // The rotation, step by step, with the mesh checked after each. Failures counted from
  // here: under TSan a node can be declared failed while the mesh forms, and rejoin.
  std::map<std::string, int> failed_before;
  for (const auto& [name, n] : nodes_)
    failed_before[name] = events_of(n, "failed");
  on_every_node("install", new_key);
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
  on_every_node("use", id_of(new_key));
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
  // Let some gossip flow under the new key before the old one goes.
  auto opened_before = keyring_of(n1)->at("counters").at("opened").get<std::uint64_t>();
  ASSERT_TRUE(st::poll_until(10s, [&] {
    auto r = keyring_of(n1);
    return r && r->at("counters").at("opened").get<std::uint64_t>() > opened_before + 20;
  }));
  on_every_node("remove", old_key);
  // Still one mesh after a few more push-pulls (1 s apart) and probes.
  opened_before = keyring_of(n1)->at("counters").at("opened").get<std::uint64_t>();
  ASSERT_TRUE(st::poll_until(10s, [&] {
    auto r = keyring_of(n1);
    return r && r->at("counters").at("opened").get<std::uint64_t>() > opened_before + 50;
  }));
  EXPECT_TRUE(st::poll_until(10s, [&] { return all_alive(3); }));
  for (const auto& [name, n] : nodes_) {
    auto r = keyring_of(n);
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->at("primary"), id_of(new_key)) << name;
    EXPECT_EQ(r->at("keys").size(), 1u) << name;
    // No message was refused during the rotation, and no member failed.
    EXPECT_EQ(r->at("counters").at("unknown_key"), 0u) << name << r->dump();
    EXPECT_EQ(r->at("counters").at("tampered"), 0u) << name << r->dump();
    EXPECT_EQ(events_of(n, "failed"), failed_before[name]) << name;
  }

  // A fresh node holding only the old key is refused now.
  expect_cannot_join("stale", old_key, n1.info.gossip);

  // node-3 restarted with only the old key in its config: its persisted keyring (new key)
  // wins, so it rejoins.
  auto& n3 = nodes_.at("node-3");
  n3.proc->kill(SIGKILL);
  ASSERT_TRUE(n3.proc->wait(5s));
  start("node-3", old_key, {n1.info.gossip});
  ASSERT_FALSE(HasFailure());
  auto r3 = keyring_of(nodes_.at("node-3"));
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->at("primary"), id_of(new_key));
  EXPECT_EQ(r3->at("keys").size(), 1u);
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }))
      << "node-3 did not rejoin with its persisted keyring";
}

TEST(keyring_cli, errors_and_usage) {
  // A bad key in the config: exit 2 naming the key, without echoing it.
  st::temp_dir tmp{"starling-it-keyring"};
  auto res = st::run_cli({"agent", "--name", "x", "--data-dir", (tmp.path() / "d").string(),
                          "--gossip-key", "c2VjcmV0"});
  EXPECT_EQ(res.exit_code, 2);
  EXPECT_NE(res.err.find("config error: --gossip-key: expected a base64 key of 32 bytes"),
            std::string::npos)
      << res.err;
  EXPECT_EQ(res.err.find("c2VjcmV0"), std::string::npos) << res.err;
  // Missing argument: usage error.
  res = st::run_cli({"keyring", "install"});
  EXPECT_EQ(res.exit_code, 2);
  // No agent: exit 1 with a clear message.
  auto addr = "127.0.0.1:" + std::to_string(st::closed_port());
  res = st::run_cli({"keyring", "list", "--admin", addr});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("cannot reach"), std::string::npos) << res.err;
}

} // namespace
