#include "actors/directory.hpp"

namespace starling::actors {

std::string_view role_name(role r) noexcept {
  switch (r) {
  case role::supervisor:
    return "supervisor";
  case role::membership:
    return "membership";
  case role::identity:
    return "identity";
  case role::routing:
    return "routing";
  case role::proxy:
    return "proxy";
  case role::admin:
    return "admin";
  }
  return "unknown";
}

void directory::bind(role r, const caf::actor& actor) {
  std::lock_guard lock{mutex_};
  slots_[static_cast<std::size_t>(r)] = caf::actor_cast<caf::weak_actor_ptr>(actor);
}

void directory::unbind(role r, const caf::actor_addr& actor) {
  std::lock_guard lock{mutex_};
  auto& slot = slots_[static_cast<std::size_t>(r)];
  if (slot && slot.get() == actor.get())
    slot.reset();
}

void directory::clear() {
  std::lock_guard lock{mutex_};
  for (auto& slot : slots_)
    slot.reset();
}

caf::actor directory::find(role r) const {
  caf::strong_actor_ptr strong;
  {
    std::lock_guard lock{mutex_};
    strong = slots_[static_cast<std::size_t>(r)].lock();
  }
  return caf::actor_cast<caf::actor>(std::move(strong));
}

} // namespace starling::actors
