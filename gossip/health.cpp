#include "gossip/health.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "gossip/errc.hpp"

namespace starling::gossip {

namespace {

/// Longest instance key a scheduler accepts (a "service/id" is far shorter).
constexpr std::size_t max_key_bytes = 512;

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

caf::error refuse(std::string field, std::string why) {
  return make_error(errc::invalid_field,
                    "health check " + std::move(field) + ": " + std::move(why));
}

caf::error check_threshold(const char* field, std::uint32_t value) {
  if (value < 1 || value > health_max_threshold)
    return refuse(field, std::to_string(value) + " is out of range 1.." +
                             std::to_string(health_max_threshold));
  return {};
}

} // namespace

std::string_view to_string(health_check_kind k) noexcept {
  switch (k) {
  case health_check_kind::tcp:
    return "tcp";
  case health_check_kind::http:
    return "http";
  case health_check_kind::grpc:
    return "grpc";
  }
  return "unknown";
}

std::optional<health_check_kind> parse_health_check_kind(std::string_view name) {
  if (name == "tcp")
    return health_check_kind::tcp;
  if (name == "http")
    return health_check_kind::http;
  if (name == "grpc")
    return health_check_kind::grpc;
  return std::nullopt;
}

caf::error check_health_spec(const health_check_spec& spec) {
  if (spec.kind != health_check_kind::tcp && spec.kind != health_check_kind::http &&
      spec.kind != health_check_kind::grpc)
    return refuse("kind", std::to_string(static_cast<unsigned>(spec.kind)) +
                              " is not tcp (1), http (2) or grpc (3)");
  if (spec.kind == health_check_kind::grpc) {
    if (spec.grpc_service.size() > health_max_grpc_service_bytes)
      return refuse("grpc_service", std::to_string(spec.grpc_service.size()) +
                                        " bytes, more than " +
                                        std::to_string(health_max_grpc_service_bytes));
    for (std::size_t i = 0; i < spec.grpc_service.size(); ++i) {
      auto c = static_cast<unsigned char>(spec.grpc_service[i]);
      if (c <= 0x20 || c >= 0x7f)
        return refuse("grpc_service", "byte " + std::to_string(i) +
                                          " is a space, a control character or not ASCII");
    }
  } else if (!spec.grpc_service.empty()) {
    return refuse("grpc_service", "only for a grpc check");
  }
  if (spec.kind == health_check_kind::http) {
    if (spec.path.empty() || spec.path.front() != '/')
      return refuse("path", "must start with '/'");
    if (spec.path.size() > health_max_path_bytes)
      return refuse("path", std::to_string(spec.path.size()) + " bytes, more than " +
                                std::to_string(health_max_path_bytes));
    for (std::size_t i = 0; i < spec.path.size(); ++i) {
      auto c = static_cast<unsigned char>(spec.path[i]);
      if (c <= 0x20 || c >= 0x7f)
        return refuse("path", "byte " + std::to_string(i) +
                                  " is a space, a control character or not ASCII");
    }
    if (spec.expected_status != 0 && (spec.expected_status < 100 || spec.expected_status > 599))
      return refuse("expected_status", std::to_string(spec.expected_status) +
                                           " is neither 0 (any 2xx) nor in 100..599");
  }
  if (spec.interval < health_min_interval || spec.interval > health_max_interval)
    return refuse("interval", health_duration_text(spec.interval) + " is out of range " +
                                  health_duration_text(health_min_interval) + ".." +
                                  health_duration_text(health_max_interval));
  if (spec.timeout < health_min_timeout)
    return refuse("timeout", health_duration_text(spec.timeout) + " is below " +
                                 health_duration_text(health_min_timeout));
  if (spec.timeout > spec.interval)
    return refuse("timeout", health_duration_text(spec.timeout) + " is longer than the interval " +
                                 health_duration_text(spec.interval));
  if (auto err = check_threshold("rise", spec.rise))
    return err;
  if (auto err = check_threshold("fall", spec.fall))
    return err;
  return {};
}

std::string health_duration_text(duration d) {
  using namespace std::chrono;
  auto ns = duration_cast<nanoseconds>(d).count();
  if (ns == 0)
    return "0s";
  struct unit {
    std::int64_t ns;
    const char* suffix;
  };
  static constexpr unit units[] = {{3'600'000'000'000, "h"},
                                   {60'000'000'000, "min"},
                                   {1'000'000'000, "s"},
                                   {1'000'000, "ms"},
                                   {1'000, "us"}};
  for (const auto& u : units)
    if (ns % u.ns == 0)
      return std::to_string(ns / u.ns) + u.suffix;
  return std::to_string(ns) + "ns";
}

std::string bounded_result_text(std::string_view text) {
  if (text.size() <= health_max_result_bytes)
    return std::string{text};
  auto cut = health_max_result_bytes;
  // Back off over continuation bytes (10xxxxxx) so the cut falls on a character boundary.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
    --cut;
  return std::string{text.substr(0, cut)};
}

bool http_status_passes(std::uint16_t status, std::uint16_t expected) noexcept {
  if (expected == 0)
    return status >= 200 && status <= 299;
  return status == expected;
}

std::string http_status_text(std::uint16_t status, std::uint16_t expected) {
  auto text = "HTTP " + std::to_string(status);
  if (http_status_passes(status, expected))
    return text;
  return text + " (expected " + (expected == 0 ? std::string{"2xx"} : std::to_string(expected)) +
         ")";
}

http_status_scan scan_http_status_line(std::string_view bytes) noexcept {
  using outcome = http_status_scan::outcome;
  constexpr std::string_view prefix = "HTTP/1.";
  const auto n = bytes.size();
  // "HTTP/1." DIGIT SP
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (i >= n)
      return {};
    if (bytes[i] != prefix[i])
      return {outcome::malformed, 0};
  }
  if (n <= 7)
    return {};
  if (!is_digit(bytes[7]))
    return {outcome::malformed, 0};
  if (n <= 8)
    return {};
  if (bytes[8] != ' ')
    return {outcome::malformed, 0};
  // 3DIGIT, 100 to 599
  unsigned status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (i >= n)
      return {};
    if (!is_digit(bytes[i]) || (i == 9 && (bytes[i] < '1' || bytes[i] > '5')))
      return {outcome::malformed, 0};
    status = status * 10 + static_cast<unsigned>(bytes[i] - '0');
  }
  // [SP reason-phrase] CRLF
  std::size_t pos = 12;
  if (pos >= n)
    return {};
  if (bytes[pos] == ' ') {
    for (++pos; pos < n && bytes[pos] != '\r'; ++pos) {
      auto c = static_cast<unsigned char>(bytes[pos]);
      if (!(c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f)))
        return {outcome::malformed, 0};
    }
    if (pos >= n)
      return {};
  } else if (bytes[pos] != '\r') {
    return {outcome::malformed, 0};
  }
  if (pos + 1 >= n)
    return {};
  if (bytes[pos + 1] != '\n')
    return {outcome::malformed, 0};
  return {outcome::complete, static_cast<std::uint16_t>(status)};
}

health_tracker::health_tracker(std::uint32_t rise, std::uint32_t fall, time_point now) noexcept
    : rise_(std::clamp<std::uint32_t>(rise, 1, health_max_threshold)),
      fall_(std::clamp<std::uint32_t>(fall, 1, health_max_threshold)), last_change_(now) {}

bool health_tracker::on_result(bool ok, std::string_view text, time_point now) {
  last_result_ = bounded_result_text(text);
  last_checked_ = now;
  constexpr auto most = std::numeric_limits<std::uint32_t>::max();
  if (ok) {
    failures_ = 0;
    if (successes_ < most)
      ++successes_;
    if (status_ == health_status::failing && successes_ >= rise_) {
      status_ = health_status::passing;
      last_change_ = now;
      return true;
    }
  } else {
    successes_ = 0;
    if (failures_ < most)
      ++failures_;
    if (status_ == health_status::passing && failures_ >= fall_) {
      status_ = health_status::failing;
      last_change_ = now;
      return true;
    }
  }
  return false;
}

health_scheduler::health_scheduler(std::uint64_t seed) : rng_(seed) {}

duration health_scheduler::jitter(duration interval) {
  // The engine is fully specified by the standard (distributions are not): the same seed
  // gives the same offsets with every standard library. The modulo bias is below 2^-22 for
  // the longest interval (1 h in ns < 2^42).
  auto range = static_cast<std::uint64_t>(interval.count());
  if (range == 0)
    return duration::zero();
  return duration{static_cast<duration::rep>(rng_() % range)};
}

caf::error health_scheduler::add(const std::string& key, const health_check_spec& spec,
                                 time_point now) {
  auto refused = [this](caf::error err) {
    ++stats_.refused_adds;
    return err;
  };
  if (key.empty() || key.size() > max_key_bytes)
    return refused(make_error(errc::invalid_field,
                              "health check key: must be 1 to " + std::to_string(max_key_bytes) +
                                  " bytes (got " + std::to_string(key.size()) + ")"));
  if (auto err = check_health_spec(spec))
    return refused(std::move(err));
  auto it = checks_.find(key);
  if (it != checks_.end()) {
    if (it->second.spec == spec)
      return {};
    auto& c = it->second;
    c.spec = spec;
    c.tracker = health_tracker{spec.rise, spec.fall, now};
    c.next_run = now + jitter(spec.interval);
    c.stale = c.in_flight; // the old check's probe still runs: wait for it, ignore it
    return {};
  }
  if (checks_.size() >= health_max_checks)
    return refused(make_error(errc::busy, "health checks: " + std::to_string(health_max_checks) +
                                              " checks already held; not adding " + key));
  check c{spec, health_tracker{spec.rise, spec.fall, now}, now + jitter(spec.interval)};
  if (orphans_.erase(key) > 0) {
    c.in_flight = true;
    c.stale = true;
  }
  checks_.emplace(key, std::move(c));
  return {};
}

bool health_scheduler::remove(std::string_view key) {
  auto it = checks_.find(key);
  if (it == checks_.end())
    return false;
  if (it->second.in_flight && orphans_.size() < health_max_checks)
    orphans_.emplace(it->first);
  checks_.erase(it);
  return true;
}

std::vector<std::string> health_scheduler::due(time_point now) {
  std::vector<std::string> out;
  for (auto& [key, c] : checks_) {
    if (c.in_flight || c.next_run > now)
      continue;
    c.in_flight = true;
    // Keep the phase (start + k * interval) so a late timer does not make the check drift;
    // after a gap of more than one interval (a stalled owner), restart from now.
    c.next_run += c.spec.interval;
    if (c.next_run <= now)
      c.next_run = now + c.spec.interval;
    out.push_back(key);
  }
  stats_.probes_due += out.size();
  return out;
}

health_scheduler::check* health_scheduler::finish_probe(std::string_view key) {
  auto it = checks_.find(key);
  if (it == checks_.end()) {
    if (auto o = orphans_.find(key); o != orphans_.end())
      orphans_.erase(o);
    ++stats_.ignored_results;
    return nullptr;
  }
  auto& c = it->second;
  const bool expected = c.in_flight && !c.stale;
  c.in_flight = false;
  c.stale = false;
  if (!expected) {
    ++stats_.ignored_results;
    return nullptr;
  }
  return &c;
}

bool health_scheduler::on_result(std::string_view key, bool ok, std::string_view text,
                                 time_point now) {
  auto* c = finish_probe(key);
  if (c == nullptr)
    return false;
  ++stats_.results;
  if (!c->tracker.on_result(ok, text, now))
    return false;
  ++stats_.status_changes;
  return true;
}

bool health_scheduler::on_skipped(std::string_view key) {
  if (finish_probe(key) == nullptr)
    return false;
  ++stats_.skipped;
  return true;
}

std::optional<time_point> health_scheduler::next_deadline() const noexcept {
  std::optional<time_point> out;
  for (const auto& [key, c] : checks_)
    if (!c.in_flight && (!out || c.next_run < *out))
      out = c.next_run;
  return out;
}

const health_tracker* health_scheduler::tracker(std::string_view key) const {
  auto it = checks_.find(key);
  return it != checks_.end() ? &it->second.tracker : nullptr;
}

const health_check_spec* health_scheduler::spec(std::string_view key) const {
  auto it = checks_.find(key);
  return it != checks_.end() ? &it->second.spec : nullptr;
}

health_status health_scheduler::status(std::string_view key) const {
  auto it = checks_.find(key);
  return it != checks_.end() ? it->second.tracker.status() : health_status::none;
}

bool health_scheduler::is_in_flight(std::string_view key) const {
  auto it = checks_.find(key);
  return it != checks_.end() && it->second.in_flight;
}

std::optional<time_point> health_scheduler::next_run(std::string_view key) const {
  auto it = checks_.find(key);
  if (it == checks_.end())
    return std::nullopt;
  return it->second.next_run;
}

} // namespace starling::gossip
