// The routing actor's hand-over of this node's own records (actors/routing_actor.hpp): the
// local data plane (an applier, the proxy controller) takes a new registration in before any
// peer can hear of it, through gossip or the section's digests; a stalled applier delays
// the spread by `apply_wait` at most. CAF's deterministic test coordinator, virtual time.
#define CAF_TEST_NO_MAIN
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/test/unit_test_impl.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/routing_actor.hpp"
#include "actors/routing_relay.hpp"
#include "tests/support/caf_test.hpp"

namespace sa = starling::actors;
namespace sg = starling::gossip;
using namespace std::chrono_literals;

namespace {

using release_atom = caf::atom_constant<caf::atom("release")>;

/// What the stand-in applier saw, shared with the test.
struct applier_log {
  std::vector<sg::snapshot_ptr> snapshots;
  std::size_t asked = 0;
};

struct applier_state {
  std::shared_ptr<applier_log> log;
  std::vector<caf::response_promise> held;
};

/// A proxy controller stand-in: records snapshots; holds its answers to applied_atom until
/// told to release them (a controller that lags behind its mailbox).
caf::behavior applier(caf::stateful_actor<applier_state>* self, std::shared_ptr<applier_log> log) {
  self->state.log = std::move(log);
  return {
      [=](sa::snapshot_atom, const sg::snapshot_ptr& snap) {
        self->state.log->snapshots.push_back(snap);
      },
      [=](sa::applied_atom) {
        ++self->state.log->asked;
        self->state.held.push_back(self->make_response_promise());
      },
      [=](release_atom) {
        for (auto& p : self->state.held)
          p.deliver(sa::applied_atom::value);
        self->state.held.clear();
      },
  };
}

class routing_actor_test : public ::testing::Test,
                           public test_coordinator_fixture<caf::actor_system_config> {
protected:
  routing_actor_test() {
    spdlog::set_level(spdlog::level::off);
    relay_ = std::make_shared<sa::routing_relay>([](sa::routing_input) { return false; });
    sa::routing_params p;
    p.name = "n1";
    p.relay = relay_;
    p.apply_wait = 1s;
    routing_ = sa::spawn_routing_actor(sys, caf::actor{}, std::move(p));
    applier_ = sys.spawn(applier, log_);
    self->send(routing_, sa::watch_atom::value, applier_, sa::applied_atom::value);
    sched.run();
  }

  ~routing_actor_test() override {
    self->send_exit(routing_, caf::exit_reason::kill);
    self->send_exit(applier_, caf::exit_reason::kill);
    sched.run();
    spdlog::set_level(spdlog::level::info);
  }

  /// Registers service "api" on the routing actor and runs everything that follows; the
  /// refusal, or "" when registered.
  std::string register_api() {
    self->send(routing_, sa::routing_atom::value,
               std::vector<std::string>{"register", "name=api", "port=8080", "protocol=http"});
    sched.run();
    std::string refusal;
    self->receive([](const std::string&) {}, [&](const caf::error& e) { refusal = sys.render(e); });
    return refusal;
  }

  /// What a peer could learn of service "api" now: from the payloads piggybacked on the
  /// next datagram, from the section of the next push-pull.
  bool gossip_names_api() {
    sg::piggyback_request req;
    req.budget = 64 << 10;
    req.max_count = 64;
    req.to = "peer";
    for (const auto& p : relay_->take_payloads(req))
      if (p.find("api") != std::string::npos)
        return true;
    return false;
  }
  bool section_names_api() {
    auto section = relay_->make_section(false);
    return section && section->find("api") != std::string::npos;
  }

  /// The last snapshot the applier got names `service`.
  bool applier_has(const std::string& service) const {
    return !log_->snapshots.empty() && log_->snapshots.back()->find(service) != nullptr;
  }

  /// The routing actor's counter `name` (stats_atom).
  std::uint64_t counter(const std::string& name) {
    std::uint64_t out = 0;
    self->send(routing_, sa::stats_atom::value);
    sched.run();
    self->receive([&](const std::vector<std::pair<std::string, std::uint64_t>>& counters,
                      const std::string&) {
      for (const auto& [k, v] : counters)
        if (k == name)
          out = v;
    });
    return out;
  }

  std::shared_ptr<sa::routing_relay> relay_;
  std::shared_ptr<applier_log> log_ = std::make_shared<applier_log>();
  caf::actor routing_;
  caf::actor applier_;
};

TEST_F(routing_actor_test, a_new_registration_reaches_the_data_plane_before_any_peer) {
  ASSERT_EQ(register_api(), "");
  // The applier has the instance and was asked to confirm; nothing went to the peers yet:
  // no payload to piggyback, and the section (digests a peer could pull by) is unchanged.
  ASSERT_TRUE(applier_has("api"));
  EXPECT_EQ(log_->asked, 1u);
  EXPECT_FALSE(gossip_names_api());
  EXPECT_FALSE(section_names_api());
  // Housekeeping and further coalesced flushes meanwhile keep the section back too.
  advance_time(300ms);
  sched.run();
  EXPECT_FALSE(gossip_names_api());
  EXPECT_FALSE(section_names_api());

  // The applier confirms: the record and the section go out.
  self->send(applier_, release_atom::value);
  sched.run();
  EXPECT_TRUE(gossip_names_api());
  EXPECT_TRUE(section_names_api());
  EXPECT_EQ(counter("apply_waits_failed"), 0u);
}

TEST_F(routing_actor_test, a_stalled_applier_delays_the_spread_by_apply_wait_at_most) {
  ASSERT_EQ(register_api(), "");
  ASSERT_TRUE(applier_has("api"));
  EXPECT_FALSE(gossip_names_api());
  EXPECT_FALSE(section_names_api());
  // The applier never answers: after apply_wait the record spreads anyway, counted.
  advance_time(1s);
  sched.run();
  EXPECT_TRUE(gossip_names_api());
  EXPECT_TRUE(section_names_api());
  EXPECT_EQ(counter("apply_waits_failed"), 1u);
}

TEST_F(routing_actor_test, a_withdrawal_reaches_the_peers_first) {
  ASSERT_EQ(register_api(), "");
  self->send(applier_, release_atom::value);
  sched.run();
  ASSERT_TRUE(gossip_names_api());
  // The applier stalls from now on; a deregistration still goes to the peers at once (they
  // stop routing here before this node refuses), and the data plane hears of it after.
  const auto asked = log_->asked;
  const auto seen = log_->snapshots.size();
  self->send(routing_, sa::routing_atom::value, std::vector<std::string>{"deregister", "api"});
  sched.run();
  EXPECT_EQ(log_->snapshots.size(), seen); // coalesced: the data plane hears of it later
  EXPECT_EQ(log_->asked, asked);           // and nothing waits for it
  advance_time(100ms);                     // the coalesced snapshot and section
  sched.run();
  ASSERT_GT(log_->snapshots.size(), seen);
  EXPECT_FALSE(applier_has("api"));
  EXPECT_FALSE(section_names_api());
}

TEST_F(routing_actor_test, a_waiting_record_never_replaces_a_newer_one) {
  // Registered (waiting for the stalled applier), then deregistered at once: the withdrawal
  // goes out, and the registration's late release must not put the older record back.
  ASSERT_EQ(register_api(), "");
  self->send(routing_, sa::routing_atom::value, std::vector<std::string>{"deregister", "api"});
  sched.run();
  self->send(applier_, release_atom::value);
  sched.run();
  EXPECT_FALSE(gossip_names_api());
  advance_time(100ms);
  sched.run();
  EXPECT_FALSE(section_names_api());
}

TEST_F(routing_actor_test, without_an_applier_a_registration_spreads_at_once) {
  self->send_exit(applier_, caf::exit_reason::kill);
  sched.run();
  ASSERT_EQ(register_api(), "");
  EXPECT_TRUE(gossip_names_api());
  EXPECT_TRUE(section_names_api());
}

} // namespace
