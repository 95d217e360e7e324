#include "proxy/traffic_split.hpp"

#include "proxy/http_text.hpp"

namespace starling::proxy {

std::string_view to_string(traffic_policy_error e) noexcept {
  switch (e) {
  case traffic_policy_error::split_weights_not_100:
    return "split_weights_not_100";
  case traffic_policy_error::empty_header_name:
    return "empty_header_name";
  case traffic_policy_error::duplicate_split_version:
    return "duplicate_split_version";
  }
  return "unknown";
}

std::string_view to_string(version_source s) noexcept {
  switch (s) {
  case version_source::header_route:
    return "header_route";
  case version_source::split:
    return "split";
  case version_source::any:
    return "any";
  }
  return "unknown";
}

std::optional<traffic_policy_error> validate(const traffic_policy& policy) noexcept {
  for (const auto& r : policy.routes)
    if (r.name.empty())
      return traffic_policy_error::empty_header_name;
  if (policy.split.empty())
    return std::nullopt;
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < policy.split.size(); ++i) {
    sum += policy.split[i].weight; // at most 2^32 entries of < 2^32: no overflow
    for (std::size_t j = 0; j < i; ++j)
      if (policy.split[j].version == policy.split[i].version)
        return traffic_policy_error::duplicate_split_version;
  }
  if (sum != 100)
    return traffic_policy_error::split_weights_not_100;
  return std::nullopt;
}

version_choice choose_version(const traffic_policy& policy, std::span<const header_field> headers,
                              random_source& rng) noexcept {
  for (const auto& route : policy.routes) {
    if (route.name.empty())
      continue;
    for (const auto& h : headers)
      if (h.value == route.value && text::iequals(h.name, route.name))
        return {version_source::header_route, route.version};
  }
  std::uint64_t total = 0;
  for (const auto& v : policy.split)
    total += v.weight;
  if (total == 0)
    return {};
  std::uint64_t r = rng.uniform(total);
  for (const auto& v : policy.split) {
    if (r < v.weight)
      return {version_source::split, v.version};
    r -= v.weight;
  }
  return {}; // unreachable: r < total
}

} // namespace starling::proxy
