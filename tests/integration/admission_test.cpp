// Admission with real processes on 127.0.0.1 (port 0): an offline root and issuer made by
// `starling ca`, an issuer node, `starling token create`, nodes joining with tokens through
// the issuer and through a seed that is not an issuer (which forwards), the certificate,
// bundle and keyring stored in each data dir (a restart needs no token), `starling certs`;
// and the refusals: a token reused past its count, a forged token, a node of another mesh,
// a node without a certificate. Every wait polls with a deadline.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "identity/token.hpp"
#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
namespace si = starling::identity;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

class admission_test : public st::mesh_test {
protected:
  admission_test() : mesh_test("starling-it-admission") {}
};

TEST_F(admission_test, five_nodes_join_with_tokens_through_an_issuer_and_a_forwarding_seed) {
  const auto ca = make_root("it.mesh", "ca");
  const auto issuer_dir = make_issuer(ca, "issuer-1");
  auto& issuer = start("issuer-1", {}, {"--issuer", issuer_dir.string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto certs = certs_of(issuer);
  ASSERT_TRUE(certs);
  EXPECT_EQ(certs->at("identity"), true);
  EXPECT_EQ(certs->at("is_issuer"), true);
  EXPECT_EQ(certs->at("certificate").at("uri"), "spiffe://it.mesh/node/issuer-1");

  // Two nodes through the issuer itself, with one two-use token.
  const auto token = token_of(issuer, "2");
  start("node-1", {issuer.info.gossip}, {"--token", token});
  start("node-2", {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  // Two more through node-1, which is no issuer: it forwards to issuer-1.
  const auto token2 = token_of(issuer, "2", "10m");
  const auto via = nodes_.at("node-1").info.gossip;
  start("node-3", {via}, {"--token", token2});
  start("node-4", {via}, {"--token", token2});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(5); })) << "5 nodes did not converge";

  for (const auto* name : {"node-1", "node-3"}) {
    const auto& n = nodes_.at(name);
    auto c = certs_of(n);
    ASSERT_TRUE(c) << name;
    EXPECT_EQ(c->at("identity"), true);
    EXPECT_EQ(c->at("mesh"), "it.mesh");
    EXPECT_EQ(c->at("is_issuer"), false);
    EXPECT_EQ(c->at("certificate").at("uri"), std::string{"spiffe://it.mesh/node/"} + name);
    EXPECT_EQ(c->at("issuers").at(0).at("uri"), "spiffe://it.mesh/node/issuer-1");
    EXPECT_GT(c->at("certificate").at("expires_in_seconds").get<long>(), 23 * 3600);
    // The keyring came with the certificate.
    EXPECT_EQ(c->at("keyring").at("enabled"), true);
    EXPECT_EQ(c->at("keyring").at("primary"), certs->at("keyring").at("primary"));
    EXPECT_EQ(fs::status(n.data_dir / "node.key").permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
  }
  auto issued = certs_of(issuer);
  ASSERT_TRUE(issued);
  EXPECT_EQ(issued->at("issuer").at("admitted"), 4) << issued->dump();
  auto text = st::run_cli({"certs", "--admin", nodes_.at("node-3").info.admin});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("spiffe://it.mesh/node/node-3"), std::string::npos) << text.out;

  // A spent token is refused, with the reason, and nothing changes in the mesh.
  auto err = expect_refused("node-5", {issuer.info.gossip}, {"--token", token});
  EXPECT_NE(err.find("token_exhausted"), std::string::npos) << err;
  // A restart needs no token: the stored certificate is used.
  ASSERT_TRUE(stop("node-2", SIGTERM));
  auto& again = start("node-2", {issuer.info.gossip}, {});
  ASSERT_FALSE(HasFailure());
  auto c2 = certs_of(again);
  ASSERT_TRUE(c2);
  EXPECT_EQ(c2->at("source"), "stored");
  EXPECT_TRUE(st::poll_until(30s, [&] { return all_alive(5); })) << "node-2 did not rejoin";
}

TEST_F(admission_test, forged_tokens_foreign_certificates_and_plain_nodes_are_refused) {
  const auto ca = make_root("it.mesh", "ca");
  auto& issuer = start("issuer-1", {},
                       {"--issuer", make_issuer(ca, "issuer-1").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  const auto token = token_of(issuer, "1");
  start("node-1", {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(2); }));

  // A forged token: the same token with another secret (flip a bit of the secret bytes,
  // re-encode): the issuer refuses it as forged.
  auto decoded = si::decode(token);
  ASSERT_TRUE(decoded);
  decoded->secret[0] ^= 0x01;
  auto forged = si::encode(*decoded);
  ASSERT_TRUE(forged);
  auto err = expect_refused("forger", {issuer.info.gossip}, {"--token", *forged});
  EXPECT_NE(err.find("token_forged"), std::string::npos) << err;

  // A node of another mesh (its own root, same mesh name): its chain leads to no root we
  // hold, so it cannot even push-pull with the issuer.
  const auto other_ca = make_root("it.mesh", "other-ca");
  err =
      expect_refused("foreign", {issuer.info.gossip},
                     {"--issuer", make_issuer(other_ca, "foreign").string(), "--gossip-key", key_});
  EXPECT_NE(err.find("could not join"), std::string::npos) << err;
  // A token pinning another root: the joiner refuses the seed (its chain does not end at
  // the pinned root) before sending its request.
  auto other_pin = si::decode(token_of(issuer, "1"));
  ASSERT_TRUE(other_pin);
  other_pin->pin[0] ^= 0x01;
  err = expect_refused("mispinned", {issuer.info.gossip}, {"--token", *si::encode(*other_pin)});
  EXPECT_NE(err.find("admission"), std::string::npos) << err;
  // A node without a certificate (gossip key only): refused by TLS.
  err = expect_refused("plain", {issuer.info.gossip}, {"--gossip-key", key_});
  EXPECT_NE(err.find("could not join"), std::string::npos) << err;

  // The mesh is intact and still admits.
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(2); }));
  start("node-2", {issuer.info.gossip}, {"--token", token_of(issuer, "1")});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
}

} // namespace
