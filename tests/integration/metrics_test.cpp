// The metrics/status server with real agents on 127.0.0.1 (issue 17, "Observability"):
// /metrics passes `promtool check metrics` and carries membership, routing and identity
// metrics (certificate expiry of the node, its issuer and the root; handshake refusals),
// /healthz and /readyz answer, and `stats --json` names the server's address.
#include <cstdio>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

class metrics_test : public st::mesh_test {
protected:
  metrics_test() : mesh_test("starling-it-metrics") {}

  /// `promtool check metrics` of `text`: its exit code and output.
  std::pair<int, std::string> promtool(const std::string& text) {
    const auto file = tmp_.path() / "metrics.txt";
    st::write_text(file, text);
    const auto cmd = "promtool check metrics < " + file.string() + " 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> p{::popen(cmd.c_str(), "r"), ::pclose};
    std::string out;
    char buf[256];
    while (p && std::fgets(buf, sizeof buf, p.get()) != nullptr)
      out += buf;
    const int status = p ? ::pclose(p.release()) : -1;
    return {status, out};
  }
};

/// The body of an HTTP response ("" without one).
std::string body_of(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string{} : response.substr(at + 4);
}

TEST_F(metrics_test, metrics_pass_promtool_and_show_every_layer) {
  const auto ca = make_root("it.mesh", "ca");
  auto& a = start("a", {}, {"--issuer", make_issuer(ca, "a").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto& b = start("b", {a.info.gossip}, {"--token", token_of(a, "1")});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(2); }));
  ASSERT_FALSE(b.info.metrics.empty());

  EXPECT_EQ(st::http_get(b.info.metrics, "/healthz").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(st::http_get(b.info.metrics, "/readyz").rfind("HTTP/1.1 200", 0), 0u);
  const auto response = st::http_get(b.info.metrics, "/metrics");
  ASSERT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  const auto text = body_of(response);
  const auto [status, out] = promtool(text);
  EXPECT_EQ(status, 0) << out << "\n" << text;
  for (const auto* name :
       {"starling_build_info{", "starling_membership_members{state=\"alive\"} 2",
        "starling_membership_probes_total ", "starling_routing_owners ",
        "starling_transport_push_pulls_in_total ",
        "starling_identity_certificate_expiration_timestamp_seconds{kind=\"node\"",
        "starling_identity_certificate_expiration_timestamp_seconds{kind=\"issuer\"",
        "starling_identity_certificate_expiration_timestamp_seconds{kind=\"root\"",
        "# TYPE starling_identity_handshake_refusals_total counter"})
    EXPECT_NE(text.find(name), std::string::npos) << name << " missing:\n" << text;
  // The agent names the build `starling --version` names: "starling 0.1.0 (REVISION)".
  const auto version = st::run_cli({"--version"}).out;
  const auto open = version.find(" (");
  ASSERT_NE(open, std::string::npos) << version;
  EXPECT_NE(text.find("starling_build_info{version=\"" + version.substr(9, open - 9) +
                      "\",revision=\"" + version.substr(open + 2, version.find(')') - open - 2) +
                      "\"} 1\n"),
            std::string::npos)
      << version << text;

  auto stats = st::cli_json({"stats", "--json", "--admin", b.info.admin});
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->at("metrics_address"), b.info.metrics);
}

} // namespace
