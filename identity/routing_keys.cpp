// The routing table's signatures and the key book (identity/routing_keys.hpp). Every chain
// and seal is hostile until checked: sizes are bounded before any parsing, chains are
// checked by the same functions as TLS peers (verify_peer) and revocation issuers
// (verify_issuer), and OpenSSL's error queue is drained into each error or cleared after a
// signature that merely does not verify.
#include "identity/routing_keys.hpp"

#include <algorithm>
#include <tuple>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "identity/errc.hpp"
#include "identity/revocation.hpp"

namespace starling::identity {

namespace {

/// The 0 byte between the context and the signed bytes.
constexpr std::uint8_t context_separator = 0;

/// True if `context` can be signed under: not empty, no 0 byte (the separator), so that
/// `context || 0 || bytes` is read one way only.
bool is_valid_context(std::string_view context) noexcept {
  return !context.empty() && context.find('\0') == std::string_view::npos;
}

/// EVP_DigestSignUpdate as a function (a macro in some OpenSSL versions).
int sign_update(EVP_MD_CTX* ctx, const void* data, std::size_t size) {
  return EVP_DigestSignUpdate(ctx, data, size);
}

/// EVP_DigestVerifyUpdate as a function (a macro in some OpenSSL versions).
int verify_update(EVP_MD_CTX* ctx, const void* data, std::size_t size) {
  return EVP_DigestVerifyUpdate(ctx, data, size);
}

/// Feeds `context || 0 || bytes` to a digest-sign or digest-verify context.
bool feed(int (*update)(EVP_MD_CTX*, const void*, std::size_t), EVP_MD_CTX* ctx,
          std::string_view context, std::span<const std::uint8_t> bytes) {
  return update(ctx, context.data(), context.size()) == 1 &&
         update(ctx, &context_separator, 1) == 1 && update(ctx, bytes.data(), bytes.size()) == 1;
}

/// True if `sig` is `key`'s signature over `context || 0 || bytes`.
bool signature_verifies(EVP_PKEY* key, std::string_view context,
                        std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> sig) {
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  const bool ok = key != nullptr && ctx &&
                  EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
                  feed(verify_update, ctx.get(), context, bytes) &&
                  EVP_DigestVerifyFinal(ctx.get(), sig.data(), sig.size()) == 1;
  ERR_clear_error(); // a bad signature leaves an entry; it is not an OpenSSL failure
  return ok;
}

/// How messages name a key.
std::string key_text(const sha256_digest& key_id) { return "routing key " + format_pin(key_id); }

/// The same error with `prefix` put before its context (the code is kept).
caf::error with_prefix(const caf::error& err, const std::string& prefix) {
  return make_error(static_cast<errc>(err.code()), prefix + render(err));
}

/// bad_certificate unless `count` certificates fit the book's bound.
caf::error check_count(std::size_t count) {
  if (count > max_routing_chain_certificates)
    return make_error(errc::bad_certificate, "a routing signer chain of " + std::to_string(count) +
                                                 " certificates (at most " +
                                                 std::to_string(max_routing_chain_certificates) +
                                                 ")");
  return {};
}

/// bad_certificate unless `bytes` DER bytes in all fit the book's bound.
caf::error check_bytes(std::size_t bytes) {
  if (bytes > max_routing_chain_bytes)
    return make_error(errc::bad_certificate, "a routing signer chain over " +
                                                 std::to_string(max_routing_chain_bytes) +
                                                 " DER bytes");
  return {};
}

/// The earliest notAfter of `certs` (not empty). Errors: bad_certificate.
caf::expected<time_point> earliest_not_after(const chain& certs) {
  std::optional<time_point> out;
  for (const auto& cert : certs) {
    auto end = not_after(cert);
    if (!end)
      return end.error();
    out = out ? std::min(*out, *end) : *end;
  }
  return *out;
}

/// A new shared reference to `cert`'s public key. Errors: bad_certificate.
caf::expected<shared_handle<pkey_ptr>> public_key_of(const certificate& cert) {
  pkey_ptr key = share(X509_get0_pubkey(cert.native()));
  if (!key)
    return make_openssl_error(errc::bad_certificate, "a certificate without a usable public key");
  return shared_handle<pkey_ptr>{std::move(key)};
}

} // namespace

// -- signing ------------------------------------------------------------------------------------

caf::expected<routing_signature> sign_routing(const private_key& key, std::string_view context,
                                              std::span<const std::uint8_t> bytes) {
  if (!is_valid_context(context))
    return make_error(errc::invalid_argument,
                      "a routing signature context must be non-empty text without a 0 byte");
  auto key_id = spki_sha256(key);
  if (!key_id)
    return key_id.error();
  const std::string what = "signing a routing record (" + std::string{context} + ")";
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.native()) != 1 ||
      !feed(sign_update, ctx.get(), context, bytes) ||
      EVP_DigestSignFinal(ctx.get(), nullptr, &len) != 1)
    return make_openssl_error(errc::crypto_failure, what);
  routing_signature out{*key_id, std::vector<std::uint8_t>(len)};
  if (EVP_DigestSignFinal(ctx.get(), out.signature.data(), &len) != 1)
    return make_openssl_error(errc::crypto_failure, what);
  out.signature.resize(len);
  return out;
}

// -- the key book -------------------------------------------------------------------------------

routing_key_book::routing_key_book(std::size_t capacity)
    : capacity_(std::max<std::size_t>(capacity, 1)) {}

caf::expected<routing_signer> routing_key_book::learn(const chain& presented,
                                                      const trust_bundle& bundle,
                                                      const revocation_set& revoked,
                                                      time_point now) {
  auto result = [&]() -> caf::expected<routing_signer> {
    if (auto err = check_count(presented.size()))
      return err;
    std::vector<std::vector<std::uint8_t>> der;
    der.reserve(presented.size());
    std::size_t total = 0;
    for (const auto& cert : presented) {
      if (!cert)
        return make_error(errc::bad_certificate, "an empty certificate in a routing signer chain");
      auto bytes = to_der(cert);
      if (!bytes)
        return bytes.error();
      total += bytes->size();
      if (auto err = check_bytes(total))
        return err;
      der.push_back(std::move(*bytes));
    }
    return learn_checked(presented, std::move(der), bundle, revoked, now);
  }();
  ++(result ? counters_.learned : counters_.refused_chains);
  return result;
}

caf::expected<routing_signer>
routing_key_book::learn(std::span<const std::vector<std::uint8_t>> presented_der,
                        const trust_bundle& bundle, const revocation_set& revoked, time_point now) {
  auto result = [&]() -> caf::expected<routing_signer> {
    if (auto err = check_count(presented_der.size()))
      return err;
    std::size_t total = 0;
    for (const auto& der : presented_der) {
      total += der.size();
      if (auto err = check_bytes(total))
        return err;
    }
    chain presented;
    presented.reserve(presented_der.size());
    for (const auto& der : presented_der) {
      auto cert = certificate_from_der(der);
      if (!cert)
        return with_prefix(cert.error(), "a routing signer chain: ");
      presented.push_back(std::move(*cert));
    }
    return learn_checked(presented, {presented_der.begin(), presented_der.end()}, bundle, revoked,
                         now);
  }();
  ++(result ? counters_.learned : counters_.refused_chains);
  return result;
}

caf::expected<routing_signer>
routing_key_book::learn_checked(const chain& presented, std::vector<std::vector<std::uint8_t>> der,
                                const trust_bundle& bundle, const revocation_set& revoked,
                                time_point now) {
  if (presented.empty())
    return make_error(errc::no_certificate, "an empty routing signer chain");
  const certificate& leaf = presented.front();
  entry e;
  if (X509_check_ca(leaf.native()) != 0) {
    // An issuer certificate, as revocations carry it: alone, checked as verify_issuer does,
    // then the keys of its path against the revocations (verify_issuer does not look).
    if (presented.size() != 1)
      return make_error(errc::bad_certificate,
                        "a routing signer chain whose first certificate is a CA: an issuer "
                        "certificate travels alone, a node chain starts with a node certificate");
    auto who = verify_issuer(der.front(), bundle, now);
    if (!who)
      return who.error();
    auto path = verify_path(presented, bundle, now);
    if (!path)
      return path.error();
    for (const auto& cert : *path) {
      auto spki = spki_sha256(cert);
      if (!spki)
        return spki.error();
      if (revoked.contains(*spki))
        return make_error(errc::revoked, "the issuer certificate of '" + who->node + "': key " +
                                             format_pin(*spki) + " is revoked");
      e.path_keys.push_back(*spki);
    }
    e.signer = routing_signer{who->node, true, who->key, who->not_after};
  } else {
    // A node chain: exactly a TLS peer's checks.
    auto id = verify_peer(presented, bundle, revoked, now);
    if (!id)
      return id.error();
    bool issuer = false;
    if (!id->issuer_keys.empty() && id->issuer_keys.front() == id->spki_sha256) {
      // The leaf certifies the key of the issuer that signed it: an issuer node's own
      // certificate. It is an issuer key only for the node the issuer certificate names.
      if (id->issuers.front() != id->node)
        return make_error(errc::name_mismatch, "the issuer key of '" + id->issuers.front() +
                                                   "' certified as node '" + id->node + "'");
      issuer = true;
    }
    auto until = earliest_not_after(presented);
    if (!until)
      return until.error();
    e.path_keys.push_back(id->spki_sha256);
    e.path_keys.insert(e.path_keys.end(), id->issuer_keys.begin(), id->issuer_keys.end());
    e.path_keys.push_back(id->root_pin);
    e.signer = routing_signer{std::move(id->node), issuer, id->spki_sha256, *until};
  }
  auto key = public_key_of(leaf);
  if (!key)
    return key.error();
  e.key = std::move(*key);
  e.chain_der = std::move(der);
  return admit(std::move(e), now);
}

caf::expected<routing_signer> routing_key_book::admit(entry e, time_point now) {
  const sha256_digest id = e.signer.key_id;
  if (auto it = entries_.find(id); it != entries_.end()) {
    const routing_signer& held = it->second.signer;
    if (now > held.not_after) {
      erase(it); // what the book held has expired: the new chain replaces it
    } else if (held.node != e.signer.node) {
      return make_error(errc::name_mismatch, key_text(id) + " is node '" + held.node +
                                                 "'s until its certificate expires, not '" +
                                                 e.signer.node + "'s");
    } else {
      if (std::tie(e.signer.issuer, e.signer.not_after) >= std::tie(held.issuer, held.not_after)) {
        by_expiry_.erase({held.not_after, id});
        by_expiry_.emplace(e.signer.not_after, id);
        it->second = std::move(e);
      }
      return it->second.signer;
    }
  }
  if (entries_.size() >= capacity_) {
    erase(entries_.find(by_expiry_.begin()->second));
    ++counters_.evicted;
  }
  by_expiry_.emplace(e.signer.not_after, id);
  return entries_.emplace(id, std::move(e)).first->second.signer;
}

void routing_key_book::erase(std::map<sha256_digest, entry>::iterator it) {
  by_expiry_.erase({it->second.signer.not_after, it->first});
  entries_.erase(it);
}

caf::expected<routing_signer> routing_key_book::verify(std::string_view context,
                                                       std::span<const std::uint8_t> bytes,
                                                       const routing_signature& sig,
                                                       const revocation_set& revoked,
                                                       time_point now) const {
  if (!is_valid_context(context))
    return make_error(errc::invalid_argument,
                      "a routing signature context must be non-empty text without a 0 byte");
  if (sig.signature.empty() || sig.signature.size() > max_routing_signature_bytes) {
    ++counters_.bad_signature;
    return make_error(errc::bad_signature,
                      "a routing signature of " + std::to_string(sig.signature.size()) +
                          " bytes (1 to " + std::to_string(max_routing_signature_bytes) + ")");
  }
  auto it = entries_.find(sig.key_id);
  if (it == entries_.end()) {
    ++counters_.unknown_key;
    return make_error(errc::routing_unknown_key, key_text(sig.key_id) + " is not in the key book");
  }
  const entry& e = it->second;
  const std::string who = key_text(sig.key_id) + " of '" + e.signer.node + "'";
  for (const auto& key : e.path_keys) {
    if (revoked.contains(key)) {
      ++counters_.revoked;
      return make_error(errc::revoked, who + (key == sig.key_id ? " is revoked"
                                                                : ": the key " + format_pin(key) +
                                                                      " of its chain is revoked"));
    }
  }
  if (now > e.signer.not_after) {
    ++counters_.expired;
    return make_error(errc::expired, who + " expired with its certificate");
  }
  if (context == routing_policy_context && !e.signer.issuer) {
    ++counters_.not_an_issuer;
    return make_error(errc::not_an_issuer, who + " is not an issuer's: it cannot sign a policy");
  }
  if (!signature_verifies(e.key.native(), context, bytes, sig.signature)) {
    ++counters_.bad_signature;
    return make_error(errc::bad_signature,
                      who + ": the signature does not verify (" + std::string{context} + ")");
  }
  ++counters_.verified;
  return e.signer;
}

std::optional<std::vector<std::vector<std::uint8_t>>>
routing_key_book::chain_of(const sha256_digest& key_id) const {
  auto it = entries_.find(key_id);
  if (it == entries_.end())
    return std::nullopt;
  return it->second.chain_der;
}

std::optional<routing_signer> routing_key_book::signer_of(const sha256_digest& key_id) const {
  auto it = entries_.find(key_id);
  if (it == entries_.end())
    return std::nullopt;
  return it->second.signer;
}

std::size_t routing_key_book::forget_revoked(const revocation_set& revoked) {
  std::size_t dropped = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto& keys = it->second.path_keys;
    auto next = std::next(it);
    if (std::any_of(keys.begin(), keys.end(),
                    [&](const sha256_digest& k) { return revoked.contains(k); })) {
      erase(it);
      ++dropped;
    }
    it = next;
  }
  counters_.forgotten += dropped;
  return dropped;
}

} // namespace starling::identity
