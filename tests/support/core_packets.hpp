// Building blocks of single-core membership unit tests: a start time, member addresses,
// alive updates and the packets a peer sends. Header-only; tests only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gossip/membership.hpp"

namespace starling::gossip::test_support {

/// Where the tests' manual clocks start.
inline const time_point t0 = time_point{} + std::chrono::hours{1};

/// Address of member `name` ("name:7946").
inline std::string addr(const std::string& name) { return name + ":7946"; }

/// `name` alive at incarnation `inc` with `tags`, at addr(name).
inline member_update alive(const std::string& name, std::uint64_t inc = 0, tag_map tags = {}) {
  return member_update{member_state::alive, name, addr(name), inc, std::move(tags), {}};
}

/// A gossip-only packet (an ack with seq 0) from `sender` carrying `updates` and
/// `extensions`.
inline packet gossip_from(const std::string& sender, std::vector<member_update> updates,
                          std::vector<extension_payload> extensions = {}) {
  packet p;
  p.kind = packet_kind::ack;
  p.seq = 0;
  p.sender = sender;
  p.sender_address = addr(sender);
  p.updates = std::move(updates);
  p.extensions = std::move(extensions);
  return p;
}

/// A ping from `sender` with sequence `seq` for `target` (empty: no target).
inline packet ping_from(const std::string& sender, std::uint32_t seq, const std::string& target) {
  packet p;
  p.kind = packet_kind::ping;
  p.seq = seq;
  p.sender = sender;
  p.sender_address = addr(sender);
  p.target = target;
  return p;
}

} // namespace starling::gossip::test_support
