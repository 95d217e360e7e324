#include "tests/sim/simulator.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <utility>

#include "gossip/member_card.hpp"

namespace starling::sim {

namespace {

constexpr std::uint64_t fnv_prime = 1099511628211ull;

} // namespace

std::string node_name(node_id id) {
  std::string s = "n";
  s += std::to_string(id);
  return s;
}

std::string node_address(node_id id) {
  // 10.a.b.c with c never 0: ids up to 2^24 - 1 map to distinct addresses.
  const std::uint32_t v = id + 1;
  // Appends instead of operator+ chains: g++ 12 -O3 warns falsely (-Wrestrict) on those.
  std::string a = "10.";
  a += std::to_string((v >> 16) & 0xff);
  a += '.';
  a += std::to_string((v >> 8) & 0xff);
  a += '.';
  a += std::to_string(v & 0xff);
  a += ":7946";
  return a;
}

std::size_t estimated_size(const gossip::packet& p) noexcept {
  std::size_t n = gossip::encoded_header_bound(p);
  for (const auto& u : p.updates)
    n += gossip::encoded_size_bound(u);
  for (const auto& e : p.extensions)
    n += gossip::extension_payload_bound(e.kind, e.bytes.size());
  return n;
}

std::size_t estimated_size(const gossip::push_pull& pp) noexcept {
  // 4-byte length prefix, frame tag and lengths, sender fields, join flag, then members.
  std::size_t n = 4 + 8 + pp.sender.size() + pp.sender_address.size() + 2;
  for (const auto& u : pp.members)
    n += gossip::encoded_size_bound(u);
  for (const auto& e : pp.extensions)
    n += gossip::extension_payload_bound(e.kind, e.bytes.size());
  return n;
}

simulator::simulator(sim_config cfg) : cfg_(std::move(cfg)), rng_(cfg_.seed), now_(cfg_.epoch) {
  // One interning pool for every core of the simulation (unless the caller gave one): each
  // name, address and tag map is stored once, not once per core (10,000 cores hold 10^8
  // rows that name the same 10,000 members).
  if (!cfg_.swim.cards)
    cfg_.swim.cards = std::make_shared<gossip::card_pool>();
  if (cfg_.print_seed)
    std::fprintf(stderr, "[sim] seed=%llu\n", static_cast<unsigned long long>(cfg_.seed));
}

simulator::~simulator() = default;

// -- topology ------------------------------------------------------------------------------

node_id simulator::add_nodes(std::size_t count) {
  const auto first = static_cast<node_id>(nodes_.size());
  nodes_.reserve(nodes_.size() + count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto id = static_cast<node_id>(nodes_.size());
    node n;
    n.name = node_name(id);
    n.address = node_address(id);
    by_name_.emplace(n.name, id);
    by_address_.emplace(n.address, id);
    nodes_.push_back(std::move(n));
  }
  return first;
}

const std::string& simulator::name(node_id id) const { return nodes_.at(id).name; }

const std::string& simulator::address(node_id id) const { return nodes_.at(id).address; }

namespace {

/// The id node_name() or node_address() would have encoded in `s`, if `s` has that shape
/// (the caller checks that the node's name or address really is `s`). Hashing the string
/// was 8% of a 10,000-node run: every member event and datagram is looked up.
std::optional<node_id> parse_name(const std::string& s) {
  if (s.size() < 2 || s.size() > 11 || s[0] != 'n')
    return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9')
      return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
  }
  if (v > std::numeric_limits<node_id>::max())
    return std::nullopt;
  return static_cast<node_id>(v);
}

std::optional<node_id> parse_address(const std::string& s) {
  // "10.a.b.c:7946" with v = (a << 16 | b << 8 | c) = id + 1.
  if (s.size() < 12 || s.compare(0, 3, "10.") != 0)
    return std::nullopt;
  std::uint32_t v = 0;
  std::uint32_t part = 0;
  int parts = 0;
  for (std::size_t i = 3; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      part = part * 10 + static_cast<std::uint32_t>(c - '0');
      if (part > 255)
        return std::nullopt;
    } else if (c == '.' || c == ':') {
      v = v << 8 | part;
      part = 0;
      if (++parts > 3)
        return std::nullopt;
      if (c == ':')
        break;
    } else {
      return std::nullopt;
    }
  }
  if (parts != 3 || v == 0)
    return std::nullopt;
  return static_cast<node_id>(v - 1);
}

} // namespace

std::optional<node_id> simulator::find_name(const std::string& name) const {
  if (auto id = parse_name(name); id && *id < nodes_.size() && nodes_[*id].name == name)
    return id;
  auto i = by_name_.find(name);
  if (i == by_name_.end())
    return std::nullopt;
  return i->second;
}

std::optional<node_id> simulator::find_address(const std::string& address) const {
  if (auto id = parse_address(address); id && *id < nodes_.size() && nodes_[*id].address == address)
    return id;
  auto i = by_address_.find(address);
  if (i == by_address_.end())
    return std::nullopt;
  return i->second;
}

// -- actions -------------------------------------------------------------------------------

void simulator::start(node_id id, std::vector<node_id> seeds, std::uint64_t incarnation) {
  auto& n = nodes_.at(id);
  if (n.status == node_status::running)
    throw std::logic_error("sim: start of a running node " + n.name);
  ++n.life;
  n.core.emplace(n.name, n.address, gossip::tag_map{}, cfg_.swim, rng_(), now_, incarnation);
  if (cfg_.on_core_start)
    cfg_.on_core_start(id, *n.core);
  n.status = node_status::running;
  ++running_;
  n.paused = false;
  n.slow_until = {};
  n.buffered.clear();
  ++n.tick_gen;
  n.tick_at = time_point::max();
  reset_view(id);
  seeds.erase(std::remove(seeds.begin(), seeds.end(), id), seeds.end());
  n.seeds = std::move(seeds);
  n.join_backoff = wire::backoff{cfg_.join_backoff};
  n.joined = n.seeds.empty();
  mix(0xA11CEull);
  mix(id);
  if (!n.joined)
    try_join(id);
  reschedule(id);
}

void simulator::start_converged(node_id id, const std::vector<node_id>& members) {
  start(id, {});
  auto& n = nodes_[id];
  // The answer of a peer that knows everyone: any member but this node.
  const auto peer =
      std::find_if(members.begin(), members.end(), [id](node_id m) { return m != id; });
  if (peer == members.end())
    return; // a cluster of one
  {
    gossip::push_pull state;
    state.sender = nodes_.at(*peer).name;
    state.sender_address = nodes_.at(*peer).address;
    state.members.reserve(members.size());
    for (auto m : members) {
      gossip::member_update u;
      u.state = gossip::member_state::alive;
      u.name = nodes_.at(m).name;
      u.address = nodes_.at(m).address;
      state.members.push_back(std::move(u));
    }
    mix(0xC0417ull);
    mix(id);
    apply(id, n.core->on_push_pull_response(state, now_));
  }
  // Drain the queue: every answer to a ping takes as many queued updates as fit, counting a
  // send of each, until each was sent its keep limit and dropped. Bounded: an update cannot
  // ride more than 2 * retransmit_limit answers, and each answer carries at least one.
  gossip::packet ping;
  ping.kind = gossip::packet_kind::ping;
  ping.sender = nodes_.at(*peer).name;
  ping.sender_address = nodes_.at(*peer).address;
  ping.target = n.name;
  const std::uint64_t bound = 1000 * (members.size() + 1);
  for (std::uint64_t i = 1;; ++i) {
    if (i > bound)
      throw std::logic_error("sim: the queue of " + n.name + " does not drain");
    ping.seq = static_cast<std::uint32_t>(i);
    const auto fx = n.core->on_packet(ping, now_);
    const bool carried = std::any_of(fx.packets.begin(), fx.packets.end(),
                                     [](const auto& out) { return !out.message.updates.empty(); });
    if (!carried)
      break;
    ++stats_.converged_drain_answers;
  }
  reschedule(id);
}

void simulator::kill(node_id id) { stop_node(id, node_status::killed); }

void simulator::restart(node_id id, std::vector<node_id> seeds, std::uint64_t incarnation) {
  if (is_running(id))
    kill(id);
  start(id, std::move(seeds), incarnation);
}

void simulator::pause(node_id id, duration d) {
  auto& n = nodes_.at(id);
  if (n.status != node_status::running)
    return;
  const auto until = now_ + d;
  if (n.paused && until <= n.paused_until)
    return;
  n.paused = true;
  n.paused_until = until;
  push(until, ev::resume, id, n.life, npos);
}

void simulator::slow(node_id id, duration extra, duration d) {
  auto& n = nodes_.at(id);
  if (n.status != node_status::running)
    return;
  n.slow_until = std::max(n.slow_until, now_ + d);
  n.slow_extra = extra;
}

void simulator::leave(node_id id) {
  auto& n = nodes_.at(id);
  if (n.status != node_status::running)
    return;
  apply(id, n.core->leave(now_));
  push(now_ + cfg_.leave_linger, ev::stop, id, n.life, npos);
}

void simulator::at(time_point t, std::function<void()> fn) {
  push(std::max(t, now_), ev::action, 0, 0, alloc_action(std::move(fn)));
}

void simulator::partition(std::vector<int> group_of_node, bool one_way) {
  cut_ = [groups = std::move(group_of_node), one_way](node_id from, node_id to) {
    const int a = from < groups.size() ? groups[from] : 0;
    const int b = to < groups.size() ? groups[to] : 0;
    return one_way ? a < b : a != b;
  };
}

// -- running -------------------------------------------------------------------------------

void simulator::run_until(time_point t) {
  while (!queue_.empty() && queue_.top().at <= t) {
    event e = queue_.top();
    queue_.pop();
    now_ = e.at;
    dispatch(e);
  }
  if (t > now_)
    now_ = t;
}

std::optional<time_point> simulator::run_until(const std::function<bool()>& pred,
                                               time_point deadline, duration check_every) {
  if (pred())
    return now_;
  auto next = now_ + check_every;
  for (;;) {
    run_until(std::min(next, deadline));
    if (pred())
      return now_;
    if (now_ >= deadline)
      return std::nullopt;
    next += check_every;
  }
}

double simulator::elapsed_seconds() const {
  return std::chrono::duration<double>(now_ - cfg_.epoch).count();
}

void simulator::push(time_point at, ev kind, node_id n, std::uint64_t arg, std::uint32_t payload) {
  queue_.push(event{at, seq_++, kind, n, arg, payload, false});
}

void simulator::dispatch(event& e) {
  ++stats_.events;
  switch (e.kind) {
  case ev::tick: {
    auto& n = nodes_[e.node];
    if (e.arg != n.tick_gen || n.status != node_status::running)
      return; // stale
    n.tick_at = time_point::max();
    if (n.paused)
      return; // the resume runs the late timers
    mix(now_.time_since_epoch().count());
    mix(e.node);
    do_tick(e.node);
    return;
  }
  case ev::packet:
  case ev::pp_request:
  case ev::pp_response:
  case ev::join_retry:
    mix(now_.time_since_epoch().count());
    mix(static_cast<std::uint64_t>(e.kind) << 32 | e.node);
    deliver(e);
    return;
  case ev::action: {
    mix(now_.time_since_epoch().count());
    mix(0xAC7ull);
    auto fn = std::move(actions_[e.payload]);
    actions_[e.payload] = nullptr;
    free_actions_.push_back(e.payload);
    fn();
    return;
  }
  case ev::resume: {
    auto& n = nodes_[e.node];
    if (n.status != node_status::running || e.arg != n.life || !n.paused || now_ < n.paused_until)
      return; // superseded
    mix(now_.time_since_epoch().count());
    mix(0x5E5ull << 32 | e.node);
    n.paused = false;
    if (cfg_.on_resume == resume_order::ticks_first && n.core->next_deadline() <= now_)
      do_tick(e.node);
    auto pending = std::move(n.buffered);
    n.buffered.clear();
    for (auto& b : pending) {
      // A buffered input may kill or pause the node again (scripts do not run here, so in
      // practice only through hooks); keep the rest buffered or drop it as deliver would.
      deliver(b);
    }
    reschedule(e.node);
    return;
  }
  case ev::stop: {
    auto& n = nodes_[e.node];
    if (n.status == node_status::running && e.arg == n.life)
      stop_node(e.node, node_status::stopped);
    return;
  }
  }
}

void simulator::deliver(event& e) {
  auto& n = nodes_[e.node];
  if (n.status != node_status::running) {
    if (e.kind == ev::packet)
      ++stats_.dropped_down;
    else if (e.kind == ev::pp_request || e.kind == ev::pp_response)
      ++stats_.push_pulls_failed;
    free_payload(e);
    return;
  }
  if (n.paused) {
    n.buffered.push_back(e);
    return;
  }
  if (!e.delayed && now_ < n.slow_until && e.kind != ev::join_retry) {
    event later = e;
    later.delayed = true;
    later.at = now_ + n.slow_extra;
    later.seq = seq_++;
    queue_.push(later);
    return;
  }
  switch (e.kind) {
  case ev::packet: {
    ++stats_.packets_delivered;
    auto& p = packets_[e.payload];
    mix(static_cast<std::uint64_t>(p.kind) << 32 | p.seq);
    mix(p.sender);
    mix(p.updates.size());
    for (auto& h : packet_hooks_)
      h(static_cast<node_id>(e.arg), e.node, p, now_);
    auto fx = n.core->on_packet(p, now_);
    free_payload(e);
    apply(e.node, std::move(fx));
    return;
  }
  case ev::pp_request:
    handle_pp_request(e.node, e.payload);
    return;
  case ev::pp_response:
    handle_pp_response(e.node, e.arg, e.payload);
    return;
  case ev::join_retry:
    if (e.arg == n.life && !n.joined)
      try_join(e.node);
    return;
  default:
    return;
  }
}

void simulator::do_tick(node_id id) {
  auto& n = nodes_[id];
  ++stats_.ticks;
  last_tick_node_ = id;
  last_tick_at_ = now_;
  auto fx = n.core->on_tick(now_);
  apply(id, std::move(fx));
}

void simulator::extension_news(node_id id) {
  auto& n = nodes_.at(id);
  if (n.status != node_status::running || n.paused)
    return;
  apply(id, n.core->on_extension_news(now_));
}

void simulator::reschedule(node_id id) {
  auto& n = nodes_[id];
  if (n.status != node_status::running || n.paused)
    return;
  auto t = n.core->next_deadline();
  if (t == time_point::max()) {
    if (n.tick_at != time_point::max()) {
      ++n.tick_gen;
      n.tick_at = time_point::max();
    }
    return;
  }
  if (t <= now_) {
    // Due now. Right after a tick this means the core did not advance its timers; retry a
    // little later instead of spinning at one instant (and count it).
    if (last_tick_node_ == id && last_tick_at_ == now_) {
      ++stats_.tick_spins;
      t = now_ + 1ms;
    } else {
      t = now_;
    }
  }
  if (t == n.tick_at)
    return;
  ++n.tick_gen;
  n.tick_at = t;
  push(t, ev::tick, id, n.tick_gen, npos);
}

void simulator::apply(node_id id, gossip::effects&& fx) {
  for (auto& e : fx.events)
    record_event(id, e);
  for (auto& out : fx.packets)
    send_packet(id, std::move(out));
  for (auto& addr : fx.push_pull_to)
    start_push_pull(id, addr, false);
  for (auto& req : fx.extension_requests)
    start_extension_request(id, std::move(req));
  reschedule(id);
}

void simulator::start_extension_request(node_id from, gossip::outgoing_request&& req) {
  ++stats_.extension_requests;
  constexpr std::size_t framing = 16;
  stats_.extension_request_bytes += req.body.size() + framing;
  const auto to = find_address(req.address);
  const auto usable = [this](node_id a, node_id b, std::uint64_t b_life) {
    const auto& n = nodes_[b];
    return n.status == node_status::running && n.life == b_life && !n.paused && !is_cut(a, b);
  };
  if (!to || !usable(from, *to, nodes_[*to].life)) {
    ++stats_.extension_requests_failed;
    return;
  }
  const auto from_life = nodes_[from].life;
  const auto to_life = nodes_[*to].life;
  after(
      latency(from, *to), [this, from, from_life, to = *to, to_life, usable, req = std::move(req)] {
        if (!usable(from, to, to_life)) {
          ++stats_.extension_requests_failed;
          return;
        }
        auto answer =
            nodes_[to].core->on_extension_request(req.kind, nodes_[from].name, req.body, now_);
        reschedule(to);
        if (!answer) {
          ++stats_.extension_requests_failed;
          return;
        }
        stats_.extension_request_bytes += answer->size() + framing;
        after(latency(to, from), [this, from, from_life, to, usable, kind = req.kind,
                                  answer = std::move(*answer)] {
          if (!usable(to, from, from_life)) {
            ++stats_.extension_requests_failed;
            return;
          }
          ++stats_.extension_answers;
          apply(from, nodes_[from].core->on_extension_answer(kind, nodes_[to].name, answer, now_));
        });
      });
}

// -- network -------------------------------------------------------------------------------

duration simulator::latency(node_id from, node_id to) {
  if (link_latency_)
    return link_latency_(from, to);
  if (cfg_.latency_jitter <= duration::zero())
    return cfg_.latency_base;
  std::uniform_int_distribution<duration::rep> d(0, cfg_.latency_jitter.count());
  return cfg_.latency_base + duration(d(rng_));
}

bool simulator::lost(node_id from, node_id to) {
  double p = cfg_.loss;
  if (link_loss_)
    p = 1.0 - (1.0 - p) * (1.0 - link_loss_(from, to));
  if (p <= 0.0)
    return false;
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return u < p;
}

void simulator::send_packet(node_id from, gossip::outgoing&& out) {
  ++stats_.packets_sent;
  std::string wire; // real_codec: the datagram's bytes
  if (cfg_.real_codec)
    wire = gossip::encode_datagram(out.message);
  const auto size = cfg_.real_codec ? wire.size() : estimated_size(out.message);
  stats_.bytes_sent += size;
  stats_.max_datagram_bytes = std::max<std::uint64_t>(stats_.max_datagram_bytes, size);
  auto to = find_address(out.address);
  if (!to) {
    ++stats_.dropped_down;
    return;
  }
  if (is_cut(from, *to)) {
    ++stats_.dropped_cut;
    return;
  }
  if (lost(from, *to)) {
    ++stats_.dropped_loss;
    return;
  }
  if (cfg_.real_codec) {
    // What the receiver's transport would hand its core: the decoder's result, or nothing.
    auto decoded = gossip::decode_datagram(wire, cfg_.limits);
    if (!decoded) {
      ++stats_.codec_refused;
      return;
    }
    out.message = std::move(*decoded);
  }
  const auto at = now_ + latency(from, *to);
  push(at, ev::packet, *to, from, alloc_packet(std::move(out.message)));
}

bool simulator::through_codec(gossip::push_pull& state) {
  // The bytes of request type 1 (and its answer) on the transport's request channel: one
  // Frame behind a 4-byte length prefix.
  const auto frame = gossip::encode_frame(state);
  stats_.push_pull_bytes += frame.size();
  stats_.max_push_pull_bytes = std::max<std::uint64_t>(stats_.max_push_pull_bytes, frame.size());
  auto decoded =
      gossip::decode_frame(std::string_view{frame}.substr(wire::length_prefix_size), cfg_.limits);
  if (!decoded) {
    ++stats_.codec_refused;
    return false;
  }
  state = std::move(*decoded);
  return true;
}

void simulator::start_push_pull(node_id from, const std::string& to_address, bool join) {
  auto& n = nodes_[from];
  ++stats_.push_pulls_started;
  auto to = find_address(to_address);
  if (!to || is_cut(from, *to) || nodes_[*to].status != node_status::running) {
    ++stats_.push_pulls_failed;
    return;
  }
  pp_flight f;
  f.state = n.core->make_push_pull(join);
  f.from = from;
  f.from_life = n.life;
  f.join = join;
  if (!cfg_.real_codec) {
    stats_.push_pull_bytes += estimated_size(f.state);
  } else if (!through_codec(f.state)) {
    ++stats_.push_pulls_failed;
    return;
  }
  const auto at = now_ + latency(from, *to);
  push(at, ev::pp_request, *to, 0, alloc_pp(std::move(f)));
}

void simulator::handle_pp_request(node_id to, std::uint32_t payload) {
  auto& n = nodes_[to];
  auto& f = pps_[payload];
  mix(0x99ull << 32 | f.from);
  mix(f.state.members.size());
  auto reply = n.core->on_push_pull_request(f.state, now_);
  const node_id from = f.from;
  bool refused = false;
  if (!cfg_.real_codec)
    stats_.push_pull_bytes += estimated_size(reply.state);
  else if (reply.refusal)
    refused = true; // an agent answers with an error frame: the exchange fails
  else
    refused = !through_codec(reply.state);
  const bool back_cut = is_cut(to, from);
  if (back_cut || refused) {
    ++stats_.push_pulls_failed;
    free_pps_.push_back(payload);
    f.state = {};
  } else {
    f.state = std::move(reply.state);
    const auto at = now_ + latency(to, from);
    push(at, ev::pp_response, from, f.from_life, payload);
  }
  apply(to, std::move(reply.fx));
}

void simulator::handle_pp_response(node_id to, std::uint64_t life, std::uint32_t payload) {
  auto& n = nodes_[to];
  auto& f = pps_[payload];
  if (life != n.life) {
    // The connection belonged to an earlier life of this node.
    ++stats_.push_pulls_failed;
    f.state = {};
    free_pps_.push_back(payload);
    return;
  }
  mix(0x9Aull << 32 | to);
  mix(f.state.members.size());
  auto fx = n.core->on_push_pull_response(f.state, now_);
  ++stats_.push_pulls_completed;
  if (f.join)
    n.joined = true;
  f.state = {};
  free_pps_.push_back(payload);
  apply(to, std::move(fx));
}

void simulator::try_join(node_id id) {
  auto& n = nodes_[id];
  if (n.seeds.empty())
    return;
  for (const node_id seed : n.seeds)
    start_push_pull(id, nodes_[seed].address, true);
  push(now_ + n.join_backoff.next_with(rng_), ev::join_retry, id, n.life, npos);
}

void simulator::stop_node(node_id id, node_status why) {
  auto& n = nodes_.at(id);
  if (n.status != node_status::running)
    return;
  mix(0xDEADull << 32 | id);
  --running_;
  n.status = why;
  n.core.reset();
  ++n.life;
  n.paused = false;
  n.slow_until = {};
  for (auto& b : n.buffered) {
    if (b.kind == ev::packet)
      ++stats_.dropped_down;
    else if (b.kind == ev::pp_request || b.kind == ev::pp_response)
      ++stats_.push_pulls_failed;
    free_payload(b);
  }
  n.buffered.clear();
  ++n.tick_gen;
  n.tick_at = time_point::max();
  n.view.clear();
  n.view.shrink_to_fit();
  n.view_count = {};
}

void simulator::free_payload(const event& e) {
  if (e.payload == npos)
    return;
  switch (e.kind) {
  case ev::packet:
    packets_[e.payload] = {};
    free_packets_.push_back(e.payload);
    break;
  case ev::pp_request:
  case ev::pp_response:
    pps_[e.payload].state = {};
    free_pps_.push_back(e.payload);
    break;
  default:
    break;
  }
}

std::uint32_t simulator::alloc_packet(gossip::packet&& p) {
  if (!free_packets_.empty()) {
    auto i = free_packets_.back();
    free_packets_.pop_back();
    packets_[i] = std::move(p);
    return i;
  }
  packets_.push_back(std::move(p));
  return static_cast<std::uint32_t>(packets_.size() - 1);
}

std::uint32_t simulator::alloc_pp(pp_flight&& f) {
  if (!free_pps_.empty()) {
    auto i = free_pps_.back();
    free_pps_.pop_back();
    pps_[i] = std::move(f);
    return i;
  }
  pps_.push_back(std::move(f));
  return static_cast<std::uint32_t>(pps_.size() - 1);
}

std::uint32_t simulator::alloc_action(std::function<void()>&& fn) {
  if (!free_actions_.empty()) {
    auto i = free_actions_.back();
    free_actions_.pop_back();
    actions_[i] = std::move(fn);
    return i;
  }
  actions_.push_back(std::move(fn));
  return static_cast<std::uint32_t>(actions_.size() - 1);
}

// -- observation ---------------------------------------------------------------------------

void simulator::record_event(node_id observer, const gossip::member_event& e) {
  ++stats_.member_events;
  mix(static_cast<std::uint64_t>(e.kind) << 8 | static_cast<std::uint64_t>(e.subject.state));
  mix(e.subject.name);
  mix(e.subject.incarnation);
  if (auto subject = find_name(e.subject.name)) {
    const std::uint8_t st = e.kind == gossip::member_event_kind::reaped
                                ? 0
                                : static_cast<std::uint8_t>(e.subject.state);
    set_view(observer, *subject, st);
  }
  for (auto& h : hooks_)
    h(observer, e, now_);
}

void simulator::set_view(node_id observer, node_id subject, std::uint8_t state) {
  auto& o = nodes_[observer];
  if (subject >= o.view.size())
    o.view.resize(nodes_.size(), 0);
  auto& cur = o.view[subject];
  if (cur != 0)
    --o.view_count[cur];
  if (state != 0 && state < o.view_count.size())
    ++o.view_count[state];
  cur = state;
}

void simulator::reset_view(node_id id) {
  auto& n = nodes_[id];
  n.view.assign(nodes_.size(), 0);
  n.view_count = {};
  set_view(id, id, static_cast<std::uint8_t>(gossip::member_state::alive));
}

node_status simulator::status(node_id id) const { return nodes_.at(id).status; }

bool simulator::is_paused(node_id id) const { return nodes_.at(id).paused; }

bool simulator::is_joined(node_id id) const {
  const auto& n = nodes_.at(id);
  return n.status == node_status::running && n.joined;
}

gossip::membership& simulator::core(node_id id) {
  auto& n = nodes_.at(id);
  if (!n.core)
    throw std::logic_error("sim: no core on node " + n.name);
  return *n.core;
}

const gossip::membership& simulator::core(node_id id) const {
  const auto& n = nodes_.at(id);
  if (!n.core)
    throw std::logic_error("sim: no core on node " + n.name);
  return *n.core;
}

std::optional<gossip::member_state> simulator::seen(node_id observer, node_id subject) const {
  const auto& o = nodes_.at(observer);
  if (subject >= o.view.size() || o.view[subject] == 0)
    return std::nullopt;
  return static_cast<gossip::member_state>(o.view[subject]);
}

std::size_t simulator::seen_count(node_id observer, gossip::member_state s) const {
  return nodes_.at(observer).view_count[static_cast<std::size_t>(s)];
}

bool simulator::all_see(gossip::member_state s, std::size_t count) const {
  const auto i = static_cast<std::size_t>(s);
  for (const auto& n : nodes_)
    if (n.status == node_status::running && n.view_count[i] != count)
      return false;
  return true;
}

bool simulator::all_see(node_id subject, gossip::member_state s) const {
  const auto want = static_cast<std::uint8_t>(s);
  for (node_id o = 0; o < nodes_.size(); ++o) {
    const auto& n = nodes_[o];
    if (o == subject || n.status != node_status::running)
      continue;
    if (subject >= n.view.size() || n.view[subject] != want)
      return false;
  }
  return true;
}

bool simulator::all_see_running_alive() const {
  const auto alive = static_cast<std::size_t>(gossip::member_state::alive);
  const auto suspect = static_cast<std::size_t>(gossip::member_state::suspect);
  // Cheap count test first; the exact test only when every count matches.
  for (const auto& n : nodes_)
    if (n.status == node_status::running &&
        (n.view_count[alive] != running_ || n.view_count[suspect] != 0))
      return false;
  for (const auto& n : nodes_) {
    if (n.status != node_status::running)
      continue;
    for (node_id s = 0; s < nodes_.size(); ++s)
      if (nodes_[s].status == node_status::running &&
          (s >= n.view.size() || n.view[s] != static_cast<std::uint8_t>(alive)))
        return false;
  }
  return true;
}

std::size_t simulator::verify_views() const {
  std::size_t bad = 0;
  for (node_id o = 0; o < nodes_.size(); ++o) {
    const auto& n = nodes_[o];
    if (n.status != node_status::running)
      continue;
    std::vector<std::uint8_t> truth(nodes_.size(), 0);
    for (const auto& m : n.core->members())
      if (auto s = find_name(m.name))
        truth[*s] = static_cast<std::uint8_t>(m.state);
    for (node_id s = 0; s < nodes_.size(); ++s) {
      const std::uint8_t v = s < n.view.size() ? n.view[s] : 0;
      if (v != truth[s])
        ++bad;
    }
  }
  return bad;
}

gossip::membership_stats simulator::core_stats_total() const {
  gossip::membership_stats t;
  for (const auto& n : nodes_) {
    if (!n.core)
      continue;
    const auto& s = n.core->stats();
    t.probes += s.probes;
    t.probe_failures += s.probe_failures;
    t.indirect_probes += s.indirect_probes;
    t.nacks_received += s.nacks_received;
    t.suspicions += s.suspicions;
    t.refutations += s.refutations;
    t.updates_applied += s.updates_applied;
    t.updates_ignored += s.updates_ignored;
    t.packets_sent += s.packets_sent;
    t.packets_received += s.packets_received;
    t.push_pulls += s.push_pulls;
  }
  return t;
}

void simulator::mix(std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) {
    trace_ ^= (v >> (i * 8)) & 0xff;
    trace_ *= fnv_prime;
  }
}

void simulator::mix(const std::string& s) noexcept {
  for (unsigned char c : s) {
    trace_ ^= c;
    trace_ *= fnv_prime;
  }
  mix(s.size());
}

} // namespace starling::sim
