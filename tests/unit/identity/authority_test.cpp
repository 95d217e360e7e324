// Signed issuer actions (identity/authority.hpp): keyring changes, ledgers and token records
// count only with an issuer key's signature, for this receiver, within the time window.
// Issue 13, finding 1: a member that has an issuer's name (or a copy of its public issuer
// certificate) could change the keyring and plant ledger records; now it cannot.
#include <gtest/gtest.h>
#include <openssl/err.h>

#include "identity/admission.hpp"
#include "identity/authority.hpp"
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

class identity_authority : public ::testing::Test {
protected:
  test_pki pki;
  time_point now = pki.now();
  issuer_material issuer = pki.material(pki.issuer());
  const std::string key = "qvZ3iD8x3nb2M7sdrRPu+8Y3dTHtH9gkn0wXm0oc5Dk=";
};

TEST_F(identity_authority, a_keyring_change_counts_only_as_signed_for_its_receiver) {
  auto seal = must(sign_keyring_change(issuer, "install", key, "node-3", now), "seal");
  auto who = must(verify_keyring_change("install", key, seal, "node-3", pki.bundle(), now), "ok");
  EXPECT_EQ(who.node, "issuer-1");
  // Another member, another op, another key: the signature does not cover them.
  EXPECT_TRUE(refused_with(verify_keyring_change("install", key, seal, "node-4", pki.bundle(), now),
                           errc::bad_signature));
  EXPECT_TRUE(refused_with(verify_keyring_change("remove", key, seal, "node-3", pki.bundle(), now),
                           errc::bad_signature));
  EXPECT_TRUE(
      refused_with(verify_keyring_change("install", key + "x", seal, "node-3", pki.bundle(), now),
                   errc::bad_signature));
  // Replayed later, or dated ahead: stale.
  EXPECT_TRUE(
      refused_with(verify_keyring_change("install", key, seal, "node-3", pki.bundle(), now + 3min),
                   errc::stale_statement));
  auto early = must(sign_keyring_change(issuer, "install", key, "node-3", now + 90s), "seal");
  EXPECT_TRUE(
      refused_with(verify_keyring_change("install", key, early, "node-3", pki.bundle(), now),
                   errc::bad_request)); // dated in the future, past the skew allowance
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(identity_authority, an_issuer_name_and_its_public_certificate_are_not_authority) {
  // What the hostile test did: a node admitted as "issuer-1" presents issuer-1's issuer
  // certificate (every chain carries it) and signs with its own node key.
  auto rogue = pki.node("issuer-1", pki.issuer(), now);
  issuer_material forged = issuer;
  forged.key = rogue.key; // the rogue's key, the real issuer certificate
  auto seal = must(sign_keyring_change(forged, "use", "0123456789abcdef", "node-3", now), "seal");
  EXPECT_TRUE(refused_with(
      verify_keyring_change("use", "0123456789abcdef", seal, "node-3", pki.bundle(), now),
      errc::bad_signature));
  // No seal at all (what the old wire sent: the certificate alone).
  issuer_seal bare{std::chrono::floor<std::chrono::seconds>(now), seal.issuer, {}};
  EXPECT_TRUE(refused_with(
      verify_keyring_change("use", "0123456789abcdef", bare, "node-3", pki.bundle(), now),
      errc::not_an_issuer));
  // A node certificate as the signer: not an issuer.
  issuer_material node_as_issuer = issuer;
  node_as_issuer.key = rogue.key;
  node_as_issuer.cert = rogue.leaf();
  auto by_node =
      must(sign_keyring_change(node_as_issuer, "use", "0123456789abcdef", "node-3", now), "seal");
  EXPECT_TRUE(refused_with(
      verify_keyring_change("use", "0123456789abcdef", by_node, "node-3", pki.bundle(), now),
      errc::not_an_issuer));
  ERR_clear_error();
}

TEST_F(identity_authority, ledgers_are_signed_for_their_receiver) {
  auto store = must(token_store::make("issuer-1"), "store");
  seeded_random rng{5};
  must(store.create(std::chrono::floor<std::chrono::seconds>(now), 1h, 1, rng, issuer.pin),
       "token");
  auto seal = must(sign_ledger(issuer, store.ledger(), {}, "issuer-2", now), "seal");
  EXPECT_TRUE(verify_ledger(store.ledger(), {}, seal, "issuer-2", pki.bundle(), now));
  EXPECT_TRUE(refused_with(verify_ledger(store.ledger(), {}, seal, "issuer-3", pki.bundle(), now),
                           errc::bad_signature));
  // Any change to the ledger after signing (a planted record, a spend) breaks it.
  auto planted = store.ledger();
  token_entry e = planted.entries().begin()->second;
  planted.insert(token_id{1, 2, 3, 4, 5, 6, 7, 8}, e);
  EXPECT_TRUE(refused_with(verify_ledger(planted, {}, seal, "issuer-2", pki.bundle(), now),
                           errc::bad_signature));
  // The issued list rides under the same signature: none can be added on the way.
  const std::vector<issued_certificate> issued{
      {"web-1", sha256_digest{}, std::chrono::floor<std::chrono::seconds>(now + 1h)}};
  auto with_issued = must(sign_ledger(issuer, store.ledger(), issued, "issuer-2", now), "seal");
  EXPECT_TRUE(verify_ledger(store.ledger(), issued, with_issued, "issuer-2", pki.bundle(), now));
  EXPECT_TRUE(
      refused_with(verify_ledger(store.ledger(), {}, with_issued, "issuer-2", pki.bundle(), now),
                   errc::bad_signature));
  ERR_clear_error();
}

TEST_F(identity_authority, a_token_record_counts_only_with_its_creators_seal) {
  auto store = must(token_store::make("issuer-1"), "store");
  seeded_random rng{6};
  auto token = must(
      store.create(std::chrono::floor<std::chrono::seconds>(now), 1h, 1, rng, issuer.pin), "token");
  auto entry = *store.ledger().find(token.id);
  EXPECT_TRUE(refused_with(verify_token_record(token.id, entry, pki.bundle(), now),
                           errc::not_an_issuer)); // unsealed
  ASSERT_FALSE(seal_token_record(issuer, token.id, entry));
  EXPECT_EQ(must(verify_token_record(token.id, entry, pki.bundle(), now), "ok").node, "issuer-1");
  // Any field changed after sealing: refused.
  auto more_uses = entry;
  more_uses.uses = 1000;
  EXPECT_TRUE(refused_with(verify_token_record(token.id, more_uses, pki.bundle(), now),
                           errc::bad_signature));
  auto other_id = token.id;
  other_id[0] ^= 1;
  EXPECT_TRUE(
      refused_with(verify_token_record(other_id, entry, pki.bundle(), now), errc::bad_signature));
  // A record of issuer-1 sealed by issuer-2 (a real issuer, but not the creator).
  auto second = pki.make_issuer("issuer-2", now - 1h);
  auto by_second = entry;
  auto material2 = pki.material(second);
  by_second.issuer = "issuer-2";
  ASSERT_FALSE(seal_token_record(material2, token.id, by_second));
  by_second.issuer = "issuer-1";
  EXPECT_FALSE(verify_token_record(token.id, by_second, pki.bundle(), now));
  // Sealing another issuer's record is refused at the source.
  auto err = seal_token_record(material2, token.id, entry);
  EXPECT_TRUE(is(err, errc::invalid_argument)) << render(err);
  ERR_clear_error();
}

} // namespace
} // namespace starling::identity
