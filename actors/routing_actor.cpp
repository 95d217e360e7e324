#include "actors/routing_actor.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/errc.hpp"
#include "actors/node_identity.hpp"
#include "actors/routing_relay.hpp"
#include "actors/routing_trust.hpp"
#include "actors/routing_views.hpp"
#include "actors/views.hpp"
#include "gossip/discovery/dns_server.hpp"
#include "gossip/discovery/health_prober.hpp"
#include "gossip/health.hpp"
#include "gossip/routing_gossip.hpp"
#include "proto/wire/errors.hpp"

namespace starling::actors {

namespace {

/// A health probe's result, from the prober's thread.
struct health_result_msg {
  std::string key;
  bool ok = false;
  /// The prober's failure (busy, stopped), not the instance's: not counted toward `fall`.
  bool inconclusive = false;
  std::string text;
};

} // namespace

} // namespace starling::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::health_result_msg)

namespace starling::actors {

namespace {

/// Counters of the actor beside the table's and the spreader's.
struct routing_actor_counters {
  std::uint64_t snapshots = 0;  ///< snapshots published
  std::uint64_t own_writes = 0; ///< records of this node's instances written
  std::uint64_t own_write_errors = 0;
  /// Own records sent to the peers without every applier's answer (apply_wait passed).
  std::uint64_t apply_waits_failed = 0;
  std::uint64_t policy_writes = 0;  ///< policies written here
  std::uint64_t health_changes = 0; ///< own instances that changed health
  std::uint64_t probes = 0;         ///< health probes started
  std::uint64_t store_errors = 0;   ///< services.json writes that failed
};

struct routing_state {
  routing_params params;
  caf::actor parent;
  std::shared_ptr<gossip::routing_table> table;
  std::unique_ptr<gossip::routing_gossip> spread;
  std::shared_ptr<key_book_trust> book; // null without certificates
  std::unique_ptr<gossip::routing_sealer> sealer;
  std::unique_ptr<gossip::health_scheduler> checks;
  /// Shared with the exit hook, which runs after the state is gone (CAF 0.17 destroys a
  /// stateful actor's state before its attached functors run).
  std::shared_ptr<gossip::discovery::health_prober> prober;
  /// This node's services by "service/id".
  std::map<std::string, service_spec> services;
  /// Last version written to services.json.
  std::uint64_t stored_version = 0;
  /// Live members (alive or suspect) and their hosts, this node included.
  std::map<std::string, std::string, std::less<>> live;
  /// The last host known of every node that was live and still owns a record: a dead
  /// node's instances keep their address in the views.
  std::map<std::string, std::string, std::less<>> hosts;
  gossip::snapshot_ptr snapshot = std::make_shared<const gossip::routing_snapshot>();
  bool flush_scheduled = false;
  /// `starling drain`: this node's instances are published as failing ("draining"), and
  /// the data plane refuses new inbound work once `drain_grace` passed.
  bool draining = false;
  /// Bumped by each drain or cancel: a pending grace timer of an older one does nothing.
  std::uint64_t drain_epoch = 0;
  /// The next health deadline a timer is set for.
  std::optional<gossip::time_point> check_at;
  /// When a failing check's new text was last written alone (no status change); see
  /// failing_text_refresh.
  std::optional<gossip::time_point> text_written_at;
  std::vector<caf::actor> watchers;
  /// The watchers that apply snapshots to traffic (the proxy controller), among `watchers`.
  std::vector<caf::actor> appliers;
  /// Own records waiting for the appliers: meanwhile the section and note (digests a peer
  /// could pull the new record by) keep their last state.
  std::size_t own_waiting = 0;
  routing_actor_counters counters;
};

using routing_actor_t = caf::stateful_actor<routing_state>;

std::uint64_t wall_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::string key_of(const service_spec& s) { return s.reg.service + "/" + s.reg.id; }

/// The data plane's outbound listeners by service (none without a data plane).
std::map<std::string, std::string> outbound(const routing_state& st) {
  return st.params.outbound ? st.params.outbound() : std::map<std::string, std::string>{};
}

caf::error refused(const caf::error& err) {
  return make_error(errc::request_failed, wire::render_error(err));
}

/// Rebuilds the snapshot and the section soon (coalesced).
void mark_dirty(routing_actor_t* self) {
  auto& st = self->state;
  if (st.flush_scheduled)
    return;
  st.flush_scheduled = true;
  self->delayed_send(self, st.params.coalesce, flush_atom::value);
}

/// Hands the relay the section and note of the table as it is now (what peers see of it in
/// gossip and digests).
void publish_section(routing_actor_t* self) {
  auto& st = self->state;
  st.params.relay->set_section(st.spread->make_section());
  st.params.relay->set_note(st.spread->note_payload());
}

void flush(routing_actor_t* self) {
  auto& st = self->state;
  if (!st.flush_scheduled)
    return; // published early for a view: this timer has nothing left to do
  st.flush_scheduled = false;
  gossip::member_lookup lookup =
      [&st](std::string_view node) -> std::optional<gossip::member_view> {
    auto it = st.live.find(node);
    if (it == st.live.end())
      return gossip::member_view{false, {}};
    return gossip::member_view{true, it->second};
  };
  auto snap = std::make_shared<const gossip::routing_snapshot>(
      st.table->snapshot(lookup, st.snapshot->generation + 1));
  st.snapshot = snap;
  ++st.counters.snapshots;
  if (st.own_waiting == 0)
    publish_section(self);
  if (st.params.dns)
    st.params.dns->set_snapshot(snap);
  for (const auto& w : st.watchers)
    self->send(w, snapshot_atom::value, snap);
}

void add_watcher(routing_actor_t* self, const caf::actor& who, bool applier) {
  auto& st = self->state;
  if (!who)
    return;
  st.watchers.push_back(who);
  if (applier)
    st.appliers.push_back(who);
  self->monitor(who);
  self->send(who, snapshot_atom::value, st.snapshot);
}

void publish(routing_actor_t* self, const gossip::routing_gossip_result& res) {
  auto& st = self->state;
  // Policy changes are rare operator actions: each node logs the ones it takes in.
  for (const auto& p : res.policies)
    spdlog::info("routing: {} {} of {}{} by {} applied (stamp {})", p.deleted ? "delete of" : "new",
                 gossip::to_string(p.key.kind), p.key.service,
                 p.key.name.empty() ? "" : " '" + p.key.name + "'", p.writer,
                 gossip::to_string(p.stamp));
  if (!res.publish.empty())
    st.params.relay->publish(res.publish);
  if (!res.push_pull_with.empty())
    st.params.relay->ask_push_pull(res.push_pull_with);
  if (!res.pulls.empty())
    st.params.relay->ask_pulls(res.pulls);
  // The asks wait in the relay until the membership actor collects them: tell it now.
  if (!res.push_pull_with.empty() || !res.pulls.empty())
    st.params.relay->poke();
  if (res.applied > 0)
    mark_dirty(self);
}

/// Keeps services.json up to date: the registered services and the last version written.
void store(routing_actor_t* self) {
  auto& st = self->state;
  if (st.params.data_dir.empty())
    return;
  service_store s;
  for (const auto& [_, spec] : st.services)
    if (!spec.from_config)
      s.services.push_back(spec);
  const auto* own = st.table->owner(st.params.name);
  s.last_version = own ? own->version : st.stored_version;
  if (auto err = save_service_store(st.params.data_dir, s)) {
    ++st.counters.store_errors;
    spdlog::warn("cannot write services.json: {}", message_of(err));
    return;
  }
  st.stored_version = s.last_version;
}

/// Publishes the snapshot with this node's new record at once, and spreads the record
/// (`pub`, when it fits a datagram; the section and note in any case) once every applier
/// answered for that snapshot, or after `apply_wait`. CAF keeps the order of one sender's
/// messages to one receiver, so an applier's answer comes after it applied the snapshot.
/// The section and note wait too: their digests would let a peer pull the record early.
void spread_own(routing_actor_t* self, std::optional<gossip::routing_publication> pub) {
  auto& st = self->state;
  const auto appliers = st.appliers;
  if (!appliers.empty())
    ++st.own_waiting;
  st.flush_scheduled = true;
  flush(self);
  auto spread = [self, pub = std::move(pub), held = !appliers.empty(), sent = false,
                 written = st.counters.own_writes]() mutable {
    if (sent)
      return;
    sent = true;
    auto& st = self->state;
    // A newer own record (queued under the same key) must not be replaced by this one.
    if (pub && written == st.counters.own_writes)
      st.params.relay->publish({std::move(*pub)});
    if (held && --st.own_waiting == 0)
      publish_section(self);
  };
  if (appliers.empty()) {
    spread();
    return;
  }
  struct waiting {
    decltype(spread) go;
    std::size_t left;
  };
  auto w = std::make_shared<waiting>(waiting{std::move(spread), appliers.size()});
  for (const auto& a : appliers)
    self->request(a, st.params.apply_wait, applied_atom::value)
        .then(
            [w](applied_atom) {
              if (--w->left == 0)
                w->go();
            },
            [self, w](const caf::error&) {
              ++self->state.counters.apply_waits_failed;
              w->go();
            });
}

/// The endpoints of `rec` (null: none) that traffic may go to, as a peer's data plane names
/// them: service, instance id, address, port. Sorted.
std::set<std::tuple<std::string, std::string, std::string, std::uint16_t>>
routable_endpoints(const gossip::owner_record* rec) {
  std::set<std::tuple<std::string, std::string, std::string, std::uint16_t>> out;
  if (rec != nullptr)
    for (const auto& i : rec->instances)
      if (i.health != gossip::health_status::failing)
        out.emplace(i.service, i.id, i.address, i.port);
  return out;
}

/// A failing check's texts, when the status stays failing, are written at most this often:
/// each write is a signed record spread to the mesh, and a check runs up to once a second.
constexpr gossip::duration failing_text_refresh = std::chrono::seconds{30};

/// Whether the failing result just recorded for `key` (its status unchanged) should be
/// written although no status changed: the view would otherwise keep a text that no longer
/// says why the instance fails ("not checked yet" until it first passes; NOT_SERVING after
/// the app died). The check's first result at once; a later new text once
/// failing_text_refresh has passed since the last such write (the next failing result
/// after that writes it). Never while draining: every instance then says "draining".
bool failing_text_is_due(const routing_state& st, const std::string& key, bool first,
                         gossip::time_point now) {
  if (st.draining || st.checks->status(key) != gossip::health_status::failing)
    return false; // passing, with failures below `fall`: the status is what counts
  const auto* t = st.checks->tracker(key);
  const auto spec = st.services.find(key);
  if (t == nullptr || spec == st.services.end())
    return false;
  // The text this node's record carries now (the last one written).
  if (const auto* rec = st.table->owner(st.params.name))
    for (const auto& i : rec->instances)
      if (i.service == spec->second.reg.service && i.id == spec->second.reg.id &&
          i.last_check == t->last_result())
        return false;
  return first || !st.text_written_at || now - *st.text_written_at >= failing_text_refresh;
}

/// Writes this node's record from its services and their health; spreads it.
caf::error write_own(routing_actor_t* self) {
  auto& st = self->state;
  std::vector<gossip::service_registration> regs;
  for (const auto& [key, spec] : st.services) {
    auto r = spec.reg;
    if (spec.check) {
      r.health = st.checks->status(key);
      if (const auto* t = st.checks->tracker(key))
        r.last_check = t->last_result();
    }
    if (st.draining) {
      // Peers stop routing here before the inbound proxy stops taking requests.
      r.health = gossip::health_status::failing;
      r.last_check = "draining (starling drain)";
    }
    regs.push_back(std::move(r));
  }
  const auto before = routable_endpoints(st.table->owner(st.params.name));
  auto rec = st.table->set_instances(std::move(regs), wall_ms(), *st.sealer);
  if (!rec) {
    ++st.counters.own_write_errors;
    spdlog::warn("cannot write this node's instances: {}", wire::render_error(rec.error()));
    return rec.error();
  }
  ++st.counters.own_writes;
  store(self);
  auto pub = st.spread->publication(*rec);
  const auto after = routable_endpoints(&*rec);
  if (std::includes(before.begin(), before.end(), after.begin(), after.end())) {
    // Nothing opens to traffic (a withdrawal, a drain, a new weight): the peers first, so
    // that they stop routing here before this node's inbound proxy refuses.
    if (pub)
      st.params.relay->publish({std::move(*pub)});
    mark_dirty(self);
    return {};
  }
  // An endpoint opens: this node's data plane takes it in before any peer hears of it. A
  // peer routes to it as soon as its table has it, and this node's inbound proxy must know
  // it by then (with the snapshot coalesced after the publication, a peer's first requests
  // met "no_upstream" here: CI, 2026-12-04).
  spread_own(self, std::move(pub));
  return {};
}

void schedule_checks(routing_actor_t* self) {
  auto& st = self->state;
  auto next = st.checks->next_deadline();
  if (!next || (st.check_at && *st.check_at <= *next))
    return;
  st.check_at = *next;
  auto delay =
      std::max<gossip::duration>(*next - self->clock().now(), std::chrono::milliseconds{1});
  self->delayed_send(self, delay, hcheck_atom::value);
}

void run_checks(routing_actor_t* self) {
  auto& st = self->state;
  st.check_at.reset();
  caf::weak_actor_ptr weak{self->ctrl()};
  for (const auto& key : st.checks->due(self->clock().now())) {
    auto it = st.services.find(key);
    const auto* spec = st.checks->spec(key);
    if (it == st.services.end() || spec == nullptr)
      continue;
    const auto& reg = it->second.reg;
    ++st.counters.probes;
    st.prober->probe(reg.address.empty() ? std::string{"127.0.0.1"} : reg.address, reg.port, *spec,
                     [weak, key](gossip::discovery::probe_result res) {
                       if (auto hdl = weak.lock())
                         caf::anon_send(
                             caf::actor_cast<caf::actor>(hdl),
                             health_result_msg{key, res.ok, res.inconclusive, std::move(res.text)});
                     });
  }
  schedule_checks(self);
}

/// Adds (or replaces) a service of this node and its check. Errors: the check's.
caf::error add_service(routing_actor_t* self, service_spec spec) {
  auto& st = self->state;
  if (spec.reg.id.empty())
    spec.reg.id = spec.reg.service;
  const auto key = key_of(spec);
  if (spec.check) {
    if (auto err = st.checks->add(key, *spec.check, self->clock().now()))
      return err;
  } else {
    st.checks->remove(key);
  }
  st.services[key] = std::move(spec);
  schedule_checks(self);
  return {};
}

caf::result<caf::message> on_register(routing_actor_t* self, const std::vector<std::string>& args) {
  auto& st = self->state;
  auto spec = parse_service_args({args.begin() + 1, args.end()});
  if (!spec)
    return spec.error();
  spec->from_config = false;
  if (spec->reg.id.empty())
    spec->reg.id = spec->reg.service;
  const auto key = key_of(*spec);
  if (auto it = st.services.find(key); it != st.services.end() && it->second.from_config)
    return usage("register: " + key + " comes from the config file; edit the file instead");
  if (st.services.size() >= gossip::max_instances_per_owner && !st.services.contains(key))
    return refused(gossip::make_error(
        gossip::routing_errc::invalid_record,
        "this node already has " + std::to_string(gossip::max_instances_per_owner) + " services"));
  // Undone if the record cannot be written: the service and its check as they were.
  std::optional<service_spec> before;
  if (auto it = st.services.find(key); it != st.services.end())
    before = it->second;
  const auto undo = [&] {
    if (before) {
      static_cast<void>(add_service(self, *before));
    } else {
      st.services.erase(key);
      st.checks->remove(key);
    }
  };
  if (auto err = add_service(self, *spec)) {
    undo();
    return refused(err);
  }
  if (auto err = write_own(self)) {
    undo();
    return refused(err);
  }
  spdlog::info("registered service {} (id {}) on port {}", spec->reg.service, spec->reg.id,
               spec->reg.port);
  return caf::make_message(service_json(*spec).dump());
}

caf::result<caf::message> on_deregister(routing_actor_t* self,
                                        const std::vector<std::string>& args) {
  auto& st = self->state;
  if (args.size() < 2 || args.size() > 3)
    return usage("deregister needs a service name and optionally an instance id");
  const auto id = args.size() == 3 ? args[2] : args[1];
  const auto key = args[1] + "/" + id;
  auto it = st.services.find(key);
  if (it == st.services.end())
    return refused(gossip::make_error(gossip::routing_errc::invalid_record,
                                      "no service " + args[1] + " (id " + id + ") on this node"));
  if (it->second.from_config)
    return usage("deregister: " + key + " comes from the config file; edit the file instead");
  auto removed = it->second;
  st.services.erase(it);
  st.checks->remove(key);
  if (auto err = write_own(self)) {
    static_cast<void>(add_service(self, std::move(removed)));
    return refused(err);
  }
  spdlog::info("deregistered service {} (id {})", args[1], id);
  return caf::make_message("deregistered " + args[1] + " (id " + id +
                           "): its instance leaves every node's table");
}

using drain_atom = caf::atom_constant<caf::atom("rdrain")>;

/// `starling drain [--cancel]`: withdraws this node's instances from every routable set (a
/// signed record saying they fail, spread like any change), then, after the grace, makes
/// the data plane refuse new inbound work while what is in flight finishes; `--cancel`
/// undoes both.
caf::result<caf::message> on_drain(routing_actor_t* self, const std::vector<std::string>& args) {
  auto& st = self->state;
  const bool cancel = args.size() == 2 && args[1] == "--cancel";
  if (args.size() > 2 || (args.size() == 2 && !cancel))
    return usage("usage: drain [--cancel]");
  if (!st.params.set_draining)
    return make_error(errc::request_failed, "this node runs no data plane ([proxy] inbound)");
  ++st.drain_epoch;
  st.draining = !cancel;
  if (auto err = write_own(self))
    return refused(err);
  if (cancel) {
    st.params.set_draining(false);
    spdlog::info("drain cancelled: this node's instances are routable again");
    return caf::make_message(std::string{"drain cancelled: this node's instances are routable "
                                         "again and its inbound proxy takes new work\n"});
  }
  spdlog::info("draining: instances withdrawn from the mesh's routing; the inbound proxy "
               "refuses new work in {} ms",
               st.params.drain_grace.count());
  self->delayed_send(self, st.params.drain_grace, drain_atom::value, st.drain_epoch);
  return caf::make_message(
      "draining: " + std::to_string(st.services.size()) +
      " instance(s) withdrawn from every routable set (spreading now); the inbound proxy "
      "refuses new requests in " +
      std::to_string(st.params.drain_grace.count()) +
      " ms, and requests in flight finish (starling stats: proxy.in_flight)\n");
}

caf::result<caf::message> on_policy(routing_actor_t* self, const std::vector<std::string>& args) {
  auto& st = self->state;
  auto cmd = parse_policy_command(args);
  if (!cmd)
    return cmd.error();
  auto rec =
      st.table->set_policy(std::move(cmd->key), std::move(cmd->value), wall_ms(), *st.sealer);
  if (!rec)
    return refused(rec.error());
  ++st.counters.policy_writes;
  if (auto pub = st.spread->publication(*rec))
    st.params.relay->publish({std::move(*pub)});
  mark_dirty(self);
  auto text = describe_write(*rec);
  spdlog::info("policy written: {}", text);
  return caf::make_message(std::move(text));
}

counter_list stats_of(const routing_state& st) {
  const auto& t = st.table->stats();
  const auto& g = st.spread->stats();
  counter_list out{
      {"owners", st.table->owners().size()},  {"policies", st.table->policies().size()},
      {"own_services", st.services.size()},   {"records_applied", t.applied},
      {"records_duplicate", t.duplicates},    {"records_stale", t.stale},
      {"records_pending", t.pending},         {"pending_dropped", t.pending_dropped},
      {"records_refused", t.refused_total()},
  };
  for (std::uint8_t code = 1; code < t.refused.size(); ++code) {
    const char* name = gossip::to_string(static_cast<gossip::routing_errc>(code));
    if (std::string_view{name} != "unknown")
      out.emplace_back(std::string{"refused_"} + name, t.refused[code]);
  }
  out.insert(out.end(), {{"chains_learned", t.chains_learned},
                         {"chains_refused", t.chains_refused},
                         {"collected_owners", t.collected_owners},
                         {"collected_tombstones", t.collected_tombstones},
                         {"payloads_in", g.payloads_in},
                         {"payloads_malformed", g.payloads_malformed},
                         {"sections_in", g.sections_in},
                         {"sections_malformed", g.sections_malformed},
                         {"sections_out", g.sections_out},
                         {"sections_partial", g.sections_partial},
                         {"too_large_to_piggyback", g.too_large_to_piggyback},
                         {"notes_in", g.notes_in},
                         {"notes_differing", g.notes_differing},
                         {"anti_entropy_asks", g.anti_entropy_asks},
                         {"sections_digest_only", g.sections_digest_only},
                         {"pulls_out", g.pulls_out},
                         {"pulls_in", g.pulls_in},
                         {"pulls_malformed", g.pulls_malformed},
                         {"pull_answers_in", g.pull_answers_in},
                         {"pull_answer_bytes_out", g.pull_answer_bytes_out},
                         {"snapshots", st.counters.snapshots},
                         {"own_writes", st.counters.own_writes},
                         {"own_write_errors", st.counters.own_write_errors},
                         {"apply_waits_failed", st.counters.apply_waits_failed},
                         {"policy_writes", st.counters.policy_writes},
                         {"health_changes", st.counters.health_changes},
                         {"health_probes", st.counters.probes},
                         {"store_errors", st.counters.store_errors}});
  if (st.params.dns) {
    const auto d = st.params.dns->stats();
    out.insert(out.end(), {{"dns_queries", d.queries},
                           {"dns_answered", d.answered},
                           {"dns_nxdomain", d.nxdomain},
                           {"dns_nodata", d.nodata},
                           {"dns_refused", d.refused},
                           {"dns_malformed", d.malformed},
                           {"dns_truncated", d.truncated}});
  }
  return out;
}

caf::behavior routing_actor(routing_actor_t* self, caf::actor parent, routing_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  st.parent = std::move(parent);
  const auto now_ms = wall_ms();
  gossip::routing_config cfg;
  cfg.self = st.params.name;
  cfg.max_clock_skew = st.params.max_clock_skew;
  std::shared_ptr<gossip::routing_trust> trust;
  if (st.params.id) {
    st.book = std::make_shared<key_book_trust>(st.params.id->trust, st.params.id->creds,
                                               st.params.id->issuer, now_ms);
    trust = st.book;
    std::optional<identity::private_key> issuer_key;
    if (st.params.id->issuer)
      issuer_key = st.params.id->issuer->key;
    st.sealer = std::make_unique<node_key_sealer>(st.params.id->creds.key, std::move(issuer_key),
                                                  st.params.name);
  } else {
    trust = std::make_shared<gossip::open_routing_trust>();
    st.sealer = std::make_unique<unsigned_sealer>();
  }
  st.table = std::make_shared<gossip::routing_table>(cfg, trust);
  st.spread = std::make_unique<gossip::routing_gossip>(
      *st.table, gossip::max_extension_section_bytes, st.params.inline_section_max);
  st.checks = std::make_unique<gossip::health_scheduler>(st.params.rng_seed);
  st.prober = std::make_shared<gossip::discovery::health_prober>();
  if (!st.prober->start())
    spdlog::warn("the health prober could not start: health checks fail until a restart");
  self->attach_functor([prober = st.prober] { prober->stop(); });

  // This node's services: the config file's, then those registered at run time.
  for (auto spec : st.params.config_services) {
    spec.from_config = true;
    if (auto err = add_service(self, std::move(spec)))
      spdlog::warn("health check of a configured service refused: {}", message_of(err));
  }
  if (!st.params.data_dir.empty()) {
    auto stored = load_service_store(st.params.data_dir);
    if (!stored) {
      self->send(st.parent, failed_atom::value,
                 "cannot read " + (st.params.data_dir / "services.json").string() + ": " +
                     message_of(stored.error()));
      self->quit();
      return {};
    }
    st.stored_version = stored->last_version;
    st.table->restore_own_version(stored->last_version);
    for (auto& spec : stored->services) {
      spec.from_config = false;
      if (st.services.contains(key_of(spec))) {
        spdlog::warn("registered service {} shadows the config file's; keeping the config's",
                     key_of(spec));
        continue;
      }
      if (auto err = add_service(self, std::move(spec)))
        spdlog::warn("health check of a registered service refused: {}", message_of(err));
    }
  }
  // Who is live now (the membership actor tells us of every change after this).
  st.live = st.params.relay->members();
  for (const auto& [name, host] : st.live)
    st.hosts[name] = host;
  static_cast<void>(write_own(self));
  self->send(self, rtick_atom::value);
  // A watcher that exits stops getting snapshots (down messages reach this handler, never
  // the behavior, in CAF 0.17).
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto gone = [&](const caf::actor& a) { return a.address() == dm.source; };
    for (auto* w : {&self->state.watchers, &self->state.appliers})
      w->erase(std::remove_if(w->begin(), w->end(), gone), w->end());
  });

  return {
      [=](routing_input& in) {
        auto& st = self->state;
        if (in.kind == routing_input_kind::pull) {
          auto answer = st.spread->answer_pull(in.bytes, in.sender);
          if (!answer)
            spdlog::debug("routing pull from {} refused: {}",
                          in.sender.empty() ? "a peer" : in.sender,
                          wire::render_error(answer.error()));
          if (in.reply)
            in.reply(std::move(answer));
          return;
        }
        gossip::routing_gossip_result res;
        const char* what = "payload";
        if (in.kind == routing_input_kind::section) {
          what = "section";
          res = st.spread->on_section(in.bytes, in.sender, wall_ms());
        } else if (in.kind == routing_input_kind::answer) {
          what = "pull answer";
          res = st.spread->on_pull_answer(in.bytes, in.sender, wall_ms());
        } else {
          res = st.spread->on_payload(in.bytes, in.sender, wall_ms());
        }
        if (res.error)
          spdlog::debug("routing {} from {} refused: {}", what, in.sender,
                        wire::render_error(res.error));
        publish(self, res);
      },
      [=](member_changes& changes) {
        auto& st = self->state;
        bool changed = false;
        if (changes.full && !st.live.empty()) {
          st.live.clear();
          changed = true;
        }
        for (auto& m : changes.members) {
          if (!m.host.empty())
            st.hosts[m.name] = m.host;
          if (m.live) {
            auto [it, fresh] = st.live.try_emplace(m.name, m.host);
            if (!fresh && it->second != m.host) {
              it->second = m.host;
              fresh = true;
            }
            changed |= fresh;
          } else {
            changed |= st.live.erase(m.name) > 0;
          }
        }
        if (changed)
          mark_dirty(self);
      },
      [=](health_result_msg& msg) {
        auto& st = self->state;
        if (msg.inconclusive) {
          static_cast<void>(st.checks->on_skipped(msg.key));
        } else {
          const auto now = self->clock().now();
          const auto* before = st.checks->tracker(msg.key);
          const bool first = before != nullptr && !before->last_checked();
          if (st.checks->on_result(msg.key, msg.ok, msg.text, now)) {
            ++st.counters.health_changes;
            spdlog::info("service {} is now {} ({})", msg.key,
                         gossip::to_string(st.checks->status(msg.key)), msg.text);
            static_cast<void>(write_own(self));
          } else if (!msg.ok && failing_text_is_due(st, msg.key, first, now)) {
            st.text_written_at = now;
            static_cast<void>(write_own(self));
          }
        }
        schedule_checks(self);
      },
      [=](hcheck_atom) { run_checks(self); },
      [=](drain_atom, std::uint64_t epoch) {
        auto& st = self->state;
        if (epoch != st.drain_epoch || !st.draining || !st.params.set_draining)
          return;
        st.params.set_draining(true);
        spdlog::info("draining: the inbound proxy refuses new work; requests in flight finish");
      },
      [=](flush_atom) { flush(self); },
      [=](rtick_atom) {
        auto& st = self->state;
        const auto now = wall_ms();
        if (st.table->collect_garbage(now) > 0)
          mark_dirty(self);
        // Hosts are kept for live nodes and owners of records only.
        std::erase_if(st.hosts, [&st](const auto& kv) {
          return !st.live.contains(kv.first) && st.table->owner(kv.first) == nullptr;
        });
        if (st.table->needs_refresh(now))
          static_cast<void>(write_own(self));
        // Pending records wait for chains: ask whoever we hear from next (the relay).
        self->delayed_send(self, st.params.tick, rtick_atom::value);
      },
      [=](routing_atom, const std::vector<std::string>& args) -> caf::result<caf::message> {
        auto& st = self->state;
        if (args.empty())
          return usage("empty routing command");
        const auto& cmd = args[0];
        if (cmd == "services" || cmd == "routes") {
          if (args.size() > 1)
            return usage("'" + cmd + "' takes no arguments, got '" + args[1] + "'");
          // The operator reads what was just written: publish a pending change first.
          if (st.flush_scheduled)
            flush(self);
          return caf::make_message(cmd == "services" ? services_json(*st.snapshot)
                                                     : routes_json(*st.snapshot, outbound(st)));
        }
        if (cmd == "register")
          return on_register(self, args);
        if (cmd == "deregister")
          return on_deregister(self, args);
        if (cmd == "split" || cmd == "route" || cmd == "resilience" || cmd == "authz")
          return on_policy(self, args);
        if (cmd == "drain")
          return on_drain(self, args);
        return usage("unknown routing command '" + cmd + "'");
      },
      [=](stats_atom) {
        auto& st = self->state;
        return caf::make_message(stats_of(st),
                                 st.params.dns ? st.params.dns->local_endpoint() : std::string{});
      },
      [=](watch_atom, const caf::actor& who) { add_watcher(self, who, false); },
      [=](watch_atom, const caf::actor& who, applied_atom) { add_watcher(self, who, true); },

  };
}

} // namespace

caf::actor spawn_routing_actor(caf::actor_system& sys, caf::actor parent, routing_params params) {
  return sys.spawn(routing_actor, std::move(parent), std::move(params));
}

} // namespace starling::actors
