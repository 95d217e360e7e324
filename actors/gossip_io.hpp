// The membership actor's view of the network: the few calls it makes on the gossip
// transport. The agent uses the real transport (make_transport_io); unit tests inject a fake.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <caf/expected.hpp>

#include "actors/views.hpp"
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
  /// Starts a push-pull (request type 1) with `address`; `done` runs once, on any thread.
  virtual void push_pull_with(const std::string& address, gossip::push_pull local,
                              std::function<void(caf::expected<gossip::push_pull>)> done) = 0;
  /// Sends an identity-channel request (request type 2) to the member `expected_peer` at
  /// `address` over TLS;
  /// `done` runs once, on any thread. The default refuses (no TLS in this network).
  virtual void admission_with(const std::string& address, std::string request,
                              std::string expected_peer,
                              std::function<void(caf::expected<std::string>)> done);
  /// Sends a request of `type` (registered in the callbacks the io was made with) to the
  /// member `expected_peer` at `address`; `done` runs once, on any thread, with the answer
  /// body or why not. The default refuses (this network carries no other request type).
  virtual void request(const std::string& address, gossip::request_type type, std::string body,
                       std::string expected_peer,
                       std::function<void(caf::expected<std::string>)> done);
};

/// What the gossip transport dropped that the keyring's counters do not show: input that
/// failed after the sealer opened it, or that never reached the sealer.
struct transport_drops {
  /// UDP datagrams that did not decode: bad protobuf after the sealer opened them (or, with
  /// no keyring, plain garbage), plus sealed datagrams malformed before opening (those also
  /// count in the keyring's `malformed`).
  std::uint64_t malformed = 0;
  /// UDP datagrams over gossip.max_datagram, dropped before opening.
  std::uint64_t oversized = 0;
  /// Push-pulls (opened, or under TLS) whose sender is not the member the peer's certificate
  /// names.
  std::uint64_t binding_refused = 0;
};

/// Sums the drop counters of the transports one agent runs in turn (a restarted membership
/// actor starts a new one, whose counters start at zero). Thread-safe.
class transport_drop_counters {
public:
  /// `t` is now the running transport; it must stay alive until detach(t).
  void attach(const gossip::transport* t);
  /// Adds the counters of `t` (stopped or about to be destroyed) to the totals.
  void detach(const gossip::transport* t);
  /// The totals, the running transport's counters included.
  [[nodiscard]] transport_drops snapshot() const;

  /// Every counter of gossip::transport_stats summed the same way, in declaration order
  /// (`inbound_buffered`, a gauge, is the running transport's only).
  [[nodiscard]] counter_list totals() const;

private:
  mutable std::mutex mutex_;
  /// The running transport, or null. Guarded by mutex_.
  const gossip::transport* current_ = nullptr;
  /// Counters of the transports detached so far. Guarded by mutex_.
  transport_drops past_;
  /// Every counter of the transports detached so far (see totals()). Guarded by mutex_.
  counter_list past_all_;
};

/// Starts the network side, wiring `callbacks` (which may run on any thread). The actor
/// calls it once at start; an error is fatal for the actor (e.g. the port is taken).
using gossip_io_factory =
    std::function<caf::expected<std::unique_ptr<gossip_io>>(gossip::transport_callbacks callbacks)>;

/// A factory starting a real gossip::transport with `cfg`; its drop counters are summed into
/// `drops` when given (shown by `starling keyring list`).
[[nodiscard]] gossip_io_factory
make_transport_io(gossip::transport_config cfg,
                  std::shared_ptr<transport_drop_counters> drops = nullptr);

} // namespace starling::actors
