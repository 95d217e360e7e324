// Endorsements and the admission quorum (identity/endorsement.hpp). An endorsement is a
// signed statement (identity/statement.hpp) under its own context; the extension that
// carries them is read from certificates that verified, but its content is still untrusted:
// every endorsement is verified before it counts.
#include "identity/endorsement.hpp"

#include <algorithm>
#include <memory>

#include <google/protobuf/stubs/logging.h>
#include <openssl/err.h>

#include "admission.pb.h"
#include "identity/errc.hpp"
#include "identity/statement.hpp"

namespace starling::identity {

namespace {

/// Domain separation from revocations and anything else an issuer key signs.
constexpr statement_kind endorsement_kind{"starling-endorsement-1", "an endorsement"};

caf::error bad_extension(std::string reason) {
  ERR_clear_error();
  return make_error(errc::bad_certificate, "the endorsements extension " + std::move(reason));
}

/// The endorsements of an EndorsementSet's bytes. Errors: bad_certificate.
caf::expected<std::vector<endorsement>> parse_set(const unsigned char* data, int len) {
  v1::EndorsementSet msg;
  google::protobuf::LogSilencer silence;
  if (!msg.ParseFromArray(data, len))
    return bad_extension("does not parse");
  if (static_cast<std::size_t>(msg.endorsements_size()) > max_admission_quorum)
    return bad_extension("holds " + std::to_string(msg.endorsements_size()) +
                         " endorsements, at most " + std::to_string(max_admission_quorum));
  std::vector<endorsement> out;
  for (const auto& e : msg.endorsements()) {
    auto got = endorsement_from_proto(e);
    if (!got)
      return bad_extension("holds an endorsement that cannot be represented");
    out.push_back(std::move(*got));
  }
  return out;
}

} // namespace

statement_view view_of(const endorsement& e) {
  return {endorsement_kind, e.key, e.node, e.endorsed_at, e.issuer, e.signature};
}

caf::expected<endorsement> make_endorsement(const issuer_material& issuer, const sha256_digest& key,
                                            std::string_view node, time_point now) {
  if (!is_valid_node_name(node))
    return make_error(errc::invalid_argument,
                      "cannot endorse a key for an invalid node name: use " +
                          std::string{node_name_rule});
  return sealed(issuer, endorsement{key, std::string{node}, unix_seconds(now), {}, {}});
}

caf::expected<issuer_identity> verify_endorsement(const endorsement& e, const trust_bundle& bundle,
                                                  time_point now) {
  return verify_statement(view_of(e), bundle, now);
}

caf::expected<std::vector<std::uint8_t>>
encode_endorsement_extension(std::span<const endorsement> set) {
  if (set.empty() || set.size() > max_admission_quorum)
    return make_error(errc::invalid_argument,
                      "an endorsements extension of " + std::to_string(set.size()) +
                          " endorsements (1 to " + std::to_string(max_admission_quorum) + ")");
  v1::EndorsementSet msg;
  for (const auto& e : set)
    endorsement_to_proto(e, *msg.add_endorsements());
  const auto bytes = msg.SerializeAsString();
  asn1_octet_string_ptr octets{ASN1_OCTET_STRING_new()};
  if (!octets ||
      ASN1_OCTET_STRING_set(octets.get(), reinterpret_cast<const unsigned char*>(bytes.data()),
                            static_cast<int>(bytes.size())) != 1)
    return make_openssl_error(errc::crypto_failure, "encoding the endorsements extension");
  const int len = i2d_ASN1_OCTET_STRING(octets.get(), nullptr);
  if (len <= 0)
    return make_openssl_error(errc::crypto_failure, "encoding the endorsements extension");
  std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
  auto* p = der.data();
  if (i2d_ASN1_OCTET_STRING(octets.get(), &p) != len)
    return make_openssl_error(errc::crypto_failure, "encoding the endorsements extension");
  return der;
}

caf::expected<std::vector<endorsement>> endorsements_of(const certificate& cert) {
  if (!cert)
    return make_error(errc::bad_certificate, "no certificate");
  const std::string oid_text{endorsements_oid};
  asn1_object_ptr oid{OBJ_txt2obj(oid_text.c_str(), 1)};
  if (!oid)
    return make_openssl_error(errc::crypto_failure, "the endorsements OID");
  const int at = X509_get_ext_by_OBJ(cert.native(), oid.get(), -1);
  if (at < 0)
    return std::vector<endorsement>{};
  if (X509_get_ext_by_OBJ(cert.native(), oid.get(), at) >= 0)
    return bad_extension("is present twice");
  X509_EXTENSION* ext = X509_get_ext(cert.native(), at);
  if (X509_EXTENSION_get_critical(ext) != 0)
    return bad_extension("is critical");
  // extnValue holds the DER of an OCTET STRING, whose content is the EndorsementSet.
  const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(ext);
  const unsigned char* p = ASN1_STRING_get0_data(value);
  const auto len = static_cast<long>(ASN1_STRING_length(value));
  asn1_octet_string_ptr content{d2i_ASN1_OCTET_STRING(nullptr, &p, len)};
  if (!content || p != ASN1_STRING_get0_data(value) + len)
    return bad_extension("is not a DER OCTET STRING");
  return parse_set(ASN1_STRING_get0_data(content.get()), ASN1_STRING_length(content.get()));
}

// -- the quorum ----------------------------------------------------------------------------------

std::vector<vouching_endorsement>
vouching_endorsements(std::span<const endorsement> set, const sha256_digest& key,
                      std::string_view node, const trust_bundle& bundle,
                      const revocation_set& revoked, time_point now, std::string_view except) {
  std::vector<vouching_endorsement> out;
  for (const auto& e : set) {
    if (e.key != key || e.node != node)
      continue;
    auto who = verify_endorsement(e, bundle, now);
    if (!who || revoked.contains(who->key) || who->node == except ||
        std::any_of(out.begin(), out.end(),
                    [&](const auto& v) { return v.issuer.node == who->node; }))
      continue;
    out.push_back({e, std::move(*who)});
  }
  ERR_clear_error(); // refusals are not failures here
  return out;
}

caf::error check_vouchers(std::string_view node, const std::vector<std::string>& vouchers,
                          std::size_t quorum) {
  if (vouchers.size() >= quorum)
    return {};
  std::string names;
  for (const auto& v : vouchers)
    names += (names.empty() ? "" : ", ") + v;
  const auto n = vouchers.size();
  return make_error(errc::quorum_not_met,
                    "node '" + std::string{node} + "' is vouched for by " + std::to_string(n) +
                        (n == 1 ? " issuer" : " issuers") + (n > 0 ? " (" + names + ")" : "") +
                        " of the " + std::to_string(quorum) + " admission_quorum requires");
}

bool is_issuer_own_leaf(const peer_identity& id) noexcept {
  return !id.issuers.empty() && id.issuers.front() == id.node && !id.issuer_keys.empty() &&
         id.issuer_keys.front() == id.spki_sha256;
}

caf::expected<std::vector<std::string>>
check_quorum(const certificate& leaf, const peer_identity& id, const trust_bundle& bundle,
             const revocation_set& revoked, time_point now, std::size_t quorum) {
  std::vector<std::string> vouchers;
  if (!id.issuers.empty()) {
    vouchers.push_back(id.issuers.front());
    // An issuer node's own certificate (the root admitted that node when it signed the
    // issuer) meets any quorum, but only when it certifies the issuer's own key: a leaf
    // that merely carries the issuer's name proves nothing (issue 13, finding 1). With a
    // quorum of 1 the signer suffices: no need to read the extension.
    if (quorum <= 1 || is_issuer_own_leaf(id))
      return vouchers;
  }
  auto set = endorsements_of(leaf);
  if (!set)
    return make_error(static_cast<errc>(set.error().code()),
                      "node '" + id.node + "': " + render(set.error()));
  const std::string signer = vouchers.empty() ? std::string{} : vouchers.front();
  for (auto& v : vouching_endorsements(*set, id.spki_sha256, id.node, bundle, revoked, now, signer))
    vouchers.push_back(std::move(v.issuer.node));
  if (auto err = check_vouchers(id.node, vouchers, quorum))
    return err;
  return vouchers;
}

} // namespace starling::identity
