// Tests of the DNS responder on 127.0.0.1 with port 0, with a plain UDP client. Nothing
// sleeps to hope: every receive waits on poll() with a 5 s deadline, every counter is
// polled with one.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdbool> // before <ldns/ldns.h>, which else #defines true and false
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gossip/discovery/dns_server.hpp"
#include "gossip/errc.hpp"

namespace starling::gossip::discovery {
namespace {

using namespace std::chrono_literals;
using bytes = std::vector<std::uint8_t>;

constexpr auto bound = 5s;

/// Polls `pred` until it holds or `limit` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::steady_clock::duration limit = bound) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct pkt_free {
  void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_free>;

bytes make_query(const std::string& name, ldns_rr_type type, std::uint16_t id) {
  ldns_pkt* raw = nullptr;
  if (ldns_pkt_query_new_frm_str(&raw, name.c_str(), type, LDNS_RR_CLASS_IN, LDNS_RD) !=
      LDNS_STATUS_OK) {
    ADD_FAILURE() << "cannot build a query for " << name;
    return {};
  }
  pkt_ptr p{raw};
  ldns_pkt_set_id(p.get(), id);
  std::uint8_t* wire = nullptr;
  std::size_t n = 0;
  if (ldns_pkt2wire(&wire, p.get(), &n) != LDNS_STATUS_OK) {
    ADD_FAILURE() << "ldns_pkt2wire failed";
    std::free(wire);
    return {};
  }
  bytes out{wire, wire + n};
  std::free(wire);
  return out;
}

pkt_ptr parse(const bytes& b) {
  ldns_pkt* raw = nullptr;
  if (b.empty() || ldns_wire2pkt(&raw, b.data(), b.size()) != LDNS_STATUS_OK)
    return nullptr;
  return pkt_ptr{raw};
}

/// The answer section's addresses, sorted ("10.0.0.1").
std::vector<std::string> addresses(const ldns_pkt* p) {
  std::vector<std::string> out;
  const auto* list = ldns_pkt_answer(p);
  for (std::size_t i = 0; i < ldns_rr_list_rr_count(list); ++i) {
    char* s = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(list, i), 0));
    out.emplace_back(s ? s : "");
    std::free(s);
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// A UDP client on 127.0.0.1 talking to one server port.
class udp_client {
public:
  explicit udp_client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_DGRAM, 0)) {
    server_.sin_family = AF_INET;
    server_.sin_port = htons(port);
    server_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  ~udp_client() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  udp_client(const udp_client&) = delete;
  udp_client& operator=(const udp_client&) = delete;

  bool send(const bytes& b) {
    return ::sendto(fd_, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&server_),
                    sizeof server_) == static_cast<ssize_t>(b.size());
  }

  /// The next datagram, or nullopt when none arrives within `limit`.
  std::optional<bytes> receive(std::chrono::milliseconds limit = 5000ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1)
      return std::nullopt;
    std::array<std::uint8_t, 65536> buf{};
    const auto n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0)
      return std::nullopt;
    return bytes{buf.begin(), buf.begin() + n};
  }

  /// Sends `query` and parses the reply with its id; null when none came.
  pkt_ptr ask(const bytes& query) {
    if (!send(query))
      return nullptr;
    // Skip any late reply to an earlier query (a different id).
    const std::uint16_t id = static_cast<std::uint16_t>(query[0] << 8 | query[1]);
    while (auto reply = receive()) {
      auto p = parse(*reply);
      if (p && ldns_pkt_id(p.get()) == id)
        return p;
    }
    return nullptr;
  }

  pkt_ptr ask(const std::string& name, ldns_rr_type type = LDNS_RR_TYPE_A) {
    return ask(make_query(name, type, next_id_++));
  }

private:
  int fd_;
  sockaddr_in server_{};
  std::uint16_t next_id_ = 1;
};

instance_view instance(std::string node, std::string address, std::uint16_t port) {
  instance_view i;
  i.node = std::move(node);
  i.service = "web";
  i.id = "i";
  i.address = std::move(address);
  i.port = port;
  i.node_alive = true;
  return i;
}

snapshot_ptr web_at(std::vector<std::string> addrs, std::uint64_t generation = 1) {
  auto s = std::make_shared<routing_snapshot>();
  s->generation = generation;
  service_view web{"web", {}, {}};
  int n = 0;
  for (auto& a : addrs)
    web.instances.push_back(instance("n" + std::to_string(++n), std::move(a), 8080));
  s->services.push_back(std::move(web));
  return s;
}

int code_of(const caf::error& err) {
  return err && err.category() == errc_category ? err.code() : 0;
}

constexpr int code(errc x) { return static_cast<int>(x); }

class dns_server_test : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(server.start("127.0.0.1", 0));
    ASSERT_NE(server.port(), 0);
  }

  dns_server server{42};
};

TEST_F(dns_server_test, answers_on_a_picked_port) {
  EXPECT_EQ(server.local_endpoint(), "127.0.0.1:" + std::to_string(server.port()));
  server.set_snapshot(web_at({"10.0.0.1", "10.0.0.2"}));
  udp_client client{server.port()};
  auto p = client.ask("web.service.starling");
  ASSERT_TRUE(p);
  EXPECT_EQ(ldns_pkt_get_rcode(p.get()), LDNS_RCODE_NOERROR);
  EXPECT_TRUE(ldns_pkt_aa(p.get()));
  EXPECT_EQ(addresses(p.get()), (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  auto missing = client.ask("db.service.starling");
  ASSERT_TRUE(missing);
  EXPECT_EQ(ldns_pkt_get_rcode(missing.get()), LDNS_RCODE_NXDOMAIN);
  auto outside = client.ask("example.com");
  ASSERT_TRUE(outside);
  EXPECT_EQ(ldns_pkt_get_rcode(outside.get()), LDNS_RCODE_REFUSED);
  const auto s = server.stats();
  EXPECT_EQ(s.queries, 3u);
  EXPECT_EQ(s.answered, 1u);
  EXPECT_EQ(s.nxdomain, 1u);
  EXPECT_EQ(s.refused, 1u);
  EXPECT_EQ(s.malformed, 0u);
  EXPECT_EQ(s.send_errors, 0u);
}

TEST_F(dns_server_test, a_new_snapshot_shows_in_the_next_answer) {
  udp_client client{server.port()};
  auto before = client.ask("web.service.starling");
  ASSERT_TRUE(before);
  EXPECT_EQ(ldns_pkt_get_rcode(before.get()), LDNS_RCODE_NXDOMAIN); // no snapshot yet
  server.set_snapshot(web_at({"10.0.0.1"}));
  auto first = client.ask("web.service.starling");
  ASSERT_TRUE(first);
  EXPECT_EQ(addresses(first.get()), std::vector<std::string>{"10.0.0.1"});
  server.set_snapshot(web_at({"10.0.0.9"}, 2));
  auto second = client.ask("web.service.starling");
  ASSERT_TRUE(second);
  EXPECT_EQ(addresses(second.get()), std::vector<std::string>{"10.0.0.9"});
  server.set_snapshot(nullptr);
  auto gone = client.ask("web.service.starling");
  ASSERT_TRUE(gone);
  EXPECT_EQ(ldns_pkt_get_rcode(gone.get()), LDNS_RCODE_NXDOMAIN);
}

TEST_F(dns_server_test, garbage_is_counted_and_the_server_keeps_answering) {
  server.set_snapshot(web_at({"10.0.0.1"}));
  udp_client client{server.port()};
  ASSERT_TRUE(client.send(bytes{1, 2, 3})); // too short: no reply
  ASSERT_TRUE(eventually([&] { return server.stats().malformed == 1; }));
  ASSERT_TRUE(client.send(bytes(5000, 0))); // over 4096 bytes: cut, no reply
  ASSERT_TRUE(eventually([&] { return server.stats().malformed == 2; }));
  // A header that promises a question: FORMERR with its id.
  ASSERT_TRUE(client.send(bytes{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}));
  auto formerr = client.receive();
  ASSERT_TRUE(formerr);
  auto p = parse(*formerr);
  ASSERT_TRUE(p);
  EXPECT_EQ(ldns_pkt_id(p.get()), 0x1234);
  EXPECT_EQ(ldns_pkt_get_rcode(p.get()), LDNS_RCODE_FORMERR);
  EXPECT_EQ(server.stats().malformed, 3u);
  // Random datagrams, then a real query still answered.
  std::uint64_t x = 7;
  for (int i = 0; i < 200; ++i) {
    bytes b(1 + i % 300);
    for (auto& c : b)
      c = static_cast<std::uint8_t>((x = x * 6364136223846793005ull + 1442695040888963407ull) >>
                                    56);
    ASSERT_TRUE(client.send(b));
  }
  ASSERT_TRUE(eventually([&] { return server.stats().queries == 203; }));
  auto ok = client.ask("web.service.starling");
  ASSERT_TRUE(ok);
  EXPECT_EQ(addresses(ok.get()), std::vector<std::string>{"10.0.0.1"});
  EXPECT_EQ(server.stats().queries, 204u);
  EXPECT_EQ(server.stats().answered, 1u);
}

TEST_F(dns_server_test, truncated_answers_are_counted) {
  std::vector<std::string> addrs;
  for (int i = 0; i < 200; ++i)
    addrs.push_back("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256));
  server.set_snapshot(web_at(addrs));
  udp_client client{server.port()};
  auto p = client.ask("web.service.starling");
  ASSERT_TRUE(p);
  EXPECT_TRUE(ldns_pkt_tc(p.get()));
  EXPECT_EQ(server.stats().truncated, 1u);
  EXPECT_EQ(server.stats().answered, 1u);
}

TEST_F(dns_server_test, options_are_checked_and_applied) {
  server.set_snapshot(web_at({"10.0.0.1"}));
  dns_options bad;
  bad.domain = "";
  EXPECT_EQ(code_of(server.set_options(bad)), code(errc::invalid_field));
  bad.domain = "a..b";
  EXPECT_EQ(code_of(server.set_options(bad)), code(errc::invalid_field));
  bad.domain = "sp ace";
  EXPECT_EQ(code_of(server.set_options(bad)), code(errc::invalid_field));
  bad.domain = std::string(64, 'x');
  EXPECT_EQ(code_of(server.set_options(bad)), code(errc::invalid_field));
  bad = {};
  bad.proxy_address = "localhost";
  const auto err = server.set_options(bad);
  EXPECT_EQ(code_of(err), code(errc::invalid_field));
  EXPECT_NE(render(err).find("proxy_address"), std::string::npos) << render(err);
  bad = {};
  bad.max_udp = 100;
  EXPECT_NE(render(server.set_options(bad)).find("max_udp"), std::string::npos);
  bad.max_udp = 65535;
  EXPECT_EQ(code_of(server.set_options(bad)), code(errc::invalid_field));

  udp_client client{server.port()};
  auto unchanged = client.ask("web.service.starling"); // refused options changed nothing
  ASSERT_TRUE(unchanged);
  EXPECT_EQ(addresses(unchanged.get()), std::vector<std::string>{"10.0.0.1"});

  dns_options good;
  good.domain = "mesh.example.";
  good.proxy_address = "127.0.0.1";
  ASSERT_FALSE(server.set_options(good));
  auto proxied = client.ask("web.service.mesh.example");
  ASSERT_TRUE(proxied);
  EXPECT_EQ(addresses(proxied.get()), std::vector<std::string>{"127.0.0.1"});
  auto old = client.ask("web.service.starling");
  ASSERT_TRUE(old);
  EXPECT_EQ(ldns_pkt_get_rcode(old.get()), LDNS_RCODE_REFUSED);
}

TEST_F(dns_server_test, a_taken_port_or_a_second_start_fails_with_a_clear_error) {
  dns_server other{1};
  const auto err = other.start("127.0.0.1", server.port());
  EXPECT_EQ(code_of(err), code(errc::io_failure));
  EXPECT_NE(render(err).find("cannot bind DNS UDP 127.0.0.1:" + std::to_string(server.port())),
            std::string::npos)
      << render(err);
  EXPECT_EQ(other.local_endpoint(), "");
  EXPECT_EQ(code_of(server.start("127.0.0.1", 0)), code(errc::invalid_field));
  dns_server nowhere{1};
  EXPECT_EQ(code_of(nowhere.start("192.0.2.1", 0)), code(errc::io_failure)); // not ours
}

TEST_F(dns_server_test, stop_is_idempotent_and_final) {
  server.stop();
  server.stop();
  EXPECT_EQ(code_of(server.start("127.0.0.1", 0)), code(errc::invalid_field));
  dns_server never{1};
  never.stop(); // before start: fine too
  udp_client client{server.port()};
  ASSERT_TRUE(client.send(make_query("web.service.starling", LDNS_RR_TYPE_A, 1)));
  EXPECT_FALSE(client.receive(200ms)); // closed: nothing answers (a bounded wait, no sleep)
}

/// Snapshots and options swapped from other threads while queries are answered: every
/// answer comes from one whole snapshot (run under TSan in CI).
TEST_F(dns_server_test, swaps_from_other_threads_race_with_nothing) {
  const auto a = web_at({"10.0.0.1"}), b = web_at({"10.0.0.2", "10.0.0.3"}, 2);
  server.set_snapshot(a);
  std::atomic<bool> done{false};
  std::thread swapper{[&] {
    for (std::uint64_t i = 0; !done.load(); ++i) {
      server.set_snapshot(i % 2 ? a : b);
      dns_options o;
      o.ttl = static_cast<std::uint32_t>(i % 60);
      (void)server.set_options(o);
      (void)server.stats();
      std::this_thread::yield();
    }
  }};
  udp_client client{server.port()};
  std::set<std::vector<std::string>> seen;
  for (int i = 0; i < 100; ++i) {
    auto p = client.ask("web.service.starling");
    ASSERT_TRUE(p);
    seen.insert(addresses(p.get()));
  }
  done = true;
  swapper.join();
  for (const auto& s : seen)
    EXPECT_TRUE(s == std::vector<std::string>{"10.0.0.1"} ||
                s == (std::vector<std::string>{"10.0.0.2", "10.0.0.3"}));
  EXPECT_EQ(server.stats().answered, 100u);
}

/// Runs `command`; its standard output, or nullopt when it cannot run or exits non-zero.
std::optional<std::string> run(const std::string& command) {
  FILE* f = ::popen(command.c_str(), "r");
  if (f == nullptr)
    return std::nullopt;
  std::string out;
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), f) != nullptr)
    out += buf.data();
  const int status = ::pclose(f);
  if (status != 0)
    return std::nullopt;
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    if (end > start)
      out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(dns_server_test, dig_reads_our_answers) {
  if (!std::filesystem::exists("/usr/bin/dig"))
    GTEST_SKIP() << "/usr/bin/dig not installed (Debian: dnsutils)";
  server.set_snapshot(web_at({"10.0.0.1", "10.0.0.2"}));
  const auto dig = "/usr/bin/dig @127.0.0.1 -p " + std::to_string(server.port()) + " ";
  const auto a = run(dig + "web.service.starling A +short +tries=1 +time=3");
  ASSERT_TRUE(a);
  EXPECT_EQ(lines(*a), (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  const auto srv = run(dig + "web.service.starling SRV +short +tries=1 +time=3");
  ASSERT_TRUE(srv);
  EXPECT_EQ(lines(*srv), (std::vector<std::string>{"1 100 8080 n1.node.starling.",
                                                   "1 100 8080 n2.node.starling."}));
  const auto nx = run(dig + "nope.service.starling A +tries=1 +time=3");
  ASSERT_TRUE(nx);
  EXPECT_NE(nx->find("status: NXDOMAIN"), std::string::npos) << *nx;
  EXPECT_NE(nx->find("flags: qr aa rd;"), std::string::npos) << *nx;
  EXPECT_GE(server.stats().queries, 3u);
}

} // namespace
} // namespace starling::gossip::discovery
