// The agent's directory (actors/directory.hpp) and the admin actor that finds the others
// through it: a restarted child is reached at its new address, a late "down" of the old one
// does not unbind the new one, and a request for a restarting child is answered with an
// error rather than lost. CAF's deterministic test coordinator.
#define CAF_TEST_NO_MAIN
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/test/unit_test_impl.hpp>
#include <spdlog/spdlog.h>

#include "actors/admin_actor.hpp"
#include "actors/admin_server.hpp"
#include "actors/atoms.hpp"
#include "actors/directory.hpp"
#include "actors/errc.hpp"
#include "actors/gossip_io.hpp"
#include "tests/support/caf_test.hpp"

namespace sa = starling::actors;

namespace {

/// A stand-in membership actor that answers `members` with its own label.
caf::behavior labelled_members(caf::event_based_actor*, std::string label) {
  return {
      [=](sa::members_atom) { return label; },
  };
}

class directory_test : public ::testing::Test,
                       public test_coordinator_fixture<caf::actor_system_config> {
protected:
  directory_test() { spdlog::set_level(spdlog::level::off); }

  ~directory_test() override {
    for (auto& a : spawned_)
      self->send_exit(a, caf::exit_reason::kill);
    sched.run();
    spdlog::set_level(spdlog::level::info);
  }

  caf::actor spawn_members(std::string label) {
    auto a = sys.spawn(labelled_members, std::move(label));
    spawned_.push_back(a);
    return a;
  }

  caf::actor spawn_admin() {
    sa::admin_params p;
    p.dir = dir_;
    p.transport_counters = std::make_shared<sa::transport_drop_counters>();
    p.admin_stats = std::make_shared<sa::admin_server_stats>();
    auto a = sa::spawn_admin_actor(sys, std::move(p));
    spawned_.push_back(a);
    return a;
  }

  /// Sends one admin request; the string answer or the error rendered.
  std::string admin(const caf::actor& to, std::vector<std::string> args) {
    std::string out = "(no answer)";
    auto rh = self->request(to, caf::infinite, sa::admin_atom::value, std::move(args));
    sched.run();
    rh.receive([&](std::string& s) { out = std::move(s); },
               [&](caf::error& err) { out = "error: " + sa::message_of(err); });
    return out;
  }

  std::shared_ptr<sa::directory> dir_ = std::make_shared<sa::directory>();
  std::vector<caf::actor> spawned_;
};

TEST_F(directory_test, finds_what_is_bound_and_nothing_else) {
  EXPECT_FALSE(dir_->find(sa::role::membership));
  auto m = spawn_members("first");
  dir_->bind(sa::role::membership, m);
  EXPECT_EQ(dir_->find(sa::role::membership), m);
  EXPECT_FALSE(dir_->find(sa::role::identity));
  dir_->clear();
  EXPECT_FALSE(dir_->find(sa::role::membership));
}

TEST_F(directory_test, a_late_unbind_of_the_old_instance_keeps_the_new_one) {
  auto old_instance = spawn_members("old");
  auto new_instance = spawn_members("new");
  dir_->bind(sa::role::membership, old_instance);
  dir_->bind(sa::role::membership, new_instance); // the restart
  dir_->unbind(sa::role::membership, old_instance.address());
  EXPECT_EQ(dir_->find(sa::role::membership), new_instance);
  dir_->unbind(sa::role::membership, new_instance.address());
  EXPECT_FALSE(dir_->find(sa::role::membership));
}

TEST_F(directory_test, holds_no_actor_alive) {
  auto weak = [&] {
    auto m = sys.spawn(labelled_members, std::string{"gone"});
    dir_->bind(sa::role::membership, m);
    self->send_exit(m, caf::exit_reason::kill);
    sched.run();
    return m.address();
  }();
  // Nobody holds the exited actor any more: the directory does not bring it back.
  EXPECT_FALSE(dir_->find(sa::role::membership));
  EXPECT_TRUE(weak); // the address itself stays comparable
}

TEST_F(directory_test, the_admin_actor_reaches_the_child_of_the_moment) {
  auto admin_actor = spawn_admin();
  dir_->bind(sa::role::membership, spawn_members("first"));
  EXPECT_EQ(admin(admin_actor, {"members"}), "first");
  // The membership actor restarts: the supervisor binds the new instance, nobody else
  // is told, and the next request reaches it.
  dir_->bind(sa::role::membership, spawn_members("second"));
  EXPECT_EQ(admin(admin_actor, {"members"}), "second");
}

TEST_F(directory_test, a_request_for_a_restarting_child_is_answered_with_an_error) {
  auto admin_actor = spawn_admin();
  const auto answer = admin(admin_actor, {"members"});
  EXPECT_NE(answer.find("error: "), std::string::npos) << answer;
  EXPECT_NE(answer.find("membership actor is restarting"), std::string::npos) << answer;
  const auto certs = admin(admin_actor, {"certs"});
  EXPECT_NE(certs.find("identity actor is restarting"), std::string::npos) << certs;
}

TEST_F(directory_test, stats_without_a_membership_actor_reads_its_group_as_null) {
  auto admin_actor = spawn_admin();
  const auto json = admin(admin_actor, {"stats"});
  EXPECT_NE(json.find("\"membership\":null"), std::string::npos) << json;
  EXPECT_NE(json.find("\"admin\":{"), std::string::npos) << json;
  EXPECT_NE(json.find("\"sealer\":null"), std::string::npos) << json;
}

} // namespace
