// Ready-made helpers for extensions of the membership core (gossip/extension.hpp):
// - payload_queue: payloads to piggyback, each sent a bounded number of times (by default
//   the core's own N log n rule for member updates) to alive members, spread over distinct
//   ones, least-sent and newest first;
// - queued_extension: an extension made of a payload_queue and three callbacks, for a core
//   (or an actor's adapter) that only wants to publish payloads and hear the peers'.
// Pure and single-owner, like the membership core that calls them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/error.hpp>

#include "gossip/extension.hpp"
#include "gossip/types.hpp"

namespace starling::gossip {

/// Tunables of a payload_queue.
struct payload_queue_config {
  /// Payloads held at most; pushing more drops the most-sent (then oldest) one first.
  std::size_t max_entries = 1024;
  /// Each payload is sent this many times to alive members, spread over distinct ones (see
  /// payload_queue); 0 uses the core's limit for member updates (piggyback_request::
  /// retransmit_limit: retransmit_mult * ceil(log10(n + 1))).
  unsigned transmit_limit = 0;
};

/// Counters of a payload_queue.
struct payload_queue_stats {
  std::uint64_t pushed = 0;   ///< payloads accepted by push()
  std::uint64_t replaced = 0; ///< queued payloads replaced by a newer one with the same key
  std::uint64_t refused = 0;  ///< push() refusals (empty or oversized payload)
  std::uint64_t overflow = 0; ///< payloads dropped unsent-enough because the queue was full
  std::uint64_t sends = 0;    ///< payloads handed out by take()
  /// Of them, to a member the core does not hold alive (piggyback_request::to_state): not
  /// counted as transmissions.
  std::uint64_t uncounted = 0;
  std::uint64_t completed = 0; ///< payloads dropped as done (limit, or nobody alive to count)
};

/// Payloads of one extension kind waiting to be piggybacked. Picks the least-sent first,
/// then the newest; drops a payload once sent its transmit limit. Payloads with the same
/// non-empty key replace each other (news about one thing supersedes the older news).
///
/// What counts as a transmission (docs/membership.md, "Extension points"), by the state the
/// core holds the datagram's receiver in (piggyback_request::to_state):
/// - alive: counted;
/// - suspect: rides uncounted (a suspect may well be up, but the datagram is likely lost);
/// - dead, left or unknown: rides uncounted (the recently dead still hear gossip, so that a
///   wrongly killed member refutes).
/// Sends go in passes: within a pass a payload is given once to each live (alive or suspect)
/// member, so a second copy waits until every live member was given one. A pass that
/// reached no alive member ends it (nobody to count a send to), as does its limit of counted
/// sends. So the limit is spread over distinct alive members (over all of them, again and
/// again, in a cluster smaller than the limit: as many copies as before, for loss), whatever
/// else the datagrams went to: a probe, an indirect probe, a suspicion reminder and gossip,
/// all to members just cut off, can no longer use up a fresh payload before the one
/// reachable peer was sent it (tests/unit/gossip/extension_test.cpp, extension_cut).
/// Per payload this remembers the names given it in the current pass: at most the limit of
/// alive ones, plus the suspects met. A request without `to` (built by hand) counts every
/// send and is never refused a payload.
class payload_queue {
public:
  explicit payload_queue(extension_kind kind, payload_queue_config cfg = {});

  /// Queues `bytes`, replacing a queued payload with the same non-empty `key` (its send
  /// count restarts). Errors (counted in stats().refused): invalid_field for an empty
  /// payload or one over max_extension_payload_bytes (it could never be sent).
  [[nodiscard]] caf::error push(std::string bytes, std::string key = {});

  /// Takes payloads in priority order whose summed extension_payload_bound fits
  /// `req.budget`, at most `req.max_count`, none already taken for the same datagram
  /// (`req.datagram`, when not 0) nor given to a live `req.to` in the current pass. Each
  /// taken payload counts one send when `req.to` is empty or alive (see the class comment).
  [[nodiscard]] std::vector<std::string> take(const piggyback_request& req);

  /// Number of queued payloads.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  /// True when nothing is queued.
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  [[nodiscard]] const payload_queue_stats& stats() const noexcept { return stats_; }

private:
  struct entry {
    std::string bytes;
    std::string key;
    /// Counted sends; a take() that finds them at its limit drops the entry.
    unsigned transmits = 0;
    /// piggyback_request::datagram of its last send (0: never sent).
    std::uint64_t datagram = 0;
    /// `transmits` when the current pass began (pass_start <= transmits).
    unsigned pass_start = 0;
    /// The live members it was given to in the current pass: not given to them again until
    /// every live member has it. At most the limit of alive ones, plus the suspects met.
    std::vector<std::string> given_to;
  };
  /// Priority of an entry: (sends, id); ordered fewest sends first, then highest id (newest).
  using rank = std::pair<unsigned, std::uint64_t>;
  struct rank_order {
    bool operator()(const rank& a, const rank& b) const noexcept {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    }
  };

  /// Drops entry `id`; `completed`: it is done (counted in stats().completed).
  void erase(std::uint64_t id, bool completed = false);

  extension_kind kind_;
  payload_queue_config cfg_;
  /// Entries by insertion id (unique, growing). Invariant: exactly one rank per entry in
  /// order_, and by_key_ maps every non-empty key to its entry.
  std::map<std::uint64_t, entry> entries_;
  std::set<rank, rank_order> order_;
  std::unordered_map<std::string, std::uint64_t> by_key_;
  std::uint64_t next_id_ = 1;
  payload_queue_stats stats_;
};

/// An extension made of a payload_queue (the piggyback source) and callbacks for the rest.
/// Unset callbacks do nothing: no sink, no section.
class queued_extension : public extension {
public:
  /// Receives a peer's payload (see extension::on_payload).
  using payload_fn = std::function<extension_effects(std::string_view bytes,
                                                     const std::string& sender, time_point now)>;
  /// Builds this node's push-pull section (see extension::make_section).
  using section_fn = std::function<std::optional<std::string>(bool join)>;
  /// Merges a peer's push-pull section (see extension::on_section).
  using merge_fn = std::function<extension_effects(
      std::string_view bytes, const std::string& sender, bool join, time_point now)>;

  /// An extension of `kind` (the same kind it is registered under).
  explicit queued_extension(extension_kind kind, payload_queue_config cfg = {},
                            payload_fn on_payload = {}, section_fn make_section = {},
                            merge_fn on_section = {});

  /// The source's queue: push() payloads to publish them.
  [[nodiscard]] payload_queue& queue() noexcept { return queue_; }
  [[nodiscard]] const payload_queue& queue() const noexcept { return queue_; }

  [[nodiscard]] std::vector<std::string> take_payloads(const piggyback_request& req) override;
  [[nodiscard]] bool has_payloads() const override;
  [[nodiscard]] extension_effects on_payload(std::string_view bytes, const std::string& sender,
                                             time_point now) override;
  [[nodiscard]] std::optional<std::string> make_section(bool join) override;
  [[nodiscard]] extension_effects on_section(std::string_view bytes, const std::string& sender,
                                             bool join, time_point now) override;

private:
  payload_queue queue_;
  payload_fn on_payload_;
  section_fn make_section_;
  merge_fn on_section_;
};

} // namespace starling::gossip
