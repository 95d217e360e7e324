// /metrics rendering (actors/metrics_text.hpp): the stats and certs views in the Prometheus
// text format, counters with _total, gauges without, labelled families for member states,
// refusal reasons and certificate kinds, one TYPE line per family, null groups left out.
#include <gtest/gtest.h>

#include "actors/metrics_text.hpp"

namespace sa = starling::actors;

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
  const auto text = sa::render_metrics(stats, nullptr, "1.2.3");
  EXPECT_NE(text.find("starling_build_info{version=\"1.2.3\"} 1\n"), std::string::npos) << text;
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
  const auto text = sa::render_metrics(nlohmann::json::object(), certs, "1");
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
      sa::render_metrics(nlohmann::json::object(), nlohmann::json{{"identity", false}}, "1");
  EXPECT_EQ(plain.find("identity"), std::string::npos) << plain;
}

TEST(metrics_text, odd_names_and_label_values_are_made_safe) {
  const auto stats = nlohmann::json::parse(R"({"we-ird": {"a.b c": 1}})");
  const auto text = sa::render_metrics(
      stats, nlohmann::json::parse(R"({"identity":true,"handshake_refusals":{"a\"b\\c":1}})"),
      "v\"1");
  EXPECT_NE(text.find("starling_we_ird_a_b_c_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("reason=\"a\\\"b\\\\c\""), std::string::npos) << text;
  EXPECT_NE(text.find("version=\"v\\\"1\""), std::string::npos) << text;
}

} // namespace
