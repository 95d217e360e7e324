// The admission quorum with real processes on 127.0.0.1 (port 0), docs/decisions/0009: two
// issuers of one mesh run with admission_quorum = 2. A node joins with one token from each
// (through an issuer, and through a seed that is no issuer: it collects the endorsement and
// forwards); `starling certs` shows who endorsed it. A node with one token is refused by the
// mesh (quorum_not_met) and its token is not spent; a node whose certificate one issuer
// signed alone (what a compromised issuer could make) is refused at every handshake and
// never becomes a member. Every wait polls with a deadline.
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "identity/admission.hpp"
#include "identity/errc.hpp"
#include "identity/pki.hpp"
#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
namespace si = starling::identity;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

class quorum_test : public st::mesh_test {
protected:
  quorum_test() : mesh_test("starling-it-quorum") {}

  /// The flags every node of the quorum mesh runs with. The issuers sign 45 s certificates,
  /// so that renewals (at 2/3 of the life) happen during the test.
  std::vector<std::string> with_quorum(std::vector<std::string> extra) const {
    extra.insert(extra.end(), {"--admission-quorum", "2", "--cert-ttl", "45s"});
    return extra;
  }

  /// notBefore of the certificate `n` presents.
  static std::string not_before_of(const node& n) {
    auto c = certs_of(n);
    return c ? c->at("certificate").at("not_before").get<std::string>() : std::string{};
  }

  /// The names `starling certs --json` of `n` lists as endorsing its key.
  static std::vector<std::string> endorsers_of(const node& n) {
    std::vector<std::string> out;
    auto c = certs_of(n);
    if (!c)
      return out;
    for (const auto& e : c->at("certificate").at("endorsed_by"))
      out.push_back(e.get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(quorum_test, two_issuers_must_vouch_and_one_issuer_alone_admits_nobody) {
  const auto ca = make_root("q.mesh", "ca");
  const auto dir1 = make_issuer(ca, "issuer-1");
  const auto dir2 = make_issuer(ca, "issuer-2");
  auto& issuer1 =
      start("issuer-1", {}, with_quorum({"--issuer", dir1.string(), "--gossip-key", key_}));
  ASSERT_FALSE(HasFailure());
  // An issuer's self-issued certificate meets any quorum: the root vouched for its name.
  auto& issuer2 = start("issuer-2", {issuer1.info.gossip},
                        with_quorum({"--issuer", dir2.string(), "--gossip-key", key_}));
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(2); })) << "the issuers did not meet";

  // node-1 through issuer-1 with a token of each issuer: issuer-1 asks issuer-2 to endorse.
  start("node-1", {issuer1.info.gossip},
        with_quorum({"--token", token_of(issuer1, "1"), "--token", token_of(issuer2, "1")}));
  ASSERT_FALSE(HasFailure());
  // node-2 through node-1, which is no issuer: node-1 collects issuer-1's endorsement and
  // forwards the admission to issuer-2 (the first token's issuer), which signs.
  const auto via = nodes_.at("node-1").info.gossip;
  start("node-2", {via},
        with_quorum({"--token", token_of(issuer2, "1"), "--token", token_of(issuer1, "1")}));
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(4); })) << "4 nodes did not converge";
  const std::vector<std::string> both{"issuer-1", "issuer-2"};
  EXPECT_EQ(endorsers_of(nodes_.at("node-1")), both);
  EXPECT_EQ(endorsers_of(nodes_.at("node-2")), both);
  auto c2 = certs_of(nodes_.at("node-2"));
  ASSERT_TRUE(c2);
  EXPECT_EQ(c2->at("admission_quorum"), 2);
  EXPECT_EQ(c2->at("issuers").at(0).at("uri"), "spiffe://q.mesh/node/issuer-2");
  auto text = st::run_cli({"certs", "--admin", nodes_.at("node-2").info.admin});
  EXPECT_NE(text.out.find("endorsed by  issuer-1, issuer-2"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("quorum       2 issuers must vouch for every node"), std::string::npos)
      << text.out;
  const auto first_cert = not_before_of(nodes_.at("node-2"));

  // One token is not enough: the issuer refuses before spending it (the joiner's own
  // config says quorum 1, so only the mesh can refuse it).
  const auto lone = token_of(issuer1, "1");
  auto err = expect_refused("lonely", {issuer1.info.gossip}, {"--token", lone});
  EXPECT_NE(err.find("quorum_not_met"), std::string::npos) << err;
  // ...and the token still admits once a second issuer vouches too.
  start("node-3", {issuer2.info.gossip},
        with_quorum({"--token", lone, "--token", token_of(issuer2, "1")}));
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(5); }));
  // Endorsements given, counted on each issuer: issuer-2 for node-1 (asked by issuer-1) and
  // for node-3 (as the seed itself), issuer-1 for node-2 (asked by node-1).
  EXPECT_EQ(certs_of(issuer1)->at("issuer").at("endorsed"), 1);
  EXPECT_EQ(certs_of(issuer2)->at("issuer").at("endorsed"), 2);

  // What a compromised issuer could make on its own: a certificate for a new node signed by
  // issuer-1 alone (with issuer-1's offline material), stored in a data dir. The node holds
  // the gossip key too, yet every handshake refuses it: it never becomes a member.
  auto material = si::load_issuer(dir1, std::chrono::system_clock::now());
  ASSERT_TRUE(material) << si::render(material.error());
  auto key = si::generate_key();
  ASSERT_TRUE(key);
  auto creds = si::self_issue(*material, "rogue", *key, std::chrono::system_clock::now());
  ASSERT_TRUE(creds) << si::render(creds.error());
  ASSERT_FALSE(si::store_node_credentials(data_dir("rogue"), *creds));
  err = expect_refused("rogue", {issuer1.info.gossip, via}, {"--gossip-key", key_});
  EXPECT_NE(err.find("could not join"), std::string::npos) << err;
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(5); }))
      << "the rogue node became a member";
  // Counted by reason where it knocked.
  auto seen = certs_of(issuer1);
  ASSERT_TRUE(seen);
  EXPECT_GE(seen->at("handshake_refusals").value("quorum_not_met", 0), 1) << seen->dump();

  // A restart needs no token: node-1's stored certificate still meets the quorum.
  ASSERT_TRUE(stop("node-1", SIGTERM));
  auto& again = start("node-1", {issuer1.info.gossip}, with_quorum({}));
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(endorsers_of(again), both);
  EXPECT_TRUE(st::poll_until(30s, [&] { return all_alive(5); })) << "node-1 did not rejoin";

  // Renewal by whichever issuer answers keeps both endorsements (they endorse the key, which
  // a renewal keeps), and the renewed nodes stay members.
  ASSERT_FALSE(first_cert.empty());
  ASSERT_TRUE(st::poll_until(60s, [&] {
    const auto now = not_before_of(nodes_.at("node-2"));
    return !now.empty() && now > first_cert; // ISO 8601 UTC: text order is time order
  })) << "node-2's certificate was not renewed";
  auto renewed = certs_of(nodes_.at("node-2"));
  ASSERT_TRUE(renewed);
  EXPECT_EQ(renewed->at("source").get<std::string>().rfind("renewed by", 0), 0u) << renewed->dump();
  EXPECT_EQ(endorsers_of(nodes_.at("node-2")), both);
  EXPECT_TRUE(st::poll_until(30s, [&] { return all_alive(5); })) << "a renewed node was dropped";
}

} // namespace
