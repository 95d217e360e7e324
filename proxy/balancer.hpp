// Load balancing over one service's endpoints: smooth weighted round robin, least-request
// (power of two choices) and peak-EWMA (power of two choices over latency x load, Linkerd's
// default). A pure core: a balancer is a function of the snapshot it was given, its own
// per-endpoint state and the random source passed to pick(); time is passed in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/endpoints.hpp"
#include "proxy/random.hpp"

namespace starling::proxy {

/// Which policy a balancer applies.
enum class balancer_kind : std::uint8_t {
  /// Smooth weighted round robin (nginx's): deterministic, interleaves heavy endpoints.
  round_robin = 1,
  /// Two candidates drawn in proportion to weight; the one with fewer active requests per
  /// unit of weight wins.
  least_request,
  /// Two distinct candidates drawn uniformly; the lower ewma * (active + 1) / weight wins.
  peak_ewma,
};

/// Stable snake_case name of a policy (config values, metric labels).
[[nodiscard]] std::string_view to_string(balancer_kind kind) noexcept;

/// How a balancer is set up. Fixed at construction.
struct balancer_config {
  /// The policy. Peak-EWMA is the default, as in Linkerd: it reacts to slow endpoints, not
  /// only to busy ones.
  balancer_kind kind = balancer_kind::peak_ewma;
  /// Peak-EWMA's time constant tau: an observation's influence falls to 1/e after this much
  /// time. 10 s as in Linkerd and Finagle. Zero or negative: no smoothing (last sample wins).
  duration decay = std::chrono::seconds{10};
  /// Peak-EWMA's latency estimate for an endpoint with no observation yet (30 ms, Linkerd's
  /// default): a new endpoint is tried, but not preferred over ones known to be fast.
  duration default_rtt = std::chrono::milliseconds{30};
};

/// What a single pick may choose from, besides healthy endpoints of non-zero weight.
struct pick_filter {
  /// Endpoints to skip, aligned with the snapshot (for example outlier ejections).
  exclusion_mask excluded = {};
  /// Only endpoints of this version (from a traffic split); no value = any version.
  std::optional<std::string_view> version = std::nullopt;
};

/// A load balancer for one service on one I/O thread. Holds per-endpoint state (active
/// requests, round-robin position, latency estimate) that carries over by endpoint id when a
/// new snapshot is installed. Not thread-safe by design: every I/O thread owns its own
/// balancers, so plain members suffice.
///
/// Indices are positions in the snapshot last given to update(). A request that started
/// under an earlier snapshot finishes with the index index_of(its endpoint id) gives now;
/// on_start/on_finish with an out-of-range index do nothing.
class balancer {
public:
  explicit balancer(balancer_config cfg = {});

  /// Installs a new snapshot of the service's endpoints (added, removed or reweighted).
  /// State of endpoints whose id was in the previous snapshot carries over; new ones start
  /// fresh (no active requests, default latency). If an id appears twice, only its first
  /// occurrence inherits state. Allocates; call when a snapshot arrives, not per request.
  void update(std::span<const endpoint> endpoints);

  /// Chooses an endpoint for one request: an index into the snapshot, or nothing when no
  /// endpoint is healthy, of non-zero weight, not excluded and of the requested version.
  /// Does not count the request as started: call on_start() once it is sent. O(number of
  /// endpoints); does not allocate after the first picks.
  [[nodiscard]] std::optional<std::size_t> pick(random_source& rng, time_point now,
                                                const pick_filter& filter = {});

  /// A request to endpoint `idx` started (counts as active until on_finish).
  void on_start(std::size_t idx) noexcept;

  /// A request to endpoint `idx` finished after `latency` (negative is taken as zero), at
  /// `now`. Updates the active count (never below zero) and the latency estimate.
  void on_finish(std::size_t idx, duration latency, time_point now) noexcept;

  /// Position of the endpoint with this id in the current snapshot.
  [[nodiscard]] std::optional<std::size_t> index_of(std::string_view id) const noexcept;

  /// Number of endpoints in the current snapshot.
  [[nodiscard]] std::size_t size() const noexcept { return slots_.size(); }

  /// Active (started, unfinished) requests of endpoint `idx`; 0 out of range.
  [[nodiscard]] std::uint64_t active(std::size_t idx) const noexcept;

  /// Peak-EWMA latency estimate of endpoint `idx` as of `now` (decayed since its last
  /// observation), or default_rtt before any observation. Zero out of range.
  [[nodiscard]] duration latency_estimate(std::size_t idx, time_point now) const noexcept;

  [[nodiscard]] const balancer_config& config() const noexcept { return cfg_; }

private:
  /// Per-endpoint state, one per snapshot entry, same order.
  struct slot {
    /// The endpoint's id; key of the carry-over.
    std::string id;
    /// Weight from the snapshot; 0 = never picked.
    std::uint32_t weight = 0;
    /// Health from the snapshot.
    bool healthy = false;
    /// Index into versions_ of the endpoint's version.
    std::uint32_t version = 0;
    /// Started, unfinished requests; saturates at both ends.
    std::uint64_t active = 0;
    /// Smooth round robin's current weight. Bounded by the sum of weights times the number
    /// of endpoints, far from int64 limits (weights are 32-bit).
    std::int64_t current = 0;
    /// Peak-EWMA latency estimate in nanoseconds, valid when observed.
    double ewma_ns = 0.0;
    /// Time of the last observation folded into ewma_ns.
    time_point stamp{};
    /// Whether any latency was observed; before that the estimate is default_rtt.
    bool observed = false;
  };

  [[nodiscard]] bool is_eligible(std::size_t idx, const pick_filter& filter,
                                 std::optional<std::uint32_t> version) const noexcept;
  [[nodiscard]] double estimate_ns(const slot& s, time_point now) const noexcept;
  [[nodiscard]] std::size_t pick_round_robin() noexcept;
  [[nodiscard]] std::size_t pick_least_request(random_source& rng) noexcept;
  [[nodiscard]] std::size_t pick_peak_ewma(random_source& rng, time_point now) noexcept;

  /// The configuration; fixed at construction.
  balancer_config cfg_;
  /// State of the current snapshot's endpoints, in snapshot order.
  std::vector<slot> slots_;
  /// Distinct versions of the current snapshot; slot::version indexes it.
  std::vector<std::string> versions_;
  /// Scratch: eligible slot indices of the pick in progress (kept to avoid allocating).
  std::vector<std::uint32_t> eligible_;
};

} // namespace starling::proxy
