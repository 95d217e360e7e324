// A test PKI generated at run time (no certificate is committed, so none can expire in the
// repository): a mesh root, an issuer, node certificates for given names, and the
// expired / not-yet-valid / revoked / forged variants the trust tests need. Everything is
// made relative to a caller-given `now`; nothing reads the clock. Helpers throw
// std::runtime_error (with the rendered identity error) when OpenSSL fails, which fails the
// test that called them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "identity/admission.hpp"
#include "identity/pki.hpp"
#include "identity/trust.hpp"

namespace starling::testing {

/// A fixed instant for tests: 2031-05-06T07:08:09Z (whole seconds, as certificates store).
[[nodiscard]] identity::time_point test_now();

/// A node's key and the chain it presents (leaf, then its issuer).
struct test_node {
  identity::private_key key;
  identity::chain chain;

  /// The node's certificate.
  [[nodiscard]] const identity::certificate& leaf() const { return chain.front(); }
};

/// Throws std::runtime_error("<what>: <rendered err>").
[[noreturn]] void throw_error(std::string_view what, const caf::error& err);

/// Unwraps `value`, throwing std::runtime_error with the rendered error otherwise.
template <class T> T must(caf::expected<T> value, std::string_view what) {
  if (!value)
    throw_error(what, value.error());
  return std::move(*value);
}

/// How long before `now` a test_pki's root was created (so that issuers and nodes can be
/// issued in the past, for expired variants).
inline constexpr std::chrono::seconds test_root_age = std::chrono::days{400};
/// How long before `now` a test_pki's issuer "issuer-1" was created.
inline constexpr std::chrono::seconds test_issuer_age = std::chrono::days{30};

/// One mesh: a root created test_root_age before `now` and an issuer ("issuer-1") created
/// test_issuer_age before `now`, with the default validities (root 10 years, issuer 1 year).
/// Not thread-safe.
class test_pki {
public:
  /// Creates the root and the issuer of `mesh`, backdated from `now` as said above.
  explicit test_pki(identity::time_point now = test_now(), std::string mesh = "test.mesh");

  /// The mesh name.
  [[nodiscard]] const std::string& mesh() const noexcept { return mesh_; }
  /// The `now` everything defaults to.
  [[nodiscard]] identity::time_point now() const noexcept { return now_; }
  /// The root key and certificate (valid from now - test_root_age - 1 min for 10 years).
  [[nodiscard]] const identity::credentials& root() const noexcept { return root_; }
  /// The issuer "issuer-1", signed by the root, valid from now - test_issuer_age - 1 min
  /// for a year.
  [[nodiscard]] const identity::credentials& issuer() const noexcept { return issuer_; }
  /// A bundle holding the root only.
  [[nodiscard]] const identity::trust_bundle& bundle() const noexcept { return bundle_; }

  /// A new issuer for node `name`, signed by the root at `issued_at` for `validity`.
  [[nodiscard]] identity::credentials
  make_issuer(std::string_view name, identity::time_point issued_at,
              std::chrono::seconds validity = identity::issuer_validity) const;

  /// The material of `issuer` (issuer() or another issuer of this mesh, e.g. from
  /// make_issuer), as load_issuer makes it: the bundle, the mesh, the node the certificate
  /// names and the root's pin.
  [[nodiscard]] identity::issuer_material material(const identity::credentials& issuer) const;

  /// A node certificate for `name` from issuer(), issued at now() with the default validity.
  [[nodiscard]] test_node node(std::string_view name) const;

  /// A node certificate for `name` issued by `by` at `issued_at` for `validity` (through
  /// make_csr and sign_node, so capped at the issuer's notAfter).
  [[nodiscard]] test_node node(std::string_view name, const identity::credentials& by,
                               identity::time_point issued_at,
                               std::chrono::seconds validity = identity::node_validity) const;

  /// A node certificate that expired a day before now().
  [[nodiscard]] test_node expired_node(std::string_view name) const;

  /// A node certificate that becomes valid an hour after now().
  [[nodiscard]] test_node future_node(std::string_view name) const;

  /// A revocation set holding the key of `cert`.
  [[nodiscard]] static identity::revocation_set revoking(const identity::certificate& cert);

  /// Forges a certificate for `subject`'s key as `spec` says, signed by `signer` (null:
  /// self-signed by `subject`): for certificates that break a rule on purpose.
  [[nodiscard]] static identity::certificate forge(const identity::certificate_spec& spec,
                                                   const identity::private_key& subject,
                                                   const identity::credentials* signer);

  /// A certificate_spec of the node profile for `name` of `mesh`, valid [from, to).
  [[nodiscard]] static identity::certificate_spec node_spec(std::string_view mesh,
                                                            std::string_view name,
                                                            identity::time_point from,
                                                            identity::time_point to);

private:
  std::string mesh_;
  identity::time_point now_;
  identity::credentials root_;
  identity::credentials issuer_;
  identity::trust_bundle bundle_;
};

/// The test binary's mesh, made once (key generation is the slow part).
inline const test_pki& mesh() {
  static const test_pki instance;
  return instance;
}

/// Another mesh with its own root ("other.mesh", same clock): its nodes and ours refuse
/// each other.
inline const test_pki& other_mesh() {
  static const test_pki instance{mesh().now(), "other.mesh"};
  return instance;
}

} // namespace starling::testing
