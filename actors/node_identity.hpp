// The node's identity at start (docs/identity.md, "In the agent"): which certificate it
// presents, which roots it trusts, and whether it is an issuer. Four cases, in order:
//   1. --issuer DIR: the node signs its own node certificate with the issuer key, valid for
//      cert_ttl (reusing the stored one while it has more than a third of its life left);
//   2. a certificate stored in the data dir (a restart, or a node admitted earlier);
//   3. --token T with --join: admission through the seeds (the node's key is made here, the
//      seed's chain is checked against the token's root pin, the certificate, the trust
//      bundle and the gossip keyring come back and are stored);
//   4. none of these: no identity, TCP between nodes in plain text (development only).
// Plain C++ (no CAF actor headers): run before the actor system starts.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "identity/admission.hpp"
#include "identity/tls.hpp"

namespace starling::actors {

struct agent_config;

/// A node's identity while it runs.
struct node_identity {
  identity::node_credentials creds;
  /// Set on issuer nodes.
  std::optional<identity::issuer_material> issuer;
  /// Bundle and revocations every handshake checks against.
  std::shared_ptr<identity::trust_state> trust;
  /// The TLS context of the moment (swapped on renewal).
  std::shared_ptr<identity::tls_context_holder> tls;
  /// How the credentials were obtained, for the log and `starling certs`: "self-issued",
  /// "stored", "admitted through <seed>".
  std::string source;
};

/// Settles the node's identity as the header comment says. std::nullopt in case 4. Writes
/// new credentials (and, after an admission, the granted keyring as <data-dir>/keyring)
/// before returning. Errors name what failed: an unreadable or mismatched issuer
/// directory, stored credentials that are corrupt, expired (with no token to renew them)
/// or for another node name, every seed refusing or unreachable within join_timeout.
[[nodiscard]] caf::expected<std::optional<node_identity>>
prepare_node_identity(const agent_config& cfg, identity::time_point now);

/// What one successful admission brings back.
struct admission_outcome {
  identity::node_credentials creds;
  /// The gossip keyring, text form; empty if the mesh has none. A secret.
  std::string keyring;
  /// The issuer that signed.
  std::string issuer;
};

/// One admission of node `name` through `seed` ("host:port"): a pinned-root TLS connection
/// (`token`'s pin: the first of `tokens`, decoded), a CSR for `key` naming the mesh the
/// seed's chain names, the tokens' text; the grant is checked (identity::accept_grant, with
/// `quorum`) before it is returned.
/// Nothing is stored. Errors: the transport's (io_failure, timeout, the TLS refusal,
/// peer_refused with the issuer's reason), the grant check's.
[[nodiscard]] caf::expected<admission_outcome>
request_admission(const std::string& seed, const std::string& name,
                  const std::vector<std::string>& tokens, const identity::join_token& token,
                  const identity::private_key& key, std::chrono::milliseconds timeout,
                  identity::time_point now, std::size_t quorum = 1);

/// Builds the TLS context of `creds` (mutual TLS 1.3, anonymous clients allowed for
/// admission only) over `trust`. Errors: as identity::tls_context::make.
[[nodiscard]] caf::expected<std::shared_ptr<const identity::tls_context>>
make_node_tls(const identity::node_credentials& creds,
              const std::shared_ptr<identity::trust_state>& trust);

/// True when `leaf` is past 2/3 of its life at `now` (time to renew), or unreadable. The
/// life counts from the issue time, notBefore + identity::clock_skew_allowance (notBefore is
/// backdated, decision 0004): a 45 s certificate is due 30 s after it was signed.
[[nodiscard]] bool needs_renewal(const identity::certificate& leaf, identity::time_point now);

/// How often to check `leaf` for renewal: `every`, or a tenth of the certificate's life if
/// that is shorter (so that a short-lived certificate is renewed well before it expires),
/// and at least a second.
[[nodiscard]] std::chrono::nanoseconds renewal_check_period(const identity::certificate& leaf,
                                                            std::chrono::nanoseconds every);

/// Makes `creds`, renewed credentials of `id` (same key), current: builds their TLS context
/// over id.trust, stores them in `data_dir` (skipped if empty), swaps the context into
/// id.tls (if any: new handshakes present the new certificate, open sessions keep theirs)
/// and sets id.creds. Errors: make_node_tls's, store_node_credentials's; then `id` and the
/// current context are unchanged.
[[nodiscard]] caf::error install_renewed(node_identity& id, identity::node_credentials creds,
                                         const std::filesystem::path& data_dir);

} // namespace starling::actors
