// libFuzzer target: DNS queries (untrusted UDP input on the DNS port) → discovery::dns_answer
// over a fixed small snapshot, with the default options and with a proxy address, a TTL and
// a raised max_udp. Checks that every reply fits the limit (4096 bytes with EDNS0, else 512
// or max_udp), parses as DNS, is a response and carries the query's id.
#include <cstdbool> // before <ldns/ldns.h>, which else #defines true and false
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include <ldns/ldns.h>

#include "gossip/discovery/dns_answer.hpp"

namespace {

using namespace starling::gossip;

instance_view instance(std::string node, std::string service, std::string address, int i) {
  instance_view v;
  v.node = std::move(node);
  v.service = std::move(service);
  v.id = "i" + std::to_string(i);
  v.address = std::move(address);
  v.port = static_cast<std::uint16_t>(8000 + i);
  v.tags = i % 3 ? std::vector<std::string>{"v1"} : std::vector<std::string>{"canary", "v2"};
  v.weight = static_cast<std::uint32_t>(1 + i * 37 % 1000);
  v.health = i % 7 == 6 ? health_status::failing : health_status::passing;
  v.node_alive = i % 11 != 10;
  return v;
}

/// db: nothing routable; big: 60 instances (truncation); web: four, IPv4 and IPv6.
const routing_snapshot& snapshot() {
  static const routing_snapshot snap = [] {
    routing_snapshot s;
    s.generation = 9;
    service_view big{"big", {}, {}};
    for (int i = 0; i < 60; ++i)
      big.instances.push_back(
          instance("node-" + std::to_string(i), "big",
                   i % 4 ? "10.2.0." + std::to_string(i) : "fd00::" + std::to_string(i), i));
    service_view db{"db", {}, {}};
    db.instances.push_back(instance("n1", "db", "10.0.0.1", 6));
    service_view web{"web", {}, {}};
    for (int i = 0; i < 4; ++i)
      web.instances.push_back(instance("n" + std::to_string(i), "web",
                                       i == 3 ? "fd00::3" : "10.0.0." + std::to_string(i), i));
    s.services = {big, db, web};
    return s;
  }();
  return snap;
}

void check(std::span<const std::uint8_t> query, const discovery::dns_options& opts,
           std::size_t plain_limit) {
  const auto reply = discovery::dns_answer(query, snapshot(), opts, query.size());
  if (reply.bytes.empty())
    return;
  if (reply.bytes.size() > 4096 || query.size() < 12)
    __builtin_trap();
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, reply.bytes.data(), reply.bytes.size()) != LDNS_STATUS_OK)
    __builtin_trap();
  const bool ok = ldns_pkt_qr(raw) &&
                  ldns_pkt_id(raw) == static_cast<std::uint16_t>(query[0] << 8 | query[1]) &&
                  (ldns_pkt_edns(raw) || reply.bytes.size() <= plain_limit);
  ldns_pkt_free(raw);
  if (!ok)
    __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> query{data, size};
  check(query, {}, 512);
  discovery::dns_options opts;
  opts.ttl = 30;
  opts.proxy_address = "127.0.0.1";
  opts.max_udp = 1024;
  opts.domain = "Starling.";
  check(query, opts, 1024);
  return 0;
}
