#include "identity/pki.hpp"

#include <charconv>
#include <climits>
#include <ctime>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "identity/errc.hpp"
#include "identity/token.hpp" // sha256_of

namespace starling::identity {

namespace {

using std::chrono::seconds;

/// Bound on PEM and DER input: far above any certificate, key or CSR of ours.
constexpr std::size_t max_encoded_bytes = 1 << 20;

/// Serial numbers are 16 random bytes (top bit clear: positive, at most 16 octets).
constexpr std::size_t serial_bytes = 16;

/// A passphrase callback that refuses: encrypted keys fail instead of prompting on a tty.
int no_passphrase(char*, int, int, void*) { return -1; }

std::time_t to_time_t(time_point t) {
  return std::chrono::system_clock::to_time_t(std::chrono::floor<seconds>(t));
}

caf::expected<time_point> from_asn1_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return make_error(errc::bad_certificate, "malformed validity time");
  }
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

caf::expected<bio_ptr> read_bio(std::string_view text, errc on_error, const char* what) {
  if (text.empty())
    return make_error(on_error, std::string{what} + ": empty input");
  if (text.size() > max_encoded_bytes)
    return make_error(on_error, std::string{what} + ": larger than " +
                                    std::to_string(max_encoded_bytes) + " bytes");
  bio_ptr bio{BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))};
  if (!bio)
    return make_openssl_error(errc::crypto_failure, "BIO_new_mem_buf");
  return bio;
}

/// Runs `write(bio)` on a memory BIO and returns what it wrote.
template <class Write> caf::expected<std::string> write_pem(Write write, const char* what) {
  bio_ptr bio{BIO_new(BIO_s_mem())};
  if (!bio || write(bio.get()) != 1)
    return make_openssl_error(errc::crypto_failure, std::string{"writing PEM of "} + what);
  char* data = nullptr;
  auto len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

/// DER via an i2d function (two passes: size, then bytes).
template <class T, class I2d>
caf::expected<std::vector<std::uint8_t>> write_der(const T* obj, I2d i2d, const char* what) {
  int len = i2d(obj, nullptr);
  if (len <= 0)
    return make_openssl_error(errc::crypto_failure, std::string{"DER of "} + what);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(len));
  auto* p = out.data();
  if (i2d(obj, &p) != len)
    return make_openssl_error(errc::crypto_failure, std::string{"DER of "} + what);
  return out;
}

/// Parses DER via a d2i function, refusing trailing bytes and oversized input.
template <class Ptr, class D2i>
caf::expected<Ptr> read_der(std::span<const std::uint8_t> der, D2i d2i, errc on_error,
                            const char* what) {
  if (der.empty() || der.size() > max_encoded_bytes)
    return make_error(on_error, std::string{what} + ": empty or oversized DER");
  const unsigned char* p = der.data();
  Ptr obj{d2i(nullptr, &p, static_cast<long>(der.size()))};
  if (!obj)
    return make_openssl_error(on_error, std::string{"not a DER "} + what);
  if (p != der.data() + der.size())
    return make_error(on_error, std::string{"trailing bytes after a DER "} + what);
  return obj;
}

caf::expected<x509_name_ptr> make_name(std::string_view common_name) {
  x509_name_ptr name{X509_NAME_new()};
  auto add = [&](const char* field, std::string_view value) {
    return X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!name || common_name.size() > 64 || !add("O", "starling") || !add("CN", common_name))
    return make_openssl_error(errc::crypto_failure, "building subject name");
  return name;
}

caf::expected<general_names_ptr> make_uri_san(std::string_view uri) {
  general_names_ptr names{sk_GENERAL_NAME_new_null()};
  general_name_ptr name{GENERAL_NAME_new()};
  ASN1_IA5STRING* text = ASN1_IA5STRING_new();
  if (!names || !name || text == nullptr ||
      ASN1_STRING_set(text, uri.data(), static_cast<int>(uri.size())) != 1) {
    ASN1_IA5STRING_free(text);
    return make_openssl_error(errc::crypto_failure, "building subjectAltName");
  }
  GENERAL_NAME_set0_value(name.get(), GEN_URI, text);
  if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0)
    return make_openssl_error(errc::crypto_failure, "building subjectAltName");
  name.release(); // owned by `names` now
  return names;
}

caf::error add_conf_ext(X509* cert, X509V3_CTX& ctx, int nid, const std::string& value) {
  x509_extension_ptr ext{X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str())};
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return make_openssl_error(errc::crypto_failure,
                              std::string{"adding extension "} + OBJ_nid2sn(nid));
  return {};
}

/// Adds `ext` to `cert`, non-critical: extnValue holds `ext.value` as given.
caf::error add_raw_ext(X509* cert, const raw_extension& ext) {
  const auto what = "adding extension " + ext.oid.substr(0, 80);
  asn1_object_ptr oid{OBJ_txt2obj(ext.oid.c_str(), 1)};
  asn1_octet_string_ptr value{ASN1_OCTET_STRING_new()};
  if (!oid || !value ||
      ASN1_OCTET_STRING_set(value.get(), ext.value.data(), static_cast<int>(ext.value.size())) != 1)
    return make_openssl_error(errc::crypto_failure, what);
  x509_extension_ptr x{X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 0, value.get())};
  if (!x || X509_add_ext(cert, x.get(), -1) != 1)
    return make_openssl_error(errc::crypto_failure, what);
  return {};
}

caf::error set_random_serial(X509* cert) {
  std::array<unsigned char, serial_bytes> buf{};
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
    return make_openssl_error(errc::crypto_failure, "random serial");
  buf[0] &= 0x7f;
  buf[0] |= buf[0] == 0 ? 0x01 : 0x00; // never zero
  bignum_ptr bn{BN_bin2bn(buf.data(), static_cast<int>(buf.size()), nullptr)};
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr)
    return make_openssl_error(errc::crypto_failure, "setting serial");
  return {};
}

bool is_p256(EVP_PKEY* key) {
  if (key == nullptr || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC)
    return false;
  char group[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof(group), &len) != 1) {
    ERR_clear_error();
    return false;
  }
  return std::string_view{group, len} == "prime256v1";
}

/// The string of an ASN.1 string, byte for byte.
std::string_view view_of(const ASN1_STRING* s) {
  if (s == nullptr || ASN1_STRING_length(s) <= 0)
    return {};
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<std::size_t>(ASN1_STRING_length(s))};
}

/// Checks that a CA certificate and its key can issue for `mesh` at `now`.
/// `role` names it in messages ("root", "issuer").
caf::error check_signer(const private_key& key, const certificate& cert, const char* role,
                        time_point now) {
  if (!key || !cert)
    return make_error(errc::invalid_argument, std::string{"no "} + role + " key or certificate");
  if (X509_check_ca(cert.native()) == 0)
    return make_error(errc::invalid_argument,
                      std::string{"the "} + role + " certificate is not a CA certificate");
  if (X509_check_private_key(cert.native(), key.native()) != 1)
    return make_openssl_error(errc::invalid_argument,
                              std::string{"the "} + role + " key does not match its certificate");
  auto nb = not_before(cert);
  auto na = not_after(cert);
  if (!nb)
    return nb.error();
  if (!na)
    return na.error();
  if (now < *nb)
    return make_error(errc::not_yet_valid, std::string{"the "} + role +
                                               " certificate is not "
                                               "valid yet");
  if (now >= *na)
    return make_error(errc::expired, std::string{"the "} + role + " certificate has expired");
  return {};
}

caf::error check_validity(std::chrono::seconds validity) {
  if (validity <= seconds{0})
    return make_error(errc::invalid_argument, "validity must be positive");
  return {};
}

/// The decoded subjectAltName among `exts` (of a certificate or a CSR). Errors: `code`, when
/// there is none, more than one, or it does not decode. `whose` names the holder.
caf::expected<general_names_ptr> subject_alt_names(const STACK_OF(X509_EXTENSION) * exts, errc code,
                                                   const char* whose) {
  int crit = 0;
  general_names_ptr names{static_cast<GENERAL_NAMES*>(
      exts != nullptr ? X509V3_get_d2i(exts, NID_subject_alt_name, &crit, nullptr) : nullptr)};
  ERR_clear_error();
  if (!names)
    return make_error(code, std::string{whose} + (crit == -2 ? " has several subjectAltNames"
                                                             : " has no valid subjectAltName"));
  return names;
}

/// The names a CSR asks for must be exactly `uri` (SAN) and `node` (CN, when present).
caf::error check_csr_names(X509_REQ* req, std::string_view node, std::string_view uri) {
  const X509_NAME* subject = X509_REQ_get_subject_name(req);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    auto cn = view_of(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    if (cn != node)
      return make_error(errc::bad_request, "the CSR's CN does not name node " + std::string{node});
  }
  x509_extensions_ptr exts{X509_REQ_get_extensions(req)};
  ERR_clear_error();
  auto names = subject_alt_names(exts.get(), errc::bad_request, "the CSR");
  if (!names)
    return names.error();
  if (sk_GENERAL_NAME_num(names->get()) != 1)
    return make_error(errc::bad_request,
                      "the CSR must ask for exactly one name, " + std::string{uri});
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names->get(), 0);
  if (name->type != GEN_URI || view_of(name->d.uniformResourceIdentifier) != uri)
    return make_error(errc::bad_request, "the CSR does not ask for " + std::string{uri});
  return {};
}

} // namespace

// -- keys ------------------------------------------------------------------------------------

caf::expected<private_key> generate_key() {
  pkey_ptr key{EVP_EC_gen("P-256")};
  if (!key)
    return make_openssl_error(errc::crypto_failure, "generating a P-256 key");
  return private_key{std::move(key)};
}

caf::expected<std::string> to_pem(const private_key& key) {
  if (!key)
    return make_error(errc::invalid_argument, "no key");
  return write_pem(
      [&](BIO* bio) {
        return PEM_write_bio_PrivateKey(bio, key.native(), nullptr, nullptr, 0, nullptr, nullptr);
      },
      "a private key");
}

caf::expected<private_key> private_key_from_pem(std::string_view pem) {
  auto bio = read_bio(pem, errc::invalid_argument, "private key");
  if (!bio)
    return bio.error();
  pkey_ptr key{PEM_read_bio_PrivateKey(bio->get(), nullptr, no_passphrase, nullptr)};
  if (!key)
    return make_openssl_error(errc::invalid_argument, "not an unencrypted PEM private key");
  return private_key{std::move(key)};
}

// -- certificates and CSRs: encodings -------------------------------------------------------

caf::expected<std::string> to_pem(const certificate& cert) {
  if (!cert)
    return make_error(errc::invalid_argument, "no certificate");
  return write_pem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.native()); },
                   "a certificate");
}

caf::expected<std::string> to_pem(const chain& certs) {
  std::string out;
  for (const auto& cert : certs) {
    auto pem = to_pem(cert);
    if (!pem)
      return pem.error();
    out += *pem;
  }
  return out;
}

caf::expected<certificate> certificate_from_pem(std::string_view pem) {
  auto certs = certificates_from_pem(pem);
  if (!certs)
    return certs.error();
  if (certs->size() != 1)
    return make_error(errc::bad_certificate,
                      "expected one PEM certificate, found " + std::to_string(certs->size()));
  return std::move(certs->front());
}

caf::expected<chain> certificates_from_pem(std::string_view pem) {
  auto bio = read_bio(pem, errc::bad_certificate, "certificates");
  if (!bio)
    return bio.error();
  chain out;
  ERR_clear_error();
  for (;;) {
    x509_ptr cert{PEM_read_bio_X509(bio->get(), nullptr, no_passphrase, nullptr)};
    if (!cert) {
      auto code = ERR_peek_last_error();
      if (!out.empty() && ERR_GET_LIB(code) == ERR_LIB_PEM &&
          ERR_GET_REASON(code) == PEM_R_NO_START_LINE) {
        ERR_clear_error(); // the end of the input
        return out;
      }
      return make_openssl_error(errc::bad_certificate,
                                out.empty() ? "no PEM certificate"
                                            : "PEM certificate " + std::to_string(out.size() + 1) +
                                                  " is malformed");
    }
    if (out.size() == max_pem_certificates)
      return make_error(errc::bad_certificate,
                        "more than " + std::to_string(max_pem_certificates) + " PEM certificates");
    out.emplace_back(std::move(cert));
  }
}

caf::expected<std::vector<std::uint8_t>> to_der(const certificate& cert) {
  if (!cert)
    return make_error(errc::invalid_argument, "no certificate");
  return write_der(static_cast<const X509*>(cert.native()), i2d_X509, "a certificate");
}

caf::expected<certificate> certificate_from_der(std::span<const std::uint8_t> der) {
  auto cert = read_der<x509_ptr>(der, d2i_X509, errc::bad_certificate, "certificate");
  if (!cert)
    return cert.error();
  return certificate{std::move(*cert)};
}

caf::expected<std::string> to_pem(const certificate_request& csr) {
  if (!csr)
    return make_error(errc::invalid_argument, "no CSR");
  return write_pem([&](BIO* bio) { return PEM_write_bio_X509_REQ(bio, csr.native()); }, "a CSR");
}

caf::expected<certificate_request> certificate_request_from_pem(std::string_view pem) {
  auto bio = read_bio(pem, errc::bad_request, "CSR");
  if (!bio)
    return bio.error();
  x509_req_ptr req{PEM_read_bio_X509_REQ(bio->get(), nullptr, no_passphrase, nullptr)};
  if (!req)
    return make_openssl_error(errc::bad_request, "not a PEM CSR");
  return certificate_request{std::move(req)};
}

caf::expected<std::vector<std::uint8_t>> to_der(const certificate_request& csr) {
  if (!csr)
    return make_error(errc::invalid_argument, "no CSR");
  return write_der(static_cast<const X509_REQ*>(csr.native()), i2d_X509_REQ, "a CSR");
}

caf::expected<certificate_request> certificate_request_from_der(std::span<const std::uint8_t> der) {
  auto req = read_der<x509_req_ptr>(der, d2i_X509_REQ, errc::bad_request, "CSR");
  if (!req)
    return req.error();
  return certificate_request{std::move(*req)};
}

// -- fingerprints and fields ------------------------------------------------------------------

caf::expected<sha256_digest> spki_sha256(const X509& cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(&cert), &der);
  if (len <= 0)
    return make_openssl_error(errc::crypto_failure, "DER of a SubjectPublicKeyInfo");
  auto digest = sha256_of({der, static_cast<std::size_t>(len)});
  OPENSSL_free(der);
  return digest;
}

caf::expected<sha256_digest> spki_sha256(const certificate& cert) {
  if (!cert)
    return make_error(errc::bad_certificate, "no certificate");
  return spki_sha256(*cert.native());
}

caf::expected<sha256_digest> spki_sha256(const private_key& key) {
  if (!key)
    return make_error(errc::invalid_argument, "no key");
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key.native(), &der);
  if (len <= 0)
    return make_openssl_error(errc::crypto_failure, "DER of a SubjectPublicKeyInfo");
  auto digest = sha256_of({der, static_cast<std::size_t>(len)});
  OPENSSL_free(der);
  return digest;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0x0f];
  }
  return out;
}

std::string format_pin(const sha256_digest& digest) { return "sha256:" + to_hex(digest); }

caf::expected<sha256_digest> parse_pin(std::string_view text) {
  constexpr std::string_view prefix = "sha256:";
  auto bad = [&] {
    return make_error(errc::invalid_argument, "expected a pin like sha256:<64 hex digits>, got " +
                                                  std::string{text.substr(0, 80)});
  };
  if (!text.starts_with(prefix) || text.size() != prefix.size() + 64)
    return bad();
  text.remove_prefix(prefix.size());
  sha256_digest out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    const char* first = text.data() + 2 * i;
    auto [end, ec] = std::from_chars(first, first + 2, out[i], 16);
    if (ec != std::errc{} || end != first + 2)
      return bad();
  }
  return out;
}

caf::expected<time_point> not_before(const certificate& cert) {
  if (!cert)
    return make_error(errc::bad_certificate, "no certificate");
  return from_asn1_time(X509_get0_notBefore(cert.native()));
}

caf::expected<time_point> not_after(const certificate& cert) {
  if (!cert)
    return make_error(errc::bad_certificate, "no certificate");
  return from_asn1_time(X509_get0_notAfter(cert.native()));
}

caf::expected<spiffe_id> spiffe_id_of(const certificate& cert) {
  if (!cert)
    return make_error(errc::bad_certificate, "no certificate");
  auto names = subject_alt_names(X509_get0_extensions(cert.native()), errc::bad_certificate,
                                 "the certificate");
  if (!names)
    return names.error();
  std::optional<std::string_view> uri;
  for (int i = 0; i < sk_GENERAL_NAME_num(names->get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names->get(), i);
    if (name->type != GEN_URI)
      continue;
    if (uri)
      return make_error(errc::bad_certificate, "more than one URI subjectAltName");
    uri = view_of(name->d.uniformResourceIdentifier);
  }
  if (!uri)
    return make_error(errc::bad_certificate, "no URI subjectAltName");
  auto id = parse_spiffe_uri(*uri);
  if (!id)
    return make_error(errc::bad_certificate, "not a Starling SPIFFE ID");
  return std::move(*id);
}

// -- issuing ----------------------------------------------------------------------------------

caf::expected<certificate> issue_certificate(const certificate_spec& spec, EVP_PKEY& subject_key,
                                             const private_key& signer_key,
                                             const certificate* signer) {
  if (!signer_key || (signer != nullptr && !*signer))
    return make_error(errc::invalid_argument, "no signing key or certificate");
  x509_ptr cert{X509_new()};
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1)
    return make_openssl_error(errc::crypto_failure, "X509_new");
  if (auto err = set_random_serial(cert.get()))
    return err;
  auto subject = make_name(spec.common_name);
  if (!subject)
    return subject.error();
  X509* issuer = signer != nullptr ? signer->native() : cert.get();
  if (X509_set_subject_name(cert.get(), subject->get()) != 1 ||
      X509_set_issuer_name(cert.get(), signer != nullptr ? X509_get_subject_name(issuer)
                                                         : subject->get()) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), to_time_t(spec.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), to_time_t(spec.not_after)) == nullptr ||
      X509_set_pubkey(cert.get(), &subject_key) != 1)
    return make_openssl_error(errc::crypto_failure, "filling a certificate");
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
  std::string basic = spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
  if (spec.is_ca && spec.path_len)
    basic += ",pathlen:" + std::to_string(*spec.path_len);
  std::vector<std::pair<int, std::string>> exts{
      {NID_basic_constraints, basic},
      {NID_key_usage, spec.is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
      {NID_subject_key_identifier, "hash"},
  };
  if (!spec.is_ca)
    exts.emplace_back(NID_ext_key_usage, "serverAuth,clientAuth");
  if (signer != nullptr)
    exts.emplace_back(NID_authority_key_identifier, "keyid:always");
  if (!spec.permitted_uri_host.empty())
    exts.emplace_back(NID_name_constraints, "critical,permitted;URI:" + spec.permitted_uri_host);
  for (const auto& [nid, value] : exts)
    if (auto err = add_conf_ext(cert.get(), ctx, nid, value))
      return err;
  if (!spec.uri.empty()) {
    auto names = make_uri_san(spec.uri);
    if (!names)
      return names.error();
    if (X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names->get(), 0, X509V3_ADD_DEFAULT) !=
        1)
      return make_openssl_error(errc::crypto_failure, "adding subjectAltName");
  }
  for (const auto& ext : spec.extra_extensions)
    if (auto err = add_raw_ext(cert.get(), ext))
      return err;
  if (X509_sign(cert.get(), signer_key.native(), EVP_sha256()) <= 0)
    return make_openssl_error(errc::crypto_failure, "signing a certificate");
  return certificate{std::move(cert)};
}

caf::expected<certificate> issue_root(const private_key& key, std::string_view mesh, time_point now,
                                      std::chrono::seconds validity) {
  if (!is_valid_mesh_name(mesh))
    return make_error(errc::invalid_argument, "invalid mesh name \"" +
                                                  std::string{mesh.substr(0, 80)} + "\": use " +
                                                  std::string{mesh_name_rule});
  if (auto err = check_validity(validity))
    return err;
  if (!key)
    return make_error(errc::invalid_argument, "no root key");
  certificate_spec spec;
  spec.common_name = std::string{mesh} + " root";
  spec.uri = mesh_uri(mesh);
  spec.is_ca = true;
  spec.not_before = now - clock_skew_allowance;
  spec.not_after = now + validity;
  return issue_certificate(spec, *key.native(), key, nullptr);
}

caf::expected<credentials> create_root(std::string_view mesh, time_point now,
                                       std::chrono::seconds validity) {
  if (!is_valid_mesh_name(mesh) || validity <= seconds{0})
    return issue_root(private_key{}, mesh, now, validity).error(); // the same message
  auto key = generate_key();
  if (!key)
    return key.error();
  auto cert = issue_root(*key, mesh, now, validity);
  if (!cert)
    return cert.error();
  return credentials{std::move(*key), std::move(*cert)};
}

caf::expected<credentials> create_issuer(const private_key& root_key, const certificate& root_cert,
                                         std::string_view node_name, time_point now,
                                         std::chrono::seconds validity) {
  if (!is_valid_node_name(node_name))
    return make_error(errc::invalid_argument, "invalid node name \"" +
                                                  std::string{node_name.substr(0, 80)} +
                                                  "\": use " + std::string{node_name_rule});
  if (auto err = check_validity(validity))
    return err;
  auto root_id = spiffe_id_of(root_cert);
  if (!root_id || root_id->kind != spiffe_id::kind_t::mesh)
    return make_error(errc::invalid_argument,
                      "the root certificate carries no spiffe://<mesh> URI: not a mesh root");
  if (auto err = check_signer(root_key, root_cert, "root", now))
    return err;
  auto root_end = not_after(root_cert);
  if (!root_end)
    return root_end.error();
  auto key = generate_key();
  if (!key)
    return key.error();
  certificate_spec spec;
  spec.common_name = std::string{node_name} + " issuer";
  spec.uri = node_uri(root_id->mesh, node_name);
  spec.is_ca = true;
  spec.path_len = 0;
  spec.permitted_uri_host = root_id->mesh;
  spec.not_before = now - clock_skew_allowance;
  spec.not_after = std::min(now + validity, *root_end);
  auto cert = issue_certificate(spec, *key->native(), root_key, &root_cert);
  if (!cert)
    return cert.error();
  return credentials{std::move(*key), std::move(*cert)};
}

caf::expected<certificate_request> make_csr(const private_key& key, std::string_view mesh,
                                            std::string_view node_name) {
  if (!is_valid_mesh_name(mesh) || !is_valid_node_name(node_name))
    return make_error(errc::invalid_argument, "invalid mesh or node name");
  if (!key)
    return make_error(errc::invalid_argument, "no key");
  x509_req_ptr req{X509_REQ_new()};
  auto subject = make_name(node_name);
  if (!subject)
    return subject.error();
  auto names = make_uri_san(node_uri(mesh, node_name));
  if (!names)
    return names.error();
  x509_extensions_ptr exts{sk_X509_EXTENSION_new_null()};
  x509_extension_ptr san{X509V3_EXT_i2d(NID_subject_alt_name, 0, names->get())};
  if (!req || !exts || !san || sk_X509_EXTENSION_push(exts.get(), san.get()) <= 0)
    return make_openssl_error(errc::crypto_failure, "building a CSR");
  san.release(); // owned by `exts` now
  if (X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(req.get(), subject->get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.native()) != 1 ||
      X509_REQ_add_extensions(req.get(), exts.get()) != 1 ||
      X509_REQ_sign(req.get(), key.native(), EVP_sha256()) <= 0)
    return make_openssl_error(errc::crypto_failure, "building a CSR");
  return certificate_request{std::move(req)};
}

caf::error check_csr(const certificate_request& csr, std::string_view mesh,
                     std::string_view node_name) {
  if (!is_valid_mesh_name(mesh))
    return make_error(errc::invalid_argument, "invalid mesh name");
  if (!is_valid_node_name(node_name))
    return make_error(errc::bad_request,
                      "invalid node name \"" + std::string{node_name.substr(0, 80)} + "\"");
  if (!csr)
    return make_error(errc::bad_request, "no CSR");
  EVP_PKEY* subject_key = X509_REQ_get0_pubkey(csr.native());
  if (subject_key == nullptr || X509_REQ_verify(csr.native(), subject_key) != 1)
    return make_openssl_error(errc::bad_request, "the CSR's signature does not verify");
  if (!is_p256(subject_key))
    return make_error(errc::bad_request, "the CSR's key is not an ECDSA P-256 key");
  return check_csr_names(csr.native(), node_name, node_uri(mesh, node_name));
}

caf::expected<chain> sign_node(const certificate_request& csr, const private_key& issuer_key,
                               const certificate& issuer_cert, const chain& chain_above,
                               std::string_view mesh, std::string_view node_name, time_point now,
                               std::chrono::seconds validity,
                               const std::vector<raw_extension>& extra) {
  if (auto err = check_validity(validity))
    return err;
  if (auto err = check_csr(csr, mesh, node_name))
    return err;
  auto issuer_id = spiffe_id_of(issuer_cert);
  if (!issuer_id || issuer_id->mesh != mesh)
    return make_error(errc::invalid_argument,
                      "the issuer certificate is not one of mesh " + std::string{mesh});
  if (auto err = check_signer(issuer_key, issuer_cert, "issuer", now))
    return err;
  auto issuer_end = not_after(issuer_cert);
  if (!issuer_end)
    return issuer_end.error();
  certificate_spec spec;
  spec.common_name = std::string{node_name};
  spec.uri = node_uri(mesh, node_name);
  spec.not_before = now - clock_skew_allowance;
  spec.not_after = std::min(now + validity, *issuer_end);
  spec.extra_extensions = extra;
  auto leaf =
      issue_certificate(spec, *X509_REQ_get0_pubkey(csr.native()), issuer_key, &issuer_cert);
  if (!leaf)
    return leaf.error();
  chain out;
  out.reserve(2 + chain_above.size());
  out.push_back(std::move(*leaf));
  out.push_back(issuer_cert);
  out.insert(out.end(), chain_above.begin(), chain_above.end());
  return out;
}

} // namespace starling::identity
