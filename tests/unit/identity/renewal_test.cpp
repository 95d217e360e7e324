// Renewal of a node's own certificate (identity/renewal.hpp), with the run-time test PKI:
// when it is due and how often it is checked (the retry period), the alive issuers asked
// one after the other (each once, never this node) until one grants a certificate that
// passes the node's checks, a failed round retried at the next check, a certificate capped
// at its issuer's expiry refused (no renewal loop), an issuer signing its own, answers of
// issuers not asked ignored. Pure: no actor, no network, no clock.
#include <algorithm>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/renewal.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::test_pki;

bool logged(const renewal_effects& fx, log_level level, const std::string& part) {
  return std::any_of(fx.log.begin(), fx.log.end(), [&](const log_line& l) {
    return l.level == level && l.text.find(part) != std::string::npos;
  });
}

class renewal_test : public ::testing::Test {
protected:
  /// node-1's credentials, issued by issuer-1 at now_.
  node_credentials make_current() {
    auto node = pki_.node("node-1", pki_.issuer(), now_);
    return node_credentials{node.key, node.chain, pki_.bundle()};
  }

  /// What `by` grants for the request in `ask` at `at` (valid `validity`, capped at the
  /// issuer's notAfter), encoded as the issuer answers.
  std::string grant(const renewal_ask& ask, const credentials& by, const std::string& by_name,
                    time_point at, std::chrono::seconds validity = node_validity) {
    auto req = must(decode_identity_request(ask.request), "request");
    const auto& r = std::get<renewal_request>(req);
    auto certs =
        must(sign_node(r.csr, by.key, by.cert, {}, pki_.mesh(), r.name, at, validity), "sign");
    return must(encode(renewal_grant{std::move(certs), by_name}), "grant");
  }

  test_pki pki_;
  time_point now_ = pki_.now();
  node_credentials current_ = make_current();
  renewal renewal_{"node-1", 7};
};

TEST_F(renewal_test, due_at_two_thirds_of_the_life_and_checked_often_enough) {
  const auto& leaf = current_.certs.front();
  EXPECT_FALSE(renewal_due(leaf, now_ + 16h - 1min));
  EXPECT_TRUE(renewal_due(leaf, now_ + 16h));
  EXPECT_EQ(renewal_check_period(leaf, 30s), 30s);
  // A tenth of a short life, and at least a second: the retry period after a failure.
  auto short_lived = pki_.node("node-2", pki_.issuer(), now_, 45s);
  EXPECT_EQ(renewal_check_period(short_lived.leaf(), 30s), 4500ms);
  auto tiny = pki_.node("node-3", pki_.issuer(), now_, 5s);
  EXPECT_EQ(renewal_check_period(tiny.leaf(), 30s), 1s);
  // Not due: nothing to do.
  auto fx = renewal_.on_check(current_, now_ + 1h, false);
  EXPECT_FALSE(fx.list_issuers || fx.self_issue || fx.ask);
  EXPECT_FALSE(renewal_.in_flight());
}

TEST_F(renewal_test, the_alive_issuers_are_asked_in_turn_until_one_grants) {
  const auto at = now_ + 17h;
  auto fx = renewal_.on_check(current_, at, false);
  EXPECT_TRUE(fx.list_issuers);
  EXPECT_TRUE(renewal_.in_flight());
  // While a round is under way, no second one.
  EXPECT_FALSE(renewal_.on_check(current_, at + 30s, false).list_issuers);
  fx = renewal_.on_issuers({"issuer-1", "node-1", "issuer-2", "issuer-3"}, current_, at);
  ASSERT_TRUE(fx.ask);
  std::set<std::string> asked{fx.ask->issuer};
  auto req = must(decode_identity_request(fx.ask->request), "request");
  ASSERT_TRUE(std::holds_alternative<renewal_request>(req));
  EXPECT_EQ(std::get<renewal_request>(req).name, "node-1");
  ASSERT_EQ(std::get<renewal_request>(req).current.size(), current_.certs.size());
  EXPECT_EQ(must(spki_sha256(std::get<renewal_request>(req).current.front()), "key"),
            must(spki_sha256(current_.certs.front()), "key"));
  EXPECT_EQ(renewal_.rest().size(), 2u) << "this node is never asked";
  // The first refuses: the next is asked.
  fx = renewal_.on_failure(fx.ask->issuer, "identity.revoked: no", current_, at);
  ASSERT_TRUE(fx.ask);
  EXPECT_TRUE(asked.insert(fx.ask->issuer).second) << "each issuer once";
  EXPECT_TRUE(logged(fx, log_level::debug, "identity.revoked: no; asking"));
  // The second answers with a certificate for another key: refused by the node, next.
  auto other = pki_.node("node-1", pki_.issuer(), at);
  fx = renewal_.on_answer(fx.ask->issuer,
                          must(encode(renewal_grant{other.chain, fx.ask->issuer}), "grant"),
                          current_, at, {}, 1);
  ASSERT_TRUE(fx.ask);
  EXPECT_TRUE(asked.insert(fx.ask->issuer).second);
  EXPECT_TRUE(renewal_.rest().empty());
  // The third grants (whichever it is, issuer-1 signs here: any issuer of the mesh may).
  const auto third = fx.ask->issuer;
  auto answer = grant(*fx.ask, pki_.issuer(), third, at);
  // An answer from an issuer not asked now is ignored.
  EXPECT_FALSE(renewal_.on_answer("issuer-9", answer, current_, at, {}, 1).install);
  fx = renewal_.on_answer(third, answer, current_, at, {}, 1);
  ASSERT_TRUE(fx.install);
  EXPECT_EQ(fx.install->by, third);
  EXPECT_EQ(must(spki_sha256(fx.install->creds.certs.front()), "key"),
            must(spki_sha256(current_.certs.front()), "key"))
      << "same key";
  EXPECT_EQ(must(not_after(fx.install->creds.certs.front()), "notAfter"), at + node_validity);
  EXPECT_TRUE(renewal_.in_flight()) << "until installed";
  const auto by = fx.install->by;
  auto renewed = std::move(fx.install->creds);
  fx = renewal_.on_installed(by, {}, renewed, at);
  EXPECT_EQ(fx.renewed_by, by);
  EXPECT_FALSE(renewal_.in_flight());
  EXPECT_TRUE(logged(fx, log_level::info, "renewed node certificate from " + by));
  // Not due again.
  EXPECT_FALSE(renewal_.on_check(renewed, at + 1h, false).list_issuers);
}

TEST_F(renewal_test, a_failed_round_is_retried_at_the_next_check) {
  const auto at = now_ + 17h;
  ASSERT_TRUE(renewal_.on_check(current_, at, false).list_issuers);
  auto fx = renewal_.on_issuers({"node-1"}, current_, at);
  EXPECT_FALSE(fx.ask);
  EXPECT_FALSE(renewal_.in_flight());
  EXPECT_TRUE(logged(fx, log_level::warn, "no issuer is alive; retrying"));
  EXPECT_TRUE(logged(fx, log_level::warn, "(25200s left)"));
  // The next check starts a new round; every issuer refusing ends it the same way.
  ASSERT_TRUE(renewal_.on_check(current_, at + 30s, false).list_issuers);
  fx = renewal_.on_issuers({"issuer-1", "issuer-2"}, current_, at + 30s);
  ASSERT_TRUE(fx.ask);
  fx = renewal_.on_failure(fx.ask->issuer, "timeout", current_, at + 30s);
  ASSERT_TRUE(fx.ask);
  fx = renewal_.on_failure(fx.ask->issuer, "timeout", current_, at + 30s);
  EXPECT_FALSE(fx.ask);
  EXPECT_FALSE(renewal_.in_flight());
  EXPECT_TRUE(logged(fx, log_level::warn, "cannot renew the node certificate"));
  ASSERT_TRUE(renewal_.on_check(current_, at + 60s, false).list_issuers);
  fx = renewal_.on_no_issuers("timeout", current_, at + 60s);
  EXPECT_TRUE(logged(fx, log_level::warn, "no member list: timeout"));
  // Once expired, the node says it cannot renew any more.
  ASSERT_TRUE(renewal_.on_check(current_, now_ + 25h, false).list_issuers);
  fx = renewal_.on_issuers({}, current_, now_ + 25h);
  EXPECT_TRUE(logged(fx, log_level::error, "it cannot renew any more"));
  // A stopped node (its key revoked) starts no round.
  EXPECT_FALSE(renewal_.on_check(current_, now_ + 17h, false, true).list_issuers);
}

TEST_F(renewal_test, a_certificate_capped_at_its_issuers_expiry_is_not_a_renewal) {
  // issuer-2's own certificate ends in 10 s: whatever it signs ends there too.
  const auto second = pki_.make_issuer("issuer-2", now_ - 1h, 1h + 10s);
  const auto end = must(not_after(second.cert), "issuer notAfter");
  ASSERT_LE(end, now_ + 10s);
  auto node = pki_.node("node-1", second, now_ - 30min);
  node_credentials current{node.key, node.chain, pki_.bundle()};
  ASSERT_EQ(must(not_after(current.certs.front()), "notAfter"), end);
  ASSERT_TRUE(renewal_.on_check(current, now_, false).list_issuers);
  auto fx = renewal_.on_issuers({"issuer-2"}, current, now_);
  ASSERT_TRUE(fx.ask);
  // Signed by issuer-2 (its clock 50 s behind): capped at `end` again, and due at once.
  auto answer = grant(*fx.ask, second, "issuer-2", now_ - 50s);
  ASSERT_TRUE(renewal_due(must(decode_renewal_grant(answer), "grant").certs.front(), now_));
  fx = renewal_.on_answer("issuer-2", answer, current, now_, {}, 1);
  EXPECT_FALSE(fx.install) << "would be due at once: a renewal loop";
  EXPECT_FALSE(renewal_.in_flight());
  EXPECT_TRUE(logged(fx, log_level::warn, "its issuer certificate expires first"));
  // From an issuer that outlives it: installed.
  ASSERT_TRUE(renewal_.on_check(current, now_ + 1s, false).list_issuers);
  fx = renewal_.on_issuers({"issuer-1"}, current, now_ + 1s);
  ASSERT_TRUE(fx.ask);
  fx = renewal_.on_answer("issuer-1", grant(*fx.ask, pki_.issuer(), "issuer-1", now_ + 1s), current,
                          now_ + 1s, {}, 1);
  ASSERT_TRUE(fx.install);
  EXPECT_EQ(fx.install->by, "issuer-1");
}

TEST_F(renewal_test, an_issuer_signs_its_own_and_an_install_can_fail) {
  auto fx = renewal_.on_check(current_, now_ + 17h, true);
  EXPECT_TRUE(fx.self_issue);
  EXPECT_FALSE(fx.list_issuers);
  auto material = pki_.material(pki_.issuer());
  auto creds = self_issue(material, "node-1", current_.key, now_ + 17h, 2h);
  fx = renewal_.on_self_issued(std::move(creds), "issuer-1", current_, now_ + 17h);
  ASSERT_TRUE(fx.install);
  EXPECT_EQ(fx.install->by, "issuer-1 (self-issued)");
  // The files cannot be written: the round fails, the old certificate stays.
  fx = renewal_.on_installed(fx.install->by, make_error(errc::io_failure, "disk full"), current_,
                             now_ + 17h);
  EXPECT_FALSE(fx.renewed_by);
  EXPECT_FALSE(renewal_.in_flight());
  EXPECT_TRUE(logged(fx, log_level::warn, "cannot install the certificate from issuer-1"));
  // Self-issuing fails.
  ASSERT_TRUE(renewal_.on_check(current_, now_ + 17h, true).self_issue);
  fx = renewal_.on_self_issued(make_error(errc::expired, "issuer"), "issuer-1", current_,
                               now_ + 17h);
  EXPECT_FALSE(fx.install);
  EXPECT_TRUE(logged(fx, log_level::warn, "cannot self-issue"));
}

} // namespace
} // namespace starling::identity
