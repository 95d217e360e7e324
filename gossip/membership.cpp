// SWIM + Lifeguard membership core (memberlist/Serf semantics). Pure: no I/O, no clock
// reads, no threads. See gossip/membership.hpp for the contract.
//
// Decisions worth knowing when reading the code:
// - The core reports no member_event about this node itself (leave, set_tags, refutations):
//   the owner caused or can read those through self() and stats().
// - Gossip rounds send an `ack` with seq 0 that only carries updates. Every packet kind's
//   updates are applied; an ack with seq 0 is not a probe answer.
// - Suspicion confirmations count distinct `from`s other than the starter and this node. So
//   that our own independent evidence still reaches the others, a failed probe of a member
//   somebody else already suspects re-broadcasts the suspicion with from = this node.
// - A member that talks to us directly while we hold it dead, or after we reaped it, is
//   sent its own death (dead, with the incarnation we know) first in what we send to it, so
//   that it refutes with a higher incarnation that every member accepts.
//
// Additions to memberlist, each found necessary in simulation (tests/sim/):
// - Lifeguard only: a suspicion whose timer runs out with no confirmation, raised by
//   someone else and never checked by us, is not enough to kill: we probe the member
//   ourselves first (buddy suspicion first in the ping). Hearsay from one lossy or sick
//   member must not kill a healthy node that our view merely missed the refutation of.
// - A packet accusing us at an incarnation we already outbid gets our current alive back
//   (first in the ack, or one gossip packet): the refutation missed its sender. So does a
//   packet whose accusation we refute right now: its sender holds us suspect or dead.
// - Lifeguard only: every gossip round, one member we hold suspect gets a packet from us
//   with its suspicion first, so its refutation (or its answer to a stale accusation) comes
//   straight back to us. A view that heard the suspicion after the refutation's
//   retransmissions ran out no longer waits for luck (issue 15: false deaths at 30% loss).
// - Lifeguard only: a probe or suspicion timer of ours firing late (we were stalled) reads
//   its input first instead of blaming the member for our stall.
// - Recently dead members hear of their death even when nothing else is queued, and the
//   periodic push-pull also tries a dead member with probability dead/alive (Serf's
//   reconnect): a partition that heals, even after gossip_to_dead, merges back.
// - A push-pull request is answered with our state after the merge (memberlist: before),
//   so a peer that said we were dead gets our refutation in the reply.
// - Catch-up push-pull (issue 15): a push-pull that brought us members we did not know
//   (our join's answer, always) brings our next push-pull forward to one dissemination
//   time later (retransmit_limit gossip intervals), with another member, and again, at
//   doubling delays, while they keep teaching us members. Gossip sends each update a
//   bounded number of times, and only to members the sender knows: news in flight while
//   we joined can die out before anyone knew us, and then only a push-pull repairs our
//   view. memberlist waits for the next periodic one (30 s at least): that was the tail.
// - Strangers (issue 15): a datagram from a member we do not know (and without its alive)
//   means its news missed us: gossip sends each update a fixed number of times to random
//   members, so a member everybody knows still misses one now and then. We ask the sender
//   who it is (a ping without a target, at most once per dissemination time per name), and
//   a ping without a target is answered with our alive first. memberlist ignores the
//   sender and waits for a push-pull (30 s at least; seconds here, through a catch-up).
// - Riders (issue 15): an update sent its retransmit limit times causes no more datagrams
//   (memberlist drops it) but rides in the spare room of datagrams sent anyway (probe
//   answers, gossip rounds for fresher news) until sent twice the limit. Bounded gossip
//   misses a member with probability about exp(-transmissions / n) per update; riding costs
//   bytes, not datagrams, and made the simulator's remaining misses go away.
// - Push-pull dead/suspect entries become suspicions from the remote sender (memberlist:
//   from this node), so they count as its confirmation.
// - Bans (a revoked certificate, see ban()): a banned name is a gate at the inputs (its
//   datagrams, its push-pulls, and alive updates about it) and a filter where we choose
//   whom to talk to. The rest of the core never meets a banned member alive, so it
//   needs no other change; with nobody banned every check is one empty() test.
// - Extensions (gossip/extension.hpp, memberlist's Delegate): with none registered every
//   path is the old one (one empty() test), so the simulator's runs are unchanged. With
//   some, send() packs the extensions' share first, then member updates, then the
//   extensions again (docs/membership.md, "Extension points"), telling them whom the
//   datagram goes to and in what state we hold it: payload_queue counts a send only to a
//   member held alive, and gives a payload once to each live member per pass.
//
// The member table (gossip/member_table.hpp) is the storage engine: rows by slot, ghosts,
// side records, the name index, per-state counts. This file is the protocol. Every list here
// that names members (probe order, the table's departed list) holds slots; a reaped member's
// slot stays reserved for its name (a "ghost") until the probe order is rebuilt, so a list
// entry means exactly what the name meant before. Iteration in name order (push-pull,
// members(), the probe-order rebuild) decides event, queue and RNG order.
#include "gossip/membership.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "gossip/awareness.hpp"
#include "gossip/broadcast_queue.hpp"
#include "gossip/errc.hpp"
#include "gossip/member_card.hpp"
#include "gossip/member_table.hpp"
#include "gossip/suspicion.hpp"

namespace starling::gossip {

void effects::append(effects&& other) {
  packets.insert(packets.end(), std::make_move_iterator(other.packets.begin()),
                 std::make_move_iterator(other.packets.end()));
  push_pull_to.insert(push_pull_to.end(), std::make_move_iterator(other.push_pull_to.begin()),
                      std::make_move_iterator(other.push_pull_to.end()));
  events.insert(events.end(), std::make_move_iterator(other.events.begin()),
                std::make_move_iterator(other.events.end()));
  extension_requests.insert(extension_requests.end(),
                            std::make_move_iterator(other.extension_requests.begin()),
                            std::make_move_iterator(other.extension_requests.end()));
  other = effects{};
}

// -- encoded size bounds ------------------------------------------------------------------

namespace {

/// Bytes of `v` as a protobuf varint.
constexpr std::size_t varint_size(std::uint64_t v) noexcept {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

/// A length-delimited field: tag, length varint, payload. Field numbers are all < 16, so
/// every tag is one byte.
constexpr std::size_t delimited_size(std::size_t len) noexcept {
  return 1 + varint_size(len) + len;
}

/// A varint field: tag plus value. Default values (omitted by proto3) are counted anyway.
constexpr std::size_t varint_field_size(std::uint64_t v) noexcept { return 1 + varint_size(v); }

} // namespace

std::size_t encoded_size_bound(const member_update& u) noexcept {
  std::size_t body = varint_field_size(static_cast<std::uint64_t>(u.state)) +
                     delimited_size(u.name.size()) + delimited_size(u.address.size()) +
                     varint_field_size(u.incarnation) + delimited_size(u.from.size());
  // A map field is a repeated nested message {key = 1, value = 2}.
  for (const auto& [key, value] : u.tags)
    body += delimited_size(delimited_size(key.size()) + delimited_size(value.size()));
  // The element of `repeated MemberUpdate updates = 8` inside Packet.
  return delimited_size(body);
}

std::size_t extension_payload_bound(extension_kind kind, std::size_t size) noexcept {
  // Extension {kind = 1, payload = 2}, an element of `repeated Extension extensions` (Packet
  // field 9, PushPull field 5: one-byte tags too). proto3 omits an empty payload; counted.
  return delimited_size(varint_field_size(kind) + delimited_size(size));
}

std::size_t encoded_header_bound(const packet& p) noexcept {
  constexpr std::size_t frame_byte = 1;
  constexpr std::uint64_t version = 1;
  return frame_byte + varint_field_size(version) +
         varint_field_size(static_cast<std::uint64_t>(p.kind)) + varint_field_size(p.seq) +
         delimited_size(p.sender.size()) + delimited_size(p.sender_address.size()) +
         delimited_size(p.target.size()) + delimited_size(p.target_address.size());
}

// -- implementation -----------------------------------------------------------------------

namespace {

constexpr time_point never = time_point::max();

bool is_valid_state(member_state s) noexcept {
  return s == member_state::alive || s == member_state::suspect || s == member_state::dead ||
         s == member_state::left;
}

/// The incarnation after `inc` for this node's own raises: one more, saturating at the top of
/// the range instead of wrapping to 0 (where every member would take it for stale).
std::uint64_t incarnation_after(std::uint64_t inc) noexcept {
  return inc == std::numeric_limits<std::uint64_t>::max() ? inc : inc + 1;
}

bool is_valid_kind(packet_kind k) noexcept {
  return k == packet_kind::ping || k == packet_kind::ping_req || k == packet_kind::ack ||
         k == packet_kind::nack;
}

/// The probe this node is running as prober (at most one at a time).
struct probe_state {
  bool active = false;
  std::string target;
  std::uint32_t seq = 0;
  /// When ping_req go out if no ack came.
  time_point indirect_at{};
  /// End of the probe interval: with no ack by then the target is suspected.
  time_point end{};
  bool indirect_sent = false;
  bool acked = false;
  unsigned expected_nacks = 0;
  unsigned nacks = 0;
  /// The verdict was postponed once because our own tick came late.
  bool grace = false;
};

/// A probe this node runs on behalf of a ping_req requester.
struct helper_state {
  std::string requester;
  std::string requester_address;
  std::uint32_t requester_seq = 0;
  /// Lifeguard: when to tell the requester the target did not answer.
  time_point nack_at{};
  /// When an answer is no longer forwarded.
  time_point expire_at{};
  bool nack_sent = false;
};

/// An extension registered with membership::add_extension.
struct registered_extension {
  extension_kind kind = 0;
  std::string name;
  std::shared_ptr<extension> ext;
  /// Mutable: make_push_pull() (const) counts the sections it adds.
  mutable extension_stats stats;
};

/// What we remember of a reaped member.
struct reaped_state {
  std::uint64_t incarnation = 0;
  time_point at{};
};

} // namespace

struct membership::impl {
  using row = member_table::row;
  using slot_t = member_table::slot_t;
  static constexpr slot_t no_slot = member_table::no_slot;
  static constexpr slot_t self_slot = member_table::self_slot;

  // Fields first (STYLE.md): the constructor and every function below use them.

  swim_config cfg;
  /// Where names, addresses and tags are interned: the config's shared pool, or one of our
  /// own. Declared before the table and the queue, whose cards it must outlive.
  std::shared_ptr<card_pool> cards;
  std::string self_name;
  std::mt19937_64 rng;
  membership_stats stats;
  awareness health;

  /// The members we know, this node included (gossip/member_table.hpp).
  member_table table;
  broadcast_queue queue;
  /// True once leave() ran: no probing, no push-pull, no refutation any more.
  bool has_left = false;

  /// Randomized round-robin probe order. May hold stale slots (dead, ghosts, duplicates):
  /// they are skipped when met and dropped when the pass ends and the list is rebuilt.
  std::vector<slot_t> probe_order;
  std::size_t probe_index = 0;
  probe_state probe;
  std::uint32_t last_seq = 0;
  /// Probes we run for others, by our own seq.
  std::map<std::uint32_t, helper_state> helping;
  /// Acks to forward to ping_req requesters, filled by on_ack, sent by on_packet.
  std::vector<helper_state> pending_forward;
  /// Suspects whose unconfirmed timer fired, waiting for our own probe (Lifeguard).
  std::deque<std::string> verify_queue;
  /// Set while applying a packet's updates: it accused us at an incarnation we already
  /// outbid. Its sender then gets our current alive first (see on_packet).
  bool stale_accusation = false;
  /// Sender of the packet being handled when stale_accusation is set, or when it asked who
  /// we are (a ping without a target): what we send it carries our alive first.
  std::string stale_peer;
  /// Strangers (senders of datagrams we got without knowing them) we asked to introduce
  /// themselves, and when: one request per stranger per catch_up_base(). Entries older than
  /// that are dropped as others are added; at most max_introductions.
  std::map<std::string, time_point, std::less<>> introductions;
  /// Reaped members' last incarnation, and their order of reaping (for the size bound).
  std::map<std::string, reaped_state> reaped;
  std::deque<std::pair<time_point, std::string>> reaped_order;
  /// Members that rejoined below the incarnation we knew for them: each packet we send
  /// them carries dead{name, this incarnation} so they refute above it.
  std::map<std::string, std::uint64_t> nudge;
  /// Banned names (see membership::ban), apart from the rows: a few names at most, and a
  /// banned name may have no row at all. Never sent. `ban_order` lists the same entries,
  /// oldest ban first (set iterators stay valid while other names come and go), for the
  /// banned_max bound.
  std::set<std::string, std::less<>> bans;
  std::deque<std::set<std::string, std::less<>>::const_iterator> ban_order;

  /// Registered extensions, sorted by kind (at most max_extension_sections). Empty: every
  /// path is the one without extensions (checked with one empty() test).
  std::vector<registered_extension> exts;
  /// Which extension is asked first for the next datagram (round robin, so that no
  /// extension can keep the others out).
  std::size_t ext_cursor = 0;
  /// Datagrams packed with extensions so far (piggyback_request::datagram).
  std::uint64_t ext_datagrams = 0;

  time_point next_probe;
  time_point next_gossip;
  /// When the last gossip round ran (news never brings rounds closer than
  /// extension_gossip_interval).
  std::optional<time_point> last_gossip;
  time_point next_push_pull;
  /// Catch-up push-pull (see the header comment): set when a merge brought members we did
  /// not know and next_push_pull was brought forward for it; cleared when it runs.
  bool catch_up_armed = false;
  /// Delay of the next catch-up after a merge that taught us members; zero means the base
  /// (catch_up_base()). Doubles at each catch-up run, up to push_pull_period(); back to the
  /// base once one of our push-pulls teaches us nothing.
  duration catch_up_delay{};
  /// Name of the peer whose state armed the catch-up: the catch-up asks someone else.
  std::string catch_up_avoid;
  /// Latest `now` seen: next_deadline() never returns anything earlier.
  time_point last_now;
  /// What self() returns a reference to; refreshed by every self() call.
  mutable member self_view;

  impl(std::string name, std::string address, tag_map tags, swim_config config, std::uint64_t seed,
       time_point now, std::uint64_t incarnation)
      : cfg(config), cards(cfg.cards ? cfg.cards : std::make_shared<card_pool>()), self_name(name),
        rng(seed), health(config.awareness_max),
        table(cards->intern(name, address, tags), incarnation, now), queue(*cards), last_now(now) {
    // Our own alive is the first thing we gossip, as memberlist does on start.
    queue.push(self_update(member_state::alive));
    next_probe = now + cfg.probe_interval;
    next_gossip = now + cfg.gossip_interval;
    next_push_pull = cfg.push_pull_interval > duration::zero() ? now + push_pull_period() : never;
  }

  row& me() { return table.self(); }
  const row& me() const { return table.self(); }

  /// Queues `u` about the member of row `r`, reusing the row's card when `u` carries the
  /// same name, address and tags (almost always), so no string is built or interned.
  void enqueue(const member_update& u, const row& r) {
    const auto& c = r.card;
    auto card = u.name == c.name() && u.address == c.address() && u.tags == c.tags()
                    ? c
                    : cards->intern(u.name, u.address, u.tags);
    queue.push(std::move(card), u.state, u.incarnation, cards->intern(u.from, {}, {}));
  }

  // -- small helpers ----------------------------------------------------------------------

  duration scaled(duration d) const { return cfg.lifeguard ? health.scale(d) : d; }

  void health_delta(int delta) {
    if (cfg.lifeguard)
      health.apply(delta);
  }

  std::uint32_t fresh_seq() {
    // 0 is reserved for gossip-only packets.
    if (++last_seq == 0)
      last_seq = 1;
    return last_seq;
  }

  unsigned retransmit_limit() const {
    auto n = static_cast<double>(table.live_count());
    auto scale = static_cast<unsigned>(std::ceil(std::log10(n + 1.0)));
    return std::max(1u, cfg.retransmit_mult * std::max(1u, scale));
  }

  duration push_pull_period() const {
    auto n = static_cast<double>(table.live_count());
    if (n <= 32)
      return cfg.push_pull_interval;
    auto mult = std::ceil(std::log2(n) - std::log2(32.0)) + 1.0;
    return cfg.push_pull_interval * static_cast<std::int64_t>(mult);
  }

  /// First catch-up delay: the time a node takes to send an update retransmit_limit()
  /// times at one gossip round per interval. News that was in flight when the merge
  /// happened has died out by then: what we still lack, gossip will not bring.
  duration catch_up_base() const {
    return cfg.gossip_interval * static_cast<std::int64_t>(retransmit_limit());
  }

  /// After a push-pull merge with `sender` that brought `learned` members we did not know
  /// (`ours`: it answered our own push-pull). Brings the next push-pull forward (catch-up),
  /// or, when our own exchange taught us nothing, ends the back-off.
  void after_merge(const std::string& sender, std::size_t learned, time_point now, bool ours) {
    if (has_left || cfg.push_pull_interval <= duration::zero())
      return;
    if (learned == 0) {
      if (ours && !catch_up_armed)
        catch_up_delay = duration::zero();
      return;
    }
    if (catch_up_armed)
      return;
    catch_up_armed = true;
    catch_up_avoid = sender;
    const auto delay = catch_up_delay > duration::zero() ? catch_up_delay : catch_up_base();
    next_push_pull = std::min(next_push_pull, now + delay);
  }

  /// Bound of `introductions`: beyond it, strangers are not asked (a flood of forged senders
  /// cannot grow the map or make us send without limit).
  static constexpr std::size_t max_introductions = 4096;

  /// A datagram came from `msg.sender`, a member we do not know (its own alive was not in
  /// it either). It knows us, so its news has been spreading for a while and missed us:
  /// bounded gossip misses a given member with a small probability per update (it is sent a
  /// fixed number of times to random members), and nothing else would repair that before a
  /// push-pull. Ask it who it is: a ping without a target, answered with its alive first.
  void ask_stranger(const packet& msg, time_point now, effects& fx) {
    if (has_left || msg.sender_address.empty())
      return;
    const auto window = catch_up_base();
    if (auto it = introductions.find(msg.sender); it != introductions.end()) {
      if (now - it->second < window)
        return;
      it->second = now;
    } else {
      std::erase_if(introductions, [&](const auto& e) { return now - e.second >= window; });
      if (introductions.size() >= max_introductions)
        return;
      introductions.emplace(msg.sender, now);
    }
    auto p = make_packet(packet_kind::ping, 0);
    ++stats.packets_sent;
    fx.packets.push_back(outgoing{msg.sender_address, std::move(p)});
  }

  member_update self_update(member_state s) const {
    const auto& m = me();
    return member_update{s,
                         self_name,
                         std::string(m.card.address()),
                         m.incarnation,
                         m.card.tags(),
                         s == member_state::alive ? std::string{} : self_name};
  }

  member_update update_of(const row& n) const {
    member_update u{
        n.state,       std::string(n.card.name()), std::string(n.card.address()), n.incarnation,
        n.card.tags(), table.declared_by(n)};
    if (u.state == member_state::left)
      u.from = u.name;
    return u;
  }

  void emit(effects& fx, member_event_kind kind, const row& subject) {
    fx.events.push_back(member_event{kind, to_member(subject)});
  }

  std::size_t random_index(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>{0, n - 1}(rng);
  }

  void add_to_probe_order(slot_t s) {
    // memberlist: append, then swap with a random slot, so joiners get a random position.
    probe_order.push_back(s);
    std::swap(probe_order[random_index(probe_order.size())], probe_order.back());
  }

  /// Up to `k` distinct slots taken at random among `get(0)`..`get(size - 1)` that
  /// satisfy `ok`. The pool is read in place: no copy of big member lists per round.
  template <class Get, class Pred>
  std::vector<slot_t> sample(std::size_t size, Get get, std::size_t k, Pred ok) {
    std::vector<slot_t> out;
    if (k == 0 || size == 0)
      return out;
    auto taken = [&](slot_t n) { return std::find(out.begin(), out.end(), n) != out.end(); };
    if (size <= 64) {
      // Small pools: exhaustive, so a valid member is never missed by bad luck.
      for (std::size_t i = 0; i < size; ++i)
        if (slot_t n = get(i); ok(n) && !taken(n))
          out.push_back(n);
      std::shuffle(out.begin(), out.end(), rng);
      if (out.size() > k)
        out.resize(k);
      return out;
    }
    // Big pools: bounded rejection sampling (memberlist's kRandomNodes).
    for (std::size_t i = 0; i < 3 * size && out.size() < k; ++i)
      if (slot_t n = get(random_index(size)); ok(n) && !taken(n))
        out.push_back(n);
    return out;
  }

  /// sample() over the probe order (every live member, plus stale slots `ok` rejects).
  template <class Pred> std::vector<slot_t> sample_live(std::size_t k, Pred ok) {
    return sample(
        probe_order.size(), [&](std::size_t i) { return probe_order[i]; }, k, ok);
  }

  /// True when slot `s` holds a present member other than this node whose state satisfies
  /// `pred`.
  bool is_state(slot_t s, bool (*pred)(member_state)) const {
    return s != self_slot && table.at(s).present && pred(table.at(s).state);
  }

  /// True while `name` is banned; one empty() test when nobody is.
  bool is_banned(std::string_view name) const { return !bans.empty() && bans.contains(name); }

  /// Slot `s`'s member is dead, recently enough to still hear gossip, and not banned (a
  /// banned member cannot refute, so it is told nothing).
  bool hears_of_its_death(slot_t s, time_point now) const {
    return recently_dead(table.at(s), now) && !is_banned(table.name_at(s));
  }

  /// Bans `name` (no-op if banned), lifting the oldest bans beyond cfg.banned_max.
  void add_ban(const std::string& name) {
    auto [it, added] = bans.insert(name);
    if (!added)
      return;
    ban_order.push_back(it);
    while (bans.size() > cfg.banned_max) {
      bans.erase(ban_order.front());
      ban_order.pop_front();
    }
  }

  /// Lifts the ban of `name`, if any.
  void remove_ban(const std::string& name) {
    auto it = bans.find(name);
    if (it == bans.end())
      return;
    // Linear, but rare: a ban is lifted only when its node is admitted again.
    ban_order.erase(std::find(ban_order.begin(), ban_order.end(), it));
    bans.erase(it);
  }

  std::optional<reaped_state> remembered(const std::string& name, time_point now) {
    auto it = reaped.find(name);
    if (it == reaped.end())
      return std::nullopt;
    if (now - it->second.at >= cfg.reaped_memory) {
      reaped.erase(it);
      return std::nullopt;
    }
    return it->second;
  }

  // -- sending ----------------------------------------------------------------------------

  /// The update that must travel first in a packet to member `to`, if any: the buddy
  /// system's suspicion, or the death of a member that should refute it.
  std::optional<member_update> hint_for(const std::string& to) const {
    if (to.empty() || to == self_name)
      return std::nullopt;
    if (to == stale_peer)
      return self_update(member_state::alive);
    if (auto it = nudge.find(to); it != nudge.end())
      return member_update{member_state::dead, to, {}, it->second, {}, self_name};
    const auto* r = table.find(to);
    if (!r)
      return std::nullopt;
    const auto& n = *r;
    if (n.state == member_state::suspect && cfg.lifeguard)
      return member_update{member_state::suspect, to, {}, n.incarnation, {}, self_name};
    if (n.state == member_state::dead)
      return member_update{
          member_state::dead, to, {},
          n.incarnation,      {}, table.declared_by(n).empty() ? self_name : table.declared_by(n)};
    return std::nullopt;
  }

  /// Fills `p`'s piggyback (hint for `to` first, then the queue) within max_datagram and
  /// emits it to `address`. Gossip-only packets with nothing to carry are not sent.
  void send(effects& fx, const std::string& address, packet p, const std::string& to,
            bool gossip_only = false) {
    auto header = encoded_header_bound(p);
    auto budget = header < cfg.max_datagram ? cfg.max_datagram - header : 0;
    std::string skip;
    if (auto h = hint_for(to)) {
      auto c = encoded_size_bound(*h);
      if (c <= budget) {
        budget -= c;
        skip = h->name;
        p.updates.push_back(std::move(*h));
      }
    }
    const auto limit = retransmit_limit();
    const auto keep = 2 * limit;
    if (exts.empty()) {
      auto more = queue.take(budget, limit, keep, !gossip_only || !p.updates.empty(),
                             encoded_size_bound, skip);
      p.updates.insert(p.updates.end(), std::make_move_iterator(more.begin()),
                       std::make_move_iterator(more.end()));
    } else {
      // The budget rule (docs/membership.md, "Extension points"): the extensions' share
      // first, then member updates take everything else they need, then the extensions
      // fill what the updates left. Share unused by the extensions goes to the updates.
      ++ext_datagrams;
      // Payload sources count transmissions by the receiver's state (see
      // piggyback_request::to_state): one lookup per datagram.
      const auto s = table.find_slot(to);
      const auto to_state = s == no_slot || s == self_slot || !table.at(s).present || is_banned(to)
                                ? member_state::dead
                                : table.at(s).state;
      budget -= fill_extensions(p, std::min(budget, cfg.extension_share), to, to_state);
      auto more = queue.take(budget, limit, keep,
                             !gossip_only || !p.updates.empty() || !p.extensions.empty(),
                             encoded_size_bound, skip);
      for (auto& u : more) {
        budget -= encoded_size_bound(u); // take() keeps the sum within the budget
        p.updates.push_back(std::move(u));
      }
      (void)fill_extensions(p, budget, to, to_state);
      ++ext_cursor;
    }
    if (gossip_only && p.updates.empty() && p.extensions.empty())
      return;
    ++stats.packets_sent;
    fx.packets.push_back(outgoing{address, std::move(p)});
  }

  // -- extensions ---------------------------------------------------------------------------

  registered_extension* find_ext(extension_kind kind) {
    auto it = std::lower_bound(
        exts.begin(), exts.end(), kind,
        [](const registered_extension& e, extension_kind k) { return e.kind < k; });
    return it != exts.end() && it->kind == kind ? &*it : nullptr;
  }

  /// True when an extension has payloads waiting (gossip rounds then run for it).
  bool extension_pending() const {
    return std::any_of(exts.begin(), exts.end(),
                       [](const registered_extension& e) { return e.ext->has_payloads(); });
  }

  /// Asks the extensions (round robin from ext_cursor) for payloads within `budget` bytes
  /// and appends them to `p`; returns the bytes charged. What a source returns beyond the
  /// request is dropped and counted: a peer would refuse the whole datagram (member updates
  /// included) for one payload over the codec limits.
  std::size_t fill_extensions(packet& p, std::size_t budget, const std::string& to,
                              member_state to_state) {
    std::size_t used = 0;
    const auto n = exts.size();
    for (std::size_t i = 0; i < n && p.extensions.size() < max_extension_payloads; ++i) {
      auto& e = exts[(ext_cursor + i) % n];
      // Not even an empty payload fits: do not ask.
      if (budget - used < extension_payload_bound(e.kind, 0))
        continue;
      piggyback_request req;
      req.budget = budget - used;
      req.max_count = max_extension_payloads - p.extensions.size();
      req.to = to;
      req.to_state = to_state;
      req.is_live = [this](std::string_view name) {
        const auto s = table.find_slot(name);
        return s != no_slot && is_state(s, is_live);
      };
      req.kind = p.kind;
      req.retransmit_limit = retransmit_limit();
      req.live_members = table.live_count();
      req.now = last_now;
      req.datagram = ext_datagrams;
      for (auto& bytes : e.ext->take_payloads(req)) {
        const auto cost = extension_payload_bound(e.kind, bytes.size());
        if (bytes.size() > max_extension_payload_bytes || used + cost > budget ||
            p.extensions.size() >= max_extension_payloads) {
          ++e.stats.payloads_refused;
          continue;
        }
        used += cost;
        ++e.stats.payloads_sent;
        e.stats.payload_bytes_sent += bytes.size();
        p.extensions.push_back(extension_payload{e.kind, std::move(bytes)});
      }
    }
    return used;
  }

  /// Carries out what an extension asked after one of its sinks ran.
  void apply_extension_effects(registered_extension& e, extension_effects&& asked, effects& fx) {
    for (const auto& name : asked.push_pull_with) {
      const auto s = table.find_slot(name);
      if (s == no_slot || !is_state(s, is_live) || is_banned(name))
        continue;
      auto address = std::string(table.at(s).card.address());
      if (std::find(fx.push_pull_to.begin(), fx.push_pull_to.end(), address) !=
          fx.push_pull_to.end())
        continue;
      fx.push_pull_to.push_back(std::move(address));
      ++e.stats.push_pulls_asked;
    }
    for (auto& r : asked.requests) {
      const auto s = table.find_slot(r.to);
      if (r.to == self_name || s == no_slot || !is_state(s, is_live) || is_banned(r.to))
        continue;
      fx.extension_requests.push_back(outgoing_request{
          e.kind, std::move(r.to), std::string(table.at(s).card.address()), std::move(r.body)});
      ++e.stats.requests_asked;
    }
  }

  /// Hands a packet's extension payloads to their sinks; unknown kinds are counted.
  void deliver_payloads(const packet& msg, time_point now, effects& fx) {
    for (const auto& x : msg.extensions) {
      auto* e = find_ext(x.kind);
      if (!e) {
        ++stats.extensions_unknown;
        continue;
      }
      ++e->stats.payloads_received;
      apply_extension_effects(*e, e->ext->on_payload(x.bytes, msg.sender, now), fx);
    }
    bring_gossip_forward(now);
  }

  /// When an extension has payloads waiting (news it just took in and spreads on), the next
  /// gossip round comes within extension_gossip_interval rather than a whole gossip_interval.
  void bring_gossip_forward(time_point now) {
    if (exts.empty() || !extension_pending())
      return;
    next_gossip =
        std::min(next_gossip, now + std::min(cfg.gossip_interval, cfg.extension_gossip_interval));
  }

  /// Hands a push-pull's extension sections to their sinks; unknown kinds are counted.
  void merge_sections(const push_pull& remote, time_point now, effects& fx) {
    for (const auto& x : remote.extensions) {
      auto* e = find_ext(x.kind);
      if (!e) {
        ++stats.extensions_unknown;
        continue;
      }
      ++e->stats.sections_received;
      apply_extension_effects(*e, e->ext->on_section(x.bytes, remote.sender, remote.join, now), fx);
    }
    bring_gossip_forward(now);
  }

  packet make_packet(packet_kind kind, std::uint32_t seq) {
    packet p;
    p.kind = kind;
    p.seq = seq;
    p.sender = self_name;
    p.sender_address = me().card.address();
    return p;
  }

  // -- refutation ---------------------------------------------------------------------------

  /// Someone says we are not what we are at incarnation `theirs`: outbid it. `theirs` passed
  /// is_plausible (at most max_incarnation), so the sum cannot wrap; the saturation is the
  /// last resort for an own incarnation already at the top (a corrupt persisted file).
  void refute(std::uint64_t theirs) {
    auto& m = me();
    m.incarnation = incarnation_after(std::max(m.incarnation, theirs));
    queue.push(self_update(member_state::alive));
    ++stats.refutations;
    health_delta(+1);
  }

  // -- applying updates ---------------------------------------------------------------------

  /// False (and counted) when `u`'s incarnation jumps more than max_incarnation_jump above
  /// what we know of its subject, or exceeds max_incarnation: a forged update, refused before
  /// it can touch the table or make us refute (see max_incarnation_jump). Checked before the
  /// state rules, for every state: an alive jumping that far is as forged as an accusation.
  bool is_plausible(const member_update& u, time_point now) {
    // The common case costs no lookup: whatever we know, a step this small is fine.
    if (u.incarnation <= max_incarnation_jump)
      return true;
    std::uint64_t known = 0;
    if (u.name == self_name) {
      known = me().incarnation;
    } else if (const auto* r = table.find(u.name)) {
      known = r->incarnation;
    } else if (auto gone = remembered(u.name, now)) {
      known = gone->incarnation;
    }
    if (u.incarnation <= max_incarnation &&
        (u.incarnation <= known || u.incarnation - known <= max_incarnation_jump))
      return true;
    ++stats.incarnation_refused;
    return false;
  }

  /// Applies one update. `direct` is true when it comes straight from its subject (the
  /// subject sent the packet, or the join push-pull).
  void apply(const member_update& u, time_point now, effects& fx, bool direct) {
    if (u.name.empty() || !is_valid_state(u.state)) {
      ++stats.updates_ignored;
      return;
    }
    if (!is_plausible(u, now))
      return;
    switch (u.state) {
    case member_state::alive:
      apply_alive(u, now, fx, direct);
      break;
    case member_state::suspect:
      apply_suspect(u, now, fx);
      break;
    case member_state::dead:
    case member_state::left:
      apply_dead(u, now, fx);
      break;
    }
  }

  void apply_alive(const member_update& u, time_point now, effects& fx, bool direct) {
    // A banned member cannot come back, at any incarnation (this node is never banned).
    // This gate is enough: a banned member is never live, and only a live member can be
    // suspected.
    if (u.address.empty() || is_banned(u.name)) {
      ++stats.updates_ignored;
      return;
    }
    if (u.name == self_name) {
      auto& m = me();
      if (has_left || u.incarnation < m.incarnation) {
        ++stats.updates_ignored;
        return;
      }
      if (u.incarnation == m.incarnation && u.address == m.card.address() &&
          u.tags == m.card.tags())
        return; // our own news coming back
      // A higher incarnation (a previous life of ours) or different data at ours.
      refute(u.incarnation);
      return;
    }
    auto* found = table.find(u.name);
    if (!found) {
      if (auto r = remembered(u.name, now)) {
        if (u.incarnation <= r->incarnation) {
          if (!direct) {
            // A stale full-state sync must not revive a reaped member.
            ++stats.updates_ignored;
            return;
          }
          // It restarted and talks to us: take it, and make it outbid its old life.
          nudge[u.name] = r->incarnation;
        }
        reaped.erase(u.name);
      }
      // A ghost (reaped, slot still referenced) gets its slot back; see row::present.
      auto s = table.add(cards->intern(u.name, u.address, u.tags), u.incarnation, now);
      auto& n = table.at(s);
      add_to_probe_order(s);
      enqueue(u, n);
      ++stats.updates_applied;
      emit(fx, member_event_kind::joined, n);
      return;
    }
    auto& n = *found;
    if (u.incarnation <= n.incarnation) {
      bool same = u.incarnation == n.incarnation && n.state == member_state::alive &&
                  u.address == n.card.address() && u.tags == n.card.tags();
      if (!same)
        ++stats.updates_ignored;
      return;
    }
    auto prev = n.state;
    bool changed = u.address != n.card.address() || u.tags != n.card.tags();
    n.incarnation = u.incarnation;
    if (changed)
      n.card = cards->intern(u.name, u.address, u.tags);
    table.set_declared_by(n, {});
    if (auto nd = nudge.find(u.name); nd != nudge.end() && u.incarnation > nd->second)
      nudge.erase(nd);
    enqueue(u, n);
    ++stats.updates_applied;
    if (prev == member_state::suspect) {
      table.set_state(n, member_state::alive, now);
      emit(fx, member_event_kind::recovered, n);
    } else if (is_gone(prev)) {
      table.set_state(n, member_state::alive, now);
      add_to_probe_order(table.slot_of(n));
      emit(fx, member_event_kind::joined, n);
    } else if (changed) {
      emit(fx, member_event_kind::updated, n);
    }
  }

  void start_suspicion(row& r, const std::string& from, time_point now) {
    auto& n = table.extra_of(r);
    n.checked_by_us = false;
    n.verifying = false;
    n.not_before = time_point{};
    auto live = table.live_count();
    auto min = suspicion_min_timeout(cfg.suspicion_mult, live, cfg.probe_interval);
    if (cfg.lifeguard) {
      auto k = suspicion_expected_confirmations(cfg.suspicion_mult, live);
      n.timer = std::make_unique<suspicion>(from, k, min, min * cfg.suspicion_max_mult, now);
    } else {
      n.timer = std::make_unique<suspicion>(from, 0, min, min, now);
    }
    table.note_suspicion(r);
  }

  void apply_suspect(const member_update& u, time_point now, effects& fx) {
    if (u.from.empty()) {
      ++stats.updates_ignored;
      return;
    }
    if (u.name == self_name) {
      if (has_left || u.incarnation < me().incarnation) {
        stale_accusation |= !has_left;
        ++stats.updates_ignored;
        return;
      }
      refute(u.incarnation);
      // Its sender holds us suspect: it gets our alive first in what we send it now,
      // rather than only when the gossip reaches it.
      stale_accusation = true;
      return;
    }
    auto* found = table.find(u.name);
    if (!found || is_gone(found->state) || u.incarnation < found->incarnation) {
      ++stats.updates_ignored;
      return;
    }
    auto& n = *found;
    if (n.state == member_state::suspect) {
      if (u.incarnation == n.incarnation) {
        // Lifeguard: an independent confirmation shortens the timeout; spread it on.
        if (u.from != self_name && table.has_timer(n) && table.extra(n)->timer->confirm(u.from)) {
          table.note_suspicion(n); // the deadline moved earlier
          enqueue(u, n);
          ++stats.updates_applied;
          // Its timer already ran out; it only waited for evidence beyond hearsay.
          if (table.is_verifying(n))
            declare_dead(n, now, fx);
        }
        return;
      }
      // It refuted (elsewhere) and was suspected again: a new suspicion.
      n.incarnation = u.incarnation;
      table.set_declared_by(n, u.from);
      start_suspicion(n, u.from, now);
      enqueue(u, n);
      ++stats.updates_applied;
      return;
    }
    n.incarnation = u.incarnation;
    table.set_declared_by(n, u.from);
    table.set_state(n, member_state::suspect, now);
    start_suspicion(n, u.from, now);
    enqueue(u, n);
    ++stats.updates_applied;
    emit(fx, member_event_kind::suspected, n);
  }

  void apply_dead(const member_update& u, time_point now, effects& fx) {
    bool graceful = u.state == member_state::left || u.from == u.name;
    if (!graceful && u.from.empty()) {
      ++stats.updates_ignored;
      return;
    }
    if (u.name == self_name) {
      if (has_left)
        return; // we are gone already; nothing to defend
      if (u.incarnation < me().incarnation) {
        stale_accusation = true;
        ++stats.updates_ignored;
        return;
      }
      refute(u.incarnation);
      stale_accusation = true; // as for a suspicion: the sender gets our alive first
      return;
    }
    auto* found = table.find(u.name);
    if (!found) {
      ++stats.updates_ignored;
      return;
    }
    auto& n = *found;
    auto next = graceful ? member_state::left : member_state::dead;
    if (is_gone(n.state) || u.incarnation < n.incarnation) {
      bool same = n.state == next && u.incarnation == n.incarnation;
      if (!same)
        ++stats.updates_ignored;
      return;
    }
    const auto& from = graceful ? u.name : u.from;
    n.incarnation = u.incarnation;
    table.set_declared_by(n, from);
    table.set_state(n, next, now);
    const auto& c = n.card;
    auto card = u.name == c.name() && u.address == c.address() && u.tags == c.tags()
                    ? c
                    : cards->intern(u.name, u.address, u.tags);
    queue.push(std::move(card), next, u.incarnation, cards->intern(from, {}, {}));
    ++stats.updates_applied;
    emit(fx, graceful ? member_event_kind::left : member_event_kind::failed, n);
  }

  /// Merges a peer's full state. `direct_name` is the peer when it is joining (its entry
  /// about itself then counts as coming straight from it).
  /// Returns how many members it brought that we did not know (or held dead or left):
  /// the `joined` events it emitted, the remote itself not counted.
  std::size_t merge(const push_pull& remote, time_point now, effects& fx,
                    const std::string& direct_name) {
    stale_accusation = false;
    const auto events_before = fx.events.size();
    for (const auto& r : remote.members) {
      if (r.name.empty()) {
        ++stats.updates_ignored;
        continue;
      }
      if (!is_plausible(r, now))
        continue;
      switch (r.state) {
      case member_state::alive:
        apply_alive(r, now, fx, !direct_name.empty() && r.name == direct_name);
        break;
      case member_state::left:
        // apply_dead takes a left update as from its subject whatever its `from` says.
        apply_dead(r, now, fx);
        break;
      case member_state::dead:
      case member_state::suspect: {
        // memberlist: a remote death is only a suspicion here, so a stale one can be
        // refuted by the member instead of killing it outright. It is the remote's
        // claim (memberlist says ours): so it confirms a suspicion, and an unconfirmed
        // one gets our own probe before we condemn the member.
        member_update u = r;
        u.state = member_state::suspect;
        u.from = remote.sender;
        apply_suspect(u, now, fx);
        break;
      }
      default:
        ++stats.updates_ignored;
        break;
      }
    }
    ++stats.push_pulls;
    return static_cast<std::size_t>(std::count_if(
        fx.events.begin() + static_cast<std::ptrdiff_t>(events_before), fx.events.end(),
        [&](const member_event& e) {
          return e.kind == member_event_kind::joined && e.subject.name != remote.sender;
        }));
  }

  // -- probing ------------------------------------------------------------------------------

  std::optional<slot_t> next_probe_target() {
    while (!verify_queue.empty()) {
      auto name = std::move(verify_queue.front());
      verify_queue.pop_front();
      auto s = table.find_slot(name);
      if (s != no_slot && table.at(s).present && table.is_verifying(table.at(s)) &&
          table.at(s).state == member_state::suspect)
        return s;
    }
    bool rebuilt = false;
    for (;;) {
      if (probe_index >= probe_order.size()) {
        if (rebuilt)
          return std::nullopt;
        probe_order.clear();
        // Nothing refers to ghost slots any more (the departed list drops them when
        // reaping): their slots can be reused now.
        table.free_ghosts();
        for (auto s : table.in_name_order())
          if (s != self_slot && table.at(s).present && is_live(table.at(s).state))
            probe_order.push_back(s);
        std::shuffle(probe_order.begin(), probe_order.end(), rng);
        probe_index = 0;
        rebuilt = true;
        if (probe_order.empty())
          return std::nullopt;
      }
      const auto s = probe_order[probe_index++];
      if (is_state(s, is_live))
        return s;
    }
  }

  void start_probe(time_point now, effects& fx) {
    next_probe = now + scaled(cfg.probe_interval);
    auto target = next_probe_target();
    if (!target)
      return;
    const auto& n = table.at(*target);
    probe = probe_state{};
    probe.active = true;
    probe.target = n.card.name();
    probe.seq = fresh_seq();
    probe.indirect_at = now + scaled(cfg.probe_timeout);
    probe.end = next_probe;
    ++stats.probes;
    auto p = make_packet(packet_kind::ping, probe.seq);
    p.target = probe.target;
    send(fx, std::string(n.card.address()), std::move(p), probe.target);
  }

  void send_indirect(effects& fx) {
    probe.indirect_sent = true;
    const auto target = table.find_slot(probe.target);
    if (target == no_slot || !table.at(target).present)
      return;
    auto target_address = std::string(table.at(target).card.address());
    auto helpers = sample_live(cfg.indirect_checks, [&](slot_t s) {
      return s != target && is_state(s, [](member_state st) { return st == member_state::alive; });
    });
    for (auto h : helpers) {
      auto p = make_packet(packet_kind::ping_req, probe.seq);
      p.target = probe.target;
      p.target_address = target_address;
      send(fx, std::string(table.at(h).card.address()), std::move(p),
           std::string(table.name_at(h)));
    }
    stats.indirect_probes += helpers.size();
    probe.expected_nacks = cfg.lifeguard ? static_cast<unsigned>(helpers.size()) : 0;
  }

  void finish_probe(time_point now, effects& fx) {
    if (!probe.active)
      return;
    probe.active = false;
    if (probe.acked)
      return;
    ++stats.probe_failures;
    // Lifeguard: missing nacks mean the helpers could not reach us either: we are the
    // likely culprit, so slow down. With no helpers, any failure counts against us.
    if (probe.expected_nacks > 0) {
      if (probe.nacks < probe.expected_nacks)
        health_delta(static_cast<int>(probe.expected_nacks - probe.nacks));
    } else {
      health_delta(+1);
    }
    auto* found = table.find(probe.target);
    if (!found)
      return;
    auto& n = *found;
    member_update u{member_state::suspect, probe.target, {}, n.incarnation, {}, self_name};
    if (n.state == member_state::alive) {
      ++stats.suspicions;
      apply_suspect(u, now, fx);
    } else if (n.state == member_state::suspect && table.is_verifying(n)) {
      // The suspicion ran out unconfirmed and now our own probe failed too.
      declare_dead(n, now, fx);
    } else if (n.state == member_state::suspect && table.has_timer(n) &&
               table.extra(n)->timer->from() != self_name && !table.extra(n)->checked_by_us) {
      // Our failed probe is independent evidence: let the others count it.
      table.extra(n)->checked_by_us = true;
      enqueue(u, n);
    }
  }

  /// The probe of a suspect whose timer ran out unconfirmed was answered: it is up, but
  /// has not refuted (yet): give it a fresh suspicion period rather than condemn it.
  void verified_alive() {
    auto* found = table.find(probe.target);
    if (!found || !table.is_verifying(*found))
      return;
    auto& n = *found;
    auto from = table.extra(n)->timer->from(); // copied: start_suspicion replaces the timer
    start_suspicion(n, from, last_now);
  }

  void declare_dead(row& n, time_point now, effects& fx) {
    apply_dead(
        member_update{
            member_state::dead, std::string(n.card.name()), {}, n.incarnation, {}, self_name},
        now, fx);
  }

  void on_ack(const packet& p) {
    if (probe.active && !probe.acked && p.seq == probe.seq) {
      probe.acked = true;
      health_delta(-1);
      verified_alive();
      return;
    }
    if (auto it = helping.find(p.seq); it != helping.end()) {
      auto h = std::move(it->second);
      helping.erase(it);
      pending_forward.push_back(std::move(h));
      return;
    }
    ++stats.updates_ignored;
  }

  /// A timer of ours firing this much after its time means we were stalled.
  duration late_slack() const { return cfg.probe_timeout / 2; }

  // -- timers -------------------------------------------------------------------------------

  void run_helpers(time_point now, effects& fx) {
    for (auto it = helping.begin(); it != helping.end();) {
      auto& h = it->second;
      if (cfg.lifeguard && !h.nack_sent && now >= h.nack_at) {
        h.nack_sent = true;
        send(fx, h.requester_address, make_packet(packet_kind::nack, h.requester_seq), h.requester);
      }
      if (now >= h.expire_at)
        it = helping.erase(it);
      else
        ++it;
    }
  }

  void run_suspicions(time_point now, effects& fx) {
    // The due timers come from the table's deadline index, not a walk over every suspect
    // (that walk, at every tick, was an O(suspects) cost that a partition of thousands of
    // members made quadratic). Handled in name order, as the walk over suspects() did.
    const auto slots = table.take_due_suspicions(now);
    if (slots.empty())
      return;
    std::vector<std::string> due;
    due.reserve(slots.size());
    for (auto s : slots)
      due.emplace_back(table.name_at(s));
    std::sort(due.begin(), due.end());
    due.erase(std::unique(due.begin(), due.end()), due.end());
    for (const auto& name : due) {
      auto& r = *table.find(name);
      auto& n = *table.extra(r);
      if (cfg.lifeguard && now - n.suspicion_deadline() > late_slack() &&
          n.not_before == time_point{}) {
        // We were stalled: a refutation may be waiting in our input. Read it first.
        n.not_before = now + cfg.probe_timeout;
        continue;
      }
      if (cfg.lifeguard && n.timer->confirmations() == 0 && !n.checked_by_us &&
          n.timer->from() != self_name) {
        // Nobody confirmed and we never checked ourselves: hearsay from one member (maybe
        // a sick one) must not kill a healthy node. Our own probe decides.
        n.verifying = true;
        verify_queue.push_back(name);
        continue;
      }
      declare_dead(r, now, fx);
    }
    // Taken out of the index above: whatever still runs (a grace period now) goes back in.
    for (const auto& name : due)
      if (const auto* r = table.find(name))
        table.note_suspicion(*r);
  }

  /// Lifeguard: once per gossip round, one member we hold suspect (picked at random) gets a
  /// packet from us, its suspicion first (the hint in send()). It refutes, or answers a
  /// suspicion it already outbid with its alive (stale_accusation), straight to us. Without
  /// this a view that heard the suspicion late, after the refutation's retransmissions
  /// had run out everywhere, waited for its own probe of the member or for a random gossip
  /// target to hit it: at 30% loss per datagram that often took longer than the minimum
  /// suspicion timeout (docs/membership.md, "Against Serf under loss"). A dead suspect just
  /// costs one datagram per round until its timer runs out.
  void remind_suspect(effects& fx) {
    if (!cfg.lifeguard || has_left || table.suspects().empty())
      return;
    const auto& suspects = table.suspects();
    // The same pick, walked from the nearer end: half the steps on average (a std::set
    // has no random access, and thousands of suspects make this walk show in a profile).
    const auto i = random_index(suspects.size());
    auto it = i <= suspects.size() / 2
                  ? std::next(suspects.begin(), static_cast<std::ptrdiff_t>(i))
                  : std::prev(suspects.end(), static_cast<std::ptrdiff_t>(suspects.size() - i));
    const auto s = table.find_slot(*it);
    if (s == no_slot || !table.at(s).present)
      return;
    send(fx, std::string(table.at(s).card.address()), make_packet(packet_kind::ack, 0), *it, true);
  }

  bool recently_dead(const row& n, time_point now) const {
    return n.state == member_state::dead && now - n.since < cfg.gossip_to_dead;
  }

  /// Sends a gossip-only packet to the member in slot `s`.
  void gossip_to(effects& fx, slot_t s) {
    send(fx, std::string(table.at(s).card.address()), make_packet(packet_kind::ack, 0),
         std::string(table.name_at(s)), true);
  }

  void run_gossip(time_point now, effects& fx) {
    last_gossip = now;
    const bool extension_news = !exts.empty() && extension_pending();
    next_gossip =
        now + (extension_news ? std::min(cfg.gossip_interval, cfg.extension_gossip_interval)
                              : cfg.gossip_interval);
    if (!queue.has_below(retransmit_limit()) && (exts.empty() || !extension_pending())) {
      // Nothing to spread, but a recently dead member still hears of its death (the hint
      // in send()): if it was wrongly killed (say, behind a partition that healed) it
      // refutes. One such member per round keeps this cheap.
      auto target = sample(
          table.departed().size(), [&](std::size_t i) { return table.departed()[i]; }, 1,
          [&](slot_t s) { return table.at(s).present && hears_of_its_death(s, now); });
      for (auto t : target)
        gossip_to(fx, t);
      return;
    }
    // Pool: the probe order followed by the departed, read in place.
    auto live = probe_order.size();
    const auto& departed = table.departed();
    auto get = [&](std::size_t i) { return i < live ? probe_order[i] : departed[i - live]; };
    auto targets = sample(live + departed.size(), get, cfg.gossip_fanout, [&](slot_t s) {
      if (!table.at(s).present || s == self_slot)
        return false;
      // The recently dead still hear gossip, so a wrongly killed member can refute.
      return is_live(table.at(s).state) || hears_of_its_death(s, now);
    });
    for (auto t : targets)
      gossip_to(fx, t);
  }

  void run_push_pull(time_point now, effects& fx) {
    next_push_pull = now + push_pull_period();
    auto is_alive = [](member_state st) { return st == member_state::alive; };
    std::vector<slot_t> peer;
    if (catch_up_armed) {
      // Someone other than the peer whose state armed it, when there is anyone else.
      catch_up_armed = false;
      const auto base = catch_up_delay > duration::zero() ? catch_up_delay : catch_up_base();
      catch_up_delay = std::min(base * 2, push_pull_period());
      peer = sample_live(
          1, [&](slot_t s) { return is_state(s, is_alive) && table.name_at(s) != catch_up_avoid; });
    }
    if (peer.empty())
      peer = sample_live(1, [&](slot_t s) { return is_state(s, is_alive); });
    if (!peer.empty())
      fx.push_pull_to.emplace_back(table.at(peer.front()).card.address());
    // Reconnect (as Serf does): with probability dead / alive, also try one dead member,
    // so a partition that healed after gossip_to_dead still merges. Cluster-wide that is
    // about one attempt per dead member per interval. A really dead one just fails.
    auto dead = table.count(member_state::dead);
    auto alive = std::max<std::size_t>(1, table.count(member_state::alive));
    if (dead == 0 || std::uniform_real_distribution<double>{0, 1}(rng) >=
                         static_cast<double>(dead) / static_cast<double>(alive))
      return;
    auto gone = sample(
        table.departed().size(), [&](std::size_t i) { return table.departed()[i]; }, 1,
        [&](slot_t s) {
          return is_state(s, [](member_state st) { return st == member_state::dead; }) &&
                 !is_banned(table.name_at(s));
        });
    if (!gone.empty())
      fx.push_pull_to.emplace_back(table.at(gone.front()).card.address());
  }

  void remember_reaped(const std::string& name, std::uint64_t incarnation, time_point now) {
    reaped[name] = reaped_state{incarnation, now};
    reaped_order.emplace_back(now, name);
    prune_reaped(now);
  }

  void prune_reaped(time_point now) {
    auto drop_front = [&] {
      auto [at, name] = reaped_order.front();
      reaped_order.pop_front();
      // A name reaped again later has a newer entry: keep that one.
      if (auto it = reaped.find(name); it != reaped.end() && it->second.at == at)
        reaped.erase(it);
    };
    while (!reaped_order.empty() && (reaped.size() > cfg.reaped_memory_max ||
                                     now - reaped_order.front().first >= cfg.reaped_memory))
      drop_front();
  }

  void run_reaper(time_point now, effects& fx) {
    if (table.departed().empty()) {
      prune_reaped(now);
      return;
    }
    // When nobody is due (and no listed member came back) only what was listed since the
    // last sweep needs a look: the same list as a full walk, which at every tick cost
    // O(departed) (9,000 on each far node of a 10,000-node partition).
    const bool none_due = earliest_reap() > now;
    table.sweep_departed(
        [&](slot_t, const row& r) {
          if (now - r.since < cfg.reap_after)
            return false;
          auto name = std::string(r.card.name());
          nudge.erase(name);
          remember_reaped(name, r.incarnation, now);
          emit(fx, member_event_kind::reaped, r);
          // Becomes a ghost: the probe order may still hold its slot (see row::present).
          return true;
        },
        none_due);
    prune_reaped(now);
  }

  time_point earliest_reap() const {
    const auto since = table.earliest_departure();
    return since == never ? never : since + cfg.reap_after;
  }
};

// -- membership ---------------------------------------------------------------------------

membership::membership(std::string name, std::string address, tag_map tags, swim_config cfg,
                       std::uint64_t seed, time_point now, std::uint64_t incarnation)
    : impl_(std::make_unique<impl>(std::move(name), std::move(address), std::move(tags), cfg, seed,
                                   now, incarnation)) {}

membership::~membership() = default;
membership::membership(membership&&) noexcept = default;
membership& membership::operator=(membership&&) noexcept = default;

effects membership::on_tick(time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  effects fx;
  d.run_helpers(now, fx);
  if (d.probe.active && !d.probe.acked && !d.probe.indirect_sent && now >= d.probe.indirect_at &&
      now < d.probe.end)
    d.send_indirect(fx);
  if (!d.has_left && now >= d.next_probe) {
    if (d.cfg.lifeguard && d.probe.active && !d.probe.acked && !d.probe.grace &&
        now - d.next_probe > d.late_slack()) {
      // Our own tick is late: we were stalled, and the answer may be waiting in our
      // input. Do not blame the target for our stall: finish the indirect step (if it
      // never went out) and give the probe one more timeout. Lifeguard: a sign of
      // local trouble, like a missed nack.
      if (!d.probe.indirect_sent)
        d.send_indirect(fx);
      d.probe.grace = true;
      d.health_delta(+1);
      d.next_probe = now + d.scaled(d.cfg.probe_timeout);
      d.probe.end = d.next_probe;
    } else {
      d.finish_probe(now, fx);
      d.start_probe(now, fx);
    }
  }
  d.run_suspicions(now, fx);
  if (now >= d.next_gossip) {
    d.remind_suspect(fx);
    d.run_gossip(now, fx);
  }
  if (!d.has_left && now >= d.next_push_pull)
    d.run_push_pull(now, fx);
  d.run_reaper(now, fx);
  return fx;
}

effects membership::on_extension_answer(extension_kind kind, const std::string& member,
                                        std::string_view bytes, time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  effects fx;
  auto* e = d.find_ext(kind);
  if (!e) {
    ++d.stats.extensions_unknown;
    return fx;
  }
  if (d.is_banned(member))
    return fx;
  ++e->stats.answers_received;
  d.apply_extension_effects(*e, e->ext->on_answer(bytes, member, now), fx);
  d.bring_gossip_forward(now);
  return fx;
}

std::optional<std::string> membership::on_extension_request(extension_kind kind,
                                                            const std::string& member,
                                                            std::string_view bytes,
                                                            time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  auto* e = d.find_ext(kind);
  if (!e) {
    ++d.stats.extensions_unknown;
    return std::nullopt;
  }
  if (d.is_banned(member))
    return std::nullopt;
  return e->ext->on_request(bytes, member, now);
}

effects membership::on_extension_news(time_point now) {
  auto& d = *impl_;
  effects asked;
  for (auto& e : d.exts)
    d.apply_extension_effects(e, e.ext->take_effects(), asked);
  if (d.exts.empty() || !d.extension_pending()) {
    auto fx = on_tick(now);
    fx.append(std::move(asked));
    return fx;
  }
  auto at = now;
  if (d.last_gossip)
    at = std::max(at, *d.last_gossip +
                          std::min(d.cfg.gossip_interval, d.cfg.extension_gossip_interval));
  d.next_gossip = std::min(d.next_gossip, at);
  auto fx = on_tick(now);
  fx.append(std::move(asked));
  return fx;
}

effects membership::on_packet(const packet& msg, time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  ++d.stats.packets_received;
  effects fx;
  if (msg.sender.empty() || msg.sender == d.self_name || !is_valid_kind(msg.kind) ||
      (msg.kind == packet_kind::ping && !msg.target.empty() && msg.target != d.self_name)) {
    // Malformed, looped back, or meant for whoever used this address before us.
    ++d.stats.updates_ignored;
    return fx;
  }
  if (d.is_banned(msg.sender)) {
    // No ack, nack or forwarded probe, and none of its news: it must not look alive.
    ++d.stats.banned_refused;
    return fx;
  }
  d.stale_accusation = false;
  // Each update's lookup is two cache misses (index bucket, then row) on a big table:
  // prefetch the buckets a few updates ahead and the rows of the next ones, so they overlap.
  const auto& ups = msg.updates;
  constexpr std::size_t bucket_ahead = 6, row_ahead = 3;
  for (std::size_t i = 0; i < std::min(bucket_ahead, ups.size()); ++i)
    d.table.prefetch(ups[i].name);
  for (std::size_t i = 0; i < ups.size(); ++i) {
    if (i + bucket_ahead < ups.size())
      d.table.prefetch(ups[i + bucket_ahead].name);
    if (i + row_ahead < ups.size())
      d.table.prefetch_row(ups[i + row_ahead].name);
    d.apply(ups[i], now, fx, ups[i].name == msg.sender);
  }
  if (d.stale_accusation) {
    // The sender still accuses us at an incarnation we outbid: our refutation missed it.
    // Whatever we send it now carries our alive first.
    d.stale_peer = msg.sender;
    if (msg.kind != packet_kind::ping && !msg.sender_address.empty())
      d.send(fx, msg.sender_address, d.make_packet(packet_kind::ack, 0), msg.sender, true);
  }
  // After the updates, so a sink sees the sender's membership news first; before the
  // answer, so what a sink queues can ride on it.
  if (!msg.extensions.empty())
    d.deliver_payloads(msg, now, fx);
  switch (msg.kind) {
  case packet_kind::ping: {
    if (msg.sender_address.empty()) {
      ++d.stats.updates_ignored;
      break;
    }
    // No target: the sender does not know us (ask_stranger) and wants our alive.
    if (msg.target.empty())
      d.stale_peer = msg.sender;
    d.send(fx, msg.sender_address, d.make_packet(packet_kind::ack, msg.seq), msg.sender);
    break;
  }
  case packet_kind::ping_req: {
    if (msg.target.empty() || msg.target_address.empty() || msg.sender_address.empty()) {
      ++d.stats.updates_ignored;
      break;
    }
    if (msg.target == d.self_name) {
      // Asked to probe ourselves: we are evidently up; answer for the target.
      d.send(fx, msg.sender_address, d.make_packet(packet_kind::ack, msg.seq), msg.sender);
      break;
    }
    const bool banned_target = d.is_banned(msg.target);
    if (!banned_target && !d.table.find(msg.target)) {
      ++d.stats.updates_ignored;
      break;
    }
    auto seq = d.fresh_seq();
    helper_state h;
    h.requester = msg.sender;
    h.requester_address = msg.sender_address;
    h.requester_seq = msg.seq;
    // Lifeguard: nack before the requester's own timeout so it can count it.
    h.nack_at = now + d.cfg.probe_timeout * 4 / 5;
    h.expire_at = now + d.cfg.probe_timeout;
    d.helping.emplace(seq, std::move(h));
    // A banned member is never probed; the requester (which has not heard of the ban
    // yet) still gets our nack in time, so Lifeguard does not count it against itself.
    if (banned_target)
      break;
    auto p = d.make_packet(packet_kind::ping, seq);
    p.target = msg.target;
    d.send(fx, msg.target_address, std::move(p), msg.target);
    break;
  }
  case packet_kind::ack: {
    if (msg.seq == 0)
      break; // gossip only
    d.on_ack(msg);
    for (auto& h : d.pending_forward)
      d.send(fx, h.requester_address, d.make_packet(packet_kind::ack, h.requester_seq),
             h.requester);
    d.pending_forward.clear();
    break;
  }
  case packet_kind::nack: {
    if (d.probe.active && !d.probe.acked && msg.seq == d.probe.seq && d.probe.indirect_sent) {
      ++d.probe.nacks;
      ++d.stats.nacks_received;
    } else {
      ++d.stats.updates_ignored;
    }
    break;
  }
  }
  // After the answer (which goes first): a sender we still do not know, even after its
  // updates, is asked who it is.
  if (!d.table.find(msg.sender))
    d.ask_stranger(msg, now, fx);
  d.stale_peer.clear();
  d.stale_accusation = false;
  return fx;
}

push_pull_reply membership::on_push_pull_request(const push_pull& remote, time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  push_pull_reply reply;
  if (remote.sender.empty() || remote.sender == d.self_name) {
    ++d.stats.updates_ignored;
    reply.state = make_push_pull(false);
    return reply;
  }
  if (d.is_banned(remote.sender)) {
    // Refused rather than ignored: a push-pull is a connection that expects an answer, and
    // an error frame tells the peer (and its operator) why, where silence would only look
    // like a timeout.
    ++d.stats.banned_refused;
    reply.refusal = make_error(errc::peer_refused,
                               "member " + remote.sender + " is banned (certificate revoked)");
    return reply;
  }
  const auto learned = d.merge(remote, now, reply.fx, remote.join ? remote.sender : std::string{});
  d.after_merge(remote.sender, learned, now, false);
  // Before our state is built: our sections carry the merged state back in one exchange.
  d.merge_sections(remote, now, reply.fx);
  // Our state after the merge (memberlist answers with the state before it): if the peer
  // said we are dead, our refutation travels back at once. A joiner we hold dead sees its
  // death in it; a joiner we had reaped (taken back below its old incarnation) is told
  // that old incarnation as a death, so it refutes above it.
  reply.state = make_push_pull(false);
  if (auto it = d.nudge.find(remote.sender); it != d.nudge.end()) {
    auto entry = std::find_if(reply.state.members.begin(), reply.state.members.end(),
                              [&](const member_update& u) { return u.name == remote.sender; });
    auto told = member_update{member_state::dead, remote.sender, {}, it->second, {}, d.self_name};
    if (entry != reply.state.members.end())
      *entry = std::move(told);
    else
      reply.state.members.push_back(std::move(told));
  }
  return reply;
}

effects membership::on_push_pull_response(const push_pull& remote, time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  effects fx;
  if (remote.sender.empty() || remote.sender == d.self_name) {
    ++d.stats.updates_ignored;
    return fx;
  }
  if (d.is_banned(remote.sender)) {
    // We never pick a banned partner, but a join seed's address may lead to one.
    ++d.stats.banned_refused;
    return fx;
  }
  const auto learned = d.merge(remote, now, fx, {});
  d.after_merge(remote.sender, learned, now, true);
  d.merge_sections(remote, now, fx);
  return fx;
}

push_pull membership::make_push_pull(bool join) const {
  const auto& d = *impl_;
  push_pull pp;
  pp.sender = d.self_name;
  pp.sender_address = d.me().card.address();
  pp.join = join;
  const auto& order = d.table.in_name_order();
  pp.members.reserve(order.size());
  for (auto s : order)
    if (d.table.at(s).present)
      pp.members.push_back(d.update_of(d.table.at(s)));
  // add_extension keeps the count within max_extension_sections.
  for (const auto& e : d.exts) {
    auto section = e.ext->make_section(join);
    if (!section)
      continue;
    if (section->size() > max_extension_section_bytes) {
      // A peer would refuse the whole push-pull, member state included.
      ++e.stats.sections_refused;
      continue;
    }
    ++e.stats.sections_sent;
    pp.extensions.push_back(extension_payload{e.kind, std::move(*section)});
  }
  return pp;
}

effects membership::leave(time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  if (d.has_left)
    return {};
  d.has_left = true;
  d.probe.active = false;
  auto& m = d.me();
  m.incarnation = incarnation_after(m.incarnation);
  d.table.set_declared_by(m, d.self_name);
  d.table.set_state(m, member_state::left, now);
  // Newest and never sent: the queue picks it first.
  d.queue.push(d.self_update(member_state::left));
  return {};
}

effects membership::set_tags(tag_map tags, time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  if (d.has_left)
    return {};
  auto& m = d.me();
  m.card = d.cards->intern(d.self_name, m.card.address(), tags);
  m.incarnation = incarnation_after(m.incarnation);
  d.queue.push(d.self_update(member_state::alive));
  return {};
}

effects membership::ban(const std::string& name, time_point now) {
  auto& d = *impl_;
  d.last_now = std::max(d.last_now, now);
  effects fx;
  if (name.empty() || name == d.self_name)
    return fx;
  d.add_ban(name);
  d.nudge.erase(name);
  auto* r = d.table.find(name);
  if (!r || !is_live(r->state))
    return fx;
  if (d.probe.active && d.probe.target == name)
    d.probe.active = false; // no verdict (and no health penalty) on a member we silenced
  // Dead at the incarnation we know, declared by us: queued as the newest update, so it
  // leads the next packets. Every other node bans it too (revocations spread on their
  // own), so a higher incarnation elsewhere cannot bring it back.
  d.declare_dead(*r, now, fx);
  return fx;
}

void membership::unban(const std::string& name) { impl_->remove_ban(name); }

caf::error membership::add_extension(extension_kind kind, std::string name,
                                     std::shared_ptr<extension> ext) {
  auto& d = *impl_;
  if (kind == 0)
    return make_error(errc::invalid_field, "extension kind 0 is invalid");
  if (name.empty())
    return make_error(errc::invalid_field,
                      "extension of kind " + std::to_string(kind) + " without a name");
  if (!ext)
    return make_error(errc::invalid_field, "extension " + name + " is null");
  if (auto* e = d.find_ext(kind))
    return make_error(errc::invalid_field, "extension kind " + std::to_string(kind) +
                                               " is taken by " + e->name + " (asked for " + name +
                                               ")");
  if (d.exts.size() >= max_extension_sections)
    return make_error(errc::invalid_field, "more than " + std::to_string(max_extension_sections) +
                                               " extensions (asked for " + name + ")");
  auto at =
      std::lower_bound(d.exts.begin(), d.exts.end(), kind,
                       [](const registered_extension& e, extension_kind k) { return e.kind < k; });
  d.exts.insert(at, registered_extension{kind, std::move(name), std::move(ext), {}});
  return {};
}

bool membership::remove_extension(extension_kind kind) {
  auto& d = *impl_;
  auto* e = d.find_ext(kind);
  if (!e)
    return false;
  d.exts.erase(d.exts.begin() + (e - d.exts.data()));
  return true;
}

std::vector<extension_info> membership::extensions() const {
  std::vector<extension_info> out;
  out.reserve(impl_->exts.size());
  for (const auto& e : impl_->exts)
    out.push_back(extension_info{e.kind, e.name, e.stats});
  return out;
}

bool membership::banned(const std::string& name) const { return impl_->is_banned(name); }

time_point membership::next_deadline() const {
  const auto& d = *impl_;
  auto t = d.next_gossip;
  if (!d.has_left) {
    t = std::min(t, d.next_probe);
    t = std::min(t, d.next_push_pull);
  }
  if (d.probe.active && !d.probe.acked && !d.probe.indirect_sent &&
      d.probe.indirect_at < d.probe.end)
    t = std::min(t, d.probe.indirect_at);
  for (const auto& [seq, h] : d.helping)
    t = std::min(t, d.cfg.lifeguard && !h.nack_sent ? h.nack_at : h.expire_at);
  // From the table's deadline index: a walk over every suspect here, after every event,
  // was the largest cost of a simulated partition.
  t = std::min(t, d.table.earliest_suspicion());
  t = std::min(t, d.earliest_reap());
  // A deadline already passed (a suspicion shortened by confirmations) is due now.
  return std::max(t, d.last_now);
}

std::vector<member> membership::members() const {
  const auto& d = *impl_;
  std::vector<member> out;
  const auto& order = d.table.in_name_order();
  out.reserve(order.size());
  for (auto s : order)
    if (d.table.at(s).present)
      out.push_back(to_member(d.table.at(s)));
  return out;
}

std::optional<member> membership::find(const std::string& name) const {
  const auto* r = impl_->table.find(name);
  if (!r)
    return std::nullopt;
  return to_member(*r);
}

std::size_t membership::count(member_state s) const { return impl_->table.count(s); }

const member& membership::self() const {
  impl_->self_view = to_member(impl_->me());
  return impl_->self_view;
}

unsigned membership::health_score() const { return impl_->health.score(); }

std::size_t membership::pending_broadcasts() const {
  return impl_->queue.count_below(impl_->retransmit_limit());
}

const membership_stats& membership::stats() const { return impl_->stats; }

const swim_config& membership::config() const { return impl_->cfg; }

} // namespace starling::gossip
