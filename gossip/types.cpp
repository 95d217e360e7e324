#include "gossip/types.hpp"

namespace starling::gossip {

std::string_view to_string(member_state s) noexcept {
  switch (s) {
  case member_state::alive:
    return "alive";
  case member_state::suspect:
    return "suspect";
  case member_state::dead:
    return "dead";
  case member_state::left:
    return "left";
  }
  // Values outside the enum can only come from a cast of untrusted input.
  return "unknown";
}

std::string_view to_string(member_event_kind k) noexcept {
  switch (k) {
  case member_event_kind::joined:
    return "joined";
  case member_event_kind::updated:
    return "updated";
  case member_event_kind::suspected:
    return "suspected";
  case member_event_kind::recovered:
    return "recovered";
  case member_event_kind::failed:
    return "failed";
  case member_event_kind::left:
    return "left";
  case member_event_kind::reaped:
    return "reaped";
  }
  return "unknown";
}

} // namespace starling::gossip
