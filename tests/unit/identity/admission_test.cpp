#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <sys/stat.h>

#include "admission.pb.h"
#include "identity/admission.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/process.hpp"
#include "tests/support/refused_with.hpp"
#include "tests/support/seeded_random.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

namespace fs = std::filesystem;
using testing::mode_of;
using testing::umask_scope;
using namespace std::chrono_literals;
using testing::must;
using testing::read_text;
using testing::refused_with;
using testing::seeded_random;
using testing::temp_dir;
using testing::test_node;
using testing::test_pki;
using testing::write_text;

std::string pem_of(const private_key& key) { return must(to_pem(key), "key PEM"); }
std::string pem_of(const chain& certs) { return must(to_pem(certs), "chain PEM"); }

bool same(const certificate& a, const certificate& b) {
  return X509_cmp(a.native(), b.native()) == 0;
}

bool same(const chain& a, const chain& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const auto& x, const auto& y) { return same(x, y); });
}

class identity_admission : public ::testing::Test {
protected:
  /// Writes an issuer directory (as `starling ca issuer` does) under dir/<sub>.
  fs::path write_issuer_dir(const std::string& key_pem, const std::string& cert_pem,
                            const std::string& bundle_pem, const std::string& sub = "issuer") {
    auto out = dir.path() / sub;
    write_text(out / "issuer.key", key_pem);
    write_text(out / "issuer.crt", cert_pem);
    write_text(out / "bundle.crt", bundle_pem);
    return out;
  }
  fs::path write_issuer_dir(const credentials& issuer, const trust_bundle& bundle,
                            const std::string& sub = "issuer") {
    return write_issuer_dir(pem_of(issuer.key), pem_of(chain{issuer.cert}),
                            must(bundle.to_pem(), "bundle PEM"), sub);
  }

  /// The material of `pki`'s issuer, through load_issuer.
  issuer_material issuer_of(const test_pki& of, const std::string& sub) {
    return must(load_issuer(write_issuer_dir(of.issuer(), of.bundle(), sub), now), "load_issuer");
  }

  /// A desk for `material` with its tokens file under dir/<sub>.
  issuer_desk desk_of(issuer_material material, const std::string& sub = "desk") {
    return must(issuer_desk::open(std::move(material), dir.path() / sub / "tokens",
                                  dir.path() / sub / "issued"),
                "desk");
  }

  /// A request of a new node `name` with `tokens`; its key goes to `key`.
  admission_request request(const std::string& name, std::vector<std::string> tokens,
                            private_key& key, const std::string& mesh = "test.mesh") {
    key = must(generate_key(), "joiner key");
    return {name, must(make_csr(key, mesh, name), "CSR"), std::move(tokens), {}};
  }

  test_pki pki;
  temp_dir dir{"starling-admission"};
  time_point now = pki.now();
  seeded_random rng{42};
};

// -- load_issuer ------------------------------------------------------------------------------

TEST_F(identity_admission, loads_an_issuer_directory) {
  auto material = issuer_of(pki, "issuer");
  EXPECT_EQ(material.mesh, "test.mesh");
  EXPECT_EQ(material.node, "issuer-1");
  EXPECT_EQ(material.pin, must(spki_sha256(pki.root().cert), "root pin"));
  EXPECT_TRUE(same(material.cert, pki.issuer().cert));
  EXPECT_EQ(material.bundle.pins(), pki.bundle().pins());
}

TEST_F(identity_admission, an_issuer_pins_the_root_it_chains_to) {
  test_pki next{now, "test.mesh"}; // the new root of a rotation
  auto both = must(trust_bundle::make({pki.root().cert, next.root().cert}), "bundle");
  auto material = must(load_issuer(write_issuer_dir(next.issuer(), both), now), "load_issuer");
  EXPECT_EQ(material.pin, must(spki_sha256(next.root().cert), "new root pin"));
}

TEST_F(identity_admission, a_missing_issuer_file_is_named) {
  for (const char* name : {"issuer.key", "issuer.crt", "bundle.crt"}) {
    SCOPED_TRACE(name);
    auto out = write_issuer_dir(pki.issuer(), pki.bundle(), std::string{"missing-"} + name);
    fs::remove(out / name);
    EXPECT_TRUE(refused_with(load_issuer(out, now), errc::io_failure, name));
  }
}

TEST_F(identity_admission, an_issuer_file_that_is_not_pem_is_named) {
  for (const char* name : {"issuer.key", "issuer.crt", "bundle.crt"}) {
    SCOPED_TRACE(name);
    auto out = write_issuer_dir(pki.issuer(), pki.bundle(), std::string{"garbage-"} + name);
    write_text(out / name, "not PEM\n");
    EXPECT_TRUE(refused_with(load_issuer(out, now), errc::invalid_argument, name));
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST_F(identity_admission, refuses_the_key_of_another_issuer) {
  auto other = pki.make_issuer("issuer-2", now - 1h);
  auto out = write_issuer_dir(pem_of(other.key), pem_of(chain{pki.issuer().cert}),
                              must(pki.bundle().to_pem(), "bundle"));
  EXPECT_TRUE(refused_with(load_issuer(out, now), errc::invalid_argument, "issuer.key"));
}

TEST_F(identity_admission, refuses_a_node_certificate_as_issuer) {
  auto node = pki.node("n1");
  auto out = write_issuer_dir(pem_of(node.key), pem_of(chain{node.leaf()}),
                              must(pki.bundle().to_pem(), "bundle"));
  EXPECT_TRUE(refused_with(load_issuer(out, now), errc::invalid_argument, "issuer.crt"));
}

TEST_F(identity_admission, refuses_a_root_as_issuer) {
  auto out = write_issuer_dir(pki.root(), pki.bundle());
  EXPECT_TRUE(refused_with(load_issuer(out, now), errc::invalid_argument, "issuer.crt"));
}

TEST_F(identity_admission, refuses_an_issuer_of_another_root) {
  test_pki other{now, "other.mesh"};
  EXPECT_TRUE(refused_with(load_issuer(write_issuer_dir(other.issuer(), pki.bundle(), "a"), now),
                           errc::invalid_argument, "bundle.crt"));
  test_pki impostor{now, "test.mesh"}; // the same mesh name, another root
  EXPECT_TRUE(refused_with(load_issuer(write_issuer_dir(impostor.issuer(), pki.bundle(), "b"), now),
                           errc::invalid_argument, "bundle.crt"));
}

TEST_F(identity_admission, refuses_an_expired_or_future_issuer) {
  auto old = pki.make_issuer("old", now - 60 * 24h, 30 * 24h);
  EXPECT_TRUE(refused_with(load_issuer(write_issuer_dir(old, pki.bundle(), "old"), now),
                           errc::expired, "issuer.crt"));
  auto young = pki.make_issuer("young", now + 1h);
  EXPECT_TRUE(refused_with(load_issuer(write_issuer_dir(young, pki.bundle(), "young"), now),
                           errc::not_yet_valid, "issuer.crt"));
}

// -- node credentials ---------------------------------------------------------------------------

TEST_F(identity_admission, self_issue_makes_a_chain_peers_accept) {
  auto material = issuer_of(pki, "issuer");
  auto key = must(generate_key(), "key");
  auto creds = must(self_issue(material, "issuer-1", key, now), "self_issue");
  ASSERT_EQ(creds.certs.size(), 2u);
  EXPECT_TRUE(same(creds.certs[1], pki.issuer().cert));
  auto peer = must(verify_peer(creds.certs, pki.bundle(), {}, now, "issuer-1"), "verify_peer");
  EXPECT_EQ(peer.issuers, std::vector<std::string>{"issuer-1"});
  EXPECT_EQ(peer.root_pin, material.pin);
  EXPECT_EQ(peer.spki_sha256, must(spki_sha256(key), "key SPKI"));
  EXPECT_EQ(peer.not_after, now + node_validity);
  EXPECT_TRUE(refused_with(self_issue(material, "bad name", key, now), errc::invalid_argument));
}

TEST_F(identity_admission, node_credentials_round_trip_through_files) {
  auto material = issuer_of(pki, "issuer");
  const auto data = dir.path() / "data" / "node";
  EXPECT_FALSE(must(load_node_credentials(data), "load from a missing dir"));
  auto first = must(self_issue(material, "n1", must(generate_key(), "key"), now), "creds");
  ASSERT_FALSE(store_node_credentials(data, first));
  EXPECT_EQ(mode_of(data), 0700u);
  EXPECT_EQ(mode_of(data / node_key_file), 0600u);
  EXPECT_EQ(mode_of(data / node_chain_file), 0644u);
  auto loaded = must(load_node_credentials(data), "load");
  ASSERT_TRUE(loaded);
  EXPECT_EQ(must(spki_sha256(loaded->key), "loaded key"), must(spki_sha256(first.key), "key"));
  EXPECT_TRUE(same(loaded->certs, first.certs));
  EXPECT_EQ(loaded->bundle.pins(), first.bundle.pins());
  // A renewal replaces every file.
  auto second = must(self_issue(material, "n1", must(generate_key(), "key"), now + 16h), "renew");
  ASSERT_FALSE(store_node_credentials(data, second));
  loaded = must(load_node_credentials(data), "reload");
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(same(loaded->certs, second.certs));
  EXPECT_EQ(mode_of(data / node_key_file), 0600u);
}

TEST_F(identity_admission, an_empty_data_dir_holds_no_credentials) {
  auto none = load_node_credentials(dir.path());
  ASSERT_TRUE(none) << render(none.error());
  EXPECT_FALSE(*none);
}

TEST_F(identity_admission, a_partial_credential_set_names_what_is_missing) {
  auto material = issuer_of(pki, "issuer");
  auto creds = must(self_issue(material, "n1", must(generate_key(), "key"), now), "creds");
  for (auto name : {node_key_file, node_chain_file, node_bundle_file}) {
    SCOPED_TRACE(name);
    auto data = dir.path() / ("partial-" + std::string{name});
    ASSERT_FALSE(store_node_credentials(data, creds));
    fs::remove(data / name);
    EXPECT_TRUE(refused_with(load_node_credentials(data), errc::invalid_argument, name));
  }
}

TEST_F(identity_admission, a_key_that_does_not_match_the_leaf_is_refused) {
  auto material = issuer_of(pki, "issuer");
  auto creds = must(self_issue(material, "n1", must(generate_key(), "key"), now), "creds");
  auto data = dir.path() / "data";
  ASSERT_FALSE(store_node_credentials(data, creds));
  ASSERT_FALSE(replace_file(data / node_key_file, pem_of(must(generate_key(), "other key"))));
  EXPECT_TRUE(refused_with(load_node_credentials(data), errc::invalid_argument, "node.key"));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
  write_text(data / node_chain_file, "garbage");
  EXPECT_TRUE(refused_with(load_node_credentials(data), errc::invalid_argument, "node.crt"));
}

// -- the wire -------------------------------------------------------------------------------------

TEST_F(identity_admission, a_request_round_trips) {
  private_key key;
  auto req = request("n1", {"stl1.a", "stl1.b"}, key);
  auto back = must(decode_admission_request(must(encode(req), "encode")), "decode");
  EXPECT_EQ(back.name, "n1");
  EXPECT_EQ(back.tokens, req.tokens);
  EXPECT_EQ(must(to_der(back.csr), "CSR DER"), must(to_der(req.csr), "CSR DER"));
}

TEST_F(identity_admission, a_grant_round_trips) {
  auto node = pki.node("n1");
  admission_grant grant{node.chain, pki.bundle(), "keyring text\n", "issuer-1"};
  auto back = must(decode_admission_grant(must(encode(grant), "encode")), "decode");
  EXPECT_TRUE(same(back.certs, node.chain));
  EXPECT_EQ(back.bundle.pins(), pki.bundle().pins());
  EXPECT_EQ(back.keyring, "keyring text\n");
  EXPECT_EQ(back.issuer, "issuer-1");
}

TEST_F(identity_admission, untrusted_requests_are_bad_requests) {
  private_key key;
  auto valid = request("n1", {"stl1.a"}, key);
  const auto csr_der = must(to_der(valid.csr), "CSR DER");
  auto encoded = [&](std::uint32_t version, const std::string& name, std::size_t tokens,
                     std::string csr) {
    v1::IdentityRequest msg;
    msg.set_version(version);
    auto* body = msg.mutable_admission();
    body->set_name(name);
    body->set_csr(std::move(csr));
    for (std::size_t i = 0; i < tokens; ++i)
      body->add_tokens("stl1.x");
    return msg.SerializeAsString();
  };
  const std::string good_csr(csr_der.begin(), csr_der.end());
  ASSERT_TRUE(decode_admission_request(encoded(1, "n1", max_admission_tokens, good_csr)));
  EXPECT_TRUE(refused_with(decode_admission_request("\x12\x05"
                                                    "ab"),
                           errc::bad_request, "parse"));
  EXPECT_TRUE(refused_with(decode_admission_request(std::string(max_admission_bytes + 1, '\0')),
                           errc::bad_request, "exceeds"));
  EXPECT_TRUE(refused_with(decode_admission_request(encoded(2, "n1", 1, good_csr)),
                           errc::bad_request, "version"));
  EXPECT_TRUE(refused_with(decode_admission_request(encoded(0, "n1", 1, good_csr)),
                           errc::bad_request, "version"));
  EXPECT_TRUE(refused_with(decode_admission_request(""), errc::bad_request, "version"));
  EXPECT_TRUE(
      refused_with(decode_admission_request(encoded(1, "n1", max_admission_tokens + 1, good_csr)),
                   errc::bad_request, "tokens"));
  EXPECT_TRUE(refused_with(decode_admission_request(encoded(1, "n1", 0, good_csr)),
                           errc::bad_request, "tokens"));
  for (const char* name : {"", "bad name", "-n1", "n/1"})
    EXPECT_TRUE(refused_with(decode_admission_request(encoded(1, name, 1, good_csr)),
                             errc::bad_request, "node name"))
        << name;
  EXPECT_TRUE(
      refused_with(decode_admission_request(encoded(1, "n1", 1, "not DER")), errc::bad_request));
  EXPECT_TRUE(refused_with(decode_admission_request(encoded(1, "n1", 1, "")), errc::bad_request));
  EXPECT_TRUE(refused_with(decode_admission_request(encoded(1, "n1", 1, good_csr + "x")),
                           errc::bad_request));
  // Invalid UTF-8 in a string field fails the parse (silently: no log flood).
  google::protobuf::LogSilencer silence; // protobuf complains when serializing it, too
  EXPECT_TRUE(refused_with(decode_admission_request(encoded(1, "n\xff", 1, good_csr)),
                           errc::bad_request, "parse"));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST_F(identity_admission, untrusted_grants_are_bad_requests) {
  auto node = pki.node("n1");
  const auto chain_pem = pem_of(node.chain);
  const auto bundle_pem = must(pki.bundle().to_pem(), "bundle");
  auto encoded = [&](std::uint32_t version, std::string certs, std::string bundle,
                     std::string issuer) {
    v1::IdentityResponse msg;
    msg.set_version(version);
    auto* body = msg.mutable_admission();
    body->set_chain(std::move(certs));
    body->set_bundle(std::move(bundle));
    body->set_issuer(std::move(issuer));
    return msg.SerializeAsString();
  };
  ASSERT_TRUE(decode_admission_grant(encoded(1, chain_pem, bundle_pem, "issuer-1")));
  EXPECT_TRUE(refused_with(decode_admission_grant("\x12\x05"
                                                  "ab"),
                           errc::bad_request, "parse"));
  EXPECT_TRUE(refused_with(decode_admission_grant(std::string(max_admission_bytes + 1, 'x')),
                           errc::bad_request, "exceeds"));
  EXPECT_TRUE(refused_with(decode_admission_grant(encoded(3, chain_pem, bundle_pem, "issuer-1")),
                           errc::bad_request, "version"));
  EXPECT_TRUE(refused_with(decode_admission_grant(encoded(1, "", bundle_pem, "issuer-1")),
                           errc::bad_request, "chain"));
  EXPECT_TRUE(refused_with(decode_admission_grant(encoded(1, "junk", bundle_pem, "issuer-1")),
                           errc::bad_request, "chain"));
  EXPECT_TRUE(refused_with(decode_admission_grant(encoded(1, chain_pem, "", "issuer-1")),
                           errc::bad_request, "bundle"));
  // A bundle must hold roots, not a node's chain.
  EXPECT_TRUE(refused_with(decode_admission_grant(encoded(1, chain_pem, chain_pem, "issuer-1")),
                           errc::bad_request, "bundle"));
  EXPECT_TRUE(refused_with(decode_admission_grant(encoded(1, chain_pem, bundle_pem, "")),
                           errc::bad_request, "issuer"));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST_F(identity_admission, flipped_or_truncated_bytes_never_crash_a_decoder) {
  private_key key;
  const auto req = must(encode(request("n1", {"stl1.a", "stl1.b"}, key)), "request");
  const auto grant =
      must(encode(admission_grant{pki.node("n1").chain, pki.bundle(), "k", "i-1"}), "grant");
  auto check = [](const auto& result) {
    EXPECT_TRUE(result || is(result.error(), errc::bad_request)) << render(result.error());
  };
  for (const auto* bytes : {&req, &grant}) {
    for (std::size_t i = 0; i < bytes->size(); ++i) {
      auto flipped = *bytes;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << (i % 8)));
      check(decode_admission_request(flipped));
      check(decode_admission_grant(flipped));
      auto cut = bytes->substr(0, i);
      check(decode_admission_request(cut));
      check(decode_admission_grant(cut));
    }
  }
  ERR_clear_error();
}

// -- the issuer's desk ------------------------------------------------------------------------

TEST_F(identity_admission, admits_a_node_with_a_token) {
  auto material = issuer_of(pki, "issuer");
  auto desk = desk_of(material);
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  auto token = must(decode(text), "decode token");
  EXPECT_EQ(token.pin, material.pin);
  EXPECT_EQ(token.issuer, "issuer-1");
  EXPECT_EQ(token.expiry, std::chrono::floor<std::chrono::seconds>(now + 1h));
  // The joiner's side and the issuer's, through the wire.
  private_key key;
  auto req = must(decode_admission_request(must(encode(request("n1", {text}, key)), "encode")),
                  "decode request");
  auto grant = must(desk.admit(req, now), "admit");
  EXPECT_EQ(grant.issuer, "issuer-1");
  EXPECT_TRUE(grant.keyring.empty());
  grant = must(decode_admission_grant(must(encode(grant), "encode grant")), "decode grant");
  auto creds = must(accept_grant(grant, key, "n1", token.pin, now), "accept_grant");
  EXPECT_TRUE(same(creds.certs, grant.certs));
  EXPECT_EQ(must(not_after(creds.certs.front()), "notAfter"), now + node_validity);
  const auto* entry = desk.tokens().ledger().find(token.id);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->spent(), 1u);
}

TEST_F(identity_admission, refuses_tokens_it_cannot_redeem) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  private_key key;
  auto admit = [&](const std::string& token, time_point at) {
    return desk.admit(request("n1", {token}, key), at);
  };
  // Forged: the secret edited.
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  auto forged = must(decode(text), "decode");
  forged.secret[0] ^= 1;
  EXPECT_TRUE(refused_with(admit(must(encode(forged), "encode"), now), errc::token_forged));
  // Expired.
  EXPECT_TRUE(refused_with(admit(text, now + 1h), errc::token_expired));
  // Exhausted on the second use of a one-use token.
  ASSERT_TRUE(admit(text, now));
  EXPECT_TRUE(refused_with(desk.admit(request("n2", {text}, key), now), errc::token_exhausted));
  // Malformed.
  EXPECT_TRUE(
      refused_with(desk.admit(request("n2", {"stl1.garbage"}, key), now), errc::token_malformed));
  EXPECT_TRUE(
      refused_with(desk.admit(admission_request{"n1", {}, {}, {}}, now), errc::bad_request));
}

TEST_F(identity_admission, refuses_a_token_of_another_mesh) {
  test_pki other{now, "other.mesh"};
  auto foreign = desk_of(issuer_of(other, "other"), "other-desk");
  auto text = must(foreign.create_token(now, 1h, 1, rng), "foreign token");
  auto desk = desk_of(issuer_of(pki, "issuer"));
  private_key key;
  EXPECT_TRUE(refused_with(desk.admit(request("n1", {text}, key), now), errc::token_wrong_mesh));
}

TEST_F(identity_admission, redeems_a_token_of_another_issuer_once_its_ledger_is_merged) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto second_dir = write_issuer_dir(pki.make_issuer("issuer-2", now - 1h), pki.bundle(), "i2");
  auto second = desk_of(must(load_issuer(second_dir, now), "issuer-2"), "desk-2");
  auto text = must(second.create_token(now, 1h, 1, rng), "token of issuer-2");
  private_key key;
  EXPECT_TRUE(refused_with(desk.admit(request("n1", {text}, key), now), errc::token_unknown));
  EXPECT_EQ(must(desk.merge_ledger(second.tokens().ledger(), now), "merge"), 0u);
  auto grant = must(desk.admit(request("n1", {text}, key), now), "admit after merge");
  EXPECT_EQ(grant.issuer, "issuer-1");
  // The merge was persisted with the spend.
  auto reopened = desk_of(issuer_of(pki, "issuer"));
  auto token = must(decode(text), "decode");
  ASSERT_NE(reopened.tokens().ledger().find(token.id), nullptr);
  EXPECT_EQ(reopened.tokens().ledger().find(token.id)->spent(), 1u);
}

TEST_F(identity_admission, a_refused_csr_does_not_spend_the_token) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  private_key key;
  auto req = request("n1", {text}, key);
  req.name = "n2"; // the CSR asks for n1
  EXPECT_TRUE(refused_with(desk.admit(req, now), errc::bad_request));
  auto other_mesh = request("n1", {text}, key, "other.mesh");
  EXPECT_TRUE(refused_with(desk.admit(other_mesh, now), errc::bad_request));
  EXPECT_TRUE(desk.admit(request("n1", {text}, key), now));
}

TEST_F(identity_admission, the_spend_is_persisted_before_the_grant) {
  const auto material = issuer_of(pki, "issuer");
  auto desk = desk_of(material);
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  const auto file = dir.path() / "desk" / "tokens";
  EXPECT_EQ(mode_of(file), 0600u);
  private_key key;
  ASSERT_TRUE(desk.admit(request("n1", {text}, key), now));
  // A restarted issuer knows the token is spent.
  auto reopened = desk_of(material);
  EXPECT_EQ(reopened.tokens().serialize(), desk.tokens().serialize());
  EXPECT_TRUE(refused_with(reopened.admit(request("n2", {text}, key), now), errc::token_exhausted));
}

TEST_F(identity_admission, no_grant_when_the_spend_cannot_be_persisted) {
  auto desk = desk_of(issuer_of(pki, "issuer"), "state");
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  const auto before = desk.tokens().serialize();
  // The directory of the tokens file is replaced by a file: every write fails.
  fs::remove_all(dir.path() / "state");
  write_text(dir.path() / "state", "in the way");
  private_key key;
  EXPECT_TRUE(refused_with(desk.admit(request("n1", {text}, key), now), errc::io_failure));
  EXPECT_EQ(desk.tokens().serialize(), before) << "the spend is not counted either";
  EXPECT_TRUE(refused_with(desk.create_token(now, 1h, 1, rng), errc::io_failure));
  EXPECT_EQ(desk.tokens().serialize(), before);
  // Once the disk is back, the token still admits.
  fs::remove(dir.path() / "state");
  EXPECT_TRUE(desk.admit(request("n1", {text}, key), now));
}

TEST_F(identity_admission, a_corrupt_tokens_file_fails_open) {
  auto material = issuer_of(pki, "issuer");
  auto desk = desk_of(material);
  ASSERT_TRUE(desk.create_token(now, 1h, 1, rng));
  const auto file = dir.path() / "desk" / "tokens";
  auto text = read_text(file);
  ASSERT_FALSE(text.empty());
  for (const auto& corrupt : {std::string{"garbage\n"}, text.substr(0, text.size() - 4)}) {
    write_text(file, corrupt);
    EXPECT_TRUE(refused_with(issuer_desk::open(material, file, file.parent_path() / "issued"),
                             errc::invalid_argument, file.string()));
  }
}

TEST_F(identity_admission, records_every_certificate_it_signs) {
  const auto material = issuer_of(pki, "issuer");
  auto desk = desk_of(material);
  auto text = must(desk.create_token(now, 1h, 3, rng), "token");
  private_key k1, k2, k3;
  ASSERT_TRUE(desk.admit(request("n1", {text}, k1), now));
  const auto key1 = must(spki_sha256(k1), "spki 1");
  revocation_set first_revoked; // n1 again, with a new key: only once the old one is revoked
  first_revoked.insert(key1);
  ASSERT_TRUE(desk.admit(request("n1", {text}, k2), now + 30min, first_revoked, 2h));
  ASSERT_TRUE(desk.admit(request("n2", {text}, k3), now));
  const auto key2 = must(spki_sha256(k2), "spki 2");
  ASSERT_EQ(desk.issued().size(), 3u);
  EXPECT_EQ(desk.issued()[0],
            (issued_certificate{"n1", key1, std::chrono::floor<std::chrono::seconds>(now + 24h)}));
  EXPECT_EQ(desk.keys_issued_to("n1", now), (std::vector<sha256_digest>{key1, key2}));
  // Expired certificates do not count; the list survives a restart.
  EXPECT_EQ(desk.keys_issued_to("n1", now + 3h), (std::vector<sha256_digest>{key1}));
  EXPECT_TRUE(desk.keys_issued_to("n3", now).empty());
  const auto file = dir.path() / "desk" / "issued";
  EXPECT_EQ(mode_of(file), 0600u);
  auto reopened = desk_of(material);
  EXPECT_EQ(reopened.issued(), desk.issued());
  // Expired records are dropped at the next write.
  auto later = must(desk.create_token(now + 25h, 1h, 1, rng), "later token");
  private_key k4;
  ASSERT_TRUE(desk.admit(request("n4", {later}, k4), now + 25h));
  ASSERT_EQ(desk.issued().size(), 1u);
  EXPECT_EQ(desk.issued()[0].node, "n4");
}

TEST_F(identity_admission, refuses_a_name_that_is_taken_without_spending_the_token) {
  // Issue 13, finding 1: a joiner with one valid token was admitted under the issuer's own
  // name, and under names of live members.
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto text = must(desk.create_token(now, 1h, 3, rng), "token");
  const auto id = must(decode(text), "decode").id;
  const auto k1 = must(generate_key(), "k1");
  const auto k2 = must(generate_key(), "k2");
  const auto k3 = must(generate_key(), "k3");
  name_holders holders;
  holders.issuers = {"issuer-2"};
  holders.live = {"web-1"};
  const auto admit = [&](const std::string& name, const std::string& token, const private_key& key,
                         time_point at, const revocation_set& revoked = {}) {
    admission_request req{name, must(make_csr(key, "test.mesh", name), "CSR"), {token}, {}};
    return desk.admit(req, at, revoked, node_validity, 1, holders);
  };
  EXPECT_TRUE(refused_with(admit("issuer-1", text, k1, now), errc::name_taken)); // its own name
  EXPECT_TRUE(refused_with(admit("issuer-2", text, k1, now), errc::name_taken)); // an issuer's
  EXPECT_TRUE(refused_with(admit("web-1", text, k1, now), errc::name_taken));    // a live member's
  EXPECT_EQ(desk.tokens().ledger().find(id)->spent(), 0u) << "no refusal spent the token";
  EXPECT_TRUE(desk.issued().empty());
  // A name with a valid certificate for another key: refused until that key is revoked or
  // the certificate expired. The same node asking again (same key, same name: its grant
  // was lost) is no new use.
  ASSERT_TRUE(admit("n1", text, k1, now));
  ASSERT_TRUE(admit("n1", text, k1, now));
  EXPECT_EQ(desk.tokens().ledger().find(id)->spent(), 1u);
  EXPECT_TRUE(refused_with(admit("n1", text, k2, now + 1min), errc::name_taken, "revoke it first"));
  revocation_set revoked;
  revoked.insert(must(spki_sha256(k1), "spki"));
  EXPECT_TRUE(admit("n1", text, k2, now + 1min, revoked));
  EXPECT_EQ(desk.tokens().ledger().find(id)->spent(), 2u);
  auto later = must(desk.create_token(now + 24h, 2h, 1, rng), "later token");
  EXPECT_TRUE(refused_with(admit("n1", later, k3, now + 24h), errc::name_taken)); // k2's is valid
  EXPECT_TRUE(admit("n1", later, k3, now + 24h + 2min)); // both earlier certificates expired
}

TEST_F(identity_admission, refuses_a_name_another_issuer_certified_while_that_key_is_valid) {
  // Issue 13, finding 1: "a certificate still valid for another key that the issuers know
  // of" — issuer-2 certified web-9, whose node is down (no live member holds the name).
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto text = must(desk.create_token(now, 1h, 2, rng), "token");
  const auto k1 = must(generate_key(), "k1");
  const auto theirs = must(spki_sha256(must(generate_key(), "k0")), "spki");
  const auto until = std::chrono::floor<std::chrono::seconds>(now + 24h);
  desk.learn_issued("issuer-2", {{"web-9", theirs, until}}, now);
  admission_request req{"web-9", must(make_csr(k1, "test.mesh", "web-9"), "CSR"), {text}, {}};
  EXPECT_TRUE(refused_with(desk.admit(req, now), errc::name_taken, "still valid"));
  // Revoked: free again.
  revocation_set revoked;
  revoked.insert(theirs);
  EXPECT_TRUE(desk.admit(req, now, revoked));
  // A newer list from issuer-2 replaces the old; its own list is never replaced.
  desk.learn_issued("issuer-2", {}, now);
  desk.learn_issued("issuer-1", {}, now);
  EXPECT_EQ(desk.keys_issued_to("web-9", now).size(), 1u);
}

TEST_F(identity_admission, refuses_a_revoked_key_without_spending_the_token) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  private_key key;
  auto req = request("n1", {text}, key);
  revocation_set revoked;
  revoked.insert(must(spki_sha256(key), "spki"));
  EXPECT_TRUE(refused_with(desk.admit(req, now, revoked), errc::revoked, "revoked"));
  EXPECT_TRUE(desk.issued().empty());
  EXPECT_TRUE(desk.admit(request("n1", {text}, key), now)) << "the token was not spent";
}

TEST_F(identity_admission, a_corrupt_issued_file_fails_open) {
  auto material = issuer_of(pki, "issuer");
  auto desk = desk_of(material);
  auto text = must(desk.create_token(now, 1h, 1, rng), "token");
  private_key key;
  ASSERT_TRUE(desk.admit(request("n1", {text}, key), now));
  const auto file = dir.path() / "desk" / "issued";
  const auto good = read_text(file);
  auto bad_key = good;
  bad_key[good.find("issued n1 ") + 10] = 'X';
  for (const auto& corrupt : {std::string{"garbage\n"}, good.substr(0, good.size() - 4),
                              good + "issued n2 00 1\n", bad_key, std::string{}}) {
    write_text(file, corrupt);
    EXPECT_TRUE(refused_with(issuer_desk::open(material, dir.path() / "desk" / "tokens", file),
                             errc::invalid_argument, file.string()))
        << corrupt;
  }
  EXPECT_EQ(must(deserialize_issued(serialize_issued(desk.issued())), "round trip"), desk.issued());
}

// -- renewal -----------------------------------------------------------------------------------

class identity_renewal : public identity_admission {
protected:
  /// A renewal request of `node` for its own key, through the wire.
  renewal_request renewal_of(const std::string& name, const test_node& node) {
    renewal_request req{name, must(make_csr(node.key, pki.mesh(), name), "CSR"), node.chain};
    auto decoded = must(decode_identity_request(must(encode(req), "encode")), "decode");
    return std::get<renewal_request>(std::move(decoded));
  }

  /// `node`'s credentials as it holds them.
  node_credentials creds_of(const test_node& node) { return {node.key, node.chain, pki.bundle()}; }

  /// Admitted by another issuer of the mesh a while ago: renewal works with any issuer.
  credentials other = pki.make_issuer("issuer-2", now - 48h);
  test_node n1 = pki.node("n1", other, now - 16h);
};

TEST_F(identity_renewal, renews_a_member_for_its_own_key_without_a_token) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto grant = must(desk.renew(renewal_of("n1", n1), "n1", now, {}, 2h), "renew");
  EXPECT_EQ(grant.issuer, "issuer-1");
  grant = must(decode_renewal_grant(must(encode(grant), "encode grant")), "decode grant");
  auto creds = must(accept_renewal(grant, creds_of(n1), "n1", now), "accept_renewal");
  EXPECT_EQ(must(spki_sha256(creds.key), "key"), must(spki_sha256(n1.key), "old key"));
  EXPECT_EQ(must(not_after(creds.certs.front()), "notAfter"), now + 2h);
  EXPECT_TRUE(same(creds.certs[1], pki.issuer().cert)) << "signed by this issuer";
  // Recorded (revocable by name), and no token was involved.
  EXPECT_EQ(desk.keys_issued_to("n1", now),
            (std::vector<sha256_digest>{must(spki_sha256(n1.key), "spki")}));
  EXPECT_TRUE(desk.tokens().ledger().entries().empty());
}

TEST_F(identity_renewal, refuses_what_is_not_the_peers_own_valid_key) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  // Asked by another member than the one named.
  EXPECT_TRUE(refused_with(desk.renew(renewal_of("n1", n1), "n2", now), errc::name_mismatch, "n2"));
  // A CSR for a new key, with the old chain: the key never changes by renewal.
  auto rekeyed = renewal_of("n1", n1);
  auto fresh = must(generate_key(), "new key");
  rekeyed.csr = must(make_csr(fresh, pki.mesh(), "n1"), "CSR");
  EXPECT_TRUE(refused_with(desk.renew(rekeyed, "n1", now), errc::bad_request, "another key"));
  // The chain of another node (with its key), asked under our name.
  auto n2 = pki.node("n2");
  EXPECT_TRUE(refused_with(desk.renew(renewal_of("n1", n2), "n1", now), errc::name_mismatch));
  // A revoked key, an expired chain, a chain of another mesh's root.
  EXPECT_TRUE(refused_with(
      desk.renew(renewal_of("n1", n1), "n1", now, test_pki::revoking(n1.leaf())), errc::revoked));
  EXPECT_TRUE(refused_with(desk.renew(renewal_of("n1", n1), "n1", now + 9h), errc::expired));
  test_pki foreign{now, "test.mesh"};
  EXPECT_TRUE(refused_with(desk.renew(renewal_of("n1", foreign.node("n1")), "n1", now),
                           errc::untrusted_chain));
  EXPECT_TRUE(desk.issued().empty()) << "nothing was signed";
}

TEST_F(identity_renewal, the_node_checks_the_grant) {
  auto desk = desk_of(issuer_of(pki, "issuer"));
  auto grant = must(desk.renew(renewal_of("n1", n1), "n1", now), "renew");
  // A grant for another node's key, another name, or expired at the node's clock.
  auto n2 = pki.node("n1");
  EXPECT_TRUE(refused_with(accept_renewal(grant, creds_of(n2), "n1", now), errc::bad_request,
                           "another key"));
  EXPECT_TRUE(refused_with(accept_renewal(grant, creds_of(n1), "n2", now), errc::name_mismatch));
  EXPECT_TRUE(refused_with(accept_renewal(grant, creds_of(n1), "n1", now + node_validity + 1s),
                           errc::expired));
  EXPECT_TRUE(
      refused_with(accept_renewal(grant, creds_of(n1), "n1", now, test_pki::revoking(n1.leaf())),
                   errc::revoked));
}

// -- admission quorum --------------------------------------------------------------------------

class identity_quorum : public identity_admission {
protected:
  /// The key of `key`.
  static sha256_digest key_of(const private_key& key) { return must(spki_sha256(key), "spki"); }

  /// What a seed asks issuer-2 for the joiner of `key` and `name`, through the wire.
  endorse_request endorse_request_for(const private_key& key, const std::string& name,
                                      const std::string& token) {
    endorse_request req{name, must(make_csr(key, pki.mesh(), name), "CSR"), token};
    auto decoded = must(decode_identity_request(must(encode(req), "encode")), "decode");
    return std::get<endorse_request>(std::move(decoded));
  }

  /// issuer-2's endorsement of `key` for `name`, with a new token of issuer-2, through the
  /// wire both ways.
  endorsement endorsed_by_second(const private_key& key, const std::string& name) {
    auto token = must(desk2.create_token(now, 1h, 1, rng), "token of issuer-2");
    auto e = must(desk2.endorse(endorse_request_for(key, name, token), now), "endorse");
    return must(decode_endorse_response(must(encode(e), "encode")), "decode");
  }

  /// `req` after a trip through the wire.
  static admission_request wired(const admission_request& req) {
    return must(decode_admission_request(must(encode(req), "encode")), "decode");
  }

  /// check_quorum of `certs` as a peer runs it.
  caf::expected<std::vector<std::string>> quorum_of(const chain& certs, std::size_t quorum) {
    auto id = must(verify_peer(certs, pki.bundle(), {}, now), "verify_peer");
    return check_quorum(certs.front(), id, pki.bundle(), {}, now, quorum);
  }

  credentials second = pki.make_issuer("issuer-2", now - 1h);
  issuer_desk desk1 = desk_of(issuer_of(pki, "issuer"));
  issuer_desk desk2 = desk_of(
      must(load_issuer(write_issuer_dir(second, pki.bundle(), "i2"), now), "issuer-2"), "desk-2");
};

TEST_F(identity_quorum, admits_with_the_endorsements_of_a_quorum) {
  auto text = must(desk1.create_token(now, 1h, 1, rng), "token");
  const auto pin = must(decode(text), "decode").pin;
  private_key key;
  auto req = request("n1", {text}, key);
  const auto e = endorsed_by_second(key, "n1");
  EXPECT_EQ(must(verify_endorsement(e, pki.bundle(), now), "verify").node, "issuer-2");
  req.endorsements = {e, e}; // one per issuer is kept
  auto grant = must(desk1.admit(wired(req), now, {}, node_validity, 2), "admit");
  // The leaf carries issuer-2's endorsement and issuer-1's own.
  auto carried = must(endorsements_of(grant.certs.front()), "endorsements_of");
  ASSERT_EQ(carried.size(), 2u);
  EXPECT_EQ(carried[0], e);
  EXPECT_EQ(must(verify_endorsement(carried[1], pki.bundle(), now), "own").node, "issuer-1");
  EXPECT_EQ(carried[1].key, key_of(key));
  EXPECT_EQ(must(quorum_of(grant.certs, 2), "quorum"),
            (std::vector<std::string>{"issuer-1", "issuer-2"}));
  grant = must(decode_admission_grant(must(encode(grant), "encode grant")), "decode grant");
  EXPECT_TRUE(accept_grant(grant, key, "n1", pin, now, 2));
  EXPECT_TRUE(refused_with(accept_grant(grant, key, "n1", pin, now, 3), errc::quorum_not_met,
                           "2 issuers (issuer-1, issuer-2) of the 3"));
}

TEST_F(identity_quorum, a_request_under_the_quorum_does_not_spend_the_token) {
  auto text = must(desk1.create_token(now, 1h, 1, rng), "token");
  const auto id = must(decode(text), "decode").id;
  private_key key;
  auto req = request("n1", {text}, key);
  EXPECT_TRUE(refused_with(desk1.admit(req, now, {}, node_validity, 2), errc::quorum_not_met,
                           "node 'n1' is vouched for by 1 issuer (issuer-1) of the 2"));
  // Endorsements that do not count: of another key, for another node, by the signer itself,
  // forged.
  const auto other = must(generate_key(), "another key");
  auto forged = endorsed_by_second(key, "n1");
  forged.signature.back() ^= 0x01;
  // (Signed by issuer-2 directly: its desk would not endorse another key for n1 now.)
  const auto second = desk2.material();
  req.endorsements = {must(make_endorsement(second, key_of(other), "n1", now), "other key"),
                      must(make_endorsement(second, key_of(key), "n2", now), "other node"),
                      must(make_endorsement(desk1.material(), key_of(key), "n1", now), "own"),
                      forged};
  EXPECT_TRUE(refused_with(desk1.admit(wired(req), now, {}, node_validity, 2), errc::quorum_not_met,
                           "1 issuer (issuer-1)"));
  ASSERT_NE(desk1.tokens().ledger().find(id), nullptr);
  EXPECT_EQ(desk1.tokens().ledger().find(id)->spent(), 0u);
  EXPECT_TRUE(desk1.issued().empty());
  // With a quorum of 1 the token admits; the endorsements that did not pass are dropped,
  // and with none left the leaf carries no extension.
  auto grant = must(desk1.admit(wired(req), now), "admit");
  EXPECT_TRUE(must(endorsements_of(grant.certs.front()), "endorsements_of").empty());
  EXPECT_EQ(desk1.tokens().ledger().find(id)->spent(), 1u);
}

TEST_F(identity_quorum, endorse_spends_the_token_and_records_the_key) {
  auto text = must(desk2.create_token(now, 1h, 1, rng), "token");
  const auto id = must(decode(text), "decode").id;
  private_key key = must(generate_key(), "key");
  // Refused without spending the token: a revoked key, a CSR for another name or mesh.
  revocation_set revoked;
  revoked.insert(key_of(key));
  EXPECT_TRUE(refused_with(desk2.endorse(endorse_request_for(key, "n1", text), now, revoked),
                           errc::revoked));
  auto renamed = endorse_request_for(key, "n1", text);
  renamed.name = "n2";
  EXPECT_TRUE(refused_with(desk2.endorse(renamed, now), errc::bad_request));
  endorse_request foreign{"n1", must(make_csr(key, "other.mesh", "n1"), "CSR"), text};
  EXPECT_TRUE(refused_with(desk2.endorse(foreign, now), errc::bad_request));
  EXPECT_TRUE(refused_with(desk2.endorse(endorse_request{"n1", {}, text}, now), errc::bad_request));
  EXPECT_EQ(desk2.tokens().ledger().find(id)->spent(), 0u);
  // Endorsed: the token is spent (and persisted), the key recorded for `starling revoke`.
  auto e = must(desk2.endorse(endorse_request_for(key, "n1", text), now), "endorse");
  EXPECT_EQ(e.key, key_of(key));
  EXPECT_EQ(e.node, "n1");
  EXPECT_EQ(must(verify_endorsement(e, pki.bundle(), now), "verify").node, "issuer-2");
  EXPECT_EQ(desk2.tokens().ledger().find(id)->spent(), 1u);
  EXPECT_EQ(desk2.keys_issued_to("n1", now), (std::vector<sha256_digest>{key_of(key)}));
  EXPECT_EQ(desk2.issued().front().not_after,
            std::chrono::floor<std::chrono::seconds>(now + node_validity));
  // The same node asking again (its answer was lost) is not a second use; another is.
  EXPECT_TRUE(desk2.endorse(endorse_request_for(key, "n1", text), now));
  EXPECT_EQ(desk2.tokens().ledger().find(id)->spent(), 1u);
  auto another = must(generate_key(), "another key");
  EXPECT_TRUE(refused_with(desk2.endorse(endorse_request_for(another, "n7", text), now),
                           errc::token_exhausted));
  auto reopened = desk_of(must(load_issuer(dir.path() / "i2", now), "issuer-2"), "desk-2");
  EXPECT_EQ(reopened.tokens().ledger().find(id)->spent(), 1u);
  EXPECT_EQ(reopened.issued(), desk2.issued());
  // A token another issuer made is redeemable once its ledger is merged, as for admit.
  auto of_first = must(desk1.create_token(now, 1h, 1, rng), "token of issuer-1");
  EXPECT_TRUE(refused_with(desk2.endorse(endorse_request_for(key, "n1", of_first), now),
                           errc::token_unknown));
  EXPECT_EQ(must(desk2.merge_ledger(desk1.tokens().ledger(), now), "merge"), 0u);
  EXPECT_TRUE(desk2.endorse(endorse_request_for(key, "n1", of_first), now));
}

TEST_F(identity_quorum, a_renewal_by_another_issuer_keeps_the_quorum) {
  auto text = must(desk1.create_token(now, 1h, 1, rng), "token");
  private_key key;
  auto req = request("n1", {text}, key);
  req.endorsements = {endorsed_by_second(key, "n1")};
  auto grant = must(desk1.admit(wired(req), now, {}, node_validity, 2), "admit");
  // Renewed by issuer-2, which signs alone: the endorsements travel on.
  renewal_request renewal{"n1", must(make_csr(key, pki.mesh(), "n1"), "CSR"), grant.certs};
  auto wired_renewal = std::get<renewal_request>(
      must(decode_identity_request(must(encode(renewal), "encode")), "decode"));
  auto renewed = must(desk2.renew(wired_renewal, "n1", now, {}, node_validity, 2), "renew");
  EXPECT_EQ(renewed.issuer, "issuer-2");
  EXPECT_TRUE(same(renewed.certs[1], second.cert));
  EXPECT_EQ(must(endorsements_of(renewed.certs.front()), "new"),
            must(endorsements_of(grant.certs.front()), "old"));
  EXPECT_EQ(must(quorum_of(renewed.certs, 2), "quorum"),
            (std::vector<std::string>{"issuer-2", "issuer-1"}));
  EXPECT_TRUE(accept_renewal(renewed, {key, grant.certs, pki.bundle()}, "n1", now, {}, 2));
  // A renewal that lost the endorsements is refused by the renewing node itself (every peer
  // would refuse it): here, issuer-2 signing the same key alone.
  auto bare = must(sign_node(must(make_csr(key, pki.mesh(), "n1"), "CSR"), second.key, second.cert,
                             {}, pki.mesh(), "n1", now),
                   "sign");
  EXPECT_TRUE(refused_with(accept_renewal(renewal_grant{bare, "issuer-2"},
                                          {key, grant.certs, pki.bundle()}, "n1", now, {}, 2),
                           errc::quorum_not_met));
  EXPECT_TRUE(accept_renewal(renewal_grant{bare, "issuer-2"}, {key, grant.certs, pki.bundle()},
                             "n1", now, {}, 1));
  // A member admitted by one issuer alone is not renewed under a quorum of 2.
  auto lone = pki.node("n2");
  renewal_request alone{"n2", must(make_csr(lone.key, pki.mesh(), "n2"), "CSR"), lone.chain};
  EXPECT_TRUE(refused_with(desk2.renew(alone, "n2", now, {}, node_validity, 2),
                           errc::quorum_not_met, "node 'n2'"));
  EXPECT_TRUE(desk2.keys_issued_to("n2", now).empty()) << "nothing was signed";
  // Nor when an endorsing issuer's key has been revoked since.
  EXPECT_TRUE(refused_with(
      desk2.renew(wired_renewal, "n1", now, test_pki::revoking(second.cert), node_validity, 2),
      errc::quorum_not_met));
}

// -- accept_grant -----------------------------------------------------------------------------

class identity_accept_grant : public identity_admission {
protected:
  void SetUp() override {
    auto desk = desk_of(issuer_of(pki, "issuer"));
    auto text = must(desk.create_token(now, 1h, 1, rng), "token");
    pin = must(decode(text), "decode").pin;
    grant.emplace(must(desk.admit(request("n1", {text}, key), now), "admit"));
  }

  private_key key;
  sha256_digest pin{};
  std::optional<admission_grant> grant;
};

TEST_F(identity_accept_grant, accepts_a_real_grant) {
  auto creds = must(accept_grant(*grant, key, "n1", pin, now), "accept");
  EXPECT_EQ(creds.bundle.pins(), pki.bundle().pins());
  EXPECT_EQ(must(spki_sha256(creds.key), "key"), must(spki_sha256(key), "key"));
}

TEST_F(identity_accept_grant, refuses_a_bundle_without_the_pinned_root) {
  test_pki other{now, "test.mesh"};
  auto forged = *grant;
  forged.bundle = other.bundle();
  EXPECT_TRUE(
      refused_with(accept_grant(forged, key, "n1", pin, now), errc::bad_request, format_pin(pin)));
}

TEST_F(identity_accept_grant, refuses_a_chain_to_another_root_of_the_bundle) {
  test_pki other{now, "test.mesh"};
  auto forged = *grant;
  forged.bundle = must(trust_bundle::make({pki.root().cert, other.root().cert}), "bundle");
  auto node = other.node("n1");
  forged.certs = node.chain;
  EXPECT_TRUE(refused_with(accept_grant(forged, node.key, "n1", pin, now), errc::untrusted_chain));
}

TEST_F(identity_accept_grant, refuses_a_grant_without_the_quorum) {
  EXPECT_TRUE(refused_with(accept_grant(*grant, key, "n1", pin, now, 2), errc::quorum_not_met,
                           "1 issuer (issuer-1) of the 2"));
}

TEST_F(identity_accept_grant, refuses_a_chain_for_another_name) {
  EXPECT_TRUE(refused_with(accept_grant(*grant, key, "n2", pin, now), errc::name_mismatch));
}

TEST_F(identity_accept_grant, refuses_a_chain_certifying_another_key) {
  auto mine = must(generate_key(), "key");
  EXPECT_TRUE(
      refused_with(accept_grant(*grant, mine, "n1", pin, now), errc::bad_request, "another key"));
}

TEST_F(identity_accept_grant, refuses_an_expired_chain) {
  EXPECT_TRUE(
      refused_with(accept_grant(*grant, key, "n1", pin, now + node_validity + 1s), errc::expired));
  auto forged = *grant;
  forged.certs = pki.expired_node("n1").chain;
  EXPECT_TRUE(refused_with(accept_grant(forged, key, "n1", pin, now), errc::expired));
}

} // namespace
} // namespace starling::identity
