// Signed statements (identity/statement.hpp): the canonical encoding, signing and the
// checks every kind shares. Every input is hostile until verify_statement accepted it:
// sizes are bounded before any parsing, and OpenSSL's error queue is drained into each
// error.
#include "identity/statement.hpp"

#include <array>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "identity/admission.hpp"
#include "identity/errc.hpp"

namespace starling::identity {

namespace {

/// True if `sig` is `cert`'s key's signature over `bytes`.
bool signature_verifies(const certificate& cert, const std::vector<std::uint8_t>& bytes,
                        std::span<const std::uint8_t> sig) {
  EVP_PKEY* pub = X509_get0_pubkey(cert.native());
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  bool ok = pub != nullptr && ctx &&
            EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pub) == 1 &&
            EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), bytes.data(), bytes.size()) == 1;
  ERR_clear_error(); // a bad signature leaves an entry; it is not an OpenSSL failure
  return ok;
}

} // namespace

std::vector<std::uint8_t> signed_bytes(const statement_view& s) {
  std::vector<std::uint8_t> out(s.kind.context.begin(), s.kind.context.end());
  out.push_back(0);
  out.insert(out.end(), s.key.begin(), s.key.end());
  out.push_back(static_cast<std::uint8_t>(s.node.size()));
  out.insert(out.end(), s.node.begin(), s.node.end());
  const auto at = static_cast<std::uint64_t>(s.at.time_since_epoch().count());
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<std::uint8_t>(at >> shift));
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(s.issuer.data(), s.issuer.size(), digest.data());
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

caf::expected<statement_seal> seal_statement(const issuer_material& issuer,
                                             const statement_view& s) {
  auto der = to_der(issuer.cert);
  if (!der)
    return der.error();
  auto signed_view = s;
  signed_view.issuer = *der;
  const auto bytes = signed_bytes(signed_view);
  const auto what = "signing " + std::string{s.kind.name};
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  std::size_t len = 0;
  if (!ctx ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, issuer.key.native()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, bytes.data(), bytes.size()) != 1)
    return make_openssl_error(errc::crypto_failure, what);
  std::vector<std::uint8_t> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, bytes.data(), bytes.size()) != 1)
    return make_openssl_error(errc::crypto_failure, what);
  sig.resize(len);
  return statement_seal{std::move(*der), std::move(sig)};
}

caf::error check_statement_shape(const statement_view& s) {
  const std::string kind{s.kind.name};
  if (!is_valid_node_name(s.node))
    return bad_request(kind + " for an invalid node name (" + std::to_string(s.node.size()) +
                       " bytes)");
  if (s.issuer.empty() || s.issuer.size() > max_revocation_issuer_bytes)
    return bad_request(kind + " with an issuer certificate of " + std::to_string(s.issuer.size()) +
                       " bytes (1 to " + std::to_string(max_revocation_issuer_bytes) + ")");
  if (s.signature.empty() || s.signature.size() > max_revocation_signature_bytes)
    return bad_request(kind + " with a signature of " + std::to_string(s.signature.size()) +
                       " bytes (1 to " + std::to_string(max_revocation_signature_bytes) + ")");
  if (s.at.time_since_epoch().count() < 0)
    return bad_request(kind + " dated before 1970");
  return {};
}

std::string describe_statement(const statement_view& s) {
  auto noun = s.kind.name.substr(s.kind.name.find(' ') + 1); // without the article
  return "the " + std::string{noun} + " of " + format_pin(s.key) + " (node " + std::string{s.node} +
         ")";
}

caf::expected<issuer_identity> verify_statement(const statement_view& s, const trust_bundle& bundle,
                                                time_point now) {
  if (auto err = check_statement_shape(s))
    return err;
  const auto what = describe_statement(s);
  auto who = verify_issuer(s.issuer, bundle, now);
  if (!who)
    return make_error(static_cast<errc>(who.error().code()), what + ": " + render(who.error()));
  auto cert = certificate_from_der(s.issuer);
  if (!cert)
    return cert.error();
  if (!signature_verifies(*cert, signed_bytes(s), s.signature))
    return make_error(errc::bad_signature,
                      what + " by '" + who->node + "': the signature does not verify");
  if (s.at > unix_seconds(now) + clock_skew_allowance)
    return bad_request(what + " by '" + who->node + "' is dated in the future");
  return who;
}

} // namespace starling::identity
