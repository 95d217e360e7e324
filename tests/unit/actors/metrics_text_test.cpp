// /metrics rendering (actors/metrics_text.hpp): the stats and certs views in the Prometheus
// text format, counters with _total, gauges without, labelled families for member states,
// refusal reasons and certificate kinds, one TYPE line per family, null groups left out.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

#include <gtest/gtest.h>

#include "actors/metrics_text.hpp"
#include "actors/views.hpp"
#include "proxy/dataplane.hpp"

namespace sa = starling::actors;
namespace sp = starling::proxy;

namespace {

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

TEST(metrics_text, stats_groups_become_counters_and_gauges) {
  const auto stats = nlohmann::json::parse(R"({
    "dns_address": "127.0.0.1:53", "metrics_address": null,
    "transport": {"bytes_in": 10, "inbound_buffered": 3},
    "sealer": null,
    "membership": {"members_alive": 5, "members_dead": 1, "probes": 7, "health_score": 0},
    "routing": {"owners": 2, "records_refused": 4, "refused_bad_signature": 3,
                "refused_not_owner": 1, "dns_queries": 9, "pulls_in": 18446744073709551615}
  })");
  const auto text = sa::render_metrics(stats, nullptr, {"1.2.3", "0123abcd-dirty"});
  EXPECT_NE(text.find("starling_build_info{version=\"1.2.3\",revision=\"0123abcd-dirty\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE starling_transport_bytes_in_total counter\n"
                      "starling_transport_bytes_in_total 10\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE starling_transport_inbound_buffered gauge\n"), std::string::npos);
  EXPECT_NE(text.find("starling_membership_members{state=\"alive\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("starling_membership_members{state=\"dead\"} 1\n"), std::string::npos);
  EXPECT_EQ(count_of(text, "# TYPE starling_membership_members gauge"), 1u);
  EXPECT_NE(text.find("starling_membership_health_score 0\n"), std::string::npos);
  EXPECT_NE(text.find("starling_routing_records_refused_total{reason=\"bad_signature\"} 3\n"),
            std::string::npos);
  EXPECT_EQ(text.find("starling_routing_records_refused_total 4"), std::string::npos)
      << "the sum is not a sample of the labelled family";
  EXPECT_NE(text.find("starling_dns_queries_total 9\n"), std::string::npos);
  EXPECT_NE(text.find("starling_routing_pulls_in_total 18446744073709551615\n"), std::string::npos);
  EXPECT_EQ(text.find("sealer"), std::string::npos) << "a null group is left out";
  EXPECT_EQ(text.find("address"), std::string::npos) << "text fields are not metrics";
}

TEST(metrics_text, certificates_expiry_and_handshake_refusals) {
  const auto certs = nlohmann::json::parse(R"({
    "identity": true,
    "handshake_refusals": {"revoked": 2, "untrusted_chain": 1},
    "certificate": {"not_after_unix": 1800000000, "spki_sha256": "0123456789abcdef0123"},
    "issuers": [{"not_after_unix": 1900000000, "spki_sha256": "aaaaaaaaaaaaaaaaaaaa"}],
    "roots": [{"not_after_unix": 2000000000, "spki_sha256": "bbbbbbbbbbbbbbbbbbbb"}],
    "sync": {"exchanges": 4}
  })");
  const auto text = sa::render_metrics(nlohmann::json::object(), certs, {"1", "r"});
  const std::string expiry = "starling_identity_certificate_expiration_timestamp_seconds";
  EXPECT_NE(text.find(expiry + "{kind=\"node\",spki=\"0123456789abcdef\"} 1800000000\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(expiry + "{kind=\"issuer\",spki=\"aaaaaaaaaaaaaaaa\"} 1900000000\n"),
            std::string::npos);
  EXPECT_NE(text.find(expiry + "{kind=\"root\",spki=\"bbbbbbbbbbbbbbbb\"} 2000000000\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_identity_handshake_refusals_total{reason=\"revoked\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_identity_sync_exchanges_total 4\n"), std::string::npos);
  // Without an identity: none of it.
  const auto plain =
      sa::render_metrics(nlohmann::json::object(), nlohmann::json{{"identity", false}}, {"1", "r"});
  EXPECT_EQ(plain.find("identity"), std::string::npos) << plain;
}

TEST(metrics_text, odd_names_and_label_values_are_made_safe) {
  const auto stats = nlohmann::json::parse(R"({"we-ird": {"a.b c": 1}})");
  const auto text = sa::render_metrics(
      stats, nlohmann::json::parse(R"({"identity":true,"handshake_refusals":{"a\"b\\c":1}})"),
      {"v\"1", "r\\2"});
  EXPECT_NE(text.find("starling_we_ird_a_b_c_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("reason=\"a\\\"b\\\\c\""), std::string::npos) << text;
  EXPECT_NE(text.find("version=\"v\\\"1\",revision=\"r\\\\2\""), std::string::npos) << text;
}

/// A histogram of the data plane's shape: 3 buckets and +Inf, `counts` in them.
template <class Stats> void fill_latency(Stats& s, std::vector<std::uint64_t> counts, double sum) {
  s.latency_bounds = {0.001, 0.01, 0.1, std::numeric_limits<double>::infinity()};
  s.latency_counts = std::move(counts);
  s.latency_sum_seconds = sum;
}

/// Data plane stats with an outbound and an inbound service and two instances, one with
/// label values that need escaping.
sp::dataplane_stats proxy_stats() {
  sp::dataplane_stats p;
  sp::service_stats out;
  out.service = "web";
  out.requests = 10;
  out.responses_2xx = 6;
  out.responses_5xx = 4;
  fill_latency(out, {5, 3, 2, 0}, 0.12);
  p.services.push_back(out);
  sp::service_stats in;
  in.service = "web";
  in.requests = 7;
  in.responses_2xx = 7;
  in.bytes_in = 700;
  fill_latency(in, {7, 0, 0, 0}, 0.002);
  p.inbound_services.push_back(in);
  sp::instance_stats good;
  good.service = "web";
  good.instance = "w1";
  good.node = "b";
  good.requests = 6;
  good.responses_2xx = 6;
  fill_latency(good, {4, 2, 0, 0}, 0.02);
  sp::instance_stats bad = good;
  bad.instance = "w\"2\\x";
  bad.node = "c\nd";
  bad.requests = 5;
  bad.responses_2xx = 0;
  bad.responses_5xx = 4;
  bad.connect_failures = 1;
  fill_latency(bad, {1, 1, 2, 1}, 3.5);
  p.instances = {good, bad};
  return p;
}

/// `promtool check metrics` of `text`: its exit status and output; status -1 without promtool.
std::pair<int, std::string> promtool(const std::string& text) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    return {-1, "no promtool"};
  const auto file = std::filesystem::temp_directory_path() /
                    ("starling-metrics-text-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(file) << text;
  const auto cmd = "promtool check metrics < " + file.string() + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe{::popen(cmd.c_str(), "r"), ::pclose};
  std::string out;
  char buf[256];
  while (pipe && std::fgets(buf, sizeof buf, pipe.get()) != nullptr)
    out += buf;
  const int status = pipe ? ::pclose(pipe.release()) : -1;
  std::filesystem::remove(file);
  return {status, out};
}

TEST(metrics_text, proxy_instance_and_inbound_families) {
  const auto p = proxy_stats();
  const auto text = sa::render_metrics(nlohmann::json::object(), nullptr, {"1", "r"}, &p);
  // Outbound families keep their names and labels.
  EXPECT_NE(text.find("starling_proxy_service_requests_total{service=\"web\"} 10\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("starling_proxy_request_duration_seconds_count{service=\"web\"} 10\n"),
            std::string::npos);
  // Inbound: its own families.
  EXPECT_NE(text.find("starling_proxy_inbound_service_requests_total{service=\"web\"} 7\n"),
            std::string::npos);
  EXPECT_NE(
      text.find(
          "starling_proxy_inbound_service_responses_total{service=\"web\",class=\"2xx\"} 7\n"),
      std::string::npos);
  EXPECT_NE(text.find("starling_proxy_inbound_service_received_bytes_total{service=\"web\"} 700\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_inbound_request_duration_seconds_bucket{service=\"web\","
                      "le=\"0.001\"} 7\n"),
            std::string::npos);
  // Per instance: requests, classes, failures by reason, a histogram; labels escaped.
  const std::string good = "service=\"web\",instance=\"w1\",node=\"b\"";
  const std::string bad = "service=\"web\",instance=\"w\\\"2\\\\x\",node=\"c\\nd\"";
  EXPECT_NE(text.find("starling_proxy_instance_requests_total{" + good + "} 6\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_instance_requests_total{" + bad + "} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_instance_responses_total{" + bad + ",class=\"5xx\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_instance_failures_total{" + bad +
                      ",reason=\"connect_failure\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_instance_request_duration_seconds_bucket{" + bad +
                      ",le=\"0.1\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_instance_request_duration_seconds_bucket{" + bad +
                      ",le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("starling_proxy_instance_request_duration_seconds_sum{" + bad + "} 3.5\n"),
            std::string::npos);
  for (const auto* family :
       {"starling_proxy_instance_requests_total", "starling_proxy_instance_responses_total",
        "starling_proxy_instance_failures_total",
        "starling_proxy_instance_request_duration_seconds",
        "starling_proxy_inbound_service_requests_total",
        "starling_proxy_inbound_request_duration_seconds"}) {
    EXPECT_EQ(count_of(text, std::string{"# TYPE "} + family + " "), 1u) << family;
    EXPECT_EQ(count_of(text, std::string{"# HELP "} + family + " "), 1u) << family;
  }
  const auto [status, out] = promtool(text);
  if (status == -1)
    GTEST_SKIP() << "promtool is not installed";
  EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(metrics_text, the_stats_group_and_proxy_detail_together_pass_promtool) {
  const auto p = proxy_stats();
  // The stats view as the admin actor builds it: the proxy group's sums (inbound ones
  // prefixed) and the proxy_services detail, which /metrics leaves to the families above.
  const auto stats = nlohmann::json::parse(sa::stats_json(
      {{"proxy", sa::counter_list{{"requests", 10}, {"services", 1}, {"inbound_requests", 7}}}}, {},
      sa::proxy_services_json(p)));
  ASSERT_TRUE(stats.contains("proxy_services")) << stats.dump();
  const auto text = sa::render_metrics(stats, nullptr, {"1", "r"}, &p);
  EXPECT_NE(text.find("starling_proxy_inbound_requests_total 7\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("starling_proxy_services_"), std::string::npos) << text;
  const auto [status, out] = promtool(text);
  if (status == -1)
    GTEST_SKIP() << "promtool is not installed";
  EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(metrics_text, proxy_services_json_has_rates_and_percentiles) {
  const auto p = proxy_stats();
  const auto j = nlohmann::json::parse(sa::proxy_services_json(p));
  const auto& out = j.at("outbound").at(0);
  EXPECT_EQ(out.at("service"), "web");
  EXPECT_EQ(out.at("requests"), 10);
  EXPECT_DOUBLE_EQ(out.at("success_rate").get<double>(), 0.6);
  // 10 samples: 5 <= 1 ms, 3 <= 10 ms, 2 <= 100 ms. p50 is the 5th: 1 ms; p95 (9.5th) in
  // the third bucket, interpolated: 10 + 90 * 0.75 = 77.5 ms.
  EXPECT_DOUBLE_EQ(out.at("p50_ms").get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(out.at("p95_ms").get<double>(), 77.5);
  EXPECT_EQ(j.at("inbound").at(0).at("requests"), 7);
  EXPECT_DOUBLE_EQ(j.at("inbound").at(0).at("success_rate").get<double>(), 1.0);
  const auto& bad = j.at("instances").at(1);
  EXPECT_EQ(bad.at("node"), "c\nd");
  EXPECT_EQ(bad.at("responses_5xx"), 4);
  EXPECT_EQ(bad.at("connect_failures"), 1);
  EXPECT_DOUBLE_EQ(bad.at("success_rate").get<double>(), 0.0);
  // A sample in the +Inf bucket is reported as the last finite bound.
  EXPECT_DOUBLE_EQ(bad.at("p99_ms").get<double>(), 100.0);
  // No samples: null percentiles and rate.
  sp::dataplane_stats empty;
  empty.services.emplace_back().service = "idle";
  const auto e = nlohmann::json::parse(sa::proxy_services_json(empty));
  EXPECT_TRUE(e.at("outbound").at(0).at("p50_ms").is_null());
  EXPECT_TRUE(e.at("outbound").at(0).at("success_rate").is_null());
}

} // namespace
