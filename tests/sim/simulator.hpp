// In-process network simulator: many pure membership cores driven in virtual time.
//
// Discrete-event: one priority queue of events ordered by (virtual time, insertion number),
// one seeded RNG, no threads and no clock reads, so a seed fixes the whole run. Nodes are
// gossip::membership instances named "n<i>" at "10.<a>.<b>.<c>:7946"; packets pass as
// structs (no codec) but their size is counted with the core's encoded-size bounds, or, with
// sim_config::real_codec, every datagram and push-pull goes through the real wire codec and
// its limits (gossip/codec.hpp) as it would between agents.
//
// Network model: per-link latency (base + uniform jitter, or a per-link function), global and
// per-link loss, partitions (a cut function; group helpers, symmetric or one-way), killed
// nodes (everything to them dropped, no ticks), paused nodes (CPU starvation: packets to them
// are buffered and handled at resume, their timers fire late at resume), restarts.
// Push-pull is TCP-like: no loss, request after one link latency, reply after another;
// it fails when the link is cut or the peer is down.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "gossip/codec.hpp"
#include "gossip/membership.hpp"
#include "gossip/types.hpp"
#include "proto/wire/backoff.hpp"

namespace starling::sim {

using gossip::duration;
using gossip::time_point;
using namespace std::chrono_literals;

/// Index of a simulated node (dense, 0..size()-1).
using node_id = std::uint32_t;

/// What a node does first when it resumes from a pause.
enum class resume_order : std::uint8_t {
  /// Late timers fire first, then the buffered input is handled (a process waking from a
  /// stall finds its timeouts expired before it reads its socket): the harsh case.
  ticks_first = 1,
  /// Buffered input first, then the late timers.
  packets_first = 2,
};

/// Parameters of one simulated network. Durations are virtual.
struct sim_config {
  /// Seeds the simulator's RNG; node cores get seeds derived from it.
  std::uint64_t seed = 1;
  /// Virtual time at which the simulation starts.
  time_point epoch = time_point{} + std::chrono::hours(24);
  /// One-way latency of a link = latency_base + uniform[0, latency_jitter].
  duration latency_base = 500us;
  duration latency_jitter = 500us;
  /// Probability that a datagram is lost (push-pull, being TCP, is never lost).
  double loss = 0.0;
  /// Protocol configuration of every node. With no interning pool set (swim.cards), the
  /// simulator makes one and gives it to all its cores.
  gossip::swim_config swim;
  /// A joining node asks all its seeds at once and, while none has answered, asks them all
  /// again after a backoff: the agent's schedule (actors/membership_actor.cpp: 200 ms
  /// doubling to 5 s, half of it jittered), drawn from the simulator's RNG.
  wire::backoff_policy join_backoff{};
  /// How long a leaving node keeps running (gossiping its leave) before it stops.
  duration leave_linger = 2s;
  /// See resume_order.
  resume_order on_resume = resume_order::ticks_first;
  /// True: every datagram is encoded with gossip::encode_datagram and every push-pull (both
  /// directions) with gossip::encode_frame, sized by those bytes, and decoded with `limits`
  /// before delivery; the receiver gets what the decoder returned. A message the decoder
  /// refuses is dropped (a push-pull then fails) and counted in sim_stats::codec_refused.
  /// False (the default): structs pass as they are, sized by the core's encoded-size bounds.
  /// The codec draws no random numbers: a seed gives the same run either way as long as the
  /// codec refuses nothing and round-trips every message exactly.
  bool real_codec = false;
  /// Decoding limits of real_codec (an agent's defaults).
  gossip::codec_limits limits;
  /// Prints "[sim] seed=..." to stderr at construction.
  bool print_seed = true;
  /// Called with every core the simulator creates (start and restart), before it joins:
  /// registers extensions (gossip/extension.hpp). Empty: bare cores.
  std::function<void(node_id, gossip::membership&)> on_core_start;
};

/// Network-wide counters.
struct sim_stats {
  std::uint64_t events = 0;            ///< events popped from the queue (stale ticks included)
  std::uint64_t ticks = 0;             ///< on_tick calls
  std::uint64_t packets_sent = 0;      ///< datagrams handed to the network
  std::uint64_t packets_delivered = 0; ///< datagrams handed to a core
  std::uint64_t dropped_loss = 0;      ///< lost to random loss
  std::uint64_t dropped_cut = 0;       ///< lost to a partition
  std::uint64_t dropped_down = 0;      ///< to a killed, stopped or unknown node
  std::uint64_t bytes_sent = 0;        ///< estimated wire bytes of datagrams sent
  std::uint64_t push_pulls_started = 0;
  std::uint64_t push_pulls_completed = 0; ///< reply merged by the initiator
  std::uint64_t push_pulls_failed = 0;
  std::uint64_t push_pull_bytes = 0;    ///< estimated bytes of both directions
  std::uint64_t member_events = 0;      ///< member events reported by all cores
  std::uint64_t max_datagram_bytes = 0; ///< largest datagram estimate seen
  /// real_codec: messages the decoder refused (dropped; a refused push-pull also counts in
  /// push_pulls_failed). Non-zero means a core sent what a real peer would refuse.
  std::uint64_t codec_refused = 0;
  /// real_codec: the largest push-pull frame encoded (bytes, length prefix included).
  std::uint64_t max_push_pull_bytes = 0;
  /// Ticks after which the core still reported a deadline not after `now` (the simulator
  /// then retries 1 ms later). Non-zero points at a core bug.
  std::uint64_t tick_spins = 0;
  /// Extension requests (effects::extension_requests, e.g. routing pulls) started, answered
  /// (the answer reached the asker's extension) and failed (target down, paused or cut,
  /// the extension declined, or the asker restarted meanwhile).
  std::uint64_t extension_requests = 0;
  std::uint64_t extension_answers = 0;
  std::uint64_t extension_requests_failed = 0;
  /// Bytes of both directions of extension requests (bodies plus 16 bytes of framing each).
  std::uint64_t extension_request_bytes = 0;
  /// start_converged: answers to pings that drained the started cores' queues (dropped, not
  /// sent: not in packets_sent).
  std::uint64_t converged_drain_answers = 0;
};

/// Lifecycle of a simulated node.
enum class node_status : std::uint8_t {
  idle = 1,    ///< created, not started (or killed and not yet restarted)
  running = 2, ///< has a core; receives and ticks
  killed = 3,  ///< crashed: everything to it is dropped
  stopped = 4, ///< left gracefully and stopped
};

/// Observer of the member events of every node: (observer node, event, virtual time).
using event_hook = std::function<void(node_id, const gossip::member_event&, time_point)>;

/// Observer of delivered datagrams: (sender node, receiver node, datagram, virtual time).
using packet_hook =
    std::function<void(node_id from, node_id to, const gossip::packet&, time_point)>;

/// A link filter: true means the datagram or exchange from `from` to `to` is cut.
using cut_function = std::function<bool(node_id from, node_id to)>;

/// A discrete-event simulation of a membership cluster. Single-threaded; not thread-safe.
class simulator {
public:
  explicit simulator(sim_config cfg);
  ~simulator();
  simulator(const simulator&) = delete;
  simulator& operator=(const simulator&) = delete;

  // -- topology ----------------------------------------------------------------------------

  /// Creates `count` idle node slots; returns the id of the first. Names are "n<id>".
  node_id add_nodes(std::size_t count);

  /// Number of node slots.
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }

  /// Name ("n<id>") and address ("10.a.b.c:7946") of a node.
  [[nodiscard]] const std::string& name(node_id id) const;
  [[nodiscard]] const std::string& address(node_id id) const;
  /// Node with this name or address, if any.
  [[nodiscard]] std::optional<node_id> find_name(const std::string& name) const;
  [[nodiscard]] std::optional<node_id> find_address(const std::string& address) const;

  // -- actions (take effect at now(); schedule them with at()/after()) ------------------------

  /// Starts node `id` with a fresh core (incarnation `incarnation`) and joins through
  /// `seeds` (all at once, again after each join_backoff delay until one answered, as the
  /// agent does); no seeds: a cluster of one.
  void start(node_id id, std::vector<node_id> seeds, std::uint64_t incarnation = 0);
  /// Starts idle node `id` as a member of an already converged cluster of the nodes `members`
  /// (ids; `id` may be among them), instead of joining: a fresh core (incarnation 0) is handed
  /// their full state as the answer to a push-pull from one of them
  /// (membership::on_push_pull_response: every member alive at incarnation 0 at its address),
  /// so it knows them all as a join answer would teach it, and its member events feed the
  /// views and observers. What that merge queued to gossip (one update per member, which the
  /// cluster learned long ago) is then drained without a network: the core answers pings
  /// from a member until its answer carries no update, and the answers are dropped. The
  /// merge arms the core's catch-up push-pull (retransmit_limit gossip intervals later) as it
  /// does after a join. Memory: the state is built for this call and freed after it. Costs
  /// O(members) time, and about members * 2 * retransmit_limit / (updates per datagram)
  /// pings for the drain.
  void start_converged(node_id id, const std::vector<node_id>& members);
  /// Crashes a node: its core is discarded, everything to it is dropped from now on.
  void kill(node_id id);
  /// Kills (if running) and starts again with a fresh core at the same name and address.
  void restart(node_id id, std::vector<node_id> seeds, std::uint64_t incarnation = 0);
  /// Stalls a node for `d`: it handles nothing; input is buffered until it resumes.
  /// Pausing a paused node extends the pause to whichever ends later.
  void pause(node_id id, duration d);
  /// Makes a node slow for `d`: every datagram or push-pull that reaches it is handled
  /// `extra` later than it arrives (a starved process reading its socket late), while its
  /// timers fire on time. This is the degraded-observer case Lifeguard targets.
  void slow(node_id id, duration extra, duration d);
  /// Graceful leave: the core broadcasts it, keeps running leave_linger, then stops.
  void leave(node_id id);

  /// Tells running node `id`'s core that an extension has fresh payloads
  /// (membership::on_extension_news) and carries out what it sends now, as a tick would.
  void extension_news(node_id id);
  /// Runs `fn` at virtual time `t` (not before now()).
  void at(time_point t, std::function<void()> fn);
  /// Runs `fn` after `d` of virtual time.
  void after(duration d, std::function<void()> fn) { at(now_ + d, std::move(fn)); }

  // -- network -----------------------------------------------------------------------------

  /// Sets the global datagram loss probability.
  void set_loss(double p) { cfg_.loss = p; }
  /// Per-link extra loss probability (combined with the global one); empty to clear.
  void set_link_loss(std::function<double(node_id, node_id)> fn) { link_loss_ = std::move(fn); }
  /// Per-link one-way latency replacing base+jitter; empty to clear.
  void set_link_latency(std::function<duration(node_id, node_id)> fn) {
    link_latency_ = std::move(fn);
  }
  /// Installs a cut function (see cut_function); empty heals everything.
  void set_cut(cut_function fn) { cut_ = std::move(fn); }
  /// Partition by group: links between different groups are cut. `one_way`: only
  /// datagrams from a lower group number to a higher one are cut.
  void partition(std::vector<int> group_of_node, bool one_way = false);
  /// Removes every cut.
  void heal() { cut_ = nullptr; }
  /// True if the link from -> to is currently cut.
  [[nodiscard]] bool is_cut(node_id from, node_id to) const { return cut_ && cut_(from, to); }

  // -- running -----------------------------------------------------------------------------

  /// Processes every event up to and including virtual time `t`; now() becomes `t`.
  void run_until(time_point t);
  /// Runs for `d` of virtual time.
  void run_for(duration d) { run_until(now_ + d); }
  /// Runs until `pred()` holds (checked every `check_every` of virtual time) or `deadline`
  /// passes. Returns the
  /// virtual time at which it held, or nullopt at the deadline. now() stays at that time.
  std::optional<time_point> run_until(const std::function<bool()>& pred, time_point deadline,
                                      duration check_every = 10ms);

  /// Current virtual time.
  [[nodiscard]] time_point now() const noexcept { return now_; }
  /// Seconds of virtual time since the epoch.
  [[nodiscard]] double elapsed_seconds() const;

  // -- observation -------------------------------------------------------------------------

  /// Adds an observer of every member event (called synchronously, in event order).
  void add_observer(event_hook hook) { hooks_.push_back(std::move(hook)); }
  /// Adds an observer of every datagram handed to a core (just before on_packet).
  void add_packet_observer(packet_hook hook) { packet_hooks_.push_back(std::move(hook)); }

  [[nodiscard]] node_status status(node_id id) const;
  [[nodiscard]] bool is_running(node_id id) const { return status(id) == node_status::running; }
  [[nodiscard]] bool is_paused(node_id id) const;
  /// Number of running nodes.
  [[nodiscard]] std::size_t running_count() const noexcept { return running_; }
  /// True once a running node got an answer to its join (or started with no seeds).
  [[nodiscard]] bool is_joined(node_id id) const;

  /// The core of a running node.
  [[nodiscard]] gossip::membership& core(node_id id);
  [[nodiscard]] const gossip::membership& core(node_id id) const;

  /// State of `subject` in `observer`'s table as followed from the member events the
  /// observer reported (nullopt: unknown or reaped). Cheap (a table lookup).
  [[nodiscard]] std::optional<gossip::member_state> seen(node_id observer, node_id subject) const;
  /// Members `observer` sees in state `s` (itself included), from its events. O(1).
  [[nodiscard]] std::size_t seen_count(node_id observer, gossip::member_state s) const;
  /// True if every running node sees exactly `count` members in state `s`. O(nodes).
  [[nodiscard]] bool all_see(gossip::member_state s, std::size_t count) const;
  /// True if every running node other than `subject` sees `subject` in state `s`.
  [[nodiscard]] bool all_see(node_id subject, gossip::member_state s) const;
  /// True if every running node sees exactly the running nodes alive (and nothing else
  /// alive or suspect): the converged view of the current cluster.
  [[nodiscard]] bool all_see_running_alive() const;
  /// Checks the event-derived views against the cores' own tables (members()); returns
  /// the number of (observer, subject) disagreements. Expensive: O(nodes * members).
  [[nodiscard]] std::size_t verify_views() const;

  [[nodiscard]] const sim_stats& stats() const noexcept { return stats_; }
  /// Sum of the core counters of every running node.
  [[nodiscard]] gossip::membership_stats core_stats_total() const;
  /// Hash of every event processed so far (time, kind, node, content digest): equal seeds
  /// and scripts give equal hashes.
  [[nodiscard]] std::uint64_t trace_hash() const noexcept { return trace_; }
  /// The configuration in use.
  [[nodiscard]] const sim_config& config() const noexcept { return cfg_; }
  /// The simulator's RNG (for scripts that need randomness from the same seed).
  [[nodiscard]] std::mt19937_64& rng() noexcept { return rng_; }

private:
  enum class ev : std::uint8_t {
    tick,
    packet,
    pp_request,
    pp_response,
    action,
    resume,
    join_retry,
    stop
  };

  /// One queued event. `payload` indexes a slab (packets, push-pulls or actions).
  struct event {
    time_point at;
    std::uint64_t seq;
    ev kind;
    node_id node;
    std::uint64_t arg;     ///< tick generation, node life, sender (packets), ...
    std::uint32_t payload; ///< slab index, or npos
    bool delayed = false;  ///< input already held back by a slow receiver
    bool operator>(const event& o) const noexcept { return at != o.at ? at > o.at : seq > o.seq; }
  };

  /// A push-pull in flight: the state, who started it and in which life.
  struct pp_flight {
    gossip::push_pull state;
    node_id from = 0;
    std::uint64_t from_life = 0;
    bool join = false;
  };

  struct node {
    std::string name;
    std::string address;
    std::optional<gossip::membership> core;
    node_status status = node_status::idle;
    /// Bumped at every start and kill: in-flight TCP replies and retries of an older life
    /// are dropped.
    std::uint64_t life = 0;
    bool joined = false;
    std::vector<node_id> seeds;
    wire::backoff join_backoff;
    /// Paused while now < paused_until.
    time_point paused_until{};
    bool paused = false;
    /// Slow while now < slow_until: input is handled slow_extra after arrival.
    time_point slow_until{};
    duration slow_extra{};
    /// Input that arrived during a pause, in arrival order (ev kind, payload index, arg).
    std::vector<event> buffered;
    /// Generation of the one live tick event; older ones are stale.
    std::uint64_t tick_gen = 0;
    time_point tick_at = time_point::max();
    /// Event-derived view: state per subject id (0 = unknown) and counts per state.
    std::vector<std::uint8_t> view;
    std::array<std::uint32_t, 5> view_count{};
  };

  static constexpr std::uint32_t npos = std::numeric_limits<std::uint32_t>::max();

  void push(time_point at, ev kind, node_id n, std::uint64_t arg, std::uint32_t payload);
  void dispatch(event& e);
  void deliver(event& e);
  void do_tick(node_id id);
  void apply(node_id id, gossip::effects&& fx);
  void send_packet(node_id from, gossip::outgoing&& out);
  /// real_codec: encodes `state` as a push-pull frame, counts its bytes, and replaces it by
  /// what the decoder returns. False if the decoder refused it (counted).
  bool through_codec(gossip::push_pull& state);
  void start_push_pull(node_id from, const std::string& to_address, bool join);
  /// Carries one extension request over the network as the agent's transport would (one
  /// TCP exchange: latency each way, cut links and down or paused nodes fail it).
  void start_extension_request(node_id from, gossip::outgoing_request&& req);
  void handle_pp_request(node_id to, std::uint32_t payload);
  void handle_pp_response(node_id to, std::uint64_t life, std::uint32_t payload);
  void try_join(node_id id);
  void reschedule(node_id id);
  void record_event(node_id observer, const gossip::member_event& e);
  void set_view(node_id observer, node_id subject, std::uint8_t state);
  void reset_view(node_id id);
  void stop_node(node_id id, node_status why);
  void free_payload(const event& e);
  duration latency(node_id from, node_id to);
  bool lost(node_id from, node_id to);
  void mix(std::uint64_t v) noexcept;
  void mix(const std::string& s) noexcept;

  std::uint32_t alloc_packet(gossip::packet&& p);
  std::uint32_t alloc_pp(pp_flight&& f);
  std::uint32_t alloc_action(std::function<void()>&& fn);

  sim_config cfg_;
  std::mt19937_64 rng_;
  time_point now_;
  std::uint64_t seq_ = 0;
  std::priority_queue<event, std::vector<event>, std::greater<event>> queue_;
  std::vector<node> nodes_;
  std::unordered_map<std::string, node_id> by_name_;
  std::unordered_map<std::string, node_id> by_address_;
  std::size_t running_ = 0;

  std::vector<gossip::packet> packets_;
  std::vector<std::uint32_t> free_packets_;
  std::vector<pp_flight> pps_;
  std::vector<std::uint32_t> free_pps_;
  std::vector<std::function<void()>> actions_;
  std::vector<std::uint32_t> free_actions_;

  cut_function cut_;
  std::function<double(node_id, node_id)> link_loss_;
  std::function<duration(node_id, node_id)> link_latency_;
  std::vector<event_hook> hooks_;
  std::vector<packet_hook> packet_hooks_;
  /// The last tick run (node and time): tells a core that keeps a past deadline.
  node_id last_tick_node_ = npos;
  time_point last_tick_at_{};
  sim_stats stats_;
  std::uint64_t trace_ = 1469598103934665603ull;
};

/// Name of simulated node `id`: "n<id>".
[[nodiscard]] std::string node_name(node_id id);
/// Address of simulated node `id`: "10.a.b.c:7946" with a.b.c = id + 1 in base 256.
[[nodiscard]] std::string node_address(node_id id);

/// Estimated wire size of a datagram: encoded_header_bound + encoded_size_bound per update
/// + extension_payload_bound per extension payload.
[[nodiscard]] std::size_t estimated_size(const gossip::packet& p) noexcept;
/// Estimated wire size of a push-pull frame (length prefix, header, members).
[[nodiscard]] std::size_t estimated_size(const gossip::push_pull& pp) noexcept;

} // namespace starling::sim
