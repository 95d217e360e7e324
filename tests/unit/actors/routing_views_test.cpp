// The routing table's admin side without actors (actors/routing_views.hpp): the services and
// routes JSON views (contracts of docs/operations.md) and the policy commands' parsing.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/errc.hpp"
#include "actors/routing_views.hpp"

namespace starling::actors {
namespace {

using gossip::policy_kind;

gossip::routing_snapshot sample() {
  gossip::routing_snapshot snap;
  snap.generation = 3;
  gossip::service_view web;
  web.name = "web";
  gossip::instance_view i;
  i.node = "node-b";
  i.service = "web";
  i.id = "web";
  i.address = "10.0.0.2";
  i.port = 8080;
  i.protocol = gossip::service_protocol::http;
  i.tags = {"blue"};
  i.version = "v1";
  i.health = gossip::health_status::passing;
  i.last_check = "HTTP 200";
  i.node_alive = true;
  web.instances.push_back(i);
  i.node = "node-c";
  i.health = gossip::health_status::failing;
  i.last_check = "connection refused";
  web.instances.push_back(i);
  web.policies.split = std::vector<gossip::split_weight>{{"v1", 90}, {"v2", 10}};
  web.policies.split_origin = gossip::policy_origin{"node-a", 1, 0};
  web.policies.routes.push_back({"beta", "x-user-group", "beta", "v2"});
  web.policies.resilience = gossip::resilience_policy{2000, 500, 2, 20, 10};
  web.policies.authz.push_back({"fe", {"spiffe://m/svc/frontend"}, true});
  snap.services.push_back(web);
  gossip::service_view only_policy;
  only_policy.name = "api";
  only_policy.policies.resilience = gossip::resilience_policy{1000, 0, 0, 0, 0};
  snap.services.insert(snap.services.begin(), only_policy);
  return snap;
}

TEST(routing_views, services_json_lists_instances_with_their_health) {
  auto doc = nlohmann::json::parse(services_json(sample()));
  ASSERT_EQ(doc.at("services").size(), 1u); // api has no instance
  const auto& web = doc["services"][0];
  EXPECT_EQ(web.at("name"), "web");
  ASSERT_EQ(web.at("instances").size(), 2u);
  const auto& b = web["instances"][0];
  EXPECT_EQ(b.at("node"), "node-b");
  EXPECT_EQ(b.at("address"), "10.0.0.2");
  EXPECT_EQ(b.at("port"), 8080);
  EXPECT_EQ(b.at("protocol"), "http");
  EXPECT_EQ(b.at("health"), "passing");
  EXPECT_EQ(b.at("healthy"), true);
  EXPECT_EQ(web["instances"][1].at("healthy"), false);
  EXPECT_EQ(web["instances"][1].at("last_check"), "connection refused");
  for (const char* key : {"id", "tags", "version", "weight", "node_alive"})
    EXPECT_TRUE(b.contains(key)) << key;
}

TEST(routing_views, routes_json_shows_every_policy_and_nulls_for_the_unset) {
  auto doc = nlohmann::json::parse(routes_json(sample()));
  ASSERT_EQ(doc.at("routes").size(), 2u);
  const auto& api = doc["routes"][0];
  EXPECT_EQ(api.at("service"), "api");
  EXPECT_TRUE(api.at("split").is_null());
  EXPECT_TRUE(api.at("outbound").is_null());
  EXPECT_EQ(api.at("resilience").at("timeout_ms"), 1000);
  const auto& web = doc["routes"][1];
  EXPECT_EQ(web.at("split")[1].at("weight"), 10);
  EXPECT_EQ(web.at("split_signer"), "node-a");
  EXPECT_EQ(web.at("routes")[0].at("header"), "x-user-group");
  EXPECT_EQ(web.at("authz")[0].at("from")[0], "spiffe://m/svc/frontend");
}

TEST(routing_views, policy_commands_parse_into_register_writes) {
  auto split = parse_policy_command({"split", "web", "v1=90", "v2=10"});
  ASSERT_TRUE(split);
  EXPECT_EQ(split->key.kind, policy_kind::split);
  EXPECT_EQ(std::get<std::vector<gossip::split_weight>>(split->value).size(), 2u);
  auto clear = parse_policy_command({"split", "web", "--clear"});
  ASSERT_TRUE(clear);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(clear->value));
  auto route = parse_policy_command(
      {"route", "web", "beta", "header=X-User-Group", "value=beta", "version=v2"});
  ASSERT_TRUE(route);
  EXPECT_EQ(std::get<gossip::header_route>(route->value).header, "x-user-group");
  EXPECT_EQ(route->key.name, "beta");
  auto res = parse_policy_command({"resilience", "web", "timeout=2s", "budget=20%", "retries=2"});
  ASSERT_TRUE(res);
  const auto& r = std::get<gossip::resilience_policy>(res->value);
  EXPECT_EQ(r.timeout_ms, 2000u);
  EXPECT_EQ(r.retry_budget_percent, 20u);
  EXPECT_EQ(r.retries, 2u);
  EXPECT_FALSE(r.max_requests);
  auto limits = parse_policy_command({"resilience", "web", "max_connections=50", "max_requests=7",
                                      "max_pending=9", "eject_5xx=0", "eject_connect_failures=3",
                                      "ejection_time=10s", "max_ejected=30%"});
  ASSERT_TRUE(limits);
  const auto& l = std::get<gossip::resilience_policy>(limits->value);
  EXPECT_EQ(l.max_connections, 50u);
  EXPECT_EQ(l.max_requests, 7u);
  EXPECT_EQ(l.max_pending, 9u);
  EXPECT_EQ(l.eject_consecutive_5xx, 0u);
  EXPECT_EQ(l.eject_consecutive_connect_failures, 3u);
  EXPECT_EQ(l.ejection_time_ms, 10'000u);
  EXPECT_EQ(l.max_ejection_percent, 30u);
  EXPECT_EQ(l.timeout_ms, 0u);
  auto authz = parse_policy_command(
      {"authz", "web", "fe", "deny", "spiffe://m/svc/b", "spiffe://m/svc/a", "spiffe://m/svc/a"});
  ASSERT_TRUE(authz);
  const auto& a = std::get<gossip::authz_rule>(authz->value);
  EXPECT_FALSE(a.allow);
  EXPECT_EQ(a.from, (std::vector<std::string>{"spiffe://m/svc/a", "spiffe://m/svc/b"}));
  auto del = parse_policy_command({"authz", "web", "fe", "--delete"});
  ASSERT_TRUE(del);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(del->value));
}

TEST(routing_views, bad_policy_commands_are_usage_errors_that_say_why) {
  struct bad {
    std::vector<std::string> args;
    const char* says;
  };
  const std::vector<bad> cases{
      {{"split"}, "service"},
      {{"split", "web"}, "VERSION=PERCENT"},
      {{"split", "web", "v1=101"}, "0 to 100"},
      {{"split", "web", "v1"}, "VERSION=PERCENT"},
      {{"split", "web", "v1=90", "--clear"}, "--clear"},
      {{"route", "web"}, "rule name"},
      {{"route", "web", "beta", "header=x"}, "version="},
      {{"route", "web", "beta", "color=red"}, "header="},
      {{"route", "web", "beta", "header=x", "header=y", "version=v1"}, "once"},
      {{"resilience", "web"}, "at least one"},
      {{"resilience", "web", "timeout=fast"}, "timeout"},
      {{"resilience", "web", "timeout=2h"}, "at most 1h"},
      {{"resilience", "web", "retries=11"}, "retries"},
      {{"resilience", "web", "budget=101%"}, "percent"},
      {{"resilience", "web", "speed=1"}, "unknown key"},
      {{"resilience", "web", "max_requests=0"}, "1 to 1000000"},
      {{"resilience", "web", "max_pending=0"}, "1 to 1000000"},
      {{"resilience", "web", "max_connections=1000001"}, "1 to 1000000"},
      {{"resilience", "web", "eject_5xx=1001"}, "0 to 1000"},
      {{"resilience", "web", "ejection_time=0ms"}, "at least 1ms"},
      {{"resilience", "web", "max_ejected=101%"}, "percent"},
      {{"authz", "web", "fe", "allow"}, "spiffe"},
      {{"authz", "web", "fe", "maybe", "spiffe://m/svc/a"}, "allow|deny"},
      {{"authz", "web", "fe", "allow", "svc/a"}, "spiffe://"},
      {{"nonsense", "web"}, "unknown policy command"},
      {{"split", "web", std::string(600, 'v') + "=1"}, "512 bytes"},
  };
  for (const auto& c : cases) {
    auto res = parse_policy_command(c.args);
    ASSERT_FALSE(res) << c.args.front();
    EXPECT_EQ(res.error().code(), static_cast<std::uint8_t>(errc::bad_request));
    EXPECT_NE(message_of(res.error()).find(c.says), std::string::npos) << message_of(res.error());
  }
}

TEST(routing_views, a_write_is_described_for_the_operator) {
  gossip::policy_record p;
  p.key = {policy_kind::split, "web", ""};
  p.writer = "node-a";
  p.value = std::vector<gossip::split_weight>{{"v1", 90}, {"v2", 10}};
  EXPECT_EQ(describe_write(p),
            "split of web: v1 90%, v2 10% (signed by node-a; spreading to the mesh)");
  p.deleted = true;
  p.value = std::monostate{};
  EXPECT_EQ(describe_write(p), "split of web: removed (signed by node-a; spreading to the mesh)");
}

} // namespace
} // namespace starling::actors
