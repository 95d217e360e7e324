#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/views.hpp"

namespace sa = starling::actors;

TEST(stats_view, groups_and_counters_keep_their_order_and_absent_groups_are_null) {
  const std::vector<sa::counter_group> groups{
      {"transport", sa::counter_list{{"datagrams_in", 7}, {"bytes_in", 1u << 20}}},
      {"admin", sa::counter_list{{"auth_refused", 2}}},
      {"sealer", std::nullopt},
      {"membership", sa::counter_list{}}};
  const auto json = sa::stats_json(groups);
  EXPECT_EQ(json,
            R"({"transport":{"datagrams_in":7,"bytes_in":1048576},"admin":{"auth_refused":2},)"
            R"("sealer":null,"membership":{}})");
  auto doc = nlohmann::json::parse(json);
  EXPECT_EQ(doc.at("transport").at("bytes_in"), 1048576u);
}
