// Health checks of the service instances a node owns (issue 16), as a pure core: what a check
// is (health_check_spec and its validation), how results turn into a status (health_tracker:
// HAProxy's rise/fall), and when each check runs (health_scheduler: seeded first-run jitter,
// one probe in flight per check). No I/O, no clock reads, no threads: time comes in as `now`,
// randomness from a seed. The probes themselves run in the adapter
// gossip/discovery/health_prober.hpp; the routing actor drives both and publishes the status
// in its routing snapshots (gossip/routing_snapshot.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "gossip/routing_snapshot.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

/// What a health check does.
enum class health_check_kind : std::uint8_t {
  tcp = 1,  ///< connect to the instance's address; passes when the connection opens
  http = 2, ///< HTTP/1.1 GET of `path`; passes on the expected status
  /// gRPC's health checking protocol (grpc.health.v1.Health/Check about `grpc_service`)
  /// over plain-text HTTP/2; passes when the instance answers SERVING
  grpc = 3,
};

/// "tcp" / "http" / "grpc" ("unknown" for a value outside the enum).
[[nodiscard]] std::string_view to_string(health_check_kind k) noexcept;

/// The kind named "tcp", "http" or "grpc" (as config and the command line spell it);
/// nullopt for anything else.
[[nodiscard]] std::optional<health_check_kind> parse_health_check_kind(std::string_view name);

/// Smallest interval between two runs of one check.
inline constexpr duration health_min_interval = std::chrono::seconds{1};
/// Largest interval between two runs of one check.
inline constexpr duration health_max_interval = std::chrono::hours{1};
/// Smallest timeout of one run.
inline constexpr duration health_min_timeout = std::chrono::milliseconds{100};
/// Largest rise and fall threshold (the smallest is 1).
inline constexpr std::uint32_t health_max_threshold = 10;
/// Longest HTTP check path, in bytes.
inline constexpr std::size_t health_max_path_bytes = 256;
/// Longest service name a gRPC check asks about, in bytes.
inline constexpr std::size_t health_max_grpc_service_bytes = 256;
/// Longest result text a tracker keeps, in bytes (longer ones are cut at a UTF-8 boundary).
inline constexpr std::size_t health_max_result_bytes = 200;
/// Most checks one scheduler holds (one per instance a node owns).
inline constexpr std::size_t health_max_checks = 1024;

/// How one instance is checked. Plain value; check_health_spec() says whether it is usable.
struct health_check_spec {
  health_check_kind kind = health_check_kind::tcp;
  /// HTTP only (ignored for tcp): request target, starting with '/', at most
  /// health_max_path_bytes, printable ASCII without spaces.
  std::string path = "/";
  /// HTTP only (ignored for tcp): 0 accepts any 2xx; otherwise the exact status expected
  /// (100 to 599).
  std::uint16_t expected_status = 0;
  /// gRPC only (must be empty otherwise): the service the Health/Check call asks about
  /// (HealthCheckRequest.service), e.g. "echo.Echo"; empty asks about the whole server. At
  /// most health_max_grpc_service_bytes of printable ASCII without spaces.
  std::string grpc_service;
  /// Time between the starts of two runs: health_min_interval to health_max_interval.
  duration interval = std::chrono::seconds{10};
  /// Bound of one run (connect, and for HTTP and gRPC also write and read): at least
  /// health_min_timeout, at most `interval`.
  duration timeout = std::chrono::seconds{2};
  /// Consecutive passes that turn a failing check passing (1 to health_max_threshold).
  std::uint32_t rise = 2;
  /// Consecutive failures that turn a passing check failing (1 to health_max_threshold).
  std::uint32_t fall = 3;

  friend bool operator==(const health_check_spec&, const health_check_spec&) = default;
};

/// Checks `spec`: an empty error when usable, else errc::invalid_field with a message naming
/// the field and the bound it breaks ("health check timeout: 50ms is below 100ms").
[[nodiscard]] caf::error check_health_spec(const health_check_spec& spec);

/// A duration as checks print it: the largest unit that divides it exactly ("2s", "200ms",
/// "1h", "1500us"; "0s" for zero). Used in result and error texts.
[[nodiscard]] std::string health_duration_text(duration d);

/// `text` cut to at most health_max_result_bytes, never inside a UTF-8 sequence.
[[nodiscard]] std::string bounded_result_text(std::string_view text);

/// Whether HTTP status `status` passes a check expecting `expected` (0: any 2xx).
[[nodiscard]] bool http_status_passes(std::uint16_t status, std::uint16_t expected) noexcept;

/// The result text of an HTTP check that got `status`: "HTTP 200" when it passes, else
/// "HTTP 503 (expected 2xx)" or "HTTP 404 (expected 204)".
[[nodiscard]] std::string http_status_text(std::uint16_t status, std::uint16_t expected);

/// Outcome of scanning the first bytes of an HTTP response for its status line.
struct http_status_scan {
  /// What the bytes scanned so far say.
  enum class outcome : std::uint8_t {
    incomplete = 1, ///< a valid prefix of a status line: read more
    complete = 2,   ///< a whole, valid status line: `status` holds the code
    malformed = 3,  ///< cannot be the start of an HTTP/1.x response
  };
  outcome result = outcome::incomplete;
  /// The status code (100 to 599) when `result` is complete; else 0.
  std::uint16_t status = 0;
};

/// Scans `bytes` (the response read so far, from its first byte) for a status line, strictly:
/// "HTTP/1." DIGIT SP 3DIGIT, then SP and a reason phrase (tabs, spaces, visible ASCII,
/// bytes >= 0x80) or nothing, then CRLF; the code 100 to 599. Bytes after the CRLF are not
/// looked at. Never reads past `bytes`; the caller bounds how much it reads.
[[nodiscard]] http_status_scan scan_http_status_line(std::string_view bytes) noexcept;

/// Rise/fall state of one check. Starts failing with "not checked yet"; turns passing after
/// `rise` consecutive passes, and a passing one turns failing after `fall` consecutive
/// failures. Pure; single owner.
class health_tracker {
public:
  /// A check created at `now` with thresholds `rise` and `fall` (clamped to 1 to
  /// health_max_threshold).
  health_tracker(std::uint32_t rise, std::uint32_t fall, time_point now) noexcept;

  /// Records one run's result at `now`; `text` is kept, bounded (bounded_result_text).
  /// Returns true when the status changed.
  bool on_result(bool ok, std::string_view text, time_point now);

  /// passing or failing (never none: a tracker exists only for a configured check).
  [[nodiscard]] health_status status() const noexcept { return status_; }
  /// Text of the last result ("not checked yet" before the first).
  [[nodiscard]] const std::string& last_result() const noexcept { return last_result_; }
  /// Passes in a row up to the last result (0 when it failed).
  [[nodiscard]] std::uint32_t consecutive_successes() const noexcept { return successes_; }
  /// Failures in a row up to the last result (0 when it passed).
  [[nodiscard]] std::uint32_t consecutive_failures() const noexcept { return failures_; }
  /// When the status last changed (the creation time until it first changes).
  [[nodiscard]] time_point last_change() const noexcept { return last_change_; }
  /// When the last result came in; nullopt before the first.
  [[nodiscard]] std::optional<time_point> last_checked() const noexcept { return last_checked_; }
  /// Passes that turn it passing.
  [[nodiscard]] std::uint32_t rise() const noexcept { return rise_; }
  /// Failures that turn it failing.
  [[nodiscard]] std::uint32_t fall() const noexcept { return fall_; }

private:
  /// In 1..health_max_threshold.
  std::uint32_t rise_;
  std::uint32_t fall_;
  health_status status_ = health_status::failing;
  /// At most one of successes_ and failures_ is non-zero; both saturate.
  std::uint32_t successes_ = 0;
  std::uint32_t failures_ = 0;
  /// At most health_max_result_bytes.
  std::string last_result_ = "not checked yet";
  time_point last_change_;
  std::optional<time_point> last_checked_;
};

/// Counters of a health_scheduler.
struct health_scheduler_stats {
  std::uint64_t probes_due = 0;     ///< keys handed out by due()
  std::uint64_t results = 0;        ///< results recorded by a tracker
  std::uint64_t status_changes = 0; ///< results that changed a status
  std::uint64_t skipped = 0;        ///< probes ended by on_skipped()
  /// Results (and skips) ignored: for an unknown or removed key, a key with no probe in
  /// flight, or a check replaced while its probe ran.
  std::uint64_t ignored_results = 0;
  std::uint64_t refused_adds = 0; ///< add() refusals (invalid spec, bad key, full)
};

/// The health checks of one node, keyed by instance ("service/id"): when each runs, which
/// are in flight, and each one's tracker. A check's first run comes at a seeded random
/// offset within its interval (so many checks added together do not fire together); then
/// every interval after the previous start. A check whose probe is in flight (handed out by
/// due(), result not yet reported) is never due. Pure and single-owner (the routing actor).
class health_scheduler {
public:
  /// An empty scheduler whose first-run jitter comes from `seed`.
  explicit health_scheduler(std::uint64_t seed);

  /// Adds the check of `key` at `now`, or replaces it. An identical spec keeps the check as
  /// it is (schedule and tracker). A different one starts a new check (failing, "not checked
  /// yet", a new jittered first run); a probe of the old one still in flight keeps the key
  /// busy and its result is ignored. Errors (counted in refused_adds): invalid_field for an
  /// invalid spec (check_health_spec) or an empty key or one over 512 bytes; busy when
  /// health_max_checks checks are held and `key` is not one of them.
  [[nodiscard]] caf::error add(const std::string& key, const health_check_spec& spec,
                               time_point now);

  /// Removes the check of `key`; a result for it still in flight is ignored. False when
  /// there was none.
  bool remove(std::string_view key);

  /// The keys whose probe starts now (their next run is at or before `now` and none is in
  /// flight), sorted; each is in flight until on_result() reports it. The caller starts one
  /// probe per key.
  [[nodiscard]] std::vector<std::string> due(time_point now);

  /// Reports the result of the probe of `key` handed out by due(): the check is no longer
  /// in flight, and its tracker records the result. Returns true when the status changed.
  /// Ignored (counted, returns false) for an unknown or removed key, a key with no probe in
  /// flight, or a check replaced while its probe ran.
  bool on_result(std::string_view key, bool ok, std::string_view text, time_point now);

  /// Ends the probe of `key` handed out by due() without a result, when the prober, not the
  /// instance, failed it (probe_result::inconclusive: too many in flight, prober stopped): the
  /// check is no longer in flight, its tracker is unchanged, and it runs again at its next
  /// run. Returns true when a probe was in flight; otherwise ignored like on_result().
  bool on_skipped(std::string_view key);

  /// The earliest next run of a check not in flight (when to call due() again); nullopt
  /// when there is none (no checks, or all in flight: on_result() comes first).
  [[nodiscard]] std::optional<time_point> next_deadline() const noexcept;

  /// The tracker of `key`, or null. Valid until the next add() or remove() of that key.
  [[nodiscard]] const health_tracker* tracker(std::string_view key) const;
  /// The spec of `key`, or null. Valid until the next add() or remove() of that key.
  [[nodiscard]] const health_check_spec* spec(std::string_view key) const;
  /// The status of `key`: health_status::none when it has no check.
  [[nodiscard]] health_status status(std::string_view key) const;
  /// True when a probe of `key` is in flight.
  [[nodiscard]] bool is_in_flight(std::string_view key) const;
  /// When `key` runs next (nullopt for an unknown key); meaningless while in flight.
  [[nodiscard]] std::optional<time_point> next_run(std::string_view key) const;
  /// Number of checks held.
  [[nodiscard]] std::size_t size() const noexcept { return checks_.size(); }
  /// Counters.
  [[nodiscard]] const health_scheduler_stats& stats() const noexcept { return stats_; }

private:
  struct check {
    health_check_spec spec;
    health_tracker tracker;
    /// Scheduled start of the next run (when not in flight).
    time_point next_run;
    /// A probe handed out by due() has not reported yet.
    bool in_flight = false;
    /// The in-flight probe belongs to a replaced check (or to a removed one of the same
    /// key): its result is ignored. Implies in_flight.
    bool stale = false;
  };

  /// A random offset in [0, interval).
  duration jitter(duration interval);

  /// Ends the probe in flight of `key` and returns its check, or null (counted in
  /// ignored_results) when no probe of the current check was expected.
  check* finish_probe(std::string_view key);

  std::mt19937_64 rng_;
  std::map<std::string, check, std::less<>> checks_;
  /// Keys removed while a probe of theirs was in flight (at most health_max_checks): a
  /// check added again under such a key waits for, and ignores, that result.
  std::set<std::string, std::less<>> orphans_;
  health_scheduler_stats stats_;
};

} // namespace starling::gossip
