// HTTP/2 session core and conversions (proxy/h2.hpp): a client and a server session wired
// back to back in memory (bounded pumping, no I/O), raw frames for what a well-behaved
// nghttp2 peer never sends, and the HTTP/1.1 <-> HTTP/2 conversions with tricky heads.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/h2.hpp"
#include "proxy/http1.hpp"
#include "proxy/http_text.hpp"

namespace {

using namespace starling::proxy;
using h2::errc;
using h2::field;

constexpr std::string_view preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// --- frames on the wire ---------------------------------------------------------------

struct frame {
  std::uint8_t type = 0;
  std::uint8_t flags = 0;
  std::int32_t stream = 0;
  std::string payload;
};

constexpr std::uint8_t t_data = 0, t_headers = 1, t_rst = 3, t_settings = 4, t_goaway = 7;

/// Splits `bytes` into frames (after the client preface, if it starts with it).
std::vector<frame> frames_of(std::string_view bytes) {
  if (bytes.starts_with(preface))
    bytes.remove_prefix(preface.size());
  std::vector<frame> out;
  while (bytes.size() >= 9) {
    const auto u = [&](std::size_t i) { return static_cast<std::uint8_t>(bytes[i]); };
    const std::size_t len = (std::size_t{u(0)} << 16) | (std::size_t{u(1)} << 8) | u(2);
    frame f;
    f.type = u(3);
    f.flags = u(4);
    f.stream =
        static_cast<std::int32_t>(((u(5) & 0x7fU) << 24) | (u(6) << 16) | (u(7) << 8) | u(8));
    if (bytes.size() < 9 + len)
      break;
    f.payload = std::string(bytes.substr(9, len));
    out.push_back(std::move(f));
    bytes.remove_prefix(9 + len);
  }
  return out;
}

std::size_t count(const std::vector<frame>& fs, std::uint8_t type) {
  std::size_t n = 0;
  for (const auto& f : fs)
    n += f.type == type ? 1 : 0;
  return n;
}

std::uint32_t be32(std::string_view s, std::size_t at) {
  const auto u = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<std::uint8_t>(s[at + i]));
  };
  return (u(0) << 24) | (u(1) << 16) | (u(2) << 8) | u(3);
}

std::string frame_bytes(std::uint8_t type, std::uint8_t flags, std::int32_t stream,
                        std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>((payload.size() >> 16) & 0xff));
  out.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(payload.size() & 0xff));
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(flags));
  for (int shift : {24, 16, 8, 0})
    out.push_back(static_cast<char>((static_cast<std::uint32_t>(stream) >> shift) & 0xff));
  out.append(payload);
  return out;
}

/// HPACK: a literal field without indexing, new name, no Huffman (strings < 127 bytes).
std::string hpack_literal(std::string_view name, std::string_view value) {
  std::string out;
  out.push_back('\0');
  out.push_back(static_cast<char>(name.size()));
  out.append(name);
  out.push_back(static_cast<char>(value.size()));
  out.append(value);
  return out;
}

/// HPACK block of "GET / http" plus :authority and `extra` literal fields.
std::string request_block(std::string_view extra = {}) {
  std::string b;
  b.push_back(static_cast<char>(0x82)); // :method GET
  b.push_back(static_cast<char>(0x86)); // :scheme http
  b.push_back(static_cast<char>(0x84)); // :path /
  b += hpack_literal(":authority", "svc");
  b.append(extra);
  return b;
}

constexpr std::uint8_t f_end_stream = 0x1, f_end_headers = 0x4;

// --- a listener that records ----------------------------------------------------------

struct recorded_head {
  std::string method, scheme, authority, path;
  std::uint16_t status = 0;
  std::vector<std::pair<std::string, std::string>> fields;
  std::int64_t content_length = -1;
  bool end_stream = false;
};

struct recorder : h2::listener {
  std::map<std::int32_t, std::vector<recorded_head>> heads;
  std::map<std::int32_t, std::string> data;
  std::map<std::int32_t, std::vector<std::pair<std::string, std::string>>> trailers;
  std::set<std::int32_t> ended;
  std::vector<std::pair<std::int32_t, std::uint32_t>> resets;
  std::vector<std::int32_t> closed;
  std::vector<std::pair<std::int32_t, std::uint32_t>> goaways;
  h2::session* session = nullptr;
  bool auto_consume = true;
  std::function<void(std::int32_t, const h2::head&)> head_hook;
  std::function<void(std::int32_t)> end_hook;

  void on_head(std::int32_t s, const h2::head& h) override {
    recorded_head r{std::string(h.method),
                    std::string(h.scheme),
                    std::string(h.authority),
                    std::string(h.path),
                    h.status,
                    {},
                    h.content_length,
                    h.end_stream};
    for (const auto& f : h.fields)
      r.fields.emplace_back(f.name, f.value);
    heads[s].push_back(std::move(r));
    if (head_hook)
      head_hook(s, h);
  }
  void on_data(std::int32_t s, std::span<const char> bytes) override {
    data[s].append(bytes.data(), bytes.size());
    if (auto_consume)
      session->consumed(s, bytes.size());
  }
  void on_trailers(std::int32_t s, std::span<const field> fields) override {
    for (const auto& f : fields)
      trailers[s].emplace_back(f.name, f.value);
  }
  void on_end(std::int32_t s) override {
    ended.insert(s);
    if (end_hook)
      end_hook(s);
  }
  void on_reset(std::int32_t s, std::uint32_t code) override { resets.emplace_back(s, code); }
  void on_close(std::int32_t s) override { closed.push_back(s); }
  void on_goaway(std::int32_t last, std::uint32_t code) override {
    goaways.emplace_back(last, code);
  }
};

/// A client and a server session back to back.
struct pair_fixture {
  recorder cl, sv;
  h2::session client;
  h2::session server;

  explicit pair_fixture(h2::limits client_limits = {}, h2::limits server_limits = {})
      : client(h2::role::client, client_limits, cl), server(h2::role::server, server_limits, sv) {
    cl.session = &client;
    sv.session = &server;
  }

  /// Moves bytes both ways until neither side has output (at most `rounds` turns).
  /// Returns the turns used; EXPECTs that both sides accepted everything.
  int pump(int rounds = 200) {
    std::string buf;
    for (int i = 0; i < rounds; ++i) {
      bool moved = false;
      buf.clear();
      client.take_output(buf);
      if (!buf.empty()) {
        moved = true;
        EXPECT_EQ(server.receive(buf), errc::ok);
      }
      buf.clear();
      server.take_output(buf);
      if (!buf.empty()) {
        moved = true;
        EXPECT_EQ(client.receive(buf), errc::ok);
      }
      if (!moved)
        return i;
    }
    ADD_FAILURE() << "pump did not settle in " << rounds << " rounds";
    return rounds;
  }

  /// A server that answers every ended request with 200 and body "ok:<path>".
  void serve_ok() {
    sv.end_hook = [this](std::int32_t s) {
      const auto& h = sv.heads[s].back();
      const std::string body = "ok:" + h.path;
      const std::string len = std::to_string(body.size());
      const std::vector<field> fields{{":status", "200"}, {"content-length", len}};
      ASSERT_EQ(server.submit_response(s, fields, false), errc::ok);
      ASSERT_EQ(server.send_data(s, body, true), errc::ok);
    };
  }
};

const std::vector<field> get_fields{
    {":method", "GET"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/a"}};

std::vector<field> get_of(std::string_view path) {
  return {{":method", "GET"}, {":scheme", "http"}, {":authority", "svc"}, {":path", path}};
}

/// Parses `text` as one HTTP/1.1 head with `p` (which owns the views).
const message_head& parse_head(http1_parser& p, std::string_view text) {
  const auto r = p.parse(text);
  EXPECT_EQ(r.status, parse_status::head) << text;
  return p.head();
}

std::vector<std::pair<std::string, std::string>> as_pairs(const h2::field_list& l) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : l.fields)
    out.emplace_back(f.name, f.value);
  return out;
}

using pairs = std::vector<std::pair<std::string, std::string>>;

// --- session ----------------------------------------------------------------------------

TEST(H2Session, GetWithoutBodyIsOneRoundTripWithConvertedFields) {
  pair_fixture p;
  http1_parser parser(direction::request);
  const auto& h1 =
      parse_head(parser, "GET /path?q=1 HTTP/1.1\r\nHost: svc.local\r\nAccept: */*\r\n\r\n");
  h2::field_list fields;
  forward_options opts;
  opts.client_address = "10.0.0.9";
  ASSERT_EQ(h2::to_h2_request(h1, opts, fields), errc::ok);
  std::string app_bytes;
  p.sv.head_hook = [&](std::int32_t, const h2::head& h) {
    EXPECT_EQ(h2::to_h1_request(h, {}, app_bytes).error, errc::ok);
  };
  p.serve_ok();

  const auto made = p.client.submit_request(fields.fields, true);
  ASSERT_EQ(made.error, errc::ok);
  EXPECT_EQ(made.stream, 1);
  int dummy = 0;
  EXPECT_EQ(p.client.set_user(1, &dummy), errc::ok);
  EXPECT_EQ(p.client.user(1), &dummy);
  p.pump();

  ASSERT_EQ(p.sv.heads[1].size(), 1U);
  const auto& req = p.sv.heads[1][0];
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.scheme, "http");
  EXPECT_EQ(req.authority, "svc.local");
  EXPECT_EQ(req.path, "/path?q=1");
  EXPECT_TRUE(req.end_stream);
  EXPECT_EQ(req.fields, (pairs{{"accept", "*/*"},
                               {"via", "1.1 starling"},
                               {"x-forwarded-for", "10.0.0.9"},
                               {"x-forwarded-proto", "http"}}));
  EXPECT_EQ(app_bytes, "GET /path?q=1 HTTP/1.1\r\nhost: svc.local\r\naccept: */*\r\n"
                       "via: 1.1 starling\r\nx-forwarded-for: 10.0.0.9\r\n"
                       "via: 2.0 starling\r\nx-forwarded-proto: http\r\n\r\n");
  ASSERT_EQ(p.cl.heads[1].size(), 1U);
  EXPECT_EQ(p.cl.heads[1][0].status, 200);
  EXPECT_EQ(p.cl.heads[1][0].content_length, 12);
  EXPECT_EQ(p.cl.data[1], "ok:/path?q=1");
  EXPECT_EQ(p.cl.data[1].size(), 12U);
  EXPECT_TRUE(p.cl.ended.count(1));
  EXPECT_TRUE(p.cl.resets.empty());
  EXPECT_EQ(p.cl.closed, std::vector<std::int32_t>{1});
  EXPECT_EQ(p.sv.closed, std::vector<std::int32_t>{1});
  EXPECT_EQ(p.client.active_streams(), 0U);
  EXPECT_EQ(p.server.active_streams(), 0U);
  EXPECT_EQ(p.client.user(1), nullptr); // forgotten with the stream
}

TEST(H2Session, LargeBodyCompletesOnlyBecauseTheReceiverConsumes) {
  constexpr std::size_t total = 1024 * 1024;
  std::string body(total, 'x');
  for (std::size_t i = 0; i < total; ++i)
    body[i] = static_cast<char>('a' + i % 26);
  pair_fixture p;
  p.sv.auto_consume = false;
  const std::string length = std::to_string(total); // the views below point into it
  const std::vector<field> post{{":method", "POST"},
                                {":scheme", "http"},
                                {":authority", "svc"},
                                {":path", "/upload"},
                                {"content-length", length}};
  const auto made = p.client.submit_request(post, false);
  ASSERT_EQ(made.error, errc::ok);
  const auto id = made.stream;
  std::size_t sent = 0;
  auto feed = [&] {
    while (sent < total) {
      const auto n = std::min(p.client.room(id), total - sent);
      if (n == 0)
        break;
      ASSERT_EQ(
          p.client.send_data(id, std::span<const char>(body).subspan(sent, n), sent + n == total),
          errc::ok);
      sent += n;
    }
  };
  // Without consumed(): the stream window (256 KiB) is all the server receives; the client
  // holds at most max_buffered_bytes more, and pumping more changes nothing.
  for (int i = 0; i < 10; ++i) {
    feed();
    p.pump();
  }
  const auto stalled = p.sv.data[id].size();
  EXPECT_LE(stalled, h2::limits{}.initial_stream_window);
  EXPECT_GT(stalled, 0U);
  EXPECT_EQ(p.client.buffered(id), h2::limits{}.max_buffered_bytes);
  EXPECT_EQ(p.client.room(id), 0U);
  EXPECT_EQ(p.client.send_data(id, std::span<const char>(body).subspan(0, 1)), errc::buffer_full);
  EXPECT_LT(sent, total);
  EXPECT_FALSE(p.client.wants_write());
  EXPECT_EQ(p.pump(), 0);
  EXPECT_EQ(p.sv.data[id].size(), stalled);

  // Consuming what arrived reopens the windows: the rest flows.
  std::size_t consumed = 0;
  for (int i = 0; i < 200 && !p.sv.ended.count(id); ++i) {
    p.server.consumed(id, p.sv.data[id].size() - consumed);
    consumed = p.sv.data[id].size();
    feed();
    p.pump();
  }
  EXPECT_TRUE(p.sv.ended.count(id));
  EXPECT_EQ(p.sv.data[id], body);
}

TEST(H2Session, LentBytesAreFramedFromTheCallersMemoryThenTheBufferServesAgain) {
  constexpr std::size_t total = 300 * 1024; // more than a stream's window (256 KiB)
  std::string lent(total, 'x');
  for (std::size_t i = 0; i < total; ++i)
    lent[i] = static_cast<char>('a' + i % 26);
  const std::string expected = lent;
  pair_fixture p;
  p.sv.auto_consume = false;
  const std::vector<field> post{
      {":method", "POST"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/up"}};
  const auto made = p.client.submit_request(post, false);
  ASSERT_EQ(made.error, errc::ok);
  const auto id = made.stream;

  ASSERT_EQ(p.client.lend_data(id, lent), errc::ok);
  EXPECT_EQ(p.client.lent(id), total);
  EXPECT_EQ(p.client.buffered(id), total);
  // One loan at a time, and nothing copied behind it meanwhile.
  EXPECT_EQ(p.client.room(id), 0U);
  EXPECT_EQ(p.client.send_data(id, std::string_view("y")), errc::buffer_full);
  EXPECT_EQ(p.client.lend_data(id, std::string_view("y")), errc::buffer_full);
  EXPECT_EQ(p.client.lend_data(id + 2, std::string_view("y")), errc::no_stream);

  // The window takes 256 KiB of it; the rest stays lent (framed later, from the same
  // memory), and the peer got the loan's first bytes.
  p.pump();
  const auto first = p.sv.data[id].size();
  EXPECT_EQ(first, h2::limits{}.initial_stream_window);
  EXPECT_EQ(p.client.lent(id), total - first);
  EXPECT_EQ(p.sv.data[id], expected.substr(0, first));
  // Framed bytes are the peer's: the lender's memory may change behind them.
  std::fill_n(lent.begin(), first, '#');

  p.server.consumed(id, first);
  p.pump();
  EXPECT_EQ(p.client.lent(id), 0U);
  EXPECT_EQ(p.client.buffered(id), 0U);
  EXPECT_EQ(p.sv.data[id], expected);

  // Repaid: the buffer serves again, after the loan in order, and the stream ends.
  EXPECT_GT(p.client.room(id), 0U);
  ASSERT_EQ(p.client.send_data(id, std::string_view("tail"), true), errc::ok);
  p.server.consumed(id, total);
  p.pump();
  EXPECT_EQ(p.sv.data[id], expected + "tail");
  EXPECT_TRUE(p.sv.ended.count(id));
  EXPECT_EQ(p.client.lend_data(id, std::string_view("late")), errc::stream_ended);
}

TEST(H2Session, AResetOrUnlendDropsTheLoanAndNothingOfItIsFramedAfter) {
  pair_fixture p;
  p.sv.auto_consume = false;
  const std::vector<field> post{
      {":method", "POST"}, {":scheme", "http"}, {":authority", "svc"}, {":path", "/up"}};
  const auto a = p.client.submit_request(post, false).stream;
  const auto b = p.client.submit_request(post, false).stream;
  ASSERT_NE(a, 0);
  ASSERT_NE(b, 0);
  p.pump();
  // An empty loan lends nothing; a loan behind buffered bytes is refused.
  EXPECT_EQ(p.client.lend_data(a, std::string_view{}), errc::ok);
  EXPECT_EQ(p.client.lent(a), 0U);
  ASSERT_EQ(p.client.send_data(b, std::string_view("queued")), errc::ok);
  EXPECT_EQ(p.client.lend_data(b, std::string_view("lent")), errc::buffer_full);
  p.pump();
  EXPECT_EQ(p.sv.data[b], "queued");

  std::string la(1000, 'a'), lb(1000, 'b');
  ASSERT_EQ(p.client.lend_data(a, la), errc::ok);
  ASSERT_EQ(p.client.lend_data(b, lb), errc::ok);
  // Dropped before any take_output: a by reset, b by unlend (its buffer serves again).
  ASSERT_EQ(p.client.reset(a, h2::cancel), errc::ok);
  EXPECT_EQ(p.client.lent(a), 0U);
  p.client.unlend(b);
  EXPECT_EQ(p.client.lent(b), 0U);
  EXPECT_EQ(p.client.buffered(b), 0U);
  la.assign(la.size(), '#'); // the memory is the lender's again
  lb.assign(lb.size(), '#');
  ASSERT_EQ(p.client.send_data(b, std::string_view("after"), true), errc::ok);
  p.pump();
  EXPECT_TRUE(p.sv.data[a].empty()) << p.sv.data[a].size();
  EXPECT_TRUE(std::any_of(p.sv.resets.begin(), p.sv.resets.end(),
                          [&](const auto& r) { return r.first == a; }));
  EXPECT_EQ(p.sv.data[b], "queuedafter");
  EXPECT_TRUE(p.sv.ended.count(b));
  p.client.unlend(a); // a gone or not: harmless
  p.client.unlend(99);
}

TEST(H2Session, HundredStreamsCoalesceIntoOneOutput) {
  pair_fixture p;
  std::vector<std::string> paths;
  for (int i = 0; i < 100; ++i)
    paths.push_back("/s" + std::to_string(i));
  for (const auto& path : paths) {
    ASSERT_TRUE(p.client.can_submit());
    ASSERT_EQ(p.client.submit_request(get_of(path), true).error, errc::ok);
  }
  EXPECT_EQ(p.client.active_streams(), 100U);
  std::string out;
  p.client.take_output(out);
  const auto fs = frames_of(out);
  EXPECT_EQ(count(fs, t_headers), 100U);
  EXPECT_FALSE(p.client.wants_write());

  p.serve_ok();
  ASSERT_EQ(p.server.receive(out), errc::ok);
  EXPECT_EQ(p.sv.heads.size(), 100U);
  std::string answers;
  p.server.take_output(answers); // all 100 responses, one buffer
  EXPECT_EQ(count(frames_of(answers), t_headers), 100U);
  ASSERT_EQ(p.client.receive(answers), errc::ok);
  p.pump();
  EXPECT_EQ(p.cl.ended.size(), 100U);
  EXPECT_EQ(p.cl.data[199], "ok:/s99");
  EXPECT_EQ(p.client.active_streams(), 0U);
}

TEST(H2Session, ClientRespectsThePeersConcurrentStreamLimit) {
  h2::limits small;
  small.max_concurrent_streams = 3;
  pair_fixture p({}, small);
  p.pump(); // SETTINGS exchange
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(p.client.can_submit());
    const auto made = p.client.submit_request(get_fields, true);
    ASSERT_EQ(made.error, errc::ok);
    ids.push_back(made.stream);
  }
  EXPECT_FALSE(p.client.can_submit());
  EXPECT_EQ(p.client.submit_request(get_fields, true).error, errc::stream_limit);
  p.pump();
  EXPECT_EQ(p.sv.heads.size(), 3U);
  const std::vector<field> ok{{":status", "204"}};
  ASSERT_EQ(p.server.submit_response(ids[0], ok, true), errc::ok);
  p.pump();
  EXPECT_TRUE(p.cl.ended.count(ids[0]));
  EXPECT_TRUE(p.client.can_submit());
  EXPECT_EQ(p.client.submit_request(get_fields, true).error, errc::ok);
}

TEST(H2Session, ResetFromEitherSideLeavesOtherStreamsAlone) {
  pair_fixture p;
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(p.client.submit_request(get_fields, false).stream);
  p.pump();
  ASSERT_EQ(p.sv.heads.size(), 3U);

  EXPECT_EQ(p.client.reset(ids[0], h2::cancel), errc::ok);
  EXPECT_EQ(p.server.reset(ids[1], h2::internal_error), errc::ok);
  p.pump();
  EXPECT_EQ(p.sv.resets, (std::vector<std::pair<std::int32_t, std::uint32_t>>{
                             {ids[0], h2::cancel}, {ids[1], h2::internal_error}}));
  EXPECT_EQ(p.cl.resets, (std::vector<std::pair<std::int32_t, std::uint32_t>>{
                             {ids[0], h2::cancel}, {ids[1], h2::internal_error}}));
  EXPECT_EQ(p.client.send_data(ids[0], std::string_view("x")), errc::no_stream);

  // The third stream still works both ways.
  ASSERT_EQ(p.client.send_data(ids[2], std::string_view("body"), true), errc::ok);
  p.serve_ok();
  p.pump();
  EXPECT_EQ(p.sv.data[ids[2]], "body");
  EXPECT_EQ(p.cl.data[ids[2]], "ok:/a");
  EXPECT_TRUE(p.cl.ended.count(ids[2]));
  EXPECT_EQ(p.cl.resets.size(), 2U);
  EXPECT_EQ(p.client.active_streams(), 0U);
  EXPECT_EQ(p.server.active_streams(), 0U);
}

TEST(H2Session, ResetBeforeHeadersAreSentStillReportsTheStream) {
  pair_fixture p;
  const auto id = p.client.submit_request(get_fields, true).stream;
  EXPECT_EQ(p.client.reset(id, h2::cancel), errc::ok);
  p.pump();
  EXPECT_EQ(p.cl.resets, (std::vector<std::pair<std::int32_t, std::uint32_t>>{{id, h2::cancel}}));
  EXPECT_EQ(p.cl.closed, std::vector<std::int32_t>{id});
  EXPECT_TRUE(p.sv.heads.empty());
  EXPECT_EQ(p.client.active_streams(), 0U);
}

TEST(H2Session, GoawayStopsNewStreamsAndLetsOpenOnesFinish) {
  pair_fixture p;
  const auto id = p.client.submit_request(get_fields, true).stream;
  p.pump();
  ASSERT_EQ(p.sv.heads.size(), 1U);
  p.server.goaway();
  p.pump();
  EXPECT_EQ(p.cl.goaways,
            (std::vector<std::pair<std::int32_t, std::uint32_t>>{{id, h2::no_error}}));
  EXPECT_FALSE(p.client.can_submit());
  EXPECT_EQ(p.client.submit_request(get_fields, true).error, errc::going_away);
  const std::vector<field> ok{{":status", "200"}};
  ASSERT_EQ(p.server.submit_response(id, ok, true), errc::ok);
  p.pump();
  EXPECT_TRUE(p.cl.ended.count(id));
  EXPECT_TRUE(p.cl.resets.empty());
  EXPECT_TRUE(p.client.is_done());
  EXPECT_TRUE(p.server.is_done());
}

TEST(H2Session, GarbageInsteadOfThePrefaceFailsWithGoaway) {
  recorder r;
  h2::session server(h2::role::server, {}, r);
  EXPECT_EQ(server.receive(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), errc::protocol);
  ASSERT_TRUE(server.wants_write());
  std::string out;
  server.take_output(out);
  const auto fs = frames_of(out);
  ASSERT_EQ(count(fs, t_goaway), 1U);
  for (const auto& f : fs)
    if (f.type == t_goaway) {
      ASSERT_EQ(f.payload.size(), 8U);
      EXPECT_EQ(be32(f.payload, 4), h2::protocol_error);
    }
  EXPECT_EQ(server.receive(std::string_view("more")), errc::closed);
  EXPECT_TRUE(server.is_done());
}

TEST(H2Session, BadFrameAfterThePrefaceFailsWithGoaway) {
  recorder r;
  h2::session server(h2::role::server, {}, r);
  std::string in(preface);
  in += frame_bytes(t_settings, 0, 0, "");
  in += frame_bytes(t_data, 0, 0, "boom"); // DATA on stream 0: connection error
  EXPECT_EQ(server.receive(in), errc::protocol);
  std::string out;
  server.take_output(out);
  const auto fs = frames_of(out);
  ASSERT_EQ(count(fs, t_goaway), 1U);
  for (const auto& f : fs) {
    if (f.type == t_goaway) {
      EXPECT_EQ(be32(f.payload, 4), h2::protocol_error);
    }
  }
  EXPECT_EQ(server.receive(std::string_view("x")), errc::closed);
}

TEST(H2Session, OversizedHeaderListResetsOnlyThatStream) {
  h2::limits small;
  small.max_header_list_bytes = 4096;
  pair_fixture p({}, small);
  p.serve_ok();
  p.pump();
  const std::string big(8000, 'v');
  auto fields = get_fields;
  fields.push_back({"x-big", big});
  const auto bad = p.client.submit_request(fields, true).stream;
  p.pump();
  EXPECT_TRUE(p.sv.heads.empty());
  EXPECT_EQ(p.cl.resets,
            (std::vector<std::pair<std::int32_t, std::uint32_t>>{{bad, h2::protocol_error}}));
  EXPECT_TRUE(p.sv.resets.empty()); // the server's listener never saw the stream

  const auto good = p.client.submit_request(get_of("/next"), true).stream;
  p.pump();
  EXPECT_EQ(p.cl.data[good], "ok:/next");
  EXPECT_EQ(p.server.active_streams(), 0U);
}

/// Sends a raw client preface and HEADERS blocks; returns the server's answer.
struct raw_client {
  recorder r;
  h2::session server;
  std::string out;

  explicit raw_client(h2::limits lim = {}) : server(h2::role::server, lim, r) {
    r.session = &server;
    std::string in(preface);
    in += frame_bytes(t_settings, 0, 0, "");
    EXPECT_EQ(server.receive(in), errc::ok);
    server.take_output(out);
  }
  std::vector<frame> send_headers(std::int32_t stream, std::string_view block) {
    EXPECT_EQ(server.receive(frame_bytes(t_headers, f_end_headers | f_end_stream, stream, block)),
              errc::ok);
    out.clear();
    server.take_output(out);
    return frames_of(out);
  }
};

bool has_rst(const std::vector<frame>& fs, std::int32_t stream, std::uint32_t code) {
  for (const auto& f : fs)
    if (f.type == t_rst && f.stream == stream && f.payload.size() == 4 &&
        be32(f.payload, 0) == code)
      return true;
  return false;
}

/// The GOAWAY in `fs`, if any: its error code.
std::optional<std::uint32_t> goaway_code(const std::vector<frame>& fs) {
  for (const auto& f : fs)
    if (f.type == t_goaway && f.payload.size() >= 8)
      return be32(f.payload, 4);
  return std::nullopt;
}

/// `n` streams, each opened (HEADERS without END_STREAM) and cancelled by the client at once.
errc open_and_reset(raw_client& c, int n, std::int32_t first = 1) {
  std::string in;
  for (int i = 0; i < n; ++i) {
    const auto id = first + 2 * i;
    in += frame_bytes(t_headers, f_end_headers, id, request_block());
    in += frame_bytes(t_rst, 0, id, std::string("\0\0\0\x08", 4)); // CANCEL
  }
  const auto rc = c.server.receive(in);
  c.out.clear();
  c.server.take_output(c.out);
  return rc;
}

TEST(H2Session, RapidResetBeyondTheBucketCostsThePeerItsConnection) {
  h2::limits lim;
  lim.max_resets_burst = 20;
  lim.max_resets_per_second = 1;
  raw_client c(lim);
  // Within the bucket: the connection stays (and would serve another request).
  EXPECT_EQ(open_and_reset(c, 20), errc::ok);
  EXPECT_EQ(goaway_code(frames_of(c.out)), std::nullopt);
  // Past it: GOAWAY, and the session is done. (Should nghttp2's clock pass a second
  // boundary meanwhile, one token comes back; the 10 extra resets still exceed it.)
  EXPECT_NE(open_and_reset(c, 10, 41), errc::ok);
  EXPECT_TRUE(goaway_code(frames_of(c.out)).has_value());
  EXPECT_EQ(
      c.server.receive(frame_bytes(t_headers, f_end_headers | f_end_stream, 99, request_block())),
      errc::closed);
}

TEST(H2Session, TheDefaultBucketLetsOrdinaryCancellationsThrough) {
  raw_client c; // 1000 resets of burst
  EXPECT_EQ(open_and_reset(c, 100), errc::ok);
  EXPECT_EQ(goaway_code(frames_of(c.out)), std::nullopt);
  const auto fs = c.send_headers(201, request_block(hpack_literal("x-ok", "fine")));
  EXPECT_EQ(count(fs, t_rst), 0U);
  EXPECT_EQ(c.r.heads[201].size(), 1U);
}

// PINGs whose answers nobody takes (the caller cannot write: the peer reads nothing). The
// session serializes at most max_pending_output_bytes of answers itself; past that they
// wait in nghttp2, and past max_queued_answers of those the connection ends (CVE-2019-9512).
// A peer whose answers are taken may ping as much as it likes.
TEST(H2Session, PingsWhoseAnswersNobodyTakesEndTheConnection) {
  constexpr std::uint8_t t_ping = 6;
  const std::string ping = frame_bytes(t_ping, 0, 0, "pingpong");
  h2::limits lim;
  lim.max_pending_output_bytes = 1024;
  lim.max_queued_answers = 50;
  {
    raw_client c(lim);
    std::size_t sent = 0;
    errc rc = errc::ok;
    while (rc == errc::ok && sent < 10'000) {
      rc = c.server.receive(ping);
      ++sent;
    }
    EXPECT_EQ(rc, errc::protocol);
    // 1024 bytes of answers (17 each: 61 of them) serialized, then 50 queued in nghttp2.
    EXPECT_LE(sent, 1024 / 17 + 1 + 50 + 1);
    EXPECT_GE(sent, 50U);
  }
  {
    raw_client c(lim);
    for (int i = 0; i < 10'000; ++i) {
      ASSERT_EQ(c.server.receive(ping), errc::ok) << i;
      if (i % 10 == 9) {
        c.out.clear();
        c.server.take_output(c.out);
        ASSERT_EQ(frames_of(c.out).size(), 10U);
      }
    }
  }
}

// DATA frames go from the stream's buffer straight to the output (no copy through
// nghttp2's frame buffer). While receive() serializes (up to max_pending_output_bytes) the
// rest waits in nghttp2, and take_output then gives every frame whole and in order.
TEST(H2Session, DataPastThePendingLimitArrivesWholeAndInOrderWithTakeOutput) {
  constexpr std::uint8_t t_ping = 6;
  h2::limits lim;
  lim.max_pending_output_bytes = 1024;
  raw_client c(lim);
  (void)c.send_headers(1, request_block());
  std::string body(60'000, '\0');
  for (std::size_t i = 0; i < body.size(); ++i)
    body[i] = static_cast<char>('a' + i % 23);
  const std::vector<field> fields{{":status", "200"}};
  ASSERT_EQ(c.server.submit_response(1, fields, false), errc::ok);
  ASSERT_EQ(c.server.send_data(1, body, true), errc::ok);
  for (int i = 0; i < 3; ++i) // nobody takes the output meanwhile
    ASSERT_EQ(c.server.receive(frame_bytes(t_ping, 0, 0, "pingpong")), errc::ok);
  c.out.clear();
  c.server.take_output(c.out);
  const auto fs = frames_of(c.out);
  std::string got;
  bool ended = false, head_first = false;
  for (const auto& f : fs) {
    if (f.type == t_headers && f.stream == 1)
      head_first = got.empty();
    if (f.type == t_data && f.stream == 1) {
      EXPECT_FALSE(ended);
      got += f.payload;
      ended = (f.flags & f_end_stream) != 0;
    }
  }
  EXPECT_TRUE(head_first);
  EXPECT_TRUE(ended);
  EXPECT_EQ(got.size(), body.size());
  EXPECT_TRUE(got == body);
  EXPECT_EQ(count(fs, t_ping), 3U);
  EXPECT_FALSE(c.server.wants_write());
}

TEST(H2Session, AHeaderBlockOfTooManyContinuationsEndsTheConnection) {
  constexpr std::uint8_t t_continuation = 9;
  auto block_in_pieces = [](std::int32_t id, int continuations) {
    // The block split into HEADERS plus `continuations` CONTINUATION frames: the request's
    // own fields first, then one small field per continuation.
    std::string in = frame_bytes(t_headers, f_end_stream, id, request_block());
    for (int i = 0; i < continuations; ++i) {
      const bool last = i + 1 == continuations;
      in += frame_bytes(t_continuation, last ? f_end_headers : 0, id,
                        hpack_literal("x-part", std::to_string(i)));
    }
    return in;
  };
  for (const std::uint32_t allowed : {8U, 2U}) { // the default, and a limit of ours
    h2::limits lim;
    lim.max_continuations = allowed;
    {
      raw_client c(lim);
      EXPECT_EQ(c.server.receive(block_in_pieces(1, static_cast<int>(allowed))), errc::ok);
      EXPECT_EQ(c.r.heads[1].size(), 1U) << allowed;
    }
    raw_client c(lim);
    EXPECT_NE(c.server.receive(block_in_pieces(1, static_cast<int>(allowed) + 1)), errc::ok)
        << allowed;
    c.out.clear();
    c.server.take_output(c.out);
    EXPECT_TRUE(goaway_code(frames_of(c.out)).has_value()) << allowed;
    EXPECT_TRUE(c.r.heads.empty()) << allowed;
  }
}

TEST(H2Session, InvalidFieldsOnTheWireAreRefused) {
  raw_client c;
  EXPECT_TRUE(has_rst(c.send_headers(1, request_block(hpack_literal("X-Upper", "v"))), 1,
                      h2::protocol_error));
  EXPECT_TRUE(has_rst(c.send_headers(3, request_block(hpack_literal("x-crlf", "a\r\nb"))), 3,
                      h2::protocol_error));
  EXPECT_TRUE(has_rst(c.send_headers(5, request_block(hpack_literal("x-lf", "a\nb"))), 5,
                      h2::protocol_error));
  EXPECT_TRUE(
      has_rst(c.send_headers(7, request_block(hpack_literal("x-nul", std::string_view("a\0b", 3)))),
              7, h2::protocol_error));
  EXPECT_TRUE(has_rst(c.send_headers(9, request_block(hpack_literal("connection", "close"))), 9,
                      h2::protocol_error));
  // A name byte outside tchar: reset too (the session also resets for any field nghttp2
  // would merely drop, so that no request goes on without a field it was sent with).
  EXPECT_TRUE(has_rst(c.send_headers(11, request_block(hpack_literal("bad@name", "v"))), 11,
                      h2::protocol_error));
  EXPECT_TRUE(c.r.heads.empty());
  // The connection still serves a valid request.
  const auto fs = c.send_headers(13, request_block(hpack_literal("x-ok", "fine")));
  EXPECT_EQ(count(fs, t_rst), 0U);
  ASSERT_EQ(c.r.heads[13].size(), 1U);
  EXPECT_EQ(c.r.heads[13][0].fields, (pairs{{"x-ok", "fine"}}));
  EXPECT_EQ(c.r.heads[13][0].authority, "svc");
}

TEST(H2Session, InterimResponsesAndTrailersArrive) {
  pair_fixture p;
  const auto id = p.client.submit_request(get_fields, true).stream;
  p.pump();
  const std::vector<field> cont{{":status", "100"}};
  EXPECT_EQ(p.server.submit_response(id, cont, true), errc::bad_field);
  ASSERT_EQ(p.server.submit_response(id, cont, false), errc::ok);
  const std::vector<field> ok{{":status", "200"}};
  ASSERT_EQ(p.server.submit_response(id, ok, false), errc::ok);
  ASSERT_EQ(p.server.send_data(id, std::string_view("abc")), errc::ok);
  const std::vector<field> trailers{{"grpc-status", "0"}};
  ASSERT_EQ(p.server.end_stream(id, trailers), errc::ok);
  EXPECT_EQ(p.server.end_stream(id), errc::stream_ended);
  p.pump();
  ASSERT_EQ(p.cl.heads[id].size(), 2U);
  EXPECT_EQ(p.cl.heads[id][0].status, 100);
  EXPECT_EQ(p.cl.heads[id][1].status, 200);
  EXPECT_EQ(p.cl.data[id], "abc");
  EXPECT_EQ(p.cl.trailers[id], (pairs{{"grpc-status", "0"}}));
  EXPECT_TRUE(p.cl.ended.count(id));
  EXPECT_TRUE(p.cl.resets.empty());
}

// --- conversions ------------------------------------------------------------------------

TEST(H2Convert, RequestDropsHopByHopAndUsesAbsoluteForm) {
  http1_parser parser(direction::request);
  const auto& h1 = parse_head(parser, "POST http://user@example.com:8080?x=1 HTTP/1.1\r\n"
                                      "Host: other.example\r\n"
                                      "Connection: Foo, keep-alive\r\n"
                                      "Foo: dropped\r\n"
                                      "Keep-Alive: timeout=5\r\n"
                                      "Proxy-Connection: keep-alive\r\n"
                                      "TE: trailers\r\n"
                                      "X-Custom: Val\r\n"
                                      "X-Forwarded-For: 192.0.2.1\r\n"
                                      "X-Forwarded-Proto: https\r\n"
                                      "Content-Length: 3\r\n\r\n");
  forward_options opts;
  opts.client_address = "10.0.0.9";
  const header extra{"x-starling-service", "svc"};
  opts.extra = std::span<const header>(&extra, 1);
  h2::field_list out;
  ASSERT_EQ(h2::to_h2_request(h1, opts, out), errc::ok);
  EXPECT_EQ(as_pairs(out), (pairs{{":method", "POST"},
                                  {":scheme", "http"},
                                  {":authority", "example.com:8080"},
                                  {":path", "/?x=1"},
                                  {"te", "trailers"},
                                  {"x-custom", "Val"},
                                  {"x-forwarded-for", "192.0.2.1, 10.0.0.9"},
                                  {"content-length", "3"},
                                  {"via", "1.1 starling"},
                                  {"x-forwarded-proto", "http"},
                                  {"x-starling-service", "svc"}}));

  // TE other than "trailers" is dropped; the arena is reused.
  http1_parser p2(direction::request);
  const auto& h2head = parse_head(p2, "GET /x HTTP/1.0\r\nHost: h\r\nTE: gzip\r\n\r\n");
  ASSERT_EQ(h2::to_h2_request(h2head, {}, out), errc::ok);
  EXPECT_EQ(as_pairs(out), (pairs{{":method", "GET"},
                                  {":scheme", "http"},
                                  {":authority", "h"},
                                  {":path", "/x"},
                                  {"via", "1.0 starling"},
                                  {"x-forwarded-proto", "http"}}));
}

TEST(H2Convert, RequestsThatStayHttp1AndBadTargets) {
  http1_parser p1(direction::request);
  const auto& upgrade = parse_head(
      p1, "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  h2::field_list out;
  EXPECT_EQ(h2::to_h2_request(upgrade, {}, out), errc::not_convertible);
  http1_parser p2(direction::request);
  const auto& connect = parse_head(p2, "CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(h2::to_h2_request(connect, {}, out), errc::not_convertible);

  message_head h;
  h.method = "OPTIONS";
  h.target = "*";
  const header host{"Host", "h"};
  h.headers = std::span<const header>(&host, 1);
  ASSERT_EQ(h2::to_h2_request(h, {}, out), errc::ok);
  EXPECT_EQ(out.fields[3].name, ":path");
  EXPECT_EQ(out.fields[3].value, "*");
  h.method = "GET";
  EXPECT_EQ(h2::to_h2_request(h, {}, out), errc::bad_field);
  h.target = "ftp://x/y";
  EXPECT_EQ(h2::to_h2_request(h, {}, out), errc::bad_field);
  h.target = "/ok";
  EXPECT_EQ(h2::to_h2_request(h, {}, out, 64), errc::too_large);
  EXPECT_TRUE(out.fields.empty());
}

TEST(H2Convert, ResponseToH2) {
  http1_parser p(direction::response);
  const auto& h1 = parse_head(p, "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"
                                 "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
                                 "Trailer: x\r\n\r\n");
  h2::field_list out;
  ASSERT_EQ(h2::to_h2_response(h1, {}, out), errc::ok);
  EXPECT_EQ(as_pairs(out),
            (pairs{{":status", "200"}, {"content-type", "text/plain"}, {"via", "1.1 starling"}}));

  http1_parser p100(direction::response);
  const auto& interim = parse_head(p100, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_EQ(h2::to_h2_response(interim, {}, out), errc::ok);
  EXPECT_EQ(out.fields[0].value, "100");

  http1_parser p101(direction::response);
  const auto& switching = parse_head(
      p101, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n");
  EXPECT_EQ(h2::to_h2_response(switching, {}, out), errc::not_convertible);
}

TEST(H2Convert, RequestToH1) {
  const std::vector<field> fields{
      {"cookie", "a=1"}, {"accept", "*/*"}, {"cookie", "b=2"}, {"host", "ignored"}};
  h2::head h;
  h.method = "POST";
  h.path = "/p?q";
  h.authority = "svc";
  h.fields = fields;
  std::string out;
  auto w = h2::to_h1_request(h, {}, out);
  ASSERT_EQ(w.error, errc::ok);
  EXPECT_EQ(w.body, body_kind::chunked);
  EXPECT_EQ(out, "POST /p?q HTTP/1.1\r\nhost: svc\r\ncookie: a=1; b=2\r\naccept: */*\r\n"
                 "via: 2.0 starling\r\nx-forwarded-proto: http\r\n"
                 "transfer-encoding: chunked\r\n\r\n");
  http1_parser check(direction::request);
  const auto& again = parse_head(check, out);
  EXPECT_EQ(again.body, body_kind::chunked);

  out.clear();
  h.content_length = 5;
  w = h2::to_h1_request(h, {}, out);
  EXPECT_EQ(w.body, body_kind::content_length);
  EXPECT_NE(out.find("content-length: 5\r\n"), std::string::npos);
  EXPECT_EQ(out.find("transfer-encoding"), std::string::npos);

  out.clear();
  h.content_length = -1;
  h.end_stream = true;
  h.method = "GET";
  w = h2::to_h1_request(h, {}, out);
  EXPECT_EQ(w.body, body_kind::none);
  EXPECT_EQ(out.find("transfer-encoding"), std::string::npos);

  h.method = "CONNECT";
  EXPECT_EQ(h2::to_h1_request(h, {}, out).error, errc::not_convertible);
}

TEST(H2Convert, RequestSpansSplitTheHeadAsAParserWould) {
  // Where to_h1_request says each field lies, http1_parser::adopt_head takes the head from:
  // the head it gives must be the one parsing the written bytes gives, whatever the head
  // holds (joined cookies, an x-forwarded-for appended to, extra fields, framing).
  const std::vector<field> fields{
      {"cookie", "a=1"}, {"accept", "*/*"}, {"x-forwarded-for", "10.0.0.1"},
      {"cookie", "b=2"}, {"x-empty", ""},   {"expect", "100-continue"},
      {"cookie", ""}}; // joined: "a=1; b=2; ", a trailing space the parser trims
  const std::vector<header> extra{{"x-starling-service", "web"}};
  for (int variant = 0; variant < 4; ++variant) {
    h2::head h;
    h.method = variant == 3 ? "DELETE" : "POST";
    h.path = "/p?q";
    h.authority = variant == 2 ? "" : "svc:8080";
    h.fields = fields;
    h.content_length = variant == 0 ? 5 : -1;
    h.end_stream = variant == 3;
    forward_options fo;
    if (variant == 1) {
      fo.client_address = "127.0.0.1";
      fo.extra = extra;
      fo.close = true;
    }
    std::string out = "junk"; // the head starts where out ends
    std::vector<header_span> spans;
    ASSERT_EQ(h2::to_h1_request(h, fo, out, &spans).error, errc::ok);
    const std::string_view text = std::string_view(out).substr(4);
    http1_parser given(direction::request), parsed(direction::request);
    const auto a = given.adopt_head(text, spans);
    const auto b = parsed.parse(text);
    ASSERT_EQ(a.status, parse_status::head) << text;
    ASSERT_EQ(b.status, parse_status::head) << text;
    const auto& x = given.head();
    const auto& y = parsed.head();
    EXPECT_EQ(x.method, y.method);
    EXPECT_EQ(x.target, y.target);
    EXPECT_EQ(x.body, y.body) << text;
    EXPECT_EQ(x.content_length, y.content_length);
    EXPECT_EQ(x.keep_alive, y.keep_alive);
    EXPECT_EQ(x.expect_continue, y.expect_continue);
    EXPECT_EQ(x.raw, y.raw);
    ASSERT_EQ(x.headers.size(), y.headers.size()) << text;
    for (std::size_t i = 0; i < x.headers.size(); ++i) {
      EXPECT_EQ(x.headers[i].name, y.headers[i].name) << text;
      EXPECT_EQ(x.headers[i].value, y.headers[i].value) << text;
    }
  }
  // A refused head writes no span.
  h2::head bad;
  bad.method = "GET";
  bad.path = "/";
  const std::vector<field> nul{{"x", std::string_view("a\0b", 3)}};
  bad.fields = nul;
  std::string out;
  std::vector<header_span> spans{{1, 2, 3, 4}};
  EXPECT_EQ(h2::to_h1_request(bad, {}, out, &spans).error, errc::bad_field);
  EXPECT_TRUE(spans.empty());
  EXPECT_TRUE(out.empty());
}

TEST(H2Convert, NeverWritesCrLfOrNulIntoHttp1) {
  for (const std::string_view bad : {std::string_view("a\r\nx: y"), std::string_view("a\nb"),
                                     std::string_view("a\0b", 3), std::string_view("a\rb")}) {
    const std::vector<field> fields{{"x-v", bad}};
    h2::head h;
    h.method = "GET";
    h.path = "/";
    h.authority = "svc";
    h.fields = fields;
    std::string out = "keep";
    EXPECT_EQ(h2::to_h1_request(h, {}, out).error, errc::bad_field);
    EXPECT_EQ(out, "keep");
    h.status = 200;
    EXPECT_EQ(h2::to_h1_response(h, false, {}, out).error, errc::bad_field);
    EXPECT_EQ(out, "keep");
    EXPECT_EQ(h2::write_last_chunk(fields, out), errc::bad_field);
    EXPECT_EQ(out, "keep");
  }
  h2::head h;
  h.method = "GET";
  h.path = "/a b";
  h.authority = "svc";
  std::string out;
  EXPECT_EQ(h2::to_h1_request(h, {}, out).error, errc::bad_field);
  h.path = "/";
  h.authority = "svc\r\nx: y";
  EXPECT_EQ(h2::to_h1_request(h, {}, out).error, errc::bad_field);
  EXPECT_TRUE(out.empty());
}

TEST(H2Convert, ResponseToH1Framing) {
  const std::vector<field> fields{{"content-type", "text/plain"}};
  h2::head h;
  h.fields = fields;
  std::string out;

  h.status = 200;
  h.content_length = 10;
  auto w = h2::to_h1_response(h, true, {}, out); // response to HEAD
  EXPECT_EQ(w.body, body_kind::none);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nvia: 2.0 starling\r\n"
                 "content-length: 10\r\n\r\n");

  out.clear();
  h.status = 204;
  h.content_length = -1;
  w = h2::to_h1_response(h, false, {}, out);
  EXPECT_EQ(w.body, body_kind::none);
  EXPECT_EQ(out.find("content-length"), std::string::npos);
  EXPECT_EQ(out.find("transfer-encoding"), std::string::npos);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 204 No Content\r\n"));

  out.clear();
  h.status = 304;
  w = h2::to_h1_response(h, false, {}, out);
  EXPECT_EQ(w.body, body_kind::none);
  EXPECT_EQ(out.find("transfer-encoding"), std::string::npos);

  out.clear();
  h.status = 200;
  w = h2::to_h1_response(h, false, {}, out);
  EXPECT_EQ(w.body, body_kind::chunked);
  EXPECT_NE(out.find("transfer-encoding: chunked\r\n"), std::string::npos);
  http1_parser check(direction::response);
  EXPECT_EQ(parse_head(check, out).body, body_kind::chunked);

  out.clear();
  forward_options close;
  close.close = true;
  w = h2::to_h1_response(h, false, close, out);
  EXPECT_EQ(w.body, body_kind::until_close);
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos);

  out.clear();
  h.end_stream = true;
  w = h2::to_h1_response(h, false, {}, out);
  EXPECT_EQ(w.body, body_kind::none);
  EXPECT_NE(out.find("content-length: 0\r\n"), std::string::npos);

  out.clear();
  h.end_stream = false;
  h.status = 100;
  h.fields = {};
  w = h2::to_h1_response(h, false, {}, out);
  EXPECT_EQ(w.body, body_kind::none);
  EXPECT_EQ(out, "HTTP/1.1 100 Continue\r\nvia: 2.0 starling\r\n\r\n");

  out.clear();
  h.status = 299;
  w = h2::to_h1_response(h, false, {}, out);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 299 \r\n"));

  out.clear();
  const std::vector<field> trailers{{"x-sum", "1"}};
  EXPECT_EQ(h2::write_last_chunk(trailers, out), errc::ok);
  EXPECT_EQ(out, "0\r\nx-sum: 1\r\n\r\n");
}

// --- dechunker --------------------------------------------------------------------------

/// Feeds `parts` to a dechunker; returns the payload (and whether it finished); the
/// trailer section's bytes go to `trailer`.
std::pair<std::string, bool> dechunk(const std::vector<std::string_view>& parts,
                                     std::string* trailer = nullptr) {
  h2::dechunker d;
  std::string payload;
  for (auto in : parts) {
    while (!in.empty()) {
      const auto s = d.next(in);
      payload.append(s.payload.data(), s.payload.size());
      if (trailer != nullptr)
        trailer->append(s.trailer.data(), s.trailer.size());
      if (s.consumed == 0)
        break;
      in.remove_prefix(s.consumed);
    }
  }
  return {payload, d.is_done()};
}

TEST(H2Dechunker, EverySplitGivesThePayload) {
  const std::string_view body =
      "5;ext=1\r\nhello\r\n0A\r\n0123456789\r\n1\r\n!\r\n0\r\nx-trailer: t\r\n\r\n";
  const auto whole = dechunk({body});
  EXPECT_EQ(whole.first, "hello0123456789!");
  EXPECT_TRUE(whole.second);
  for (std::size_t i = 0; i <= body.size(); ++i) {
    SCOPED_TRACE(i);
    const auto split = dechunk({body.substr(0, i), body.substr(i)});
    EXPECT_EQ(split.first, whole.first);
    EXPECT_TRUE(split.second);
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < body.size(); ++i)
    bytes.push_back(body.substr(i, 1));
  EXPECT_EQ(dechunk(bytes).first, whole.first);
  EXPECT_TRUE(dechunk(bytes).second);
}

TEST(H2Dechunker, HandsOutTheTrailerSectionWhereverTheInputSplits) {
  const std::string_view body = "3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nx-sum:  7 \r\n\r\n";
  const std::string_view section = "Grpc-Status: 0\r\nx-sum:  7 \r\n\r\n";
  for (std::size_t i = 0; i <= body.size(); ++i) {
    SCOPED_TRACE(i);
    std::string trailer;
    const auto split = dechunk({body.substr(0, i), body.substr(i)}, &trailer);
    EXPECT_EQ(split.first, "abc");
    EXPECT_TRUE(split.second);
    EXPECT_EQ(trailer, section);
  }
  std::string none;
  EXPECT_TRUE(dechunk({"2\r\nab\r\n0\r\n\r\n"}, &none).second);
  EXPECT_EQ(none, "\r\n");

  h2::field_list out;
  ASSERT_EQ(h2::to_h2_trailers(section, out), errc::ok);
  ASSERT_EQ(out.fields.size(), 2U);
  EXPECT_EQ(out.fields[0].name, "grpc-status");
  EXPECT_EQ(out.fields[0].value, "0");
  EXPECT_EQ(out.fields[1].name, "x-sum");
  EXPECT_EQ(out.fields[1].value, "7");
  ASSERT_EQ(h2::to_h2_trailers(none, out), errc::ok);
  EXPECT_TRUE(out.fields.empty());
  // What must not end a message is dropped; a line that is not a field fails the whole.
  ASSERT_EQ(h2::to_h2_trailers("Content-Length: 3\r\nConnection: x\r\nTE: trailers\r\n"
                               "Host: h\r\nTransfer-Encoding: chunked\r\nx-ok: 1\r\n\r\n",
                               out),
            errc::ok);
  ASSERT_EQ(out.fields.size(), 1U);
  EXPECT_EQ(out.fields[0].name, "x-ok");
  EXPECT_EQ(h2::to_h2_trailers("no colon\r\n\r\n", out), errc::bad_field);
  EXPECT_EQ(h2::to_h2_trailers(": empty name\r\n\r\n", out), errc::bad_field);
  EXPECT_TRUE(out.fields.empty());
  EXPECT_EQ(h2::to_h2_trailers("x-big: " + std::string(100, 'v') + "\r\n\r\n", out, 64),
            errc::too_large);
}

TEST(H2Dechunker, StopsAfterTheBodyAndRefusesGarbage) {
  h2::dechunker d;
  const std::string_view in = "0\r\n\r\nGET /next";
  const auto s = d.next(in);
  EXPECT_EQ(s.consumed, 5U);
  EXPECT_TRUE(d.is_done());
  EXPECT_EQ(d.next(in.substr(5)).consumed, 0U);

  h2::dechunker bad;
  EXPECT_EQ(bad.next(std::string_view("zz\r\n")).consumed, 0U);
  EXPECT_TRUE(bad.has_failed());
  h2::dechunker bad2;
  const auto s2 = bad2.next(std::string_view("1\r\nab"));
  EXPECT_EQ(std::string_view(s2.payload.data(), s2.payload.size()), "a");
  (void)bad2.next(std::string_view("b"));
  EXPECT_TRUE(bad2.has_failed());
}

TEST(H2Dechunker, ChunkedRequestThroughParserDechunkerAndSession) {
  // Node A: HTTP/1.1 chunked POST -> h2 fields + DATA payload; node B: back to HTTP/1.1.
  const std::string wire = "POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n";
  for (std::size_t slice = 1; slice <= wire.size(); slice += 7) {
    SCOPED_TRACE(slice);
    pair_fixture p;
    std::string app;
    std::int32_t id = 0;
    p.sv.head_hook = [&](std::int32_t, const h2::head& h) {
      EXPECT_EQ(h2::to_h1_request(h, {}, app).body, body_kind::chunked);
    };
    http1_parser parser(direction::request);
    h2::dechunker dechunk;
    h2::field_list fields;
    std::string pending;
    std::size_t from = 0;
    bool complete = false;
    while (!complete && from <= wire.size()) {
      pending.append(wire, from, slice);
      from += slice;
      for (;;) {
        const auto r = parser.parse(pending);
        if (r.status == parse_status::need_more) {
          pending.clear();
          break;
        }
        if (r.status == parse_status::head) {
          ASSERT_EQ(h2::to_h2_request(parser.head(), {}, fields), errc::ok);
          id = p.client.submit_request(fields.fields, false).stream;
        } else if (r.status == parse_status::body) {
          auto raw = r.body;
          while (!raw.empty()) {
            const auto s = dechunk.next(raw);
            if (!s.payload.empty()) {
              ASSERT_EQ(p.client.send_data(id, s.payload), errc::ok);
            }
            if (s.consumed == 0)
              break;
            raw = raw.subspan(s.consumed);
          }
        } else if (r.status == parse_status::complete) {
          EXPECT_TRUE(dechunk.is_done());
          ASSERT_EQ(p.client.end_stream(id), errc::ok);
          complete = true;
          break;
        } else {
          GTEST_FAIL() << "parse status " << static_cast<int>(r.status);
        }
        pending.erase(0, r.consumed);
      }
    }
    p.pump();
    EXPECT_TRUE(complete);
    EXPECT_EQ(p.sv.data[id], "abcdefg");
    EXPECT_TRUE(p.sv.ended.count(id));
    EXPECT_EQ(app, "POST /up HTTP/1.1\r\nhost: svc\r\nvia: 1.1 starling\r\n"
                   "via: 2.0 starling\r\nx-forwarded-proto: http\r\n"
                   "transfer-encoding: chunked\r\n\r\n");
  }
}

TEST(H2Errc, NamesAreStable) {
  EXPECT_EQ(h2::name(errc::ok), "ok");
  EXPECT_EQ(h2::name(errc::protocol), "protocol");
  EXPECT_EQ(h2::name(errc::too_large), "too_large");
  EXPECT_EQ(h2::name(static_cast<errc>(200)), "unknown");
}

TEST(H2Grpc, TimeoutValueIsGrpcsUnitsRoundedUpToMilliseconds) {
  using std::chrono::milliseconds;
  EXPECT_EQ(h2::grpc_timeout_value("300m"), milliseconds{300});
  EXPECT_EQ(h2::grpc_timeout_value("5S"), milliseconds{5000});
  EXPECT_EQ(h2::grpc_timeout_value("2M"), milliseconds{120'000});
  EXPECT_EQ(h2::grpc_timeout_value("1H"), milliseconds{3'600'000});
  EXPECT_EQ(h2::grpc_timeout_value("1500u"), milliseconds{2});
  EXPECT_EQ(h2::grpc_timeout_value("1n"), milliseconds{1});
  EXPECT_EQ(h2::grpc_timeout_value("0m"), milliseconds{1});
  EXPECT_EQ(h2::grpc_timeout_value("99999999H"), milliseconds{99'999'999LL * 3'600'000});
  for (const char* bad : {"", "m", "5", "5s", "5 S", "-5S", "+5S", "123456789m", "5SS", "0x5m"})
    EXPECT_EQ(h2::grpc_timeout_value(bad), std::nullopt) << bad;
}

TEST(H2Grpc, ContentTypeIsGrpcsWithItsSuffixes) {
  for (const char* yes : {"application/grpc", "application/grpc+proto", "Application/GRPC",
                          "application/grpc;charset=utf-8"})
    EXPECT_TRUE(h2::is_grpc_content_type(yes)) << yes;
  for (const char* no :
       {"", "application/grpc-web", "application/grp", "text/grpc", "application/json"})
    EXPECT_FALSE(h2::is_grpc_content_type(no)) << no;
}

TEST(H2Grpc, StatusValueIsItsNumberAndAnythingElseUnknown) {
  EXPECT_EQ(text::grpc_status_number("0"), 0);
  EXPECT_EQ(text::grpc_status_number("14"), 14);
  EXPECT_EQ(text::grpc_status_number("999"), 999);
  for (const std::string_view odd : {"", "1000", "-1", " 1", "1 ", "x", "0x1", "4294967297"})
    EXPECT_EQ(text::grpc_status_number(odd), 2) << '"' << odd << '"';
}

} // namespace
