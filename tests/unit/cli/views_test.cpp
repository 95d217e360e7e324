#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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

namespace {

/// A stats view with `requests` outbound requests, 3 members alive and one service.
std::string stats_with(std::uint64_t requests, std::uint64_t web_requests) {
  return R"({"membership":{"members_alive":3,"members_suspect":1,"members_dead":0,)"
         R"("members_left":0,"health_score":0},"proxy":{"requests":)" +
         std::to_string(requests) +
         R"(,"in_flight":2,"responses_2xx":10,"responses_4xx":0,"responses_5xx":1,)"
         R"("draining":0},"proxy_services":{"outbound":[{"service":"web","requests":)" +
         std::to_string(web_requests) +
         R"(,"success_rate":0.995,"p50_ms":0.412,"p99_ms":2.5}],"inbound":[]}})";
}

} // namespace

TEST(top_view, the_first_frame_shows_totals_and_no_rates) {
  auto frame = sc::top_frame(stats_with(100, 40), "", 1.0);
  ASSERT_TRUE(frame);
  EXPECT_NE(frame->find("members   alive 3  suspect 1  dead 0"), std::string::npos) << *frame;
  EXPECT_NE(frame->find("requests 100 (-/s)  in flight 2"), std::string::npos) << *frame;
  EXPECT_NE(frame->find("SERVICE  DIR       REQUESTS  RATE/S  SUCCESS  P50 MS  P99 MS"),
            std::string::npos)
      << *frame;
  EXPECT_NE(frame->find("web      outbound  40        -       99.5%    0.41    2.50"),
            std::string::npos)
      << *frame;
  // Counters this view lacks show as "?", not as zero.
  EXPECT_NE(frame->find("connections ?"), std::string::npos) << *frame;
}

TEST(top_view, rates_are_the_rise_over_the_interval_and_unknown_when_a_counter_fell) {
  auto frame = sc::top_frame(stats_with(350, 140), stats_with(100, 40), 0.5);
  ASSERT_TRUE(frame);
  EXPECT_NE(frame->find("requests 350 (500.0/s)"), std::string::npos) << *frame;
  EXPECT_NE(frame->find("5xx 1 (0.0/s)"), std::string::npos) << *frame;
  EXPECT_NE(frame->find("140       200.0"), std::string::npos) << *frame;
  // The agent restarted between frames: its counters fell, so no rate, not a huge one.
  auto restarted = sc::top_frame(stats_with(5, 2), stats_with(100, 40), 1.0);
  ASSERT_TRUE(restarted);
  EXPECT_NE(restarted->find("requests 5 (-/s)"), std::string::npos) << *restarted;
  // No time between the frames: no rate.
  auto same = sc::top_frame(stats_with(350, 140), stats_with(100, 40), 0.0);
  ASSERT_TRUE(same);
  EXPECT_NE(same->find("requests 350 (-/s)"), std::string::npos) << *same;
  // A previous view that is not JSON counts as none.
  auto garbled = sc::top_frame(stats_with(350, 140), "{oops", 1.0);
  ASSERT_TRUE(garbled);
  EXPECT_NE(garbled->find("requests 350 (-/s)"), std::string::npos) << *garbled;
}

TEST(top_view, hostile_fields_show_as_question_marks_and_a_non_view_is_refused) {
  const std::string odd =
      R"({"membership":{"members_alive":"three","members_suspect":-1},"proxy":{"requests":1.5,)"
      R"("draining":"yes"},"proxy_services":{"outbound":[{"service":"we\u001b[2Jb",)"
      R"("requests":"many","success_rate":"high","p50_ms":null}, {"service":7}, 5]}})";
  auto frame = sc::top_frame(odd, odd, 1.0);
  ASSERT_TRUE(frame);
  EXPECT_NE(frame->find("alive ?  suspect ?"), std::string::npos) << *frame;
  EXPECT_NE(frame->find("requests ? (-/s)"), std::string::npos) << *frame;
  EXPECT_EQ(frame->find("DRAINING"), std::string::npos) << *frame;
  EXPECT_EQ(frame->find('\x1b'), std::string::npos) << "a terminal escape reached the screen";
  EXPECT_NE(frame->find("we?[2Jb  outbound  ?         -       ?        -"), std::string::npos)
      << *frame;
  for (const auto* not_a_view : {"", "[]", "{}", R"({"membership":{}})", "not json"})
    EXPECT_FALSE(sc::top_frame(not_a_view, "", 1.0)) << not_a_view;
}

namespace {

/// A certificate of a certs view: valid from `from` to `to` (Unix seconds), `left` seconds
/// from now.
nlohmann::json cert_at(std::int64_t from, std::int64_t to, std::int64_t left) {
  return {{"uri", "spiffe://m/node/x"},
          {"not_before", "2026-12-01T00:00:00Z"},
          {"not_before_unix", from},
          {"not_after", "2026-12-02T00:00:00Z"},
          {"not_after_unix", to},
          {"expires_in_seconds", left},
          {"spki_sha256", "ab12cd34ef567890ab12cd34ef567890"}};
}

/// A certs view with the node's certificate, one chain issuer and one root.
nlohmann::json certs_with(nlohmann::json node, nlohmann::json issuer, nlohmann::json root) {
  return {{"identity", true},
          {"mesh", "m"},
          {"source", "admitted"},
          {"certificate", std::move(node)},
          {"issuers", nlohmann::json::array({std::move(issuer)})},
          {"is_issuer", false},
          {"roots", nlohmann::json::array({std::move(root)})},
          {"revocations", nlohmann::json::array()},
          {"keyring", {{"enabled", false}}}};
}

constexpr std::int64_t day = 86400;
constexpr std::int64_t t0 = 1'800'000'000;

} // namespace

TEST(expiry_warnings, none_while_every_certificate_has_time_left) {
  // A 24 h node certificate with 10 h left (renewal is due at 8 h), a 1-year issuer with
  // 200 days, a 10-year root with 5 years.
  const auto view =
      certs_with(cert_at(t0, t0 + day, 10 * 3600), cert_at(t0, t0 + 365 * day, 200 * day),
                 cert_at(t0, t0 + 3650 * day, 1825 * day));
  EXPECT_TRUE(sc::expiry_warnings(view.dump()).empty());
  auto text = sc::certs_text(view.dump());
  ASSERT_TRUE(text);
  EXPECT_EQ(text->find("warning"), std::string::npos) << *text;
}

TEST(expiry_warnings, an_overdue_renewal_a_near_issuer_and_an_expired_root_each_warn) {
  // 5 h left of 24 h: under a quarter, so the renewal at 8 h left has failed.
  const auto view =
      certs_with(cert_at(t0, t0 + day, 5 * 3600), cert_at(t0, t0 + 365 * day, 20 * day),
                 cert_at(t0, t0 + 3650 * day, -60));
  const auto warnings = sc::expiry_warnings(view.dump());
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_EQ(
      warnings[0].rfind("warning: this node's certificate expires in 5h0m (2026-12-02T00:00:00Z); "
                        "its renewal",
                        0),
      0u)
      << warnings[0];
  EXPECT_EQ(warnings[1].rfind("warning: the certificate of issuer spiffe://m/node/x expires in 20 "
                              "days",
                              0),
            0u)
      << warnings[1];
  EXPECT_EQ(warnings[2].rfind("warning: the mesh root sha256:ab12cd34ef567890 has EXPIRED", 0), 0u)
      << warnings[2];
  // `starling certs` ends with them.
  auto text = sc::certs_text(view.dump());
  ASSERT_TRUE(text);
  EXPECT_NE(text->find("\n" + warnings[2] + "\n"), std::string::npos) << *text;
}

TEST(expiry_warnings, a_long_lived_certificate_warns_at_a_tenth_of_its_life_if_that_is_later) {
  // A 20-year root: a tenth is 2 years, later than 30 days: 400 days left warns.
  auto view = certs_with(cert_at(t0, t0 + day, 20 * 3600), cert_at(t0, t0 + 365 * day, 300 * day),
                         cert_at(t0, t0 + 7300 * day, 400 * day));
  auto warnings = sc::expiry_warnings(view.dump());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("the mesh root"), std::string::npos) << warnings[0];
  // A short test certificate (45 s) with 20 s left: fine; with 10 s: under a quarter.
  view = certs_with(cert_at(t0, t0 + 45, 20), cert_at(t0, t0 + 365 * day, 300 * day),
                    cert_at(t0, t0 + 3650 * day, 3000 * day));
  EXPECT_TRUE(sc::expiry_warnings(view.dump()).empty());
  view["certificate"]["expires_in_seconds"] = 10;
  EXPECT_EQ(sc::expiry_warnings(view.dump()).size(), 1u);
}

TEST(expiry_warnings, a_view_without_identity_or_with_odd_fields_warns_of_nothing) {
  EXPECT_TRUE(sc::expiry_warnings(R"({"identity":false,"keyring":{}})").empty());
  EXPECT_TRUE(sc::expiry_warnings("not json").empty());
  EXPECT_TRUE(sc::expiry_warnings(R"({"identity":"yes"})").empty());
  auto view =
      certs_with(cert_at(t0, t0 + day, 1), cert_at(t0, t0 + day, 1), cert_at(t0, t0 + day, 1));
  view["certificate"]["expires_in_seconds"] = "soon";
  view["issuers"][0]["not_before_unix"] = nullptr; // no lifetime: 30 days rule alone
  view["roots"] = "all of them";
  const auto warnings = sc::expiry_warnings(view.dump());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("issuer"), std::string::npos) << warnings[0];
}
