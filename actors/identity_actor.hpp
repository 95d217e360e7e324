// The identity actor: the node's certificate and trust (for `starling certs`), the
// revocations it knows, and on issuer nodes the issuer desk (`starling token create`,
// `starling revoke`, admissions). It serves the node's identity channel on the gossip port
// (docs/decisions/0008): an issuer admits with its own tokens, any other node forwards an
// admission to the token's issuer; a joiner's further tokens (admission quorum, decision
// 0009) are first turned into endorsements by their issuers, asked by the seed; every node answers
// sync requests and starts one with a random alive member every sync interval (revocation
// statements to everyone, the token ledger among issuers). It renews the node's certificate at 2/3
// of its life (decision 0008, "Renewal"): an issuer signs its own, any other node asks the alive
// issuers one after the other; the new certificate is stored and hot-swapped into the TLS context,
// and an issuer answers the renewal requests of members.
//
// Protocol (local):
//   (token_atom, std::int64_t ttl_seconds, std::int64_t uses) -> std::string   the token
//   (revoke_atom, std::string node, std::string key) -> std::string   the revoked key ids;
//       `key` empty: every unexpired key this issuer issued to `node`, else "sha256:<hex>"
//   (certs_atom) -> std::string   the certs JSON view (actors/certs_view.hpp)
//   (admission_msg)               a request on the identity channel (admission or sync),
//                                 answered through the message's responder
//   (sync_atom)                   timer: one anti-entropy exchange
//   (renew_atom, private)         timer: renew the node certificate if it is due
//   sends to the membership actor (found in the directory when sending): (forward_admission_msg)
//       (a forwarded admission, a sync request to a member, or a renewal request to an
//       issuer), (alive_atom) and (live_atom) requests, (ban_atom, node) for each newly
//       revoked member; to the supervisor: (failed_atom, message) when this node's own key
//       is revoked or its stores cannot be opened.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "actors/node_identity.hpp"

namespace starling::actors {

class directory;
class keyring_sealer;

struct identity_params {
  /// This node's member name.
  std::string name;
  /// Null: the node runs without an identity (certs shows that; admissions and syncs are
  /// refused, no sync is started).
  std::shared_ptr<const node_identity> id;
  /// The gossip keyring handed to admitted nodes; null: none.
  std::shared_ptr<keyring_sealer> sealer;
  /// Where the issuer's token store lives: <data-dir>/tokens.
  std::filesystem::path tokens_file;
  /// Where the issuer's list of signed certificates lives: <data-dir>/issued.
  std::filesystem::path issued_file;
  /// Where the revocation log lives: <data-dir>/revocations (every node).
  std::filesystem::path revocations_file;
  /// Period of the anti-entropy exchange with one random alive member. Zero: none (tests).
  caf::timespan sync_interval = std::chrono::seconds{2};
  /// Bound on asking the membership actor for the alive members.
  caf::timespan alive_timeout = std::chrono::seconds{5};
  /// Seeds the choice of sync peers.
  std::uint64_t rng_seed = 0;
  /// Called (on the actor's thread) with each node whose certificate was revoked, beside
  /// the membership ban: the data plane closes that node's open connections. Unset: none.
  std::function<void(const std::string&)> on_ban;
  /// Where renewed credentials are stored (node.key, node.crt, bundle.crt): the data dir.
  /// Empty: not stored (tests).
  std::filesystem::path data_dir;
  /// Validity of the certificates this node signs as an issuer (config cert_ttl): renewals
  /// of members and its own.
  std::chrono::seconds cert_ttl = identity::node_validity;
  /// Distinct issuers that must vouch for a node certificate (config admission_quorum): an
  /// issuer admits and renews with no fewer (docs/decisions/0009).
  std::size_t admission_quorum = 1;
  /// How often the node certificate is checked for renewal (at most: a tenth of the
  /// certificate's life if shorter, see renewal_check_period); also once at start. Zero:
  /// never (tests).
  caf::timespan renewal_interval = std::chrono::seconds{30};
  /// The clock certificates are checked and signed against (tests pass a fake one).
  std::function<identity::time_point()> clock = [] { return std::chrono::system_clock::now(); };
};

/// Spawns the identity actor. A token store, issued list or revocation log that cannot be
/// opened, or a revocation of this node's own key found at start, makes the actor report
/// (failed_atom, message) to the supervisor and exit.
[[nodiscard]] caf::actor spawn_identity_actor(caf::actor_system& sys,
                                              std::shared_ptr<const directory> dir,
                                              identity_params params);

} // namespace starling::actors
