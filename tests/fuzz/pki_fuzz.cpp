// libFuzzer target: PEM and DER parsing of certificates, chains, CSRs and keys
// (identity/pki.hpp), all of which arrive from peers (admission requests, TLS chains) or
// from files. The first input byte chooses the parser, the rest is its input. Whatever
// parses is then inspected the way the agent inspects untrusted certificates and CSRs
// (fingerprint, SPIFFE ID, validity, the issuer's CSR checks). Nothing may crash.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "identity/pki.hpp"

namespace {

using namespace starling::identity;

void inspect(const certificate& cert) {
  (void)spki_sha256(cert);
  (void)spiffe_id_of(cert);
  (void)not_before(cert);
  (void)not_after(cert);
  if (auto der = to_der(cert))
    (void)certificate_from_der(*der);
  (void)to_pem(cert);
}

void inspect(const certificate_request& csr) {
  (void)check_csr(csr, "fuzz", "node-1");
  if (auto der = to_der(csr))
    (void)certificate_request_from_der(*der);
  (void)to_pem(csr);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  const std::span<const std::uint8_t> bytes{data + 1, size - 1};
  const std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
  switch (data[0] % 6) {
  case 0:
    if (auto cert = certificate_from_pem(text))
      inspect(*cert);
    break;
  case 1:
    if (auto certs = certificates_from_pem(text))
      for (const auto& cert : *certs)
        inspect(cert);
    break;
  case 2:
    if (auto cert = certificate_from_der(bytes))
      inspect(*cert);
    break;
  case 3:
    if (auto csr = certificate_request_from_pem(text))
      inspect(*csr);
    break;
  case 4:
    if (auto csr = certificate_request_from_der(bytes))
      inspect(*csr);
    break;
  case 5:
    if (auto key = private_key_from_pem(text)) {
      (void)spki_sha256(*key);
      (void)to_pem(*key);
    }
    break;
  }
  return 0;
}
