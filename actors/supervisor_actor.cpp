#include "actors/supervisor_actor.hpp"

#include <unistd.h>

#include <deque>
#include <functional>
#include <iostream>
#include <random>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/commands.hpp"
#include "actors/errc.hpp"
#include "actors/keyring_sealer.hpp"
#include "actors/membership_actor.hpp"
#include "actors/node_files.hpp"

namespace starling::actors {

namespace {

using steady = std::chrono::steady_clock;

/// More restarts of one child than this within restart_window: give up, exit 1.
constexpr std::size_t max_restarts = 5;
constexpr auto restart_window = std::chrono::seconds{60};

/// Publishing the admin actor again after a restart: attempts and pause (the old
/// listener may still be closing).
constexpr int republish_attempts = 20;
constexpr auto republish_pause = std::chrono::milliseconds{250};

/// One supervised child. Adding a child = adding a slot with its start function.
struct child_slot {
  /// For logs: "membership", "admin", ...
  std::string name;
  /// The running instance; held here, since an actor nobody holds exits as unreachable.
  caf::actor handle;
  /// Spawns a fresh instance (and wires it: publish, ...). Called at start and on restart.
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
  /// Membership actor starts so far (0 before the first).
  unsigned membership_starts = 0;
  /// Advertised gossip address and bound port, once the membership actor reported them.
  std::string gossip_address;
  std::uint16_t gossip_port = 0;
  /// Actual admin port once published; 0 before.
  std::uint16_t admin_port = 0;
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
  if (st.admin_port != 0)
    self->send(self->home_system().middleman().actor_handle(), caf::close_atom::value,
               st.admin_port);
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
  agent_info info{cfg.name, static_cast<long>(::getpid()), st.gossip_address,
                  admin.to_string()};
  if (auto err = write_agent_json(cfg.data_dir, info)) {
    spdlog::error("{}", message_of(err));
    shutdown(self, exit_failed);
    return;
  }
  std::cout << "starling agent " << cfg.name << " ready: gossip " << st.gossip_address
            << ", admin " << info.admin << std::endl;
  spdlog::info("ready: gossip {}, admin {}, data dir {}", st.gossip_address, info.admin,
               cfg.data_dir.string());
}

void publish_admin(supervisor_t* self, caf::actor admin, int attempts_left) {
  auto& st = self->state;
  const auto& cfg = st.params.cfg;
  auto port = st.admin_port != 0 ? st.admin_port : cfg.admin.port;
  auto mm = self->home_system().middleman().actor_handle();
  self
    ->request(mm, std::chrono::seconds{10}, caf::publish_atom::value, port,
              caf::actor_cast<caf::strong_actor_ptr>(admin), std::set<std::string>{},
              cfg.admin.host, true)
    .then(
      [=](std::uint16_t actual) {
        auto& st = self->state;
        st.admin_port = actual;
        spdlog::debug("admin actor published on {}:{}", cfg.admin.host, actual);
        announce_ready(self);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        if (st.shutting_down)
          return;
        if (st.admin_port != 0 && attempts_left > 0) {
          spdlog::debug("publishing the admin actor again failed ({}); retrying",
                        message_of(err));
          self->delayed_send(self, republish_pause, caf::publish_atom::value, attempts_left);
          return;
        }
        spdlog::error("cannot listen on admin address {}: {}", cfg.admin.to_string(),
                      message_of(err));
        shutdown(self, exit_failed);
      });
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
  p.make_io = make_transport_io(std::move(tc));
  return spawn_membership_actor(self->home_system(), caf::actor_cast<caf::actor>(self),
                                std::move(p));
}

caf::actor start_admin(supervisor_t* self) {
  auto admin = spawn_admin_actor(self->home_system(), caf::actor_cast<caf::actor>(self));
  // At first start, wait for the gossip address before publishing (announce_ready needs
  // both); on a restart publish right away on the same port.
  if (self->state.admin_port != 0) {
    self->send(self->home_system().middleman().actor_handle(), caf::close_atom::value,
               self->state.admin_port);
    publish_admin(self, admin, republish_attempts);
  }
  return admin;
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
                    caf::to_string(dm.reason), child.restarts.size() + 1,
                    restart_window.count());
      shutdown(self, exit_failed);
      return;
    }
    child.restarts.push_back(now);
    spdlog::error("{} actor exited ({}); restarting it", child.name,
                  caf::to_string(dm.reason));
    child.handle = child.start();
    self->monitor(child.handle);
    return;
  }
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
  self->set_down_handler([=](caf::down_msg& dm) { on_child_down(self, dm); });
  st.membership_slot = add_child(self, "membership", [=] { return start_membership(self); });
  st.admin_slot = add_child(self, "admin", [=] { return start_admin(self); });
  return {
    [=](bound_atom, const std::string& address, std::uint16_t port) {
      auto& st = self->state;
      st.gossip_address = address;
      st.gossip_port = port;
      if (st.admin_port == 0 && !st.ready)
        publish_admin(self, st.children[st.admin_slot].handle, 0);
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
    [=](caf::publish_atom, int attempts_left) {
      auto& st = self->state;
      if (auto& admin = st.children[st.admin_slot].handle; admin && !st.shutting_down)
        publish_admin(self, admin, attempts_left - 1);
    },
    [=](members_atom a) {
      return self->delegate(self->state.children[self->state.membership_slot].handle, a);
    },
    [=](events_atom a) {
      return self->delegate(self->state.children[self->state.membership_slot].handle, a);
    },
    [=](keyring_atom, const std::string& op, const std::string& arg) -> std::string {
      return answer_keyring_request(self->state.params.sealer.get(), op, arg);
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
