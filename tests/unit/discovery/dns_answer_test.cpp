// Tests of dns_answer: queries are built and replies read with ldns, as a client would.
// Everything is deterministic: the answer order comes from the seed passed in.
#include <algorithm>
#include <cstdbool> // before <ldns/ldns.h>, which else #defines true and false
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <ldns/ldns.h>

#include "gossip/discovery/dns_answer.hpp"

namespace starling::gossip::discovery {
namespace {

struct pkt_free {
  void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_free>;

using bytes = std::vector<std::uint8_t>;

/// The wire form of `p`.
bytes wire_of(const ldns_pkt* p) {
  std::uint8_t* raw = nullptr;
  std::size_t n = 0;
  if (ldns_pkt2wire(&raw, p, &n) != LDNS_STATUS_OK || raw == nullptr) {
    ADD_FAILURE() << "ldns_pkt2wire failed";
    std::free(raw);
    return {};
  }
  bytes out{raw, raw + n};
  std::free(raw);
  return out;
}

/// How a test query is made.
struct query_spec {
  std::string name;
  ldns_rr_type type = LDNS_RR_TYPE_A;
  std::uint16_t id = 0x4242;
  /// EDNS0 payload size to advertise; none: no OPT record.
  std::optional<std::uint16_t> edns;
  std::uint8_t edns_version = 0;
  ldns_rr_class cls = LDNS_RR_CLASS_IN;
};

bytes make_query(const query_spec& q) {
  ldns_pkt* raw = nullptr;
  if (ldns_pkt_query_new_frm_str(&raw, q.name.c_str(), q.type, q.cls, LDNS_RD) != LDNS_STATUS_OK) {
    ADD_FAILURE() << "cannot build a query for " << q.name;
    return {};
  }
  pkt_ptr p{raw};
  ldns_pkt_set_id(p.get(), q.id);
  if (q.edns) {
    ldns_pkt_set_edns_udp_size(p.get(), *q.edns);
    ldns_pkt_set_edns_version(p.get(), q.edns_version);
  }
  return wire_of(p.get());
}

bytes make_query(std::string name, ldns_rr_type type = LDNS_RR_TYPE_A) {
  query_spec q;
  q.name = std::move(name);
  q.type = type;
  return make_query(q);
}

pkt_ptr parse(const bytes& b) {
  ldns_pkt* raw = nullptr;
  if (b.empty() || ldns_wire2pkt(&raw, b.data(), b.size()) != LDNS_STATUS_OK)
    return nullptr;
  return pkt_ptr{raw};
}

std::string take(char* s) {
  std::string out = s ? s : "(null)";
  std::free(s);
  return out;
}

/// "A 10.0.0.1", "SRV 1 100 8080 n1.node.starling." (with the owner first when asked).
std::string show(const ldns_rr* rr, bool owner = false) {
  std::string out;
  if (owner)
    out = take(ldns_rdf2str(ldns_rr_owner(rr))) + " ";
  out += take(ldns_rr_type2str(ldns_rr_get_type(rr)));
  for (std::size_t i = 0; i < ldns_rr_rd_count(rr); ++i)
    out += " " + take(ldns_rdf2str(ldns_rr_rdf(rr, i)));
  return out;
}

std::vector<std::string> section(const ldns_pkt* p, ldns_pkt_section s, bool owner = false) {
  const ldns_rr_list* list = nullptr;
  switch (s) {
  case LDNS_SECTION_ANSWER:
    list = ldns_pkt_answer(p);
    break;
  case LDNS_SECTION_AUTHORITY:
    list = ldns_pkt_authority(p);
    break;
  case LDNS_SECTION_ADDITIONAL:
    list = ldns_pkt_additional(p);
    break;
  default:
    list = ldns_pkt_question(p);
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; list && i < ldns_rr_list_rr_count(list); ++i)
    out.push_back(show(ldns_rr_list_rr(list, i), owner));
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

instance_view instance(std::string node, std::string service, std::string id, std::string address,
                       std::uint16_t port, std::vector<std::string> tags = {},
                       std::uint32_t weight = 100, health_status health = health_status::passing,
                       bool alive = true) {
  instance_view i;
  i.node = std::move(node);
  i.service = std::move(service);
  i.id = std::move(id);
  i.address = std::move(address);
  i.port = port;
  i.tags = std::move(tags);
  i.weight = weight;
  i.health = health;
  i.node_alive = alive;
  return i;
}

/// db: one failing instance; pay: a policy only; web: five routable instances (n1 twice on
/// one address, n3 on IPv6), one failing (n4), one on a dead node (n5).
routing_snapshot fixture() {
  routing_snapshot s;
  s.generation = 77;
  service_view db{"db", {}, {}};
  db.instances.push_back(
      instance("n2", "db", "db-1", "10.0.0.2", 5432, {}, 100, health_status::failing));
  service_view pay{"pay", {}, {}};
  pay.policies.resilience = resilience_policy{};
  service_view web{"web", {}, {}};
  web.instances.push_back(instance("n1", "web", "a", "10.0.0.1", 8080, {"Primary", "v1"}));
  web.instances.push_back(instance("n1", "web", "b", "10.0.0.1", 9090, {}, 300));
  web.instances.push_back(
      instance("n2", "web", "c", "10.0.0.2", 8081, {"v1"}, 200, health_status::none));
  web.instances.push_back(instance("n3", "web", "d", "fd00::3", 8082));
  web.instances.push_back(
      instance("n4", "web", "e", "10.0.0.4", 8083, {"broken"}, 100, health_status::failing));
  web.instances.push_back(
      instance("n5", "web", "f", "10.0.0.5", 8084, {}, 100, health_status::passing, false));
  web.instances.push_back(instance("n6", "web", "g", "fd00::6", 8085, {}, 70000));
  s.services = {db, pay, web};
  return s;
}

/// Asks `snap` and parses the reply (which must exist and parse).
struct asked {
  dns_reply reply;
  pkt_ptr pkt;
};

asked ask(const bytes& query, const routing_snapshot& snap, const dns_options& opts = {},
          std::uint64_t seed = 1) {
  asked out;
  out.reply = dns_answer(query, snap, opts, seed);
  out.pkt = parse(out.reply.bytes);
  EXPECT_TRUE(out.pkt) << "no parsable reply (" << out.reply.bytes.size() << " bytes)";
  return out;
}

class dns_answer_test : public ::testing::Test {
protected:
  routing_snapshot snap = fixture();
};

TEST_F(dns_answer_test, a_lists_distinct_ipv4_of_routable_instances) {
  auto a = ask(make_query("web.service.starling", LDNS_RR_TYPE_A), snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  EXPECT_FALSE(a.reply.truncated);
  EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_NOERROR);
  EXPECT_TRUE(ldns_pkt_qr(a.pkt.get()));
  EXPECT_TRUE(ldns_pkt_aa(a.pkt.get()));
  EXPECT_FALSE(ldns_pkt_ra(a.pkt.get()));
  EXPECT_FALSE(ldns_pkt_tc(a.pkt.get()));
  EXPECT_TRUE(ldns_pkt_rd(a.pkt.get())); // copied from the query
  EXPECT_EQ(ldns_pkt_id(a.pkt.get()), 0x4242);
  // n4 (failing) and n5 (dead node) are left out; n1's two instances share one address.
  EXPECT_EQ(sorted(section(a.pkt.get(), LDNS_SECTION_ANSWER)),
            (std::vector<std::string>{"A 10.0.0.1", "A 10.0.0.2"}));
  EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_QUESTION, true),
            std::vector<std::string>{"web.service.starling. A"});
  EXPECT_EQ(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(a.pkt.get()), 0)), 0u);
  EXPECT_TRUE(section(a.pkt.get(), LDNS_SECTION_AUTHORITY).empty());
}

TEST_F(dns_answer_test, aaaa_lists_ipv6_of_routable_instances) {
  auto a = ask(make_query("web.service.starling", LDNS_RR_TYPE_AAAA), snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  EXPECT_EQ(sorted(section(a.pkt.get(), LDNS_SECTION_ANSWER)),
            (std::vector<std::string>{"AAAA fd00::3", "AAAA fd00::6"}));
}

TEST_F(dns_answer_test, srv_has_one_record_per_instance_and_the_targets_addresses) {
  auto a = ask(make_query("web.service.starling", LDNS_RR_TYPE_SRV), snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  EXPECT_EQ(sorted(section(a.pkt.get(), LDNS_SECTION_ANSWER)),
            (std::vector<std::string>{
                "SRV 1 100 8080 n1.node.starling.", "SRV 1 100 8082 n3.node.starling.",
                "SRV 1 200 8081 n2.node.starling.", "SRV 1 300 9090 n1.node.starling.",
                "SRV 1 65535 8085 n6.node.starling." // weight capped
            }));
  EXPECT_EQ(sorted(section(a.pkt.get(), LDNS_SECTION_ADDITIONAL, true)),
            (std::vector<std::string>{
                "n1.node.starling. A 10.0.0.1", "n2.node.starling. A 10.0.0.2",
                "n3.node.starling. AAAA fd00::3", "n6.node.starling. AAAA fd00::6"}));
}

TEST_F(dns_answer_test, tag_form_filters_by_tag_case_insensitively) {
  auto primary = ask(make_query("primary.web.service.starling"), snap);
  ASSERT_TRUE(primary.pkt);
  EXPECT_EQ(section(primary.pkt.get(), LDNS_SECTION_ANSWER),
            std::vector<std::string>{"A 10.0.0.1"});
  auto v1 = ask(make_query("v1.web.service.starling", LDNS_RR_TYPE_SRV), snap);
  ASSERT_TRUE(v1.pkt);
  EXPECT_EQ(sorted(section(v1.pkt.get(), LDNS_SECTION_ANSWER)),
            (std::vector<std::string>{"SRV 1 100 8080 n1.node.starling.",
                                      "SRV 1 200 8081 n2.node.starling."}));
  // A tag nobody carries: no such name. A tag only an unroutable instance carries: the
  // name exists, with no record.
  auto unknown = ask(make_query("canary.web.service.starling"), snap);
  ASSERT_TRUE(unknown.pkt);
  EXPECT_EQ(unknown.reply.outcome, dns_outcome::nxdomain);
  EXPECT_EQ(ldns_pkt_get_rcode(unknown.pkt.get()), LDNS_RCODE_NXDOMAIN);
  auto broken = ask(make_query("broken.web.service.starling"), snap);
  ASSERT_TRUE(broken.pkt);
  EXPECT_EQ(broken.reply.outcome, dns_outcome::nodata);
  EXPECT_EQ(ldns_pkt_get_rcode(broken.pkt.get()), LDNS_RCODE_NOERROR);
  EXPECT_TRUE(section(broken.pkt.get(), LDNS_SECTION_ANSWER).empty());
}

TEST_F(dns_answer_test, node_form_answers_the_nodes_addresses_whatever_their_health) {
  auto n1 = ask(make_query("n1.node.starling"), snap);
  ASSERT_TRUE(n1.pkt);
  EXPECT_EQ(n1.reply.outcome, dns_outcome::answered);
  EXPECT_EQ(section(n1.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"A 10.0.0.1"});
  auto n3 = ask(make_query("n3.node.starling", LDNS_RR_TYPE_AAAA), snap);
  ASSERT_TRUE(n3.pkt);
  EXPECT_EQ(section(n3.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"AAAA fd00::3"});
  auto n3a = ask(make_query("n3.node.starling", LDNS_RR_TYPE_A), snap);
  ASSERT_TRUE(n3a.pkt);
  EXPECT_EQ(n3a.reply.outcome, dns_outcome::nodata);
  auto dead = ask(make_query("n5.node.starling"), snap);
  ASSERT_TRUE(dead.pkt);
  EXPECT_EQ(section(dead.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"A 10.0.0.5"});
  auto none = ask(make_query("n9.node.starling"), snap);
  ASSERT_TRUE(none.pkt);
  EXPECT_EQ(none.reply.outcome, dns_outcome::nxdomain);
  EXPECT_EQ(ldns_pkt_get_rcode(none.pkt.get()), LDNS_RCODE_NXDOMAIN);
}

TEST_F(dns_answer_test, names_are_case_insensitive_and_the_question_is_echoed_as_asked) {
  auto a = ask(make_query("WeB.SeRvIcE.StArLiNg.", LDNS_RR_TYPE_A), snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  EXPECT_EQ(sorted(section(a.pkt.get(), LDNS_SECTION_ANSWER)),
            (std::vector<std::string>{"A 10.0.0.1", "A 10.0.0.2"}));
  EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_QUESTION, true),
            std::vector<std::string>{"WeB.SeRvIcE.StArLiNg. A"});
  EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_ANSWER, true)[0].substr(0, 22),
            "WeB.SeRvIcE.StArLiNg. ");
  auto node = ask(make_query("N2.NODE.STARLING"), snap);
  ASSERT_TRUE(node.pkt);
  EXPECT_EQ(section(node.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"A 10.0.0.2"});
}

TEST_F(dns_answer_test, unknown_service_is_nxdomain_with_the_soa) {
  dns_options opts;
  opts.ttl = 30;
  for (const char* name : {"nope.service.starling", "x.nope.service.starling", "foo.starling",
                           "a.b.c.service.starling", "a.b.node.starling"}) {
    SCOPED_TRACE(name);
    auto a = ask(make_query(name), snap, opts);
    ASSERT_TRUE(a.pkt);
    EXPECT_EQ(a.reply.outcome, dns_outcome::nxdomain);
    EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_NXDOMAIN);
    EXPECT_TRUE(ldns_pkt_aa(a.pkt.get()));
    EXPECT_TRUE(section(a.pkt.get(), LDNS_SECTION_ANSWER).empty());
    EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_AUTHORITY, true),
              std::vector<std::string>{
                  "starling. SOA ns.starling. hostmaster.starling. 77 3600 600 86400 30"});
    EXPECT_EQ(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(a.pkt.get()), 0)), 30u);
  }
}

TEST_F(dns_answer_test, existing_names_without_such_records_are_nodata_with_the_soa) {
  const std::vector<std::pair<std::string, ldns_rr_type>> cases{
      {"db.service.starling", LDNS_RR_TYPE_A},    // known, nothing routable
      {"db.service.starling", LDNS_RR_TYPE_SRV},  //
      {"pay.service.starling", LDNS_RR_TYPE_A},   // a policy, no instance
      {"web.service.starling", LDNS_RR_TYPE_ANY}, //
      {"web.service.starling", LDNS_RR_TYPE_TXT}, //
      {"web.service.starling", LDNS_RR_TYPE_MX},  //
      {"n1.node.starling", LDNS_RR_TYPE_SRV},     //
      {"service.starling", LDNS_RR_TYPE_A},       // empty non-terminals
      {"node.starling", LDNS_RR_TYPE_A},          //
      {"starling", LDNS_RR_TYPE_A},               // the apex
  };
  for (const auto& [name, type] : cases) {
    SCOPED_TRACE(name + " " + std::to_string(type));
    auto a = ask(make_query(name, type), snap);
    ASSERT_TRUE(a.pkt);
    EXPECT_EQ(a.reply.outcome, dns_outcome::nodata);
    EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_NOERROR);
    EXPECT_TRUE(section(a.pkt.get(), LDNS_SECTION_ANSWER).empty());
    EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_AUTHORITY).size(), 1u);
    EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_AUTHORITY)[0].substr(0, 4), "SOA ");
  }
  auto soa = ask(make_query("starling", LDNS_RR_TYPE_SOA), snap);
  ASSERT_TRUE(soa.pkt);
  EXPECT_EQ(soa.reply.outcome, dns_outcome::answered);
  EXPECT_EQ(section(soa.pkt.get(), LDNS_SECTION_ANSWER),
            std::vector<std::string>{"SOA ns.starling. hostmaster.starling. 77 3600 600 86400 0"});
}

TEST_F(dns_answer_test, names_outside_the_domain_and_other_classes_are_refused) {
  for (const char* name : {"example.com", "web.service.starling.com", "starlingx", "."}) {
    SCOPED_TRACE(name);
    auto a = ask(make_query(name), snap);
    ASSERT_TRUE(a.pkt);
    EXPECT_EQ(a.reply.outcome, dns_outcome::refused);
    EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_REFUSED);
    EXPECT_FALSE(ldns_pkt_aa(a.pkt.get()));
    EXPECT_TRUE(section(a.pkt.get(), LDNS_SECTION_ANSWER).empty());
    EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_QUESTION).size(), 1u);
  }
  query_spec chaos;
  chaos.name = "web.service.starling";
  chaos.cls = LDNS_RR_CLASS_CH;
  auto a = ask(make_query(chaos), snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::refused);
  EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_REFUSED);
}

TEST_F(dns_answer_test, another_domain_is_served_when_configured) {
  dns_options opts;
  opts.domain = "Mesh.Example.";
  auto a = ask(make_query("web.service.mesh.example", LDNS_RR_TYPE_SRV), snap, opts);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_ANSWER).size(), 5u);
  EXPECT_EQ(sorted(section(a.pkt.get(), LDNS_SECTION_ANSWER))[0],
            "SRV 1 100 8080 n1.node.Mesh.Example.");
  auto old = ask(make_query("web.service.starling"), snap, opts);
  ASSERT_TRUE(old.pkt);
  EXPECT_EQ(old.reply.outcome, dns_outcome::refused);
}

TEST_F(dns_answer_test, proxy_address_replaces_service_addresses_only) {
  dns_options opts;
  opts.proxy_address = "127.0.0.1";
  auto a = ask(make_query("web.service.starling"), snap, opts);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"A 127.0.0.1"});
  auto tagged = ask(make_query("v1.web.service.starling"), snap, opts);
  ASSERT_TRUE(tagged.pkt);
  EXPECT_EQ(section(tagged.pkt.get(), LDNS_SECTION_ANSWER),
            std::vector<std::string>{"A 127.0.0.1"});
  auto v6 = ask(make_query("web.service.starling", LDNS_RR_TYPE_AAAA), snap, opts);
  ASSERT_TRUE(v6.pkt);
  EXPECT_EQ(v6.reply.outcome, dns_outcome::nodata); // the proxy has no IPv6 address
  auto db = ask(make_query("db.service.starling"), snap, opts);
  ASSERT_TRUE(db.pkt);
  EXPECT_EQ(db.reply.outcome, dns_outcome::nodata); // nothing to proxy to
  auto node = ask(make_query("n2.node.starling"), snap, opts);
  ASSERT_TRUE(node.pkt);
  EXPECT_EQ(section(node.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"A 10.0.0.2"});
  auto srv = ask(make_query("web.service.starling", LDNS_RR_TYPE_SRV), snap, opts);
  ASSERT_TRUE(srv.pkt);
  EXPECT_EQ(section(srv.pkt.get(), LDNS_SECTION_ANSWER).size(), 5u);

  opts.proxy_address = "::1";
  auto six = ask(make_query("web.service.starling", LDNS_RR_TYPE_AAAA), snap, opts);
  ASSERT_TRUE(six.pkt);
  EXPECT_EQ(section(six.pkt.get(), LDNS_SECTION_ANSWER), std::vector<std::string>{"AAAA ::1"});
}

TEST_F(dns_answer_test, the_query_id_is_echoed) {
  for (std::uint16_t id : {0, 1, 0x8000, 0xffff, 12345}) {
    query_spec q;
    q.name = "web.service.starling";
    q.id = id;
    auto a = ask(make_query(q), snap);
    ASSERT_TRUE(a.pkt);
    EXPECT_EQ(ldns_pkt_id(a.pkt.get()), id);
  }
  query_spec q;
  q.name = "example.org";
  q.id = 777;
  auto refused = ask(make_query(q), snap);
  ASSERT_TRUE(refused.pkt);
  EXPECT_EQ(ldns_pkt_id(refused.pkt.get()), 777);
}

// --- refusals of what is not a plain query ---------------------------------------------------

TEST_F(dns_answer_test, too_short_or_a_response_gets_no_reply) {
  for (std::size_t n = 0; n < 12; ++n) {
    const bytes b(n, 0);
    const auto r = dns_answer(b, snap, {}, 1);
    EXPECT_TRUE(r.bytes.empty()) << n;
    EXPECT_EQ(r.outcome, dns_outcome::malformed);
  }
  // Our own reply fed back (QR set): never answered, so two responders cannot loop.
  const auto reply = dns_answer(make_query("web.service.starling"), snap, {}, 1);
  ASSERT_FALSE(reply.bytes.empty());
  const auto again = dns_answer(reply.bytes, snap, {}, 1);
  EXPECT_TRUE(again.bytes.empty());
  EXPECT_EQ(again.outcome, dns_outcome::malformed);
}

TEST_F(dns_answer_test, unparsable_queries_get_formerr_with_their_id) {
  // A header announcing one question that is not there.
  bytes header{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  auto a = ask(header, snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_EQ(a.reply.outcome, dns_outcome::malformed);
  EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_FORMERR);
  EXPECT_EQ(ldns_pkt_id(a.pkt.get()), 0xabcd);
  EXPECT_TRUE(ldns_pkt_qr(a.pkt.get()));
  // No question at all.
  header[5] = 0;
  auto none = ask(header, snap);
  ASSERT_TRUE(none.pkt);
  EXPECT_EQ(ldns_pkt_get_rcode(none.pkt.get()), LDNS_RCODE_FORMERR);
  // Two questions.
  ldns_pkt* raw = nullptr;
  ASSERT_EQ(
      ldns_pkt_query_new_frm_str(&raw, "web.service.starling", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0),
      LDNS_STATUS_OK);
  pkt_ptr two{raw};
  ldns_rr* second = ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(two.get()), 0));
  ASSERT_TRUE(ldns_pkt_push_rr(two.get(), LDNS_SECTION_QUESTION, second));
  ldns_pkt_set_id(two.get(), 99);
  auto twice = ask(wire_of(two.get()), snap);
  ASSERT_TRUE(twice.pkt);
  EXPECT_EQ(twice.reply.outcome, dns_outcome::malformed);
  EXPECT_EQ(ldns_pkt_get_rcode(twice.pkt.get()), LDNS_RCODE_FORMERR);
  EXPECT_EQ(ldns_pkt_id(twice.pkt.get()), 99);
}

TEST_F(dns_answer_test, opcodes_other_than_query_are_not_implemented) {
  auto q = make_query("web.service.starling");
  for (int opcode : {1, 2, 4, 5, 15}) {
    q[2] = static_cast<std::uint8_t>((q[2] & 0x87) | (opcode << 3));
    auto a = ask(q, snap);
    ASSERT_TRUE(a.pkt);
    EXPECT_EQ(a.reply.outcome, dns_outcome::refused);
    EXPECT_EQ(ldns_pkt_get_rcode(a.pkt.get()), LDNS_RCODE_NOTIMPL) << opcode;
    // Read from the bytes: ldns_pkt_opcode (a C++ enum of 0 to 5) cannot hold 15.
    EXPECT_EQ(LDNS_OPCODE_WIRE(a.reply.bytes.data()), opcode);
  }
}

TEST_F(dns_answer_test, edns_is_echoed_and_other_versions_get_badvers) {
  query_spec q;
  q.name = "web.service.starling";
  q.edns = 1232;
  auto a = ask(make_query(q), snap);
  ASSERT_TRUE(a.pkt);
  EXPECT_TRUE(ldns_pkt_edns(a.pkt.get()));
  EXPECT_EQ(ldns_pkt_edns_udp_size(a.pkt.get()), 4096);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  auto plain = ask(make_query("web.service.starling"), snap);
  ASSERT_TRUE(plain.pkt);
  EXPECT_FALSE(ldns_pkt_edns(plain.pkt.get()));

  q.edns_version = 1;
  auto bad = ask(make_query(q), snap);
  ASSERT_TRUE(bad.pkt);
  EXPECT_EQ(bad.reply.outcome, dns_outcome::refused);
  EXPECT_EQ(ldns_pkt_edns_extended_rcode(bad.pkt.get()), 1); // BADVERS = 16
  EXPECT_EQ(ldns_pkt_get_rcode(bad.pkt.get()), LDNS_RCODE_NOERROR);
  EXPECT_TRUE(section(bad.pkt.get(), LDNS_SECTION_ANSWER).empty());
}

/// Random byte strings, and valid queries with random bytes changed: never a crash, never a
/// reply over the limit, and every reply parses and carries the query's id.
TEST_F(dns_answer_test, garbage_never_gets_a_reply_over_the_limit) {
  std::mt19937_64 gen{20261203};
  std::vector<bytes> valid;
  for (auto type : {LDNS_RR_TYPE_A, LDNS_RR_TYPE_SRV, LDNS_RR_TYPE_AAAA}) {
    query_spec q;
    q.name = "v1.web.service.starling";
    q.type = type;
    valid.push_back(make_query(q));
    q.edns = 4096;
    valid.push_back(make_query(q));
  }
  std::size_t replies = 0, answered = 0;
  for (int round = 0; round < 20000; ++round) {
    bytes b;
    if (round % 2 == 0) {
      b.resize(gen() % 600);
      for (auto& x : b)
        x = static_cast<std::uint8_t>(gen());
      if (b.size() > 2 && gen() % 2)
        b[2] &= 0x07; // a query with opcode 0, so that more of them get past the header
      if (b.size() > 5 && gen() % 2) {
        b[4] = 0;
        b[5] = 1; // one question
      }
    } else {
      b = valid[gen() % valid.size()];
      const auto flips = 1 + gen() % 4;
      for (std::size_t k = 0; k < flips; ++k)
        b[gen() % b.size()] = static_cast<std::uint8_t>(gen());
      if (gen() % 4 == 0)
        b.resize(gen() % b.size());
    }
    const auto r = dns_answer(b, snap, {}, gen());
    if (r.bytes.empty())
      continue;
    ++replies;
    answered += r.outcome == dns_outcome::answered;
    ASSERT_LE(r.bytes.size(), 4096u);
    auto p = parse(r.bytes);
    ASSERT_TRUE(p) << "round " << round;
    if (!ldns_pkt_edns(p.get())) {
      ASSERT_LE(r.bytes.size(), 512u) << "round " << round;
    }
    ASSERT_EQ(ldns_pkt_id(p.get()), static_cast<std::uint16_t>(b[0] << 8 | b[1]));
    ASSERT_TRUE(ldns_pkt_qr(p.get()));
  }
  // The mutations must have reached every path, not just the header checks.
  EXPECT_GT(replies, 5000u);
  EXPECT_GT(answered, 100u);
}

// --- sizes ------------------------------------------------------------------------------------

routing_snapshot big(std::size_t n) {
  routing_snapshot s;
  service_view svc{"big", {}, {}};
  for (std::size_t i = 0; i < n; ++i)
    svc.instances.push_back(
        instance("node-" + std::to_string(i), "big", "i",
                 "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256),
                 static_cast<std::uint16_t>(20000 + i)));
  s.services.push_back(svc);
  return s;
}

TEST_F(dns_answer_test, two_hundred_a_records_are_truncated_to_512_bytes) {
  const auto snap200 = big(200);
  auto a = ask(make_query("big.service.starling"), snap200);
  ASSERT_TRUE(a.pkt);
  EXPECT_LE(a.reply.bytes.size(), 512u);
  EXPECT_TRUE(a.reply.truncated);
  EXPECT_EQ(a.reply.outcome, dns_outcome::answered);
  EXPECT_TRUE(ldns_pkt_tc(a.pkt.get()));
  const auto answers = section(a.pkt.get(), LDNS_SECTION_ANSWER);
  // 512 bytes hold 29 A records after the header and question: as many as fit, not fewer.
  EXPECT_EQ(answers.size(), 29u);
  EXPECT_EQ(std::set<std::string>(answers.begin(), answers.end()).size(), answers.size());
  for (const auto& x : answers)
    EXPECT_EQ(x.rfind("A 10.1.", 0), 0u) << x;

  // One more record would not have fitted.
  EXPECT_GT(a.reply.bytes.size() + 16, 512u);

  // EDNS0 at 4096: all 200 fit (16 bytes each with name compression).
  query_spec q;
  q.name = "big.service.starling";
  q.edns = 4096;
  auto e = ask(make_query(q), snap200);
  ASSERT_TRUE(e.pkt);
  EXPECT_FALSE(e.reply.truncated);
  EXPECT_FALSE(ldns_pkt_tc(e.pkt.get()));
  EXPECT_EQ(section(e.pkt.get(), LDNS_SECTION_ANSWER).size(), 200u);
  EXPECT_LE(e.reply.bytes.size(), 4096u);

  // An advertised size under 512 counts as 512; one over 4096 as 4096.
  q.edns = 100;
  auto small = ask(make_query(q), snap200);
  ASSERT_TRUE(small.pkt);
  EXPECT_LE(small.reply.bytes.size(), 512u);
  EXPECT_GT(small.reply.bytes.size(), 400u);
  EXPECT_TRUE(ldns_pkt_tc(small.pkt.get()));

  // max_udp raises the limit for queries without EDNS0.
  dns_options opts;
  opts.max_udp = 1024;
  auto wide = ask(make_query("big.service.starling"), snap200, opts);
  ASSERT_TRUE(wide.pkt);
  EXPECT_LE(wide.reply.bytes.size(), 1024u);
  EXPECT_GT(section(wide.pkt.get(), LDNS_SECTION_ANSWER).size(), 29u);
  EXPECT_TRUE(ldns_pkt_tc(wide.pkt.get()));
}

TEST_F(dns_answer_test, srv_drops_additional_records_before_answers) {
  // Ten SRV records (41 bytes each: targets are not compressed) fit in 512 bytes, their ten
  // A records (16 bytes each) no longer do.
  const auto snap10 = big(10);
  auto a = ask(make_query("big.service.starling", LDNS_RR_TYPE_SRV), snap10);
  ASSERT_TRUE(a.pkt);
  EXPECT_LE(a.reply.bytes.size(), 512u);
  // Every SRV record fits but not every address: no TC (RFC 2181 §9), fewer additional.
  EXPECT_EQ(section(a.pkt.get(), LDNS_SECTION_ANSWER).size(), 10u);
  const auto glue = section(a.pkt.get(), LDNS_SECTION_ADDITIONAL).size();
  EXPECT_LT(glue, 10u);
  EXPECT_GT(glue, 0u);
  EXPECT_FALSE(ldns_pkt_tc(a.pkt.get()));
  EXPECT_TRUE(a.reply.truncated);

  const auto snap200 = big(200);
  query_spec q;
  q.name = "big.service.starling";
  q.type = LDNS_RR_TYPE_SRV;
  q.edns = 4096;
  auto e = ask(make_query(q), snap200);
  ASSERT_TRUE(e.pkt);
  EXPECT_LE(e.reply.bytes.size(), 4096u);
  EXPECT_TRUE(ldns_pkt_tc(e.pkt.get()));
  EXPECT_TRUE(section(e.pkt.get(), LDNS_SECTION_ADDITIONAL).empty());
  const auto n = section(e.pkt.get(), LDNS_SECTION_ANSWER).size();
  EXPECT_GT(n, 90u); // about 42 bytes each: as many as fit in 4096
  EXPECT_LT(n, 200u);
  EXPECT_GT(e.reply.bytes.size() + 42, 4096u);
}

// --- order --------------------------------------------------------------------------------------

TEST_F(dns_answer_test, answers_are_shuffled_by_the_seed) {
  const auto snap20 = big(20);
  const auto query = make_query("big.service.starling");
  std::set<std::vector<std::string>> orders;
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    auto a = ask(query, snap20, {}, seed);
    ASSERT_TRUE(a.pkt);
    const auto answers = section(a.pkt.get(), LDNS_SECTION_ANSWER);
    ASSERT_EQ(answers.size(), 20u);
    orders.insert(answers);
    // The same seed gives the same bytes.
    EXPECT_EQ(dns_answer(query, snap20, {}, seed).bytes, a.reply.bytes);
  }
  EXPECT_GT(orders.size(), 5u);
  // The first record, which most clients use, is not always the same one.
  std::set<std::string> firsts;
  for (const auto& o : orders)
    firsts.insert(o.front());
  EXPECT_GT(firsts.size(), 1u);
}

TEST(dns_outcome_test, names) {
  EXPECT_STREQ(to_string(dns_outcome::answered), "answered");
  EXPECT_STREQ(to_string(dns_outcome::nodata), "nodata");
  EXPECT_STREQ(to_string(dns_outcome::nxdomain), "nxdomain");
  EXPECT_STREQ(to_string(dns_outcome::refused), "refused");
  EXPECT_STREQ(to_string(dns_outcome::malformed), "malformed");
}

} // namespace
} // namespace starling::gossip::discovery
