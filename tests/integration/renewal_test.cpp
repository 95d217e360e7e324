// Renewal of node certificates with real processes on 127.0.0.1 (port 0): an issuer that
// signs 45 s certificates (--cert-ttl) and two nodes admitted by token. Each node's
// certificate, and the issuer's own, is renewed at 2/3 of its life for the same key and
// hot-swapped: past the first certificates' expiry the members still see each other alive,
// the identity sync (mutual TLS on the gossip port) still completes, and a new node is still
// admitted. Every wait polls with a deadline.
#include <algorithm>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/mesh_test.hpp"

namespace st = starling::testing;
using namespace std::chrono_literals;

namespace {

class renewal_test : public st::mesh_test {
protected:
  renewal_test() : mesh_test("starling-it-renewal") {}

  /// What `starling certs --json` of `n` says about its own certificate (null if no answer).
  static nlohmann::json certificate_of(const node& n) {
    auto certs = certs_of(n);
    return certs ? certs->at("certificate") : nlohmann::json{};
  }

  /// Completed identity syncs of `n` (-1 if it does not answer).
  static long exchanges_of(const node& n) {
    auto certs = certs_of(n);
    return certs ? certs->at("sync").at("exchanges").get<long>() : -1;
  }
};

TEST_F(renewal_test, certificates_are_renewed_and_hot_swapped_before_they_expire) {
  const auto ca = make_root("it.mesh", "ca");
  auto& issuer = start("issuer-1", {},
                       {"--issuer", make_issuer(ca, "issuer-1").string(), "--gossip-key", key_,
                        "--cert-ttl", "45s"});
  ASSERT_FALSE(HasFailure());
  const auto token = token_of(issuer, "3", "10m");
  start("node-1", {issuer.info.gossip}, {"--token", token});
  start("node-2", {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());

  // The first certificates: 45 s, and when the last of them expires.
  std::map<std::string, nlohmann::json> first;
  auto expiry = st::test_clock::now();
  for (const auto& [name, n] : nodes_) {
    first[name] = certificate_of(n);
    ASSERT_TRUE(first[name].is_object()) << name;
    const auto left = first[name].at("expires_in_seconds").get<long>();
    EXPECT_LE(left, 45) << name << ": " << first[name].dump();
    expiry = std::max(expiry, st::test_clock::now() + std::chrono::seconds{left});
  }
  ASSERT_TRUE(st::poll_until(20s, [&] { return all_alive(3); })) << "3 nodes did not converge";

  // Each one is renewed (at 2/3 of its life, about 30 s), for the same key.
  auto renewed = [&](const std::string& name) {
    auto now = certificate_of(nodes_.at(name));
    return now.is_object() &&
           now.at("not_after").get<std::string>() > first[name].at("not_after").get<std::string>();
  };
  // Not structured bindings: clang 14 cannot capture one in a lambda.
  for (const auto& node : nodes_) {
    const auto& name = node.first;
    const auto& n = node.second;
    EXPECT_TRUE(st::poll_until(60s, [&] { return renewed(name); }))
        << name << " was not renewed: " << certificate_of(n).dump();
    EXPECT_EQ(certificate_of(n).at("spki_sha256"), first[name].at("spki_sha256")) << name;
  }
  ASSERT_FALSE(HasFailure());

  // Past the first certificates' expiry: still alive everywhere, and the identity sync
  // (a fresh mutual TLS handshake each time) still completes on every node.
  ASSERT_TRUE(st::poll_until(60s, [&] { return st::test_clock::now() > expiry + 2s; }));
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(3); }));
  std::map<std::string, long> before;
  for (const auto& [name, n] : nodes_)
    before[name] = exchanges_of(n);
  for (const auto& node : nodes_) {
    const auto& name = node.first;
    const auto& n = node.second;
    EXPECT_TRUE(st::poll_until(20s, [&] { return exchanges_of(n) >= before[name] + 2; }))
        << name << " completes no identity sync any more: " << certs_of(n)->dump();
  }
  // New handshakes with the issuer present its renewed certificate: a new node is admitted.
  start("node-3", {issuer.info.gossip}, {"--token", token});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(st::poll_until(20s, [&] { return all_alive(4); })) << "node-3 did not join";
}

} // namespace
