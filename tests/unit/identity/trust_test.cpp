#include <gtest/gtest.h>
#include <openssl/err.h>

#include "identity/errc.hpp"
#include "identity/trust.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::test_node;
using testing::test_pki;

class identity_trust : public ::testing::Test {
protected:
  /// Expects verify_peer(presented) at `now` to fail with `code`; returns the message.
  std::string refused(const chain& presented, errc code, time_point now,
                      const revocation_set& revoked = {},
                      std::optional<std::string_view> expected = std::nullopt) {
    auto result = verify_peer(presented, pki.bundle(), revoked, now, expected);
    if (result) {
      ADD_FAILURE() << "accepted, expected " << to_string(code);
      return {};
    }
    EXPECT_TRUE(is(result.error(), code))
        << "expected " << to_string(code) << ", got " << render(result.error());
    EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
    return render(result.error());
  }
  std::string refused(const chain& presented, errc code) {
    return refused(presented, code, pki.now());
  }

  test_pki pki;
};

TEST_F(identity_trust, a_valid_chain_says_who_the_peer_is) {
  auto node = pki.node("web-1");
  auto id = verify_peer(node.chain, pki.bundle(), {}, pki.now());
  ASSERT_TRUE(id) << render(id.error());
  EXPECT_EQ(id->mesh, "test.mesh");
  EXPECT_EQ(id->node, "web-1");
  EXPECT_EQ(id->issuers, std::vector<std::string>{"issuer-1"});
  EXPECT_EQ(id->spki_sha256, must(spki_sha256(node.key), "spki"));
  EXPECT_EQ(id->root_pin, pki.bundle().pins().front());
  EXPECT_EQ(id->not_after, pki.now() + 24h);
  EXPECT_TRUE(verify_peer(node.chain, pki.bundle(), {}, pki.now(), "web-1"));
  // Valid over its whole life, clock skew allowance included.
  EXPECT_TRUE(verify_peer(node.chain, pki.bundle(), {}, pki.now() - 59s));
  EXPECT_TRUE(verify_peer(node.chain, pki.bundle(), {}, pki.now() + 24h - 1s));
}

TEST_F(identity_trust, a_root_in_the_presented_chain_is_harmless) {
  auto node = pki.node("n1");
  auto presented = node.chain;
  presented.push_back(pki.root().cert);
  EXPECT_TRUE(verify_peer(presented, pki.bundle(), {}, pki.now()));
}

TEST_F(identity_trust, no_certificate) {
  refused({}, errc::no_certificate);
  refused({certificate{}}, errc::no_certificate);
}

TEST_F(identity_trust, a_chain_of_another_mesh_is_untrusted) {
  test_pki other{pki.now(), "other.mesh"};
  refused(other.node("n1").chain, errc::untrusted_chain);
  // Same node name, same mesh name, another root: still untrusted.
  test_pki impostor{pki.now(), "test.mesh"};
  refused(impostor.node("n1").chain, errc::untrusted_chain);
}

TEST_F(identity_trust, a_leaf_without_its_issuer_is_untrusted) {
  refused({pki.node("n1").leaf()}, errc::untrusted_chain);
}

TEST_F(identity_trust, a_certificate_the_root_signed_for_another_mesh_is_foreign) {
  auto key = must(generate_key(), "key");
  auto leaf = test_pki::forge(
      test_pki::node_spec("other.mesh", "n1", pki.now() - 1min, pki.now() + 1h), key, &pki.root());
  refused({leaf}, errc::foreign_mesh);
  // An issuer of another mesh signed by our root (it carries no constraint of ours).
  certificate_spec issuer_spec{"x issuer",    node_uri("other.mesh", "x"), true, 0u, "", pki.now(),
                               pki.now() + 1h};
  auto issuer_key = must(generate_key(), "issuer key");
  credentials issuer{issuer_key, test_pki::forge(issuer_spec, issuer_key, &pki.root())};
  auto node_key = must(generate_key(), "node key");
  auto node = test_pki::forge(
      test_pki::node_spec("other.mesh", "n1", pki.now() - 1min, pki.now() + 1h), node_key, &issuer);
  refused({node, issuer.cert}, errc::foreign_mesh);
}

TEST_F(identity_trust, expired_and_not_yet_valid_leaves) {
  auto old = pki.expired_node("n1");
  refused(old.chain, errc::expired);
  auto future = pki.future_node("n1");
  refused(future.chain, errc::not_yet_valid);
  // The same certificates at other times.
  EXPECT_TRUE(verify_peer(old.chain, pki.bundle(), {}, pki.now() - 36h));
  EXPECT_TRUE(verify_peer(future.chain, pki.bundle(), {}, pki.now() + 2h));
}

TEST_F(identity_trust, expired_and_not_yet_valid_issuers) {
  // Leaves valid at now under issuers that are not (forged: sign_node caps the leaf).
  auto leaf_key = must(generate_key(), "key");
  auto spec = test_pki::node_spec("test.mesh", "n1", pki.now() - 1h, pki.now() + 1h);
  auto old_issuer = pki.make_issuer("old", pki.now() - 48h, 24h);
  auto msg =
      refused({test_pki::forge(spec, leaf_key, &old_issuer), old_issuer.cert}, errc::expired);
  EXPECT_NE(msg.find("depth 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("old issuer"), std::string::npos) << msg;
  auto new_issuer = pki.make_issuer("new", pki.now() + 2h);
  msg =
      refused({test_pki::forge(spec, leaf_key, &new_issuer), new_issuer.cert}, errc::not_yet_valid);
  EXPECT_NE(msg.find("depth 1"), std::string::npos) << msg;
  // And the whole chain once the issuer is past its life.
  auto issuer_end = must(not_after(pki.issuer().cert), "issuer");
  auto node = pki.node("n1", pki.issuer(), issuer_end - 1h);
  EXPECT_TRUE(verify_peer(node.chain, pki.bundle(), {}, issuer_end - 1s));
  refused(node.chain, errc::expired, issuer_end);
}

TEST_F(identity_trust, revoked_leaf_and_revoked_issuer) {
  auto node = pki.node("n1");
  refused(node.chain, errc::revoked, pki.now(), test_pki::revoking(node.leaf()));
  refused(node.chain, errc::revoked, pki.now(), test_pki::revoking(pki.issuer().cert));
  // Keyed on the public key: a new certificate for the same key is refused too.
  auto csr = must(make_csr(node.key, "test.mesh", "n1"), "csr");
  auto renewed = must(
      sign_node(csr, pki.issuer().key, pki.issuer().cert, {}, "test.mesh", "n1", pki.now() + 1h),
      "renewed");
  refused(renewed, errc::revoked, pki.now() + 2h, test_pki::revoking(node.leaf()));
  // Another node's key does not affect this one.
  EXPECT_TRUE(
      verify_peer(node.chain, pki.bundle(), test_pki::revoking(pki.node("n2").leaf()), pki.now()));
}

TEST_F(identity_trust, revocation_set_is_a_grow_only_set) {
  auto k1 = must(spki_sha256(pki.node("a").leaf()), "a");
  auto k2 = must(spki_sha256(pki.node("b").leaf()), "b");
  auto k3 = must(spki_sha256(pki.node("c").leaf()), "c");
  revocation_set a, b;
  EXPECT_TRUE(a.insert(k1));
  EXPECT_FALSE(a.insert(k1));
  EXPECT_TRUE(a.insert(k2));
  EXPECT_TRUE(b.insert(k2));
  EXPECT_TRUE(b.insert(k3));
  auto ab = a, ba = b;
  EXPECT_EQ(ab.merge(b), 1u);
  EXPECT_EQ(ba.merge(a), 1u);
  EXPECT_EQ(ab, ba);
  EXPECT_EQ(ab.size(), 3u);
  EXPECT_EQ(ab.merge(ab), 0u);
  EXPECT_TRUE(ab.contains(k1) && ab.contains(k2) && ab.contains(k3));
  EXPECT_FALSE(a.contains(k3));
  EXPECT_TRUE(std::is_sorted(ab.begin(), ab.end()));
}

TEST_F(identity_trust, name_mismatch) {
  auto node = pki.node("n1");
  auto msg = refused(node.chain, errc::name_mismatch, pki.now(), {}, "n2");
  EXPECT_NE(msg.find("n1"), std::string::npos) << msg;
}

TEST_F(identity_trust, an_issuer_signing_outside_its_name_constraint) {
  auto key = must(generate_key(), "key");
  auto spec = test_pki::node_spec("other.mesh", "n1", pki.now() - 1min, pki.now() + 1h);
  refused({test_pki::forge(spec, key, &pki.issuer()), pki.issuer().cert}, errc::name_constraint);
  // A URI that is not of the mesh's host at all.
  spec.uri = "https://evil.example/node/n1";
  refused({test_pki::forge(spec, key, &pki.issuer()), pki.issuer().cert}, errc::name_constraint);
}

TEST_F(identity_trust, a_leaf_used_as_an_issuer) {
  auto victim = pki.node("n1");
  credentials leaf_as_ca{victim.key, victim.leaf()};
  auto key = must(generate_key(), "key");
  auto spec = test_pki::node_spec("test.mesh", "n2", pki.now() - 1min, pki.now() + 1h);
  auto forged = test_pki::forge(spec, key, &leaf_as_ca);
  refused({forged, victim.leaf(), pki.issuer().cert}, errc::untrusted_chain);
  // An issuer below an issuer breaks pathlen:0.
  certificate_spec sub_spec{
      "sub issuer",  node_uri("test.mesh", "sub"), true, {}, "test.mesh", pki.now() - 1min,
      pki.now() + 1h};
  auto sub_key = must(generate_key(), "sub key");
  credentials sub{sub_key, test_pki::forge(sub_spec, sub_key, &pki.issuer())};
  auto below = test_pki::forge(spec, key, &sub);
  refused({below, sub.cert, pki.issuer().cert}, errc::untrusted_chain);
}

TEST_F(identity_trust, a_leaf_that_breaks_the_node_profile) {
  // An issuer's own certificate is a CA: not acceptable as a peer certificate.
  refused({pki.issuer().cert}, errc::bad_certificate);
  auto key = must(generate_key(), "key");
  auto spec = test_pki::node_spec("test.mesh", "n1", pki.now() - 1min, pki.now() + 1h);
  spec.uri.clear();
  refused({test_pki::forge(spec, key, &pki.issuer()), pki.issuer().cert}, errc::bad_certificate);
  spec.uri = "spiffe://test.mesh/svc/web";
  refused({test_pki::forge(spec, key, &pki.issuer()), pki.issuer().cert}, errc::bad_certificate);
  spec.uri = "spiffe://test.mesh/node/bad name";
  refused({test_pki::forge(spec, key, &pki.issuer()), pki.issuer().cert}, errc::bad_certificate);
  // Too many certificates.
  chain many(max_pem_certificates + 1, pki.issuer().cert);
  many.front() = pki.node("n1").leaf();
  refused(many, errc::bad_certificate);
}

TEST_F(identity_trust, bundles_hold_several_roots_of_one_mesh) {
  test_pki next{pki.now(), "test.mesh"}; // the new root of a rotation
  auto bundle = must(trust_bundle::make({pki.root().cert, next.root().cert}), "bundle");
  EXPECT_EQ(bundle.mesh(), "test.mesh");
  EXPECT_EQ(bundle.roots().size(), 2u);
  ASSERT_EQ(bundle.pins().size(), 2u);
  EXPECT_TRUE(bundle.contains_pin(must(spki_sha256(pki.root().cert), "old")));
  EXPECT_TRUE(bundle.contains_pin(must(spki_sha256(next.root().cert), "new")));
  EXPECT_FALSE(bundle.contains_pin(must(spki_sha256(pki.issuer().cert), "issuer")));
  auto a = verify_peer(pki.node("n1").chain, bundle, {}, pki.now());
  auto b = verify_peer(next.node("n2").chain, bundle, {}, pki.now());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->root_pin, bundle.pins()[0]);
  EXPECT_EQ(b->root_pin, bundle.pins()[1]);
  // PEM round trip, duplicates dropped.
  auto pem = must(bundle.to_pem(), "pem");
  auto back = must(trust_bundle::from_pem(pem + pem), "back");
  EXPECT_EQ(back.roots().size(), 2u);
  EXPECT_EQ(back.pins(), bundle.pins());
  // add(): same root again is a no-op.
  auto one = pki.bundle();
  EXPECT_FALSE(one.add(pki.root().cert));
  EXPECT_EQ(one.roots().size(), 1u);
  EXPECT_FALSE(one.add(next.root().cert));
  EXPECT_EQ(one.roots().size(), 2u);
}

TEST_F(identity_trust, bundles_refuse_what_is_not_a_root_of_the_mesh) {
  test_pki other{pki.now(), "other.mesh"};
  auto mixed = trust_bundle::make({pki.root().cert, other.root().cert});
  EXPECT_TRUE(is(mixed.error(), errc::foreign_mesh)) << render(mixed.error());
  EXPECT_TRUE(is(trust_bundle::make({}).error(), errc::invalid_argument));
  EXPECT_TRUE(is(trust_bundle::make({pki.issuer().cert}).error(), errc::bad_certificate));
  EXPECT_TRUE(is(trust_bundle::make({pki.node("n1").leaf()}).error(), errc::bad_certificate));
  // Self-signed CA without a spiffe://<mesh> URI.
  auto key = must(generate_key(), "key");
  certificate_spec spec{"x root", "", true, {}, "", pki.now(), pki.now() + 1h};
  auto no_uri = test_pki::forge(spec, key, nullptr);
  EXPECT_TRUE(is(trust_bundle::make({no_uri}).error(), errc::bad_certificate));
  EXPECT_TRUE(is(trust_bundle::make({certificate{}}).error(), errc::bad_certificate));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

/// Runs verify_peer the way a verify callback set with SSL_CTX_set_cert_verify_callback
/// would: libssl inits the context with the leaf and the whole presented stack.
struct callback_run {
  caf::expected<peer_identity> result{caf::error{}};
  int verify_error = -1;
};

callback_run run_as_callback(const chain& presented, const trust_bundle& bundle, time_point now) {
  x509_store_ptr empty_store{X509_STORE_new()};
  x509_stack_ptr stack{sk_X509_new_null()};
  for (const auto& cert : presented)
    sk_X509_push(stack.get(), share(cert.native()).release());
  x509_store_ctx_ptr ctx{X509_STORE_CTX_new()};
  X509_STORE_CTX_init(ctx.get(), empty_store.get(), presented.front().native(), stack.get());
  callback_run out;
  out.result = verify_peer(*ctx, bundle, {}, now, std::nullopt);
  out.verify_error = X509_STORE_CTX_get_error(ctx.get());
  return out;
}

TEST_F(identity_trust, verify_callback_form_sees_the_presented_chain) {
  auto node = pki.node("n1");
  auto ok = run_as_callback(node.chain, pki.bundle(), pki.now());
  ASSERT_TRUE(ok.result) << render(ok.result.error());
  EXPECT_EQ(ok.result->node, "n1");
  EXPECT_EQ(ok.verify_error, X509_V_OK);
  auto late = run_as_callback(node.chain, pki.bundle(), pki.now() + 25h);
  EXPECT_TRUE(is(late.result.error(), errc::expired));
  EXPECT_EQ(late.verify_error, X509_V_ERR_CERT_HAS_EXPIRED);
  test_pki other{pki.now(), "other.mesh"};
  auto foreign = run_as_callback(other.node("n1").chain, pki.bundle(), pki.now());
  EXPECT_TRUE(is(foreign.result.error(), errc::untrusted_chain));
  EXPECT_EQ(foreign.verify_error, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

} // namespace
} // namespace starling::identity
