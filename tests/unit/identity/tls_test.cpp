// TLS 1.3 between nodes, in process: two SSL sessions joined by a BIO pair, certificates
// from the run-time test PKI, a fake clock. Every identity refusal is checked on the side
// that refuses, and the hot swap keeps an open session working.
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <openssl/err.h>

#include "identity/errc.hpp"
#include "identity/tls.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using starling::testing::must;
using starling::testing::test_node;
using starling::testing::test_pki;

/// The shared test PKI (key generation is the slow part).
const test_pki& pki() {
  static const test_pki instance;
  return instance;
}

/// A fake clock the contexts read.
struct fake_clock {
  time_point now = pki().now();
  std::function<time_point()> fn() {
    return [this] { return now; };
  }
};

/// Outcome of driving a client and a server session to the end of their handshakes.
struct handshake_result {
  bool client_ok = false;
  bool server_ok = false;
};

/// Joins `c` and `s` with a BIO pair and runs both handshakes to completion or failure,
/// then lets the client read once so that it sees a server alert. Bounded in steps.
handshake_result handshake(SSL* c, SSL* s) {
  BIO* cb = nullptr;
  BIO* sb = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
  SSL_set_bio(c, cb, cb);
  SSL_set_bio(s, sb, sb);
  handshake_result r;
  bool c_failed = false;
  bool s_failed = false;
  for (int step = 0; step < 50 && !(r.client_ok && r.server_ok) && !(c_failed || s_failed);
       ++step) {
    if (!r.client_ok && !c_failed) {
      int rc = SSL_do_handshake(c);
      if (rc == 1)
        r.client_ok = true;
      else if (auto e = SSL_get_error(c, rc); e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        c_failed = true;
    }
    if (!r.server_ok && !s_failed) {
      int rc = SSL_do_handshake(s);
      if (rc == 1)
        r.server_ok = true;
      else if (auto e = SSL_get_error(s, rc); e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        s_failed = true;
    }
  }
  ERR_clear_error();
  return r;
}

/// Sends `text` from `from` to `to` over an established pair; returns what arrived.
std::string roundtrip(SSL* from, SSL* to, const std::string& text) {
  EXPECT_EQ(SSL_write(from, text.data(), static_cast<int>(text.size())),
            static_cast<int>(text.size()));
  std::string out(text.size() + 16, '\0');
  int n = SSL_read(to, out.data(), static_cast<int>(out.size()));
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

class tls_test : public ::testing::Test {
protected:
  std::shared_ptr<const tls_context> context_for(const test_node& node, bool anonymous = false) {
    tls_options o;
    o.key = node.key;
    o.certs = node.chain;
    o.trust = trust_;
    o.clock = clock_.fn();
    o.accept_anonymous_clients = anonymous;
    return must(tls_context::make(std::move(o)), "tls_context::make");
  }

  ssl_ptr session(const std::shared_ptr<const tls_context>& ctx, tls_role role,
                  std::optional<std::string> expected = std::nullopt) {
    return must(ctx->new_session(role, std::move(expected)), "new_session");
  }

  fake_clock clock_;
  std::shared_ptr<trust_state> trust_ = std::make_shared<trust_state>(pki().bundle());
  test_node a_ = pki().node("node-a");
  test_node b_ = pki().node("node-b");
};

TEST_F(tls_test, mutual_tls13_binds_both_names) {
  auto ca = context_for(a_);
  auto cb = context_for(b_);
  auto c = session(ca, tls_role::client, "node-b");
  auto s = session(cb, tls_role::server);
  auto r = handshake(c.get(), s.get());
  ASSERT_TRUE(r.client_ok && r.server_ok) << render(tls_context::refusal_of(c.get())) << " / "
                                          << render(tls_context::refusal_of(s.get()));
  EXPECT_EQ(SSL_version(c.get()), TLS1_3_VERSION);
  auto* cp = tls_context::peer_of(c.get());
  auto* sp = tls_context::peer_of(s.get());
  ASSERT_TRUE(cp && cp->identity && sp && sp->identity);
  EXPECT_EQ(cp->identity->node, "node-b");
  EXPECT_EQ(sp->identity->node, "node-a");
  EXPECT_EQ(sp->identity->mesh, pki().mesh());
  EXPECT_EQ(roundtrip(c.get(), s.get(), "push-pull"), "push-pull");
  EXPECT_EQ(roundtrip(s.get(), c.get(), "state"), "state");
}

TEST_F(tls_test, client_refuses_a_server_with_another_name) {
  auto c = session(context_for(a_), tls_role::client, "node-c");
  auto s = session(context_for(b_), tls_role::server);
  auto r = handshake(c.get(), s.get());
  EXPECT_FALSE(r.client_ok);
  EXPECT_TRUE(is(tls_context::refusal_of(c.get()), errc::name_mismatch))
      << render(tls_context::refusal_of(c.get()));
}

TEST_F(tls_test, server_refuses_a_client_without_certificate) {
  tls_options o;
  o.trust = trust_;
  o.clock = clock_.fn();
  auto anon = must(tls_context::make(std::move(o)), "anonymous client context");
  auto c = session(anon, tls_role::client, "node-b");
  auto s = session(context_for(b_), tls_role::server);
  auto r = handshake(c.get(), s.get());
  EXPECT_FALSE(r.server_ok);
  EXPECT_TRUE(is(tls_context::refusal_of(s.get()), errc::no_certificate))
      << render(tls_context::refusal_of(s.get()));
}

TEST_F(tls_test, admission_server_lets_an_anonymous_joiner_in_without_identity) {
  tls_options o;
  o.pinned_root = must(spki_sha256(pki().root().cert), "pin");
  o.clock = clock_.fn();
  auto joiner = must(tls_context::make(std::move(o)), "joiner context");
  // The seed sends its root too, so a joiner with only the pin can check the chain.
  auto seed_node = b_;
  seed_node.chain.push_back(pki().root().cert);
  auto c = session(joiner, tls_role::client, "node-b");
  auto s = session(context_for(seed_node, true), tls_role::server);
  auto r = handshake(c.get(), s.get());
  ASSERT_TRUE(r.client_ok && r.server_ok) << render(tls_context::refusal_of(c.get()));
  EXPECT_EQ(tls_context::peer_of(c.get())->identity->node, "node-b");
  // The server knows the client is anonymous: no identity, to be limited to admission.
  EXPECT_FALSE(tls_context::peer_of(s.get())->identity);
  EXPECT_EQ(roundtrip(c.get(), s.get(), "csr"), "csr");
}

TEST_F(tls_test, joiner_refuses_a_seed_of_another_mesh_root) {
  test_pki other{pki().now(), "other.mesh"};
  tls_options o;
  o.pinned_root = must(spki_sha256(pki().root().cert), "pin");
  o.clock = clock_.fn();
  auto joiner = must(tls_context::make(std::move(o)), "joiner context");
  auto impostor = other.node("node-b");
  impostor.chain.push_back(other.root().cert);
  tls_options so;
  so.key = impostor.key;
  so.certs = impostor.chain;
  so.trust = std::make_shared<trust_state>(other.bundle());
  so.clock = clock_.fn();
  so.accept_anonymous_clients = true;
  auto seed = must(tls_context::make(std::move(so)), "impostor context");
  auto c = session(joiner, tls_role::client, "node-b");
  auto s = session(seed, tls_role::server);
  EXPECT_FALSE(handshake(c.get(), s.get()).client_ok);
  EXPECT_TRUE(is(tls_context::refusal_of(c.get()), errc::untrusted_chain))
      << render(tls_context::refusal_of(c.get()));
}

TEST_F(tls_test, server_refuses_a_client_certificate_of_another_mesh) {
  test_pki other{pki().now(), "other.mesh"};
  auto foreign = other.node("node-x");
  tls_options fo;
  fo.key = foreign.key;
  fo.certs = foreign.chain;
  // It trusts our root (so it goes on to present its certificate), but its own chain
  // leads to the other mesh's root.
  fo.trust = trust_;
  fo.clock = clock_.fn();
  auto fctx = must(tls_context::make(std::move(fo)), "foreign context");
  auto c = session(fctx, tls_role::client);
  auto s = session(context_for(b_), tls_role::server);
  EXPECT_FALSE(handshake(c.get(), s.get()).server_ok);
  EXPECT_TRUE(is(tls_context::refusal_of(s.get()), errc::untrusted_chain))
      << render(tls_context::refusal_of(s.get()));
}

TEST_F(tls_test, expiry_follows_the_clock) {
  auto ca = context_for(a_);
  auto cb = context_for(b_);
  clock_.now += 25h; // node certificates live 24 h
  auto c = session(ca, tls_role::client, "node-b");
  auto s = session(cb, tls_role::server);
  EXPECT_FALSE(handshake(c.get(), s.get()).client_ok);
  EXPECT_TRUE(is(tls_context::refusal_of(c.get()), errc::expired))
      << render(tls_context::refusal_of(c.get()));
}

TEST_F(tls_test, revocation_applies_to_the_next_handshake) {
  auto ca = context_for(a_);
  auto cb = context_for(b_);
  auto c1 = session(ca, tls_role::client, "node-b");
  auto s1 = session(cb, tls_role::server);
  ASSERT_TRUE(handshake(c1.get(), s1.get()).server_ok);
  EXPECT_EQ(trust_->revoke(test_pki::revoking(a_.leaf())), 1u);
  auto c2 = session(ca, tls_role::client, "node-b");
  auto s2 = session(cb, tls_role::server);
  EXPECT_FALSE(handshake(c2.get(), s2.get()).server_ok);
  EXPECT_TRUE(is(tls_context::refusal_of(s2.get()), errc::revoked))
      << render(tls_context::refusal_of(s2.get()));
  // Counted by reason, for `starling certs`: the server refused node-a's revoked key.
  EXPECT_EQ(trust_->refusals().at("revoked"), 1u);
  EXPECT_EQ(trust_->refusals().size(), 1u);
}

// A chain verified once is remembered while the trust inputs stay the same: a peer met
// again costs no path validation (both contexts here share one trust_state, so the
// client's check of node-b's chain and the server's of node-a's count together).
TEST_F(tls_test, a_peer_met_again_costs_no_path_validation_until_the_trust_changes) {
  auto ca = context_for(a_);
  auto cb = context_for(b_);
  const auto meet = [&] {
    auto c = session(ca, tls_role::client, "node-b");
    auto s = session(cb, tls_role::server);
    auto r = handshake(c.get(), s.get());
    return r.client_ok && r.server_ok;
  };
  ASSERT_TRUE(meet());
  EXPECT_EQ(trust_->chains_verified(), 2u);
  ASSERT_TRUE(meet());
  ASSERT_TRUE(meet());
  EXPECT_EQ(trust_->chains_verified(), 2u) << "remembered";
  trust_->set_bundle(pki().bundle()); // a new snapshot, even with the same roots
  ASSERT_TRUE(meet());
  EXPECT_EQ(trust_->chains_verified(), 4u);
}

// A remembered chain counts only from the time it was verified until its certificates
// expire: later the handshake is refused as expired, and a clock set back before the first
// check verifies again.
TEST_F(tls_test, a_remembered_chain_counts_only_while_its_certificates_are_valid) {
  auto ca = context_for(a_);
  auto cb = context_for(b_);
  const auto meet = [&](std::optional<std::string> expected) {
    auto c = session(ca, tls_role::client, std::move(expected));
    auto s = session(cb, tls_role::server);
    auto r = handshake(c.get(), s.get());
    return std::make_pair(r.client_ok && r.server_ok, tls_context::refusal_of(c.get()));
  };
  const auto start = clock_.now;
  ASSERT_TRUE(meet("node-b").first);
  ASSERT_EQ(trust_->chains_verified(), 2u);
  // The expected name is checked against the remembered identity too.
  auto wrong = meet("node-c");
  EXPECT_FALSE(wrong.first);
  EXPECT_TRUE(is(wrong.second, errc::name_mismatch)) << render(wrong.second);
  EXPECT_EQ(trust_->chains_verified(), 2u);
  clock_.now = start - 30s; // still after notBefore (issued with a minute of allowance)
  ASSERT_TRUE(meet("node-b").first);
  EXPECT_EQ(trust_->chains_verified(), 4u) << "before the first check: verified again";
  clock_.now = start + 25h; // node certificates live 24 h
  auto late = meet("node-b");
  EXPECT_FALSE(late.first);
  EXPECT_TRUE(is(late.second, errc::expired)) << render(late.second);
}

TEST(tls_trust_state, counts_refusals_by_reason) {
  trust_state trust{test_pki{}.bundle()};
  EXPECT_TRUE(trust.refusals().empty());
  trust.count_refusal(make_error(errc::expired));
  trust.count_refusal(make_error(errc::expired));
  trust.count_refusal(make_error(errc::quorum_not_met));
  trust.count_refusal(caf::error{std::uint8_t{1}, caf::atom("other")});
  const std::map<std::string, std::uint64_t> want{
      {"expired", 2}, {"quorum_not_met", 1}, {"other", 1}};
  EXPECT_EQ(trust.refusals(), want);
}

TEST_F(tls_test, hot_swap_keeps_open_sessions_and_presents_the_new_certificate) {
  tls_context_holder holder{context_for(a_)};
  auto cb = context_for(b_);
  auto c1 = session(holder.current(), tls_role::client, "node-b");
  auto s1 = session(cb, tls_role::server);
  ASSERT_TRUE(handshake(c1.get(), s1.get()).server_ok);
  ASSERT_TRUE(tls_context::peer_of(s1.get())->identity);
  // Renewal: a new certificate for the same node, one hour later; the old context goes.
  clock_.now += 1h;
  auto renewed = pki().node("node-a", pki().issuer(), clock_.now);
  holder.replace(context_for(renewed));
  // The open session still carries data both ways.
  EXPECT_EQ(roundtrip(c1.get(), s1.get(), "still open"), "still open");
  EXPECT_EQ(roundtrip(s1.get(), c1.get(), "yes"), "yes");
  // A new handshake presents the renewed certificate.
  auto c2 = session(holder.current(), tls_role::client, "node-b");
  auto s2 = session(cb, tls_role::server);
  ASSERT_TRUE(handshake(c2.get(), s2.get()).server_ok);
  EXPECT_EQ(tls_context::peer_of(s2.get())->identity->not_after,
            must(not_after(renewed.leaf()), "not_after"));
  EXPECT_NE(tls_context::peer_of(s1.get())->identity->not_after,
            tls_context::peer_of(s2.get())->identity->not_after);
}

TEST_F(tls_test, a_tls12_client_is_refused) {
  auto c = ssl_ptr{SSL_new(SSL_CTX_new(TLS_method()))};
  // SSL_new took a reference to the context; drop ours.
  SSL_CTX_free(SSL_get_SSL_CTX(c.get()));
  SSL_set_max_proto_version(c.get(), TLS1_2_VERSION);
  SSL_set_connect_state(c.get());
  auto s = session(context_for(b_), tls_role::server);
  auto r = handshake(c.get(), s.get());
  EXPECT_FALSE(r.server_ok);
  EXPECT_FALSE(r.client_ok);
}

TEST_F(tls_test, make_refuses_inconsistent_options) {
  tls_options o;
  o.clock = clock_.fn();
  EXPECT_TRUE(is(tls_context::make(o).error(), errc::invalid_argument)); // no trust, no pin
  o.trust = trust_;
  o.key = a_.key;
  EXPECT_TRUE(is(tls_context::make(o).error(), errc::invalid_argument)); // key, no chain
  o.certs = b_.chain;                                                    // b's chain, a's key
  EXPECT_TRUE(is(tls_context::make(o).error(), errc::bad_certificate));
  tls_options joiner;
  joiner.pinned_root = sha256_digest{};
  joiner.clock = clock_.fn();
  auto ctx = must(tls_context::make(joiner), "joiner");
  EXPECT_TRUE(is(ctx->new_session(tls_role::server).error(), errc::invalid_argument));
}

} // namespace
} // namespace starling::identity
