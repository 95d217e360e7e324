// Per-upstream circuit breaking in Envoy's sense: caps on what one upstream service may hold
// at once (connections, requests waiting for a connection, active requests). When a cap is
// reached new work of that kind is refused (the proxy answers 503 `overloaded`, or a request
// beyond the connection cap waits while the pending cap allows). Retries have no breaker
// cap: the retry budget (proxy/retry_budget.hpp) is what bounds them, as in Linkerd (Envoy's
// max_retries, 3 in parallel, is what a budget replaces there too). A pure core: counters.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace starling::proxy {

/// What a circuit breaker caps. Values index arrays: keep them dense from 0.
enum class breaker_resource : std::uint8_t {
  /// Open upstream connections.
  connections = 0,
  /// Requests waiting for a connection from the pool.
  pending_requests,
  /// Requests sent and not yet answered.
  active_requests,
};

/// Number of breaker_resource values.
inline constexpr std::size_t breaker_resource_count = 3;

/// Stable snake_case name of a resource: the `resource` label of the refusal metric and the
/// reason in `x-starling-error` ("connections", "pending_requests", ...).
[[nodiscard]] std::string_view to_string(breaker_resource r) noexcept;

/// Parses a name produced by to_string (config keys).
[[nodiscard]] std::optional<breaker_resource> breaker_resource_from(std::string_view name) noexcept;

/// Caps per upstream service on one I/O thread. Envoy's defaults (1024 each): high enough
/// not to bite a healthy service. A cap of 0 refuses every request of that kind.
struct circuit_breaker_config {
  std::uint64_t max_connections = 1024;
  std::uint64_t max_pending_requests = 1024;
  std::uint64_t max_active_requests = 1024;
};

/// The circuit breaker of one upstream service, owned by one I/O thread (no locks). Every
/// successful try_acquire(r) must be matched by exactly one release(r).
class circuit_breaker {
public:
  explicit circuit_breaker(circuit_breaker_config cfg = {}) noexcept;

  /// Takes one unit of `r` if it is below its cap and returns true; otherwise counts a
  /// refusal of `r` and returns false.
  [[nodiscard]] bool try_acquire(breaker_resource r) noexcept;

  /// Gives back one unit of `r`. Returns false (and changes nothing) when none is held: a
  /// double release is a caller bug, counted in unmatched_releases() rather than wrapping.
  bool release(breaker_resource r) noexcept;

  /// Units of `r` held now; above the cap only after reconfigure() lowered it.
  [[nodiscard]] std::uint64_t in_use(breaker_resource r) const noexcept;

  /// Whether `r` is at its cap, i.e. the next try_acquire(r) will be refused (a gauge).
  [[nodiscard]] bool is_open(breaker_resource r) const noexcept;

  /// Refusals of `r` since construction; saturates at 2^64 - 1.
  [[nodiscard]] std::uint64_t refusals(breaker_resource r) const noexcept;

  /// release() calls with nothing held, since construction; saturates.
  [[nodiscard]] std::uint64_t unmatched_releases() const noexcept { return unmatched_; }

  /// The cap of `r`.
  [[nodiscard]] std::uint64_t limit(breaker_resource r) const noexcept;

  /// Installs new caps (from a new snapshot). Units already held stay held, even above a
  /// lowered cap; new ones are refused until usage falls below it.
  void reconfigure(circuit_breaker_config cfg) noexcept;

private:
  /// Caps, by resource.
  std::array<std::uint64_t, breaker_resource_count> limits_{};
  /// Units held, by resource; only try_acquire raises them, and only while below the cap.
  std::array<std::uint64_t, breaker_resource_count> in_use_{};
  /// Refusals, by resource; saturating.
  std::array<std::uint64_t, breaker_resource_count> refusals_{};
  /// Releases with nothing held; saturating.
  std::uint64_t unmatched_ = 0;
};

/// The equal-part rule for sharing a capped resource among holders that may not trust one
/// another: while fewer than `line` units are held in all (`total`), anyone gets one more;
/// from there on, a holder of `held` units gets one more only while `held` is below an
/// equal part of the line among `holders` (every holder of a unit, this one counted even
/// when it holds none yet), never below `floor`. The few that take all they can then keep
/// what they hold but get no more, and one that holds less than its part still gets room.
[[nodiscard]] bool within_equal_part(std::uint64_t total, std::uint64_t line, std::uint64_t held,
                                     std::uint64_t holders, std::uint64_t floor) noexcept;

/// What each caller (a peer node, by its certificate) holds of one resource of a breaker
/// on the inbound side, where the callers are other members, so that no caller takes the
/// whole cap from the others: one caller holds at most half of the cap (rounded up); once
/// three quarters of the cap are held, a caller gets more only below an equal part of those
/// three quarters (within_equal_part, floor one unit). A member that turned hostile leaves
/// at least half of a service's cap to the others; its requests end (answered or timed out)
/// and it gets back no more than its part while others wait. Owned by one I/O thread.
class caller_shares {
public:
  /// Takes a unit for `caller` when its share allows, `total` units of a cap of `cap`
  /// being held by everyone now (the breaker's count, callers without identity included);
  /// false, changing nothing, when it does not. Every successful call must be matched by
  /// exactly one give_back(caller).
  [[nodiscard]] bool try_take(const std::string& caller, std::uint64_t cap, std::uint64_t total);
  /// Gives back a unit try_take gave `caller`; nothing when it holds none.
  void give_back(const std::string& caller) noexcept;
  /// Units `caller` holds.
  [[nodiscard]] std::uint64_t held(const std::string& caller) const;
  /// Callers holding a unit.
  [[nodiscard]] std::size_t callers() const noexcept { return held_.size(); }

private:
  /// Units by caller; entries go at zero.
  std::unordered_map<std::string, std::uint64_t> held_;
};

} // namespace starling::proxy
