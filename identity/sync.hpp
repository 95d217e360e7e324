// Anti-entropy of revocation statements (docs/decisions/0008, "Sync"; decision 0011): every
// sync interval a node sends the digest of its statements to one random alive member (on an
// issuer, every other exchange goes to an issuer, so that the token ledger travels between
// issuers); the peer answers with its own digest, and with its statements when the digests
// differ. A node that still differs after taking the peer's statements lacks none of them:
// the peer lacks some of its own, so it pushes them all (once). A fresh revocation made here
// is pushed to every alive member at once, and the revoked key is withheld from this node's
// handshakes until the push to the revoked node itself is done (else its TLS would refuse
// that node before telling it).
//
// Pure: no I/O, no clock reads, no threads; the peer choice is a seeded generator. The owner
// (actors/identity_actor.cpp) runs the sync timer, asks the membership for the alive members,
// carries the requests and answers, adds the token ledger to what it sends (the issuer desk
// signs it), merges a ledger this core verified into the desk, persists the log, applies the
// revoked keys to the TLS trust and bans members, feeding each outcome back. Not thread-safe:
// one owner.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "identity/channel.hpp"
#include "identity/log_line.hpp"
#include "identity/revocation.hpp"
#include "identity/trust.hpp"

namespace starling::identity {

/// Counters of the sync (the certs view shows them).
struct sync_counters {
  /// Exchanges completed, started here or by a peer.
  std::uint64_t exchanges = 0;
  /// Exchanges started here that failed (unreachable peer, refusal, bad answer).
  std::uint64_t failures = 0;
  /// Statements received and refused (bad signature, unknown issuer, malformed...), and
  /// statements learned.
  std::uint64_t statements_refused = 0;
  std::uint64_t statements_learned = 0;
  /// Ledgers merged from authenticated issuers, ledgers refused (no valid issuer signature
  /// for this node), records of merged ledgers dropped (not signed by their issuer).
  std::uint64_t ledgers_merged = 0;
  std::uint64_t ledgers_refused = 0;
  std::uint64_t records_refused = 0;
  /// Periodic exchanges in which both sides held the same statements, and pushes of every
  /// statement to a peer found to lack some.
  std::uint64_t in_step = 0;
  std::uint64_t pushes = 0;
};

/// Send a sync request to member `peer` (encode_sync_request of `msg`, after adding the
/// token ledger when `ledger`); its answer goes to revocation_sync::on_answer with `periodic`
/// and `release`.
struct sync_send {
  std::string peer;
  /// The peer is an issuer: add this node's token ledger (issuers only).
  bool ledger = false;
  /// The periodic exchange (its answer may start a push), not a push.
  bool periodic = false;
  /// The digest, and the statements for a push.
  sync_message msg;
  /// Keys withheld from handshakes until this push is done (see revocation_sync::revoked).
  std::vector<sha256_digest> release;
};

/// Merge the token ledger of issuer `issuer` (verified by this core for this node) into the
/// issuer desk, then report with revocation_sync::on_ledger_merged.
struct ledger_merge {
  std::string peer;
  std::string issuer;
  token_ledger ledger;
  std::vector<issued_certificate> issued;
};

/// Ask the membership for the alive members to push fresh statements of `node` to; then
/// revocation_sync::on_push_members (or on_push_no_members).
struct push_query {
  std::string node;
  std::vector<sha256_digest> withheld;
};

/// What the owner does after an input.
struct sync_effects {
  std::vector<log_line> log;
  /// Ask the membership for the alive members (and which are issuers) for the periodic
  /// exchange: revocation_sync::on_members, or on_no_members.
  bool list_members = false;
  /// Ask the membership for the alive members for a push.
  std::optional<push_query> list_for_push;
  std::vector<sync_send> send;
  /// Answer the peer's sync request with this (encode_sync_response, after adding the
  /// ledger when `reply_ledger`).
  std::optional<sync_message> reply;
  bool reply_ledger = false;
  /// The log changed: write log() to the revocations file (a failed write is logged, not
  /// fatal: memory still enforces, and the next change writes again).
  bool persist = false;
  /// The keys handshakes must refuse now (every revoked key but the withheld ones).
  std::optional<revocation_set> enforce;
  /// Members to ban (their key is revoked).
  std::vector<std::string> ban;
  /// Node names of issuers learned from signatures verified here: names no joiner may take.
  std::vector<std::string> issuers;
  /// A verified ledger to merge into the desk.
  std::optional<ledger_merge> merge;
  /// This node's own key is revoked: it can talk to no one; stop with this message.
  std::optional<std::string> stop;
};

/// The revocation sync of node `name`. Pure; one owner.
class revocation_sync {
public:
  /// For node `name`; `seed` seeds the choice of peers; `issuer`: this node is an issuer
  /// (it takes token ledgers and sends its own).
  revocation_sync(std::string name, std::uint64_t seed, bool issuer = false);

  /// Starts with the log read from this node's file and this node's own key (if it has a
  /// certificate). Returns what to enforce, and `stop` if the own key is revoked already.
  [[nodiscard]] sync_effects start(revocation_log log, std::optional<sha256_digest> own_key);

  /// A key of a CA certificate this node knows (its issuers, signers of statements it
  /// verified): a statement revoking one is refused.
  void add_ca_key(const sha256_digest& key) { ca_keys_.insert(key); }

  /// The sync timer fired at `now`. The first time, bans the members whose statements were
  /// loaded at start (the membership starts after the owner); then starts a periodic
  /// exchange unless one is under way or this node's key is revoked.
  [[nodiscard]] sync_effects on_tick();

  /// The alive members (`names`) and which of them are issuers, for the periodic exchange:
  /// one is picked at random (on an issuer, from the issuers every other time).
  [[nodiscard]] sync_effects on_members(const std::vector<std::string>& names,
                                        const std::vector<std::string>& issuers, time_point now);

  /// No member list (`reason`): the periodic exchange ends.
  [[nodiscard]] sync_effects on_no_members(const std::string& reason);

  /// A sync request of member `peer`: its statements are verified against `bundle` at
  /// `now` and merged, then this node answers with its digest, and its statements if the
  /// peer's digest differs or is missing.
  [[nodiscard]] sync_effects on_request(const std::string& peer, const sync_message& req,
                                        const trust_bundle& bundle, time_point now);

  /// The answer of `peer` to a sync_send (`periodic`, `release` as sent): encoded bytes, or
  /// why the exchange failed.
  [[nodiscard]] sync_effects on_answer(const std::string& peer, bool periodic,
                                       const std::vector<sha256_digest>& release,
                                       const caf::expected<std::string>& answer,
                                       const trust_bundle& bundle, time_point now);

  /// The owner merged the ledger of `merge` into the desk: how many records it dropped,
  /// or why it could not persist the merge.
  [[nodiscard]] sync_effects on_ledger_merged(const std::string& peer,
                                              const caf::expected<std::size_t>& dropped);

  /// This issuer revoked the keys of `node`: `next` is the log with the statements in
  /// `fresh` added (already persisted by the owner, which refuses the command otherwise).
  /// The fresh keys are withheld from handshakes until the push to `node` is done; every
  /// alive member gets every statement at once.
  [[nodiscard]] sync_effects revoked(revocation_log next,
                                     const std::vector<revocation_log::entry>& fresh,
                                     const std::string& node);

  /// The alive members to push the statements of `q.node` to (`names`, and which are
  /// issuers). The withheld keys are released when the push to q.node is done, or now if it
  /// is not alive.
  [[nodiscard]] sync_effects on_push_members(const push_query& q,
                                             const std::vector<std::string>& names,
                                             const std::vector<std::string>& issuers,
                                             time_point now);

  /// No member list for the push of `q` (`reason`): anti-entropy spreads the statements;
  /// the withheld keys are released now.
  [[nodiscard]] sync_effects on_push_no_members(const push_query& q, const std::string& reason);

  /// The statements this node holds.
  [[nodiscard]] const revocation_log& log() const noexcept { return log_; }

  /// True if `key` is the key of a CA certificate this node knows.
  [[nodiscard]] bool is_ca_key(const sha256_digest& key) const { return ca_keys_.contains(key); }

  /// The CA keys this node knows (statements revoking one are refused).
  [[nodiscard]] const std::set<sha256_digest>& ca_keys() const noexcept { return ca_keys_; }

  /// This node's own key, if it has a certificate.
  [[nodiscard]] const std::optional<sha256_digest>& own_key() const noexcept { return own_key_; }

  /// This node's own key was found revoked (the node stops; no more exchanges).
  [[nodiscard]] bool own_key_revoked() const noexcept { return own_key_revoked_; }

  /// A periodic exchange is under way.
  [[nodiscard]] bool in_flight() const noexcept { return in_flight_; }

  [[nodiscard]] const sync_counters& counters() const noexcept { return counters_; }

private:
  /// Verifies and merges what `peer` sent into `fx`; returns true when the peer proved to
  /// be an issuer (a ledger signed for this node by an issuer of the bundle).
  bool absorb(const std::string& peer, const sync_message& msg, const trust_bundle& bundle,
              time_point now, sync_effects& fx);
  /// Consequences of statements just added: enforcement, bans, the own key.
  void learned(const std::vector<revocation_log::entry>& fresh, sync_effects& fx);
  /// Applies the withheld keys of a finished push and bans their nodes.
  void release(const std::vector<sha256_digest>& keys, sync_effects& fx);
  /// Sets fx.enforce to every revoked key but the withheld ones.
  void enforce(sync_effects& fx) const;
  /// Prunes the statements nobody needs at `now`, then what this node sends: its digest,
  /// and its statements when `statements`.
  sync_message outgoing(bool statements, time_point now);
  /// The message of a revoked own key (sets own_key_revoked_).
  void stop(const revocation_log::entry& e, sync_effects& fx);

  std::string name_;
  std::mt19937_64 pick_;
  bool issuer_;
  revocation_log log_;
  /// Revoked keys not applied to handshakes yet (see revoked): never longer than one push.
  std::multiset<sha256_digest> withheld_;
  std::set<sha256_digest> ca_keys_;
  std::optional<sha256_digest> own_key_;
  bool own_key_revoked_ = false;
  /// Invariant: at most one periodic exchange at a time.
  bool in_flight_ = false;
  /// Periodic exchanges started (an issuer picks an issuer every other one).
  std::uint64_t ticks_ = 0;
  /// The bans of the statements loaded at start were sent.
  bool bans_sent_ = false;
  sync_counters counters_;
};

} // namespace starling::identity
