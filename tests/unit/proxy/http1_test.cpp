// HTTP/1.1 framing (proxy/http1.hpp): events, limits, every smuggling refusal with its exact
// bytes, split-invariance, forwarding and generated responses.
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/http1.hpp"
#include "proxy/http_text.hpp"

// Counts heap allocations while `counting_allocations` is set, to show the steady state
// allocates nothing. Not under ASan, which owns operator new.
#if defined(__SANITIZE_ADDRESS__)
#define STARLING_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STARLING_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef STARLING_COUNT_ALLOCATIONS
#define STARLING_COUNT_ALLOCATIONS 1
#endif

namespace {
bool counting_allocations = false;
std::size_t allocations = 0;
} // namespace

#if STARLING_COUNT_ALLOCATIONS
// g++ sees the replaced operator delete free() what operator new returned and warns.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (counting_allocations)
    ++allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace starling::proxy {
namespace {

using namespace std::string_literals;

/// What a parser produced for a stream: one string per event, consecutive body events
/// merged (so any split gives the same trace), and the bytes left opaque after an upgrade.
struct trace {
  std::vector<std::string> events;
  std::string opaque;
  std::optional<http_error> error;
  bool operator==(const trace&) const = default;
};

void PrintTo(const trace& t, std::ostream* os) {
  for (const auto& e : t.events)
    *os << "\n  " << e;
  if (!t.opaque.empty())
    *os << "\n  opaque: " << t.opaque;
}

std::string describe(const message_head& h) {
  std::string s = "head ";
  if (h.dir == direction::request)
    s += std::string(h.method) + " " + std::string(h.target);
  else
    s += std::to_string(h.status) + " " + std::string(h.reason);
  s += " 1." + std::to_string(h.version_minor);
  for (const auto& f : h.headers)
    s += " [" + std::string(f.name) + "=" + std::string(f.value) + "]";
  s += " body=" + std::to_string(static_cast<int>(h.body)) + "/" + std::to_string(h.content_length);
  s += h.keep_alive ? " keep" : " close";
  if (h.expect_continue)
    s += " expect";
  if (h.upgrade)
    s += " upgrade";
  return s;
}

/// Feeds `data` in slices ending at `cuts` (ascending; the end is implied), keeping the
/// unconsumed bytes as a proxy would, and records the events. `methods` are the requests
/// the responses answer, in order (response parsers only).
trace drive(http1_parser& p, std::string_view data, const std::vector<std::size_t>& cuts,
            bool eof = false, std::vector<std::string> methods = {}) {
  trace t;
  std::string pending;
  std::size_t next_method = 0;
  auto expect = [&] {
    if (next_method < methods.size())
      p.expect_response_to(methods[next_method]);
  };
  expect();
  auto step = [&]() -> bool { // false: stop feeding
    for (;;) {
      const auto r = p.parse(pending);
      EXPECT_LE(r.consumed, pending.size());
      switch (r.status) {
      case parse_status::need_more:
        EXPECT_EQ(r.consumed, pending.size());
        pending.erase(0, r.consumed);
        return true;
      case parse_status::head:
        t.events.push_back(describe(p.head()));
        break;
      case parse_status::body:
        EXPECT_EQ(r.body.data(), pending.data());
        EXPECT_EQ(r.body.size(), r.consumed);
        if (t.events.empty() || !t.events.back().starts_with("body:"))
          t.events.push_back("body:");
        t.events.back().append(r.body.data(), r.body.size());
        break;
      case parse_status::complete:
        t.events.push_back("complete");
        if (!p.head().is_interim()) {
          ++next_method;
          expect();
        }
        break;
      case parse_status::upgrade:
        t.events.push_back("upgrade");
        return false;
      case parse_status::error:
        t.events.push_back("error " + std::string(name(r.error)));
        t.error = r.error;
        return false;
      }
      pending.erase(0, r.consumed);
    }
  };
  std::size_t from = 0;
  bool going = true;
  for (std::size_t i = 0; i <= cuts.size() && going; ++i) {
    const std::size_t to = i < cuts.size() ? cuts[i] : data.size();
    pending.append(data.substr(from, to - from));
    from = to;
    going = step();
  }
  if (!going && t.events.back() == "upgrade")
    t.opaque = pending + std::string(data.substr(from));
  if (going && eof) {
    const auto r = p.finish();
    if (r.status == parse_status::complete)
      t.events.push_back("complete");
    else if (r.status == parse_status::error)
      t.events.push_back("error " + std::string(name(r.error)));
  }
  return t;
}

trace whole(direction dir, std::string_view data, bool eof = false,
            std::vector<std::string> methods = {}, http1_limits limits = {}) {
  http1_parser p(dir, limits);
  return drive(p, data, {}, eof, std::move(methods));
}

trace bytewise(direction dir, std::string_view data, bool eof = false,
               std::vector<std::string> methods = {}, http1_limits limits = {}) {
  http1_parser p(dir, limits);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < data.size(); ++i)
    cuts.push_back(i);
  return drive(p, data, cuts, eof, std::move(methods));
}

/// The refusal of a request (whole and byte by byte must agree), or nullopt if accepted.
std::optional<http_error> refusal(std::string_view data, http1_limits limits = {},
                                  direction dir = direction::request) {
  const auto a = whole(dir, data, false, {}, limits);
  const auto b = bytewise(dir, data, false, {}, limits);
  // Body bytes before the error may be reported in more steps when fed byte by byte; the
  // refusal itself must not depend on the split.
  EXPECT_EQ(a.error, b.error);
  return a.error;
}

std::optional<http_error> response_refusal(std::string_view data) {
  return refusal(data, {}, direction::response);
}

// --- reason codes -----------------------------------------------------------------------

TEST(http1_error, names_are_the_contract) {
  EXPECT_EQ(name(http_error::malformed), "malformed");
  EXPECT_EQ(name(http_error::header_too_large), "header_too_large");
  EXPECT_EQ(name(http_error::too_many_headers), "too_many_headers");
  EXPECT_EQ(name(http_error::target_too_long), "target_too_long");
  EXPECT_EQ(name(http_error::smuggling_cl_te), "smuggling_cl_te");
  EXPECT_EQ(name(http_error::duplicate_content_length), "duplicate_content_length");
  EXPECT_EQ(name(http_error::bad_transfer_encoding), "bad_transfer_encoding");
  EXPECT_EQ(name(http_error::obs_fold), "obs_fold");
  EXPECT_EQ(name(http_error::bad_chunk), "bad_chunk");
  EXPECT_EQ(name(http_error::upstream_timeout), "upstream_timeout");
  EXPECT_EQ(name(http_error::draining), "draining");
  EXPECT_EQ(name(static_cast<http_error>(0)), "unknown");
  EXPECT_EQ(name(static_cast<http_error>(200)), "unknown");
  // Every code has a distinct, snake_case name.
  std::vector<std::string_view> seen;
  EXPECT_EQ(name(http_error::http2_preface), "http2_preface");
  for (int i = 1; i <= static_cast<int>(http_error::draining); ++i) {
    const auto n = name(static_cast<http_error>(i));
    EXPECT_NE(n, "unknown") << i;
    for (const char c : n)
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') << n;
    EXPECT_EQ(std::count(seen.begin(), seen.end(), n), 0) << n;
    seen.push_back(n);
  }
}

TEST(http1_error, statuses) {
  EXPECT_EQ(status_of(http_error::malformed), 400);
  EXPECT_EQ(status_of(http_error::smuggling_cl_te), 400);
  EXPECT_EQ(status_of(http_error::header_too_large), 431);
  EXPECT_EQ(status_of(http_error::too_many_headers), 431);
  EXPECT_EQ(status_of(http_error::target_too_long), 414);
  EXPECT_EQ(status_of(http_error::body_too_large), 413);
  EXPECT_EQ(status_of(http_error::forbidden), 403);
  EXPECT_EQ(status_of(http_error::no_route), 404);
  EXPECT_EQ(status_of(http_error::upstream_connect), 502);
  EXPECT_EQ(status_of(http_error::upstream_malformed), 502);
  EXPECT_EQ(status_of(http_error::no_upstream), 503);
  EXPECT_EQ(status_of(http_error::upstream_timeout), 504);
  EXPECT_EQ(status_of(http_error::draining), 503);
  EXPECT_FALSE(is_framing_error(http_error::draining));
  EXPECT_TRUE(is_framing_error(http_error::bad_chunk));
  EXPECT_TRUE(is_framing_error(http_error::body_too_large));
  EXPECT_FALSE(is_framing_error(http_error::forbidden));
  EXPECT_FALSE(is_framing_error(http_error::upstream_timeout));
  EXPECT_EQ(status_of(http_error::http2_preface), 400);
  EXPECT_TRUE(is_framing_error(http_error::http2_preface));
}

// --- requests ---------------------------------------------------------------------------

TEST(http1_request, simple_get) {
  const auto t =
      whole(direction::request, "GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */* \r\n\r\n");
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0], "head GET /a?b=c 1.1 [Host=x] [Accept=*/*] body=0/0 keep");
  EXPECT_EQ(t.events[1], "complete");
}

TEST(http1_request, head_views_and_raw) {
  http1_parser p(direction::request);
  const std::string in = "POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
  auto r = p.parse(in);
  ASSERT_EQ(r.status, parse_status::head);
  EXPECT_EQ(r.consumed, in.size() - 3);
  EXPECT_EQ(p.head().raw, in.substr(0, in.size() - 3));
  EXPECT_EQ(p.head().method, "POST");
  EXPECT_EQ(p.head().body, body_kind::content_length);
  EXPECT_EQ(p.head().content_length, 3u);
  ASSERT_NE(p.head().find("Content-Length"), nullptr);
  EXPECT_EQ(p.head().find("CONTENT-LENGTH")->value, "3");
  EXPECT_EQ(p.head().find("absent"), nullptr);
  r = p.parse(std::span<const char>(in).subspan(r.consumed));
  ASSERT_EQ(r.status, parse_status::body);
  EXPECT_EQ(std::string_view(r.body.data(), r.body.size()), "abc");
  EXPECT_EQ(p.parse({}).status, parse_status::complete);
  EXPECT_EQ(p.parse({}).status, parse_status::need_more);
  EXPECT_EQ(p.messages(), 1u);
}

bool within(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

TEST(http1_request, views_point_into_the_head_after_it_grew) {
  // Regression: the start line's views were taken before the header lines were appended,
  // and the buffer moved when it grew (found by ASan).
  http1_parser p(direction::request);
  const std::string in = "GET /t HTTP/1.1\r\nX: " + std::string(20000, 'v') + "\r\n\r\n";
  ASSERT_EQ(p.parse(in).status, parse_status::head);
  EXPECT_TRUE(within(p.head().method, p.head().raw));
  EXPECT_TRUE(within(p.head().target, p.head().raw));
  EXPECT_EQ(p.head().method, "GET");
  EXPECT_EQ(p.head().target, "/t");
  http1_parser q(direction::response);
  const std::string out = "HTTP/1.1 200 Fine\r\nX: " + std::string(20000, 'v') + "\r\n\r\n";
  ASSERT_EQ(q.parse(out).status, parse_status::head);
  EXPECT_TRUE(within(q.head().reason, q.head().raw));
  EXPECT_EQ(q.head().reason, "Fine");
}

TEST(http1_request, chunked_body_is_raw_wire_bytes) {
  const std::string body = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                           "Trailer-X: t\r\n\r\n";
  const auto t =
      whole(direction::request, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body);
  ASSERT_EQ(t.events.size(), 3u);
  EXPECT_EQ(t.events[0], "head POST / 1.1 [Transfer-Encoding=chunked] body=2/0 keep");
  EXPECT_EQ(t.events[1], "body:" + body);
  EXPECT_EQ(t.events[2], "complete");
}

// A gRPC answer crossing an HTTP/1.1 hop between nodes carries its status in the chunked
// body's trailer section: the parser reads it there, whole or a byte at a time.
TEST(http1_response, a_chunked_bodys_trailers_give_the_grpc_status) {
  const auto status_of = [](const std::string& trailers, bool bytewise_feed) {
    const std::string in = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
                           "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" +
                           trailers + "\r\n";
    http1_parser p(direction::response);
    std::size_t at = 0;
    parse_result r;
    for (std::size_t turns = 0; turns <= 2 * in.size(); ++turns) { // bounded
      const auto n = bytewise_feed ? std::min<std::size_t>(1, in.size() - at) : in.size() - at;
      r = p.parse(std::span<const char>(in.data() + at, n));
      at += r.consumed;
      if (r.status == parse_status::complete || r.status == parse_status::error)
        break;
    }
    EXPECT_EQ(r.status, parse_status::complete) << trailers;
    return p.trailer_grpc_status();
  };
  for (const bool bytewise_feed : {false, true}) {
    EXPECT_EQ(status_of("grpc-status: 5\r\ngrpc-message: nope\r\n", bytewise_feed), 5);
    EXPECT_EQ(status_of("grpc-message: x\r\nGrpc-Status:0\r\n", bytewise_feed), 0);
    EXPECT_EQ(status_of("grpc-status: 14  \r\n", bytewise_feed), 14);
    EXPECT_EQ(status_of("grpc-status: soon\r\n", bytewise_feed), 2); // not a number
    EXPECT_EQ(status_of("grpc-status: 1000\r\n", bytewise_feed), 2); // above 999
    EXPECT_EQ(status_of("grpc-status: " + std::string(40, '1') + "\r\n", bytewise_feed), 2);
    EXPECT_EQ(status_of("grpc-statuses: 5\r\n", bytewise_feed), std::nullopt);
    EXPECT_EQ(status_of("x-grpc-status: 5\r\n", bytewise_feed), std::nullopt);
    EXPECT_EQ(status_of("", bytewise_feed), std::nullopt);
  }
  // The next message starts without it.
  http1_parser p(direction::response);
  const std::string first = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                            "0\r\ngrpc-status: 7\r\n\r\n";
  const std::string second = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  std::size_t at = 0;
  parse_result r;
  for (int turns = 0; turns < 8 && r.status != parse_status::complete; ++turns) {
    r = p.parse(std::span<const char>(first).subspan(at));
    at += r.consumed;
  }
  ASSERT_EQ(r.status, parse_status::complete);
  ASSERT_EQ(p.trailer_grpc_status(), 7);
  ASSERT_EQ(p.parse(second).status, parse_status::head);
  EXPECT_EQ(p.trailer_grpc_status(), std::nullopt);
}

TEST(http1_request, pipelined_requests_one_at_a_time) {
  const std::string a = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string b = "POST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
  const std::string c = "GET /3 HTTP/1.1\r\nConnection: close\r\n\r\n";
  http1_parser p(direction::request);
  const std::string all = a + b + c;
  std::span<const char> in(all);
  auto r = p.parse(in);
  ASSERT_EQ(r.status, parse_status::head);
  EXPECT_EQ(r.consumed, a.size()); // Stops at the end of the first head.
  in = in.subspan(r.consumed);
  EXPECT_EQ(p.parse(in).status, parse_status::complete);
  EXPECT_EQ(p.head().target, "/1"); // Still readable after complete.
  const auto t = drive(p, std::string_view(in.data(), in.size()), {});
  ASSERT_EQ(t.events.size(), 5u);
  EXPECT_EQ(t.events[0], "head POST /2 1.1 [Content-Length=2] body=1/2 keep");
  EXPECT_EQ(t.events[1], "body:hi");
  EXPECT_EQ(t.events[3], "head GET /3 1.1 [Connection=close] body=0/0 close");
  EXPECT_EQ(p.messages(), 3u);
}

TEST(http1_request, keep_alive_rules) {
  auto ka = [](std::string_view req) {
    http1_parser p(direction::request);
    const auto r = p.parse(req);
    EXPECT_EQ(r.status, parse_status::head) << req;
    return p.head().keep_alive;
  };
  EXPECT_TRUE(ka("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_FALSE(ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(ka("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n"));
  EXPECT_FALSE(ka("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  EXPECT_TRUE(ka("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
}

TEST(http1_request, expect_100_continue) {
  http1_parser p(direction::request);
  ASSERT_EQ(p.parse("PUT /f HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").status,
            parse_status::head);
  EXPECT_TRUE(p.head().expect_continue);
  http1_parser q(direction::request);
  ASSERT_EQ(q.parse("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").status, parse_status::head);
  EXPECT_FALSE(q.head().expect_continue); // HTTP/1.0 has no 100-continue.
  http1_parser r(direction::request);
  ASSERT_EQ(r.parse("GET / HTTP/1.1\r\n\r\n").status, parse_status::head);
  EXPECT_FALSE(r.head().expect_continue);
}

TEST(http1_request, upgrade_leaves_the_rest_opaque) {
  const std::string req = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                          "Upgrade: websocket\r\n\r\n";
  const std::string raw = "\x81\x05hello GET / HTTP/1.1\r\n"s;
  const auto a = whole(direction::request, req + raw);
  const auto b = bytewise(direction::request, req + raw);
  ASSERT_EQ(a.events.size(), 3u);
  EXPECT_NE(a.events[0].find(" upgrade"), std::string::npos);
  EXPECT_EQ(a.events[1], "complete");
  EXPECT_EQ(a.events[2], "upgrade");
  EXPECT_EQ(a.opaque, raw);
  EXPECT_EQ(a, b);
}

TEST(http1_request, upgrade_needs_connection_upgrade) {
  http1_parser p(direction::request);
  ASSERT_EQ(p.parse("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").status, parse_status::head);
  EXPECT_FALSE(p.head().upgrade);
}

TEST(http1_request, declined_upgrade_resumes_http) {
  http1_parser p(direction::request);
  const std::string in = "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n";
  ASSERT_EQ(p.parse(in).status, parse_status::head);
  EXPECT_EQ(p.parse({}).status, parse_status::complete);
  EXPECT_EQ(p.parse("GET").status, parse_status::upgrade);
  p.resume_after_upgrade();
  const auto t = drive(p, "GET /2 HTTP/1.1\r\n\r\n", {});
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0], "head GET /2 1.1 body=0/0 keep");
}

TEST(http1_request, connect_is_a_tunnel) {
  const std::string raw = "\x16\x03\x01 tls bytes";
  const auto t =
      whole(direction::request, "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n" + raw);
  ASSERT_EQ(t.events.size(), 3u);
  EXPECT_EQ(t.events[0], "head CONNECT db:5432 1.1 [Host=db:5432] body=0/0 keep upgrade");
  EXPECT_EQ(t.events[2], "upgrade");
  EXPECT_EQ(t.opaque, raw);
  EXPECT_EQ(refusal("CONNECT db:5432 HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"),
            http_error::malformed);
}

TEST(http1_request, leading_empty_lines_are_skipped) {
  const auto t = whole(direction::request, "\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0], "head GET / 1.1 body=0/0 keep");
  EXPECT_EQ(refusal("\nGET / HTTP/1.1\r\n\r\n"), http_error::bare_lf);
}

TEST(http1_request, finish) {
  http1_parser idle(direction::request);
  EXPECT_EQ(idle.finish().status, parse_status::need_more); // Clean close between messages.
  http1_parser mid_head(direction::request);
  EXPECT_EQ(mid_head.parse("GET / HT").status, parse_status::need_more);
  EXPECT_EQ(mid_head.finish().error, http_error::truncated);
  http1_parser mid_body(direction::request);
  EXPECT_EQ(mid_body.parse("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n").status,
            parse_status::head);
  EXPECT_EQ(mid_body.finish().status, parse_status::error);
}

TEST(http1_request, header_value_whitespace_and_empty_values) {
  const auto t = whole(direction::request, "GET / HTTP/1.1\r\nA:\r\nB: \t x y \t\r\nC:z\r\n\r\n");
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0], "head GET / 1.1 [A=] [B=x y] [C=z] body=0/0 keep");
}

TEST(http1_request, obs_text_in_value_is_accepted) {
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"), std::nullopt);
}

// --- smuggling and malformed input: one test per case, exact bytes ------------------------

TEST(http1_smuggling, content_length_and_transfer_encoding) {
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "0\r\n\r\n"),
            http_error::smuggling_cl_te);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                    "0\r\n\r\n"),
            http_error::smuggling_cl_te);
  EXPECT_EQ(response_refusal("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            http_error::smuggling_cl_te);
}

TEST(http1_request, an_http2_client_preface_is_named_as_such) {
  // What a gRPC client (HTTP/2 with prior knowledge) sends first.
  EXPECT_EQ(refusal(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                    std::string("\0\0\0\x04\0\0\0\0\0", 9)),
            http_error::http2_preface);
  // Its first line is enough; another method or version with HTTP/2.0 stays bad_version.
  EXPECT_EQ(refusal("PRI * HTTP/2.0\r\n"), http_error::http2_preface);
  EXPECT_EQ(refusal("GET / HTTP/2.0\r\n\r\n"), http_error::bad_version);
  // PRI is HTTP/2's alone: in an HTTP/1.x request it is refused, with fields or without
  // (llhttp took a bare "PRI * HTTP/1.0" head and refused one with fields; the fuzzer's
  // forward check found it).
  EXPECT_EQ(refusal("PRI * HTTP/1.0\r\n\r\n"), http_error::bad_method);
  EXPECT_EQ(refusal("PRI * HTTP/1.1\r\nHost: a\r\n\r\n"), http_error::bad_method);
}

TEST(http1_smuggling, content_length_twice_differing) {
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            http_error::duplicate_content_length);
}

TEST(http1_smuggling, content_length_twice_identical_is_refused_too) {
  // RFC 9112 6.3 allows accepting identical repeats; we refuse them (as llhttp does): no
  // legitimate client sends them, and one rule is easier to reason about across hops.
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
            http_error::duplicate_content_length);
}

TEST(http1_smuggling, content_length_list_sign_hex_overflow_empty) {
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"),
            http_error::bad_content_length);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"),
            http_error::bad_content_length);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            http_error::bad_content_length);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello"),
            http_error::bad_content_length);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            http_error::bad_content_length);
}

TEST(http1_smuggling, transfer_encoding_final_coding_not_chunked_in_request) {
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
            http_error::bad_transfer_encoding);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            http_error::bad_transfer_encoding);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
            http_error::bad_transfer_encoding);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            http_error::bad_transfer_encoding);
}

TEST(http1_smuggling, transfer_encoding_empty_or_in_http10) {
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc"),
            http_error::bad_transfer_encoding);
  EXPECT_EQ(refusal("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            http_error::bad_transfer_encoding);
}

TEST(http1_smuggling, transfer_encoding_accepted_forms) {
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            std::nullopt);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"),
            std::nullopt);
}

TEST(http1_smuggling, obs_fold) {
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), http_error::obs_fold);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"), http_error::obs_fold);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), http_error::obs_fold);
}

TEST(http1_smuggling, bare_lf) {
  EXPECT_EQ(refusal("GET / HTTP/1.1\nHost: a\r\n\r\n"), http_error::bare_lf);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), http_error::bare_lf);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost: a\r\n\n"), http_error::bare_lf);
  EXPECT_EQ(refusal("GET / HTTP/1.1\nHost: a\n\n"), http_error::bare_lf);
}

TEST(http1_smuggling, bare_cr) {
  EXPECT_EQ(refusal("GET / HTTP/1.1\rHost: a\r\n\r\n"), http_error::bare_cr);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), http_error::bare_cr);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), http_error::bare_cr);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX: a\r\r\n\r\n"), http_error::bare_cr);
}

TEST(http1_smuggling, chunk_size_not_hex) {
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "z\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "0x5\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "-5\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + " 5\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "5 \r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
}

TEST(http1_smuggling, chunk_size_overflow) {
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "1000000000000000000000\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "10000000000000000\r\n"), http_error::bad_chunk); // 2^64
  // 15 hex digits is the most accepted; leading zeros count.
  EXPECT_EQ(refusal(head + "000000000000005\r\nhello\r\n0\r\n\r\n"), std::nullopt);
  EXPECT_EQ(refusal(head + "0000000000000005\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
}

TEST(http1_smuggling, chunk_data_not_followed_by_crlf) {
  // llhttp built without LLHTTP_STRICT_MODE accepts the first of these.
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "5\r\nhelloXX0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "5\r\nhello\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "5\r\nhello\r0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "3\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
}

TEST(http1_smuggling, chunk_line_bare_lf_and_bare_cr) {
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "5\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "5\rhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "0\n\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "0\r\n\n"), http_error::bare_lf);
}

TEST(http1_smuggling, chunk_extension_abuse) {
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "5;a=b\r\nhello\r\n0\r\n\r\n"), std::nullopt);
  EXPECT_EQ(refusal(head + "5;a=b\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n"), http_error::bad_chunk);
  EXPECT_EQ(refusal(head + "5;a\0b\r\nhello\r\n0\r\n\r\n"s), http_error::bad_chunk);
  // A chunk-size line is bounded (extension flooding): exactly at the bound, one over.
  http1_limits limits;
  limits.max_chunk_line_bytes = 16; // "5;" + 12 + CR = 15, LF does not count
  EXPECT_EQ(refusal(head + "5;" + std::string(13, 'x') + "\r\nhello\r\n0\r\n\r\n", limits),
            std::nullopt);
  EXPECT_EQ(refusal(head + "5;" + std::string(14, 'x') + "\r\nhello\r\n0\r\n\r\n", limits),
            http_error::bad_chunk);
}

TEST(http1_smuggling, trailer_is_checked_like_headers) {
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "0\r\nX: y\r\n\r\n"), std::nullopt);
  EXPECT_EQ(refusal(head + "0\r\nX: y\r\n z\r\n\r\n"), http_error::obs_fold);
  EXPECT_EQ(refusal(head + "0\r\nX : y\r\n\r\n"), http_error::space_before_colon);
  EXPECT_EQ(refusal(head + "0\r\nX: y\nZ: 1\r\n\r\n"), http_error::bare_lf);
  EXPECT_EQ(refusal(head + "0\r\nX: y\rZ: 1\r\n\r\n"), http_error::bare_cr);
  EXPECT_EQ(refusal(head + "0\r\nX: a\0b\r\n\r\n"s), http_error::bad_header);
  EXPECT_EQ(refusal(head + "0\r\nnocolon\r\n\r\n"), http_error::bad_header);
  EXPECT_EQ(refusal(head + "0\r\n: v\r\n\r\n"), http_error::bad_header);
}

TEST(http1_smuggling, whitespace_between_name_and_colon) {
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), http_error::space_before_colon);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), http_error::space_before_colon);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n"
                    "\r\nabc"),
            http_error::space_before_colon);
}

TEST(http1_smuggling, nul_and_control_bytes_in_headers) {
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"s), http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX: a\x01"
                    "b\r\n\r\n"),
            http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX: a\x7f"
                    "b\r\n\r\n"),
            http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX\0Y: ab\r\n\r\n"s), http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX\x01: ab\r\n\r\n"), http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nX(Y): ab\r\n\r\n"), http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nnocolon\r\n\r\n"), http_error::bad_header);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\n: empty-name\r\n\r\n"), http_error::bad_header);
}

TEST(http1_smuggling, invalid_method) {
  EXPECT_EQ(refusal("G@T / HTTP/1.1\r\n\r\n"), http_error::bad_method);
  EXPECT_EQ(refusal("get / HTTP/1.1\r\n\r\n"), http_error::bad_method);
  EXPECT_EQ(refusal("FOO / HTTP/1.1\r\n\r\n"), http_error::bad_method);
  EXPECT_EQ(refusal("DESCRIBE / HTTP/1.1\r\n\r\n"), http_error::bad_method); // RTSP only
  EXPECT_EQ(refusal(" / HTTP/1.1\r\n\r\n"), http_error::bad_method);
}

TEST(http1_smuggling, invalid_version) {
  EXPECT_EQ(refusal("GET / HTTP/1.2\r\n\r\n"), http_error::bad_version);
  EXPECT_EQ(refusal("GET / HTTP/2.0\r\n\r\n"), http_error::bad_version);
  EXPECT_EQ(refusal("GET / HTTP/0.9\r\n\r\n"), http_error::bad_version);
  EXPECT_EQ(refusal("GET / http/1.1\r\n\r\n"), http_error::bad_version);
  EXPECT_EQ(refusal("GET /\r\n\r\n"), http_error::bad_version);
  EXPECT_EQ(response_refusal("HTTP/1.2 200 OK\r\n\r\n"), http_error::bad_version);
  EXPECT_EQ(response_refusal("HTTP/2 200 OK\r\n\r\n"), http_error::bad_version);
}

TEST(http1_smuggling, invalid_target) {
  EXPECT_EQ(refusal("GET  / HTTP/1.1\r\n\r\n"), http_error::bad_target);
  EXPECT_EQ(refusal("GET /a b HTTP/1.1\r\n\r\n"), http_error::bad_target);
  EXPECT_EQ(refusal("GET /a\tb HTTP/1.1\r\n\r\n"), http_error::bad_target);
  EXPECT_EQ(refusal("GET /a\x01"
                    "b HTTP/1.1\r\n\r\n"),
            http_error::bad_target);
  EXPECT_EQ(refusal("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), http_error::bad_target);
}

TEST(http1_smuggling, malformed_status_line) {
  EXPECT_EQ(response_refusal("HTTP/1.1 2000 OK\r\n\r\n"), http_error::malformed);
  EXPECT_EQ(response_refusal("HTTP/1.1 20 OK\r\n\r\n"), http_error::malformed);
  EXPECT_EQ(response_refusal("HTTP/1.1 099 OK\r\n\r\n"), http_error::malformed);
  EXPECT_EQ(response_refusal("HTTP/1.1 200 O\x01K\r\n\r\n"), http_error::malformed);
  EXPECT_EQ(response_refusal("ICY 200 OK\r\n\r\n"), http_error::malformed);
}

// --- limits: exactly at the bound and one over --------------------------------------------

TEST(http1_limits, head_bytes) {
  http1_limits limits;
  limits.max_head_bytes = 64;
  const std::string start = "GET / HTTP/1.1\r\nX: "; // 19 bytes, + value + "\r\n\r\n"
  const std::string at = start + std::string(64 - 19 - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(at.size(), 64u);
  EXPECT_EQ(refusal(at, limits), std::nullopt);
  const std::string over = start + std::string(64 - 19 - 3, 'a') + "\r\n\r\n";
  EXPECT_EQ(refusal(over, limits), http_error::header_too_large);
  // An unterminated head stops at the bound; nothing past it is buffered.
  http1_parser p(direction::request, limits);
  const std::string flood(1000, 'a');
  const auto r = p.parse("GET /" + flood);
  EXPECT_EQ(r.status, parse_status::error);
  EXPECT_EQ(r.error, http_error::header_too_large);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(http1_limits, default_head_bytes_is_64k) {
  const std::string start = "GET / HTTP/1.1\r\nX: ";
  const std::string at = start + std::string(65536 - 19 - 4, 'a') + "\r\n\r\n";
  EXPECT_EQ(refusal(at), std::nullopt);
  EXPECT_EQ(refusal(start + std::string(65536 - 19 - 3, 'a') + "\r\n\r\n"),
            http_error::header_too_large);
}

TEST(http1_limits, header_count) {
  http1_limits limits;
  limits.max_headers = 3;
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits), std::nullopt);
  EXPECT_EQ(refusal("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits),
            http_error::too_many_headers);
  std::string at = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i)
    at += "H" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(refusal(at + "\r\n"), std::nullopt);
  EXPECT_EQ(refusal(at + "H100: v\r\n\r\n"), http_error::too_many_headers);
  EXPECT_EQ(status_of(http_error::too_many_headers), 431);
}

TEST(http1_limits, trailer_count) {
  http1_limits limits;
  limits.max_headers = 1;
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "0\r\nA: 1\r\n\r\n", limits), std::nullopt);
  EXPECT_EQ(refusal(head + "0\r\nA: 1\r\nB: 2\r\n\r\n", limits), http_error::too_many_headers);
}

TEST(http1_limits, target_length) {
  http1_limits limits;
  limits.max_target_bytes = 8;
  EXPECT_EQ(refusal("GET /2345678 HTTP/1.1\r\n\r\n", limits), std::nullopt);
  EXPECT_EQ(refusal("GET /23456789 HTTP/1.1\r\n\r\n", limits), http_error::target_too_long);
  EXPECT_EQ(refusal("GET /" + std::string(8191, 'a') + " HTTP/1.1\r\n\r\n"), std::nullopt);
  EXPECT_EQ(refusal("GET /" + std::string(8192, 'a') + " HTTP/1.1\r\n\r\n"),
            http_error::target_too_long);
}

TEST(http1_limits, body_bytes) {
  http1_limits limits;
  limits.max_body_bytes = 5;
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", limits), std::nullopt);
  EXPECT_EQ(refusal("POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nhello!", limits),
            http_error::body_too_large);
  const std::string head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(refusal(head + "2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", limits), std::nullopt);
  EXPECT_EQ(refusal(head + "2\r\nhe\r\n4\r\nllo!\r\n0\r\n\r\n", limits),
            http_error::body_too_large);
}

// --- responses ----------------------------------------------------------------------------

TEST(http1_response, content_length) {
  const auto t = whole(direction::response, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
  ASSERT_EQ(t.events.size(), 3u);
  EXPECT_EQ(t.events[0], "head 200 OK 1.1 [Content-Length=2] body=1/2 keep");
  EXPECT_EQ(t.events[1], "body:hi");
}

TEST(http1_response, head_response_has_no_body) {
  const std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  const auto t = whole(direction::response, in, false, {"HEAD", "GET"});
  ASSERT_EQ(t.events.size(), 5u);
  EXPECT_EQ(t.events[0], "head 200 OK 1.1 [Content-Length=5] body=0/0 keep");
  EXPECT_EQ(t.events[1], "complete");
  EXPECT_EQ(t.events[2], "head 200 OK 1.1 [Content-Length=2] body=1/2 keep");
  EXPECT_EQ(t.events[3], "body:hi");
  EXPECT_EQ(t, bytewise(direction::response, in, false, {"HEAD", "GET"}));
}

TEST(http1_response, status_204_and_304_have_no_body) {
  for (const std::string status : {"204 No Content", "304 Not Modified"}) {
    SCOPED_TRACE(status);
    const auto t = whole(direction::response, "HTTP/1.1 " + status +
                                                  "\r\nContent-Length: 5\r\n\r\n"
                                                  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(t.events.size(), 4u);
    EXPECT_NE(t.events[0].find("body=0/0"), std::string::npos);
    EXPECT_EQ(t.events[2], "head 200 OK 1.1 [Content-Length=0] body=0/0 keep");
  }
}

TEST(http1_response, interim_100_then_final) {
  const std::string in = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                         "Content-Length: 1\r\n\r\nx";
  const auto t = whole(direction::response, in, false, {"HEAD"});
  ASSERT_EQ(t.events.size(), 4u);
  EXPECT_EQ(t.events[0], "head 100 Continue 1.1 body=0/0 keep");
  // The final response still answers the HEAD request: no body.
  EXPECT_EQ(t.events[2], "head 201 Created 1.1 [Content-Length=1] body=0/0 keep");
}

TEST(http1_response, until_close_body) {
  const std::string in = "HTTP/1.1 200 OK\r\nServer: s\r\n\r\nall of this\r\n\r\nis body";
  const auto a = whole(direction::response, in, true);
  ASSERT_EQ(a.events.size(), 3u);
  EXPECT_EQ(a.events[0], "head 200 OK 1.1 [Server=s] body=3/0 close");
  EXPECT_EQ(a.events[1], "body:all of this\r\n\r\nis body");
  EXPECT_EQ(a.events[2], "complete");
  EXPECT_EQ(a, bytewise(direction::response, in, true));
  // Transfer-Encoding without chunked last in a response: until close too.
  const auto b =
      whole(direction::response, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", true);
  ASSERT_EQ(b.events.size(), 3u);
  EXPECT_NE(b.events[0].find("body=3/0 close"), std::string::npos);
}

TEST(http1_response, chunked) {
  const std::string body = "3\r\nabc\r\n0\r\n\r\n";
  const auto t = whole(direction::response,
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + "HTTP/1.1");
  ASSERT_GE(t.events.size(), 3u);
  EXPECT_EQ(t.events[1], "body:" + body);
  EXPECT_EQ(t.events[2], "complete");
}

TEST(http1_response, switching_protocols_and_connect) {
  const auto a =
      whole(direction::response, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                                 "Upgrade: websocket\r\n\r\n\x81\x00"s);
  ASSERT_EQ(a.events.size(), 3u);
  EXPECT_EQ(a.events[2], "upgrade");
  EXPECT_EQ(a.opaque, "\x81\x00"s);
  const auto b = whole(direction::response, "HTTP/1.1 200 OK\r\n\r\nraw", false, {"CONNECT"});
  ASSERT_EQ(b.events.size(), 3u);
  EXPECT_EQ(b.events[2], "upgrade");
  EXPECT_EQ(b.opaque, "raw");
  const auto c = whole(direction::response, "HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", false,
                       {"CONNECT"});
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[1], "complete");
}

TEST(http1_response, http10_keep_alive) {
  http1_parser p(direction::response);
  ASSERT_EQ(p.parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").status, parse_status::head);
  EXPECT_FALSE(p.head().keep_alive);
  http1_parser q(direction::response);
  ASSERT_EQ(
      q.parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").status,
      parse_status::head);
  EXPECT_TRUE(q.head().keep_alive);
}

TEST(http1_response, status_without_reason) {
  const auto t = whole(direction::response, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0], "head 200  1.1 [Content-Length=0] body=0/0 keep");
}

TEST(http1_speed, steady_state_allocates_nothing) {
  if (!STARLING_COUNT_ALLOCATIONS)
    GTEST_SKIP() << "operator new belongs to the sanitizer";
  std::string stream;
  for (int i = 0; i < 200; ++i)
    stream += "POST /api/v1/items?id=" + std::to_string(i) +
              " HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\nAccept: */*\r\n"
              "Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"
              "GET /x HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, x-a\r\nx-a: 1\r\n\r\n";
  http1_parser p(direction::request);
  std::string out;
  out.reserve(4096);
  forward_options opts;
  opts.client_address = "10.1.2.3";
  std::size_t heads = 0;
  std::span<const char> in(stream);
  auto step = [&] {
    const auto r = p.parse(in);
    if (r.status == parse_status::head) {
      out.clear();
      write_forward_head(p.head(), opts, out);
      ++heads;
    }
    in = in.subspan(r.consumed);
    return r.status;
  };
  while (heads < 2) // Warm up: the buffers reach their working size.
    ASSERT_NE(step(), parse_status::error);
  allocations = 0;
  counting_allocations = true;
  void* (*volatile allocate)(std::size_t) = &::operator new; // not elided, unlike `new int`
  ::operator delete(allocate(8));                            // The counter works: this is one.
  EXPECT_EQ(allocations, 1u);
  allocations = 0;
  while (!in.empty())
    if (step() == parse_status::error)
      break;
  counting_allocations = false;
  EXPECT_EQ(heads, 400u);
  EXPECT_EQ(allocations, 0u);
}

// --- split invariance ---------------------------------------------------------------------

TEST(http1_split, random_splits_give_the_same_events) {
  const std::string requests =
      "GET /a HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"
      "POST /b HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
      "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
      "4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nT: 1\r\n\r\n"
      "\r\nGET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
      "GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nopaque\r\n";
  const std::string responses =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
      "HTTP/1.1 204 No Content\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
      "HTTP/1.1 200 OK\r\n\r\nuntil the end";
  const std::vector<std::string> methods{"GET", "HEAD", "GET", "GET", "GET"};
  const auto req_whole = whole(direction::request, requests);
  ASSERT_EQ(req_whole.events.size(), 13u);
  EXPECT_EQ(req_whole.events.back(), "upgrade");
  EXPECT_EQ(req_whole.opaque, "opaque\r\n");
  EXPECT_EQ(req_whole, bytewise(direction::request, requests));
  const auto resp_whole = whole(direction::response, responses, true, methods);
  ASSERT_EQ(resp_whole.events.size(), 15u);
  EXPECT_EQ(resp_whole, bytewise(direction::response, responses, true, methods));
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    auto cuts_for = [&](std::size_t size) {
      std::vector<std::size_t> cuts;
      std::size_t at = 0;
      while (true) {
        at += 1 + rng() % 24;
        if (at >= size)
          break;
        cuts.push_back(at);
      }
      return cuts;
    };
    http1_parser rp(direction::request);
    EXPECT_EQ(drive(rp, requests, cuts_for(requests.size())), req_whole);
    http1_parser sp(direction::response);
    EXPECT_EQ(drive(sp, responses, cuts_for(responses.size()), true, methods), resp_whole);
  }
}

// --- forwarding ---------------------------------------------------------------------------

std::string forward(direction dir, std::string_view in, const forward_options& opts = {},
                    std::vector<std::string> methods = {}) {
  http1_parser p(dir);
  if (!methods.empty())
    p.expect_response_to(methods[0]);
  const auto r = p.parse(in);
  EXPECT_EQ(r.status, parse_status::head) << in;
  std::string out = "prefix|";
  write_forward_head(p.head(), opts, out);
  EXPECT_TRUE(out.starts_with("prefix|")); // Appends, never replaces.
  return out.substr(7);
}

TEST(http1_forward, removes_hop_by_hop_and_adds_via_and_xff) {
  forward_options opts;
  opts.client_address = "10.0.0.7";
  opts.proto = "https";
  const std::string out =
      forward(direction::request,
              "POST /x?y HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\n"
              "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\n"
              "Trailer: T\r\nProxy-Connection: close\r\nUpgrade: h2c\r\n"
              "X-Forwarded-Proto: http\r\nAccept: */*\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              opts);
  EXPECT_EQ(out, "POST /x?y HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\n"
                 "Transfer-Encoding: chunked\r\nvia: 1.1 starling\r\n"
                 "x-forwarded-for: 10.0.0.7\r\nx-forwarded-proto: https\r\n\r\n");
}

TEST(http1_forward, appends_to_the_last_x_forwarded_for) {
  forward_options opts;
  opts.client_address = "10.0.0.7";
  const std::string out = forward(
      direction::request,
      "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\nx-forwarded-for: 2.2.2.2\r\n\r\n",
      opts);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\n"
                 "x-forwarded-for: 2.2.2.2, 10.0.0.7\r\nvia: 1.1 starling\r\n"
                 "x-forwarded-proto: http\r\n\r\n");
}

TEST(http1_forward, lines_go_out_as_read_only_when_they_read_name_colon_space_value) {
  // Lines already written as `name: value` CRLF go out as they came, several at once; the
  // others as append_header writes them (one space, no trailing whitespace); a dropped
  // field or the last x-forwarded-for between them changes nothing in the bytes.
  forward_options opts;
  opts.client_address = "10.0.0.7";
  const std::string out =
      forward(direction::request,
              "GET / HTTP/1.1\r\nHost: svc\r\nA: 1\r\nB:2\r\nC:   3  \r\nD: 4\r\n"
              "Keep-Alive: 5\r\nE: 5\r\nX-Forwarded-For: 9.9.9.9\r\nF: \r\nG:\r\n"
              "H: 8\t\r\nI: 9\r\n\r\n",
              opts);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: svc\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
                 "X-Forwarded-For: 9.9.9.9, 10.0.0.7\r\nF: \r\nG: \r\nH: 8\r\nI: 9\r\n"
                 "via: 1.1 starling\r\nx-forwarded-proto: http\r\n\r\n");
  // A head whose fields are views into other memory than its raw bytes (made by hand).
  const std::string name = "X-Made", value = "by hand";
  const std::vector<header> fields{{name, value}, {"Y", "z"}};
  message_head h;
  h.raw = "GET /m HTTP/1.1\r\nX-Made: by hand\r\nY: z\r\n\r\n";
  h.headers = fields;
  std::string made;
  write_forward_head(h, {}, made);
  EXPECT_EQ(made, "GET /m HTTP/1.1\r\nX-Made: by hand\r\nY: z\r\nvia: 1.1 starling\r\n"
                  "x-forwarded-proto: http\r\n\r\n");
}

TEST(http1_forward, a_connection_header_with_many_tokens_still_drops_every_field_it_names) {
  // Past the eight tokens kept in place, every token goes into a set (case-insensitive).
  std::string in = "GET / HTTP/1.1\r\nHost: svc\r\nConnection: t1, t2, t3, t4, t5\r\n"
                   "Connection: t6, t7, t8, t9, t10\r\n";
  for (int i = 1; i <= 11; ++i)
    in += "T" + std::to_string(i) + ": v\r\n";
  in += "\r\n";
  const auto out = forward(direction::request, in);
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: svc\r\nT11: v\r\nvia: 1.1 starling\r\n"
                 "x-forwarded-proto: http\r\n\r\n");
  http1_parser p(direction::request);
  ASSERT_EQ(p.parse(in).status, parse_status::head);
  const connection_options named(p.head());
  EXPECT_TRUE(named.names("T1"));
  EXPECT_TRUE(named.names("t10"));
  EXPECT_FALSE(named.names("t11"));
  EXPECT_FALSE(named.names("t"));
}

TEST(http1_forward, connection_cannot_drop_framing_or_host) {
  const std::string out =
      forward(direction::request, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                                  "Connection: content-length, host, transfer-encoding\r\n\r\n");
  EXPECT_NE(out.find("Content-Length: 1\r\n"), std::string::npos);
  EXPECT_NE(out.find("Host: h\r\n"), std::string::npos);
}

TEST(http1_forward, extra_headers_close_and_upgrade) {
  const std::array<header, 2> extra{header{"x-starling-service", "web"}, header{"x-b", "2"}};
  forward_options opts;
  opts.extra = extra;
  opts.proto = {};
  opts.close = true;
  EXPECT_EQ(forward(direction::request, "GET / HTTP/1.0\r\nA: 1\r\n\r\n", opts),
            "GET / HTTP/1.0\r\nA: 1\r\nvia: 1.0 starling\r\nx-starling-service: web\r\n"
            "x-b: 2\r\nconnection: close\r\n\r\n");
  EXPECT_EQ(forward(direction::request,
                    "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nvia: 1.1 starling\r\n"
            "x-forwarded-proto: http\r\nconnection: upgrade\r\n\r\n");
}

forward_options client_at(std::string_view address) {
  forward_options opts;
  opts.client_address = address;
  return opts;
}

TEST(http1_forward, response_head) {
  EXPECT_EQ(forward(direction::response,
                    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n"
                    "Keep-Alive: x\r\nX-Forwarded-For: kept\r\n\r\n",
                    client_at("1.2.3.4")),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Forwarded-For: kept\r\n"
            "via: 1.1 starling\r\n\r\n");
  EXPECT_EQ(forward(direction::response,
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                    "Upgrade: websocket\r\n\r\n"),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nvia: 1.1 starling\r\n"
            "connection: upgrade\r\n\r\n");
}

TEST(http1_forward, round_trip) {
  const std::string in = "PATCH /r/1?q=2 HTTP/1.1\r\nHost: svc.internal\r\n"
                         "Connection: close, X-Drop\r\nX-Drop: d\r\nX-Keep: Mixed Case\r\n"
                         "content-length: 4\r\nTE: trailers\r\nCookie: a=b; c=d\r\n\r\n";
  http1_parser p(direction::request);
  ASSERT_EQ(p.parse(in).status, parse_status::head);
  forward_options opts;
  opts.client_address = "192.0.2.1";
  std::string out;
  write_forward_head(p.head(), opts, out);
  http1_parser q(direction::request);
  const auto r = q.parse(out);
  ASSERT_EQ(r.status, parse_status::head);
  EXPECT_EQ(r.consumed, out.size());
  EXPECT_EQ(q.head().method, "PATCH");
  EXPECT_EQ(q.head().target, "/r/1?q=2");
  EXPECT_EQ(q.head().body, body_kind::content_length);
  EXPECT_EQ(q.head().content_length, 4u);
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& h : q.head().headers)
    got.emplace_back(h.name, h.value);
  const std::vector<std::pair<std::string, std::string>> want{
      {"Host", "svc.internal"},     {"X-Keep", "Mixed Case"}, {"content-length", "4"},
      {"Cookie", "a=b; c=d"},       {"via", "1.1 starling"},  {"x-forwarded-for", "192.0.2.1"},
      {"x-forwarded-proto", "http"}};
  EXPECT_EQ(got, want);
  EXPECT_TRUE(q.head().keep_alive); // Connection: close was the client's hop only.
}

// --- generated responses --------------------------------------------------------------------

TEST(http1_generated, every_status_parses_with_its_reason) {
  const std::vector<std::pair<http_error, std::uint16_t>> cases{
      {http_error::malformed, 400},        {http_error::forbidden, 403},
      {http_error::no_route, 404},         {http_error::body_too_large, 413},
      {http_error::header_too_large, 431}, {http_error::target_too_long, 414},
      {http_error::upstream_connect, 502}, {http_error::no_upstream, 503},
      {http_error::upstream_timeout, 504}};
  for (const auto& [reason, status] : cases) {
    SCOPED_TRACE(std::string(name(reason)));
    std::string out;
    write_error_response(reason, out);
    http1_parser p(direction::response);
    const auto t = drive(p, out, {});
    ASSERT_GE(t.events.size(), 2u);
    EXPECT_EQ(p.head().status, status);
    ASSERT_NE(p.head().find("x-starling-error"), nullptr);
    EXPECT_EQ(p.head().find("x-starling-error")->value, name(reason));
    EXPECT_EQ(p.head().find("content-type")->value, "text/plain");
    EXPECT_EQ(p.head().body, body_kind::content_length);
    // Framing errors always close; the others keep the connection unless asked.
    EXPECT_EQ(p.head().keep_alive, !is_framing_error(reason));
    ASSERT_EQ(t.events.size(), 3u);
    EXPECT_EQ(t.events[1].substr(5).size(), p.head().content_length);
    EXPECT_TRUE(t.events[1].ends_with("\n"));
    EXPECT_EQ(std::count(t.events[1].begin(), t.events[1].end(), '\n'), 1);
  }
}

TEST(http1_generated, exact_bytes_close_and_detail) {
  std::string out;
  write_error_response(http_error::header_too_large, out);
  EXPECT_EQ(out, "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                 "content-length: 50\r\nx-starling-error: header_too_large\r\n"
                 "connection: close\r\n\r\n"
                 "Request Header Fields Too Large: header_too_large\n");
  out.clear();
  write_error_response(http_error::forbidden, out, true, "rule deny-all\r\nX: y");
  EXPECT_EQ(out, "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 41\r\n"
                 "x-starling-error: forbidden\r\n"
                 "x-starling-error-detail: rule deny-allX: y\r\nconnection: close\r\n\r\n"
                 "Forbidden: forbidden (rule deny-allX: y)\n");
  // The field carries at most max_error_detail_bytes of it; the body all.
  out.clear();
  const std::string long_detail(max_error_detail_bytes + 10, 'd');
  write_error_response(http_error::forbidden, out, true, long_detail);
  EXPECT_NE(
      out.find("x-starling-error-detail: " + std::string(max_error_detail_bytes, 'd') + "\r\n"),
      std::string::npos);
  EXPECT_NE(out.find("(" + long_detail + ")"), std::string::npos);
}

// What a calling node takes from a peer's own answer: the detail as written, nothing from
// a field longer than a proxy writes or with a byte that is not printable (a hostile peer's).
TEST(http1_generated, a_peers_error_detail_is_taken_only_as_a_proxy_writes_it) {
  const auto detail_of = [](const std::string& head) {
    http1_parser p(direction::response);
    const auto r = p.parse(head);
    EXPECT_EQ(r.status, parse_status::head) << head;
    return std::string{error_detail_of(p.head())};
  };
  std::string out;
  write_error_response(http_error::forbidden, out, false, "denied by rule deny-web");
  EXPECT_EQ(detail_of(out), "denied by rule deny-web");
  out.clear();
  write_error_response(http_error::forbidden, out);
  EXPECT_EQ(detail_of(out), "");
  const std::string at_limit(max_error_detail_bytes, 'x');
  const auto head = [](const std::string& value) {
    return "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nx-starling-error: forbidden\r\n"
           "x-starling-error-detail: " +
           value + "\r\n\r\n";
  };
  EXPECT_EQ(detail_of(head(at_limit)), at_limit);
  EXPECT_EQ(detail_of(head(at_limit + "x")), "");
  EXPECT_EQ(detail_of(head("tab\there")), "");
  EXPECT_EQ(detail_of(head("caf\xc3\xa9")), "");
}

TEST(http1_generated, a_grpc_calls_answer_is_trailers_only_with_its_status) {
  std::string out;
  write_grpc_error_response("forbidden", 7, out,
                            "rule 100% \x01"
                            "deny");
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 7\r\n"
                 "grpc-message: forbidden (rule 100%25 deny)\r\nx-starling-error: forbidden\r\n"
                 "content-length: 0\r\n\r\n");
  // It parses as a response whose head ends the message.
  http1_parser p(direction::response);
  const auto r = p.parse(out);
  ASSERT_EQ(r.status, parse_status::head);
  EXPECT_EQ(p.head().status, 200);
  EXPECT_EQ(p.head().body, body_kind::none);
  // A peer's reason that is not a name is not repeated.
  out.clear();
  write_grpc_error_response("Bad\r\nname", 14, out);
  EXPECT_NE(out.find("grpc-message: error\r\nx-starling-error: error\r\n"), std::string::npos)
      << out;
  // gRPC's mapping of HTTP statuses.
  EXPECT_EQ(grpc_status_for_http(400), 13);
  EXPECT_EQ(grpc_status_for_http(401), 16);
  EXPECT_EQ(grpc_status_for_http(403), 7);
  EXPECT_EQ(grpc_status_for_http(404), 12);
  for (std::uint16_t s : {429, 502, 503, 504})
    EXPECT_EQ(grpc_status_for_http(s), 14) << s;
  for (std::uint16_t s : {413, 431, 500, 418})
    EXPECT_EQ(grpc_status_for_http(s), 2) << s;
}

TEST(http1_generated, an_http2_client_gets_settings_and_goaway_http_1_1_required) {
  std::string out;
  write_error_response(http_error::http2_preface, out, true, "ignored");
  // SETTINGS (type 4, empty, stream 0), then GOAWAY (type 7, 8 bytes, stream 0): last
  // stream 0, error HTTP_1_1_REQUIRED (0xd). RFC 9113 3.4, 6.5, 6.8, 7.
  EXPECT_EQ(out, std::string("\0\0\0\x04\0\0\0\0\0"
                             "\0\0\x08\x07\0\0\0\0\0"
                             "\0\0\0\0\0\0\0\x0d",
                             26));
}

TEST(http1_forward, an_http_1_0_response_goes_out_as_1_1_chunked_or_kept_alive) {
  forward_options opts;
  opts.as_http11 = true;
  opts.chunked = true;
  EXPECT_EQ(forward(direction::response, "HTTP/1.0 200 OK\r\nA: 1\r\n\r\n", opts),
            "HTTP/1.1 200 OK\r\nA: 1\r\nvia: 1.0 starling\r\ntransfer-encoding: chunked\r\n\r\n");
  // A 1.1 status line is left alone, and requests never change version.
  EXPECT_EQ(forward(direction::response, "HTTP/1.1 204 No Content\r\n\r\n", opts).substr(0, 26),
            "HTTP/1.1 204 No Content\r\nv");
  forward_options keep;
  keep.as_http11 = true;
  keep.keep_alive = true;
  keep.proto = {};
  EXPECT_EQ(forward(direction::request, "GET / HTTP/1.0\r\n\r\n", keep),
            "GET / HTTP/1.0\r\nvia: 1.0 starling\r\nconnection: keep-alive\r\n\r\n");
  keep.close = true; // close wins
  EXPECT_EQ(forward(direction::response, "HTTP/1.0 200 OK\r\n\r\n", keep),
            "HTTP/1.1 200 OK\r\nvia: 1.0 starling\r\nconnection: close\r\n\r\n");
}

// --- trust_heads ------------------------------------------------------------------------

/// The events of a parser that trusts its heads (fed whole, then to its end).
trace trusted(direction dir, std::string_view data, std::vector<std::string> methods = {}) {
  http1_parser p(dir);
  p.trust_heads();
  return drive(p, data, {}, true, std::move(methods));
}

// A trusting parser splits the fields itself: on the heads h2::to_h1_request and
// to_h1_response write, and on any other head it accepts, its events (fields, framing,
// keep-alive, expect, upgrade, refusals) are llhttp's; what those writers never write goes
// through llhttp and is refused or accepted as without trust.
TEST(http1_trusted, requests_give_the_same_events_as_llhttp) {
  const std::vector<std::string_view> streams{
      "GET / HTTP/1.1\r\nhost: svc\r\nvia: 2.0 starling\r\nx-forwarded-proto: http\r\n\r\n",
      "POST /p?q HTTP/1.1\r\nhost: svc\r\ncookie: a=1; b=2\r\ncontent-length: 5\r\n\r\nhello"
      "GET /2 HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
      "PUT / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
      "POST / HTTP/1.1\r\nhost: svc\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nx",
      "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nX-Empty:\r\nX-Pad:   v  \r\n\r\n",
      "GET / HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n",
      // Never written by to_h1_request: llhttp decides.
      "GET /ws HTTP/1.1\r\nhost: svc\r\nconnection: upgrade\r\nupgrade: ws\r\n\r\nopaque",
      "GET / HTTP/1.1\r\nconnection: close, foo\r\nfoo: 1\r\n\r\n",
      "GET / HTTP/1.1\r\nproxy-connection: keep-alive\r\n\r\n",
      "CONNECT svc:443 HTTP/1.1\r\nhost: svc:443\r\n\r\n",
      "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
      "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
      "POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\nhello",
      "POST / HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n",
      "POST / HTTP/1.1\r\ncontent-length:\r\n\r\n",
      "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
  };
  for (const auto s : streams)
    EXPECT_EQ(trusted(direction::request, s), whole(direction::request, s, true)) << s;
}

TEST(http1_trusted, responses_give_the_same_events_as_llhttp) {
  const std::vector<std::pair<std::string_view, std::vector<std::string>>> streams{
      {"HTTP/1.1 200 OK\r\nserver: nginx\r\nvia: 2.0 starling\r\ncontent-length: 2\r\n\r\nok",
       {"GET"}},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nvia: 2.0 starling\r\n\r\n",
       {"POST"}},
      {"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", {"HEAD"}},
      {"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n", {"GET"}},
      {"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", {"GET"}},
      {"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nuntil close",
       {"GET"}},
      {"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n", {"GET"}},
      {"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ws\r\n\r\nraw",
       {"GET"}},
      {"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nzz", {"GET"}},
      {"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok", {"GET"}},
  };
  for (const auto& [s, methods] : streams)
    EXPECT_EQ(trusted(direction::response, s, methods),
              whole(direction::response, s, true, methods))
        << s;
}

TEST(http1_trusted, trust_ends_with_the_first_final_message) {
  // A stream carries one exchange: a head after it is parsed as a stranger's, while the
  // interim responses before the final one are trusted as it is.
  const auto t = trusted(direction::request,
                         "GET /1 HTTP/1.1\r\nx: 1\r\n\r\nGET /2 HTTP/1.1\r\nx: a\x01b\r\n\r\n");
  ASSERT_EQ(t.events.size(), 3u);
  EXPECT_EQ(t.error, http_error::bad_header);
  const auto r = trusted(direction::response,
                         "HTTP/1.1 100 Continue\r\nx: a\x01b\r\n\r\n"
                         "HTTP/1.1 200 OK\r\nx: a\x01b\r\ncontent-length: 0\r\n\r\n"
                         "HTTP/1.1 200 OK\r\nx: a\x01b\r\ncontent-length: 0\r\n\r\n",
                         {"GET", "GET"});
  ASSERT_EQ(r.events.size(), 5u);
  EXPECT_EQ(r.error, http_error::bad_header);
}

TEST(http1_trusted, line_discipline_is_still_checked) {
  // The line checks come before the fields are split, with or without trust.
  for (const std::string_view s :
       {"GET / HTTP/1.1\r\nhost: svc\nx: 1\r\n\r\n", "GET / HTTP/1.1\r\nx: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nx: a\r\n b\r\n\r\n", "GET / HTTP/1.1\r\nx : a\r\n\r\n",
        "GET / HTTP/1.1\r\nnocolon\r\n\r\n", "GET / HTTP/1.1\r\n: a\r\n\r\n"}) {
    const auto t = trusted(direction::request, s);
    EXPECT_TRUE(t.error.has_value()) << s;
    EXPECT_EQ(t.error, whole(direction::request, s, true).error) << s;
  }
}

TEST(http1_trusted, field_bytes_are_not_checked_again) {
  // What llhttp alone refuses (a control byte in a value, a name that is not a token) a
  // trusting parser takes: it reads only what h2::to_h1_* wrote from fields checked when
  // they were decoded, never a socket's bytes (the data plane's h2 streams).
  for (const std::string_view s : {std::string_view("GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n"),
                                   std::string_view("GET / HTTP/1.1\r\nx(y): 1\r\n\r\n")}) {
    EXPECT_TRUE(whole(direction::request, s).error.has_value()) << s;
    const auto t = trusted(direction::request, s);
    EXPECT_FALSE(t.error.has_value()) << s;
    ASSERT_FALSE(t.events.empty());
    EXPECT_TRUE(t.events.front().starts_with("head GET / 1.1 [")) << t.events.front();
  }
}

// --- character classes -----------------------------------------------------------------

TEST(http_text, the_byte_table_is_rfc_9110s_tchar_and_field_bytes) {
  const std::string_view specials = "!#$%&'*+-.^_`|~";
  for (int i = 0; i < 256; ++i) {
    const auto c = static_cast<char>(i);
    const bool alpha = (i >= 'a' && i <= 'z') || (i >= 'A' && i <= 'Z');
    const bool tchar =
        alpha || (i >= '0' && i <= '9') || specials.find(c) != std::string_view::npos;
    EXPECT_EQ(text::is_tchar(c), tchar) << i;
    EXPECT_EQ(text::is_token(std::string_view(&c, 1)), tchar) << i;
    EXPECT_EQ(text::is_lower_token(std::string_view(&c, 1)), tchar && !(i >= 'A' && i <= 'Z')) << i;
    EXPECT_EQ(text::all_field_bytes(std::string_view(&c, 1)), i == '\t' || (i >= 0x20 && i != 0x7f))
        << i;
  }
  EXPECT_FALSE(text::is_token(""));
  EXPECT_FALSE(text::is_lower_token(""));
  EXPECT_TRUE(text::all_field_bytes(""));
  EXPECT_TRUE(text::is_token("X-Custom_1"));
  EXPECT_FALSE(text::is_lower_token("X-Custom_1"));
  EXPECT_TRUE(text::is_lower_token("x-custom_1"));
  EXPECT_FALSE(text::is_token("x custom"));
  EXPECT_FALSE(text::all_field_bytes(std::string_view("a\0b", 3)));
  EXPECT_TRUE(text::all_field_bytes("caf\xc3\xa9 \t v")); // obs-text, SP and HT
}

// --- adopt_head ---------------------------------------------------------------------------

/// Where the header lines of a head's text lie, found by splitting its lines (what
/// h2::to_h1_request records while it writes them).
std::vector<header_span> spans_of(std::string_view text) {
  std::vector<header_span> spans;
  auto at = text.find("\r\n") + 2;
  while (at + 2 < text.size()) {
    const auto eol = text.find("\r\n", at);
    const auto colon = text.find(':', at);
    auto value = colon + 1;
    while (value < eol && text[value] == ' ')
      ++value;
    spans.push_back({static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(colon - at),
                     static_cast<std::uint32_t>(value), static_cast<std::uint32_t>(eol - value)});
    at = eol + 2;
  }
  return spans;
}

/// The events of a parser given the first head of `data` (adopt_head), then the rest of
/// `data` as bytes.
trace adopted(direction dir, std::string_view data, http1_limits limits = {}) {
  http1_parser p(dir, limits);
  const auto text = data.substr(0, data.find("\r\n\r\n") + 4);
  const auto r = p.adopt_head(text, spans_of(text));
  EXPECT_EQ(r.consumed, 0u);
  if (r.status == parse_status::error) {
    trace t;
    t.events.push_back("error " + std::string(name(r.error)));
    t.error = r.error;
    return t;
  }
  EXPECT_EQ(r.status, parse_status::head);
  EXPECT_EQ(p.head().raw, text);
  auto t = drive(p, data.substr(text.size()), {}, true);
  t.events.insert(t.events.begin(), describe(p.head()));
  return t;
}

// A head given split (a peer's HTTP/2 request on node B) gives the events parsing its
// bytes gives: the same fields, framing, flags and body; what to_h1_request never writes
// goes through llhttp, refused or taken as without adoption.
TEST(http1_adopt, a_given_head_gives_the_events_of_its_bytes) {
  const std::vector<std::string_view> streams{
      "GET / HTTP/1.1\r\nhost: svc\r\nvia: 2.0 starling\r\nx-forwarded-proto: http\r\n\r\n",
      "POST /p?q HTTP/1.1\r\nhost: svc\r\ncookie: a=1; b=2\r\ncontent-length: 5\r\n\r\nhello",
      "GET /2 HTTP/1.1\r\nhost: \r\nconnection: close\r\n\r\n",
      "PUT / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
      "POST / HTTP/1.1\r\nhost: svc\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nx",
      "OPTIONS * HTTP/1.1\r\nhost: svc\r\n\r\n",
      // Never written by to_h1_request: llhttp decides.
      "PROPFIND /d HTTP/1.1\r\nhost: svc\r\n\r\n",
      "FOO / HTTP/1.1\r\nhost: svc\r\n\r\n",
      "GET http://svc/ HTTP/1.1\r\nhost: svc\r\n\r\n",
      "GET / HTTP/1.1\r\nconnection: close, foo\r\nfoo: 1\r\n\r\n",
      "POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
      "POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\nhello",
  };
  for (const auto s : streams)
    EXPECT_EQ(adopted(direction::request, s), whole(direction::request, s, true)) << s;
  // Responses too (nothing gives them split yet; the parser takes either direction).
  const std::string_view response =
      "HTTP/1.1 200 OK\r\nserver: nginx\r\ncontent-length: 2\r\n\r\nok";
  EXPECT_EQ(adopted(direction::response, response), whole(direction::response, response, true));
}

TEST(http1_adopt, the_limits_hold_for_a_given_head) {
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 5; ++i)
    many += "x-" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  http1_limits four;
  four.max_headers = 4;
  EXPECT_EQ(adopted(direction::request, many, four).error, http_error::too_many_headers);
  EXPECT_EQ(whole(direction::request, many, true, {}, four).error, http_error::too_many_headers);
  http1_limits small;
  small.max_head_bytes = many.size() - 1;
  EXPECT_EQ(adopted(direction::request, many, small).error, http_error::header_too_large);
  const std::string long_target = "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n";
  http1_limits short_targets;
  short_targets.max_target_bytes = 50;
  EXPECT_EQ(adopted(direction::request, long_target, short_targets).error,
            http_error::target_too_long);
  http1_limits body;
  body.max_body_bytes = 4;
  EXPECT_EQ(
      adopted(direction::request, "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello", body).error,
      http_error::body_too_large);
}

TEST(http1_adopt, spans_outside_the_head_or_a_message_under_way_are_refused) {
  const std::string_view text = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
  const std::vector<std::vector<header_span>> bad{
      {{0, 3, 5, 1}},            // inside the start line
      {{16, 4, 22, 100}},        // a value past the end
      {{16, 0, 22, 3}},          // an empty name
      {{16, 4, 18, 3}},          // a value overlapping its name
      {{16, 4, 0xffffffffu, 2}}, // offsets that would wrap
  };
  for (const auto& spans : bad) {
    http1_parser p(direction::request);
    const auto r = p.adopt_head(text, spans);
    EXPECT_EQ(r.status, parse_status::error);
    EXPECT_EQ(r.error, http_error::malformed);
    EXPECT_EQ(p.parse({}).status, parse_status::error); // sticky, as any refusal
  }
  for (const std::string_view t :
       {std::string_view("GET / HTTP/1.1\r\nhost: svc\r\n"), std::string_view("GET / HTTP/1.1")}) {
    http1_parser p(direction::request);
    EXPECT_EQ(p.adopt_head(t, {}).error, http_error::malformed) << t;
  }
  // Inside a message (its head half read, or its body under way): refused.
  http1_parser half(direction::request);
  EXPECT_EQ(half.parse(std::string_view("GET / HT")).status, parse_status::need_more);
  EXPECT_EQ(half.adopt_head(text, spans_of(text)).status, parse_status::error);
  http1_parser body(direction::request);
  const std::string_view post = "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n";
  ASSERT_EQ(body.adopt_head(post, spans_of(post)).status, parse_status::head);
  EXPECT_EQ(body.adopt_head(text, spans_of(text)).status, parse_status::error);
}

TEST(http1_adopt, the_next_message_after_a_given_one_is_parsed_or_given_again) {
  http1_parser p(direction::request);
  const std::string_view text = "GET /a HTTP/1.1\r\nhost: svc\r\n\r\n";
  ASSERT_EQ(p.adopt_head(text, spans_of(text)).status, parse_status::head);
  EXPECT_EQ(p.parse({}).status, parse_status::complete);
  const std::string_view next = "GET /b HTTP/1.1\r\nhost: svc\r\n\r\n";
  ASSERT_EQ(p.adopt_head(next, spans_of(next)).status, parse_status::head);
  EXPECT_EQ(p.head().target, "/b");
  EXPECT_EQ(p.head().headers.size(), 1u);
  EXPECT_EQ(p.parse({}).status, parse_status::complete);
  const auto r = p.parse(std::string_view("GET /c HTTP/1.1\r\nx: 1\r\n\r\n"));
  ASSERT_EQ(r.status, parse_status::head);
  EXPECT_EQ(p.head().target, "/c");
  EXPECT_EQ(p.messages(), 2u);
}

TEST(http1_forward, append_chunk_frames_in_hex_and_skips_empty_data) {
  std::string out;
  append_chunk(out, std::span<const char>{"hello", 5});
  append_chunk(out, {});
  const std::string big(300, 'x');
  append_chunk(out, std::span<const char>{big.data(), big.size()});
  out.append(last_chunk);
  EXPECT_EQ(out, "5\r\nhello\r\n12c\r\n" + big + "\r\n0\r\n\r\n");
  // The parser reads it back as the same body.
  http1_parser p(direction::response);
  const std::string msg = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + out;
  std::span<const char> in{msg.data(), msg.size()};
  bool complete = false;
  for (int steps = 0; steps < 100 && !complete; ++steps) {
    auto r = p.parse(in);
    in = in.subspan(r.consumed);
    ASSERT_NE(r.status, parse_status::error);
    complete = r.status == parse_status::complete;
  }
  EXPECT_TRUE(complete);
}

} // namespace
} // namespace starling::proxy
