#include "identity/sync.hpp"

#include <algorithm>
#include <utility>

#include "identity/authority.hpp"
#include "identity/errc.hpp"

namespace starling::identity {

namespace {

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

} // namespace

revocation_sync::revocation_sync(std::string name, std::uint64_t seed, bool issuer)
    : name_(std::move(name)), pick_(seed), issuer_(issuer) {}

sync_effects revocation_sync::start(revocation_log log, std::optional<sha256_digest> own_key) {
  sync_effects fx;
  log_ = std::move(log);
  own_key_ = own_key;
  for (const auto& [k, e] : log_.entries()) {
    ca_keys_.insert(e.issuer.key);
    fx.issuers.push_back(e.issuer.node);
  }
  enforce(fx);
  for (const auto& [k, e] : log_.entries())
    if (own_key_ && k.first == *own_key_) {
      stop(e, fx);
      break;
    }
  return fx;
}

sync_effects revocation_sync::on_tick() {
  sync_effects fx;
  if (!bans_sent_) {
    // The log as loaded at start; a revocation still being pushed to its node is withheld
    // (banned once the push is done), or the node would never hear it and keep running.
    bans_sent_ = true;
    for (const auto& [k, e] : log_.entries())
      if (e.statement.node != name_ && !withheld_.contains(k.first))
        fx.ban.push_back(e.statement.node);
  }
  if (in_flight_ || own_key_revoked_)
    return fx;
  in_flight_ = true;
  fx.list_members = true;
  return fx;
}

sync_effects revocation_sync::on_members(const std::vector<std::string>& names,
                                         const std::vector<std::string>& issuers, time_point now) {
  sync_effects fx;
  if (!in_flight_)
    return fx;
  if (names.empty()) {
    in_flight_ = false;
    return fx;
  }
  // The ledger travels between issuers only: an issuer talks to an issuer every other time.
  const auto& pool = issuer_ && !issuers.empty() && ticks_++ % 2 == 1 ? issuers : names;
  std::uniform_int_distribution<std::size_t> any{0, pool.size() - 1};
  const auto peer = pool[any(pick_)];
  fx.send.push_back({peer, contains(issuers, peer), true, outgoing(false, now), {}});
  return fx;
}

sync_effects revocation_sync::on_no_members(const std::string& reason) {
  sync_effects fx;
  in_flight_ = false;
  fx.log.push_back({log_level::debug, "identity sync: no member list: " + reason});
  return fx;
}

sync_effects revocation_sync::on_request(const std::string& peer, const sync_message& req,
                                         const trust_bundle& bundle, time_point now) {
  sync_effects fx;
  const bool peer_is_issuer = absorb(peer, req, bundle, now, fx);
  // Statements only to a peer that lacks some (or did not say what it holds).
  log_.prune(now);
  const bool differ = !req.digest || *req.digest != log_.digest();
  fx.reply = outgoing(differ, now);
  fx.reply_ledger = peer_is_issuer;
  ++counters_.exchanges;
  return fx;
}

sync_effects revocation_sync::on_answer(const std::string& peer, bool periodic,
                                        const std::vector<sha256_digest>& keys,
                                        const caf::expected<std::string>& answer,
                                        const trust_bundle& bundle, time_point now) {
  sync_effects fx;
  if (periodic)
    in_flight_ = false;
  release(keys, fx);
  if (!answer) {
    ++counters_.failures;
    fx.log.push_back(
        {log_level::debug, "identity sync with " + peer + " failed: " + render(answer.error())});
    return fx;
  }
  auto msg = decode_sync_response(*answer);
  if (!msg) {
    ++counters_.failures;
    fx.log.push_back({log_level::debug, "identity sync with " + peer + ": " + render(msg.error())});
    return fx;
  }
  ++counters_.exchanges;
  const bool peer_is_issuer = absorb(peer, *msg, bundle, now, fx);
  if (!periodic || !msg->digest)
    return fx;
  if (*msg->digest == log_.digest()) {
    if (msg->revocations.empty())
      ++counters_.in_step;
    return fx;
  }
  // The peer's statements differ from ours even after taking theirs: it lacks some of
  // ours. Push them (once: a push is not periodic, so its answer never pushes again).
  ++counters_.pushes;
  fx.send.push_back({peer, peer_is_issuer, false, outgoing(true, now), {}});
  return fx;
}

sync_effects revocation_sync::on_ledger_merged(const std::string& peer,
                                               const caf::expected<std::size_t>& dropped) {
  sync_effects fx;
  if (!dropped) {
    fx.log.push_back({log_level::error, "cannot persist the token ledger merged from " + peer +
                                            ": " + render(dropped.error())});
    return fx;
  }
  ++counters_.ledgers_merged;
  if (*dropped > 0) {
    counters_.records_refused += *dropped;
    fx.log.push_back({log_level::warn, "dropped " + std::to_string(*dropped) +
                                           " token record(s) from " + peer +
                                           "'s ledger: not signed by their issuer"});
  }
  return fx;
}

sync_effects revocation_sync::revoked(revocation_log next,
                                      const std::vector<revocation_log::entry>& fresh,
                                      const std::string& node) {
  sync_effects fx;
  log_ = std::move(next);
  push_query q{node, {}};
  for (const auto& e : fresh) {
    withheld_.insert(e.statement.key);
    q.withheld.push_back(e.statement.key);
  }
  learned(fresh, fx); // logs, enforcement (minus the withheld keys)
  fx.list_for_push = std::move(q);
  return fx;
}

sync_effects revocation_sync::on_push_members(const push_query& q,
                                              const std::vector<std::string>& names,
                                              const std::vector<std::string>& issuers,
                                              time_point now) {
  sync_effects fx;
  bool target_alive = false;
  for (const auto& peer : names) {
    sync_send s{peer, contains(issuers, peer), false, outgoing(true, now), {}};
    if (peer == q.node) {
      target_alive = true;
      s.release = q.withheld;
    }
    fx.send.push_back(std::move(s));
  }
  fx.log.push_back({log_level::info, "revocation of '" + q.node + "' pushed to " +
                                         std::to_string(names.size()) + " member(s)"});
  if (!target_alive)
    release(q.withheld, fx);
  return fx;
}

sync_effects revocation_sync::on_push_no_members(const push_query& q, const std::string& reason) {
  sync_effects fx;
  fx.log.push_back({log_level::warn, "cannot push the revocation of '" + q.node + "' at once (" +
                                         reason + "); anti-entropy spreads it"});
  release(q.withheld, fx);
  return fx;
}

bool revocation_sync::absorb(const std::string& peer, const sync_message& msg,
                             const trust_bundle& bundle, time_point now, sync_effects& fx) {
  counters_.statements_refused += msg.malformed;
  std::optional<revocation_log> next;
  std::vector<revocation_log::entry> fresh;
  for (const auto& stmt : msg.revocations) {
    if (log_.contains(stmt))
      continue; // known: not verified again every few seconds
    auto who = verify_revocation(stmt, bundle, now, ca_keys_);
    if (!who) {
      ++counters_.statements_refused;
      fx.log.push_back({log_level::debug, "dropped a revocation statement from " + peer + ": " +
                                              render(who.error())});
      continue;
    }
    ca_keys_.insert(who->key);
    fx.issuers.push_back(who->node);
    if (!next)
      next = log_;
    revocation_log::entry e{stmt, std::move(*who)};
    if (next->insert(e)) {
      ++counters_.statements_learned;
      fresh.push_back(std::move(e));
    }
  }
  if (next) {
    log_ = std::move(*next);
    fx.persist = true;
    learned(fresh, fx);
  }
  if (!msg.ledger)
    return false;
  if (!issuer_) {
    fx.log.push_back(
        {log_level::debug, "ignored a token ledger from " + peer + ": this node is no issuer"});
    return false;
  }
  // The ledger counts only with an issuer's signature over it for this node: a peer that
  // merely has an issuer's name (or sends an issuer certificate, which is public) is no
  // issuer (issue 13, finding 1).
  auto issuer = verify_ledger(*msg.ledger, msg.issued, msg.ledger_seal, name_, bundle, now);
  if (!issuer) {
    ++counters_.ledgers_refused;
    fx.log.push_back(
        {log_level::warn, "refused the token ledger of " + peer + ": " + render(issuer.error())});
    return false;
  }
  ca_keys_.insert(issuer->key);
  fx.issuers.push_back(issuer->node);
  fx.merge = ledger_merge{peer, issuer->node, *msg.ledger, msg.issued};
  return true;
}

void revocation_sync::learned(const std::vector<revocation_log::entry>& fresh, sync_effects& fx) {
  enforce(fx);
  for (const auto& e : fresh) {
    fx.log.push_back({log_level::warn, "revocation: key " + format_pin(e.statement.key) +
                                           " of node '" + e.statement.node +
                                           "' revoked by issuer '" + e.issuer.node + "'"});
    if (own_key_ && *own_key_ == e.statement.key) {
      stop(e, fx);
      continue;
    }
    if (e.statement.node != name_ && !withheld_.contains(e.statement.key))
      fx.ban.push_back(e.statement.node);
  }
}

void revocation_sync::release(const std::vector<sha256_digest>& keys, sync_effects& fx) {
  if (keys.empty())
    return;
  std::set<std::string> nodes;
  for (const auto& key : keys) {
    if (auto it = withheld_.find(key); it != withheld_.end())
      withheld_.erase(it);
    for (const auto& [k, e] : log_.entries())
      if (k.first == key)
        nodes.insert(e.statement.node);
  }
  enforce(fx);
  fx.ban.insert(fx.ban.end(), nodes.begin(), nodes.end());
}

void revocation_sync::enforce(sync_effects& fx) const {
  revocation_set keys;
  for (const auto& [k, e] : log_.entries())
    if (!withheld_.contains(k.first))
      keys.insert(k.first);
  fx.enforce = std::move(keys);
}

sync_message revocation_sync::outgoing(bool statements, time_point now) {
  // Statements of expired issuers are dropped first (nobody needs them): the digest is
  // what a sync compares.
  log_.prune(now);
  sync_message msg;
  msg.digest = log_.digest();
  if (statements) {
    msg.revocations.reserve(log_.size());
    for (const auto& [k, e] : log_.entries())
      msg.revocations.push_back(e.statement);
  }
  return msg;
}

void revocation_sync::stop(const revocation_log::entry& e, sync_effects& fx) {
  if (own_key_revoked_)
    return;
  own_key_revoked_ = true;
  auto msg = "this node's key " + format_pin(e.statement.key) + " was revoked by issuer '" +
             e.issuer.node + "': every peer refuses it now; " +
             "stopping (admit the node again with a new token)";
  fx.log.push_back({log_level::error, msg});
  fx.stop = std::move(msg);
}

} // namespace starling::identity
