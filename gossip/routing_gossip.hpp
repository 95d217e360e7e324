// How the routing table spreads: the glue between a routing_table and the membership core's
// extension points (gossip/extension.hpp), without owning either the table's thread or the
// payload queue. Fresh records are encoded one per payload and handed to the caller to
// queue (each then rides N log n datagrams); a received record that changes the table is
// handed on the same way (epidemic spread). Each push-pull carries a section with the
// table's digest and, while the table is small (inline_section_max), its records and their
// signers' chains, so two nodes converge in one exchange. A larger table's section is its
// digest alone: each side then pulls the records of the ranges that differ from the other
// (a routing_pull, request type 3 on the gossip TCP port), so an exchange moves what
// differs, not the whole table. A record whose signer's key is unknown waits, and
// the sender (who had to know the key to accept it) is asked for a push-pull, whose section
// brings the chain.
//
// Two owners: routing_extension (below) calls it directly from the membership core (the
// simulator, tests); the agent's routing actor calls it with the bytes its relay extension
// forwards from the membership actor. Pure: wall time is passed in.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gossip/extension.hpp"
#include "gossip/payload_queue.hpp"
#include "gossip/routing_codec.hpp"
#include "gossip/routing_table.hpp"

namespace starling::gossip {

/// The extension kind of the routing table (docs/extending-gossip.md, "Kinds").
inline constexpr extension_kind routing_extension_kind = 1;

/// One payload to queue: its bytes and its queue key (a newer record of the same key
/// replaces an older one still waiting).
struct routing_publication {
  std::string bytes;
  std::string key;
};

/// A peer's policy write that changed the table (what the agent logs).
struct applied_policy {
  policy_key key;
  std::string writer;
  hlc_stamp stamp;
  bool deleted = false;
};

/// What handling a peer's payload or section did.
struct routing_gossip_result {
  /// Records that changed the table (count).
  std::size_t applied = 0;
  /// The policies among them.
  std::vector<applied_policy> policies;
  /// Payloads to queue: the applied records, spread on.
  std::vector<routing_publication> publish;
  /// Members to push-pull with (they hold chains this node lacks).
  std::vector<std::string> push_pull_with;
  /// Pulls to send (request type 3): to a member whose digest differs in ranges its section
  /// did not carry.
  std::vector<extension_request> pulls;
  /// The bytes were refused as a whole (malformed); the records one by one are counted in
  /// the table's stats.
  caf::error error;
};

/// Counters of the spreading layer (the table counts record outcomes).
struct routing_gossip_stats {
  std::uint64_t payloads_in = 0; ///< payloads handed to on_payload
  std::uint64_t payloads_malformed = 0;
  std::uint64_t sections_in = 0; ///< sections handed to on_section
  std::uint64_t sections_malformed = 0;
  std::uint64_t sections_out = 0;
  std::uint64_t section_bytes_out = 0; ///< bytes of the sections built
  std::uint64_t sections_partial = 0;  ///< sections that did not hold the whole table
  /// Records too large for one payload (over max_extension_payload_bytes): spread by
  /// push-pull only.
  std::uint64_t too_large_to_piggyback = 0;
  std::uint64_t chains_in = 0;       ///< chains received in sections
  std::uint64_t notes_in = 0;        ///< peers' notes received
  std::uint64_t notes_differing = 0; ///< of them, about a table other than ours
  /// Push-pulls asked because a peer's table stayed different (anti-entropy).
  std::uint64_t anti_entropy_asks = 0;
  /// Sections that carried the digest alone (the table was over inline_section_max).
  std::uint64_t sections_digest_only = 0;
  std::uint64_t pulls_out = 0;             ///< pulls asked of peers
  std::uint64_t pulls_in = 0;              ///< peers' pulls answered
  std::uint64_t pulls_malformed = 0;       ///< peers' pulls refused as malformed
  std::uint64_t pull_answers_in = 0;       ///< answers to our pulls handed to on_pull_answer
  std::uint64_t pull_answer_bytes_out = 0; ///< bytes of the answers we built
};

/// Largest table (encoded records and chains) a push-pull section carries whole; a larger
/// table's section is its digest, and the differing ranges are pulled.
inline constexpr std::size_t default_inline_section_max = 64u << 10;

/// Longest pull (request type 3's max_request): the asker's summaries of at most this many
/// bytes; ranges beyond it wait for the next exchange.
inline constexpr std::size_t max_pull_bytes = 1u << 20;

/// How long a peer's note must keep differing from this node's unchanging table before the
/// node asks that peer for a push-pull. Long enough for a fresh change to arrive by
/// piggyback first (under a second at 1,000 nodes in the simulator), so notes do not start a
/// push-pull storm while a change spreads; also the least time between two such asks.
inline constexpr std::chrono::milliseconds anti_entropy_hold{2000};

/// How often a node's note rides on its datagrams.
inline constexpr std::chrono::milliseconds note_every{1000};

/// Spreads one routing table. Single owner, like the table.
class routing_gossip {
public:
  /// `table` must outlive this object. `max_section_bytes`: the bound a section (and a
  /// pull's answer) keeps. `inline_section_max`: the largest table a section carries whole
  /// (0: sections are always the digest alone).
  explicit routing_gossip(routing_table& table,
                          std::size_t max_section_bytes = max_extension_section_bytes,
                          std::size_t inline_section_max = default_inline_section_max);

  /// The payload that spreads `r` (nothing when too large for one payload: counted).
  [[nodiscard]] std::optional<routing_publication> publication(const owner_record& r);
  [[nodiscard]] std::optional<routing_publication> publication(const policy_record& p);

  /// A peer's payload from `sender`, at wall time `wall_ms`.
  [[nodiscard]] routing_gossip_result on_payload(std::string_view bytes, const std::string& sender,
                                                 std::uint64_t wall_ms);

  /// This node's push-pull section.
  [[nodiscard]] std::string make_section();

  /// The payload that carries this node's note (the table's hash and size).
  [[nodiscard]] std::string note_payload() const;

  /// A peer's push-pull section from `sender`: chains learned first, then records merged.
  [[nodiscard]] routing_gossip_result on_section(std::string_view bytes, const std::string& sender,
                                                 std::uint64_t wall_ms);

  /// The answer to member `sender`'s pull: its records of the pulled ranges that the asker
  /// lacks or holds differently, with their chains, as a section (partial when they did not
  /// all fit max_section_bytes). Errors: routing_errc::malformed.
  [[nodiscard]] caf::expected<std::string> answer_pull(std::string_view bytes,
                                                       const std::string& sender);

  /// `sender`'s answer to our pull: merged as a section; pulls again while the answer was
  /// partial and brought something new.
  [[nodiscard]] routing_gossip_result
  on_pull_answer(std::string_view bytes, const std::string& sender, std::uint64_t wall_ms);

  [[nodiscard]] const routing_gossip_stats& stats() const noexcept { return stats_; }
  [[nodiscard]] routing_table& table() noexcept { return table_; }

private:
  /// Decodes and merges a section or a pull's answer.
  routing_gossip_result merge_section(std::string_view bytes, std::uint64_t wall_ms,
                                      std::optional<routing_section>& section);
  /// A pull of the ranges where `theirs` differs from this table, for `to`; nothing when no
  /// range differs.
  std::optional<extension_request> make_pull(const routing_digest& theirs, const std::string& to);
  /// Adds the chain of `seal`'s signer to `s` once (`keys` remembers which); false when it
  /// does not fit (`room`).
  template <class Room>
  bool add_chain(routing_section& s, std::set<std::string>& keys, const routing_seal& seal,
                 Room& room);

  template <class Record> std::optional<routing_publication> publish_one(const Record& r);
  template <class Record>
  void merge_one(const Record& r, std::uint64_t wall_ms, routing_gossip_result& out,
                 bool& wants_chain);

  void on_note(const routing_note& note, const std::string& sender, std::uint64_t wall_ms,
               routing_gossip_result& out);

  routing_table& table_;
  std::size_t max_section_bytes_;
  std::size_t inline_section_max_;
  routing_gossip_stats stats_;
  /// Since when peers' notes differ from this table, while it did not change (wall ms).
  std::optional<std::uint64_t> differing_since_;
  /// table_.changes() when that started.
  std::uint64_t differing_changes_ = 0;
  /// Wall ms of the last anti-entropy ask.
  std::optional<std::uint64_t> last_ask_;
};

/// Adds a note to the payloads of a datagram at most once every `note_every` of core time,
/// when it fits what is left of the request. Used by both routing extensions.
class note_pacer {
public:
  /// Appends `note` to `payloads` (taken for `req`) if it is due and fits.
  void add(std::vector<std::string>& payloads, const piggyback_request& req,
           const std::string& note);

private:
  std::optional<time_point> last_;
};

/// The routing table as a membership extension in one thread: the simulator's and the
/// tests' way to run it (the agent splits it across two actors instead). Wall time is the
/// core's time shifted by a fixed offset, so simulated nodes can have skewed clocks.
class routing_extension final : public extension {
public:
  /// Called after each input that changed the table (the simulator measures spread).
  using change_fn = std::function<void(time_point now)>;

  /// Runs `table`'s spreading; wall time at core time `now` is
  /// `wall_at_epoch_ms + (now - epoch)` in milliseconds.
  routing_extension(std::shared_ptr<routing_table> table, time_point epoch,
                    std::uint64_t wall_at_epoch_ms, payload_queue_config queue = {},
                    std::size_t inline_section_max = default_inline_section_max);

  /// Wall time (unix ms) at core time `now`.
  [[nodiscard]] std::uint64_t wall_ms(time_point now) const noexcept;

  /// Queues a record this node wrote (or learned elsewhere) for spreading.
  void publish(const owner_record& r);
  void publish(const policy_record& p);

  void on_change(change_fn fn) { on_change_ = std::move(fn); }

  [[nodiscard]] routing_table& table() noexcept { return *table_; }
  [[nodiscard]] routing_gossip& spreader() noexcept { return gossip_; }
  [[nodiscard]] const payload_queue& queue() const noexcept { return queue_; }

  [[nodiscard]] std::vector<std::string> take_payloads(const piggyback_request& req) override;
  [[nodiscard]] bool has_payloads() const override;
  [[nodiscard]] extension_effects on_payload(std::string_view bytes, const std::string& sender,
                                             time_point now) override;
  [[nodiscard]] std::optional<std::string> make_section(bool join) override;
  [[nodiscard]] extension_effects on_section(std::string_view bytes, const std::string& sender,
                                             bool join, time_point now) override;
  [[nodiscard]] std::optional<std::string>
  on_request(std::string_view bytes, const std::string& sender, time_point now) override;
  [[nodiscard]] extension_effects on_answer(std::string_view bytes, const std::string& sender,
                                            time_point now) override;

private:
  extension_effects apply(routing_gossip_result res, time_point now);

  std::shared_ptr<routing_table> table_;
  routing_gossip gossip_;
  payload_queue queue_;
  note_pacer notes_;
  time_point epoch_;
  std::uint64_t wall_at_epoch_ms_;
  change_fn on_change_;
};

} // namespace starling::gossip
