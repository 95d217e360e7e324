// Keys, certificates and CSRs of a Starling mesh (docs/decisions/0004-certificates.md):
// ECDSA P-256 keys, the offline mesh root, issuer (intermediate) certificates and the
// short-lived node certificates issuers sign from CSRs. Pure: no I/O and no clock reads
// (`now` is passed in); randomness (keys, serials) comes from OpenSSL's CSPRNG. Nothing
// here throws; untrusted input (PEM, DER, CSRs) is refused with an error, never a crash.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/names.hpp"
#include "identity/openssl.hpp"

namespace starling::identity {

/// Wall-clock time: certificates speak UTC seconds.
using time_point = std::chrono::system_clock::time_point;

/// A SHA-256 digest, e.g. of a SubjectPublicKeyInfo (the pin of a root, the revocation key).
using sha256_digest = std::array<std::uint8_t, 32>;

/// Default lifetime of a mesh root.
inline constexpr std::chrono::seconds root_validity =
    std::chrono::duration_cast<std::chrono::seconds>(std::chrono::years{10});
/// Default lifetime of an issuer certificate.
inline constexpr std::chrono::seconds issuer_validity = std::chrono::days{365};
/// Default lifetime of a node certificate (renewed at 2/3 of it).
inline constexpr std::chrono::seconds node_validity = std::chrono::hours{24};
/// How far before `now` every issued certificate starts, for peers whose clocks lag.
inline constexpr std::chrono::seconds clock_skew_allowance = std::chrono::minutes{1};

/// A private key (or, for keys taken from a CSR, a public one). Copies share the key.
class private_key : public shared_handle<pkey_ptr> {
public:
  using shared_handle::shared_handle;
};

/// An X.509 certificate. Copies share the (immutable) certificate.
class certificate : public shared_handle<x509_ptr> {
public:
  using shared_handle::shared_handle;
};

/// Certificates in TLS order: the subject's certificate first, then each one's issuer.
/// A trust anchor (root) may end it but need not.
using chain = std::vector<certificate>;

/// A PKCS#10 certificate signing request. Move-only.
class certificate_request {
public:
  /// An empty request.
  certificate_request() noexcept = default;
  /// Takes ownership of `req`.
  explicit certificate_request(x509_req_ptr req) noexcept : req_(std::move(req)) {}
  /// The OpenSSL object (owned by this request), or null when empty.
  [[nodiscard]] X509_REQ* native() const noexcept { return req_.get(); }
  /// True unless empty.
  explicit operator bool() const noexcept { return req_ != nullptr; }

private:
  x509_req_ptr req_;
};

/// A key with its certificate: a mesh root or an issuer.
struct credentials {
  private_key key;
  certificate cert;
};

// -- keys ------------------------------------------------------------------------------------

/// Generates an ECDSA P-256 key. Errors: crypto_failure.
[[nodiscard]] caf::expected<private_key> generate_key();

/// PKCS#8 PEM ("BEGIN PRIVATE KEY"), unencrypted: files holding it are mode 0600.
[[nodiscard]] caf::expected<std::string> to_pem(const private_key& key);

/// Reads a PEM private key (PKCS#8 or the traditional EC form). Encrypted keys are refused
/// (no passphrase prompt). Errors: invalid_argument.
[[nodiscard]] caf::expected<private_key> private_key_from_pem(std::string_view pem);

// -- certificates and CSRs: encodings -------------------------------------------------------

/// PEM of one certificate. Errors: crypto_failure.
[[nodiscard]] caf::expected<std::string> to_pem(const certificate& cert);

/// The PEM blocks of `certs`, concatenated in order. Errors: crypto_failure.
[[nodiscard]] caf::expected<std::string> to_pem(const chain& certs);

/// Reads exactly one PEM certificate. Errors: bad_certificate.
[[nodiscard]] caf::expected<certificate> certificate_from_pem(std::string_view pem);

/// Reads one or more PEM certificates (at most max_pem_certificates), in file order.
/// Text around the blocks is ignored. Errors: bad_certificate.
[[nodiscard]] caf::expected<chain> certificates_from_pem(std::string_view pem);

/// Bound on certificates_from_pem (and on a presented chain).
inline constexpr std::size_t max_pem_certificates = 16;

/// DER of a certificate. Errors: crypto_failure.
[[nodiscard]] caf::expected<std::vector<std::uint8_t>> to_der(const certificate& cert);

/// Reads one DER certificate; trailing bytes are refused. Errors: bad_certificate.
[[nodiscard]] caf::expected<certificate> certificate_from_der(std::span<const std::uint8_t> der);

/// PEM of a CSR. Errors: crypto_failure.
[[nodiscard]] caf::expected<std::string> to_pem(const certificate_request& csr);

/// Reads one PEM CSR. Errors: bad_request.
[[nodiscard]] caf::expected<certificate_request> certificate_request_from_pem(std::string_view pem);

/// DER of a CSR (what travels in an admission request). Errors: crypto_failure.
[[nodiscard]] caf::expected<std::vector<std::uint8_t>> to_der(const certificate_request& csr);

/// Reads one DER CSR; trailing bytes are refused. Errors: bad_request.
[[nodiscard]] caf::expected<certificate_request>
certificate_request_from_der(std::span<const std::uint8_t> der);

// -- fingerprints and fields ------------------------------------------------------------------

/// SHA-256 of the DER SubjectPublicKeyInfo of `cert`: a root's pin, the revocation key.
/// It survives re-issuing a certificate for the same key. Errors: crypto_failure.
[[nodiscard]] caf::expected<sha256_digest> spki_sha256(const X509& cert);

/// spki_sha256 of a certificate handle (bad_certificate when empty).
[[nodiscard]] caf::expected<sha256_digest> spki_sha256(const certificate& cert);

/// SHA-256 of the DER SubjectPublicKeyInfo of `key`'s public part. Errors: crypto_failure.
[[nodiscard]] caf::expected<sha256_digest> spki_sha256(const private_key& key);

/// Lower-case hex of `bytes`.
[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> bytes);

/// "sha256:<64 lower-case hex digits>": how pins are printed and put in join tokens.
[[nodiscard]] std::string format_pin(const sha256_digest& digest);

/// Reads format_pin's form (hex in either case). Errors: invalid_argument.
[[nodiscard]] caf::expected<sha256_digest> parse_pin(std::string_view text);

/// notBefore of `cert`. Errors: bad_certificate.
[[nodiscard]] caf::expected<time_point> not_before(const certificate& cert);

/// notAfter of `cert`. Errors: bad_certificate.
[[nodiscard]] caf::expected<time_point> not_after(const certificate& cert);

/// The SPIFFE ID of `cert`: its one URI subjectAltName (other SAN types are ignored, as
/// X.509-SVIDs allow). Errors: bad_certificate when there is no URI SAN, more than one, or
/// it is not a valid Starling SPIFFE ID.
[[nodiscard]] caf::expected<spiffe_id> spiffe_id_of(const certificate& cert);

// -- issuing ----------------------------------------------------------------------------------

/// Creates a mesh root: a new P-256 key and a self-signed certificate (profile in
/// docs/decisions/0004), valid from now - clock_skew_allowance for `validity`.
/// Errors: invalid_argument (mesh name, validity), crypto_failure.
[[nodiscard]] caf::expected<credentials> create_root(std::string_view mesh, time_point now,
                                                     std::chrono::seconds validity = root_validity);

/// Issues a root certificate for an existing key (a root re-issued with the same key keeps
/// its pin). Errors: as create_root.
[[nodiscard]] caf::expected<certificate> issue_root(const private_key& key, std::string_view mesh,
                                                    time_point now,
                                                    std::chrono::seconds validity = root_validity);

/// Creates an issuer for node `node_name`: a new P-256 key and an intermediate certificate
/// signed by the root, CA with pathlen 0, name-constrained to URIs of the root's mesh. Its
/// notAfter is capped at the root's. Errors: invalid_argument (name, validity, a root
/// certificate that is not a Starling root or does not match `root_key`), expired /
/// not_yet_valid (the root at `now`), crypto_failure.
[[nodiscard]] caf::expected<credentials>
create_issuer(const private_key& root_key, const certificate& root_cert, std::string_view node_name,
              time_point now, std::chrono::seconds validity = issuer_validity);

/// Makes the CSR a node sends to be admitted: subject O=starling, CN=<node_name>, one URI
/// SAN spiffe://<mesh>/node/<node_name>, signed with `key`.
/// Errors: invalid_argument (names), crypto_failure.
[[nodiscard]] caf::expected<certificate_request>
make_csr(const private_key& key, std::string_view mesh, std::string_view node_name);

/// A non-critical extension given by OID (dotted text) and its DER value (the content of
/// extnValue): what sign_node adds for the admission quorum's endorsements.
struct raw_extension {
  std::string oid;
  std::vector<std::uint8_t> value;
};

/// The checks sign_node makes of a CSR, alone: its signature verifies, its key is P-256,
/// and its names ask for exactly `node_name` of `mesh` (CN, if any, equal to it; exactly
/// one SAN, the URI spiffe://<mesh>/node/<node_name>). Errors: bad_request (the CSR or
/// `node_name`), invalid_argument (mesh name).
[[nodiscard]] caf::error check_csr(const certificate_request& csr, std::string_view mesh,
                                   std::string_view node_name);

/// Signs the node certificate that `csr` asks for, after checking the request (check_csr).
/// The certificate is the node profile of docs/decisions/0004, valid from
/// now - clock_skew_allowance to min(now + validity, the issuer's notAfter), with `extra`
/// extensions added (non-critical). Returns the chain to present: the new leaf,
/// `issuer_cert`, then `chain_above` (intermediates above the issuer, if any).
/// Errors: bad_request (the CSR, or `node_name` — both come from the joining node),
/// invalid_argument (mesh name, validity, an issuer certificate that is not a CA of `mesh`
/// or does not match `issuer_key`), expired / not_yet_valid (the issuer at `now`),
/// crypto_failure.
[[nodiscard]] caf::expected<chain>
sign_node(const certificate_request& csr, const private_key& issuer_key,
          const certificate& issuer_cert, const chain& chain_above, std::string_view mesh,
          std::string_view node_name, time_point now, std::chrono::seconds validity = node_validity,
          const std::vector<raw_extension>& extra = {});

/// What issue_certificate puts in a certificate. The profiles (root, issuer, node) are
/// built from it by the functions above; tests use it to forge certificates that break
/// one rule.
struct certificate_spec {
  /// Subject: O=starling, CN=<common_name>.
  std::string common_name;
  /// The one URI subjectAltName; empty for none.
  std::string uri;
  /// A CA: basicConstraints CA:TRUE, keyUsage keyCertSign+cRLSign. Otherwise CA:FALSE,
  /// keyUsage digitalSignature, extendedKeyUsage serverAuth+clientAuth.
  bool is_ca = false;
  /// pathLenConstraint of a CA; none when empty.
  std::optional<unsigned> path_len;
  /// Critical nameConstraints permitting only URIs with this host; none when empty.
  std::string permitted_uri_host;
  /// Validity, in whole seconds (fractions are truncated).
  time_point not_before;
  time_point not_after;
  /// Further non-critical extensions, added last.
  std::vector<raw_extension> extra_extensions{};
};

/// Low-level: issues a certificate for `subject_key` (its public part is used) as `spec`
/// says, with a random 128-bit serial, SKI and (unless self-signed) AKI, signed by
/// `signer_key` with ECDSA-SHA256 (SHA-256 for any key type). `signer` is the issuing
/// certificate, or null for a self-signed one. No policy is checked here.
/// Errors: crypto_failure.
[[nodiscard]] caf::expected<certificate> issue_certificate(const certificate_spec& spec,
                                                           EVP_PKEY& subject_key,
                                                           const private_key& signer_key,
                                                           const certificate* signer);

} // namespace starling::identity
