#include <gtest/gtest.h>

#include "actors/cli/views.hpp"
#include "actors/views.hpp"

namespace sa = starling::actors;
namespace sc = starling::cli;

TEST(stats_view, the_table_has_a_block_per_group_with_aligned_values) {
  const std::vector<sa::counter_group> groups{
      {"transport", sa::counter_list{{"datagrams_in", 7}, {"push_pull_errors", 12}}},
      {"sealer", std::nullopt},
      {"membership", sa::counter_list{{"members_alive", 3}}}};
  auto table = sc::stats_table(sa::stats_json(groups));
  ASSERT_TRUE(table);
  EXPECT_EQ(*table, "transport\n"
                    "  datagrams_in      7\n"
                    "  push_pull_errors  12\n"
                    "sealer              (none)\n"
                    "membership\n"
                    "  members_alive     3\n");
}

TEST(stats_view, proxy_services_get_one_line_per_service_and_instance) {
  const std::vector<sa::counter_group> groups{{"transport", sa::counter_list{}},
                                              {"membership", sa::counter_list{}}};
  const std::string detail =
      R"({"outbound":[{"service":"web","requests":1200000,"success_rate":0.75,"p50_ms":0.41,)"
      R"("p95_ms":2.5,"p99_ms":9.0}],"inbound":[{"service":"api","requests":0,)"
      R"("success_rate":null,"p50_ms":null,"p95_ms":null,"p99_ms":null}],)"
      R"("instances":[{"service":"web","instance":"w1","node":"b","requests":4,)"
      R"("connect_failures":1,"resets":0,"timeouts":1,"success_rate":0.5,"p50_ms":1.0,)"
      R"("p95_ms":1.0,"p99_ms":1.0}]})";
  auto table = sc::stats_table(sa::stats_json(groups, {}, detail));
  ASSERT_TRUE(table);
  EXPECT_NE(table->find("  outbound web       requests 1200000  success 75%  p50/p95/p99 "
                        "0.41/2.5/9 ms\n"),
            std::string::npos)
      << *table;
  EXPECT_NE(table->find("  inbound api        requests 0  p50/p95/p99 -/-/- ms\n"),
            std::string::npos)
      << *table;
  EXPECT_NE(table->find("  instance web/w1@b  requests 4  success 50%  no answer 2  "
                        "p50/p95/p99 1/1/1 ms\n"),
            std::string::npos)
      << *table;
}

TEST(stats_view, refuses_what_is_not_a_stats_view) {
  for (const char* bad : {"", "[]", "{}", R"({"members":[]})", R"({"transport":{}})", "{"}) {
    auto table = sc::stats_table(bad);
    EXPECT_FALSE(table) << bad;
  }
}

TEST(members_view, the_table_aligns_columns_and_trims_trailing_blanks) {
  auto table = sc::members_table(
      R"({"members":[{"name":"node-a","address":"127.0.0.1:1","state":"alive","incarnation":3,)"
      R"("tags":{}},{"name":"b","address":"[::1]:7946","state":"suspect","incarnation":12,)"
      R"("tags":{"issuer":"true"}}]})");
  ASSERT_TRUE(table);
  EXPECT_EQ(*table, "NAME    ADDRESS      STATE    INCARNATION  TAGS\n"
                    "node-a  127.0.0.1:1  alive    3\n"
                    "b       [::1]:7946   suspect  12           issuer=true\n");
}
