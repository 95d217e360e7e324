#include "tests/support/agents.hpp"

#include <gtest/gtest.h>

namespace starling::testing {

std::vector<std::string> agent_argv(const std::filesystem::path& config, const std::string& name,
                                    const std::filesystem::path& data_dir,
                                    const std::vector<std::string>& seeds,
                                    const std::vector<std::string>& extra) {
  std::vector<std::string> argv{
      starling_bin(), "agent",       "--config",    config.string(),
      "--name",       name,          "--data-dir",  data_dir.string(),
      "--gossip",     "127.0.0.1:0", "--admin",     "127.0.0.1:0",
      "--dns",        "127.0.0.1:0", "--metrics",   "127.0.0.1:0",
      "--inbound",    "127.0.0.1:0", "--event-log", (data_dir / "events.jsonl").string()};
  for (const auto& s : seeds) {
    argv.push_back("--join");
    argv.push_back(s);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

agent_node start_agent(process_group& procs, const std::vector<std::string>& argv,
                       const std::string& name, const std::filesystem::path& data_dir,
                       test_clock::duration timeout) {
  agent_node n;
  n.name = name;
  n.data_dir = data_dir;
  n.proc = &procs.spawn(argv, name);
  const auto pid = n.proc->pid();
  bool ready = poll_until(timeout, [&] {
    auto info = read_agent_json(data_dir);
    if (!info || info->pid != pid)
      return false;
    n.info = *info;
    return n.proc->stdout_text().find("starling agent " + name + " ready: gossip ") !=
           std::string::npos;
  });
  EXPECT_TRUE(ready) << name << " did not become ready";
  return n;
}

std::optional<nlohmann::json> cli_json(const std::vector<std::string>& args) {
  auto res = run_cli(args, 10s);
  if (res.exit_code != 0)
    return std::nullopt;
  auto doc = nlohmann::json::parse(res.out, nullptr, false);
  if (doc.is_discarded())
    return std::nullopt;
  return doc;
}

std::string outbound_of(const std::string& admin, const std::string& service) {
  auto view = cli_json({"routes", "--json", "--admin", admin});
  if (view && view->contains("routes"))
    for (const auto& r : view->at("routes"))
      if (r.at("service") == service && r.at("outbound").is_string())
        return r.at("outbound").get<std::string>();
  return {};
}

std::optional<nlohmann::json> members_view(const std::string& admin) {
  return cli_json({"members", "--json", "--admin", admin});
}

std::string fast_agent_config(const std::string& push_pull_interval) {
  return "log_level = \"debug\"\n"
         "join_timeout = \"10s\"\n\n"
         "[gossip]\n"
         "probe_interval = \"200ms\"\n"
         "probe_timeout = \"100ms\"\n"
         "gossip_interval = \"50ms\"\n"
         "suspicion_mult = 3\n"
         "push_pull_interval = \"" +
         push_pull_interval +
         "\"\n"
         "reap_after = \"10m\"\n";
}

bool all_alive(const std::map<std::string, agent_node>& nodes, std::size_t count) {
  for (const auto& [name, n] : nodes) {
    auto view = members_view(n.info.admin);
    if (!view || view->at("members").size() != count)
      return false;
    for (const auto& m : view->at("members"))
      if (m.at("state") != "alive")
        return false;
  }
  return true;
}

} // namespace starling::testing
