#include "gossip/payload_queue.hpp"

#include <algorithm>
#include <iterator>

#include "gossip/errc.hpp"

namespace starling::gossip {

namespace {

/// Once a datagram holds something, take() gives up after this many queued payloads in a
/// row did not fit (as broadcast_queue does): the datagram is as good as full.
constexpr unsigned max_consecutive_misses = 16;

} // namespace

payload_queue::payload_queue(extension_kind kind, payload_queue_config cfg)
    : kind_(kind), cfg_(cfg) {
  // A queue that can hold nothing would refuse every payload silently: hold at least one.
  if (cfg_.max_entries == 0)
    cfg_.max_entries = 1;
}

caf::error payload_queue::push(std::string bytes, std::string key) {
  if (bytes.empty() || bytes.size() > max_extension_payload_bytes) {
    ++stats_.refused;
    return make_error(errc::invalid_field, "extension payload of " + std::to_string(bytes.size()) +
                                               " bytes (1 to " +
                                               std::to_string(max_extension_payload_bytes) + ")");
  }
  if (!key.empty()) {
    if (auto it = by_key_.find(key); it != by_key_.end()) {
      erase(it->second);
      ++stats_.replaced;
    }
  }
  while (entries_.size() >= cfg_.max_entries) {
    // The last rank is the most-sent, then the oldest: the payload that did the most good.
    auto worst = std::prev(order_.end())->second;
    erase(worst);
    ++stats_.overflow;
  }
  const auto id = next_id_++;
  if (!key.empty())
    by_key_.emplace(key, id);
  entries_.emplace(id, entry{std::move(bytes), std::move(key), 0, 0, 0, {}});
  order_.emplace(0u, id);
  ++stats_.pushed;
  return {};
}

std::vector<std::string> payload_queue::take(const piggyback_request& req) {
  std::vector<std::string> out;
  const unsigned limit =
      std::max(1u, cfg_.transmit_limit ? cfg_.transmit_limit : req.retransmit_limit);
  // How the datagram counts (see the class comment). Without a `to`, every send counts.
  const bool named = !req.to.empty();
  const bool live = req.to_state == member_state::alive || req.to_state == member_state::suspect;
  const bool counts = !named || req.to_state == member_state::alive;
  auto given = [&](const entry& e) {
    return std::find(e.given_to.begin(), e.given_to.end(), req.to) != e.given_to.end();
  };
  // Every member live now but us was given it in this pass (live_members counts us), or
  // there is none. One given it that is no longer live does not count.
  auto everyone = [&](const entry& e) {
    if (!named || e.given_to.size() + 1 < req.live_members)
      return false; // the common case at scale: no lookup
    std::size_t live_given = e.given_to.size();
    if (req.is_live)
      live_given = static_cast<std::size_t>(
          std::count_if(e.given_to.begin(), e.given_to.end(),
                        [&](const std::string& name) { return req.is_live(name); }));
    return live_given + 1 >= req.live_members;
  };
  // At the end of a pass (every live member has it): true when the entry is done, because
  // the pass reached no alive member (there is nobody to count a send to) or its count is
  // reached. Otherwise a new pass starts: every live member may be given it again.
  auto end_pass = [&](entry& e) {
    if (e.transmits == e.pass_start || e.transmits >= limit)
      return true;
    e.given_to.clear();
    e.pass_start = e.transmits;
    return false;
  };
  std::vector<std::uint64_t> taken;
  std::vector<std::uint64_t> done; // met here, and done
  std::size_t used = 0;
  unsigned misses = 0;
  for (auto it = order_.begin();
       it != order_.end() && out.size() < req.max_count && misses < max_consecutive_misses; ++it) {
    auto& e = entries_.at(it->second);
    if (req.datagram != 0 && e.datagram == req.datagram)
      continue; // already in this datagram (the core asks twice per datagram)
    if (named && live && given(e)) {
      // That member has it from us in this pass. Unless every live member has it by now
      // (some died since they were given it), it waits for the others.
      if (!everyone(e))
        continue;
      if (end_pass(e)) {
        done.push_back(it->second);
        continue;
      }
    }
    const auto cost = extension_payload_bound(kind_, e.bytes.size());
    if (used + cost > req.budget) {
      if (!out.empty())
        ++misses;
      continue;
    }
    misses = 0;
    used += cost;
    out.push_back(e.bytes);
    taken.push_back(it->second);
  }
  for (auto id : done)
    erase(id, true);
  for (auto id : taken) {
    auto& e = entries_.at(id);
    e.datagram = req.datagram;
    ++stats_.sends;
    if (!counts)
      ++stats_.uncounted;
    if (named && live)
      e.given_to.emplace_back(req.to);
    if (counts) {
      order_.erase(rank{e.transmits, id});
      order_.emplace(++e.transmits, id);
    }
    if (e.transmits >= limit || (everyone(e) && end_pass(e)))
      erase(id, true);
  }
  return out;
}

void payload_queue::erase(std::uint64_t id, bool completed) {
  auto it = entries_.find(id);
  if (it == entries_.end())
    return;
  if (completed)
    ++stats_.completed;
  order_.erase(rank{it->second.transmits, id});
  if (!it->second.key.empty())
    by_key_.erase(it->second.key);
  entries_.erase(it);
}

queued_extension::queued_extension(extension_kind kind, payload_queue_config cfg,
                                   payload_fn on_payload, section_fn make_section,
                                   merge_fn on_section)
    : queue_(kind, cfg), on_payload_(std::move(on_payload)), make_section_(std::move(make_section)),
      on_section_(std::move(on_section)) {}

std::vector<std::string> queued_extension::take_payloads(const piggyback_request& req) {
  return queue_.take(req);
}

bool queued_extension::has_payloads() const { return !queue_.empty(); }

extension_effects queued_extension::on_payload(std::string_view bytes, const std::string& sender,
                                               time_point now) {
  return on_payload_ ? on_payload_(bytes, sender, now) : extension_effects{};
}

std::optional<std::string> queued_extension::make_section(bool join) {
  return make_section_ ? make_section_(join) : std::nullopt;
}

extension_effects queued_extension::on_section(std::string_view bytes, const std::string& sender,
                                               bool join, time_point now) {
  return on_section_ ? on_section_(bytes, sender, join, now) : extension_effects{};
}

} // namespace starling::gossip
