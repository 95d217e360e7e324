// The real `starling ca init` / `starling ca issuer`: files, modes and the printed pin; refusal
// to overwrite; the issuer verifies against the root with identity's trust API; bad names.
#include <chrono>
#include <regex>
#include <string>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "identity/errc.hpp"
#include "identity/pki.hpp"
#include "identity/trust.hpp"
#include "tests/support/process.hpp"
#include "tests/support/test_pki.hpp"

namespace st = starling::testing;
namespace id = starling::identity;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

::mode_t mode_of(const fs::path& p) {
  struct ::stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

/// The value printed on the line "<label>: <value>", or "".
std::string printed(const std::string& out, const std::string& label) {
  std::smatch m;
  if (std::regex_search(out, m, std::regex("(^|\n)" + label + ": ([^\n]*)")))
    return m[2];
  return {};
}

TEST(ca_cli, init_writes_the_root_and_prints_its_pin) {
  st::temp_dir dir{"starling-ca"};
  auto ca = dir.path() / "ca";
  auto run = st::run_cli({"ca", "init", "--mesh", "prod.example", "--out", ca.string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(mode_of(ca / "root.key"), 0600u);
  EXPECT_EQ(mode_of(ca / "root.crt") & 0600u, 0600u);
  EXPECT_EQ(mode_of(ca), 0700u);
  EXPECT_EQ(printed(run.out, "mesh"), "prod.example");
  EXPECT_TRUE(std::regex_match(printed(run.out, "expires"),
                               std::regex(R"(20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z)")))
      << run.out;

  auto cert = st::must(id::certificate_from_pem(st::read_text(ca / "root.crt")), "root.crt");
  auto key = st::must(id::private_key_from_pem(st::read_text(ca / "root.key")), "root.key");
  auto pin = st::must(id::spki_sha256(cert), "pin");
  EXPECT_EQ(printed(run.out, "pin"), id::format_pin(pin)) << run.out;
  EXPECT_EQ(st::must(id::spki_sha256(key), "key pin"), pin);
  auto bundle = st::must(id::trust_bundle::make({cert}), "bundle");
  EXPECT_EQ(bundle.mesh(), "prod.example");
  // About ten years, starting now.
  auto life = st::must(id::not_after(cert), "na") - std::chrono::system_clock::now();
  EXPECT_GT(life, id::root_validity - 1h);
  EXPECT_LT(life, id::root_validity + 1h);
}

TEST(ca_cli, init_never_overwrites) {
  st::temp_dir dir{"starling-ca"};
  auto ca = dir.path() / "ca";
  ASSERT_EQ(st::run_cli({"ca", "init", "--mesh", "m", "--out", ca.string()}).exit_code, 0);
  auto key_before = st::read_text(ca / "root.key");
  auto cert_before = st::read_text(ca / "root.crt");
  auto again = st::run_cli({"ca", "init", "--mesh", "m", "--out", ca.string()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find((ca / "root.key").string()), std::string::npos) << again.err;
  EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1) << again.err;
  EXPECT_EQ(st::read_text(ca / "root.key"), key_before);
  EXPECT_EQ(st::read_text(ca / "root.crt"), cert_before);
  // Only the certificate left over: still refused, and no key is written beside it.
  auto half = dir.path() / "half";
  st::write_text(half / "root.crt", "old");
  auto partial = st::run_cli({"ca", "init", "--mesh", "m", "--out", half.string()});
  EXPECT_EQ(partial.exit_code, 1);
  EXPECT_NE(partial.err.find((half / "root.crt").string()), std::string::npos) << partial.err;
  EXPECT_FALSE(fs::exists(half / "root.key"));
}

TEST(ca_cli, issuer_verifies_against_the_root) {
  st::temp_dir dir{"starling-ca"};
  auto ca = dir.path() / "ca";
  auto out = dir.path() / "node-1";
  ASSERT_EQ(st::run_cli({"ca", "init", "--mesh", "prod", "--out", ca.string()}).exit_code, 0);
  auto run =
      st::run_cli({"ca", "issuer", "--ca", ca.string(), "--name", "node-1", "--out", out.string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(printed(run.out, "issuer"), "spiffe://prod/node/node-1");
  EXPECT_EQ(mode_of(out / "issuer.key"), 0600u);

  auto bundle = st::must(id::trust_bundle::from_pem(st::read_text(out / "bundle.crt")), "bundle");
  auto root = st::must(id::certificate_from_pem(st::read_text(ca / "root.crt")), "root");
  EXPECT_TRUE(bundle.contains_pin(st::must(id::spki_sha256(root), "pin")));
  EXPECT_EQ(printed(run.out, "pin"), id::format_pin(bundle.pins().front()));
  id::credentials issuer{
      st::must(id::private_key_from_pem(st::read_text(out / "issuer.key")), "issuer.key"),
      st::must(id::certificate_from_pem(st::read_text(out / "issuer.crt")), "issuer.crt")};

  // The issuer admits a node; the node's chain verifies against the bundle, naming both.
  auto now = std::chrono::system_clock::now();
  auto node_key = st::must(id::generate_key(), "node key");
  auto csr = st::must(id::make_csr(node_key, "prod", "web-1"), "csr");
  auto chain =
      st::must(id::sign_node(csr, issuer.key, issuer.cert, {}, "prod", "web-1", now), "chain");
  auto peer = id::verify_peer(chain, bundle, {}, now, "web-1");
  ASSERT_TRUE(peer) << id::render(peer.error());
  EXPECT_EQ(peer->issuers, std::vector<std::string>{"node-1"});
  // The issuer cannot sign outside its mesh.
  st::test_pki other{now, "other"};
  auto forged = st::test_pki::forge(st::test_pki::node_spec("other", "x", now - 1min, now + 1h),
                                    node_key, &issuer);
  auto refused = id::verify_peer({forged, issuer.cert}, bundle, {}, now);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(id::is(refused.error(), id::errc::name_constraint)) << id::render(refused.error());

  // A second issuer into the same directory is refused, files untouched.
  auto before = st::read_text(out / "issuer.key");
  auto again =
      st::run_cli({"ca", "issuer", "--ca", ca.string(), "--name", "node-2", "--out", out.string()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("issuer.key"), std::string::npos) << again.err;
  EXPECT_EQ(st::read_text(out / "issuer.key"), before);
}

TEST(ca_cli, bad_names_and_missing_ca_are_refused_with_one_message) {
  st::temp_dir dir{"starling-ca"};
  auto ca = dir.path() / "ca";
  for (std::string bad : {"Prod", "a..b", "-x", "a b", ""}) {
    auto run = st::run_cli({"ca", "init", "--mesh", bad, "--out", ca.string()});
    EXPECT_EQ(run.exit_code, 2) << bad << ": " << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    EXPECT_FALSE(fs::exists(ca)) << "nothing written for " << bad;
  }
  EXPECT_EQ(st::run_cli({"ca", "init", "--out", ca.string()}).exit_code, 2) << "no --mesh";
  ASSERT_EQ(st::run_cli({"ca", "init", "--mesh", "m", "--out", ca.string()}).exit_code, 0);
  auto bad_name = st::run_cli(
      {"ca", "issuer", "--ca", ca.string(), "--name", "bad/name", "--out", ca.string()});
  EXPECT_EQ(bad_name.exit_code, 2) << bad_name.err;
  EXPECT_NE(bad_name.err.find("--name"), std::string::npos) << bad_name.err;
  auto no_ca = st::run_cli({"ca", "issuer", "--ca", (dir.path() / "none").string(), "--name", "n1",
                            "--out", (dir.path() / "n1").string()});
  EXPECT_EQ(no_ca.exit_code, 1) << no_ca.err;
  EXPECT_NE(no_ca.err.find("root.key"), std::string::npos) << no_ca.err;
  EXPECT_FALSE(fs::exists(dir.path() / "n1"));
}

} // namespace
