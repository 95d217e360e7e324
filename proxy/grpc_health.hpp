// A gRPC health check as a pure exchange: one call of grpc.health.v1.Health/Check (gRPC's
// standard health checking protocol) over one plain-text HTTP/2 connection with prior
// knowledge, made of h2::session. Bytes in, bytes out, a verdict; no sockets, no clock (the
// caller bounds the time and tells of the connection's end). The health prober
// (gossip/discovery/health_prober.cpp) runs it for `check=grpc`; kept here, beside the
// HTTP/2 session, so that it is tested without sockets.
//
// A check passes only on a response message saying SERVING with grpc-status 0. Everything
// else fails with a text saying what came: NOT_SERVING, a gRPC status (UNIMPLEMENTED when
// the app has no health service), an HTTP status, a reset stream, a broken HTTP/2
// connection. What a stranger can make us hold is bounded before it is held: the response
// message (max_message_bytes), the fields (the session's header-list bound), the output
// waiting for the socket (the session's pending-output bound).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proxy/h2.hpp"

namespace starling::proxy {

/// The outcome of a gRPC health check call.
struct grpc_health_verdict {
  /// The server answered SERVING.
  bool ok = false;
  /// "SERVING", "NOT_SERVING", "gRPC status 12 UNIMPLEMENTED: unknown service ...",
  /// "HTTP 404 (a gRPC server answers 200)", "stream reset by the server (code 7)", ... Not
  /// bounded here: the prober bounds result texts.
  std::string text;
};

/// The name of gRPC status code `code` ("OK", "UNIMPLEMENTED", ...; "" for one gRPC does not
/// define).
[[nodiscard]] std::string_view grpc_status_name(std::uint16_t code) noexcept;

/// One Check call on a fresh connection. Construct, write what take_output gives, feed what
/// is read to receive, and stop once verdict() has a value (then close the connection).
class grpc_health_call final : private h2::listener {
public:
  /// Most bytes of the response message (a HealthCheckResponse takes 2): a longer one fails
  /// the check before its bytes are kept.
  static constexpr std::size_t max_message_bytes = 1024;
  /// Most bytes of the service name asked about.
  static constexpr std::size_t max_service_bytes = 256;

  /// Queues the connection preface, SETTINGS and the call: POST
  /// /grpc.health.v1.Health/Check to `authority` ("host:port") with a HealthCheckRequest
  /// naming `service` ("" asks about the whole server) and `grpc-timeout` of `deadline` (at
  /// least 1 ms). A service longer than max_service_bytes, or fields the session refuses,
  /// give a verdict at once (nothing to send).
  grpc_health_call(std::string_view authority, std::string_view service,
                   std::chrono::milliseconds deadline);
  ~grpc_health_call() override;
  grpc_health_call(const grpc_health_call&) = delete;
  grpc_health_call& operator=(const grpc_health_call&) = delete;

  /// True when take_output has bytes to give.
  [[nodiscard]] bool wants_write() const noexcept;
  /// Appends what to send now (the preface and the call first, then answers to the
  /// server's frames: SETTINGS acks, WINDOW_UPDATEs, PING acks).
  void take_output(std::string& out);
  /// Feeds bytes read from the server. A verdict may follow.
  void receive(std::span<const char> bytes);
  /// The server closed the connection (end of file): without a verdict yet, the check
  /// fails ("connection closed before the response" or "... before the call ended").
  void on_connection_closed();

  /// The verdict, once there is one (it never changes after).
  [[nodiscard]] const std::optional<grpc_health_verdict>& verdict() const noexcept {
    return verdict_;
  }

private:
  void on_head(std::int32_t stream, const h2::head& h) override;
  void on_data(std::int32_t stream, std::span<const char> bytes) override;
  void on_trailers(std::int32_t stream, std::span<const h2::field> fields) override;
  void on_end(std::int32_t stream) override;
  void on_reset(std::int32_t stream, std::uint32_t code) override;
  void on_goaway(std::int32_t last_stream, std::uint32_t code) override;

  /// Sets the verdict unless there is one.
  void decide(bool ok, std::string text);
  /// Reads grpc-status and grpc-message from `fields` (a trailers-only head or trailers).
  void read_status(std::span<const h2::field> fields);
  /// The verdict of a call that ended with grpc-status 0 and `message_`.
  void judge_message();
  /// The response message's length from its prefix (0 before the prefix is whole).
  [[nodiscard]] std::size_t message_length() const noexcept;

  h2::session session_;
  std::int32_t stream_ = 0;
  /// The response's head came (status 200, a gRPC content type).
  bool head_seen_ = false;
  /// grpc-status and grpc-message, once read.
  std::optional<std::uint16_t> status_;
  std::string status_message_;
  /// The response's body so far: the 5-byte message prefix, then at most max_message_bytes.
  std::string message_;
  std::optional<grpc_health_verdict> verdict_;
};

} // namespace starling::proxy
