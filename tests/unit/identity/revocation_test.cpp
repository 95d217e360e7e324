// Revocation statements and the revocation log (identity/revocation.hpp), with the run-time
// test PKI: statements that verify, forged ones, statements by issuers of another mesh, by
// node certificates, of CA keys, the log's CRDT laws and bound, and its file.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <sys/stat.h>

#include "identity/admission.hpp"
#include "identity/errc.hpp"
#include "identity/revocation.hpp"
#include "tests/support/process.hpp"
#include "tests/support/refused_with.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::must;
using testing::read_text;
using testing::refused_with;
using testing::temp_dir;
using testing::test_pki;
using testing::write_text;

/// An issuer's material from a key and certificate of `pki`'s mesh (make_revocation does
/// not look at the certificate's profile, so a node's works too: for forgeries).
issuer_material material_of(const test_pki& pki, const private_key& key, const certificate& cert,
                            std::string node) {
  return issuer_material{key,
                         cert,
                         pki.bundle(),
                         pki.mesh(),
                         std::move(node),
                         must(spki_sha256(pki.root().cert), "root pin")};
}

sha256_digest key_of(const certificate& cert) { return must(spki_sha256(cert), "spki"); }

class identity_revocation : public ::testing::Test {
protected:
  test_pki pki;
  time_point now = pki.now();
  issuer_material issuer1 = material_of(pki, pki.issuer().key, pki.issuer().cert, "issuer-1");
  credentials second = pki.make_issuer("issuer-2", now - 1h);
  issuer_material issuer2 = material_of(pki, second.key, second.cert, "issuer-2");
  testing::test_node node3 = pki.node("node-3");

  revocation revoke(const issuer_material& by, const sha256_digest& key,
                    const std::string& node = "node-3", time_point at = {}) {
    return must(make_revocation(by, key, node, at == time_point{} ? now : at), "make_revocation");
  }
};

// -- statements ----------------------------------------------------------------------------------

TEST_F(identity_revocation, a_statement_by_an_issuer_verifies) {
  auto stmt = revoke(issuer1, key_of(node3.leaf()));
  EXPECT_EQ(stmt.node, "node-3");
  EXPECT_EQ(stmt.revoked_at, std::chrono::floor<std::chrono::seconds>(now));
  auto who = must(verify_revocation(stmt, pki.bundle(), now), "verify");
  EXPECT_EQ(who.node, "issuer-1");
  EXPECT_EQ(who.key, key_of(pki.issuer().cert));
  EXPECT_EQ(who.not_after, must(not_after(pki.issuer().cert), "notAfter"));
  // Any issuer of the mesh may revoke any node key, whoever signed its certificate.
  EXPECT_TRUE(verify_revocation(revoke(issuer2, key_of(node3.leaf())), pki.bundle(), now));
  // A statement made a little ahead of this node's clock is accepted (skew).
  EXPECT_TRUE(verify_revocation(revoke(issuer1, key_of(node3.leaf()), "node-3", now + 50s),
                                pki.bundle(), now));
}

TEST_F(identity_revocation, a_forged_statement_is_refused) {
  const auto good = revoke(issuer1, key_of(node3.leaf()));
  auto sig = good;
  sig.signature[sig.signature.size() / 2] ^= 0x01;
  EXPECT_TRUE(refused_with(verify_revocation(sig, pki.bundle(), now), errc::bad_signature));
  auto key = good;
  key.key[0] ^= 0x01;
  EXPECT_TRUE(refused_with(verify_revocation(key, pki.bundle(), now), errc::bad_signature));
  auto node = good;
  node.node = "node-4";
  EXPECT_TRUE(refused_with(verify_revocation(node, pki.bundle(), now), errc::bad_signature));
  auto at = good;
  at.revoked_at -= 1s;
  EXPECT_TRUE(refused_with(verify_revocation(at, pki.bundle(), now), errc::bad_signature));
  // Another issuer's certificate under issuer-1's signature.
  auto swapped = good;
  swapped.issuer = must(to_der(second.cert), "DER");
  EXPECT_TRUE(refused_with(verify_revocation(swapped, pki.bundle(), now), errc::bad_signature));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST_F(identity_revocation, a_statement_by_an_issuer_of_another_mesh_is_refused) {
  test_pki other{now, "other.mesh"};
  auto foreign = material_of(other, other.issuer().key, other.issuer().cert, "issuer-1");
  EXPECT_TRUE(
      refused_with(verify_revocation(revoke(foreign, key_of(node3.leaf())), pki.bundle(), now),
                   errc::untrusted_chain));
  // Same mesh name, another root: no path to a root we hold either.
  test_pki twin{now, "test.mesh"};
  auto rogue = material_of(twin, twin.issuer().key, twin.issuer().cert, "issuer-1");
  EXPECT_TRUE(
      refused_with(verify_revocation(revoke(rogue, key_of(node3.leaf())), pki.bundle(), now),
                   errc::untrusted_chain));
}

TEST_F(identity_revocation, a_statement_by_a_node_certificate_is_refused) {
  auto node1 = pki.node("node-1");
  auto by_node = material_of(pki, node1.key, node1.leaf(), "node-1");
  EXPECT_TRUE(
      refused_with(verify_revocation(revoke(by_node, key_of(node3.leaf())), pki.bundle(), now),
                   errc::not_an_issuer, "not a CA"));
}

TEST_F(identity_revocation, a_statement_by_an_expired_issuer_is_refused) {
  auto old = pki.make_issuer("issuer-0", now - 400 * 24h, 365 * 24h);
  auto by_old = material_of(pki, old.key, old.cert, "issuer-0");
  auto stmt = revoke(by_old, key_of(node3.leaf()), "node-3", now - 40 * 24h);
  EXPECT_TRUE(verify_revocation(stmt, pki.bundle(), now - 40 * 24h));
  EXPECT_TRUE(refused_with(verify_revocation(stmt, pki.bundle(), now), errc::expired));
}

TEST_F(identity_revocation, ca_keys_cannot_be_revoked) {
  const auto root = key_of(pki.root().cert);
  const auto own = key_of(pki.issuer().cert);
  EXPECT_TRUE(refused_with(make_revocation(issuer1, root, "node-3", now), errc::revokes_ca_key));
  EXPECT_TRUE(refused_with(make_revocation(issuer1, own, "issuer-1", now), errc::revokes_ca_key));
  // issuer-2 revoking issuer-1's key: refused by any node that knows issuer-1's key. One
  // that never saw it cannot tell it from a node key (the documented limit).
  auto stmt = revoke(issuer2, own, "issuer-1");
  EXPECT_TRUE(verify_revocation(stmt, pki.bundle(), now));
  EXPECT_TRUE(
      refused_with(verify_revocation(stmt, pki.bundle(), now, {own}), errc::revokes_ca_key));
}

TEST_F(identity_revocation, malformed_statements_are_bad_requests) {
  const auto good = revoke(issuer1, key_of(node3.leaf()));
  const std::vector<std::pair<std::function<void(revocation&)>, errc>> edits{
      {[](revocation& s) { s.node = "bad name"; }, errc::bad_request},
      {[](revocation& s) { s.signature.clear(); }, errc::bad_request},
      {[](revocation& s) { s.signature.resize(max_revocation_signature_bytes + 1); },
       errc::bad_request},
      {[](revocation& s) { s.issuer.clear(); }, errc::bad_request},
      {[](revocation& s) { s.issuer.resize(max_revocation_issuer_bytes + 1); }, errc::bad_request},
      {[](revocation& s) {
         s.issuer = {1, 2, 3};
       },
       errc::bad_certificate},
  };
  for (const auto& [edit, code] : edits) {
    auto stmt = good;
    edit(stmt);
    EXPECT_TRUE(refused_with(verify_revocation(stmt, pki.bundle(), now), code));
  }
  auto future = revoke(issuer1, key_of(node3.leaf()), "node-3", now + 2min);
  EXPECT_TRUE(
      refused_with(verify_revocation(future, pki.bundle(), now), errc::bad_request, "future"));
  EXPECT_TRUE(refused_with(make_revocation(issuer1, key_of(node3.leaf()), "", now),
                           errc::invalid_argument));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

// -- the log -------------------------------------------------------------------------------------

TEST_F(identity_revocation, the_log_keeps_one_statement_per_key_and_issuer) {
  revocation_log log;
  const auto key = key_of(node3.leaf());
  const auto first = revoke(issuer1, key);
  EXPECT_EQ(must(log.add(first, pki.bundle(), now), "add"), true);
  EXPECT_EQ(must(log.add(first, pki.bundle(), now), "again"), false);
  // The same issuer again, later: the smaller statement stays, on every replica.
  const auto later = revoke(issuer1, key, "node-3", now + 10s);
  EXPECT_EQ(must(log.add(later, pki.bundle(), now + 10s), "later"), false);
  EXPECT_EQ(log.entries().begin()->second.statement, first);
  // Another issuer: a second entry for the same key.
  EXPECT_EQ(must(log.add(revoke(issuer2, key), pki.bundle(), now), "issuer-2"), true);
  EXPECT_EQ(log.size(), 2u);
  EXPECT_TRUE(log.revokes(key));
  EXPECT_FALSE(log.revokes(key_of(pki.node("node-4").leaf())));
  EXPECT_EQ(log.revoked(), test_pki::revoking(node3.leaf()));
  // A refused statement leaves the log as it was.
  auto forged = first;
  forged.signature[4] ^= 1;
  auto before = log;
  EXPECT_FALSE(log.add(forged, pki.bundle(), now));
  EXPECT_EQ(log, before);
}

TEST_F(identity_revocation, merge_is_commutative_associative_and_idempotent) {
  // A pool of verified entries: 2 issuers x 12 keys, plus re-revocations at other times.
  std::vector<revocation_log::entry> pool;
  for (int i = 0; i < 12; ++i) {
    sha256_digest key{};
    key[0] = static_cast<std::uint8_t>(i);
    key[31] = 0x5a;
    for (const auto* by : {&issuer1, &issuer2}) {
      for (auto at : {now, now - 1h}) {
        auto stmt = revoke(*by, key, "node-" + std::to_string(i), at);
        auto who = must(verify_revocation(stmt, pki.bundle(), now), "verify");
        pool.push_back({std::move(stmt), std::move(who)});
      }
    }
  }
  auto random_log = [&](std::uint64_t seed) {
    std::mt19937_64 gen{seed};
    revocation_log log;
    for (const auto& e : pool)
      if (gen() % 3 == 0)
        log.insert(e);
    return log;
  };
  auto merged = [](revocation_log a, const revocation_log& b) {
    a.merge(b);
    return a;
  };
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE(seed);
    auto a = random_log(seed), b = random_log(seed + 1000), c = random_log(seed + 2000);
    EXPECT_EQ(merged(a, b), merged(b, a));
    EXPECT_EQ(merged(merged(a, b), c), merged(a, merged(b, c)));
    EXPECT_EQ(merged(a, a), a);
    // The digest a sync compares: equal for equal logs, whatever the order of merging,
    // and different as soon as one log holds a statement the other lacks.
    EXPECT_EQ(merged(a, b).digest(), merged(b, a).digest());
    EXPECT_EQ(merged(a, b).digest() == a.digest(), merged(a, b) == a);
    EXPECT_EQ(merged(a, b).revoked(), [&] {
      auto s = a.revoked();
      s.merge(b.revoked());
      return s;
    }());
  }
}

TEST_F(identity_revocation, the_digest_names_the_statements_held) {
  revocation_log empty, one, other;
  sha256_digest key{};
  key[0] = 7;
  auto first = revoke(issuer1, key, "node-7", now);
  ASSERT_TRUE(must(one.add(first, pki.bundle(), now), "add"));
  EXPECT_NE(one.digest(), empty.digest());
  // The same key revoked by the same issuer at another time is another statement (the log
  // keeps the smaller, so replicas agree; the digest tells them apart before that).
  ASSERT_TRUE(
      must(other.add(revoke(issuer1, key, "node-7", now + 1s), pki.bundle(), now + 1s), "add"));
  EXPECT_NE(one.digest(), other.digest());
  other.merge(one);
  EXPECT_EQ(other.digest(), one.digest());
}

TEST_F(identity_revocation, the_log_is_bounded_deterministically) {
  const auto template_stmt = revoke(issuer1, key_of(node3.leaf()));
  const auto who = must(verify_revocation(template_stmt, pki.bundle(), now), "verify");
  auto entry_for = [&](std::uint32_t i) {
    auto e = revocation_log::entry{template_stmt, who};
    e.statement.key = {};
    for (int b = 0; b < 4; ++b)
      e.statement.key[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(i >> (24 - 8 * b));
    return e;
  };
  revocation_log low, high;
  for (std::uint32_t i = 0; i < max_revocations; ++i) {
    low.insert(entry_for(i));
    high.insert(entry_for(i + 100));
  }
  ASSERT_EQ(low.size(), max_revocations);
  // One more, larger than all: does not survive. One smaller: pushes the largest out.
  auto full = low;
  EXPECT_FALSE(full.insert(entry_for(max_revocations + 5)));
  EXPECT_EQ(full, low);
  auto shifted = high;
  EXPECT_TRUE(shifted.insert(entry_for(0)));
  EXPECT_EQ(shifted.size(), max_revocations);
  EXPECT_FALSE(shifted.revokes(entry_for(max_revocations + 99).statement.key));
  // Merging two full logs keeps the smallest keys of the union, in either order.
  auto ab = low, ba = high;
  ab.merge(high);
  ba.merge(low);
  EXPECT_EQ(ab, ba);
  EXPECT_EQ(ab, low);
}

TEST_F(identity_revocation, a_revocation_outlives_the_certificate_of_its_issuer) {
  // Issue 13: issuer A (short-lived certificate) revokes a key that issuer B (longer-lived)
  // also certified. The statement used to be pruned when A's certificate expired, letting
  // B's certificate of the revoked key back in.
  revocation_log log;
  auto short_lived = pki.make_issuer("issuer-a", now - 1h, 2h);
  auto by_a = material_of(pki, short_lived.key, short_lived.cert, "issuer-a");
  auto node = pki.node("node-3", second, now); // certified by issuer-2 (B), outliving A
  ASSERT_GT(must(not_after(node.leaf()), "not_after"), now + 1h);
  ASSERT_TRUE(log.add(revoke(by_a, key_of(node.leaf())), pki.bundle(), now));
  EXPECT_EQ(log.prune(now + 2h), 0u) << "A's certificate has expired: the statement stays";
  EXPECT_TRUE(log.revokes(key_of(node.leaf())));
  // Kept until every certificate of the key made before the revocation has expired.
  const auto& e = log.entries().begin()->second;
  EXPECT_EQ(log.retained_until(e),
            time_point{e.statement.revoked_at.time_since_epoch()} + max_node_certificate_lifetime);
  EXPECT_EQ(log.prune(now + max_node_certificate_lifetime - 1s), 0u);
  EXPECT_EQ(log.prune(now + max_node_certificate_lifetime), 1u);
  EXPECT_EQ(log.size(), 0u);
}

TEST_F(identity_revocation, a_revocation_is_kept_while_a_known_issuer_is_valid) {
  // An issuer the log knows of (issuer-1, valid for a year) could still hold a certificate
  // of the key made before it heard of the statement: keep it until that issuer expires.
  revocation_log log;
  auto short_lived = pki.make_issuer("issuer-9", now - 1h, 2h);
  auto by_short = material_of(pki, short_lived.key, short_lived.cert, "issuer-9");
  auto other = pki.node("node-4");
  ASSERT_TRUE(log.add(revoke(by_short, key_of(node3.leaf())), pki.bundle(), now));
  ASSERT_TRUE(log.add(revoke(issuer1, key_of(other.leaf()), "node-4"), pki.bundle(), now));
  const auto issuer1_expiry = must(not_after(pki.issuer().cert), "not_after");
  ASSERT_GT(issuer1_expiry, now + max_node_certificate_lifetime);
  EXPECT_EQ(log.prune(now + max_node_certificate_lifetime + 1h), 0u);
  EXPECT_TRUE(log.revokes(key_of(node3.leaf())));
  EXPECT_EQ(log.prune(issuer1_expiry), 2u);
}

// -- the file ------------------------------------------------------------------------------------

TEST_F(identity_revocation, the_log_round_trips_through_its_file) {
  temp_dir dir{"starling-revocations"};
  const auto file = dir.path() / "data" / "revocations";
  auto empty = must(revocation_log::load(file), "missing file");
  EXPECT_EQ(empty.size(), 0u);
  revocation_log log;
  ASSERT_TRUE(log.add(revoke(issuer1, key_of(node3.leaf())), pki.bundle(), now));
  ASSERT_TRUE(
      log.add(revoke(issuer2, key_of(pki.node("node-4").leaf()), "node-4"), pki.bundle(), now));
  ASSERT_FALSE(log.save(file));
  struct ::stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto back = must(revocation_log::load(file), "load");
  EXPECT_EQ(back, log);
  EXPECT_EQ(must(revocation_log::deserialize(log.serialize()), "text"), log);
}

TEST_F(identity_revocation, a_corrupt_file_is_an_error_naming_it) {
  temp_dir dir{"starling-revocations"};
  const auto file = dir.path() / "revocations";
  revocation_log log;
  ASSERT_TRUE(log.add(revoke(issuer1, key_of(node3.leaf())), pki.bundle(), now));
  const auto good = log.serialize();
  const auto first_line_end = good.find('\n') + 1;
  const auto line =
      good.substr(first_line_end, good.find('\n', first_line_end) + 1 - first_line_end);
  auto bad_hex = good;
  bad_hex[first_line_end + 12] = 'Z';
  auto bad_cert = good;
  bad_cert.replace(bad_cert.find(' ', bad_cert.find(" node-3 ") + 8) + 1, 8, "00000000");
  for (const auto& corrupt :
       {std::string{"garbage\n"}, std::string{}, good.substr(0, good.size() - 6),
        good.substr(0, good.size() - 1), good + "more\n", bad_hex, bad_cert,
        good.substr(0, first_line_end) + line + line + "end 2\n",
        good.substr(0, first_line_end) + line + "end 2\n"}) {
    write_text(file, corrupt);
    EXPECT_TRUE(refused_with(revocation_log::load(file), errc::invalid_argument, file.string()))
        << corrupt;
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
  ERR_clear_error();
}

} // namespace
} // namespace starling::identity
