// One grpc.health.v1.Health/Check call over h2::session (grpc_health.hpp). The gRPC framing
// of the messages (a compressed-flag byte and a 4-byte big-endian length before each
// message) and the status in the trailers are as gRPC's "gRPC over HTTP2" describes them.
#include "proxy/grpc_health.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include <nghttp2/nghttp2.h>

#include "grpc_health.pb.h"
#include "proto/wire/hex.hpp"
#include "proxy/http_text.hpp"

namespace starling::proxy {

namespace {

constexpr std::string_view check_path = "/grpc.health.v1.Health/Check";
/// The gRPC message prefix: compressed flag, then the length.
constexpr std::size_t prefix_bytes = 5;
/// Most bytes of a grpc-message kept for the verdict's text.
constexpr std::size_t max_status_message_bytes = 100;

/// Limits of a check's session: one stream, small windows and buffers (a response is a few
/// dozen bytes).
h2::limits check_limits() {
  h2::limits lim;
  lim.max_concurrent_streams = 1;
  lim.max_header_list_bytes = 16 * 1024;
  lim.initial_stream_window = 64 * 1024;
  lim.connection_window = 64 * 1024;
  lim.max_buffered_bytes = 4 * 1024;
  lim.max_pending_output_bytes = 16 * 1024;
  return lim;
}

/// The value of field `name` in `fields`, if there.
std::optional<std::string_view> field_value(std::span<const h2::field> fields,
                                            std::string_view name) {
  for (const auto& f : fields)
    if (f.name == name)
      return f.value;
  return std::nullopt;
}

/// A grpc-message value (percent-encoded, gRPC over HTTP2) decoded, cut to
/// max_status_message_bytes, bytes outside printable ASCII as '?' (it ends up in JSON views
/// and on terminals).
std::string status_message_text(std::string_view value) {
  std::string out;
  for (std::size_t i = 0; i < value.size() && out.size() < max_status_message_bytes; ++i) {
    char c = value[i];
    if (c == '%' && i + 2 < value.size()) {
      const int hi = wire::hex_value(value[i + 1]);
      const int lo = wire::hex_value(value[i + 2]);
      if (hi >= 0 && lo >= 0) {
        c = static_cast<char>(hi * 16 + lo);
        i += 2;
      }
    }
    const auto u = static_cast<unsigned char>(c);
    out += u < 0x20 || u >= 0x7f ? '?' : c;
  }
  return out;
}

/// "<value>m" (milliseconds), or whole seconds ("S") past gRPC's 8 digits.
std::string timeout_value(std::chrono::milliseconds deadline) {
  auto ms = deadline.count() < 1 ? std::int64_t{1} : static_cast<std::int64_t>(deadline.count());
  if (ms <= 99'999'999)
    return std::to_string(ms) + "m";
  return std::to_string((ms + 999) / 1000) + "S";
}

} // namespace

std::string_view grpc_status_name(std::uint16_t code) noexcept {
  static constexpr std::array<std::string_view, 17> names{"OK",
                                                          "CANCELLED",
                                                          "UNKNOWN",
                                                          "INVALID_ARGUMENT",
                                                          "DEADLINE_EXCEEDED",
                                                          "NOT_FOUND",
                                                          "ALREADY_EXISTS",
                                                          "PERMISSION_DENIED",
                                                          "RESOURCE_EXHAUSTED",
                                                          "FAILED_PRECONDITION",
                                                          "ABORTED",
                                                          "OUT_OF_RANGE",
                                                          "UNIMPLEMENTED",
                                                          "INTERNAL",
                                                          "UNAVAILABLE",
                                                          "DATA_LOSS",
                                                          "UNAUTHENTICATED"};
  return code < names.size() ? names[code] : std::string_view{};
}

grpc_health_call::grpc_health_call(std::string_view authority, std::string_view service,
                                   std::chrono::milliseconds deadline)
    : session_(h2::role::client, check_limits(), static_cast<h2::listener&>(*this)) {
  if (service.size() > max_service_bytes) {
    decide(false, "gRPC service name of " + std::to_string(service.size()) + " bytes, more than " +
                      std::to_string(max_service_bytes));
    return;
  }
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string{service});
  std::string body(prefix_bytes, '\0');
  const auto size = request.ByteSizeLong(); // at most a few bytes over max_service_bytes
  body[1] = static_cast<char>((size >> 24) & 0xff);
  body[2] = static_cast<char>((size >> 16) & 0xff);
  body[3] = static_cast<char>((size >> 8) & 0xff);
  body[4] = static_cast<char>(size & 0xff);
  if (!request.AppendToString(&body)) {
    decide(false, "cannot encode the health check request");
    return;
  }
  const auto timeout = timeout_value(deadline);
  const std::array<h2::field, 8> fields{{
      {":method", "POST"},
      {":scheme", "http"},
      {":authority", authority},
      {":path", check_path},
      {"content-type", "application/grpc"},
      {"te", "trailers"},
      {"grpc-timeout", timeout},
      {"user-agent", "starling-health/1"},
  }};
  const auto sub = session_.submit_request(fields, false);
  if (sub.error != h2::errc::ok) {
    decide(false, "cannot start the call: " + std::string{h2::name(sub.error)});
    return;
  }
  stream_ = sub.stream;
  if (auto e = session_.send_data(stream_, body, true); e != h2::errc::ok)
    decide(false, "cannot send the call: " + std::string{h2::name(e)});
}

grpc_health_call::~grpc_health_call() = default;

bool grpc_health_call::wants_write() const noexcept { return session_.wants_write(); }

void grpc_health_call::take_output(std::string& out) { session_.take_output(out); }

void grpc_health_call::receive(std::span<const char> bytes) {
  if (verdict_ || bytes.empty())
    return;
  // An HTTP/1.1 server answers the preface with a status line: say so rather than "protocol
  // error".
  if (!head_seen_ && std::string_view{bytes.data(), bytes.size()}.starts_with("HTTP/1.")) {
    decide(false, "an HTTP/1.1 answer: the instance does not speak HTTP/2");
    return;
  }
  const auto e = session_.receive(bytes);
  if (e == h2::errc::ok)
    return;
  // The connection failed: the stream's reset, if the session reported one while failing,
  // is only its consequence; the verdict names the cause.
  verdict_ = grpc_health_verdict{false, e == h2::errc::protocol
                                            ? std::string{"HTTP/2 protocol error from the instance"}
                                            : "HTTP/2 session failed: " + std::string{h2::name(e)}};
}

void grpc_health_call::on_connection_closed() {
  decide(false, head_seen_ ? "connection closed before the call ended"
                           : "connection closed before the response");
}

void grpc_health_call::decide(bool ok, std::string text) {
  if (!verdict_)
    verdict_ = grpc_health_verdict{ok, std::move(text)};
}

void grpc_health_call::on_head(std::int32_t stream, const h2::head& h) {
  if (stream != stream_ || h.is_interim())
    return;
  if (h.status != 200) {
    decide(false, "HTTP " + std::to_string(h.status) + " (a gRPC server answers 200)");
    return;
  }
  const auto type = field_value(h.fields, "content-type");
  if (type ? !h2::is_grpc_content_type(*type) : !h.end_stream) {
    decide(false, type ? "content-type '" + status_message_text(*type) + "' is not gRPC's"
                       : std::string{"no content-type: not a gRPC response"});
    return;
  }
  head_seen_ = true;
  if (h.end_stream) // trailers-only: the status is in the head
    read_status(h.fields);
}

void grpc_health_call::on_data(std::int32_t stream, std::span<const char> bytes) {
  session_.consumed(stream, bytes.size());
  if (stream != stream_ || verdict_)
    return;
  std::string_view in{bytes.data(), bytes.size()};
  if (message_.size() < prefix_bytes) {
    const auto take = std::min(prefix_bytes - message_.size(), in.size());
    message_.append(in.substr(0, take));
    in.remove_prefix(take);
    if (message_.size() < prefix_bytes)
      return;
    const auto flag = static_cast<unsigned char>(message_[0]);
    if (flag != 0) {
      decide(false, flag == 1 ? "a compressed response message (none was asked for)"
                              : "malformed response message prefix");
      return;
    }
    const auto length = message_length();
    if (length > max_message_bytes) {
      decide(false, "a response message of " + std::to_string(length) + " bytes, more than " +
                        std::to_string(max_message_bytes));
      return;
    }
  }
  if (message_.size() + in.size() > prefix_bytes + message_length()) {
    decide(false, "more than one response message");
    return;
  }
  message_.append(in);
}

void grpc_health_call::on_trailers(std::int32_t stream, std::span<const h2::field> fields) {
  if (stream == stream_)
    read_status(fields);
}

void grpc_health_call::on_end(std::int32_t stream) {
  if (stream != stream_ || verdict_)
    return;
  if (!status_) {
    decide(false, "the call ended without a grpc-status");
    return;
  }
  if (*status_ != 0) {
    auto text = "gRPC status " + std::to_string(*status_);
    if (auto name = grpc_status_name(*status_); !name.empty())
      text += " " + std::string{name};
    if (!status_message_.empty())
      text += ": " + status_message_;
    decide(false, std::move(text));
    return;
  }
  judge_message();
}

void grpc_health_call::on_reset(std::int32_t stream, std::uint32_t code) {
  if (stream == stream_)
    decide(false,
           "stream reset by the instance (" + std::string{nghttp2_http2_strerror(code)} + ")");
}

void grpc_health_call::on_goaway(std::int32_t /*last_stream*/, std::uint32_t code) {
  if (code != h2::no_error)
    decide(false, "GOAWAY from the instance (" + std::string{nghttp2_http2_strerror(code)} + ")");
}

void grpc_health_call::read_status(std::span<const h2::field> fields) {
  if (auto v = field_value(fields, "grpc-status"))
    status_ = text::grpc_status_number(*v);
  if (auto m = field_value(fields, "grpc-message"))
    status_message_ = status_message_text(*m);
}

std::size_t grpc_health_call::message_length() const noexcept {
  if (message_.size() < prefix_bytes)
    return 0;
  const auto byte = [this](std::size_t i) {
    return static_cast<std::size_t>(static_cast<unsigned char>(message_[i]));
  };
  return byte(1) << 24 | byte(2) << 16 | byte(3) << 8 | byte(4);
}

void grpc_health_call::judge_message() {
  if (message_.size() < prefix_bytes) {
    decide(false, "grpc-status 0 without a response message");
    return;
  }
  if (message_.size() != prefix_bytes + message_length()) {
    decide(false, "the response message was cut short");
    return;
  }
  grpc::health::v1::HealthCheckResponse response;
  if (!response.ParseFromArray(message_.data() + prefix_bytes,
                               static_cast<int>(message_.size() - prefix_bytes))) {
    decide(false, "malformed response message");
    return;
  }
  using serving = grpc::health::v1::HealthCheckResponse;
  switch (response.status()) {
  case serving::SERVING:
    decide(true, "SERVING");
    return;
  case serving::NOT_SERVING:
    decide(false, "NOT_SERVING");
    return;
  case serving::SERVICE_UNKNOWN:
    decide(false, "SERVICE_UNKNOWN");
    return;
  case serving::UNKNOWN:
    decide(false, "UNKNOWN");
    return;
  default:
    decide(false, "serving status " + std::to_string(static_cast<int>(response.status())));
    return;
  }
}

} // namespace starling::proxy
