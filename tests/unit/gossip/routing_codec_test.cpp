// The routing wire codec (gossip/routing_codec.hpp): round trips, and refusals of bad bytes
// before they cost allocations.
#include <random>

#include <gtest/gtest.h>

#include "gossip/routing_codec.hpp"
#include "routing.pb.h"
#include "tests/support/routing_fakes.hpp"

namespace starling::gossip {
namespace {

owner_record sample_owner() {
  owner_record r;
  r.owner = "node-a";
  r.version = 7;
  r.stamp = {1'800'000'000'000, 3};
  service_registration s;
  s.service = "web";
  s.id = "web-1";
  s.address = "10.0.0.1";
  s.port = 8080;
  s.protocol = service_protocol::http;
  s.tags = {"blue", "primary"};
  s.version = "v2";
  s.weight = 50;
  s.health = health_status::passing;
  s.last_check = "HTTP 200";
  r.instances.push_back(s);
  r.seal = {std::string(32, 'k'), std::string(70, 's')};
  return r;
}

std::vector<policy_record> sample_policies() {
  std::vector<policy_record> out;
  policy_record split;
  split.key = {policy_kind::split, "web", ""};
  split.stamp = {1'800'000'000'000, 1};
  split.writer = "i1";
  split.value = std::vector<split_weight>{{"v1", 90}, {"v2", 10}};
  split.seal = {std::string(32, 'i'), std::string(71, 'x')};
  out.push_back(split);
  auto route = split;
  route.key = {policy_kind::route, "web", "beta"};
  route.value = header_route{"beta", "x-user-group", "beta", "v2"};
  out.push_back(route);
  auto res = split;
  res.key = {policy_kind::resilience, "web", ""};
  res.value = resilience_policy{2000, 500, 2, 20, 10};
  out.push_back(res);
  auto limits = res;
  limits.key.service = "api";
  resilience_policy with_limits{0, 0, 0, 0, 0};
  with_limits.max_requests = 100;
  with_limits.eject_consecutive_5xx = 0; // set to "off": not the same as unset
  with_limits.ejection_time_ms = 5000;
  with_limits.max_ejection_percent = 30;
  with_limits.max_pending = 12;
  limits.value = with_limits;
  out.push_back(limits);
  auto authz = split;
  authz.key = {policy_kind::authz, "web", "frontend-only"};
  authz.value = authz_rule{"frontend-only", {"spiffe://m/svc/frontend"}, true};
  out.push_back(authz);
  auto del = split;
  del.key = {policy_kind::split, "api", ""};
  del.deleted = true;
  del.value = std::monostate{};
  out.push_back(del);
  return out;
}

TEST(routing_codec, payload_round_trips) {
  routing_payload p{{sample_owner()}, sample_policies(), routing_note{7, 8}};
  auto back = decode_routing_payload(encode_routing(p));
  ASSERT_TRUE(back) << to_string(back.error());
  EXPECT_EQ(*back, p);
  for (const auto& pol : p.policies)
    EXPECT_FALSE(check_policy_record(pol)) << routing_table::key_of(pol.key);
  EXPECT_FALSE(check_owner_record(p.owners.front()));
}

TEST(routing_codec, every_protocol_round_trips_and_others_are_refused) {
  for (const auto protocol :
       {service_protocol::tcp, service_protocol::http, service_protocol::http2}) {
    auto owner = sample_owner();
    owner.instances.front().protocol = protocol;
    routing_payload p{{owner}, {}, routing_note{1, 2}};
    auto back = decode_routing_payload(encode_routing(p));
    ASSERT_TRUE(back) << to_string(back.error());
    EXPECT_EQ(back->owners.front().instances.front().protocol, protocol);
    EXPECT_FALSE(check_owner_record(owner));
  }
  for (const std::uint32_t wrong : {0u, 4u, 255u}) {
    starling::v1::RoutingPayload m;
    auto* i = m.add_owners()->add_instances();
    i->set_port(80);
    i->set_protocol(wrong);
    auto res = decode_routing_payload(m.SerializeAsString());
    ASSERT_FALSE(res) << wrong;
    EXPECT_TRUE(is(res.error(), routing_errc::invalid_record)) << wrong;
  }
}

TEST(routing_codec, section_round_trips) {
  routing_section s;
  for (std::size_t k = 0; k < digest_ranges; ++k) {
    s.digest.hashes[k] = k * 0x9e3779b97f4a7c15ULL;
    s.digest.counts[k] = static_cast<std::uint32_t>(k);
  }
  s.owners = {sample_owner()};
  s.policies = sample_policies();
  s.chains = {test_support::fake_chain("node-a"), {std::string(32, 'i'), {"der1", "der2"}}};
  s.partial = true;
  auto back = decode_routing_section(encode_routing(s));
  ASSERT_TRUE(back) << to_string(back.error());
  EXPECT_EQ(*back, s);
}

TEST(routing_codec, garbage_is_refused_never_crashes) {
  std::mt19937_64 rng(42);
  std::size_t refused = 0;
  for (int k = 0; k < 2000; ++k) {
    std::string bytes(rng() % 300, '\0');
    for (auto& c : bytes)
      c = static_cast<char>(rng());
    auto p = decode_routing_payload(bytes);
    auto s = decode_routing_section(bytes);
    refused += !p + !s;
    if (!p) {
      EXPECT_TRUE(is(p.error(), routing_errc::malformed) ||
                  is(p.error(), routing_errc::invalid_record));
    }
  }
  EXPECT_GT(refused, 3000u);
}

TEST(routing_codec, counts_over_the_limits_are_refused_before_parsing) {
  starling::v1::RoutingPayload m;
  auto& owner = *m.add_owners();
  owner.set_owner("a");
  for (std::size_t k = 0; k <= max_instances_per_owner; ++k)
    owner.add_instances(); // empty entries: 2 bytes each on the wire
  auto res = decode_routing_payload(m.SerializeAsString());
  ASSERT_FALSE(res);
  EXPECT_TRUE(is(res.error(), routing_errc::malformed));
  EXPECT_NE(to_string(res.error()).find("more than 64"), std::string::npos);

  starling::v1::RoutingPayload tags;
  auto& inst = *tags.add_owners()->add_instances();
  for (std::size_t k = 0; k <= max_tags; ++k)
    inst.add_tags("t");
  EXPECT_FALSE(decode_routing_payload(tags.SerializeAsString()));

  routing_codec_limits small;
  small.max_owners = 2;
  starling::v1::RoutingSection sec;
  for (int k = 0; k < 3; ++k)
    sec.add_owners();
  EXPECT_FALSE(decode_routing_section(sec.SerializeAsString(), small));

  starling::v1::RoutingSection chains;
  auto& c = *chains.add_chains();
  for (int k = 0; k < 5; ++k)
    c.add_certificates("x");
  EXPECT_FALSE(decode_routing_section(chains.SerializeAsString()));
  starling::v1::RoutingSection big_cert;
  big_cert.add_chains()->add_certificates(std::string(8193, 'c'));
  EXPECT_FALSE(decode_routing_section(big_cert.SerializeAsString()));
}

TEST(routing_codec, values_out_of_range_are_refused) {
  starling::v1::RoutingPayload port;
  port.add_owners()->add_instances()->set_port(70000);
  auto res = decode_routing_payload(port.SerializeAsString());
  ASSERT_FALSE(res);
  EXPECT_TRUE(is(res.error(), routing_errc::invalid_record));
  starling::v1::RoutingPayload kind;
  kind.add_policies()->set_kind(9);
  EXPECT_FALSE(decode_routing_payload(kind.SerializeAsString()));
  starling::v1::RoutingSection digest;
  digest.mutable_digest()->add_hashes(1);
  EXPECT_FALSE(decode_routing_section(digest.SerializeAsString()));
}

TEST(routing_codec, oversized_input_is_refused_by_length) {
  routing_codec_limits limits;
  limits.max_bytes = 100;
  routing_payload p{{sample_owner()}, {}, std::nullopt};
  EXPECT_FALSE(decode_routing_payload(encode_routing(p), limits));
}

} // namespace
} // namespace starling::gossip
