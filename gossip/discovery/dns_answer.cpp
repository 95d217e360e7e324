// The DNS answer as a pure function of the query bytes and a routing snapshot (dns_answer.hpp
// says which name gets which answer). ldns parses the query and renders the reply; every
// ldns object is held by a unique_ptr so that no path leaks one.
#include "gossip/discovery/dns_answer.hpp"

#include <algorithm>
#include <cstdbool> // before <ldns/ldns.h>, which else #defines true and false
#include <cstdlib>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>

#include <ldns/ldns.h>

namespace starling::gossip::discovery {

const char* to_string(dns_outcome x) noexcept {
  switch (x) {
  case dns_outcome::answered:
    return "answered";
  case dns_outcome::nodata:
    return "nodata";
  case dns_outcome::nxdomain:
    return "nxdomain";
  case dns_outcome::refused:
    return "refused";
  case dns_outcome::malformed:
    return "malformed";
  }
  return "malformed";
}

namespace {

// --- ldns ownership ------------------------------------------------------------------------

struct pkt_free {
  void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
struct rr_free {
  void operator()(ldns_rr* r) const noexcept { ldns_rr_free(r); }
};
struct rdf_free {
  void operator()(ldns_rdf* r) const noexcept { ldns_rdf_deep_free(r); }
};
struct wire_free {
  void operator()(std::uint8_t* p) const noexcept { std::free(p); } // ldns allocates with malloc
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_free>;
using rr_ptr = std::unique_ptr<ldns_rr, rr_free>;
using rdf_ptr = std::unique_ptr<ldns_rdf, rdf_free>;
using wire_ptr = std::unique_ptr<std::uint8_t, wire_free>;

/// EDNS0 payload sizes we honour: RFC 1035's 512 up to our receive buffer.
constexpr std::size_t min_udp = 512;
constexpr std::size_t max_udp = 4096;

/// SOA timers (seconds). Nobody transfers this zone; they are there because an SOA has them.
constexpr std::uint32_t soa_refresh = 3600;
constexpr std::uint32_t soa_retry = 600;
constexpr std::uint32_t soa_expire = 86400;

/// splitmix64: a tiny seeded UniformRandomBitGenerator for std::shuffle (a 2.5 KB
/// mt19937_64 state per query would cost more than the answer).
class splitmix {
public:
  using result_type = std::uint64_t;
  explicit splitmix(std::uint64_t seed) : state_(seed) {}
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
  result_type operator()() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

private:
  std::uint64_t state_;
};

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view s) {
  std::string out{s};
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

/// The labels of a domain name, left to right, lowercased, without the root label; nullopt
/// when ldns cannot split it.
std::optional<std::vector<std::string>> labels_of(const ldns_rdf* name) {
  if (name == nullptr || ldns_rdf_get_type(name) != LDNS_RDF_TYPE_DNAME)
    return std::nullopt;
  std::vector<std::string> out;
  const auto count = ldns_dname_label_count(name);
  out.reserve(count);
  for (std::uint8_t i = 0; i < count; ++i) {
    rdf_ptr label{ldns_dname_label(name, i)};
    if (!label || ldns_rdf_size(label.get()) < 1)
      return std::nullopt;
    // ldns gives the label as a one-label name: its length, then its bytes.
    const auto* data = ldns_rdf_data(label.get());
    const std::size_t len = data[0];
    if (len + 1 > ldns_rdf_size(label.get()))
      return std::nullopt;
    out.push_back(lowered({reinterpret_cast<const char*>(data + 1), len}));
  }
  return out;
}

/// A node name as one label of a presentation-format name: characters other than letters,
/// digits, '-' and '_' are escaped (\DDD), so a '.' in a node name stays inside its label.
std::string escaped_label(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' ||
        c == '_') {
      out.push_back(c);
    } else {
      out.push_back('\\');
      out.push_back(static_cast<char>('0' + u / 100));
      out.push_back(static_cast<char>('0' + u / 10 % 10));
      out.push_back(static_cast<char>('0' + u % 10));
    }
  }
  return out;
}

/// An address record's data: A for an IPv4 literal, AAAA for an IPv6 one; type 0 and null
/// for anything else.
std::pair<ldns_rr_type, rdf_ptr> address_rdf(const std::string& address) {
  if (rdf_ptr v4{ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, address.c_str())})
    return {LDNS_RR_TYPE_A, std::move(v4)};
  if (rdf_ptr v6{ldns_rdf_new_frm_str(LDNS_RDF_TYPE_AAAA, address.c_str())})
    return {LDNS_RR_TYPE_AAAA, std::move(v6)};
  return {static_cast<ldns_rr_type>(0), nullptr};
}

/// A new class-IN record owned by a copy of `owner`, without data yet; null if ldns fails.
rr_ptr new_rr(const ldns_rdf* owner, ldns_rr_type type, std::uint32_t ttl) {
  rr_ptr rr{ldns_rr_new()};
  if (!rr)
    return nullptr;
  rdf_ptr name{ldns_rdf_clone(owner)};
  if (!name)
    return nullptr;
  ldns_rr_set_owner(rr.get(), name.release());
  ldns_rr_set_type(rr.get(), type);
  ldns_rr_set_class(rr.get(), LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr.get(), ttl);
  return rr;
}

/// Appends `field` to the data of `rr` (which then owns it); false (and nothing leaks) when
/// `field` is null or ldns fails.
bool push(ldns_rr* rr, rdf_ptr field) {
  if (!field || !ldns_rr_push_rdf(rr, field.get()))
    return false;
  field.release();
  return true;
}

/// The reply under construction. Records are kept outside any packet so that render_reply() can
/// try the reply with fewer of them until it fits.
struct draft {
  std::uint16_t id = 0;
  /// The query's opcode, 0 to 15, echoed. Kept as a number: ldns_pkt_opcode cannot hold the
  /// unassigned ones (a C++ enum with enumerators 0 to 5), so render_reply() sets it on the bytes.
  std::uint8_t opcode = LDNS_PACKET_QUERY;
  bool rd = false;
  /// Authoritative: set for every answer about a name in our domain.
  bool aa = false;
  std::uint8_t rcode = LDNS_RCODE_NOERROR;
  /// EDNS extended rcode (the high 8 bits of a 12-bit rcode: 1 = BADVERS).
  std::uint8_t ext_rcode = 0;
  /// The query had an OPT record: so does the reply (RFC 6891).
  bool edns = false;
  rr_ptr question;
  std::vector<rr_ptr> answer;
  std::vector<rr_ptr> authority;
  std::vector<rr_ptr> additional;
};

/// Wire bytes of `d` with the first `n_answer`, `n_authority` and `n_additional` records of
/// each section; empty if ldns fails (out of memory).
std::vector<std::uint8_t> render_reply(const draft& d, std::size_t n_answer,
                                       std::size_t n_authority, std::size_t n_additional, bool tc) {
  pkt_ptr pkt{ldns_pkt_new()};
  if (!pkt)
    return {};
  auto* p = pkt.get();
  ldns_pkt_set_id(p, d.id);
  ldns_pkt_set_qr(p, true);
  ldns_pkt_set_opcode(p, LDNS_PACKET_QUERY); // d.opcode is set on the bytes below
  ldns_pkt_set_aa(p, d.aa);
  ldns_pkt_set_tc(p, tc);
  ldns_pkt_set_rd(p, d.rd);
  ldns_pkt_set_ra(p, false); // not a recursive resolver
  ldns_pkt_set_rcode(p, d.rcode);
  if (d.edns) {
    ldns_pkt_set_edns_udp_size(p, static_cast<std::uint16_t>(max_udp));
    ldns_pkt_set_edns_extended_rcode(p, d.ext_rcode);
    ldns_pkt_set_edns_version(p, 0);
  }
  const auto add = [p](ldns_pkt_section section, const ldns_rr* rr) {
    rr_ptr copy{ldns_rr_clone(rr)};
    if (!copy || !ldns_pkt_push_rr(p, section, copy.get()))
      return false;
    copy.release();
    return true;
  };
  if (d.question && !add(LDNS_SECTION_QUESTION, d.question.get()))
    return {};
  for (std::size_t i = 0; i < n_answer; ++i)
    if (!add(LDNS_SECTION_ANSWER, d.answer[i].get()))
      return {};
  for (std::size_t i = 0; i < n_authority; ++i)
    if (!add(LDNS_SECTION_AUTHORITY, d.authority[i].get()))
      return {};
  for (std::size_t i = 0; i < n_additional; ++i)
    if (!add(LDNS_SECTION_ADDITIONAL, d.additional[i].get()))
      return {};
  std::uint8_t* raw = nullptr;
  std::size_t size = 0;
  const auto status = ldns_pkt2wire(&raw, p, &size);
  wire_ptr wire{raw};
  if (status != LDNS_STATUS_OK || raw == nullptr || size < LDNS_HEADER_SIZE)
    return {};
  LDNS_OPCODE_SET(raw, d.opcode);
  return {raw, raw + size};
}

/// The largest n in [lo, hi] for which fits(n) holds, given that fits(lo) does and that fits
/// is monotonic (fewer records never make a reply longer).
template <class Fits> std::size_t largest_fitting(std::size_t lo, std::size_t hi, Fits fits) {
  while (lo < hi) {
    const auto mid = lo + (hi - lo + 1) / 2;
    if (fits(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/// Renders `d` in at most `limit` bytes. Additional records go first (no TC: RFC 2181 §9
/// sets TC only when the answer itself is cut); then answers are cut, and TC set. The
/// answers are already shuffled, so whichever prefix fits is a fair sample.
dns_reply finish(const draft& d, std::size_t limit, dns_outcome outcome) {
  const auto n_an = d.answer.size(), n_ns = d.authority.size(), n_ar = d.additional.size();
  const auto fits = [limit](const std::vector<std::uint8_t>& b) {
    return !b.empty() && b.size() <= limit;
  };
  dns_reply out;
  out.outcome = outcome;
  out.bytes = render_reply(d, n_an, n_ns, n_ar, false);
  if (out.bytes.empty() || out.bytes.size() <= limit)
    return out;
  out.truncated = true;
  if (n_ar > 0 && fits(render_reply(d, n_an, n_ns, 0, false))) {
    const auto m = largest_fitting(
        0, n_ar - 1, [&](std::size_t k) { return fits(render_reply(d, n_an, n_ns, k, false)); });
    out.bytes = render_reply(d, n_an, n_ns, m, false);
    return out;
  }
  // The answer itself does not fit. A client that sees TC retries over TCP, which we do not
  // serve (UDP only): it keeps what fitted, or fails, as with any UDP-only server.
  if (fits(render_reply(d, 0, n_ns, 0, true))) {
    const auto k = largest_fitting(
        0, n_an, [&](std::size_t n) { return fits(render_reply(d, n, n_ns, 0, true)); });
    out.bytes = render_reply(d, k, n_ns, 0, true);
    return out;
  }
  out.bytes = render_reply(d, 0, 0, 0, true); // header, question and OPT: always under 512
  return out;
}

/// The routable instances of `svc` that carry `tag` (every routable one without a tag).
std::vector<const instance_view*> matching(const service_view& svc,
                                           const std::optional<std::string>& tag) {
  std::vector<const instance_view*> out;
  for (const auto* i : svc.routable())
    if (!tag || std::any_of(i->tags.begin(), i->tags.end(),
                            [&](const std::string& t) { return iequals(t, *tag); }))
      out.push_back(i);
  return out;
}

/// Makes the answer for one question about a name in our zone.
class responder {
public:
  responder(const routing_snapshot& snap, const dns_options& opts, const ldns_rdf* qname,
            const ldns_rdf* apex, std::string_view apex_text, std::uint64_t seed, draft& d)
      : snap_(snap), opts_(opts), qname_(qname), apex_(apex), apex_text_(apex_text), rng_(seed),
        d_(d) {}

  /// `prefix`: the labels of the name left of the domain.
  dns_outcome answer(const std::vector<std::string>& prefix, ldns_rr_type qtype) {
    const auto n = prefix.size();
    if (n == 0) { // the apex
      if (qtype == LDNS_RR_TYPE_SOA)
        if (auto soa = make_soa()) {
          d_.answer.push_back(std::move(soa));
          return dns_outcome::answered;
        }
      return nodata();
    }
    if (n == 1 && (prefix[0] == "service" || prefix[0] == "node"))
      return nodata(); // empty non-terminals: they exist, with no record
    if (n == 2 && prefix[1] == "node")
      return node(prefix[0], qtype);
    if ((n == 2 || n == 3) && prefix[n - 1] == "service") {
      const auto* svc = snap_.find(prefix[n - 2]);
      if (svc == nullptr)
        return nxdomain();
      std::optional<std::string> tag;
      if (n == 3) {
        tag = prefix[0];
        const bool known =
            std::any_of(svc->instances.begin(), svc->instances.end(), [&](const instance_view& i) {
              return std::any_of(i.tags.begin(), i.tags.end(),
                                 [&](const std::string& t) { return iequals(t, *tag); });
            });
        if (!known)
          return nxdomain();
      }
      return service(*svc, tag, qtype);
    }
    return nxdomain();
  }

private:
  dns_outcome service(const service_view& svc, const std::optional<std::string>& tag,
                      ldns_rr_type qtype) {
    auto targets = matching(svc, tag);
    if (targets.empty())
      return nodata();
    if (qtype == LDNS_RR_TYPE_SRV)
      return srv(std::move(targets));
    if (qtype != LDNS_RR_TYPE_A && qtype != LDNS_RR_TYPE_AAAA)
      return nodata();
    if (opts_.proxy_address) {
      addresses({*opts_.proxy_address}, qtype);
    } else {
      std::vector<std::string> addrs;
      for (const auto* i : targets)
        addrs.push_back(i->address);
      addresses(std::move(addrs), qtype);
    }
    return d_.answer.empty() ? nodata() : dns_outcome::answered;
  }

  dns_outcome node(const std::string& name, ldns_rr_type qtype) {
    std::vector<std::string> addrs;
    for (const auto& svc : snap_.services)
      for (const auto& i : svc.instances)
        if (iequals(i.node, name))
          addrs.push_back(i.address);
    if (addrs.empty())
      return nxdomain();
    if (qtype == LDNS_RR_TYPE_A || qtype == LDNS_RR_TYPE_AAAA)
      addresses(std::move(addrs), qtype);
    return d_.answer.empty() ? nodata() : dns_outcome::answered;
  }

  /// Answers with the distinct addresses of type `qtype` among `addrs`, shuffled.
  void addresses(std::vector<std::string> addrs, ldns_rr_type qtype) {
    std::sort(addrs.begin(), addrs.end());
    addrs.erase(std::unique(addrs.begin(), addrs.end()), addrs.end());
    std::shuffle(addrs.begin(), addrs.end(), rng_);
    for (const auto& a : addrs) {
      auto [type, data] = address_rdf(a);
      if (type != qtype)
        continue;
      auto rr = new_rr(qname_, type, opts_.ttl);
      if (rr && push(rr.get(), std::move(data)))
        d_.answer.push_back(std::move(rr));
    }
  }

  /// One SRV record per instance, shuffled; the targets' addresses in additional.
  dns_outcome srv(std::vector<const instance_view*> targets) {
    std::shuffle(targets.begin(), targets.end(), rng_);
    std::vector<std::pair<std::string, std::string>> glued; // (target, address) added
    for (const auto* i : targets) {
      const auto target_text = escaped_label(i->node) + ".node." + std::string{apex_text_};
      rdf_ptr target{ldns_dname_new_frm_str(target_text.c_str())};
      if (!target)
        continue; // a node name too long for a label: no name to give it
      auto rr = new_rr(qname_, LDNS_RR_TYPE_SRV, opts_.ttl);
      if (!rr)
        continue;
      const auto weight = static_cast<std::uint16_t>(std::min<std::uint32_t>(i->weight, 65535));
      rdf_ptr target_copy{ldns_rdf_clone(target.get())};
      if (!push(rr.get(), rdf_ptr{ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, 1)}) ||
          !push(rr.get(), rdf_ptr{ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, weight)}) ||
          !push(rr.get(), rdf_ptr{ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, i->port)}) ||
          !push(rr.get(), std::move(target_copy)))
        continue;
      d_.answer.push_back(std::move(rr));
      std::pair<std::string, std::string> key{lowered(i->node), i->address};
      if (std::find(glued.begin(), glued.end(), key) != glued.end())
        continue;
      glued.push_back(std::move(key));
      auto [type, data] = address_rdf(i->address);
      if (!data)
        continue;
      auto glue = new_rr(target.get(), type, opts_.ttl);
      if (glue && push(glue.get(), std::move(data)))
        d_.additional.push_back(std::move(glue));
    }
    return d_.answer.empty() ? nodata() : dns_outcome::answered;
  }

  dns_outcome nodata() {
    add_soa_authority();
    return dns_outcome::nodata;
  }

  dns_outcome nxdomain() {
    d_.rcode = LDNS_RCODE_NXDOMAIN;
    add_soa_authority();
    return dns_outcome::nxdomain;
  }

  void add_soa_authority() {
    if (auto soa = make_soa())
      d_.authority.push_back(std::move(soa));
  }

  /// The zone's SOA. Its serial is the snapshot's generation (mod 2^32, RFC 1982 arithmetic),
  /// so it moves with the routing table; its minimum, the negative-caching TTL, is the ttl.
  rr_ptr make_soa() {
    auto rr = new_rr(apex_, LDNS_RR_TYPE_SOA, opts_.ttl);
    if (!rr)
      return nullptr;
    const auto mname = "ns." + std::string{apex_text_};
    const auto rname = "hostmaster." + std::string{apex_text_};
    const auto serial = static_cast<std::uint32_t>(snap_.generation);
    if (!push(rr.get(), rdf_ptr{ldns_dname_new_frm_str(mname.c_str())}) ||
        !push(rr.get(), rdf_ptr{ldns_dname_new_frm_str(rname.c_str())}) ||
        !push(rr.get(), rdf_ptr{ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, serial)}) ||
        !push(rr.get(), rdf_ptr{ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, soa_refresh)}) ||
        !push(rr.get(), rdf_ptr{ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, soa_retry)}) ||
        !push(rr.get(), rdf_ptr{ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, soa_expire)}) ||
        !push(rr.get(), rdf_ptr{ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, opts_.ttl)}))
      return nullptr;
    return rr;
  }

  const routing_snapshot& snap_;
  const dns_options& opts_;
  /// The name as asked (its case kept: clients using 0x20 randomization check it).
  const ldns_rdf* qname_;
  const ldns_rdf* apex_;
  /// The apex in presentation form with its trailing dot ("starling.").
  std::string_view apex_text_;
  splitmix rng_;
  draft& d_;
};

dns_reply no_reply() { return {{}, dns_outcome::malformed, false}; }

} // namespace

dns_reply dns_answer(std::span<const std::uint8_t> query, const routing_snapshot& snapshot,
                     const dns_options& options, std::uint64_t seed) {
  if (query.size() < LDNS_HEADER_SIZE)
    return no_reply(); // not even an id to answer to
  const auto* wire = query.data();
  if (LDNS_QR_WIRE(wire))
    return no_reply(); // a response: answering it could start a loop between two servers

  draft d;
  d.id = LDNS_ID_WIRE(wire);
  d.opcode = static_cast<std::uint8_t>(LDNS_OPCODE_WIRE(wire));
  d.rd = LDNS_RD_WIRE(wire) != 0;
  if (d.opcode != LDNS_PACKET_QUERY) {
    d.rcode = LDNS_RCODE_NOTIMPL;
    return finish(d, min_udp, dns_outcome::refused);
  }
  d.rcode = LDNS_RCODE_FORMERR;
  ldns_pkt* parsed = nullptr;
  if (ldns_wire2pkt(&parsed, wire, query.size()) != LDNS_STATUS_OK || parsed == nullptr)
    return finish(d, min_udp, dns_outcome::malformed);
  const pkt_ptr q{parsed};
  const auto* questions = ldns_pkt_question(q.get());
  if (ldns_pkt_qdcount(q.get()) != 1 || questions == nullptr ||
      ldns_rr_list_rr_count(questions) != 1)
    return finish(d, min_udp, dns_outcome::malformed);

  d.edns = ldns_pkt_edns(q.get());
  const auto limit =
      d.edns ? std::clamp<std::size_t>(ldns_pkt_edns_udp_size(q.get()), min_udp, max_udp)
             : std::clamp(options.max_udp, min_udp, max_udp);
  const auto* question = ldns_rr_list_rr(questions, 0);
  d.question.reset(ldns_rr_clone(question));
  d.rcode = LDNS_RCODE_REFUSED;
  if (!d.question)
    return finish(d, limit, dns_outcome::refused);
  if (d.edns && ldns_pkt_edns_version(q.get()) != 0) {
    d.rcode = LDNS_RCODE_NOERROR;
    d.ext_rcode = 1; // BADVERS (16): we speak EDNS version 0 only
    return finish(d, limit, dns_outcome::refused);
  }
  if (ldns_rr_get_class(question) != LDNS_RR_CLASS_IN)
    return finish(d, limit, dns_outcome::refused);

  // Our zone, parsed by ldns as the query's name was, so both split into labels alike.
  std::string apex_text{options.domain};
  if (!apex_text.empty() && apex_text.back() == '.')
    apex_text.pop_back();
  apex_text += '.';
  const rdf_ptr apex{ldns_dname_new_frm_str(apex_text.c_str())};
  const auto zone = labels_of(apex.get());
  const auto* qname = ldns_rr_owner(question);
  const auto name = labels_of(qname);
  if (!zone || !name || name->size() < zone->size() ||
      !std::equal(zone->begin(), zone->end(), name->end() - static_cast<long>(zone->size())))
    return finish(d, limit, dns_outcome::refused); // not ours: we do not recurse

  d.aa = true;
  d.rcode = LDNS_RCODE_NOERROR;
  const std::vector<std::string> prefix{name->begin(),
                                        name->end() - static_cast<long>(zone->size())};
  responder r{snapshot, options, qname, apex.get(), apex_text, seed, d};
  const auto outcome = r.answer(prefix, ldns_rr_get_type(question));
  return finish(d, limit, outcome);
}

} // namespace starling::gossip::discovery
