// A tiny in-memory network for membership cores in unit tests: several cores exchange
// their outgoing packets by address with zero latency, push-pulls are answered in place,
// and time is a manual time_point advanced from deadline to deadline. Header-only.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gossip/membership.hpp"

namespace starling::gossip::test_support {

/// The protocol settings of the cluster tests: probes every second, reaping after a minute.
inline swim_config cluster_config() {
  swim_config cfg;
  cfg.probe_interval = std::chrono::seconds{1};
  cfg.probe_timeout = std::chrono::milliseconds{400};
  cfg.reap_after = std::chrono::seconds{60};
  return cfg;
}

/// Several membership cores wired together in memory. Not thread-safe; tests only.
class core_cluster {
public:
  /// Every core gets `cfg`; core i is seeded with `seed + i`. Time starts at `start`.
  explicit core_cluster(swim_config cfg, std::uint64_t seed,
                        time_point start = time_point{} + std::chrono::hours{1})
      : cfg_(cfg), seed_(seed), now_(start), loss_rng_(seed ^ 0x5eedu) {}

  /// Address of member `name` on this network.
  static std::string address_of(const std::string& name) { return name + ":7946"; }

  /// Adds (or replaces, as a restart) the node `name`; returns its core.
  membership& add(const std::string& name, tag_map tags = {}, std::uint64_t incarnation = 0) {
    auto addr = address_of(name);
    nodes_[addr] = std::make_unique<membership>(name, addr, std::move(tags), cfg_,
                                                seed_ + next_index_++, now_, incarnation);
    names_[name] = addr;
    down_.erase(name);
    return *nodes_[addr];
  }

  /// The core of `name` (must exist).
  membership& core(const std::string& name) { return *nodes_.at(names_.at(name)); }

  /// True when `name` runs a core.
  bool has(const std::string& name) const {
    auto it = names_.find(name);
    return it != names_.end() && nodes_.contains(it->second);
  }

  /// Stops the node `name` (a crash): its core is destroyed, packets to it are lost.
  void crash(const std::string& name) {
    nodes_.erase(names_.at(name));
    down_.insert(name);
  }

  /// Cuts `name` off the network (both directions) while its core keeps running.
  void silence(const std::string& name, bool on = true) {
    if (on)
      silenced_.insert(name);
    else
      silenced_.erase(name);
  }

  /// Cuts links: `cut(from, to)` true drops datagrams and push-pulls from `from` to `to`.
  /// Empty heals every link.
  void set_cut(std::function<bool(const std::string&, const std::string&)> cut) {
    cut_ = std::move(cut);
  }

  /// Drops each datagram with probability `p` (push-pulls are never dropped).
  void set_loss(double p) { loss_ = p; }

  /// `joiner` joins through `seed`: push-pull with join = true, as the agent does.
  void join(const std::string& joiner, const std::string& seed) {
    auto& j = core(joiner);
    auto req = j.make_push_pull(true);
    auto reply = core(seed).on_push_pull_request(req, now_);
    record(seed, reply.fx);
    dispatch(seed, std::move(reply.fx));
    auto fx = j.on_push_pull_response(reply.state, now_);
    record(joiner, fx);
    dispatch(joiner, std::move(fx));
    drain();
  }

  /// Feeds the result of a direct call on the core of `name` (leave, set_tags...).
  void feed(const std::string& name, effects fx) {
    record(name, fx);
    dispatch(name, std::move(fx));
    drain();
  }

  /// Advances time by `d`, ticking each core at its deadlines and delivering everything.
  void run_for(duration d) { run_until(now_ + d); }

  /// Advances time to `end`.
  void run_until(time_point end) {
    for (;;) {
      auto next = time_point::max();
      for (auto& [addr, c] : nodes_)
        next = std::min(next, c->next_deadline());
      if (next > end) {
        now_ = end;
        return;
      }
      // Always make progress, even if a core keeps reporting a deadline already due.
      now_ = std::max(next, now_ + std::chrono::microseconds{1});
      if (now_ > end) {
        now_ = end;
        return;
      }
      tick_all();
    }
  }

  /// Current network time.
  time_point now() const { return now_; }

  /// Events reported so far by `name`'s core.
  const std::vector<member_event>& events(const std::string& name) { return events_[name]; }

  /// State of `subject` as `observer` sees it (nullopt when unknown to it).
  std::optional<member_state> state_at(const std::string& observer, const std::string& subject) {
    auto m = core(observer).find(subject);
    if (!m)
      return std::nullopt;
    return m->state;
  }

  /// Running cores' names.
  std::vector<std::string> running() const {
    std::vector<std::string> out;
    for (const auto& [name, addr] : names_)
      if (nodes_.contains(addr))
        out.push_back(name);
    return out;
  }

  /// Datagrams delivered so far.
  std::size_t delivered() const { return delivered_; }

  /// Extension requests carried so far (answered or refused).
  std::size_t extension_requests() const { return extension_requests_; }

private:
  struct in_flight {
    std::string from;
    outgoing out;
  };

  std::string name_at(const std::string& addr) const {
    for (const auto& [n, a] : names_)
      if (a == addr)
        return n;
    return {};
  }

  void record(const std::string& name, const effects& fx) {
    auto& ev = events_[name];
    ev.insert(ev.end(), fx.events.begin(), fx.events.end());
  }

  void dispatch(const std::string& from, effects fx) {
    for (auto& o : fx.packets)
      queue_.push_back(in_flight{from, std::move(o)});
    for (auto& addr : fx.push_pull_to) {
      auto to = name_at(addr);
      if (silenced_.contains(from) || silenced_.contains(to) || !nodes_.contains(addr) ||
          !has(from) || (cut_ && (cut_(from, to) || cut_(to, from))))
        continue;
      auto req = core(from).make_push_pull(false);
      auto reply = nodes_.at(addr)->on_push_pull_request(req, now_);
      record(to, reply.fx);
      dispatch(to, std::move(reply.fx));
      auto back = core(from).on_push_pull_response(reply.state, now_);
      record(from, back);
      dispatch(from, std::move(back));
    }
    // Extension requests: answered at once, like push-pulls (one TCP exchange).
    for (auto& r : fx.extension_requests) {
      auto to = name_at(r.address);
      if (silenced_.contains(from) || silenced_.contains(to) || !nodes_.contains(r.address) ||
          !has(from) || (cut_ && (cut_(from, to) || cut_(to, from))))
        continue;
      ++extension_requests_;
      auto answer = nodes_.at(r.address)->on_extension_request(r.kind, from, r.body, now_);
      if (!answer)
        continue;
      auto back = core(from).on_extension_answer(r.kind, to, *answer, now_);
      record(from, back);
      dispatch(from, std::move(back));
    }
  }

  void drain() {
    while (!queue_.empty()) {
      auto f = std::move(queue_.front());
      queue_.pop_front();
      auto to = name_at(f.out.address);
      auto it = nodes_.find(f.out.address);
      if (it == nodes_.end() || silenced_.contains(f.from) || silenced_.contains(to) ||
          (cut_ && cut_(f.from, to)))
        continue;
      if (loss_ > 0 && std::uniform_real_distribution<double>{0, 1}(loss_rng_) < loss_)
        continue;
      ++delivered_;
      auto fx = it->second->on_packet(f.out.message, now_);
      record(to, fx);
      dispatch(to, std::move(fx));
    }
  }

  void tick_all() {
    // Copy the names: a tick never adds or removes cores, but keep iteration simple.
    std::vector<std::string> order = running();
    for (const auto& name : order) {
      auto fx = core(name).on_tick(now_);
      record(name, fx);
      dispatch(name, std::move(fx));
      drain();
    }
  }

  swim_config cfg_;
  std::uint64_t seed_;
  std::uint64_t next_index_ = 0;
  time_point now_;
  /// address -> core (running nodes only).
  std::map<std::string, std::unique_ptr<membership>> nodes_;
  /// name -> address (every node ever added).
  std::map<std::string, std::string> names_;
  std::set<std::string> silenced_;
  std::set<std::string> down_;
  std::deque<in_flight> queue_;
  std::map<std::string, std::vector<member_event>> events_;
  std::function<bool(const std::string&, const std::string&)> cut_;
  double loss_ = 0;
  std::mt19937_64 loss_rng_;
  std::size_t delivered_ = 0;
  std::size_t extension_requests_ = 0;
};

} // namespace starling::gossip::test_support
