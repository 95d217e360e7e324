#include "actors/supervisor_actor.hpp"

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "actors/admin_server.hpp"
#include "actors/admission_msgs.hpp"
#include "actors/agent.hpp"
#include "actors/atoms.hpp"
#include "actors/errc.hpp"
#include "actors/identity_actor.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/membership_actor.hpp"
#include "actors/node_files.hpp"
#include "actors/node_identity.hpp"
#include "actors/tls_security.hpp"

namespace starling::actors {

namespace {

using steady = std::chrono::steady_clock;

/// More restarts of one child than this within restart_window: give up, exit 1.
constexpr std::size_t max_restarts = 5;
constexpr auto restart_window = std::chrono::seconds{60};

/// Bound on the admin actor's answer to one admin request.
constexpr auto admin_request_timeout = std::chrono::seconds{20};

/// One supervised child. Adding a child = adding a slot with its start function.
struct child_slot {
  /// For logs: "membership", "admin", ...
  std::string name;
  /// The running instance; held here, since an actor nobody holds exits as unreachable.
  caf::actor handle;
  /// Spawns a fresh instance (and wires it). Called at start and on restart.
  std::function<caf::actor()> start;
  /// Times of recent restarts, oldest first, within restart_window.
  std::deque<steady::time_point> restarts;
};

struct supervisor_state {
  supervisor_params params;
  std::vector<child_slot> children;
  /// Index of the membership and admin slots in `children`.
  std::size_t membership_slot = 0;
  std::size_t admin_slot = 0;
  std::size_t identity_slot = 0;
  /// Membership actor starts so far (0 before the first).
  unsigned membership_starts = 0;
  /// Advertised gossip address and bound port, once the membership actor reported them.
  std::string gossip_address;
  std::uint16_t gossip_port = 0;
  /// The admin port's listener (started once gossip is bound; outlives admin actor
  /// restarts, since it hands requests to the supervisor). Null before and after.
  std::shared_ptr<admin_server> admin;
  /// Actual admin port once listening; 0 before.
  std::uint16_t admin_port = 0;
  /// The admin credential of this run, and the copy left for the CLI in the runtime dir.
  std::string admin_credential;
  std::filesystem::path admin_cookie_copy;
  /// Where every gossip transport this agent runs (one per membership start) sums its
  /// counters: the sealer's when there is a keyring (its view shows the drops), else ours.
  std::shared_ptr<transport_drop_counters> transport_counters;
  /// Alive peers and own incarnation last reported: the seeds of a restarted membership.
  std::vector<std::string> last_peers;
  std::uint64_t last_incarnation = 0;
  /// The ready line was printed and agent.json written.
  bool ready = false;
  bool leaving = false;
  bool shutting_down = false;

  static inline const char* name = "node_supervisor";
};

using supervisor_t = caf::stateful_actor<supervisor_state>;

void shutdown(supervisor_t* self, int code) {
  auto& st = self->state;
  if (st.shutting_down)
    return;
  st.shutting_down = true;
  st.params.outcome->exit_code = code;
  spdlog::info("shutting down (exit code {})", code);
  // Stops the listener (joins its thread); responders still in flight do nothing.
  st.admin.reset();
  if (!st.admin_credential.empty())
    withdraw_admin_credential(st.params.cfg.data_dir, st.admin_cookie_copy, st.admin_credential);
  for (auto& child : st.children)
    if (child.handle)
      self->send_exit(child.handle, caf::exit_reason::user_shutdown);
  self->quit();
}

void announce_ready(supervisor_t* self) {
  auto& st = self->state;
  if (st.ready || st.gossip_address.empty() || st.admin_port == 0)
    return;
  st.ready = true;
  const auto& cfg = st.params.cfg;
  host_port admin{cfg.admin.host, st.admin_port};
  agent_info info{cfg.name, static_cast<long>(::getpid()), st.gossip_address, admin.to_string()};
  if (auto err = write_agent_json(cfg.data_dir, info)) {
    spdlog::error("{}", message_of(err));
    shutdown(self, exit_failed);
    return;
  }
  std::cout << "starling agent " << cfg.name << " ready: gossip " << st.gossip_address << ", admin "
            << info.admin << std::endl;
  spdlog::info("ready: gossip {}, admin {}, data dir {}", st.gossip_address, info.admin,
               cfg.data_dir.string());
}

/// Hands one admin request to the supervisor (hence the current admin actor) through a
/// short-lived actor, and answers through `reply` (any thread may call it).
void forward_admin_request(caf::actor_system& sys, const caf::actor& supervisor,
                           std::vector<std::string> args, admin_responder reply) {
  sys.spawn([supervisor, args = std::move(args),
             reply = std::move(reply)](caf::event_based_actor* tmp) mutable {
    tmp->request(supervisor, admin_request_timeout, admin_atom::value, std::move(args))
        .then([reply](std::string& body) { reply(admin_reply::ok(std::move(body))); },
              [reply](caf::error& err) {
                if (err.category() == errc_category &&
                    err.code() == static_cast<std::uint8_t>(errc::bad_request))
                  reply(admin_reply::usage(message_of(err)));
                else
                  reply(admin_reply::failed(message_of(err)));
              });
  });
}

/// Starts listening on the admin address; false (after shutting down) if binding failed.
bool start_admin_server(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  admin_server_config ac;
  ac.host = cfg.admin.host;
  ac.port = cfg.admin.port;
  // Every command that changes the node needs this run's credential (decision 0012).
  auto credential = make_admin_credential();
  if (!credential) {
    spdlog::error("{}", message_of(credential.error()));
    shutdown(self, exit_failed);
    return false;
  }
  st.admin_credential = *credential;
  ac.credential = *credential;
  if (cfg.admin_open_reads)
    ac.needs_credential = [](const std::vector<std::string>& args) {
      return !is_read_only_command(args);
    };
  auto* sys = &self->home_system();
  auto sup = caf::actor_cast<caf::actor>(self);
  auto server =
      admin_server::start(ac, [sys, sup](std::vector<std::string> args, admin_responder reply) {
        forward_admin_request(*sys, sup, std::move(args), std::move(reply));
      });
  if (!server) {
    spdlog::error("{}", message_of(server.error()));
    shutdown(self, exit_failed);
    return false;
  }
  st.admin = std::move(*server);
  st.admin_port = st.admin->port();
  auto copy = publish_admin_credential(
      cfg.data_dir, admin_runtime_dir([](const char* name) { return std::getenv(name); }),
      st.admin_port, st.admin_credential);
  if (!copy) {
    spdlog::error("{}", message_of(copy.error()));
    shutdown(self, exit_failed);
    return false;
  }
  st.admin_cookie_copy = std::move(*copy);
  spdlog::debug("admin port listening on {}:{}", cfg.admin.host, st.admin_port);
  return true;
}

caf::actor start_membership(supervisor_t* self) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  membership_params p;
  p.name = cfg.name;
  p.tags = cfg.tags;
  p.swim = cfg.swim;
  p.join_timeout = cfg.join_timeout;
  p.event_log = cfg.event_log;
  p.data_dir = cfg.data_dir;
  p.rng_seed = std::random_device{}();
  gossip::transport_config tc;
  tc.bind_host = cfg.gossip.host;
  tc.advertise_host = cfg.advertise;
  tc.limits.max_datagram = cfg.swim.max_datagram;
  tc.tcp_timeout = cfg.tcp_timeout;
  if (st.params.sealer) {
    tc.sealer = st.params.sealer;
    // The wire limit stays max_datagram: the core packs less, leaving room for sealing.
    p.swim.max_datagram = cfg.swim.max_datagram - identity::sealed_overhead;
  }
  if (st.params.id) {
    tc.security = std::make_shared<tls_security>(st.params.id->tls);
    // A push-pull that arrives under TLS passed the revocation check of the handshake.
    p.authenticated_push_pull = true;
  }
  if (st.params.id && st.params.id->issuer)
    p.tags[std::string{issuer_tag}] = "true";
  caf::weak_actor_ptr weak{self->ctrl()};
  p.on_admission = [weak](admission_msg msg) {
    if (auto hdl = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(hdl), std::move(msg));
    else
      msg.reply(make_error(errc::unreachable, "node is shutting down"));
  };
  if (st.membership_starts++ == 0) {
    p.seeds = cfg.join;
    p.join_required = !cfg.join.empty();
    p.incarnation = st.params.incarnation;
    tc.port = cfg.gossip.port;
  } else {
    // A restart: same port (so the same address), rejoin through the last alive peers,
    // and come back with a higher incarnation than any the mesh saw.
    p.seeds = st.last_peers;
    p.join_required = false;
    p.incarnation = std::max(st.last_incarnation, st.params.incarnation) + 1;
    tc.port = st.gossip_port != 0 ? st.gossip_port : cfg.gossip.port;
    spdlog::info("restarting membership with {} seed(s), incarnation {}", p.seeds.size(),
                 p.incarnation);
  }
  p.make_io = make_transport_io(std::move(tc), st.transport_counters);
  return spawn_membership_actor(self->home_system(), caf::actor_cast<caf::actor>(self),
                                std::move(p));
}

caf::actor start_identity(supervisor_t* self) {
  auto& st = self->state;
  identity_params p;
  p.name = st.params.cfg.name;
  p.id = st.params.id;
  p.sealer = st.params.sealer;
  p.tokens_file = st.params.cfg.data_dir / "tokens";
  p.issued_file = st.params.cfg.data_dir / "issued";
  p.revocations_file = st.params.cfg.data_dir / "revocations";
  p.data_dir = st.params.cfg.data_dir;
  p.cert_ttl = st.params.cfg.cert_ttl;
  p.admission_quorum = st.params.cfg.admission_quorum;
  p.rng_seed = std::random_device{}();
  return spawn_identity_actor(self->home_system(), caf::actor_cast<caf::actor>(self), std::move(p));
}

caf::actor start_admin(supervisor_t* self) {
  return spawn_admin_actor(self->home_system(), caf::actor_cast<caf::actor>(self));
}

std::size_t add_child(supervisor_t* self, std::string name, std::function<caf::actor()> start) {
  auto& st = self->state;
  child_slot slot{std::move(name), {}, std::move(start), {}};
  slot.handle = slot.start();
  self->monitor(slot.handle);
  st.children.push_back(std::move(slot));
  return st.children.size() - 1;
}

void on_child_down(supervisor_t* self, const caf::down_msg& dm) {
  auto& st = self->state;
  for (auto& child : st.children) {
    if (child.handle.address() != dm.source)
      continue;
    child.handle = nullptr;
    if (st.shutting_down)
      return;
    auto now = steady::now();
    while (!child.restarts.empty() && now - child.restarts.front() > restart_window)
      child.restarts.pop_front();
    if (child.restarts.size() >= max_restarts) {
      spdlog::error("{} actor exited ({}) {} times within {}s; giving up", child.name,
                    caf::to_string(dm.reason), child.restarts.size() + 1, restart_window.count());
      shutdown(self, exit_failed);
      return;
    }
    child.restarts.push_back(now);
    spdlog::error("{} actor exited ({}); restarting it", child.name, caf::to_string(dm.reason));
    child.handle = child.start();
    self->monitor(child.handle);
    return;
  }
}

/// The admin server's counters by name.
counter_list admin_counters(const admin_server_stats& s) {
  auto v = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  return {{"connections", v(s.connections)},
          {"refused_connections", v(s.refused_connections)},
          {"evicted_connections", v(s.evicted_connections)},
          {"requests", v(s.requests)},
          {"malformed", v(s.malformed)},
          {"timeouts", v(s.timeouts)},
          {"auth_refused", v(s.auth_refused)}};
}

/// `starling stats`: the counters of the transport, the admin port and the sealer, read
/// here, and the membership core's, asked of the membership actor (null while it restarts).
caf::result<std::string> on_stats(supervisor_t* self) {
  auto& st = self->state;
  std::vector<counter_group> groups;
  groups.push_back({"transport", st.transport_counters->totals()});
  groups.push_back(
      {"admin", st.admin ? std::optional{admin_counters(st.admin->stats())} : std::nullopt});
  std::optional<counter_list> sealer;
  if (st.params.sealer) {
    const auto view = st.params.sealer->view();
    sealer = sealer_counter_list(view.counters);
    sealer->emplace_back("tracked_senders", view.tracked_senders);
  }
  groups.push_back({"sealer", std::move(sealer)});
  const auto& membership = st.children[st.membership_slot].handle;
  if (!membership) {
    groups.push_back({"membership", std::nullopt});
    return stats_json(groups);
  }
  auto rp = self->make_response_promise<std::string>();
  self->request(membership, std::chrono::seconds{5}, stats_atom::value)
      .then(
          [rp, groups](counter_list& counters) mutable {
            groups.push_back({"membership", std::move(counters)});
            rp.deliver(stats_json(groups));
          },
          [rp, groups](caf::error&) mutable {
            groups.push_back({"membership", std::nullopt});
            rp.deliver(stats_json(groups));
          });
  return rp;
}

void leave(supervisor_t* self) {
  auto& st = self->state;
  if (st.leaving || st.shutting_down)
    return;
  st.leaving = true;
  auto& membership = st.children[st.membership_slot].handle;
  if (!membership) {
    shutdown(self, exit_ok);
    return;
  }
  self->request(membership, std::chrono::seconds{5}, leave_atom::value)
      .then([=](left_atom) { shutdown(self, exit_ok); },
            [=](caf::error& err) {
              spdlog::warn("leave did not complete cleanly: {}", message_of(err));
              shutdown(self, exit_ok);
            });
}

caf::behavior supervisor(supervisor_t* self, supervisor_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  st.transport_counters = st.params.sealer ? st.params.sealer->drop_counters()
                                           : std::make_shared<transport_drop_counters>();
  self->set_down_handler([=](caf::down_msg& dm) { on_child_down(self, dm); });
  st.identity_slot = add_child(self, "identity", [=] { return start_identity(self); });
  st.membership_slot = add_child(self, "membership", [=] { return start_membership(self); });
  st.admin_slot = add_child(self, "admin", [=] { return start_admin(self); });
  return {
      [=](bound_atom, const std::string& address, std::uint16_t port) {
        auto& st = self->state;
        st.gossip_address = address;
        st.gossip_port = port;
        // The admin port opens once gossip is bound (announce_ready needs both).
        if (!st.admin && !st.ready && !st.shutting_down && start_admin_server(self))
          announce_ready(self);
      },
      [=](failed_atom, const std::string& msg) {
        spdlog::error("{}", msg);
        shutdown(self, exit_failed);
      },
      [=](joined_atom, bool ok, const std::string& msg) {
        if (!ok) {
          spdlog::error("{}", msg);
          shutdown(self, exit_failed);
        }
      },
      [=](peers_atom, std::vector<std::string>& peers, std::uint64_t incarnation) {
        auto& st = self->state;
        if (!peers.empty())
          st.last_peers = std::move(peers);
        st.last_incarnation = incarnation;
      },
      [=](admin_atom a, std::vector<std::string>& args) {
        return self->delegate(self->state.children[self->state.admin_slot].handle, a,
                              std::move(args));
      },
      [=](members_atom a) {
        return self->delegate(self->state.children[self->state.membership_slot].handle, a);
      },
      [=](stats_atom) { return on_stats(self); },
      [=](events_atom a) {
        return self->delegate(self->state.children[self->state.membership_slot].handle, a);
      },
      [=](keyring_atom, const std::string& op, const std::string& arg) -> caf::result<std::string> {
        auto answer = answer_keyring_request(self->state.params.sealer.get(), op, arg);
        if (!answer)
          return std::move(answer.error());
        return std::move(*answer);
      },
      [=](keyring_atom a, const std::string& op, const std::string& arg, mesh_atom m) {
        return self->delegate(self->state.children[self->state.identity_slot].handle, a, op, arg,
                              m);
      },
      [=](token_atom a, std::int64_t ttl, std::int64_t uses) {
        return self->delegate(self->state.children[self->state.identity_slot].handle, a, ttl, uses);
      },
      [=](revoke_atom a, const std::string& node, const std::string& key) {
        return self->delegate(self->state.children[self->state.identity_slot].handle, a, node, key);
      },
      [=](alive_atom a) {
        return self->delegate(self->state.children[self->state.membership_slot].handle, a);
      },
      [=](live_atom a) {
        return self->delegate(self->state.children[self->state.membership_slot].handle, a);
      },
      [=](ban_atom a, const std::string& name) {
        if (const auto& membership = self->state.children[self->state.membership_slot].handle)
          self->send(membership, a, name);
      },
      [=](certs_atom a) {
        return self->delegate(self->state.children[self->state.identity_slot].handle, a);
      },
      [=](admission_msg& msg) {
        const auto& identity = self->state.children[self->state.identity_slot].handle;
        if (!identity) {
          msg.reply(make_error(errc::unreachable, "the identity actor is restarting"));
          return;
        }
        self->send(identity, std::move(msg));
      },
      [=](forward_admission_msg& msg) {
        const auto& membership = self->state.children[self->state.membership_slot].handle;
        if (!membership) {
          msg.done(make_error(errc::unreachable, "the membership actor is restarting"));
          return;
        }
        self->send(membership, std::move(msg));
      },
      [=](leave_atom) { leave(self); },
      [=](stop_atom) {
        spdlog::warn("second signal: stopping without waiting for the leave to spread");
        shutdown(self, exit_ok);
      },
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_params params) {
  return sys.spawn(supervisor, std::move(params));
}

} // namespace starling::actors
