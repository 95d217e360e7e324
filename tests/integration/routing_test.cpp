// Service discovery and the routing table with real agents on 127.0.0.1 (port 0) and
// certificates (issue 16): a service registered on one node is seen healthy on every node
// (and answered by every node's DNS); its app stops and it turns unhealthy everywhere; its
// node is killed and it leaves every routable set; a split written on an issuer reaches
// every node, and a node without issuer authority cannot write one. Every wait polls with a
// deadline.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

/// A TCP listener on 127.0.0.1 (the "app" of a service): connections queue in its backlog,
/// so a TCP health check passes while it is open and is refused once it is closed.
class tcp_app {
public:
  tcp_app() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 64) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      ADD_FAILURE() << "cannot open the test app's listener";
    port_ = ntohs(addr.sin_port);
  }
  ~tcp_app() { close(); }
  tcp_app(const tcp_app&) = delete;
  tcp_app& operator=(const tcp_app&) = delete;

  std::uint16_t port() const { return port_; }
  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

class routing_test : public st::mesh_test {
protected:
  routing_test() : mesh_test("starling-it-routing") {}

  /// `starling services --json` of `n`.
  static std::optional<nlohmann::json> services_of(const node& n) {
    return st::cli_json({"services", "--json", "--admin", n.info.admin});
  }

  /// The instances of `service` that `n` lists.
  static nlohmann::json instances_on(const node& n, const std::string& service) {
    auto view = services_of(n);
    if (view && view->contains("services"))
      for (const auto& s : view->at("services"))
        if (s.at("name") == service)
          return s.at("instances");
    return nlohmann::json::array();
  }

  /// True when `n` lists exactly one instance of `service`, owned by `owner`, with
  /// healthy == `healthy`.
  static bool sees(const node& n, const std::string& service, const std::string& owner,
                   bool healthy) {
    auto list = instances_on(n, service);
    return list.size() == 1 && list[0].at("node") == owner && list[0].at("healthy") == healthy;
  }

  /// The split of `service` in `n`'s routes view, as "v1=90,v2=10" ("" without one).
  static std::string split_on(const node& n, const std::string& service) {
    auto view = st::cli_json({"routes", "--json", "--admin", n.info.admin});
    if (!view || !view->contains("routes"))
      return "?";
    for (const auto& r : view->at("routes"))
      if (r.at("service") == service && r.at("split").is_array()) {
        std::string out;
        for (const auto& w : r.at("split"))
          out += (out.empty() ? "" : ",") + w.at("version").get<std::string>() + "=" +
                 std::to_string(w.at("weight").get<int>());
        return out;
      }
    return "";
  }

  /// `dig` of `name` (type `type`) against `n`'s DNS responder, its answers only (`flags`).
  static std::string dig(const node& n, const std::string& name, const std::string& type,
                         const std::string& flags = "+short") {
    const auto colon = n.info.dns.rfind(':');
    const auto cmd = "dig @127.0.0.1 -p " + n.info.dns.substr(colon + 1) + " " + name + " " + type +
                     " " + flags + " +tries=1 +time=3 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> p{::popen(cmd.c_str(), "r"), ::pclose};
    std::string out;
    char buf[256];
    while (p && std::fgets(buf, sizeof buf, p.get()) != nullptr)
      out += buf;
    return out;
  }

  /// Registers service "api" version v1 on b (app `v1`) and v2 on c (app `v2`).
  void register_api(const tcp_app& v1, const tcp_app& v2) {
    for (auto [owner, app, version] : {std::tuple{"b", &v1, "v1"}, std::tuple{"c", &v2, "v2"}}) {
      auto reg = st::run_cli({"register", "--name", "api", "--port", std::to_string(app->port()),
                              "--version", version, "--admin", nodes_.at(owner).info.admin});
      ASSERT_EQ(reg.exit_code, 0) << reg.err;
    }
  }

  /// Starts issuer "a" and members b..e (certificates by token), all alive.
  void start_mesh() {
    const auto ca = make_root("it.mesh", "ca");
    auto& a = start("a", {}, {"--issuer", make_issuer(ca, "a").string(), "--gossip-key", key_});
    ASSERT_FALSE(HasFailure());
    const auto token = token_of(a, "4");
    for (const auto* name : {"b", "c", "d", "e"})
      start(name, {a.info.gossip}, {"--token", token});
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(5); })) << "5 nodes did not converge";
  }
};

TEST_F(routing_test, a_registration_spreads_turns_unhealthy_and_leaves_with_its_node) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  tcp_app app;
  const auto& b = nodes_.at("b");
  auto reg =
      st::run_cli({"register", "--name", "web", "--port", std::to_string(app.port()), "--version",
                   "v1", "--check", "tcp", "--check-interval", "1s", "--check-timeout", "500ms",
                   "--rise", "1", "--fall", "1", "--admin", b.info.admin});
  ASSERT_EQ(reg.exit_code, 0) << reg.err;

  // Healthy on every node, E included, within seconds. (The lambdas below name `n` in an
  // init-capture: clang 14 cannot capture a structured binding implicitly.)
  for (const auto& [name, n] : nodes_)
    EXPECT_TRUE(st::poll_until(20s, [&n = n] { return sees(n, "web", "b", true); }))
        << name << " never saw web on b healthy: " << instances_on(n, "web").dump();
  // Every node's DNS answers it.
  const auto& e = nodes_.at("e");
  ASSERT_FALSE(e.info.dns.empty());
  EXPECT_TRUE(st::poll_until(10s, [&] {
    return dig(e, "web.service.starling", "A") == "127.0.0.1\n";
  })) << dig(e, "web.service.starling", "A");
  EXPECT_NE(
      dig(e, "web.service.starling", "SRV").find(std::to_string(app.port()) + " b.node.starling."),
      std::string::npos);
  EXPECT_NE(dig(e, "nope.service.starling", "A", "+noall +comments").find("NXDOMAIN"),
            std::string::npos);

  // The app stops: its check fails on b, and every node sees it unhealthy.
  app.close();
  for (const auto& [name, n] : nodes_)
    EXPECT_TRUE(st::poll_until(20s, [&n = n] { return sees(n, "web", "b", false); }))
        << name << ": " << instances_on(n, "web").dump();
  EXPECT_TRUE(st::poll_until(10s, [&] { return dig(e, "web.service.starling", "A").empty(); }));

  // b is killed: its instance leaves every routable set (membership drives it).
  auto list = instances_on(nodes_.at("c"), "web");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_NE(list[0].at("last_check").get<std::string>().find("refused"), std::string::npos)
      << list.dump();
  ASSERT_TRUE(stop("b", SIGKILL).has_value());
  for (const auto* name : {"a", "c", "d", "e"}) {
    const auto& n = nodes_.at(name);
    EXPECT_TRUE(st::poll_until(20s,
                               [&] {
                                 auto l = instances_on(n, "web");
                                 return l.size() == 1 && l[0].at("node_alive") == false &&
                                        l[0].at("healthy") == false;
                               }))
        << name << ": " << instances_on(n, "web").dump();
  }
}

TEST_F(routing_test, only_an_issuer_writes_policies_and_they_reach_every_node) {
  start_mesh();
  ASSERT_FALSE(HasFailure());
  tcp_app v1, v2;
  register_api(v1, v2);
  ASSERT_FALSE(HasFailure());
  const auto& a = nodes_.at("a");
  // Every node knows both versions: else a node may refuse the split below for naming a
  // version it has not seen yet (invalid_policy) rather than for its authority.
  ASSERT_TRUE(st::poll_until(20s, [&] {
    for (const auto* name : {"a", "b", "c", "d", "e"})
      if (instances_on(nodes_.at(name), "api").size() != 2)
        return false;
    return true;
  }));

  // A node without issuer authority cannot sign a split: every one of them refuses.
  for (const auto* name : {"b", "c", "d", "e"}) {
    auto res =
        st::run_cli({"split", "api", "v1=50", "v2=50", "--admin", nodes_.at(name).info.admin});
    EXPECT_EQ(res.exit_code, 1) << name;
    EXPECT_NE(res.err.find("no_authority"), std::string::npos) << res.err;
  }
  // Bad splits are refused where they are written.
  EXPECT_EQ(st::run_cli({"split", "api", "v1=50", "v3=50", "--admin", a.info.admin}).exit_code, 1);
  EXPECT_EQ(st::run_cli({"split", "api", "v1=50", "v2=40", "--admin", a.info.admin}).exit_code, 2);

  auto ok = st::run_cli({"split", "api", "v1=90", "v2=10", "--admin", a.info.admin});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  for (const auto& [name, n] : nodes_)
    EXPECT_TRUE(st::poll_until(20s, [&n = n] { return split_on(n, "api") == "v1=90,v2=10"; }))
        << name << ": " << split_on(n, "api");
  // Nothing was refused as forged or unauthorized on the way: the records carry their
  // signers' chains.
  for (const auto& [name, n] : nodes_) {
    auto stats = st::cli_json({"stats", "--json", "--admin", n.info.admin});
    ASSERT_TRUE(stats) << name;
    EXPECT_EQ(stats->at("routing").at("refused_bad_signature"), 0) << name;
    EXPECT_EQ(stats->at("routing").at("refused_not_authorized"), 0) << name;
    EXPECT_TRUE(stats->at("dns_address").is_string()) << name;
  }
}

TEST_F(routing_test, a_late_joiner_pulls_the_table_when_sections_carry_digests_alone) {
  // inline_section_max = 0: every push-pull section is the table's digest alone, so the
  // records reach a node that joins later only through range pulls (request type 3).
  {
    std::ifstream in(config_);
    std::stringstream text;
    text << in.rdbuf() << "\n[routing]\ninline_section_max = 0\n";
    st::write_text(config_, text.str());
  }
  const auto ca = make_root("it.mesh", "ca");
  auto& a = start("a", {}, {"--issuer", make_issuer(ca, "a").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  const auto token = token_of(a, "3");
  for (const auto* name : {"b", "c"})
    start(name, {a.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  tcp_app v1, v2;
  register_api(v1, v2);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return instances_on(a, "api").size() == 2; }));
  auto ok = st::run_cli({"split", "api", "v1=70", "v2=30", "--admin", a.info.admin});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  for (const auto& [name, n] : nodes_)
    ASSERT_TRUE(st::poll_until(20s, [&n = n] {
      return instances_on(n, "api").size() == 2 && split_on(n, "api") == "v1=70,v2=30";
    })) << name;

  auto& d = start("d", {a.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(st::poll_until(
      20s,
      [&] { return instances_on(d, "api").size() == 2 && split_on(d, "api") == "v1=70,v2=30"; }))
      << instances_on(d, "api").dump() << " " << split_on(d, "api");
  auto stats = st::cli_json({"stats", "--json", "--admin", d.info.admin});
  ASSERT_TRUE(stats);
  const auto& r = stats->at("routing");
  EXPECT_GT(r.at("pulls_out").get<int>(), 0) << r.dump();
  EXPECT_GT(r.at("pull_answers_in").get<int>(), 0) << r.dump();
  EXPECT_EQ(r.at("records_refused").get<int>(), 0) << r.dump();
  std::uint64_t served = 0;
  for (const auto* name : {"a", "b", "c"}) {
    auto s2 = st::cli_json({"stats", "--json", "--admin", nodes_.at(name).info.admin});
    ASSERT_TRUE(s2) << name;
    served += s2->at("routing").at("pulls_in").get<std::uint64_t>();
    EXPECT_GT(s2->at("routing").at("sections_digest_only").get<int>(), 0) << name;
    EXPECT_EQ(s2->at("routing").at("pulls_malformed").get<int>(), 0) << name;
  }
  EXPECT_GT(served, 0u);
}

} // namespace
