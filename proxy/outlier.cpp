#include "proxy/outlier.hpp"

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace starling::proxy {

namespace {

template <class T> void saturating_increment(T& x) noexcept {
  if (x != std::numeric_limits<T>::max())
    ++x;
}

} // namespace

outlier_detector::outlier_detector(outlier_config cfg) : cfg_(cfg) {}

void outlier_detector::update(std::span<const endpoint> endpoints) {
  std::unordered_map<std::string_view, std::size_t> previous;
  previous.reserve(slots_.size());
  for (std::size_t i = 0; i < slots_.size(); ++i)
    previous.emplace(slots_[i].id, i);
  std::vector<slot> next;
  std::vector<std::uint8_t> ejected;
  next.reserve(endpoints.size());
  ejected.reserve(endpoints.size());
  ejected_count_ = 0;
  next_expiry_ = time_point::max();
  for (const auto& ep : endpoints) {
    slot s;
    std::uint8_t flag = 0;
    if (auto it = previous.find(ep.id); it != previous.end()) {
      s = std::move(slots_[it->second]);
      flag = ejected_[it->second];
      previous.erase(it); // a duplicate id starts fresh
    }
    s.id = ep.id;
    if (flag != 0) {
      ++ejected_count_;
      next_expiry_ = std::min(next_expiry_, s.until);
    }
    next.push_back(std::move(s));
    ejected.push_back(flag);
  }
  // An ejection carried over may now exceed max_ejection_percent of a smaller service; it
  // still runs its course (a fresh one is refused until the count falls back under).
  slots_ = std::move(next);
  ejected_ = std::move(ejected);
}

std::size_t outlier_detector::max_ejected(std::size_t n) const noexcept {
  if (cfg_.max_ejection_percent == 0 || n < 2)
    return 0;
  const std::uint64_t percent = std::min<std::uint32_t>(cfg_.max_ejection_percent, 100);
  const auto cap = static_cast<std::size_t>(static_cast<std::uint64_t>(n) / 100 * percent +
                                            static_cast<std::uint64_t>(n) % 100 * percent / 100);
  return std::max<std::size_t>(cap, 1);
}

duration outlier_detector::ejection_time(std::uint32_t times) const noexcept {
  const auto base = cfg_.base_ejection_time.count();
  const auto cap = std::max(cfg_.max_ejection_time.count(), duration::rep{0});
  if (base <= 0 || times == 0)
    return duration::zero();
  if (static_cast<duration::rep>(times) > cap / base)
    return duration{cap};
  return duration{std::min(base * static_cast<duration::rep>(times), cap)};
}

bool outlier_detector::try_eject(std::size_t idx, time_point now) noexcept {
  if (ejected_count_ + 1 > max_ejected(slots_.size())) {
    saturating_increment(refused_);
    return false;
  }
  slot& s = slots_[idx];
  saturating_increment(s.times_ejected);
  s.until = saturating_add(now, ejection_time(s.times_ejected));
  s.consecutive_5xx = 0;
  s.consecutive_connect = 0;
  ejected_[idx] = 1;
  ++ejected_count_;
  next_expiry_ = std::min(next_expiry_, s.until);
  saturating_increment(ejections_);
  return true;
}

void outlier_detector::refresh(time_point now) noexcept {
  if (now < next_expiry_)
    return;
  next_expiry_ = time_point::max();
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (ejected_[i] == 0)
      continue;
    slot& s = slots_[i];
    if (s.until <= now) {
      ejected_[i] = 0;
      --ejected_count_;
      s.returned = s.until;
      s.until = time_point::min();
    } else {
      next_expiry_ = std::min(next_expiry_, s.until);
    }
  }
}

bool outlier_detector::on_result(std::size_t idx, attempt_result result, time_point now) noexcept {
  refresh(now);
  if (idx >= slots_.size() || ejected_[idx] != 0)
    return false;
  slot& s = slots_[idx];
  switch (result) {
  case attempt_result::success:
    s.consecutive_5xx = 0;
    s.consecutive_connect = 0;
    // Forgiven once it has served well for the longest ejection time since returning.
    if (s.times_ejected > 0 && s.returned != time_point::min() &&
        now - s.returned >= cfg_.max_ejection_time)
      s.times_ejected = 0;
    return false;
  case attempt_result::http_5xx:
    s.consecutive_connect = 0; // it answered: the connection works
    saturating_increment(s.consecutive_5xx);
    return cfg_.consecutive_5xx > 0 && s.consecutive_5xx >= cfg_.consecutive_5xx &&
           try_eject(idx, now);
  case attempt_result::connect_failure:
    saturating_increment(s.consecutive_connect);
    return cfg_.consecutive_connect_failures > 0 &&
           s.consecutive_connect >= cfg_.consecutive_connect_failures && try_eject(idx, now);
  }
  return false;
}

exclusion_mask outlier_detector::ejection_mask(time_point now) noexcept {
  refresh(now);
  return ejected_;
}

bool outlier_detector::is_ejected(std::size_t idx) const noexcept {
  return idx < ejected_.size() && ejected_[idx] != 0;
}

time_point outlier_detector::ejected_until(std::size_t idx) const noexcept {
  return is_ejected(idx) ? slots_[idx].until : time_point::min();
}

std::uint32_t outlier_detector::times_ejected(std::size_t idx) const noexcept {
  return idx < slots_.size() ? slots_[idx].times_ejected : 0;
}

} // namespace starling::proxy
