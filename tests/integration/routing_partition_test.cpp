// The routing table across a partition, with real agents (issue 16): four agents in a
// network namespace the test makes, cut in two halves by nftables rules (FAULTS.md); each
// half writes while cut; once healed, every node holds the same table. Needs root, `ip` and
// `nft` (CI runs as root); skipped with a message otherwise. Every wait polls with a
// deadline; the namespace and its rules are removed whatever happens.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/agents.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

/// Runs a shell command; its exit status (-1 if it could not run).
int sh(const std::string& cmd) {
  const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/// The full path of `tool` ("" when it is not installed).
std::string path_of(const char* tool) {
  std::unique_ptr<FILE, int (*)(FILE*)> p{
      ::popen((std::string{"command -v "} + tool + " 2>/dev/null").c_str(), "r"), ::pclose};
  char buf[512] = {};
  if (!p || std::fgets(buf, sizeof buf, p.get()) == nullptr)
    return {};
  std::string out{buf};
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  return out;
}

/// A network namespace of the test's own, removed on destruction.
class netns {
public:
  explicit netns(std::string name) : name_(std::move(name)) {
    ok_ = sh("ip netns add " + name_) == 0 && sh("ip -n " + name_ + " link set lo up") == 0;
  }
  ~netns() { sh("ip netns del " + name_); }
  netns(const netns&) = delete;
  netns& operator=(const netns&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] const std::string& name() const { return name_; }
  /// Runs `cmd` inside the namespace.
  [[nodiscard]] int run(const std::string& cmd) const {
    return sh("ip netns exec " + name_ + " " + cmd);
  }

private:
  std::string name_;
  bool ok_ = false;
};

/// `starling <args>` inside `ns`: its stdout parsed as JSON, or nothing.
std::optional<nlohmann::json> ns_json(const netns& ns, const std::string& args) {
  const auto cmd =
      "ip netns exec " + ns.name() + " " + st::starling_bin() + " " + args + " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> p{::popen(cmd.c_str(), "r"), ::pclose};
  if (!p)
    return std::nullopt;
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p.get()) != nullptr)
    out += buf;
  auto doc = nlohmann::json::parse(out, nullptr, false);
  if (doc.is_discarded())
    return std::nullopt;
  return doc;
}

std::uint16_t port_of(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

std::string port_set(const std::vector<std::uint16_t>& ports) {
  std::string out = "{ ";
  for (std::size_t k = 0; k < ports.size(); ++k)
    out += (k ? ", " : "") + std::to_string(ports[k]);
  return out + " }";
}

TEST(routing_partition, tables_are_identical_again_after_a_partition_heals) {
  const auto ip = path_of("ip");
  if (geteuid() != 0 || ip.empty() || path_of("nft").empty())
    GTEST_SKIP() << "needs root, iproute2 and nftables (scripts/install-deps.sh): the "
                    "partition is made in a network namespace of the test's own";
  st::temp_dir tmp{"starling-it-partition"};
  netns ns{"starling-it-" + std::to_string(::getpid())};
  ASSERT_TRUE(ns.ok()) << "cannot create a network namespace";
  st::process_group procs{tmp.path() / "logs"};
  const auto config = tmp.path() / "agent.toml";
  st::write_text(config, st::fast_agent_config("1s"));

  // Four agents without certificates (unsigned records: the partition is what is tested).
  std::map<std::string, st::agent_node> nodes;
  const std::vector<std::string> names{"a", "b", "c", "d"};
  for (const auto& name : names) {
    std::vector<std::string> seeds;
    if (name != "a")
      seeds.push_back(nodes.at("a").info.gossip);
    auto argv = st::agent_argv(config, name, tmp.path() / name, seeds);
    argv.insert(argv.begin(), {ip, std::string{"netns"}, std::string{"exec"}, ns.name()});
    nodes.emplace(name, st::start_agent(procs, argv, name, tmp.path() / name));
    ASSERT_FALSE(::testing::Test::HasFailure()) << name << " did not start";
  }
  const auto all_alive = [&] {
    for (const auto& [name, n] : nodes) {
      auto view = ns_json(ns, "members --json --admin " + n.info.admin);
      if (!view || view->at("members").size() != names.size())
        return false;
      for (const auto& m : view->at("members"))
        if (m.at("state") != "alive")
          return false;
    }
    return true;
  };
  ASSERT_TRUE(st::poll_until(30s, all_alive)) << "the four agents did not converge";

  // Cut {a, b} from {c, d}: gossip datagrams between the halves, and every TCP exchange on
  // a gossip port (push-pulls; their source ports are ephemeral, so they cannot be told
  // apart by half: no push-pull runs while cut).
  std::vector<std::uint16_t> left, right, all;
  for (const auto& [name, n] : nodes) {
    (name == "a" || name == "b" ? left : right).push_back(port_of(n.info.gossip));
    all.push_back(port_of(n.info.gossip));
  }
  const auto l = port_set(left), r = port_set(right);
  ASSERT_EQ(ns.run("nft add table inet cut"), 0);
  ASSERT_EQ(ns.run("nft \"add chain inet cut out { type filter hook output priority 0; }\""), 0);
  for (const auto& rule :
       {"udp sport " + l + " udp dport " + r + " drop",
        "udp sport " + r + " udp dport " + l + " drop", "tcp dport " + port_set(all) + " drop"})
    ASSERT_EQ(ns.run("nft \"add rule inet cut out " + rule + "\""), 0) << rule;

  // Each half writes while cut.
  const auto& a = nodes.at("a");
  const auto& c = nodes.at("c");
  ASSERT_EQ(ns.run(st::starling_bin() + " register --name web --port 18080 --version v1 --admin " +
                   a.info.admin),
            0);
  ASSERT_EQ(ns.run(st::starling_bin() + " resilience web --timeout 2s --admin " + a.info.admin), 0);
  ASSERT_EQ(
      ns.run(st::starling_bin() + " register --name api --port 18081 --admin " + c.info.admin), 0);
  const auto view_of = [&](const st::agent_node& n) {
    auto services = ns_json(ns, "services --json --admin " + n.info.admin);
    auto routes = ns_json(ns, "routes --json --admin " + n.info.admin);
    if (!services || !routes)
      return std::string{"?"};
    // Liveness differs while cut, and each node has its own outbound listeners; the table
    // is what must agree.
    for (auto& s : services->at("services"))
      for (auto& i : s.at("instances")) {
        i.erase("node_alive");
        i.erase("healthy");
      }
    for (auto& r : routes->at("routes"))
      r.erase("outbound");
    return services->dump() + routes->dump();
  };
  const auto has = [&](const st::agent_node& n, const std::string& what) {
    return view_of(n).find(what) != std::string::npos;
  };
  // On a failure: every node's table, membership and routing counters.
  const auto report = [&] {
    std::string out;
    for (const auto& [name, n] : nodes) {
      auto stats = ns_json(ns, "stats --json --admin " + n.info.admin);
      out += "\n" + name + ": " + view_of(n) + "\n  stats: " + (stats ? stats->dump() : "?");
    }
    return out;
  };
  ASSERT_TRUE(st::poll_until(20s, [&] { return has(nodes.at("b"), "\"timeout_ms\":2000"); }))
      << "the write did not spread within the left half" << report();
  ASSERT_TRUE(st::poll_until(20s, [&] { return has(nodes.at("d"), "\"api\""); }))
      << "the write did not spread within the right half" << report();
  // The cut holds: each half finds the other unreachable (suspect, then dead), and still
  // has not seen the other's writes.
  const auto state_on = [&](const st::agent_node& observer, const std::string& subject) {
    auto view = ns_json(ns, "members --json --admin " + observer.info.admin);
    if (view)
      for (const auto& m : view->at("members"))
        if (m.at("name") == subject)
          return m.at("state").get<std::string>();
    return std::string{};
  };
  ASSERT_TRUE(st::poll_until(20s, [&] { return state_on(a, "c") == "dead"; }))
      << "the cut did not cut: a sees c " << state_on(a, "c");
  EXPECT_FALSE(has(nodes.at("c"), "\"timeout_ms\":2000")) << view_of(nodes.at("c"));
  EXPECT_FALSE(has(a, "\"api\"")) << view_of(a);

  // Heal: every node ends with the same table.
  ASSERT_EQ(ns.run("nft delete table inet cut"), 0);
  const auto identical = [&] {
    const auto first = view_of(a);
    if (first.find("\"api\"") == std::string::npos ||
        first.find("\"timeout_ms\":2000") == std::string::npos)
      return false;
    for (const auto& [name, n] : nodes)
      if (view_of(n) != first)
        return false;
    return true;
  };
  EXPECT_TRUE(st::poll_until(60s, identical)) << "a: " << view_of(a) << "\nc: " << view_of(c);
  EXPECT_TRUE(st::poll_until(30s, all_alive)) << "membership did not heal";
}

} // namespace
