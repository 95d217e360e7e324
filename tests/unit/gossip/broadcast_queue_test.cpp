// Unit tests of the dissemination queue (gossip/broadcast_queue.hpp).
#include <gtest/gtest.h>

#include "gossip/broadcast_queue.hpp"
#include "gossip/membership.hpp"

namespace starling::gossip {
namespace {

member_update alive(std::string name, std::uint64_t inc) {
  return member_update{member_state::alive, name, name + ":7946", inc, {}, {}};
}

/// Every update costs the same: budget counts updates.
std::size_t unit_cost(const member_update&) { return 1; }

TEST(broadcast_queue, sends_each_update_exactly_limit_times_then_drops_it) {
  card_pool cards;
  broadcast_queue q{cards};
  q.push(alive("a", 1));
  for (unsigned i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(q.size(), 1u);
    auto got = q.take(100, 5, unit_cost);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got.front(), alive("a", 1));
  }
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.take(100, 5, unit_cost).empty());
}

TEST(broadcast_queue, newer_update_about_a_member_replaces_the_older) {
  card_pool cards;
  broadcast_queue q{cards};
  q.push(alive("a", 1));
  (void)q.take(100, 5, unit_cost);
  ASSERT_EQ(q.find("a")->second, 1u);
  auto suspect = member_update{member_state::suspect, "a", {}, 1, {}, "b"};
  q.push(suspect);
  EXPECT_EQ(q.size(), 1u);
  auto found = q.find("a");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->first, suspect);
  EXPECT_EQ(found->second, 0u) << "a replacement starts a fresh transmission count";
}

TEST(broadcast_queue, picks_least_sent_first_then_newest) {
  card_pool cards;
  broadcast_queue q{cards};
  q.push(alive("old", 1));
  (void)q.take(1, 10, unit_cost); // "old" now sent once
  q.push(alive("mid", 1));
  q.push(alive("new", 1));
  auto got = q.take(3, 10, unit_cost);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].name, "new");
  EXPECT_EQ(got[1].name, "mid");
  EXPECT_EQ(got[2].name, "old");
  // With room for one only, the least-sent newest wins.
  q.push(alive("fresh", 1));
  auto one = q.take(1, 10, unit_cost);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].name, "fresh");
}

TEST(broadcast_queue, skips_what_does_not_fit_and_keeps_filling) {
  card_pool cards;
  broadcast_queue q{cards};
  auto big = alive("big", 1);
  big.tags["blob"] = std::string(500, 'x');
  q.push(alive("small1", 1));
  q.push(big);
  q.push(alive("small2", 1));
  auto budget = encoded_size_bound(alive("small1", 1)) * 2 + 10;
  auto got = q.take(budget, 10, encoded_size_bound);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].name, "small2");
  EXPECT_EQ(got[1].name, "small1");
  EXPECT_EQ(q.find("big")->second, 0u) << "not sent, not counted";
}

TEST(broadcast_queue, skip_name_leaves_that_member_queued) {
  card_pool cards;
  broadcast_queue q{cards};
  q.push(alive("a", 1));
  q.push(alive("b", 1));
  auto got = q.take(10, 10, unit_cost, "a");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].name, "b");
  EXPECT_EQ(q.find("a")->second, 0u);
  q.erase("a");
  EXPECT_FALSE(q.find("a"));
  EXPECT_EQ(q.size(), 1u);
}

TEST(broadcast_queue, many_entries_keep_the_index_consistent) {
  card_pool cards;
  broadcast_queue q{cards};
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 50; ++i)
      q.push(alive("m" + std::to_string(i), static_cast<std::uint64_t>(round)));
  EXPECT_EQ(q.size(), 50u);
  std::size_t sent = 0;
  while (!q.empty()) {
    auto got = q.take(7, 3, unit_cost);
    ASSERT_FALSE(got.empty());
    sent += got.size();
  }
  EXPECT_EQ(sent, 150u);
}

TEST(broadcast_queue, a_full_packet_stops_the_scan_but_small_updates_still_fill_gaps) {
  card_pool cards;
  broadcast_queue q{cards};
  // Newest first: one small update, then many large ones, then (oldest) small ones.
  for (int i = 0; i < 100; ++i) {
    member_update u;
    u.name = "small-" + std::to_string(i);
    q.push(u);
  }
  for (int i = 0; i < 100; ++i) {
    member_update u;
    u.name = "large-" + std::to_string(i);
    u.address = std::string(200, 'x');
    q.push(u);
  }
  auto cost = [](const member_update& u) { return u.name.size() + u.address.size(); };
  // Budget fits a few large updates; the many that no longer fit end the scan, so the old
  // small updates behind them wait for the next packet instead of costing a full walk.
  auto out = q.take(1000, 10, cost);
  ASSERT_EQ(out.size(), 4u);
  for (const auto& u : out)
    EXPECT_EQ(u.name.rfind("large-", 0), 0u);
  // Misses count only once something fits: updates too large for any packet at the head
  // of the queue do not starve the small ones behind them.
  broadcast_queue h{cards};
  for (int i = 0; i < 3; ++i) {
    member_update u;
    u.name = "tiny" + std::to_string(i);
    h.push(u);
  }
  for (int i = 0; i < 50; ++i) {
    member_update u;
    u.name = "huge-" + std::to_string(i);
    u.address = std::string(5000, 'x');
    h.push(u);
  }
  EXPECT_EQ(h.take(100, 10, cost).size(), 3u);
  // Misses are counted only in a row: a small update right after a few misses still fits.
  broadcast_queue r{cards};
  for (int i = 0; i < 3; ++i) {
    member_update u;
    u.name = "s" + std::to_string(i);
    r.push(u);
  }
  member_update big;
  big.name = "big";
  big.address = std::string(5000, 'x');
  r.push(big);
  auto got = r.take(100, 10, cost);
  EXPECT_EQ(got.size(), 3u);
}

} // namespace
} // namespace starling::gossip
