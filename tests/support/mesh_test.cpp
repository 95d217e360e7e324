#include "tests/support/mesh_test.hpp"

#include "identity/token.hpp"

namespace starling::testing {

namespace fs = std::filesystem;

mesh_test::mesh_test(const std::string& prefix) : tmp_(prefix) {}

void mesh_test::SetUp() {
  config_ = tmp_.path() / "agent.toml";
  write_text(config_, fast_agent_config("1s"));
  key_ = cli_line({"keyring", "generate"});
}

std::string mesh_test::cli_line(const std::vector<std::string>& args) {
  auto res = run_cli(args);
  EXPECT_EQ(res.exit_code, 0) << res.err;
  return res.out.substr(0, res.out.find('\n'));
}

fs::path mesh_test::make_root(const std::string& mesh, const std::string& dir) {
  auto out = tmp_.path() / dir;
  auto res = run_cli({"ca", "init", "--mesh", mesh, "--out", out.string()});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  return out;
}

fs::path mesh_test::make_issuer(const fs::path& ca, const std::string& name) {
  auto out = tmp_.path() / ("issuer-" + name);
  auto res = run_cli({"ca", "issuer", "--ca", ca.string(), "--name", name, "--out", out.string()});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  return out;
}

std::vector<std::string> mesh_test::argv_of(const std::string& name,
                                            const std::vector<std::string>& seeds,
                                            std::vector<std::string> extra) {
  return agent_argv(config_, name, data_dir(name), seeds, extra);
}

fs::path mesh_test::data_dir(const std::string& name) const { return tmp_.path() / "data" / name; }

mesh_test::node& mesh_test::start(const std::string& name, const std::vector<std::string>& seeds,
                                  std::vector<std::string> extra) {
  nodes_[name] =
      start_agent(procs_, argv_of(name, seeds, std::move(extra)), name, data_dir(name), 20s);
  return nodes_[name];
}

std::optional<int> mesh_test::stop(const std::string& name, int sig) {
  auto& n = nodes_.at(name);
  n.proc->kill(sig);
  auto code = n.proc->wait(15s);
  procs_.remove(*n.proc);
  nodes_.erase(name);
  return code;
}

std::string mesh_test::token_of(const node& issuer, const std::string& uses,
                                const std::string& ttl) {
  std::vector<std::string> args{"token", "create", "--uses", uses, "--admin", issuer.info.admin};
  if (!ttl.empty())
    args.insert(args.end(), {"--ttl", ttl});
  auto res = run_cli(args);
  EXPECT_EQ(res.exit_code, 0) << res.err;
  auto out = res.out;
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  auto token = out.substr(out.rfind('\n') + 1);
  EXPECT_TRUE(identity::decode(token)) << "not a token: " << res.out;
  return token;
}

bool mesh_test::all_alive(std::size_t count) const { return testing::all_alive(nodes_, count); }

std::optional<nlohmann::json> mesh_test::certs_of(const node& n) {
  return cli_json({"certs", "--json", "--admin", n.info.admin});
}

std::string mesh_test::expect_refused(const std::string& name,
                                      const std::vector<std::string>& seeds,
                                      std::vector<std::string> extra) {
  auto argv = argv_of(name, seeds, std::move(extra));
  argv.erase(argv.begin()); // run_cli adds the binary
  argv.insert(argv.end(), {"--join-timeout", "3s"});
  auto res = run_cli(argv, 30s);
  EXPECT_EQ(res.exit_code, 1) << name << " was admitted although it should not: " << res.err;
  return res.err;
}

} // namespace starling::testing
