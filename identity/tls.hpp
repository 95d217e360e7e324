// TLS 1.3 between nodes, with OpenSSL directly (DESIGN.md "Wire", CAF-NOTES.md "TLS"):
// both sides present a node certificate, both chains are checked by verify_peer against the
// trust bundle and the revocations of the moment, and the peer's SPIFFE name is bound to the
// member it claims to be. This module makes SSL objects; the caller drives them over its
// sockets (net::stream, net/stream.hpp, takes an SSL*), so identity/ stays free of I/O.
//
// Hot swap: a tls_context is immutable. Renewal builds a new one and stores it in a
// tls_context_holder; sessions already made keep the context they were made from (each
// SSL holds a reference to its SSL_CTX and to our context), so open connections are not
// dropped, and new handshakes present the new certificate.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <openssl/ssl.h>

#include "identity/pki.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

/// An owned SSL session.
using ssl_ptr = std::unique_ptr<SSL, openssl_deleter<SSL, SSL_free>>;
/// An owned SSL_CTX.
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, openssl_deleter<SSL_CTX, SSL_CTX_free>>;

/// The trust inputs every handshake reads: the bundle, the revoked keys and the admission
/// quorum. Thread-safe; updates apply to the next handshake (open connections are the
/// owner's to re-check).
class trust_state {
public:
  /// What one handshake checks against. Immutable.
  struct snapshot {
    trust_bundle bundle;
    revocation_set revoked;
    /// How many distinct issuers must vouch for a peer's leaf (check_quorum); 1 checks no
    /// endorsement.
    std::size_t quorum = 1;
  };

  explicit trust_state(trust_bundle bundle, revocation_set revoked = {}, std::size_t quorum = 1);

  /// The current inputs.
  [[nodiscard]] std::shared_ptr<const snapshot> current() const;

  /// Replaces the bundle (root rotation).
  void set_bundle(trust_bundle bundle);

  /// Adds revoked keys (grow-only); returns how many were new.
  std::size_t revoke(const revocation_set& keys);

  /// The admission quorum at a handshake: check_quorum of `leaf` (verified as `id`)
  /// against `snap`, remembered per leaf (by the SHA-256 of its DER) while `snap` is current
  /// and until the first of its endorsing issuers' certificates expires, so that a peer met
  /// again costs a hash, not the endorsements' chain and signature checks (measured in
  /// bench/tls_vs_openssl.sh). Only successes are remembered; at most max_quorum_cache
  /// leaves. Errors: check_quorum's.
  [[nodiscard]] caf::error check_quorum_of(const std::shared_ptr<const snapshot>& snap,
                                           const certificate& leaf, const peer_identity& id,
                                           time_point now) const;

  /// Bound on the leaves check_quorum_of remembers (the cache is emptied when full).
  static constexpr std::size_t max_quorum_cache = 4096;

  /// verify_peer of the chain a peer presented at a handshake, against `snap`'s bundle and
  /// revocations at `now`, remembered per chain (by a SHA-256 over the SHA-256 of each
  /// certificate's DER, in order) while `snap` is current: a peer met again costs those
  /// hashes instead of the path validation and its signature checks (bench/
  /// tls_vs_openssl.sh). A remembered chain counts only from the time it was verified until
  /// the earliest notAfter of its certificates and of the bundle's roots: every certificate
  /// was valid at the first time, so all still are in between (a clock set back before it
  /// verifies again). `expected_node` is checked every time. Only successes are
  /// remembered; at most max_chain_cache chains. Refusals: verify_peer's.
  [[nodiscard]] caf::expected<peer_identity>
  verify_peer_of(const std::shared_ptr<const snapshot>& snap, const chain& presented,
                 time_point now, std::optional<std::string_view> expected_node) const;

  /// Bound on the chains verify_peer_of remembers (the memory is emptied when full).
  static constexpr std::size_t max_chain_cache = 1024;

  /// Path validations verify_peer_of ran so far (the chains it did not remember).
  [[nodiscard]] std::uint64_t chains_verified() const noexcept {
    return chains_verified_.load(std::memory_order_relaxed);
  }

  /// Counts a peer refused at a handshake, by the reason's identity::errc ("other" for an
  /// error of another module). Thread-safe; called by every tls_context over this state.
  void count_refusal(const caf::error& why) noexcept;

  /// Handshakes refused since start, by reason name ("revoked", "quorum_not_met", ...);
  /// reasons never met are left out.
  [[nodiscard]] std::map<std::string, std::uint64_t> refusals() const;

private:
  /// Empties both memories when `snap` is not the one they are for. Under cache_mutex_.
  void forget_unless_current(const std::shared_ptr<const snapshot>& snap) const;

  mutable std::mutex mutex_;
  std::shared_ptr<const snapshot> current_;
  /// check_quorum_of's memory: for which snapshot, and leaf digest -> valid until.
  mutable std::mutex cache_mutex_;
  mutable std::weak_ptr<const snapshot> cache_of_;
  mutable std::map<sha256_digest, time_point> cache_;
  /// verify_peer_of's memory (under cache_mutex_, for cache_of_ too): chain digest ->
  /// who, and the span in which it counts.
  struct verified_chain {
    peer_identity id;
    time_point from;
    time_point until;
  };
  mutable std::map<sha256_digest, verified_chain> chains_;
  mutable std::atomic<std::uint64_t> chains_verified_{0};
  /// count_refusal's counters: by identity::errc code, the last slot for anything else.
  std::array<std::atomic<std::uint64_t>, 64> refusals_{};
};

/// Which side of a handshake a session plays.
enum class tls_role : std::uint8_t { client, server };

/// How a tls_context is made.
struct tls_options {
  /// This node's key and chain (leaf first, then its issuers). Empty for a joiner that has
  /// no certificate yet (client role only, with `pinned_root`).
  private_key key;
  chain certs;
  /// The trust inputs. Required unless `pinned_root` is set.
  std::shared_ptr<trust_state> trust;
  /// Joiner mode (admission): trust the presented chain if it ends at a self-signed root
  /// whose SPKI SHA-256 is this pin (the join token's), as kubeadm's discovery does.
  std::optional<sha256_digest> pinned_root;
  /// Server only: let clients without a certificate finish the handshake (admission). Such
  /// sessions have no peer_identity; the caller must restrict them to admission requests.
  bool accept_anonymous_clients = false;
  /// The clock certificates are checked against (tests pass a fake one).
  std::function<time_point()> clock = [] { return std::chrono::system_clock::now(); };
};

/// What the verify callback learned about a session's peer.
struct tls_peer {
  /// Set once the peer's chain verified.
  std::optional<peer_identity> identity;
  /// Why the peer was refused; empty while nothing was refused.
  caf::error refusal;
};

/// A TLS 1.3-only context for one node, in both roles. Immutable after make().
class tls_context : public std::enable_shared_from_this<tls_context> {
public:
  /// Builds the context. Errors: invalid_argument (neither trust nor pinned_root; a key
  /// without certificates or the reverse; anonymous clients with a pinned root),
  /// bad_certificate (the key does not match the leaf), crypto_failure.
  [[nodiscard]] static caf::expected<std::shared_ptr<const tls_context>> make(tls_options opts);

  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  /// A new session in `role`. A client names the member it expects to reach
  /// (`expected_peer`): a server presenting another node's certificate is refused with
  /// name_mismatch. A server passes std::nullopt (it learns the client's name from the
  /// certificate; the caller binds it to the member the client claims in its messages).
  [[nodiscard]] caf::expected<ssl_ptr>
  new_session(tls_role role, std::optional<std::string> expected_peer = std::nullopt) const;

  /// What is known about the peer of a session made by any tls_context (null if `ssl` was
  /// not made by one).
  [[nodiscard]] static const tls_peer* peer_of(const SSL* ssl);

  /// Why the handshake of `ssl` failed as far as identity goes: the verify callback's
  /// refusal, else no_certificate if the peer sent none, else an empty error (a failure of
  /// TLS itself, e.g. no common protocol version: see OpenSSL's error queue).
  [[nodiscard]] static caf::error refusal_of(const SSL* ssl);

  /// This node's leaf certificate (empty in joiner mode).
  [[nodiscard]] const certificate& leaf() const noexcept { return leaf_; }

  /// The OpenSSL context (owned by this object), for tests and diagnostics.
  [[nodiscard]] SSL_CTX* native() const noexcept { return ctx_.get(); }

  struct session_state;

private:
  explicit tls_context(tls_options opts);
  static int verify_callback(X509_STORE_CTX* store, void* arg);

  tls_options opts_;
  certificate leaf_;
  ssl_ctx_ptr ctx_;
};

/// The current context of a node, swapped on renewal. Thread-safe.
class tls_context_holder {
public:
  explicit tls_context_holder(std::shared_ptr<const tls_context> initial);

  /// The context new sessions are made from.
  [[nodiscard]] std::shared_ptr<const tls_context> current() const;

  /// Makes `next` current; sessions made from the old one keep working.
  void replace(std::shared_ptr<const tls_context> next);

private:
  mutable std::mutex mutex_;
  std::shared_ptr<const tls_context> current_;
};

} // namespace starling::identity
