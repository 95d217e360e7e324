#include "actors/membership_actor.hpp"

#include <algorithm>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/make_message.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/errc.hpp"
#include "actors/node_files.hpp"
#include "actors/views.hpp"
#include "gossip/errc.hpp"
#include "proto/wire/address.hpp"
#include "proto/wire/backoff.hpp"

namespace starling::actors {

/// A datagram decoded by the transport (local message).
struct packet_msg {
  gossip::packet pkt;
};

/// A peer opened a push-pull; answer through `reply` (local message).
struct pp_request_msg {
  gossip::push_pull remote;
  gossip::push_pull_responder reply;
};

/// The answer to a push-pull this node opened (local message). `round` is the join round
/// it belongs to, 0 for periodic exchanges asked by the core.
struct pp_result_msg {
  std::string peer;
  std::uint64_t round = 0;
  caf::expected<gossip::push_pull> result;
};

/// The answer to an extension's request (local message).
struct ext_answer_msg {
  gossip::extension_kind kind = 0;
  std::string member;
  caf::expected<std::string> result;
};

} // namespace starling::actors

// Never serialized: these only travel from the transport thread to the actor.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::packet_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::pp_request_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::pp_result_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(starling::actors::ext_answer_msg)

namespace starling::actors {

namespace {

/// Recent events kept for the admin's `events` view.
constexpr std::size_t max_recent_events = 256;

/// Upper bound between two ticks, whatever next_deadline() says.
constexpr auto max_tick_delay = std::chrono::seconds{1};

struct membership_state {
  /// Constructor arguments; never changed after start.
  membership_params params;
  /// Who gets bound/failed/joined/peers reports; may be invalid (tests).
  caf::actor parent;
  /// The network; set once started, destroyed (stopping its thread) with the actor.
  std::unique_ptr<gossip_io> io;
  /// The SWIM core; set once the network is up (it needs our advertised address).
  std::optional<gossip::membership> core;
  /// Time of the earliest tick already scheduled, if any.
  std::optional<gossip::time_point> tick_at;
  /// Join bookkeeping. `join_round` counts attempts; results of older rounds only feed state.
  bool joining = false;
  std::uint64_t join_round = 0;
  std::size_t join_outstanding = 0;
  /// Delays between join rounds (params.join_backoff doubling up to join_backoff_max).
  wire::backoff join_backoff;
  /// Last error per seed, for the failure message.
  std::map<std::string, std::string> join_errors;
  /// Graceful leave: requests waiting for the news to spread, and when to stop waiting.
  bool leaving = false;
  gossip::time_point leave_deadline{};
  std::vector<caf::response_promise> leave_waiters;
  /// Newest last; at most max_recent_events.
  std::deque<event_record> recent;
  /// Open when params.event_log is set and could be opened.
  std::ofstream event_log;
  /// Last incarnation written to state.json.
  std::uint64_t persisted_incarnation = 0;
  /// Jitter for the join backoff.
  std::mt19937_64 rng;

  static inline const char* name = "membership_actor";
};

using membership_actor_t = caf::stateful_actor<membership_state>;

gossip::time_point now_of(membership_actor_t* self) { return self->clock().now(); }

void schedule_tick(membership_actor_t* self) {
  auto& st = self->state;
  auto now = now_of(self);
  auto next = std::min(st.core->next_deadline(), now + max_tick_delay);
  if (st.tick_at && *st.tick_at <= next)
    return;
  st.tick_at = next;
  auto delay = std::max<gossip::duration>(next - now, std::chrono::milliseconds{1});
  self->delayed_send(self, delay, tick_atom::value);
}

void report_peers(membership_actor_t* self) {
  auto& st = self->state;
  if (!st.parent)
    return;
  std::vector<std::string> alive;
  for (const auto& m : st.core->members())
    if (m.name != st.params.name && m.state == gossip::member_state::alive)
      alive.push_back(m.address);
  self->send(st.parent, peers_atom::value, std::move(alive), st.core->self().incarnation);
}

/// The host part of a member's "host:port" address ("" when it does not parse).
std::string host_of(std::string_view address) {
  auto hp = wire::parse_host_port(address);
  return hp ? hp.address->host : std::string{};
}

} // namespace

std::string inbound_of(const gossip::tag_map& tags, const std::string& host) {
  const auto it = tags.find(std::string{inbound_tag});
  if (it == tags.end() || it->second.empty())
    return {};
  const auto& value = it->second;
  const auto colon = value.rfind(':');
  const std::string port = colon == std::string::npos ? value : value.substr(colon + 1);
  std::string where = colon == std::string::npos ? host : value.substr(0, colon);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return {};
  const auto n = std::stoul(port);
  if (n == 0 || n > 65535 || where.empty())
    return {};
  if (where.find(':') != std::string::npos && where.front() != '[')
    where = "[" + where + "]"; // an IPv6 host
  return where + ":" + port;
}

namespace {

/// Tells params.on_members who is live: everyone (at start), or the subjects of `events`.
void report_members(membership_actor_t* self, const std::vector<gossip::member_event>* events) {
  auto& st = self->state;
  if (!st.params.on_members || !st.core)
    return;
  member_changes out;
  if (events == nullptr) {
    out.full = true;
    for (const auto& m : st.core->members())
      if (m.state == gossip::member_state::alive || m.state == gossip::member_state::suspect)
        out.members.push_back(
            {m.name, host_of(m.address), true, inbound_of(m.tags, host_of(m.address))});
  } else {
    for (const auto& ev : *events) {
      using kind = gossip::member_event_kind;
      const bool live = ev.kind == kind::joined || ev.kind == kind::updated ||
                        ev.kind == kind::suspected || ev.kind == kind::recovered;
      const auto host = host_of(ev.subject.address);
      out.members.push_back(
          {ev.subject.name, host, live, live ? inbound_of(ev.subject.tags, host) : std::string{}});
    }
  }
  st.params.on_members(std::move(out));
}

void record_event(membership_actor_t* self, const gossip::member_event& ev) {
  auto& st = self->state;
  event_record rec{wall_clock::now(), ev.kind, ev.subject.name, ev.subject.address,
                   ev.subject.incarnation};
  if (ev.kind == gossip::member_event_kind::failed)
    spdlog::warn("{}", describe(rec));
  else
    spdlog::info("{}", describe(rec));
  if (st.event_log.is_open()) {
    st.event_log << event_log_line(rec) << '\n';
    st.event_log.flush();
  }
  st.recent.push_back(std::move(rec));
  while (st.recent.size() > max_recent_events)
    st.recent.pop_front();
}

void check_leave(membership_actor_t* self) {
  auto& st = self->state;
  if (!st.leaving || st.leave_waiters.empty())
    return;
  auto now = now_of(self);
  std::size_t others = 0;
  for (const auto& m : st.core->members())
    if (m.name != st.params.name && m.state == gossip::member_state::alive)
      ++others;
  if (others == 0 || st.core->pending_broadcasts() == 0 || now >= st.leave_deadline) {
    spdlog::info("leave news spread ({} broadcasts pending, {} alive members)",
                 st.core->pending_broadcasts(), others);
    for (auto& rp : st.leave_waiters)
      rp.deliver(left_atom::value);
    st.leave_waiters.clear();
  }
}

void start_push_pull(membership_actor_t* self, const std::string& peer, std::uint64_t round,
                     bool join);
void start_extension_request(membership_actor_t* self, gossip::outgoing_request& req);

/// Sends, starts and reports what the core returned; then reschedules.
void apply(membership_actor_t* self, gossip::effects fx) {
  auto& st = self->state;
  for (const auto& out : fx.packets)
    st.io->send(out.address, out.message);
  for (const auto& peer : fx.push_pull_to)
    start_push_pull(self, peer, 0, false);
  for (auto& req : fx.extension_requests)
    start_extension_request(self, req);
  for (const auto& ev : fx.events)
    record_event(self, ev);
  if (!fx.events.empty()) {
    report_peers(self);
    report_members(self, &fx.events);
  }
  auto inc = st.core->self().incarnation;
  if (!st.params.data_dir.empty() && inc != st.persisted_incarnation) {
    if (auto err = write_incarnation(st.params.data_dir, inc))
      spdlog::warn("cannot persist incarnation {}: {}", inc, message_of(err));
    else
      st.persisted_incarnation = inc;
  }
  check_leave(self);
  schedule_tick(self);
}

void start_push_pull(membership_actor_t* self, const std::string& peer, std::uint64_t round,
                     bool join) {
  auto& st = self->state;
  caf::weak_actor_ptr weak{self->ctrl()};
  st.io->push_pull_with(peer, st.core->make_push_pull(join),
                        [weak, peer, round](caf::expected<gossip::push_pull> res) {
                          if (auto hdl = weak.lock())
                            caf::anon_send(caf::actor_cast<caf::actor>(hdl),
                                           pp_result_msg{peer, round, std::move(res)});
                        });
}

void start_extension_request(membership_actor_t* self, gossip::outgoing_request& req) {
  auto& st = self->state;
  const auto x = std::find_if(st.params.extensions.begin(), st.params.extensions.end(),
                              [&](const membership_extension& e) { return e.kind == req.kind; });
  if (x == st.params.extensions.end() || x->request_type == 0)
    return; // the extension has no request type: nothing to carry it
  caf::weak_actor_ptr weak{self->ctrl()};
  st.io->request(req.address, x->request_type, std::move(req.body), req.member,
                 [weak, kind = req.kind, member = req.member](caf::expected<std::string> res) {
                   if (auto hdl = weak.lock())
                     caf::anon_send(caf::actor_cast<caf::actor>(hdl),
                                    ext_answer_msg{kind, member, std::move(res)});
                 });
}

void start_join_round(membership_actor_t* self) {
  auto& st = self->state;
  ++st.join_round;
  st.join_outstanding = st.params.seeds.size();
  spdlog::debug("join attempt {} through {} seed(s)", st.join_round, st.params.seeds.size());
  for (const auto& seed : st.params.seeds)
    start_push_pull(self, seed, st.join_round, true);
}

std::string seed_list(const membership_state& st) {
  std::string out;
  for (const auto& s : st.params.seeds) {
    if (!out.empty())
      out += ", ";
    out += s;
    if (auto i = st.join_errors.find(s); i != st.join_errors.end())
      out += " (" + i->second + ")";
  }
  return out;
}

void on_join_failure(membership_actor_t* self) {
  auto& st = self->state;
  if (!st.joining)
    return;
  st.joining = false;
  auto msg = "could not join the mesh: no seed answered within " +
             std::to_string(st.params.join_timeout.count()) + "ms; seeds: " + seed_list(st);
  if (st.params.join_required) {
    if (st.parent)
      self->send(st.parent, joined_atom::value, false, msg);
    else
      spdlog::error("{}", msg);
  } else {
    spdlog::warn("{}; continuing alone until a member contacts this node", msg);
  }
}

void on_push_pull_result(membership_actor_t* self, pp_result_msg& msg) {
  auto& st = self->state;
  if (!msg.result) {
    auto why = gossip::render(msg.result.error());
    if (msg.round == 0) {
      spdlog::debug("push-pull with {} failed: {}", msg.peer, why);
      return;
    }
    st.join_errors[msg.peer] = why;
    spdlog::debug("join through {} failed: {}", msg.peer, why);
    if (st.joining && msg.round == st.join_round && --st.join_outstanding == 0) {
      self->delayed_send(self, st.join_backoff.next_with(st.rng), retry_atom::value);
    }
    return;
  }
  auto fx = st.core->on_push_pull_response(*msg.result, now_of(self));
  if (msg.round != 0 && st.joining) {
    st.joining = false;
    spdlog::info("joined the mesh through {} ({} members known)", msg.peer,
                 st.core->members().size());
    if (st.parent)
      self->send(st.parent, joined_atom::value, true, msg.peer);
  }
  apply(self, std::move(fx));
  report_peers(self);
}

/// The actor cannot start: tells the parent why (or logs it without one) and quits.
void fail_start(membership_actor_t* self, const std::string& msg, const caf::error& err) {
  if (self->state.parent)
    self->send(self->state.parent, failed_atom::value, msg);
  else
    spdlog::error("{}", msg);
  self->quit(err);
}

caf::behavior membership_actor(membership_actor_t* self, caf::actor parent,
                               membership_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  st.parent = std::move(parent);
  st.rng.seed(st.params.rng_seed ^ 0x9e3779b97f4a7c15ULL);
  st.join_backoff = wire::backoff{{st.params.join_backoff, st.params.join_backoff_max, 0.5}};
  // The network first: the core needs our advertised address.
  caf::weak_actor_ptr weak{self->ctrl()};
  gossip::transport_callbacks cbs;
  cbs.on_packet = [weak](gossip::packet msg, std::string) {
    if (auto hdl = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(hdl), packet_msg{std::move(msg)});
  };
  // Push-pull and the identity channel are request types of the transport (decision 0014);
  // the identity channel is registered without a handler when this node serves none, so
  // that it can still forward admissions.
  auto on_push_pull = [weak](gossip::push_pull remote, gossip::push_pull_responder reply) {
    if (auto hdl = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(hdl),
                     pp_request_msg{std::move(remote), std::move(reply)});
    else
      reply(gossip::make_error(gossip::errc::peer_refused, "node is shutting down"));
  };
  gossip::identity_handler on_identity;
  if (st.params.on_admission)
    on_identity = [handler = st.params.on_admission](std::string request,
                                                     std::optional<std::string> peer,
                                                     gossip::admission_responder reply) {
      handler(admission_msg{std::move(request), std::move(peer), std::move(reply)});
    };
  // Neither can fail: two distinct built-in types into an empty registry.
  (void)cbs.requests.add(gossip::request_types::push_pull,
                         gossip::push_pull_spec(std::move(on_push_pull)));
  (void)cbs.requests.add(gossip::request_types::identity,
                         gossip::identity_spec(std::move(on_identity)));
  // Extensions' own request types (e.g. the routing table's pulls, type 3).
  for (const auto& x : st.params.extensions) {
    if (x.request_type == 0 || !x.request_spec)
      continue;
    if (auto err = cbs.requests.add(x.request_type, *x.request_spec)) {
      fail_start(self,
                 "cannot register the request type of gossip extension " + x.name + ": " +
                     gossip::render(err),
                 err);
      return {};
    }
  }
  cbs.on_drop = [](const caf::error& why, const std::string& from) {
    spdlog::debug("dropped gossip input from {}: {}", from, gossip::render(why));
  };
  auto io = st.params.make_io ? st.params.make_io(std::move(cbs))
                              : caf::expected<std::unique_ptr<gossip_io>>{
                                    make_error(errc::bind_failed, "no gossip network given")};
  if (!io) {
    fail_start(self, "cannot start gossip: " + message_of(io.error()), io.error());
    return {};
  }
  st.io = std::move(*io);
  auto address = st.io->advertise_address();
  st.core.emplace(st.params.name, address, st.params.tags, st.params.swim, st.params.rng_seed,
                  now_of(self), st.params.incarnation);
  for (auto& x : st.params.extensions) {
    if (auto err = st.core->add_extension(x.kind, x.name, x.ext)) {
      fail_start(self, "cannot register gossip extension: " + gossip::render(err), err);
      return {};
    }
  }
  report_members(self, nullptr);
  st.persisted_incarnation = st.params.incarnation;
  if (!st.params.data_dir.empty())
    if (auto err = write_incarnation(st.params.data_dir, st.params.incarnation))
      spdlog::warn("cannot persist incarnation: {}", message_of(err));
  if (!st.params.event_log.empty()) {
    st.event_log.open(st.params.event_log, std::ios::app);
    if (!st.event_log)
      spdlog::warn("cannot open event log {}", st.params.event_log.string());
  }
  spdlog::info("gossip listening, advertised as {} (incarnation {})", address,
               st.params.incarnation);
  if (st.parent)
    self->send(st.parent, bound_atom::value, address, st.io->port());
  // Our own address is no seed.
  auto& seeds = st.params.seeds;
  seeds.erase(std::remove(seeds.begin(), seeds.end(), address), seeds.end());
  if (!seeds.empty()) {
    st.joining = true;
    start_join_round(self);
    self->delayed_send(self, st.params.join_timeout, deadline_atom::value);
  } else {
    spdlog::info("no seeds: starting a new mesh");
  }
  schedule_tick(self);
  return {
      [=](tick_atom) {
        auto& st = self->state;
        auto now = now_of(self);
        if (st.tick_at && now >= *st.tick_at)
          st.tick_at.reset();
        apply(self, st.core->on_tick(now));
      },
      [=](packet_msg& msg) {
        auto& st = self->state;
        apply(self, st.core->on_packet(msg.pkt, now_of(self)));
      },
      [=](pp_request_msg& msg) {
        auto& st = self->state;
        const auto& sender = msg.remote.sender;
        if (st.params.authenticated_push_pull && st.core->banned(sender)) {
          // Under TLS the push-pull got here only with a valid, unrevoked certificate
          // naming its sender: the node was admitted again (membership_params).
          spdlog::warn("member {} unbanned: it holds a valid certificate again", sender);
          st.core->unban(sender);
        }
        auto reply = st.core->on_push_pull_request(msg.remote, now_of(self));
        if (reply.refusal) {
          spdlog::debug("push-pull from {} refused: {}", sender, gossip::render(reply.refusal));
          msg.reply(std::move(reply.refusal));
        } else {
          msg.reply(std::move(reply.state));
        }
        apply(self, std::move(reply.fx));
      },
      [=](ban_atom, const std::string& name) {
        auto& st = self->state;
        if (name.empty())
          return;
        if (name == st.params.name) {
          spdlog::warn("not banning this node itself: its own certificate was revoked");
          return;
        }
        if (!st.core->banned(name))
          spdlog::warn("member {} banned: its certificate was revoked", name);
        apply(self, st.core->ban(name, now_of(self)));
      },
      [=](pp_result_msg& msg) { on_push_pull_result(self, msg); },
      [=](ext_answer_msg& msg) {
        auto& st = self->state;
        if (!st.core)
          return;
        if (!msg.result) {
          spdlog::debug("gossip extension request to {} failed: {}", msg.member,
                        gossip::render(msg.result.error()));
          return;
        }
        apply(self, st.core->on_extension_answer(msg.kind, msg.member, *msg.result, now_of(self)));
      },
      [=](news_atom) {
        auto& st = self->state;
        if (st.core)
          apply(self, st.core->on_extension_news(now_of(self)));
      },
      [=](alive_atom) {
        auto& st = self->state;
        std::vector<std::string> names;
        std::vector<std::string> addresses;
        std::vector<std::string> issuers;
        if (st.core)
          for (const auto& m : st.core->members()) {
            if (m.name == st.params.name || m.state != gossip::member_state::alive)
              continue;
            names.push_back(m.name);
            addresses.push_back(m.address);
            if (auto it = m.tags.find(std::string{issuer_tag});
                it != m.tags.end() && it->second == "true")
              issuers.push_back(m.name);
          }
        return caf::make_message(std::move(names), std::move(addresses), std::move(issuers));
      },
      [=](live_atom) {
        auto& st = self->state;
        std::vector<std::string> live;
        std::vector<std::string> issuers;
        if (st.core)
          for (const auto& m : st.core->members()) {
            if (m.name == st.params.name || (m.state != gossip::member_state::alive &&
                                             m.state != gossip::member_state::suspect))
              continue;
            live.push_back(m.name);
            if (auto it = m.tags.find(std::string{issuer_tag});
                it != m.tags.end() && it->second == "true")
              issuers.push_back(m.name);
          }
        return caf::make_message(std::move(live), std::move(issuers));
      },
      [=](forward_admission_msg& msg) {
        auto& st = self->state;
        auto m = st.core ? st.core->find(msg.issuer) : std::nullopt;
        if (!m || (m->state != gossip::member_state::alive &&
                   m->state != gossip::member_state::suspect)) {
          msg.done(make_error(errc::unreachable,
                              "issuer " + msg.issuer + " is not an alive member of this mesh"));
          return;
        }
        st.io->admission_with(m->address, std::move(msg.request), msg.issuer, std::move(msg.done));
      },
      [=](retry_atom) {
        if (self->state.joining)
          start_join_round(self);
      },
      [=](deadline_atom) { on_join_failure(self); },
      [=](members_atom) -> std::string {
        auto& st = self->state;
        return members_json(st.core->members(), now_of(self), wall_clock::now());
      },
      [=](stats_atom) -> counter_list {
        auto& st = self->state;
        const auto& s = st.core->stats();
        return {{"members_alive", st.core->count(gossip::member_state::alive)},
                {"members_suspect", st.core->count(gossip::member_state::suspect)},
                {"members_dead", st.core->count(gossip::member_state::dead)},
                {"members_left", st.core->count(gossip::member_state::left)},
                {"health_score", st.core->health_score()},
                {"pending_broadcasts", st.core->pending_broadcasts()},
                {"probes", s.probes},
                {"probe_failures", s.probe_failures},
                {"indirect_probes", s.indirect_probes},
                {"nacks_received", s.nacks_received},
                {"suspicions", s.suspicions},
                {"refutations", s.refutations},
                {"updates_applied", s.updates_applied},
                {"updates_ignored", s.updates_ignored},
                {"incarnation_refused", s.incarnation_refused},
                {"packets_sent", s.packets_sent},
                {"packets_received", s.packets_received},
                {"push_pulls", s.push_pulls},
                {"banned_refused", s.banned_refused},
                {"extensions_unknown", s.extensions_unknown}};
      },
      [=](events_atom) -> std::string {
        auto& st = self->state;
        return events_json({st.recent.begin(), st.recent.end()});
      },
      [=](leave_atom) -> caf::response_promise {
        auto& st = self->state;
        auto rp = self->make_response_promise();
        st.leave_waiters.push_back(rp);
        if (!st.leaving) {
          st.leaving = true;
          st.joining = false;
          auto now = now_of(self);
          st.leave_deadline = now + st.params.leave_timeout;
          spdlog::info("leaving the mesh");
          self->delayed_send(self, st.params.leave_timeout, tick_atom::value);
          apply(self, st.core->leave(now));
        } else {
          check_leave(self);
        }
        return rp;
      },
  };
}

} // namespace

caf::actor spawn_membership_actor(caf::actor_system& sys, caf::actor parent,
                                  membership_params params) {
  return sys.spawn(membership_actor, std::move(parent), std::move(params));
}

} // namespace starling::actors
