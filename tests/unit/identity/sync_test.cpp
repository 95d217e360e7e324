// The revocation sync core (identity/sync.hpp), with the run-time test PKI: one periodic
// exchange at a time with a seeded random member (issuers every other time on an issuer),
// digests only when both sides agree, statements verified before they count, a push when the
// peer lacks some, a fresh revocation pushed to every alive member with its key withheld from
// handshakes until the revoked node was told, bans, the own key revoked, ledgers only on
// issuers and only with a seal for this node. Pure: no actor, no network, no clock.
#include <algorithm>
#include <string>
#include <vector>

#include <caf/sec.hpp>
#include <gtest/gtest.h>
#include <openssl/err.h>

#include "identity/admission.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/sync.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::test_pki;

sha256_digest key_of(const certificate& cert) { return must(spki_sha256(cert), "spki"); }

bool logged(const sync_effects& fx, log_level level, const std::string& part) {
  return std::any_of(fx.log.begin(), fx.log.end(), [&](const log_line& l) {
    return l.level == level && l.text.find(part) != std::string::npos;
  });
}

class identity_sync : public ::testing::Test {
protected:
  revocation revoke(const sha256_digest& key, const std::string& node) {
    return must(make_revocation(pki.material(pki.issuer()), key, node, now), "statement");
  }

  /// The log of a peer holding `stmts` (verified here).
  revocation_log log_of(const std::vector<revocation>& stmts) {
    revocation_log log;
    for (const auto& s : stmts)
      EXPECT_TRUE(must(log.add(s, pki.bundle(), now), "add"));
    return log;
  }

  /// What a peer holding `stmts` answers (statements when `with_statements`).
  std::string answer_of(const std::vector<revocation>& stmts, bool with_statements) {
    sync_message msg;
    auto log = log_of(stmts);
    msg.digest = log.digest();
    if (with_statements)
      msg.revocations = stmts;
    return must(encode_sync_response(msg), "encode");
  }

  test_pki pki;
  time_point now = pki.now();
  testing::test_node node3 = pki.node("node-3");
  testing::test_node own = pki.node("node-1");
  revocation_sync sync{"node-1", 7};
};

TEST_F(identity_sync, one_periodic_exchange_at_a_time_with_a_random_member) {
  EXPECT_TRUE(sync.start({}, key_of(own.leaf())).enforce);
  auto fx = sync.on_tick();
  EXPECT_TRUE(fx.list_members);
  EXPECT_TRUE(sync.in_flight());
  // While it runs, no second one.
  EXPECT_FALSE(sync.on_tick().list_members);
  fx = sync.on_members({"node-2", "node-3"}, {}, now);
  ASSERT_EQ(fx.send.size(), 1u);
  const auto& s = fx.send[0];
  EXPECT_TRUE(s.peer == "node-2" || s.peer == "node-3") << s.peer;
  EXPECT_TRUE(s.periodic);
  EXPECT_FALSE(s.ledger);
  // A periodic request carries the digest only.
  EXPECT_TRUE(s.msg.revocations.empty());
  ASSERT_TRUE(s.msg.digest);
  EXPECT_EQ(*s.msg.digest, revocation_log{}.digest());
  // The peer holds the same (nothing): in step, and the exchange is over.
  fx = sync.on_answer(s.peer, true, {}, answer_of({}, false), pki.bundle(), now);
  EXPECT_TRUE(fx.send.empty());
  EXPECT_FALSE(sync.in_flight());
  EXPECT_EQ(sync.counters().exchanges, 1u);
  EXPECT_EQ(sync.counters().in_step, 1u);
  // No member alive, or no member list: nothing sent, and the next tick tries again.
  EXPECT_TRUE(sync.on_tick().list_members);
  EXPECT_TRUE(sync.on_members({}, {}, now).send.empty());
  EXPECT_TRUE(sync.on_tick().list_members);
  fx = sync.on_no_members("timeout");
  EXPECT_TRUE(logged(fx, log_level::debug, "no member list: timeout"));
  EXPECT_FALSE(sync.in_flight());
}

TEST_F(identity_sync, the_peer_choice_is_seeded) {
  auto picks = [&](std::uint64_t seed) {
    revocation_sync s{"node-1", seed};
    std::vector<std::string> out;
    for (int i = 0; i < 8; ++i) {
      (void)s.on_tick();
      auto fx = s.on_members({"a", "b", "c", "d"}, {}, now);
      out.push_back(fx.send.at(0).peer);
      (void)s.on_answer(out.back(), true, {}, caf::make_error(caf::sec::request_timeout),
                        pki.bundle(), now);
    }
    return out;
  };
  EXPECT_EQ(picks(7), picks(7));
  EXPECT_NE(picks(7), picks(8));
}

TEST_F(identity_sync, an_issuer_talks_to_an_issuer_every_other_time_and_sends_its_ledger) {
  revocation_sync issuer{"issuer-1", 7, true};
  (void)issuer.start({}, std::nullopt);
  std::vector<std::string> peers;
  for (int i = 0; i < 6; ++i) {
    (void)issuer.on_tick();
    auto fx = issuer.on_members({"node-2", "node-3", "issuer-2"}, {"issuer-2"}, now);
    ASSERT_EQ(fx.send.size(), 1u);
    peers.push_back(fx.send[0].peer);
    EXPECT_EQ(fx.send[0].ledger, fx.send[0].peer == "issuer-2");
    (void)issuer.on_answer(fx.send[0].peer, true, {}, answer_of({}, false), pki.bundle(), now);
  }
  for (std::size_t i = 1; i < peers.size(); i += 2)
    EXPECT_EQ(peers[i], "issuer-2") << i;
}

TEST_F(identity_sync, statements_are_verified_learned_persisted_enforced_and_banned) {
  (void)sync.start({}, key_of(own.leaf()));
  const auto good = revoke(key_of(node3.leaf()), "node-3");
  auto forged = good;
  forged.node = "node-4"; // the signature no longer covers it
  sync_message req;
  req.revocations = {good, forged};
  auto fx = sync.on_request("node-2", req, pki.bundle(), now);
  EXPECT_TRUE(fx.persist);
  ASSERT_TRUE(fx.enforce);
  EXPECT_TRUE(fx.enforce->contains(key_of(node3.leaf())));
  EXPECT_EQ(fx.ban, (std::vector<std::string>{"node-3"}));
  EXPECT_EQ(fx.issuers, (std::vector<std::string>{"issuer-1"}));
  EXPECT_TRUE(logged(fx, log_level::warn, "of node 'node-3' revoked by issuer 'issuer-1'"));
  EXPECT_TRUE(logged(fx, log_level::debug, "dropped a revocation statement from node-2"));
  EXPECT_EQ(sync.counters().statements_learned, 1u);
  EXPECT_EQ(sync.counters().statements_refused, 1u);
  EXPECT_TRUE(sync.log().revokes(key_of(node3.leaf())));
  // The answer: the peer sent no digest, so it gets every statement; no ledger.
  ASSERT_TRUE(fx.reply);
  EXPECT_EQ(fx.reply->revocations, (std::vector<revocation>{good}));
  EXPECT_FALSE(fx.reply_ledger);
  // Known statements are not verified (nor logged) again; a peer that holds the same gets
  // the digest only.
  sync_message same;
  same.revocations = {good};
  same.digest = sync.log().digest();
  fx = sync.on_request("node-2", same, pki.bundle(), now);
  EXPECT_FALSE(fx.persist);
  EXPECT_TRUE(fx.ban.empty());
  ASSERT_TRUE(fx.reply);
  EXPECT_TRUE(fx.reply->revocations.empty());
  EXPECT_EQ(sync.counters().exchanges, 2u);
  // A statement revoking a CA key this node knows is refused.
  sync.add_ca_key(key_of(pki.issuer().cert));
  EXPECT_TRUE(sync.is_ca_key(key_of(pki.issuer().cert)));
}

TEST_F(identity_sync, a_peer_that_lacks_statements_gets_a_push_once) {
  const auto stmt = revoke(key_of(node3.leaf()), "node-3");
  (void)sync.start(log_of({stmt}), key_of(own.leaf()));
  (void)sync.on_tick();
  auto fx = sync.on_members({"node-2"}, {}, now);
  ASSERT_EQ(fx.send.size(), 1u);
  // node-2 holds nothing: its digest differs, and after taking its (no) statements ours
  // still differ: push every statement, not periodic.
  fx = sync.on_answer("node-2", true, {}, answer_of({}, true), pki.bundle(), now);
  ASSERT_EQ(fx.send.size(), 1u);
  EXPECT_FALSE(fx.send[0].periodic);
  EXPECT_EQ(fx.send[0].msg.revocations, (std::vector<revocation>{stmt}));
  EXPECT_EQ(sync.counters().pushes, 1u);
  // The push's answer never pushes again.
  fx = sync.on_answer("node-2", false, {}, answer_of({}, true), pki.bundle(), now);
  EXPECT_TRUE(fx.send.empty());
  // A peer that sent what we lacked: learned, and then in step.
  revocation_sync other{"node-5", 1};
  (void)other.start({}, std::nullopt);
  (void)other.on_tick();
  (void)other.on_members({"node-1"}, {}, now);
  fx = other.on_answer("node-1", true, {}, answer_of({stmt}, true), pki.bundle(), now);
  EXPECT_TRUE(fx.persist);
  EXPECT_TRUE(fx.send.empty());
  EXPECT_EQ(other.counters().statements_learned, 1u);
  // A failed exchange or an answer that is not a sync response: counted, nothing else.
  (void)other.on_tick();
  fx = other.on_answer("node-1", true, {}, encode_refusal(make_error(errc::bad_request, "no")),
                       pki.bundle(), now);
  EXPECT_TRUE(logged(fx, log_level::debug, "identity.bad_request: no"));
  EXPECT_EQ(other.counters().failures, 1u);
  EXPECT_FALSE(other.in_flight());
}

TEST_F(identity_sync, a_fresh_revocation_is_withheld_until_the_revoked_node_is_told) {
  revocation_sync issuer{"issuer-1", 7, true};
  (void)issuer.start({}, std::nullopt);
  const auto key3 = key_of(node3.leaf());
  const auto stmt = revoke(key3, "node-3");
  auto next = issuer.log();
  revocation_log::entry e{stmt, must(verify_revocation(stmt, pki.bundle(), now), "verify")};
  ASSERT_TRUE(next.insert(e));
  auto fx = issuer.revoked(std::move(next), {e}, "node-3");
  // Not enforced, not banned yet: node-3 must hear of it first.
  ASSERT_TRUE(fx.enforce);
  EXPECT_FALSE(fx.enforce->contains(key3));
  EXPECT_TRUE(fx.ban.empty());
  ASSERT_TRUE(fx.list_for_push);
  const auto q = *fx.list_for_push;
  fx = issuer.on_push_members(q, {"node-2", "node-3"}, {}, now);
  ASSERT_EQ(fx.send.size(), 2u);
  for (const auto& s : fx.send) {
    EXPECT_EQ(s.msg.revocations, (std::vector<revocation>{stmt})) << s.peer;
    EXPECT_EQ(s.release.empty(), s.peer != "node-3") << s.peer;
  }
  EXPECT_FALSE(fx.enforce);
  EXPECT_TRUE(logged(fx, log_level::info, "revocation of 'node-3' pushed to 2 member(s)"));
  // The push to node-3 is done (even if it failed): enforced and banned.
  fx = issuer.on_answer("node-3", false, {key3}, caf::make_error(caf::sec::request_timeout),
                        pki.bundle(), now);
  ASSERT_TRUE(fx.enforce);
  EXPECT_TRUE(fx.enforce->contains(key3));
  EXPECT_EQ(fx.ban, (std::vector<std::string>{"node-3"}));
  // node-3 not alive, or no member list: released at once.
  for (bool listed : {true, false}) {
    revocation_sync again{"issuer-1", 7, true};
    (void)again.start({}, std::nullopt);
    auto log = again.log();
    ASSERT_TRUE(log.insert(e));
    auto started = again.revoked(std::move(log), {e}, "node-3");
    fx = listed ? again.on_push_members(*started.list_for_push, {"node-2"}, {}, now)
                : again.on_push_no_members(*started.list_for_push, "timeout");
    ASSERT_TRUE(fx.enforce) << listed;
    EXPECT_TRUE(fx.enforce->contains(key3)) << listed;
    EXPECT_EQ(fx.ban, (std::vector<std::string>{"node-3"})) << listed;
  }
}

// Seen with real agents: a revocation written just before the issuer's first tick was
// banned by that tick's bans of the loaded log, before the push told the node, which then
// never heard of it and kept running.
TEST_F(identity_sync, the_first_tick_does_not_ban_a_node_whose_revocation_is_withheld) {
  revocation_sync issuer{"issuer-1", 7, true};
  (void)issuer.start({}, std::nullopt);
  const auto key3 = key_of(node3.leaf());
  const auto stmt = revoke(key3, "node-3");
  auto next = issuer.log();
  revocation_log::entry e{stmt, must(verify_revocation(stmt, pki.bundle(), now), "verify")};
  ASSERT_TRUE(next.insert(e));
  auto fx = issuer.revoked(std::move(next), {e}, "node-3");
  ASSERT_TRUE(fx.list_for_push);
  const auto q = *fx.list_for_push;
  fx = issuer.on_tick();
  EXPECT_TRUE(fx.ban.empty());
  // Banned once the push is done (here: node-3 is not listed, so at once).
  fx = issuer.on_push_members(q, {"node-2"}, {}, now);
  EXPECT_EQ(fx.ban, (std::vector<std::string>{"node-3"}));
}

TEST_F(identity_sync, the_own_key_revoked_stops_the_node) {
  const auto stmt = revoke(key_of(own.leaf()), "node-1");
  // Found at start.
  revocation_sync at_start{"node-1", 7};
  auto fx = at_start.start(log_of({stmt}), key_of(own.leaf()));
  ASSERT_TRUE(fx.stop);
  EXPECT_NE(fx.stop->find("was revoked by issuer 'issuer-1'"), std::string::npos) << *fx.stop;
  EXPECT_TRUE(at_start.own_key_revoked());
  EXPECT_FALSE(at_start.on_tick().list_members);
  // Learned from a peer: stop once, never ban itself.
  (void)sync.start({}, key_of(own.leaf()));
  sync_message req;
  req.revocations = {stmt};
  fx = sync.on_request("node-2", req, pki.bundle(), now);
  ASSERT_TRUE(fx.stop);
  EXPECT_TRUE(fx.ban.empty());
  EXPECT_FALSE(sync.on_request("node-2", req, pki.bundle(), now).stop);
  // The bans of statements loaded at start go out at the first tick, not for itself.
  revocation_sync loaded{"node-1", 7};
  (void)loaded.start(log_of({revoke(key_of(node3.leaf()), "node-3"), stmt}), std::nullopt);
  EXPECT_EQ(loaded.on_tick().ban, (std::vector<std::string>{"node-3"}));
  EXPECT_TRUE(loaded.on_tick().ban.empty());
}

TEST_F(identity_sync, ledgers_count_only_on_issuers_and_only_sealed_for_this_node) {
  auto store = must(token_store::make("issuer-2"), "store");
  sync_message msg;
  msg.ledger = store.ledger();
  // Not an issuer: ignored.
  auto fx = sync.on_request("issuer-2", msg, pki.bundle(), now);
  EXPECT_FALSE(fx.merge);
  EXPECT_FALSE(fx.reply_ledger);
  EXPECT_TRUE(logged(fx, log_level::debug, "this node is no issuer"));
  // An issuer: a ledger without a valid seal for it is refused.
  revocation_sync issuer{"issuer-1", 7, true};
  fx = issuer.on_request("issuer-2", msg, pki.bundle(), now);
  EXPECT_FALSE(fx.merge);
  EXPECT_FALSE(fx.reply_ledger);
  EXPECT_EQ(issuer.counters().ledgers_refused, 1u);
  // Sealed by issuer-2 for issuer-1: merged by the owner, and issuer-2 gets the ledger back.
  auto second = pki.make_issuer("issuer-2", now - 1h);
  msg.ledger_seal =
      must(sign_ledger(pki.material(second), *msg.ledger, {}, "issuer-1", now), "seal");
  fx = issuer.on_request("issuer-2", msg, pki.bundle(), now);
  ASSERT_TRUE(fx.merge);
  EXPECT_EQ(fx.merge->issuer, "issuer-2");
  EXPECT_TRUE(fx.reply_ledger);
  fx = issuer.on_ledger_merged("issuer-2", std::size_t{2});
  EXPECT_EQ(issuer.counters().ledgers_merged, 1u);
  EXPECT_EQ(issuer.counters().records_refused, 2u);
  EXPECT_TRUE(logged(fx, log_level::warn, "dropped 2 token record(s) from issuer-2's ledger"));
  fx = issuer.on_ledger_merged("issuer-2", make_error(errc::io_failure, "disk full"));
  EXPECT_TRUE(logged(fx, log_level::error, "cannot persist the token ledger merged from issuer-2"));
  EXPECT_EQ(issuer.counters().ledgers_merged, 1u);
}

} // namespace
} // namespace starling::identity
