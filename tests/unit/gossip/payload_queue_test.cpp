// Tests of the ready-made extension helpers (gossip/payload_queue.hpp): the payload queue's
// order, transmit limit, replacement by key, bounds and refusals, and queued_extension.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/errc.hpp"
#include "gossip/membership.hpp"
#include "gossip/payload_queue.hpp"

namespace starling::gossip {
namespace {

constexpr extension_kind kind = 7;

piggyback_request room(std::size_t budget, unsigned limit = 3, std::size_t count = 64) {
  piggyback_request r;
  r.budget = budget;
  r.max_count = count;
  r.retransmit_limit = limit;
  return r;
}

TEST(payload_queue, least_sent_then_newest_first) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("old"));
  ASSERT_FALSE(q.push("new"));
  const auto one = extension_payload_bound(kind, 3);
  EXPECT_EQ(q.take(room(one)), (std::vector<std::string>{"new"}));
  EXPECT_EQ(q.take(room(one)), (std::vector<std::string>{"old"})) << "new was sent once";
  ASSERT_FALSE(q.push("fresh"));
  EXPECT_EQ(q.take(room(10 * one)), (std::vector<std::string>{"fresh", "new", "old"}));
}

TEST(payload_queue, each_payload_is_sent_the_transmit_limit_then_dropped) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(q.take(room(100, 4)).size(), 1u) << i;
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.take(room(100, 4)).empty());
  EXPECT_EQ(q.stats().sends, 4u);
  EXPECT_EQ(q.stats().completed, 1u);
  // A fixed limit overrides the core's.
  payload_queue fixed{kind, payload_queue_config{16, 2}};
  ASSERT_FALSE(fixed.push("p"));
  EXPECT_EQ(fixed.take(room(100, 50)).size(), 1u);
  EXPECT_EQ(fixed.take(room(100, 50)).size(), 1u);
  EXPECT_TRUE(fixed.empty());
}

TEST(payload_queue, respects_budget_and_count_and_skips_what_does_not_fit) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push(std::string(100, 'b')));
  ASSERT_FALSE(q.push("small"));
  ASSERT_FALSE(q.push(std::string(500, 'B')));
  const auto big = extension_payload_bound(kind, 500);
  const auto small = extension_payload_bound(kind, 5);
  // The newest (500 bytes) does not fit: the smaller ones behind it still go.
  auto got = q.take(room(small + extension_payload_bound(kind, 100)));
  EXPECT_EQ(got, (std::vector<std::string>{"small", std::string(100, 'b')}));
  EXPECT_EQ(q.take(room(big, 3, 0)).size(), 0u) << "count 0";
  EXPECT_EQ(q.take(room(big - 1)).size(), 2u) << "all but the big one";
  EXPECT_EQ(q.take(room(big)), (std::vector<std::string>{std::string(500, 'B')}));
}

TEST(payload_queue, never_hands_a_payload_twice_to_one_datagram) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("p"));
  auto first = room(100, 10);
  first.datagram = 5;
  EXPECT_EQ(q.take(first).size(), 1u);
  EXPECT_TRUE(q.take(first).empty()) << "the second call for datagram 5";
  first.datagram = 6;
  EXPECT_EQ(q.take(first).size(), 1u);
  first.datagram = 0; // no datagram number: no check
  EXPECT_EQ(q.take(first).size(), 1u);
  EXPECT_EQ(q.take(first).size(), 1u);
}

TEST(payload_queue, a_newer_payload_with_the_same_key_replaces_the_older) {
  payload_queue q{kind};
  ASSERT_FALSE(q.push("split web 90/10", "split/web"));
  ASSERT_FALSE(q.push("route api", "route/api"));
  (void)q.take(room(1000));
  ASSERT_FALSE(q.push("split web 50/50", "split/web"));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.stats().replaced, 1u);
  auto got = q.take(room(1000));
  EXPECT_EQ(got.front(), "split web 50/50") << "never sent: first";
  EXPECT_EQ(std::count(got.begin(), got.end(), "split web 90/10"), 0);
}

TEST(payload_queue, is_bounded_dropping_the_most_sent_first) {
  payload_queue q{kind, payload_queue_config{3, 10}};
  ASSERT_FALSE(q.push("a"));
  (void)q.take(room(extension_payload_bound(kind, 1))); // a sent once
  ASSERT_FALSE(q.push("b"));
  ASSERT_FALSE(q.push("c"));
  ASSERT_FALSE(q.push("d")); // full: a (sent once) goes
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.stats().overflow, 1u);
  ASSERT_FALSE(q.push("e")); // all unsent: the oldest (b) goes
  EXPECT_EQ(q.take(room(1000)), (std::vector<std::string>{"e", "d", "c"}));
}

TEST(payload_queue, refuses_empty_and_oversized_payloads) {
  payload_queue q{kind};
  auto empty = q.push("");
  EXPECT_EQ(empty.code(), static_cast<int>(errc::invalid_field));
  auto huge = q.push(std::string(max_extension_payload_bytes + 1, 'x'));
  EXPECT_EQ(huge.code(), static_cast<int>(errc::invalid_field));
  EXPECT_NE(render(huge).find("1025 bytes"), std::string::npos) << render(huge);
  EXPECT_FALSE(q.push(std::string(max_extension_payload_bytes, 'x')));
  EXPECT_EQ(q.stats().refused, 2u);
  EXPECT_EQ(q.size(), 1u);
}

TEST(queued_extension, forwards_to_its_callbacks_and_does_nothing_without_them) {
  std::vector<std::string> heard;
  queued_extension ext{
      kind,
      {},
      [&](std::string_view bytes, const std::string& sender, time_point) {
        heard.push_back(sender + ":" + std::string(bytes));
        return extension_effects{{sender}, {}};
      },
      [](bool join) -> std::optional<std::string> { return join ? "j" : "s"; },
      [&](std::string_view bytes, const std::string& sender, bool join, time_point) {
        heard.push_back(sender + (join ? "+" : "-") + std::string(bytes));
        return extension_effects{};
      }};
  EXPECT_FALSE(ext.has_payloads());
  ASSERT_FALSE(ext.queue().push("x"));
  EXPECT_TRUE(ext.has_payloads());
  EXPECT_EQ(ext.take_payloads(room(100)), (std::vector<std::string>{"x"}));
  EXPECT_EQ(ext.on_payload("p", "b", {}).push_pull_with, (std::vector<std::string>{"b"}));
  EXPECT_EQ(ext.make_section(true), "j");
  (void)ext.on_section("s", "c", false, {});
  EXPECT_EQ(heard, (std::vector<std::string>{"b:p", "c-s"}));

  queued_extension bare{kind};
  EXPECT_TRUE(bare.on_payload("p", "b", {}).push_pull_with.empty());
  EXPECT_FALSE(bare.make_section(false));
  EXPECT_TRUE(bare.on_section("s", "b", true, {}).push_pull_with.empty());
}

} // namespace
} // namespace starling::gossip
