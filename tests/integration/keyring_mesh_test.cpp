// The gossip keyring rotated for the whole mesh from one issuer, with real processes on
// 127.0.0.1 (port 0), docs/decisions/0010: `starling keyring install|use|remove` on an
// issuer reaches every alive member over the identity channel (mutual TLS), the mesh stays
// converged through the rotation, a node admitted afterwards gets the new keyring, a member
// that refuses is reported, and a node that is no issuer may only change its own keyring
// (--local). Every wait polls with a deadline.
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

class keyring_mesh_test : public st::mesh_test {
protected:
  keyring_mesh_test() : mesh_test("starling-it-keyring-mesh") {}

  /// `starling keyring list --json` of `n`.
  static nlohmann::json keyring_of(const node& n) {
    auto res = st::run_cli({"keyring", "list", "--json", "--admin", n.info.admin});
    EXPECT_EQ(res.exit_code, 0) << res.err;
    auto doc = nlohmann::json::parse(res.out, nullptr, false);
    EXPECT_FALSE(doc.is_discarded()) << res.out;
    return doc;
  }

  /// The key ids `n` holds.
  static std::set<std::string> ids_of(const node& n) {
    std::set<std::string> out;
    auto doc = keyring_of(n);
    if (doc.is_object() && doc.contains("keys"))
      for (const auto& k : doc["keys"])
        out.insert(k.at("id").get<std::string>());
    return out;
  }

  /// A fresh gossip key (`starling keyring generate`).
  static std::string new_key() { return cli_line({"keyring", "generate"}); }

  /// Every running node holds exactly `ids` with `primary` as the primary.
  bool every_node_holds(const std::set<std::string>& ids, const std::string& primary) const {
    for (const auto& [name, n] : nodes_) {
      auto doc = keyring_of(n);
      if (ids_of(n) != ids || doc.value("primary", std::string{}) != primary)
        return false;
    }
    return true;
  }
};

TEST_F(keyring_mesh_test, an_issuer_rotates_the_key_of_every_member_without_a_restart) {
  const auto ca = make_root("k.mesh", "ca");
  auto& issuer = start("issuer-1", {},
                       {"--issuer", make_issuer(ca, "issuer-1").string(), "--gossip-key", key_});
  ASSERT_FALSE(HasFailure());
  const auto token = token_of(issuer, "2");
  start("node-1", {issuer.info.gossip}, {"--token", token});
  start("node-2", {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(st::poll_until(30s, [&] { return all_alive(3); }));
  const auto old_id = keyring_of(issuer).at("primary").get<std::string>();
  ASSERT_TRUE(every_node_holds({old_id}, old_id));

  // install, use, remove: each one command on the issuer, answered for every member.
  const auto fresh = new_key();
  auto res = st::run_cli({"keyring", "install", fresh, "--admin", issuer.info.admin}, 40s);
  ASSERT_EQ(res.exit_code, 0) << res.out << res.err;
  EXPECT_NE(res.out.find("on 3 of 3 alive members"), std::string::npos) << res.out;
  const auto fresh_id = res.out.substr(std::string{"installed key "}.size(), 16);
  EXPECT_TRUE(every_node_holds({old_id, fresh_id}, old_id));
  res = st::run_cli({"keyring", "use", fresh_id, "--admin", issuer.info.admin}, 40s);
  ASSERT_EQ(res.exit_code, 0) << res.out << res.err;
  EXPECT_TRUE(every_node_holds({old_id, fresh_id}, fresh_id));
  res = st::run_cli({"keyring", "remove", old_id, "--admin", issuer.info.admin}, 40s);
  ASSERT_EQ(res.exit_code, 0) << res.out << res.err;
  EXPECT_TRUE(every_node_holds({fresh_id}, fresh_id));

  // The mesh never stopped understanding itself: still converged, gossip flows under the
  // new key, nothing was refused for an unknown key.
  for (const auto& [name, n] : nodes_) {
    auto doc = keyring_of(n);
    EXPECT_EQ(doc.at("counters").at("unknown_key"), 0) << name << ": " << doc.dump();
  }
  const auto opened = keyring_of(nodes_.at("node-2")).at("counters").at("opened").get<long>();
  ASSERT_TRUE(st::poll_until(10s, [&] {
    return keyring_of(nodes_.at("node-2")).at("counters").at("opened").get<long>() > opened + 5;
  }));
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));

  // A node admitted now gets the new keyring with its certificate.
  auto& late =
      start("node-3", {nodes_.at("node-1").info.gossip}, {"--token", token_of(issuer, "1")});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ids_of(late), (std::set<std::string>{fresh_id}));
  EXPECT_TRUE(st::poll_until(30s, [&] { return all_alive(4); }));

  // A member that refuses is reported, and the command fails: a key only the issuer holds
  // cannot be removed from the others.
  const auto local_only = new_key();
  res = st::run_cli({"keyring", "install", local_only, "--local", "--admin", issuer.info.admin});
  ASSERT_EQ(res.exit_code, 0) << res.err;
  res = st::run_cli({"keyring", "remove", local_only, "--admin", issuer.info.admin}, 40s);
  EXPECT_EQ(res.exit_code, 1) << res.out << res.err;
  EXPECT_NE(res.out.find("on 1 of 4 alive members"), std::string::npos) << res.out;
  EXPECT_NE(res.err.find("keyring remove on node-1 refused:"), std::string::npos) << res.err;
  EXPECT_NE(res.err.find("is not installed"), std::string::npos) << res.err;

  // A node that is no issuer changes only its own keyring, and only when told --local.
  const auto& member = nodes_.at("node-1");
  res = st::run_cli({"keyring", "install", new_key(), "--admin", member.info.admin}, 40s);
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_NE(res.err.find("only an issuer changes the keyring of the whole mesh"), std::string::npos)
      << res.err;
  res = st::run_cli({"keyring", "install", new_key(), "--local", "--admin", member.info.admin});
  EXPECT_EQ(res.exit_code, 0) << res.err;
  EXPECT_EQ(ids_of(member).size(), 2u);
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(4); }));
}

} // namespace
