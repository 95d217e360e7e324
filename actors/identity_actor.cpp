#include "actors/identity_actor.hpp"

#include <algorithm>
#include <map>
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
#include "identity/sync.hpp"
#include "proto/wire/errors.hpp"

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

/// A rotation step's wait is over: try push `push`'s missed members again (local message).
struct keyring_retry_msg {
  identity::keyring_push_id push = 0;
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
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::keyring_retry_msg)
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
  /// The revocation sync: the statements this node holds, the CA keys it knows, its own
  /// key (the core; named, seeded and started once the stores are open).
  identity::revocation_sync sync{std::string{}, 0};
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
  /// Keyring changes refused (the certs view shows it with the sync counters).
  std::uint64_t keyring_refused = 0;
  /// Sync and renewal requests refused from clients without a certificate (shown with the
  /// sync failures).
  std::uint64_t unauthenticated = 0;
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
  for (const auto& [k, e] : st.sync.log().entries())
    rows.push_back({e.statement.node, e.statement.key, e.issuer.node, e.statement.revoked_at});
  return rows;
}

/// What an error says in logs and reports: a peer's refusal as the peer gave it, the agent's
/// own text, any other error rendered ("identity.token_expired: ...", decision 0015).
std::string why(const caf::error& err) {
  return err.category() == gossip::errc_category ? gossip::refusal_reason(err) : message_of(err);
}

void refuse(identity_actor_t* self, const gossip::admission_responder& reply,
            const std::string& who, const caf::error& err) {
  ++self->state.refused;
  if (identity::is(err, identity::errc::name_taken))
    ++self->state.names_refused;
  spdlog::warn("admission of {} refused: {}", who, why(err));
  reply(identity::encode_refusal(err));
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

// -- revocations (identity/sync.hpp) -----------------------------------------------------------

/// The sync counters as the certs view shows them.
sync_summary sync_view(const identity_state& st) {
  const auto& c = st.sync.counters();
  sync_summary out;
  out.exchanges = c.exchanges;
  out.failures = c.failures + st.unauthenticated;
  out.statements_refused = c.statements_refused;
  out.statements_learned = c.statements_learned;
  out.ledgers_merged = c.ledgers_merged;
  out.ledgers_refused = c.ledgers_refused;
  out.records_refused = c.records_refused;
  out.keyring_refused = st.keyring_refused;
  out.in_step = c.in_step;
  out.pushes = c.pushes;
  return out;
}

/// Adds this issuer's token ledger to `msg` for `peer`, signed for it (what proves to the
/// peer that an issuer sends it), with its own issued list (the newest records, up to the
/// bound). Issuers only.
void add_ledger(identity_state& st, identity::sync_message& msg, const std::string& peer) {
  if (!st.desk)
    return;
  const auto& all = st.desk->issued();
  std::vector<identity::issued_certificate> issued(all.size() > identity::max_shared_issued
                                                       ? all.end() - identity::max_shared_issued
                                                       : all.begin(),
                                                   all.end());
  auto seal = identity::sign_ledger(st.desk->material(), st.desk->tokens().ledger(), issued, peer,
                                    st.params.clock());
  if (!seal) {
    spdlog::error("cannot sign the token ledger for {}: {}", peer, identity::render(seal.error()));
    return;
  }
  msg.ledger = st.desk->tokens().ledger();
  msg.ledger_seal = std::move(*seal);
  msg.issued = std::move(issued);
}

/// Sends `request` (an encoded IdentityRequest) to member `node` through the membership
/// actor. The answer comes back to this actor as the local message that
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

void run(identity_actor_t* self, identity::sync_effects fx);

/// Sends one sync request the core asked for; its answer comes back as a sync_result_msg.
void send_sync(identity_actor_t* self, identity::sync_send s) {
  auto& st = self->state;
  if (s.ledger)
    add_ledger(st, s.msg, s.peer);
  auto bytes = identity::encode_sync_request(s.msg);
  if (!bytes) {
    spdlog::error("cannot encode a sync request: {}", identity::render(bytes.error()));
    self->send(self, sync_result_msg{s.peer, bytes.error(), s.periodic, std::move(s.release)});
    return;
  }
  ask_member(self, s.peer, std::move(*bytes),
             [peer = s.peer, periodic = s.periodic,
              release = std::move(s.release)](caf::expected<std::string> answer) {
               return sync_result_msg{peer, std::move(answer), periodic, release};
             });
}

/// Carries out what the sync core asked for: the log written first, then the handshakes,
/// bans and the stop, then the ledger merge, then the requests.
void run(identity_actor_t* self, identity::sync_effects fx) {
  auto& st = self->state;
  write_log(fx.log);
  for (auto& name : fx.issuers)
    st.issuer_names.insert(std::move(name));
  // A failed write is logged, not fatal: the revocations are enforced in memory anyway, and
  // the next change writes the file again.
  if (fx.persist)
    if (auto err = st.sync.log().save(st.params.revocations_file))
      spdlog::error("cannot persist revocations in {}: {}", st.params.revocations_file.string(),
                    identity::render(err));
  if (fx.enforce)
    st.params.id->trust->revoke(*fx.enforce);
  for (const auto& node : fx.ban) {
    self->send(st.dir->find(role::membership), ban_atom::value, node);
    if (st.params.on_ban)
      st.params.on_ban(node);
  }
  if (fx.stop)
    self->send(st.dir->find(role::supervisor), failed_atom::value, *fx.stop);
  if (fx.merge && st.desk) {
    const auto now = st.params.clock();
    // What it certified: no joiner gets those names here while the keys are valid.
    st.desk->learn_issued(fx.merge->issuer, fx.merge->issued, now);
    auto dropped = st.desk->merge_ledger(fx.merge->ledger, now);
    if (dropped)
      for (const auto& [id, entry] : st.desk->tokens().ledger().entries())
        st.issuer_names.insert(entry.issuer);
    run(self, st.sync.on_ledger_merged(fx.merge->peer, dropped));
  }
  for (auto& s : fx.send)
    send_sync(self, std::move(s));
  if (fx.list_members)
    self->request(st.dir->find(role::membership), st.params.alive_timeout, alive_atom::value)
        .then(
            [=](std::vector<std::string>& names, std::vector<std::string>&,
                std::vector<std::string>& issuers) {
              auto& st = self->state;
              run(self, st.sync.on_members(names, issuers, st.params.clock()));
            },
            [=](caf::error& err) { run(self, self->state.sync.on_no_members(why(err))); });
  if (fx.list_for_push)
    self->request(st.dir->find(role::membership), st.params.alive_timeout, alive_atom::value)
        .then(
            [=, q = *fx.list_for_push](std::vector<std::string>& names, std::vector<std::string>&,
                                       std::vector<std::string>& issuers) {
              auto& st = self->state;
              run(self, st.sync.on_push_members(q, names, issuers, st.params.clock()));
            },
            [=, q = *fx.list_for_push](caf::error& err) {
              run(self, self->state.sync.on_push_no_members(q, why(err)));
            });
}

void on_sync_result(identity_actor_t* self, sync_result_msg& msg) {
  auto& st = self->state;
  run(self, st.sync.on_answer(msg.peer, msg.periodic, msg.release, msg.answer,
                              st.current->creds.bundle, st.params.clock()));
}

/// The periodic exchange: one random alive member (the core picks).
void on_sync_tick(identity_actor_t* self) {
  self->delayed_send(self, self->state.params.sync_interval, sync_atom::value);
  run(self, self->state.sync.on_tick());
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
  auto next = st.sync.log();
  std::vector<identity::revocation_log::entry> fresh;
  std::string answer;
  for (const auto& key : keys) {
    if (st.sync.own_key() && key == *st.sync.own_key())
      return make_error(errc::request_failed, "refusing to revoke this node's own key");
    if (st.sync.is_ca_key(key))
      return make_error(errc::request_failed, identity::format_pin(key) +
                                                  " is the key of an issuer: issuers revoke node "
                                                  "keys only (issuers are removed offline)");
    auto stmt = identity::make_revocation(*st.params.id->issuer, key, node, now);
    if (!stmt)
      return make_error(errc::request_failed, identity::render(stmt.error()));
    auto who = identity::verify_revocation(*stmt, st.current->creds.bundle, now, st.sync.ca_keys());
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
  // Withheld from handshakes until the push to `node` is done, pushed to every member.
  run(self, st.sync.revoked(std::move(next), fresh, node));
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
                                st.current->issuer.has_value(), st.sync.own_key_revoked()));
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
        st.sync.add_ca_key(*key);
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
    spdlog::warn("renewal for member {} refused: {}", peer, why(grant.error()));
    reply(identity::encode_refusal(grant.error()));
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
    // An issuer's refusal to endorse keeps its code (the joiner decides on it), and says
    // which issuer refused.
    auto err = r.endorsing_issuer.empty()
                   ? std::move(r.error)
                   : caf::error{r.error.code(), r.error.category(),
                                caf::make_message("endorsement by issuer " + r.endorsing_issuer +
                                                  ": " + wire::context_of(r.error))};
    refuse(self, reply, r.who, err);
  }
  for (auto& r : fx.relay)
    if (auto reply = take_reply(st, r.ticket))
      reply(r.answer ? std::move(*r.answer) : identity::encode_refusal(r.answer.error()));
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

/// Asks the membership for the live members (alive or suspect: a suspect is most often
/// only slow, and a rotation that skips it cuts it off) and calls `then` with their names,
/// or `failed` with why there is no list.
template <class Then, class Failed>
void with_live_members(identity_actor_t* self, Then then, Failed failed) {
  auto& st = self->state;
  self->request(st.dir->find(role::membership), st.params.alive_timeout, live_atom::value)
      .then([=](std::vector<std::string>& names, std::vector<std::string>&) { then(names); },
            [=](caf::error& err) { failed(err); });
}

/// Applies keyring change `op` of `arg` here, then starts its push to every live member
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
  if (!here)
    return std::move(here.error());
  const auto push = st.keyrings.start(op, arg, std::move(*here), std::move(exclude), rotation);
  with_live_members(
      self,
      [=](const std::vector<std::string>& names) {
        auto& st = self->state;
        run(self, st.keyrings.on_members(push, names, st.desk->material(), st.params.clock()));
      },
      [=](const caf::error& err) {
        spdlog::warn("keyring {}: no member list ({}); changed on this node only", op, why(err));
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
  if (fx.retry)
    self->delayed_send(self, fx.retry->delay, keyring_retry_msg{fx.retry->push});
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
    run(self, keyrings.on_failure(msg.push, msg.node, why(msg.answer.error())));
}

void on_keyring_retry(identity_actor_t* self, identity::keyring_push_id push) {
  with_live_members(
      self,
      [=](const std::vector<std::string>& names) {
        auto& st = self->state;
        run(self, st.keyrings.on_retry(push, names, st.desk->material(), st.params.clock()));
      },
      [=](const caf::error& err) {
        spdlog::warn("keyring rotation: no member list for the retry ({})", why(err));
        auto& st = self->state;
        run(self, st.keyrings.on_retry(push, {}, st.desk->material(), st.params.clock()));
      });
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
    return answer_keyring_request(st.params.sealer.get(), change.op, change.key);
  }();
  if (!answer) {
    ++st.keyring_refused;
    spdlog::warn("keyring {} from member {} refused: {}", change.op, peer, why(answer.error()));
    reply(identity::encode_refusal(answer.error()));
    return;
  }
  spdlog::info("keyring {} of key {} by issuer {}", change.op, *answer, peer);
  reply(identity::encode_keyring_answer(*answer));
}

/// A peer's sync request: the core absorbs it and says what to answer.
void on_sync_request(identity_actor_t* self, const identity::sync_message& req,
                     const std::string& peer, const gossip::admission_responder& reply) {
  auto& st = self->state;
  auto fx = st.sync.on_request(peer, req, st.current->creds.bundle, st.params.clock());
  auto answer = std::move(fx.reply);
  const bool ledger = fx.reply_ledger;
  run(self, std::move(fx)); // a merged ledger is in the answer
  if (!answer)
    return;
  if (ledger)
    add_ledger(st, *answer, peer);
  auto bytes = identity::encode_sync_response(*answer);
  if (!bytes) {
    spdlog::error("cannot encode a sync response: {}", identity::render(bytes.error()));
    reply(identity::encode_refusal(bytes.error()));
    return;
  }
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
    ++st.unauthenticated;
    spdlog::debug("refused a sync or renewal request from a client without a certificate");
    msg.reply(identity::encode_refusal(identity::make_error(
        identity::errc::bad_request, "a client without a certificate may only ask for admission")));
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

/// Opens the stores and starts the sync core with the revocation log; an error message
/// naming what failed, or empty. The core's start effects (what to enforce, and the stop of
/// a node whose own key is revoked) go to `started`.
std::string open_stores(identity_state& st, identity::sync_effects& started) {
  auto log = identity::revocation_log::load(st.params.revocations_file);
  if (!log)
    return "cannot open the revocation log: " + identity::render(log.error());
  st.current = *st.params.id;
  if (auto stored = renewed_since_start(st))
    st.current->creds = std::move(*stored);
  const auto& id = *st.current;
  st.sync = identity::revocation_sync{st.params.name, st.params.rng_seed, id.issuer.has_value()};
  std::optional<sha256_digest> own_key;
  if (!id.creds.certs.empty())
    if (auto own = identity::spki_sha256(id.creds.certs.front()))
      own_key = *own;
  for (std::size_t i = 1; i < id.creds.certs.size(); ++i) {
    if (auto key = identity::spki_sha256(id.creds.certs[i]))
      st.sync.add_ca_key(*key);
    if (auto name = identity::spiffe_id_of(id.creds.certs[i]))
      st.issuer_names.insert(name->name);
  }
  started = st.sync.start(std::move(*log), own_key);
  if (id.issuer) {
    st.issuer_names.insert(id.issuer->node);
    if (auto key = identity::spki_sha256(id.issuer->cert))
      st.sync.add_ca_key(*key);
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
  if (st.params.id) {
    identity::sync_effects started;
    if (auto msg = open_stores(st, started); !msg.empty()) {
      self->send(st.dir->find(role::supervisor), failed_atom::value, msg);
      self->quit(make_error(errc::io_failure, msg));
      return {};
    }
    run(self, std::move(started)); // enforced in handshakes; the stop if the own key is revoked
    if (st.sync.own_key_revoked()) {
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
        auto sync = sync_view(st);
        return certs_json(st.current ? &*st.current : nullptr, ring ? &*ring : nullptr,
                          st.desk ? &summary : nullptr, &rows, &sync, now);
      },
      [=](admission_msg& msg) { on_request(self, msg); },
      [=](forward_result_msg& msg) { on_forward_result(self, msg); },
      [=](endorsement_result_msg& msg) { on_endorsement_result(self, msg); },
      [=](keyring_atom, const std::string& op, const std::string& arg, mesh_atom) {
        return on_mesh_keyring(self, op, arg);
      },
      [=](keyring_result_msg& msg) { on_keyring_result(self, msg); },
      [=](keyring_retry_msg& msg) { on_keyring_retry(self, msg.push); },
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
