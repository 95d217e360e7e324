// The seed's side of an admission (identity/admission_flow.hpp), with tokens and CSRs made
// at run time: a token of this issuer admitted here, a token of another issuer forwarded
// (its answer relayed as it came), the forwarding fallback (the token's issuer gone and
// the record held here), no second forward, and the endorsement collection of the
// admission quorum (asks, this issuer's own token endorsed here, a refusing endorser, late
// and unknown answers). Pure: no actor, no network, no clock.
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "identity/admission_flow.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "tests/support/seeded_random.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::test_pki;

class admission_flow_test : public ::testing::Test {
protected:
  admission_flow_test() {
    for (const auto* name : {"issuer-1", "issuer-2", "issuer-3"})
      stores_.emplace(name, must(token_store::make(name), "store"));
  }

  /// A new one-use token of `issuer` (its text).
  std::string token_of(const std::string& issuer) {
    auto token = must(stores_.at(issuer).create(std::chrono::floor<std::chrono::seconds>(now_), 1h,
                                                1, rng_, pin_),
                      "token");
    return must(encode(token), "encode");
  }

  /// The id (hex) of the token in `text`.
  static std::string id_of(const std::string& text) {
    return must(decode(text), "decode").id_hex();
  }

  /// node-7's admission request with `tokens`.
  admission_request request(std::vector<std::string> tokens) {
    return admission_request{"node-7", must(make_csr(key_, pki_.mesh(), "node-7"), "CSR"),
                             std::move(tokens)};
  }

  /// The request and its bytes, as the channel delivers them.
  std::pair<admission_request, std::string> arriving(std::vector<std::string> tokens) {
    auto req = request(tokens);
    auto raw = must(encode(req), "encode");
    return {must(decode_admission_request(raw), "decode"), raw};
  }

  /// Issuer `name` holding the ledger of the issuers in `records`.
  std::optional<local_issuer> as_issuer(const std::string& name,
                                        const std::vector<std::string>& records) {
    ledger_ = token_ledger{};
    for (const auto& r : records)
      ledger_.merge(stores_.at(r).ledger());
    return local_issuer{name, &ledger_};
  }

  /// A stand-in endorsement by `issuer` (the core does not verify them; the desk does).
  static endorsement endorsement_by(const std::string& issuer) {
    endorsement e;
    e.node = "node-7";
    e.issuer.assign(issuer.begin(), issuer.end());
    e.signature = {1, 2, 3};
    return e;
  }

  /// Decodes what an endorsement_ask carries.
  static endorse_request asked(const endorsement_ask& ask) {
    auto req = must(decode_identity_request(ask.request), "request");
    EXPECT_TRUE(std::holds_alternative<endorse_request>(req));
    return std::move(std::get<endorse_request>(req));
  }

  test_pki pki_;
  time_point now_ = pki_.now();
  sha256_digest pin_ = must(spki_sha256(pki_.root().cert), "pin");
  private_key key_ = must(generate_key(), "key");
  testing::seeded_random rng_{11};
  std::map<std::string, token_store> stores_;
  token_ledger ledger_;
  admission_flow flow_;
};

// -- one token ----------------------------------------------------------------------------------

TEST_F(admission_flow_test, a_token_of_this_issuer_is_admitted_here) {
  const auto t1 = token_of("issuer-1");
  auto [req, raw] = arriving({t1});
  auto fx = flow_.on_request(5, std::move(req), raw, std::nullopt, as_issuer("issuer-1", {}));
  ASSERT_EQ(fx.admit.size(), 1u);
  EXPECT_EQ(fx.admit[0].ticket, 5u);
  EXPECT_EQ(fx.admit[0].req.name, "node-7");
  EXPECT_EQ(fx.admit[0].token_id, id_of(t1));
  EXPECT_TRUE(fx.forward.empty());
  EXPECT_TRUE(fx.refuse.empty());
  EXPECT_EQ(flow_.forwarding(), 0u);
  // Forwarded to us by a member: the same.
  auto [again, raw2] = arriving({t1});
  fx = flow_.on_request(6, std::move(again), raw2, "node-2", as_issuer("issuer-1", {}));
  ASSERT_EQ(fx.admit.size(), 1u);
  EXPECT_EQ(fx.admit[0].ticket, 6u);
}

TEST_F(admission_flow_test, a_token_of_another_issuer_is_forwarded_and_its_answer_relayed) {
  const auto t2 = token_of("issuer-2");
  auto [req, raw] = arriving({t2});
  // From a plain member and from an issuer alike.
  for (auto self : {std::optional<local_issuer>{}, as_issuer("issuer-1", {"issuer-1"})}) {
    auto [r, bytes] = arriving({t2});
    auto fx = flow_.on_request(1, std::move(r), bytes, std::nullopt, self);
    ASSERT_EQ(fx.forward.size(), 1u);
    EXPECT_EQ(fx.forward[0].ticket, 1u);
    EXPECT_EQ(fx.forward[0].issuer, "issuer-2");
    EXPECT_EQ(fx.forward[0].request, bytes) << "forwarded as it came";
    EXPECT_TRUE(fx.admit.empty());
    EXPECT_TRUE(fx.relay.empty());
    EXPECT_EQ(flow_.forwarding(), 1u);
    // The grant goes back to the joiner unchanged.
    fx = flow_.on_forward_answer(1, std::string{"grant bytes"}, false);
    ASSERT_EQ(fx.relay.size(), 1u);
    EXPECT_EQ(fx.relay[0].ticket, 1u);
    ASSERT_TRUE(fx.relay[0].answer);
    EXPECT_EQ(*fx.relay[0].answer, "grant bytes");
    EXPECT_EQ(flow_.forwarding(), 0u);
  }
  // A refusal by the token's issuer is relayed too, even when this issuer holds the record:
  // the issuer answered, so its verdict stands.
  auto fx = flow_.on_request(2, std::move(req), raw, std::nullopt,
                             as_issuer("issuer-1", {"issuer-1", "issuer-2"}));
  ASSERT_EQ(fx.forward.size(), 1u);
  fx = flow_.on_forward_answer(2, make_error(errc::token_exhausted, "spent"), false);
  ASSERT_EQ(fx.relay.size(), 1u);
  ASSERT_FALSE(fx.relay[0].answer);
  EXPECT_TRUE(is(fx.relay[0].answer.error(), errc::token_exhausted));
  EXPECT_TRUE(fx.admit.empty());
}

TEST_F(admission_flow_test, forwarding_fallback_admits_here_when_the_issuer_is_gone) {
  const auto t2 = token_of("issuer-2");
  auto [req, raw] = arriving({t2});
  // issuer-1 learned issuer-2's record from a ledger sync.
  auto fx = flow_.on_request(3, std::move(req), raw, std::nullopt,
                             as_issuer("issuer-1", {"issuer-1", "issuer-2"}));
  ASSERT_EQ(fx.forward.size(), 1u) << "the token's issuer redeems it when it is reachable";
  EXPECT_EQ(fx.forward[0].issuer, "issuer-2");
  fx = flow_.on_forward_answer(3, make_error(errc::io_failure, "not an alive member"), true);
  ASSERT_EQ(fx.admit.size(), 1u);
  EXPECT_EQ(fx.admit[0].ticket, 3u);
  EXPECT_EQ(fx.admit[0].req.name, "node-7");
  EXPECT_EQ(fx.admit[0].req.tokens, std::vector<std::string>{t2});
  EXPECT_EQ(fx.admit[0].token_id, id_of(t2));
  EXPECT_TRUE(fx.relay.empty());
  ASSERT_EQ(fx.log.size(), 1u);
  EXPECT_NE(fx.log[0].text.find("redeeming token " + id_of(t2) + " here"), std::string::npos);
  // Answered once: a late second answer changes nothing.
  EXPECT_TRUE(flow_.on_forward_answer(3, std::string{"late"}, false).relay.empty());
}

TEST_F(admission_flow_test, without_the_record_an_unreachable_issuer_is_a_refusal) {
  const auto t2 = token_of("issuer-2");
  for (auto self : {std::optional<local_issuer>{}, as_issuer("issuer-1", {"issuer-1"})}) {
    auto [req, raw] = arriving({t2});
    auto fx = flow_.on_request(4, std::move(req), raw, std::nullopt, self);
    ASSERT_EQ(fx.forward.size(), 1u);
    fx = flow_.on_forward_answer(4, make_error(errc::io_failure, "not an alive member"), true);
    EXPECT_TRUE(fx.admit.empty());
    ASSERT_EQ(fx.relay.size(), 1u);
    EXPECT_FALSE(fx.relay[0].answer);
  }
}

TEST_F(admission_flow_test, a_forwarded_request_is_never_forwarded_again) {
  const auto t2 = token_of("issuer-2");
  for (auto self : {std::optional<local_issuer>{}, as_issuer("issuer-1", {"issuer-1"})}) {
    auto [req, raw] = arriving({t2});
    auto fx = flow_.on_request(7, std::move(req), raw, "node-2", self);
    EXPECT_TRUE(fx.forward.empty());
    ASSERT_EQ(fx.refuse.size(), 1u);
    EXPECT_EQ(fx.refuse[0].ticket, 7u);
    EXPECT_TRUE(is(fx.refuse[0].error, errc::token_unknown));
    EXPECT_EQ(fx.refuse[0].who, "'node-7' forwarded by node-2");
    EXPECT_TRUE(fx.refuse[0].endorsing_issuer.empty());
  }
  // An issuer that holds the record redeems it itself.
  auto [req, raw] = arriving({t2});
  auto fx = flow_.on_request(8, std::move(req), raw, "node-2",
                             as_issuer("issuer-1", {"issuer-1", "issuer-2"}));
  ASSERT_EQ(fx.admit.size(), 1u);
  EXPECT_EQ(flow_.forwarding(), 0u);
}

TEST_F(admission_flow_test, a_token_that_does_not_decode_is_refused) {
  auto req = request({"stl1.garbage"});
  auto fx = flow_.on_request(9, std::move(req), "raw", std::nullopt, as_issuer("issuer-1", {}));
  ASSERT_EQ(fx.refuse.size(), 1u);
  EXPECT_TRUE(is(fx.refuse[0].error, errc::token_malformed));
  EXPECT_TRUE(fx.forward.empty());
}

// -- several tokens: the endorsement collection -----------------------------------------------

TEST_F(admission_flow_test, further_tokens_become_endorsements_then_the_first_token_goes_on) {
  const auto t1 = token_of("issuer-1");
  const auto t2 = token_of("issuer-2");
  const auto t3 = token_of("issuer-3");
  auto [req, raw] = arriving({t1, t2, t3});
  // A plain member is the seed.
  auto fx = flow_.on_request(10, std::move(req), raw, std::nullopt, std::nullopt);
  ASSERT_EQ(fx.ask.size(), 2u);
  EXPECT_TRUE(fx.forward.empty());
  EXPECT_TRUE(fx.admit.empty());
  EXPECT_EQ(fx.ask[0].issuer, "issuer-2");
  EXPECT_EQ(fx.ask[0].index, 0u);
  EXPECT_EQ(fx.ask[1].issuer, "issuer-3");
  EXPECT_EQ(fx.ask[1].index, 1u);
  for (const auto& ask : fx.ask) {
    EXPECT_EQ(ask.ticket, 10u);
    auto er = asked(ask);
    EXPECT_EQ(er.name, "node-7");
    EXPECT_EQ(er.token, ask.index == 0 ? t2 : t3);
    EXPECT_TRUE(er.csr);
  }
  EXPECT_EQ(flow_.collecting(), 1u);
  // Answers in any order; nothing goes on before the last one.
  fx = flow_.on_endorsement(10, 1, endorsement_by("issuer-3"), std::nullopt);
  EXPECT_TRUE(fx.forward.empty() && fx.admit.empty() && fx.refuse.empty());
  fx = flow_.on_endorsement(10, 0, endorsement_by("issuer-2"), std::nullopt);
  EXPECT_EQ(flow_.collecting(), 0u);
  ASSERT_EQ(fx.forward.size(), 1u);
  EXPECT_EQ(fx.forward[0].ticket, 10u);
  EXPECT_EQ(fx.forward[0].issuer, "issuer-1");
  // On with the first token only and the endorsements in token order.
  auto sent = must(decode_admission_request(fx.forward[0].request), "forwarded");
  EXPECT_EQ(sent.name, "node-7");
  EXPECT_EQ(sent.tokens, std::vector<std::string>{t1});
  ASSERT_EQ(sent.endorsements.size(), 2u);
  EXPECT_EQ(sent.endorsements[0], endorsement_by("issuer-2"));
  EXPECT_EQ(sent.endorsements[1], endorsement_by("issuer-3"));
  EXPECT_EQ(flow_.forwarding(), 1u);
}

TEST_F(admission_flow_test, the_seeds_own_further_token_is_endorsed_here) {
  const auto t1 = token_of("issuer-1");
  const auto t2 = token_of("issuer-2");
  auto [req, raw] = arriving({t1, t2});
  // issuer-2 is the seed: it endorses with its own token, then forwards to issuer-1.
  auto fx = flow_.on_request(11, std::move(req), raw, std::nullopt, as_issuer("issuer-2", {}));
  EXPECT_TRUE(fx.ask.empty());
  ASSERT_EQ(fx.endorse_here.size(), 1u);
  EXPECT_EQ(fx.endorse_here[0].ticket, 11u);
  EXPECT_EQ(fx.endorse_here[0].index, 0u);
  EXPECT_EQ(fx.endorse_here[0].req.token, t2);
  EXPECT_EQ(fx.endorse_here[0].req.name, "node-7");
  fx = flow_.on_endorsement(11, 0, endorsement_by("issuer-2"), as_issuer("issuer-2", {}));
  ASSERT_EQ(fx.forward.size(), 1u);
  EXPECT_EQ(fx.forward[0].issuer, "issuer-1");
  // issuer-1 as the seed with its own first token: admitted here with the endorsement.
  auto [req2, raw2] = arriving({t1, t2});
  fx = flow_.on_request(12, std::move(req2), raw2, std::nullopt, as_issuer("issuer-1", {}));
  ASSERT_EQ(fx.ask.size(), 1u);
  fx = flow_.on_endorsement(12, 0, endorsement_by("issuer-2"), as_issuer("issuer-1", {}));
  ASSERT_EQ(fx.admit.size(), 1u);
  EXPECT_EQ(fx.admit[0].ticket, 12u);
  EXPECT_EQ(fx.admit[0].req.tokens, std::vector<std::string>{t1});
  EXPECT_EQ(fx.admit[0].req.endorsements, std::vector<endorsement>{endorsement_by("issuer-2")});
  EXPECT_EQ(fx.admit[0].token_id, id_of(t1));
}

TEST_F(admission_flow_test, a_refused_endorsement_refuses_the_admission_once_all_answered) {
  const auto t1 = token_of("issuer-1");
  const auto t2 = token_of("issuer-2");
  const auto t3 = token_of("issuer-3");
  auto [req, raw] = arriving({t1, t2, t3});
  auto fx = flow_.on_request(13, std::move(req), raw, std::nullopt, std::nullopt);
  ASSERT_EQ(fx.ask.size(), 2u);
  fx = flow_.on_endorsement(13, 0, make_error(errc::token_exhausted, "spent"), std::nullopt);
  EXPECT_TRUE(fx.refuse.empty()) << "the other endorser is still asked";
  // A second answer for the same token does not count.
  fx = flow_.on_endorsement(13, 0, endorsement_by("issuer-2"), std::nullopt);
  EXPECT_TRUE(fx.refuse.empty() && fx.forward.empty());
  EXPECT_EQ(flow_.collecting(), 1u);
  fx = flow_.on_endorsement(13, 1, make_error(errc::name_taken, "taken"), std::nullopt);
  EXPECT_EQ(flow_.collecting(), 0u);
  EXPECT_TRUE(fx.forward.empty());
  ASSERT_EQ(fx.refuse.size(), 1u);
  EXPECT_EQ(fx.refuse[0].ticket, 13u);
  EXPECT_EQ(fx.refuse[0].who, "'node-7'");
  EXPECT_EQ(fx.refuse[0].endorsing_issuer, "issuer-2") << "the first refusal is the reason";
  EXPECT_TRUE(is(fx.refuse[0].error, errc::token_exhausted));
  // Late answers for a finished collection are ignored.
  EXPECT_TRUE(
      flow_.on_endorsement(13, 1, endorsement_by("issuer-3"), std::nullopt).forward.empty());
}

TEST_F(admission_flow_test, collections_are_refused_before_any_issuer_is_asked) {
  const auto t1 = token_of("issuer-1");
  const auto t2 = token_of("issuer-2");
  // Several tokens forwarded by a member: the seed collects, never the token's issuer.
  auto [req, raw] = arriving({t1, t2});
  auto fx = flow_.on_request(14, std::move(req), raw, "node-2", as_issuer("issuer-1", {}));
  ASSERT_EQ(fx.refuse.size(), 1u);
  EXPECT_TRUE(is(fx.refuse[0].error, errc::bad_request));
  EXPECT_EQ(fx.refuse[0].who, "'node-7' forwarded by node-2");
  EXPECT_TRUE(fx.ask.empty());
  // More tokens than any quorum.
  std::vector<std::string> many(max_admission_quorum + 1, t2);
  many.front() = t1;
  fx = flow_.on_request(15, request(many), "raw", std::nullopt, std::nullopt);
  ASSERT_EQ(fx.refuse.size(), 1u);
  EXPECT_TRUE(is(fx.refuse[0].error, errc::bad_request));
  EXPECT_TRUE(fx.ask.empty());
  // A further token that does not decode.
  fx = flow_.on_request(16, request({t1, t2, "stl1.nonsense"}), "raw", std::nullopt, std::nullopt);
  ASSERT_EQ(fx.refuse.size(), 1u);
  EXPECT_TRUE(is(fx.refuse[0].error, errc::token_malformed));
  EXPECT_TRUE(fx.ask.empty());
  EXPECT_EQ(flow_.collecting(), 0u);
}

TEST_F(admission_flow_test, answers_for_unknown_tickets_are_ignored) {
  auto fx = flow_.on_forward_answer(99, std::string{"grant"}, false);
  EXPECT_TRUE(fx.relay.empty() && fx.admit.empty());
  fx = flow_.on_endorsement(99, 0, endorsement_by("issuer-2"), std::nullopt);
  EXPECT_TRUE(fx.forward.empty() && fx.admit.empty() && fx.refuse.empty());
}

} // namespace
} // namespace starling::identity
