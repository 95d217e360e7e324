// Real `starling agent` processes joining and syncing a mesh of more than 10,000 members
// (issue 15: the wire used to cap a push-pull at 4,096 members). The test process runs a
// fake peer on 127.0.0.1, port 0: the real gossip transport (plain, as the agents here run
// without certificates or keys), answering the real push-pull protocol (request type 1)
// with a state of 10,000 synthetic members besides itself, and acking the pings the agents
// send those members, so they stay alive. Nothing in the agents is test-only: they learn
// the synthetic members as they would learn any member, by push-pull and gossip.
#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gossip/codec.hpp"
#include "gossip/errc.hpp"
#include "gossip/transport.hpp"
#include "tests/support/agents.hpp"

namespace st = starling::testing;
namespace sg = starling::gossip;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// Synthetic members the fake peer holds: more than twice the old limit of 4,096.
constexpr std::size_t synthetic_members = 10000;

/// What the fake peer received by push-pull.
struct received_push_pull {
  std::string sender;
  bool join = false;
  std::size_t members = 0;
};

/// A peer in the test process that speaks the real wire: it answers push-pulls with its
/// state (itself and the synthetic members, all at its own address) and acks every ping
/// to any of them.
class fake_peer {
public:
  fake_peer() {
    sg::transport_config cfg;
    cfg.bind_host = "127.0.0.1";
    cfg.advertise_host = "127.0.0.1";
    cfg.port = 0;
    sg::transport_callbacks cbs;
    cbs.on_packet = [this](sg::packet msg, std::string) { on_packet(std::move(msg)); };
    auto spec = sg::push_pull_spec([this](sg::push_pull remote, sg::push_pull_responder reply) {
      std::shared_ptr<const sg::push_pull> state;
      {
        std::lock_guard<std::mutex> guard{mutex_};
        received_.push_back({remote.sender, remote.join, remote.members.size()});
        state = state_;
      }
      reply(*state);
    });
    EXPECT_FALSE(cbs.requests.add(sg::request_types::push_pull, std::move(spec)));
    auto t = sg::transport::start(std::move(cfg), std::move(cbs));
    if (!t) {
      ADD_FAILURE() << "fake peer: " << sg::render(t.error());
      return;
    }
    transport_ = std::move(*t);
    address_ = transport_->advertise_address();
    auto state = std::make_shared<sg::push_pull>();
    state->sender = name;
    state->sender_address = address_;
    state->members.push_back({sg::member_state::alive, name, address_, 1, {}, {}});
    for (std::size_t i = 0; i < synthetic_members; ++i)
      state->members.push_back(
          {sg::member_state::alive, synthetic_name(i), address_, 1, {{"role", "synthetic"}}, {}});
    std::lock_guard<std::mutex> guard{mutex_};
    state_ = std::move(state);
    ready_.store(true);
  }

  ~fake_peer() {
    ready_.store(false);
    if (transport_)
      transport_->stop();
  }

  fake_peer(const fake_peer&) = delete;
  fake_peer& operator=(const fake_peer&) = delete;

  static constexpr const char* name = "fake-peer";

  static std::string synthetic_name(std::size_t i) { return "synthetic-" + std::to_string(i); }

  [[nodiscard]] bool started() const { return transport_ != nullptr; }
  [[nodiscard]] const std::string& address() const { return address_; }

  /// The push-pulls received so far.
  [[nodiscard]] std::vector<received_push_pull> received() const {
    std::lock_guard<std::mutex> guard{mutex_};
    return received_;
  }

  /// Pings acked so far.
  [[nodiscard]] std::uint64_t acks() const { return acks_.load(); }

private:
  [[nodiscard]] static bool is_ours(const std::string& member) {
    return member == name || member.rfind("synthetic-", 0) == 0;
  }

  /// On the transport's thread: a ping to one of ours is acked in its name; a ping_req for
  /// one of ours is acked as its helper would.
  void on_packet(sg::packet msg) {
    if (!ready_.load() || msg.sender_address.empty())
      return;
    sg::packet ack;
    ack.kind = sg::packet_kind::ack;
    ack.seq = msg.seq;
    ack.sender_address = address_;
    if (msg.kind == sg::packet_kind::ping) {
      ack.sender = msg.target.empty() ? std::string{name} : msg.target;
      if (!is_ours(ack.sender))
        return;
    } else if (msg.kind == sg::packet_kind::ping_req && is_ours(msg.target)) {
      ack.sender = name;
    } else {
      return;
    }
    transport_->send(msg.sender_address, ack);
    acks_.fetch_add(1);
  }

  std::unique_ptr<sg::transport> transport_;
  std::string address_;
  std::atomic<bool> ready_{false};
  std::atomic<std::uint64_t> acks_{0};
  mutable std::mutex mutex_;
  std::shared_ptr<const sg::push_pull> state_;
  std::vector<received_push_pull> received_;
};

class large_state_test : public ::testing::Test {
protected:
  void SetUp() override {
    config_ = tmp_.path() / "agent.toml";
    st::write_text(config_, st::fast_agent_config("1s"));
  }

  st::agent_node& start(const std::string& name, const std::vector<std::string>& seeds) {
    const auto data_dir = tmp_.path() / "data" / name;
    auto argv = st::agent_argv(config_, name, data_dir, seeds, {"--tag", "role=test"});
    nodes_[name] = st::start_agent(procs_, argv, name, data_dir, 30s);
    return nodes_[name];
  }

  /// Waits until `n`'s view holds at least `count` members (in any state: a synthetic member
  /// cannot refute a suspicion, so one lost ping may leave it suspect) with each of `alive`
  /// among them, alive. Reports what it last saw.
  ::testing::AssertionResult holds(const st::agent_node& n, std::size_t count,
                                   const std::vector<std::string>& alive,
                                   st::test_clock::duration timeout) {
    std::string last = "no members view";
    const bool ok = st::poll_until(
        timeout,
        [&] {
          auto view = st::members_view(n.info.admin);
          if (!view)
            return false;
          const auto& members = view->at("members");
          std::size_t alive_count = 0, named_alive = 0;
          for (const auto& m : members) {
            if (m.at("state") != "alive")
              continue;
            ++alive_count;
            if (std::find(alive.begin(), alive.end(), m.at("name").get<std::string>()) !=
                alive.end())
              ++named_alive;
          }
          last = std::to_string(members.size()) + " members, " + std::to_string(alive_count) +
                 " alive, " + std::to_string(named_alive) + " of the " +
                 std::to_string(alive.size()) + " agents alive";
          return members.size() >= count && named_alive == alive.size();
        },
        500ms);
    if (ok)
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << n.name << " sees " << last << "; expected at least " << count << " members";
  }

  st::temp_dir tmp_{"starling-large"};
  st::process_group procs_{tmp_.path() / "logs"};
  fs::path config_;
  std::map<std::string, st::agent_node> nodes_;
};

TEST_F(large_state_test, agents_join_and_sync_a_mesh_of_10000_members) {
  fake_peer fake;
  ASSERT_TRUE(fake.started());
  // node-a joins through the fake peer: its join answer holds 10,001 members.
  auto& a = start("node-a", {fake.address()});
  ASSERT_FALSE(HasFailure());
  const std::size_t with_a = synthetic_members + 2; // the synthetic members, fake, node-a
  ASSERT_TRUE(holds(a, with_a, {"node-a"}, 60s));
  // node-b joins through node-a, agent to agent: node-a's answer holds 10,002 members.
  auto& b = start("node-b", {a.info.gossip});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(holds(b, with_a + 1, {"node-a", "node-b"}, 60s));
  ASSERT_TRUE(holds(a, with_a + 1, {"node-a", "node-b"}, 30s));
  // Periodic syncs: both agents push their full state (10,003 rows) to random members,
  // nearly all of them synthetic, so the fake peer receives them and answers with its own.
  std::vector<received_push_pull> syncs;
  const bool synced = st::poll_until(
      120s,
      [&] {
        syncs.clear();
        for (const auto& r : fake.received())
          if (!r.join && r.members > synthetic_members)
            syncs.push_back(r);
        bool from_a = false, from_b = false;
        for (const auto& r : syncs) {
          from_a = from_a || r.sender == "node-a";
          from_b = from_b || r.sender == "node-b";
        }
        return from_a && from_b;
      },
      500ms);
  EXPECT_TRUE(synced) << "the fake peer received " << fake.received().size() << " push-pulls, "
                      << syncs.size() << " of them periodic syncs with over " << synthetic_members
                      << " members";
  // The agents probed the synthetic members and the fake peer answered for them; after the
  // syncs both agents still hold the whole state and see each other alive.
  EXPECT_GT(fake.acks(), 0u);
  EXPECT_TRUE(holds(a, with_a + 1, {"node-a", "node-b"}, 10s));
  EXPECT_TRUE(holds(b, with_a + 1, {"node-a", "node-b"}, 10s));
  // Both agents are still running.
  EXPECT_TRUE(a.proc->running());
  EXPECT_TRUE(b.proc->running());
}

} // namespace
