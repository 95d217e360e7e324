#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/stream_map.hpp"

namespace starling::proxy {
namespace {

std::vector<std::int32_t> ids_of(stream_map<int>& m) {
  std::vector<std::int32_t> ids;
  m.for_each([&](std::int32_t id, int) { ids.push_back(id); });
  return ids;
}

TEST(stream_map, finds_what_was_put_and_not_what_was_erased) {
  stream_map<int> m;
  for (std::int32_t id = 1; id <= 9; id += 2)
    m[id] = id * 10;
  EXPECT_EQ(m.size(), 5U);
  EXPECT_EQ(m.find(5)->second, 50);
  EXPECT_EQ(m.find(4), m.end());
  EXPECT_EQ(m.erase(5), 1U);
  EXPECT_EQ(m.erase(5), 0U);
  EXPECT_EQ(m.find(5), m.end());
  EXPECT_EQ(m.size(), 4U);
  EXPECT_EQ(ids_of(m), (std::vector<std::int32_t>{1, 3, 7, 9}));
}

TEST(stream_map, an_id_put_again_after_its_erase_starts_from_a_fresh_value) {
  stream_map<int> m;
  m[1] = 1;
  m[3] = 3;
  m[5] = 5;
  m.erase(3);
  EXPECT_EQ(m[3], 0); // its tombstone made live again, value-initialized
  EXPECT_EQ(m.size(), 3U);
  EXPECT_EQ(ids_of(m), (std::vector<std::int32_t>{1, 3, 5}));
}

TEST(stream_map, an_erase_resets_the_value_at_once) {
  stream_map<std::shared_ptr<int>> m;
  auto v = std::make_shared<int>(7);
  m[1] = v;
  m[3] = std::make_shared<int>(8); // a later stream: the erased one leaves a tombstone
  EXPECT_EQ(v.use_count(), 2);
  m.erase(1);
  EXPECT_EQ(v.use_count(), 1);
  EXPECT_EQ(m.size(), 1U);
  EXPECT_EQ(m.slots(), 2U);
}

// Streams ending in the order they began, 128 at once (h2load's shape), and in random
// order: the map agrees with std::map at every step, and holds at most about twice the
// live entries (compaction), never the whole history.
TEST(stream_map, agrees_with_a_std_map_under_fifo_and_random_ends) {
  for (const bool fifo : {true, false}) {
    std::mt19937 rng(fifo ? 1 : 2);
    stream_map<int> m;
    std::map<std::int32_t, int> want;
    std::int32_t next = 1;
    for (int step = 0; step < 20000; ++step) {
      const bool open = want.size() < 128 && (want.empty() || rng() % 2 == 0);
      if (open) {
        m[next] = next;
        want[next] = next;
        next += 2;
      } else {
        auto it = want.begin();
        if (!fifo)
          std::advance(it, static_cast<long>(rng() % want.size()));
        const auto id = it->first;
        ASSERT_NE(m.find(id), m.end());
        m.erase(m.find(id));
        want.erase(it);
      }
      ASSERT_EQ(m.size(), want.size());
      ASSERT_LE(m.slots(), m.size() + std::max<std::size_t>(32, m.size()));
      if (step % 97 == 0) {
        std::vector<std::int32_t> expected;
        for (const auto& [id, v] : want) {
          expected.push_back(id);
          ASSERT_EQ(m.find(id)->second, v);
        }
        ASSERT_EQ(ids_of(m), expected);
        ASSERT_EQ(m.find(next - 1), m.end()); // even ids never put
      }
    }
  }
}

} // namespace
} // namespace starling::proxy
