// Endorsements and the admission quorum (identity/endorsement.hpp), with the run-time test
// PKI: endorsements that verify, forged ones, ones that are really revocations, by node
// certificates, by issuers of another mesh or expired, the extension that carries them in
// a leaf (and hostile ones), and the count of distinct vouchers.
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/err.h>

#include "admission.pb.h"
#include "identity/admission.hpp"
#include "identity/endorsement.hpp"
#include "identity/errc.hpp"
#include "identity/revocation.hpp"
#include "identity/tls.hpp"
#include "tests/support/refused_with.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::refused_with;
using testing::test_node;
using testing::test_pki;

sha256_digest key_of(const certificate& cert) { return must(spki_sha256(cert), "spki"); }

/// `content` wrapped in a DER OCTET STRING (the value of the endorsements extension).
std::vector<std::uint8_t> octet_string(const std::string& content) {
  const auto n = content.size(); // below 64 KiB
  std::vector<std::uint8_t> out;
  out.reserve(4 + n);
  out.push_back(0x04);
  if (n >= 0x80) {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
  }
  out.push_back(static_cast<std::uint8_t>(n & 0xff));
  for (char c : content)
    out.push_back(static_cast<std::uint8_t>(c));
  return out;
}

/// The EndorsementSet of `set`, serialized (no OCTET STRING around it).
std::string set_bytes(const std::vector<endorsement>& set) {
  v1::EndorsementSet msg;
  for (const auto& e : set) {
    auto* out = msg.add_endorsements();
    out->set_key(e.key.data(), e.key.size());
    out->set_node(e.node);
    out->set_endorsed_at(e.endorsed_at.time_since_epoch().count());
    out->set_issuer(e.issuer.data(), e.issuer.size());
    out->set_signature(e.signature.data(), e.signature.size());
  }
  return msg.SerializeAsString();
}

/// A copy of `cert` with one more endorsements extension of `value`, `critical` or not,
/// signed again by `signer` (issue_certificate only adds non-critical ones).
certificate with_extension(const certificate& cert, const std::vector<std::uint8_t>& value,
                           bool critical, const credentials& signer) {
  x509_ptr copy{X509_dup(cert.native())};
  asn1_object_ptr oid{OBJ_txt2obj(std::string{endorsements_oid}.c_str(), 1)};
  asn1_octet_string_ptr data{ASN1_OCTET_STRING_new()};
  if (!copy || !oid || !data ||
      ASN1_OCTET_STRING_set(data.get(), value.data(), static_cast<int>(value.size())) != 1)
    throw std::runtime_error("with_extension: OpenSSL failed");
  x509_extension_ptr ext{
      X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), critical ? 1 : 0, data.get())};
  if (!ext || X509_add_ext(copy.get(), ext.get(), -1) != 1 ||
      X509_sign(copy.get(), signer.key.native(), EVP_sha256()) <= 0)
    throw std::runtime_error("with_extension: OpenSSL failed");
  return certificate{std::move(copy)};
}

class identity_endorsement : public ::testing::Test {
protected:
  endorsement endorse(const issuer_material& by, const sha256_digest& key,
                      const std::string& node = "web-3", time_point at = {}) {
    return must(make_endorsement(by, key, node, at == time_point{} ? now : at), "endorse");
  }

  /// A leaf for "web-3" (a new key) signed by issuer-1, carrying the endorsements
  /// `set_for(key)` makes for its key in the extension (none if empty).
  template <class SetFor> test_node leaf_with(SetFor set_for) {
    test_node out;
    out.key = must(generate_key(), "key");
    auto set = set_for(must(spki_sha256(out.key), "spki"));
    std::vector<raw_extension> extra;
    if (!set.empty())
      extra.push_back({std::string{endorsements_oid},
                       must(encode_endorsement_extension(set), "encode extension")});
    const auto& by = pki.issuer();
    auto csr = must(make_csr(out.key, pki.mesh(), "web-3"), "CSR");
    out.chain =
        must(sign_node(csr, by.key, by.cert, {}, pki.mesh(), "web-3", now, node_validity, extra),
             "sign_node");
    return out;
  }

  /// A leaf as leaf_with makes, endorsed (its key, for web-3, at now) by each of `by`.
  test_node endorsed_by(const std::vector<const issuer_material*>& by) {
    return leaf_with([&](const sha256_digest& key) {
      std::vector<endorsement> set;
      for (const auto* issuer : by)
        set.push_back(endorse(*issuer, key));
      return set;
    });
  }

  /// check_quorum of `node` as a peer would run it after verify_peer.
  caf::expected<std::vector<std::string>> quorum_of(const test_node& node, std::size_t quorum,
                                                    const revocation_set& revoked = {}) {
    auto id = must(verify_peer(node.chain, pki.bundle(), {}, now), "verify_peer");
    return check_quorum(node.leaf(), id, pki.bundle(), revoked, now, quorum);
  }

  test_pki pki;
  time_point now = pki.now();
  issuer_material issuer1 = pki.material(pki.issuer());
  credentials second = pki.make_issuer("issuer-2", now - 1h);
  issuer_material issuer2 = pki.material(second);
  credentials third = pki.make_issuer("issuer-3", now - 1h);
  issuer_material issuer3 = pki.material(third);
  test_node web3 = pki.node("web-3");
  sha256_digest web3_key = key_of(web3.leaf());
};

// -- statements ----------------------------------------------------------------------------------

TEST_F(identity_endorsement, an_endorsement_by_an_issuer_verifies) {
  auto e = endorse(issuer2, web3_key);
  EXPECT_EQ(e.key, web3_key);
  EXPECT_EQ(e.node, "web-3");
  EXPECT_EQ(e.endorsed_at, std::chrono::floor<std::chrono::seconds>(now));
  EXPECT_EQ(e.issuer, must(to_der(second.cert), "DER"));
  auto who = must(verify_endorsement(e, pki.bundle(), now), "verify");
  EXPECT_EQ(who.node, "issuer-2");
  EXPECT_EQ(who.key, key_of(second.cert));
  EXPECT_EQ(who.not_after, must(not_after(second.cert), "notAfter"));
  // A little ahead of this node's clock is accepted (skew).
  EXPECT_TRUE(
      verify_endorsement(endorse(issuer1, web3_key, "web-3", now + 50s), pki.bundle(), now));
  EXPECT_TRUE(refused_with(make_endorsement(issuer1, web3_key, "bad name", now),
                           errc::invalid_argument, "node name"));
}

TEST_F(identity_endorsement, a_signature_over_other_fields_is_refused) {
  const auto good = endorse(issuer1, web3_key);
  const auto other_issuer = must(to_der(second.cert), "DER");
  const std::vector<std::pair<const char*, std::function<void(endorsement&)>>> edits{
      {"signature", [](auto& e) { e.signature[e.signature.size() / 2] ^= 0x01; }},
      {"key", [](auto& e) { e.key[0] ^= 0x01; }},
      {"node", [](auto& e) { e.node = "web-4"; }},
      {"time", [](auto& e) { e.endorsed_at -= 1s; }},
      // Another issuer's certificate under issuer-1's signature.
      {"issuer", [&](auto& e) { e.issuer = other_issuer; }},
  };
  for (const auto& [field, edit] : edits) {
    SCOPED_TRACE(field);
    auto e = good;
    edit(e);
    EXPECT_TRUE(refused_with(verify_endorsement(e, pki.bundle(), now), errc::bad_signature,
                             "does not verify"));
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST_F(identity_endorsement, revocations_and_endorsements_are_never_confused) {
  // The same fields, signed as a revocation, are no endorsement...
  auto stmt = must(make_revocation(issuer1, web3_key, "web-3", now), "revoke");
  ASSERT_TRUE(verify_revocation(stmt, pki.bundle(), now));
  endorsement as_endorsement{stmt.key, stmt.node, stmt.revoked_at, stmt.issuer, stmt.signature};
  EXPECT_TRUE(
      refused_with(verify_endorsement(as_endorsement, pki.bundle(), now), errc::bad_signature));
  // ... and an endorsement is no revocation (a seed could otherwise revoke whom it admits).
  auto e = endorse(issuer1, web3_key);
  revocation as_revocation{e.key, e.node, e.endorsed_at, e.issuer, e.signature};
  EXPECT_TRUE(
      refused_with(verify_revocation(as_revocation, pki.bundle(), now), errc::bad_signature));
}

TEST_F(identity_endorsement, an_endorsement_by_a_node_certificate_is_refused) {
  auto node1 = pki.node("node-1");
  auto by_node = pki.material(credentials{node1.key, node1.leaf()});
  EXPECT_TRUE(refused_with(verify_endorsement(endorse(by_node, web3_key), pki.bundle(), now),
                           errc::not_an_issuer, "not a CA"));
}

TEST_F(identity_endorsement, an_endorsement_by_an_issuer_of_another_mesh_is_refused) {
  test_pki other{now, "other.mesh"};
  auto foreign = other.material(other.issuer());
  EXPECT_TRUE(refused_with(verify_endorsement(endorse(foreign, web3_key), pki.bundle(), now),
                           errc::untrusted_chain));
  // Same mesh name, another root: no path to a root we hold either.
  test_pki twin{now, "test.mesh"};
  auto rogue = twin.material(twin.issuer());
  EXPECT_TRUE(refused_with(verify_endorsement(endorse(rogue, web3_key), pki.bundle(), now),
                           errc::untrusted_chain));
}

TEST_F(identity_endorsement, an_endorsement_by_an_expired_issuer_is_refused) {
  auto old = pki.make_issuer("issuer-0", now - 400 * 24h, 365 * 24h);
  auto e = endorse(pki.material(old), web3_key, "web-3", now - 40 * 24h);
  EXPECT_TRUE(verify_endorsement(e, pki.bundle(), now - 40 * 24h));
  EXPECT_TRUE(refused_with(verify_endorsement(e, pki.bundle(), now), errc::expired));
}

TEST_F(identity_endorsement, a_future_dated_endorsement_is_refused) {
  auto e = endorse(issuer1, web3_key, "web-3", now + 2min);
  EXPECT_TRUE(refused_with(verify_endorsement(e, pki.bundle(), now), errc::bad_request, "future"));
  EXPECT_TRUE(verify_endorsement(e, pki.bundle(), now + 2min));
}

TEST_F(identity_endorsement, malformed_endorsements_are_bad_requests) {
  const auto good = endorse(issuer1, web3_key);
  auto edited = [&](auto edit) {
    auto e = good;
    edit(e);
    return verify_endorsement(e, pki.bundle(), now);
  };
  EXPECT_TRUE(refused_with(edited([](auto& e) { e.node = "bad name"; }), errc::bad_request,
                           "an endorsement for an invalid node name"));
  EXPECT_TRUE(refused_with(edited([](auto& e) { e.node.clear(); }), errc::bad_request));
  EXPECT_TRUE(refused_with(edited([](auto& e) { e.issuer.clear(); }), errc::bad_request, "issuer"));
  EXPECT_TRUE(
      refused_with(edited([](auto& e) { e.issuer.resize(max_revocation_issuer_bytes + 1); }),
                   errc::bad_request, "issuer"));
  EXPECT_TRUE(
      refused_with(edited([](auto& e) { e.signature.clear(); }), errc::bad_request, "signature"));
  EXPECT_TRUE(
      refused_with(edited([](auto& e) { e.signature.resize(max_revocation_signature_bytes + 1); }),
                   errc::bad_request, "signature"));
  EXPECT_TRUE(
      refused_with(edited([](auto& e) { e.endorsed_at = unix_time{std::chrono::seconds{-1}}; }),
                   errc::bad_request, "1970"));
  EXPECT_TRUE(refused_with(edited([](auto& e) {
                             e.issuer = {0x30, 0x03, 0x01, 0x02, 0x03};
                           }),
                           errc::bad_certificate));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

// -- the extension --------------------------------------------------------------------------------

TEST_F(identity_endorsement, the_extension_round_trips) {
  std::vector<endorsement> sent;
  auto node = leaf_with([&](const sha256_digest& key) {
    sent = {endorse(issuer2, key), endorse(issuer1, key)};
    return sent;
  });
  EXPECT_EQ(must(endorsements_of(node.leaf()), "endorsements_of"), sent);
  // Non-critical, so that a peer that knows nothing of it still accepts the certificate.
  asn1_object_ptr oid{OBJ_txt2obj(std::string{endorsements_oid}.c_str(), 1)};
  const int at = X509_get_ext_by_OBJ(node.leaf().native(), oid.get(), -1);
  ASSERT_GE(at, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(node.leaf().native(), at)), 0);
  EXPECT_TRUE(verify_peer(node.chain, pki.bundle(), {}, now, "web-3"));
  // A leaf without the extension carries none.
  EXPECT_TRUE(must(endorsements_of(web3.leaf()), "none").empty());
  // The bounds of what an issuer puts in one.
  EXPECT_TRUE(refused_with(encode_endorsement_extension({}), errc::invalid_argument));
  std::vector<endorsement> full(max_admission_quorum, sent.front());
  EXPECT_TRUE(encode_endorsement_extension(full));
  full.push_back(sent.front());
  EXPECT_TRUE(refused_with(encode_endorsement_extension(full), errc::invalid_argument));
}

TEST_F(identity_endorsement, a_critical_or_garbage_extension_is_a_bad_certificate) {
  const auto e = endorse(issuer2, web3_key);
  const auto good = must(encode_endorsement_extension(std::vector<endorsement>{e}), "encode");
  const auto& by = pki.issuer();
  // Who the leaf names (path validation itself refuses an unknown critical extension).
  const auto id = must(verify_peer(web3.chain, pki.bundle(), {}, now), "verify_peer");
  auto check = [&](const certificate& leaf, const char* needle) {
    SCOPED_TRACE(needle);
    EXPECT_TRUE(refused_with(endorsements_of(leaf), errc::bad_certificate, needle));
    // Reported by the quorum check too, once it has to count.
    EXPECT_TRUE(refused_with(check_quorum(leaf, id, pki.bundle(), {}, now, 2),
                             errc::bad_certificate, needle));
    EXPECT_TRUE(check_quorum(leaf, id, pki.bundle(), {}, now, 1))
        << "a quorum of 1 does not read the extension";
  };
  EXPECT_TRUE(refused_with(
      verify_peer({with_extension(web3.leaf(), good, true, by), by.cert}, pki.bundle(), {}, now),
      errc::untrusted_chain, "critical"));
  check(with_extension(web3.leaf(), good, true, by), "critical");
  check(with_extension(with_extension(web3.leaf(), good, false, by), good, false, by), "twice");
  check(with_extension(web3.leaf(), {0x01, 0x02, 0x03}, false, by), "OCTET STRING");
  auto trailing = good;
  trailing.push_back(0);
  check(with_extension(web3.leaf(), trailing, false, by), "OCTET STRING");
  check(with_extension(web3.leaf(), octet_string("\xff\xff\xff"), false, by), "does not parse");
  check(
      with_extension(web3.leaf(),
                     octet_string(set_bytes(std::vector<endorsement>(max_admission_quorum + 1, e))),
                     false, by),
      "at most");
  auto short_key = e;
  auto bytes = set_bytes({short_key});
  v1::EndorsementSet msg;
  ASSERT_TRUE(msg.ParseFromString(bytes));
  msg.mutable_endorsements(0)->set_key("short");
  check(with_extension(web3.leaf(), octet_string(msg.SerializeAsString()), false, by),
        "cannot be represented");
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

// -- the quorum -----------------------------------------------------------------------------------

TEST_F(identity_endorsement, two_distinct_issuers_meet_a_quorum_of_two) {
  auto node = endorsed_by({&issuer2, &issuer1});
  EXPECT_EQ(must(quorum_of(node, 2), "quorum 2"),
            (std::vector<std::string>{"issuer-1", "issuer-2"}));
  EXPECT_TRUE(refused_with(quorum_of(node, 3), errc::quorum_not_met,
                           "node 'web-3' is vouched for by 2 issuers (issuer-1, issuer-2) of the 3 "
                           "admission_quorum requires"));
  // The signer counts whether or not its own endorsement is there.
  EXPECT_TRUE(quorum_of(endorsed_by({&issuer2}), 2));
  EXPECT_EQ(must(quorum_of(endorsed_by({&issuer2, &issuer3}), 3), "quorum 3"),
            (std::vector<std::string>{"issuer-1", "issuer-2", "issuer-3"}));
}

TEST_F(identity_endorsement, one_issuer_counts_once) {
  // The signer's own endorsements, twice.
  EXPECT_TRUE(refused_with(quorum_of(endorsed_by({&issuer1, &issuer1}), 2), errc::quorum_not_met,
                           "vouched for by 1 issuer (issuer-1) of the 2"));
  // Two certificates naming one issuer node (a re-keyed issuer) are one issuer.
  auto rekeyed = pki.material(pki.make_issuer("issuer-2", now - 2h));
  auto same_node = endorsed_by({&issuer2, &rekeyed, &issuer2});
  EXPECT_EQ(must(quorum_of(same_node, 2), "quorum 2"),
            (std::vector<std::string>{"issuer-1", "issuer-2"}));
  EXPECT_TRUE(refused_with(quorum_of(same_node, 3), errc::quorum_not_met, "2 issuers"));
  // Another certificate of the signer's own node is the signer.
  auto signer_again = pki.material(pki.make_issuer("issuer-1", now - 2h));
  EXPECT_TRUE(refused_with(quorum_of(endorsed_by({&signer_again}), 2), errc::quorum_not_met,
                           "1 issuer (issuer-1)"));
}

TEST_F(identity_endorsement, an_endorsement_of_another_key_or_node_does_not_count) {
  auto other_key =
      leaf_with([&](const sha256_digest&) { return std::vector{endorse(issuer2, web3_key)}; });
  EXPECT_TRUE(refused_with(quorum_of(other_key, 2), errc::quorum_not_met, "1 issuer (issuer-1)"));
  auto other_node = leaf_with(
      [&](const sha256_digest& key) { return std::vector{endorse(issuer2, key, "web-4")}; });
  EXPECT_TRUE(refused_with(quorum_of(other_node, 2), errc::quorum_not_met));
  // Forged, expired or foreign endorsements do not count either (and are no error).
  test_pki other{now, "other.mesh"};
  auto old = pki.material(pki.make_issuer("issuer-0", now - 400 * 24h, 365 * 24h));
  auto hostile = leaf_with([&](const sha256_digest& key) {
    auto forged = endorse(issuer2, key);
    forged.signature.back() ^= 0x01;
    return std::vector{forged, endorse(old, key, "web-3", now - 40 * 24h),
                       endorse(other.material(other.issuer()), key)};
  });
  EXPECT_TRUE(refused_with(quorum_of(hostile, 2), errc::quorum_not_met, "1 issuer (issuer-1)"));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST_F(identity_endorsement, a_revoked_issuer_key_does_not_vouch) {
  auto node = endorsed_by({&issuer2});
  EXPECT_TRUE(quorum_of(node, 2));
  EXPECT_TRUE(refused_with(quorum_of(node, 2, test_pki::revoking(second.cert)),
                           errc::quorum_not_met, "1 issuer (issuer-1)"));
}

TEST_F(identity_endorsement, an_issuers_own_node_certificate_meets_any_quorum) {
  // An issuer node presents a certificate for its issuer key.
  auto creds = must(self_issue(issuer1, "issuer-1", issuer1.key, now), "self_issue");
  test_node node{issuer1.key, creds.certs};
  EXPECT_EQ(must(quorum_of(node, 3), "quorum 3"), (std::vector<std::string>{"issuer-1"}));
  // Not so for another issuer's node certificate of that name.
  auto by_other = pki.node("issuer-1", second, now);
  EXPECT_TRUE(refused_with(quorum_of(by_other, 2), errc::quorum_not_met, "1 issuer (issuer-2)"));
}

TEST_F(identity_endorsement, a_leaf_with_an_issuers_name_but_another_key_is_no_issuer) {
  // Issue 13, finding 1: a joiner admitted under the issuer's name got a leaf that names
  // issuer-1 and is signed by issuer-1; it met any quorum although the root never vouched
  // for its key.
  auto key = must(generate_key(), "key");
  auto creds = must(self_issue(issuer1, "issuer-1", key, now), "self_issue");
  test_node node{key, creds.certs};
  EXPECT_TRUE(refused_with(quorum_of(node, 2), errc::quorum_not_met, "1 issuer (issuer-1)"));
  auto id = must(verify_peer(node.chain, pki.bundle(), {}, now), "verify");
  EXPECT_FALSE(is_issuer_own_leaf(id));
  auto own = must(self_issue(issuer1, "issuer-1", issuer1.key, now), "self_issue");
  EXPECT_TRUE(is_issuer_own_leaf(must(verify_peer(own.certs, pki.bundle(), {}, now), "verify")));
}

TEST_F(identity_endorsement, a_quorum_of_one_is_met_by_the_signer) {
  EXPECT_EQ(must(quorum_of(web3, 1), "quorum 1"), (std::vector<std::string>{"issuer-1"}));
  EXPECT_EQ(must(quorum_of(web3, 0), "quorum 0"), (std::vector<std::string>{"issuer-1"}));
  EXPECT_TRUE(refused_with(quorum_of(web3, 2), errc::quorum_not_met,
                           "node 'web-3' is vouched for by 1 issuer (issuer-1) of the 2 "
                           "admission_quorum requires"));
}

// -- at handshakes: trust_state::check_quorum_of ------------------------------------------------

TEST_F(identity_endorsement, handshakes_remember_a_met_quorum_until_the_trust_inputs_change) {
  // check_quorum_of's refusal as an expected, for refused_with.
  auto checked = [](caf::error err) -> caf::expected<bool> {
    if (err)
      return err;
    return true;
  };
  auto trust = std::make_shared<trust_state>(pki.bundle(), revocation_set{}, 2);
  auto node = endorsed_by({&issuer2});
  auto id = must(verify_peer(node.chain, pki.bundle(), {}, now), "verify_peer");
  auto snap = trust->current();
  EXPECT_FALSE(trust->check_quorum_of(snap, node.leaf(), id, now));
  EXPECT_FALSE(trust->check_quorum_of(snap, node.leaf(), id, now)) << "remembered";
  // A refusal is never remembered as a success, and a leaf without endorsements is refused
  // every time.
  auto lone = pki.node("web-3");
  auto lone_id = must(verify_peer(lone.chain, pki.bundle(), {}, now), "verify_peer");
  for (int i = 0; i < 2; ++i)
    EXPECT_TRUE(refused_with(checked(trust->check_quorum_of(snap, lone.leaf(), lone_id, now)),
                             errc::quorum_not_met));
  // Revoking the endorsing issuer's key makes a new snapshot: the memory is dropped.
  trust->revoke(test_pki::revoking(second.cert));
  EXPECT_TRUE(refused_with(checked(trust->check_quorum_of(trust->current(), node.leaf(), id, now)),
                           errc::quorum_not_met, "1 issuer (issuer-1)"));
  // Remembered only until the first endorsing issuer certificate expires.
  auto fresh = std::make_shared<trust_state>(pki.bundle(), revocation_set{}, 2);
  auto short_lived = pki.make_issuer("issuer-4", now - 1h, std::chrono::hours{2});
  auto issuer4 = pki.material(short_lived);
  auto node4 = endorsed_by({&issuer4});
  auto id4 = must(verify_peer(node4.chain, pki.bundle(), {}, now), "verify_peer");
  EXPECT_FALSE(fresh->check_quorum_of(fresh->current(), node4.leaf(), id4, now));
  const auto later = now + std::chrono::hours{2};
  EXPECT_TRUE(
      refused_with(checked(fresh->check_quorum_of(fresh->current(), node4.leaf(), id4, later)),
                   errc::quorum_not_met));
  // A quorum of 1 checks nothing.
  auto one = std::make_shared<trust_state>(pki.bundle());
  EXPECT_FALSE(one->check_quorum_of(one->current(), lone.leaf(), lone_id, now));
}

} // namespace
} // namespace starling::identity
