// Unit tests of the interned member cards (gossip/member_card.hpp) and the compact name
// index (gossip/name_index.hpp) that the membership core's table is built from.
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gossip/member_card.hpp"
#include "gossip/name_index.hpp"

namespace starling::gossip {
namespace {

/// prefix + number. Appends instead of operator+: g++ 12 -O3 warns falsely (-Wrestrict) on
/// `"m" + std::to_string(i)`.
std::string numbered(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

TEST(member_card, equal_triples_share_one_entry_that_goes_with_the_last_handle) {
  card_pool pool;
  {
    auto a = pool.intern("n1", "10.0.0.2:7946", {});
    auto b = pool.intern("n1", "10.0.0.2:7946", {});
    EXPECT_EQ(a, b);
    EXPECT_EQ(pool.size(), 1u);
    EXPECT_EQ(a.name(), "n1");
    EXPECT_EQ(a.address(), "10.0.0.2:7946");
    EXPECT_TRUE(a.tags().empty());
    auto c = pool.intern("n1", "10.0.0.3:7946", {});
    EXPECT_NE(a, c) << "another address is another card";
    auto d = pool.intern("n1", "10.0.0.2:7946", tag_map{{"zone", "a"}});
    EXPECT_NE(a, d) << "other tags too";
    EXPECT_EQ(d.tags().at("zone"), "a");
    EXPECT_EQ(pool.size(), 3u);
    a = c; // a's old card still lives in b
    EXPECT_EQ(pool.size(), 3u);
    b = {};
    EXPECT_EQ(pool.size(), 2u) << "freed with its last handle";
  }
  EXPECT_EQ(pool.size(), 0u);
}

TEST(member_card, the_empty_triple_is_the_null_handle) {
  card_pool pool;
  auto e = pool.intern("", "", {});
  EXPECT_TRUE(e.is_null());
  EXPECT_EQ(e, member_card{});
  EXPECT_EQ(e.name(), "");
  EXPECT_EQ(pool.size(), 0u);
}

TEST(member_card, pools_are_apart) {
  card_pool one, two;
  auto a = one.intern("n1", "10.0.0.2:7946", {});
  auto b = two.intern("n1", "10.0.0.2:7946", {});
  EXPECT_NE(a, b) << "each pool interns its own copy";
  EXPECT_EQ(a.name(), b.name());
  EXPECT_EQ(one.size(), 1u);
  EXPECT_EQ(two.size(), 1u);
  a = {};
  EXPECT_EQ(one.size(), 0u);
  EXPECT_EQ(two.size(), 1u) << "a release touches its own pool only";
}

TEST(member_card, handles_outliving_their_pool_stay_valid) {
  member_card kept, copy;
  {
    card_pool pool;
    kept = pool.intern("n7", "10.0.0.8:7946", tag_map{{"zone", "b"}});
    copy = kept;
  }
  EXPECT_EQ(kept.name(), "n7");
  EXPECT_EQ(copy.tags().at("zone"), "b");
  kept = {};
  EXPECT_EQ(copy.address(), "10.0.0.8:7946");
  copy = {}; // the last handle frees the detached rep (ASan checks it is freed once)
}

TEST(member_card, handles_may_be_made_and_dropped_from_several_threads) {
  card_pool pool;
  auto work = [&pool](int t) {
    for (int i = 0; i < 2000; ++i) {
      // Threads intern overlapping names, so lookups race with last releases.
      auto c = pool.intern(numbered("m", i % 50), "addr", {});
      auto copy = c;
      ASSERT_EQ(copy.name(), numbered("m", i % 50)) << t;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back(work, t);
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(pool.size(), 0u);
}

TEST(name_index, finds_inserts_and_erases_through_growth) {
  std::vector<std::string> names;
  for (int i = 0; i < 1000; ++i)
    names.push_back(numbered("n", i));
  auto name_of = [&](std::uint32_t s) { return std::string_view{names[s]}; };
  name_index idx;
  EXPECT_EQ(idx.find("n1", name_of), name_index::npos);
  for (std::uint32_t s = 0; s < names.size(); ++s)
    idx.insert(s, name_of);
  EXPECT_EQ(idx.size(), names.size());
  for (std::uint32_t s = 0; s < names.size(); ++s)
    ASSERT_EQ(idx.find(names[s], name_of), s);
  // Erase every other one: the rest must stay reachable (backward shift keeps runs whole).
  for (std::uint32_t s = 0; s < names.size(); s += 2)
    idx.erase(names[s], name_of);
  EXPECT_EQ(idx.size(), names.size() / 2);
  for (std::uint32_t s = 0; s < names.size(); ++s)
    ASSERT_EQ(idx.find(names[s], name_of), s % 2 ? s : name_index::npos) << names[s];
  idx.erase("absent", name_of);
  EXPECT_EQ(idx.size(), names.size() / 2);
}

} // namespace
} // namespace starling::gossip
