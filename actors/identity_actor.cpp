#include "actors/identity_actor.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/admission_msgs.hpp"
#include "actors/atoms.hpp"
#include "actors/certs_view.hpp"
#include "actors/directory.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/views.hpp"
#include "gossip/errc.hpp"
#include "identity/admission_flow.hpp"
#include "identity/authority.hpp"
#include "identity/channel.hpp"
#include "identity/errc.hpp"
#include "identity/keyring.hpp"
#include "identity/keyring_push.hpp"
#include "identity/renewal.hpp"

namespace starling::actors {

/// The answer of the token's issuer to an admission this node forwarded (local message).
struct forward_result_msg {
  identity::admission_ticket ticket = 0;
  caf::expected<std::string> answer;
};

/// The answer of the issuer of a joiner's further token to an endorse request (local
/// message): further token `index` of the admission `ticket`.
struct endorsement_result_msg {
  identity::admission_ticket ticket = 0;
  std::size_t index = 0;
  caf::expected<identity::endorsement> result;
};

/// The answer of member `node` to a keyring change pushed by this issuer (local message).
struct keyring_result_msg {
  identity::keyring_push_id push = 0;
  std::string node;
  caf::expected<std::string> answer;
};

/// The answer to a sync request this node sent to `peer` (local message).
struct sync_result_msg {
  std::string peer;
  caf::expected<std::string> answer;
  /// The periodic exchange (clears the in-flight flag), not a push after a revocation.
  bool periodic = false;
  /// Keys withheld from handshakes until this push to their node was done (see revoke).
  std::vector<identity::sha256_digest> release;
};

/// The answer of issuer `issuer` to this node's renewal request (local message).
struct renewal_result_msg {
  std::string issuer;
  caf::expected<std::string> answer;
};

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::forward_result_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::endorsement_result_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::keyring_result_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::sync_result_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::renewal_result_msg)

namespace starling::actors {

namespace {

using identity::sha256_digest;

/// Timer of the renewal check (private to this actor).
using renew_atom = caf::atom_constant<caf::atom("renew")>;

struct identity_state {
  identity_params params;
  /// Where the supervisor and the membership actor are found (actors/directory.hpp).
  std::shared_ptr<const directory> dir;
  /// This node's identity of the moment (with an identity): params.id's, with the
  /// credentials of the last renewal. Its `tls` holder is the transport's.
  std::optional<node_identity> current;
  /// The renewal of this node's certificate: the core (named and seeded at start).
  identity::renewal renewal{std::string{}, 0};
  /// Set on issuer nodes.
  std::optional<identity::issuer_desk> desk;
  identity::openssl_random rng;
  /// Picks sync peers.
  std::mt19937_64 pick;
  /// Mirrors params.revocations_file (a failed write is logged; memory still enforces).
  identity::revocation_log revocations;
  /// Revoked keys not applied to handshakes yet: an issuer's fresh revocation, until the
  /// push to the revoked node itself is done (else its TLS client would refuse that node
  /// before telling it). Never longer than one exchange (the transport's tcp_timeout).
  std::multiset<sha256_digest> withheld;
  /// Keys of CA certificates this node knows (the roots are in the bundle): its own issuer,
  /// the issuers of its chain, signers of verified statements, authenticated sync senders.
  /// A statement revoking one of them is refused.
  std::set<sha256_digest> ca_keys;
  /// SHA-256 of this node's own key (with an identity).
  std::optional<sha256_digest> own_key;
  /// A periodic exchange is under way.
  bool sync_in_flight = false;
  /// Periodic exchanges started: on issuers, every other one goes to an issuer (the ledger
  /// travels between issuers only).
  std::uint64_t ticks = 0;
  /// Bans of the statements loaded at start were sent (at the first tick: the membership
  /// actor starts after this one).
  bool bans_sent = false;
  /// This node's own key was found revoked and reported to the supervisor.
  bool own_key_revoked = false;
  /// Admissions this node routes (forwards, endorsement collections): the core.
  identity::admission_flow admissions;
  /// The reply channel of each admission under way, by ticket (see admission_flow).
  std::map<identity::admission_ticket, gossip::admission_responder> replies;
  identity::admission_ticket next_ticket = 0;
  /// Keyring changes being pushed to the members, and the rotation: the core (named after
  /// this node once the actor starts).
  identity::keyring_pushes keyrings{std::string{}};
  /// The admin's answer of each `keyring ... (mesh)` push under way.
  std::map<identity::keyring_push_id, caf::typed_response_promise<std::string>> keyring_promises;
  std::uint64_t admitted = 0;
  std::uint64_t refused = 0;
  std::uint64_t endorsed = 0;
  std::uint64_t names_refused = 0;
  sync_summary sync;
  /// Node names of issuers this node learned from signatures it verified (statements,
  /// ledgers, token records): names no joiner may take.
  std::set<std::string> issuer_names;
  /// Who holds which names, refreshed from the membership before every admission and
  /// endorsement request is handled (issue 13, finding 1).
  identity::name_holders holders;

  static inline const char* name = "identity";
};

using identity_actor_t = caf::stateful_actor<identity_state>;

issuer_summary summarize(const identity_state& st, identity::time_point now) {
  issuer_summary out;
  out.admitted = st.admitted;
  out.refused = st.refused;
  out.endorsed = st.endorsed;
  out.names_refused = st.names_refused;
  out.keyring_rotations = st.keyrings.rotations();
  if (!st.desk)
    return out;
  const auto secs = std::chrono::floor<std::chrono::seconds>(now);
  for (const auto& [id, entry] : st.desk->tokens().ledger().entries()) {
    ++out.known_tokens;
    if (secs < entry.expiry && entry.spent() < entry.uses)
      ++out.active_tokens;
  }
  return out;
}

std::vector<revocation_row> revocation_rows(const identity_state& st) {
  std::vector<revocation_row> rows;
  for (const auto& [k, e] : st.revocations.entries())
    rows.push_back({e.statement.node, e.statement.key, e.issuer.node, e.statement.revoked_at});
  return rows;
}

/// An error as the refusal the client reads: "identity.token_expired: ..." (a refusal
/// relayed from the token's issuer is passed on as it came).
caf::error as_refusal(const caf::error& err) {
  if (err.category() == gossip::errc_category)
    return err.code() == static_cast<std::uint8_t>(gossip::errc::peer_refused)
               ? err
               : gossip::make_error(gossip::errc::peer_refused, gossip::render(err));
  if (err.category() == errc_category)
    return gossip::make_error(gossip::errc::peer_refused, message_of(err));
  return gossip::make_error(gossip::errc::peer_refused, identity::render(err));
}

/// "what: reason" for an error of any module the identity channel meets.
std::string why(const caf::error& err) {
  if (err.category() == gossip::errc_category)
    return gossip::render(err);
  if (err.category() == errc_category)
    return message_of(err);
  return identity::render(err);
}

void refuse(identity_actor_t* self, const gossip::admission_responder& reply,
            const std::string& who, const caf::error& err) {
  ++self->state.refused;
  if (identity::is(err, identity::errc::name_taken))
    ++self->state.names_refused;
  auto refusal = as_refusal(err);
  spdlog::warn("admission of {} refused: {}", who, gossip::refusal_reason(refusal));
  reply(std::move(refusal));
}

/// Writes the lines a core returned.
void write_log(const std::vector<identity::log_line>& lines) {
  for (const auto& line : lines) {
    switch (line.level) {
    case identity::log_level::debug:
      spdlog::debug("{}", line.text);
      break;
    case identity::log_level::info:
      spdlog::info("{}", line.text);
      break;
    case identity::log_level::warn:
      spdlog::warn("{}", line.text);
      break;
    case identity::log_level::error:
      spdlog::error("{}", line.text);
      break;
    }
  }
}

// -- revocations ------------------------------------------------------------------------------

/// Makes handshakes refuse every revoked key but the withheld ones.
void apply_to_trust(identity_state& st) {
  identity::revocation_set keys;
  for (const auto& [k, e] : st.revocations.entries())
    if (!st.withheld.contains(k.first))
      keys.insert(k.first);
  st.params.id->trust->revoke(keys);
}

/// Reports that this node's own key is revoked: it can no longer talk to anyone.
void on_own_key_revoked(identity_actor_t* self, const identity::revocation_log::entry& e) {
  auto& st = self->state;
  if (st.own_key_revoked)
    return;
  st.own_key_revoked = true;
  auto msg = "this node's key " + identity::format_pin(e.statement.key) +
             " was revoked by issuer '" + e.issuer.node + "': every peer refuses it now; " +
             "stopping (admit the node again with a new token)";
  spdlog::error("{}", msg);
  self->send(st.dir->find(role::supervisor), failed_atom::value, std::move(msg));
}

/// Consequences of statements just added to the log: handshakes, bans, own key.
void on_learned(identity_actor_t* self, const std::vector<identity::revocation_log::entry>& fresh) {
  auto& st = self->state;
  apply_to_trust(st);
  for (const auto& e : fresh) {
    spdlog::warn("revocation: key {} of node '{}' revoked by issuer '{}'",
                 identity::format_pin(e.statement.key), e.statement.node, e.issuer.node);
    if (st.own_key && *st.own_key == e.statement.key) {
      on_own_key_revoked(self, e);
      continue;
    }
    if (e.statement.node != st.params.name && !st.withheld.contains(e.statement.key))
      self->send(st.dir->find(role::membership), ban_atom::value, e.statement.node);
  }
}

/// Persists `next` and makes it the log. A failed write is logged, not fatal: the
/// revocations are enforced in memory anyway, and the next change writes the file again.
void commit_log(identity_state& st, identity::revocation_log next) {
  if (auto err = next.save(st.params.revocations_file))
    spdlog::error("cannot persist revocations in {}: {}", st.params.revocations_file.string(),
                  identity::render(err));
  st.revocations = std::move(next);
}

/// Verifies and merges what a peer sent: statements from anyone (each verified), the token
/// ledger only from an authenticated issuer and only on an issuer. Returns true when the
/// peer authenticated as an issuer.
bool absorb(identity_actor_t* self, const std::string& peer, const identity::sync_message& msg) {
  auto& st = self->state;
  const auto now = st.params.clock();
  const auto& bundle = st.current->creds.bundle;
  st.sync.statements_refused += msg.malformed;
  std::optional<identity::revocation_log> next;
  std::vector<identity::revocation_log::entry> fresh;
  for (const auto& stmt : msg.revocations) {
    if (st.revocations.contains(stmt))
      continue; // known: not verified again every few seconds
    auto who = identity::verify_revocation(stmt, bundle, now, st.ca_keys);
    if (!who) {
      ++st.sync.statements_refused;
      spdlog::debug("dropped a revocation statement from {}: {}", peer,
                    identity::render(who.error()));
      continue;
    }
    st.ca_keys.insert(who->key);
    st.issuer_names.insert(who->node);
    if (!next)
      next = st.revocations;
    identity::revocation_log::entry e{stmt, std::move(*who)};
    if (next->insert(e)) {
      ++st.sync.statements_learned;
      fresh.push_back(std::move(e));
    }
  }
  if (next) {
    commit_log(st, std::move(*next));
    on_learned(self, fresh);
  }
  if (!msg.ledger)
    return false;
  if (!st.desk) {
    spdlog::debug("ignored a token ledger from {}: this node is no issuer", peer);
    return false;
  }
  // The ledger counts only with an issuer's signature over it for this node: a peer that
  // merely has an issuer's name (or sends an issuer certificate, which is public) is no
  // issuer (issue 13, finding 1).
  auto issuer = identity::verify_ledger(*msg.ledger, msg.issued, msg.ledger_seal, st.params.name,
                                        bundle, now);
  if (!issuer) {
    ++st.sync.ledgers_refused;
    spdlog::warn("refused the token ledger of {}: {}", peer, identity::render(issuer.error()));
    return false;
  }
  st.ca_keys.insert(issuer->key);
  st.issuer_names.insert(issuer->node);
  // What it certified: no joiner gets those names here while the keys are valid.
  st.desk->learn_issued(issuer->node, msg.issued, now);
  auto dropped = st.desk->merge_ledger(*msg.ledger, now);
  if (!dropped) {
    spdlog::error("cannot persist the token ledger merged from {}: {}", peer,
                  identity::render(dropped.error()));
    return true;
  }
  ++st.sync.ledgers_merged;
  if (*dropped > 0) {
    st.sync.records_refused += *dropped;
    spdlog::warn("dropped {} token record(s) from {}'s ledger: not signed by their issuer",
                 *dropped, peer);
  }
  for (const auto& [id, entry] : st.desk->tokens().ledger().entries())
    st.issuer_names.insert(entry.issuer);
  return true;
}

/// Drops the statements of expired issuers (nobody needs them), then the digest of the rest:
/// what a sync compares.
sha256_digest pruned_digest(identity_state& st) {
  st.revocations.prune(st.params.clock());
  return st.revocations.digest();
}

/// What this node sends in a sync: `own` (pruned_digest's), the statements themselves when
/// `statements` (a push, or an answer to a peer whose digest differs), and (issuers, to an
/// issuer) the ledger with the issuer certificate.
identity::sync_message outgoing(identity_state& st, const sha256_digest& own, bool with_ledger,
                                bool statements, const std::string& peer) {
  identity::sync_message msg;
  msg.digest = own;
  if (statements) {
    msg.revocations.reserve(st.revocations.size());
    for (const auto& [k, e] : st.revocations.entries())
      msg.revocations.push_back(e.statement);
  }
  if (st.desk && with_ledger) {
    // Signed for `peer`: what proves to it that an issuer sends this ledger.
    // Its own issued list rides along (the newest records, up to the bound).
    const auto& all = st.desk->issued();
    std::vector<identity::issued_certificate> issued(all.size() > identity::max_shared_issued
                                                         ? all.end() - identity::max_shared_issued
                                                         : all.begin(),
                                                     all.end());
    auto seal = identity::sign_ledger(st.desk->material(), st.desk->tokens().ledger(), issued, peer,
                                      st.params.clock());
    if (seal) {
      msg.ledger = st.desk->tokens().ledger();
      msg.ledger_seal = std::move(*seal);
      msg.issued = std::move(issued);
    } else {
      spdlog::error("cannot sign the token ledger for {}: {}", peer,
                    identity::render(seal.error()));
    }
  }
  return msg;
}

/// Sends `request` (an encoded IdentityRequest) to member `node` through the membership actor and
/// the membership actor. The answer comes back to this actor as the local message that
/// `to_msg(answer)` makes (run on the transport's thread, so it must only build a value).
template <class ToMsg>
void ask_member(identity_actor_t* self, std::string node, std::string request, ToMsg to_msg) {
  caf::weak_actor_ptr weak{self->ctrl()};
  forward_admission_msg fwd;
  fwd.issuer = std::move(node);
  fwd.request = std::move(request);
  fwd.done = [weak, to_msg = std::move(to_msg)](caf::expected<std::string> answer) mutable {
    if (auto hdl = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(hdl), to_msg(std::move(answer)));
  };
  const auto membership = self->state.dir->find(role::membership);
  if (!membership) {
    fwd.done(make_error(errc::unreachable, "the membership actor is restarting"));
    return;
  }
  self->send(membership, std::move(fwd));
}

/// Sends one sync request to member `peer` through the membership actor. A periodic one
/// carries only the digest of this node's statements (the peer answers with its own
/// statements if they differ); any other (a push) carries them all.
void start_sync(identity_actor_t* self, const std::string& peer, bool peer_is_issuer, bool periodic,
                std::vector<sha256_digest> release = {}) {
  auto& st = self->state;
  auto bytes = identity::encode_sync_request(
      outgoing(st, pruned_digest(st), peer_is_issuer, !periodic, peer));
  if (!bytes) {
    spdlog::error("cannot encode a sync request: {}", identity::render(bytes.error()));
    self->send(self, sync_result_msg{peer, bytes.error(), periodic, std::move(release)});
    return;
  }
  ask_member(self, peer, std::move(*bytes),
             [peer, periodic, release = std::move(release)](caf::expected<std::string> answer) {
               return sync_result_msg{peer, std::move(answer), periodic, release};
             });
}

/// Applies the withheld keys of a finished push and bans their nodes.
void release_withheld(identity_actor_t* self, const std::vector<sha256_digest>& keys) {
  auto& st = self->state;
  if (keys.empty())
    return;
  std::set<std::string> nodes;
  for (const auto& key : keys) {
    if (auto it = st.withheld.find(key); it != st.withheld.end())
      st.withheld.erase(it);
    for (const auto& [k, e] : st.revocations.entries())
      if (k.first == key)
        nodes.insert(e.statement.node);
  }
  apply_to_trust(st);
  for (const auto& node : nodes)
    self->send(st.dir->find(role::membership), ban_atom::value, node);
}

void on_sync_result(identity_actor_t* self, sync_result_msg& msg) {
  auto& st = self->state;
  if (msg.periodic)
    st.sync_in_flight = false;
  release_withheld(self, msg.release);
  if (!msg.answer) {
    ++st.sync.failures;
    spdlog::debug("identity sync with {} failed: {}", msg.peer, why(msg.answer.error()));
    return;
  }
  auto answer = identity::decode_sync_response(*msg.answer);
  if (!answer) {
    ++st.sync.failures;
    spdlog::debug("identity sync with {}: {}", msg.peer, identity::render(answer.error()));
    return;
  }
  ++st.sync.exchanges;
  const bool peer_is_issuer = absorb(self, msg.peer, *answer);
  if (!msg.periodic || !answer->digest)
    return;
  if (*answer->digest == st.revocations.digest()) {
    if (answer->revocations.empty())
      ++st.sync.in_step;
    return;
  }
  // The peer's statements differ from ours even after taking theirs: it lacks some of
  // ours. Push them (once: a push is not periodic, so its answer never pushes again).
  ++st.sync.pushes;
  start_sync(self, msg.peer, peer_is_issuer, false);
}

/// The periodic exchange: one random alive member.
void on_sync_tick(identity_actor_t* self) {
  auto& st = self->state;
  self->delayed_send(self, st.params.sync_interval, sync_atom::value);
  if (!st.bans_sent) {
    st.bans_sent = true;
    for (const auto& [k, e] : st.revocations.entries())
      if (e.statement.node != st.params.name)
        self->send(st.dir->find(role::membership), ban_atom::value, e.statement.node);
  }
  if (st.sync_in_flight || st.own_key_revoked)
    return;
  st.sync_in_flight = true;
  self->request(st.dir->find(role::membership), st.params.alive_timeout, alive_atom::value)
      .then(
          [=](std::vector<std::string>& names, std::vector<std::string>&,
              std::vector<std::string>& issuers) {
            auto& st = self->state;
            if (names.empty()) {
              st.sync_in_flight = false;
              return;
            }
            const auto& pool = st.desk && !issuers.empty() && st.ticks++ % 2 == 1 ? issuers : names;
            std::uniform_int_distribution<std::size_t> any{0, pool.size() - 1};
            const auto peer = pool[any(st.pick)];
            const bool is_issuer = std::find(issuers.begin(), issuers.end(), peer) != issuers.end();
            start_sync(self, peer, is_issuer, true);
          },
          [=](caf::error& err) {
            self->state.sync_in_flight = false;
            spdlog::debug("identity sync: no member list: {}", why(err));
          });
}

/// Spreads fresh statements at once: one sync with every alive member. The keys in
/// `withheld` are applied when the push to their node is done (or at once if it is not
/// alive).
void push_revocations(identity_actor_t* self, const std::string& node,
                      std::vector<sha256_digest> withheld) {
  auto& st = self->state;
  self->request(st.dir->find(role::membership), st.params.alive_timeout, alive_atom::value)
      .then(
          [=](std::vector<std::string>& names, std::vector<std::string>&,
              std::vector<std::string>& issuers) {
            bool target_alive = false;
            for (const auto& peer : names) {
              const bool is_issuer =
                  std::find(issuers.begin(), issuers.end(), peer) != issuers.end();
              if (peer == node) {
                target_alive = true;
                start_sync(self, peer, is_issuer, false, withheld);
              } else {
                start_sync(self, peer, is_issuer, false);
              }
            }
            spdlog::info("revocation of '{}' pushed to {} member(s)", node, names.size());
            if (!target_alive)
              release_withheld(self, withheld);
          },
          [=](caf::error& err) {
            spdlog::warn("cannot push the revocation of '{}' at once ({}); anti-entropy spreads it",
                         node, why(err));
            release_withheld(self, withheld);
          });
}

void rotate_keyring(identity_actor_t* self, std::set<std::string> revoked_nodes);

/// `starling revoke NODE [--key sha256:HEX]` on an issuer.
caf::result<std::string> on_revoke(identity_actor_t* self, const std::string& node,
                                   const std::string& key_text) {
  auto& st = self->state;
  if (!st.desk)
    return make_error(
        errc::request_failed,
        "this node is not an issuer: only issuers revoke (start one with --issuer DIR)");
  if (!identity::is_valid_node_name(node))
    return make_error(errc::bad_request, "revoke: invalid node name '" + node + "'");
  if (node == st.params.name)
    return make_error(errc::request_failed, "refusing to revoke this node itself ('" + node +
                                                "'): run `starling revoke` on another issuer");
  const auto now = st.params.clock();
  std::vector<sha256_digest> keys;
  if (!key_text.empty()) {
    auto key = identity::parse_pin(key_text);
    if (!key)
      return make_error(errc::bad_request,
                        "--key: expected sha256:<64 hex digits>, got '" + key_text + "'");
    keys.push_back(*key);
  } else {
    keys = st.desk->keys_issued_to(node, now);
    if (keys.empty())
      return make_error(errc::request_failed,
                        "this issuer has not issued a certificate to " + node +
                            " that is still valid; to revoke a key another issuer signed, give "
                            "it: starling revoke " +
                            node + " --key sha256:<hex> (`starling certs` on that node shows it)");
  }
  auto next = st.revocations;
  std::vector<identity::revocation_log::entry> fresh;
  std::string answer;
  for (const auto& key : keys) {
    if (st.own_key && key == *st.own_key)
      return make_error(errc::request_failed, "refusing to revoke this node's own key");
    if (st.ca_keys.contains(key))
      return make_error(errc::request_failed, identity::format_pin(key) +
                                                  " is the key of an issuer: issuers revoke node "
                                                  "keys only (issuers are removed offline)");
    auto stmt = identity::make_revocation(*st.params.id->issuer, key, node, now);
    if (!stmt)
      return make_error(errc::request_failed, identity::render(stmt.error()));
    auto who = identity::verify_revocation(*stmt, st.current->creds.bundle, now, st.ca_keys);
    if (!who)
      return make_error(errc::request_failed, identity::render(who.error()));
    identity::revocation_log::entry e{std::move(*stmt), std::move(*who)};
    const bool known = next.revokes(key);
    if (next.insert(e))
      fresh.push_back(e);
    answer += "revoked " + identity::format_pin(key) + " (node " + node + ")" +
              (known ? ", already revoked before" : "") + "\n";
  }
  if (fresh.empty())
    return answer;
  if (auto err = next.save(st.params.revocations_file))
    return make_error(errc::request_failed, "cannot persist the revocation in " +
                                                st.params.revocations_file.string() + ": " +
                                                identity::render(err));
  st.revocations = std::move(next);
  std::vector<sha256_digest> withheld;
  for (const auto& e : fresh) {
    st.withheld.insert(e.statement.key);
    withheld.push_back(e.statement.key);
  }
  on_learned(self, fresh); // logs, trust (minus the withheld keys)
  push_revocations(self, node, std::move(withheld));
  rotate_keyring(self, {node});
  return answer;
}

// -- renewal (identity/renewal.hpp) -------------------------------------------------------------

void run(identity_actor_t* self, identity::renewal_effects fx);

/// The renewal check: when the node certificate is past 2/3 of its life, an issuer signs
/// its own, any other node asks the alive issuers in a random order (the core decides).
void on_renew_tick(identity_actor_t* self) {
  auto& st = self->state;
  const auto& leaf = st.current->creds.certs.front();
  self->delayed_send(self, identity::renewal_check_period(leaf, st.params.renewal_interval),
                     renew_atom::value);
  run(self, st.renewal.on_check(st.current->creds, st.params.clock(),
                                st.current->issuer.has_value(), st.own_key_revoked));
}

/// Carries out what the renewal core asked for.
void run(identity_actor_t* self, identity::renewal_effects fx) {
  auto& st = self->state;
  write_log(fx.log);
  if (fx.self_issue) {
    const auto& issuer = *st.current->issuer;
    const auto now = st.params.clock();
    auto creds = identity::self_issue(issuer, st.params.name, st.current->creds.key, now,
                                      st.params.cert_ttl);
    run(self, st.renewal.on_self_issued(std::move(creds), issuer.node, st.current->creds, now));
  }
  if (fx.list_issuers)
    self->request(st.dir->find(role::membership), st.params.alive_timeout, alive_atom::value)
        .then(
            [=](std::vector<std::string>&, std::vector<std::string>&,
                std::vector<std::string>& issuers) {
              auto& st = self->state;
              run(self,
                  st.renewal.on_issuers(std::move(issuers), st.current->creds, st.params.clock()));
            },
            [=](caf::error& err) {
              auto& st = self->state;
              run(self, st.renewal.on_no_issuers(why(err), st.current->creds, st.params.clock()));
            });
  if (fx.ask)
    ask_member(self, fx.ask->issuer, std::move(fx.ask->request),
               [issuer = fx.ask->issuer](caf::expected<std::string> answer) {
                 return renewal_result_msg{issuer, std::move(answer)};
               });
  if (fx.install) {
    const auto by = fx.install->by;
    auto err = install_renewed(*st.current, std::move(fx.install->creds), st.params.data_dir);
    run(self, st.renewal.on_installed(by, err, st.current->creds, st.params.clock()));
  }
  if (fx.renewed_by) {
    st.current->source = "renewed by " + *fx.renewed_by;
    for (std::size_t i = 1; i < st.current->creds.certs.size(); ++i) // its issuer may be new
      if (auto key = identity::spki_sha256(st.current->creds.certs[i]))
        st.ca_keys.insert(*key);
  }
}

void on_renewal_result(identity_actor_t* self, renewal_result_msg& msg) {
  auto& st = self->state;
  const auto now = st.params.clock();
  if (msg.answer)
    run(self,
        st.renewal.on_answer(msg.issuer, *msg.answer, st.current->creds, now,
                             st.params.id->trust->current()->revoked, st.params.admission_quorum));
  else
    run(self, st.renewal.on_failure(msg.issuer, why(msg.answer.error()), st.current->creds, now));
}

/// An issuer's side: member `peer` asks to renew its certificate.
void on_renewal_request(identity_actor_t* self, const identity::renewal_request& req,
                        const std::string& peer, const gossip::admission_responder& reply) {
  auto& st = self->state;
  auto grant = [&]() -> caf::expected<std::string> {
    if (!st.desk)
      return identity::make_error(identity::errc::bad_request,
                                  "this node is not an issuer and cannot renew certificates");
    auto signed_ =
        st.desk->renew(req, peer, st.params.clock(), st.params.id->trust->current()->revoked,
                       st.params.cert_ttl, st.params.admission_quorum);
    if (!signed_)
      return signed_.error();
    return identity::encode(*signed_);
  }();
  if (!grant) {
    ++st.refused;
    auto refusal = as_refusal(grant.error());
    spdlog::warn("renewal for member {} refused: {}", peer, gossip::refusal_reason(refusal));
    reply(std::move(refusal));
    return;
  }
  spdlog::info("renewed the certificate of member '{}'", peer);
  reply(std::move(*grant));
}

// -- the identity channel ----------------------------------------------------------------------

/// Redeems and signs here.
void admit_here(identity_actor_t* self, const identity::admission_request& req,
                const std::string& token_id, const gossip::admission_responder& reply) {
  auto& st = self->state;
  auto grant = st.desk->admit(req, st.params.clock(), st.params.id->trust->current()->revoked,
                              st.params.cert_ttl, st.params.admission_quorum, st.holders);
  if (!grant) {
    refuse(self, reply, "'" + req.name + "' (token " + token_id + ")", grant.error());
    return;
  }
  if (st.params.sealer)
    grant->keyring = st.params.sealer->ring_text();
  auto bytes = identity::encode(*grant);
  if (!bytes) {
    refuse(self, reply, "'" + req.name + "'", bytes.error());
    return;
  }
  ++st.admitted;
  if (req.endorsements.empty())
    spdlog::info("admitted node '{}' with token {}", req.name, token_id);
  else
    spdlog::info("admitted node '{}' with token {} and {} endorsement(s)", req.name, token_id,
                 req.endorsements.size());
  reply(std::move(*bytes));
}

// -- admissions this node routes (identity/admission_flow.hpp) ----------------------------------

/// Endorses here, for the seed `asker` (this node or a member): `token` must be redeemable
/// by this issuer. Counted and logged when it succeeds.
caf::expected<identity::endorsement>
endorse_here(identity_state& st, const identity::endorse_request& req, const std::string& asker) {
  if (!st.desk)
    return identity::make_error(identity::errc::bad_request,
                                "this node is not an issuer and cannot endorse");
  auto e = st.desk->endorse(req, st.params.clock(), st.params.id->trust->current()->revoked,
                            st.params.cert_ttl, st.holders);
  if (e) {
    ++st.endorsed;
    spdlog::info("endorsed node '{}' for {}", req.name, asker);
  }
  return e;
}

/// This node as an issuer, for the admission core.
std::optional<identity::local_issuer> local_issuer_of(const identity_state& st) {
  if (!st.desk)
    return std::nullopt;
  return identity::local_issuer{st.desk->material().node, &st.desk->tokens().ledger()};
}

/// The reply channel of admission `ticket`, taken out (null if it was answered already).
gossip::admission_responder take_reply(identity_state& st, identity::admission_ticket ticket) {
  auto it = st.replies.find(ticket);
  if (it == st.replies.end())
    return {};
  auto reply = std::move(it->second);
  st.replies.erase(it);
  return reply;
}

/// Carries out what the admission core asked for.
void run(identity_actor_t* self, identity::admission_effects fx) {
  auto& st = self->state;
  write_log(fx.log);
  for (auto& a : fx.ask)
    ask_member(self, a.issuer, std::move(a.request),
               [t = a.ticket, i = a.index](caf::expected<std::string> answer) {
                 caf::expected<identity::endorsement> result =
                     answer ? identity::decode_endorse_response(*answer)
                            : caf::expected<identity::endorsement>{answer.error()};
                 return endorsement_result_msg{t, i, std::move(result)};
               });
  for (auto& f : fx.forward)
    ask_member(self, f.issuer, std::move(f.request), [t = f.ticket](caf::expected<std::string> a) {
      return forward_result_msg{t, std::move(a)};
    });
  for (auto& e : fx.endorse_here) {
    auto result = endorse_here(st, e.req, "this node, the seed");
    run(self,
        st.admissions.on_endorsement(e.ticket, e.index, std::move(result), local_issuer_of(st)));
  }
  for (auto& a : fx.admit)
    if (auto reply = take_reply(st, a.ticket))
      admit_here(self, a.req, a.token_id, reply);
  for (auto& r : fx.refuse) {
    auto reply = take_reply(st, r.ticket);
    if (!reply)
      continue;
    auto err = r.endorsing_issuer.empty()
                   ? std::move(r.error)
                   : gossip::make_error(gossip::errc::peer_refused,
                                        "endorsement by issuer " + r.endorsing_issuer + ": " +
                                            gossip::refusal_reason(as_refusal(r.error)));
    refuse(self, reply, r.who, err);
  }
  for (auto& r : fx.relay)
    if (auto reply = take_reply(st, r.ticket))
      reply(r.answer ? std::move(r.answer)
                     : caf::expected<std::string>{as_refusal(r.answer.error())});
}

/// An admission request (names refreshed): handed to the admission core.
void on_admission(identity_actor_t* self, identity::admission_request& req, admission_msg& msg) {
  auto& st = self->state;
  const auto ticket = ++st.next_ticket;
  st.replies.emplace(ticket, std::move(msg.reply));
  run(self, st.admissions.on_request(ticket, std::move(req), std::move(msg.request), msg.peer,
                                     local_issuer_of(st)));
}

void on_forward_result(identity_actor_t* self, forward_result_msg& msg) {
  // Gone: not an alive member, or the connection failed (the membership actor's verdict).
  const bool gone = !msg.answer && msg.answer.error().category() == errc_category &&
                    msg.answer.error().code() == static_cast<std::uint8_t>(errc::unreachable);
  run(self, self->state.admissions.on_forward_answer(msg.ticket, std::move(msg.answer), gone));
}

void on_endorsement_result(identity_actor_t* self, endorsement_result_msg& msg) {
  auto& st = self->state;
  run(self, st.admissions.on_endorsement(msg.ticket, msg.index, std::move(msg.result),
                                         local_issuer_of(st)));
}

/// A seed asks this issuer to endorse a joiner's key with one of this issuer's tokens.
void on_endorse_request(identity_actor_t* self, const identity::endorse_request& req,
                        const std::string& peer, const gossip::admission_responder& reply) {
  auto& st = self->state;
  auto answer = [&]() -> caf::expected<std::string> {
    auto token = identity::decode(req.token);
    if (!token)
      return token.error();
    if (st.desk && token->issuer != st.desk->material().node &&
        st.desk->tokens().ledger().find(token->id) == nullptr)
      return identity::make_error(identity::errc::token_unknown,
                                  "token " + token->id_hex() + " was not made by this issuer");
    auto e = endorse_here(st, req, "member " + peer);
    if (!e)
      return e.error();
    return identity::encode(*e);
  }();
  if (!answer) {
    refuse(self, reply, "the endorsement of '" + req.name + "' asked by " + peer, answer.error());
    return;
  }
  reply(std::move(*answer));
}

// -- the gossip keyring, mesh-wide (identity/keyring_push.hpp) ----------------------------------

void run(identity_actor_t* self, identity::keyring_effects fx);

/// Applies keyring change `op` of `arg` here, then starts its push to every alive member
/// but `exclude` over the identity channel (the core signs it for each). Returns the push,
/// or why this node refused the change.
caf::expected<identity::keyring_push_id>
start_keyring_push(identity_actor_t* self, const std::string& op, const std::string& arg,
                   std::set<std::string> exclude, bool rotation) {
  auto& st = self->state;
  // Encoded first: a change the wire cannot carry is refused before this node applies it.
  // Each member gets the change signed for it (the core); this one only checks the encoding.
  auto bytes = identity::encode(identity::keyring_change{op, arg, {}});
  if (!bytes)
    return make_error(errc::bad_request, identity::render(bytes.error()));
  auto here = answer_keyring_request(st.params.sealer.get(), op, arg);
  if (here.rfind("ok ", 0) != 0)
    return make_error(errc::request_failed, here.rfind("error: ", 0) == 0 ? here.substr(7) : here);
  const auto push = st.keyrings.start(op, arg, here.substr(3), std::move(exclude), rotation);
  self->request(st.dir->find(role::membership), st.params.alive_timeout, alive_atom::value)
      .then(
          [=](std::vector<std::string>& names, std::vector<std::string>&,
              std::vector<std::string>&) {
            auto& st = self->state;
            run(self, st.keyrings.on_members(push, names, st.desk->material(), st.params.clock()));
          },
          [=](caf::error& err) {
            spdlog::warn("keyring {}: no member list ({}); changed on this node only", op,
                         why(err));
            run(self, self->state.keyrings.on_no_members(push));
          });
  return push;
}

/// A finished push as the admin reads it: {"op","id","members":[{"node","ok","error"}..]}.
std::string report_json(const identity::keyring_push_report& report) {
  nlohmann::ordered_json members = nlohmann::ordered_json::array();
  for (const auto& m : report.members)
    members.push_back(
        {{"node", m.node}, {"ok", m.ok()}, {"error", m.error ? *m.error : "no answer"}});
  nlohmann::ordered_json doc{{"op", report.op}, {"id", report.id}, {"members", std::move(members)}};
  return doc.dump();
}

/// A revoked node holds the gossip keyring: a new key is installed on every alive member
/// but the revoked ones, then used, then the old key removed, each step once the one
/// before reached every member (a member that missed a step keeps working on the old key
/// until the removal). Issuers with a keyring only.
void rotate_keyring(identity_actor_t* self, std::set<std::string> revoked_nodes) {
  auto& st = self->state;
  if (!st.desk || !st.params.sealer || st.keyrings.defer_rotation(revoked_nodes))
    return;
  const auto old_id = st.params.sealer->view().primary;
  auto key = identity::generate_gossip_key();
  if (!key) {
    spdlog::error("keyring rotation after a revocation: {}", identity::render(key.error()));
    return;
  }
  run(self, st.keyrings.rotate(std::move(revoked_nodes), identity::to_base64(*key),
                               identity::to_hex(identity::id_of(*key)), old_id));
}

/// Carries out what the keyring core asked for.
void run(identity_actor_t* self, identity::keyring_effects fx) {
  auto& st = self->state;
  write_log(fx.log);
  for (auto& s : fx.send)
    ask_member(self, s.node, std::move(s.request),
               [push = s.push, node = s.node](caf::expected<std::string> answer) {
                 return keyring_result_msg{push, node, std::move(answer)};
               });
  for (const auto& report : fx.finished) {
    auto it = st.keyring_promises.find(report.push);
    if (it == st.keyring_promises.end())
      continue;
    auto promise = std::move(it->second);
    st.keyring_promises.erase(it);
    promise.deliver(report_json(report));
  }
  if (fx.step) {
    auto started = start_keyring_push(self, fx.step->op, fx.step->arg, fx.step->exclude, true);
    if (!started)
      run(self, st.keyrings.on_step_refused(message_of(started.error())));
  }
  if (!fx.rotate_again.empty())
    rotate_keyring(self, std::move(fx.rotate_again));
}

void on_keyring_result(identity_actor_t* self, keyring_result_msg& msg) {
  auto& keyrings = self->state.keyrings;
  if (msg.answer)
    run(self, keyrings.on_answer(msg.push, msg.node, *msg.answer));
  else
    run(self, keyrings.on_failure(msg.push, msg.node,
                                  gossip::refusal_reason(as_refusal(msg.answer.error()))));
}

/// `starling keyring install|use|remove` for the whole mesh, on an issuer: applied here
/// first, then pushed to every alive member; the admin gets the report.
caf::result<std::string> on_mesh_keyring(identity_actor_t* self, const std::string& op,
                                         const std::string& arg) {
  auto& st = self->state;
  if (!st.desk)
    return make_error(errc::request_failed,
                      "only an issuer changes the keyring of the whole mesh, and this node is "
                      "not one: run the command on an issuer, or add --local to change this "
                      "node's keyring alone");
  auto started = start_keyring_push(self, op, arg, {}, false);
  if (!started)
    return started.error();
  auto promise = self->make_response_promise<std::string>();
  st.keyring_promises.emplace(*started, promise);
  return promise;
}

/// An issuer pushes a keyring change to this member.
void on_keyring_change(identity_actor_t* self, const identity::keyring_change& change,
                       const std::string& peer, const gossip::admission_responder& reply) {
  auto& st = self->state;
  auto answer = [&]() -> caf::expected<std::string> {
    // Only an issuer's signature for this very member makes a change, never the name or
    // the certificate the sender presents (both public).
    auto issuer =
        identity::verify_keyring_change(change.op, change.key, change.seal, st.params.name,
                                        st.current->creds.bundle, st.params.clock());
    if (!issuer)
      return issuer.error();
    st.issuer_names.insert(issuer->node);
    auto done = answer_keyring_request(st.params.sealer.get(), change.op, change.key);
    if (done.rfind("ok ", 0) != 0)
      return identity::make_error(identity::errc::keyring_refused,
                                  done.rfind("error: ", 0) == 0 ? done.substr(7) : done);
    return done.substr(3);
  }();
  if (!answer) {
    ++st.sync.keyring_refused;
    auto refusal = as_refusal(answer.error());
    spdlog::warn("keyring {} from member {} refused: {}", change.op, peer,
                 gossip::refusal_reason(refusal));
    reply(std::move(refusal));
    return;
  }
  spdlog::info("keyring {} of key {} by issuer {}", change.op, *answer, peer);
  reply(identity::encode_keyring_answer(*answer));
}

/// A peer's sync request: absorb, then answer with what we hold.
void on_sync_request(identity_actor_t* self, const identity::sync_message& req,
                     const std::string& peer, const gossip::admission_responder& reply) {
  auto& st = self->state;
  const bool peer_is_issuer = absorb(self, peer, req);
  // Statements only to a peer that lacks some (or did not say what it holds).
  const auto own = pruned_digest(st);
  const bool differ = !req.digest || *req.digest != own;
  auto bytes = identity::encode_sync_response(outgoing(st, own, peer_is_issuer, differ, peer));
  if (!bytes) {
    spdlog::error("cannot encode a sync response: {}", identity::render(bytes.error()));
    reply(as_refusal(bytes.error()));
    return;
  }
  ++st.sync.exchanges;
  reply(std::move(*bytes));
}

/// Any request on the identity channel.
void on_request(identity_actor_t* self, admission_msg& msg) {
  auto& st = self->state;
  const std::string from = msg.peer ? "member " + *msg.peer : std::string{"a joiner"};
  if (!st.params.id) {
    refuse(self, msg.reply, "a node",
           identity::make_error(identity::errc::bad_request,
                                "this node has no identity and cannot admit"));
    return;
  }
  // A client without a certificate may only ask for admission: bound it as one before
  // parsing anything.
  if (!msg.peer && msg.request.size() > identity::max_admission_bytes) {
    refuse(self, msg.reply, "a request from " + from,
           identity::make_error(identity::errc::bad_request,
                                "an admission request of " + std::to_string(msg.request.size()) +
                                    " bytes exceeds " +
                                    std::to_string(identity::max_admission_bytes)));
    return;
  }
  auto req = identity::decode_identity_request(msg.request);
  if (!req) {
    refuse(self, msg.reply, "a request from " + from, req.error());
    return;
  }
  if (std::holds_alternative<identity::admission_request>(*req) ||
      (msg.peer && std::holds_alternative<identity::endorse_request>(*req))) {
    // Who holds which names decides what may be admitted: asked fresh for every request.
    auto shared_req = std::make_shared<identity::identity_request>(std::move(*req));
    auto shared_msg = std::make_shared<admission_msg>(std::move(msg));
    self->request(st.dir->find(role::membership), st.params.alive_timeout, live_atom::value)
        .then(
            [=](std::vector<std::string>& live, std::vector<std::string>& issuers) {
              auto& st = self->state;
              st.holders.live = {live.begin(), live.end()};
              st.holders.issuers = st.issuer_names;
              st.holders.issuers.insert(issuers.begin(), issuers.end());
              if (auto* admission = std::get_if<identity::admission_request>(shared_req.get()))
                on_admission(self, *admission, *shared_msg);
              else
                on_endorse_request(self, std::get<identity::endorse_request>(*shared_req),
                                   shared_msg->peer.value_or(""), shared_msg->reply);
            },
            [=](caf::error& err) {
              refuse(self, shared_msg->reply, "a request from " + from,
                     make_error(errc::unreachable,
                                "cannot tell which node names are taken: no member list (" +
                                    why(err) + ")"));
            });
    return;
  }
  if (!msg.peer) {
    ++st.sync.failures;
    spdlog::debug("refused a sync or renewal request from a client without a certificate");
    msg.reply(gossip::make_error(gossip::errc::peer_refused,
                                 "a client without a certificate may only ask for admission"));
    return;
  }
  if (auto* renewal = std::get_if<identity::renewal_request>(&*req)) {
    on_renewal_request(self, *renewal, *msg.peer, msg.reply);
    return;
  }
  if (auto* change = std::get_if<identity::keyring_change>(&*req)) {
    on_keyring_change(self, *change, *msg.peer, msg.reply);
    return;
  }
  on_sync_request(self, std::get<identity::sync_message>(*req), *msg.peer, msg.reply);
}

// -- start ---------------------------------------------------------------------------------------

/// The credentials in the data dir if a previous run of this actor renewed the node's
/// certificate (same key, a later notAfter than the node started with): a restarted actor
/// goes on with the certificate its TLS context presents.
std::optional<identity::node_credentials> renewed_since_start(const identity_state& st) {
  const auto& start = st.params.id->creds;
  if (st.params.data_dir.empty() || start.certs.empty())
    return std::nullopt;
  auto stored = identity::load_node_credentials(st.params.data_dir);
  if (!stored || !*stored)
    return std::nullopt;
  auto key = identity::spki_sha256((*stored)->key);
  auto own = identity::spki_sha256(start.key);
  auto until = identity::not_after((*stored)->certs.front());
  auto started = identity::not_after(start.certs.front());
  if (!key || !own || *key != *own || !until || !started || *until <= *started)
    return std::nullopt;
  return std::move(**stored);
}

/// Opens the stores; an error message naming what failed, or empty.
std::string open_stores(identity_state& st) {
  auto log = identity::revocation_log::load(st.params.revocations_file);
  if (!log)
    return "cannot open the revocation log: " + identity::render(log.error());
  st.revocations = std::move(*log);
  st.current = *st.params.id;
  if (auto stored = renewed_since_start(st))
    st.current->creds = std::move(*stored);
  const auto& id = *st.current;
  if (!id.creds.certs.empty())
    if (auto own = identity::spki_sha256(id.creds.certs.front()))
      st.own_key = *own;
  for (std::size_t i = 1; i < id.creds.certs.size(); ++i) {
    if (auto key = identity::spki_sha256(id.creds.certs[i]))
      st.ca_keys.insert(*key);
    if (auto name = identity::spiffe_id_of(id.creds.certs[i]))
      st.issuer_names.insert(name->name);
  }
  for (const auto& [k, e] : st.revocations.entries()) {
    st.ca_keys.insert(e.issuer.key);
    st.issuer_names.insert(e.issuer.node);
  }
  if (id.issuer) {
    st.issuer_names.insert(id.issuer->node);
    if (auto key = identity::spki_sha256(id.issuer->cert))
      st.ca_keys.insert(*key);
    auto desk =
        identity::issuer_desk::open(*id.issuer, st.params.tokens_file, st.params.issued_file);
    if (!desk)
      return "cannot open the issuer's token store " + st.params.tokens_file.string() +
             " or issued list " + st.params.issued_file.string() + ": " +
             identity::render(desk.error());
    st.desk.emplace(std::move(*desk));
    for (const auto& [token, entry] : st.desk->tokens().ledger().entries())
      st.issuer_names.insert(entry.issuer);
  }
  return {};
}

caf::behavior identity_actor(identity_actor_t* self, std::shared_ptr<const directory> dir,
                             identity_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  st.dir = std::move(dir);
  st.keyrings = identity::keyring_pushes{st.params.name};
  st.renewal = identity::renewal{st.params.name, st.params.rng_seed};
  st.pick.seed(st.params.rng_seed);
  if (st.params.id) {
    if (auto msg = open_stores(st); !msg.empty()) {
      self->send(st.dir->find(role::supervisor), failed_atom::value, msg);
      self->quit(make_error(errc::io_failure, msg));
      return {};
    }
    apply_to_trust(st);
    for (const auto& [k, e] : st.revocations.entries())
      if (st.own_key && k.first == *st.own_key) {
        on_own_key_revoked(self, e);
        self->quit(make_error(errc::request_failed, "this node's key is revoked"));
        return {};
      }
    if (st.params.renewal_interval > caf::timespan::zero() && !st.current->creds.certs.empty())
      self->send(self, renew_atom::value);
    if (st.params.sync_interval > caf::timespan::zero())
      self->delayed_send(self, st.params.sync_interval, sync_atom::value);
  }
  return {
      [=](token_atom, std::int64_t ttl_seconds, std::int64_t uses) -> caf::result<std::string> {
        auto& st = self->state;
        if (!st.desk)
          return make_error(errc::request_failed,
                            "this node is not an issuer (start it with --issuer DIR)");
        if (uses < 1 || uses > identity::max_token_uses)
          return make_error(errc::bad_request, "--uses must be between 1 and " +
                                                   std::to_string(identity::max_token_uses));
        auto token = st.desk->create_token(st.params.clock(), std::chrono::seconds{ttl_seconds},
                                           static_cast<std::uint16_t>(uses), st.rng);
        if (!token) {
          const bool usage =
              token.error().category() == identity::errc_category &&
              token.error().code() == static_cast<std::uint8_t>(identity::errc::invalid_argument);
          return make_error(usage ? errc::bad_request : errc::request_failed,
                            identity::render(token.error()));
        }
        spdlog::info("created a join token for {} use(s), valid {}s", uses, ttl_seconds);
        return std::move(*token);
      },
      [=](revoke_atom, const std::string& node, const std::string& key) {
        return on_revoke(self, node, key);
      },
      [=](certs_atom) -> std::string {
        auto& st = self->state;
        const auto now = st.params.clock();
        std::optional<keyring_view> ring;
        if (st.params.sealer)
          ring = st.params.sealer->view();
        auto summary = summarize(st, now);
        auto rows = revocation_rows(st);
        return certs_json(st.current ? &*st.current : nullptr, ring ? &*ring : nullptr,
                          st.desk ? &summary : nullptr, &rows, &st.sync, now);
      },
      [=](admission_msg& msg) { on_request(self, msg); },
      [=](forward_result_msg& msg) { on_forward_result(self, msg); },
      [=](endorsement_result_msg& msg) { on_endorsement_result(self, msg); },
      [=](keyring_atom, const std::string& op, const std::string& arg, mesh_atom) {
        return on_mesh_keyring(self, op, arg);
      },
      [=](keyring_result_msg& msg) { on_keyring_result(self, msg); },
      [=](sync_atom) { on_sync_tick(self); },
      [=](sync_result_msg& msg) { on_sync_result(self, msg); },
      [=](renew_atom) { on_renew_tick(self); },
      [=](renewal_result_msg& msg) { on_renewal_result(self, msg); },
  };
}

} // namespace

caf::actor spawn_identity_actor(caf::actor_system& sys, std::shared_ptr<const directory> dir,
                                identity_params params) {
  return sys.spawn(identity_actor, std::move(dir), std::move(params));
}

} // namespace starling::actors
