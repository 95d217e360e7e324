#include "identity/tls.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "identity/endorsement.hpp"
#include "identity/errc.hpp"

namespace starling::identity {

// -- trust_state ------------------------------------------------------------------------------

namespace {

/// SHA-256 over the SHA-256 of each certificate's DER, in order (verify_peer_of's key).
/// Nothing for a chain verify_peer refuses by its shape (empty, longer than
/// max_pem_certificates, an empty certificate): no hashing of what a stranger sent first.
std::optional<sha256_digest> chain_digest(const chain& presented) {
  if (presented.empty() || presented.size() > max_pem_certificates)
    return std::nullopt;
  std::vector<std::uint8_t> digests;
  digests.reserve(presented.size() * SHA256_DIGEST_LENGTH);
  for (const auto& cert : presented) {
    if (!cert)
      return std::nullopt;
    std::array<std::uint8_t, EVP_MAX_MD_SIZE> one{};
    unsigned int size = 0;
    if (X509_digest(cert.native(), EVP_sha256(), one.data(), &size) != 1 ||
        size != SHA256_DIGEST_LENGTH) {
      ERR_clear_error();
      return std::nullopt;
    }
    digests.insert(digests.end(), one.begin(), one.begin() + size);
  }
  sha256_digest out{};
  SHA256(digests.data(), digests.size(), out.data());
  return out;
}

} // namespace

trust_state::trust_state(trust_bundle bundle, revocation_set revoked, std::size_t quorum)
    : current_(std::make_shared<const snapshot>(
          snapshot{std::move(bundle), std::move(revoked), std::max<std::size_t>(quorum, 1)})) {
  // nop
}

std::shared_ptr<const trust_state::snapshot> trust_state::current() const {
  std::lock_guard guard{mutex_};
  return current_;
}

void trust_state::set_bundle(trust_bundle bundle) {
  std::lock_guard guard{mutex_};
  current_ = std::make_shared<const snapshot>(
      snapshot{std::move(bundle), current_->revoked, current_->quorum});
}

std::size_t trust_state::revoke(const revocation_set& keys) {
  std::lock_guard guard{mutex_};
  auto revoked = current_->revoked;
  auto added = revoked.merge(keys);
  if (added > 0)
    current_ = std::make_shared<const snapshot>(
        snapshot{current_->bundle, std::move(revoked), current_->quorum});
  return added;
}

caf::error trust_state::check_quorum_of(const std::shared_ptr<const snapshot>& snap,
                                        const certificate& leaf, const peer_identity& id,
                                        time_point now) const {
  if (snap->quorum <= 1)
    return {};
  auto der = to_der(leaf);
  if (!der)
    return der.error();
  sha256_digest digest{};
  SHA256(der->data(), der->size(), digest.data());
  {
    std::lock_guard guard{cache_mutex_};
    forget_unless_current(snap);
    if (auto it = cache_.find(digest); it != cache_.end() && now < it->second)
      return {};
  }
  auto vouchers = check_quorum(leaf, id, snap->bundle, snap->revoked, now, snap->quorum);
  if (!vouchers)
    return std::move(vouchers.error());
  // Valid until the first endorsing issuer certificate expires (the leaf's own expiry is
  // checked by verify_peer at every handshake).
  auto until = time_point::max();
  if (auto set = endorsements_of(leaf))
    for (const auto& e : *set)
      if (auto who = describe_issuer(e.issuer))
        until = std::min(until, who->not_after);
  std::lock_guard guard{cache_mutex_};
  if (cache_of_.lock() == snap) {
    if (cache_.size() >= max_quorum_cache)
      cache_.clear();
    cache_[digest] = until;
  }
  return {};
}

void trust_state::forget_unless_current(const std::shared_ptr<const snapshot>& snap) const {
  if (cache_of_.lock() != snap) { // revocations or the bundle changed: forget everything
    cache_.clear();
    chains_.clear();
    cache_of_ = snap;
  }
}

caf::expected<peer_identity>
trust_state::verify_peer_of(const std::shared_ptr<const snapshot>& snap, const chain& presented,
                            time_point now, std::optional<std::string_view> expected_node) const {
  auto digest = chain_digest(presented);
  if (!digest) // nothing to remember: verify_peer says what is wrong with it
    return verify_peer(presented, snap->bundle, snap->revoked, now, expected_node);
  {
    std::lock_guard guard{cache_mutex_};
    forget_unless_current(snap);
    if (auto it = chains_.find(*digest);
        it != chains_.end() && it->second.from <= now && now < it->second.until) {
      if (auto err = check_expected_node(it->second.id, expected_node))
        return err;
      return it->second.id;
    }
  }
  chains_verified_.fetch_add(1, std::memory_order_relaxed);
  auto id = verify_peer(presented, snap->bundle, snap->revoked, now, std::nullopt);
  if (!id)
    return id;
  // Counts until the earliest notAfter of the chain and of the roots it may end at; a
  // time that does not read (a certificate outside the verified path may carry anything)
  // leaves the chain unremembered.
  std::optional<time_point> until = time_point::max();
  const auto earliest = [&](const certificate& cert) {
    auto end = not_after(cert);
    until = end && until ? std::optional{std::min(*until, *end)} : std::nullopt;
  };
  for (const auto& cert : presented)
    earliest(cert);
  for (const auto& root : snap->bundle.roots())
    earliest(root);
  if (until) {
    std::lock_guard guard{cache_mutex_};
    if (cache_of_.lock() == snap) {
      if (chains_.size() >= max_chain_cache)
        chains_.clear();
      chains_[*digest] = verified_chain{*id, now, *until};
    }
  }
  if (auto err = check_expected_node(*id, expected_node))
    return err;
  return id;
}

void trust_state::count_refusal(const caf::error& why) noexcept {
  std::size_t slot = refusals_.size() - 1;
  if (why.category() == errc_category && why.code() < refusals_.size() - 1)
    slot = why.code();
  refusals_[slot].fetch_add(1, std::memory_order_relaxed);
}

std::map<std::string, std::uint64_t> trust_state::refusals() const {
  std::map<std::string, std::uint64_t> out;
  for (std::size_t i = 0; i < refusals_.size(); ++i) {
    const auto n = refusals_[i].load(std::memory_order_relaxed);
    if (n == 0)
      continue;
    out[i + 1 == refusals_.size() ? std::string{"other"}
                                  : std::string{to_string(static_cast<errc>(i))}] += n;
  }
  return out;
}

// -- sessions ---------------------------------------------------------------------------------

/// Hangs off every SSL a tls_context makes (SSL ex_data), freed with the SSL.
struct tls_context::session_state {
  /// Keeps the context (and its verify inputs) alive as long as the session.
  std::shared_ptr<const tls_context> owner;
  /// Client: the member the peer must be.
  std::optional<std::string> expected_peer;
  tls_peer peer;
};

namespace {

void free_session_state(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<tls_context::session_state*>(ptr);
}

/// The SSL ex_data slot of session_state (registered once).
int session_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_session_state);
  return index;
}

tls_context::session_state* state_of(const SSL* ssl) {
  if (ssl == nullptr || session_index() < 0)
    return nullptr;
  return static_cast<tls_context::session_state*>(SSL_get_ex_data(ssl, session_index()));
}

/// A bundle of the self-signed root in the presented chain whose pin is `pin`.
caf::expected<trust_bundle> pinned_bundle(X509_STORE_CTX& store, const sha256_digest& pin) {
  for (const auto& cert : presented_chain(store)) {
    auto spki = spki_sha256(cert);
    if (spki && *spki == pin)
      return trust_bundle::make({cert});
  }
  return make_error(errc::untrusted_chain,
                    "the seed's chain holds no root with the pinned key " + format_pin(pin));
}

/// Servers: ALPN. A client offering "h2" (a node's data plane that speaks HTTP/2 to its
/// peers, decision 0022) gets it; any other offer, or none (the gossip port's clients and
/// older nodes offer none), goes on without ALPN, as before.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int n = in[i];
    if (n == 2 && i + 1 + n <= inlen && in[i + 1] == 'h' && in[i + 2] == '2') {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

} // namespace

tls_context::tls_context(tls_options opts) : opts_(std::move(opts)) {
  // make() fills the rest.
}

tls_context::~tls_context() = default;

int tls_context::verify_callback(X509_STORE_CTX* store, void* arg) {
  auto* self = static_cast<const tls_context*>(arg);
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* st = state_of(ssl);
  if (st == nullptr) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  std::optional<std::string_view> expected;
  if (st->expected_peer)
    expected = *st->expected_peer;
  caf::expected<peer_identity> id{caf::error{}};
  const auto now = self->opts_.clock();
  if (self->opts_.pinned_root) {
    auto bundle = pinned_bundle(*store, *self->opts_.pinned_root);
    if (!bundle) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
      st->peer.refusal = std::move(bundle.error());
      return 0;
    }
    id = verify_peer(*store, *bundle, revocation_set{}, now, expected);
  } else {
    auto snap = self->opts_.trust->current();
    id = self->opts_.trust->verify_peer_of(snap, presented_chain(*store), now, expected);
    record_outcome(*store, id);
    if (id && snap->quorum > 1) {
      // The admission quorum: a leaf one issuer signed alone is refused like a bad chain.
      certificate leaf{share(X509_STORE_CTX_get0_cert(store))};
      if (auto err = self->opts_.trust->check_quorum_of(snap, leaf, *id, now)) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        id = std::move(err);
      }
    }
  }
  if (!id) {
    if (self->opts_.trust)
      self->opts_.trust->count_refusal(id.error());
    st->peer.refusal = std::move(id.error());
    return 0;
  }
  st->peer.identity = std::move(*id);
  return 1;
}

caf::expected<std::shared_ptr<const tls_context>> tls_context::make(tls_options opts) {
  const bool has_key = static_cast<bool>(opts.key);
  if (has_key != !opts.certs.empty())
    return make_error(errc::invalid_argument, "a TLS identity needs both a key and a chain");
  if (!opts.trust && !opts.pinned_root)
    return make_error(errc::invalid_argument, "TLS needs a trust bundle or a pinned root");
  if (opts.pinned_root && opts.accept_anonymous_clients)
    return make_error(errc::invalid_argument, "a joiner (pinned root) does not serve");
  if (!opts.clock)
    return make_error(errc::invalid_argument, "TLS needs a clock");
  std::shared_ptr<tls_context> self{new tls_context{std::move(opts)}};
  auto& o = self->opts_;
  self->ctx_.reset(SSL_CTX_new(TLS_method()));
  auto* ctx = self->ctx_.get();
  if (ctx == nullptr)
    return make_openssl_error(errc::crypto_failure, "SSL_CTX_new");
  // TLS 1.3 only, default 1.3 suites (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM), all
  // with forward secrecy. No session resumption: a resumed session would skip the
  // certificate checks, and with them revocation and expiry.
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set1_groups_list(ctx, "X25519:P-256") != 1 || SSL_CTX_set_num_tickets(ctx, 0) != 1)
    return make_openssl_error(errc::crypto_failure, "configuring TLS 1.3");
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (has_key) {
    self->leaf_ = o.certs.front();
    if (SSL_CTX_use_certificate(ctx, self->leaf_.native()) != 1)
      return make_openssl_error(errc::bad_certificate, "loading the node certificate");
    for (std::size_t i = 1; i < o.certs.size(); ++i)
      if (SSL_CTX_add1_chain_cert(ctx, o.certs[i].native()) != 1)
        return make_openssl_error(errc::bad_certificate, "loading the certificate chain");
    if (SSL_CTX_use_PrivateKey(ctx, o.key.native()) != 1 || SSL_CTX_check_private_key(ctx) != 1)
      return make_openssl_error(errc::bad_certificate,
                                "the private key does not match the node certificate");
  }
  SSL_CTX_set_cert_verify_callback(ctx, &tls_context::verify_callback, self.get());
  SSL_CTX_set_alpn_select_cb(ctx, &select_alpn, nullptr);
  return std::shared_ptr<const tls_context>{std::move(self)};
}

caf::expected<ssl_ptr> tls_context::new_session(tls_role role,
                                                std::optional<std::string> expected_peer) const {
  if (role == tls_role::server && !leaf_)
    return make_error(errc::invalid_argument, "serving TLS needs a node certificate");
  if (session_index() < 0)
    return make_openssl_error(errc::crypto_failure, "SSL_get_ex_new_index");
  ssl_ptr ssl{SSL_new(ctx_.get())};
  if (!ssl)
    return make_openssl_error(errc::crypto_failure, "SSL_new");
  auto* st = new session_state{shared_from_this(), std::move(expected_peer), {}};
  if (SSL_set_ex_data(ssl.get(), session_index(), st) != 1) {
    delete st;
    return make_openssl_error(errc::crypto_failure, "SSL_set_ex_data");
  }
  int mode = SSL_VERIFY_PEER;
  if (role == tls_role::server) {
    if (!opts_.accept_anonymous_clients)
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
  }
  SSL_set_verify(ssl.get(), mode, nullptr);
  return ssl;
}

const tls_peer* tls_context::peer_of(const SSL* ssl) {
  auto* st = state_of(ssl);
  return st != nullptr ? &st->peer : nullptr;
}

caf::error tls_context::refusal_of(const SSL* ssl) {
  auto* st = state_of(ssl);
  if (st == nullptr)
    return make_error(errc::invalid_argument, "not a Starling TLS session");
  if (st->peer.refusal)
    return st->peer.refusal;
  if (!st->peer.identity && SSL_get0_peer_certificate(ssl) == nullptr)
    return make_error(errc::no_certificate, "the peer presented no certificate");
  return {};
}

// -- tls_context_holder -----------------------------------------------------------------------

tls_context_holder::tls_context_holder(std::shared_ptr<const tls_context> initial)
    : current_(std::move(initial)) {
  // nop
}

std::shared_ptr<const tls_context> tls_context_holder::current() const {
  std::lock_guard guard{mutex_};
  return current_;
}

void tls_context_holder::replace(std::shared_ptr<const tls_context> next) {
  std::lock_guard guard{mutex_};
  current_ = std::move(next);
}

} // namespace starling::identity
