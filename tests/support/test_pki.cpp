#include "tests/support/test_pki.hpp"

#include <stdexcept>

#include "identity/errc.hpp"

namespace starling::testing {

using namespace std::chrono_literals;
using identity::time_point;

time_point test_now() {
  // 2031-05-06T07:08:09Z
  return time_point{std::chrono::seconds{1935817689}};
}

void throw_error(std::string_view what, const caf::error& err) {
  throw std::runtime_error(std::string{what} + ": " + identity::render(err));
}

test_pki::test_pki(time_point now, std::string mesh)
    : mesh_(std::move(mesh)), now_(now),
      root_(must(identity::create_root(mesh_, now_ - test_root_age), "test root")),
      issuer_(make_issuer("issuer-1", now_ - test_issuer_age)),
      bundle_(must(identity::trust_bundle::make({root_.cert}), "test bundle")) {}

identity::credentials test_pki::make_issuer(std::string_view name, time_point issued_at,
                                            std::chrono::seconds validity) const {
  return must(identity::create_issuer(root_.key, root_.cert, name, issued_at, validity),
              "test issuer");
}

identity::issuer_material test_pki::material(const identity::credentials& issuer) const {
  identity::issuer_material out{issuer.key, issuer.cert, bundle_, mesh_, {}, {}};
  out.node = must(identity::spiffe_id_of(issuer.cert), "the issuer's SPIFFE ID").name;
  out.pin = must(identity::spki_sha256(root_.cert), "root pin");
  return out;
}

test_node test_pki::node(std::string_view name) const { return node(name, issuer_, now_); }

test_node test_pki::node(std::string_view name, const identity::credentials& by,
                         time_point issued_at, std::chrono::seconds validity) const {
  test_node out;
  out.key = must(identity::generate_key(), "test node key");
  auto csr = must(identity::make_csr(out.key, mesh_, name), "test CSR");
  out.chain = must(identity::sign_node(csr, by.key, by.cert, {}, mesh_, name, issued_at, validity),
                   "test node certificate");
  return out;
}

test_node test_pki::expired_node(std::string_view name) const {
  return node(name, issuer_, now_ - 48h, 24h);
}

test_node test_pki::future_node(std::string_view name) const {
  return node(name, issuer_, now_ + 1h, 24h);
}

identity::revocation_set test_pki::revoking(const identity::certificate& cert) {
  identity::revocation_set out;
  out.insert(must(identity::spki_sha256(cert), "SPKI of a revoked certificate"));
  return out;
}

identity::certificate test_pki::forge(const identity::certificate_spec& spec,
                                      const identity::private_key& subject,
                                      const identity::credentials* signer) {
  return must(identity::issue_certificate(spec, *subject.native(),
                                          signer != nullptr ? signer->key : subject,
                                          signer != nullptr ? &signer->cert : nullptr),
              "forged certificate");
}

identity::certificate_spec test_pki::node_spec(std::string_view mesh, std::string_view name,
                                               time_point from, time_point to) {
  identity::certificate_spec spec;
  spec.common_name = std::string{name};
  spec.uri = identity::node_uri(mesh, name);
  spec.not_before = from;
  spec.not_after = to;
  return spec;
}

} // namespace starling::testing
