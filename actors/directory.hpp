// Where the agent's actors find each other. The supervisor binds each child it (re)starts
// under its role; the others look the role up at the moment they send, so a restarted
// child is reached at its new address without anyone re-wiring, and no message passes
// through the supervisor on its way (docs/architecture.md, "Actors and who talks to whom").
//
// A new module (the routing actor, the proxy controller) adds a role here and a child slot
// in the supervisor; the supervisor's behaviour gains no branch for its messages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_control_block.hpp>

namespace starling::actors {

/// The jobs an agent's actors do. One actor per role at a time.
enum class role : std::uint8_t {
  supervisor,
  membership,
  identity,
  admin,
  routing,
  proxy,
};

/// Number of roles (the size of the directory's table).
inline constexpr std::size_t role_count = 6;

/// "supervisor", "membership", ...: for logs and errors.
[[nodiscard]] std::string_view role_name(role r) noexcept;

/// The role table of one agent. Thread-safe: the supervisor binds from its thread, every
/// actor (and the admin port's thread) looks up from its own. Holds weak references: the
/// supervisor owns its children, the table only finds them, so an actor that exited is
/// never kept alive or reached through it.
class directory {
public:
  /// `actor` now fills `r` (replacing whoever did).
  void bind(role r, const caf::actor& actor);

  /// `r` is empty again, if `actor` still fills it (a late "down" of an old instance
  /// does not unbind its replacement).
  void unbind(role r, const caf::actor_addr& actor);

  /// Empties every role (the supervisor's shutdown).
  void clear();

  /// The actor filling `r`; null while it restarts, before it started, after shutdown.
  [[nodiscard]] caf::actor find(role r) const;

private:
  mutable std::mutex mutex_;
  std::array<caf::weak_actor_ptr, role_count> slots_;
};

} // namespace starling::actors
