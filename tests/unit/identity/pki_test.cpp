#include <random>

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "identity/errc.hpp"
#include "identity/names.hpp"
#include "identity/pki.hpp"
#include "identity/trust.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::identity {
namespace {

using namespace std::chrono_literals;
using testing::must;
using testing::test_now;
using testing::test_pki;

/// Whether `cert` has extension `nid` and whether it is critical (-1: absent).
int criticality(const certificate& cert, int nid) {
  int idx = X509_get_ext_by_NID(cert.native(), nid, -1);
  if (idx < 0)
    return -1;
  return X509_EXTENSION_get_critical(X509_get_ext(cert.native(), idx));
}

std::string subject_of(const certificate& cert) {
  char buf[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert.native()), buf, sizeof(buf));
  return buf;
}

long path_len(const certificate& cert) { return X509_get_pathlen(cert.native()); }

std::vector<std::uint8_t> der_of(const certificate& cert) { return must(to_der(cert), "DER"); }

// -- names -----------------------------------------------------------------------------------

TEST(identity_names, node_names_follow_the_member_name_rule) {
  for (const std::string& ok :
       std::vector<std::string>{"a", "node-1", "Node_2.eu", std::string(64, 'x')})
    EXPECT_TRUE(is_valid_node_name(ok)) << ok;
  for (const std::string& bad : std::vector<std::string>{"", "-a", ".a", "_a", "a b", "a/b", "a:b",
                                                         "é", std::string(65, 'x')})
    EXPECT_FALSE(is_valid_node_name(bad)) << bad;
}

TEST(identity_names, mesh_names_are_lower_case_host_names) {
  for (const std::string& ok :
       std::vector<std::string>{"a", "prod", "prod-eu.example", "m1", std::string(63, 'm')})
    EXPECT_TRUE(is_valid_mesh_name(ok)) << ok;
  for (const std::string& bad :
       std::vector<std::string>{"", "Prod", "-a", "a-", ".a", "a.", "a..b", "a_b", "a/b", "a b",
                                "a:1", std::string(64, 'm')})
    EXPECT_FALSE(is_valid_mesh_name(bad)) << bad;
}

TEST(identity_names, spiffe_uris_parse_exactly) {
  auto node = parse_spiffe_uri("spiffe://m.x/node/n-1");
  ASSERT_TRUE(node);
  EXPECT_EQ(node->kind, spiffe_id::kind_t::node);
  EXPECT_EQ(node->mesh, "m.x");
  EXPECT_EQ(node->name, "n-1");
  EXPECT_EQ(node->to_uri(), "spiffe://m.x/node/n-1");
  auto svc = parse_spiffe_uri("spiffe://m/svc/web");
  ASSERT_TRUE(svc);
  EXPECT_EQ(svc->kind, spiffe_id::kind_t::service);
  EXPECT_EQ(svc->to_uri(), "spiffe://m/svc/web");
  auto mesh = parse_spiffe_uri("spiffe://m");
  ASSERT_TRUE(mesh);
  EXPECT_EQ(mesh->kind, spiffe_id::kind_t::mesh);
  EXPECT_EQ(mesh->to_uri(), "spiffe://m");
  for (auto bad :
       {"", "spiffe://", "spiffe://M/node/n", "http://m/node/n", "spiffe://m/", "spiffe://m/node/",
        "spiffe://m/node/n/", "spiffe://m/node/n?x", "spiffe://m:80/node/n", "spiffe://u@m/node/n",
        "spiffe://m/host/n", "spiffe://m/node/a%2Fb", "spiffe://m//node/n", "SPIFFE://m/node/n"})
    EXPECT_FALSE(parse_spiffe_uri(bad)) << bad;
  EXPECT_FALSE(parse_spiffe_uri(std::string_view{"spiffe://m/node/n\0x", 19}));
}

// -- keys, encodings, pins -------------------------------------------------------------------

TEST(identity_pki, keys_are_p256_and_round_trip_through_pem) {
  auto key = must(generate_key(), "key");
  EXPECT_EQ(EVP_PKEY_get_base_id(key.native()), EVP_PKEY_EC);
  char group[32] = {};
  std::size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(key.native(), group, sizeof(group), &len), 1);
  EXPECT_EQ(std::string(group, len), "prime256v1");
  auto pem = must(to_pem(key), "pem");
  EXPECT_NE(pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  auto back = must(private_key_from_pem(pem), "read back");
  EXPECT_EQ(EVP_PKEY_eq(key.native(), back.native()), 1);
  EXPECT_EQ(must(spki_sha256(key), "spki"), must(spki_sha256(back), "spki"));
}

TEST(identity_pki, encrypted_or_garbage_keys_are_refused_without_a_prompt) {
  auto key = must(generate_key(), "key");
  bio_ptr bio{BIO_new(BIO_s_mem())};
  char pass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key.native(), EVP_aes_256_cbc(), pass, 6,
                                          nullptr, nullptr),
            1);
  char* data = nullptr;
  auto n = BIO_get_mem_data(bio.get(), &data);
  auto encrypted = private_key_from_pem(std::string_view{data, static_cast<std::size_t>(n)});
  ASSERT_FALSE(encrypted);
  EXPECT_TRUE(is(encrypted.error(), errc::invalid_argument)) << render(encrypted.error());
  for (std::string_view bad : {"", "garbage", "-----BEGIN PRIVATE KEY-----\n!!\n"})
    EXPECT_TRUE(is(private_key_from_pem(bad).error(), errc::invalid_argument));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is drained";
}

TEST(identity_pki, pins_format_and_parse) {
  test_pki pki;
  auto pin = must(spki_sha256(pki.root().cert), "pin");
  EXPECT_EQ(pin, must(spki_sha256(pki.root().key), "pin of the key"));
  auto text = format_pin(pin);
  EXPECT_EQ(text.size(), 7u + 64u);
  EXPECT_EQ(text.rfind("sha256:", 0), 0u);
  EXPECT_EQ(must(parse_pin(text), "parse"), pin);
  std::string upper = text;
  for (auto& c : upper)
    if (c >= 'a' && c <= 'f')
      c = static_cast<char>(c - 'a' + 'A');
  upper.replace(0, 7, "sha256:");
  EXPECT_EQ(must(parse_pin(upper), "upper"), pin);
  for (const std::string& bad :
       std::vector<std::string>{"", "sha256:", "sha1:00", "sha256:zz", text + "0", text.substr(7),
                                "sha256:" + std::string(63, '0') + "g"})
    EXPECT_TRUE(is(parse_pin(bad).error(), errc::invalid_argument)) << bad;
  EXPECT_EQ(to_hex(std::vector<std::uint8_t>{0x00, 0x0f, 0xa0, 0xff}), "000fa0ff");
}

TEST(identity_pki, certificates_and_csrs_round_trip_through_pem_and_der) {
  test_pki pki;
  auto node = pki.node("n1");
  auto pem = must(to_pem(node.chain), "chain pem");
  auto back = must(certificates_from_pem("leading text\n" + pem + "trailing text\n"), "read");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(X509_cmp(back[0].native(), node.leaf().native()), 0);
  EXPECT_EQ(X509_cmp(back[1].native(), pki.issuer().cert.native()), 0);
  auto one = certificate_from_pem(pem);
  ASSERT_FALSE(one) << "two certificates are not one";
  EXPECT_TRUE(is(one.error(), errc::bad_certificate));
  auto der = der_of(node.leaf());
  auto from_der = must(certificate_from_der(der), "der");
  EXPECT_EQ(X509_cmp(from_der.native(), node.leaf().native()), 0);

  auto csr = must(make_csr(node.key, "test.mesh", "n1"), "csr");
  auto csr_der = must(to_der(csr), "csr der");
  auto csr_back = must(certificate_request_from_der(csr_der), "csr from der");
  auto csr_pem = must(to_pem(csr), "csr pem");
  auto csr_back2 = must(certificate_request_from_pem(csr_pem), "csr from pem");
  EXPECT_EQ(must(to_der(csr_back2), "der again"), csr_der);
  EXPECT_TRUE(
      sign_node(csr_back, pki.issuer().key, pki.issuer().cert, {}, "test.mesh", "n1", pki.now()));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(identity_pki, garbage_pem_and_der_are_refused_without_crashing) {
  test_pki pki;
  auto node = pki.node("n1");
  auto der = der_of(node.leaf());
  auto pem = must(to_pem(node.leaf()), "pem");
  auto csr_der = must(to_der(must(make_csr(node.key, "test.mesh", "n1"), "csr")), "csr der");

  for (std::string_view bad :
       {std::string_view{}, std::string_view{"garbage"},
        std::string_view{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        std::string_view{pem}.substr(0, pem.size() / 2)}) {
    EXPECT_TRUE(is(certificates_from_pem(bad).error(), errc::bad_certificate));
    EXPECT_TRUE(is(certificate_request_from_pem(bad).error(), errc::bad_request));
    EXPECT_FALSE(trust_bundle::from_pem(bad));
  }
  // Every truncation of a DER certificate or CSR, and trailing bytes.
  for (std::size_t len = 0; len < der.size(); ++len)
    ASSERT_FALSE(certificate_from_der({der.data(), len})) << len;
  for (std::size_t len = 0; len < csr_der.size(); ++len)
    ASSERT_FALSE(certificate_request_from_der({csr_der.data(), len})) << len;
  auto longer = der;
  longer.push_back(0);
  EXPECT_TRUE(is(certificate_from_der(longer).error(), errc::bad_certificate));
  // Random byte flips: whatever still parses must be refused by verification or signing.
  std::mt19937 rng{20240607};
  for (int i = 0; i < 2000; ++i) {
    auto mutated = der;
    for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips)
      mutated[rng() % mutated.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    auto cert = certificate_from_der(mutated);
    if (!cert)
      continue;
    auto verdict = verify_peer({*cert, pki.issuer().cert}, pki.bundle(), {}, pki.now());
    EXPECT_FALSE(verdict) << "a mutated certificate verified";
    (void)spiffe_id_of(*cert);
    (void)not_after(*cert);
  }
  std::mt19937 rng2{7};
  for (int i = 0; i < 2000; ++i) {
    auto mutated = csr_der;
    mutated[rng2() % mutated.size()] ^= static_cast<std::uint8_t>(1 + rng2() % 255);
    auto csr = certificate_request_from_der(mutated);
    if (!csr)
      continue;
    auto signed_chain =
        sign_node(*csr, pki.issuer().key, pki.issuer().cert, {}, "test.mesh", "n1", pki.now());
    ASSERT_FALSE(signed_chain) << "a mutated CSR was signed";
    EXPECT_TRUE(is(signed_chain.error(), errc::bad_request)) << render(signed_chain.error());
  }
  ERR_clear_error();
}

// -- root ------------------------------------------------------------------------------------

TEST(identity_pki, root_has_the_root_profile) {
  auto now = test_now();
  auto root = must(create_root("prod.example", now), "root");
  const auto& cert = root.cert;
  EXPECT_EQ(X509_self_signed(cert.native(), 1), 1);
  EXPECT_EQ(X509_check_private_key(cert.native(), root.key.native()), 1);
  EXPECT_EQ(X509_check_ca(cert.native()), 1);
  EXPECT_EQ(criticality(cert, NID_basic_constraints), 1);
  EXPECT_EQ(criticality(cert, NID_key_usage), 1);
  EXPECT_EQ(X509_get_key_usage(cert.native()),
            static_cast<std::uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_GE(criticality(cert, NID_subject_key_identifier), 0);
  EXPECT_EQ(criticality(cert, NID_name_constraints), -1);
  EXPECT_EQ(subject_of(cert), "/O=starling/CN=prod.example root");
  EXPECT_EQ(must(spiffe_id_of(cert), "uri").to_uri(), "spiffe://prod.example");
  EXPECT_EQ(must(not_before(cert), "nb"), now - 1min);
  EXPECT_EQ(must(not_after(cert), "na"), now + root_validity);
  EXPECT_EQ(X509_get_version(cert.native()), X509_VERSION_3);
}

TEST(identity_pki, bad_mesh_names_are_refused) {
  for (const std::string& bad :
       std::vector<std::string>{"", "Prod", "a..b", "-a", "a b", "a/b", std::string(64, 'm')}) {
    auto root = create_root(bad, test_now());
    ASSERT_FALSE(root) << bad;
    EXPECT_TRUE(is(root.error(), errc::invalid_argument)) << render(root.error());
  }
  EXPECT_TRUE(is(create_root("ok", test_now(), 0s).error(), errc::invalid_argument));
}

TEST(identity_pki, a_root_reissued_with_the_same_key_keeps_its_pin) {
  auto now = test_now();
  auto root = must(create_root("m", now), "root");
  auto again = must(issue_root(root.key, "m", now + 30min), "reissued");
  EXPECT_NE(X509_cmp(root.cert.native(), again.native()), 0);
  EXPECT_EQ(must(spki_sha256(root.cert), "a"), must(spki_sha256(again), "b"));
  // A chain issued under the old certificate verifies against the re-issued one.
  auto issuer = must(create_issuer(root.key, root.cert, "i1", now), "issuer");
  auto key = must(generate_key(), "key");
  auto leaf = must(
      sign_node(must(make_csr(key, "m", "n1"), "csr"), issuer.key, issuer.cert, {}, "m", "n1", now),
      "leaf");
  auto bundle = must(trust_bundle::make({again}), "bundle");
  auto verdict = verify_peer(leaf, bundle, {}, now + 1h);
  EXPECT_TRUE(verdict) << render(verdict.error());
}

// -- issuer ----------------------------------------------------------------------------------

TEST(identity_pki, issuer_has_the_issuer_profile) {
  test_pki pki;
  const auto& cert = pki.issuer().cert;
  EXPECT_EQ(X509_check_ca(cert.native()), 1);
  EXPECT_EQ(path_len(cert), 0);
  EXPECT_EQ(criticality(cert, NID_basic_constraints), 1);
  EXPECT_EQ(criticality(cert, NID_name_constraints), 1);
  EXPECT_GE(criticality(cert, NID_authority_key_identifier), 0);
  EXPECT_EQ(X509_check_issued(pki.root().cert.native(), cert.native()), X509_V_OK);
  EXPECT_EQ(subject_of(cert), "/O=starling/CN=issuer-1 issuer");
  EXPECT_EQ(must(spiffe_id_of(cert), "uri").to_uri(), "spiffe://test.mesh/node/issuer-1");
  auto issued_at = pki.now() - testing::test_issuer_age;
  EXPECT_EQ(must(not_before(cert), "nb"), issued_at - 1min);
  EXPECT_EQ(must(not_after(cert), "na"), issued_at + issuer_validity);
  // The permitted subtree is exactly URI host "test.mesh".
  int crit = 0;
  std::unique_ptr<NAME_CONSTRAINTS, openssl_deleter<NAME_CONSTRAINTS, NAME_CONSTRAINTS_free>> nc{
      static_cast<NAME_CONSTRAINTS*>(
          X509_get_ext_d2i(cert.native(), NID_name_constraints, &crit, nullptr))};
  ASSERT_TRUE(nc);
  ASSERT_EQ(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 1);
  EXPECT_EQ(nc->excludedSubtrees, nullptr);
  const GENERAL_NAME* base = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 0)->base;
  ASSERT_EQ(base->type, GEN_URI);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(
                            ASN1_STRING_get0_data(base->d.uniformResourceIdentifier)),
                        ASN1_STRING_length(base->d.uniformResourceIdentifier)),
            "test.mesh");
}

TEST(identity_pki, issuer_expiry_is_capped_at_the_root) {
  auto now = test_now();
  auto root = must(create_root("m", now, 24h * 30), "root");
  auto issuer = must(create_issuer(root.key, root.cert, "i1", now), "issuer");
  EXPECT_EQ(must(not_after(issuer.cert), "issuer"), must(not_after(root.cert), "root"));
}

TEST(identity_pki, issuer_creation_refuses_bad_inputs) {
  test_pki pki;
  test_pki other{pki.now(), "other"};
  auto now = pki.now();
  auto e = create_issuer(pki.root().key, pki.root().cert, "bad name", now);
  EXPECT_TRUE(is(e.error(), errc::invalid_argument)) << render(e.error());
  e = create_issuer(other.root().key, pki.root().cert, "i2", now);
  EXPECT_TRUE(is(e.error(), errc::invalid_argument)) << render(e.error());
  e = create_issuer(pki.issuer().key, pki.issuer().cert, "i2", now);
  EXPECT_TRUE(is(e.error(), errc::invalid_argument)) << "an issuer is not a root";
  e = create_issuer(pki.root().key, pki.root().cert, "i2", now + root_validity);
  EXPECT_TRUE(is(e.error(), errc::expired)) << render(e.error());
  e = create_issuer(pki.root().key, pki.root().cert, "i2", now - testing::test_root_age - 1h);
  EXPECT_TRUE(is(e.error(), errc::not_yet_valid)) << render(e.error());
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// -- node certificates -----------------------------------------------------------------------

TEST(identity_pki, node_certificate_has_the_node_profile) {
  test_pki pki;
  auto node = pki.node("web-1");
  ASSERT_EQ(node.chain.size(), 2u);
  const auto& leaf = node.leaf();
  EXPECT_EQ(X509_cmp(node.chain[1].native(), pki.issuer().cert.native()), 0);
  EXPECT_EQ(X509_check_ca(leaf.native()), 0);
  EXPECT_EQ(criticality(leaf, NID_basic_constraints), 1);
  EXPECT_EQ(X509_get_key_usage(leaf.native()), static_cast<std::uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(leaf.native()),
            static_cast<std::uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_EQ(subject_of(leaf), "/O=starling/CN=web-1");
  EXPECT_EQ(must(spiffe_id_of(leaf), "uri").to_uri(), "spiffe://test.mesh/node/web-1");
  EXPECT_EQ(must(not_before(leaf), "nb"), pki.now() - clock_skew_allowance);
  EXPECT_EQ(must(not_after(leaf), "na"), pki.now() + 24h);
  EXPECT_EQ(X509_check_issued(pki.issuer().cert.native(), leaf.native()), X509_V_OK);
  EXPECT_EQ(must(spki_sha256(leaf), "spki"), must(spki_sha256(node.key), "key spki"));
  // Serials: positive, 128 bits at most, different each time.
  auto serial = [](const certificate& c) {
    bignum_ptr bn{ASN1_INTEGER_to_BN(X509_get0_serialNumber(c.native()), nullptr)};
    EXPECT_FALSE(BN_is_negative(bn.get()));
    EXPECT_FALSE(BN_is_zero(bn.get()));
    EXPECT_LE(BN_num_bits(bn.get()), 128);
    char* hex = BN_bn2hex(bn.get());
    std::string out = hex;
    OPENSSL_free(hex);
    return out;
  };
  EXPECT_NE(serial(leaf), serial(pki.node("web-1").leaf()));
}

TEST(identity_pki, node_expiry_is_capped_at_the_issuer) {
  test_pki pki;
  auto issuer = pki.make_issuer("short", pki.now(), 2h);
  auto node = pki.node("n1", issuer, pki.now());
  EXPECT_EQ(must(not_after(node.leaf()), "leaf"), must(not_after(issuer.cert), "issuer"));
}

TEST(identity_pki, chain_above_the_issuer_is_appended) {
  test_pki pki;
  auto key = must(generate_key(), "key");
  auto csr = must(make_csr(key, "test.mesh", "n1"), "csr");
  auto out = must(sign_node(csr, pki.issuer().key, pki.issuer().cert, {pki.root().cert},
                            "test.mesh", "n1", pki.now()),
                  "chain");
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(X509_cmp(out[2].native(), pki.root().cert.native()), 0);
}

/// A CSR for `key` with subject CN `cn` (none if empty) and subjectAltName `san` in OpenSSL's
/// config syntax (none if empty).
certificate_request custom_csr(const private_key& key, const std::string& cn,
                               const std::string& san) {
  x509_req_ptr req{X509_REQ_new()};
  x509_name_ptr name{X509_NAME_new()};
  if (!cn.empty())
    X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.data()), -1, -1, 0);
  X509_REQ_set_subject_name(req.get(), name.get());
  X509_REQ_set_pubkey(req.get(), key.native());
  if (!san.empty()) {
    x509_extensions_ptr exts{sk_X509_EXTENSION_new_null()};
    sk_X509_EXTENSION_push(
        exts.get(), X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str()));
    X509_REQ_add_extensions(req.get(), exts.get());
  }
  X509_REQ_sign(req.get(), key.native(), EVP_sha256());
  return certificate_request{std::move(req)};
}

TEST(identity_pki, csr_must_ask_for_exactly_the_admitted_name) {
  test_pki pki;
  auto key = must(generate_key(), "key");
  auto sign = [&](const certificate_request& csr, std::string_view name = "n1") {
    return sign_node(csr, pki.issuer().key, pki.issuer().cert, {}, "test.mesh", name, pki.now());
  };
  EXPECT_TRUE(sign(custom_csr(key, "n1", "URI:spiffe://test.mesh/node/n1")));
  EXPECT_TRUE(sign(custom_csr(key, "", "URI:spiffe://test.mesh/node/n1")));
  auto expect_bad = [&](const caf::expected<chain>& r, const char* what) {
    ASSERT_FALSE(r) << what;
    EXPECT_TRUE(is(r.error(), errc::bad_request)) << what << ": " << render(r.error());
  };
  auto for_n2 = must(make_csr(key, "test.mesh", "n2"), "csr");
  expect_bad(sign(for_n2), "a CSR for another name");
  expect_bad(sign(custom_csr(key, "n2", "URI:spiffe://test.mesh/node/n1")), "CN of another");
  expect_bad(sign(custom_csr(key, "n1", "URI:spiffe://other/node/n1")), "another mesh");
  expect_bad(sign(custom_csr(key, "n1", "")), "no SAN");
  expect_bad(sign(custom_csr(key, "n1", "URI:spiffe://test.mesh/node/n1,DNS:evil.example")),
             "an extra DNS name");
  expect_bad(
      sign(custom_csr(key, "n1", "URI:spiffe://test.mesh/node/n1,URI:spiffe://test.mesh/node/n2")),
      "two URIs");
  expect_bad(sign(must(make_csr(key, "test.mesh", "n1"), "csr"), "bad name!"), "a bad name");
  expect_bad(sign(certificate_request{}), "no CSR");
  // A P-384 key is not the mesh's algorithm.
  private_key p384{pkey_ptr{EVP_EC_gen("P-384")}};
  expect_bad(sign(must(make_csr(p384, "test.mesh", "n1"), "csr")), "a P-384 key");
  // A CSR whose signature does not verify: sign with one key, claim another.
  auto other = must(generate_key(), "other");
  auto forged = custom_csr(key, "n1", "URI:spiffe://test.mesh/node/n1");
  X509_REQ_set_pubkey(forged.native(), other.native());
  expect_bad(sign(forged), "a CSR whose signature does not verify");
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(identity_pki, signing_refuses_an_unfit_issuer) {
  test_pki pki;
  test_pki other{pki.now(), "other"};
  auto key = must(generate_key(), "key");
  auto csr = must(make_csr(key, "test.mesh", "n1"), "csr");
  auto with = [&](const credentials& by, time_point now) {
    return sign_node(csr, by.key, by.cert, {}, "test.mesh", "n1", now);
  };
  EXPECT_TRUE(is(with(other.issuer(), pki.now()).error(), errc::invalid_argument))
      << "an issuer of another mesh";
  auto leaf = pki.node("n9");
  EXPECT_TRUE(
      is(with(credentials{leaf.key, leaf.leaf()}, pki.now()).error(), errc::invalid_argument))
      << "a leaf is not an issuer";
  EXPECT_TRUE(is(with(credentials{other.issuer().key, pki.issuer().cert}, pki.now()).error(),
                 errc::invalid_argument))
      << "the key does not match";
  EXPECT_TRUE(is(with(pki.issuer(), pki.now() + issuer_validity).error(), errc::expired));
  EXPECT_TRUE(is(with(pki.issuer(), pki.now() - testing::test_issuer_age - 1h).error(),
                 errc::not_yet_valid));
  EXPECT_TRUE(
      is(sign_node(csr, pki.issuer().key, pki.issuer().cert, {}, "test.mesh", "n1", pki.now(), 0s)
             .error(),
         errc::invalid_argument));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

} // namespace
} // namespace starling::identity
