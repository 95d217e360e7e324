// Fast gossip rounds for extensions (swim_config::extension_gossip_interval and
// membership::on_extension_news): a local change goes out at once, then every 50 ms while it
// waits, never faster; without payloads the core keeps its normal pace.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/membership.hpp"
#include "gossip/payload_queue.hpp"
#include "tests/support/core_packets.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;
using namespace test_support;

constexpr extension_kind kind = 7;

swim_config slow_gossip() {
  swim_config cfg;
  cfg.probe_interval = 1h; // only gossip rounds send
  cfg.gossip_interval = 1s;
  cfg.extension_gossip_interval = 50ms;
  cfg.push_pull_interval = duration::zero();
  return cfg;
}

/// Datagrams in `fx` that carry a payload of `kind`.
std::size_t carrying(const effects& fx) {
  std::size_t n = 0;
  for (const auto& out : fx.packets)
    for (const auto& x : out.message.extensions)
      n += x.kind == kind;
  return n;
}

struct news_fixture : ::testing::Test {
  news_fixture() {
    ext = std::make_shared<queued_extension>(kind);
    EXPECT_FALSE(core.add_extension(kind, "news", ext));
    std::vector<member_update> ups;
    for (const auto* n : {"b", "c", "d", "e", "f"})
      ups.push_back(alive(n, 0));
    static_cast<void>(core.on_packet(gossip_from("b", ups), t0));
    // Drain the member updates that joining queued, at the slow pace.
    auto t = t0;
    for (int k = 0; k < 100 && core.pending_broadcasts() > 0; ++k) {
      t = std::max(core.next_deadline(), t + 1ms);
      static_cast<void>(core.on_tick(t));
    }
    now = t + 1s; // well after the last round
  }

  membership core{"a", addr("a"), {}, slow_gossip(), 1, t0};
  std::shared_ptr<queued_extension> ext;
  time_point now;
};

TEST_F(news_fixture, news_sends_at_once_then_every_fast_interval_while_payloads_wait) {
  ASSERT_FALSE(ext->queue().push("change-1", "k1"));
  auto fx = core.on_extension_news(now);
  EXPECT_GT(carrying(fx), 0u) << "the change did not go out at once";
  // While it waits, rounds come every 50 ms, not every second.
  EXPECT_LE(core.next_deadline(), now + 50ms);
  // News again within 50 ms does not add a round.
  EXPECT_EQ(carrying(core.on_extension_news(now + 10ms)), 0u);
  // Run until the payload was sent its limit: every round 50 ms apart.
  std::vector<time_point> rounds;
  auto t = now;
  for (int k = 0; k < 200 && ext->has_payloads(); ++k) {
    t = core.next_deadline();
    if (carrying(core.on_tick(t)) > 0)
      rounds.push_back(t);
  }
  ASSERT_FALSE(ext->has_payloads());
  ASSERT_FALSE(rounds.empty());
  for (std::size_t k = 1; k < rounds.size(); ++k)
    EXPECT_EQ(rounds[k] - rounds[k - 1], 50ms);
  // Then back to the normal pace.
  const auto before = t;
  static_cast<void>(core.on_tick(core.next_deadline()));
  EXPECT_GE(core.next_deadline(), before + 1s - 50ms);
}

TEST_F(news_fixture, news_without_payloads_changes_nothing) {
  // Before the next timer: nothing is due, and no payload brings a round forward.
  const auto next = core.next_deadline();
  EXPECT_TRUE(core.on_extension_news(next - 1ms).packets.empty());
  EXPECT_EQ(core.next_deadline(), next);
}

TEST_F(news_fixture, a_payload_heard_from_a_peer_is_forwarded_within_the_fast_interval) {
  // The sink republishes what it hears (epidemic): the core brings its next round forward.
  payload_queue* relay_queue = nullptr;
  auto relay = std::make_shared<queued_extension>(
      kind + 1, payload_queue_config{},
      [&](std::string_view bytes, const std::string&, time_point) {
        static_cast<void>(relay_queue->push(std::string{bytes}, std::string{bytes}));
        return extension_effects{};
      });
  relay_queue = &relay->queue();
  ASSERT_FALSE(core.add_extension(kind + 1, "relay", relay));
  auto p = gossip_from("c", {});
  p.extensions.push_back({kind + 1, "news-from-c"});
  static_cast<void>(core.on_packet(p, now));
  EXPECT_LE(core.next_deadline(), now + 50ms);
}

} // namespace
} // namespace starling::gossip
