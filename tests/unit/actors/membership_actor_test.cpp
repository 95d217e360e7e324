// The membership actor under CAF's deterministic test coordinator, with a fake network:
// start-up, join (success, backoff, give-up), answering packets and push-pulls, probing,
// bans (and their lifting by an authenticated push-pull), and leaving. Virtual time only:
// nothing here sleeps.
#define CAF_TEST_NO_MAIN
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/test/unit_test_impl.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/membership_actor.hpp"
#include "gossip/errc.hpp"
#include "gossip/payload_queue.hpp"
#include "tests/support/caf_test.hpp"

namespace sa = starling::actors;
namespace sg = starling::gossip;
using namespace std::chrono_literals;

namespace {

constexpr const char* self_address = "10.0.0.1:7946";
constexpr const char* seed_address = "10.0.0.2:7946";

/// Serves a peer's push-pull through the request type the actor registered (as the
/// transport does: the state's bytes to the handler, the answer's bytes back).
void serve_push_pull(const sg::transport_callbacks& cbs, const sg::push_pull& state,
                     std::function<void(caf::expected<sg::push_pull>)> done) {
  const auto* spec = cbs.requests.find(sg::request_types::push_pull);
  ASSERT_TRUE(spec != nullptr && spec->handler);
  auto err = spec->handler(
      sg::encode_push_pull(state), std::nullopt, [done](caf::expected<std::string> answer) {
        done(answer ? sg::decode_push_pull(*answer) : caf::expected<sg::push_pull>{answer.error()});
      });
  ASSERT_FALSE(err) << sg::render(err);
}

/// What the actor did to the network, and the callbacks it gave it.
struct fake_net {
  struct exchange {
    std::string address;
    sg::push_pull local;
    std::function<void(caf::expected<sg::push_pull>)> done;
  };
  std::vector<std::pair<std::string, sg::packet>> sent;
  std::vector<exchange> push_pulls;
  sg::transport_callbacks callbacks;
  bool fail_start = false;
};

class fake_io final : public sa::gossip_io {
public:
  explicit fake_io(std::shared_ptr<fake_net> net) : net_(std::move(net)) {}
  std::string advertise_address() const override { return self_address; }
  std::uint16_t port() const override { return 7946; }
  void send(const std::string& address, const sg::packet& msg) override {
    net_->sent.emplace_back(address, msg);
  }
  void push_pull_with(const std::string& address, sg::push_pull local,
                      std::function<void(caf::expected<sg::push_pull>)> done) override {
    net_->push_pulls.push_back({address, std::move(local), std::move(done)});
  }

private:
  std::shared_ptr<fake_net> net_;
};

/// What the actor reported to its parent.
struct parent_log {
  std::optional<std::string> bound;
  std::optional<std::string> failed;
  std::vector<std::pair<bool, std::string>> joined;
  std::vector<std::vector<std::string>> peers;
};

caf::behavior recorder(caf::event_based_actor*, std::shared_ptr<parent_log> log) {
  return {
      [log](sa::bound_atom, const std::string& addr, std::uint16_t) { log->bound = addr; },
      [log](sa::failed_atom, const std::string& msg) { log->failed = msg; },
      [log](sa::joined_atom, bool ok, const std::string& msg) {
        log->joined.emplace_back(ok, msg);
      },
      [log](sa::peers_atom, const std::vector<std::string>& peers, std::uint64_t) {
        log->peers.push_back(peers);
      },
  };
}

sg::member_update alive(const std::string& name, const std::string& address,
                        std::uint64_t inc = 0) {
  sg::member_update u;
  u.state = sg::member_state::alive;
  u.name = name;
  u.address = address;
  u.incarnation = inc;
  return u;
}

/// The seed's answer to a join: itself and the joiner, alive.
sg::push_pull seed_state() {
  sg::push_pull pp;
  pp.sender = "seed";
  pp.sender_address = seed_address;
  pp.members = {alive("seed", seed_address), alive("self", self_address)};
  return pp;
}

/// A ping from the seed to us.
sg::packet ping_from_seed(std::uint32_t seq) {
  sg::packet ping;
  ping.kind = sg::packet_kind::ping;
  ping.seq = seq;
  ping.sender = "seed";
  ping.sender_address = seed_address;
  ping.target = "self";
  return ping;
}

class membership_actor_test : public ::testing::Test,
                              public test_coordinator_fixture<caf::actor_system_config> {
protected:
  membership_actor_test() {
    spdlog::set_level(spdlog::level::off);
    parent_ = sys.spawn(recorder, log_);
  }

  ~membership_actor_test() override {
    // The actor keeps a tick pending forever: stop it before the fixture's run().
    if (actor_)
      self->send_exit(actor_, caf::exit_reason::kill);
    self->send_exit(parent_, caf::exit_reason::kill);
    sched.run();
    spdlog::set_level(spdlog::level::info);
  }

  sa::membership_params params(std::vector<std::string> seeds = {}) {
    sa::membership_params p;
    p.name = "self";
    p.swim.probe_interval = 200ms;
    p.swim.probe_timeout = 100ms;
    p.swim.gossip_interval = 50ms;
    p.seeds = std::move(seeds);
    p.join_required = true;
    p.join_timeout = 3s;
    p.rng_seed = 42;
    p.make_io =
        [net = net_](sg::transport_callbacks cbs) -> caf::expected<std::unique_ptr<sa::gossip_io>> {
      if (net->fail_start)
        return sg::make_error(sg::errc::io_failure, "bind 10.0.0.1:7946: address in use");
      net->callbacks = std::move(cbs);
      return std::unique_ptr<sa::gossip_io>{std::make_unique<fake_io>(net)};
    };
    return p;
  }

  void start(sa::membership_params p) {
    actor_ = sa::spawn_membership_actor(sys, parent_, std::move(p));
    sched.run();
  }

  /// Advances virtual time in steps, running every actor after each.
  void advance(caf::timespan total, caf::timespan step = 10ms) {
    for (caf::timespan t{0}; t < total; t += step) {
      advance_time(step);
      sched.run();
    }
  }

  /// Asks the actor for a string view (members_atom, events_atom).
  template <class Atom> std::string ask(Atom what) {
    std::string out;
    auto rh = self->request(actor_, caf::infinite, what);
    sched.run();
    rh.receive([&](std::string& s) { out = std::move(s); },
               [&](caf::error& err) { ADD_FAILURE() << caf::to_string(err); });
    return out;
  }

  /// The member `name` in the members JSON view contains `needle`.
  bool member_has(const std::string& name, const std::string& needle) {
    auto json = ask(sa::members_atom::value);
    auto at = json.find("\"name\":\"" + name + "\"");
    if (at == std::string::npos)
      return false;
    auto end = json.find('}', json.find("\"tags\"", at) + 8);
    return json.substr(at, end - at).find(needle) != std::string::npos;
  }

  /// Completes every pending push-pull with `result`.
  void answer_push_pulls(const caf::expected<sg::push_pull>& result) {
    auto pending = std::move(net_->push_pulls);
    net_->push_pulls.clear();
    for (auto& pp : pending)
      pp.done(result);
    sched.run();
  }

  /// The seed opens a push-pull with us, alive at `incarnation`; returns our answer.
  std::optional<caf::expected<sg::push_pull>> push_pull_from_seed(std::uint64_t incarnation) {
    auto state = seed_state();
    state.members[0].incarnation = incarnation;
    std::optional<caf::expected<sg::push_pull>> answer;
    serve_push_pull(net_->callbacks, state,
                    [&](caf::expected<sg::push_pull> r) { answer = std::move(r); });
    sched.run();
    return answer;
  }

  /// Something was sent to the seed since the log was last cleared.
  bool sent_to_seed() const {
    return std::any_of(net_->sent.begin(), net_->sent.end(),
                       [](const auto& s) { return s.first == seed_address; });
  }

  /// Joins through the seed, then bans it as the identity actor does.
  void join_then_ban_seed(sa::membership_params p) {
    p.seeds = {seed_address};
    start(std::move(p));
    answer_push_pulls(seed_state());
    self->send(actor_, sa::ban_atom::value, std::string{"seed"});
    sched.run();
  }

  std::shared_ptr<fake_net> net_ = std::make_shared<fake_net>();
  std::shared_ptr<parent_log> log_ = std::make_shared<parent_log>();
  caf::actor parent_;
  caf::actor actor_;
};

TEST_F(membership_actor_test, starts_alone_and_reports_its_address) {
  start(params());
  ASSERT_TRUE(log_->bound);
  EXPECT_EQ(*log_->bound, self_address);
  EXPECT_TRUE(net_->push_pulls.empty());
  EXPECT_TRUE(log_->joined.empty());
  EXPECT_TRUE(member_has("self", "\"state\":\"alive\""));
  EXPECT_TRUE(member_has("self", self_address));
}

TEST_F(membership_actor_test, failed_start_is_reported_to_the_parent) {
  net_->fail_start = true;
  start(params());
  ASSERT_TRUE(log_->failed);
  EXPECT_NE(log_->failed->find("address in use"), std::string::npos) << *log_->failed;
  EXPECT_FALSE(log_->bound);
}

TEST_F(membership_actor_test, own_address_is_not_a_seed) {
  start(params({self_address}));
  EXPECT_TRUE(net_->push_pulls.empty());
  advance(4s, 100ms);
  EXPECT_TRUE(log_->joined.empty());
}

TEST_F(membership_actor_test, joins_through_a_seed) {
  start(params({seed_address}));
  ASSERT_EQ(net_->push_pulls.size(), 1u);
  EXPECT_EQ(net_->push_pulls[0].address, seed_address);
  EXPECT_TRUE(net_->push_pulls[0].local.join);
  answer_push_pulls(seed_state());
  ASSERT_EQ(log_->joined.size(), 1u);
  EXPECT_TRUE(log_->joined[0].first);
  EXPECT_EQ(log_->joined[0].second, seed_address);
  EXPECT_TRUE(member_has("seed", "\"state\":\"alive\""));
  ASSERT_FALSE(log_->peers.empty());
  EXPECT_EQ(log_->peers.back(), std::vector<std::string>{seed_address});
  // The join deadline passing afterwards changes nothing.
  advance(4s, 100ms);
  EXPECT_EQ(log_->joined.size(), 1u);
  EXPECT_NE(ask(sa::events_atom::value).find("\"event\":\"joined\""), std::string::npos);
}

TEST_F(membership_actor_test, join_retries_with_backoff_then_gives_up) {
  start(params({seed_address}));
  auto refused = caf::expected<sg::push_pull>{
      sg::make_error(sg::errc::io_failure, "connect 10.0.0.2:7946: connection refused")};
  std::size_t attempts = 0;
  // Bounded: 3 s of virtual time in 10 ms steps.
  for (int step = 0; step < 300 && log_->joined.empty(); ++step) {
    attempts += net_->push_pulls.size();
    answer_push_pulls(refused);
    advance_time(10ms);
    sched.run();
  }
  // 200 ms doubling (with jitter in [0.5, 1)) within 3 s: several attempts, not a storm.
  EXPECT_GE(attempts, 3u);
  EXPECT_LE(attempts, 10u);
  ASSERT_EQ(log_->joined.size(), 1u);
  EXPECT_FALSE(log_->joined[0].first);
  const auto& msg = log_->joined[0].second;
  EXPECT_NE(msg.find("could not join"), std::string::npos) << msg;
  EXPECT_NE(msg.find(seed_address), std::string::npos) << msg;
  EXPECT_NE(msg.find("connection refused"), std::string::npos) << msg;
}

TEST_F(membership_actor_test, answers_pings_and_push_pulls) {
  start(params());
  net_->callbacks.on_packet(ping_from_seed(7), seed_address);
  sched.run();
  auto acked = std::any_of(net_->sent.begin(), net_->sent.end(), [](const auto& s) {
    return s.first == seed_address && s.second.kind == sg::packet_kind::ack && s.second.seq == 7;
  });
  EXPECT_TRUE(acked);
  std::optional<sg::push_pull> answer;
  serve_push_pull(net_->callbacks, seed_state(), [&](caf::expected<sg::push_pull> r) {
    ASSERT_TRUE(r);
    answer = std::move(*r);
  });
  sched.run();
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->sender, "self");
  EXPECT_TRUE(member_has("seed", "\"state\":\"alive\""));
}

TEST_F(membership_actor_test, registered_extension_piggybacks_hears_and_adds_a_section) {
  auto heard = std::make_shared<std::vector<std::string>>();
  auto ext = std::make_shared<sg::queued_extension>(
      7, sg::payload_queue_config{},
      [heard](std::string_view bytes, const std::string& sender, sg::time_point) {
        heard->push_back(sender + ":" + std::string(bytes));
        return sg::extension_effects{};
      },
      [](bool) -> std::optional<std::string> { return "table"; });
  ASSERT_FALSE(ext->queue().push("news"));
  auto p = params();
  p.extensions.push_back({7, "routing", ext, 0, std::nullopt});
  start(std::move(p));
  ASSERT_FALSE(log_->failed);
  auto ping = ping_from_seed(7);
  ping.extensions = {{7, "route"}};
  net_->callbacks.on_packet(ping, seed_address);
  sched.run();
  EXPECT_EQ(*heard, (std::vector<std::string>{"seed:route"}));
  auto ack = std::find_if(net_->sent.begin(), net_->sent.end(), [](const auto& s) {
    return s.first == seed_address && s.second.kind == sg::packet_kind::ack && s.second.seq == 7;
  });
  ASSERT_NE(ack, net_->sent.end());
  EXPECT_EQ(ack->second.extensions, (std::vector<sg::extension_payload>{{7, "news"}}));
  auto answer = push_pull_from_seed(0);
  ASSERT_TRUE(answer && *answer);
  EXPECT_EQ((*answer)->extensions, (std::vector<sg::extension_payload>{{7, "table"}}));
}

TEST_F(membership_actor_test, refused_extension_fails_the_start) {
  auto p = params();
  p.extensions.push_back(
      {0, "kindless", std::make_shared<sg::queued_extension>(0), 0, std::nullopt});
  start(std::move(p));
  ASSERT_TRUE(log_->failed);
  EXPECT_NE(log_->failed->find("cannot register gossip extension"), std::string::npos)
      << *log_->failed;
  EXPECT_NE(log_->failed->find("kind 0"), std::string::npos) << *log_->failed;
}

TEST_F(membership_actor_test, probes_members_and_suspects_a_silent_one) {
  start(params({seed_address}));
  answer_push_pulls(seed_state());
  net_->sent.clear();
  advance(3s);
  auto pinged = std::any_of(net_->sent.begin(), net_->sent.end(), [](const auto& s) {
    return s.first == seed_address && s.second.kind == sg::packet_kind::ping;
  });
  EXPECT_TRUE(pinged);
  // Nobody acks: the seed is suspected, then declared dead.
  EXPECT_FALSE(member_has("seed", "\"state\":\"alive\""));
}

TEST_F(membership_actor_test, ban_kills_a_member_and_its_pings_go_unanswered) {
  join_then_ban_seed(params());
  EXPECT_TRUE(member_has("seed", "\"state\":\"dead\""));
  EXPECT_NE(ask(sa::events_atom::value).find("\"event\":\"failed\""), std::string::npos);
  ASSERT_FALSE(log_->peers.empty());
  EXPECT_TRUE(log_->peers.back().empty()) << "the seed is no restart peer any more";
  net_->sent.clear();
  auto ping = ping_from_seed(7);
  ping.updates = {alive("seed", seed_address, 5)};
  net_->callbacks.on_packet(ping, seed_address);
  sched.run();
  advance(3s);
  EXPECT_FALSE(sent_to_seed()) << "no ack, no probe, no gossip";
  EXPECT_TRUE(member_has("seed", "\"state\":\"dead\""));
}

TEST_F(membership_actor_test, authenticated_push_pull_lifts_a_ban) {
  auto p = params();
  p.authenticated_push_pull = true;
  join_then_ban_seed(std::move(p));
  ASSERT_TRUE(member_has("seed", "\"state\":\"dead\""));
  // Under TLS the seed got through with a valid certificate: it was admitted again.
  auto answer = push_pull_from_seed(1);
  ASSERT_TRUE(answer);
  ASSERT_TRUE(*answer) << sg::render(answer->error());
  EXPECT_EQ((*answer)->sender, "self");
  EXPECT_TRUE(member_has("seed", "\"state\":\"alive\""));
}

TEST_F(membership_actor_test, unauthenticated_push_pull_keeps_the_ban) {
  join_then_ban_seed(params());
  auto answer = push_pull_from_seed(1);
  ASSERT_TRUE(answer);
  ASSERT_FALSE(*answer);
  EXPECT_EQ(answer->error().code(), static_cast<std::uint8_t>(sg::errc::peer_refused));
  EXPECT_NE(sg::refusal_reason(answer->error()).find("banned"), std::string::npos);
  EXPECT_TRUE(member_has("seed", "\"state\":\"dead\""));
  net_->sent.clear();
  advance(2s);
  EXPECT_FALSE(sent_to_seed());
}

TEST_F(membership_actor_test, leave_alone_answers_at_once) {
  start(params());
  auto rh = self->request(actor_, caf::infinite, sa::leave_atom::value);
  sched.run();
  bool left = false;
  rh.receive([&](sa::left_atom) { left = true; },
             [&](caf::error& err) { ADD_FAILURE() << caf::to_string(err); });
  EXPECT_TRUE(left);
  EXPECT_TRUE(member_has("self", "\"state\":\"left\""));
}

TEST_F(membership_actor_test, leave_spreads_the_news_before_answering) {
  start(params({seed_address}));
  answer_push_pulls(seed_state());
  net_->sent.clear();
  auto rh = self->request(actor_, caf::infinite, sa::leave_atom::value);
  sched.run();
  // Within the 2 s bound the answer arrives, after the news went out to the seed.
  advance(2100ms);
  bool left = false;
  rh.receive([&](sa::left_atom) { left = true; },
             [&](caf::error& err) { ADD_FAILURE() << caf::to_string(err); });
  EXPECT_TRUE(left);
  auto told = std::any_of(net_->sent.begin(), net_->sent.end(), [](const auto& s) {
    return s.first == seed_address &&
           std::any_of(s.second.updates.begin(), s.second.updates.end(), [](const auto& u) {
             return u.name == "self" && u.state == sg::member_state::left;
           });
  });
  EXPECT_TRUE(told);
}

} // namespace
