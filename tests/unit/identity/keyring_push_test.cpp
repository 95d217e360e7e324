// The mesh-wide keyring push and the rotation after a revocation (identity/keyring_push.hpp),
// with the run-time test PKI: every alive member but this node and the excluded ones told,
// each with a change signed for it alone; the report only once every member answered,
// including a refusing member, one that answers for another key or with garbage, and one
// that never answers (until its connection fails); and the rotation's three steps, a step
// that misses members (tried again at those still alive, a bounded number of times), a
// step refused here, a rotation asked for meanwhile.
// Pure: no actor, no network, no clock.
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "identity/authority.hpp"
#include "identity/channel.hpp"
#include "identity/keyring_push.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using testing::must;
using testing::test_pki;

const std::string key_a = "0123456789abcdef";

class keyring_push_test : public ::testing::Test {
protected:
  /// The change a send carries, checked as its receiver checks it.
  keyring_change received(const keyring_send& send) {
    auto req = must(decode_identity_request(send.request), "request");
    EXPECT_TRUE(std::holds_alternative<keyring_change>(req));
    auto change = std::get<keyring_change>(req);
    EXPECT_TRUE(
        verify_keyring_change(change.op, change.key, change.seal, send.node, pki_.bundle(), now_))
        << "signed for " << send.node;
    return change;
  }

  static std::vector<std::string> nodes_of(const std::vector<keyring_send>& sends) {
    std::vector<std::string> out;
    for (const auto& s : sends)
      out.push_back(s.node);
    return out;
  }

  test_pki pki_;
  time_point now_ = pki_.now();
  issuer_material signer_ = pki_.material(pki_.issuer());
  keyring_pushes pushes_{"issuer-1"};
};

TEST_F(keyring_push_test, every_alive_member_is_told_with_a_change_signed_for_it) {
  const auto push = pushes_.start("use", key_a, key_a, {"node-3"});
  EXPECT_EQ(pushes_.pending(), 1u);
  auto fx = pushes_.on_members(push, {"node-2", "issuer-1", "node-3", "node-4"}, signer_, now_);
  EXPECT_EQ(nodes_of(fx.send), (std::vector<std::string>{"node-2", "node-4"}))
      << "never this node, never the excluded";
  EXPECT_TRUE(fx.finished.empty());
  for (const auto& s : fx.send) {
    EXPECT_EQ(s.push, push);
    auto change = received(s);
    EXPECT_EQ(change.op, "use");
    EXPECT_EQ(change.key, key_a);
    // Signed for its receiver: no other member accepts it.
    EXPECT_FALSE(verify_keyring_change(change.op, change.key, change.seal,
                                       s.node == "node-2" ? "node-4" : "node-2", pki_.bundle(),
                                       now_));
  }
  EXPECT_TRUE(pushes_.on_answer(push, "node-4", encode_keyring_answer(key_a)).finished.empty());
  fx = pushes_.on_answer(push, "node-2", encode_keyring_answer(key_a));
  ASSERT_EQ(fx.finished.size(), 1u);
  const auto& report = fx.finished[0];
  EXPECT_EQ(report.push, push);
  EXPECT_EQ(report.op, "use");
  EXPECT_EQ(report.id, key_a);
  EXPECT_EQ(report.members,
            (std::vector<keyring_member_result>{{"issuer-1", ""}, {"node-2", ""}, {"node-4", ""}}));
  EXPECT_EQ(report.done(), 3u);
  EXPECT_EQ(pushes_.pending(), 0u);
  EXPECT_FALSE(fx.step) << "no rotation";
}

TEST_F(keyring_push_test, a_refusing_member_is_reported_and_the_push_still_ends) {
  const auto push = pushes_.start("remove", key_a, key_a, {});
  auto fx = pushes_.on_members(push, {"node-2", "node-3", "node-4", "node-5"}, signer_, now_);
  ASSERT_EQ(fx.send.size(), 4u);
  EXPECT_TRUE(pushes_.on_answer(push, "node-2", encode_keyring_answer(key_a)).finished.empty());
  // node-3 refuses (a hostile member, or it cannot remove its primary key).
  EXPECT_TRUE(
      pushes_.on_failure(push, "node-3", "identity.keyring_refused: primary").finished.empty());
  // node-4 answers for another key; node-5 with garbage.
  EXPECT_TRUE(pushes_.on_answer(push, "node-4", encode_keyring_answer("fedcba9876543210"))
                  .finished.empty());
  fx = pushes_.on_answer(push, "node-5", "garbage");
  ASSERT_EQ(fx.finished.size(), 1u);
  const auto& m = fx.finished[0].members;
  ASSERT_EQ(m.size(), 5u);
  EXPECT_TRUE(m[1].ok());
  EXPECT_EQ(m[2], (keyring_member_result{"node-3", "identity.keyring_refused: primary"}));
  EXPECT_EQ(m[3].error, "answered for key fedcba9876543210, not " + key_a);
  EXPECT_FALSE(m[4].ok());
  EXPECT_FALSE(m[4].error->empty());
  EXPECT_EQ(fx.finished[0].done(), 2u);
  ASSERT_FALSE(fx.log.empty());
  EXPECT_EQ(fx.log.back().text, "keyring remove of key " + key_a + ": 2 of 5 alive members");
}

TEST_F(keyring_push_test, a_member_that_never_answers_holds_the_report_until_its_connection_fails) {
  const auto push = pushes_.start("use", key_a, key_a, {});
  ASSERT_EQ(pushes_.on_members(push, {"node-2", "node-3"}, signer_, now_).send.size(), 2u);
  EXPECT_TRUE(pushes_.on_answer(push, "node-2", encode_keyring_answer(key_a)).finished.empty());
  // Answers from members not told, a second answer, and other pushes change nothing.
  EXPECT_TRUE(pushes_.on_answer(push, "node-9", encode_keyring_answer(key_a)).finished.empty());
  EXPECT_TRUE(pushes_.on_failure(push, "node-2", "late").finished.empty());
  const auto other = pushes_.start("install", "secret", key_a, {});
  auto fx = pushes_.on_members(other, {}, signer_, now_);
  ASSERT_EQ(fx.finished.size(), 1u) << "nobody to tell: reported at once";
  EXPECT_EQ(fx.finished[0].push, other);
  EXPECT_EQ(pushes_.pending(), 1u) << "node-3 has not answered";
  // The transport gives up on node-3 (its tcp_timeout): now the push ends.
  fx = pushes_.on_failure(push, "node-3", "gossip.timeout: no answer in 10s");
  ASSERT_EQ(fx.finished.size(), 1u);
  EXPECT_EQ(fx.finished[0].members[1], (keyring_member_result{"node-2", ""}));
  EXPECT_EQ(fx.finished[0].members[2].error, "gossip.timeout: no answer in 10s");
  EXPECT_EQ(pushes_.pending(), 0u);
}

TEST_F(keyring_push_test, without_a_member_list_only_this_node_is_reported) {
  const auto push = pushes_.start("use", key_a, key_a, {});
  EXPECT_TRUE(pushes_.on_answer(push, "node-2", encode_keyring_answer(key_a)).finished.empty());
  auto fx = pushes_.on_no_members(push);
  ASSERT_EQ(fx.finished.size(), 1u);
  EXPECT_EQ(fx.finished[0].members, (std::vector<keyring_member_result>{{"issuer-1", ""}}));
  EXPECT_TRUE(pushes_.on_no_members(push).finished.empty());
  EXPECT_TRUE(pushes_.on_members(push, {"node-2"}, signer_, now_).send.empty());
}

// -- the rotation after a revocation --------------------------------------------------------

/// Runs `step` as the owner does (applied here with key id `id`, then pushed to `alive`),
/// every member answering `answer(node)` (empty: applied). Returns the effects of the last
/// answer.
keyring_effects run_step(keyring_pushes& pushes, const rotation_step& step, const std::string& id,
                         const std::vector<std::string>& alive, const issuer_material& signer,
                         time_point now, const std::set<std::string>& refusing = {}) {
  const auto push = pushes.start(step.op, step.arg, id, step.exclude, true);
  auto fx = pushes.on_members(push, alive, signer, now);
  keyring_effects last = std::move(fx);
  for (const auto& s : std::vector<keyring_send>(last.send)) {
    last = refusing.contains(s.node) ? pushes.on_failure(push, s.node, "refused")
                                     : pushes.on_answer(push, s.node, encode_keyring_answer(id));
  }
  return last;
}

TEST_F(keyring_push_test, a_rotation_installs_uses_then_removes_never_telling_the_revoked) {
  const std::string new_id = "1111111111111111";
  auto fx = pushes_.rotate({"node-3"}, "NEWKEY", new_id, key_a);
  EXPECT_TRUE(pushes_.rotating());
  ASSERT_TRUE(fx.step);
  EXPECT_EQ(*fx.step, (rotation_step{"install", "NEWKEY", {"node-3"}}));
  const std::vector<std::string> alive{"issuer-1", "node-2", "node-3", "node-4"};
  // Each step starts only once the one before was answered by every member.
  const auto push = pushes_.start(fx.step->op, fx.step->arg, new_id, fx.step->exclude, true);
  auto sent = pushes_.on_members(push, alive, signer_, now_);
  EXPECT_EQ(nodes_of(sent.send), (std::vector<std::string>{"node-2", "node-4"}));
  EXPECT_FALSE(sent.step);
  EXPECT_FALSE(pushes_.on_answer(push, "node-2", encode_keyring_answer(new_id)).step);
  fx = pushes_.on_answer(push, "node-4", encode_keyring_answer(new_id));
  ASSERT_TRUE(fx.step);
  EXPECT_EQ(*fx.step, (rotation_step{"use", new_id, {"node-3"}}));
  // A step that misses a member is tried again at it (with the members alive then), up to
  // max_rotation_attempts in all; then it goes on (the member must be given the key).
  fx = run_step(pushes_, *fx.step, new_id, alive, signer_, now_, {"node-4"});
  EXPECT_FALSE(fx.step);
  ASSERT_TRUE(fx.retry);
  const auto use_push = fx.retry->push;
  for (int attempt = 2; attempt <= max_rotation_attempts; ++attempt) {
    ASSERT_TRUE(fx.retry) << "attempt " << attempt;
    EXPECT_EQ(fx.retry->delay, rotation_retry_delay * (1 << (attempt - 2)));
    EXPECT_TRUE(pushes_.on_retry(use_push + 1, alive, signer_, now_).send.empty())
        << "no such push";
    auto again = pushes_.on_retry(use_push, alive, signer_, now_);
    EXPECT_EQ(nodes_of(again.send), (std::vector<std::string>{"node-4"})) << "only the missed";
    EXPECT_EQ(received(again.send.at(0)).op, "use");
    EXPECT_TRUE(pushes_.on_retry(use_push, alive, signer_, now_).send.empty()) << "once per wait";
    fx = pushes_.on_failure(use_push, "node-4", "refused");
  }
  EXPECT_FALSE(fx.retry);
  ASSERT_TRUE(fx.step);
  EXPECT_EQ(*fx.step, (rotation_step{"remove", key_a, {"node-3"}}));
  EXPECT_TRUE(std::any_of(fx.log.begin(), fx.log.end(), [](const log_line& l) {
    return l.level == log_level::warn && l.text.find("use reached 2 of 3") != std::string::npos;
  }));
  EXPECT_EQ(pushes_.rotations(), 0u);
  fx = run_step(pushes_, *fx.step, key_a, alive, signer_, now_);
  EXPECT_FALSE(fx.step);
  EXPECT_FALSE(pushes_.rotating());
  EXPECT_EQ(pushes_.rotations(), 1u);
  EXPECT_TRUE(fx.rotate_again.empty());
}

TEST_F(keyring_push_test, a_member_a_rotation_step_missed_gets_it_on_a_retry_if_still_alive) {
  const std::string new_id = "1111111111111111";
  auto fx = pushes_.rotate({"node-3"}, "NEWKEY", new_id, key_a);
  ASSERT_TRUE(fx.step);
  const auto push = pushes_.start(fx.step->op, fx.step->arg, new_id, fx.step->exclude, true);
  auto sent = pushes_.on_members(push, {"node-2", "node-4", "node-5"}, signer_, now_);
  ASSERT_EQ(sent.send.size(), 3u);
  // node-2 applies it; node-4's connection fails (a slow member); node-5 too.
  EXPECT_FALSE(pushes_.on_answer(push, "node-2", encode_keyring_answer(new_id)).retry);
  EXPECT_FALSE(pushes_.on_failure(push, "node-4", "timeout").retry);
  fx = pushes_.on_failure(push, "node-5", "unreachable");
  ASSERT_TRUE(fx.retry);
  EXPECT_EQ(fx.retry->push, push);
  EXPECT_EQ(fx.retry->delay, rotation_retry_delay);
  EXPECT_TRUE(fx.finished.empty()) << "the step is not over";
  EXPECT_EQ(pushes_.pending(), 1u);
  EXPECT_TRUE(std::any_of(fx.log.begin(), fx.log.end(), [](const log_line& l) {
    return l.text.find("install missed node-4 (timeout), node-5 (unreachable)") !=
           std::string::npos;
  }));
  // At the retry, node-5 is no longer alive: it keeps its failure; node-4 is told again.
  fx = pushes_.on_retry(push, {"node-2", "node-4"}, signer_, now_);
  EXPECT_EQ(nodes_of(fx.send), (std::vector<std::string>{"node-4"}));
  fx = pushes_.on_answer(push, "node-4", encode_keyring_answer(new_id));
  ASSERT_TRUE(fx.retry) << "node-5 still missed";
  EXPECT_EQ(fx.retry->delay, rotation_retry_delay * 2);
  // Nobody alive to retry: the attempts run out without a send, and the rotation goes on.
  for (int attempt = 3; attempt <= max_rotation_attempts; ++attempt) {
    fx = pushes_.on_retry(push, {}, signer_, now_);
    EXPECT_TRUE(fx.send.empty());
  }
  EXPECT_FALSE(fx.retry);
  ASSERT_TRUE(fx.step);
  EXPECT_EQ(fx.step->op, "use");
  ASSERT_EQ(fx.finished.size(), 1u);
  EXPECT_EQ(fx.finished[0].done(), 3u) << "this node, node-2 and node-4 on the retry";
  // A push that is not a rotation's is never retried: its report says who missed it.
  const auto plain = pushes_.start("use", key_a, key_a, {});
  (void)pushes_.on_members(plain, {"node-2"}, signer_, now_);
  fx = pushes_.on_failure(plain, "node-2", "timeout");
  EXPECT_FALSE(fx.retry);
  EXPECT_EQ(fx.finished.size(), 1u);
}

TEST_F(keyring_push_test, a_revocation_during_a_rotation_rotates_again_afterwards) {
  const std::vector<std::string> alive{"node-2", "node-3", "node-4", "node-5"};
  EXPECT_FALSE(pushes_.defer_rotation({"node-3"})) << "none runs";
  auto fx = pushes_.rotate({"node-3"}, "K1", "1111111111111111", key_a);
  ASSERT_TRUE(fx.step);
  EXPECT_TRUE(pushes_.defer_rotation({"node-4"}));
  // rotate() while one runs defers too, and starts nothing.
  EXPECT_FALSE(pushes_.rotate({"node-5"}, "K2", "2222222222222222", key_a).step);
  fx = run_step(pushes_, *fx.step, "1111111111111111", alive, signer_, now_);
  fx = run_step(pushes_, *fx.step, "1111111111111111", alive, signer_, now_);
  fx = run_step(pushes_, *fx.step, key_a, alive, signer_, now_);
  EXPECT_FALSE(pushes_.rotating());
  EXPECT_EQ(fx.rotate_again, (std::set<std::string>{"node-4", "node-5"}));
  fx = pushes_.rotate(fx.rotate_again, "K3", "3333333333333333", "1111111111111111");
  ASSERT_TRUE(fx.step);
  EXPECT_EQ(fx.step->exclude, (std::set<std::string>{"node-4", "node-5"}));
}

TEST_F(keyring_push_test, a_step_refused_here_stops_the_rotation) {
  auto fx = pushes_.rotate({"node-3"}, "K1", "1111111111111111", key_a);
  ASSERT_TRUE(fx.step);
  fx = pushes_.on_step_refused("no keyring");
  EXPECT_FALSE(pushes_.rotating());
  EXPECT_FALSE(fx.step);
  ASSERT_EQ(fx.log.size(), 1u);
  EXPECT_EQ(fx.log[0].level, log_level::error);
  EXPECT_NE(fx.log[0].text.find("stopped at 'install': no keyring"), std::string::npos);
  EXPECT_EQ(pushes_.rotations(), 0u);
  // A push that is not the rotation's does not move a rotation either.
  fx = pushes_.rotate({"node-3"}, "K1", "1111111111111111", key_a);
  const auto push = pushes_.start("use", key_a, key_a, {}, false);
  EXPECT_FALSE(pushes_.on_members(push, {}, signer_, now_).step);
  EXPECT_TRUE(pushes_.rotating());
}

} // namespace
} // namespace starling::identity
