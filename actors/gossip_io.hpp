// The membership actor's view of the network: the few calls it makes on the gossip
// transport. The agent uses the real transport (make_transport_io); unit tests inject a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "gossip/transport.hpp"
#include "gossip/types.hpp"

namespace starling::actors {

/// Network side of the membership actor. Called from the actor only; implementations
/// must not block.
class gossip_io {
public:
  virtual ~gossip_io() = default;
  /// The address other members reach us at ("host:port").
  [[nodiscard]] virtual std::string advertise_address() const = 0;
  /// The bound gossip port.
  [[nodiscard]] virtual std::uint16_t port() const = 0;
  /// Sends one datagram.
  virtual void send(const std::string& address, const gossip::packet& msg) = 0;
  /// Starts a push-pull with `address`; `done` runs once, on any thread.
  virtual void push_pull_with(const std::string& address, gossip::push_pull local,
                              std::function<void(caf::expected<gossip::push_pull>)> done) = 0;
  /// Sends an admission request to the member `expected_peer` at `address` over TLS;
  /// `done` runs once, on any thread. The default refuses (no TLS in this network).
  virtual void admission_with(const std::string& address, std::string request,
                              std::string expected_peer,
                              std::function<void(caf::expected<std::string>)> done);
};

/// Starts the network side, wiring `callbacks` (which may run on any thread). The actor
/// calls it once at start; an error is fatal for the actor (e.g. the port is taken).
using gossip_io_factory = std::function<caf::expected<std::unique_ptr<gossip_io>>(
  gossip::transport_callbacks callbacks)>;

/// A factory starting a real gossip::transport with `cfg`.
[[nodiscard]] gossip_io_factory make_transport_io(gossip::transport_config cfg);

} // namespace starling::actors
