// The identity channel's anti-entropy with real processes on 127.0.0.1 (port 0):
// `starling revoke` on an issuer spreads a signed statement to every member (each lists it
// in `starling certs`), the revoked node learns it and exits 1, the others stop seeing it
// alive, a restarted node still holds the revocation (persisted), and a revoked node cannot
// start again. And the issuers' token ledger: a second issuer learns the first one's
// tokens and spends, so once the first is gone it redeems them itself (a spent token is
// refused as exhausted, an unspent one admits). Every wait polls with a deadline.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

class revocation_test : public st::mesh_test {
protected:
  revocation_test() : mesh_test("starling-it-revocation") {}

  /// The revocations `n` lists, or an empty array if it does not answer.
  static nlohmann::json revocations_of(const node& n) {
    auto certs = certs_of(n);
    return certs && certs->contains("revocations") ? certs->at("revocations")
                                                   : nlohmann::json::array();
  }

  /// True if `n` lists the revocation of `key` (sha256:<hex>) of `node_name` by `issuer`.
  static bool lists(const node& n, const std::string& node_name, const std::string& key,
                    const std::string& issuer) {
    for (const auto& r : revocations_of(n))
      if (r.at("node") == node_name && r.at("key") == key && r.at("issuer") == issuer &&
          r.at("revoked_at").is_string())
        return true;
    return false;
  }

  /// The state `n` reports for member `name` ("" if it does not list it).
  static std::string state_of(const node& n, const std::string& name) {
    auto view = st::members_view(n.info.admin);
    if (!view)
      return "";
    for (const auto& m : view->at("members"))
      if (m.at("name") == name)
        return m.at("state").get<std::string>();
    return "";
  }

  /// The issuer's counters in `n`'s certs view (null if none).
  static nlohmann::json issuer_counters(const node& n) {
    auto certs = certs_of(n);
    return certs && certs->contains("issuer") ? certs->at("issuer") : nlohmann::json{};
  }
};

TEST_F(revocation_test, a_revocation_reaches_every_node_and_survives_a_restart) {
  const auto ca = make_root("it.mesh", "ca");
  auto& issuer = start("issuer-1", {},
                       {"--issuer", make_issuer(ca, "issuer-1").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  const auto token = token_of(issuer, "3");
  for (const auto* name : {"node-1", "node-2", "node-3"})
    start(name, {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(4); })) << "4 nodes did not converge";
  auto certs3 = certs_of(nodes_.at("node-3"));
  ASSERT_TRUE(certs3);
  const auto key3 = "sha256:" + certs3->at("certificate").at("spki_sha256").get<std::string>();

  // Refusals first: usage (2), and what an issuer will not do (1).
  EXPECT_EQ(st::run_cli({"revoke", "--admin", issuer.info.admin}).exit_code, 2);
  EXPECT_EQ(st::run_cli({"revoke", "node-3", "--key", "sha256:xyz", "--admin", issuer.info.admin})
                .exit_code,
            2);
  auto res = st::run_cli({"revoke", "node-3", "--admin", nodes_.at("node-1").info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("not an issuer"), std::string::npos) << res.err;
  res = st::run_cli({"revoke", "ghost", "--admin", issuer.info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("has not issued a certificate to ghost"), std::string::npos) << res.err;
  res = st::run_cli({"revoke", "issuer-1", "--admin", issuer.info.admin});
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("itself"), std::string::npos) << res.err;
  EXPECT_TRUE(revocations_of(issuer).empty());

  // Revoke node-3: every key this issuer signed for it, i.e. its one key.
  res = st::run_cli({"revoke", "node-3", "--admin", issuer.info.admin});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  EXPECT_NE(res.out.find("revoked " + key3), std::string::npos) << res.out;

  // Every other node lists it, signed by issuer-1.
  for (const auto* name : {"issuer-1", "node-1", "node-2"})
    EXPECT_TRUE(
        st::poll_until(20s, [&] { return lists(nodes_.at(name), "node-3", key3, "issuer-1"); }))
        << name << " does not list the revocation: " << revocations_of(nodes_.at(name)).dump();
  // node-3 learned that its own key is revoked, and stopped with exit code 1.
  auto code = nodes_.at("node-3").proc->wait(20s);
  ASSERT_TRUE(code) << "node-3 still runs although its key is revoked";
  EXPECT_EQ(*code, 1);
  procs_.remove(*nodes_.at("node-3").proc);
  nodes_.erase("node-3");
  // ... and nobody sees it alive any more.
  for (const auto* name : {"issuer-1", "node-1", "node-2"})
    EXPECT_TRUE(st::poll_until(20s, [&] { return state_of(nodes_.at(name), "node-3") != "alive"; }))
        << name << " still sees node-3 alive";
  // Statements travel through everyone; none was refused. Once all hold the same
  // statements, periodic syncs carry only digests.
  for (const auto& node : nodes_) { // not a structured binding: clang 14 cannot capture one
    const auto& name = node.first;
    const auto& n = node.second;
    auto c = certs_of(n);
    ASSERT_TRUE(c) << name;
    EXPECT_EQ(c->at("sync").at("statements_refused"), 0) << name << ": " << c->dump();
    const auto before = c->at("sync").at("in_step").get<long>();
    EXPECT_TRUE(st::poll_until(20s,
                               [&] {
                                 auto now = certs_of(n);
                                 return now && now->at("sync").at("in_step").get<long>() > before;
                               }))
        << name << ": no periodic sync found the peer in step";
  }
  // Revoking again is no error.
  res = st::run_cli({"revoke", "node-3", "--admin", issuer.info.admin});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  EXPECT_NE(res.out.find("already revoked"), std::string::npos) << res.out;

  // A restarted node still holds the revocation (persisted in its data dir) ...
  ASSERT_TRUE(stop("node-1", SIGTERM));
  auto& again = start("node-1", {issuer.info.gossip}, {});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(lists(again, "node-3", key3, "issuer-1")) << revocations_of(again).dump();
  EXPECT_TRUE(st::poll_until(30s, [&] {
    return state_of(issuer, "node-1") == "alive" && state_of(again, "node-2") == "alive" &&
           state_of(again, "node-3") != "alive";
  })) << "node-1 did not rejoin";
  // ... and the revoked node cannot start again with its stored certificate.
  auto argv = argv_of("node-3", {issuer.info.gossip}, {});
  argv.erase(argv.begin());
  auto refused = st::run_cli(argv, 30s);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_NE(refused.err.find("revoked by issuer 'issuer-1'"), std::string::npos) << refused.err;
}

TEST_F(revocation_test, a_second_issuer_learns_the_first_issuers_token_ledger) {
  const auto ca = make_root("it.mesh", "ca");
  auto& first = start("issuer-1", {},
                      {"--issuer", make_issuer(ca, "issuer-1").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  auto& second = start("issuer-2", {first.info.gossip},
                       {"--issuer", make_issuer(ca, "issuer-2").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(2); }));

  // A one-use token spent on issuer-1, and one left unspent.
  const auto spent = token_of(first, "1");
  const auto unspent = token_of(first, "1");
  start("node-1", {first.info.gossip}, {"--token", spent});
  ASSERT_FALSE(HasFailure());
  // issuer-2 learns both records and the spend by anti-entropy.
  EXPECT_TRUE(st::poll_until(30s, [&] {
    auto c = issuer_counters(second);
    return c.is_object() && c.at("known_tokens") == 2 && c.at("active_tokens") == 1;
  })) << issuer_counters(second).dump();
  auto c2 = certs_of(second);
  ASSERT_TRUE(c2);
  EXPECT_GT(c2->at("sync").at("ledgers_merged").get<int>(), 0) << c2->dump();
  EXPECT_EQ(c2->at("sync").at("ledgers_refused"), 0) << c2->dump();
  // A node that is no issuer never merges a ledger.
  auto c1 = certs_of(nodes_.at("node-1"));
  ASSERT_TRUE(c1);
  EXPECT_EQ(c1->at("sync").at("ledgers_merged"), 0) << c1->dump();

  // With issuer-1 gone, issuer-2 redeems issuer-1's tokens itself, from the learned ledger.
  ASSERT_TRUE(stop("issuer-1", SIGTERM));
  EXPECT_TRUE(st::poll_until(20s, [&] { return state_of(second, "issuer-1") != "alive"; }));
  auto err = expect_refused("node-2", {second.info.gossip}, {"--token", spent});
  EXPECT_NE(err.find("token_exhausted"), std::string::npos) << err;
  start("node-3", {second.info.gossip}, {"--token", unspent});
  ASSERT_FALSE(HasFailure());
  auto c3 = certs_of(nodes_.at("node-3"));
  ASSERT_TRUE(c3);
  EXPECT_EQ(c3->at("issuers").at(0).at("uri"), "spiffe://it.mesh/node/issuer-2");
}

} // namespace
