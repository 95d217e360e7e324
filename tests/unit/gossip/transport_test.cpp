// Tests of the Asio gossip transport on 127.0.0.1 with port 0. Nothing sleeps to hope:
// every wait is a condition (or a counter) polled with a 5 s bound.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/read.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/write.hpp>
#include <caf/make_message.hpp>
#include <gtest/gtest.h>

#include "gossip/errc.hpp"
#include "gossip/transport.hpp"
#include "identity/pki.hpp"
#include "identity/tls.hpp"
#include "tests/support/context_security.hpp"
#include "tests/support/test_pki.hpp"

namespace starling::gossip {
namespace {

using namespace std::chrono_literals;

constexpr auto bound = 5s;

/// Polls `pred` until it holds or `bound` passes.
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

int code_of(const caf::error& err) {
  return err && err.category() == errc_category ? err.code() : 0;
}

constexpr int code(errc x) { return static_cast<int>(x); }

/// Collects what a transport's callbacks report; waits on a condition variable.
struct recorder {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<packet, std::string>> packets;
  std::vector<push_pull> push_pulls;
  std::vector<push_pull_responder> replies;
  std::vector<caf::error> drops;
  /// When set, on_push_pull answers at once with this (from the I/O thread).
  std::function<void(push_pull, push_pull_responder)> responder;

  transport_callbacks callbacks() {
    transport_callbacks cbs;
    cbs.on_packet = [this](packet msg, std::string from) {
      std::lock_guard guard{mutex};
      packets.emplace_back(std::move(msg), std::move(from));
      cv.notify_all();
    };
    (void)cbs.requests.add(request_types::push_pull,
                           push_pull_spec([this](push_pull remote, push_pull_responder reply) {
                             std::unique_lock guard{mutex};
                             push_pulls.push_back(remote);
                             if (responder) {
                               auto r = responder;
                               guard.unlock();
                               r(std::move(remote), std::move(reply));
                               guard.lock();
                             } else {
                               replies.push_back(std::move(reply));
                             }
                             cv.notify_all();
                           }));
    cbs.on_drop = [this](const caf::error& why, const std::string&) {
      std::lock_guard guard{mutex};
      drops.push_back(why);
      cv.notify_all();
    };
    return cbs;
  }

  template <class Pred> bool wait(Pred pred) {
    std::unique_lock guard{mutex};
    return cv.wait_for(guard, bound, pred);
  }
};

/// The result of one push_pull_with, delivered once.
struct outcome {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<caf::expected<push_pull>> result;
  int calls = 0;

  std::function<void(caf::expected<push_pull>)> callback() {
    return [this](caf::expected<push_pull> r) {
      std::lock_guard guard{mutex};
      ++calls;
      result.emplace(std::move(r));
      cv.notify_all();
    };
  }

  bool wait() {
    std::unique_lock guard{mutex};
    return cv.wait_for(guard, bound, [this] { return result.has_value(); });
  }
};

transport_config local_config() {
  transport_config cfg;
  cfg.bind_host = "127.0.0.1";
  cfg.port = 0;
  cfg.tcp_timeout = 2s;
  return cfg;
}

std::unique_ptr<transport> start_local(recorder& rec, transport_config cfg = local_config()) {
  auto t = transport::start(std::move(cfg), rec.callbacks());
  EXPECT_TRUE(t) << (t ? std::string{} : render(t.error()));
  return t ? std::move(*t) : nullptr;
}

packet ping_from(const std::string& sender, std::uint32_t seq) {
  packet p;
  p.kind = packet_kind::ping;
  p.seq = seq;
  p.sender = sender;
  p.sender_address = "127.0.0.1:1";
  p.updates = {member_update{member_state::alive, sender, "127.0.0.1:1", 3, {{"k", "v"}}, {}}};
  return p;
}

push_pull state_of(const std::string& name, bool join = false) {
  push_pull pp;
  pp.sender = name;
  pp.sender_address = "127.0.0.1:1";
  pp.join = join;
  pp.members = {member_update{member_state::alive, name, "127.0.0.1:1", 1, {{"role", "x"}}, {}},
                member_update{member_state::dead, "gone", "127.0.0.1:2", 4, {}, name}};
  return pp;
}

std::string local(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

/// Sends raw bytes to `port` over TCP and reads until the peer closes (bounded by the
/// transport's own deadline). Returns what was read.
std::string raw_tcp_exchange(std::uint16_t port, const std::string& bytes) {
  asio::io_context io;
  asio::ip::tcp::socket s{io};
  asio::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  EXPECT_FALSE(ec) << ec.message();
  if (ec)
    return {};
  asio::write(s, asio::buffer(bytes), ec);
  std::string got;
  std::array<char, 4096> buf{};
  for (;;) {
    const auto n = s.read_some(asio::buffer(buf), ec);
    got.append(buf.data(), n);
    if (ec)
      break;
  }
  return got;
}

// -- split_host_port -------------------------------------------------------------------------

TEST(split_host_port, accepts_valid_addresses) {
  using result = std::pair<std::string, std::uint16_t>;
  EXPECT_EQ(*split_host_port("1.2.3.4:80"), (result{"1.2.3.4", 80}));
  EXPECT_EQ(*split_host_port("[::1]:7946"), (result{"::1", 7946}));
  EXPECT_EQ(*split_host_port("host.example:65535"), (result{"host.example", 65535}));
  EXPECT_EQ(*split_host_port("h:0"), (result{"h", 0}));
}

TEST(split_host_port, refuses_invalid_addresses) {
  for (const char* bad : {"", "host", "host:", ":80", "[::1]", "[::1]80", "[]:80", "::1:80",
                          "h:65536", "h:99999", "h:8o", "h:-1", "h: 80", "h:123456", "[::1:80"}) {
    SCOPED_TRACE(bad);
    auto r = split_host_port(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), code(errc::invalid_field));
  }
}

// -- start and addresses ---------------------------------------------------------------------

TEST(transport, binds_port_zero_and_advertises) {
  recorder rec;
  auto t = start_local(rec);
  ASSERT_TRUE(t);
  EXPECT_NE(t->port(), 0);
  EXPECT_EQ(t->advertise_address(), local(t->port()));

  auto cfg = local_config();
  cfg.advertise_host = "node.example";
  auto u = start_local(rec, cfg);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->advertise_address(), "node.example:" + std::to_string(u->port()));
  // The wildcard case (first non-loopback IPv4 via getifaddrs) is not exercised: tests bind
  // 127.0.0.1 only.
}

TEST(transport, refuses_a_port_in_use) {
  recorder rec;
  auto t = start_local(rec);
  ASSERT_TRUE(t);
  auto cfg = local_config();
  cfg.port = t->port();
  auto again = transport::start(cfg, rec.callbacks());
  ASSERT_FALSE(again);
  EXPECT_EQ(code_of(again.error()), code(errc::io_failure));
}

// -- UDP -------------------------------------------------------------------------------------

TEST(transport, exchanges_packets_both_ways) {
  recorder ra, rb;
  auto a = start_local(ra);
  auto b = start_local(rb);
  ASSERT_TRUE(a && b);
  const auto pa = ping_from("a", 1);
  const auto pb = ping_from("b", 2);
  a->send(local(b->port()), pa);
  b->send(local(a->port()), pb);
  ASSERT_TRUE(rb.wait([&] { return !rb.packets.empty(); }));
  ASSERT_TRUE(ra.wait([&] { return !ra.packets.empty(); }));
  EXPECT_EQ(rb.packets[0].first, pa);
  EXPECT_EQ(rb.packets[0].second, local(a->port()));
  EXPECT_EQ(ra.packets[0].first, pb);
  EXPECT_EQ(ra.packets[0].second, local(b->port()));
  EXPECT_TRUE(eventually([&] { return a->stats().datagrams_out >= 1; }));
  EXPECT_EQ(b->stats().datagrams_in, 1u);
  EXPECT_GT(b->stats().bytes_in, 0u);
}

TEST(transport, resolves_host_names) {
  recorder ra, rb;
  auto a = start_local(ra);
  auto b = start_local(rb);
  ASSERT_TRUE(a && b);
  for (std::uint32_t seq = 1; seq <= 3; ++seq) // the later ones hit the pending lookup or cache
    a->send("localhost:" + std::to_string(b->port()), ping_from("a", seq));
  ASSERT_TRUE(rb.wait([&] { return rb.packets.size() == 3; }));
  // (No unresolvable name here: a DNS timeout could outlast the test's bound.)
  a->send("not an address", ping_from("a", 9));
  EXPECT_TRUE(eventually([&] { return a->stats().send_errors == 1; }));
}

TEST(transport, counts_bad_datagrams_and_keeps_working) {
  recorder ra, rb;
  auto a = start_local(ra);
  auto b = start_local(rb);
  ASSERT_TRUE(a && b);
  asio::io_context io;
  asio::ip::udp::socket raw{io, asio::ip::udp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
  const asio::ip::udp::endpoint to{asio::ip::make_address("127.0.0.1"), b->port()};
  const std::vector<std::string> garbage = {"hello",
                                            std::string{},
                                            std::string{"\x01\xff\xff\xff", 4},
                                            std::string{"\x02sealed"},
                                            std::string(1, '\x01'),
                                            std::string{"\x01\x22\x10"
                                                        "ab",
                                                        5}};
  for (const auto& g : garbage)
    raw.send_to(asio::buffer(g), to);
  raw.send_to(asio::buffer(std::string(2000, '\x01')), to);
  raw.send_to(asio::buffer(std::string(65000, 'x')), to);
  ASSERT_TRUE(eventually([&] {
    return b->stats().dropped_malformed == garbage.size() && b->stats().dropped_oversized == 2;
  })) << b->stats().dropped_malformed
      << " malformed, " << b->stats().dropped_oversized << " oversized";
  EXPECT_TRUE(rb.wait([&] { return rb.drops.size() == garbage.size() + 2; }));
  {
    std::lock_guard guard{rb.mutex};
    EXPECT_TRUE(rb.packets.empty());
  }
  a->send(local(b->port()), ping_from("a", 5));
  ASSERT_TRUE(rb.wait([&] { return rb.packets.size() == 1; }));
  EXPECT_EQ(rb.packets[0].first.seq, 5u);
}

TEST(transport, does_not_send_oversized_datagrams) {
  recorder ra;
  auto a = start_local(ra);
  ASSERT_TRUE(a);
  auto p = ping_from("a", 1);
  p.updates[0].tags["big"] = std::string(2000, 'x');
  a->send(local(a->port()), p);
  EXPECT_TRUE(eventually([&] { return a->stats().send_errors == 1; }));
  EXPECT_EQ(a->stats().datagrams_out, 0u);
}

/// A toy sealer: prefixes a marker. Enough to check the transport calls it both ways.
class marker_sealer : public datagram_sealer {
public:
  caf::expected<std::string> seal(std::string plain, std::string_view receiver) override {
    std::lock_guard guard{mutex};
    sealed_for.emplace_back(receiver);
    return "SEAL" + plain;
  }
  caf::expected<std::string> open(std::string_view wire, std::string_view self) override {
    {
      std::lock_guard guard{mutex};
      opened_as.emplace_back(self);
    }
    if (wire.substr(0, 4) != "SEAL")
      return make_error(errc::malformed, "not sealed");
    return std::string{wire.substr(4)};
  }
  /// The receivers the transport named, in order.
  std::mutex mutex;
  std::vector<std::string> sealed_for;
  std::vector<std::string> opened_as;
};

TEST(transport, seals_and_opens_datagrams) {
  recorder ra, rb, rc;
  auto cfg = local_config();
  auto sealer = std::make_shared<marker_sealer>();
  cfg.sealer = sealer;
  auto a = start_local(ra, cfg);
  auto b = start_local(rb, cfg);
  auto c = start_local(rc); // no sealer
  ASSERT_TRUE(a && b && c);
  a->send(local(b->port()), ping_from("a", 1));
  ASSERT_TRUE(rb.wait([&] { return rb.packets.size() == 1; }));
  c->send(local(b->port()), ping_from("c", 2)); // plain: refused by b's sealer
  a->send(local(c->port()), ping_from("a", 3)); // sealed: unknown frame at c
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_malformed == 1; }));
  EXPECT_TRUE(eventually([&] { return c->stats().dropped_malformed == 1; }));
  EXPECT_EQ(b->stats().dropped_refused, 0u); // a gossip-category error counts as malformed
  {
    std::lock_guard guard{rb.mutex};
    EXPECT_EQ(rb.packets.size(), 1u);
  }
  // Every datagram is sealed for its destination and opened as the receiving node's own
  // advertised address (issue 13: a datagram captured on its way to one member cannot be
  // replayed to another).
  std::lock_guard guard{sealer->mutex};
  ASSERT_EQ(sealer->sealed_for.size(), 2u);
  EXPECT_EQ(sealer->sealed_for[0], local(b->port()));
  EXPECT_EQ(sealer->sealed_for[1], local(c->port()));
  ASSERT_FALSE(sealer->opened_as.empty());
  EXPECT_EQ(sealer->opened_as[0], b->advertise_address());
}

/// A sealer that refuses with a non-gossip error (as the keyring does): counted as refused.
/// Seals by prefixing "K" + a key letter; opens only its own letter.
class letter_sealer : public datagram_sealer {
public:
  explicit letter_sealer(char letter) : letter_(letter) {}
  caf::expected<std::string> seal(std::string plain, std::string_view) override {
    return std::string{'K', letter_} + plain;
  }
  caf::expected<std::string> open(std::string_view wire, std::string_view) override {
    if (wire.size() < 2 || wire[0] != 'K')
      return make_error(errc::malformed, "not sealed");
    if (wire[1] != letter_)
      return caf::error{std::uint8_t{1}, caf::atom("other")}; // another category: refused
    return std::string{wire.substr(2)};
  }

private:
  char letter_;
};

TEST(transport, sealed_datagrams_must_fit_max_datagram_after_sealing) {
  recorder ra, rb;
  auto cfg = local_config();
  cfg.sealer = std::make_shared<letter_sealer>('a');
  auto a = start_local(ra, cfg);
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(a && b);
  auto p = ping_from("a", 1);
  const auto plain_size = encode_datagram(p).size();
  auto tight = local_config();
  tight.sealer = std::make_shared<letter_sealer>('a');
  tight.limits.max_datagram = plain_size + 1; // the plain datagram fits, the sealed one not
  auto c = start_local(ra, tight);
  ASSERT_TRUE(c);
  c->send(local(b->port()), p);
  EXPECT_TRUE(eventually([&] { return c->stats().send_errors == 1; }));
  a->send(local(b->port()), p);
  ASSERT_TRUE(rb.wait([&] { return rb.packets.size() == 1; }));
}

TEST(transport, counts_refused_input_apart_from_malformed) {
  recorder ra, rb, rc;
  auto cfg = local_config();
  cfg.sealer = std::make_shared<letter_sealer>('a');
  auto a = start_local(ra, cfg);
  auto b = start_local(rb, cfg);
  cfg.sealer = std::make_shared<letter_sealer>('z'); // another key
  auto c = start_local(rc, cfg);
  ASSERT_TRUE(a && b && c);
  c->send(local(b->port()), ping_from("c", 1));
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_refused == 1; }));
  EXPECT_EQ(b->stats().dropped_malformed, 0u);
  a->send(local(b->port()), ping_from("a", 2));
  ASSERT_TRUE(rb.wait([&] { return rb.packets.size() == 1; }));
  EXPECT_EQ(rb.packets[0].first.seq, 2u);
}

TEST(transport, sealed_push_pull_round_trip_and_refusal_of_another_key) {
  recorder ra, rb, rc;
  rb.responder = [](push_pull, push_pull_responder reply) { reply(state_of("b")); };
  auto cfg = local_config();
  cfg.sealer = std::make_shared<letter_sealer>('a');
  auto a = start_local(ra, cfg);
  auto b = start_local(rb, cfg);
  cfg.sealer = std::make_shared<letter_sealer>('z');
  auto c = start_local(rc, cfg);
  auto d = start_local(rc); // no sealer at all
  ASSERT_TRUE(a && b && c && d);
  outcome ok;
  push_pull_with(*a, local(b->port()), state_of("a", true), ok.callback());
  ASSERT_TRUE(ok.wait());
  ASSERT_TRUE(*ok.result) << render(ok.result->error());
  EXPECT_EQ(**ok.result, state_of("b"));
  // Another key: b refuses (counted), c learns why from b's plain error frame.
  outcome refused;
  push_pull_with(*c, local(b->port()), state_of("c", true), refused.callback());
  ASSERT_TRUE(refused.wait());
  ASSERT_FALSE(*refused.result);
  // Refused by its code (decision 0014): the other key is not who may push-pull here.
  EXPECT_EQ(code_of(refused.result->error()), code(errc::unauthenticated));
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_refused == 1; }));
  // No sealer: a well-formed plain push-pull is refused as unauthenticated, not served.
  outcome plain;
  push_pull_with(*d, local(b->port()), state_of("d", true), plain.callback());
  ASSERT_TRUE(plain.wait());
  ASSERT_FALSE(*plain.result);
  EXPECT_EQ(code_of(plain.result->error()), code(errc::unauthenticated));
  EXPECT_NE(render(plain.result->error()).find("gossip encryption is on"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return b->stats().dropped_refused == 2; }));
  std::lock_guard guard{rb.mutex};
  EXPECT_EQ(rb.push_pulls.size(), 1u); // only a's exchange reached b's owner
}

TEST(transport, sealed_node_refuses_a_plain_answer) {
  recorder ra, rb;
  rb.responder = [](push_pull, push_pull_responder reply) { reply(state_of("b")); };
  auto cfg = local_config();
  cfg.sealer = std::make_shared<marker_sealer>(); // b answers "SEAL..." bodies
  auto b = start_local(rb, cfg);
  cfg.sealer = std::make_shared<letter_sealer>('a'); // a expects "Ka..." bodies
  auto a = start_local(ra, cfg);
  ASSERT_TRUE(a && b);
  outcome out;
  push_pull_with(*a, local(b->port()), state_of("a", true), out.callback());
  ASSERT_TRUE(out.wait());
  ASSERT_FALSE(*out.result); // b refuses a's body (malformed for the marker sealer)
}

// -- TCP push-pull ---------------------------------------------------------------------------

TEST(transport, push_pull_round_trip_with_reply_from_another_thread) {
  recorder ra, rb;
  auto a = start_local(ra);
  auto b = start_local(rb);
  ASSERT_TRUE(a && b);
  outcome out;
  push_pull_with(*a, local(b->port()), state_of("a", true), out.callback());
  ASSERT_TRUE(rb.wait([&] { return !rb.replies.empty(); }));
  push_pull_responder reply;
  {
    std::lock_guard guard{rb.mutex};
    EXPECT_EQ(rb.push_pulls.at(0), state_of("a", true));
    reply = rb.replies.at(0);
  }
  std::thread replier{[reply, answer = state_of("b")] { reply(answer); }};
  replier.join();
  ASSERT_TRUE(out.wait());
  ASSERT_TRUE(*out.result) << render(out.result->error());
  EXPECT_EQ(**out.result, state_of("b"));
  EXPECT_EQ(a->stats().push_pulls_out, 1u);
  EXPECT_TRUE(eventually([&] { return b->stats().push_pulls_in == 1; }));
  EXPECT_EQ(a->stats().push_pull_errors, 0u);
  EXPECT_EQ(b->stats().push_pull_errors, 0u);
  // A second reply is ignored; the callback ran exactly once.
  reply(state_of("b"));
  std::lock_guard guard{out.mutex};
  EXPECT_EQ(out.calls, 1);
}

TEST(transport, refusal_reaches_done_as_peer_refused) {
  recorder ra, rb;
  rb.responder = [](push_pull, push_pull_responder reply) {
    reply(make_error(errc::invalid_field, "not admitted"));
  };
  auto a = start_local(ra);
  auto b = start_local(rb);
  ASSERT_TRUE(a && b);
  outcome out;
  push_pull_with(*a, local(b->port()), state_of("a"), out.callback());
  ASSERT_TRUE(out.wait());
  ASSERT_FALSE(*out.result);
  EXPECT_EQ(code_of(out.result->error()), code(errc::peer_refused));
  EXPECT_NE(render(out.result->error()).find("not admitted"), std::string::npos);
  EXPECT_EQ(a->stats().push_pull_errors, 1u);
  EXPECT_EQ(a->stats().push_pulls_out, 0u);
}

TEST(transport, push_pull_to_a_closed_port_fails) {
  recorder ra;
  auto a = start_local(ra);
  ASSERT_TRUE(a);
  std::uint16_t closed = 0;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor acc{io, {asio::ip::make_address("127.0.0.1"), 0}};
    closed = acc.local_endpoint().port();
  }
  outcome out;
  push_pull_with(*a, local(closed), state_of("a"), out.callback());
  ASSERT_TRUE(out.wait());
  ASSERT_FALSE(*out.result);
  const auto c = code_of(out.result->error());
  EXPECT_TRUE(c == code(errc::io_failure) || c == code(errc::timeout))
      << render(out.result->error());
  EXPECT_EQ(a->stats().push_pull_errors, 1u);

  outcome bad;
  push_pull_with(*a, "no port here", state_of("a"), bad.callback());
  ASSERT_TRUE(bad.wait());
  EXPECT_EQ(code_of(bad.result->error()), code(errc::invalid_field));
}

TEST(transport, push_pull_times_out_when_nobody_answers) {
  recorder ra, rb; // rb keeps the responder and never calls it
  auto cfg = local_config();
  cfg.tcp_timeout = 200ms;
  auto a = start_local(ra, cfg);
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(a && b);
  outcome out;
  push_pull_with(*a, local(b->port()), state_of("a"), out.callback());
  ASSERT_TRUE(out.wait());
  ASSERT_FALSE(*out.result);
  const auto c = code_of(out.result->error());
  // Whichever deadline fires first: ours (timeout) or the responder's (closes: io_failure).
  EXPECT_TRUE(c == code(errc::timeout) || c == code(errc::io_failure))
      << render(out.result->error());
  EXPECT_TRUE(eventually([&] { return b->stats().push_pull_errors == 1; }));
  // The late reply finds the connection gone and is ignored.
  push_pull_responder reply;
  {
    std::lock_guard guard{rb.mutex};
    reply = rb.replies.at(0);
  }
  reply(state_of("b"));
  std::lock_guard guard{out.mutex};
  EXPECT_EQ(out.calls, 1);
}

TEST(transport, raw_tcp_garbage_is_answered_counted_and_dropped) {
  recorder rb;
  auto b = start_local(rb);
  ASSERT_TRUE(b);
  const std::vector<std::pair<std::string, errc>> cases = {
      {std::string{"\xff\xff\xff\xff", 4}, errc::oversized}, // huge length prefix
      {std::string{"\x00\x00\x00\x00", 4}, errc::malformed}, // zero length
      {std::string{"\x00\x00\x00\x05\xff\xff\xff\xff\xff", 9}, errc::malformed}, // garbage body
      {std::string{"\x00\x00\x00\x02\x18\x01", 6}, errc::invalid_field}, // Frame without body
  };
  std::uint64_t expected_errors = 0;
  for (const auto& [bytes, why] : cases) {
    SCOPED_TRACE(static_cast<int>(why));
    const auto answer = raw_tcp_exchange(b->port(), bytes);
    ++expected_errors;
    frame_reader reader;
    reader.feed(answer);
    auto body = reader.next();
    ASSERT_TRUE(body.has_value() && *body) << "no error frame in " << answer.size() << " bytes";
    auto decoded = decode_frame(**body);
    ASSERT_FALSE(decoded);
    EXPECT_EQ(code_of(decoded.error()), code(errc::peer_refused));
    EXPECT_TRUE(eventually([&] { return b->stats().push_pull_errors == expected_errors; }));
  }
  EXPECT_EQ(b->stats().push_pulls_in, 0u);
  std::lock_guard guard{rb.mutex};
  EXPECT_TRUE(rb.push_pulls.empty());
  EXPECT_EQ(rb.drops.size(), cases.size());
}

TEST(transport, silent_tcp_client_is_cut_by_the_deadline) {
  recorder rb;
  auto cfg = local_config();
  cfg.tcp_timeout = 100ms;
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(b);
  const auto answer = raw_tcp_exchange(b->port(), std::string{"\x00\x00\x01", 3}); // partial
  EXPECT_TRUE(answer.empty());
  EXPECT_TRUE(eventually([&] { return b->stats().push_pull_errors == 1; }));
  std::lock_guard guard{rb.mutex};
  ASSERT_EQ(rb.drops.size(), 1u);
  EXPECT_EQ(code_of(rb.drops[0]), code(errc::timeout));
}

TEST(transport, bounds_concurrent_inbound_connections) {
  recorder rb;
  auto cfg = local_config();
  cfg.tcp_timeout = 30s;               // keeps the first 64 connections open meanwhile
  cfg.max_connections_per_source = 70; // all come from 127.0.0.1: the global bound is tested
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(b);
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> sockets;
  const asio::ip::tcp::endpoint to{asio::ip::make_address("127.0.0.1"), b->port()};
  for (int i = 0; i < 70; ++i) {
    sockets.emplace_back(io);
    asio::error_code ec;
    sockets.back().connect(to, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  // 64 are served (until their deadline); the 6 beyond are closed at once. The counter
  // moves before the drop reaches the recorder (another thread): wait for both.
  auto drops = [&] {
    std::lock_guard guard{rb.mutex};
    return rb.drops.size();
  };
  ASSERT_TRUE(eventually([&] { return b->stats().push_pull_errors == 6 && drops() == 6; }))
      << b->stats().push_pull_errors << " errors, " << drops() << " drops";
  EXPECT_EQ(b->stats().connections_refused, 6u);
  EXPECT_EQ(drops(), 6u);
}

// -- stop ------------------------------------------------------------------------------------

TEST(transport, stop_is_idempotent_and_silences_callbacks) {
  std::atomic<bool> stopped{false};
  std::atomic<int> late{0};
  std::atomic<int> seen{0};
  transport_callbacks cbs;
  cbs.on_packet = [&](packet, std::string) {
    ++seen;
    if (stopped)
      ++late;
  };
  (void)cbs.requests.add(request_types::push_pull,
                         push_pull_spec([&](push_pull, push_pull_responder reply) {
                           if (stopped)
                             ++late;
                           reply(state_of("b"));
                         }));
  cbs.on_drop = [&](const caf::error&, const std::string&) {
    if (stopped)
      ++late;
  };
  auto started = transport::start(local_config(), cbs);
  ASSERT_TRUE(started);
  auto b = std::move(*started);
  recorder ra;
  auto a = start_local(ra);
  ASSERT_TRUE(a);
  const auto to = local(b->port());

  std::atomic<bool> flooding{true};
  std::thread flood{[&] {
    std::uint32_t seq = 0;
    while (flooding) {
      a->send(to, ping_from("a", ++seq));
      if (seq % 64 == 0)
        push_pull_with(*a, to, state_of("a"), [](caf::expected<push_pull>) {});
      std::this_thread::sleep_for(100us); // pace the flood, not a wait for a condition
    }
  }};
  ASSERT_TRUE(eventually([&] { return seen > 10; }));
  b->stop();
  stopped = true;
  b->stop(); // idempotent
  // Keep flooding the stopped transport and calling its methods for a while.
  const auto until = std::chrono::steady_clock::now() + 200ms;
  while (std::chrono::steady_clock::now() < until) {
    b->send(to, ping_from("b", 1));
    push_pull_with(*b, local(a->port()), state_of("b"), [&](caf::expected<push_pull>) { ++late; });
    std::this_thread::yield();
  }
  flooding = false;
  flood.join();
  b.reset(); // destructor after stop
  a->stop();
  EXPECT_EQ(late, 0);
}

TEST(transport, destructor_stops_with_work_pending) {
  recorder ra, rb;
  auto a = start_local(ra);
  auto b = start_local(rb); // keeps inbound push-pulls pending forever
  ASSERT_TRUE(a && b);
  std::atomic<int> calls{0};
  push_pull_with(*a, local(b->port()), state_of("a"), [&](caf::expected<push_pull>) { ++calls; });
  ASSERT_TRUE(rb.wait([&] { return !rb.replies.empty(); }));
  b.reset();
  a.reset();
  EXPECT_LE(calls, 1);
  // The responder outlives its transport: calling it is harmless.
  std::lock_guard guard{rb.mutex};
  rb.replies.at(0)(state_of("b"));
}

// -- inbound limits (issue 13, finding 3) ----------------------------------------------------

/// The 4-byte big-endian length prefix of a frame announcing `n` body bytes.
std::string prefix_of(std::uint32_t n) {
  return std::string{static_cast<char>((n >> 24) & 0xff), static_cast<char>((n >> 16) & 0xff),
                     static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
}

/// The reason of the error frame in `answer`, or "" if `answer` holds none.
std::string refusal_in(const std::string& answer) {
  frame_reader reader;
  reader.feed(answer);
  auto body = reader.next();
  if (!body || !*body)
    return {};
  auto decoded = decode_frame(**body);
  if (decoded || code_of(decoded.error()) != code(errc::peer_refused))
    return {};
  return render(decoded.error());
}

/// An open TCP connection to the transport at `port` (blocking; closed when destroyed).
struct raw_connection {
  asio::io_context io;
  asio::ip::tcp::socket socket{io};

  explicit raw_connection(std::uint16_t port) {
    asio::error_code ec;
    socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  void write(const std::string& bytes) {
    asio::error_code ec;
    asio::write(socket, asio::buffer(bytes), ec);
    EXPECT_FALSE(ec) << ec.message();
  }

  /// Reads until the transport closes (bounded by its deadline); returns what was read.
  std::string read_all() {
    std::string got;
    std::array<char, 4096> buf{};
    asio::error_code ec;
    while (!ec) {
      const auto n = socket.read_some(asio::buffer(buf), ec);
      got.append(buf.data(), n);
    }
    return got;
  }
};

TEST(transport_limits, a_frame_beyond_the_budget_is_refused_at_its_prefix_until_budget_returns) {
  recorder rb;
  auto cfg = local_config();
  cfg.tcp_timeout = 30s; // the held frames stay open until the test closes them
  cfg.limits.max_frame = 1u << 20;
  cfg.inbound_budget = 1u << 20;
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(b);
  constexpr std::uint32_t big = 768u << 10;

  // A frame announced and not sent yet holds its length of the budget.
  std::optional<raw_connection> holder{std::in_place, b->port()};
  holder->write(prefix_of(big));
  ASSERT_TRUE(eventually([&] { return b->stats().inbound_buffered == big; }))
      << b->stats().inbound_buffered;

  // A second one does not fit what is left: refused at its prefix (no body sent), answered.
  auto answer = raw_tcp_exchange(b->port(), prefix_of(big));
  EXPECT_NE(refusal_in(answer).find("budget"), std::string::npos) << refusal_in(answer);
  EXPECT_EQ(b->stats().budget_refused, 1u);
  EXPECT_TRUE(eventually([&] { return b->stats().push_pull_errors == 1; }));
  EXPECT_EQ(b->stats().inbound_buffered, big);

  // The holder's connection closes: its share comes back, and the same frame fits again.
  holder.reset();
  ASSERT_TRUE(eventually([&] { return b->stats().inbound_buffered == 0; }));
  raw_connection again{b->port()};
  again.write(prefix_of(big));
  EXPECT_TRUE(eventually([&] { return b->stats().inbound_buffered == big; }));
  EXPECT_EQ(b->stats().budget_refused, 1u);
}

TEST(transport_limits, a_consumed_frame_gives_its_budget_back_before_the_answer) {
  recorder ra, rb;
  auto a = start_local(ra);
  auto b = start_local(rb);
  ASSERT_TRUE(a && b);
  outcome out;
  push_pull_with(*a, local(b->port()), state_of("a"), out.callback());
  ASSERT_TRUE(rb.wait([&] { return !rb.replies.empty(); }));
  // The request is with the owner, the connection still open: nothing is held for it.
  EXPECT_EQ(b->stats().inbound_buffered, 0u);
  {
    std::lock_guard guard{rb.mutex};
    rb.replies.at(0)(state_of("b"));
  }
  ASSERT_TRUE(out.wait());
  EXPECT_TRUE(*out.result);
}

TEST(transport_limits, a_source_over_its_cap_evicts_its_own_idle_connections) {
  recorder rb;
  auto cfg = local_config();
  cfg.tcp_timeout = 30s;
  cfg.max_connections_per_source = 3;
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(b);
  // Three connections hold frames half-way (prefix only), then two more come from the same
  // address: each evicts the oldest of the source that has no whole request yet.
  std::vector<std::unique_ptr<raw_connection>> conns;
  for (int i = 0; i < 3; ++i) {
    conns.push_back(std::make_unique<raw_connection>(b->port()));
    conns.back()->write(prefix_of(100));
    ASSERT_TRUE(eventually([&] { return b->stats().inbound_buffered == 100u * (i + 1); }));
  }
  for (int i = 0; i < 2; ++i)
    conns.push_back(std::make_unique<raw_connection>(b->port()));
  ASSERT_TRUE(eventually([&] { return b->stats().source_refused == 2; }))
      << b->stats().source_refused;
  EXPECT_TRUE(eventually([&] { return b->stats().push_pull_errors == 2; }));
  EXPECT_TRUE(eventually([&] { return b->stats().inbound_buffered == 100; }))
      << "the evicted connections gave their budget back";
  EXPECT_EQ(b->stats().connections_refused, 0u);
  ASSERT_TRUE(rb.wait([&] { return rb.drops.size() == 2; }));
  std::lock_guard guard{rb.mutex};
  ASSERT_EQ(rb.drops.size(), 2u);
  EXPECT_NE(render(rb.drops[0]).find("max_connections_per_source"), std::string::npos);
}

TEST(transport_limits, a_source_whose_connections_are_all_served_gets_no_more) {
  recorder rb;
  auto cfg = local_config();
  cfg.tcp_timeout = 30s;
  cfg.max_connections_per_source = 3;
  auto b = start_local(rb, cfg);
  ASSERT_TRUE(b);
  // Three whole push-pull requests wait for the owner's answer: none can be evicted.
  std::vector<std::unique_ptr<raw_connection>> conns;
  for (int i = 0; i < 3; ++i) {
    conns.push_back(std::make_unique<raw_connection>(b->port()));
    conns.back()->write(encode_frame(state_of("a")));
  }
  ASSERT_TRUE(rb.wait([&] { return rb.replies.size() == 3; }));
  for (int i = 0; i < 2; ++i)
    conns.push_back(std::make_unique<raw_connection>(b->port()));
  ASSERT_TRUE(eventually([&] { return b->stats().source_refused == 2; }))
      << b->stats().source_refused;
  EXPECT_TRUE(eventually([&] { return b->stats().push_pull_errors == 2; }));
  // The transport counts before it reports the drop to its owner.
  ASSERT_TRUE(rb.wait([&] { return rb.drops.size() == 2; }));
  {
    std::lock_guard guard{rb.mutex};
    ASSERT_EQ(rb.drops.size(), 2u);
    EXPECT_NE(render(rb.drops[0]).find("closed at accept"), std::string::npos);
    // Answered: the three close, and the source is served again.
    for (auto& reply : rb.replies)
      reply(state_of("b"));
    rb.responder = [](push_pull, push_pull_responder reply) { reply(state_of("b")); };
  }
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(conns[static_cast<std::size_t>(i)]->read_all().empty()) << "an answer";
  recorder ra;
  auto a = start_local(ra);
  ASSERT_TRUE(a);
  outcome out;
  push_pull_with(*a, local(b->port()), state_of("a"), out.callback());
  ASSERT_TRUE(out.wait());
  EXPECT_TRUE(*out.result) << render(out.result->error());
}

TEST(transport_limits, bad_limits_fail_at_start_naming_the_key) {
  recorder rb;
  auto budget = local_config();
  budget.inbound_budget = budget.limits.max_frame - 1;
  auto per_source = local_config();
  per_source.max_connections_per_source = 0;
  auto anonymous = local_config();
  anonymous.max_anonymous_frame = 0;
  for (const auto& [key, cfg] :
       {std::pair{"inbound_budget", budget}, std::pair{"max_connections_per_source", per_source},
        std::pair{"max_anonymous_frame", anonymous}}) {
    SCOPED_TRACE(key);
    auto t = transport::start(cfg, rb.callbacks());
    ASSERT_FALSE(t);
    EXPECT_EQ(code_of(t.error()), code(errc::invalid_field));
    EXPECT_NE(render(t.error()).find(key), std::string::npos) << render(t.error());
  }
}

// With TLS: a client without a certificate (a joiner) may send admission requests only, so
// nothing beyond max_anonymous_frame; a member may send full push-pulls.

/// Our test mesh (key generation is the slow part: made once).
const starling::testing::test_pki& mesh() {
  static const starling::testing::test_pki instance;
  return instance;
}

using pki_security = starling::testing::context_security;

/// A member of mesh() named `name` that serves joiners.
std::shared_ptr<pki_security> member_security(const std::string& name) {
  using starling::testing::must;
  auto node = mesh().node(name);
  node.chain.push_back(mesh().root().cert);
  identity::tls_options opts;
  opts.key = node.key;
  opts.certs = node.chain;
  opts.trust = std::make_shared<identity::trust_state>(mesh().bundle());
  opts.clock = [now = mesh().now()] { return now; };
  opts.accept_anonymous_clients = true;
  return std::make_shared<pki_security>(must(identity::tls_context::make(std::move(opts)), name));
}

/// A joiner of mesh(): no certificate, the root pinned.
std::shared_ptr<pki_security> joiner_security() {
  using starling::testing::must;
  identity::tls_options opts;
  opts.pinned_root = must(identity::spki_sha256(mesh().root().cert), "root pin");
  opts.clock = [now = mesh().now()] { return now; };
  return std::make_shared<pki_security>(
      must(identity::tls_context::make(std::move(opts)), "joiner"));
}

/// Over TLS as a client without a certificate: writes `bytes` to 127.0.0.1:`port` and reads
/// until the server closes (bounded by its deadline). Returns what was read.
std::string anonymous_tls_exchange(std::uint16_t port, const std::string& bytes) {
  asio::io_context io;
  asio::ip::tcp::socket s{io};
  asio::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  EXPECT_FALSE(ec) << ec.message();
  auto session = joiner_security()->new_session(false, std::nullopt);
  EXPECT_TRUE(session);
  if (ec || !session)
    return {};
  asio::ssl::stream<asio::ip::tcp::socket> tls{std::move(s), *session};
  tls.handshake(asio::ssl::stream_base::client, ec);
  EXPECT_FALSE(ec) << ec.message();
  if (ec)
    return {};
  asio::write(tls, asio::buffer(bytes), ec);
  EXPECT_FALSE(ec) << ec.message();
  std::string got;
  std::array<char, 4096> buf{};
  for (;;) {
    const auto n = tls.read_some(asio::buffer(buf), ec);
    got.append(buf.data(), n);
    if (ec)
      break;
  }
  return got;
}

/// Callbacks of a TLS member that answers admissions with "welcome" and push-pulls with
/// `name`'s state, counting what reached it.
transport_callbacks serving(recorder& rec, const std::string& name, std::atomic<int>& admissions) {
  rec.responder = [name](push_pull, push_pull_responder reply) { reply(state_of(name)); };
  auto cbs = rec.callbacks();
  (void)cbs.requests.add(request_types::identity,
                         identity_spec([&admissions](std::string, std::optional<std::string>,
                                                     admission_responder reply) {
                           ++admissions;
                           reply(std::string{"welcome"});
                         }));
  return cbs;
}

TEST(transport_limits, an_anonymous_client_is_refused_a_large_frame_at_its_prefix) {
  recorder rb;
  std::atomic<int> admissions{0};
  auto cfg = local_config();
  cfg.security = member_security("node-b");
  auto started = transport::start(cfg, serving(rb, "node-b", admissions));
  ASSERT_TRUE(started) << render(started.error());
  auto b = std::move(*started);

  // 16 MiB announced, nothing more sent: refused at once (not at the deadline), answered.
  const auto answer = anonymous_tls_exchange(b->port(), prefix_of(16u << 20));
  EXPECT_NE(refusal_in(answer).find("without a certificate"), std::string::npos)
      << refusal_in(answer);
  EXPECT_EQ(b->stats().anonymous_refused, 1u);
  EXPECT_EQ(b->stats().inbound_buffered, 0u);
  EXPECT_EQ(b->stats().budget_refused, 0u);
  EXPECT_EQ(admissions, 0);

  // Beyond what the codec takes from anyone: refused as anonymous all the same.
  const auto huge = anonymous_tls_exchange(b->port(), prefix_of(0xffffffffu));
  EXPECT_NE(refusal_in(huge).find("without a certificate"), std::string::npos);
  EXPECT_EQ(b->stats().anonymous_refused, 2u);

  // Just over the limit is refused, up to it is served.
  const auto over = anonymous_tls_exchange(
      b->port(), prefix_of(static_cast<std::uint32_t>(cfg.max_anonymous_frame + 1)));
  EXPECT_NE(refusal_in(over).find("without a certificate"), std::string::npos);
  EXPECT_EQ(b->stats().anonymous_refused, 3u);
  auto joiner = joiner_security();
  auto ok = admission_exchange(
      local(b->port()), *joiner,
      [](const SSL*) -> caf::expected<std::string> { return std::string(60u << 10, 'r'); }, 5s);
  ASSERT_TRUE(ok) << render(ok.error());
  EXPECT_EQ(*ok, "welcome");
  EXPECT_EQ(admissions, 1);
  EXPECT_EQ(b->stats().anonymous_refused, 3u);
}

TEST(transport_limits, a_member_may_send_frames_beyond_the_anonymous_limit) {
  recorder ra, rb;
  std::atomic<int> admissions{0};
  auto cfg_b = local_config();
  cfg_b.security = member_security("node-b");
  auto b = transport::start(cfg_b, serving(rb, "node-b", admissions));
  ASSERT_TRUE(b) << render(b.error());
  auto cfg_a = local_config();
  cfg_a.security = member_security("node-a");
  auto a = start_local(ra, cfg_a);
  ASSERT_TRUE(a);
  push_pull big;
  big.sender = "node-a";
  big.sender_address = "127.0.0.1:1";
  for (int i = 0; i < 1000; ++i)
    big.members.push_back(member_update{member_state::alive,
                                        "node-a-" + std::to_string(i),
                                        "127.0.0.1:1",
                                        1,
                                        {{"pad", std::string(100, 'p')}},
                                        {}});
  ASSERT_GT(encode_frame(big).size(), cfg_b.max_anonymous_frame);
  outcome out;
  push_pull_with(*a, local((*b)->port()), big, out.callback());
  ASSERT_TRUE(out.wait());
  ASSERT_TRUE(*out.result) << render(out.result->error());
  EXPECT_EQ(out.result->value().sender, "node-b");
  EXPECT_EQ((*b)->stats().anonymous_refused, 0u);
  EXPECT_TRUE(eventually([&] { return (*b)->stats().push_pulls_in == 1; }));
}

// -- the request channel (decision 0014) -----------------------------------------------------

/// A request type of this test only (neither push-pull nor the identity channel).
constexpr request_type echo_type = 7;

/// Collects the answer of one transport::request.
struct answer_box {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<caf::expected<request_answer>> result;

  request_done callback() {
    return [this](caf::expected<request_answer> r) {
      std::lock_guard guard{mutex};
      result.emplace(std::move(r));
      cv.notify_all();
    };
  }

  bool wait() {
    std::unique_lock guard{mutex};
    return cv.wait_for(guard, bound, [this] { return result.has_value(); });
  }
};

/// The echo type: answers "echo:" + the request, or refuses with `refusal` when set.
request_spec echo_spec(std::size_t max_request = 1024, caf::error refusal = {}) {
  request_spec spec;
  spec.name = "echo";
  spec.max_request = max_request;
  spec.max_answer = 4096;
  spec.handler = [refusal](std::string body, const std::optional<std::string>&,
                           request_responder reply) -> caf::error {
    if (refusal)
      reply(refusal);
    else
      reply("echo:" + body);
    return {};
  };
  return spec;
}

/// Callbacks of `rec` with the echo type registered as `spec`.
transport_callbacks with_echo(recorder& rec, request_spec spec) {
  auto cbs = rec.callbacks();
  EXPECT_FALSE(cbs.requests.add(echo_type, std::move(spec)));
  return cbs;
}

/// A request frame of `type` as Starling writes it: the type first, then the payload.
std::string typed_frame(request_type type, const std::string& payload) {
  std::string body;
  body += '\x20';
  for (auto v = type;; v >>= 7) {
    body += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80)
      break;
  }
  body += '\x2a';
  for (auto v = payload.size();; v >>= 7) {
    body += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80)
      break;
  }
  return prefix_of(static_cast<std::uint32_t>(body.size() + payload.size())) + body + payload;
}

TEST(request_channel, a_new_type_round_trips) {
  recorder ra, rb;
  auto a = transport::start(local_config(), with_echo(ra, echo_spec()));
  auto b = transport::start(local_config(), with_echo(rb, echo_spec()));
  ASSERT_TRUE(a && b);
  answer_box box;
  (*a)->request(local((*b)->port()), echo_type, "hello", std::nullopt, box.callback());
  ASSERT_TRUE(box.wait());
  ASSERT_TRUE(*box.result) << render(box.result->error());
  EXPECT_EQ(box.result->value().body, "echo:hello");
  EXPECT_EQ((*a)->stats().requests_out, 1u);
  EXPECT_TRUE(eventually([&] { return (*b)->stats().requests_in == 1; }));
  // Neither push-pull nor admission counters move for another type.
  EXPECT_EQ((*b)->stats().push_pulls_in, 0u);
  EXPECT_EQ((*b)->stats().admissions_in, 0u);
}

TEST(request_channel, registry_refuses_bad_registrations) {
  request_registry reg;
  EXPECT_EQ(code_of(reg.add(0, echo_spec())), code(errc::invalid_field));
  EXPECT_FALSE(reg.add(echo_type, echo_spec()));
  EXPECT_EQ(code_of(reg.add(echo_type, echo_spec())), code(errc::invalid_field)); // taken
  auto anonymous = echo_spec();
  anonymous.auth = request_auth::anyone_over_tls;
  EXPECT_EQ(code_of(reg.add(8, anonymous)), code(errc::invalid_field)); // identity only
  EXPECT_FALSE(reg.add(request_types::identity, identity_spec(nullptr)));
}

TEST(request_channel, a_request_over_its_type_limit_is_refused_at_the_prefix) {
  recorder rb;
  auto b = transport::start(local_config(), with_echo(rb, echo_spec(100)));
  ASSERT_TRUE(b);
  // The frame names its type and announces 200 payload bytes; none of them is sent.
  auto frame = typed_frame(echo_type, std::string(200, 'x'));
  frame.resize(frame.size() - 200);
  const auto answer = raw_tcp_exchange((*b)->port(), frame);
  EXPECT_NE(refusal_in(answer).find("exceeds its limit"), std::string::npos) << refusal_in(answer);
  EXPECT_EQ((*b)->stats().type_limit_refused, 1u);
  EXPECT_EQ((*b)->stats().requests_in, 0u);
  EXPECT_TRUE(eventually([&] { return (*b)->stats().inbound_buffered == 0; }));
  // The client learns it by its code.
  recorder ra;
  auto a = transport::start(local_config(), with_echo(ra, echo_spec(1000)));
  ASSERT_TRUE(a);
  answer_box box;
  (*a)->request(local((*b)->port()), echo_type, std::string(500, 'y'), std::nullopt,
                box.callback());
  ASSERT_TRUE(box.wait());
  ASSERT_FALSE(*box.result);
  EXPECT_EQ(code_of(box.result->error()), code(errc::oversized));
  EXPECT_EQ((*b)->stats().type_limit_refused, 2u);
  // Up to the limit is served.
  answer_box small;
  (*a)->request(local((*b)->port()), echo_type, std::string(100, 'y'), std::nullopt,
                small.callback());
  ASSERT_TRUE(small.wait());
  EXPECT_TRUE(*small.result);
}

TEST(request_channel, an_unknown_type_is_refused_with_its_code_and_counted) {
  recorder ra, rb;
  auto a = transport::start(local_config(), with_echo(ra, echo_spec()));
  auto b = start_local(rb); // push-pull only
  ASSERT_TRUE(a && b);
  answer_box box;
  (*a)->request(local(b->port()), echo_type, "hello", std::nullopt, box.callback());
  ASSERT_TRUE(box.wait());
  ASSERT_FALSE(*box.result);
  EXPECT_EQ(code_of(box.result->error()), code(errc::unknown_request))
      << render(box.result->error());
  EXPECT_TRUE(eventually([&] { return b->stats().unknown_type_refused == 1; }));
  EXPECT_EQ((*a)->stats().requests_failed, 1u);
  // The node keeps serving what it knows.
  rb.responder = [](push_pull, push_pull_responder reply) { reply(state_of("b")); };
  outcome out;
  push_pull_with(**a, local(b->port()), state_of("a"), out.callback());
  ASSERT_TRUE(out.wait());
  EXPECT_TRUE(*out.result);
  // A type this node never registered is not sent at all.
  answer_box local_box;
  (*a)->request(local(b->port()), 99, "x", std::nullopt, local_box.callback());
  ASSERT_TRUE(local_box.wait());
  EXPECT_EQ(code_of(local_box.result->error()), code(errc::invalid_field));
}

TEST(request_channel, a_handler_refusal_reaches_the_caller_as_its_code) {
  constexpr auto routing_category = caf::atom("routing");
  recorder ra, rb;
  auto a = transport::start(local_config(), with_echo(ra, echo_spec()));
  auto b = transport::start(
      local_config(),
      with_echo(rb, echo_spec(1024, caf::error{5, routing_category,
                                               caf::make_message(std::string{"stale digest"})})));
  ASSERT_TRUE(a && b);
  answer_box box;
  (*a)->request(local((*b)->port()), echo_type, "hello", std::nullopt, box.callback());
  ASSERT_TRUE(box.wait());
  ASSERT_FALSE(*box.result);
  EXPECT_EQ(box.result->error().category(), routing_category);
  EXPECT_EQ(box.result->error().code(), 5);
  EXPECT_TRUE(eventually([&] { return (*b)->stats().handler_refused == 1; }));
}

TEST(request_channel, an_anonymous_client_is_refused_a_member_type_but_served_admission) {
  recorder rb;
  std::atomic<int> admissions{0};
  auto cfg = local_config();
  cfg.security = member_security("node-b");
  auto cbs = serving(rb, "node-b", admissions);
  ASSERT_FALSE(cbs.requests.add(echo_type, echo_spec()));
  auto started = transport::start(cfg, std::move(cbs));
  ASSERT_TRUE(started) << render(started.error());
  auto b = std::move(*started);
  // Refused at the prefix: the type is read before the body, and the body is never sent.
  auto frame = typed_frame(echo_type, "hello");
  const auto answer = anonymous_tls_exchange(b->port(), frame);
  frame_reader reader;
  reader.feed(answer);
  auto body = reader.next();
  ASSERT_TRUE(body.has_value() && *body);
  auto refusal = decode_frame(**body); // an older node's reading: the text only
  ASSERT_FALSE(refusal);
  EXPECT_NE(render(refusal.error()).find("without a certificate"), std::string::npos);
  EXPECT_EQ(b->stats().binding_refused, 1u);
  EXPECT_EQ(b->stats().requests_in, 0u);
  // The identity channel serves the same kind of client.
  auto joiner = joiner_security();
  auto ok = admission_exchange(
      local(b->port()), *joiner,
      [](const SSL*) -> caf::expected<std::string> { return std::string{"join me"}; }, 5s);
  ASSERT_TRUE(ok) << render(ok.error());
  EXPECT_EQ(*ok, "welcome");
  EXPECT_EQ(admissions, 1);
}

TEST(request_channel, an_older_nodes_refusal_without_a_code_is_peer_refused) {
  // An older node answers with an error frame that has no refusal code (codec's
  // encode_error_frame writes exactly that): the caller gets peer_refused and the text.
  asio::io_context io;
  asio::ip::tcp::acceptor old_node{io, {asio::ip::make_address("127.0.0.1"), 0}};
  const auto port = old_node.local_endpoint().port();
  std::thread server{[&] {
    asio::error_code ec;
    auto s = old_node.accept(ec);
    if (ec)
      return;
    std::array<char, 4096> buf{};
    (void)s.read_some(asio::buffer(buf), ec);
    asio::write(s, asio::buffer(encode_error_frame("old node says no")), ec);
  }};
  recorder ra;
  auto a = start_local(ra);
  ASSERT_TRUE(a);
  outcome out;
  push_pull_with(*a, local(port), state_of("a"), out.callback());
  ASSERT_TRUE(out.wait());
  server.join();
  ASSERT_FALSE(*out.result);
  EXPECT_EQ(code_of(out.result->error()), code(errc::peer_refused));
  EXPECT_EQ(refusal_reason(out.result->error()), "old node says no");
}

} // namespace
} // namespace starling::gossip
