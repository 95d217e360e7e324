#include "proxy/retry_budget.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace starling::proxy {

namespace {

constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  return a > u64_max - b ? u64_max : a + b;
}

// floor(x / y) for y > 0, also for negative x (clock epochs may be negative).
std::int64_t floor_div(std::int64_t x, std::int64_t y) noexcept {
  const std::int64_t q = x / y;
  return (x % y != 0 && x < 0) ? q - 1 : q;
}

std::size_t slot_of(std::int64_t epoch) noexcept {
  const auto n = static_cast<std::int64_t>(retry_budget::bucket_count);
  return static_cast<std::size_t>(((epoch % n) + n) % n);
}

} // namespace

retry_budget::retry_budget(retry_budget_config cfg) noexcept : cfg_(cfg) {
  const auto ttl = cfg_.ttl.count();
  if (ttl > 0) {
    width_ = std::max<duration::rep>(1, ttl / static_cast<duration::rep>(bucket_count));
    // min_retries_per_second * ttl in seconds, in 128 bits: cannot overflow before the clamp.
    const auto ticks_per_second = static_cast<unsigned __int128>(duration::period::den) /
                                  static_cast<unsigned __int128>(duration::period::num);
    const auto reserve = static_cast<unsigned __int128>(cfg_.min_retries_per_second) *
                         static_cast<unsigned __int128>(ttl) / ticks_per_second;
    reserve_ = reserve > u64_max ? u64_max : static_cast<std::uint64_t>(reserve);
  }
}

retry_budget::bucket* retry_budget::advance(time_point now) noexcept {
  if (width_ == 0)
    return nullptr;
  const std::int64_t epoch = floor_div(now.time_since_epoch().count(), width_);
  if (!started_) {
    started_ = true;
    head_ = epoch;
    ring_[slot_of(epoch)] = bucket{epoch, 0, 0};
  } else if (epoch > head_) {
    // Clear the buckets between the old head and the new one (at most the whole ring).
    const auto n = static_cast<std::int64_t>(bucket_count);
    // epoch > head_, so the unsigned difference is exact even across the whole int64 range.
    const auto gap = static_cast<std::uint64_t>(epoch) - static_cast<std::uint64_t>(head_);
    const std::int64_t from = gap >= bucket_count ? epoch - n + 1 : head_ + 1;
    for (std::int64_t e = from; e <= epoch; ++e)
      ring_[slot_of(e)] = bucket{e, 0, 0};
    head_ = epoch;
  }
  // epoch < head_ (time went backwards): counted in the newest bucket.
  return &ring_[slot_of(head_)];
}

retry_budget_window retry_budget::sums() const noexcept {
  retry_budget_window w;
  if (width_ == 0 || !started_)
    return w;
  for (const auto& b : ring_) {
    if (b.epoch > head_ - static_cast<std::int64_t>(bucket_count) && b.epoch <= head_) {
      w.requests = saturating_add(w.requests, b.requests);
      w.retries = saturating_add(w.retries, b.retries);
    }
  }
  const double ratio = std::isnan(cfg_.retry_ratio) ? 0.0 : std::max(0.0, cfg_.retry_ratio);
  const double earned = std::floor(ratio * static_cast<double>(w.requests));
  // 2^64 as a double; anything at or above it does not fit (and converting it would be UB).
  const std::uint64_t by_ratio =
      earned >= 18446744073709551616.0 ? u64_max : static_cast<std::uint64_t>(earned);
  w.allowance = saturating_add(by_ratio, reserve_);
  return w;
}

void retry_budget::on_request(time_point now, std::uint64_t count) noexcept {
  if (auto* b = advance(now))
    b->requests = saturating_add(b->requests, count);
}

bool retry_budget::try_retry(time_point now) noexcept {
  bucket* b = advance(now);
  const auto w = sums();
  if (b == nullptr || w.retries >= w.allowance) {
    refused_ = saturating_add(refused_, 1);
    return false;
  }
  b->retries = saturating_add(b->retries, 1);
  allowed_ = saturating_add(allowed_, 1);
  return true;
}

retry_budget_window retry_budget::window(time_point now) noexcept {
  advance(now);
  return sums();
}

bool is_idempotent(std::string_view method) noexcept {
  constexpr std::string_view idempotent[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
  return std::find(std::begin(idempotent), std::end(idempotent), method) != std::end(idempotent);
}

bool retryable(std::string_view method, attempt_failure failure) noexcept {
  switch (failure) {
  case attempt_failure::connect_failure:
    return true;
  case attempt_failure::reset:
  case attempt_failure::http_5xx:
    return is_idempotent(method);
  }
  return false;
}

std::string_view to_string(retry_verdict v) noexcept {
  switch (v) {
  case retry_verdict::retry:
    return "retry";
  case retry_verdict::not_retryable:
    return "not_retryable";
  case retry_verdict::attempts_exhausted:
    return "attempts_exhausted";
  case retry_verdict::budget_exhausted:
    return "budget_exhausted";
  }
  return "unknown";
}

request_retries::request_retries(const retry_policy& policy) noexcept
    : max_retries_(policy.max_retries), backoff_(policy.backoff) {}

retry_decision request_retries::on_failure(std::string_view method, attempt_failure failure,
                                           retry_budget& budget, random_source& rng,
                                           time_point now) noexcept {
  if (!retryable(method, failure))
    return {retry_verdict::not_retryable, {}};
  if (retries_ >= max_retries_)
    return {retry_verdict::attempts_exhausted, {}};
  if (!budget.try_retry(now))
    return {retry_verdict::budget_exhausted, {}};
  ++retries_;
  return {retry_verdict::retry, backoff_.next_with(rng)};
}

} // namespace starling::proxy
