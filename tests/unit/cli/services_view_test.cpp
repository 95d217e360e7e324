// The text of `starling services`, `starling routes` and `starling register`, rendered from
// the agent's JSON answers (actors/cli/views.hpp): exact renderings of sample views, and
// hostile answers (not JSON, wrong shapes, every field replaced by a value of another type,
// terminal escapes) that must give an error or a rendering, never a crash or an exception.
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "actors/cli/views.hpp"
#include "actors/errc.hpp"

namespace sc = starling::cli;
using nlohmann::json;

namespace {

const char* const services_sample = R"({"services":[
  {"name":"api","instances":[
    {"node":"node-b","id":"api-1","address":"fd00::5","port":9000,"protocol":"tcp","tags":[],
     "version":"","weight":100,"health":"none","last_check":"","node_alive":true,
     "healthy":true}]},
  {"name":"web","instances":[
    {"node":"node-a","id":"web","address":"10.0.0.5","port":8080,"protocol":"http",
     "tags":["a"],"version":"v1","weight":100,"health":"passing","last_check":"HTTP 200",
     "node_alive":true,"healthy":true},
    {"node":"node-b","id":"web-2","address":"10.0.0.6","port":8080,"protocol":"http",
     "tags":[],"version":"v2","weight":50,"health":"failing",
     "last_check":"connection refused","node_alive":true,"healthy":false},
    {"node":"node-c","id":"web","address":"10.0.0.7","port":8080,"protocol":"http",
     "tags":[],"version":"v2","weight":100,"health":"passing","last_check":"HTTP 200",
     "node_alive":false,"healthy":false}]}]})";

const char* const routes_sample = R"({"routes":[
  {"service":"api","outbound":null,"split":null,"split_signer":null,"routes":[],
   "resilience":null,"authz":[]},
  {"service":"web","outbound":"127.0.0.1:15001",
   "split":[{"version":"v1","weight":90},{"version":"v2","weight":10}],"split_signer":"node-a",
   "routes":[{"name":"beta","header":"x-user-group","value":"beta","version":"v2"}],
   "resilience":{"timeout_ms":2000,"per_try_timeout_ms":500,"retries":2,
                 "retry_budget_percent":20,"retry_min_per_second":10},
   "authz":[{"name":"frontend-only","from":["spiffe://m/svc/frontend"],"allow":true},
            {"name":"no-batch","from":["spiffe://m/svc/batch","spiffe://m/svc/cron"],
             "allow":false}]}]})";

const char* const registered_sample =
    R"({"name":"web","id":"web","address":"","port":8080,"protocol":"http","tags":["a"],)"
    R"("version":"v1","weight":100,"check":{"type":"http","path":"/healthz","expect":200,)"
    R"("interval":"10s","timeout":"2s","rise":2,"fall":3}})";

using renderer = caf::expected<std::string> (*)(std::string_view);

/// Calls `fn` with `doc` and with every copy of it where one value (at any depth) is
/// replaced by a value of another kind, or removed.
void for_each_mutation(const json& doc, const std::function<void(const json&)>& fn) {
  const std::vector<json> others{nullptr,
                                 true,
                                 -1,
                                 1.5,
                                 18446744073709551615ull,
                                 "x",
                                 "\x1b[2J",
                                 json::array(),
                                 json::array({1, "a"}),
                                 json::object(),
                                 json{{"a", 1}}};
  fn(doc);
  const auto flat = doc.flatten(); // leaves only; parents are reached through their pointers
  std::vector<json::json_pointer> paths;
  for (const auto& [path, value] : flat.items()) {
    (void)value;
    for (auto p = json::json_pointer{path}; !p.empty(); p = p.parent_pointer())
      if (std::find(paths.begin(), paths.end(), p) == paths.end())
        paths.push_back(p);
  }
  for (const auto& p : paths) {
    for (const auto& other : others) {
      auto copy = doc;
      copy[p] = other;
      fn(copy);
    }
    auto copy = doc;
    auto& parent = copy[p.parent_pointer()];
    if (parent.is_object())
      parent.erase(p.back());
    else if (parent.is_array())
      parent.erase(std::stoul(p.back()));
    fn(copy);
  }
}

/// Renders every mutation of `sample` with `render`; returns how many were refused. None
/// may throw, and no rendering may carry a control character but newlines.
std::size_t render_mutations(const char* sample, renderer render) {
  std::size_t refused = 0;
  std::size_t seen = 0;
  for_each_mutation(json::parse(sample), [&](const json& doc) {
    ++seen;
    const auto text = doc.dump();
    caf::expected<std::string> out = std::string{};
    EXPECT_NO_THROW(out = render(text)) << text;
    if (!out) {
      ++refused;
      return;
    }
    for (char c : *out)
      EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << text;
  });
  EXPECT_GT(seen, 100u); // the walk reached the nested values
  return refused;
}

} // namespace

TEST(services_view, one_line_per_instance_with_its_health) {
  auto table = sc::services_table(services_sample);
  ASSERT_TRUE(table);
  EXPECT_EQ(*table, "NAME  INSTANCE      ADDRESS:PORT    PROTO  VERSION  HEALTH\n"
                    "api   node-b/api-1  [fd00::5]:9000  tcp    -        no check\n"
                    "web   node-a/web    10.0.0.5:8080   http   v1       passing\n"
                    "web   node-b/web-2  10.0.0.6:8080   http   v2       failing: connection "
                    "refused\n"
                    "web   node-c/web    10.0.0.7:8080   http   v2       node dead\n");
}

TEST(services_view, says_so_when_there_is_nothing) {
  auto empty = sc::services_table(R"({"services":[]})");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, "no services registered\n");
  auto no_instances = sc::services_table(R"({"services":[{"name":"web","instances":[]}]})");
  ASSERT_TRUE(no_instances);
  EXPECT_EQ(*no_instances, "NAME  INSTANCE  ADDRESS:PORT  PROTO  VERSION  HEALTH\n"
                           "web   -         -             -      -        no instances\n");
}

TEST(services_view, a_failing_check_without_a_reason_and_wrong_types_show_plainly) {
  auto table = sc::services_table(
      R"({"services":[{"name":"web","instances":[{"node":"n","id":7,"address":"10.0.0.5",)"
      R"("port":-1,"protocol":"tcp","version":"v1","health":"failing","node_alive":true}]}]})");
  ASSERT_TRUE(table);
  EXPECT_EQ(*table, "NAME  INSTANCE  ADDRESS:PORT  PROTO  VERSION  HEALTH\n"
                    "web   n/?       10.0.0.5:?    tcp    v1       failing\n");
}

TEST(services_view, terminal_escapes_in_the_answer_are_not_printed) {
  auto table = sc::services_table(
      R"({"services":[{"name":"web\u001b[2J","instances":[{"node":"n","id":"i",)"
      R"("address":"a","port":1,"protocol":"tcp","version":"v1","health":"failing",)"
      R"("last_check":"bad\r\nline","node_alive":true}]}]})");
  ASSERT_TRUE(table);
  EXPECT_EQ(table->find('\x1b'), std::string::npos) << *table;
  EXPECT_NE(table->find("web?[2J"), std::string::npos) << *table;
  EXPECT_NE(table->find("failing: bad??line\n"), std::string::npos) << *table;
}

TEST(services_view, refuses_what_is_not_a_services_view) {
  for (const char* bad : {"", "{", "[]", "null", "\"services\"", "{}", R"({"services":null})",
                          R"({"services":{}})", R"({"services":[1]})", R"({"services":[null]})",
                          R"({"routes":[]})", R"({"services":[{"name":"web","instances":"many"}]})",
                          R"({"services":[{"name":"web","instances":[1]}]})"}) {
    auto table = sc::services_table(bad);
    ASSERT_FALSE(table) << bad;
    EXPECT_EQ(starling::actors::message_of(table.error()),
              "the agent's answer is not a services view")
        << bad;
  }
}

TEST(services_view, survives_every_field_of_another_type) {
  const auto refused = render_mutations(services_sample, sc::services_table);
  EXPECT_GT(refused, 0u); // e.g. "services" or an instance that is not an object
}

TEST(routes_view, a_block_per_service_with_its_policies) {
  auto text = sc::routes_text(routes_sample);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "api  outbound: none\n"
                   "web  outbound 127.0.0.1:15001\n"
                   "  split: v1 90%, v2 10% (by node-a)\n"
                   "  route beta: x-user-group = beta -> v2\n"
                   "  timeouts: 2s total, 500ms per try; retries: 2, budget 20% (min 10/s)\n"
                   "  authz frontend-only: allow spiffe://m/svc/frontend\n"
                   "  authz no-batch: deny spiffe://m/svc/batch, spiffe://m/svc/cron\n");
}

TEST(routes_view, partial_resilience_shows_what_is_set) {
  auto text = sc::routes_text(
      R"({"routes":[{"service":"a","outbound":"127.0.0.1:1","split":[{"version":"v1",)"
      R"("weight":100}],"split_signer":null,"resilience":{"timeout_ms":90000,)"
      R"("per_try_timeout_ms":null,"retries":3}},)"
      R"({"service":"b","outbound":null,"resilience":{"timeout_ms":1500,)"
      R"("retry_budget_percent":25,"retry_min_per_second":5}},)"
      R"({"service":"c","outbound":null,"resilience":{"per_try_timeout_ms":3723000}},)"
      R"({"service":"d","outbound":null,"resilience":{}},)"
      // As the agent sends it: every field, zero where the proxy's default applies.
      R"({"service":"e","outbound":null,"resilience":{"timeout_ms":0,"per_try_timeout_ms":250,)"
      R"("retries":0,"retry_budget_percent":0,"retry_min_per_second":0}}]})");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "a  outbound 127.0.0.1:1\n"
                   "  split: v1 100%\n"
                   "  timeouts: 1m30s total; retries: 3\n"
                   "b  outbound: none\n"
                   "  timeouts: 1500ms total; retry budget 25% (min 5/s)\n"
                   "c  outbound: none\n"
                   "  timeouts: 1h2m3s per try\n"
                   "d  outbound: none\n"
                   "e  outbound: none\n"
                   "  timeouts: 250ms per try\n");
}

TEST(routes_view, says_so_when_there_are_none) {
  auto text = sc::routes_text(R"({"routes":[]})");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "no routes\n");
}

TEST(routes_view, refuses_what_is_not_a_routes_view) {
  for (const char* bad :
       {"", "{", "[]", "{}", R"({"routes":null})", R"({"routes":"web"})", R"({"routes":[2]})",
        R"({"services":[]})", R"({"routes":[{"service":"web","split":"v1=100"}]})",
        R"({"routes":[{"service":"web","routes":[1]}]})",
        R"({"routes":[{"service":"web","resilience":[]}]})",
        R"({"routes":[{"service":"web","authz":{}}]})"}) {
    auto text = sc::routes_text(bad);
    EXPECT_FALSE(text) << bad << " gave " << (text ? *text : "");
  }
}

TEST(routes_view, survives_every_field_of_another_type) {
  const auto refused = render_mutations(routes_sample, sc::routes_text);
  EXPECT_GT(refused, 0u);
}

TEST(register_answer, names_the_instance_and_its_check) {
  auto text = sc::registered_text(registered_sample);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "registered web (id web) on port 8080: spreading to the mesh\n"
                   "health check: http GET /healthz every 10s\n");
  auto tcp = sc::registered_text(
      R"({"name":"db","id":"db-2","port":5432,"check":{"type":"tcp","interval":"5s"}})");
  ASSERT_TRUE(tcp);
  EXPECT_EQ(*tcp, "registered db (id db-2) on port 5432: spreading to the mesh\n"
                  "health check: tcp connect every 5s\n");
  auto unchecked = sc::registered_text(R"({"name":"db","port":5432,"check":null})");
  ASSERT_TRUE(unchecked);
  EXPECT_EQ(*unchecked, "registered db (id db) on port 5432: spreading to the mesh\n");
}

TEST(register_answer, refuses_what_is_not_a_registered_service) {
  for (const char* bad : {"", "ok", "[]", "{}", R"({"name":"web"})", R"({"port":80})",
                          R"({"name":1,"port":80})", R"({"name":"web","port":"80"})"}) {
    EXPECT_FALSE(sc::registered_text(bad)) << bad;
  }
  EXPECT_GT(render_mutations(registered_sample, sc::registered_text), 0u);
}

namespace {

TEST(routes_view, breaker_and_ejection_limits_show_when_set) {
  auto text = sc::routes_text(
      R"({"routes":[{"service":"a","outbound":null,"resilience":{"timeout_ms":0,)"
      R"("per_try_timeout_ms":0,"retries":0,"retry_budget_percent":0,"retry_min_per_second":0,)"
      R"("max_connections":null,"max_requests":100,"eject_consecutive_5xx":0,)"
      R"("eject_consecutive_connect_failures":null,"ejection_time_ms":10000,)"
      R"("max_ejection_percent":30}},)"
      R"({"service":"b","outbound":null,"resilience":{"timeout_ms":2000,)"
      R"("max_connections":null,"max_requests":null}}]})");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "a  outbound: none\n"
                   "  limits: max 100 requests, eject after 0 5xx, for 10s, at most 30% ejected\n"
                   "b  outbound: none\n"
                   "  timeouts: 2s total\n");
}

} // namespace
