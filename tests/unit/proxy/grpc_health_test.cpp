// The gRPC health check's exchange (proxy/grpc_health.hpp) against a server made of
// h2::session in memory (bounded pumping, no I/O): what the call sends, and the verdict for
// each way a server may answer, well or badly.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "grpc_health.pb.h"
#include "proxy/grpc_health.hpp"
#include "proxy/h2.hpp"

namespace {

using namespace starling::proxy;
using namespace std::chrono_literals;
using h2::field;

/// A gRPC message: the 5-byte prefix (flag, big-endian length) and `payload`.
std::string framed(std::string_view payload, char flag = 0,
                   std::optional<std::uint32_t> length = {}) {
  const auto n = length.value_or(static_cast<std::uint32_t>(payload.size()));
  std::string out{flag};
  for (int shift : {24, 16, 8, 0})
    out += static_cast<char>((n >> shift) & 0xff);
  out += payload;
  return out;
}

/// A HealthCheckResponse with serving status `status`, framed.
std::string response_message(int status) {
  grpc::health::v1::HealthCheckResponse r;
  r.set_status(static_cast<grpc::health::v1::HealthCheckResponse_ServingStatus>(status));
  return framed(r.SerializeAsString());
}

/// What the server does once the request has ended: answers on `stream` through `s`.
using responder = std::function<void(h2::session& s, std::int32_t stream)>;

/// A server session that records the request and answers with a responder.
class fake_server final : public h2::listener {
public:
  explicit fake_server(responder r) : respond_(std::move(r)) {}

  void on_head(std::int32_t, const h2::head& h) override {
    path = std::string{h.path};
    method = std::string{h.method};
    authority = std::string{h.authority};
    for (const auto& f : h.fields)
      fields.emplace_back(std::string{f.name}, std::string{f.value});
  }
  void on_data(std::int32_t stream, std::span<const char> bytes) override {
    body.append(bytes.data(), bytes.size());
    session.consumed(stream, bytes.size());
  }
  void on_end(std::int32_t stream) override {
    if (respond_)
      respond_(session, stream);
  }
  void on_reset(std::int32_t, std::uint32_t) override {}

  [[nodiscard]] std::string field_value(std::string_view name) const {
    for (const auto& [n, v] : fields)
      if (n == name)
        return v;
    return "(absent)";
  }

  h2::session session{h2::role::server, h2::limits{}, *this};
  std::string path, method, authority, body;
  std::vector<std::pair<std::string, std::string>> fields;

private:
  responder respond_;
};

/// Moves bytes between the call and the server until neither has any (bounded), handing
/// the server's bytes to the call in pieces of at most `piece` bytes.
void pump(grpc_health_call& call, fake_server& server, std::size_t piece = 1 << 20) {
  for (int round = 0; round < 50; ++round) {
    std::string to_server, to_call;
    if (call.wants_write())
      call.take_output(to_server);
    if (!to_server.empty())
      (void)server.session.receive(to_server);
    if (server.session.wants_write())
      server.session.take_output(to_call);
    for (std::size_t at = 0; at < to_call.size(); at += piece)
      call.receive(
          std::span<const char>{to_call.data() + at, std::min(piece, to_call.size() - at)});
    if (to_server.empty() && to_call.empty())
      return;
  }
  ADD_FAILURE() << "the exchange did not settle in 50 rounds";
}

/// Answers 200 application/grpc, then `data` (may be empty), then trailers `trailers`.
responder answer(std::string data, std::vector<field> trailers) {
  return [data = std::move(data), trailers = std::move(trailers)](h2::session& s,
                                                                  std::int32_t stream) {
    const std::vector<field> head{{":status", "200"}, {"content-type", "application/grpc"}};
    ASSERT_EQ(s.submit_response(stream, head, false), h2::errc::ok);
    if (!data.empty()) {
      ASSERT_EQ(s.send_data(stream, data), h2::errc::ok);
    }
    ASSERT_EQ(s.end_stream(stream, trailers), h2::errc::ok);
  };
}

const std::vector<field> ok_trailers{{"grpc-status", "0"}};

/// The verdict of a call to a server answering with `r` (the call asks about `service`).
grpc_health_verdict verdict_of(responder r, std::size_t piece = 1 << 20,
                               std::string_view service = "echo.Echo") {
  fake_server server{std::move(r)};
  grpc_health_call call{"127.0.0.1:5000", service, 2s};
  pump(call, server, piece);
  if (!call.verdict())
    return {false, "(no verdict)"};
  return *call.verdict();
}

TEST(grpc_health, a_serving_server_passes_and_the_call_is_grpcs_health_check) {
  fake_server server{answer(response_message(1), ok_trailers)};
  grpc_health_call call{"127.0.0.1:5000", "echo.Echo", 2500ms};
  EXPECT_FALSE(call.verdict());
  pump(call, server);
  ASSERT_TRUE(call.verdict());
  EXPECT_TRUE(call.verdict()->ok);
  EXPECT_EQ(call.verdict()->text, "SERVING");
  EXPECT_EQ(server.method, "POST");
  EXPECT_EQ(server.path, "/grpc.health.v1.Health/Check");
  EXPECT_EQ(server.authority, "127.0.0.1:5000");
  EXPECT_EQ(server.field_value("content-type"), "application/grpc");
  EXPECT_EQ(server.field_value("te"), "trailers");
  EXPECT_EQ(server.field_value("grpc-timeout"), "2500m");
  // The body is one uncompressed message: a HealthCheckRequest naming the service.
  ASSERT_GE(server.body.size(), 5U);
  EXPECT_EQ(server.body.substr(0, 5),
            framed("", 0, static_cast<std::uint32_t>(server.body.size() - 5)));
  grpc::health::v1::HealthCheckRequest request;
  ASSERT_TRUE(request.ParseFromString(server.body.substr(5)));
  EXPECT_EQ(request.service(), "echo.Echo");
}

TEST(grpc_health, the_whole_server_is_asked_about_with_an_empty_service) {
  fake_server server{answer(response_message(1), ok_trailers)};
  grpc_health_call call{"[::1]:80", "", 1s};
  pump(call, server);
  ASSERT_TRUE(call.verdict());
  EXPECT_TRUE(call.verdict()->ok);
  EXPECT_EQ(server.body, framed("")); // proto3: an empty string is not on the wire
}

TEST(grpc_health, every_other_serving_status_fails_by_its_name) {
  EXPECT_EQ(verdict_of(answer(response_message(2), ok_trailers)).text, "NOT_SERVING");
  EXPECT_EQ(verdict_of(answer(response_message(3), ok_trailers)).text, "SERVICE_UNKNOWN");
  EXPECT_EQ(verdict_of(answer(response_message(0), ok_trailers)).text, "UNKNOWN");
  EXPECT_EQ(verdict_of(answer(response_message(7), ok_trailers)).text, "serving status 7");
  for (int s : {0, 2, 3, 7})
    EXPECT_FALSE(verdict_of(answer(response_message(s), ok_trailers)).ok) << s;
}

TEST(grpc_health, a_server_without_the_health_service_fails_with_its_grpc_status) {
  // Trailers-only, as gRPC servers answer an unknown method.
  const auto v = verdict_of([](h2::session& s, std::int32_t stream) {
    const std::vector<field> head{{":status", "200"},
                                  {"content-type", "application/grpc"},
                                  {"grpc-status", "12"},
                                  {"grpc-message", "Method%20not%20found!"}};
    ASSERT_EQ(s.submit_response(stream, head, true), h2::errc::ok);
  });
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.text, "gRPC status 12 UNIMPLEMENTED: Method not found!");
  // In the trailers after no message; a code gRPC does not name; a control character
  // smuggled through percent-encoding is shown as '?'.
  EXPECT_EQ(verdict_of(answer("", {{"grpc-status", "14"}})).text, "gRPC status 14 UNAVAILABLE");
  EXPECT_EQ(verdict_of(answer("", {{"grpc-status", "42"}})).text, "gRPC status 42");
  EXPECT_EQ(verdict_of(answer("", {{"grpc-status", "5"}, {"grpc-message", "a%0Ab%1b%zz"}})).text,
            "gRPC status 5 NOT_FOUND: a?b?%zz");
}

TEST(grpc_health, an_answer_that_is_not_grpc_fails_saying_what_came) {
  EXPECT_EQ(verdict_of([](h2::session& s, std::int32_t stream) {
              const std::vector<field> head{{":status", "404"}};
              ASSERT_EQ(s.submit_response(stream, head, true), h2::errc::ok);
            }).text,
            "HTTP 404 (a gRPC server answers 200)");
  EXPECT_EQ(verdict_of([](h2::session& s, std::int32_t stream) {
              const std::vector<field> head{{":status", "200"}, {"content-type", "text/html"}};
              ASSERT_EQ(s.submit_response(stream, head, false), h2::errc::ok);
              ASSERT_EQ(s.send_data(stream, "<html>", true), h2::errc::ok);
            }).text,
            "content-type 'text/html' is not gRPC's");
  EXPECT_EQ(verdict_of([](h2::session& s, std::int32_t stream) {
              const std::vector<field> head{{":status", "200"}};
              ASSERT_EQ(s.submit_response(stream, head, false), h2::errc::ok);
              ASSERT_EQ(s.end_stream(stream), h2::errc::ok);
            }).text,
            "no content-type: not a gRPC response");
  // "application/grpc+proto" is gRPC's too.
  EXPECT_TRUE(verdict_of([](h2::session& s, std::int32_t stream) {
                const std::vector<field> head{{":status", "200"},
                                              {"content-type", "application/grpc+proto"}};
                ASSERT_EQ(s.submit_response(stream, head, false), h2::errc::ok);
                ASSERT_EQ(s.send_data(stream, response_message(1)), h2::errc::ok);
                ASSERT_EQ(s.end_stream(stream, ok_trailers), h2::errc::ok);
              }).ok);
}

TEST(grpc_health, a_message_longer_than_the_bound_fails_before_it_is_kept) {
  // The prefix claims 1 MiB; 10 bytes follow. Refused at the prefix.
  const auto v = verdict_of(answer(framed("0123456789", 0, 1U << 20), ok_trailers));
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.text, "a response message of 1048576 bytes, more than 1024");
  EXPECT_EQ(verdict_of(answer(framed("ab", 1), ok_trailers)).text,
            "a compressed response message (none was asked for)");
  EXPECT_EQ(verdict_of(answer(framed("ab", 9), ok_trailers)).text,
            "malformed response message prefix");
  EXPECT_EQ(verdict_of(answer(response_message(1) + response_message(1), ok_trailers)).text,
            "more than one response message");
}

TEST(grpc_health, a_cut_missing_or_malformed_message_fails) {
  EXPECT_EQ(verdict_of(answer(framed("ab", 0, 10), ok_trailers)).text,
            "the response message was cut short");
  EXPECT_EQ(verdict_of(answer("", ok_trailers)).text, "grpc-status 0 without a response message");
  EXPECT_EQ(verdict_of(answer(framed("\xff\xff"), ok_trailers)).text, "malformed response message");
  EXPECT_EQ(verdict_of(answer(response_message(1), {})).text,
            "the call ended without a grpc-status");
}

TEST(grpc_health, the_answer_split_into_single_bytes_still_passes) {
  const auto v = verdict_of(answer(response_message(1), ok_trailers), 1);
  EXPECT_TRUE(v.ok) << v.text;
}

TEST(grpc_health, a_reset_stream_or_an_error_goaway_fails_naming_the_code) {
  EXPECT_EQ(verdict_of([](h2::session& s, std::int32_t stream) { (void)s.reset(stream, 7); }).text,
            "stream reset by the instance (REFUSED_STREAM)");
  const auto v = verdict_of([](h2::session& s, std::int32_t) { s.goaway(0xb); });
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.text, "GOAWAY from the instance (ENHANCE_YOUR_CALM)");
}

TEST(grpc_health, an_http1_server_garbage_or_a_closed_connection_fail_clearly) {
  {
    grpc_health_call call{"127.0.0.1:80", "", 1s};
    const std::string_view answer = "HTTP/1.1 400 Bad Request\r\n\r\n";
    call.receive(std::span<const char>{answer.data(), answer.size()});
    ASSERT_TRUE(call.verdict());
    EXPECT_EQ(call.verdict()->text, "an HTTP/1.1 answer: the instance does not speak HTTP/2");
  }
  {
    grpc_health_call call{"127.0.0.1:80", "", 1s};
    const std::string garbage(64, '\x17');
    call.receive(std::span<const char>{garbage.data(), garbage.size()});
    ASSERT_TRUE(call.verdict());
    EXPECT_EQ(call.verdict()->text, "HTTP/2 protocol error from the instance");
    // Later bytes and a close change nothing.
    call.on_connection_closed();
    EXPECT_EQ(call.verdict()->text, "HTTP/2 protocol error from the instance");
  }
  {
    grpc_health_call call{"127.0.0.1:80", "", 1s};
    call.on_connection_closed();
    ASSERT_TRUE(call.verdict());
    EXPECT_EQ(call.verdict()->text, "connection closed before the response");
  }
  {
    // The head came, then the connection closed.
    fake_server server{[](h2::session& s, std::int32_t stream) {
      const std::vector<field> head{{":status", "200"}, {"content-type", "application/grpc"}};
      ASSERT_EQ(s.submit_response(stream, head, false), h2::errc::ok);
    }};
    grpc_health_call call{"127.0.0.1:80", "", 1s};
    pump(call, server);
    EXPECT_FALSE(call.verdict());
    call.on_connection_closed();
    ASSERT_TRUE(call.verdict());
    EXPECT_EQ(call.verdict()->text, "connection closed before the call ended");
  }
}

TEST(grpc_health, an_overlong_service_name_is_refused_at_once) {
  grpc_health_call call{"127.0.0.1:80", std::string(grpc_health_call::max_service_bytes + 1, 'a'),
                        1s};
  ASSERT_TRUE(call.verdict());
  EXPECT_FALSE(call.verdict()->ok);
  EXPECT_EQ(call.verdict()->text, "gRPC service name of 257 bytes, more than 256");
  // At the bound it is asked.
  EXPECT_TRUE(verdict_of(answer(response_message(1), ok_trailers), 1 << 20,
                         std::string(grpc_health_call::max_service_bytes, 'a'))
                  .ok);
}

TEST(grpc_health, the_deadline_is_sent_in_grpcs_units) {
  const auto timeout_of = [](std::chrono::milliseconds d) {
    fake_server server{answer(response_message(1), ok_trailers)};
    grpc_health_call call{"127.0.0.1:80", "", d};
    pump(call, server);
    return server.field_value("grpc-timeout");
  };
  EXPECT_EQ(timeout_of(100ms), "100m");
  EXPECT_EQ(timeout_of(0ms), "1m");
  EXPECT_EQ(timeout_of(99'999'999ms), "99999999m");
  EXPECT_EQ(timeout_of(100'000'000ms), "100000S");
}

TEST(grpc_health, status_names_are_grpcs) {
  EXPECT_EQ(grpc_status_name(0), "OK");
  EXPECT_EQ(grpc_status_name(12), "UNIMPLEMENTED");
  EXPECT_EQ(grpc_status_name(16), "UNAUTHENTICATED");
  EXPECT_EQ(grpc_status_name(17), "");
}

} // namespace
