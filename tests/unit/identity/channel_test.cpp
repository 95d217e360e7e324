// The identity channel's wire (identity/channel.hpp): requests of every kind, sync and
// renewal messages both ways, their bounds and hostile bytes.
#include <string>
#include <variant>
#include <vector>

#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>
#include <openssl/err.h>

#include "admission.pb.h"
#include "identity/channel.hpp"
#include "identity/endorsement.hpp"
#include "identity/errc.hpp"
#include "tests/support/refused_with.hpp"
#include "tests/support/seeded_random.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::refused_with;
using testing::seeded_random;
using testing::test_pki;

class identity_channel : public ::testing::Test {
protected:
  identity_channel() {
    auto store = must(token_store::make("issuer-1"), "store");
    seeded_random rng{7};
    const auto at = std::chrono::floor<std::chrono::seconds>(now);
    for (int i = 0; i < 3; ++i)
      must(store.create(at, 1h, 2, rng, issuer.pin), "token");
    ledger = store.ledger();
  }

  sync_message full_sync() {
    sync_message msg;
    for (const auto* name : {"node-3", "node-4"}) {
      auto key = must(spki_sha256(pki.node(name).leaf()), "spki");
      msg.revocations.push_back(must(make_revocation(issuer, key, name, now), "statement"));
    }
    msg.ledger = ledger;
    msg.issued = {{"web-1", must(spki_sha256(pki.node("web-1").leaf()), "spki"),
                   std::chrono::floor<std::chrono::seconds>(now + 24h)}};
    msg.ledger_seal = must(sign_ledger(issuer, ledger, msg.issued, "issuer-2", now), "seal");
    return msg;
  }

  /// `request` (an encoded IdentityRequest) decoded again after `edit` changed the body
  /// that `body` (e.g. &v1::IdentityRequest::mutable_renewal) returns.
  template <class Body, class Edit>
  static caf::expected<identity_request>
  decode_edited(const std::string& request, Body* (v1::IdentityRequest::*body)(), Edit edit) {
    v1::IdentityRequest msg;
    EXPECT_TRUE(msg.ParseFromString(request));
    edit(*(msg.*body)());
    return decode_identity_request(msg.SerializeAsString());
  }

  test_pki pki;
  time_point now = pki.now();
  issuer_material issuer{pki.issuer().key, pki.issuer().cert,
                         pki.bundle(),     pki.mesh(),
                         "issuer-1",       must(spki_sha256(pki.root().cert), "pin")};
  token_ledger ledger;
};

TEST_F(identity_channel, a_sync_request_round_trips) {
  const auto sent = full_sync();
  auto req = must(decode_identity_request(must(encode_sync_request(sent), "encode")), "decode");
  ASSERT_TRUE(std::holds_alternative<sync_message>(req));
  const auto& got = std::get<sync_message>(req);
  EXPECT_EQ(got.revocations, sent.revocations);
  ASSERT_TRUE(got.ledger);
  EXPECT_EQ(*got.ledger, ledger);
  EXPECT_EQ(got.ledger_seal.issuer, sent.ledger_seal.issuer);
  EXPECT_EQ(got.ledger_seal.signature, sent.ledger_seal.signature);
  EXPECT_EQ(got.ledger_seal.at, sent.ledger_seal.at);
  EXPECT_EQ(got.issued, sent.issued);
  EXPECT_TRUE(
      verify_ledger(*got.ledger, got.issued, got.ledger_seal, "issuer-2", pki.bundle(), now));
  EXPECT_EQ(got.malformed, 0u);
  // A member's sync carries no ledger: none comes out, not an empty one.
  sync_message plain;
  plain.revocations = sent.revocations;
  auto back = must(decode_identity_request(must(encode_sync_request(plain), "encode")), "decode");
  EXPECT_FALSE(std::get<sync_message>(back).ledger);
  EXPECT_TRUE(std::get<sync_message>(back).ledger_seal.issuer.empty());
  EXPECT_FALSE(std::get<sync_message>(back).digest);
  // A periodic sync: the digest alone.
  sync_message digest_only;
  digest_only.digest = sha256_digest{};
  digest_only.digest->fill(0xab);
  auto d =
      must(decode_identity_request(must(encode_sync_request(digest_only), "encode")), "decode");
  EXPECT_EQ(std::get<sync_message>(d).digest, digest_only.digest);
  EXPECT_TRUE(std::get<sync_message>(d).revocations.empty());
  EXPECT_EQ(
      must(decode_sync_response(must(encode_sync_response(digest_only), "encode")), "response")
          .digest,
      digest_only.digest);
  // A digest of the wrong size is dropped and counted, the rest is kept.
  v1::IdentityRequest msg;
  msg.set_version(1);
  msg.mutable_sync()->set_digest("short");
  auto odd = must(decode_identity_request(msg.SerializeAsString()), "decode");
  EXPECT_FALSE(std::get<sync_message>(odd).digest);
  EXPECT_EQ(std::get<sync_message>(odd).malformed, 1u);
}

TEST_F(identity_channel, a_sync_response_round_trips_and_kinds_do_not_mix) {
  const auto sent = full_sync();
  const auto bytes = must(encode_sync_response(sent), "encode");
  auto got = must(decode_sync_response(bytes), "decode");
  EXPECT_EQ(got.revocations, sent.revocations);
  EXPECT_EQ(*got.ledger, ledger);
  // A sync response is no admission response, and the reverse.
  EXPECT_TRUE(refused_with(decode_admission_grant(bytes), errc::bad_request, "not an admission"));
  auto grant =
      must(encode(admission_grant{pki.node("n1").chain, pki.bundle(), "", "issuer-1"}), "grant");
  EXPECT_TRUE(refused_with(decode_sync_response(grant), errc::bad_request, "not a sync"));
  // A sync request is no admission request.
  const auto req = must(encode_sync_request(sent), "request");
  EXPECT_TRUE(refused_with(decode_admission_request(req), errc::bad_request));
}

TEST_F(identity_channel, an_admission_request_is_told_apart) {
  auto key = must(generate_key(), "key");
  admission_request sent{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), {"stl1.x"}, {}};
  auto req = must(decode_identity_request(must(encode(sent), "encode")), "decode");
  ASSERT_TRUE(std::holds_alternative<admission_request>(req));
  EXPECT_EQ(std::get<admission_request>(req).name, "n1");
  // The admission bound holds whatever the decoder.
  v1::IdentityRequest big;
  big.set_version(1);
  big.mutable_admission()->set_name("n1");
  big.mutable_admission()->add_tokens(std::string(max_admission_bytes, 'x'));
  EXPECT_TRUE(
      refused_with(decode_identity_request(big.SerializeAsString()), errc::bad_request, "exceeds"));
}

TEST_F(identity_channel, untrusted_requests_are_bad_requests) {
  v1::IdentityRequest none;
  none.set_version(1);
  EXPECT_TRUE(
      refused_with(decode_identity_request(none.SerializeAsString()), errc::bad_request, "kind"));
  auto v2 = none;
  v2.set_version(2);
  v2.mutable_sync();
  EXPECT_TRUE(
      refused_with(decode_identity_request(v2.SerializeAsString()), errc::bad_request, "version"));
  EXPECT_TRUE(refused_with(decode_identity_request(std::string(max_sync_bytes + 1, '\0')),
                           errc::bad_request, "exceeds"));
  EXPECT_TRUE(refused_with(decode_identity_request("\x1a\x05"
                                                   "ab"),
                           errc::bad_request, "parse"));
  // Too many statements: refused whole.
  v1::IdentityRequest many;
  many.set_version(1);
  for (std::size_t i = 0; i <= max_revocations; ++i)
    many.mutable_sync()->add_revocations();
  EXPECT_TRUE(refused_with(decode_identity_request(many.SerializeAsString()), errc::bad_request,
                           "revocations"));
  // A statement or ledger entry that cannot be represented is dropped and counted.
  v1::IdentityRequest odd;
  odd.set_version(1);
  odd.mutable_sync()->add_revocations()->set_key("short");
  auto* token = odd.mutable_sync()->mutable_ledger()->add_tokens();
  token->set_id("12345678");
  token->set_secret_hash("too short");
  auto got = must(decode_identity_request(odd.SerializeAsString()), "odd");
  const auto& sync = std::get<sync_message>(got);
  EXPECT_TRUE(sync.revocations.empty());
  EXPECT_TRUE(sync.ledger && sync.ledger->entries().empty());
  EXPECT_EQ(sync.malformed, 2u);
}

TEST_F(identity_channel, the_sender_bounds_what_it_sends) {
  sync_message msg;
  msg.revocations.resize(max_revocations + 1);
  EXPECT_TRUE(refused_with(encode_sync_request(msg), errc::invalid_argument));
  EXPECT_TRUE(refused_with(encode_sync_response(msg), errc::invalid_argument));
}

TEST_F(identity_channel, flipped_or_truncated_bytes_never_crash_a_decoder) {
  const auto bytes = must(encode_sync_request(full_sync()), "request");
  auto check = [](const auto& result) {
    EXPECT_TRUE(result || is(result.error(), errc::bad_request)) << render(result.error());
  };
  google::protobuf::LogSilencer silence;
  for (std::size_t i = 0; i < bytes.size(); i += 7) {
    auto flipped = bytes;
    flipped[i] = static_cast<char>(flipped[i] ^ (1 << (i % 8)));
    check(decode_identity_request(flipped));
    check(decode_sync_response(flipped));
    check(decode_identity_request(bytes.substr(0, i)));
  }
  ERR_clear_error();
}

// -- renewal -------------------------------------------------------------------------------------

TEST_F(identity_channel, renewal_messages_round_trip_and_hostile_ones_are_refused) {
  auto node = pki.node("node-1");
  renewal_request sent{"node-1", must(make_csr(node.key, pki.mesh(), "node-1"), "CSR"), node.chain};
  auto got = must(decode_identity_request(must(encode(sent), "encode")), "decode");
  ASSERT_TRUE(std::holds_alternative<renewal_request>(got));
  const auto& req = std::get<renewal_request>(got);
  EXPECT_EQ(req.name, "node-1");
  EXPECT_EQ(req.current.size(), node.chain.size());
  EXPECT_EQ(must(to_der(req.csr), "CSR"), must(to_der(sent.csr), "CSR"));
  auto grant = must(
      decode_renewal_grant(must(encode(renewal_grant{node.chain, "issuer-1"}), "encode grant")),
      "decode grant");
  EXPECT_EQ(grant.issuer, "issuer-1");
  EXPECT_EQ(grant.certs.size(), node.chain.size());
  // Hostile requests: a bad name, no chain, a CSR that does not parse, too large.
  google::protobuf::LogSilencer silence;
  const auto bytes = must(encode(sent), "encode");
  auto edited = [&](auto edit) {
    return decode_edited(bytes, &v1::IdentityRequest::mutable_renewal, edit);
  };
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.set_name("bad name"); }), errc::bad_request,
                           "invalid node name"));
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.clear_chain(); }), errc::bad_request, "chain"));
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.set_csr("x"); }), errc::bad_request));
  EXPECT_TRUE(
      refused_with(edited([](auto& r) { r.set_chain(std::string(max_admission_bytes, 'x')); }),
                   errc::bad_request, "exceeds"));
  // A response of another kind, or naming no valid issuer.
  EXPECT_TRUE(refused_with(decode_renewal_grant(must(encode_sync_response({}), "sync")),
                           errc::bad_request, "not a renewal response"));
  EXPECT_TRUE(refused_with(
      decode_renewal_grant(must(encode(renewal_grant{node.chain, "bad name"}), "encode")),
      errc::bad_request, "issuer"));
  ERR_clear_error();
}

// -- endorsement ---------------------------------------------------------------------------------

TEST_F(identity_channel, endorse_messages_and_endorsements_round_trip) {
  auto key = must(generate_key(), "key");
  endorse_request sent{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), "stl1.x"};
  const auto bytes = must(encode(sent), "encode");
  auto got = must(decode_identity_request(bytes), "decode");
  ASSERT_TRUE(std::holds_alternative<endorse_request>(got));
  const auto& req = std::get<endorse_request>(got);
  EXPECT_EQ(req.name, "n1");
  EXPECT_EQ(req.token, "stl1.x");
  EXPECT_EQ(must(to_der(req.csr), "CSR"), must(to_der(sent.csr), "CSR"));
  EXPECT_TRUE(refused_with(decode_admission_request(bytes), errc::bad_request, "not an admission"));
  // The answer.
  const auto spki = must(spki_sha256(key), "spki");
  auto e = must(make_endorsement(issuer, spki, "n1", now), "endorse");
  const auto answer = must(encode(e), "encode endorsement");
  EXPECT_EQ(must(decode_endorse_response(answer), "decode endorsement"), e);
  EXPECT_TRUE(refused_with(decode_admission_grant(answer), errc::bad_request));
  // An admission request carries the endorsements a seed collected, in order.
  auto second = pki.make_issuer("issuer-2", now - 1h);
  auto e2 = must(make_endorsement(pki.material(second), spki, "n1", now), "endorse 2");
  admission_request adm{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), {"stl1.x"}, {e2, e}};
  auto back = must(decode_identity_request(must(encode(adm), "encode")), "decode");
  EXPECT_EQ(std::get<admission_request>(back).endorsements, adm.endorsements);
  EXPECT_EQ(must(decode_admission_request(must(encode(adm), "encode")), "decode").endorsements,
            adm.endorsements);
}

TEST_F(identity_channel, hostile_endorse_messages_are_bad_requests) {
  auto key = must(generate_key(), "key");
  endorse_request sent{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), "stl1.x"};
  google::protobuf::LogSilencer silence;
  const auto bytes = must(encode(sent), "encode");
  auto edited = [&](auto edit) {
    return decode_edited(bytes, &v1::IdentityRequest::mutable_endorse, edit);
  };
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.set_name("bad name"); }), errc::bad_request,
                           "invalid node name"));
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.clear_token(); }), errc::bad_request, "token"));
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.set_csr("x"); }), errc::bad_request));
  EXPECT_TRUE(refused_with(edited([](auto& r) { r.clear_csr(); }), errc::bad_request));
  EXPECT_TRUE(
      refused_with(edited([](auto& r) { r.set_token(std::string(max_admission_bytes, 'x')); }),
                   errc::bad_request, "exceeds"));
  // Admission requests: at most max_admission_quorum endorsements, each representable.
  const auto e = must(make_endorsement(issuer, must(spki_sha256(key), "spki"), "n1", now), "e");
  admission_request adm{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), {"stl1.x"}, {}};
  adm.endorsements.assign(max_admission_quorum, e);
  ASSERT_TRUE(decode_admission_request(must(encode(adm), "encode")));
  adm.endorsements.push_back(e);
  EXPECT_TRUE(refused_with(decode_admission_request(must(encode(adm), "encode")), errc::bad_request,
                           "endorsements"));
  EXPECT_TRUE(refused_with(decode_identity_request(must(encode(adm), "encode")), errc::bad_request,
                           "endorsements"));
  v1::IdentityRequest with_one;
  adm.endorsements = {e};
  ASSERT_TRUE(with_one.ParseFromString(must(encode(adm), "encode")));
  auto bad_endorsement = [&](auto edit) {
    auto copy = with_one;
    edit(*copy.mutable_admission()->mutable_endorsements(0));
    return decode_admission_request(copy.SerializeAsString());
  };
  EXPECT_TRUE(refused_with(bad_endorsement([](auto& m) { m.set_key(std::string(31, 'k')); }),
                           errc::bad_request, "malformed endorsement"));
  EXPECT_TRUE(refused_with(bad_endorsement([](auto& m) {
                             m.set_signature(std::string(max_revocation_signature_bytes + 1, 's'));
                           }),
                           errc::bad_request, "malformed endorsement"));
  // Endorse responses.
  v1::IdentityResponse answer;
  ASSERT_TRUE(answer.ParseFromString(must(encode(e), "encode")));
  auto edited_answer = [&](auto edit) {
    auto copy = answer;
    edit(copy);
    return decode_endorse_response(copy.SerializeAsString());
  };
  EXPECT_TRUE(
      refused_with(edited_answer([](auto& r) { r.set_version(2); }), errc::bad_request, "version"));
  EXPECT_TRUE(refused_with(edited_answer([](auto& r) { r.mutable_endorse()->clear_endorsement(); }),
                           errc::bad_request, "without an endorsement"));
  EXPECT_TRUE(refused_with(
      edited_answer([](auto& r) { r.mutable_endorse()->mutable_endorsement()->set_key("k"); }),
      errc::bad_request, "malformed"));
  EXPECT_TRUE(refused_with(edited_answer([](auto& r) { r.mutable_sync(); }), errc::bad_request,
                           "not an endorse response"));
  EXPECT_TRUE(refused_with(decode_endorse_response(std::string(max_admission_bytes + 1, 'x')),
                           errc::bad_request, "exceeds"));
  // The sender does not send what no receiver could accept.
  auto unsigned_e = e;
  unsigned_e.signature.clear();
  EXPECT_TRUE(refused_with(encode(unsigned_e), errc::invalid_argument, "signature"));
  ERR_clear_error();
}

TEST_F(identity_channel, flipped_or_truncated_endorse_bytes_never_crash_a_decoder) {
  auto key = must(generate_key(), "key");
  const auto spki = must(spki_sha256(key), "spki");
  const auto e = must(make_endorsement(issuer, spki, "n1", now), "e");
  const auto req = must(
      encode(endorse_request{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), "stl1.x"}), "req");
  const auto adm = must(
      encode(admission_request{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), {"t"}, {e}}),
      "admission");
  const auto answer = must(encode(e), "answer");
  auto check = [](const auto& result) {
    EXPECT_TRUE(result || is(result.error(), errc::bad_request)) << render(result.error());
  };
  google::protobuf::LogSilencer silence;
  for (const auto* bytes : {&req, &adm, &answer}) {
    for (std::size_t i = 0; i < bytes->size(); i += 3) {
      auto flipped = *bytes;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << (i % 8)));
      check(decode_identity_request(flipped));
      check(decode_endorse_response(flipped));
      check(decode_identity_request(bytes->substr(0, i)));
      check(decode_endorse_response(bytes->substr(0, i)));
    }
  }
  ERR_clear_error();
}

// -- keyring changes
// -------------------------------------------------------------------------------

TEST_F(identity_channel, keyring_changes_round_trip_and_hostile_ones_are_refused) {
  const std::string key = "qvZ3iD8x3nb2M7sdrRPu+8Y3dTHtH9gkn0wXm0oc5Dk=";
  const keyring_change change{
      "install", key, must(sign_keyring_change(issuer, "install", key, "node-3", now), "seal")};
  auto decoded = must(decode_identity_request(must(encode(change), "encode")), "decode");
  ASSERT_TRUE(std::holds_alternative<keyring_change>(decoded));
  const auto& got = std::get<keyring_change>(decoded);
  EXPECT_EQ(got.op, change.op);
  EXPECT_EQ(got.key, change.key);
  EXPECT_EQ(got.seal.issuer, change.seal.issuer);
  EXPECT_EQ(got.seal.signature, change.seal.signature);
  EXPECT_EQ(got.seal.at, change.seal.at);
  EXPECT_TRUE(verify_keyring_change(got.op, got.key, got.seal, "node-3", pki.bundle(), now));
  EXPECT_EQ(must(decode_keyring_answer(encode_keyring_answer("0123456789abcdef")), "answer"),
            "0123456789abcdef");
  // The sender refuses an unknown operation.
  EXPECT_TRUE(refused_with(encode(keyring_change{"drop", "k", {}}), errc::invalid_argument));
  // A receiver refuses every malformed change as a bad request.
  auto edited = [&](auto edit) {
    v1::IdentityRequest msg;
    msg.set_version(1);
    msg.mutable_keyring()->set_op("use");
    msg.mutable_keyring()->set_key("0123456789abcdef");
    edit(*msg.mutable_keyring());
    return decode_identity_request(msg.SerializeAsString());
  };
  EXPECT_TRUE(edited([](auto&) {}));
  EXPECT_TRUE(refused_with(edited([](auto& k) { k.set_op("wipe"); }), errc::bad_request));
  EXPECT_TRUE(refused_with(edited([](auto& k) { k.set_key(""); }), errc::bad_request));
  EXPECT_TRUE(
      refused_with(edited([](auto& k) { k.set_key(std::string(257, 'k')); }), errc::bad_request));
  EXPECT_TRUE(refused_with(edited([](auto& k) { k.set_issuer(std::string(5000, 'x')); }),
                           errc::bad_request));
  EXPECT_TRUE(refused_with(edited([](auto& k) { k.set_key(std::string(70'000, 'k')); }),
                           errc::bad_request, "exceeds"));
  // Answers: another kind, an id that is not 16 hex digits.
  EXPECT_TRUE(
      refused_with(decode_keyring_answer(encode_keyring_answer("0123")), errc::bad_request));
  EXPECT_TRUE(refused_with(decode_keyring_answer(encode_keyring_answer("0123456789ABCDEF")),
                           errc::bad_request));
  EXPECT_TRUE(refused_with(decode_keyring_answer(must(encode_sync_response({}), "sync")),
                           errc::bad_request));
  google::protobuf::LogSilencer silence;
  const auto bytes = must(encode(change), "encode");
  for (std::size_t i = 0; i < bytes.size(); i += 5) {
    auto flipped = bytes;
    flipped[i] = static_cast<char>(flipped[i] ^ (1 << (i % 8)));
    auto result = decode_identity_request(flipped);
    EXPECT_TRUE(result || is(result.error(), errc::bad_request)) << render(result.error());
  }
  ERR_clear_error();
}

// -- refusals (IdentityResponse.refusal) --------------------------------------------------------

TEST_F(identity_channel, a_refusal_carries_its_code_to_every_decoder) {
  const auto token = encode_refusal(make_error(errc::token_exhausted, "token 1f is spent"));
  const auto quorum = encode_refusal(make_error(errc::quorum_not_met, "1 of 2 issuers"));
  // Whatever the asker expected, the refusal comes back as the refusing node's error.
  for (const auto& bytes : {token, quorum}) {
    auto grant = decode_admission_grant(bytes);
    ASSERT_FALSE(grant);
    EXPECT_TRUE(is_final_admission_refusal(grant.error())) << render(grant.error());
    EXPECT_FALSE(decode_renewal_grant(bytes));
    EXPECT_FALSE(decode_endorse_response(bytes));
    EXPECT_FALSE(decode_sync_response(bytes));
    EXPECT_FALSE(decode_keyring_answer(bytes));
    ASSERT_TRUE(decode_refusal(bytes));
  }
  auto t = decode_admission_grant(token);
  EXPECT_TRUE(is(t.error(), errc::token_exhausted));
  EXPECT_EQ(render(t.error()), "identity.token_exhausted: token 1f is spent");
  auto q = decode_endorse_response(quorum);
  EXPECT_TRUE(is(q.error(), errc::quorum_not_met));
  EXPECT_EQ(render(q.error()), "identity.quorum_not_met: 1 of 2 issuers");
  // Not a refusal: nothing.
  EXPECT_FALSE(decode_refusal(encode_keyring_answer("0123456789abcdef")));
  EXPECT_FALSE(decode_refusal("garbage"));
}

TEST_F(identity_channel, only_the_code_decides_whether_an_admission_refusal_is_final) {
  for (auto x :
       {errc::token_malformed, errc::token_unknown, errc::token_forged, errc::token_expired,
        errc::token_exhausted, errc::token_wrong_mesh, errc::quorum_not_met}) {
    auto err = *decode_refusal(encode_refusal(make_error(x, "why")));
    EXPECT_TRUE(is_final_admission_refusal(err)) << render(err);
  }
  // Worth a retry: a name held by a live member, an unreachable issuer, a timeout.
  for (const auto& err :
       {make_error(errc::name_taken, "node-2 is alive"),
        caf::error{5, caf::atom("actors"), caf::make_message(std::string{"issuer-2 is not alive"})},
        caf::make_error(caf::sec::request_timeout)}) {
    auto back = *decode_refusal(encode_refusal(err));
    EXPECT_EQ(back.category(), err.category());
    EXPECT_EQ(back.code(), err.code());
    EXPECT_FALSE(is_final_admission_refusal(back)) << render(back);
  }
  // A text that names a token code decides nothing (a transport refusal of the version
  // before, or a reason a peer chose).
  caf::error text_only{7, caf::atom("gossip"),
                       caf::make_message(std::string{"identity.token_expired: quorum_not_met"})};
  EXPECT_FALSE(is_final_admission_refusal(text_only));
  EXPECT_FALSE(is_final_admission_refusal(
      *decode_refusal(encode_refusal(make_error(errc::bad_request, "token_expired")))));
}

TEST_F(identity_channel, hostile_refusals_are_bad_requests) {
  auto refusal = [](const std::string& category, std::uint32_t code, std::string reason) {
    v1::IdentityResponse msg;
    msg.set_version(1);
    msg.mutable_refusal()->set_category(category);
    msg.mutable_refusal()->set_code(code);
    msg.mutable_refusal()->set_reason(std::move(reason));
    return msg.SerializeAsString();
  };
  ASSERT_TRUE(decode_refusal(refusal("identity", 14, "ok")));
  EXPECT_FALSE(is(*decode_refusal(refusal("identity", 14, "ok")), errc::bad_request));
  for (const auto& bad :
       {refusal("", 14, "x"), refusal("identity", 0, "x"), refusal("identity", 256, "x"),
        refusal("much_too_long", 14, "x"), refusal("ident\x01ty", 14, "x"),
        refusal("identity", 14, std::string(max_refusal_reason_bytes + 1, 'r'))}) {
    auto err = decode_refusal(bad);
    ASSERT_TRUE(err);
    EXPECT_TRUE(is(*err, errc::bad_request)) << render(*err);
    EXPECT_TRUE(refused_with(decode_admission_grant(bad), errc::bad_request));
  }
  // The sender cuts an over-long reason rather than send what the receiver refuses.
  auto long_reason =
      encode_refusal(make_error(errc::io_failure, std::string(max_refusal_reason_bytes + 9, 'r')));
  auto back = decode_refusal(long_reason);
  ASSERT_TRUE(back);
  EXPECT_TRUE(is(*back, errc::io_failure)) << render(*back);
}

} // namespace
} // namespace starling::identity
