// The identity actor: the node's certificate and trust (for `starling certs`), and on issuer
// nodes the issuer desk (`starling token create`, admissions). Serves the admission requests
// that arrive on the gossip port: an issuer admits with its own tokens; any other node
// forwards the request to the token's issuer through the membership actor (docs/identity.md,
// "Admission").
//
// Protocol (local):
//   (token_atom, std::int64_t ttl_seconds, std::int64_t uses) -> std::string   the token
//   (certs_atom) -> std::string   the certs JSON view (actors/certs_view.hpp)
//   (admission_msg)               answers through the message's responder
//   sends (forward_admission_msg) to `supervisor`, which hands it to the membership actor.
#pragma once

#include <filesystem>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/node_identity.hpp"

namespace starling::actors {

class keyring_sealer;

struct identity_params {
  /// Null: the node runs without an identity (certs shows that; admissions are refused).
  std::shared_ptr<const node_identity> id;
  /// The gossip keyring handed to admitted nodes; null: none.
  std::shared_ptr<keyring_sealer> sealer;
  /// Where the issuer's token store lives: <data-dir>/tokens.
  std::filesystem::path tokens_file;
};

/// Spawns the identity actor. An issuer whose token store cannot be opened makes the actor
/// exit with the error (the supervisor restarts it, then gives up).
[[nodiscard]] caf::actor spawn_identity_actor(caf::actor_system& sys, caf::actor supervisor,
                                              identity_params params);

} // namespace starling::actors
