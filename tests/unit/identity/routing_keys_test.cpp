// The routing table's signatures and key book (identity/routing_keys.hpp): seals verify only
// under their own context and key, a key is learned only from a chain the trust bundle
// vouches for, issuer authority comes from an issuer key and never from a node key (a
// compromised node cannot sign policies), revocations and expiry withdraw learned keys, and
// the book stays within its bounds. Every certificate is made at run time (test_pki).
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/err.h>

#include "identity/admission.hpp"
#include "identity/errc.hpp"
#include "identity/routing_keys.hpp"
#include "tests/support/refused_with.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::refused_with;
using testing::test_node;
using testing::test_pki;

/// DER of every certificate of `certs`, in order.
std::vector<std::vector<std::uint8_t>> der_of(const chain& certs) {
  std::vector<std::vector<std::uint8_t>> out;
  for (const auto& cert : certs)
    out.push_back(must(to_der(cert), "DER"));
  return out;
}

class identity_routing_keys : public ::testing::Test {
protected:
  void TearDown() override { EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL's queue left unread"; }

  /// Bytes a record would carry.
  static std::vector<std::uint8_t> record(std::string_view text) {
    return {text.begin(), text.end()};
  }

  /// learn with this fixture's bundle and no revocations, at `at`.
  caf::expected<routing_signer> learn(routing_key_book& into, const chain& certs, time_point at) {
    return into.learn(certs, pki.bundle(), {}, at);
  }

  caf::expected<routing_signer> learn(const chain& certs) { return learn(book, certs, now); }

  /// verify in `book` with no revocations at `now`.
  caf::expected<routing_signer> check(std::string_view context, std::span<const std::uint8_t> bytes,
                                      const routing_signature& sig) {
    return book.verify(context, bytes, sig, {}, now);
  }

  test_pki pki;
  time_point now = pki.now();
  routing_key_book book;
  issuer_material issuer = pki.material(pki.issuer());
  const std::vector<std::uint8_t> instances = record("web-1 instances: 10.0.0.7:8080 v12");
  const std::vector<std::uint8_t> policy = record("split web: v1 90, v2 10 @hlc 77");
};

TEST_F(identity_routing_keys, a_node_key_signs_its_instances_and_the_book_verifies_them) {
  auto node = pki.node("web-1");
  auto sig = must(sign_routing(node.key, routing_owner_context, instances), "sign");
  EXPECT_EQ(sig.key_id, must(spki_sha256(node.key), "spki"));
  EXPECT_EQ(sig.key_id, must(spki_sha256(node.leaf()), "spki"));
  EXPECT_LE(sig.signature.size(), 72u); // DER ECDSA P-256
  auto signer = must(learn(node.chain), "learn");
  EXPECT_EQ(signer.node, "web-1");
  EXPECT_FALSE(signer.issuer);
  EXPECT_EQ(signer.key_id, sig.key_id);
  EXPECT_EQ(signer.not_after, must(not_after(node.leaf()), "notAfter"));
  EXPECT_EQ(must(check(routing_owner_context, instances, sig), "verify"), signer);
  EXPECT_TRUE(book.contains(sig.key_id));
  EXPECT_EQ(book.size(), 1u);
  EXPECT_EQ(book.signer_of(sig.key_id), signer);
  EXPECT_EQ(book.counters().learned, 1u);
  EXPECT_EQ(book.counters().verified, 1u);
  EXPECT_EQ(book.counters(), (routing_key_counters{.learned = 1, .verified = 1}));
}

TEST_F(identity_routing_keys, an_issuer_key_learned_from_its_certificate_signs_policies) {
  auto signer = must(learn({pki.issuer().cert}), "learn");
  EXPECT_EQ(signer.node, "issuer-1");
  EXPECT_TRUE(signer.issuer);
  EXPECT_EQ(signer.key_id, must(spki_sha256(pki.issuer().cert), "spki"));
  EXPECT_EQ(signer.not_after, must(not_after(pki.issuer().cert), "notAfter"));
  auto sig = must(sign_routing(pki.issuer().key, routing_policy_context, policy), "sign");
  EXPECT_EQ(must(check(routing_policy_context, policy, sig), "verify"), signer);
  // The issuer node's own instances are signed with the same key, under the owner context.
  auto own = must(sign_routing(pki.issuer().key, routing_owner_context, instances), "sign");
  EXPECT_EQ(must(check(routing_owner_context, instances, own), "verify").node, "issuer-1");
  EXPECT_EQ(*book.chain_of(signer.key_id), der_of({pki.issuer().cert}));
}

TEST_F(identity_routing_keys, an_issuer_nodes_own_node_certificate_is_an_issuer_key) {
  // The issuer node's node certificate certifies its issuer key: the same key the root
  // vouched for as an issuer, so it signs policies whichever chain taught it.
  auto creds = must(self_issue(issuer, "issuer-1", issuer.key, now), "self_issue");
  auto signer = must(learn(creds.certs), "learn");
  EXPECT_EQ(signer.node, "issuer-1");
  EXPECT_TRUE(signer.issuer);
  EXPECT_EQ(signer.key_id, must(spki_sha256(pki.issuer().cert), "spki"));
  EXPECT_EQ(signer.not_after, must(not_after(creds.certs.front()), "notAfter")); // 24 h
  auto sig = must(sign_routing(issuer.key, routing_policy_context, policy), "sign");
  EXPECT_TRUE(must(check(routing_policy_context, policy, sig), "verify").issuer);
  // The issuer certificate alone for the same key: one entry, kept with the later notAfter
  // (the issuer certificate's), and its chain is what is served from then on.
  auto again = must(learn({pki.issuer().cert}), "learn the issuer certificate");
  EXPECT_EQ(book.size(), 1u);
  EXPECT_EQ(again.not_after, must(not_after(pki.issuer().cert), "notAfter"));
  EXPECT_EQ(*book.chain_of(signer.key_id), der_of({pki.issuer().cert}));
  // The node chain again: the book keeps the entry that lasts longer, and says so.
  EXPECT_EQ(must(learn(creds.certs), "relearn"), again);
  EXPECT_EQ(*book.chain_of(signer.key_id), der_of({pki.issuer().cert}));
}

TEST_F(identity_routing_keys, a_node_key_can_never_sign_a_policy) {
  // The security property: a compromised node (or one admitted under an issuer's name, with
  // the issuer's certificate in its chain) comes out as a non-issuer, and its policy
  // signature is refused by the book itself, whatever the caller checks.
  auto web = pki.node("web-1");
  auto named_like_issuer = pki.node("issuer-1"); // signed by issuer-1, with another key
  auto second = pki.make_issuer("issuer-2", now - 1h);
  auto by_other = pki.node("issuer-1", second, now);
  for (const test_node* rogue : {&web, &named_like_issuer, &by_other}) {
    auto signer = must(learn(rogue->chain), "learn");
    EXPECT_FALSE(signer.issuer) << signer.node;
    auto sig = must(sign_routing(rogue->key, routing_policy_context, policy), "sign");
    EXPECT_TRUE(refused_with(check(routing_policy_context, policy, sig), errc::not_an_issuer,
                             "cannot sign a policy"));
    // Its own instances it may sign.
    auto own = must(sign_routing(rogue->key, routing_owner_context, instances), "sign");
    EXPECT_FALSE(must(check(routing_owner_context, instances, own), "verify").issuer);
  }
  // Learning the real issuer afterwards changes nothing for them.
  EXPECT_TRUE(must(learn({pki.issuer().cert}), "issuer").issuer);
  EXPECT_FALSE(book.signer_of(must(spki_sha256(named_like_issuer.key), "spki"))->issuer);
  // The leaf of a node chain signed with a rogue key can never present an issuer's key id:
  // the key id is computed from the certificate, and a seal naming the issuer's key id
  // does not verify with the rogue's signature.
  auto forged = must(sign_routing(named_like_issuer.key, routing_policy_context, policy), "sign");
  forged.key_id = must(spki_sha256(pki.issuer().cert), "spki");
  EXPECT_TRUE(refused_with(check(routing_policy_context, policy, forged), errc::bad_signature));
  EXPECT_EQ(book.counters().not_an_issuer, 3u);
}

TEST_F(identity_routing_keys, contexts_are_separate) {
  auto web = pki.node("web-1");
  must(learn(web.chain), "learn");
  must(learn({pki.issuer().cert}), "learn");
  // An issuer's owner signature is not a policy, nor its policy signature an owner record.
  auto owner = must(sign_routing(pki.issuer().key, routing_owner_context, policy), "sign");
  auto pol = must(sign_routing(pki.issuer().key, routing_policy_context, policy), "sign");
  EXPECT_TRUE(refused_with(check(routing_policy_context, policy, owner), errc::bad_signature,
                           "does not verify"));
  EXPECT_TRUE(refused_with(check(routing_owner_context, policy, pol), errc::bad_signature,
                           "does not verify"));
  EXPECT_TRUE(must(check(routing_policy_context, policy, pol), "verify").issuer);
  EXPECT_TRUE(must(check(routing_owner_context, policy, owner), "verify").issuer);
  // A node's owner signature does not pass under the policy context either (refused as a
  // non-issuer before its signature is even looked at), and the context is bound: the
  // separator keeps "context || 0 || bytes" from being read another way.
  auto node_owner = must(sign_routing(web.key, routing_owner_context, instances), "sign");
  EXPECT_TRUE(
      refused_with(check(routing_policy_context, instances, node_owner), errc::not_an_issuer));
  EXPECT_TRUE(
      refused_with(check("starling-routing-owner-2", instances, node_owner), errc::bad_signature));
  // Without the separator, "starling-routing-owner-" || "1" || bytes would be the same
  // input as the owner context's.
  std::vector<std::uint8_t> shifted = record("1");
  shifted.insert(shifted.end(), instances.begin(), instances.end());
  EXPECT_TRUE(
      refused_with(check("starling-routing-owner-", shifted, node_owner), errc::bad_signature));
  // Contexts that could be read two ways are refused outright.
  EXPECT_TRUE(refused_with(sign_routing(web.key, "", instances), errc::invalid_argument));
  EXPECT_TRUE(refused_with(sign_routing(web.key, std::string_view{"a\0b", 3}, instances),
                           errc::invalid_argument));
  EXPECT_TRUE(refused_with(check(std::string_view{"a\0b", 3}, instances, node_owner),
                           errc::invalid_argument));
}

TEST_F(identity_routing_keys, tampered_bytes_or_signatures_do_not_verify) {
  auto web = pki.node("web-1");
  auto other = pki.node("web-2");
  must(learn(web.chain), "learn");
  must(learn(other.chain), "learn");
  auto sig = must(sign_routing(web.key, routing_owner_context, instances), "sign");
  ASSERT_TRUE(check(routing_owner_context, instances, sig));
  for (std::size_t i = 0; i < instances.size(); ++i) {
    auto bytes = instances;
    bytes[i] ^= 0x01;
    EXPECT_TRUE(refused_with(check(routing_owner_context, bytes, sig), errc::bad_signature)) << i;
  }
  auto longer = instances;
  longer.push_back(0);
  EXPECT_TRUE(refused_with(check(routing_owner_context, longer, sig), errc::bad_signature));
  for (std::size_t i = 0; i < sig.signature.size(); ++i) {
    auto bad = sig;
    bad.signature[i] ^= 0x80;
    EXPECT_TRUE(refused_with(check(routing_owner_context, instances, bad), errc::bad_signature))
        << i;
  }
  // The seal names another learned key: that key did not sign.
  auto swapped = sig;
  swapped.key_id = must(spki_sha256(other.key), "spki");
  EXPECT_TRUE(
      refused_with(check(routing_owner_context, instances, swapped), errc::bad_signature, "web-2"));
  EXPECT_EQ(book.counters().bad_signature, instances.size() + 1 + sig.signature.size() + 1);
  EXPECT_EQ(book.counters().verified, 1u);
}

TEST_F(identity_routing_keys, oversized_or_empty_signatures_are_refused_before_openssl) {
  auto web = pki.node("web-1");
  must(learn(web.chain), "learn");
  routing_signature sig{must(spki_sha256(web.key), "spki"),
                        std::vector<std::uint8_t>(max_routing_signature_bytes + 1, 0x30)};
  EXPECT_TRUE(refused_with(check(routing_owner_context, instances, sig), errc::bad_signature,
                           "161 bytes (1 to 160)"));
  sig.signature.clear();
  EXPECT_TRUE(refused_with(check(routing_owner_context, instances, sig), errc::bad_signature,
                           "0 bytes (1 to 160)"));
  // At the bound, OpenSSL parses it, and it does not verify.
  sig.signature.assign(max_routing_signature_bytes, 0x30);
  EXPECT_TRUE(refused_with(check(routing_owner_context, instances, sig), errc::bad_signature,
                           "does not verify"));
  // An oversized seal of an unknown key is refused for its size first.
  sig.key_id.fill(7);
  sig.signature.assign(4096, 0);
  EXPECT_TRUE(refused_with(check(routing_owner_context, instances, sig), errc::bad_signature));
  EXPECT_EQ(book.counters().unknown_key, 0u);
}

TEST_F(identity_routing_keys, an_unknown_key_asks_for_its_chain_which_any_holder_serves) {
  auto web = pki.node("web-1");
  auto sig = must(sign_routing(web.key, routing_owner_context, instances), "sign");
  EXPECT_TRUE(refused_with(check(routing_owner_context, instances, sig), errc::routing_unknown_key,
                           format_pin(sig.key_id)));
  EXPECT_EQ(book.counters().unknown_key, 1u);
  EXPECT_FALSE(book.chain_of(sig.key_id));
  EXPECT_FALSE(book.signer_of(sig.key_id));
  // Another node holds it and serves its chain as DER; this book learns it from that.
  routing_key_book holder;
  must(learn(holder, web.chain, now), "holder learns");
  auto served = holder.chain_of(sig.key_id);
  ASSERT_TRUE(served);
  EXPECT_EQ(*served, der_of(web.chain));
  auto signer = must(book.learn(*served, pki.bundle(), {}, now), "learn served chain");
  EXPECT_EQ(signer, *holder.signer_of(sig.key_id));
  EXPECT_EQ(must(check(routing_owner_context, instances, sig), "verify"), signer);
  EXPECT_EQ(*book.chain_of(sig.key_id), *served);
}

TEST_F(identity_routing_keys, a_chain_of_another_mesh_is_refused) {
  test_pki other{now, "other.mesh"};
  test_pki same_name{now}; // another root that calls its mesh test.mesh too
  for (const test_pki* foreign : {&other, &same_name}) {
    EXPECT_TRUE(refused_with(learn(foreign->node("web-1").chain), errc::untrusted_chain));
    EXPECT_TRUE(refused_with(learn({foreign->issuer().cert}), errc::untrusted_chain));
    // Their issuer key is not an issuer key here: its seal names an unknown key.
    auto sig = must(sign_routing(foreign->issuer().key, routing_policy_context, policy), "sign");
    EXPECT_TRUE(
        refused_with(check(routing_policy_context, policy, sig), errc::routing_unknown_key));
  }
  EXPECT_EQ(book.size(), 0u);
  EXPECT_EQ(book.counters().refused_chains, 4u);
  EXPECT_EQ(book.counters().learned, 0u);
}

TEST_F(identity_routing_keys, expired_chains_are_refused_and_learned_keys_expire) {
  auto web = pki.node("web-1"); // valid for 24 h from now
  EXPECT_TRUE(refused_with(learn(book, web.chain, now + 25h), errc::expired));
  EXPECT_TRUE(refused_with(learn(pki.expired_node("web-2").chain), errc::expired));
  EXPECT_TRUE(refused_with(learn(pki.future_node("web-3").chain), errc::not_yet_valid));
  EXPECT_TRUE(refused_with(learn(book, {pki.issuer().cert}, now + 400 * 24h), errc::expired));
  EXPECT_EQ(book.size(), 0u);
  // Learned now, used after its notAfter: expired.
  auto signer = must(learn(web.chain), "learn");
  auto sig = must(sign_routing(web.key, routing_owner_context, instances), "sign");
  EXPECT_TRUE(book.verify(routing_owner_context, instances, sig, {}, signer.not_after));
  EXPECT_TRUE(
      refused_with(book.verify(routing_owner_context, instances, sig, {}, signer.not_after + 1s),
                   errc::expired));
  EXPECT_EQ(book.counters().expired, 1u);
}

TEST_F(identity_routing_keys, revoked_keys_are_refused_and_withdrawn) {
  auto web = pki.node("web-1");
  auto db = pki.node("db-1");
  const auto web_revoked = test_pki::revoking(web.leaf());
  // Revoked before learning: refused.
  EXPECT_TRUE(refused_with(book.learn(web.chain, pki.bundle(), web_revoked, now), errc::revoked));
  EXPECT_TRUE(refused_with(
      book.learn({pki.issuer().cert}, pki.bundle(), test_pki::revoking(pki.issuer().cert), now),
      errc::revoked));
  // Learned, then revoked: verify refuses it at once, forget_revoked drops it.
  must(learn(web.chain), "learn web");
  must(learn(db.chain), "learn db");
  must(learn({pki.issuer().cert}), "learn issuer");
  auto sig = must(sign_routing(web.key, routing_owner_context, instances), "sign");
  EXPECT_TRUE(book.verify(routing_owner_context, instances, sig, {}, now));
  EXPECT_TRUE(refused_with(book.verify(routing_owner_context, instances, sig, web_revoked, now),
                           errc::revoked, "is revoked"));
  EXPECT_EQ(book.counters().revoked, 1u);
  EXPECT_EQ(book.forget_revoked(web_revoked), 1u);
  EXPECT_FALSE(book.contains(sig.key_id));
  EXPECT_EQ(book.size(), 2u);
  EXPECT_EQ(book.forget_revoked(web_revoked), 0u);
  EXPECT_TRUE(refused_with(book.verify(routing_owner_context, instances, sig, web_revoked, now),
                           errc::routing_unknown_key));
  // Revoking the issuer's key withdraws the keys it certified too (as a handshake would
  // refuse the chain): db-1's key and the issuer's own.
  const auto issuer_revoked = test_pki::revoking(pki.issuer().cert);
  auto db_sig = must(sign_routing(db.key, routing_owner_context, instances), "sign");
  EXPECT_TRUE(
      refused_with(book.verify(routing_owner_context, instances, db_sig, issuer_revoked, now),
                   errc::revoked, "of its chain is revoked"));
  EXPECT_EQ(book.forget_revoked(issuer_revoked), 2u);
  EXPECT_EQ(book.size(), 0u);
  EXPECT_EQ(book.counters().forgotten, 3u);
}

TEST_F(identity_routing_keys, a_full_book_evicts_the_key_that_expires_first) {
  routing_key_book small{3};
  EXPECT_EQ(small.capacity(), 3u);
  auto a = pki.node("a", pki.issuer(), now, 10h);
  auto b = pki.node("b", pki.issuer(), now, 20h);
  auto c = pki.node("c", pki.issuer(), now, 30h);
  auto d = pki.node("d", pki.issuer(), now, 5h);
  auto e = pki.node("e", pki.issuer(), now, 40h);
  for (const test_node* n : {&a, &b, &c})
    must(learn(small, n->chain, now), "learn");
  const auto id = [](const test_node& n) { return must(spki_sha256(n.key), "spki"); };
  // Re-learning a known key (a refresh) takes no room.
  must(learn(small, a.chain, now), "relearn a");
  EXPECT_EQ(small.size(), 3u);
  EXPECT_EQ(small.counters().evicted, 0u);
  // d expires before all of them, yet it is the key a record waits for: it is kept, and a
  // (the earliest notAfter held, though re-learned last) makes room.
  must(learn(small, d.chain, now), "learn d");
  EXPECT_EQ(small.size(), 3u);
  EXPECT_FALSE(small.contains(id(a)));
  EXPECT_TRUE(small.contains(id(b)) && small.contains(id(c)) && small.contains(id(d)));
  must(learn(small, e.chain, now), "learn e");
  EXPECT_FALSE(small.contains(id(d)));
  EXPECT_TRUE(small.contains(id(b)) && small.contains(id(c)) && small.contains(id(e)));
  EXPECT_EQ(small.counters().evicted, 2u);
  EXPECT_EQ(small.counters().learned, 6u);
  // An expired key goes first, whatever it was issued for.
  must(learn(small, a.chain, now), "learn a again"); // evicts b (20 h)
  EXPECT_FALSE(small.contains(id(b)));
  must(learn(small, b.chain, now + 11h), "learn b at +11h"); // a (10 h) has expired
  EXPECT_FALSE(small.contains(id(a)));
  EXPECT_EQ(small.size(), 3u);
  // A book of 0 holds one key.
  routing_key_book tiny{0};
  EXPECT_EQ(tiny.capacity(), 1u);
  must(learn(tiny, a.chain, now), "a");
  must(learn(tiny, b.chain, now), "b");
  EXPECT_EQ(tiny.size(), 1u);
  EXPECT_TRUE(tiny.contains(id(b)));
}

TEST_F(identity_routing_keys, oversized_chains_are_refused_before_parsing) {
  auto web = pki.node("web-1");
  chain five = web.chain;
  while (five.size() < max_routing_chain_certificates + 1)
    five.push_back(pki.root().cert);
  EXPECT_TRUE(refused_with(learn(five), errc::bad_certificate, "5 certificates (at most 4)"));
  // As DER: the count and the total size are refused before a byte is parsed (garbage that
  // would not parse is refused for its size, not as a bad certificate).
  std::vector<std::vector<std::uint8_t>> garbage(5, std::vector<std::uint8_t>(10, 0xff));
  EXPECT_TRUE(refused_with(book.learn(garbage, pki.bundle(), {}, now), errc::bad_certificate,
                           "5 certificates"));
  garbage.assign(2, std::vector<std::uint8_t>(max_routing_chain_bytes / 2 + 1, 0xff));
  EXPECT_TRUE(refused_with(book.learn(garbage, pki.bundle(), {}, now), errc::bad_certificate,
                           "over 16384 DER bytes"));
  garbage.assign(1, std::vector<std::uint8_t>(100, 0xff));
  EXPECT_TRUE(refused_with(book.learn(garbage, pki.bundle(), {}, now), errc::bad_certificate,
                           "a routing signer chain: "));
  ERR_clear_error(); // the parse failure's entry, drained into the error above or not
  // A legitimate chain padded with certificates past 16 KiB in all.
  auto der = der_of(web.chain);
  while (der.size() < max_routing_chain_certificates)
    der.push_back(std::vector<std::uint8_t>(max_routing_chain_bytes / 2, 0x30));
  EXPECT_TRUE(
      refused_with(book.learn(der, pki.bundle(), {}, now), errc::bad_certificate, "DER bytes"));
  EXPECT_TRUE(refused_with(learn({}), errc::no_certificate));
  EXPECT_TRUE(refused_with(learn({certificate{}}), errc::bad_certificate, "empty certificate"));
  EXPECT_EQ(book.size(), 0u);
  EXPECT_EQ(book.counters().refused_chains, 7u);
}

TEST_F(identity_routing_keys, a_leaf_that_is_a_ca_or_not_a_node_is_refused) {
  // An issuer certificate travels alone; followed by anything it is no node chain.
  EXPECT_TRUE(refused_with(learn({pki.issuer().cert, pki.root().cert}), errc::bad_certificate,
                           "travels alone"));
  // A root alone names no node.
  EXPECT_TRUE(refused_with(learn({pki.root().cert}), errc::bad_certificate));
  // A CA the issuer signed (issuers are pathlen 0): no issuer of this mesh.
  auto key = must(generate_key(), "key");
  auto ca_spec = test_pki::node_spec(pki.mesh(), "sub-ca", now - 1h, now + 1h);
  ca_spec.is_ca = true;
  auto sub_ca = test_pki::forge(ca_spec, key, &pki.issuer());
  EXPECT_TRUE(refused_with(learn({sub_ca}), errc::untrusted_chain));
  EXPECT_TRUE(refused_with(learn({sub_ca, pki.issuer().cert}), errc::bad_certificate));
  // Node-profile leaves with a service URI, or none: not a node.
  auto svc_spec = test_pki::node_spec(pki.mesh(), "web", now - 1h, now + 1h);
  svc_spec.uri = "spiffe://" + pki.mesh() + "/svc/web";
  EXPECT_TRUE(
      refused_with(learn({test_pki::forge(svc_spec, key, &pki.issuer()), pki.issuer().cert}),
                   errc::bad_certificate));
  auto bare_spec = test_pki::node_spec(pki.mesh(), "web", now - 1h, now + 1h);
  bare_spec.uri.clear();
  EXPECT_TRUE(
      refused_with(learn({test_pki::forge(bare_spec, key, &pki.issuer()), pki.issuer().cert}),
                   errc::bad_certificate));
  // A node certificate passed off as an issuer's (alone, no issuer to chain to).
  EXPECT_TRUE(refused_with(learn({pki.node("web-1").leaf()}), errc::untrusted_chain));
  EXPECT_EQ(book.size(), 0u);
  ERR_clear_error();
}

TEST_F(identity_routing_keys, one_key_signs_for_one_node) {
  // The issuer key certified under another node's name: refused, it would sign as two.
  auto creds = must(self_issue(issuer, "web-9", issuer.key, now), "self_issue");
  EXPECT_TRUE(refused_with(learn(creds.certs), errc::name_mismatch, "issuer key of 'issuer-1'"));
  // A node key certified for web-1, then (same key) for web-2 while web-1's is valid.
  auto web = pki.node("web-1");
  must(learn(web.chain), "learn web-1");
  auto csr = must(make_csr(web.key, pki.mesh(), "web-2"), "csr");
  auto renamed =
      must(sign_node(csr, pki.issuer().key, pki.issuer().cert, {}, pki.mesh(), "web-2", now + 12h),
           "sign");
  EXPECT_TRUE(
      refused_with(learn(book, renamed, now + 12h), errc::name_mismatch, "is node 'web-1's"));
  EXPECT_EQ(book.signer_of(must(spki_sha256(web.key), "spki"))->node, "web-1");
  // Once web-1's certificate has expired, the new binding replaces it.
  auto signer = must(learn(book, renamed, now + 25h), "learn web-2");
  EXPECT_EQ(signer.node, "web-2");
  EXPECT_EQ(book.size(), 1u);
  EXPECT_EQ(*book.chain_of(signer.key_id), der_of(renamed));
}

TEST_F(identity_routing_keys, a_renewed_certificate_refreshes_the_key) {
  auto web = pki.node("web-1");
  auto first = must(learn(web.chain), "learn");
  // Renewal keeps the key; the new certificate lives longer.
  auto csr = must(make_csr(web.key, pki.mesh(), "web-1"), "csr");
  auto renewed =
      must(sign_node(csr, pki.issuer().key, pki.issuer().cert, {}, pki.mesh(), "web-1", now + 16h),
           "renew");
  auto second = must(learn(book, renewed, now + 16h), "learn renewed");
  EXPECT_EQ(second.key_id, first.key_id);
  EXPECT_EQ(second.not_after, first.not_after + 16h);
  EXPECT_EQ(*book.chain_of(first.key_id), der_of(renewed));
  // The old chain again (replayed): the book keeps the renewed one.
  EXPECT_EQ(must(learn(book, web.chain, now + 17h), "relearn old"), second);
  EXPECT_EQ(*book.chain_of(first.key_id), der_of(renewed));
  auto sig = must(sign_routing(web.key, routing_owner_context, instances), "sign");
  EXPECT_TRUE(book.verify(routing_owner_context, instances, sig, {}, now + 30h));
  EXPECT_EQ(book.size(), 1u);
  EXPECT_EQ(book.counters().learned, 3u);
}

} // namespace
} // namespace starling::identity
