// The admin actor: the object operators' tools talk to (through caf::io::publish on the
// admin address). Thin: answers from the supervisor's children. Only atoms and strings
// cross the network (docs/decisions/0002).
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/supervisor_actor.hpp"

namespace starling::actors {

namespace {

caf::behavior admin_actor(caf::event_based_actor* self, caf::actor supervisor) {
  return {
    [=](members_atom a) { return self->delegate(supervisor, a); },
    [=](events_atom a) { return self->delegate(supervisor, a); },
    [=](leave_atom a) -> std::string {
      spdlog::info("leave requested through the admin actor");
      self->send(supervisor, a);
      return "ok";
    },
    [=](ping_atom) -> std::string { return "pong"; },
    [=](keyring_atom a, std::string& op, std::string& arg) {
      return self->delegate(supervisor, a, std::move(op), std::move(arg));
    },
  };
}

} // namespace

caf::actor spawn_admin_actor(caf::actor_system& sys, caf::actor supervisor) {
  return sys.spawn(admin_actor, std::move(supervisor));
}

} // namespace starling::actors
