#include "actors/proxy_controller.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/directory.hpp"
#include "actors/membership_actor.hpp"
#include "actors/routing_actor.hpp"
#include "actors/routing_relay.hpp"
#include "proxy/dataplane.hpp"

namespace starling::actors {

namespace {

using rewatch_atom = caf::atom_constant<caf::atom("pwatch")>;

struct proxy_controller_state {
  proxy_controller_params params;
  /// The snapshot in use (an empty table until the first arrives).
  gossip::snapshot_ptr routes = std::make_shared<const gossip::routing_snapshot>();
  /// Inbound listeners of the live members, this node's left out.
  proxy::inbound_map inbound;
  /// The routing actor watched; null while looking for one.
  caf::actor watched;
  /// Snapshots received (none yet: the routes above are a placeholder, not to be applied).
  std::uint64_t snapshots = 0;

  static inline const char* name = "proxy_controller";
};

using controller_t = caf::stateful_actor<proxy_controller_state>;

/// Hands the data plane the configuration of this moment.
void apply(controller_t* self) {
  auto& st = self->state;
  auto cfg = std::make_shared<proxy::dataplane_config>();
  cfg->routes = st.routes;
  cfg->inbound = st.inbound;
  st.params.dataplane->apply(std::move(cfg));
}

/// Watches the routing actor of the moment, or looks again a little later.
void watch_routing(controller_t* self) {
  auto& st = self->state;
  if (st.watched)
    return;
  auto routing = st.params.dir->find(role::routing);
  if (!routing) {
    self->delayed_send(self, st.params.rewatch, rewatch_atom::value);
    return;
  }
  st.watched = routing;
  self->monitor(routing);
  // As an applier: this node's own records reach the peers after this controller applied
  // them (it answers applied_atom), so a peer never routes here ahead of the data plane.
  self->send(routing, watch_atom::value, caf::actor_cast<caf::actor>(self), applied_atom::value);
}

caf::behavior proxy_controller(controller_t* self, proxy_controller_params params) {
  auto& st = self->state;
  st.params = std::move(params);
  for (auto& [node, address] : st.params.relay->inbounds())
    if (node != st.params.name)
      st.inbound.emplace(node, address);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.watched && dm.source == st.watched.address()) {
      // The routing actor restarted: keep serving the last snapshot, watch the next one.
      st.watched = nullptr;
      self->delayed_send(self, st.params.rewatch, rewatch_atom::value);
    }
  });
  // The routing actor answers a watch with its current snapshot at once: until then the
  // data plane keeps serving the configuration it has (a restarted controller's first).
  watch_routing(self);
  return {
      [=](snapshot_atom, const gossip::snapshot_ptr& snap) {
        auto& st = self->state;
        if (!snap)
          return;
        ++st.snapshots;
        st.routes = snap;
        apply(self);
      },
      [=](member_changes& changes) {
        auto& st = self->state;
        auto next = changes.full ? proxy::inbound_map{} : st.inbound;
        for (const auto& m : changes.members) {
          if (m.name == st.params.name)
            continue;
          if (m.live && !m.inbound.empty())
            next[m.name] = m.inbound;
          else
            next.erase(m.name);
        }
        if (next == st.inbound)
          return;
        st.inbound = std::move(next);
        // Before the first snapshot the routes are empty: wait for them rather than
        // hand the data plane an empty table over the one it serves.
        if (st.snapshots > 0)
          apply(self);
      },
      [=](rewatch_atom) { watch_routing(self); },
      // Answered after every snapshot sent before it was applied (mailbox order).
      [=](applied_atom) { return applied_atom::value; },
  };
}

} // namespace

caf::actor spawn_proxy_controller(caf::actor_system& sys, proxy_controller_params params) {
  return sys.spawn(proxy_controller, std::move(params));
}

} // namespace starling::actors
