#include "identity/trust.hpp"

#include <algorithm>

#include <openssl/err.h>

#include "identity/errc.hpp"

namespace starling::identity {

namespace {

/// "depth 1 (/O=starling/CN=n1 issuer)": which certificate a refusal is about.
std::string describe(int depth, X509* cert) {
  std::string out = "depth " + std::to_string(depth);
  if (cert != nullptr) {
    char buf[256] = {};
    if (X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf)) != nullptr) {
      out += " (";
      out += buf;
      out += ')';
    }
  }
  return out;
}

/// The errc of an X509_V_ERR_* from path validation.
errc classify(int verify_error) {
  switch (verify_error) {
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return errc::expired;
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return errc::not_yet_valid;
  case X509_V_ERR_PERMITTED_VIOLATION:
  case X509_V_ERR_EXCLUDED_VIOLATION:
  case X509_V_ERR_SUBTREE_MINMAX:
  case X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE:
  case X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX:
  case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
    return errc::name_constraint;
  case X509_V_ERR_CERT_REVOKED:
    return errc::revoked;
  case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
  case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
  case X509_V_ERR_EC_KEY_EXPLICIT_PARAMS:
    return errc::bad_certificate;
  default:
    return errc::untrusted_chain;
  }
}

/// The X509_V_ERR_* that makes libssl send the fitting TLS alert for a refusal.
int verify_error_of(const caf::error& err) {
  if (is(err, errc::expired))
    return X509_V_ERR_CERT_HAS_EXPIRED;
  if (is(err, errc::not_yet_valid))
    return X509_V_ERR_CERT_NOT_YET_VALID;
  if (is(err, errc::revoked))
    return X509_V_ERR_CERT_REVOKED;
  if (is(err, errc::name_constraint))
    return X509_V_ERR_PERMITTED_VIOLATION;
  if (is(err, errc::untrusted_chain))
    return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
  return X509_V_ERR_APPLICATION_VERIFICATION;
}

/// Checks that `cert` can be a root of a bundle; returns its mesh.
caf::expected<std::string> root_mesh(const certificate& cert) {
  if (!cert)
    return make_error(errc::bad_certificate, "no root certificate");
  if (X509_check_ca(cert.native()) == 0)
    return make_error(errc::bad_certificate, "a bundle root is not a CA certificate");
  if (X509_self_signed(cert.native(), 1) != 1) {
    ERR_clear_error();
    return make_error(errc::bad_certificate, "a bundle root is not self-signed");
  }
  auto id = spiffe_id_of(cert);
  if (!id)
    return id.error();
  if (id->kind != spiffe_id::kind_t::mesh)
    return make_error(errc::bad_certificate, "a bundle root's URI is not spiffe://<mesh>");
  return std::move(id->mesh);
}

/// The node a chain member names, checked against the bundle's mesh.
caf::expected<std::string> node_of(const certificate& cert, const std::string& mesh,
                                   const char* role) {
  auto id = spiffe_id_of(cert);
  if (!id)
    return make_error(errc::bad_certificate,
                      std::string{role} + " has no valid SPIFFE ID (" + render(id.error()) + ")");
  if (id->mesh != mesh)
    return make_error(errc::foreign_mesh,
                      std::string{role} + " is of mesh " + id->mesh + ", not " + mesh);
  if (id->kind != spiffe_id::kind_t::node)
    return make_error(errc::bad_certificate,
                      std::string{role} + ": URI is not spiffe://<mesh>/node/<name>");
  return std::move(id->name);
}

/// The leaf profile: an end entity for TLS server and client use.
caf::error check_leaf_profile(X509* leaf) {
  if (X509_check_ca(leaf) != 0)
    return make_error(errc::bad_certificate, "the peer's certificate is a CA certificate");
  if ((X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) == 0)
    return make_error(errc::bad_certificate, "the peer's certificate lacks digitalSignature");
  constexpr std::uint32_t both = XKU_SSL_SERVER | XKU_SSL_CLIENT;
  if ((X509_get_extended_key_usage(leaf) & both) != both)
    return make_error(errc::bad_certificate,
                      "the peer's certificate lacks serverAuth and clientAuth");
  return {};
}

} // namespace

// -- trust_bundle ----------------------------------------------------------------------------

caf::expected<trust_bundle> trust_bundle::make(const chain& roots) {
  if (roots.empty())
    return make_error(errc::invalid_argument, "a trust bundle needs at least one root");
  trust_bundle out;
  for (const auto& root : roots)
    if (auto err = out.add(root))
      return err;
  return out;
}

caf::expected<trust_bundle> trust_bundle::from_pem(std::string_view pem) {
  auto roots = certificates_from_pem(pem);
  if (!roots)
    return roots.error();
  return make(*roots);
}

caf::expected<std::string> trust_bundle::to_pem() const { return identity::to_pem(roots_); }

caf::error trust_bundle::add(const certificate& root) {
  auto mesh = root_mesh(root);
  if (!mesh)
    return mesh.error();
  if (!roots_.empty() && *mesh != mesh_)
    return make_error(errc::foreign_mesh,
                      "a root of mesh " + *mesh + " in a bundle of mesh " + mesh_);
  auto same = [&](const certificate& c) { return X509_cmp(c.native(), root.native()) == 0; };
  if (std::any_of(roots_.begin(), roots_.end(), same))
    return {};
  auto pin = spki_sha256(root);
  if (!pin)
    return pin.error();
  mesh_ = std::move(*mesh);
  roots_.push_back(root);
  if (!contains_pin(*pin))
    pins_.push_back(*pin);
  return {};
}

bool trust_bundle::contains_pin(const sha256_digest& pin) const noexcept {
  return std::find(pins_.begin(), pins_.end(), pin) != pins_.end();
}

// -- revocation_set --------------------------------------------------------------------------

bool revocation_set::insert(const sha256_digest& spki) { return keys_.insert(spki).second; }

std::size_t revocation_set::merge(const revocation_set& other) {
  auto before = keys_.size();
  keys_.insert(other.keys_.begin(), other.keys_.end());
  return keys_.size() - before;
}

// -- verification ----------------------------------------------------------------------------

caf::expected<chain> verify_path(const chain& presented, const trust_bundle& bundle,
                                 time_point now) {
  if (presented.empty() || !presented.front())
    return make_error(errc::no_certificate, "the peer presented no certificate");
  if (presented.size() > max_pem_certificates)
    return make_error(errc::bad_certificate,
                      "the peer presented " + std::to_string(presented.size()) + " certificates");
  x509_store_ptr store{X509_STORE_new()};
  x509_stack_ptr untrusted{sk_X509_new_null()};
  x509_store_ctx_ptr ctx{X509_STORE_CTX_new()};
  if (!store || !untrusted || !ctx)
    return make_openssl_error(errc::crypto_failure, "verification context");
  for (const auto& root : bundle.roots())
    if (X509_STORE_add_cert(store.get(), root.native()) != 1)
      return make_openssl_error(errc::crypto_failure, "adding a root to the store");
  for (std::size_t i = 1; i < presented.size(); ++i) {
    if (!presented[i])
      return make_error(errc::bad_certificate, "an empty certificate in the chain");
    auto ref = share(presented[i].native());
    if (!ref || sk_X509_push(untrusted.get(), ref.get()) <= 0)
      return make_openssl_error(errc::crypto_failure, "building the presented chain");
    ref.release(); // owned by `untrusted` now
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), presented.front().native(), untrusted.get()) != 1)
    return make_openssl_error(errc::crypto_failure, "X509_STORE_CTX_init");
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(
      param, std::chrono::system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(now)));
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
  X509_VERIFY_PARAM_clear_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_depth(param, static_cast<int>(max_pem_certificates));
  int rc = X509_verify_cert(ctx.get());
  if (rc != 1) {
    int code = X509_STORE_CTX_get_error(ctx.get());
    auto where = describe(X509_STORE_CTX_get_error_depth(ctx.get()),
                          X509_STORE_CTX_get_current_cert(ctx.get()));
    if (rc < 0 || code == X509_V_OK)
      return make_openssl_error(errc::crypto_failure, "X509_verify_cert: " + where);
    ERR_clear_error();
    return make_error(classify(code), where + ": " + X509_verify_cert_error_string(code));
  }
  x509_stack_ptr built{X509_STORE_CTX_get1_chain(ctx.get())};
  const int depth = built ? sk_X509_num(built.get()) : 0;
  if (depth < 1)
    return make_openssl_error(errc::crypto_failure, "no verified chain");
  chain path;
  for (int i = 0; i < depth; ++i)
    path.emplace_back(share(sk_X509_value(built.get(), i)));
  return path;
}

caf::expected<peer_identity> verify_peer(const chain& presented, const trust_bundle& bundle,
                                         const revocation_set& revoked, time_point now,
                                         std::optional<std::string_view> expected_node) {
  // Path validation by OpenSSL, against the bundle's roots only, at `now`.
  auto verified = verify_path(presented, bundle, now);
  if (!verified)
    return verified.error();
  const chain& path = *verified;
  const int depth = static_cast<int>(path.size());
  X509* leaf = path.front().native();
  // Revocation: by public key, for every member of the verified chain.
  for (int i = 0; i < depth; ++i) {
    auto spki = spki_sha256(path[static_cast<std::size_t>(i)]);
    if (!spki)
      return spki.error();
    if (revoked.contains(*spki))
      return make_error(errc::revoked, describe(i, path[static_cast<std::size_t>(i)].native()) +
                                           ": key " + format_pin(*spki) + " is revoked");
  }
  // Identity: the leaf's profile and SPIFFE ID, the issuers' node names.
  if (auto err = check_leaf_profile(leaf))
    return err;
  peer_identity id;
  id.mesh = bundle.mesh();
  auto node = node_of(path.front(), bundle.mesh(), "the peer's certificate");
  if (!node)
    return node.error();
  id.node = std::move(*node);
  for (int i = 1; i + 1 < depth; ++i) {
    auto issuer =
        node_of(path[static_cast<std::size_t>(i)], bundle.mesh(), "an issuer certificate");
    if (!issuer)
      return issuer.error();
    id.issuers.push_back(std::move(*issuer));
    auto key = spki_sha256(path[static_cast<std::size_t>(i)]);
    if (!key)
      return key.error();
    id.issuer_keys.push_back(*key);
  }
  if (auto err = check_expected_node(id, expected_node))
    return err;
  auto spki = spki_sha256(path.front());
  auto root_pin = spki_sha256(path.back());
  auto end = not_after(path.front());
  if (!spki)
    return spki.error();
  if (!root_pin)
    return root_pin.error();
  if (!end)
    return end.error();
  id.spki_sha256 = *spki;
  id.root_pin = *root_pin;
  id.not_after = *end;
  return id;
}

chain presented_chain(X509_STORE_CTX& ctx) {
  chain out;
  X509* leaf = X509_STORE_CTX_get0_cert(&ctx);
  if (leaf == nullptr)
    return out;
  out.emplace_back(share(leaf));
  if (STACK_OF(X509)* rest = X509_STORE_CTX_get0_untrusted(&ctx); rest != nullptr) {
    for (int i = 0; i < sk_X509_num(rest); ++i) {
      X509* cert = sk_X509_value(rest, i);
      if (cert != nullptr && X509_cmp(cert, leaf) != 0) // libssl puts the leaf in it too
        out.emplace_back(share(cert));
    }
  }
  return out;
}

caf::expected<peer_identity> verify_peer(X509_STORE_CTX& ctx, const trust_bundle& bundle,
                                         const revocation_set& revoked, time_point now,
                                         std::optional<std::string_view> expected_node) {
  auto result = verify_peer(presented_chain(ctx), bundle, revoked, now, expected_node);
  record_outcome(ctx, result);
  return result;
}

void record_outcome(X509_STORE_CTX& ctx, const caf::expected<peer_identity>& outcome) {
  X509_STORE_CTX_set_error(&ctx, outcome ? X509_V_OK : verify_error_of(outcome.error()));
}

caf::error check_expected_node(const peer_identity& id,
                               std::optional<std::string_view> expected_node) {
  if (expected_node && *expected_node != id.node)
    return make_error(errc::name_mismatch, "the peer's certificate names node " + id.node +
                                               ", not " + std::string{*expected_node});
  return {};
}

} // namespace starling::identity
