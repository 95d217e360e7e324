// Per-request version choice for one service: header-match routes first, then a weighted
// split over versions, else any version. Independent of the HTTP codec: headers come in as
// a span of name/value views. A pure core: the random source is passed in.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/random.hpp"

namespace starling::proxy {

/// One request header as the codec saw it (views into the codec's buffer).
struct header_field {
  std::string_view name;
  std::string_view value;
};

/// A route by header: requests carrying header `name` (ASCII case-insensitive, as HTTP
/// field names are) with exactly `value` (case-sensitive) go to `version`.
struct header_route {
  std::string name;
  std::string value;
  std::string version;
};

/// One version's share of a weighted split, in percent.
struct version_weight {
  std::string version;
  std::uint32_t weight = 0;
};

/// The traffic policy of one service (from the routing table's splits and route rules).
struct traffic_policy {
  /// Tried in order; the first match wins.
  std::vector<header_route> routes;
  /// Weighted split; weights should sum to 100 (validate() says when they do not). Empty:
  /// no split, every version serves.
  std::vector<version_weight> split;
};

/// What is wrong with a traffic policy (config validation at snapshot time).
enum class traffic_policy_error : std::uint8_t {
  /// The split's weights do not sum to 100.
  split_weights_not_100 = 1,
  /// A header route has an empty header name.
  empty_header_name,
  /// A version appears twice in the split.
  duplicate_split_version,
};

/// Stable snake_case name of an error (logs, metric label).
[[nodiscard]] std::string_view to_string(traffic_policy_error e) noexcept;

/// The first problem of `policy`, or nothing when it is valid. choose_version() copes with
/// an invalid policy anyway (the data plane never aborts on config): a split that does not
/// sum to 100 is applied in proportion to its weights, one whose weights are all 0 counts as
/// no split, and a route with an empty name never matches.
[[nodiscard]] std::optional<traffic_policy_error> validate(const traffic_policy& policy) noexcept;

/// Why a version was chosen (metric label, access log).
enum class version_source : std::uint8_t {
  /// A header route matched.
  header_route = 1,
  /// Drawn from the weighted split.
  split,
  /// No route matched and there is no split: any version.
  any,
};

/// Stable snake_case name of a source.
[[nodiscard]] std::string_view to_string(version_source s) noexcept;

/// The outcome of choose_version.
struct version_choice {
  /// How the version was chosen.
  version_source source = version_source::any;
  /// The chosen version (a view into the policy, valid as long as it is); empty when
  /// `source` is `any`.
  std::string_view version;
  /// Whether a particular version was chosen (false means any version may serve).
  [[nodiscard]] bool is_specific() const noexcept { return source != version_source::any; }
};

/// Chooses the version that serves one request: the first header route whose header is
/// among `headers` with its value, else a draw from the split (one rng.uniform call), else
/// any version. O(routes x headers + split).
[[nodiscard]] version_choice choose_version(const traffic_policy& policy,
                                            std::span<const header_field> headers,
                                            random_source& rng) noexcept;

} // namespace starling::proxy
